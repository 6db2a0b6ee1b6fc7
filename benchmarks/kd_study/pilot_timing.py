"""Per-step training time of each study method at the study shapes (one thread), for sizing the study.

    python benchmarks/kd_study/pilot_timing.py [--methods ...] [--steps 30] [--student 8x32] [--set ...]

Each method's option file is trained for ``--steps`` steps by tools/train.py (OMP_NUM_THREADS=1, a
scratch folder under benchmarks/kd_study/work/timing); the time per step is read from the last
logged it/s (steady state: the first logging window, with start-up, is not used) and appended with
the machine load to benchmarks/kd_study/work/timing.jsonl. The teacher, codebook fit and scoring are
not timed here (see README.md for those).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from benchmarks.kd_study.run import (CODEBOOK, METHODS, NEEDS_CODEBOOK, OPTIONS, STUDENTS, WORK,  # noqa: E402
                                     env1, student_sets)

IT_S = re.compile(r'iter:\s*(\d+)/\d+.*?\]\s*([\d.]+) it/s')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--methods', nargs='*', default=list(METHODS), choices=list(METHODS))
    p.add_argument('--steps', type=int, default=30)
    p.add_argument('--student', default='8x32', choices=list(STUDENTS))
    p.add_argument('--set', nargs='*', default=[], help='shape overrides, e.g. datasets.train.gt_size=64')
    args = p.parse_args(argv)
    out = WORK / 'timing.jsonl'
    for m in args.methods:
        name = f'timing_{m}_{args.student}'
        sets = [f'name={name}', f'train.total_iter={args.steps}', f'train.scheduler.periods=[{args.steps}]',
                f'logger.print_freq={args.steps // 3}', f'val.val_freq={args.steps * 10}',
                f'logger.save_checkpoint_freq={args.steps * 10}', f'path.experiments_root={WORK / "timing"}']
        sets += student_sets(m, args.student)
        if m in NEEDS_CODEBOOK:
            sets.append(f'distill.teacher_embedding.codebook_path={CODEBOOK}')
        if m in ('l1_finetune', 'pcl_finetune'):
            sets.append('path.pretrain_network_g=~')  # timing only: a random start costs the same
        cmd = [sys.executable, 'tools/train.py', '-opt', str(OPTIONS / f'{METHODS[m]}.yml'), '--set', *sets, *args.set]
        t0 = time.time()
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env1())
        wall = time.time() - t0
        rates = IT_S.findall(res.stdout + res.stderr)
        if res.returncode or not rates:
            print(f'{m}: failed (exit {res.returncode})\n{(res.stdout + res.stderr)[-1500:]}', flush=True)
            continue
        s_step = 1.0 / float(rates[-1][1])
        rec = {'method': m, 'student': args.student, 'sets': args.set, 'steps': args.steps, 's_per_step': s_step,
               'wall_s': wall, 'load': os.getloadavg()[0], 'time': time.strftime('%Y-%m-%d %H:%M:%S')}
        with open(out, 'a') as f:
            f.write(json.dumps(rec) + '\n')
        print(f'{m:22s} {s_step:6.3f} s/step  (wall {wall:5.1f} s for {args.steps} steps, load {rec["load"]:.1f})',
              flush=True)


if __name__ == '__main__':
    main()
