"""The distillation study: every method x seed on one student, paired, resumable, results appended to JSON.

    python benchmarks/kd_study/prepare_data.py                       # training LMDB + validation split
    python benchmarks/kd_study/run.py --jobs 2 --budget-min 60       # train + score what is missing
    python benchmarks/kd_study/run.py --report                       # only rewrite kd_study.{md,json,png}

Teacher: the official CARN-M x4 weights (../shared/weights/carn_m.pth). Students: EDSR 8x32 (default)
or 4x16 (``--student 4x16``). Methods: the option files in options/experiments/kd_study/ (``METHODS``),
each trained by tools/train.py with the same seeds, data order (the sampler is seeded by
``manual_seed``), steps, batch and cosine schedule -- only the loss terms differ. The two fine-tunes
start from the final scratch student of the same seed and student.

Every checkpoint (``net_g_<step>.pth``, every ``--eval-every`` steps) is scored on the validation
split and on B100, Set5, Set14 and Urban100-20 (MATLAB LR files; Y-PSNR/SSIM, crop 4, the
``ckdsr.engine.evaluation`` code of tools/test.py) plus the mean per-channel colour offset (SR - HR, grey
levels). One record per (method, student, seed, step) is appended to ``RECORDS`` (JSON lines); a later
invocation skips what is recorded and resumes an interrupted training run (``--auto_resume``).
``--jobs 2`` runs two single-thread (OMP_NUM_THREADS=1) runs at a time; ``--budget-min`` stops
cleanly: no new run starts after the budget, and running ones get SIGTERM (tools/train.py then
saves a resumable state, engine/graceful_stop.py) and their saved checkpoints are scored.

Loss weights may be re-chosen only on the validation split: a ``--set`` override on a method is
recorded in every record as ``sets`` and ``--tag`` names such a trial, so the file lists every
setting tried (``tried`` in kd_study.json).
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

OPTIONS = ROOT / 'options' / 'experiments' / 'kd_study'
WORK = ROOT / 'benchmarks' / 'kd_study' / 'work'
RESULTS = ROOT / 'benchmarks' / 'results'
RECORDS = RESULTS / 'kd_study_records.jsonl'
TEST_SETS = ('B100', 'Set5', 'Set14', 'Urban100')
ALL_SETS = ('val',) + TEST_SETS
CODEBOOK = WORK / 'carnm_c3_codebook_centred.pth'  # fitted on colour-centred features (centre_colour)

#: method -> option file stem in OPTIONS (the table order of the report)
METHODS = {
    'scratch': 'scratch',
    'logits_kd': 'logits_kd',
    'fakd': 'fakd',
    'facd': 'facd',
    'dckd_offline': 'dckd_offline',              # L1(S,GT) + L1(S,T) + DCL + DMM: logits KD + DCKD
    'dckd_no_kd': 'dckd_no_kd',                  # DCKD's own terms without L1(S,T)
    'dckd_no_dmm': 'dckd_no_dmm',
    'dckd_no_contrastive': 'dckd_no_contrastive',
    'csd': 'csd',
    'csd_joint': 'csd_joint',                    # CSD without its contrastive term (the joint training alone)
    'dukd': 'dukd',
    'l1_finetune': 'l1_finetune',
    'pcl_finetune': 'pcl_finetune',
}
FINETUNES = ('l1_finetune', 'pcl_finetune')     # start from the scratch student of the same seed
NEEDS_CODEBOOK = ('dckd_offline', 'dckd_no_kd', 'dckd_no_dmm', 'dckd_no_contrastive')

#: student -> --set overrides (network and the feature taps of FAKD / FACD at 3/8, 6/8 and the end)
STUDENTS = {
    '8x32': [],
    '4x16': ['network_g.num_feat=16', 'network_g.num_block=4'],
}
STUDENT_METHOD_SETS = {  # per student and method, after STUDENTS (CSD: the full width is 4x the student's)
    '4x16': {'fakd': ['distill.taps.student=[body.1, body.2, conv_after_body]'],
             'facd': ['distill.taps.student=[body.1, body.2, body.3]'],
             'csd': ['network_g.num_feat=64'], 'csd_joint': ['network_g.num_feat=64']},
}


def student_sets(method: str, student: str) -> List[str]:
    return STUDENTS[student] + STUDENT_METHOD_SETS.get(student, {}).get(method, [])

_lock = threading.Lock()


# ----------------------------------------------------------------------------- records
def read_records(path: Path = RECORDS) -> List[Dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_record(path: Path, rec: Dict[str, Any]) -> None:
    """One JSON line per record, appended under a lock (two workers share the file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock, open(path, 'a') as f:
        f.write(json.dumps(rec, sort_keys=True) + '\n')


def run_key(method: str, student: str, seed: int, tag: str = '', steps: int = 0) -> str:
    """The run's folder / record name; a run of another length is another run (its schedule differs)."""
    return f'{method}_{student}_s{seed}' + (f'_n{steps}' if steps else '') + (f'_{tag}' if tag else '')


def done_steps(records, key: str) -> set:
    return {r['step'] for r in records if r['run'] == key}


# ----------------------------------------------------------------------------- scoring
def colour_offset(sr: 'np.ndarray', gt: 'np.ndarray'):
    """Sum over pixels of SR - HR per RGB channel (uint8 HWC images) and the pixel count."""
    import numpy as np
    h, w = min(sr.shape[0], gt.shape[0]), min(sr.shape[1], gt.shape[1])
    d = sr[:h, :w].astype(np.float64) - gt[:h, :w].astype(np.float64)
    return d.reshape(-1, d.shape[-1]).sum(0), h * w


def score_net(net, sets: Dict[str, Path], scale: int = 4) -> Dict[str, Dict[str, Any]]:
    """``{set: {'psnr', 'ssim', 'colour': [R, G, B]}}``: mean Y-PSNR/SSIM (crop ``scale``) and the mean
    SR - HR offset per channel over every pixel of the set (grey levels)."""
    import numpy as np
    from ckdsr.data.benchmark_dataset import BenchmarkDataset
    from ckdsr.engine.evaluation import average, evaluate_dataset, make_forward
    from ckdsr.metrics import tensor2img
    net.eval()
    out = {}
    for name, root in sets.items():
        ds = BenchmarkDataset(str(root), scale=scale)
        total, count = np.zeros(3), 0

        def on_image(i, _name, sr_img):
            nonlocal total, count
            s, n = colour_offset(sr_img, tensor2img(ds[i]['gt']))
            total, count = total + s, count + n

        avg = average(evaluate_dataset(make_forward(net, scale), ds, scale, on_image=on_image))
        out[name] = {'psnr': avg['psnr'], 'ssim': avg['ssim'], 'colour': (total / max(count, 1)).tolist()}
    return out


def eval_sets(names=('val',) + TEST_SETS) -> Dict[str, Path]:
    bench = shared() / 'datasets' / 'benchmark'
    return {n: WORK / 'val' if n == 'val' else bench / n for n in names}


def shared() -> Path:
    env = os.environ.get('CKDSR_SHARED')
    return Path(env) if env else ROOT.parent / 'shared'


def student_net(method: str, student: str, weights: Path):
    """The trained student (CSD: the exported narrow network, ``params_student``)."""
    from ckdsr.models.network_io import build_network, load_weights
    from ckdsr.utils.options import read_yaml
    opt = read_yaml(str(OPTIONS / f'{METHODS[method]}.yml'))  # only the network: no path checks
    cfg = dict(opt['network_g'])
    for s in student_sets(method, student):
        k, v = s.split('=', 1)
        if k.startswith('network_g.'):
            cfg[k.split('.', 1)[1]] = int(v)
    key = 'auto'
    if cfg['type'] == 'SlimmableEDSR':
        width = opt['distill']['csd']['student_width']
        cfg = {'type': 'EDSR', 'num_feat': int(cfg['num_feat'] * width), 'num_block': cfg['num_block']}
        key = 'params_student'
    net = build_network(cfg, 4)
    load_weights(net, str(weights), key, True, str(weights))
    return net


def evaluate_main(args) -> None:
    """``--evaluate METHOD STUDENT WEIGHTS``: print the scores as one JSON line (a worker subprocess)."""
    import torch
    torch.set_num_threads(1)
    method, student, weights = args.evaluate
    print(json.dumps(score_net(student_net(method, student, Path(weights)), eval_sets(args.eval_sets))))


# ----------------------------------------------------------------------------- one run
class Study:
    def __init__(self, args):
        self.args = args
        self.deadline = time.time() + args.budget_min * 60 if args.budget_min else None
        self.procs: Dict[str, subprocess.Popen] = {}

    def over_budget(self) -> bool:
        return self.deadline is not None and time.time() > self.deadline

    def sets_for(self, method: str, student: str, seed: int, key: str) -> List[str]:
        a = self.args
        steps = a.finetune_steps if method in FINETUNES else a.steps
        every = min(a.eval_every, steps)
        sets = [f'name=kd_study_{key}', f'manual_seed={seed}', f'train.total_iter={steps}',
                f'train.scheduler.periods=[{steps}]', f'logger.save_checkpoint_freq={every}',
                f'val.val_freq={steps * 10}', 'logger.print_freq=50']
        sets += student_sets(method, student)
        if method in FINETUNES:
            sets.append(f'path.pretrain_network_g={self.exp_dir(self.scratch_key(student, seed))}'
                        '/models/net_g_latest.pth')
        if method in NEEDS_CODEBOOK:
            sets.append(f'distill.teacher_embedding.codebook_path={CODEBOOK}')
        return sets + list(self.args.set or [])

    def scratch_key(self, student: str, seed: int) -> str:
        """The scratch run the fine-tunes start from: same student, seed and steps, shipped settings."""
        return run_key('scratch', student, seed, '', self.args.steps)

    @staticmethod
    def exp_dir(key: str) -> Path:
        return WORK / 'experiments' / f'kd_study_{key}'

    def fit_codebook(self) -> None:
        with _lock:
            if CODEBOOK.exists():
                return
            subprocess.run([sys.executable, 'tools/fit_codebook.py', '-opt', str(OPTIONS / 'dckd_offline.yml'),
                            '--num-codes', '256', '--num-batches', '50', '--out', str(CODEBOOK)],
                           cwd=ROOT, check=True, env=env1())

    def train(self, method: str, student: str, seed: int, key: str) -> Optional[float]:
        if method in NEEDS_CODEBOOK:
            self.fit_codebook()
        cmd = [sys.executable, 'tools/train.py', '-opt', str(OPTIONS / f'{METHODS[method]}.yml'), '--auto_resume',
               '--set', *self.sets_for(method, student, seed, key)]
        log = self.exp_dir(key).parent / f'{key}.log'
        log.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        with open(log, 'a') as f:
            p = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env1())
            self.procs[key] = p
            signalled = False
            while p.poll() is None:
                if self.over_budget() and not signalled:
                    p.send_signal(signal.SIGTERM)  # graceful: finish the step, save a state, exit
                    signalled = True
                time.sleep(2)
            del self.procs[key]
        dt = time.time() - t0
        if p.returncode not in (0, 143):
            print(f'[{key}] tools/train.py failed (exit {p.returncode}); see {log}', flush=True)
            return None
        return dt

    def score_checkpoints(self, method: str, student: str, seed: int, key: str, train_s: float) -> int:
        models = self.exp_dir(key) / 'models'
        have = done_steps(read_records(self.args.records), key)
        total = self.args.finetune_steps if method in FINETUNES else self.args.steps
        every = min(self.args.eval_every, total)
        n = 0
        for ck in sorted(models.glob('net_g_[0-9]*.pth'), key=lambda p: int(p.stem.split('_')[-1])):
            step = int(ck.stem.split('_')[-1])
            if step in have or (step % every and step != total):  # not a stop-time export
                continue
            names = ALL_SETS if step == total else self.args.curve_sets
            out = subprocess.run([sys.executable, __file__, '--evaluate', method, student, str(ck),
                                  '--eval-sets', *names], cwd=ROOT,
                                 capture_output=True, text=True, env=env1())
            if out.returncode:
                print(f'[{key}] scoring {ck.name} failed:\n{out.stderr[-2000:]}', flush=True)
                continue
            rec = {'run': key, 'method': method, 'student': student, 'seed': seed, 'step': step, 'tag': self.args.tag,
                   'sets': list(self.args.set or []), 'total_steps': total, 'train_s': train_s,
                   'scores': json.loads(out.stdout.strip().splitlines()[-1]),
                   'time': time.strftime('%Y-%m-%d %H:%M:%S')}
            append_record(self.args.records, rec)
            n += 1
        return n

    def unit(self, method: str, student: str, seed: int) -> None:
        total = self.args.finetune_steps if method in FINETUNES else self.args.steps
        key = run_key(method, student, seed, self.args.tag, total)
        if total in done_steps(read_records(self.args.records), key) or self.over_budget():
            return
        if method in FINETUNES:
            base = self.exp_dir(self.scratch_key(student, seed)) / 'models' / 'net_g_latest.pth'
            if not base.exists():
                print(f'[{key}] skipped: needs the scratch student {base}', flush=True)
                return
        print(f'[{key}] training', flush=True)
        dt = self.train(method, student, seed, key)
        if dt is None:
            return
        n = self.score_checkpoints(method, student, seed, key, dt)
        print(f'[{key}] {dt / 60:.1f} min training, {n} checkpoints scored', flush=True)

    def run(self) -> None:
        a = self.args
        order = [(m, st, s) for s in a.seeds for st in a.students for m in a.methods if m not in FINETUNES]
        order += [(m, st, s) for s in a.seeds for st in a.students for m in a.methods if m in FINETUNES]
        with ThreadPoolExecutor(max_workers=a.jobs) as pool:
            list(pool.map(lambda u: self.unit(*u), order))


