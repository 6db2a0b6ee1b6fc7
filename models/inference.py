"""Model-agnostic SR inference helpers over ``net(lr) -> sr``: tiling, x8 self-ensemble, padding.

Nothing here switches grad mode or ``eval()``: wrapping calls in ``torch.inference_mode()`` is the
caller's choice. All functions take NCHW tensors.
"""
from typing import Callable, List, Tuple

import torch
import torch.nn.functional as F

Net = Callable[[torch.Tensor], torch.Tensor]


def _starts(size: int, tile: int, stride: int) -> List[int]:
    """Tile start offsets covering ``[0, size)``; the last tile is flush with the end."""
    if size <= tile:
        return [0]
    return list(range(0, size - tile, stride)) + [size - tile]


def tiled_forward(net: Net, lr: torch.Tensor, scale: int, tile: int, tile_overlap: int) -> torch.Tensor:
    """Run ``net`` on overlapping ``tile x tile`` LR tiles and stitch the ``scale``-times outputs.

    Tiles start every ``tile - tile_overlap`` pixels (the last one flush with the image edge).
    Each tile drops a margin of ``tile_overlap // 2`` LR pixels on every side that is inside the
    image (its output there sees the tile's artificial border); what remains is averaged where tiles
    still overlap. For a net whose receptive field is narrower than ``tile_overlap``
    (radius <= tile_overlap // 2), the result equals whole-image inference up to float error.
    ``tile <= 0`` or an image no larger than one tile runs the whole image at once.
    """
    if lr.dim() != 4:
        raise ValueError(f'tiled_forward expects NCHW input, got shape {tuple(lr.shape)}')
    b, _, h, w = lr.shape
    if tile <= 0 or (h <= tile and w <= tile):
        return net(lr)
    if not 0 <= tile_overlap < tile:
        raise ValueError(f'tile_overlap must be in [0, tile); got tile={tile}, tile_overlap={tile_overlap}')
    stride = tile - tile_overlap
    margin = tile_overlap // 2
    out = weight = None
    for y0 in _starts(h, tile, stride):
        y1 = min(y0 + tile, h)
        for x0 in _starts(w, tile, stride):
            x1 = min(x0 + tile, w)
            sr = net(lr[..., y0:y1, x0:x1])
            if sr.shape[-2:] != ((y1 - y0) * scale, (x1 - x0) * scale):
                raise ValueError(f'net output {tuple(sr.shape[-2:])} for a {(y1 - y0, x1 - x0)} tile is '
                                 f'not the tile size times scale={scale}')
            if out is None:
                out = sr.new_zeros(b, sr.shape[1], h * scale, w * scale)
                weight = sr.new_zeros(1, 1, h * scale, w * scale)
            # keep-region of this tile, in LR pixels relative to the tile
            ky0 = 0 if y0 == 0 else margin
            ky1 = (y1 - y0) - (0 if y1 == h else margin)
            kx0 = 0 if x0 == 0 else margin
            kx1 = (x1 - x0) - (0 if x1 == w else margin)
            ys = slice((y0 + ky0) * scale, (y0 + ky1) * scale)
            xs = slice((x0 + kx0) * scale, (x0 + kx1) * scale)
            out[..., ys, xs] += sr[..., ky0 * scale:ky1 * scale, kx0 * scale:kx1 * scale]
            weight[..., ys, xs] += 1
    return out / weight


def _transform(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th of the 8 dihedral transforms: bit 0 = flip W, bit 1 = flip H, bit 2 = transpose."""
    if k & 4:
        x = x.transpose(-2, -1)
    if k & 2:
        x = x.flip(-2)
    if k & 1:
        x = x.flip(-1)
    return x


def _untransform(x: torch.Tensor, k: int) -> torch.Tensor:
    """Inverse of ``_transform(., k)``: the same operations in reverse order."""
    if k & 1:
        x = x.flip(-1)
    if k & 2:
        x = x.flip(-2)
    if k & 4:
        x = x.transpose(-2, -1)
    return x


def self_ensemble_forward(net: Net, lr: torch.Tensor) -> torch.Tensor:
    """x8 geometric self-ensemble (Lim et al. 2017, EDSR+): average of
    ``T_k^{-1}(net(T_k(lr)))`` over the 8 flips/transposes ``T_k`` of the spatial axes."""
    acc = None
    for k in range(8):
        sr = _untransform(net(_transform(lr, k)), k)
        acc = sr if acc is None else acc + sr
    return acc / 8


def pad_to_multiple(x: torch.Tensor, multiple: int,
                    mode: str = 'symmetric') -> Tuple[torch.Tensor, Tuple[int, int]]:
    """Pad H and W at the bottom/right up to multiples of ``multiple``; returns (padded, (h, w)).

    ``mode``: 'symmetric' mirrors including the edge pixel (SwinIR's flip-and-concatenate,
    works for any pad size), or any ``F.pad`` mode ('reflect', 'replicate', 'constant').
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    if mode == 'symmetric':
        while x.shape[-2] < h + ph:
            x = torch.cat([x, x.flip(-2)], dim=-2)
        while x.shape[-1] < w + pw:
            x = torch.cat([x, x.flip(-1)], dim=-1)
        return x[..., :h + ph, :w + pw], (h, w)
    return F.pad(x, (0, pw, 0, ph), mode=mode), (h, w)


def crop_to_size(y: torch.Tensor, size: Tuple[int, int], scale: int = 1) -> torch.Tensor:
    """Undo ``pad_to_multiple`` on a ``scale``-times output: keep the top-left ``size * scale``."""
    return y[..., :size[0] * scale, :size[1] * scale]


def padded_forward(net: Net, lr: torch.Tensor, scale: int, multiple: int,
                   mode: str = 'symmetric') -> torch.Tensor:
    """``net`` on ``lr`` padded to a multiple of ``multiple`` (e.g. a window size), cropped back."""
    x, size = pad_to_multiple(lr, multiple, mode)
    return crop_to_size(net(x), size, scale)


def sr_forward(net: Net, lr: torch.Tensor, scale: int, tile: int = 0, tile_overlap: int = 0,
               self_ensemble: bool = False, multiple: int = 1) -> torch.Tensor:
    """The usual composition for testing: x8 ensemble (outermost) of tiled inference of a net
    padded to ``multiple`` (innermost, per tile)."""
    def base(x):
        return padded_forward(net, x, scale, multiple) if multiple > 1 else net(x)

    def tiled(x):
        return tiled_forward(base, x, scale, tile, tile_overlap)

    return self_ensemble_forward(tiled, lr) if self_ensemble else tiled(lr)
