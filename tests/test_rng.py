"""ckdsr.utils.rng: restoring a captured state reproduces the same draws; seeds are stable."""
import random

import numpy as np
import pytest
import torch

from ckdsr.utils.rng import derive_seed, get_rng_state, seed_everything, set_rng_state
from ckdsr.utils.checkpoint import load_state, save_atomic


def _draws():
    out = [random.random(), float(np.random.rand()), torch.rand(3).tolist()]
    if torch.cuda.is_available():
        out.append(torch.rand(3, device='cuda').tolist())
    return out


def test_restore_reproduces_draws(tmp_path):
    seed_everything(123)
    _draws()
    state = get_rng_state()
    expected = _draws()
    # round-trip through a checkpoint file, as on resume
    save_atomic({'rng': state}, tmp_path / 'rng.state')
    _draws()
    _draws()
    set_rng_state(load_state(tmp_path / 'rng.state')['rng'])
    assert _draws() == expected


def test_seed_everything_is_seed_plus_rank():
    assert seed_everything(10, rank=3) == 13
    a = _draws()
    seed_everything(13)
    assert _draws() == a
    seed_everything(10, rank=0)
    assert _draws() != a


def test_derive_seed_stable_and_distinct():
    s = derive_seed(0, 1, 2, 3)
    assert s == derive_seed(0, 1, 2, 3)
    assert 0 <= s < 2 ** 32
    # pinned value: SeedSequence's hash is fixed across numpy versions
    assert s == 3898271682
    seeds = {derive_seed(10, r, w, e) for r in range(2) for w in range(4) for e in range(8)}
    assert len(seeds) == 64
    assert derive_seed(1, 2) != derive_seed(2, 1)
    assert derive_seed(5, bits=64) >= 0 and derive_seed(5, bits=64) != derive_seed(5)
    with pytest.raises(ValueError, match='non-negative ints'):
        derive_seed(1, -2)
    with pytest.raises(ValueError, match='non-negative ints'):
        derive_seed()
