"""Experiment folders are never reused or touched by a run that does not start; --auto_resume is loud
about torn states; run-time failures (full disk, NaN stop, changed network, total_iter) are one
``error:`` line (exit 2) that leaves every checkpoint as it was."""
import errno
import os
import re
from pathlib import Path

import pytest
import torch

from tests.helpers.chaos import TRAIN_CLI
from tests.helpers.tiny_run import tiny_sr_options, write_options


@pytest.fixture(autouse=True)
def fresh_console_logger():
    """Drop the 'ckdsr' handlers an earlier test bound to its (now closed) captured stderr."""
    import logging
    lg = logging.getLogger('ckdsr')
    for h in list(lg.handlers):
        lg.removeHandler(h)
    yield
    for h in list(lg.handlers):
        lg.removeHandler(h)
        h.close()


def _snapshot(root: Path):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


def _main(capsys, opt_file, *extra):
    rc = TRAIN_CLI.main(['-opt', str(opt_file), *extra])
    return rc, capsys.readouterr().err


def _error_lines(err: str):
    return [line for line in err.splitlines() if line.startswith('error:')]


@pytest.fixture
def finished(tmp_path, capsys):
    """A finished 6-iteration run (states 3 and 6) and its option file."""
    opt = tiny_sr_options(tmp_path)
    opt_file = write_options(opt, tmp_path / 'o.yml')
    assert _main(capsys, opt_file)[0] == 0
    return tmp_path, opt, opt_file, tmp_path / 'experiments' / 'tiny'


def test_rerun_without_auto_resume_archives_the_old_folder(finished, capsys):
    tmp, opt, opt_file, exp = finished
    old = _snapshot(exp)
    rc, err = _main(capsys, opt_file, '--set', 'train.total_iter=4')
    assert rc == 0, err
    archived = [p for p in (tmp / 'experiments').iterdir() if p.name.startswith('tiny_archived_')]
    assert len(archived) == 1 and re.fullmatch(r'tiny_archived_\d{8}_\d{6}', archived[0].name)
    assert _snapshot(archived[0]) == old  # moved untouched
    assert f'experiment folder {exp} existed: archived it as {archived[0]}' in (exp / 'train.log').read_text()
    # the new run keeps its own states (no older 6.state outranks them) ...
    assert sorted(os.listdir(exp / 'training_states')) == ['3.state', '4.state']
    assert 'net_g_6.pth' not in os.listdir(exp / 'models')
    # ... and --auto_resume continues the new run, not the archived one
    rc, err = _main(capsys, opt_file, '--set', 'train.total_iter=4', '--auto_resume')
    assert rc == 0 and 'resumed from' in (exp / 'train.log').read_text()
    assert (exp / 'train.log').read_text().count('resumed from') == 1
    assert re.search(r'resumed from \S+/4\.state at iter 4', (exp / 'train.log').read_text())
    # a second re-run in the same second gets its own archive name
    assert _main(capsys, opt_file, '--set', 'train.total_iter=3')[0] == 0
    assert _main(capsys, opt_file, '--set', 'train.total_iter=3')[0] == 0
    assert len([p for p in (tmp / 'experiments').iterdir() if p.name.startswith('tiny_archived_')]) == 3


def test_a_run_that_fails_to_start_writes_nothing(finished, capsys, monkeypatch):
    tmp, opt, opt_file, exp = finished
    old = _snapshot(exp)
    import ckdsr.engine.trainer as trainer_module

    def broken(*a, **k):
        raise RuntimeError('model build failed')
    monkeypatch.setattr(trainer_module, 'build_model', broken)
    with pytest.raises(RuntimeError, match='model build failed'):
        TRAIN_CLI.main(['-opt', str(opt_file), '--set', 'train.total_iter=9'])
    assert _snapshot(exp) == old  # no options.yml rewrite, no log line, no archive
    assert sorted(p.name for p in (tmp / 'experiments').iterdir()) == ['tiny']


@pytest.mark.parametrize('value', [0, -5])
def test_total_iter_below_one_is_refused_before_anything_is_written(finished, capsys, value):
    tmp, opt, opt_file, exp = finished
    old = _snapshot(exp)
    rc, err = _main(capsys, opt_file, '--set', f'train.total_iter={value}')
    assert rc == 2 and len(_error_lines(err)) == 1 and 'train.total_iter' in err, err
    assert 'Traceback' not in err
    assert _snapshot(exp) == old  # net_g_latest.pth keeps the trained weights


def test_resuming_past_total_iter_is_an_error(finished, capsys):
    """(The key's source is --set here: the value came from there.)"""
    tmp, opt, opt_file, exp = finished
    old = _snapshot(exp)
    rc, err = _main(capsys, opt_file, '--set', 'train.total_iter=4', '--auto_resume')
    assert rc == 2
    assert _error_lines(err) == [f'error: --set: train.total_iter: 4 is below the iteration of training state '
                                 f'{exp}/training_states/6.state (6): nothing to train; raise it, or start over '
                                 'without --auto_resume (the old folder is archived)']
    assert _snapshot(exp) == old


