"""Build paired HR / LR sub-image LMDBs (BasicSR's ``extract_subimages`` + ``create_lmdb`` in one pass).

``create_paired_lmdb(hr_dir, out_dir, scale)`` reads every HR image (and its LR from ``lr_dir``,
or makes the LR with the MATLAB-exact bicubic), cuts aligned sub-images (HR ``crop_size`` /
``step``; LR sizes divided by ``scale``) named ``<stem>_s001``..., and writes::

    <out_dir>/<prefix>_HR_sub.lmdb                 (fmt='png': BasicSR-compatible values)
    <out_dir>/<prefix>_LR_bicubic_X<s>_sub.lmdb
    <out_dir>/<prefix>_HR_sub_raw.lmdb             (fmt='raw': uint8 RGB HWC bytes)
    <out_dir>/<prefix>_LR_bicubic_X<s>_sub_raw.lmdb

``scale`` may also be several scales, e.g. ``(2, 3, 4)``: one HR database is then shared by one
LR database per scale, all with the same keys. The HR is mod-cropped to a multiple of
``lcm(scales)`` (12 for 2, 3, 4) and each LR to the matching ``HR / s`` size; a generated LR is
still ``bicubic(modcrop(HR, s))``, so it matches a single-scale run's LR pixel for pixel.

``prefix`` defaults to the HR folder name without a trailing ``_HR`` (``DIV2K_train_HR`` ->
``DIV2K_train``; a folder called ``HR`` takes its parent's name). All databases are written
into ``<out_dir>/.<prefix>_sub.partial-<pid>/`` and moved into place only when complete, so an
interrupted run leaves nothing that looks like a finished database.
"""
import math
import os
import re
import shutil
from multiprocessing import Pool
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ckdsr.data.bicubic_lr import find_lr_file, list_images, lr_subdir
from ckdsr.data.image_io import encode_png, read_image, read_image_size
from ckdsr.data.lmdb_format import FORMAT_KEY, FORMATS, PNG, RAW, RAW_MARKER, MetaEntry, write_meta_info
from ckdsr.data.matlab_imresize import bicubic_downsample, modcrop
from ckdsr.data.subimages import subimage_grid, subimage_name

Scale = Union[int, Sequence[int]]
# one job = one HR image: (hr_path, LR path or None (= make it) per scale, scales, crop, step,
# thresh, fmt, level)
_Job = Tuple[str, Tuple[Optional[str], ...], Tuple[int, ...], int, int, int, str, int]
# one record = one sub-image key and its (value, shape) for the HR, then for each scale's LR
_Record = Tuple[str, List[Tuple[bytes, Tuple[int, int, int]]]]

_COMMIT_BYTES = 64 << 20


def default_prefix(hr_dir: os.PathLike) -> str:
    hr_dir = Path(hr_dir).resolve()
    if hr_dir.name == 'HR':
        return hr_dir.parent.name
    return re.sub(r'_HR$', '', hr_dir.name)


def as_scales(scale: Scale) -> Tuple[int, ...]:
    """``4 -> (4,)``, ``(2, 3, 4) -> (2, 3, 4)``; scales must be distinct integers >= 1."""
    scales = (int(scale),) if np.ndim(scale) == 0 else tuple(int(s) for s in scale)
    if not scales or min(scales) < 1 or len(set(scales)) != len(scales):
        raise ValueError(f'scale must be an integer >= 1 or a sequence of distinct ones, got {scale!r}')
    return scales


def lmdb_paths(out_dir: os.PathLike, prefix: str, scale: Scale, fmt: str = PNG) -> Tuple[Path, ...]:
    """Paths :func:`create_paired_lmdb` writes: ``(hr_lmdb, lr_lmdb)`` for an int ``scale``,
    ``(hr_lmdb, lr_lmdb_s1, lr_lmdb_s2, ...)`` for a sequence."""
    tail = '_sub_raw.lmdb' if fmt == RAW else '_sub.lmdb'
    out_dir = Path(out_dir)
    lrs = (out_dir / f'{prefix}_LR_bicubic_X{s}{tail}' for s in as_scales(scale))
    return (out_dir / f'{prefix}_HR{tail}', *lrs)


