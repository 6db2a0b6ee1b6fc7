"""MATLAB-compatible bicubic ``imresize`` (numpy, plus a torch twin for batched tensors).

Reproduces ``imresize(modcrop(HR, s), 1/s, 'bicubic')`` bit for bit on uint8 images, which
is how every ``LR_bicubic`` image of the SR benchmarks was made. What has to match MATLAB
(see ``shared/datasets/SOURCES.md``):

- Keys kernel with a = -0.5; when shrinking (scale < 1, antialiasing on) the kernel is
  stretched by 1/scale and its weights scaled by ``scale``.
- Sample centres ``u = x/scale + 0.5*(1 - 1/scale)`` (1-based), ``left = floor(u - width/2)``,
  ``ceil(width) + 2`` taps; weights normalised per output sample; symmetric border mirroring
  ``[1:n, n:-1:1]``; kernel columns that are zero for every output sample dropped.
- The dimension with the smaller scale goes first; on ties the height (rows) goes first.
- uint8 input is rounded back to uint8 after *each* pass, half away from zero
  (``floor(x + 0.5)``) and clipped to 0..255. Float input stays float (no rounding).
- Each output sample accumulates ``w_k * x_k`` in float64 in tap order.
"""
import math
from functools import lru_cache
from typing import Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ['imresize', 'imresize_torch', 'modcrop', 'bicubic_downsample', 'contributions',
           'output_size']


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right of an HW or HWC image so both sides are multiples of ``scale``."""
    if img.ndim not in (2, 3):
        raise ValueError(f'modcrop expects an HW or HWC image, got shape {img.shape}')
    h, w = img.shape[:2]
    return img[:h - h % scale, :w - w % scale]


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic kernel, a = -0.5, written in MATLAB's operation order."""
    absx = np.abs(x)
    absx2 = absx ** 2
    absx3 = absx ** 3
    inner = (1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1)
    outer = (-0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2) * ((absx > 1) & (absx <= 2))
    return inner + outer


