"""DUKD upcycled samples: zoom-in tiles are exactly HR tiles, zoom-out is MATLAB bicubic 1/s of the LR."""
import numpy as np
import pytest
import torch

from ckdsr.data.matlab_imresize import imresize
from ckdsr.models.distill.dukd_upcycle import draw_tiles, tile_grid, zoom_in, zoom_out


def hr_tile(gt, b, k, s, h, w):
    r, c = divmod(int(k), s)
    return gt[b, :, r * h:(r + 1) * h, c * w:(c + 1) * w]


@pytest.mark.parametrize('scale,n,shared', [(2, 2, False), (2, 4, True), (3, 1, False), (4, 3, True)])
def test_zoom_in_samples_are_exactly_hr_tiles(scale, n, shared):
    h, w, b = 5, 4, 3
    gt = torch.rand(b, 3, scale * h, scale * w)
    g = torch.Generator().manual_seed(0)
    pos = draw_tiles(b, scale, n, g, shared)
    assert pos.shape == (b, n)
    x = zoom_in(gt, scale, (h, w), pos)
    assert x.shape == (n * b, 3, h, w)
    for j in range(n):
        for i in range(b):
            assert torch.equal(x[j * b + i], hr_tile(gt, i, pos[i, j], scale, h, w))
    for i in range(b):
        assert len(set(pos[i].tolist())) == n  # distinct tiles per image
    if shared:
        assert (pos == pos[0]).all()


def test_tile_positions_per_image_vary_and_are_uniform():
    g = torch.Generator().manual_seed(1)
    pos = draw_tiles(4000, 2, 1, g, shared=False)
    counts = torch.bincount(pos[:, 0], minlength=4).float() / 4000
    assert (counts - 0.25).abs().max() < 0.03
    shared = draw_tiles(8, 2, 1, g, shared=True)
    assert len(set(shared[:, 0].tolist())) == 1


def test_tile_grid_covers_the_patch():
    gt = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6)
    tiles = tile_grid(gt, 3, (2, 2))
    assert tiles.shape == (2, 9, 3, 2, 2)
    assert torch.equal(tiles[1, 5], gt[1, :, 2:4, 4:6])  # position 5 = row 1, col 2
    with pytest.raises(ValueError, match='not 2 x the LR patch'):
        tile_grid(gt, 2, (2, 2))


def test_draw_tiles_rejects_too_many():
    with pytest.raises(ValueError, match='n_zoom_in must be in \\[1, 4\\]'):
        draw_tiles(2, 2, 5, torch.Generator(), False)


@pytest.mark.parametrize('scale,size', [(2, 8), (3, 9), (4, 12), (4, 6)])
def test_zoom_out_is_matlab_bicubic_of_the_lr(scale, size):
    lq = torch.rand(2, 3, size, size, dtype=torch.float64)
    x_zo, target = zoom_out(lq, scale)
    crop = size - size % scale
    assert torch.equal(target, lq[..., :crop, :crop])  # the LR patch (cropped to a multiple of s) is the target
    assert x_zo.shape == (2, 3, crop // scale, crop // scale)
    for i in range(2):
        ref = imresize(target[i].permute(1, 2, 0).numpy(), 1 / scale)  # MATLAB-exact reference, HWC
        np.testing.assert_allclose(x_zo[i].permute(1, 2, 0).numpy(), ref, rtol=0, atol=1e-12)


def test_zoom_out_2x2_to_1x1_is_the_mean():
    # hand value: the antialiased kernel is symmetric about the output centre, between the two pixels
    lq = torch.tensor([[[[0.25, 0.5], [0.75, 1.0]]]])
    x_zo, _ = zoom_out(lq, 2)
    assert torch.allclose(x_zo, torch.tensor([[[[0.625]]]]), atol=1e-7)


def test_zoom_out_rejects_patches_smaller_than_the_scale():
    with pytest.raises(ValueError, match='smaller than the scale 4'):
        zoom_out(torch.rand(1, 3, 3, 3), 4)
