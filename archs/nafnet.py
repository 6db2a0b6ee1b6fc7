"""NAFNet (Chen et al., "Simple Baselines for Image Restoration", ECCV 2022), written from the paper.

A U-Net of NAF blocks (paper Sec. 3-4, Fig. 3c / Fig. 4): each block is LayerNorm -> 1x1 conv (x2
channels) -> 3x3 depth-wise conv -> SimpleGate (split channels in halves, multiply) -> simplified
channel attention (global average pool, 1x1 conv, multiply) -> 1x1 conv, added to the input with a
learned per-channel scale ``beta``; then LayerNorm -> 1x1 conv (x2) -> SimpleGate -> 1x1 conv,
added with a scale ``gamma``. Down-sampling is a 2x2 stride-2 conv doubling the channels; up-sampling
a bias-free 1x1 conv doubling them followed by PixelShuffle(2); skips are added; the output is the
input plus the predicted residual ("global residual").

Argument names and state_dict keys are those of the authors' release (github.com/megvii-research/
NAFNet, ``NAFNet(img_channel, width, middle_blk_num, enc_blk_nums, dec_blk_nums)``; keys such as
``encoders.3.27.conv2.weight``, ``sca.1.weight``, ``beta``), so the released ``params`` files load
with ``strict=True`` (see :mod:`ckdsr.archs.checkpoint_layouts`, layout ``nafnet_official``). Structure
facts from the release that the paper does not spell out: LayerNorm over channels with eps 1e-6,
``beta`` / ``gamma`` initialised to zero, the down conv has a bias and the up conv has none, the
input is zero-padded to a multiple of ``2 ** len(enc_blk_nums)`` and the output cropped back.

Sizes (DCKD, Zhou et al. 2024, Table 1): teacher NAFNet width 32, 36 blocks, 17.1M params -- the
released NAFNet-GoPro-width32 (enc [1, 1, 1, 28], middle 1, dec [1, 1, 1, 1]); student width 16,
22 blocks, 2.7M -- see :data:`STUDENT_LAYOUT` (the block split is an assumption: the paper gives
only the totals).
"""
from typing import Dict, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ckdsr.utils.registry import ARCH_REGISTRY

#: DCKD's NAFNet teacher (Table 1: width 32, 36 blocks, 17.1M): the release's GoPro width-32 layout
TEACHER_LAYOUT: Dict = dict(width=32, middle_blk_num=1, enc_blk_nums=[1, 1, 1, 28], dec_blk_nums=[1, 1, 1, 1])
#: DCKD's NAFNet student (Table 1: width 16, 22 blocks, 2.7M). Assumption: the paper gives only the
#: width and the block total; the teacher's split with the deepest encoder level cut from 28 to 14
#: blocks gives 1+1+1+14 + 1 + 4 = 22 blocks and 2.70M parameters.
STUDENT_LAYOUT: Dict = dict(width=16, middle_blk_num=1, enc_blk_nums=[1, 1, 1, 14], dec_blk_nums=[1, 1, 1, 1])


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel dimension of (B, C, H, W), per pixel, with affine ``weight``/``bias``."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        y = (x - mu) / torch.sqrt(var + self.eps)
        return self.weight.view(1, -1, 1, 1) * y + self.bias.view(1, -1, 1, 1)


class SimpleGate(nn.Module):
    """Split the channels in two halves and multiply them (paper Eq. 3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


class NAFBlock(nn.Module):
    """One nonlinear-activation-free block at ``c`` channels (paper Fig. 3c)."""

    def __init__(self, c: int, dw_expand: int = 2, ffn_expand: int = 2, drop_out_rate: float = 0.0):
        super().__init__()
        dw = c * dw_expand
        ffn = c * ffn_expand
        self.norm1 = LayerNorm2d(c)
        self.conv1 = nn.Conv2d(c, dw, 1)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
        self.sg = SimpleGate()
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dw // 2, dw // 2, 1))
        self.conv3 = nn.Conv2d(dw // 2, c, 1)
        self.norm2 = LayerNorm2d(c)
        self.conv4 = nn.Conv2d(c, ffn, 1)
        self.conv5 = nn.Conv2d(ffn // 2, c, 1)
        self.dropout1 = nn.Dropout(drop_out_rate) if drop_out_rate > 0 else nn.Identity()
        self.dropout2 = nn.Dropout(drop_out_rate) if drop_out_rate > 0 else nn.Identity()
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.sg(self.conv2(self.conv1(self.norm1(inp))))
        x = x * self.sca(x)
        y = inp + self.dropout1(self.conv3(x)) * self.beta
        x = self.conv5(self.sg(self.conv4(self.norm2(y))))
        return y + self.dropout2(x) * self.gamma


def _stage(num: int, c: int) -> nn.Sequential:
    return nn.Sequential(*[NAFBlock(c) for _ in range(num)])


@ARCH_REGISTRY.register()
class NAFNet(nn.Module):
    """NAFNet U-Net: ``len(enc_blk_nums)`` levels down, ``middle_blk_num`` blocks, as many levels up.

    Input and output are (B, img_channel, H, W) images in [0, 1]; any H, W (padded internally).
    """

    def __init__(self, img_channel: int = 3, width: int = 16, middle_blk_num: int = 1,
                 enc_blk_nums: Sequence[int] = (), dec_blk_nums: Sequence[int] = ()):
        super().__init__()
        if len(enc_blk_nums) != len(dec_blk_nums):
            raise ValueError(f'NAFNet: enc_blk_nums {list(enc_blk_nums)} and dec_blk_nums {list(dec_blk_nums)} '
                             'must have the same length (one decoder level per encoder level)')
        self.intro = nn.Conv2d(img_channel, width, 3, padding=1)
        self.ending = nn.Conv2d(width, img_channel, 3, padding=1)
        self.encoders, self.downs = nn.ModuleList(), nn.ModuleList()
        self.decoders, self.ups = nn.ModuleList(), nn.ModuleList()
        chan = width
        for num in enc_blk_nums:
            self.encoders.append(_stage(num, chan))
            self.downs.append(nn.Conv2d(chan, 2 * chan, 2, stride=2))
            chan *= 2
        self.middle_blks = _stage(middle_blk_num, chan)
        for num in dec_blk_nums:
            self.ups.append(nn.Sequential(nn.Conv2d(chan, chan * 2, 1, bias=False), nn.PixelShuffle(2)))
            chan //= 2
            self.decoders.append(_stage(num, chan))
        self.padder_size = 2 ** len(enc_blk_nums)

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        h, w = inp.shape[-2:]
        pad_h, pad_w = (-h) % self.padder_size, (-w) % self.padder_size
        padded = F.pad(inp, (0, pad_w, 0, pad_h)) if (pad_h or pad_w) else inp
        x = self.intro(padded)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.middle_blks(x)
        for decoder, up, skip in zip(self.decoders, self.ups, reversed(skips)):
            x = decoder(up(x) + skip)
        x = self.ending(x) + padded
        return x[..., :h, :w]
