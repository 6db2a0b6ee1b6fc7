"""Swin Transformer layers as SwinIR uses them (Liu et al., ICCV 2021; Liang et al., ICCV-W 2021).

Window attention with a learned relative position bias, cyclic shift with an attention mask for
shifted windows. The mask is not stored in the module: the caller computes it for the actual
feature size (see :func:`shifted_window_mask`) and caches it, so any input size works.

The official SwinIR release stores two derived buffers, ``attn.relative_position_index`` and
(shifted blocks) ``attn_mask`` for the training size; both are recomputed here, and a
load_state_dict pre-hook drops them so release files load with ``strict=True``. Modules list the
keys they drop in ``legacy_state_keys`` (read by :mod:`ckdsr.archs.checkpoint_layouts` as well).
"""
from typing import Optional, Tuple

import torch
from torch import nn


def _drop_legacy_state(module: nn.Module, state_dict, prefix: str, *_args) -> None:
    for name in module.legacy_state_keys:
        state_dict.pop(prefix + name, None)


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * H/ws * W/ws, ws, ws, C) non-overlapping windows."""
    b, h, w, c = x.shape
    x = x.view(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, c)


def window_reverse(windows: torch.Tensor, window_size: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * nW, ws, ws, C) -> (B, H, W, C)."""
    b = windows.shape[0] // ((h // window_size) * (w // window_size))
    x = windows.view(b, h // window_size, w // window_size, window_size, window_size, -1)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, -1)


def relative_position_index(window_size: int) -> torch.Tensor:
    """(N, N) index into the (2ws-1)^2 bias table for every token pair of a ws x ws window
    (Swin eq. 4: B is taken from B_hat indexed by the relative offset)."""
    coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing='ij'))
    coords = coords.flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window_size - 1)
    return rel[..., 0] * (2 * window_size - 1) + rel[..., 1]


def shifted_window_mask(h: int, w: int, window_size: int, shift_size: int,
                        device: Optional[torch.device] = None) -> torch.Tensor:
    """(nW, N, N) additive mask for shifted-window attention on an (h, w) map: 0 within one of the
    regions the cyclic shift brought together, -100 across regions (the value the release uses)."""
    img = torch.zeros(1, h, w, 1, device=device)
    bands = (slice(0, -window_size), slice(-window_size, -shift_size), slice(-shift_size, None))
    label = 0
    for hs in bands:
        for ws in bands:
            img[:, hs, ws, :] = label
            label += 1
    windows = window_partition(img, window_size).view(-1, window_size * window_size)
    diff = windows.unsqueeze(1) - windows.unsqueeze(2)
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth (Huang et al. 2016): zero whole samples with probability p, scale by 1/(1-p)."""
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - p)
    return x * keep / (1 - p)


class DropPath(nn.Module):
    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)


class Mlp(nn.Module):
    """Transformer feed-forward: fc1, GELU, dropout, fc2, dropout (keys ``fc1``, ``fc2``)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside ws x ws windows with relative position bias (Swin eq. 4):
    ``softmax(Q K^T / sqrt(d) + B + mask) V``."""

    legacy_state_keys = ('relative_position_index',)

    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool = True,
                 qk_scale: Optional[float] = None, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'SwinIR: embed_dim {dim} must be divisible by num_heads {num_heads}')
        self.dim, self.window_size, self.num_heads = dim, window_size, num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer('relative_position_index', relative_position_index(window_size), persistent=False)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=.02)
        self.register_load_state_dict_pre_hook(_drop_legacy_state)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: (B * nW, N, C) window tokens; mask: (nW, N, N) or None."""
        b_, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b_, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(b_ // nw, nw, self.num_heads, n, n) + mask.to(attn.dtype).unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, n, n)
        attn = self.attn_drop(attn.softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).reshape(b_, n, c)
        return self.proj_drop(self.proj(x))


class SwinTransformerBlock(nn.Module):
    """``x + DropPath(W-MSA(LN(x)))`` then ``x + DropPath(MLP(LN(x)))``; odd blocks shift the windows
    by ``shift_size`` (cyclic roll) and need the shifted-window mask."""

    legacy_state_keys = ('attn_mask',)

    def __init__(self, dim: int, num_heads: int, window_size: int = 8, shift_size: int = 0,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, qk_scale: Optional[float] = None,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        if not 0 <= shift_size < window_size:
            raise ValueError(f'SwinIR: shift_size {shift_size} must be in [0, window_size={window_size})')
        self.window_size, self.shift_size = window_size, shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias, qk_scale, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        self.register_load_state_dict_pre_hook(_drop_legacy_state)

    def forward(self, x: torch.Tensor, x_size: Tuple[int, int],
                attn_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        h, w = x_size
        b, _, c = x.shape
        ws, s = self.window_size, self.shift_size
        y = self.norm1(x).view(b, h, w, c)
        if s:
            y = torch.roll(y, shifts=(-s, -s), dims=(1, 2))
        windows = self.attn(window_partition(y, ws).view(-1, ws * ws, c), attn_mask if s else None)
        y = window_reverse(windows.view(-1, ws, ws, c), ws, h, w)
        if s:
            y = torch.roll(y, shifts=(s, s), dims=(1, 2))
        x = x + self.drop_path(y.reshape(b, h * w, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))
