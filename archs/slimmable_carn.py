"""Slimmable CARN-M for CSD on CARN: one weight set run at full width or at a fraction of its channels.

Which CARN: the released CSD code (github.com/Booooooooooo/CSD, ``PyTorch version/model/carn.py``)
ships a slimmable "CARN" that is neither published CARN: ungrouped plain residual blocks without the
block's final ReLU, one single-scale upsampler without ReLU; ``demo.sh`` never runs it and this
project has no weights for it. This project has CARN-M (:class:`ckdsr.archs.carn.CARN_M`, the authors'
``carn_m.pth`` loads strictly, 414,811 parameters), so the slimmable CARN is CARN-M: the CSD
default "start from a trained full-width network" can then start from published weights.

Slicing. CARN-M's residual and upsampling convs are grouped (``group = 4``). A group's outputs read
only that group's inputs, so the channel set used at width ``c`` is the first ``c / group``
channels of EACH group (not the first ``c`` channels, which would cut groups in half): every feature
map, skip and concatenation uses that same set, and the narrow net is exactly a plain
``CARN_M(num_feat = c, group = group)`` (``c`` must be a multiple of ``group``). The 1x1 fusion convs
that read a concatenation ``[x, b1, b2, ...]`` use the set in every concatenated part. (The released
slimmable CARN instead feeds its fusion convs the leading ``m*c`` input columns of the full
``m*C``-wide weight, which at full width belong to the first feature map only; we keep the
per-part slices so that the narrow net is a sub-network of the full one.) The frozen mean shifts are
shared whole.
"""
from typing import Any, Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ckdsr.archs.carn import CARN_M, MeanShift
from ckdsr.archs.slimmable_ops import Feature, Fixed, SlimConv2d, SlimSequential, Slimmable, register_slimmable
from ckdsr.utils.registry import ARCH_REGISTRY


class SlimConvReLU(nn.Module):
    """``relu(conv1x1(concat of `parts` feature maps))`` (key ``body.0``)."""

    slimmable = True

    def __init__(self, num_feat: int, parts: int, group: int):
        super().__init__()
        self.body = SlimSequential(SlimConv2d(parts * num_feat, num_feat, 1, num_feat,
                                              Feature(blocks=group, segments=parts), Feature(blocks=group)),
                                   nn.ReLU())

    def forward(self, x: torch.Tensor, width: Optional[int] = None) -> torch.Tensor:
        return self.body(x, width)


def grouped_conv(in_ch: int, out_ch: int, num_feat: int, group: int, num: int = 1) -> SlimConv2d:
    """A grouped 3x3 conv: in-group input columns ``[:c / group]``, the used outputs of every group."""
    return SlimConv2d(in_ch, out_ch, 3, num_feat, Feature(den=group), Feature(num=num, blocks=group), groups=group)


class SlimEResidualBlock(nn.Module):
    """CARN-M efficient residual block: grouped 3x3, relu, grouped 3x3, relu, 1x1; ``relu(out + x)``."""

    slimmable = True

    def __init__(self, num_feat: int, group: int):
        super().__init__()
        end = Feature(blocks=group)
        self.body = SlimSequential(grouped_conv(num_feat, num_feat, num_feat, group), nn.ReLU(),
                                   grouped_conv(num_feat, num_feat, num_feat, group), nn.ReLU(),
                                   SlimConv2d(num_feat, num_feat, 1, num_feat, end, end))

    def forward(self, x: torch.Tensor, width: Optional[int] = None) -> torch.Tensor:
        return F.relu(self.body(x, width) + x)


def slim_cascade(x: torch.Tensor, stages, width: Optional[int]) -> torch.Tensor:
    """CARN's cascading connections (:func:`ckdsr.archs.carn.cascade`) at feature width ``width``."""
    concat = out = x
    for unit, fuse in stages:
        concat = torch.cat([concat, unit(out, width)], dim=1)
        out = fuse(concat, width)
    return out


class SlimCascadingBlock(nn.Module):
    """One EResidualBlock ``b1`` applied three times (shared weights) with fusions ``c1``..``c3``."""

    slimmable = True

    def __init__(self, num_feat: int, group: int):
        super().__init__()
        self.b1 = SlimEResidualBlock(num_feat, group)
        self.c1 = SlimConvReLU(num_feat, 2, group)
        self.c2 = SlimConvReLU(num_feat, 3, group)
        self.c3 = SlimConvReLU(num_feat, 4, group)

    def forward(self, x: torch.Tensor, width: Optional[int] = None) -> torch.Tensor:
        return slim_cascade(x, [(self.b1, self.c1), (self.b1, self.c2), (self.b1, self.c3)], width)


