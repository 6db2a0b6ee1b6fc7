"""Building blocks shared by the convolutional SR networks (EDSR, RCAN, SwinIR's reconstruction).

Module and parameter names follow BasicSR (``conv1``/``conv2`` in a residual block, an ``upsample``
``nn.Sequential`` of conv + PixelShuffle pairs) so BasicSR checkpoints load unchanged.
Activations are never in-place: a forward hook on a conv then sees the conv's own output.
"""
import math
from typing import Callable, Sequence

import torch
from torch import nn


def make_layer(block_fn: Callable[[], nn.Module], num_blocks: int) -> nn.Sequential:
    """``num_blocks`` fresh blocks from ``block_fn`` in an ``nn.Sequential`` (keys ``0..n-1``)."""
    return nn.Sequential(*[block_fn() for _ in range(num_blocks)])


def check_upscale(arch: str, upscale: int) -> None:
    """Pixel-shuffle upsamplers support 2^n and 3; anything else is a one-line option error."""
    if not isinstance(upscale, int) or upscale < 2 or (upscale & (upscale - 1) and upscale != 3):
        raise ValueError(f'{arch}: upscale must be a power of 2 or 3, got {upscale!r}')


def image_mean(arch: str, rgb_mean: Sequence[float], num_in_ch: int, num_out_ch: int) -> torch.Tensor:
    """The per-channel mean subtracted from the input and added to the output, shape (1, C, 1, 1)."""
    mean = [float(v) for v in rgb_mean]
    if len(mean) != num_in_ch or num_in_ch != num_out_ch:
        raise ValueError(f'{arch}: rgb_mean has {len(mean)} values but num_in_ch={num_in_ch}, '
                         f'num_out_ch={num_out_ch}; give one mean per channel (in and out equal)')
    return torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)


class ResidualBlockNoBN(nn.Module):
    """EDSR residual block without batch norm: ``x + res_scale * conv2(relu(conv1(x)))``."""

    def __init__(self, num_feat: int = 64, res_scale: float = 1.0):
        super().__init__()
        self.res_scale = res_scale
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x))) * self.res_scale


class Upsample(nn.Sequential):
    """Sub-pixel upsampler (Shi et al. 2016): log2(s) x [conv num_feat -> 4 num_feat, PixelShuffle(2)],
    or one [conv -> 9 num_feat, PixelShuffle(3)] for s = 3. Conv keys are ``0, 2, ...``."""

    def __init__(self, scale: int, num_feat: int):
        check_upscale('Upsample', scale)
        layers = []
        if scale == 3:
            layers += [nn.Conv2d(num_feat, 9 * num_feat, 3, 1, 1), nn.PixelShuffle(3)]
        else:
            for _ in range(int(math.log2(scale))):
                layers += [nn.Conv2d(num_feat, 4 * num_feat, 3, 1, 1), nn.PixelShuffle(2)]
        super().__init__(*layers)


class MeanShiftedResidualSR(nn.Module):
    """The frame EDSR and RCAN share (BasicSR key names): ``conv_first`` on the mean-shifted input
    scaled by ``img_range``, a ``body``, ``conv_after_body`` with the long skip, ``upsample`` and
    ``conv_last``; output shifted back to [0, 1]. Subclasses call :meth:`build_frame`."""

    def build_frame(self, arch: str, num_in_ch: int, num_out_ch: int, num_feat: int, upscale: int,
                    img_range: float, rgb_mean: Sequence[float], body_fn: Callable[[], nn.Module]) -> None:
        self.upscale, self.img_range = upscale, img_range
        self.register_buffer('mean', image_mean(arch, rgb_mean, num_in_ch, num_out_ch), persistent=False)
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = body_fn()
        self.conv_after_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.upsample = Upsample(upscale, num_feat)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.mean.to(x.dtype)
        x = self.conv_first((x - mean) * self.img_range)
        res = self.conv_after_body(self.body(x)) + x
        return self.conv_last(self.upsample(res)) / self.img_range + mean
