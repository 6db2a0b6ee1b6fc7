"""One-level orthonormal 2D Haar wavelet transform on NCHW tensors, with its exact inverse.

PCL-SISR (Wu et al., "Practical Contrastive Learning Framework for Single-Image Super-Resolution")
feeds its embedding discriminator the LH/HL/HH sub-bands of a one-level Haar DWT (the official code
uses ``pytorch_wavelets.DWTForward(J=1, wave='haar', mode='reflect')``).

For each 2x2 block ``[[a, b], [c, d]]`` (a top-left, b top-right, c bottom-left, d bottom-right)::

    LL = (a + b + c + d) / 2        LH = (a + b - c - d) / 2   (top minus bottom: horizontal edges)
    HL = (a - b + c - d) / 2        HH = (a - b - c + d) / 2   (diagonal)

This is the sign and order convention of ``pytorch_wavelets`` (``Yh[0][:, :, 0..2]`` = LH, HL, HH).
The transform is orthonormal, so the inverse is the transpose.

Odd heights/widths: ``odd='reflect'`` (default) reflect-pads one row/column at the bottom/right
(``x[N] = x[N-2]``, what ``pytorch_wavelets`` does in 'reflect' mode); the inverse then returns the
padded size unless given ``size`` to crop back to. ``odd='error'`` raises instead.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ckdsr.utils.registry import ARCH_REGISTRY

BANDS = ('LL', 'LH', 'HL', 'HH')


def haar_dwt(x: Tensor, odd: str = 'reflect') -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(LL, LH, HL, HH)`` of ``x`` (N, C, H, W), each (N, C, ceil(H/2), ceil(W/2))."""
    if x.dim() != 4:
        raise ValueError(f'haar_dwt expects an NCHW tensor, got shape {tuple(x.shape)}')
    h, w = x.shape[-2:]
    if h % 2 or w % 2:
        if odd == 'error':
            raise ValueError(f'haar_dwt: odd spatial size {h}x{w} (odd="error"); crop to even sizes '
                             'or use odd="reflect"')
        if odd != 'reflect':
            raise ValueError(f"haar_dwt: odd must be 'reflect' or 'error', got {odd!r}")
        x = F.pad(x, (0, w % 2, 0, h % 2), mode='reflect')
    a = x[..., 0::2, 0::2]
    b = x[..., 0::2, 1::2]
    c = x[..., 1::2, 0::2]
    d = x[..., 1::2, 1::2]
    s, t = a + b, c + d  # row sums (top, bottom)
    u, v = a - b, c - d  # row differences
    return (s + t) / 2, (s - t) / 2, (u + v) / 2, (u - v) / 2


def haar_idwt(ll: Tensor, lh: Tensor, hl: Tensor, hh: Tensor,
              size: Optional[Sequence[int]] = None) -> Tensor:
    """Inverse of :func:`haar_dwt`; ``size=(H, W)`` crops away a padding row/column."""
    a = (ll + lh + hl + hh) / 2
    b = (ll + lh - hl - hh) / 2
    c = (ll - lh + hl - hh) / 2
    d = (ll - lh - hl + hh) / 2
    n, ch, h, w = ll.shape
    # pixel_shuffle places sub-channel i*2+j of each channel at offset (i, j) of its 2x2 block
    out = F.pixel_shuffle(torch.stack((a, b, c, d), dim=2).reshape(n, ch * 4, h, w), 2)
    if size is not None:
        out = out[..., :size[0], :size[1]]
    return out


@ARCH_REGISTRY.register()
class HaarDWT(nn.Module):
    """The chosen Haar sub-bands concatenated band-major along channels.

    ``bands=('LH', 'HL', 'HH')`` on RGB gives PCL-SISR's 9-channel discriminator input
    ``[LH_r, LH_g, LH_b, HL_r, ..., HH_b]``.
    """

    def __init__(self, bands: Sequence[str] = BANDS, odd: str = 'reflect'):
        super().__init__()
        unknown = [b for b in bands if b not in BANDS]
        if unknown or not bands:
            raise ValueError(f'HaarDWT: bands must be a non-empty subset of {BANDS}, got {list(bands)}')
        if odd not in ('reflect', 'error'):
            raise ValueError(f"HaarDWT: odd must be 'reflect' or 'error', got {odd!r}")
        self.bands = tuple(bands)
        self.odd = odd

    def forward(self, x: Tensor) -> Tensor:
        sub = dict(zip(BANDS, haar_dwt(x, self.odd)))
        return torch.cat([sub[b] for b in self.bands], dim=1)
