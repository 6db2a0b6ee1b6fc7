"""Scale-1 restoration data: GoPro / deraining layouts, LMDB preparation, progressive schedule resume."""
import numpy as np
import pytest
import torch

from ckdsr.data.image_io import read_image
from ckdsr.data.progressive import ProgressiveSchedule, build_progressive_loader, epoch_batches
from ckdsr.data.restoration_dataset import DerainDataset, GoProDataset, list_gopro_pairs
from tests.helpers.restoration_sets import make_gopro, make_rain, motion_kernel, photo_sources
from ckdsr.tools.create_lmdb import main as create_lmdb_main


@pytest.fixture(scope='module')
def sets(shared_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp('restoration')
    src = photo_sources(shared_dir)
    return {'gopro': make_gopro(root / 'GoPro' / 'train', src), 'rain': make_rain(root / 'Rain13K', src)}


def test_motion_kernel_is_a_normalised_line():
    k = motion_kernel(5, 0.0)
    assert k.sum() == pytest.approx(1.0)
    assert np.count_nonzero(k) == 5 and np.count_nonzero(k[2]) == 5  # horizontal line through the centre


def test_gopro_layout_pairs_by_sequence(sets):
    pairs = list_gopro_pairs(sets['gopro'])
    assert len(pairs) == 4 and len({k for k, _, _ in pairs}) == 4  # equal file names in two sequences
    key, blur, sharp = pairs[0]
    assert blur.split('/')[1:] == ['blur', '000001.png'] and sharp.split('/')[1:] == ['sharp', '000001.png']
    ds = GoProDataset(dataroot=str(sets['gopro']), phase='test')
    item = ds[0]
    assert item['name'] == key and item['lq'].shape == item['gt'].shape == (3, 32, 32)
    np.testing.assert_array_equal((item['gt'].numpy() * 255).round().transpose(1, 2, 0),
                                  read_image(sets['gopro'] / sharp))
    assert not torch.equal(item['lq'], item['gt'])  # blurred


def test_training_crop_is_aligned_and_seeded(sets):
    ds = DerainDataset(dataroot=str(sets['rain']), gt_size=16, use_hflip=False, use_rot=False)
    gt_full, lq_full = (read_image(sets['rain'] / d / '1.png') for d in ('target', 'input'))
    item = ds[(0, 1234)]
    gt, lq = ((item[k].numpy() * 255).round().astype(np.uint8).transpose(1, 2, 0) for k in ('gt', 'lq'))
    assert gt.shape == (16, 16, 3)
    hits = [(y, x) for y in range(17) for x in range(17) if np.array_equal(gt_full[y:y + 16, x:x + 16], gt)]
    assert len(hits) == 1
    y, x = hits[0]
    np.testing.assert_array_equal(lq_full[y:y + 16, x:x + 16], lq)  # the same window of the rainy image
    assert torch.equal(ds[(0, 1234)]['gt'], item['gt'])
    assert ds[(0, 1234, 8)]['gt'].shape == (3, 8, 8)  # a key's patch size overrides gt_size


def test_missing_partner_is_one_clear_error(shared_dir, tmp_path):
    bad = make_rain(tmp_path / 'Rain', photo_sources(shared_dir), n=2)
    (bad / 'target' / '2.png').unlink()
    with pytest.raises(FileNotFoundError, match=r'1 image\(s\) without a partner.*input/2.png'):
        DerainDataset(dataroot=str(bad))


@pytest.mark.parametrize('task, extra', [('gopro', ['--crop-size', '16', '--step', '16']), ('rain', [])])
def test_create_lmdb_task_matches_the_folders(sets, tmp_path, task, extra):
    out = tmp_path / 'lmdb'
    assert create_lmdb_main(['--task', task, '--root', str(sets[task]), '--out', str(out), *extra]) == 0
    cls = GoProDataset if task == 'gopro' else DerainDataset
    disk = cls(dataroot=str(sets[task]), phase='test')
    lmdb = cls(dataroot=str(out), io_backend={'type': 'lmdb'}, phase='test')
    if task == 'rain':  # whole images, same keys
        assert [disk[i]['name'] for i in range(len(disk))] == [lmdb[i]['name'] for i in range(len(lmdb))]
        for i in range(len(disk)):
            assert torch.equal(disk[i]['lq'], lmdb[i]['lq']) and torch.equal(disk[i]['gt'], lmdb[i]['gt'])
    else:  # 32 px images in 16 px tiles: 4 tiles per pair, row-major
        assert len(lmdb) == 4 * len(disk)
        first = lmdb[1]  # <seq>_000001_s002: top-right tile of the first pair
        assert first['name'].endswith('_s002')
        assert torch.equal(first['gt'], disk[0]['gt'][:, :16, 16:]) and torch.equal(first['lq'], disk[0]['lq'][:, :16, 16:])


def test_create_lmdb_task_errors_name_the_flag(tmp_path, capsys):
    assert create_lmdb_main(['--task', 'rain', '--root', str(tmp_path / 'nope'), '--out', str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith('error: --root: ')


def test_restormer_schedule_milestones():
    s = ProgressiveSchedule([92000, 64000, 48000, 36000, 36000, 24000], [128, 160, 192, 256, 320, 384],
                            [64, 40, 32, 16, 8, 8])
    assert s.at(0) == (128, 64) and s.at(91999) == (128, 64) and s.at(92000) == (160, 40)
    assert s.at(155999) == (160, 40) and s.at(156000) == (192, 32) and s.at(204000) == (256, 16)
    assert s.at(240000) == (320, 8) and s.at(276000) == (384, 8) and s.at(10 ** 7) == (384, 8)
    with pytest.raises(ValueError, match='one entry per stage'):
        ProgressiveSchedule([1, 2], [8], [1, 1])
    with pytest.raises(ValueError, match=r'progressive\.gt_size'):
        ProgressiveSchedule([1], [0], [1])


def test_epoch_plan_switches_batch_size_mid_epoch():
    s = ProgressiveSchedule([2, 5], [16, 8], [3, 2])
    # 11 samples: batches 0-1 take 3 each, then 2 each; leftover 1 sample dropped
    assert epoch_batches(s, 0, 0, 11) == [(0, 3, 16), (3, 3, 16), (6, 2, 8), (8, 2, 8)]
    assert epoch_batches(s, 6, 2, 11) == [(6, 2, 8), (8, 2, 8)]


def _run(ds, n, state=None, stop_after=None):
    """``n`` batches (crossing epochs as the trainer does); returns (batches, sampler state at stop_after)."""
    loader, sampler = build_progressive_loader(ds, {'iters': [2, 3], 'gt_size': [16, 8], 'batch_size_per_gpu': [3, 2]},
                                               seed=5)
    if state is not None:
        sampler.load_state_dict(state)
    out, saved = [], None
    while len(out) < n:
        if sampler.position >= sampler.num_samples:
            sampler.set_epoch(sampler.epoch + 1)
        for batch in loader:
            out.append(batch)
            if len(out) == stop_after:
                saved = dict(sampler.state_dict())
            if len(out) == n:
                break
    return out, saved


def test_progressive_resume_gives_the_same_batches(sets):
    ds = GoProDataset(dataroot=str(sets['gopro']))  # 4 pairs: epochs of 1 batch at 3, then 2 at 2
    full, state = _run(ds, 7, stop_after=3)
    assert [tuple(b['gt'].shape[:1] + b['gt'].shape[2:]) for b in full] == \
        [(3, 16, 16), (3, 16, 16), (2, 8, 8), (2, 8, 8), (2, 8, 8), (2, 8, 8), (2, 8, 8)]
    assert state['batches'] == 3
    rest, _ = _run(ds, 4, state=state)
    for a, b in zip(full[3:], rest):
        assert a['name'] == b['name'] and torch.equal(a['gt'], b['gt']) and torch.equal(a['lq'], b['lq'])


def test_progressive_resume_needs_the_batch_count(sets):
    loader, sampler = build_progressive_loader(GoProDataset(dataroot=str(sets['gopro'])),
                                               {'iters': [1], 'gt_size': [8], 'batch_size_per_gpu': [1]})
    with pytest.raises(KeyError, match='progressive'):
        sampler.load_state_dict({'epoch': 0, 'position': 0})


def _trainer_options(root, name, data, resume_state=None):
    from tests.helpers.tiny_run import write_options
    from ckdsr.utils.options import load_options
    root.mkdir(parents=True, exist_ok=True)
    opt = {
        'name': name, 'model_type': 'SRModel', 'scale': 1, 'num_gpu': 0, 'manual_seed': 7,
        'datasets': {'train': {'type': 'GoProDataset', 'dataroot': str(data), 'num_worker_per_gpu': 0,
                               'progressive': {'iters': [2, 2], 'gt_size': [16, 8], 'batch_size_per_gpu': [2, 1]}}},
        'network_g': {'type': 'NAFNet', 'width': 4, 'middle_blk_num': 1, 'enc_blk_nums': [1], 'dec_blk_nums': [1]},
        'path': {'experiments_root': str(root / 'experiments'), 'resume_state': str(resume_state) if resume_state else None},
        'train': {'optim_g': {'type': 'AdamW', 'lr': 1e-2, 'betas': [0.9, 0.9], 'weight_decay': 1e-3}, 'total_iter': 6,
                  'scheduler': {'type': 'CosineAnnealingRestartLR', 'periods': [6], 'eta_min': 1e-7},
                  'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0}},
        'logger': {'print_freq': 1, 'save_checkpoint_freq': 3, 'use_tb_logger': False},
    }
    return load_options(str(write_options(opt, root / f'{name}.yml')))


def test_trainer_resume_mid_schedule_is_exact(sets, tmp_path):
    """4 pairs; batches 2, 2 (patch 16) then 1, 1, 1, 1 (patch 8): the state at iteration 3 lies in the
    second stage and inside an epoch; resuming from it ends on the uninterrupted run's weights."""
    from ckdsr.engine.trainer import Trainer
    ref = Trainer(_trainer_options(tmp_path / 'ref', 'ref', sets['gopro']))
    ref.run()
    state = tmp_path / 'ref' / 'experiments' / 'ref' / 'training_states' / '3.state'
    saved = torch.load(state, map_location='cpu', weights_only=False)
    assert saved['sampler']['batches'] == 3 and 0 < saved['sampler']['position'] < 4
    resumed = Trainer(_trainer_options(tmp_path / 'res', 'res', sets['gopro'], resume_state=state))
    assert resumed.current_iter == 3
    resumed.run()
    a = torch.load(ref.paths.models + '/net_g_latest.pth', map_location='cpu')
    b = torch.load(resumed.paths.models + '/net_g_latest.pth', map_location='cpu')
    for key in a:
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)


def _ddp_schedule_worker(rank, world_size, root, out):
    import json
    import torch.distributed as dist
    ds = GoProDataset(dataroot=root)
    loader, sampler = build_progressive_loader(ds, {'iters': [1, 2], 'gt_size': [16, 8], 'batch_size_per_gpu': [2, 1]},
                                               seed=3, rank=rank, world_size=world_size)
    seen = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        seen += [(tuple(b['gt'].shape), list(b['name'])) for b in loader]
    every = [None] * world_size
    dist.all_gather_object(every, seen)
    if rank == 0:
        with open(out, 'w') as f:
            json.dump(every, f)


def test_ddp_ranks_share_the_schedule(sets, tmp_path):
    """2 gloo processes: each step's batch and patch sizes agree across ranks, and rank r sees the
    single-process sampler's share for rank r (same names in the same order)."""
    import json
    from tests.helpers.gloo import run_gloo
    out = tmp_path / 'seen.json'
    run_gloo(_ddp_schedule_worker, tmp_path, str(sets['gopro']), str(out))
    every = json.loads(out.read_text())
    assert len(every[0]) == len(every[1]) > 2
    for (shape0, _), (shape1, _) in zip(*every):
        assert shape0 == shape1
    assert [tuple(s) for s, _ in every[0]][:2] == [(2, 3, 16, 16), (1, 3, 8, 8)]
    for rank in (0, 1):  # the same as a single process building rank r's loader
        ds = GoProDataset(dataroot=str(sets['gopro']))
        loader, sampler = build_progressive_loader(ds, {'iters': [1, 2], 'gt_size': [16, 8],
                                                        'batch_size_per_gpu': [2, 1]}, seed=3, rank=rank, world_size=2)
        names = []
        for epoch in range(3):
            sampler.set_epoch(epoch)
            names += [list(b['name']) for b in loader]
        assert names == [n for _, n in every[rank]]
