"""Shared preparation of an image pair for PSNR / SSIM: layout, border crop, Y channel."""
from typing import Tuple

import numpy as np

from ckdsr.metrics.color import Y_CONVENTIONS, rgb2y_convention


def to_hwc(img: np.ndarray, input_order: str = 'HWC') -> np.ndarray:
    """Return ``img`` as an HWC array (2-D greyscale becomes H x W x 1)."""
    if input_order not in ('HWC', 'CHW'):
        raise ValueError(f"input_order must be 'HWC' or 'CHW', got {input_order!r}")
    if img.ndim == 2:
        return img[..., None]
    if img.ndim != 3:
        raise ValueError(f'expected a 2-D or 3-D image, got shape {img.shape}')
    return img.transpose(1, 2, 0) if input_order == 'CHW' else img


def prepare_pair(img: np.ndarray, img2: np.ndarray, crop_border: int, input_order: str,
                 test_y_channel: bool, y_convention: str = 'basicsr') -> Tuple[np.ndarray, np.ndarray]:
    """Float64 HWC copies of both images, ``crop_border`` pixels cut from every side, optionally
    reduced to the Y channel (H x W x 1) under ``y_convention`` (see :mod:`ckdsr.metrics.color`).
    Images are RGB in [0, 255] (uint8 or float; 'matlab' Y needs integer values)."""
    if y_convention not in Y_CONVENTIONS:
        raise ValueError(f"y_convention must be one of {', '.join(Y_CONVENTIONS)}, got {y_convention!r}")
    if img.shape != img2.shape:
        raise ValueError(f'image shapes differ: {img.shape} vs {img2.shape}')
    if crop_border < 0:
        raise ValueError(f'crop_border must be >= 0, got {crop_border}')
    out = []
    for im in (img, img2):
        im = to_hwc(np.asarray(im), input_order).astype(np.float64)
        if crop_border:
            im = im[crop_border:-crop_border, crop_border:-crop_border]
        if test_y_channel and im.shape[2] == 3:
            im = rgb2y_convention(im, y_convention)[..., None]
        out.append(im)
    if out[0].size == 0:
        raise ValueError(f'crop_border={crop_border} leaves nothing of a {img.shape} image')
    return out[0], out[1]
