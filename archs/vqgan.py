"""The encoder half of taming-transformers' VQGAN (Esser et al., "Taming Transformers for
High-Resolution Image Synthesis", CVPR 2021), as DCKD's frozen embedding network.

DCKD (Zhou et al., "Dynamic Contrastive Knowledge Distillation for Efficient Image Restoration",
AAAI 2025) contrasts images on the output of the *first* ResnetBlock of each of the encoder's 5
levels (128/128/256/256/512 channels for ``vqgan_imagenet_f16_1024``), taken before that level's
attention, and its distribution-mapping module compares the quantiser input ``z`` with the codebook.

Module and parameter names mirror taming's ``Encoder``, ``quant_conv`` and
``quantize.embedding`` so a taming Lightning checkpoint loads directly (decoder, loss and
discriminator keys are ignored). Attention blocks are placed by *level*: the levels whose resolution
would be in ``attn_resolutions`` for a ``resolution``-sized input, whatever the runtime size.

Input: taming trained the VQGAN on [-1, 1] images; DCKD's official code feeds [0, 1] images.
``input_range='pm1'`` (default, what the weights expect) maps our [0, 1] input to [-1, 1];
``'01'`` feeds [0, 1] as is, reproducing the official DCKD code.
"""
import os
import pickle
import warnings
from typing import List, Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ckdsr.utils.registry import ARCH_REGISTRY

VQGAN_F16_1024_URL = 'https://heibox.uni-heidelberg.de/d/8088892a516d4e3baf92/'
_KEEP_PREFIXES = ('encoder.', 'quant_conv.', 'quantize.embedding.')


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """GroupNorm-swish-conv3x3 twice with a residual; 1x1 ``nin_shortcut`` when channels change."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.norm2 = _norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        skip = self.nin_shortcut(x) if hasattr(self, 'nin_shortcut') else x
        return skip + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention over all positions, residual."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        n = self.norm(x)
        q, k, v = (m(n).reshape(b, 1, c, h * w).transpose(-1, -2) for m in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(c)) v
        return x + self.proj_out(out.transpose(-1, -2).reshape(b, c, h, w))


class Downsample(nn.Module):
    """Zero-pad right/bottom by one, then a stride-2 3x3 conv (taming's asymmetric padding)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 2, 0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Encoder(nn.Module):
    """taming's ``Encoder`` (no timestep embedding), built level by level."""

    def __init__(self, ch: int, ch_mult: Sequence[int], num_res_blocks: int,
                 attn_resolutions: Sequence[int], resolution: int, in_channels: int,
                 z_channels: int, double_z: bool, dropout: float):
        super().__init__()
        self.num_resolutions = len(ch_mult)
        self.conv_in = nn.Conv2d(in_channels, ch, 3, 1, 1)
        self.down = nn.ModuleList()
        in_mult = (1,) + tuple(ch_mult)
        res = resolution
        block_in = ch
        for level in range(self.num_resolutions):
            block_in, block_out = ch * in_mult[level], ch * ch_mult[level]
            down = nn.Module()
            down.block = nn.ModuleList()
            down.attn = nn.ModuleList()
            for _ in range(num_res_blocks):
                down.block.append(ResnetBlock(block_in, block_out, dropout))
                block_in = block_out
                if res in attn_resolutions:
                    down.attn.append(AttnBlock(block_in))
            if level != self.num_resolutions - 1:
                down.downsample = Downsample(block_in)
                res //= 2
            self.down.append(down)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, dropout)
        self.mid.attn_1 = AttnBlock(block_in)
        self.mid.block_2 = ResnetBlock(block_in, block_in, dropout)
        self.norm_out = _norm(block_in)
        self.conv_out = nn.Conv2d(block_in, 2 * z_channels if double_z else z_channels, 3, 1, 1)


