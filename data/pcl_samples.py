"""PCL-SISR's positive and negative samples, built batched on tensors (Wu et al., "Practical
Contrastive Learning Framework for Single-Image Super-Resolution", IEEE TNNLS 2023).

Official code (``src/trainer.py`` with ``--mcl_neg 3 --sharp_hr --sharp_value 0.5 --sharp_range 2.5
--random_neg --only_blur --gpu_blur``), 4 of each:

* positives = [GT] + 3 sharpened GT, sharpness factor U[0.5, 3.0] drawn per image (kornia
  ``enhance.sharpness``, the same operation as torchvision's ``adjust_sharpness``);
* negatives = [LR] + 3 Gaussian-blurred GT, kernel sizes kx, ky odd in 3..11 and sigmas sx, sy in
  U[0.1, 2] drawn once per copy for the whole batch (kornia ``gaussian_blur2d``, reflect border).
  The LR is bicubically upsampled to the GT size inside the loss (``align_corners=True``) and
  clamped.

The paper's proposed configuration differs (docs/pcl.md): K_N = 4 negatives, all blurred GT
(``include_lr=False``; the upsampled LR as a negative is one of its ablation configurations), and
positives sharpened with factors above 1 (``sharp_range=(1, 3)``; the paper gives no range, so
(1, 3] is an assumption). Factors are drawn from U(a, b] (``b - (b - a) * u``), so with a = 1 a
"sharpened" positive is never the GT itself; the official draw is U[a, b), a difference on a set
of measure zero.

The official code also rounds the generated samples to 8-bit levels (``quantize=True`` here). Here
the blur parameters are drawn per image by default (``blur_batch_shared=True`` is the official
draw) and the LR upsampling uses ``align_corners=False`` by default (the pixel-centre convention of
every other resize in this toolkit; ``align_corners=True`` is the official call).
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ckdsr.data.degradations import rand_uniform, random_gaussian_blur

_SMOOTH = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0


def sharpen(img: Tensor, factor: Tensor) -> Tensor:
    """torchvision ``adjust_sharpness`` on a batch with one factor per image.

    ``img`` (N, C, H, W) in [0, 1]; ``factor`` (N,). The smoothed image is the 3x3 kernel
    [[1,1,1],[1,5,1],[1,1,1]]/13 on interior pixels (border pixels kept); the output is
    ``factor * img + (1 - factor) * smoothed`` clamped to [0, 1]: factor 1 is the identity, 0 the
    smoothed image, > 1 sharpens.
    """
    n, c, h, w = img.shape
    if h <= 2 or w <= 2:
        return img.clone()
    kernel = _SMOOTH.to(img.device, img.dtype).expand(c, 1, 3, 3)
    smooth = img.clone()
    smooth[..., 1:-1, 1:-1] = F.conv2d(img, kernel, groups=c)
    f = factor.to(img.device, img.dtype).reshape(n, 1, 1, 1)
    return (f * img + (1.0 - f) * smooth).clamp(0.0, 1.0)


def sharpness_factors(n: int, sharp_range: Sequence[float], generator: Optional[torch.Generator],
                      device: torch.device) -> Tensor:
    """``n`` factors from U(a, b] for ``sharp_range = (a, b)``: ``b - (b - a) * u``, u in [0, 1),
    so no factor equals ``a`` (with a = 1 every factor sharpens)."""
    lo, hi = float(sharp_range[0]), float(sharp_range[1])
    return hi - rand_uniform((n,), 0.0, 1.0, generator, device) * (hi - lo)


def make_pcl_samples(gt: Tensor,
                     lr: Tensor,
                     scale: int,
                     n_pos: int = 4,
                     n_neg: int = 4,
                     generator: Optional[torch.Generator] = None,
                     sharp_range: Sequence[float] = (0.5, 3.0),
                     blur_kernel: Sequence[int] = (3, 11),
                     blur_sigma: Sequence[float] = (0.1, 2.0),
                     blur_isotropic: bool = False,
                     blur_batch_shared: bool = False,
                     include_gt: bool = True,
                     include_lr: bool = True,
                     align_corners: bool = False,
                     quantize: bool = False) -> Tuple[Tensor, Tensor]:
    """``(pos (B, n_pos, C, H, W), neg (B, n_neg, C, H, W))`` from ``gt`` (B, C, H, W) and ``lr``
    (B, C, H/scale, W/scale), all in [0, 1].

    Positives: GT itself first (``include_gt``), then GT sharpened with factors from
    :func:`sharpness_factors`. Negatives: the bicubically upsampled LR first (``include_lr``), then
    Gaussian-blurred GT. Deterministic given ``generator``.
    """
    if gt.dim() != 4 or lr.dim() != 4:
        raise ValueError(f'make_pcl_samples expects NCHW tensors, got gt {tuple(gt.shape)}, '
                         f'lr {tuple(lr.shape)}')
    b, c, h, w = gt.shape
    if lr.shape[0] != b or lr.shape[1] != c or lr.shape[2] * scale != h or lr.shape[3] * scale != w:
        raise ValueError(f'make_pcl_samples: lr {tuple(lr.shape)} x{scale} does not match gt '
                         f'{tuple(gt.shape)}')
    if n_pos < 0 or n_neg < 0:
        raise ValueError('make_pcl_samples: n_pos and n_neg must be >= 0')
    dev = gt.device

    if not 0.0 <= sharp_range[0] <= sharp_range[1]:
        raise ValueError(f'make_pcl_samples: sharp_range must be [a, b] with 0 <= a <= b, got {list(sharp_range)}')
    pos = [gt.unsqueeze(1)] if include_gt and n_pos > 0 else []
    n_sharp = n_pos - len(pos)
    if n_sharp > 0:
        factor = sharpness_factors(b * n_sharp, sharp_range, generator, dev)
        copies = gt.unsqueeze(1).expand(b, n_sharp, c, h, w).reshape(b * n_sharp, c, h, w)
        pos.append(_round(sharpen(copies, factor), quantize).reshape(b, n_sharp, c, h, w))

    neg = []
    if include_lr and n_neg > 0:
        up = F.interpolate(lr, size=(h, w), mode='bicubic', align_corners=align_corners)
        neg.append(up.clamp(0.0, 1.0).unsqueeze(1))
    n_blur = n_neg - len(neg)
    if n_blur > 0:
        copies = gt.unsqueeze(1).expand(b, n_blur, c, h, w).reshape(b * n_blur, c, h, w)
        blurred = random_gaussian_blur(copies, n_blur, 1.0, blur_kernel, blur_sigma,
                                       blur_isotropic, blur_batch_shared, generator)
        neg.append(_round(blurred, quantize).reshape(b, n_blur, c, h, w))

    empty = gt.new_empty((b, 0, c, h, w))
    return (torch.cat(pos, dim=1) if pos else empty), (torch.cat(neg, dim=1) if neg else empty)


def _round(x: Tensor, quantize: bool) -> Tensor:
    """Round to 8-bit levels when ``quantize`` (the official code's ``utility.quantize``)."""
    return (x * 255.0).round().clamp(0.0, 255.0) / 255.0 if quantize else x
