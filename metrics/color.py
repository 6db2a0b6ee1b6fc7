"""Colour conversions used by the evaluation protocol (DESIGN section 6)."""
import numpy as np

#: ITU-R BT.601 luma coefficients for RGB in [0, 255] (MATLAB ``rgb2ycbcr``), Y in [16, 235].
_Y_COEFFS = np.array([65.481, 128.553, 24.966], dtype=np.float64) / 255.0


def rgb2y(img: np.ndarray) -> np.ndarray:
    """Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 for an HWC RGB image in [0, 255].

    Computed in float64 and not rounded. Returns an (H, W) float64 array.
    """
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f'rgb2y expects an HWC image with 3 channels, got shape {img.shape}')
    return img.astype(np.float64) @ _Y_COEFFS + 16.0
