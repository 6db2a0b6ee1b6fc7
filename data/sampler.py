"""``EnlargedSampler``: the training index stream, split across ranks, resumable mid-epoch.

Like BasicSR's EnlargedSampler, an epoch covers ``ratio * data_size`` virtual indices (padded
up to a multiple of ``world_size``), permuted deterministically from ``(seed, epoch)``, taken
modulo ``data_size`` and dealt round-robin to the ranks. Each position also gets a sample
seed from ``(seed, epoch, global position)`` for per-sample augmentation (see
:mod:`ckdsr.data.sample_key`).

``position`` counts this rank's samples already *consumed* in the current epoch. The
training loader advances it as batches reach the training loop (not when workers prefetch
them), so ``state_dict()`` taken after a step resumes exactly after that step's batch.
"""
import math
from typing import Dict, Iterator, Tuple

import numpy as np
from torch.utils.data import Sampler

_SAMPLE_SEED_SALT = 0x5EED


class EnlargedSampler(Sampler):
    """Deterministic, rank-split, enlarged, resumable index sampler."""

    def __init__(self, data_size: int, *, world_size: int = 1, rank: int = 0, ratio: int = 1,
                 shuffle: bool = True, seed: int = 0):
        if data_size < 1:
            raise ValueError(f'EnlargedSampler needs a non-empty dataset, got size {data_size}')
        if not 0 <= rank < world_size:
            raise ValueError(f'rank {rank} is outside world_size {world_size}')
        if ratio < 1:
            raise ValueError(f'dataset_enlarge_ratio must be >= 1, got {ratio}')
        self.data_size = int(data_size)
        self.world_size = int(world_size)
        self.rank = int(rank)
        self.ratio = int(ratio)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.num_samples = math.ceil(self.data_size * self.ratio / self.world_size)
        self.total_size = self.num_samples * self.world_size
        self.epoch = 0
        self.position = 0

    def epoch_keys(self, epoch: int = None) -> Tuple[np.ndarray, np.ndarray]:
        """This rank's ``(indices, sample_seeds)`` for a whole epoch (int64 arrays)."""
        epoch = self.epoch if epoch is None else int(epoch)
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.total_size)
        else:
            order = np.arange(self.total_size)
        seeds = np.random.default_rng([self.seed, epoch, _SAMPLE_SEED_SALT]).integers(
            0, 2 ** 63 - 1, size=self.total_size, dtype=np.int64)
        mine = slice(self.rank, self.total_size, self.world_size)
        return order[mine] % self.data_size, seeds[mine]

    def set_epoch(self, epoch: int) -> None:
        """Select ``epoch``; a new epoch starts at position 0, the current one keeps its position."""
        epoch = int(epoch)
        if epoch != self.epoch:
            self.epoch = epoch
            self.position = 0

    def advance(self, n: int) -> None:
        """Mark ``n`` more samples of this epoch as consumed."""
        self.position = min(self.position + int(n), self.num_samples)

    def __iter__(self) -> Iterator[int]:
        """This rank's remaining indices of the current epoch (from ``position``)."""
        indices, _ = self.epoch_keys()
        return iter(indices[self.position:].tolist())

    def __len__(self) -> int:
        return self.num_samples

    def state_dict(self) -> Dict[str, int]:
        return {'epoch': self.epoch, 'position': self.position}

    def load_state_dict(self, state: Dict[str, int]) -> None:
        missing = {'epoch', 'position'} - set(state)
        if missing:
            raise KeyError(f'sampler state is missing {sorted(missing)}; got {sorted(state)}')
        position = int(state['position'])
        if not 0 <= position <= self.num_samples:
            raise ValueError(f'sampler position {position} is outside 0..{self.num_samples} '
                             '(did the dataset, enlarge ratio or world size change?)')
        self.epoch = int(state['epoch'])
        self.position = position
