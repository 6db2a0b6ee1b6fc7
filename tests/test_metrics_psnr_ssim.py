"""PSNR / SSIM against scikit-image oracles on real benchmark images, plus hand-computed values."""
import math

import cv2
import numpy as np
import pytest

from ckdsr.metrics import calculate_psnr, calculate_ssim
from ckdsr.metrics.color import rgb2y
from ckdsr.metrics.ssim import gaussian_window
from ckdsr.utils.build import build_from_cfg
from ckdsr.utils.registry import METRIC_REGISTRY

TOL = 1e-10


def _read_rgb(path):
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)  # greyscale files come back as 3 channels
    assert img is not None, path
    return np.ascontiguousarray(img[..., ::-1])


def _y_oracle(img):
    """Y written out channel by channel (independent of metrics.color)."""
    r, g, b = (img[..., i].astype(np.float64) for i in range(3))
    return 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0


def _sk_psnr(a, b):
    from skimage.metrics import peak_signal_noise_ratio
    return peak_signal_noise_ratio(a.astype(np.float64), b.astype(np.float64), data_range=255)


def _sk_ssim(a, b, channel_axis=None):
    from skimage.metrics import structural_similarity
    return structural_similarity(a.astype(np.float64), b.astype(np.float64), gaussian_weights=True,
                                 sigma=1.5, use_sample_covariance=False, data_range=255,
                                 channel_axis=channel_axis)


def _pairs(benchmark_dir):
    """(name, HR, degraded) pairs: HR vs bicubic-upsampled LR, and HR vs a noisy copy."""
    out = []
    for set_name, name in (('Set5', 'butterfly'), ('Set14', 'bridge')):
        hr = _read_rgb(benchmark_dir / set_name / 'HR' / f'{name}.png')
        lr = _read_rgb(benchmark_dir / set_name / 'LR_bicubic' / 'X4' / f'{name}x4.png')
        hr = hr[:lr.shape[0] * 4, :lr.shape[1] * 4]
        up = cv2.resize(lr, (hr.shape[1], hr.shape[0]), interpolation=cv2.INTER_CUBIC)
        out.append((f'{name}-bicubic', hr, up))
        rng = np.random.default_rng(0)
        noisy = np.clip(hr.astype(np.int16) + rng.integers(-12, 13, hr.shape), 0, 255).astype(np.uint8)
        out.append((f'{name}-noise', hr, noisy))
    return out


@pytest.fixture(scope='module')
def pairs(benchmark_dir):
    return _pairs(benchmark_dir)


def test_bridge_is_greyscale_read_as_three_equal_channels(pairs):
    hr = dict((n, h) for n, h, _ in pairs)['bridge-bicubic']
    assert hr.shape[2] == 3
    assert np.array_equal(hr[..., 0], hr[..., 1]) and np.array_equal(hr[..., 1], hr[..., 2])


@pytest.mark.parametrize('crop', [0, 4])
def test_psnr_y_matches_skimage(pairs, crop):
    for name, hr, sr in pairs:
        c = slice(crop, -crop) if crop else slice(None)
        want = _sk_psnr(_y_oracle(sr)[c, c], _y_oracle(hr)[c, c])
        got = calculate_psnr(sr, hr, crop_border=crop, test_y_channel=True)
        assert abs(got - want) < TOL, name


@pytest.mark.parametrize('crop', [0, 4])
def test_psnr_rgb_matches_skimage(pairs, crop):
    for name, hr, sr in pairs:
        c = slice(crop, -crop) if crop else slice(None)
        want = _sk_psnr(sr[c, c], hr[c, c])
        got = calculate_psnr(sr, hr, crop_border=crop, test_y_channel=False)
        assert abs(got - want) < TOL, name


@pytest.mark.parametrize('crop', [0, 4])
def test_ssim_y_matches_skimage(pairs, crop):
    for name, hr, sr in pairs:
        c = slice(crop, -crop) if crop else slice(None)
        want = _sk_ssim(_y_oracle(sr)[c, c], _y_oracle(hr)[c, c])
        got = calculate_ssim(sr, hr, crop_border=crop, test_y_channel=True)
        assert abs(got - want) < TOL, name


def test_ssim_rgb_matches_skimage(pairs):
    for name, hr, sr in pairs:
        want = _sk_ssim(sr[4:-4, 4:-4], hr[4:-4, 4:-4], channel_axis=2)
        got = calculate_ssim(sr, hr, crop_border=4, test_y_channel=False)
        assert abs(got - want) < TOL, name


def test_y_of_grey_is_16_plus_219_over_255():
    # coefficients sum to 65.481 + 128.553 + 24.966 = 219, so R=G=B=v gives 16 + 219 v / 255
    v = np.array([0, 1, 128, 255], dtype=np.uint8)
    img = np.repeat(v[None, :, None], 3, axis=2)
    assert np.allclose(rgb2y(img)[0], [16.0, 16.0 + 219 / 255, 16.0 + 219 * 128 / 255, 235.0],
                       atol=1e-12, rtol=0)


def test_y_is_not_rounded():
    img = np.array([[[10, 20, 30]]], dtype=np.uint8)
    # 16 + (654.81 + 2571.06 + 748.98) / 255 = 16 + 3974.85 / 255 = 31.58764705882353
    assert abs(rgb2y(img)[0, 0] - 31.58764705882353) < 1e-12


