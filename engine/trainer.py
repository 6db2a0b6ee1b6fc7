"""The iteration-based training loop: data -> model.train_step -> log / validate / checkpoint.

The loop never names a method: everything method-specific lives in the model class. A training
state holds the model's resume state, the iteration, the sampler position, every rank's RNG state
and the best validation result; it is written atomically, so ``--auto_resume`` only ever sees
complete files.

Crash-consistency rules (any kill, at any moment, then ``--auto_resume``, gives the files of an
uninterrupted run):

- nothing is written into the experiment folder before the run is known to start (model, data and
  resume state loaded); a fresh run archives an existing folder instead of reusing it;
- at an iteration that both validates and saves, validation runs first, so the state's ``best``
  record includes it and a kill between the two cannot lose a validation (a kill before the state is
  written resumes from the previous state and redoes the steps and the validation);
- ``net_g_<iter>.pth`` is written before ``<iter>.state``, so a state on disk implies its export;
- leftover ``*.tmp-<pid>`` files of interrupted writes are removed when a run starts.
"""
import logging
import os
from typing import Any, Dict, List, Optional, Tuple

import torch

from ckdsr.engine.data_setup import build_dataset, build_train_loader, dataset_phase, eval_datasets
from ckdsr.engine.evaluation import average, evaluate_dataset, make_forward
from ckdsr.engine.experiment import ExperimentPaths, experiment_paths
from ckdsr.engine.graceful_stop import StopRequest
from ckdsr.engine.run_info import run_info_lines
from ckdsr.engine.teacher_check import check_teacher, log_teacher_check
from ckdsr.models import build_model
from ckdsr.models.base_model import NonFiniteLossError
from ckdsr.utils.checkpoint import load_state, remove_stale_temps, save_atomic, scan_states
from ckdsr.utils.dist import all_gather_object, barrier, broadcast_object, get_dist_info
from ckdsr.utils.logger import detach_log_files, get_root_logger, init_tb_logger
from ckdsr.utils.options import save_options
from ckdsr.utils.progress import MessageLogger, training_bar
from ckdsr.utils.rng import get_rng_state, seed_everything, set_rng_state

logger = logging.getLogger('ckdsr')


class TrainingError(RuntimeError):
    """A failure after option validation that ``tools/train.py`` reports as one ``error:`` line.

    With ``key`` (the option key at fault) the message starts ``<key>: ``, so the CLI can name the
    key's source (the option file or ``--set``).
    """

    def __init__(self, message: str, key: Optional[str] = None):
        super().__init__(f'{key}: {message}' if key else message)
        self.key = key


def _close_log_files_under(root: str) -> None:
    """Detach the 'ckdsr' logger's files inside ``root`` (they would follow the folder when renamed)."""
    prefix = os.path.join(os.path.abspath(root), '')
    for h in list(logger.handlers):
        if isinstance(h, logging.FileHandler) and h.baseFilename.startswith(prefix):
            logger.removeHandler(h)
            h.close()