class SlimCARNUpsample(nn.Module):
    """Per step: grouped conv ``C -> r*r*C``, relu, PixelShuffle(r) (keys ``body.0``, ``body.3``)."""

    def __init__(self, num_feat: int, scale: int, group: int):
        super().__init__()
        steps = [3] if scale == 3 else [2] * (scale.bit_length() - 1)
        layers = []
        for r in steps:
            layers += [grouped_conv(num_feat, r * r * num_feat, num_feat, group, num=r * r), nn.ReLU(),
                       nn.PixelShuffle(r)]
        self.body = SlimSequential(*layers)

    def forward(self, x: torch.Tensor, width: Optional[int] = None) -> torch.Tensor:
        return self.body(x, width)


@ARCH_REGISTRY.register()
@register_slimmable(CARN_M)
class SlimmableCARN_M(Slimmable):  # noqa: N801 (the published model name)
    """CARN-M whose convs run at a fraction ``width_mult`` of the feature channels (the first
    ``c / group`` of each group). Width 1.0 is :class:`CARN_M` with the same weights (414,811
    parameters, the authors' ``carn_m.pth`` loads). ``forward(x, width_mult=None, upscale=None)``."""

    def __init__(self, upscale: int = 4, multi_scale: bool = True, group: int = 4, num_feat: int = 64,
                 rgb_mean: Sequence[float] = (0.4488, 0.4371, 0.4040), width_mult: float = 1.0):
        super().__init__()
        valid = (2, 3, 4) if multi_scale else (2, 3, 4, 8)
        if upscale not in valid:
            raise ValueError(f'SlimmableCARN_M: upscale must be one of {valid} (multi_scale={multi_scale}), '
                             f'got {upscale!r}')
        if num_feat % group:
            raise ValueError(f'SlimmableCARN_M: num_feat {num_feat} must be divisible by group {group}')
        self.upscale, self.multi_scale, self.group, self.num_feat = upscale, multi_scale, group, num_feat
        self.rgb_mean = [float(v) for v in rgb_mean]
        self.width_multiple = group
        self.sub_mean = MeanShift(rgb_mean, -1)
        self.add_mean = MeanShift(rgb_mean, +1)
        self.entry = SlimConv2d(3, num_feat, 3, num_feat, Fixed(3), Feature(blocks=group))
        self.b1 = SlimCascadingBlock(num_feat, group)
        self.b2 = SlimCascadingBlock(num_feat, group)
        self.b3 = SlimCascadingBlock(num_feat, group)
        self.c1 = SlimConvReLU(num_feat, 2, group)
        self.c2 = SlimConvReLU(num_feat, 3, group)
        self.c3 = SlimConvReLU(num_feat, 4, group)
        self.upsample = nn.Module()
        for s in ((2, 3, 4) if multi_scale else (upscale,)):
            self.upsample.add_module(f'up{s}' if multi_scale else 'up', SlimCARNUpsample(num_feat, s, group))
        self.exit = SlimConv2d(num_feat, 3, 3, num_feat, Feature(blocks=group), Fixed(3))
        self.channels_at(width_mult)
        self.width_mult = width_mult

    def forward(self, x: torch.Tensor, width_mult: Optional[float] = None,
                upscale: Optional[int] = None) -> torch.Tensor:
        width = self.channels_at(self.width_mult if width_mult is None else width_mult)
        scale = self.upscale if upscale is None else upscale
        if scale != self.upscale and not (self.multi_scale and scale in (2, 3, 4)):
            raise ValueError(f'SlimmableCARN_M: cannot run at x{scale}; this model has heads for '
                             f'{"x2, x3, x4" if self.multi_scale else f"x{self.upscale}"}')
        x = self.entry(self.sub_mean(x), width)
        x = slim_cascade(x, [(self.b1, self.c1), (self.b2, self.c2), (self.b3, self.c3)], width)
        head = getattr(self.upsample, f'up{scale}' if self.multi_scale else 'up')
        return self.add_mean(self.exit(head(x, width), width))

    def plain_kwargs(self, width: int) -> Dict[str, Any]:
        return dict(upscale=self.upscale, multi_scale=self.multi_scale, group=self.group, num_feat=width,
                    rgb_mean=[round(v, 6) for v in self.rgb_mean])

    @classmethod
    def from_plain_kwargs(cls, net: CARN_M) -> Dict[str, Any]:
        """Read off a plain CARN-M's structure (the mean from its frozen shift, the group count from a
        grouped conv)."""
        return dict(upscale=net.upscale, multi_scale=net.multi_scale, group=net.b1.b1.body[0].groups,
                    num_feat=net.entry.weight.shape[0], rgb_mean=net.add_mean.shifter.bias.detach().tolist())
