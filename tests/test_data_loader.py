"""ckdsr.data.sampler / data.loader: deterministic rank-split epochs, exact mid-epoch resume, worker seeds."""
import random

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, get_worker_info

from ckdsr.data.loader import LOADER_KEYS, build_dataloader, worker_seed
from ckdsr.data.sample_key import unpack_key
from ckdsr.data.sampler import EnlargedSampler


class ToySeeded(Dataset):
    """Returns its index and a draw from the per-sample rng; counts reads in this process."""
    accepts_seeded_keys = True

    def __init__(self, n=10):
        self.n = n
        self.reads = []

    def __len__(self):
        return self.n

    def __getitem__(self, key):
        index, rng = unpack_key(key)
        self.reads.append(index)
        return {'index': index, 'aug': torch.tensor([rng.random(), rng.random()])}


class ToyGlobalRng(Dataset):
    """Draws from the process-global random / numpy / torch generators (seeded per worker)."""

    def __len__(self):
        return 8

    def __getitem__(self, index):
        info = get_worker_info()
        return {'index': index, 'worker': -1 if info is None else info.id,
                'draws': torch.tensor([random.random(), float(np.random.rand()), float(torch.rand(()))])}


def _batches(loader, limit=None):
    out = []
    for i, b in enumerate(loader):
        out.append((b['index'].tolist(), b['aug'].clone()))
        if limit is not None and i + 1 == limit:
            break
    return out


def test_sampler_is_deterministic_and_split_across_ranks():
    a = EnlargedSampler(10, world_size=2, rank=0, ratio=3, seed=5)
    b = EnlargedSampler(10, world_size=2, rank=1, ratio=3, seed=5)
    assert len(a) == 15 and list(a) == list(EnlargedSampler(10, world_size=2, rank=0, ratio=3, seed=5))
    both = sorted(list(a) + list(b))
    assert both == sorted(list(range(10)) * 3)  # every image ratio times per epoch, no overlap
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first and len(list(a)) == len(first)  # a new shuffle, same shard size
    assert list(EnlargedSampler(10, ratio=3, seed=6)) != list(EnlargedSampler(10, ratio=3, seed=5))
    assert list(EnlargedSampler(7, shuffle=False)) == list(range(7))
    # padding to a multiple of world_size wraps around, as BasicSR's EnlargedSampler does
    c = EnlargedSampler(5, world_size=2, rank=1)
    assert len(c) == 3 and all(0 <= i < 5 for i in c)


def test_sampler_state_and_epochs():
    s = EnlargedSampler(10, seed=1)
    s.set_epoch(3)
    s.advance(4)
    assert s.state_dict() == {'epoch': 3, 'position': 4}
    assert list(s) == s.epoch_keys(3)[0][4:].tolist()
    s.set_epoch(3)  # same epoch (e.g. after loading a resume state): the position is kept
    assert s.position == 4
    s.set_epoch(4)
    assert s.position == 0
    t = EnlargedSampler(10, seed=1)
    t.load_state_dict({'epoch': 3, 'position': 4})
    assert t.state_dict() == {'epoch': 3, 'position': 4}
    with pytest.raises(ValueError, match='outside'):
        t.load_state_dict({'epoch': 0, 'position': 11})
    with pytest.raises(KeyError, match='position'):
        t.load_state_dict({'epoch': 0})
    with pytest.raises(ValueError, match='rank'):
        EnlargedSampler(10, world_size=2, rank=2)