def test_auto_resume_warns_about_each_torn_state_and_refuses_when_none_is_readable(finished, capsys):
    tmp, opt, opt_file, exp = finished
    states = exp / 'training_states'
    good = (states / '6.state').read_bytes()
    (states / '9.state').write_bytes(good[:len(good) // 3])   # truncated
    (states / '12.state').write_bytes(b'')                     # empty
    rc, err = _main(capsys, opt_file, '--set', 'train.total_iter=12', '--auto_resume')
    assert rc == 0, err
    log = (exp / 'train.log').read_text()
    for name in ('12.state', '9.state'):
        assert (f'WARNING: --auto_resume: skipped unreadable training state {states / name} '
                '(truncated or corrupt)') in log
    assert f'resumed from {states / "6.state"} at iter 6' in log

    for f in states.iterdir():  # now every state is torn
        f.write_bytes(f.read_bytes()[:50])
    old = _snapshot(exp)
    rc, err = _main(capsys, opt_file, '--set', 'train.total_iter=20', '--auto_resume')
    assert rc == 2 and len(_error_lines(err)) == 1, err
    assert _error_lines(err) == [f'error: --auto_resume: none of the 3 training state(s) in {states} is readable '
                                 '(truncated or corrupt: 12.state, 9.state, 6.state); not restarting over them: move '
                                 'the folder away to start again, or set path.resume_state']
    assert _snapshot(exp) == old and not any('archived' in p.name for p in (tmp / 'experiments').iterdir())
    # naming a torn state explicitly
    rc, err = _main(capsys, opt_file, '--set', 'train.total_iter=20', f'path.resume_state={states / "9.state"}')
    assert rc == 2 and len(_error_lines(err)) == 1, err
    assert _error_lines(err)[0].startswith(f'error: --set: path.resume_state: checkpoint file {states / "9.state"} '
                                           'is corrupt or incomplete (')
    assert _snapshot(exp) == old


def test_leftover_temp_files_are_removed_on_resume(finished, capsys):
    tmp, opt, opt_file, exp = finished
    leftovers = [exp / 'models' / 'net_g_9.pth.tmp-4242', exp / 'training_states' / '9.state.tmp-4242',
                 exp / 'options.yml.tmp-77']
    for p in leftovers:
        p.write_bytes(b'')
    keep = exp / 'models' / 'notes.tmp-draft'  # not an interrupted write's name
    keep.write_text('mine')
    rc, err = _main(capsys, opt_file, '--set', 'train.total_iter=9', '--auto_resume')
    assert rc == 0, err
    assert not any(p.exists() for p in leftovers) and keep.exists()
    log = (exp / 'train.log').read_text()
    for p in leftovers:
        assert f'removed {p} (left by an interrupted write)' in log


def test_resuming_into_a_changed_network_names_the_option_and_the_state(finished, capsys):
    tmp, opt, opt_file, exp = finished
    old = _snapshot(exp)
    rc, err = _main(capsys, opt_file, '--set', 'train.total_iter=9', 'network_g.num_feat=16', '--auto_resume')
    assert rc == 2 and len(_error_lines(err)) == 1, err
    line = _error_lines(err)[0]
    assert line.startswith(f'error: --set: network_g: does not match training state {exp}/training_states/6.state (')
    assert 'size mismatch' in line and line.endswith('resume with the options the state was saved with, '
                                                     'or start a new experiment name')
    assert _snapshot(exp) == old


def test_a_full_disk_during_a_save_is_one_line_and_loses_nothing(tmp_path, capsys, monkeypatch):
    opt = tiny_sr_options(tmp_path, total_iter=9)
    opt_file = write_options(opt, tmp_path / 'o.yml')
    exp = tmp_path / 'experiments' / 'tiny'
    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        if str(getattr(f, 'name', '')).endswith(f'6.state.tmp-{os.getpid()}'):
            f.write(b'PK\x03\x04partial')
            raise OSError(errno.ENOSPC, 'No space left on device')
        return real_save(obj, f, *a, **k)
    monkeypatch.setattr(torch, 'save', full_disk)
    rc, err = _main(capsys, opt_file)
    assert rc == 2, err
    state6 = exp / 'training_states' / '6.state'
    assert _error_lines(err) == [f'error: cannot write {state6}: No space left on device; earlier checkpoints '
                                 'are intact (atomic writes): free space and continue with --auto_resume']
    assert not state6.exists() and not list(exp.rglob('*.tmp-*'))
    assert (exp / 'training_states' / '3.state').is_file()
    monkeypatch.setattr(torch, 'save', real_save)
    # space freed: --auto_resume finishes with the weights of an uninterrupted run
    assert _main(capsys, opt_file, '--auto_resume')[0] == 0
    ref = tiny_sr_options(tmp_path / 'ref', total_iter=9)
    assert _main(capsys, write_options(ref, tmp_path / 'ref.yml'))[0] == 0
    for name in ('net_g_latest.pth', 'net_g_best.pth', 'net_g_6.pth'):
        a = torch.load(exp / 'models' / name)
        b = torch.load(tmp_path / 'ref' / 'experiments' / 'tiny' / 'models' / name)
        assert all(torch.equal(a['params'][k], b['params'][k]) for k in a['params']), name


def test_the_nan_stop_is_one_line_naming_the_option(tmp_path, capsys, monkeypatch):
    from ckdsr.models.base_model import BaseModel
    opt_file = write_options(tiny_sr_options(tmp_path, total_iter=9, max_bad_steps=2), tmp_path / 'o.yml')
    real = BaseModel._all_finite

    def finite_until_step_4(self, total):
        self._calls = getattr(self, '_calls', 0) + 1
        return self._calls <= 4 and real(self, total)
    monkeypatch.setattr(BaseModel, '_all_finite', finite_until_step_4)
    rc, err = _main(capsys, opt_file)
    assert rc == 2 and len(_error_lines(err)) == 1 and 'Traceback' not in err, err
    exp = tmp_path / 'experiments' / 'tiny'
    assert _error_lines(err)[0] == (f'error: {opt_file}: train.max_bad_steps: training stopped: 2 consecutive '
                                    'non-finite losses at iter 6; lower the learning rate or check the data (newest '
                                    f'training state: {exp}/training_states/3.state)')
