"""train.log's reproducibility lines (engine/run_info.py), the per-validation 'scored:' line, the
net_g_best change line, and the interactive progress bar (utils/progress.training_bar)."""
import io
import logging
import shutil
import subprocess
import sys

import pytest
import torch
from torch import nn

from ckdsr.engine import run_info
from tests.helpers.kd import tiny_kd_options
from tests.helpers.tiny_run import write_options
from ckdsr.utils.complexity import params_text
from ckdsr.utils.options import load_options
from ckdsr.utils.progress import MessageLogger, training_bar

L1 = [{'name': 'l_pix', 'type': 'L1Loss', 'weight': 1.0, 'inputs': {'pred': 'sr', 'target': 'gt'}}]


# ---------------------------------------------------------------- pieces
def test_overrides_are_the_values_after_set_and_force_yml():
    argv = ['tools/train.py', '-opt', 'a.yml', '--set', 'train.total_iter=3', 'val.val_freq=1',
            '--auto_resume', '--force_yml', 'train:ema_decay=0.9']
    assert run_info.overrides(argv) == ['train.total_iter=3', 'val.val_freq=1', 'train:ema_decay=0.9']
    assert run_info.overrides(['tools/train.py', '-opt', 'a.yml']) == []
    assert run_info.command_line(['train.py', '--set', 'name=a b']) == "train.py --set 'name=a b'"


def test_git_state_outside_a_checkout_and_without_git(tmp_path, monkeypatch):
    if shutil.which('git'):
        assert run_info.git_state(str(tmp_path)) == f'not a git checkout ({tmp_path})'

    def no_git(*args, **kwargs):
        raise FileNotFoundError('git')
    monkeypatch.setattr(run_info.subprocess, 'run', no_git)
    assert run_info.git_state(str(tmp_path)) == 'unknown (git not found)'


@pytest.mark.skipif(shutil.which('git') is None, reason='needs the git executable')
def test_git_state_gives_the_commit_and_the_dirty_flag(tmp_path):
    def git(*args):
        return subprocess.run(['git', '-C', str(tmp_path), '-c', 'user.name=t', '-c', 'user.email=t@t',
                               *args], capture_output=True, text=True, check=True).stdout.strip()
    git('init', '-q')
    (tmp_path / 'f.py').write_text('a = 1\n')
    git('add', 'f.py')
    git('commit', '-q', '-m', 'c')
    head = git('rev-parse', 'HEAD')
    assert run_info.git_state(str(tmp_path)) == f'{head} (clean)'
    (tmp_path / 'f.py').write_text('a = 2\n')
    assert run_info.git_state(str(tmp_path)) == f'{head} (dirty: uncommitted changes)'
    inner = tmp_path / 'site-packages' / 'ckdsr'  # an installed copy inside another repository
    inner.mkdir(parents=True)
    assert run_info.git_state(str(inner)) == f'not a git checkout ({inner})'


def test_launcher_from_the_environment():
    assert run_info.launcher(1, {}) == 'none (single process)'
    assert run_info.launcher(2, {'RANK': '0', 'TORCHELASTIC_RUN_ID': 'x'}) == 'pytorch (torchrun)'
    assert run_info.launcher(2, {'RANK': '0', 'SLURM_PROCID': '0'}) == 'slurm'
    assert run_info.launcher(2, {'RANK': '0'}) == 'pytorch (env://)'


def test_params_text():
    assert params_text(1234567) == 'params 1,234,567 (1.235M)'
    assert params_text(10, 10) == 'params 10 (0.000M)'
    assert params_text(10, 4) == 'params 10 (0.000M) (6 frozen)'
    assert params_text(10, 0) == 'params 10 (0.000M) (frozen)'


class _Component:
    def __init__(self, name, **nets):
        self.name = name
        self.__dict__.update(nets)


def test_helper_nets_skip_the_teacher_and_shared_modules():
    teacher = nn.Conv2d(3, 3, 1)                              # 12 params
    regressor = nn.Linear(4, 2)                               # 10 params
    comps = [_Component('facd', regressors=nn.ModuleList([regressor]), wrapped_teacher=nn.Sequential(teacher)),
             _Component('pcl', net_d=nn.Linear(2, 1), same=regressor, seed=3)]
    found = run_info.helper_nets(comps, skip=[teacher])
    assert [name for name, _ in found] == ['facd.regressors', 'pcl.net_d']


