"""Slimmable RCAN for CSD on RCAN: one weight set run at full width (teacher) or at the first
``width_mult`` of every conv's channels (student).

The released CSD code (github.com/Booooooooooo/CSD, ``PyTorch version/model/rcan.py``, ``demo.sh``:
``--model RCAN --n_resgroups 10 --n_resblocks 20 --n_feats 64 --stu_width_mult 0.75``) trains RCAN
10x20 at widths [0.75, 1.0] and slices channel attention with the width: the squeeze conv
``C -> C/r`` runs as ``c -> c/r`` and the excite conv as ``c/r -> c`` (its ``SlimModule`` on
``conv_du``). Here the same: at width ``c`` every CA bottleneck has ``c / squeeze_factor`` channels,
so the narrow net is exactly a plain :class:`ckdsr.archs.rcan.RCAN` with ``num_feat = c`` and the same
``squeeze_factor`` (hence ``c`` must be a multiple of ``squeeze_factor``: 48 = 0.75 x 64 gives 3).

State_dict keys equal :class:`ckdsr.archs.rcan.RCAN`'s (BasicSR names), so a trained RCAN loads into it.
"""
from typing import Any, Dict, Optional, Sequence

import torch
from torch import nn

from ckdsr.archs.rcan import RCAN
from ckdsr.archs.slimmable_ops import (Feature, SlimConv2d, SlimResidualFrame, SlimSequential, feature_conv,
                                 register_slimmable)
from ckdsr.utils.registry import ARCH_REGISTRY


class SlimChannelAttention(nn.Module):
    """``x * sigmoid(W_U relu(W_D avgpool(x)))`` with the bottleneck at ``width / squeeze`` channels
    (keys ``attention.1``, ``attention.3`` as :class:`ckdsr.archs.rcan.ChannelAttention`)."""

    slimmable = True

    def __init__(self, num_feat: int, squeeze_factor: int):
        super().__init__()
        mid = Feature(den=squeeze_factor)
        self.attention = SlimSequential(
            nn.AdaptiveAvgPool2d(1), SlimConv2d(num_feat, num_feat // squeeze_factor, 1, num_feat, out_end=mid),
            nn.ReLU(), SlimConv2d(num_feat // squeeze_factor, num_feat, 1, num_feat, in_end=mid), nn.Sigmoid())

    def forward(self, x: torch.Tensor, width: Optional[int] = None) -> torch.Tensor:
        return x * self.attention(x, width)


class SlimRCAB(nn.Module):
    """``x + res_scale * CA(conv(relu(conv(x))))`` at width c (keys ``rcab.{0,2,3}``)."""

    slimmable = True

    def __init__(self, num_feat: int, squeeze_factor: int, res_scale: float):
        super().__init__()
        self.res_scale = res_scale
        self.rcab = SlimSequential(feature_conv(num_feat), nn.ReLU(), feature_conv(num_feat),
                                   SlimChannelAttention(num_feat, squeeze_factor))

    def forward(self, x: torch.Tensor, width: Optional[int] = None) -> torch.Tensor:
        return x + self.rcab(x, width) * self.res_scale


class SlimResidualGroup(nn.Module):
    """``x + conv(RCAB_B(...RCAB_1(x)))`` at width c (keys ``residual_group.{b}``, ``conv``)."""

    slimmable = True

    def __init__(self, num_feat: int, num_block: int, squeeze_factor: int, res_scale: float):
        super().__init__()
        self.residual_group = SlimSequential(*[SlimRCAB(num_feat, squeeze_factor, res_scale)
                                               for _ in range(num_block)])
        self.conv = feature_conv(num_feat)

    def forward(self, x: torch.Tensor, width: Optional[int] = None) -> torch.Tensor:
        return x + self.conv(self.residual_group(x, width), width)


@ARCH_REGISTRY.register()
@register_slimmable(RCAN)
class SlimmableRCAN(SlimResidualFrame):
    """RCAN whose convs (channel attention included) run at a fraction ``width_mult`` of the feature
    channels. Width 1.0 is :class:`RCAN` with the same weights (10x20, 64 ch, x4: 15,592,355
    parameters); ``forward(x, width_mult=None)`` as SlimmableEDSR. Widths must give a multiple of
    ``squeeze_factor`` channels."""

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_group: int = 10,
                 num_block: int = 16, squeeze_factor: int = 16, upscale: int = 4, res_scale: float = 1.0,
                 img_range: float = 255., rgb_mean: Sequence[float] = (0.4488, 0.4371, 0.4040),
                 width_mult: float = 1.0):
        super().__init__()
        if num_feat % squeeze_factor:
            raise ValueError(f'SlimmableRCAN: num_feat {num_feat} must be divisible by squeeze_factor {squeeze_factor}')
        self.num_group, self.num_block, self.squeeze_factor = num_group, num_block, squeeze_factor
        self.res_scale = res_scale
        self.width_multiple = squeeze_factor
        self.build_frame('SlimmableRCAN', num_in_ch, num_out_ch, num_feat, upscale, img_range, rgb_mean,
                         lambda: SlimSequential(*[SlimResidualGroup(num_feat, num_block, squeeze_factor, res_scale)
                                                  for _ in range(num_group)]))
        self.channels_at(width_mult)
        self.width_mult = width_mult

    def plain_kwargs(self, width: int) -> Dict[str, Any]:
        return dict(num_in_ch=self.num_in_ch, num_out_ch=self.num_out_ch, num_feat=width, num_group=self.num_group,
                    num_block=self.num_block, squeeze_factor=self.squeeze_factor, upscale=self.upscale,
                    res_scale=float(self.res_scale), img_range=float(self.img_range),
                    rgb_mean=[round(v, 6) for v in self.mean.flatten().tolist()])

    @classmethod
    def from_plain_kwargs(cls, net: RCAN) -> Dict[str, Any]:
        """Read off a plain RCAN's structure (it keeps only ``upscale``, ``img_range`` and ``mean``)."""
        first_rcab = net.body[0].residual_group[0]
        num_feat = net.conv_first.weight.shape[0]
        return dict(num_in_ch=net.conv_first.weight.shape[1], num_out_ch=net.conv_last.weight.shape[0],
                    num_feat=num_feat, num_group=len(net.body), num_block=len(net.body[0].residual_group),
                    squeeze_factor=num_feat // first_rcab.rcab[3].attention[1].weight.shape[0],
                    upscale=net.upscale, res_scale=first_rcab.res_scale, img_range=net.img_range,
                    rgb_mean=net.mean.flatten().tolist())
