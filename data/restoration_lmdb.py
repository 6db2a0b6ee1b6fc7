"""LMDBs of scale-1 restoration pairs (GoPro, deraining) in the format of :mod:`ckdsr.data.lmdb_format`.

``create_restoration_lmdb(root, out_dir, task)`` lists the pairs of a ``gopro`` or ``rain`` folder
(:mod:`ckdsr.data.restoration_dataset`), optionally cuts aligned sub-images (``crop_size`` / ``step``, as
BasicSR's ``extract_subimages``; ``crop_size=0`` stores whole images) and writes::

    <out_dir>/blur.lmdb  + <out_dir>/sharp.lmdb      (task gopro; keys <sequence>_<stem>[_s001])
    <out_dir>/input.lmdb + <out_dir>/target.lmdb     (task rain;  keys <stem>[_s001])

which ``GoProDataset`` / ``DerainDataset`` read with ``dataroot: <out_dir>, io_backend: {type: lmdb}``.
Both databases are written into ``<out_dir>/.restoration.partial-<pid>/`` and moved into place only
when complete. The NAFNet / Restormer data scripts crop GoPro into 512 px tiles with step 256 and
keep Rain13K whole; those are the defaults of tools/create_lmdb.py --task.
"""
import os
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import numpy as np

from ckdsr.data.image_io import read_image, read_image_size
from ckdsr.data.lmdb_format import FORMATS, PNG
from ckdsr.data.lmdb_writer import _encode, write_lmdbs
from ckdsr.data.restoration_dataset import RESTORATION_LAYOUTS
from ckdsr.data.subimages import subimage_grid, subimage_name
from ckdsr.data.transforms import check_pair


def cut_restoration_pair(key: str, lq_path: str, gt_path: str, crop_size: int, step: int,
                         thresh_size: int) -> Iterator[Tuple[str, np.ndarray, np.ndarray]]:
    """``(key, lq tile, gt tile)`` for each aligned sub-image (the whole pair when ``crop_size`` is 0)."""
    lq, gt = read_image(lq_path), read_image(gt_path)
    check_pair(gt, lq, 1, gt_path, lq_path)
    if not crop_size:
        yield key, lq, gt
        return
    h, w = gt.shape[:2]
    if h < crop_size or w < crop_size:
        raise ValueError(f'{gt_path} ({w}x{h}) is smaller than crop_size {crop_size}; use a smaller --crop-size '
                         'or 0 (whole images)')
    for i, (y, x) in enumerate(subimage_grid(h, w, crop_size, step, thresh_size), 1):
        yield subimage_name(key, i), lq[y:y + crop_size, x:x + crop_size], gt[y:y + crop_size, x:x + crop_size]


def _encoded_pair(key: str, lq_path: str, gt_path: str, crop_size: int, step: int, thresh_size: int, fmt: str,
                  level: int) -> Iterator[Tuple[str, List[Tuple[bytes, Tuple[int, ...]]]]]:
    """The records :func:`ckdsr.data.lmdb_writer.write_lmdbs` stores for one pair: per sub-image its key
    and the encoded ``(value, shape)`` of the lq tile, then of the gt tile."""
    for sub_key, *tiles in cut_restoration_pair(key, lq_path, gt_path, crop_size, step, thresh_size):
        yield sub_key, [(_encode(tile, fmt, level), tile.shape) for tile in tiles]


def create_restoration_lmdb(root: os.PathLike, out_dir: os.PathLike, task: str, *, crop_size: int = 0,
                            step: Optional[int] = None, thresh_size: int = 0, fmt: str = PNG,
                            compress_level: int = 1, overwrite: bool = False, map_size: Optional[int] = None,
                            progress: bool = True) -> Tuple[Path, Path]:
    """Write the ``(lq, gt)`` LMDBs of the ``task`` ('gopro' | 'rain') pairs under ``root``."""
    if task not in RESTORATION_LAYOUTS:
        raise ValueError(f"task must be one of {', '.join(RESTORATION_LAYOUTS)}, got {task!r}")
    if fmt not in FORMATS:
        raise ValueError(f'fmt must be one of {FORMATS}, got {fmt!r}')
    if crop_size < 0 or (step is not None and step < 1):
        raise ValueError(f'crop_size must be >= 0 and step >= 1, got {crop_size} and {step}')
    step = step or (crop_size // 2 if crop_size else 1)
    cls = RESTORATION_LAYOUTS[task]
    out_dir = Path(out_dir)
    targets = tuple(out_dir / f'{d}.lmdb' for d in cls.folders)
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise FileExistsError(f'{", ".join(map(str, existing))} already exist(s); pass --overwrite to rebuild')
    root = Path(root)
    pairs = [(key, str(root / lq), str(root / gt)) for key, lq, gt in cls.list_pairs(root)]
    if map_size is None:
        pixels = sum(h * w for w, h in (read_image_size(p[2]) for p in pairs))
        map_size = int(pixels * 3 * 2.5) + len(pairs) * 16 * 8192 + (32 << 20)  # 2 dbs, overlap <= 4x tiles
        if crop_size:
            map_size += int(pixels * 3 * 2 * ((crop_size / step) ** 2))
    out_dir.mkdir(parents=True, exist_ok=True)
    images = (_encoded_pair(*pair, crop_size, step, thresh_size, fmt, compress_level) for pair in pairs)
    write_lmdbs(out_dir / f'.restoration.partial-{os.getpid()}', targets, images, len(pairs), f'{task} {fmt}',
                fmt=fmt, compress_level=compress_level, map_size=map_size, overwrite=overwrite, progress=progress)
    return targets  # (lq, gt)