def test_psnr_hand_computed():
    a = np.zeros((4, 4, 3), dtype=np.uint8)
    b = a.copy()
    b[0, 0, 0] = 12  # MSE = 144 / 48 = 3
    assert abs(calculate_psnr(a, b) - 10 * math.log10(255 ** 2 / 3)) < 1e-12
    # on Y: only (0,0) differs, by 65.481*12/255 = 3.0814588..., MSE = that^2 / 16
    dy = 65.481 * 12 / 255
    assert abs(calculate_psnr(a, b, test_y_channel=True) - 10 * math.log10(255 ** 2 * 16 / dy ** 2)) < 1e-10
    assert calculate_psnr(a, a) == math.inf


def test_crop_border_removes_the_difference():
    a = np.full((12, 12, 3), 100, dtype=np.uint8)
    b = a.copy()
    b[:2] = 0  # only the top two rows differ
    assert calculate_psnr(a, b, crop_border=2) == math.inf
    assert calculate_psnr(a, b, crop_border=1) < 30


def test_ssim_identical_is_one_and_constant_shift_hand_value():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    assert abs(calculate_ssim(a, a) - 1.0) < 1e-12
    # two constant images: sigmas are 0, so SSIM = (2*m1*m2 + C1) / (m1^2 + m2^2 + C1)
    c1 = (0.01 * 255) ** 2
    x = np.full((16, 16), 50, dtype=np.uint8)
    y = np.full((16, 16), 60, dtype=np.uint8)
    want = (2 * 50 * 60 + c1) / (50 ** 2 + 60 ** 2 + c1)
    assert abs(calculate_ssim(x, y) - want) < 1e-12


def test_gaussian_window_matches_cv2_kernel():
    g = cv2.getGaussianKernel(11, 1.5)
    assert np.allclose(gaussian_window(11, 1.5), g @ g.T, atol=1e-16, rtol=0)


def test_chw_input_order_and_registry_build():
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)
    want = calculate_ssim(a, b, crop_border=2, test_y_channel=True)
    assert calculate_ssim(a.transpose(2, 0, 1), b.transpose(2, 0, 1), crop_border=2,
                          test_y_channel=True, input_order='CHW') == want
    cfg = {'type': 'calculate_ssim', 'crop_border': 2, 'test_y_channel': True}
    assert build_from_cfg(cfg, METRIC_REGISTRY, img=a, img2=b) == want
    assert 'calculate_psnr' in METRIC_REGISTRY


def test_errors_are_clear():
    a = np.zeros((8, 8, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match='shapes differ'):
        calculate_psnr(a, np.zeros((8, 9, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match='smaller than'):
        calculate_ssim(a, a)
    with pytest.raises(ValueError, match='leaves nothing'):
        calculate_psnr(a, a, crop_border=4)


# ------------------------------------------------------------------ y_convention 'matlab' (issue 17.9)
def _y_matlab_oracle(img):
    """MATLAB rgb2ycbcr on uint8: the Y formula rounded half away from zero, in integers:
    16 + floor((65481 R + 128553 G + 24966 B + 127500) / 255000) (Y > 0, so half up = half away)."""
    r, g, b = (img[..., i].astype(np.int64) for i in range(3))
    return (16 + (65481 * r + 128553 * g + 24966 * b + 127500) // 255000).astype(np.float64)


@pytest.mark.parametrize('crop', [0, 4])
def test_matlab_y_psnr_ssim_match_skimage_on_rounded_y(pairs, crop):
    for name, hr, sr in pairs:
        c = slice(crop, -crop) if crop else slice(None)
        a, b = _y_matlab_oracle(hr)[c, c], _y_matlab_oracle(sr)[c, c]
        kw = dict(crop_border=crop, test_y_channel=True, y_convention='matlab')
        assert abs(calculate_psnr(hr, sr, **kw) - _sk_psnr(a, b)) < TOL, name
        assert abs(calculate_ssim(hr, sr, **kw) - _sk_ssim(a, b)) < TOL, name
        # the conventions really differ on real images, and only slightly
        basicsr = calculate_psnr(hr, sr, crop_border=crop, test_y_channel=True)
        assert 1e-5 < abs(basicsr - calculate_psnr(hr, sr, **kw)) < 0.2, name


def test_matlab_y_is_the_rounded_y_and_basicsr_stays_the_default():
    from ckdsr.metrics.color import rgb2y_matlab
    img = np.random.default_rng(4).integers(0, 256, (40, 40, 3)).astype(np.uint8)
    np.testing.assert_array_equal(rgb2y_matlab(img), _y_matlab_oracle(img))
    # (10, 20, 30): 31.5876... -> 32
    assert rgb2y_matlab(np.array([[[10, 20, 30]]], np.uint8))[0, 0] == 32
    other = np.random.default_rng(5).integers(0, 256, (40, 40, 3)).astype(np.uint8)
    assert calculate_psnr(img, other, test_y_channel=True) == \
        calculate_psnr(img, other, test_y_channel=True, y_convention='basicsr')
    # without test_y_channel the convention has nothing to act on
    assert calculate_psnr(img, other) == calculate_psnr(img, other, y_convention='matlab')


def test_matlab_y_errors_are_clear():
    img = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="y_convention must be one of basicsr, matlab, got 'MATLAB'"):
        calculate_psnr(img, img, test_y_channel=True, y_convention='MATLAB')
    with pytest.raises(ValueError, match="y_convention 'matlab' needs uint8 images"):
        calculate_ssim(img + 0.5, img.astype(np.float64), test_y_channel=True, y_convention='matlab')
    cfg = {'type': 'calculate_psnr', 'test_y_channel': True, 'y_convention': 'matlab'}
    assert build_from_cfg  # the option key reaches the metric through the registry like the others
    assert METRIC_REGISTRY.get(cfg['type'])(img, img + 1, **{k: v for k, v in cfg.items() if k != 'type'}) > 0
