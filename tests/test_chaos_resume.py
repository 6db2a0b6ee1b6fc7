"""Chaos: runs killed (SIGKILL) or stopped (SIGTERM, SIGINT) at random moments and inside checkpoint
writes, each time continued with --auto_resume, end with exactly the files of an uninterrupted run.

Three kinds of run: from scratch, KD with an EMA student, and offline DCKD (history model built from
the EMA student, teacher-feature embedding with a codebook). The quick variant kills each with SIGKILL
6 times (5 planned moments, each kind of moment once, and one timed), and stops scratch with SIGTERM
and KD-with-EMA with SIGINT 6 times; the slow one does every kind of run with every signal, 13 times,
in longer runs.
"""
import random
import signal
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ckdsr.models.distill.teacher_embedding import save_codebook
from tests.helpers.chaos import assert_same_experiment, random_plans, run_child
from tests.helpers.kd import tiny_kd_options
from tests.helpers.tiny_run import tiny_sr_options, write_options

KD_LOSSES = [{'type': 'L1Loss'}, {'type': 'L1Loss', 'name': 'l_kd', 'inputs': {'target': 'teacher_sr'}}]
DCKD_TEACHER = {'type': 'EDSR', 'num_feat': 16, 'num_block': 2}
DCKD_LOSSES = KD_LOSSES + [{'type': 'ContrastiveRatioLoss', 'weight': 0.1, 'name': 'l_dcl', 'weights': [0.5, 1.0]},
                           {'type': 'DMMLoss', 'weight': 0.001, 'name': 'l_ce'}]


def scratch_options(tmp: Path, total: int):
    return tiny_sr_options(tmp, total_iter=total)


def kd_ema_options(tmp: Path, total: int):
    return tiny_kd_options(tmp, KD_LOSSES, ema_decay=0.9, total_iter=total)


def dckd_offline_options(tmp: Path, total: int):
    codebook = save_codebook(str(tmp / 'cb.pth'), F.normalize(torch_randn(8, 16), dim=1),
                             {'z_tap': 'body.1', 'normalize_z': True, 'downscale': 2})
    distill = {'teacher_embedding': {'taps': ['body.0', 'body.1'], 'z_tap': 'body.1', 'codebook_path': codebook},
               'history': {'source': 'ema', 'schedule': [[1000, 2]], 'num_degraded': 2}}
    return tiny_kd_options(tmp, DCKD_LOSSES, distill, teacher=DCKD_TEACHER, ema_decay=0.9, total_iter=total)


def torch_randn(*shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(3))


BUILDERS = {'scratch': scratch_options, 'kd_ema': kd_ema_options, 'dckd_offline': dckd_offline_options}


def chaos_run(tmp: Path, kind: str, signum: int, n_kills: int, total: int, seed: int, max_step: int = 4):
    """Reference run, then a run interrupted ``n_kills`` times by ``signum`` (plans + one unplanned
    moment), finished with --auto_resume; asserts the two experiments are identical."""
    opt = BUILDERS[kind](tmp, total)
    opt['logger'].update(save_checkpoint_freq=3, print_freq=100)
    opt['val']['val_freq'] = 2  # validations at 2, 4, 6...: some at save iterations, some between
    opt['path']['experiments_root'] = str(tmp / 'ref')
    ref_file = write_options(opt, tmp / 'ref.yml')
    opt['path']['experiments_root'] = str(tmp / 'chaos')
    chaos_file = write_options(opt, tmp / 'chaos.yml')
    log = tmp / 'child.log'
    t0 = time.time()
    assert run_child(['-opt', str(ref_file)], log) == 0, log.read_text()[-3000:]
    ref_seconds = time.time() - t0

    rng = random.Random(seed)
    plans = random_plans(rng, n_kills, max_step=max_step, max_write=max_step + 2)
    stopped_code = -signal.SIGKILL if signum == signal.SIGKILL else 128 + signum
    interrupted, runs = 0, 0
    argv = ['-opt', str(chaos_file), '--auto_resume']
    for plan in ['unplanned'] + plans:  # the timed kill first, while most of the run is ahead
        runs += 1
        if plan == 'unplanned':
            rc = run_child(argv, log, signum=signum, after_s=rng.uniform(0.2, 0.5) * ref_seconds)
        else:
            rc = run_child(argv, log, plan, signum)
        assert rc in (0, stopped_code), (plan, rc, log.read_text()[-3000:])
        interrupted += rc == stopped_code
    while interrupted < n_kills:  # plans that fell after the end of a run: kill inside its first writes
        runs += 1
        rc = run_child(argv, log, ('write', rng.randint(1, 2), 'mid'), signum)
        assert rc in (0, stopped_code), (rc, log.read_text()[-3000:])
        interrupted += rc == stopped_code
        assert runs < 4 * n_kills, log.read_text()[:8000]
    assert run_child(argv, log) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert 'Traceback' not in text, text[-3000:]
    if signum != signal.SIGKILL:
        name = signal.Signals(signum).name
        assert text.count(f'stopped by {name} at iter') == interrupted
    exp = 'tiny'
    return assert_same_experiment(tmp / 'ref' / exp, tmp / 'chaos' / exp, total), text


@pytest.mark.parametrize('kind', list(BUILDERS))
def test_sigkill_chaos_resumes_bit_exactly(tmp_path, kind):
    _, text = chaos_run(tmp_path, kind, signal.SIGKILL, n_kills=5, total=12, seed=sum(map(ord, kind)), max_step=3)
    assert 'resumed from' in text
    assert '(left by an interrupted write)' in text  # the kill inside torch.save left a temp file


@pytest.mark.parametrize('kind,signum', [('scratch', signal.SIGTERM), ('kd_ema', signal.SIGINT)])
def test_graceful_stop_chaos_resumes_bit_exactly(tmp_path, kind, signum):
    # a graceful stop keeps every finished step: longer runs, earlier stops
    chaos_run(tmp_path, kind, signum, n_kills=5, total=30, seed=11, max_step=2)


@pytest.mark.slow
@pytest.mark.parametrize('signum', [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize('kind', list(BUILDERS))
def test_long_chaos_resumes_bit_exactly(tmp_path, kind, signum):
    graceful = signum != signal.SIGKILL
    chaos_run(tmp_path, kind, signum, n_kills=12, total=60 if graceful else 30, seed=int(signum) * 7 + len(kind),
              max_step=3 if graceful else 5)
