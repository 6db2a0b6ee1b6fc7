"""Training-sample throughput of each storage backend / value format, single process.

    python benchmarks/data_throughput.py [--samples 400] [--out benchmarks/results/data_throughput.md]

Builds 480x480 HR tiles from the BSD200 photos in ``shared/datasets/train`` (two 240-row halves
of 481x321 images stacked, so the tiles are real photo content at DIV2K sub-image size) and
their x4 MATLAB-bicubic LR (120x120), stores them as PNG files, a PNG LMDB, a raw-uint8 LMDB
and in memory, then times ``PairedImageDataset[i]`` (gt_size 192, hflip + rot) for each.
The reference row is the BasicSR-style path on the same PNG LMDB: decode the whole tile, convert
the whole tile to float, crop and flip on float, convert to tensor. One thread (cv2 and torch),
as inside a DataLoader worker.
"""
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ckdsr.data.file_client import open_lmdb_readonly  # noqa: E402
from ckdsr.data.image_io import read_image, write_png  # noqa: E402
from ckdsr.data.lmdb_writer import create_paired_lmdb  # noqa: E402
from ckdsr.data.matlab_imresize import bicubic_downsample  # noqa: E402
from ckdsr.data.paired_dataset import PairedImageDataset  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GT_SIZE, SCALE, TILE = 192, 4, 480


def shared_dir() -> Path:
    env = os.environ.get('CKDSR_SHARED')
    return Path(env) if env else REPO.parent / 'shared'


def make_tiles(src: Path, hr_dir: Path, lr_dir: Path) -> int:
    """480x480 tiles from pairs of 240x480 halves of landscape-oriented BSD photos."""
    halves = []
    for p in sorted(src.glob('*.png')):
        img = read_image(p)
        if img.shape[0] > img.shape[1]:
            img = img.transpose(1, 0, 2)
        halves += [img[:240, :TILE], img[-240:, :TILE]]
    n = 0
    for a, b in zip(halves[0::2], halves[1::2]):
        tile = np.ascontiguousarray(np.concatenate([a, b], axis=0))
        n += 1
        write_png(hr_dir / f'{n:04d}.png', tile, compress_level=1)
        write_png(lr_dir / f'{n:04d}x{SCALE}.png', bicubic_downsample(tile, SCALE), compress_level=1)
    return n


class BasicSRStylePath:
    """BasicSR's PairedImageDataset on a PNG LMDB: imfrombytes(float32=True) of the whole tile,
    paired_random_crop and augment on float, img2tensor(bgr2rgb=True, float32=True)."""

    def __init__(self, gt_db: Path, lq_db: Path):
        # BasicSR's flags (readonly, lock=False, readahead=False, meminit=False), through the
        # shared per-process handle because LMDB allows one open per process
        self.gt_env = open_lmdb_readonly(str(gt_db))
        self.lq_env = open_lmdb_readonly(str(lq_db))
        self.keys = [line.split('.')[0] for line in (gt_db / 'meta_info.txt').read_text().splitlines()]

    @staticmethod
    def _imfrombytes(value: bytes) -> np.ndarray:
        img = cv2.imdecode(np.frombuffer(value, np.uint8), cv2.IMREAD_COLOR)
        return img.astype(np.float32) / 255.

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int):
        key = self.keys[index].encode('ascii')
        with self.gt_env.begin(write=False) as txn:
            img_gt = self._imfrombytes(txn.get(key))
        with self.lq_env.begin(write=False) as txn:
            img_lq = self._imfrombytes(txn.get(key))
        lq_size = GT_SIZE // SCALE
        top = random.randint(0, img_lq.shape[0] - lq_size)
        left = random.randint(0, img_lq.shape[1] - lq_size)
        img_lq = img_lq[top:top + lq_size, left:left + lq_size, ...]
        img_gt = img_gt[top * SCALE:top * SCALE + GT_SIZE, left * SCALE:left * SCALE + GT_SIZE, ...]
        hflip, vflip, rot90 = random.random() < 0.5, random.random() < 0.5, random.random() < 0.5
        out = []
        for img in (img_gt, img_lq):
            if hflip:
                cv2.flip(img, 1, img)
            if vflip:
                cv2.flip(img, 0, img)
            if rot90:
                img = img.transpose(1, 0, 2)
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            out.append(torch.from_numpy(img.transpose(2, 0, 1)).float())
        return {'gt': out[0], 'lq': out[1]}


