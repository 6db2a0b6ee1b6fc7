"""SwinIR (Liang et al., ICCV-W 2021) with the official / BasicSR class, argument and key names.

Official release files (``params`` / ``params_ema``) load with ``strict=True``: their stored
``attn_mask`` / ``relative_position_index`` buffers are recomputed here (see
:mod:`ckdsr.archs.swin_transformer`). Any input size works: the input is mirror-padded to a multiple of the
window size and the output cropped back; shifted-window masks are computed for the actual size and
cached per size and device.
"""
from collections import OrderedDict
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ckdsr.archs.blocks import Upsample, check_upscale
from ckdsr.archs.swin_transformer import SwinTransformerBlock, shifted_window_mask
from ckdsr.utils.registry import ARCH_REGISTRY

UPSAMPLERS = ('pixelshuffle', 'pixelshuffledirect', 'nearest+conv', '')
MASK_CACHE_SIZE = 8


def mirror_pad(x: torch.Tensor, pad_h: int, pad_w: int, mode: str = 'reflect') -> torch.Tensor:
    """Pad the bottom/right of (B, C, H, W) by mirroring. 'reflect' excludes the edge pixel (as
    ``F.pad(mode='reflect')`` in BasicSR), 'symmetric' repeats it (the flip-and-concatenate padding
    of the official SwinIR test script). Pads larger than the image mirror periodically."""
    def index(n: int, p: int) -> torch.Tensor:
        i = torch.arange(n + p, device=x.device)
        if mode == 'symmetric':
            i = i % (2 * n)
            return torch.where(i >= n, 2 * n - 1 - i, i)
        if n == 1:
            return torch.zeros_like(i)
        i = i % (2 * n - 2)
        return torch.where(i >= n, 2 * n - 2 - i, i)

    if pad_h:
        x = x.index_select(-2, index(x.shape[-2], pad_h))
    if pad_w:
        x = x.index_select(-1, index(x.shape[-1], pad_w))
    return x


