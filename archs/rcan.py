"""RCAN (Zhang et al., ECCV 2018) with BasicSR's class, argument and state_dict key names."""
from typing import Sequence

import torch
from torch import nn

from ckdsr.archs.blocks import MeanShiftedResidualSR, check_upscale, make_layer
from ckdsr.utils.registry import ARCH_REGISTRY


class ChannelAttention(nn.Module):
    """Channel attention (RCAN eq. 5-6): ``x * sigmoid(W_U relu(W_D avgpool(x)))``.
    Keys ``attention.1`` (W_D, C -> C/r) and ``attention.3`` (W_U, C/r -> C)."""

    def __init__(self, num_feat: int, squeeze_factor: int = 16):
        super().__init__()
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(num_feat, num_feat // squeeze_factor, 1),
            nn.ReLU(), nn.Conv2d(num_feat // squeeze_factor, num_feat, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


class RCAB(nn.Module):
    """Residual channel attention block (RCAN eq. 7): ``x + res_scale * CA(conv(relu(conv(x))))``."""

    def __init__(self, num_feat: int, squeeze_factor: int = 16, res_scale: float = 1.0):
        super().__init__()
        self.res_scale = res_scale
        self.rcab = nn.Sequential(
            nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.ReLU(), nn.Conv2d(num_feat, num_feat, 3, 1, 1),
            ChannelAttention(num_feat, squeeze_factor))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.rcab(x) * self.res_scale


class ResidualGroup(nn.Module):
    """Residual group (RCAN eq. 4): ``x + conv(RCAB_B(...RCAB_1(x)))`` (short skip connection)."""

    def __init__(self, num_feat: int, num_block: int, squeeze_factor: int = 16, res_scale: float = 1.0):
        super().__init__()
        self.residual_group = make_layer(lambda: RCAB(num_feat, squeeze_factor, res_scale), num_block)
        self.conv = nn.Conv2d(num_feat, num_feat, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(self.residual_group(x))


@ARCH_REGISTRY.register()
class RCAN(MeanShiftedResidualSR):
    """Residual channel attention network: residual-in-residual groups of RCABs (long skip, eq. 3).

    Input and output RGB in [0, 1]; mean shift with ``img_range`` as in EDSR. Keys:
    ``conv_first``, ``body.{g}.residual_group.{b}.rcab.{0,2,3.attention.1,3.attention.3}``,
    ``body.{g}.conv``, ``conv_after_body``, ``upsample.{0,2}``, ``conv_last``.
    Published sizes at x4: 10 groups x 20 blocks 15.59M, 10 x 6 5.17M.
    """

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_group: int = 10,
                 num_block: int = 16, squeeze_factor: int = 16, upscale: int = 4, res_scale: float = 1.0,
                 img_range: float = 255., rgb_mean: Sequence[float] = (0.4488, 0.4371, 0.4040)):
        super().__init__()
        check_upscale('RCAN', upscale)
        if num_feat % squeeze_factor:
            raise ValueError(f'RCAN: num_feat {num_feat} must be divisible by squeeze_factor {squeeze_factor}')
        self.build_frame('RCAN', num_in_ch, num_out_ch, num_feat, upscale, img_range, rgb_mean,
                         lambda: make_layer(lambda: ResidualGroup(num_feat, num_block, squeeze_factor, res_scale),
                                            num_group))
