"""Restormer (Zamir et al., "Restormer: Efficient Transformer for High-Resolution Image Restoration",
CVPR 2022), written from the paper.

A 4-level U-Net of transformer blocks (paper Sec. 3, Fig. 2). Each block is
``x + MDTA(LN(x))`` then ``x + GDFN(LN(x))``:

- MDTA (Sec. 3.1, Eq. 1-2): 1x1 then 3x3 depth-wise convs make Q, K, V; attention across *channels*
  per head, ``softmax(K^T Q / alpha)`` with L2-normalised Q, K and a learned per-head temperature;
  a 1x1 output projection.
- GDFN (Sec. 3.2, Eq. 3): 1x1 conv to ``2 * hidden`` channels (``hidden = dim * gamma``, expansion
  ``gamma = 2.66``), 3x3 depth-wise conv, ``GELU(x1) * x2``, 1x1 conv back.

Down-sampling: 3x3 conv halving the channels + PixelUnshuffle(2); up-sampling: 3x3 conv doubling
them + PixelShuffle(2) (Sec. 3, "pixel-unshuffle and pixel-shuffle"); skips are concatenated and
reduced by a 1x1 conv at levels 3 and 2, while level 1 keeps the ``2 * dim`` concatenation for
the decoder and the refinement stage; the output 3x3 conv's residual is added to the input.

Argument names and state_dict keys follow the authors' release (github.com/swz30/Restormer,
``basicsr/models/archs/restormer_arch.py``: ``patch_embed.proj``, ``encoder_level1.0.attn.qkv_dwconv``,
``norm1.body.weight``, ``temperature``, ``down1_2.body.0``, ``reduce_chan_level3``, ``refinement``,
``output``), so the released ``params`` files load strictly (layout ``restormer_official``).
Facts from the release the paper leaves out: LayerNorm over channels per pixel with eps 1e-5 in
two kinds (``WithBias``; ``BiasFree`` scales by the std without subtracting the mean), bias-free
up/down convs, the ``dual_pixel_task`` skip conv (defocus deblurring only). Inputs are zero-padded
to a multiple of 8 here (the release's test scripts pad outside the net) and cropped back.

Sizes (DCKD Table 1): teacher 48 ch, 44 blocks, 26.1M = the release's defaults (num_blocks
[4, 6, 6, 8] used by encoder and decoder, 4 refinement blocks: 4+6+6+8+6+6+4+4 = 44); student 24 ch,
22 blocks, 3.8M -- :data:`STUDENT_LAYOUT` (the split is an assumption).
"""
from typing import Dict, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ckdsr.utils.registry import ARCH_REGISTRY

LAYER_NORM_TYPES = ('WithBias', 'BiasFree')