def conv_block(dim: int, resi_connection: str) -> nn.Module:
    """The conv closing a residual group: '1conv' a 3x3 conv; '3conv' 3x3 (dim/4), 1x1, 3x3 with
    LeakyReLU(0.2) between (keys ``0, 2, 4``)."""
    if resi_connection == '1conv':
        return nn.Conv2d(dim, dim, 3, 1, 1)
    if resi_connection == '3conv':
        return nn.Sequential(nn.Conv2d(dim, dim // 4, 3, 1, 1), nn.LeakyReLU(0.2),
                             nn.Conv2d(dim // 4, dim // 4, 1, 1, 0), nn.LeakyReLU(0.2),
                             nn.Conv2d(dim // 4, dim, 3, 1, 1))
    raise ValueError(f"SwinIR: resi_connection must be '1conv' or '3conv', got {resi_connection!r}")


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C)."""
    return x.flatten(2).transpose(1, 2)


def to_image(x: torch.Tensor, x_size: Tuple[int, int]) -> torch.Tensor:
    """(B, H*W, C) -> (B, C, H, W)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], x_size[0], x_size[1])


class BasicLayer(nn.Module):
    """``depth`` Swin blocks, alternating regular and shifted windows (key ``blocks.{i}``)."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, shift_size: int,
                 mlp_ratio: float, qkv_bias: bool, qk_scale: Optional[float], drop: float, attn_drop: float,
                 drop_path: Sequence[float], use_checkpoint: bool):
        super().__init__()
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList([
            SwinTransformerBlock(dim, num_heads, window_size, 0 if i % 2 == 0 else shift_size, mlp_ratio,
                                 qkv_bias, qk_scale, drop, attn_drop, drop_path[i])
            for i in range(depth)])

    def forward(self, x: torch.Tensor, x_size: Tuple[int, int], attn_mask: Optional[torch.Tensor]) -> torch.Tensor:
        for blk in self.blocks:
            if self.use_checkpoint and x.requires_grad:
                x = checkpoint(blk, x, x_size, attn_mask, use_reentrant=False)
            else:
                x = blk(x, x_size, attn_mask)
        return x


class RSTB(nn.Module):
    """Residual Swin Transformer block (SwinIR eq. 5-6): ``x + conv(STL_L(...STL_1(x)))``."""

    def __init__(self, dim: int, resi_connection: str, **layer_kwargs):
        super().__init__()
        self.residual_group = BasicLayer(dim, **layer_kwargs)
        self.conv = conv_block(dim, resi_connection)

    def forward(self, x: torch.Tensor, x_size: Tuple[int, int], attn_mask: Optional[torch.Tensor]) -> torch.Tensor:
        return to_tokens(self.conv(to_image(self.residual_group(x, x_size, attn_mask), x_size))) + x


class PatchEmbed(nn.Module):
    """Tokens from a feature map (patch size 1), optionally layer-normalised (key ``norm``)."""

    def __init__(self, dim: int, patch_norm: bool):
        super().__init__()
        self.norm = nn.LayerNorm(dim) if patch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = to_tokens(x)
        return self.norm(x) if self.norm is not None else x


@ARCH_REGISTRY.register()
class SwinIR(nn.Module):
    """SwinIR: shallow conv, residual Swin Transformer groups (RSTB), reconstruction.

    Input and output in [0, 1] (``img_range`` 1 as released; the DIV2K mean is subtracted for RGB).
    ``upsampler``: 'pixelshuffle' (classical SR: conv to 64 ch + LeakyReLU(0.01), sub-pixel upsampler,
    conv), 'pixelshuffledirect' (lightweight SR: one conv + PixelShuffle), 'nearest+conv' (real-world
    SR, x4), '' (restoration at x1, global residual). ``img_size`` only matters for the release's quirk
    of shrinking the window to the training size when that is not larger than ``window_size`` (and
    for ``ape``). ``pad_mode``: 'reflect' (BasicSR) or 'symmetric' (official test script) padding to
    a multiple of the window. Published sizes: SwinIR-M x4 (180 ch, 6x6, window 8, mlp 2) 11.90M.
    """

    def __init__(self, upscale: int = 4, in_chans: int = 3, img_size: int = 64, patch_size: int = 1,
                 window_size: int = 8, img_range: float = 1., depths: Sequence[int] = (6, 6, 6, 6),
                 embed_dim: int = 96, num_heads: Sequence[int] = (6, 6, 6, 6), mlp_ratio: float = 4.,
                 upsampler: str = '', resi_connection: str = '1conv', qkv_bias: bool = True,
                 qk_scale: Optional[float] = None, drop_rate: float = 0., attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.1, ape: bool = False, patch_norm: bool = True,
                 use_checkpoint: bool = False, pad_mode: str = 'reflect'):
        super().__init__()
        self._check_options(upscale, upsampler, patch_size, depths, num_heads, pad_mode)
        num_feat = 64
        img_hw = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        if min(img_hw) <= window_size:  # the release shrinks the window and drops the shift here
            window_size, shift_size = min(img_hw), 0
        else:
            shift_size = window_size // 2
        self.upscale, self.upsampler, self.img_range = upscale, upsampler, img_range
        self.window_size, self.shift_size, self.pad_mode, self.ape = window_size, shift_size, pad_mode, ape
        mean = [0.4488, 0.4371, 0.4040] if in_chans == 3 else [0.0] * in_chans
        self.register_buffer('mean', torch.tensor(mean).view(1, in_chans, 1, 1), persistent=False)
        self._masks: 'OrderedDict[tuple, torch.Tensor]' = OrderedDict()

        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(embed_dim, patch_norm)
        if ape:
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, img_hw[0] * img_hw[1], embed_dim))
            nn.init.trunc_normal_(self.absolute_pos_embed, std=.02)
        self.pos_drop = nn.Dropout(drop_rate)
        total = sum(depths)  # stochastic depth grows linearly over all blocks
        dpr = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        self.layers = nn.ModuleList()
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            start = sum(depths[:i])
            self.layers.append(RSTB(
                embed_dim, resi_connection, depth=depth, num_heads=heads, window_size=window_size,
                shift_size=shift_size, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, qk_scale=qk_scale,
                drop=drop_rate, attn_drop=attn_drop_rate, drop_path=dpr[start:start + depth],
                use_checkpoint=use_checkpoint))
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = conv_block(embed_dim, resi_connection)

        if upsampler == 'pixelshuffle':
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, num_feat, 3, 1, 1), nn.LeakyReLU())
            self.upsample = Upsample(upscale, num_feat)
            self.conv_last = nn.Conv2d(num_feat, in_chans, 3, 1, 1)
        elif upsampler == 'pixelshuffledirect':
            self.upsample = nn.Sequential(nn.Conv2d(embed_dim, upscale ** 2 * in_chans, 3, 1, 1),
                                          nn.PixelShuffle(upscale))
        elif upsampler == 'nearest+conv':
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, num_feat, 3, 1, 1), nn.LeakyReLU())
            self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_last = nn.Conv2d(num_feat, in_chans, 3, 1, 1)
            self.lrelu = nn.LeakyReLU(0.2)
        else:
            self.conv_last = nn.Conv2d(embed_dim, in_chans, 3, 1, 1)
        self.apply(self._init_weights)

    @staticmethod
    def _check_options(upscale, upsampler, patch_size, depths, num_heads, pad_mode) -> None:
        if upsampler not in UPSAMPLERS:
            raise ValueError(f'SwinIR: upsampler must be one of {UPSAMPLERS}, got {upsampler!r}')
        if upsampler == 'pixelshuffle':
            check_upscale('SwinIR', upscale)
        elif upsampler == 'nearest+conv' and upscale != 4:
            raise ValueError(f"SwinIR: upsampler 'nearest+conv' supports upscale 4 only, got {upscale}")
        elif upsampler == '' and upscale != 1:
            raise ValueError(f"SwinIR: upsampler '' (restoration) needs upscale 1, got {upscale}")
        elif upsampler == 'pixelshuffledirect' and (not isinstance(upscale, int) or upscale < 1):
            raise ValueError(f'SwinIR: upscale must be a positive integer, got {upscale!r}')
        if patch_size != 1:
            raise ValueError(f'SwinIR: only patch_size 1 is supported (as in every released model), got {patch_size}')
        if len(depths) != len(num_heads):
            raise ValueError(f'SwinIR: depths {list(depths)} and num_heads {list(num_heads)} need the same length')
        if pad_mode not in ('reflect', 'symmetric'):
            raise ValueError(f"SwinIR: pad_mode must be 'reflect' or 'symmetric', got {pad_mode!r}")

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def attn_mask(self, h: int, w: int, device: torch.device) -> Optional[torch.Tensor]:
        """Shifted-window mask for an (h, w) feature map, cached per (h, w, device) (LRU, 8 sizes)."""
        if not self.shift_size:
            return None
        key = (h, w, str(device))
        mask = self._masks.pop(key, None)
        if mask is None:
            mask = shifted_window_mask(h, w, self.window_size, self.shift_size, device)
            while len(self._masks) >= MASK_CACHE_SIZE:
                self._masks.popitem(last=False)
        self._masks[key] = mask
        return mask

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x_size = (x.shape[2], x.shape[3])
        mask = self.attn_mask(x_size[0], x_size[1], x.device)
        x = self.patch_embed(x)
        if self.ape:
            if x.shape[1] != self.absolute_pos_embed.shape[1]:
                raise ValueError(f'SwinIR: ape=True needs inputs of the training size img_size; got {x_size}')
            x = x + self.absolute_pos_embed
        x = self.pos_drop(x)
        for layer in self.layers:
            x = layer(x, x_size, mask)
        return to_image(self.norm(x), x_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ws = self.window_size
        x = mirror_pad(x, -h % ws, -w % ws, self.pad_mode)
        mean = self.mean.to(x.dtype)
        x = (x - mean) * self.img_range
        x_first = self.conv_first(x)
        res = self.conv_after_body(self.forward_features(x_first)) + x_first
        if self.upsampler == 'pixelshuffle':
            x = self.conv_last(self.upsample(self.conv_before_upsample(res)))
        elif self.upsampler == 'pixelshuffledirect':
            x = self.upsample(res)
        elif self.upsampler == 'nearest+conv':
            x = self.conv_before_upsample(res)
            x = self.lrelu(self.conv_up1(F.interpolate(x, scale_factor=2, mode='nearest')))
            x = self.lrelu(self.conv_up2(F.interpolate(x, scale_factor=2, mode='nearest')))
            x = self.conv_last(self.lrelu(self.conv_hr(x)))
        else:
            x = x + self.conv_last(res)
        x = x / self.img_range + mean
        return x[..., :h * self.upscale, :w * self.upscale]
