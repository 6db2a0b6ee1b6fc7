"""PCL-SISR's embedding discriminator (Wu et al., "Practical Contrastive Learning Framework for
Single-Image Super-Resolution", IEEE TNNLS 2023; official code ``src/loss/discriminator.py``).

Input: the Haar LH/HL/HH sub-bands of the RGB image (9 channels at half resolution). Body: 8 blocks
of conv3x3 (no bias) - BatchNorm - LeakyReLU(0.2) with 64, 64, 128, 128, 256, 256, 512, 512 channels
and strides 1, 2, 1, 2, 1, 2, 1, 2. Head (the ``patchD`` variant): adaptive average pooling to
``pool_size`` x ``pool_size`` then a 1x1 conv to one logit per patch.

Feature taps for the contrastive loss: the official code collects the conv-BN ("before ReLU")
outputs, but its in-place LeakyReLU then overwrites them, so what it actually contrasts are
post-activation features. ``tap_point='pre_act'`` returns the true conv-BN outputs (the paper's
intent); ``'post_act'`` reproduces what the official code computes.

The official code feeds [0, 255] images; ``input_scale=255`` reproduces that. Because the first conv
has no bias and BatchNorm follows it, the scale only reaches BatchNorm's eps.
"""
from typing import List, Literal, Sequence, Tuple, Union

from torch import Tensor, nn

from ckdsr.archs.haar import HaarDWT
from ckdsr.utils.registry import ARCH_REGISTRY


class ConvBN(nn.Sequential):
    """conv3x3 (no bias) + BatchNorm2d."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)


@ARCH_REGISTRY.register()
class PCLDiscriminator(nn.Module):
    """Patch discriminator on Haar high-frequency sub-bands; doubles as PCL-SISR's embedding.

    ``forward(x)`` -> patch logits (B, 1, pool_size, pool_size) (full resolution if
    ``pool_size == 0``). ``forward_features(x, taps)`` -> outputs of the requested blocks (0-based).
    """

    def __init__(self,
                 in_channels: int = 3,
                 use_wavelet: bool = True,
                 num_feat: int = 64,
                 num_blocks: int = 8,
                 pool_size: int = 4,
                 tap_point: Literal['pre_act', 'post_act'] = 'pre_act',
                 negative_slope: float = 0.2,
                 input_scale: float = 1.0):
        super().__init__()
        if tap_point not in ('pre_act', 'post_act'):
            raise ValueError(f"PCLDiscriminator: tap_point must be 'pre_act' or 'post_act', "
                             f'got {tap_point!r}')
        if num_blocks < 1 or pool_size < 0:
            raise ValueError('PCLDiscriminator: num_blocks must be >= 1 and pool_size >= 0')
        self.tap_point = tap_point
        self.input_scale = input_scale
        self.dwt = HaarDWT(bands=('LH', 'HL', 'HH')) if use_wavelet else None
        ch_in = in_channels * 3 if use_wavelet else in_channels
        self.channels: List[int] = []
        blocks = []
        for k in range(num_blocks):
            ch_out = num_feat * 2 ** (k // 2)      # 64, 64, 128, 128, 256, 256, 512, 512
            stride = 2 if k % 2 == 1 else 1        # 1, 2, 1, 2, ...
            blocks.append(ConvBN(ch_in, ch_out, stride))
            self.channels.append(ch_out)
            ch_in = ch_out
        self.blocks = nn.ModuleList(blocks)
        self.act = nn.LeakyReLU(negative_slope)
        self.pool = nn.AdaptiveAvgPool2d(pool_size) if pool_size > 0 else nn.Identity()
        self.head = nn.Conv2d(ch_in, 1, 1)

    def _embed_input(self, x: Tensor) -> Tensor:
        if self.input_scale != 1.0:
            x = x * self.input_scale
        return self.dwt(x) if self.dwt is not None else x

    def forward(self, x: Tensor) -> Tensor:
        h = self._embed_input(x)
        for block in self.blocks:
            h = self.act(block(h))
        return self.head(self.pool(h))

    def forward_features(self, x: Tensor, taps: Sequence[int], with_logits: bool = False
                         ) -> Union[List[Tensor], Tuple[Tensor, List[Tensor]]]:
        """Outputs of blocks ``taps`` (in the order given) at ``tap_point``; with ``with_logits``
        also the patch logits from the same pass, as ``(logits, features)``."""
        n = len(self.blocks)
        if any(not 0 <= t < n for t in taps):
            raise ValueError(f'PCLDiscriminator: taps must be block indices in 0..{n - 1}, '
                             f'got {list(taps)}')
        stop = n - 1 if with_logits else max(taps, default=-1)
        found = {}
        h = self._embed_input(x)
        for k in range(stop + 1):
            pre = self.blocks[k](h)
            h = self.act(pre)
            if k in taps:
                found[k] = pre if self.tap_point == 'pre_act' else h
        feats = [found[t] for t in taps]
        return (self.head(self.pool(h)), feats) if with_logits else feats