def time_dataset(ds, n: int, seeded: bool) -> float:
    """Seconds per sample over ``n`` samples after a warm-up pass over the whole set."""
    for i in range(len(ds)):
        ds[(i, i) if seeded else i]
    rng = np.random.default_rng(0)
    order = rng.integers(0, len(ds), n).tolist()
    t0 = time.perf_counter()
    for j, i in enumerate(order):
        item = ds[(i, j) if seeded else i]
        assert item['gt'].shape == (3, GT_SIZE, GT_SIZE)
    return (time.perf_counter() - t0) / n


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--samples', type=int, default=400, help='timed samples per row')
    parser.add_argument('--out', default=str(REPO / 'benchmarks' / 'results' / 'data_throughput.md'))
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    src = shared_dir() / 'datasets' / 'train' / 'BSD200' / 'HR'
    if not src.is_dir():
        raise SystemExit(f'BSD200 photos not found at {src} (set CKDSR_SHARED)')
    with tempfile.TemporaryDirectory(prefix='ckdsr_throughput_') as tmp:
        tmp = Path(tmp)
        n_tiles = make_tiles(src, tmp / 'HR', tmp / 'LR')
        dbs = {fmt: create_paired_lmdb(tmp / 'HR', tmp, SCALE, lr_dir=tmp / 'LR', crop_size=TILE,
                                       step=TILE, fmt=fmt, prefix='bench', progress=False)
               for fmt in ('png', 'raw')}
        common = dict(gt_size=GT_SIZE, use_hflip=True, use_rot=True, scale=SCALE, phase='train')
        rows = [('BasicSR-style (reference)', 'lmdb', 'png', BasicSRStylePath(*dbs['png']), False)]
        rows.append(('ckdsr', 'disk', 'png files', PairedImageDataset(
            dataroot_gt=str(tmp / 'HR'), dataroot_lq=str(tmp / 'LR'), filename_tmpl='{}x4', **common), True))
        for fmt in ('png', 'raw'):
            rows.append(('ckdsr', 'lmdb', fmt, PairedImageDataset(
                dataroot_gt=str(dbs[fmt][0]), dataroot_lq=str(dbs[fmt][1]), io_backend={'type': 'lmdb'},
                **common), True))
        rows.append(('ckdsr', 'memory', 'uint8', PairedImageDataset(
            dataroot_gt=str(dbs['raw'][0]), dataroot_lq=str(dbs['raw'][1]), io_backend={'type': 'memory'},
            **common), True))
        results = []
        for label, backend, fmt, ds, seeded in rows:
            random.seed(0)
            sec = time_dataset(ds, args.samples, seeded)
            results.append((label, backend, fmt, sec))
            print(f'{label:26s} {backend:7s} {fmt:9s} {sec * 1e3:8.3f} ms/sample', flush=True)
    ref = results[0][3]
    lines = [
        '# Data pipeline throughput',
        '',
        f'`python benchmarks/data_throughput.py --samples {args.samples}`: {n_tiles} HR tiles of '
        f'{TILE}x{TILE} (two 240-row halves of BSD200 photos), x{SCALE} MATLAB-bicubic LR, '
        f'gt_size {GT_SIZE}, '
        'hflip + rot, one process, cv2 and torch limited to 1 thread, data in the page cache.',
        f'Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, '
        f'torch {torch.__version__}, cv2 {cv2.__version__}.',
        '',
        '| path | backend | values | ms / sample | samples / s | vs BasicSR-style |',
        '| --- | --- | --- | ---: | ---: | ---: |',
    ]
    for label, backend, fmt, sec in results:
        lines.append(f'| {label} | {backend} | {fmt} | {sec * 1e3:.3f} | {1 / sec:.0f} | {ref / sec:.1f}x |')
    lines += ['', 'BasicSR-style = decode the whole PNG tile, convert the whole tile to float, then crop '
              'and flip; ckdsr = crop and flip on uint8, convert only the patch.',
              'Timings on a shared machine vary by about +-20% between runs; the ratios are measured '
              'in the same run.']
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines[6:]))
    print(f'wrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
