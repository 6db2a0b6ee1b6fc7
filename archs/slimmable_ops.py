"""Slimmable building blocks shared by the CSD networks (SlimmableEDSR, SlimmableRCAN, SlimmableCARN_M).

A slimmable network keeps one full-width weight set; at feature width ``c`` (of ``C``) every conv runs
on a sub-block of its weight, so the narrow network's gradients land in the full network's weights.
Which rows and columns a conv uses is declared per end (:class:`Fixed`, :class:`Feature`), relative to
the network's feature width, so one :class:`SlimConv2d` covers plain, grouped, concatenating,
squeezing (channel attention) and pre-PixelShuffle convs, and one :func:`narrow_state_dict` cuts any
of these networks into a plain narrow network with the same key names.

The channel set a network uses at width ``c`` is the same for every feature map (so skips,
concatenations and PixelShuffle line up): the first ``c`` channels, or, for a network whose convs
are grouped in ``blocks`` groups (CARN-M), the first ``c / blocks`` channels of each group.
"""
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ckdsr.archs.blocks import check_upscale, image_mean

Ranges = Tuple[Tuple[int, int], ...]  # (start, length) runs of channel indices, in order


@dataclass(frozen=True)
class Fixed:
    """An image end (RGB in or out): every channel at every width."""
    channels: int

    def ranges(self, width: int, full: int) -> Ranges:
        return ((0, self.channels),)


@dataclass(frozen=True)
class Feature:
    """An end that follows the feature width ``width`` of ``full``.

    Per segment (a concatenation of ``segments`` feature maps, CARN's 1x1 fusions) it has
    ``full * num / den`` channels, of which width ``width`` uses ``width * num / den``: ``num = r*r``
    before a PixelShuffle(r), ``den = squeeze`` for channel attention's bottleneck, ``den = groups``
    for the in-group input channels of a grouped conv. With ``blocks > 1`` the used channels are the
    first of each of the ``blocks`` equal parts of the segment (a grouped network's channel layout).
    """
    num: int = 1
    den: int = 1
    blocks: int = 1
    segments: int = 1

    def ranges(self, width: int, full: int) -> Ranges:
        seg_full, seg_used = self._per_segment(full), self._per_segment(width)
        if seg_used % self.blocks:
            raise ValueError(f'slimmable conv: {seg_used} channels cannot be split into {self.blocks} groups')
        blk_full, blk_used = seg_full // self.blocks, seg_used // self.blocks
        return tuple((s * seg_full + b * blk_full, blk_used)
                     for s in range(self.segments) for b in range(self.blocks))

    def _per_segment(self, width: int) -> int:
        if (width * self.num) % self.den:
            raise ValueError(f'slimmable conv: width {width} x {self.num} is not divisible by {self.den}')
        return width * self.num // self.den


def take(t: torch.Tensor, dim: int, ranges: Ranges) -> torch.Tensor:
    """The channels ``ranges`` of ``t`` along ``dim``: a view for one run, a concatenation otherwise."""
    parts = [t.narrow(dim, start, length) for start, length in ranges]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim)


def count(ranges: Ranges) -> int:
    return sum(length for _, length in ranges)


class SlimConv2d(nn.Conv2d):
    """A conv (padding ``k // 2``) that runs on the rows ``out_end`` and columns ``in_end`` select at a
    feature width of the network's ``full_width``; ``forward(x)`` without a width is the plain full
    conv. For a grouped conv, ``in_end`` indexes the in-group input channels (``Feature(den=groups)``)
    and ``out_end`` the output channels (``Feature(blocks=groups)``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, full_width: int,
                 in_end=Feature(), out_end=Feature(), groups: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, 1, kernel_size // 2, groups=groups)
        self.in_end, self.out_end, self.full_width = in_end, out_end, full_width
        self._cache: Dict[int, Tuple[Ranges, Ranges]] = {}

    def ranges_at(self, width: int) -> Tuple[Ranges, Ranges]:
        """(output rows, input columns) of the weight used at feature width ``width``."""
        if width not in self._cache:
            rows = self.out_end.ranges(width, self.full_width)
            cols = self.in_end.ranges(width, self.full_width)
            self._cache[width] = (rows, cols)
        return self._cache[width]

    def sliced(self, width: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) at feature width ``width``."""
        rows, cols = self.ranges_at(width)
        return take(take(self.weight, 0, rows), 1, cols), take(self.bias, 0, rows)

    def forward(self, x: torch.Tensor, width: Optional[int] = None) -> torch.Tensor:
        if width is None:
            return super().forward(x)
        weight, bias = self.sliced(width)
        expected = weight.shape[1] * self.groups
        if x.shape[1] != expected:
            raise ValueError(f'SlimConv2d: input has {x.shape[1]} channels, width {width} expects {expected}')
        return F.conv2d(x, weight, bias, self.stride, self.padding, groups=self.groups)


