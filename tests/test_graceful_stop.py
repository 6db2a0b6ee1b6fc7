"""SIGINT / SIGTERM: the current step finishes, every rank agrees, a training state is written, one
line is printed, the exit status is 128 + signal (130 / 143), and --auto_resume continues bit-exactly."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers.chaos import REPO, assert_same_experiment, run_child, run_ddp_children
from tests.helpers.tiny_run import tiny_sr_options, write_options


def _options(tmp: Path, total: int, workers: int = 0):
    opt = tiny_sr_options(tmp, total_iter=total)
    # 60 steps per epoch: no worker restarts within a run
    opt['datasets']['train'].update(num_worker_per_gpu=workers, dataset_enlarge_ratio=20)
    opt['logger'].update(save_checkpoint_freq=5, print_freq=1000)
    opt['val']['val_freq'] = 5
    opt['path']['experiments_root'] = str(tmp / 'ref')
    ref = write_options(opt, tmp / 'ref.yml')
    opt['path']['experiments_root'] = str(tmp / 'run')
    return ref, write_options(opt, tmp / 'run.yml')


def _stop_lines(text: str, name: str):
    return [line for line in text.splitlines() if f'stopped by {name} at iter' in line]


@pytest.mark.parametrize('signum,to_group', [pytest.param(signal.SIGTERM, False, marks=pytest.mark.slow),
                                             (signal.SIGINT, True)])
def test_a_signalled_command_saves_prints_one_line_and_resumes_exactly(tmp_path, signum, to_group):
    """The real command with a DataLoader worker; SIGINT goes to the whole process group, as Ctrl-C
    in a terminal does (the worker gets it too)."""
    total = 30
    ref_file, run_file = _options(tmp_path, total, workers=1)
    states = tmp_path / 'run' / 'tiny' / 'training_states'
    child = subprocess.Popen([sys.executable, str(REPO / 'tools' / 'train.py'), '-opt', str(run_file)], cwd=REPO,
                             env={**os.environ, 'OMP_NUM_THREADS': '1'}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (states.is_dir() and any(f.endswith('.state') for f in os.listdir(states))):
        time.sleep(0.005)
    (os.killpg if to_group else os.kill)(child.pid, signum)
    out, err = child.communicate(timeout=120)
    name = signal.Signals(signum).name
    assert child.returncode == 128 + signum, err[-3000:]
    assert 'Traceback' not in err and len(_stop_lines(err, name)) == 1, err[-3000:]
    stopped_at = int(_stop_lines(err, name)[0].split(' at iter ')[1].split(':')[0])
    assert stopped_at < total, 'the run finished before the signal'
    assert (states / f'{stopped_at}.state').is_file()
    log = tmp_path / 'child.log'
    assert run_child(['-opt', str(run_file), '--auto_resume'], log) == 0, log.read_text()[-3000:]
    assert f'resumed from {states / f"{stopped_at}.state"}' in log.read_text()
    assert run_child(['-opt', str(ref_file)], log) == 0
    assert_same_experiment(tmp_path / 'ref' / 'tiny', tmp_path / 'run' / 'tiny', total)
    # a stop state at an iteration that is no save point exports no net_g_<iter>.pth
    assert not (tmp_path / 'run' / 'tiny' / 'models' / f'net_g_{stopped_at}.pth').exists() or stopped_at % 5 == 0


def test_stop_during_start_up_and_second_signal(tmp_path):
    """A signal while the run is being built stops it before its first step (state at iter 0); a second
    signal stops at once with one line (exit 130) and keeps the newest complete state."""
    total = 12
    ref_file, run_file = _options(tmp_path, total)
    log = tmp_path / 'child.log'
    argv = ['-opt', str(run_file), '--auto_resume']
    # the first write of a run is its options.yml, before the model is trained at all
    assert run_child(argv, log, ('write', 1, 'before_replace'), signal.SIGTERM) == 143
    assert _stop_lines(log.read_text(), 'SIGTERM') == [line for line in log.read_text().splitlines()
                                                        if 'stopped by SIGTERM at iter 0: training state saved' in line]
    states = tmp_path / 'run' / 'tiny' / 'training_states'
    assert os.listdir(states) == ['0.state']

    original_kill = os.kill

    def double(pid, sig):  # the plan's signal, sent twice in a row
        original_kill(pid, sig)
        original_kill(pid, sig)
    os.kill = double
    try:
        rc = run_child(argv, log, ('step', 7), signal.SIGTERM)
    finally:
        os.kill = original_kill
    text = log.read_text()
    assert rc == 130 and 'Traceback' not in text, text[-3000:]
    assert text.rstrip().splitlines()[-1] == ('error: interrupted; nothing more was saved (the newest complete '
                                               'training state is kept: continue with --auto_resume)')
    assert sorted(os.listdir(states), key=lambda f: int(f.split('.')[0])) == ['0.state', '5.state']
    assert run_child(argv, log) == 0
    assert run_child(['-opt', str(ref_file)], log) == 0
    assert_same_experiment(tmp_path / 'ref' / 'tiny', tmp_path / 'run' / 'tiny', total)


def test_two_process_gloo_all_ranks_stop_together_and_resume_exactly(tmp_path):
    """SIGTERM reaches rank 1 only: both ranks stop after the same step, one state holds both ranks'
    RNG, and a 2-process --auto_resume ends equal to an uninterrupted 2-process run."""
    total = 12
    ref_file, run_file = _options(tmp_path, total)
    log = tmp_path / 'ddp.log'
    codes = run_ddp_children(['-opt', str(run_file), '--auto_resume'], log, plans={1: ('step', 7)})
    text = log.read_text()
    assert codes == [143, 143], text[-3000:]
    assert len(_stop_lines(text, 'SIGTERM')) == 1 and 'stopped by SIGTERM at iter 7' in text  # printed by rank 0
    state = torch.load(tmp_path / 'run' / 'tiny' / 'training_states' / '7.state', weights_only=False)
    assert state['world_size'] == 2 and len(state['rng']) == 2
    assert run_ddp_children(['-opt', str(run_file), '--auto_resume'], log) == [0, 0], log.read_text()[-3000:]
    assert run_ddp_children(['-opt', str(ref_file)], log) == [0, 0], log.read_text()[-3000:]
    assert_same_experiment(tmp_path / 'ref' / 'tiny', tmp_path / 'run' / 'tiny', total)


def test_stop_request_flags_the_first_signal_raises_on_the_second_and_restores_handlers():
    from ckdsr.engine.graceful_stop import StopRequest, stop_exit_code
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with StopRequest() as stop:
        assert not stop.agreed() and stop.name == ''
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)  # the handler runs in the main thread at the next bytecode
        assert stop.agreed() and stop.name == 'SIGTERM'
        with pytest.raises(KeyboardInterrupt, match='second SIGINT: stopping without saving'):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
    assert {s: signal.getsignal(s) for s in before} == before
    assert (stop_exit_code(signal.SIGINT), stop_exit_code(signal.SIGTERM)) == (130, 143)
