"""Progressive patch / batch schedule (Restormer's "progressive learning", paper Sec. 3.3).

``datasets.train.progressive: {iters: [...], gt_size: [...], batch_size_per_gpu: [...]}``: stage ``i``
lasts ``iters[i]`` iterations with patches of ``gt_size[i]`` and batches of ``batch_size_per_gpu[i]``;
the last stage continues past the sum. ``iters`` are stage *lengths*, as in the Restormer release's
``iters`` / ``gt_sizes`` / ``mini_batch_sizes`` (its 300k schedule: [92000, 64000, 48000, 36000, 36000, 24000]).

The schedule is a function of the number of batches handed to the training loop, which the sampler
counts and keeps in its ``state_dict`` (beside epoch and position), so a resumed run continues with
the same stage, the same keys and therefore the same batches. Each key is ``(index, seed, patch size)``
(see :func:`ckdsr.data.restoration_dataset.unpack_restoration_key`); a batch never mixes patch sizes.
"""
import bisect
from itertools import accumulate
from typing import Any, Dict, Iterator, List, Mapping, Sequence, Tuple

from torch.utils.data import DataLoader, Dataset, Sampler

from ckdsr.data.loader import WorkerSeeder
from ckdsr.data.sampler import EnlargedSampler

OPTION = 'datasets.train.progressive'


