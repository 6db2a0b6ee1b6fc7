"""The demo's data: scikit-image's bundled photos as a training LMDB and a held-out benchmark folder.

Nothing is downloaded: every photo below ships inside the scikit-image wheel. Greyscale photos are
repeated to three channels (as cv2 and BasicSR read greyscale files). The training photos go through
the real LMDB preparation (:func:`ckdsr.data.lmdb_writer.create_paired_lmdb`: sub-images, LR made with the
MATLAB-exact bicubic); the held-out photos become an EDSR-layout benchmark folder (``HR/`` +
``LR_bicubic/X<s>/``, made by :func:`ckdsr.data.bicubic_lr.make_lr_folder`, the function behind
``tools/make_lr.py``), which ``tools/test.py`` reads like Set5.
"""
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple

import numpy as np


def _skimage(name: str, index: int = None) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data as skdata
        img = getattr(skdata, name)()
        return img[index] if index is not None else img
    return load


#: photo name -> (loader, what it shows); all are real photographs bundled with scikit-image
PHOTOS: Dict[str, Tuple[Callable[[], np.ndarray], str]] = {
    'astronaut': (_skimage('astronaut'), 'Eileen Collins, NASA portrait (512x512)'),
    'coffee': (_skimage('coffee'), 'a cup of coffee on a table (600x400)'),
    'chelsea': (_skimage('chelsea'), 'Chelsea the cat (451x300)'),
    'rocket': (_skimage('rocket'), 'a rocket on the launch pad (640x427)'),
    'hubble_deep_field': (_skimage('hubble_deep_field'), 'Hubble eXtreme Deep Field (1000x872)'),
    'immunohistochemistry': (_skimage('immunohistochemistry'), 'immunohistochemistry micrograph (512x512)'),
    'retina': (_skimage('retina'), 'human retina fundus photo (1411x1411)'),
    'motorcycle_left': (_skimage('stereo_motorcycle', 0), 'motorcycle, left view of a stereo pair (741x500)'),
    'camera': (_skimage('camera'), 'the cameraman, greyscale (512x512)'),
    'brick': (_skimage('brick'), 'brick wall texture, greyscale (512x512)'),
    'grass': (_skimage('grass'), 'grass texture, greyscale (512x512)'),
    'gravel': (_skimage('gravel'), 'gravel texture, greyscale (512x512)'),
    'coins': (_skimage('coins'), 'Greek coins, greyscale (384x303)'),
    'moon': (_skimage('moon'), 'the moon surface, greyscale (512x512)'),
}


def load_photo(name: str) -> np.ndarray:
    """HWC uint8 RGB array of a bundled photo (greyscale repeated to 3 channels)."""
    if name not in PHOTOS:
        raise KeyError(f"unknown demo photo '{name}'; available: {', '.join(sorted(PHOTOS))}")
    img = np.asarray(PHOTOS[name][0]())
    if img.dtype != np.uint8:
        raise TypeError(f'demo photo {name} is {img.dtype}, expected uint8')
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])


def check_split(train: Sequence[str], heldout: Sequence[str]) -> None:
    """Both lists non-empty, known, without duplicates, and disjoint."""
    for label, names in (('train_photos', train), ('heldout_photos', heldout)):
        if not names:
            raise ValueError(f'data.{label}: name at least one photo')
        unknown = [n for n in names if n not in PHOTOS]
        if unknown:
            raise ValueError(f"data.{label}: unknown photo(s) {unknown}; available: {', '.join(sorted(PHOTOS))}")
        if len(set(names)) != len(names):
            raise ValueError(f'data.{label}: a photo is listed twice')
    both = sorted(set(train) & set(heldout))
    if both:
        raise ValueError(f'data: {both} are both training and held-out photos; a held-out photo must not be trained on')


def write_photos(names: Sequence[str], folder: Path, min_size: int = 0, progress: bool = True) -> List[Path]:
    """Write each photo as ``<folder>/<name>.png``; photos smaller than ``min_size`` are an error."""
    from tqdm import tqdm

    from ckdsr.data.image_io import write_png
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in tqdm(names, desc='photos', unit='img', disable=not progress, leave=False):
        img = load_photo(name)
        if min(img.shape[:2]) < min_size:
            raise ValueError(f'demo photo {name} ({img.shape[1]}x{img.shape[0]}) is smaller than the '
                             f'sub-image size {min_size}; lower data.crop_size or drop it')
        path = folder / f'{name}.png'
        write_png(path, img, compress_level=1)
        paths.append(path)
    return paths


def prepare_data(out: Path, train: Sequence[str], heldout: Sequence[str], heldout_name: str, scale: int,
                 crop_size: int, step: int, fmt: str = 'raw', progress: bool = True) -> Dict[str, Any]:
    """Build ``<out>/data``; returns the paths the option files need.

    ``{'train_gt', 'train_lq'}``: the paired sub-image LMDBs; ``'benchmark'``: the held-out folder
    ``<out>/data/benchmark/<heldout_name>`` (``HR/`` + ``LR_bicubic/X<scale>/``). Rebuilt every run.
    """
    from ckdsr.data.bicubic_lr import make_lr_folder
    from ckdsr.data.lmdb_writer import create_paired_lmdb
    check_split(train, heldout)
    data_dir = out / 'data'
    photos_dir = data_dir / 'photos_train_HR'
    bench = data_dir / 'benchmark' / heldout_name
    for d in (photos_dir, bench):
        shutil.rmtree(d, ignore_errors=True)
    write_photos(train, photos_dir, min_size=crop_size, progress=progress)
    hr_db, lr_db = create_paired_lmdb(photos_dir, data_dir, scale, crop_size=crop_size, step=step, fmt=fmt,
                                      prefix='demo_train', workers=1, overwrite=True, progress=progress)
    write_photos(heldout, bench / 'HR', progress=progress)
    make_lr_folder(bench / 'HR', bench, [scale], workers=1, overwrite=True, progress=progress)
    return {'train_gt': os.fspath(hr_db), 'train_lq': os.fspath(lr_db), 'benchmark': os.fspath(bench),
            'num_subimages': _count_lines(Path(hr_db) / 'meta_info.txt')}


def _count_lines(path: Path) -> int:
    with open(path, 'r', encoding='utf-8') as f:
        return sum(1 for line in f if line.strip())
