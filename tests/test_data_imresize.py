"""ckdsr.data.matlab_imresize: MATLAB conventions, float/upscale paths against Pillow, torch twin.

The bit-exact check against the MATLAB-made benchmark LR lives in test_data_make_lr.py.
"""
import numpy as np
import pytest
import torch

from ckdsr.data.image_io import read_image
from ckdsr.data.matlab_imresize import (bicubic_downsample, contributions, imresize, imresize_torch,
                                  modcrop, output_size)


def _rand(h, w, c=3, seed=0, dtype=np.uint8):
    img = np.random.default_rng(seed).integers(0, 256, (h, w, c) if c else (h, w))
    return img.astype(dtype)


def test_modcrop_and_output_size():
    img = _rand(23, 30)
    assert modcrop(img, 4).shape == (20, 28, 3)
    assert modcrop(img[..., 0], 3).shape == (21, 30)
    assert output_size((255, 300), 1 / 3)[0] == (85, 100)  # n * (1/3) must not ceil to 86
    assert output_size((10, 10), 0.75)[0] == (8, 8)
    assert output_size((10, 12), size=(5, 7)) == ((5, 7), (0.5, 7 / 12))
    with pytest.raises(ValueError, match='exactly one'):
        output_size((10, 10))


def test_kernel_weights_match_matlab_definition():
    # x4 shrink: antialiased kernel of width 16 -> 18 taps, two of them zero everywhere and dropped
    w, idx = contributions(40, 10, 0.25, True)
    assert w.shape == (10, 16) and idx.shape == (10, 16)
    np.testing.assert_allclose(w.sum(axis=1), 1, atol=1e-12)
    # output 0 is centred at (1-based) u = 1/0.25 + 0.5*(1-4) = 2.5 -> taps mirror at the left border
    np.testing.assert_array_equal(idx[0, :9], [5, 4, 3, 2, 1, 0, 0, 1, 2])
    # interior rows are shifts of each other by the factor
    np.testing.assert_array_equal(idx[5] - idx[4], 4)
    np.testing.assert_allclose(w[5], w[4], atol=0)
    # x2 enlarge: no antialiasing, 4-px kernel -> 6 taps before dropping
    w2, _ = contributions(10, 20, 2.0, True)
    assert w2.shape[1] <= 6
    # symmetry: the kernel of a centred sample is a palindrome
    np.testing.assert_allclose(w[4], w[4][::-1], atol=1e-15)


def test_uint8_rounds_after_each_pass_height_first():
    img = _rand(48, 36, seed=1)
    out = imresize(img, 1 / 4)
    f = img.astype(np.float64)
    first = np.clip(np.floor(imresize(f, size=(12, 36)) + 0.5), 0, 255)
    second = np.clip(np.floor(imresize(first, size=(12, 9)) + 0.5), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(out, second)
    # the float path has no intermediate rounding: it is a genuinely different result
    float_out = imresize(f, 1 / 4)
    assert out.dtype == np.uint8 and float_out.dtype == np.float64
    assert np.abs(float_out - out).max() < 2.0
    assert (np.floor(float_out + 0.5) != out).any()


def test_constant_image_stays_constant_both_ways():
    img = np.full((30, 20, 3), 77, np.uint8)
    assert (imresize(img, 1 / 3) == 77).all()
    assert (imresize(img, 2.0) == 77).all()
    assert imresize(img, 2.0).shape == (60, 40, 3)
    assert (imresize(img.astype(np.float32), 0.5) == 77).all()


def _pillow_resize(img2d: np.ndarray, out_hw):
    Image = pytest.importorskip('PIL.Image')
    pil = Image.fromarray(img2d.astype(np.float32), mode='F')
    return np.asarray(pil.resize((out_hw[1], out_hw[0]), Image.BICUBIC), dtype=np.float64)


@pytest.mark.parametrize('scale, margin', [(1 / 4, 3), (1 / 3, 3), (1 / 2, 3), (2.0, 6), (3.0, 8)])
def test_float_path_matches_pillow_away_from_borders(scale, margin):
    # Pillow uses the same a=-0.5 cubic, the same antialiased stretching and the same sample
    # centres; only its border handling (clip + renormalise, no mirroring) differs.
    img = _rand(48, 60, c=0, seed=2, dtype=np.float64)
    out = imresize(img, scale)
    ref = _pillow_resize(img, out.shape)
    inner = (slice(margin, -margin), slice(margin, -margin))
    np.testing.assert_allclose(out[inner], ref[inner], atol=2e-3)
    assert out.dtype == np.float64


def test_float32_in_float32_out_and_2d():
    img = _rand(20, 24, c=0, seed=3, dtype=np.float32) / 255
    out = imresize(img, 0.5)
    assert out.dtype == np.float32 and out.shape == (10, 12)
    np.testing.assert_allclose(out, imresize(img.astype(np.float64), 0.5), atol=1e-6)


def test_torch_twin_matches_numpy_bitwise(benchmark_dir):
    hr = modcrop(read_image(benchmark_dir / 'Set5' / 'HR' / 'baby.png'), 3)[:120, :150]
    batch = torch.from_numpy(np.stack([hr, hr[::-1].copy()])).permute(0, 3, 1, 2)  # NCHW uint8
    out = imresize_torch(batch, 1 / 3)
    assert out.dtype == torch.uint8 and out.shape == (2, 3, 40, 50)
    np.testing.assert_array_equal(out[0].permute(1, 2, 0).numpy(), bicubic_downsample(hr, 3))
    np.testing.assert_array_equal(out[1].permute(1, 2, 0).numpy(), bicubic_downsample(hr[::-1], 3))
    x = torch.rand(2, 3, 16, 20, dtype=torch.float32)
    up = imresize_torch(x, 2.0)
    ref = np.stack([imresize(x[i].permute(1, 2, 0).numpy(), 2.0) for i in range(2)])
    assert up.dtype == torch.float32
    np.testing.assert_array_equal(up.permute(0, 2, 3, 1).numpy(), ref)


def test_bad_input_errors():
    with pytest.raises(TypeError, match='uint16'):
        imresize(np.zeros((8, 8), np.uint16), 0.5)
    with pytest.raises(ValueError, match='HW or HWC'):
        imresize(np.zeros((2, 8, 8, 3), np.uint8), 0.5)
    with pytest.raises(ValueError, match='integer scale'):
        bicubic_downsample(np.zeros((8, 8, 3), np.uint8), 2.5)
    with pytest.raises(ValueError, match='positive'):
        imresize(np.zeros((8, 8), np.uint8), -1.0)