def feature_conv(full: int, kernel_size: int = 3, blocks: int = 1) -> SlimConv2d:
    """A feature-to-feature conv ``full -> full`` whose both ends follow the width."""
    return SlimConv2d(full, full, kernel_size, full, Feature(blocks=blocks), Feature(blocks=blocks))


class SlimSequential(nn.Sequential):
    """``nn.Sequential`` that passes the width to the slimmable layers (those with ``slimmable = True``
    or a :class:`SlimConv2d`) and calls the others plainly (ReLU, PixelShuffle, pooling)."""

    def forward(self, x: torch.Tensor, width: Optional[int] = None) -> torch.Tensor:
        for layer in self:
            x = layer(x, width) if is_slim(layer) else layer(x)
        return x


def is_slim(module: nn.Module) -> bool:
    return isinstance(module, SlimConv2d) or getattr(module, 'slimmable', False)


class SlimUpsample(SlimSequential):
    """Sub-pixel upsampler (BasicSR keys ``0, 2, ...``): per step a conv ``C -> r*r*C`` and
    PixelShuffle(r); at width ``c`` the conv keeps the outputs of the used feature channels."""

    def __init__(self, scale: int, num_feat: int):
        check_upscale('SlimUpsample', scale)
        steps = [3] if scale == 3 else [2] * int(math.log2(scale))
        layers = []
        for r in steps:
            layers += [SlimConv2d(num_feat, r * r * num_feat, 3, num_feat, out_end=Feature(num=r * r)),
                       nn.PixelShuffle(r)]
        super().__init__(*layers)


def check_width(arch: str, num_feat: int, width_mult: float, multiple_of: int = 1) -> int:
    """Feature channels at ``width_mult``: a whole multiple of ``multiple_of`` in 1..num_feat."""
    exact = num_feat * float(width_mult)
    width = int(round(exact))
    if not 0 < width_mult <= 1 or abs(exact - width) > 1e-6 or width < 1 or width % multiple_of:
        need = f'a multiple of {multiple_of}' if multiple_of > 1 else 'a whole number'
        raise ValueError(f'{arch}: width_mult {width_mult} gives {exact:g} of {num_feat} channels; choose a '
                         f'width in (0, 1] whose product with num_feat is {need}')
    return width


def slim_convs(net: nn.Module):
    """``(name, SlimConv2d)`` for every slimmable conv of ``net``."""
    return [(name, m) for name, m in net.named_modules() if isinstance(m, SlimConv2d)]


def narrow_state_dict(net: nn.Module, width: int) -> Dict[str, torch.Tensor]:
    """Copies of every tensor of ``net``'s state_dict, the slimmable convs cut to feature width ``width``
    (same key names: it loads into the plain network of that width)."""
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    for name, conv in slim_convs(net):
        weight, bias = conv.sliced(width)
        state[f'{name}.weight'] = weight.detach().clone()
        state[f'{name}.bias'] = bias.detach().clone()
    return state


def effective_num_params(net: nn.Module, width: int) -> int:
    """Parameters of ``net`` that a forward at feature width ``width`` uses (every non-slimmable
    parameter counts whole)."""
    slim = {id(p) for _, conv in slim_convs(net) for p in (conv.weight, conv.bias)}
    total = sum(p.numel() for p in net.parameters() if id(p) not in slim)
    for _, conv in slim_convs(net):
        rows, cols = conv.ranges_at(width)
        total += count(rows) * (count(cols) * conv.kernel_size[0] * conv.kernel_size[1] + 1)
    return total


# ----------------------------------------------------------------------------- slimmable networks
#: plain network class -> its slimmable class (filled by :func:`register_slimmable`)
_SLIM_OF: Dict[type, type] = {}


def register_slimmable(plain_cls: type):
    """Class decorator: ``plain_cls`` networks can be viewed as (and cut from) this slimmable class."""
    def deco(slim_cls):
        _SLIM_OF[plain_cls] = slim_cls
        slim_cls.plain_class = plain_cls
        return slim_cls
    return deco


