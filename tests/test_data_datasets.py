"""PairedImageDataset / BenchmarkDataset: exact alignment, backends agree, on-the-fly LR, errors."""
import copy
import logging

import numpy as np
import pytest
import torch

from ckdsr.data.benchmark_dataset import BenchmarkDataset
from ckdsr.data.image_io import read_image, write_png
from ckdsr.data.lmdb_writer import create_paired_lmdb
from ckdsr.data.matlab_imresize import bicubic_downsample, modcrop
from ckdsr.data.paired_dataset import PairedImageDataset
from ckdsr.utils.build import build_from_cfg
from ckdsr.utils.registry import DATASET_REGISTRY

S = 4


def _u8(t: torch.Tensor) -> np.ndarray:
    return (t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


@pytest.fixture(scope='module')
def pairs(tmp_path_factory):
    """Three random 98x130 GT (not mod-cropped) with LR = MATLAB bicubic of the whole image."""
    root = tmp_path_factory.mktemp('pairs')
    rng = np.random.default_rng(0)
    gts = {}
    for i in range(3):
        # noise: every 32x32 patch is unique, so a returned patch can be located exactly
        gt = rng.integers(0, 256, (98, 130, 3), dtype=np.uint8)
        gts[f'img{i}'] = gt
        write_png(root / 'HR' / f'img{i}.png', gt)
        write_png(root / 'LR' / f'img{i}x4.png', bicubic_downsample(gt, S))
    return root, gts


def _train_set(root, **kw):
    opt = dict(dataroot_gt=str(root / 'HR'), dataroot_lq=str(root / 'LR'), io_backend={'type': 'disk'},
               filename_tmpl='{}x4', gt_size=32, use_hflip=False, use_rot=False, scale=S, phase='train')
    opt.update(kw)
    return PairedImageDataset(**opt)


def _matches(patch: np.ndarray, gt: np.ndarray):
    """Every LR-aligned (top, left) where ``patch`` occurs in ``gt``."""
    p = patch.shape[0]
    windows = np.lib.stride_tricks.sliding_window_view(gt, (p, p, 3))[::S, ::S, 0]
    ys, xs = np.nonzero((windows == patch).all(axis=(2, 3, 4)))
    return [(int(y) * S, int(x) * S) for y, x in zip(ys, xs)]


def _locate(patch: np.ndarray, gt: np.ndarray):
    """(top, left) of ``patch`` inside ``gt`` (unique for noise)."""
    hits = _matches(patch, gt)
    assert len(hits) == 1
    return hits[0]


def _undo(img, ops):
    hflip, vflip, rot = ops
    if rot:
        img = img.swapaxes(0, 1)
    if vflip:
        img = img[::-1]
    if hflip:
        img = img[:, ::-1]
    return img


def test_train_patches_are_aligned_and_equal_the_bicubic_of_the_gt_patch(pairs):
    root, gts = pairs
    ds = _train_set(root)
    assert len(ds) == 3
    for seed in range(12):
        item = ds[(seed % 3, seed)]
        gt_p, lq_p = _u8(item['gt']), _u8(item['lq'])
        assert gt_p.shape == (32, 32, 3) and lq_p.shape == (8, 8, 3)
        whole_gt = modcrop(gts[f'img{seed % 3}'], S)
        top, left = _locate(gt_p, whole_gt)
        whole_lr = bicubic_downsample(whole_gt, S)
        # exact alignment: the LQ patch is the same region of the whole-image LR
        np.testing.assert_array_equal(lq_p, whole_lr[top // S:top // S + 8, left // S:left // S + 8])
        # exact bicubic: wherever the x4 kernel (+-8 HR px) stays inside the patch, the LQ patch
        # equals the MATLAB bicubic of the GT patch bit for bit (the outer 2 LR px see mirrored
        # borders instead of real neighbours)
        np.testing.assert_array_equal(bicubic_downsample(gt_p, S)[2:-2, 2:-2], lq_p[2:-2, 2:-2])
        assert item['gt_path'].endswith(f'img{seed % 3}.png') and item['lq_path'].endswith('x4.png')


def test_augmented_pairs_stay_aligned(pairs):
    root, gts = pairs
    ds = _train_set(root, use_hflip=True, use_rot=True)
    ops_seen = set()
    whole_gt = modcrop(gts['img0'], S)
    whole_lr = bicubic_downsample(whole_gt, S)
    for seed in range(24):
        item = ds[(0, seed)]
        gt_p, lq_p = _u8(item['gt']), _u8(item['lq'])
        found = [(ops, y, x) for ops in [(h, v, r) for h in (0, 1) for v in (0, 1) for r in (0, 1)]
                 for y, x in _matches(np.ascontiguousarray(_undo(gt_p, ops)), whole_gt)]
        assert len(found) == 1
        ops, y, x = found[0]
        ops_seen.add(ops)
        np.testing.assert_array_equal(_undo(lq_p, ops), whole_lr[y // S:y // S + 8, x // S:x // S + 8])
    assert len(ops_seen) >= 6


def test_backends_give_identical_samples(pairs, tmp_path):
    root, _ = pairs
    hr96 = tmp_path / 'HR'
    for i in range(3):  # 96x96 GT files, one 96x96 sub-image each: the LMDB tile equals the file
        gt = modcrop(read_image(root / 'HR' / f'img{i}.png'), S)[:, :96]
        write_png(hr96 / f'img{i}.png', gt)
        write_png(tmp_path / 'LR' / f'img{i}x4.png', bicubic_downsample(gt, S))
    dbs = {fmt: create_paired_lmdb(hr96, tmp_path, S, crop_size=96, step=96, fmt=fmt, prefix='t',
                                   progress=False) for fmt in ('png', 'raw')}
    opts = dict(gt_size=32, use_hflip=True, use_rot=True, scale=S, phase='train')
    disk = PairedImageDataset(dataroot_gt=str(hr96), dataroot_lq=str(tmp_path / 'LR'),
                              filename_tmpl='{}x4', **opts)
    variants = [PairedImageDataset(dataroot_gt=str(dbs[f][0]), dataroot_lq=str(dbs[f][1]),
                                   io_backend={'type': t}, **opts)
                for f in ('png', 'raw') for t in ('lmdb', 'memory')]
    for seed in range(6):
        ref = disk[(seed % 3, seed)]
        for ds in variants:
            item = ds[(seed % 3, seed)]
            assert torch.equal(item['gt'], ref['gt']) and torch.equal(item['lq'], ref['lq'])
            assert item['gt_path'].endswith(f'img{seed % 3}_s001')


def test_lq_from_gt(pairs):
    root, gts = pairs
    ds = PairedImageDataset(dataroot_gt=str(root / 'HR'), lq_from_gt=True, gt_size=48, scale=S)
    for seed in range(4):
        item = ds[(1, seed)]
        gt_p = _u8(item['gt'])
        assert gt_p.shape == (48, 48, 3)
        np.testing.assert_array_equal(_u8(item['lq']), bicubic_downsample(gt_p, S))
    val = PairedImageDataset(dataroot_gt=str(root / 'HR'), lq_from_gt=True, scale=S, phase='val')
    item = val[2]
    np.testing.assert_array_equal(_u8(item['gt']), modcrop(gts['img2'], S))
    np.testing.assert_array_equal(_u8(item['lq']), bicubic_downsample(gts['img2'], S))


def test_val_phase_returns_whole_mod_cropped_images(pairs):
    root, gts = pairs
    ds = _train_set(root, phase='val', gt_size=None)
    item = ds[0]
    assert item['gt'].shape == (3, 96, 128) and item['lq'].shape == (3, 24, 32)
    np.testing.assert_array_equal(_u8(item['gt']), gts['img0'][:96, :128])
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    assert batch['gt'].shape == (2, 3, 96, 128) and len(batch['lq_path']) == 2


def test_meta_info_file_and_errors(pairs, tmp_path):
    root, _ = pairs
    meta = tmp_path / 'meta.txt'
    meta.write_text('img2.png (98,130,3)\nimg0.png (98,130,3)\n')
    ds = _train_set(root, meta_info_file=str(meta))
    assert [p[0] for p in ds.pairs] == ['img2.png', 'img0.png']
    with pytest.raises(FileNotFoundError, match=r'img0_lr\.png'):
        _train_set(root, filename_tmpl='{}_lr')
    with pytest.raises(ValueError, match='dataroot_lq is required'):
        PairedImageDataset(dataroot_gt=str(root / 'HR'))
    with pytest.raises(ValueError, match='multiple of scale'):
        _train_set(root, gt_size=30)
    with pytest.raises(FileNotFoundError, match='missing.txt'):
        _train_set(root, meta_info_file=str(tmp_path / 'missing.txt'))
    with pytest.raises(ValueError, match='smaller than the patch'):
        _train_set(root, gt_size=200)[0]


def test_built_from_options_without_mutating_them(pairs):
    root, _ = pairs
    cfg = {'type': 'PairedImageDataset', 'name': 'toy', 'dataroot_gt': str(root / 'HR'),
           'dataroot_lq': str(root / 'LR'), 'filename_tmpl': '{}x4', 'io_backend': {'type': 'disk'},
           'gt_size': 32, 'use_hflip': True, 'use_rot': True, 'scale': 4}
    before = copy.deepcopy(cfg)
    ds = build_from_cfg(cfg, DATASET_REGISTRY, phase='train')
    assert cfg == before and ds.name == 'toy' and len(ds) == 3
    assert ds[0]['gt'].shape == (3, 32, 32) and ds[1]['lq'].dtype == torch.float32


def test_benchmark_dataset_with_reference_lr(benchmark_dir):
    ds = BenchmarkDataset(dataroot=str(benchmark_dir / 'Set14'), scale=3)
    assert len(ds) == 14 and not ds.lr_generated
    names = [p.stem for p in ds.hr_files]
    item = ds[names.index('bridge')]  # the single-channel image
    assert item['name'] == 'bridge' and item['gt'].shape[0] == 3 and item['lq'].shape[0] == 3
    item = ds[names.index('comic')]  # 250x361 HR: cropped to 83*3 x 120*3
    assert item['lq'].shape == (3, 120, 83) and item['gt'].shape == (3, 360, 249)
    assert item['lq_path'].endswith('comicx3.png')


def test_benchmark_dataset_generates_missing_lr_once(benchmark_dir, caplog):
    with caplog.at_level(logging.WARNING):
        ds = BenchmarkDataset(dataroot=str(benchmark_dir / 'Manga109'), scale=4)
        item = ds[0]
        ds[1]
    assert ds.lr_generated and len(ds) == 20
    assert sum('MATLAB-exact bicubic' in r.message for r in caplog.records) == 1
    hr = modcrop(read_image(ds.hr_files[0]), 4)
    np.testing.assert_array_equal(_u8(item['gt']), hr)
    np.testing.assert_array_equal(_u8(item['lq']), bicubic_downsample(hr, 4))
    with pytest.raises(FileNotFoundError, match='HR'):
        BenchmarkDataset(dataroot=str(benchmark_dir / 'nope'))
