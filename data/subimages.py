"""Cut large training images into overlapping sub-images, as BasicSR's ``extract_subimages``.

Positions along each axis are ``0, step, 2*step, ...`` while the crop fits, plus one last crop
flush with the far border when more than ``thresh_size`` pixels would be left over. Crops are
numbered row-major from 1: ``<stem>_s001``, ``<stem>_s002``, ...
"""
from typing import List, Tuple


def crop_positions(length: int, crop_size: int, step: int, thresh_size: int = 0) -> List[int]:
    """Start offsets of the crops along one axis of ``length`` pixels."""
    if crop_size < 1 or step < 1:
        raise ValueError(f'crop_size and step must be positive, got {crop_size} and {step}')
    if length < crop_size:
        raise ValueError(f'image side {length} is smaller than crop_size {crop_size}')
    pos = list(range(0, length - crop_size + 1, step))
    if length - (pos[-1] + crop_size) > thresh_size:
        pos.append(length - crop_size)
    return pos


def subimage_grid(height: int, width: int, crop_size: int, step: int,
                  thresh_size: int = 0) -> List[Tuple[int, int]]:
    """``(top, left)`` of every crop, in naming order (rows outer, columns inner)."""
    rows = crop_positions(height, crop_size, step, thresh_size)
    cols = crop_positions(width, crop_size, step, thresh_size)
    return [(y, x) for y in rows for x in cols]


def subimage_name(stem: str, index: int) -> str:
    """BasicSR's sub-image name: ``subimage_name('0001', 1) == '0001_s001'`` (1-based index)."""
    return f'{stem}_s{index:03d}'
