"""Seeding, and capture/restore of the global random generators (for exact resume)."""
import random
import warnings
from typing import Any, Dict

import numpy as np
import torch


def seed_everything(seed: int, rank: int = 0) -> int:
    """Seed python ``random``, numpy's legacy global generator and torch (CPU and all CUDA devices)
    with ``seed + rank`` (as BasicSR does, so ranks draw different random crops); returns it."""
    s = int(seed) + int(rank)
    random.seed(s)
    np.random.seed(s % 2 ** 32)
    torch.manual_seed(s)
    return s


def derive_seed(*ints: int, bits: int = 32) -> int:
    """A stable ``bits``-bit seed from a tuple of non-negative ints, e.g. ``(seed, rank, worker, epoch)``.

    Hashes with numpy's ``SeedSequence`` (its algorithm is fixed across numpy versions), so nearby
    tuples give unrelated seeds. The default 32 bits suit every seeding API (``np.random.seed``
    included).
    """
    if not ints or any(isinstance(i, bool) or not isinstance(i, (int, np.integer)) or i < 0 for i in ints):
        raise ValueError(f'derive_seed needs one or more non-negative ints, got {ints}')
    if bits not in (32, 64):
        raise ValueError(f'derive_seed: bits must be 32 or 64, got {bits}')
    dtype = np.uint32 if bits == 32 else np.uint64
    return int(np.random.SeedSequence([int(i) for i in ints]).generate_state(1, dtype=dtype)[0])


def get_rng_state() -> Dict[str, Any]:
    """States of python ``random``, numpy's global generator, torch CPU and every CUDA device."""
    state = {'python': random.getstate(), 'numpy': np.random.get_state(), 'torch': torch.get_rng_state()}
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned (tensors may have been loaded onto any device).

    CUDA states are restored for as many devices as both the saved state and this machine have;
    a state saved without CUDA leaves the CUDA generators as they are.
    """
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'].cpu())
    cuda_states = state.get('cuda')
    if cuda_states and torch.cuda.is_available():
        n = torch.cuda.device_count()
        if len(cuda_states) != n:
            warnings.warn(f'RNG state holds {len(cuda_states)} CUDA generator(s), this machine has '
                          f'{n}; restoring the first {min(n, len(cuda_states))}')
        for i, s in enumerate(cuda_states[:n]):
            torch.cuda.set_rng_state(s.cpu(), device=i)
