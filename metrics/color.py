"""Colour conversions used by the evaluation protocol (DESIGN section 6).

Two Y conventions exist in the SR literature, both from BT.601 with RGB in [0, 255]:

* ``'basicsr'`` (the default): Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 kept in float,
  as BasicSR's ``bgr2ycbcr(..., y_only=True)`` before its PSNR/SSIM.
* ``'matlab'``: MATLAB ``rgb2ycbcr`` applied to the uint8 image, whose Y comes back as uint8
  (rounded half away from zero), as MATLAB evaluation scripts that pass uint8 images score it.
  Not every paper's script does: RCAN's released ``RCAN_TestCode/Evaluate_PSNR_SSIM.m``
  (yulunzhang/RCAN) calls ``rgb2ycbcr(im2double(im))`` and keeps Y unrounded in single precision,
  which is the 'basicsr' convention to float32 rounding; CARN-pytorch publishes no MATLAB script.
  Which convention a paper's table used is therefore an assumption unless its script says so.
"""
import numpy as np

#: the conventions :func:`rgb2y_convention` accepts
Y_CONVENTIONS = ('basicsr', 'matlab')

#: ITU-R BT.601 luma coefficients for RGB in [0, 255] (MATLAB ``rgb2ycbcr``), Y in [16, 235].
_BT601_Y = np.array([65.481, 128.553, 24.966], dtype=np.float64)
_Y_COEFFS = _BT601_Y / 255.0
#: the same coefficients x 1000, integers: 255000 (Y - 16) = 65481 R + 128553 G + 24966 B exactly
_Y_COEFFS_INT = np.array([65481.0, 128553.0, 24966.0])


def _check_rgb(img: np.ndarray, what: str) -> None:
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f'{what} expects an HWC image with 3 channels, got shape {img.shape}')


def rgb2y(img: np.ndarray) -> np.ndarray:
    """Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 for an HWC RGB image in [0, 255].

    Computed in float64 and not rounded. Returns an (H, W) float64 array.
    """
    _check_rgb(img, 'rgb2y')
    return img.astype(np.float64) @ _Y_COEFFS + 16.0


def round_half_away(x: np.ndarray) -> np.ndarray:
    """Round to the nearest integer, ties away from zero (MATLAB ``round`` and its integer casts)."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def rgb2y_matlab(img: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2ycbcr`` Y of a uint8-valued HWC RGB image: (H, W) float64 holding integers.

    Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 rounded half away from zero (MATLAB's cast to
    uint8; Y lies in [16, 235], so no saturation). The value is rounded *exactly*: the numerator
    65481 R + 128553 G + 24966 B is an exact integer in float64 and its correctly rounded quotient
    by 255000 is x.5 exactly when the true Y is. MATLAB evaluates the formula in double in an order
    it does not document; for 194 of the 16.7M colours the true Y ends in .5 and that order decides
    the side (e.g. ``c1 R + c2 G + c3 B + 16`` with ``c = (1/255) T`` rounds 149 of them down).
    Rounding the exact value is our assumption. Non-integer input is an error: MATLAB's uint8 path
    only exists for uint8 images.
    """
    _check_rgb(img, 'rgb2y_matlab')
    f = np.asarray(img, dtype=np.float64)
    if not np.array_equal(f, np.floor(f)) or f.min() < 0 or f.max() > 255:
        raise ValueError("y_convention 'matlab' needs uint8 images (integers in 0..255), as MATLAB's "
                         'rgb2ycbcr on uint8; got non-integer or out-of-range values')
    num = f @ _Y_COEFFS_INT  # exact: integers below 2^26
    return round_half_away(num / 255000.0) + 16.0


def rgb2y_convention(img: np.ndarray, convention: str = 'basicsr') -> np.ndarray:
    """Y of an HWC RGB image in [0, 255] under ``convention`` ('basicsr' float, 'matlab' uint8-rounded)."""
    if convention == 'basicsr':
        return rgb2y(img)
    if convention == 'matlab':
        return rgb2y_matlab(img)
    raise ValueError(f"y_convention must be one of {', '.join(Y_CONVENTIONS)}, got {convention!r}")
