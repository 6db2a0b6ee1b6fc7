"""CARN-M, the mobile cascading residual network (Ahn et al., ECCV 2018), multi-scale x2/x3/x4.

Key names and tensors match the authors' release (``sub_mean.shifter``, ``entry``,
``b{1,2,3}.b1.body.{0,2,4}``, ``b{k}.c{1,2,3}.body.0``, ``c{1,2,3}.body.0``,
``upsample.up{2,3,4}.body.*``, ``exit``), so their ``carn_m.pth`` loads strictly. The release feeds
RGB in [0, 1] (ToTensor) and its MeanShift 1x1 convs add -/+ the DIV2K mean in [0, 1] units, so the
network takes our [0, 1] convention as is. The mean shifts stay frozen 1x1 conv parameters (as in
the release; they count in the 414,811 parameters of the file).
"""
import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ckdsr.utils.registry import ARCH_REGISTRY


class MeanShift(nn.Module):
    """Frozen 1x1 conv ``x + sign * mean`` (identity weight), key ``shifter``."""

    def __init__(self, rgb_mean: Sequence[float], sign: int):
        super().__init__()
        self.shifter = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.shifter.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.shifter.bias.copy_(sign * torch.tensor([float(v) for v in rgb_mean]))
        self.shifter.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shifter(x)


class ConvReLU(nn.Module):
    """``relu(conv(x))``; a 1x1 conv fuses concatenated cascade features (key ``body.0``)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 1):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel_size, 1, kernel_size // 2), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class EResidualBlock(nn.Module):
    """Efficient residual block (CARN-M, Fig. 3c): grouped 3x3, relu, grouped 3x3, relu, 1x1, then
    ``relu(out + x)``."""

    def __init__(self, num_feat: int, group: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(num_feat, num_feat, 3, 1, 1, groups=group), nn.ReLU(),
            nn.Conv2d(num_feat, num_feat, 3, 1, 1, groups=group), nn.ReLU(),
            nn.Conv2d(num_feat, num_feat, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + x)


def cascade(x: torch.Tensor, stages) -> torch.Tensor:
    """Cascading connections (CARN eq. 1-2): each stage's output joins all earlier features in a
    concatenation that a 1x1 ConvReLU fuses into the next stage's input."""
    concat = out = x
    for unit, fuse in stages:
        concat = torch.cat([concat, unit(out)], dim=1)
        out = fuse(concat)
    return out


class CascadingBlock(nn.Module):
    """Local cascading block of CARN-M: one EResidualBlock ``b1`` applied three times (recursive,
    shared weights), each application followed by its own fusion ``c1``/``c2``/``c3``."""

    def __init__(self, num_feat: int, group: int):
        super().__init__()
        self.b1 = EResidualBlock(num_feat, group)
        self.c1 = ConvReLU(2 * num_feat, num_feat)
        self.c2 = ConvReLU(3 * num_feat, num_feat)
        self.c3 = ConvReLU(4 * num_feat, num_feat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cascade(x, [(self.b1, self.c1), (self.b1, self.c2), (self.b1, self.c3)])


class CARNUpsample(nn.Module):
    """Grouped sub-pixel upsampler: per x2 step ``[conv C -> 4C (groups), relu, PixelShuffle(2)]``
    (x3: one step to 9C). Keys ``body.0``, ``body.3``."""

    def __init__(self, num_feat: int, scale: int, group: int):
        super().__init__()
        steps = [3] if scale == 3 else [2] * int(math.log2(scale))
        layers = []
        for r in steps:
            layers += [nn.Conv2d(num_feat, r * r * num_feat, 3, 1, 1, groups=group), nn.ReLU(), nn.PixelShuffle(r)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class MultiScaleUpsample(nn.Module):
    """``up2``/``up3``/``up4`` heads (multi-scale model) or a single ``up`` head."""

    def __init__(self, num_feat: int, upscale: int, multi_scale: bool, group: int):
        super().__init__()
        self.multi_scale = multi_scale
        if multi_scale:
            self.up2 = CARNUpsample(num_feat, 2, group)
            self.up3 = CARNUpsample(num_feat, 3, group)
            self.up4 = CARNUpsample(num_feat, 4, group)
        else:
            self.up = CARNUpsample(num_feat, upscale, group)

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        return getattr(self, f'up{scale}')(x) if self.multi_scale else self.up(x)


@ARCH_REGISTRY.register()
class CARN_M(nn.Module):  # noqa: N801 (the published model name)
    """CARN-M: entry conv, three cascading blocks with global cascading, grouped upsampler, exit conv.

    ``forward(x, upscale=None)``: RGB in [0, 1] -> RGB; ``upscale`` picks the head of the multi-scale
    model (default: the constructor's ``upscale``). Released weights: 414,811 parameters.
    """

    def __init__(self, upscale: int = 4, multi_scale: bool = True, group: int = 4, num_feat: int = 64,
                 rgb_mean: Sequence[float] = (0.4488, 0.4371, 0.4040)):
        super().__init__()
        valid = (2, 3, 4) if multi_scale else (2, 3, 4, 8)
        if upscale not in valid:
            raise ValueError(f'CARN_M: upscale must be one of {valid} (multi_scale={multi_scale}), got {upscale!r}')
        if num_feat % group:
            raise ValueError(f'CARN_M: num_feat {num_feat} must be divisible by group {group}')
        self.upscale, self.multi_scale = upscale, multi_scale
        self.sub_mean = MeanShift(rgb_mean, -1)
        self.add_mean = MeanShift(rgb_mean, +1)
        self.entry = nn.Conv2d(3, num_feat, 3, 1, 1)
        self.b1 = CascadingBlock(num_feat, group)
        self.b2 = CascadingBlock(num_feat, group)
        self.b3 = CascadingBlock(num_feat, group)
        self.c1 = ConvReLU(2 * num_feat, num_feat)
        self.c2 = ConvReLU(3 * num_feat, num_feat)
        self.c3 = ConvReLU(4 * num_feat, num_feat)
        self.upsample = MultiScaleUpsample(num_feat, upscale, multi_scale, group)
        self.exit = nn.Conv2d(num_feat, 3, 3, 1, 1)

    def forward(self, x: torch.Tensor, upscale: Optional[int] = None) -> torch.Tensor:
        scale = self.upscale if upscale is None else upscale
        if scale != self.upscale and not (self.multi_scale and scale in (2, 3, 4)):
            raise ValueError(f'CARN_M: cannot run at x{scale}; this model has heads for '
                             f'{"x2, x3, x4" if self.multi_scale else f"x{self.upscale}"}')
        x = self.entry(self.sub_mean(x))
        x = cascade(x, [(self.b1, self.c1), (self.b2, self.c2), (self.b3, self.c3)])
        return self.add_mean(self.exit(self.upsample(x, scale)))
