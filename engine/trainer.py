"""The iteration-based training loop: data -> model.train_step -> log / validate / checkpoint.

The loop never names a method: everything method-specific lives in the model class. A training
state holds the model's resume state, the iteration, the sampler position, every rank's RNG state
and the best validation result; it is written atomically, so ``--auto_resume`` only ever sees
complete files.
"""
import logging
import os
from typing import Any, Dict

import torch

from engine.data_setup import build_dataset, build_train_loader, dataset_phase, eval_datasets
from engine.evaluation import average, evaluate_dataset, make_forward
from engine.experiment import ExperimentPaths, experiment_paths
from models import build_model
from utils.checkpoint import find_latest_state, load_state, save_atomic
from utils.dist import all_gather_object, barrier, get_dist_info
from utils.logger import get_root_logger, init_tb_logger
from utils.options import save_options
from utils.progress import MessageLogger
from utils.rng import get_rng_state, seed_everything, set_rng_state

logger = logging.getLogger('ckdsr')


class Trainer:
    """Runs one experiment described by a validated option tree."""

    def __init__(self, opt: Dict[str, Any], auto_resume: bool = False):
        self.opt = opt
        self.rank, self.world_size = get_dist_info()
        self.paths: ExperimentPaths = experiment_paths(opt)
        if self.rank == 0:
            self.paths.make()
            save_options(opt, self.paths.options_file)
        barrier()
        get_root_logger(log_file=self.paths.log_file)
        self.train_opt = opt['train']
        self.val_opt = opt.get('val') or {}
        self.log_opt = opt.get('logger') or {}
        self.seed = opt.get('manual_seed') or 0
        seed_everything(self.seed, self.rank)

        state_path = (opt.get('path') or {}).get('resume_state')
        if not state_path and auto_resume:
            state_path = find_latest_state(self.paths.training_states)
        self.model = build_model(opt, is_train=True, rank=self.rank, world_size=self.world_size)
        train_keys = [k for k, c in opt['datasets'].items() if dataset_phase(k, c) == 'train']
        if len(train_keys) != 1:
            raise ValueError(f"datasets: expected exactly one training set, found {train_keys or 'none'}")
        train_cfg = opt['datasets'][train_keys[0]]
        self.train_set = build_dataset(train_keys[0], train_cfg, opt['scale'])
        self.loader, self.sampler = build_train_loader(train_cfg, self.train_set, self.seed, self.rank,
                                                       self.world_size)
        self.val_sets = eval_datasets(opt, phases=('val',)) if self.val_opt else {}
        self.tb = init_tb_logger(self.paths.tb_logger) if (self.rank == 0 and self.log_opt.get('use_tb_logger')) else None

        self.current_iter, self.epoch = 0, 0
        self.best: Dict[str, Any] = {}
        if state_path:
            self.resume(state_path)
        logger.info(f'experiment {opt["name"]}: {len(self.train_set)} training samples, '
                    f'{self.world_size} process(es), device {self.model.device}, '
                    f'total_iter {self.train_opt["total_iter"]}, starting at {self.current_iter}')

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

    def save_state(self) -> None:
        state = self.state()  # collective (RNG gather): every rank takes part
        if self.rank == 0:
            path = os.path.join(self.paths.training_states, f'{self.current_iter}.state')
            save_atomic(state, path)
            save_atomic(self.model.network_state(), os.path.join(self.paths.models, f'net_g_{self.current_iter}.pth'))
            self._prune_states()
            logger.info(f'saved training state {path}')
        barrier()

    def _prune_states(self) -> None:
        keep = self.log_opt.get('keep_states')
        if not keep:
            return
        states = sorted((int(f.split('.')[0]), f) for f in os.listdir(self.paths.training_states)
                        if f.endswith('.state') and f.split('.')[0].isdigit())
        for _, f in states[:-keep]:
            os.remove(os.path.join(self.paths.training_states, f))

    def resume(self, path: str) -> None:
        state = load_state(path, map_location=self.model.device)
        self.model.load_training_state(state['model'])
        self.current_iter = state['iter']
        self.epoch = state['epoch']
        self.best = state.get('best', {})
        same_world = state.get('world_size', 1) == self.world_size
        if same_world:
            self.sampler.load_state_dict(state['sampler'])
            set_rng_state(state['rng'][self.rank])
        else:
            # a different process count: the epoch's remaining samples are re-split across ranks;
            # restart the epoch at the next one and re-seed from (seed, rank, iter)
            logger.warning(f'resuming a {state.get("world_size")}-process run with {self.world_size} '
                           'processes: continuing from the next epoch with fresh per-rank seeds')
            self.epoch += 1
            self.sampler.set_epoch(self.epoch)
            seed_everything(self.seed + self.current_iter, self.rank)
        logger.info(f'resumed from {path} at iter {self.current_iter}')

    # ------------------------------------------------------------------ loop
    def run(self) -> Dict[str, Any]:
        total = self.train_opt['total_iter']
        msg = MessageLogger(total_iter=total, start_iter=self.current_iter, tb_writer=self.tb, logger=logger)
        print_freq = self.log_opt.get('print_freq', 100)
        save_freq = self.log_opt.get('save_checkpoint_freq', 5000)
        val_freq = self.val_opt.get('val_freq', 0) if self.val_sets else 0
        pending: Dict[str, torch.Tensor] = {}
        self.sampler.set_epoch(self.epoch)
        while self.current_iter < total:
            if self.sampler.position >= self.sampler.num_samples:  # the epoch is used up
                self.epoch += 1
                self.sampler.set_epoch(self.epoch)
            msg.start()
            for batch in self.loader:
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
                if self.current_iter % save_freq == 0:
                    self.save_state()
                    msg.start()
                if val_freq and self.current_iter % val_freq == 0:
                    self.validate()
                    msg.start()
                if self.current_iter >= total:
                    break
        if self.current_iter % save_freq != 0:
            self.save_state()
        if self.rank == 0:
            save_atomic(self.model.network_state(), os.path.join(self.paths.models, 'net_g_latest.pth'))
        if self.tb is not None:
            self.tb.close()
        logger.info('training done')
        return {'iter': self.current_iter, 'best': self.best}

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
            self.best = {'dataset': name, 'metric': metric, 'value': value, 'iter': self.current_iter}
            if self.rank == 0:
                save_atomic(self.model.network_state(), os.path.join(self.paths.models, 'net_g_best.pth'))
