"""SSIM (Wang et al. 2004, Eq. 13) with an 11x11 Gaussian window, sigma 1.5, valid region."""
from typing import Literal

import cv2
import numpy as np

from ckdsr.metrics.common import prepare_pair
from ckdsr.utils.registry import METRIC_REGISTRY

_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """Normalised 2-D Gaussian ``size x size`` window, float64 (outer product of 1-D kernels)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-x ** 2 / (2.0 * sigma ** 2))
    g /= g.sum()
    return np.outer(g, g)


def ssim_single_channel(a: np.ndarray, b: np.ndarray, window: np.ndarray) -> float:
    """Mean SSIM map of two float64 H x W images in [0, 255], only where the window fits.

    SSIM = (2 mu_a mu_b + C1)(2 sigma_ab + C2) / ((mu_a^2 + mu_b^2 + C1)(sigma_a^2 + sigma_b^2 + C2)),
    C1 = (0.01*255)^2, C2 = (0.03*255)^2, local moments weighted by ``window`` (population form).
    """
    r = window.shape[0] // 2
    if min(a.shape) < window.shape[0]:
        raise ValueError(f'image {a.shape} is smaller than the {window.shape[0]}x{window.shape[0]} '
                         'SSIM window (after border crop)')

    def filt(x):
        return cv2.filter2D(x, cv2.CV_64F, window)[r:-r, r:-r]

    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a ** 2
    var_b = filt(b * b) - mu_b ** 2
    cov = filt(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + _C1) * (2 * cov + _C2)
    den = (mu_a ** 2 + mu_b ** 2 + _C1) * (var_a + var_b + _C2)
    return float(np.mean(num / den))


@METRIC_REGISTRY.register()
def calculate_ssim(img: np.ndarray, img2: np.ndarray, crop_border: int = 0,
                   test_y_channel: bool = False, input_order: str = 'HWC',
                   y_convention: Literal['basicsr', 'matlab'] = 'basicsr') -> float:
    """SSIM of two RGB images in [0, 255] (BasicSR ``calculate_ssim`` option keys).

    On the Y channel when ``test_y_channel`` (float Y for ``y_convention`` 'basicsr', uint8-rounded
    MATLAB ``rgb2ycbcr`` Y for 'matlab'), else the mean of the per-channel SSIMs.
    ``crop_border`` pixels are removed from each side first; computed in float64.
    """
    a, b = prepare_pair(img, img2, crop_border, input_order, test_y_channel, y_convention)
    window = gaussian_window(11, 1.5)
    return float(np.mean([ssim_single_channel(a[..., c], b[..., c], window)
                          for c in range(a.shape[2])]))
