"""``build_dataloader``: BasicSR's loader options, deterministic seeding, resumable training epochs."""
import random
from typing import Any, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ckdsr.data.sampler import EnlargedSampler

#: keys of a dataset option block that configure the loader, not the dataset constructor
LOADER_KEYS = ('batch_size_per_gpu', 'num_worker_per_gpu', 'dataset_enlarge_ratio', 'use_shuffle',
               'pin_memory', 'persistent_workers', 'prefetch_mode', 'prefetch_factor')


def worker_seed(seed: int, rank: int, worker_id: int, epoch: int) -> int:
    """A 63-bit seed from ``(seed, rank, worker_id, epoch)``."""
    state = np.random.SeedSequence([seed, rank, worker_id, epoch]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class WorkerSeeder:
    """``worker_init_fn``: seeds ``random``, ``numpy`` and ``torch`` in each DataLoader worker.

    The epoch is read from the sampler when the worker starts (workers start at every
    ``iter(loader)`` unless ``persistent_workers``, in which case they keep the first epoch's
    seeds; the per-sample keys still change every epoch).
    """

    def __init__(self, seed: int, rank: int, sampler: Optional[EnlargedSampler] = None):
        self.seed = seed
        self.rank = rank
        self.sampler = sampler

    def __call__(self, worker_id: int) -> None:
        epoch = self.sampler.epoch if self.sampler is not None else 0
        s = worker_seed(self.seed, self.rank, worker_id, epoch)
        random.seed(s)
        np.random.seed(s % 2 ** 32)
        torch.manual_seed(s)


class _KeyBatchSampler(Sampler):
    """Batches of this epoch's remaining keys, from the sampler's position."""

    def __init__(self, sampler: EnlargedSampler, batch_size: int, drop_last: bool, seeded: bool):
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.seeded = seeded

    def __iter__(self) -> Iterator[List[Union[int, Tuple[int, int]]]]:
        indices, seeds = self.sampler.epoch_keys()
        start = self.sampler.position
        indices, seeds = indices[start:].tolist(), seeds[start:].tolist()
        keys = list(zip(indices, seeds)) if self.seeded else indices
        for i in range(0, len(self) * self.batch_size, self.batch_size):
            yield keys[i:i + self.batch_size]

    def __len__(self) -> int:
        remaining = self.sampler.num_samples - self.sampler.position
        return remaining // self.batch_size if self.drop_last else -(-remaining // self.batch_size)


class ResumableLoader:
    """Iterates a DataLoader over the sampler's current epoch and advances the sampler's position
    by each batch handed to the caller, so ``sampler.state_dict()`` is always resume-exact."""

    def __init__(self, loader: DataLoader, sampler: EnlargedSampler):
        self.loader = loader
        self.sampler = sampler
        self.dataset = loader.dataset
        self.batch_size = loader.batch_sampler.batch_size

    def __iter__(self) -> Iterator[Any]:
        if self.sampler.position >= self.sampler.num_samples:
            self.sampler.position = 0  # this epoch was finished: start it again
        n_batches = len(self.loader)
        for i, batch in enumerate(self.loader):
            if i + 1 == n_batches:
                self.sampler.position = self.sampler.num_samples  # drop_last leftovers count as done
            else:
                self.sampler.advance(self.batch_size)
            yield batch

    def __len__(self) -> int:
        """Batches the next ``iter()`` yields: the rest of the current epoch, or a whole epoch
        when the current one is finished."""
        if self.sampler.position >= self.sampler.num_samples:
            return self.batches_per_epoch
        return len(self.loader)

    @property
    def batches_per_epoch(self) -> int:
        n = self.sampler.num_samples
        return n // self.batch_size if self.loader.batch_sampler.drop_last else -(-n // self.batch_size)


def build_dataloader(dataset: Dataset, *, phase: str, batch_size_per_gpu: int = 1,
                     num_worker_per_gpu: int = 0, dataset_enlarge_ratio: int = 1,
                     use_shuffle: bool = True, pin_memory: bool = False,
                     persistent_workers: bool = False, seed: int = 0, rank: int = 0,
                     world_size: int = 1, drop_last: Optional[bool] = None,
                     prefetch_factor: Optional[int] = None) -> Tuple[Any, Optional[EnlargedSampler]]:
    """Return ``(loader, sampler)``.

    ``phase='train'``: a :class:`ResumableLoader` over an :class:`EnlargedSampler` (returned as
    the second item; call ``sampler.set_epoch(e)`` before each epoch and keep
    ``sampler.state_dict()`` in the resume state). Datasets with ``accepts_seeded_keys`` get
    ``(index, seed)`` keys, so their augmentation is independent of workers and resumes.
    Other phases: a plain sequential DataLoader and ``None``.
    """
    if batch_size_per_gpu < 1:
        raise ValueError(f'batch_size_per_gpu must be >= 1, got {batch_size_per_gpu}')
    if num_worker_per_gpu < 0:
        raise ValueError(f'num_worker_per_gpu must be >= 0, got {num_worker_per_gpu}')
    workers = int(num_worker_per_gpu)
    extra = {}
    if workers > 0:
        extra['persistent_workers'] = persistent_workers
        if prefetch_factor is not None:
            extra['prefetch_factor'] = prefetch_factor
    generator = torch.Generator()  # keeps DataLoader from drawing on the global torch RNG
    generator.manual_seed(seed)
    if phase != 'train':
        loader = DataLoader(dataset, batch_size=batch_size_per_gpu, shuffle=False, num_workers=workers,
                            pin_memory=pin_memory, drop_last=bool(drop_last),
                            worker_init_fn=WorkerSeeder(seed, rank), generator=generator, **extra)
        return loader, None
    sampler = EnlargedSampler(len(dataset), world_size=world_size, rank=rank,
                              ratio=dataset_enlarge_ratio, shuffle=use_shuffle, seed=seed)
    batches = _KeyBatchSampler(sampler, batch_size_per_gpu, True if drop_last is None else drop_last,
                               seeded=getattr(dataset, 'accepts_seeded_keys', False))
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=workers, pin_memory=pin_memory,
                        worker_init_fn=WorkerSeeder(seed, rank, sampler), generator=generator, **extra)
    return ResumableLoader(loader, sampler), sampler
