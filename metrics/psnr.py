"""PSNR (BasicSR ``calculate_psnr`` option keys, plus ``y_convention``), on RGB or the Y channel."""
from typing import Literal

import numpy as np

from ckdsr.metrics.common import prepare_pair
from ckdsr.utils.registry import METRIC_REGISTRY


@METRIC_REGISTRY.register()
def calculate_psnr(img: np.ndarray, img2: np.ndarray, crop_border: int = 0,
                   test_y_channel: bool = False, input_order: str = 'HWC',
                   y_convention: Literal['basicsr', 'matlab'] = 'basicsr') -> float:
    """PSNR = 10 log10(255^2 / MSE), MSE over all remaining pixels (and channels), float64.

    ``img``, ``img2``: RGB images in [0, 255] (uint8; the SR already rounded). ``crop_border``
    pixels are removed from each side (the protocol uses the scale). ``test_y_channel``: compare
    Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 only, kept in float (``y_convention``
    'basicsr', BasicSR) or rounded to uint8 as MATLAB's ``rgb2ycbcr`` on uint8 ('matlab'; see
    :mod:`ckdsr.metrics.color` for which scripts do that). Identical images give ``inf``.
    """
    a, b = prepare_pair(img, img2, crop_border, input_order, test_y_channel, y_convention)
    mse = np.mean((a - b) ** 2)
    if mse == 0:
        return float('inf')
    return float(10.0 * np.log10(255.0 ** 2 / mse))