# ---------------------------------------------------------------- a tiny KD run
def _train(tmp_path, monkeypatch, argv, **changes):
    from ckdsr.engine.trainer import Trainer
    opt = tiny_kd_options(tmp_path, L1, **changes.pop('train', {}))
    for section, values in changes.items():
        opt[section].update(values)
    monkeypatch.setattr(sys, 'argv', argv)
    Trainer(load_options(str(write_options(opt, tmp_path / 'o.yml')))).run()
    return (tmp_path / 'experiments' / 'tiny' / 'train.log').read_text()


def test_kd_train_log_says_how_to_reproduce_the_run(tmp_path, monkeypatch):
    argv = ['tools/train.py', '-opt', 'o.yml', '--set', 'train.ema_decay=0.9']
    log = _train(tmp_path, monkeypatch, argv, train={'ema_decay': 0.9})
    assert f'command line: {sys.executable} tools/train.py -opt o.yml --set train.ema_decay=0.9' in log
    assert 'option overrides: train.ema_decay=0.9' in log
    assert 'git commit ' in log or 'not a git checkout' in log
    assert f'torch {torch.__version__}, CUDA ' in log and 'cuDNN ' in log and 'python 3.' in log
    assert 'host: ' in log and 'processes: world size 1, launcher none (single process)' in log
    assert 'device: cpu' in log
    # EDSR num_feat 8, num_block 2 student; num_feat 16, num_block 2 teacher (tests/helpers/kd.py)
    from ckdsr.models.network_io import build_network
    n_s = sum(p.numel() for p in build_network({'type': 'EDSR', 'num_feat': 8, 'num_block': 2}, 2).parameters())
    n_t = sum(p.numel() for p in build_network({'type': 'EDSR', 'num_feat': 16, 'num_block': 2}, 2).parameters())
    assert f'network student network_g: EDSR  params {n_s:,} ' in log and '(+ EMA copy, decay 0.9)' in log
    assert f'network teacher network_t: EDSR  params {n_t:,} ({n_t / 1e6:.3f}M) (frozen)' in log
    assert 'validating network_g @ iter 3, scored: ema' in log and 'validating network_g @ iter 6, scored: ema' in log
    first = [ln for ln in log.splitlines() if 'validation tinyval @ iter 3: psnr: ' in ln][0]
    psnr3 = first.split('psnr: ')[1]
    assert f'net_g_best changed: psnr on tinyval none -> {psnr3} (iter 3)' in log
    assert 'teacher check on tinyval: teacher psnr ' in log and ' vs bicubic ' in log
    # the stand-in teacher has random weights: below bicubic, a warning
    assert 'WARNING: the teacher (network_t) scores psnr' in log and 'BELOW bicubic' in log
    # the reproducibility lines come before any training
    assert log.index('command line:') < log.index('teacher check') < log.index('[epoch:')


def test_raw_scoring_no_teacher_check_and_a_progress_bar_on_a_terminal(tmp_path, monkeypatch):
    class FakeTTY(io.StringIO):
        def isatty(self):
            return True
    tty = FakeTTY()
    monkeypatch.setattr(sys, 'stderr', tty)
    log = _train(tmp_path, monkeypatch, ['train.py'], val={'check_teacher': False, 'val_freq': 6})
    assert 'validating network_g @ iter 6, scored: raw (network_g itself, no EMA)' in log
    assert 'teacher check' not in log and 'BELOW bicubic' not in log
    assert 'net_g_best changed: psnr on tinyval none -> ' in log
    bar = tty.getvalue()
    assert 'train: 100%' in bar and '6/6' in bar
    assert 'l_pix: ' in bar  # the losses of the last progress line, as the bar's postfix


def test_training_bar_is_off_without_a_terminal_and_logs_go_through_it():
    with training_bar(5, enabled=True, stream=io.StringIO()) as bar:
        assert bar is None  # a file or pipe: nothing changes

    class FakeTTY(io.StringIO):
        def isatty(self):
            return True
    tty = FakeTTY()
    log = logging.getLogger('ckdsr.test_bar')
    log.propagate = False
    handler = logging.StreamHandler(tty)
    log.addHandler(handler)
    try:
        with training_bar(4, start_iter=1, stream=tty, logger=log) as bar:
            assert bar is not None and bar.n == 1
            assert not isinstance(handler.stream, io.StringIO)  # written through tqdm.write meanwhile
            msg = MessageLogger(total_iter=4, start_iter=1, bar=bar, clock=iter(range(100)).__next__)
            msg.start()
            for _ in range(3):
                msg.data_done()
                msg.iter_done()
            log.warning('a line while the bar is shown')
            assert bar.n == 4
        assert handler.stream is tty
    finally:
        log.removeHandler(handler)
    assert 'a line while the bar is shown\n' in tty.getvalue()