@lru_cache(maxsize=256)
def contributions(in_len: int, out_len: int, scale: float,
                  antialias: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """Weights ``(out_len, P)`` float64 and 0-based source indices ``(out_len, P)`` int64.

    Row ``i`` of the result is output sample ``i``; taps are in MATLAB's order. Cached: the
    returned arrays are read-only.
    """
    kernel_width = 4.0
    shrink = scale < 1 and antialias
    if shrink:
        kernel_width = kernel_width / scale
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    taps = int(math.ceil(kernel_width)) + 2
    idx = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    dist = u[:, None] - idx
    weights = scale * _cubic(scale * dist) if shrink else _cubic(dist)
    weights = weights / np.sum(weights, axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    idx0 = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    keep = np.any(weights != 0, axis=0)
    weights = np.ascontiguousarray(weights[:, keep])
    idx0 = np.ascontiguousarray(idx0[:, keep])
    weights.setflags(write=False)
    idx0.setflags(write=False)
    return weights, idx0


def output_size(in_size: Sequence[int], scale: Optional[Union[float, Sequence[float]]] = None,
                size: Optional[Sequence[int]] = None) -> Tuple[Tuple[int, int], Tuple[float, float]]:
    """Resolve MATLAB's ``scale`` / ``[rows cols]`` argument into output size and per-axis scale.

    ``ceil(scale * n)`` with a tolerance of 1e-9, so ``n * (1/3)`` for ``n`` divisible by 3 gives
    ``n/3`` whatever the last bit of ``1/3`` does.
    """
    if (scale is None) == (size is None):
        raise ValueError('imresize needs exactly one of scale= or size=')
    if size is not None:
        out = (int(size[0]), int(size[1]))
        if min(out) < 1:
            raise ValueError(f'imresize output size must be positive, got {tuple(size)}')
        return out, (out[0] / in_size[0], out[1] / in_size[1])
    scales = (float(scale), float(scale)) if np.isscalar(scale) else tuple(float(s) for s in scale)
    if len(scales) != 2 or min(scales) <= 0:
        raise ValueError(f'imresize scale must be a positive number or (sh, sw), got {scale!r}')
    out = tuple(max(1, int(math.ceil(n * s - 1e-9))) for n, s in zip(in_size[:2], scales))
    return out, scales


def _axis_order(scales: Tuple[float, float]) -> Tuple[int, int]:
    return (0, 1) if scales[0] <= scales[1] else (1, 0)


def _round_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def _resize_axis(img: np.ndarray, axis: int, weights: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Apply one separable pass along ``axis`` (0 = rows, 1 = cols), float64 result."""
    shape = [1] * img.ndim
    shape[axis] = weights.shape[0]
    acc = None
    for k in range(weights.shape[1]):
        term = np.take(img, idx[:, k], axis=axis).astype(np.float64, copy=False)
        term *= weights[:, k].reshape(shape)
        if acc is None:
            acc = term
        else:
            acc += term
    return acc


def imresize(img: np.ndarray, scale: Optional[Union[float, Sequence[float]]] = None, *,
             size: Optional[Sequence[int]] = None, antialias: bool = True) -> np.ndarray:
    """MATLAB ``imresize(img, scale, 'bicubic')`` on an HW or HWC numpy image.

    ``scale`` < 1 shrinks (pass ``1 / s`` for a factor ``s``), > 1 enlarges; or give
    ``size=(rows, cols)``. uint8 in -> uint8 out, rounded after each pass like MATLAB;
    float32/float64 in -> same dtype out, never rounded.
    """
    img = np.asarray(img)
    if img.ndim not in (2, 3):
        raise ValueError(f'imresize expects an HW or HWC image, got shape {img.shape}')
    is_uint8 = img.dtype == np.uint8
    if not is_uint8 and img.dtype not in (np.float32, np.float64):
        raise TypeError(f'imresize supports uint8, float32 and float64 images, got {img.dtype}')
    out_hw, scales = output_size(img.shape, scale, size)
    cur = img
    for axis in _axis_order(scales):
        weights, idx = contributions(cur.shape[axis], out_hw[axis], scales[axis], antialias)
        cur = _resize_axis(cur, axis, weights, idx)
        if is_uint8:
            cur = _round_uint8(cur)
    return cur if is_uint8 else cur.astype(img.dtype, copy=False)


def bicubic_downsample(img: np.ndarray, scale: int) -> np.ndarray:
    """The benchmark LR: ``imresize(modcrop(img, scale), 1/scale, 'bicubic')``."""
    if int(scale) != scale or scale < 1:
        raise ValueError(f'bicubic_downsample needs an integer scale >= 1, got {scale!r}')
    scale = int(scale)
    if scale == 1:
        return img.copy()
    return imresize(modcrop(img, scale), 1 / scale)


def imresize_torch(x, scale: Optional[Union[float, Sequence[float]]] = None, *,
                   size: Optional[Sequence[int]] = None, antialias: bool = True):
    """Torch twin of :func:`imresize` over the last two dims of ``(..., H, W)`` (e.g. NCHW).

    Same arithmetic as the numpy version (float64 accumulation, tap order, uint8 rounding after
    each pass), so a uint8 batch gives exactly the numpy result per image. Float tensors keep
    their dtype; works on any device.
    """
    import torch

    if x.dim() < 2:
        raise ValueError(f'imresize_torch expects a (..., H, W) tensor, got shape {tuple(x.shape)}')
    is_uint8 = x.dtype == torch.uint8
    if not is_uint8 and not x.is_floating_point():
        raise TypeError(f'imresize_torch supports uint8 and float tensors, got {x.dtype}')
    out_hw, scales = output_size(tuple(x.shape[-2:]), scale, size)
    cur = x
    for axis in _axis_order(scales):
        dim = x.dim() - 2 + axis
        weights, idx = contributions(cur.shape[dim], out_hw[axis], scales[axis], antialias)
        w = torch.from_numpy(np.array(weights)).to(x.device)
        index = torch.from_numpy(np.array(idx)).to(x.device)
        shape = [1] * cur.dim()
        shape[dim] = w.shape[0]
        acc = None
        for k in range(w.shape[1]):
            term = cur.index_select(dim, index[:, k]).to(torch.float64)
            term = term * w[:, k].reshape(shape)
            acc = term if acc is None else acc.add_(term)
        cur = torch.floor(acc + 0.5).clamp_(0, 255).to(torch.uint8) if is_uint8 else acc
    return cur if is_uint8 else cur.to(x.dtype)