#: DCKD's Restormer teacher (Table 1: 48 channels, 44 blocks, 26.1M): the released defaults
TEACHER_LAYOUT: Dict = dict(dim=48, num_blocks=[4, 6, 6, 8], num_refinement_blocks=4, heads=[1, 2, 4, 8])
#: DCKD's Restormer student (Table 1: 24 channels, 22 blocks, 3.8M). Assumption: the paper gives only
#: the width and the block total; halving every level's block count, [2, 3, 3, 4] with 2 refinement
#: blocks (2+3+3+4+3+3+2+2 = 22), gives 3.83M parameters; heads kept at [1, 2, 4, 8].
STUDENT_LAYOUT: Dict = dict(dim=24, num_blocks=[2, 3, 3, 4], num_refinement_blocks=2, heads=[1, 2, 4, 8])


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of each pixel of (B, C, H, W); keys ``body.weight`` (``body.bias``)."""

    def __init__(self, dim: int, kind: str = 'WithBias'):
        super().__init__()
        if kind not in LAYER_NORM_TYPES:
            raise ValueError(f"Restormer: LayerNorm_type must be one of {LAYER_NORM_TYPES}, got {kind!r}")
        self.body = _NormBody(dim, with_bias=kind == 'WithBias')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _NormBody(nn.Module):
    def __init__(self, dim: int, with_bias: bool, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if with_bias else None
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        w = self.weight.view(1, -1, 1, 1)
        if self.bias is None:  # BiasFree: scale by the std only, the mean is not subtracted
            return x / torch.sqrt(var + self.eps) * w
        return (x - mu) / torch.sqrt(var + self.eps) * w + self.bias.view(1, -1, 1, 1)


class MDTA(nn.Module):
    """Multi-Dconv head Transposed Attention (paper Sec. 3.1): attention over channels."""

    def __init__(self, dim: int, num_heads: int, bias: bool):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'Restormer: {dim} channels do not split into {num_heads} heads')
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        q, k, v = (t.reshape(b, self.num_heads, c // self.num_heads, h * w) for t in (q, k, v))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1)) * self.temperature
        out = attn.softmax(dim=-1) @ v
        return self.project_out(out.reshape(b, c, h, w))


class GDFN(nn.Module):
    """Gated-Dconv Feed-forward Network (paper Sec. 3.2): ``GELU(x1) * x2`` after a depth-wise conv."""

    def __init__(self, dim: int, expansion: float, bias: bool):
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class TransformerBlock(nn.Module):
    """``x + attn(norm1(x))``, then ``x + ffn(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, ffn_expansion_factor: float, bias: bool, norm: str):
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim, norm)
        self.attn = MDTA(dim, num_heads, bias)
        self.norm2 = ChannelLayerNorm(dim, norm)
        self.ffn = GDFN(dim, ffn_expansion_factor, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class OverlapPatchEmbed(nn.Module):
    """The 3x3 input conv (key ``proj``)."""

    def __init__(self, in_c: int, dim: int, bias: bool):
        super().__init__()
        self.proj = nn.Conv2d(in_c, dim, 3, padding=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Downsample(nn.Module):
    """3x3 conv to ``c / 2`` channels + PixelUnshuffle(2): ``c`` -> ``2c`` channels, half size."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Upsample(nn.Module):
    """3x3 conv to ``2c`` channels + PixelShuffle(2): ``c`` -> ``c / 2`` channels, double size."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c * 2, 3, padding=1, bias=False), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@ARCH_REGISTRY.register()
class Restormer(nn.Module):
    """Restormer U-Net; (B, inp_channels, H, W) -> (B, out_channels, H, W), any H, W."""

    def __init__(self, inp_channels: int = 3, out_channels: int = 3, dim: int = 48,
                 num_blocks: Sequence[int] = (4, 6, 6, 8), num_refinement_blocks: int = 4,
                 heads: Sequence[int] = (1, 2, 4, 8), ffn_expansion_factor: float = 2.66, bias: bool = False,
                 LayerNorm_type: str = 'WithBias', dual_pixel_task: bool = False):  # noqa: N803 (release name)
        super().__init__()
        if len(num_blocks) != 4 or len(heads) != 4:
            raise ValueError(f'Restormer: num_blocks and heads need 4 entries (one per level), got '
                             f'{list(num_blocks)} and {list(heads)}')
        if dual_pixel_task and inp_channels == out_channels:
            raise ValueError('Restormer: dual_pixel_task expects a 6-channel input (two views) and 3-channel output')

        def stage(n: int, c: int, h: int) -> nn.Sequential:
            return nn.Sequential(*[TransformerBlock(c, h, ffn_expansion_factor, bias, LayerNorm_type)
                                   for _ in range(n)])

        d = dim
        self.patch_embed = OverlapPatchEmbed(inp_channels, d, bias)
        self.encoder_level1 = stage(num_blocks[0], d, heads[0])
        self.down1_2 = Downsample(d)
        self.encoder_level2 = stage(num_blocks[1], d * 2, heads[1])
        self.down2_3 = Downsample(d * 2)
        self.encoder_level3 = stage(num_blocks[2], d * 4, heads[2])
        self.down3_4 = Downsample(d * 4)
        self.latent = stage(num_blocks[3], d * 8, heads[3])
        self.up4_3 = Upsample(d * 8)
        self.reduce_chan_level3 = nn.Conv2d(d * 8, d * 4, 1, bias=bias)
        self.decoder_level3 = stage(num_blocks[2], d * 4, heads[2])
        self.up3_2 = Upsample(d * 4)
        self.reduce_chan_level2 = nn.Conv2d(d * 4, d * 2, 1, bias=bias)
        self.decoder_level2 = stage(num_blocks[1], d * 2, heads[1])
        self.up2_1 = Upsample(d * 2)
        self.decoder_level1 = stage(num_blocks[0], d * 2, heads[0])
        self.refinement = stage(num_refinement_blocks, d * 2, heads[0])
        self.dual_pixel_task = dual_pixel_task
        if dual_pixel_task:
            self.skip_conv = nn.Conv2d(d, d * 2, 1, bias=bias)
        self.output = nn.Conv2d(d * 2, out_channels, 3, padding=1, bias=bias)

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        h, w = inp.shape[-2:]
        pad_h, pad_w = (-h) % 8, (-w) % 8
        x = F.pad(inp, (0, pad_w, 0, pad_h)) if (pad_h or pad_w) else inp
        emb = self.patch_embed(x)
        e1 = self.encoder_level1(emb)
        e2 = self.encoder_level2(self.down1_2(e1))
        e3 = self.encoder_level3(self.down2_3(e2))
        lat = self.latent(self.down3_4(e3))
        d3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(lat), e3], 1)))
        d2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(d3), e2], 1)))
        d1 = self.refinement(self.decoder_level1(torch.cat([self.up2_1(d2), e1], 1)))
        if self.dual_pixel_task:
            out = self.output(d1 + self.skip_conv(emb))
        else:
            out = self.output(d1) + x
        return out[..., :h, :w]