class _Inert:
    """Stands in for a class a checkpoint pickles besides its tensors; runs no code."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state


def _load_with_inert_globals(path: str, option_key: str, err: Exception):
    """A Lightning checkpoint (taming's ``last.ckpt``) also pickles classes of packages we do not
    need or have (``pytorch_lightning`` callback classes as dict keys, ``omegaconf`` hyper-parameters):
    read them as inert placeholders, still with ``weights_only=True``, so no package is imported and
    no pickled code runs. Falls back to a full unpickle only if that fails."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except (ValueError, RuntimeError) as bad:  # not a torch file at all (garbage, truncated)
        first = ' '.join(str(bad).split()).split('. ')[0]
        raise ValueError(f'{option_key}: {path} is not a readable torch checkpoint ({first}); the file is '
                         'damaged or not a PyTorch checkpoint') from None
    stubs = [(type(name.rsplit('.', 1)[-1], (_Inert,), {}), name) for name in names]
    warnings.warn(f'{option_key}: {path} is not loadable with weights_only=True as is (it pickles '
                  f"{', '.join(names[:4])}{' ...' if len(names) > 4 else ''}); reading those objects as "
                  'inert placeholders')
    try:
        with torch.serialization.safe_globals(stubs):
            return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as again:
        warnings.warn(f'{option_key}: {path}: placeholders were not enough ({type(again).__name__}: '
                      f'{again}); loading it as a full pickle (first error: {type(err).__name__})')
        return torch.load(path, map_location='cpu', weights_only=False)


@ARCH_REGISTRY.register()
class VQGANEncoder(nn.Module):
    """VQGAN encoder + ``quant_conv`` + codebook; forward returns DCKD's tapped features.

    ``forward(x)`` returns the list of first-ResnetBlock outputs of the levels in ``taps`` (in level
    order), or ``(features, z)`` when ``return_z`` (``z``: quantiser input, (B, embed_dim, h, w)).
    With ``stop_after_taps`` and no ``z`` needed, the pass stops right after the deepest tapped
    level's first block (for the default taps it never reaches an attention block or the mid
    block); ``taps`` thereby also sets the maximum level computed.
    Defaults are the ``vqgan_imagenet_f16_1024`` config. ``checkpoint_path`` is required unless
    ``allow_random`` (tests); ``option_key`` is the option path that error messages name.
    """

    def __init__(self,
                 checkpoint_path: Optional[str] = None,
                 input_range: Literal['01', 'pm1'] = 'pm1',
                 taps: Sequence[int] = (0, 1, 2, 3, 4),
                 return_z: bool = False,
                 stop_after_taps: bool = True,
                 ch: int = 128,
                 ch_mult: Sequence[int] = (1, 1, 2, 2, 4),
                 num_res_blocks: int = 2,
                 attn_resolutions: Sequence[int] = (16,),
                 resolution: int = 256,
                 in_channels: int = 3,
                 z_channels: int = 256,
                 double_z: bool = False,
                 dropout: float = 0.0,
                 embed_dim: int = 256,
                 n_embed: int = 1024,
                 allow_random: bool = False,
                 option_key: str = 'checkpoint_path'):
        super().__init__()
        if input_range not in ('01', 'pm1'):
            raise ValueError(f"VQGANEncoder: input_range must be '01' or 'pm1', got {input_range!r}")
        levels = len(ch_mult)
        bad = [t for t in taps if not 0 <= t < levels]
        if bad or len(set(taps)) != len(taps):
            raise ValueError(f'VQGANEncoder: taps must be distinct levels in 0..{levels - 1}, '
                             f'got {list(taps)}')
        if not taps and not return_z:
            raise ValueError('VQGANEncoder: nothing to return (taps is empty and return_z is false)')
        self.input_range = input_range
        self.taps = sorted(taps)
        self.return_z = return_z
        self.stop_after_taps = stop_after_taps
        self.option_key = option_key
        self.checkpoint_path = checkpoint_path

        self.encoder = Encoder(ch, ch_mult, num_res_blocks, attn_resolutions, resolution,
                               in_channels, z_channels, double_z, dropout)
        self.quant_conv = nn.Conv2d(2 * z_channels if double_z else z_channels, embed_dim, 1)
        self.quantize = nn.Module()
        self.quantize.embedding = nn.Embedding(n_embed, embed_dim)

        if checkpoint_path is not None:
            self.load_taming_checkpoint(checkpoint_path)
        elif not allow_random:
            raise self._missing(None)

    # ------------------------------------------------------------------ weights
    def _missing(self, path: Optional[str]) -> FileNotFoundError:
        from ckdsr.utils.external_files import describe  # the one table of external files
        where = 'is not set' if not path else f'points to a missing file ({path})'
        return FileNotFoundError(
            f"{self.option_key} {where}: VQGANEncoder needs {describe('vqgan_imagenet_f16_1024/ckpts/last.ckpt')}; "
            f'download it and set {self.option_key} to its path.')

    def load_taming_checkpoint(self, path: str) -> None:
        """Load ``encoder.*``, ``quant_conv.*`` and ``quantize.embedding.weight``.

        ``path`` holds a Lightning checkpoint (``{'state_dict': ...}``) or a bare state dict; every
        other key (decoder, post_quant_conv, loss/discriminator) is ignored.
        """
        if not path or not os.path.isfile(os.path.expanduser(path)):
            raise self._missing(path)
        path = os.path.expanduser(path)
        try:
            ckpt = torch.load(path, map_location='cpu', weights_only=True)
        except pickle.UnpicklingError as err:  # Lightning checkpoints may pickle other objects
            ckpt = _load_with_inert_globals(path, self.option_key, err)
        state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
        if not isinstance(state, dict):
            raise ValueError(f'{self.option_key}: {path} holds no state dict')
        kept = {k: v for k, v in state.items() if k.startswith(_KEEP_PREFIXES)}
        own = self.state_dict()
        problems = {
            'missing': [k for k in own if k not in kept],
            'unexpected': [k for k in kept if k not in own],
            'wrong shape': [f'{k} {tuple(v.shape)} vs {tuple(own[k].shape)}'
                            for k, v in kept.items() if k in own and v.shape != own[k].shape],
        }
        if any(problems.values()):
            detail = '; '.join(f"{what}: {', '.join(items[:6])}{' ...' if len(items) > 6 else ''}"
                               for what, items in problems.items() if items)
            raise ValueError(f'{self.option_key}: {path} does not match this VQGAN encoder '
                             f'config ({detail})')
        self.load_state_dict(kept, strict=True)

    # ------------------------------------------------------------------ forward
    @property
    def codebook(self) -> Tensor:
        """The (n_embed, embed_dim) codebook ``quantize.embedding.weight``."""
        return self.quantize.embedding.weight

    def tap_channels(self) -> List[int]:
        """Channels of each tapped feature, in output order."""
        return [self.encoder.down[t].block[0].conv2.out_channels for t in self.taps]

    def forward(self, x: Tensor, z_rows: Optional[slice] = None):
        """Tapped features of every row of ``x``; with ``return_z``, ``(features, z)`` where ``z`` covers
        the rows ``x[z_rows]`` only (all rows when None; None when the slice is empty): past the last
        tap the pass continues on those rows alone, so a batch mixing images that need ``z`` with
        images that do not pays for ``z`` once."""
        if self.input_range == 'pm1':
            x = x * 2.0 - 1.0
        enc = self.encoder
        need_z = self.return_z or not self.stop_after_taps
        last_tap = self.taps[-1] if self.taps else -1
        feats = []
        if z_rows is not None and last_tap < 0:  # no taps: only the z rows are needed at all
            x = x[z_rows]
            if x.shape[0] == 0:
                return feats, None
        h = enc.conv_in(x)
        for level, down in enumerate(enc.down):
            for i, block in enumerate(down.block):
                h = block(h)
                if i == 0 and level in self.taps:
                    feats.append(h)
                    if level == last_tap and not need_z:
                        return feats
                    if level == last_tap and z_rows is not None:
                        h = h[z_rows]
                        if h.shape[0] == 0:
                            return feats, None
                if len(down.attn) > 0:
                    h = down.attn[i](h)
            if hasattr(down, 'downsample'):
                h = down.downsample(h)
        h = enc.mid.block_2(enc.mid.attn_1(enc.mid.block_1(h)))
        z = self.quant_conv(enc.conv_out(F.silu(enc.norm_out(h))))
        return (feats, z) if self.return_z else feats
