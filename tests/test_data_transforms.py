"""ckdsr.data.transforms: aligned paired crops, BasicSR flip/rotation semantics, patch-only conversion."""
import random

import numpy as np
import pytest
import torch

from ckdsr.data.transforms import (apply_augment, augment, check_pair, draw_augment, mod_crop_to_lq,
                             paired_random_crop, random_crop, to_tensor)


def _pair(lh=20, lw=24, s=4, seed=0):
    lq = np.random.default_rng(seed).integers(0, 256, (lh, lw, 3), dtype=np.uint8)
    gt = np.repeat(np.repeat(lq, s, 0), s, 1)  # each LQ pixel is an s x s GT block
    return gt, lq


def test_paired_crop_is_aligned_and_sized():
    gt, lq = _pair()
    rng = random.Random(3)
    seen = set()
    for _ in range(50):
        g, q = paired_random_crop(gt, lq, 32, 4, rng)
        assert g.shape == (32, 32, 3) and q.shape == (8, 8, 3)
        np.testing.assert_array_equal(g[::4, ::4], q)
        np.testing.assert_array_equal(g, np.repeat(np.repeat(q, 4, 0), 4, 1))
        seen.add(q.tobytes())
    assert len(seen) > 20  # the crop position really varies
    # the same seed gives the same crop
    a = paired_random_crop(gt, lq, 32, 4, random.Random(7))[1]
    b = paired_random_crop(gt, lq, 32, 4, random.Random(7))[1]
    np.testing.assert_array_equal(a, b)


def test_crop_errors_name_the_images():
    gt, lq = _pair(6, 7)
    with pytest.raises(ValueError, match=r'lq\.png is 7x6.*smaller than the patch 8x8'):
        paired_random_crop(gt, lq, 32, 4, random.Random(0), 'gt.png', 'lq.png')
    with pytest.raises(ValueError, match='gt.png.*lq.png'):
        paired_random_crop(gt[:-1], lq, 16, 4, random.Random(0), 'gt.png', 'lq.png')
    with pytest.raises(ValueError, match='multiple of scale'):
        paired_random_crop(gt, lq, 10, 4, random.Random(0))
    with pytest.raises(ValueError, match='smaller than the patch'):
        random_crop(gt, 100, random.Random(0), 'x.png')
    with pytest.raises(ValueError, match='x.png'):
        check_pair(gt, lq[:-1], 4, 'x.png', 'y.png')


def test_mod_crop_to_lq_accepts_only_floor_sizes():
    gt, lq = _pair(5, 6)
    big = np.zeros((gt.shape[0] + 3, gt.shape[1] + 1, 3), np.uint8)
    assert mod_crop_to_lq(big, lq, 4).shape == gt.shape
    with pytest.raises(ValueError, match='floor'):
        mod_crop_to_lq(big[:-4], lq, 4, 'hr.png', 'lr.png')


def test_augment_ops_are_basicsr_semantics():
    img = np.arange(2 * 3 * 1, dtype=np.uint8).reshape(2, 3, 1)
    np.testing.assert_array_equal(apply_augment(img, (True, False, False)), img[:, ::-1])
    np.testing.assert_array_equal(apply_augment(img, (False, True, False)), img[::-1])
    np.testing.assert_array_equal(apply_augment(img, (False, False, True)), img.transpose(1, 0, 2))
    np.testing.assert_array_equal(apply_augment(img, (True, True, True)), np.rot90(img, 2).transpose(1, 0, 2))
    assert draw_augment(False, False, random.Random(0)) == (False, False, False)


def test_augment_covers_dihedral_group_and_keeps_pairs_aligned():
    gt, lq = _pair(4, 4, s=2)
    rng = random.Random(0)
    variants, hflip_only = set(), set()
    for _ in range(200):
        g, q = augment([gt, lq], True, True, rng)
        np.testing.assert_array_equal(g, np.repeat(np.repeat(q, 2, 0), 2, 1))
        variants.add(q.tobytes())
        hflip_only.add(augment([lq], True, False, rng)[0].tobytes())
    assert len(variants) == 8 and len(hflip_only) == 2


def test_to_tensor_matches_basicsr_conversion():
    img = np.random.default_rng(1).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    view = img[::-1, :, :]  # non-contiguous, and read-only below
    view.flags.writeable = False
    t = to_tensor(view)
    assert t.dtype == torch.float32 and t.shape == (3, 6, 5) and t.is_contiguous()
    ref = torch.from_numpy(np.ascontiguousarray((view.astype(np.float32) / 255.).transpose(2, 0, 1)))
    assert torch.equal(t, ref)
    assert to_tensor(img[..., 0]).shape == (1, 6, 5)
    with pytest.raises(TypeError):
        to_tensor(img.astype(np.float32))
