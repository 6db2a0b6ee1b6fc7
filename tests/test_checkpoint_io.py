"""ckdsr.utils.checkpoint: atomic saves, and interrupted writes are never picked up on resume."""
import os

import numpy as np
import pytest
import torch

from ckdsr.utils import checkpoint as ck


def _state(it):
    return {'iter': it, 'params': {'w': torch.arange(6.0).reshape(2, 3) * it},
            'numpy_rng': np.random.RandomState(it).get_state(), 'note': ('tuple', it)}


def test_roundtrip_and_no_tmp_left(tmp_path):
    path = ck.save_atomic(_state(7), tmp_path / 'sub' / '7.state')
    assert path == tmp_path / 'sub' / '7.state'
    assert os.listdir(tmp_path / 'sub') == ['7.state']
    loaded = ck.load_state(path)
    assert loaded['iter'] == 7 and loaded['note'] == ('tuple', 7)
    assert torch.equal(loaded['params']['w'], torch.arange(6.0).reshape(2, 3) * 7)
    assert loaded['numpy_rng'][0] == 'MT19937'       # non-tensor objects need weights_only=False
    assert ck.state_path(tmp_path, 12) == tmp_path / '12.state'


def test_failed_write_keeps_old_file_and_removes_tmp(tmp_path, monkeypatch):
    path = ck.save_atomic(_state(1), tmp_path / '1.state')

    def crash(obj, f, *a, **k):
        f.write(b'PK\x03\x04 half a zip')
        raise KeyboardInterrupt  # e.g. Ctrl-C or a kill during the write

    monkeypatch.setattr(torch, 'save', crash)
    with pytest.raises(KeyboardInterrupt):
        ck.save_atomic(_state(2), path)
    assert os.listdir(tmp_path) == ['1.state']
    assert ck.load_state(path)['iter'] == 1


def test_latest_skips_tmp_truncated_empty_and_foreign_files(tmp_path):
    ck.save_atomic(_state(100), ck.state_path(tmp_path, 100))
    ck.save_atomic(_state(50), ck.state_path(tmp_path, 50))
    good = (tmp_path / '100.state').read_bytes()
    # a newer state cut short (power loss without the atomic rename), an empty one,
    # a complete-looking tmp file of an interrupted write, and unrelated files
    (tmp_path / '200.state').write_bytes(good[: len(good) // 2])
    (tmp_path / '300.state').write_bytes(b'')
    (tmp_path / '400.state.tmp-12345').write_bytes(good)
    (tmp_path / 'net_g_500.pth').write_bytes(good)
    (tmp_path / 'x500.state').write_bytes(good)
    (tmp_path / '600.state').mkdir()
    assert ck.find_latest_state(tmp_path) == tmp_path / '100.state'
    # numeric, not lexicographic, order
    ck.save_atomic(_state(1000), ck.state_path(tmp_path, 1000))
    assert ck.find_latest_state(tmp_path) == tmp_path / '1000.state'


def test_latest_none_cases(tmp_path):
    assert ck.find_latest_state(tmp_path / 'missing') is None
    assert ck.find_latest_state(tmp_path) is None
    (tmp_path / '5.state').write_bytes(b'garbage')
    assert ck.find_latest_state(tmp_path) is None


def test_load_errors_name_the_file(tmp_path):
    ck.save_atomic(_state(3), tmp_path / '3.state')
    bad = tmp_path / '9.state'
    bad.write_bytes((tmp_path / '3.state').read_bytes()[:100])
    with pytest.raises(RuntimeError, match=r'checkpoint file .*9\.state is corrupt or incomplete') as err:
        ck.load_state(bad)
    assert '\n' not in str(err.value)
    with pytest.raises(FileNotFoundError, match=r'nothere\.state'):
        ck.load_state(tmp_path / 'nothere.state')
