"""MATLAB's round-half-away-from-zero on exact .5 ties, with synthetic inputs (no data files).

Random images almost never produce an exact tie, so without these a switch to ``np.rint`` (half
to even) would only be caught by the comparisons against MATLAB-made files in ``../shared``.
Every tie below is x.5 with x even, where half-to-even and half-away-from-zero disagree; each
test first checks that the unrounded value really is the tie.
"""
import numpy as np
import torch

from ckdsr.data.matlab_imresize import bicubic_downsample, contributions, imresize, imresize_torch
from ckdsr.metrics import calculate_psnr, calculate_ssim
from ckdsr.metrics.color import rgb2y_matlab, round_half_away


def tie_image() -> np.ndarray:
    """16 x 16, zero except columns 6 and 7 (= 192), constant down the columns.

    At 1/2 the antialiased cubic's taps are dyadic: (-3, -9, 29, 111, 111, 29, -9, -3) / 256, so
    every value is exact in float64. The height pass leaves the columns as they are (weights sum
    to 1 exactly); in the width pass output column 3 takes columns 6 and 7 with 111/256 each:
    111 * 384 / 256 = 166.5.
    """
    img = np.zeros((16, 16), np.uint8)
    img[:, 6:8] = 192
    return img


def test_the_tie_image_really_is_a_tie():
    w, idx = contributions(16, 8, 0.5, True)
    np.testing.assert_array_equal(w[3] * 256, [-3, -9, 29, 111, 111, 29, -9, -3])
    np.testing.assert_array_equal(idx[3], np.arange(3, 11))
    exact = imresize(tie_image().astype(np.float64), 0.5)  # the float path never rounds
    assert (exact[:, 3] == 166.5).all()
    assert np.rint(166.5) == 166  # what half-to-even would give


def test_bicubic_uint8_path_rounds_ties_away_from_zero():
    img = tie_image()
    for out in (imresize(img, 0.5), bicubic_downsample(img, 2),
                imresize_torch(torch.from_numpy(img), 0.5).numpy()):
        assert out.dtype == np.uint8
        assert (out[:, 3] == 167).all()  # np.rint would give 166
    rgb = np.repeat(img[..., None], 3, axis=2)  # the LR path on an HWC image: same per channel
    assert (bicubic_downsample(rgb, 2)[:, 3] == 167).all()


def test_round_half_away_on_both_signs():
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 52.5, 2.4999999999999996])
    np.testing.assert_array_equal(round_half_away(x), [-3, -2, -1, 1, 2, 3, 53, 2])


def test_matlab_y_rounds_an_exact_tie_away_from_zero():
    # Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255: for (6, 34, 182) exactly 16 + 36.5 = 52.5
    assert 65481 * 6 + 128553 * 34 + 24966 * 182 == 36 * 255000 + 127500
    px = np.array([[[6, 34, 182]]], np.uint8)
    assert rgb2y_matlab(px)[0, 0] == 53  # np.rint would give 52
    # the tie reaches the metrics: PSNR against black (Y = 16) uses 53 - 16 = 37, not 36
    img = np.tile(px, (12, 12, 1))
    black = np.zeros_like(img)
    psnr = calculate_psnr(img, black, crop_border=0, test_y_channel=True, y_convention='matlab')
    assert psnr == 10 * np.log10(255.0 ** 2 / 37.0 ** 2)
    # a flat pair: SSIM = C1 / (mu_a^2 + mu_b^2 + C1) ... times 1 (no variance); with mu 53 and 16
    c1 = (0.01 * 255) ** 2
    ssim = calculate_ssim(img, black, crop_border=0, test_y_channel=True, y_convention='matlab')
    assert abs(ssim - (2 * 53 * 16 + c1) / (53 ** 2 + 16 ** 2 + c1)) < 1e-12


def test_every_colour_whose_y_is_a_tie_rounds_up():
    # all 194 of the 16.7M uint8 colours whose exact Y ends in .5, found in integers:
    # 255000 (Y - 16) = 65481 R + 128553 G + 24966 B, a tie when that is 127500 mod 255000
    g, b = np.meshgrid(np.arange(256, dtype=np.int64), np.arange(256, dtype=np.int64), indexing='ij')
    ties = []
    for r in range(256):
        gi, bi = np.nonzero((65481 * r + 128553 * g + 24966 * b) % 255000 == 127500)
        ties += [(r, int(x), int(y)) for x, y in zip(gi, bi)]
    assert len(ties) == 194
    rgb = np.array(ties, np.int64)
    num = rgb @ np.array([65481, 128553, 24966])
    want = 16 + (num + 127500) // 255000  # the upper neighbour: half away from zero, Y > 0
    got = rgb2y_matlab(rgb.astype(np.uint8)[None])[0]
    np.testing.assert_array_equal(got, want)
    assert (np.rint(num / 255000) + 16 != want).sum() > 50  # half to even misses the even ones