class Slimmable(nn.Module):
    """Base of the slimmable networks. Subclasses set ``num_feat``, ``width_multiple`` (feature
    counts must be a multiple of it: the CA squeeze factor, the group count) and implement
    :meth:`plain_kwargs` and :meth:`from_plain_kwargs`; state_dict keys equal the plain network's."""

    plain_class: type = None
    width_multiple: int = 1

    def channels_at(self, width_mult: float) -> int:
        """Feature channels used at ``width_mult``; an error names the arch and the width."""
        return check_width(type(self).__name__, self.num_feat, width_mult, self.width_multiple)

    def plain_kwargs(self, width: int) -> Dict[str, Any]:
        """Constructor arguments of the plain network with ``width`` feature channels."""
        raise NotImplementedError

    @classmethod
    def from_plain_kwargs(cls, net: nn.Module) -> Dict[str, Any]:
        """Constructor arguments of the slimmable network with ``net``'s structure."""
        raise NotImplementedError

    def narrow_state_dict(self, width_mult: float) -> Dict[str, torch.Tensor]:
        return narrow_state_dict(self, self.channels_at(width_mult))

    def effective_num_params(self, width_mult: float) -> int:
        return effective_num_params(self, self.channels_at(width_mult))

    def export(self, width_mult: float) -> nn.Module:
        """A standalone plain network of width ``width_mult`` holding copies of this net's slices;
        its output equals ``self(x, width_mult)``."""
        width = self.channels_at(width_mult)
        plain = self.plain_class(**self.plain_kwargs(width))
        plain.load_state_dict(narrow_state_dict(self, width))
        return plain.to(next(self.parameters()).device)


def as_slimmable(net: nn.Module) -> Slimmable:
    """``net`` itself when slimmable, else a slimmable view sharing the plain network's tensors (no copy)."""
    if isinstance(net, Slimmable):
        return net
    slim_cls = _SLIM_OF.get(type(net))
    if slim_cls is None:
        names = ', '.join(sorted({c.__name__ for c in _SLIM_OF} | {c.__name__ for c in _SLIM_OF.values()}))
        raise TypeError(f'expected one of {names}, got {type(net).__name__}')
    with torch.device('meta'):
        view = slim_cls(**slim_cls.from_plain_kwargs(net))
    view.load_state_dict(net.state_dict(), assign=True)
    for name, buf in net.named_buffers():  # non-persistent buffers (the image mean) are not in the state_dict
        if name in dict(view.named_buffers()):
            view.register_buffer(name, buf, persistent=False)
    return view


class SlimResidualFrame(Slimmable):
    """The frame SlimmableEDSR and SlimmableRCAN share (the keys of :class:`ckdsr.archs.blocks.MeanShiftedResidualSR`):
    ``conv_first`` on the mean-shifted input, a ``body`` of slimmable blocks, ``conv_after_body`` with
    the long skip, ``upsample``, ``conv_last``. The image ends stay whole at every width."""

    def build_frame(self, arch: str, num_in_ch: int, num_out_ch: int, num_feat: int, upscale: int,
                    img_range: float, rgb_mean: Sequence[float], body_fn: Callable[[], nn.Module]) -> None:
        check_upscale(arch, upscale)
        self.num_in_ch, self.num_out_ch, self.num_feat = num_in_ch, num_out_ch, num_feat
        self.upscale, self.img_range = upscale, img_range
        self.register_buffer('mean', image_mean(arch, rgb_mean, num_in_ch, num_out_ch), persistent=False)
        self.conv_first = SlimConv2d(num_in_ch, num_feat, 3, num_feat, in_end=Fixed(num_in_ch))
        self.body = body_fn()
        self.conv_after_body = feature_conv(num_feat)
        self.upsample = SlimUpsample(upscale, num_feat)
        self.conv_last = SlimConv2d(num_feat, num_out_ch, 3, num_feat, out_end=Fixed(num_out_ch))

    def forward(self, x: torch.Tensor, width_mult: Optional[float] = None) -> torch.Tensor:
        width = self.channels_at(self.width_mult if width_mult is None else width_mult)
        mean = self.mean.to(x.dtype)
        x = self.conv_first((x - mean) * self.img_range, width)
        res = self.conv_after_body(self.body(x, width), width) + x
        return self.conv_last(self.upsample(res, width), width) / self.img_range + mean


#: the widths tools report for a slimmable network (CSD: 0.25 EDSR student, 0.75 RCAN student)
REPORT_WIDTHS = (0.25, 0.5, 0.75, 1.0)


def width_param_counts(net: Slimmable, widths: Sequence[float] = REPORT_WIDTHS) -> Dict[str, int]:
    """``{'0.25': params, ...}``: the parameters a forward at each valid width uses (its own default
    ``width_mult`` included; widths the network cannot run are left out)."""
    out = {}
    for w in sorted({float(w) for w in widths} | {float(net.width_mult)}):
        try:
            out[str(w)] = net.effective_num_params(w)
        except ValueError:
            continue
    return out
