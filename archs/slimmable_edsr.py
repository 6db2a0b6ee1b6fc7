"""Slimmable EDSR for CSD (Wang et al., IJCAI 2021, "Towards Compact Single Image Super-Resolution via
Contrastive Self-distillation"): one weight set, run at full width (teacher) or at the first
``width_mult`` fraction of every conv's channels (student, CS-Student).

A conv at width w uses ``weight[:c_out(w), :c_in(w)]``, both sliced from the same storage, so the
student's gradients land in the teacher's first channels. The image ends stay whole: ``conv_first``
always reads all input channels and ``conv_last`` always writes all output channels. An upsampling
conv followed by PixelShuffle(r) keeps its first ``r*r*c`` outputs, which PixelShuffle turns into the
first ``c`` feature channels: exactly the layout of an EDSR with ``num_feat = c``. The slicing
machinery is shared with SlimmableRCAN and SlimmableCARN_M (:mod:`ckdsr.archs.slimmable_ops`).

State_dict keys equal :class:`ckdsr.archs.edsr.EDSR`'s, so a plain EDSR checkpoint loads into the slimmable
net and :func:`export_narrow_edsr` can cut a standalone EDSR out of either.
"""
from typing import Any, Dict, Optional, Sequence, Union

import torch
from torch import nn

from ckdsr.archs.edsr import EDSR
from ckdsr.archs.slimmable_ops import SlimResidualFrame, SlimSequential, as_slimmable, feature_conv, register_slimmable
from ckdsr.utils.registry import ARCH_REGISTRY


class SlimResidualBlock(nn.Module):
    """EDSR residual block over SlimConv2d: ``x + res_scale * conv2(relu(conv1(x)))`` at width c."""

    slimmable = True

    def __init__(self, num_feat: int, res_scale: float):
        super().__init__()
        self.res_scale = res_scale
        self.conv1 = feature_conv(num_feat)
        self.relu = nn.ReLU()
        self.conv2 = feature_conv(num_feat)

    def forward(self, x: torch.Tensor, width: Optional[int] = None) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x, width)), width) * self.res_scale


@ARCH_REGISTRY.register()
@register_slimmable(EDSR)
class SlimmableEDSR(SlimResidualFrame):
    """EDSR whose every conv can run at a fraction ``width_mult`` of its feature channels (CSD).

    ``forward(x, width_mult=None)`` runs at ``width_mult`` (None: ``self.width_mult``, settable).
    Width 1.0 is exactly :class:`EDSR` with the same weights. CSD: R32C256, res_scale 0.1, student
    width 0.25 -> 2.70M effective parameters of 43.09M.
    """

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_block: int = 16,
                 upscale: int = 4, res_scale: float = 1.0, img_range: float = 255.,
                 rgb_mean: Sequence[float] = (0.4488, 0.4371, 0.4040), width_mult: float = 1.0):
        super().__init__()
        self.num_block, self.res_scale = num_block, res_scale
        self.build_frame('SlimmableEDSR', num_in_ch, num_out_ch, num_feat, upscale, img_range, rgb_mean,
                         lambda: SlimSequential(*[SlimResidualBlock(num_feat, res_scale) for _ in range(num_block)]))
        self.channels_at(width_mult)  # validate the default width now, not at the first forward
        self.width_mult = width_mult

    def plain_kwargs(self, width: int) -> Dict[str, Any]:
        return dict(num_in_ch=self.num_in_ch, num_out_ch=self.num_out_ch, num_feat=width, num_block=self.num_block,
                    upscale=self.upscale, res_scale=float(self.res_scale), img_range=float(self.img_range),
                    rgb_mean=[round(v, 6) for v in self.mean.flatten().tolist()])

    @classmethod
    def from_plain_kwargs(cls, net: EDSR) -> Dict[str, Any]:
        return dict(num_in_ch=net.num_in_ch, num_out_ch=net.num_out_ch, num_feat=net.num_feat,
                    num_block=net.num_block, upscale=net.upscale, res_scale=net.res_scale, img_range=net.img_range,
                    rgb_mean=net.mean.flatten().tolist())


def narrow_state_dict(net: Union[EDSR, SlimmableEDSR], width_mult: float) -> Dict[str, torch.Tensor]:
    """The first-channel slices of every conv of ``net`` at ``width_mult`` (copies, EDSR key names)."""
    return as_slimmable(net).narrow_state_dict(width_mult)


def effective_num_params(net: Union[EDSR, SlimmableEDSR], width_mult: float) -> int:
    """Parameters that take part in a forward pass at ``width_mult`` (CSD: 2.70M at 0.25 of R32C256)."""
    return as_slimmable(net).effective_num_params(width_mult)


def export_narrow_edsr(net: Union[EDSR, SlimmableEDSR], width_mult: float) -> EDSR:
    """A standalone :class:`EDSR` with ``num_feat = width_mult * net.num_feat`` holding copies of the
    first channels of ``net``'s weights. Its output equals ``net(x, width_mult)`` for a SlimmableEDSR;
    for a plain EDSR teacher it is CSD's "initialise the student from the teacher's first channels"."""
    return as_slimmable(net).export(width_mult)

