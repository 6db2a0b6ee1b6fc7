"""DUKD's upcycled training samples, as pure tensor functions (Zhang et al., "Data Upcycling
Knowledge Distillation for Image Super-Resolution", arXiv 2309.14162; published as AugKD, ICLR 2025).

* **Zoom-in**: LR-sized tiles of the HR patch. The HR patch ``(B, C, s*h, s*w)`` is an ``s x s`` grid
  of non-overlapping ``h x w`` tiles; ``n`` distinct tiles are picked and stacked along the batch
  (released code ``models/dukd_model.py`` lines 54-59); here position-major, ``x_zi[j*B + b]`` = tile
  ``k[b, j]`` of image ``b`` (the order changes no loss: every term is a mean). They have no ground
  truth: the teacher labels them.
* **Zoom-out**: the LR patch downscaled by ``s`` with MATLAB's bicubic ``imresize`` (antialiasing on),
  the LR patch being its target (released code lines 76-84, ``basicsr.utils.matlab_functions.imresize``
  on float images, one image at a time; here :func:`ckdsr.data.matlab_imresize.imresize_torch`, the same
  arithmetic over the whole batch).
"""
from typing import Tuple

import torch

from ckdsr.data.matlab_imresize import imresize_torch


def tile_grid(gt: torch.Tensor, scale: int, tile_hw: Tuple[int, int]) -> torch.Tensor:
    """``(B, C, s*h, s*w)`` -> ``(B, s*s, C, h, w)``: the tiles in row-major grid order."""
    b, c, hh, ww = gt.shape
    h, w = tile_hw
    if hh != scale * h or ww != scale * w:
        raise ValueError(f'distill.dukd: the HR patch {hh}x{ww} is not {scale} x the LR patch {h}x{w}')
    return gt.reshape(b, c, scale, h, scale, w).permute(0, 2, 4, 1, 3, 5).reshape(b, scale * scale, c, h, w)


def draw_tiles(batch: int, scale: int, n: int, generator: torch.Generator, shared: bool) -> torch.Tensor:
    """``(B, n)`` distinct grid positions per image (``shared``: one draw for the whole batch, as the
    released code's ``np.random`` choice per iteration)."""
    if not 1 <= n <= scale * scale:
        raise ValueError(f'distill.dukd.n_zoom_in must be in [1, {scale * scale}] at x{scale}, got {n}')
    rows = 1 if shared else batch
    keys = torch.rand(rows, scale * scale, generator=generator)
    pos = keys.argsort(dim=1)[:, :n]  # n distinct positions, uniformly (a random permutation's head)
    return pos.expand(batch, n) if shared else pos


def zoom_in(gt: torch.Tensor, scale: int, tile_hw: Tuple[int, int], positions: torch.Tensor) -> torch.Tensor:
    """The tiles at ``positions (B, n)`` stacked as ``(n*B, C, h, w)``, position-major."""
    tiles = tile_grid(gt, scale, tile_hw)
    b, n = positions.shape
    idx = positions.to(gt.device).t().reshape(-1)  # j-major: [k[0,0], k[1,0], ..., k[0,1], ...]
    img = torch.arange(b, device=gt.device).repeat(n)
    return tiles[img, idx]


def zoom_out(lq: torch.Tensor, scale: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(x_zo, target)``: the LR patch cropped to a multiple of ``scale`` (bottom/right, a no-op for
    the 48-px training patches) and its MATLAB-bicubic ``1/scale`` downscale."""
    h, w = lq.shape[-2:]
    if h < scale or w < scale:
        raise ValueError(f'distill.dukd zoom-out: the LR patch {h}x{w} is smaller than the scale {scale}')
    target = lq[..., :h - h % scale, :w - w % scale]
    return imresize_torch(target, 1 / scale), target