def _encode(img: np.ndarray, fmt: str, level: int) -> bytes:
    return np.ascontiguousarray(img).tobytes() if fmt == RAW else encode_png(img, level)


def _load_lr(hr: np.ndarray, hr_path: str, lr_path: Optional[str], scale: int) -> np.ndarray:
    """The x``scale`` LR of ``hr``: read (and size-checked) from ``lr_path``, or made by bicubic."""
    if lr_path is None:
        return bicubic_downsample(hr, scale)  # = bicubic(modcrop(hr, scale))
    lr = read_image(lr_path)
    want = (hr.shape[0] // scale, hr.shape[1] // scale)
    if lr.shape[:2] != want:
        raise ValueError(f'LR {lr_path} is {lr.shape[1]}x{lr.shape[0]} (w x h) but HR {hr_path} '
                         f'is {hr.shape[1]}x{hr.shape[0]}: x{scale} needs an LR of {want[1]}x{want[0]}')
    return lr


def cut_pair(job: _Job) -> List[_Record]:
    """Read one HR image and its LRs, check them, and encode their aligned sub-images."""
    hr_path, lr_paths, scales, crop, step, thresh, fmt, level = job
    hr = read_image(hr_path)
    lrs = [_load_lr(hr, hr_path, p, s) for p, s in zip(lr_paths, scales)]
    mod = math.lcm(*scales)
    hr = modcrop(hr, mod)
    h, w = hr.shape[:2]
    lrs = [lr[:h // s, :w // s] for lr, s in zip(lrs, scales)]
    if h < crop or w < crop:
        raise ValueError(f'HR {hr_path} ({w}x{h} after mod-crop to a multiple of {mod}) is smaller '
                         f'than crop_size {crop}; use a smaller crop_size')
    records = []
    stem = Path(hr_path).stem
    for i, (y, x) in enumerate(subimage_grid(h, w, crop, step, thresh), 1):
        subs = [hr[y:y + crop, x:x + crop]]
        for lr, s in zip(lrs, scales):
            subs.append(lr[y // s:y // s + crop // s, x // s:x // s + crop // s])
        records.append((subimage_name(stem, i), [(_encode(a, fmt, level), a.shape) for a in subs]))
    return records


def estimate_map_size(sizes: Iterable[Tuple[int, int]], scale: Scale, crop: int, step: int,
                      thresh: int) -> int:
    """LMDB map size for the HR plus every LR database: raw pixel bytes x1.25, page overhead,
    32 MiB (an upper bound for each database alone).

    PNG values are at most ~1% larger than raw pixels (incompressible noise), so this holds
    for both formats.
    """
    scales = as_scales(scale)
    mod = math.lcm(*scales)
    entries, raw = 0, 0
    for h, w in sizes:
        h, w = h - h % mod, w - w % mod
        if h < crop or w < crop:
            continue
        n = len(subimage_grid(h, w, crop, step, thresh))
        entries += n
        raw += n * 3 * (crop * crop + sum((crop // s) ** 2 for s in scales))
    return int(raw * 1.25) + entries * (1 + len(scales)) * 8192 + (32 << 20)


class _LmdbSink:
    """One LMDB being written: batched commits, a clear error when the map is full."""

    def __init__(self, path: Path, map_size: int):
        import lmdb

        self._lmdb = lmdb
        self.path = path
        self.map_size = map_size
        self.env = lmdb.open(str(path), map_size=map_size, meminit=False)
        self.txn = self.env.begin(write=True)
        self.pending = 0
        self.meta: List[MetaEntry] = []

    def put(self, key: str, value: bytes, entry: MetaEntry) -> None:
        try:
            if not self.txn.put(key.encode('ascii'), value, overwrite=False):
                raise ValueError(f'duplicate sub-image key {key!r} in {self.path.name}')
            self.pending += len(value)
            if self.pending > _COMMIT_BYTES:
                self.commit()
        except self._lmdb.MapFullError:
            raise RuntimeError(
                f'LMDB map full while writing {self.path.name} (map_size={self.map_size} bytes); '
                'pass a larger map_size (--map-size)') from None
        self.meta.append(entry)

    def commit(self) -> None:
        try:
            self.txn.commit()
        except self._lmdb.MapFullError:
            raise RuntimeError(
                f'LMDB map full while writing {self.path.name} (map_size={self.map_size} bytes); '
                'pass a larger map_size (--map-size)') from None
        self.txn = self.env.begin(write=True)
        self.pending = 0

    def finish(self, fmt: str) -> None:
        if fmt == RAW:
            self.txn.put(FORMAT_KEY, RAW_MARKER)
        self.commit()
        self.close()
        write_meta_info(self.path, self.meta)

    def close(self) -> None:
        if self.env is not None:
            if self.txn is not None:
                self.txn.abort()
                self.txn = None
            self.env.close()
            self.env = None


def _remove_stale_partials(out_dir: Path, prefix: str) -> None:
    pattern = re.compile(rf'^\.{re.escape(prefix)}_sub\.partial-(\d+)$')
    for p in out_dir.iterdir():
        m = pattern.match(p.name)
        if m and p.is_dir() and not _pid_alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lr_folders(lr_dir: os.PathLike, scale: int, single_scale: bool) -> List[Path]:
    """Folders searched for the x``scale`` LR files, in order: ``lr_dir`` itself (one scale
    only), ``lr_dir/X<s>`` (DIV2K's layout) and ``lr_dir/LR_bicubic/X<s>`` (``tools/make_lr.py``)."""
    lr_dir = Path(lr_dir)
    sub = lr_subdir(lr_dir, scale)
    return ([lr_dir] if single_scale else []) + [lr_dir / sub.name, sub]


def _find_lr(hr: Path, folders: Sequence[Path], scale: int) -> str:
    for folder in folders:
        lr = find_lr_file(folder, hr.stem, scale)
        if lr is not None:
            return str(lr)
    raise FileNotFoundError(f'HR {hr} has no x{scale} LR: looked for {hr.stem}x{scale}.png and '
                            f'{hr.stem}.png in {" and ".join(map(str, folders))}')


def _pair_jobs(hr_files: Sequence[Path], lr_dir: Optional[Path], scales: Tuple[int, ...], crop: int,
               step: int, thresh: int, fmt: str, level: int) -> List[_Job]:
    folders = None if lr_dir is None else {s: lr_folders(lr_dir, s, len(scales) == 1)
                                           for s in scales}
    seen = {}
    jobs = []
    for hr in hr_files:
        if hr.stem in seen:
            raise ValueError(f'HR files {seen[hr.stem]} and {hr} share the name {hr.stem!r}')
        seen[hr.stem] = hr
        lrs = tuple(_find_lr(hr, folders[s], s) if folders else None for s in scales)
        jobs.append((str(hr), lrs, scales, crop, step, thresh, fmt, level))
    return jobs


def _run_jobs(jobs: List[_Job], workers: int) -> Iterator[List[_Record]]:
    if workers <= 1:
        for job in jobs:
            yield cut_pair(job)
        return
    with Pool(workers) as pool:
        yield from pool.imap(cut_pair, jobs)


def create_paired_lmdb(hr_dir: os.PathLike, out_dir: os.PathLike, scale: Scale = 4, *,
                       lr_dir: Optional[os.PathLike] = None, crop_size: int = 480, step: int = 240,
                       thresh_size: int = 0, fmt: str = PNG, compress_level: int = 1,
                       prefix: Optional[str] = None, workers: int = 1, overwrite: bool = False,
                       map_size: Optional[int] = None, progress: bool = True) -> Tuple[Path, ...]:
    """Write paired HR / LR sub-image LMDBs; returns ``lmdb_paths(out_dir, prefix, scale, fmt)``:
    ``(hr_lmdb, lr_lmdb)`` for an int ``scale``, ``(hr_lmdb, lr_lmdb_s1, ...)`` for a sequence.

    ``lr_dir`` holds ``<stem>x<s>.png`` (or ``<stem>.png``) per HR image, for several scales in
    sub-folders ``X<s>`` (see :func:`lr_folders`); without it the LR is made with the
    MATLAB-exact bicubic. An LR must be ``floor(HR / s)`` in size; the HR is mod-cropped to a
    multiple of ``lcm(scales)``. Existing databases are an error unless ``overwrite`` (they are
    then replaced only once the new ones are complete).
    """
    if fmt not in FORMATS:
        raise ValueError(f'fmt must be one of {FORMATS}, got {fmt!r}')
    scales = as_scales(scale)
    for s in scales:
        if crop_size % s or step % s:
            raise ValueError(f'crop_size ({crop_size}) and step ({step}) must be multiples of scale ({s})')
    out_dir = Path(out_dir)
    prefix = prefix or default_prefix(hr_dir)
    targets = lmdb_paths(out_dir, prefix, scale, fmt)
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise FileExistsError(f'{", ".join(map(str, existing))} already exist(s); '
                              'pass overwrite=True (--overwrite) to rebuild')
    jobs = _pair_jobs(list_images(hr_dir), None if lr_dir is None else Path(lr_dir), scales,
                      crop_size, step, thresh_size, fmt, compress_level)
    if map_size is None:
        map_size = estimate_map_size((read_image_size(j[0]) for j in jobs), scales, crop_size, step,
                                     thresh_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(out_dir, prefix)
    write_lmdbs(out_dir / f'.{prefix}_sub.partial-{os.getpid()}', targets, _run_jobs(jobs, workers), len(jobs),
                f'{prefix} x{",".join(map(str, scales))} {fmt}', fmt=fmt, compress_level=compress_level,
                map_size=map_size, overwrite=overwrite, progress=progress)
    return targets


def write_lmdbs(tmp: Path, targets: Sequence[Path], images: Iterable[Iterable[_Record]], total: int, desc: str, *,
                fmt: str, compress_level: int, map_size: int, overwrite: bool, progress: bool) -> None:
    """Write one LMDB per target from ``images`` (per image, its records: a key and one encoded
    ``(value, shape)`` per target), into the folder ``tmp`` first; the databases are moved into place
    only once all are complete, and ``tmp`` is removed whatever happens. ``total`` images for the bar."""
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    sinks: List[_LmdbSink] = []
    try:
        sinks = [_LmdbSink(tmp / t.name, map_size) for t in targets]
        comp = RAW if fmt == RAW else str(compress_level)
        bar = _progress_bar(total, desc, progress)
        for records in images:
            for key, values in records:
                for sink, (value, shape) in zip(sinks, values):
                    sink.put(key, value, MetaEntry(key, tuple(shape), comp))
            bar.update(1)
        bar.close()
        for sink in sinks:
            sink.finish(fmt)
        _move_into_place(tmp, targets, overwrite)
    finally:
        for sink in sinks:
            sink.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _move_into_place(tmp: Path, targets: Sequence[Path], overwrite: bool) -> None:
    trash = tmp / '.replaced'
    for t in targets:
        if t.exists():
            if not overwrite:
                raise FileExistsError(f'{t} appeared while building; not replacing it')
            trash.mkdir(exist_ok=True)
            os.replace(t, trash / t.name)
        os.replace(tmp / t.name, t)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit='img', desc=desc)

