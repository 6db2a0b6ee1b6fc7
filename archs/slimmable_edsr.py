"""Slimmable EDSR for CSD (Wang et al., CVPR 2021, "Towards Compact Single Image Super-Resolution via
Contrastive Self-distillation"): one weight set, run at full width (teacher) or at the first
``width_mult`` fraction of every conv's channels (student, CS-Student).

A conv at width w uses ``weight[:c_out(w), :c_in(w)]``, both sliced from the same storage, so the
student's gradients land in the teacher's first channels. The image ends stay whole: ``conv_first``
always reads all input channels and ``conv_last`` always writes all output channels. An upsampling
conv followed by PixelShuffle(r) keeps its first ``r*r*c`` outputs, which PixelShuffle turns into the
first ``c`` feature channels: exactly the layout of an EDSR with ``num_feat = c``.

State_dict keys equal :class:`archs.edsr.EDSR`'s, so a plain EDSR checkpoint loads into the slimmable
net and :func:`export_narrow_edsr` can cut a standalone EDSR out of either.
"""
import math
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from archs.blocks import check_upscale, image_mean
from archs.edsr import EDSR
from utils.registry import ARCH_REGISTRY


class SlimConv2d(nn.Conv2d):
    """A conv that can run on the leading channels of its weight.

    ``slim_in`` / ``slim_out`` say which ends follow the width; ``out_mult`` is the factor between
    the sliced output count and the feature width (``r*r`` before a PixelShuffle(r), else 1).
    """

    def __init__(self, in_channels: int, out_channels: int, slim_in: bool = True, slim_out: bool = True,
                 out_mult: int = 1):
        super().__init__(in_channels, out_channels, 3, 1, 1)
        self.slim_in, self.slim_out, self.out_mult = slim_in, slim_out, out_mult

    def channels_at(self, width: int) -> Tuple[int, int]:
        """(in, out) channel counts used when the network's feature width is ``width``."""
        cin = width if self.slim_in else self.in_channels
        cout = self.out_mult * width if self.slim_out else self.out_channels
        return cin, cout

    def forward(self, x: torch.Tensor, width: Optional[int] = None) -> torch.Tensor:
        if width is None:
            return super().forward(x)
        cin, cout = self.channels_at(width)
        if x.shape[1] != cin:
            raise ValueError(f'SlimConv2d: input has {x.shape[1]} channels, width {width} expects {cin}')
        return F.conv2d(x, self.weight[:cout, :cin], self.bias[:cout], self.stride, self.padding)


class SlimResidualBlock(nn.Module):
    """EDSR residual block over SlimConv2d: ``x + res_scale * conv2(relu(conv1(x)))`` at width c."""

    def __init__(self, num_feat: int, res_scale: float):
        super().__init__()
        self.res_scale = res_scale
        self.conv1 = SlimConv2d(num_feat, num_feat)
        self.relu = nn.ReLU()
        self.conv2 = SlimConv2d(num_feat, num_feat)

    def forward(self, x: torch.Tensor, width: Optional[int] = None) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x, width)), width) * self.res_scale


class SlimUpsample(nn.Sequential):
    """Sub-pixel upsampler (keys ``0, 2, ...`` as in BasicSR) whose convs follow the width."""

    def __init__(self, scale: int, num_feat: int):
        check_upscale('SlimmableEDSR', scale)
        steps = [3] if scale == 3 else [2] * int(math.log2(scale))
        layers = []
        for r in steps:
            layers += [SlimConv2d(num_feat, r * r * num_feat, out_mult=r * r), nn.PixelShuffle(r)]
        super().__init__(*layers)

    def forward(self, x: torch.Tensor, width: Optional[int] = None) -> torch.Tensor:
        for layer in self:
            x = layer(x, width) if isinstance(layer, SlimConv2d) else layer(x)
        return x