def env1() -> Dict[str, str]:
    """The environment of a worker: one thread."""
    return {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--methods', nargs='*', default=list(METHODS), choices=list(METHODS))
    p.add_argument('--students', nargs='*', default=['4x16'], choices=list(STUDENTS))
    p.add_argument('--seeds', nargs='*', type=int, default=[0, 1, 2])
    # defaults: the plan of README.md (scratch 4x16 flattens at ~1000 steps on the validation split)
    p.add_argument('--steps', type=int, default=1000, help='training steps of every non-fine-tune run')
    p.add_argument('--finetune-steps', type=int, default=200, help='steps of l1_finetune / pcl_finetune')
    p.add_argument('--eval-every', type=int, default=250, help='checkpoint (and scoring) period in steps')
    p.add_argument('--curve-sets', nargs='*', default=['val', 'Set5', 'Set14'], choices=list(ALL_SETS),
                   help='sets scored at intermediate checkpoints (the final one: all); scoring all five takes '
                        'minutes per checkpoint on one thread')
    p.add_argument('--jobs', type=int, default=2, help='single-thread runs at a time')
    p.add_argument('--budget-min', type=float, default=None, help='stop cleanly after this many minutes')
    p.add_argument('--set', nargs='*', default=[], help='extra overrides for every run (recorded as a trial)')
    p.add_argument('--tag', default='', help='name of a validation trial (its runs get their own folders)')
    p.add_argument('--records', type=Path, default=RECORDS, help='the JSON-lines record file (default: %(default)s)')
    p.add_argument('--report', action='store_true', help='only write benchmarks/results/kd_study.{md,json,png}')
    p.add_argument('--evaluate', nargs=3, metavar=('METHOD', 'STUDENT', 'WEIGHTS'), help=argparse.SUPPRESS)
    p.add_argument('--eval-sets', nargs='*', default=list(ALL_SETS), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.evaluate:
        return evaluate_main(args)
    if args.set and not args.tag:
        raise SystemExit('--set changes what a method trains: name the trial with --tag (its runs and records '
                         'are kept apart from the shipped settings)')
    if not args.report:
        if not (WORK / 'train_HR_sub_raw.lmdb').exists():
            raise SystemExit('no training data: run python benchmarks/kd_study/prepare_data.py first')
        Study(args).run()
    if args.records == RECORDS:  # the study's own file: regenerate kd_study.{md,json,png}
        from benchmarks.kd_study.report import write_report
        write_report(read_records())


if __name__ == '__main__':
    main()