@pytest.mark.parametrize('workers', [0, 2])
def test_resume_mid_epoch_gives_the_same_remaining_batches(workers):
    opts = dict(phase='train', batch_size_per_gpu=3, num_worker_per_gpu=workers, dataset_enlarge_ratio=2,
                seed=11)
    full_loader, full_sampler = build_dataloader(ToySeeded(), **opts)
    full_sampler.set_epoch(2)
    full = _batches(full_loader)
    assert len(full) == len(full_loader) == 6 and full_sampler.position == 20  # 20 samples, 2 dropped
    # interrupted run: 2 batches consumed, state saved (workers have prefetched more by now)
    loader, sampler = build_dataloader(ToySeeded(), **opts)
    sampler.set_epoch(2)
    head = _batches(loader, limit=2)
    state = sampler.state_dict()
    assert state == {'epoch': 2, 'position': 6}
    # fresh process: new dataset, loader, sampler; restore and finish the epoch
    ds = ToySeeded()
    loader, sampler = build_dataloader(ds, **opts)
    sampler.load_state_dict(state)
    sampler.set_epoch(2)  # the training loop calls this; it must not rewind the epoch
    assert len(loader) == 4
    tail = _batches(loader)
    assert [b[0] for b in head + tail] == [b[0] for b in full]
    for (_, x), (_, y) in zip(head + tail, full):
        assert torch.equal(x, y)  # identical per-sample augmentation draws too
    if workers == 0:  # the skipped samples were never read
        assert ds.reads == [i for b in full[2:] for i in b[0]]
    # the next epoch starts from its beginning
    sampler.set_epoch(3)
    assert sampler.position == 0 and len(_batches(loader)) == 6


def test_batches_do_not_depend_on_worker_count():
    runs = []
    for workers in (0, 2):
        loader, sampler = build_dataloader(ToySeeded(), phase='train', batch_size_per_gpu=4,
                                           num_worker_per_gpu=workers, seed=3)
        sampler.set_epoch(1)
        runs.append(_batches(loader))
    assert [b[0] for b in runs[0]] == [b[0] for b in runs[1]]
    assert all(torch.equal(x[1], y[1]) for x, y in zip(*runs))


def test_ranks_get_disjoint_shards():
    seen = []
    for rank in (0, 1):
        loader, _ = build_dataloader(ToySeeded(8), phase='train', batch_size_per_gpu=2, num_worker_per_gpu=0,
                                     world_size=2, rank=rank, seed=0)
        seen.append([i for b in _batches(loader) for i in b[0]])
    assert sorted(seen[0] + seen[1]) == list(range(8)) and len(seen[0]) == 4


def test_worker_seeds_depend_on_seed_rank_worker_and_epoch():
    def run(epoch, seed=0, rank=0):
        loader, sampler = build_dataloader(ToyGlobalRng(), phase='train', batch_size_per_gpu=2,
                                           num_worker_per_gpu=2, use_shuffle=False, seed=seed, rank=rank,
                                           world_size=2)
        sampler.set_epoch(epoch)
        return [(b['worker'].tolist(), b['draws']) for b in loader]

    e0, again, e1 = run(0), run(0), run(1)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(e0, again))  # reproducible
    assert e0[0][0] == [0, 0] and e0[1][0] == [1, 1]
    assert not torch.equal(e0[0][1], e0[1][1])  # workers differ
    assert not torch.equal(e0[0][1], e1[0][1])  # epochs differ
    assert not torch.equal(e0[0][1], run(0, rank=1)[0][1])  # ranks differ
    assert len({worker_seed(0, r, w, e) for r in range(2) for w in range(2) for e in range(2)}) == 8


def test_validation_loader_and_global_rng_untouched():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    loader, sampler = build_dataloader(ToySeeded(5), phase='val', batch_size_per_gpu=1, num_worker_per_gpu=0)
    assert sampler is None and [b['index'].item() for b in loader] == [0, 1, 2, 3, 4]
    train, _ = build_dataloader(ToySeeded(5), phase='train', batch_size_per_gpu=1, num_worker_per_gpu=0)
    list(train)
    assert torch.equal(torch.rand(3), expected)  # loaders never draw from the global torch RNG
    assert 'batch_size_per_gpu' in LOADER_KEYS and 'dataset_enlarge_ratio' in LOADER_KEYS
