"""Training-pair transforms on uint8 HWC arrays; only the final patch becomes a float tensor.

Semantics follow BasicSR's ``paired_random_crop`` / ``augment``: the LR crop is drawn on the
LR grid and the GT crop is the same region x ``scale``; ``use_hflip`` flips left-right with
probability 1/2; ``use_rot`` adds an up-down flip and a 90-degree transpose, each with
probability 1/2 (the 8 dihedral transforms). Randomness comes from the ``rng`` argument (a
``random.Random``), so a per-sample seed makes a sample reproducible.
"""
import random
from typing import List, Sequence, Tuple

import numpy as np
import torch


def check_pair(gt: np.ndarray, lq: np.ndarray, scale: int, gt_path: str = '', lq_path: str = '') -> None:
    """Error unless ``lq`` is exactly ``gt`` / ``scale`` in size."""
    gh, gw = gt.shape[:2]
    lh, lw = lq.shape[:2]
    if (lh * scale, lw * scale) != (gh, gw):
        raise ValueError(f'GT {gt_path or "(array)"} is {gw}x{gh} (w x h) but LQ {lq_path or "(array)"} '
                         f'is {lw}x{lh}: x{scale} needs LQ x scale == GT')


def mod_crop_to_lq(gt: np.ndarray, lq: np.ndarray, scale: int, gt_path: str = '',
                   lq_path: str = '') -> np.ndarray:
    """Crop ``gt`` to ``lq`` size x ``scale`` (EDSR benchmark HR are not mod-cropped).

    Accepts a GT at most ``scale - 1`` pixels larger per side; anything else is an error.
    """
    lh, lw = lq.shape[:2]
    gh, gw = gt.shape[:2]
    if (gh // scale, gw // scale) != (lh, lw):
        raise ValueError(f'GT {gt_path or "(array)"} is {gw}x{gh} (w x h) but LQ {lq_path or "(array)"} '
                         f'is {lw}x{lh}: for x{scale} the LQ must be floor(GT / {scale})')
    return gt[:lh * scale, :lw * scale]


def _random_window(h: int, w: int, size: int, rng: random.Random, what: str,
                   why: str = '') -> Tuple[int, int]:
    """``(top, left)`` of a random ``size`` x ``size`` window in an ``h`` x ``w`` image."""
    if h < size or w < size:
        raise ValueError(f'{what} is {w}x{h} (w x h), smaller than the patch {size}x{size}{why}')
    top = rng.randint(0, h - size)
    return top, rng.randint(0, w - size)


def paired_random_crop(gt: np.ndarray, lq: np.ndarray, gt_size: int, scale: int, rng: random.Random,
                       gt_path: str = '', lq_path: str = '') -> Tuple[np.ndarray, np.ndarray]:
    """Crop an aligned ``gt_size`` GT patch and ``gt_size // scale`` LQ patch (views)."""
    check_pair(gt, lq, scale, gt_path, lq_path)
    if gt_size % scale:
        raise ValueError(f'gt_size {gt_size} is not a multiple of scale {scale}')
    lq_size = gt_size // scale
    top, left = _random_window(*lq.shape[:2], lq_size, rng, f'LQ {lq_path or "(array)"}',
                               f' (gt_size {gt_size} / scale {scale})')
    lq_patch = lq[top:top + lq_size, left:left + lq_size]
    gt_patch = gt[top * scale:(top + lq_size) * scale, left * scale:(left + lq_size) * scale]
    return gt_patch, lq_patch


def random_crop(img: np.ndarray, size: int, rng: random.Random, path: str = '') -> np.ndarray:
    """A ``size`` x ``size`` crop (view) at a random position."""
    top, left = _random_window(*img.shape[:2], size, rng, f'image {path or "(array)"}')
    return img[top:top + size, left:left + size]


def draw_augment(use_hflip: bool, use_rot: bool, rng: random.Random) -> Tuple[bool, bool, bool]:
    """``(hflip, vflip, transpose)`` decisions, drawn in BasicSR's order."""
    hflip = use_hflip and rng.random() < 0.5
    vflip = use_rot and rng.random() < 0.5
    rot90 = use_rot and rng.random() < 0.5
    return hflip, vflip, rot90


def apply_augment(img: np.ndarray, ops: Tuple[bool, bool, bool]) -> np.ndarray:
    """Apply ``(hflip, vflip, transpose)`` to an HW(C) array, as views (no copy)."""
    hflip, vflip, rot90 = ops
    if hflip:
        img = img[:, ::-1]
    if vflip:
        img = img[::-1]
    if rot90:
        img = img.swapaxes(0, 1)
    return img


def augment(imgs: Sequence[np.ndarray], use_hflip: bool, use_rot: bool,
            rng: random.Random) -> List[np.ndarray]:
    """The same random flip / rotation applied to every image of ``imgs``."""
    ops = draw_augment(use_hflip, use_rot, rng)
    return [apply_augment(img, ops) for img in imgs]


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """HWC uint8 -> contiguous float32 CHW tensor in [0, 1] (``x / 255``, as BasicSR)."""
    if img.dtype != np.uint8:
        raise TypeError(f'to_tensor expects uint8, got {img.dtype}')
    if img.ndim == 2:
        img = img[:, :, None]
    chw = np.ascontiguousarray(img.transpose(2, 0, 1))
    if not chw.flags.writeable:
        chw = chw.copy()
    return torch.from_numpy(chw).to(torch.float32).div_(255.0)