class Trainer:
    """Runs one experiment described by a validated option tree."""

    def __init__(self, opt: Dict[str, Any], auto_resume: bool = False):
        self.rank, self.world_size = get_dist_info()
        # a SIGINT/SIGTERM while the run is built, or while it runs, is a graceful stop (the handlers
        # are installed only inside __init__ and run(); a signal during the build stops before step 1)
        self.stop = StopRequest(self.world_size)
        with self.stop:
            self._setup(opt, auto_resume)

    def _setup(self, opt: Dict[str, Any], auto_resume: bool) -> None:
        self.opt = opt
        self.paths: ExperimentPaths = experiment_paths(opt)
        detach_log_files()  # an earlier run in this process may still hold its train.log
        get_root_logger()  # console only: the log file is attached once the run starts
        self.train_opt = opt['train']
        self.val_opt = opt.get('val') or {}
        self.log_opt = opt.get('logger') or {}
        self.total_iter = self.train_opt['total_iter']
        if not isinstance(self.total_iter, int) or self.total_iter < 1:
            raise TrainingError(f'must be >= 1, got {self.total_iter!r} (nothing to train)', key='train.total_iter')
        self.seed = opt.get('manual_seed') or 0
        seed_everything(self.seed, self.rank)

        state_path, notes = self._find_resume_state(auto_resume)
        self.model = build_model(opt, is_train=True, rank=self.rank, world_size=self.world_size)
        train_keys = [k for k, c in opt['datasets'].items() if dataset_phase(k, c) == 'train']
        if len(train_keys) != 1:
            raise ValueError(f"datasets: expected exactly one training set, found {train_keys or 'none'}")
        train_cfg = opt['datasets'][train_keys[0]]
        self.train_set = build_dataset(train_keys[0], train_cfg, opt['scale'])
        self.loader, self.sampler = build_train_loader(train_cfg, self.train_set, self.seed, self.rank,
                                                       self.world_size)
        self.val_sets = eval_datasets(opt, phases=('val',)) if self.val_opt else {}

        self.current_iter, self.epoch = 0, 0
        self.resumed_iter: Optional[int] = None
        self.best: Dict[str, Any] = {}
        if state_path:
            notes += self.resume(state_path)
        self._start(fresh=state_path is None, notes=notes)
        # tensorboard and/or wandb (logger.use_tb_logger, logger.wandb.project), None when both are off
        self.tb = init_tb_logger(self.paths.tb_logger, opt) if self.rank == 0 else None
        logger.info(f'experiment {opt["name"]}: {len(self.train_set)} training samples, '
                    f'{self.world_size} process(es), device {self.model.device}, '
                    f'total_iter {self.total_iter}, starting at {self.current_iter}')
        self._log_run_info()

    # ------------------------------------------------------------------ start-up
    def _find_resume_state(self, auto_resume: bool) -> Tuple[Optional[str], List[str]]:
        """``path.resume_state``, else (with ``--auto_resume``) the newest readable state; rank 0
        decides for every rank. Returns the path and warnings to log once the log file is open."""
        explicit = (self.opt.get('path') or {}).get('resume_state')
        if explicit or not auto_resume:
            return explicit, []
        found = None
        if self.rank == 0:
            scan = scan_states(self.paths.training_states)
            found = (str(scan.latest) if scan.latest else None, [str(p) for p in scan.skipped], scan.count)
        latest, skipped, count = broadcast_object(found)
        if count and latest is None:
            raise TrainingError(f'--auto_resume: none of the {count} training state(s) in '
                                f'{self.paths.training_states} is readable (truncated or corrupt: '
                                f'{", ".join(os.path.basename(p) for p in skipped)}); not restarting over them: '
                                'move the folder away to start again, or set path.resume_state')
        notes = [f'--auto_resume: skipped unreadable training state {p} (truncated or corrupt)' for p in skipped]
        return latest, notes

    def _start(self, fresh: bool, notes: List[str]) -> None:
        """The run will start: archive an old folder (fresh runs), create the folder, remove leftover
        temp files, save the options, open the log file. Rank 0 writes; the others wait."""
        archived, removed = None, []
        if self.rank == 0:
            if fresh:
                _close_log_files_under(self.paths.root)  # an earlier run in this process may hold train.log
                archived = self.paths.archive()
            self.paths.make()
            removed = remove_stale_temps(self.paths.checkpoint_dirs)
            save_options(self.opt, self.paths.options_file)
        barrier()
        get_root_logger(log_file=self.paths.log_file)
        if archived:
            logger.info(f'experiment folder {self.paths.root} existed: archived it as {archived}')
        for p in removed:
            logger.info(f'removed {p} (left by an interrupted write)')
        for note in notes:
            (logger.warning if note.startswith('--auto_resume: skipped') else logger.info)(note)
        if not fresh and self.rank == 0 and self.current_iter and self.current_iter % self._save_freq() == 0:
            # belt and braces for folders written before exports preceded states
            export = os.path.join(self.paths.models, f'net_g_{self.current_iter}.pth')
            if not os.path.isfile(export):
                self._write(self.model.network_state(), export)
                logger.info(f're-exported {export} from the resumed training state')

    def _log_run_info(self) -> None:
        """The lines that make the run reproducible (engine/run_info.py); then, in KD runs with a
        validation set, the teacher against bicubic (engine/teacher_check.py, ``val.check_teacher``)."""
        if self.rank == 0:
            for line in run_info_lines(self.model, self.world_size):
                logger.info(line)
        teacher = getattr(self.model, 'teacher', None)
        if teacher is not None and self.val_sets and self.val_opt.get('check_teacher', True):
            result = check_teacher(teacher.net, self.val_sets, self.val_opt, self.model.scale, self.model.device,
                                   rank=self.rank, world_size=self.world_size)
            log_teacher_check(result, self.rank)

    def _save_freq(self) -> int:
        return self.log_opt.get('save_checkpoint_freq', 5000)

    # ------------------------------------------------------------------ resume state
    def state(self) -> Dict[str, Any]:
        rng = all_gather_object(get_rng_state()) if self.world_size > 1 else [get_rng_state()]
        return {
            'iter': self.current_iter,
            'epoch': self.epoch,
            'sampler': self.sampler.state_dict(),
            'world_size': self.world_size,
            'rng': rng,
            'best': self.best,
            'model': self.model.training_state(),
        }

    def _write(self, obj: Any, path: str) -> None:
        """``save_atomic`` whose OS errors (a full disk...) become one-line :class:`TrainingError`."""
        try:
            save_atomic(obj, path)
        except OSError as err:
            raise TrainingError(f'cannot write {path}: {err.strerror or err}; earlier checkpoints are '
                                'intact (atomic writes): free space and continue with --auto_resume') from err

    def _on_rank0(self, write) -> None:
        """Run ``write()`` on rank 0; its :class:`TrainingError` is raised on every rank (no rank is
        left waiting in a collective). Every rank must call this."""
        error = None
        if self.rank == 0:
            try:
                write()
            except TrainingError as err:
                error = str(err)
        if self.world_size > 1:
            error = broadcast_object(error)
        if error:
            raise TrainingError(error)

    def save_state(self, export: bool = True) -> str:
        """Write ``net_g_<iter>.pth`` (when ``export``), then ``<iter>.state``; returns the state path."""
        state = self.state()  # collective (RNG gather): every rank takes part
        path = os.path.join(self.paths.training_states, f'{self.current_iter}.state')

        def write():
            if export:
                export_path = os.path.join(self.paths.models, f'net_g_{self.current_iter}.pth')
                self._write(self.model.network_state(), export_path)
            self._write(state, path)
            self._prune_states()
            logger.info(f'saved training state {path}')
        self._on_rank0(write)
        return path

    def _prune_states(self) -> None:
        keep = self.log_opt.get('keep_states')
        if not keep:
            return
        states = sorted((int(f.split('.')[0]), f) for f in os.listdir(self.paths.training_states)
                        if f.endswith('.state') and f.split('.')[0].isdigit())
        for _, f in states[:-keep]:
            os.remove(os.path.join(self.paths.training_states, f))

    def resume(self, path: str) -> List[str]:
        """Load a training state; returns the lines to log once the log file is open."""
        try:
            state = load_state(path, map_location=self.model.device)
        except (RuntimeError, FileNotFoundError) as err:
            raise TrainingError(str(err), key='path.resume_state') from err
        if state['iter'] > self.total_iter:
            raise TrainingError(f'{self.total_iter} is below the iteration of training state {path} '
                                f'({state["iter"]}): nothing to train; raise it, or start over without '
                                '--auto_resume (the old folder is archived)', key='train.total_iter')
        try:
            self.model.load_training_state(state['model'])
        except (RuntimeError, ValueError, KeyError) as err:
            first = next((line.strip() for line in str(err).splitlines()
                          if line.strip() and not line.startswith('Error(s)')), type(err).__name__)
            raise TrainingError(f'does not match training state {path} ({first}); resume with the options '
                                'the state was saved with, or start a new experiment name',
                                key='network_g') from err
        self.current_iter = self.resumed_iter = state['iter']
        self.epoch = state['epoch']
        self.best = state.get('best', {})
        notes = []
        same_world = state.get('world_size', 1) == self.world_size
        if same_world:
            self.sampler.load_state_dict(state['sampler'])
            set_rng_state(state['rng'][self.rank])
        else:
            # a different process count: the epoch's remaining samples are re-split across ranks;
            # restart the epoch at the next one and re-seed from (seed, rank, iter)
            notes.append(f'resuming a {state.get("world_size")}-process run with {self.world_size} '
                         'processes: continuing from the next epoch with fresh per-rank seeds')
            self.epoch += 1
            self.sampler.set_epoch(self.epoch)
            seed_everything(self.seed + self.current_iter, self.rank)
        notes.append(f'resumed from {path} at iter {self.current_iter}')
        return notes

    # ------------------------------------------------------------------ loop
    def run(self) -> Dict[str, Any]:
        """Train to ``train.total_iter``; returns ``{'iter', 'best', 'stopped'}`` where ``stopped`` is
        the number of the signal that stopped the run early (its state is saved), else None."""
        # interactive runs (rank 0's stderr a terminal) also get a progress bar; None otherwise
        with self.stop as stop, training_bar(self.total_iter, self.current_iter, enabled=self.rank == 0,
                                             logger=logger) as bar:
            try:
                stopped = self._loop(stop, bar)
            except NonFiniteLossError as err:
                last = scan_states(self.paths.training_states).latest if self.rank == 0 else None
                raise TrainingError(f'training stopped: {err} (newest training state: {last or "none"})',
                                    key='train.max_bad_steps') from err
        if stopped is None:
            if self.current_iter % self._save_freq() != 0:
                self.save_state()
            latest = os.path.join(self.paths.models, 'net_g_latest.pth')
            self._on_rank0(lambda: self._write(self.model.network_state(), latest))
        if self.tb is not None:
            self.tb.close()
        if stopped is None:
            logger.info('training done')
        return {'iter': self.current_iter, 'best': self.best, 'stopped': stopped}

    def _loop(self, stop: StopRequest, bar=None) -> Optional[int]:
        """The iterations; returns the stopping signal's number after a graceful stop, else None."""
        total = self.total_iter
        msg = MessageLogger(total_iter=total, start_iter=self.current_iter, tb_writer=self.tb, logger=logger,
                            bar=bar)
        print_freq = self.log_opt.get('print_freq', 100)
        save_freq = self._save_freq()
        val_freq = self.val_opt.get('val_freq', 0) if self.val_sets else 0
        pending: Dict[str, torch.Tensor] = {}
        self.sampler.set_epoch(self.epoch)
        if self.current_iter < total and stop.agreed():  # asked to stop while the run was being built
            return self._stop_now(stop, saved=self.current_iter == self.resumed_iter)
        while self.current_iter < total:
            if self.sampler.position >= self.sampler.num_samples:  # the epoch is used up
                self.epoch += 1
                self.sampler.set_epoch(self.epoch)
            msg.start()
            batches = iter(self.loader)
            while self.current_iter < total:
                try:
                    batch = next(batches)
                except StopIteration:
                    break
                except Exception:
                    if stop.signum is None:
                        raise
                    # the signal also reached the loader's workers (a process-group signal): the
                    # last completed step is a consistent place to stop
                    return self._stop_now(stop, saved=False)
                msg.data_done()
                self.current_iter += 1
                losses = self.model.train_step(batch, self.current_iter)
                for k, v in losses.items():
                    pending[k] = pending.get(k, 0) + v
                msg.iter_done()
                if self.current_iter % print_freq == 0 or self.current_iter == total:
                    n = print_freq if self.current_iter % print_freq == 0 else (self.current_iter % print_freq)
                    means = {k: float(v) / n for k, v in pending.items()}  # one host sync per print
                    pending = {}
                    if self.rank == 0:
                        msg.log(self.epoch, self.current_iter, [self.model.current_lr()], means)
                # validate first: the state saved at this iteration then holds its best record
                if val_freq and self.current_iter % val_freq == 0:
                    self.validate()
                    msg.start()
                saved = self.current_iter % save_freq == 0
                if saved:
                    self.save_state()
                    msg.start()
                if self.current_iter < total and stop.agreed():
                    return self._stop_now(stop, saved)
        return None

    def _stop_now(self, stop: StopRequest, saved: bool) -> int:
        """Save a state at the current iteration (no extra export) and say so in one line."""
        path = os.path.join(self.paths.training_states, f'{self.current_iter}.state')
        if not saved:
            path = self.save_state(export=False)
        if self.rank == 0:
            logger.warning(f'stopped by {stop.name} at iter {self.current_iter}: training state saved to '
                           f'{path}; continue with --auto_resume')
        return stop.signum

    # ------------------------------------------------------------------ validation
    def validate(self) -> Dict[str, Dict[str, float]]:
        """Score the inference net on every validation set; keep the best checkpoint."""
        model = self.model
        net = model.inference_net(self.val_opt.get('use_ema', True))
        was_training = net.training
        net.eval()
        forward = make_forward(net, model.scale, self.val_opt.get('self_ensemble', False),
                               self.val_opt.get('tile'), self.val_opt.get('tile_overlap', 16))
        results = {}
        for name, ds in self.val_sets.items():
            save_dir = os.path.join(self.paths.visualization, name) if self.val_opt.get('save_img') else None
            rows = evaluate_dataset(forward, ds, model.scale, self.val_opt.get('metrics') or None,
                                    device=model.device, rank=self.rank, world_size=self.world_size,
                                    save_dir=save_dir, suffix=f'_{self.current_iter}',
                                    progress=self.val_opt.get('pbar', False), on_image=self._tb_image_logger(name))
            results[name] = average(rows)
        net.train(was_training)
        if self.rank == 0:
            ema = getattr(model, 'ema', None)
            scored = (f'ema (the EMA copy of network_g, decay {ema.decay})' if ema is not None and net is ema.module
                      else 'raw (network_g itself' + (', val.use_ema is false)' if ema is not None else ', no EMA)'))
            logger.info(f'validating network_g @ iter {self.current_iter}, scored: {scored}')
            for name, avg in results.items():
                text = ', '.join(f'{k}: {v:.4f}' for k, v in avg.items())
                logger.info(f'validation {name} @ iter {self.current_iter}: {text}')
                if self.tb is not None:
                    for k, v in avg.items():
                        self.tb.add_scalar(f'val/{name}/{k}', v, self.current_iter)
        self._keep_best(results)
        return results

    def _tb_image_logger(self, dataset: str):
        """Callback adding the outputs of the first ``val.tb_images`` images to tensorboard, or None."""
        limit = self.val_opt.get('tb_images', 0)
        if self.tb is None or limit <= 0:
            return None

        def log(index: int, name: str, sr_img) -> None:
            if index < limit:
                self.tb.add_image(f'val/{dataset}/{name}', sr_img, self.current_iter, dataformats='HWC')
        return log

    def _keep_best(self, results: Dict[str, Dict[str, float]]) -> None:
        """Best = highest first metric of the first validation set (PSNR by convention)."""
        if not results:
            return
        name = next(iter(results))
        if not results[name]:
            return
        metric, value = next(iter(results[name].items()))
        if not self.best or value > self.best['value']:
            if self.rank == 0:
                old = (f"{self.best['value']:.4f} (iter {self.best['iter']})" if self.best else 'none')
                logger.info(f'net_g_best changed: {metric} on {name} {old} -> {value:.4f} (iter {self.current_iter})')
            self.best = {'dataset': name, 'metric': metric, 'value': value, 'iter': self.current_iter}
            best = os.path.join(self.paths.models, 'net_g_best.pth')
            self._on_rank0(lambda: self._write(self.model.network_state(), best))