@ARCH_REGISTRY.register()
class SlimmableEDSR(nn.Module):
    """EDSR whose every conv can run at a fraction ``width_mult`` of its feature channels (CSD).

    ``forward(x, width_mult=None)`` runs at ``width_mult`` (None: ``self.width_mult``, settable).
    Width 1.0 is exactly :class:`EDSR` with the same weights. CSD: R32C256, res_scale 0.1, student
    width 0.25 -> 2.70M effective parameters of 43.09M.
    """

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_block: int = 16,
                 upscale: int = 4, res_scale: float = 1.0, img_range: float = 255.,
                 rgb_mean: Sequence[float] = (0.4488, 0.4371, 0.4040), width_mult: float = 1.0):
        super().__init__()
        check_upscale('SlimmableEDSR', upscale)
        self.num_in_ch, self.num_out_ch, self.num_feat, self.num_block = num_in_ch, num_out_ch, num_feat, num_block
        self.upscale, self.res_scale, self.img_range = upscale, res_scale, img_range
        self.register_buffer('mean', image_mean('SlimmableEDSR', rgb_mean, num_in_ch, num_out_ch),
                             persistent=False)
        self.conv_first = SlimConv2d(num_in_ch, num_feat, slim_in=False)
        self.body = nn.Sequential(*[SlimResidualBlock(num_feat, res_scale) for _ in range(num_block)])
        self.conv_after_body = SlimConv2d(num_feat, num_feat)
        self.upsample = SlimUpsample(upscale, num_feat)
        self.conv_last = SlimConv2d(num_feat, num_out_ch, slim_out=False)
        self.channels_at(width_mult)  # validate the default width now, not at the first forward
        self.width_mult = width_mult

    def channels_at(self, width_mult: float) -> int:
        """Feature channels used at ``width_mult``; must be a whole number in 1..num_feat."""
        exact = self.num_feat * float(width_mult)
        width = int(round(exact))
        if not 0 < width_mult <= 1 or abs(exact - width) > 1e-6 or width < 1:
            raise ValueError(f'SlimmableEDSR: width_mult {width_mult} gives {exact:g} of {self.num_feat} '
                             'channels; choose a width in (0, 1] whose product with num_feat is a whole number')
        return width

    def forward(self, x: torch.Tensor, width_mult: Optional[float] = None) -> torch.Tensor:
        width = self.channels_at(self.width_mult if width_mult is None else width_mult)
        mean = self.mean.to(x.dtype)
        x = self.conv_first((x - mean) * self.img_range, width)
        res = x
        for block in self.body:
            res = block(res, width)
        res = self.conv_after_body(res, width) + x
        out = self.conv_last(self.upsample(res, width), width)
        return out / self.img_range + mean


def _slim_view(net: Union[EDSR, SlimmableEDSR]) -> SlimmableEDSR:
    """``net`` itself, or a SlimmableEDSR sharing a plain EDSR's tensors (no copy)."""
    if isinstance(net, SlimmableEDSR):
        return net
    if not isinstance(net, EDSR):
        raise TypeError(f'expected an EDSR or SlimmableEDSR, got {type(net).__name__}')
    with torch.device('meta'):
        view = SlimmableEDSR(net.num_in_ch, net.num_out_ch, net.num_feat, net.num_block, net.upscale,
                             net.res_scale, net.img_range, net.mean.flatten().tolist())
    view.load_state_dict(net.state_dict(), assign=True)
    view.mean = net.mean  # a non-persistent buffer: not carried by the state_dict
    return view


def narrow_state_dict(net: Union[EDSR, SlimmableEDSR], width_mult: float) -> Dict[str, torch.Tensor]:
    """The first-channel slices of every conv of ``net`` at ``width_mult`` (copies, EDSR key names)."""
    slim = _slim_view(net)
    width = slim.channels_at(width_mult)
    state = {}
    for name, module in slim.named_modules():
        if isinstance(module, SlimConv2d):
            cin, cout = module.channels_at(width)
            state[f'{name}.weight'] = module.weight.detach()[:cout, :cin].clone()
            state[f'{name}.bias'] = module.bias.detach()[:cout].clone()
    return state


def effective_num_params(net: Union[EDSR, SlimmableEDSR], width_mult: float) -> int:
    """Parameters that take part in a forward pass at ``width_mult`` (CSD: 2.70M at 0.25 of R32C256)."""
    slim = _slim_view(net)
    width = slim.channels_at(width_mult)
    total = 0
    for module in slim.modules():
        if isinstance(module, SlimConv2d):
            cin, cout = module.channels_at(width)
            total += cout * cin * module.kernel_size[0] * module.kernel_size[1] + cout
    return total


def export_narrow_edsr(net: Union[EDSR, SlimmableEDSR], width_mult: float) -> EDSR:
    """A standalone :class:`EDSR` with ``num_feat = width_mult * net.num_feat`` holding copies of the
    first channels of ``net``'s weights. Its output equals ``net(x, width_mult)`` for a SlimmableEDSR;
    for a plain EDSR teacher it is CSD's "initialise the student from the teacher's first channels"."""
    slim = _slim_view(net)
    width = slim.channels_at(width_mult)
    student = EDSR(slim.num_in_ch, slim.num_out_ch, width, slim.num_block, slim.upscale, slim.res_scale,
                   slim.img_range, slim.mean.flatten().tolist())
    student.load_state_dict(narrow_state_dict(slim, width_mult))
    return student.to(slim.mean.device)
