"""Make and find EDSR-layout bicubic LR images: ``LR_bicubic/X<s>/<name>x<s>.png``."""
import os
from multiprocessing import Pool
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ckdsr.data.image_io import is_image_file, read_image, write_png
from ckdsr.data.matlab_imresize import bicubic_downsample


def lr_file_name(stem: str, scale: int) -> str:
    """EDSR naming: ``lr_file_name('baby', 4) == 'babyx4.png'``."""
    return f'{stem}x{scale}.png'


def lr_subdir(root: os.PathLike, scale: int) -> Path:
    """``<root>/LR_bicubic/X<scale>``."""
    return Path(root) / 'LR_bicubic' / f'X{scale}'


def list_images(folder: os.PathLike) -> List[Path]:
    """Image files directly inside ``folder``, sorted by name; an error if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f'image folder not found: {folder}')
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p.name))
    if not files:
        raise FileNotFoundError(f'no image files in {folder}')
    return files


def find_lr_file(lr_dir: os.PathLike, stem: str, scale: int) -> Optional[Path]:
    """The LR file for HR ``stem`` in ``lr_dir``: ``<stem>x<s>.png`` or ``<stem>.png``, else None."""
    for name in (lr_file_name(stem, scale), f'{stem}.png'):
        path = Path(lr_dir) / name
        if path.is_file():
            return path
    return None


def _make_one(job: Tuple[str, Sequence[int], str, bool, int]) -> Dict[int, str]:
    hr_path, scales, out_dir, overwrite, compress_level = job
    stem = Path(hr_path).stem
    img = None
    written = {}
    for s in scales:
        dst = lr_subdir(out_dir, s) / lr_file_name(stem, s)
        if dst.exists() and not overwrite:
            continue
        if img is None:
            img = read_image(hr_path)
        write_png(dst, bicubic_downsample(img, s), compress_level)
        written[s] = str(dst)
    return written


def make_lr_folder(hr_dir: os.PathLike, out_dir: os.PathLike, scales: Sequence[int], *,
                   workers: int = 1, overwrite: bool = False, compress_level: int = 3,
                   progress: bool = False) -> Dict[str, int]:
    """Write ``imresize(modcrop(HR, s), 1/s, 'bicubic')`` for every HR image and scale.

    Existing LR files are kept unless ``overwrite``; files are written atomically, so an
    interrupted run can simply be re-run. Returns ``{'written': n, 'skipped': m}``.
    """
    scales = [int(s) for s in scales]
    if not scales or min(scales) < 2:
        raise ValueError(f'scales must be integers >= 2, got {scales}')
    files = list_images(hr_dir)
    jobs = [(str(p), scales, str(out_dir), overwrite, compress_level) for p in files]
    if workers > 1:
        with Pool(workers) as pool:
            results = list(_progress(pool.imap(_make_one, jobs), len(jobs), progress))
    else:
        results = [_make_one(j) for j in _progress(jobs, len(jobs), progress)]
    written = sum(len(r) for r in results)
    return {'written': written, 'skipped': len(files) * len(scales) - written}


def _progress(it, total: int, enabled: bool):
    if not enabled:
        return it
    from tqdm import tqdm

    return tqdm(it, total=total, unit='img')