class ProgressiveSchedule:
    """Stage lengths, patch sizes and batch sizes; ``at(step)`` -> ``(gt_size, batch_size)``."""

    def __init__(self, iters: Sequence[int], gt_size: Sequence[int], batch_size_per_gpu: Sequence[int]):
        lists = {'iters': iters, 'gt_size': gt_size, 'batch_size_per_gpu': batch_size_per_gpu}
        for key, values in lists.items():
            if not isinstance(values, (list, tuple)) or not values or not all(
                    isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
                raise ValueError(f'{OPTION}.{key}: expected a non-empty list of integers >= 1, got {values!r}')
        if len({len(v) for v in lists.values()}) != 1:
            raise ValueError(f'{OPTION}: iters, gt_size and batch_size_per_gpu need one entry per stage, got '
                             f'{len(iters)}, {len(gt_size)} and {len(batch_size_per_gpu)}')
        self.iters, self.gt_size, self.batch_size = list(iters), list(gt_size), list(batch_size_per_gpu)
        self.ends = list(accumulate(self.iters))

    @classmethod
    def from_option(cls, opt: Mapping[str, Any]) -> 'ProgressiveSchedule':
        if not isinstance(opt, Mapping):
            raise ValueError(f'{OPTION}: expected a mapping with iters, gt_size, batch_size_per_gpu, got {opt!r}')
        unknown = sorted(set(opt) - {'iters', 'gt_size', 'batch_size_per_gpu'})
        if unknown:
            raise ValueError(f'{OPTION}: unknown key(s) {unknown}; valid: iters, gt_size, batch_size_per_gpu')
        missing = [k for k in ('iters', 'gt_size', 'batch_size_per_gpu') if k not in opt]
        if missing:
            raise ValueError(f'{OPTION}: missing {missing}')
        return cls(opt['iters'], opt['gt_size'], opt['batch_size_per_gpu'])

    def stage(self, step: int) -> int:
        """Stage of the ``step``-th batch (0-based); the last stage continues."""
        return min(bisect.bisect_right(self.ends, step), len(self.ends) - 1)

    def at(self, step: int) -> Tuple[int, int]:
        i = self.stage(step)
        return self.gt_size[i], self.batch_size[i]


class ProgressiveSampler(EnlargedSampler):
    """:class:`EnlargedSampler` that also counts the batches consumed (``batches``), for the schedule."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches = 0

    def state_dict(self) -> Dict[str, int]:
        return {**super().state_dict(), 'batches': self.batches}

    def load_state_dict(self, state: Dict[str, int]) -> None:
        if 'batches' not in state:
            raise KeyError(f'sampler state has no batch count (keys {sorted(state)}): it was saved without '
                           f'{OPTION}; resume with the options the state was saved with')
        super().load_state_dict(state)
        self.batches = int(state['batches'])


def epoch_batches(schedule: ProgressiveSchedule, position: int, batches: int, num_samples: int,
                  drop_last: bool = True) -> List[Tuple[int, int, int]]:
    """``[(start, batch size, patch size)]`` of the rest of an epoch from ``position``, the first batch
    being the ``batches``-th of the run."""
    out = []
    step = batches
    while position < num_samples:
        size, bs = schedule.at(step)
        if position + bs > num_samples:
            if drop_last:
                break
            bs = num_samples - position
        out.append((position, bs, size))
        position += bs
        step += 1
    return out


class _ProgressiveBatches(Sampler):
    """This epoch's remaining keys ``(index, seed, patch size)`` in scheduled batches."""

    def __init__(self, sampler: ProgressiveSampler, schedule: ProgressiveSchedule, drop_last: bool):
        self.sampler, self.schedule, self.drop_last = sampler, schedule, drop_last

    def plan(self) -> List[Tuple[int, int, int]]:
        s = self.sampler
        return epoch_batches(self.schedule, s.position, s.batches, s.num_samples, self.drop_last)

    def __iter__(self) -> Iterator[List[Tuple[int, int, int]]]:
        indices, seeds = self.sampler.epoch_keys()
        for start, bs, size in self.plan():
            yield [(int(indices[j]), int(seeds[j]), size) for j in range(start, start + bs)]

    def __len__(self) -> int:
        return len(self.plan())


class ProgressiveLoader:
    """Like :class:`ckdsr.data.loader.ResumableLoader`: advances the sampler's position and batch count as
    each batch reaches the caller, so ``sampler.state_dict()`` after a step resumes after that step."""

    def __init__(self, loader: DataLoader, sampler: ProgressiveSampler, batches: _ProgressiveBatches):
        self.loader, self.sampler, self.batches = loader, sampler, batches
        self.dataset = loader.dataset

    def __iter__(self) -> Iterator[Any]:
        if self.sampler.position >= self.sampler.num_samples:
            self.sampler.position = 0  # this epoch was finished: start it again
        plan = self.batches.plan()
        if not plan:
            if self.sampler.position == 0:
                size, bs = self.batches.schedule.at(self.sampler.batches)
                raise ValueError(f'{OPTION}: batch size {bs} exceeds the {self.sampler.num_samples} training '
                                 'samples per epoch (per process); raise dataset_enlarge_ratio')
            self.sampler.position = self.sampler.num_samples  # leftovers smaller than the new stage's batch
            return
        for i, batch in enumerate(self.loader):
            self.sampler.batches += 1
            if i + 1 == len(plan):
                self.sampler.position = self.sampler.num_samples  # drop_last leftovers count as done
            else:
                self.sampler.advance(plan[i][1])
            yield batch

    def __len__(self) -> int:
        return len(self.batches)


def build_progressive_loader(dataset: Dataset, progressive: Mapping[str, Any], *, num_worker_per_gpu: int = 0,
                             dataset_enlarge_ratio: int = 1, use_shuffle: bool = True, pin_memory: bool = False,
                             persistent_workers: bool = False, seed: int = 0, rank: int = 0,
                             world_size: int = 1) -> Tuple[ProgressiveLoader, ProgressiveSampler]:
    """``(loader, sampler)`` for training with a progressive schedule (``progressive`` = the option block)."""
    import torch
    schedule = ProgressiveSchedule.from_option(progressive)
    if not getattr(dataset, 'accepts_patch_size_keys', False):
        raise ValueError(f'{OPTION}: dataset {type(dataset).__name__} cannot take a per-batch patch size; use '
                         'GoProDataset or DerainDataset')
    sampler = ProgressiveSampler(len(dataset), world_size=world_size, rank=rank, ratio=dataset_enlarge_ratio,
                                 shuffle=use_shuffle, seed=seed)
    batches = _ProgressiveBatches(sampler, schedule, drop_last=True)
    generator = torch.Generator()
    generator.manual_seed(seed)
    extra = {'persistent_workers': persistent_workers} if num_worker_per_gpu > 0 else {}
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=int(num_worker_per_gpu), pin_memory=pin_memory,
                        worker_init_fn=WorkerSeeder(seed, rank, sampler), generator=generator, **extra)
    return ProgressiveLoader(loader, sampler, batches), sampler
