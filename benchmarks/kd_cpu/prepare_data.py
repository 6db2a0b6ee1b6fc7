"""Training data for the CPU distillation experiment: sub-images of T91 + BSD200 (from ../shared).

    python benchmarks/kd_cpu/prepare_data.py      # -> benchmarks/kd_cpu/work/train_{HR,LR_bicubic_X4}_sub_raw.lmdb

Uses the real preparation path (tools/create_lmdb.py's library function, MATLAB-exact bicubic LR),
with 96 px sub-images (step 48) because T91's photos are small (smaller photos are skipped).
"""
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

WORK = ROOT / 'benchmarks' / 'kd_cpu' / 'work'
CROP = 96


def shared_dir() -> Path:
    env = os.environ.get('CKDSR_SHARED')
    path = Path(env) if env else ROOT.parent / 'shared'
    if not (path / 'datasets' / 'train').is_dir():
        raise SystemExit(f'reference data not found at {path}; set CKDSR_SHARED')
    return path


def main() -> None:
    from ckdsr.data.image_io import read_image_size
    from ckdsr.data.lmdb_writer import create_paired_lmdb, lmdb_paths
    train = shared_dir() / 'datasets' / 'train'
    hr_paths = lmdb_paths(WORK, 'train', 4, 'raw')
    if all(p.exists() for p in hr_paths):
        print(f'already there: {hr_paths[0]}')
        return
    with tempfile.TemporaryDirectory() as tmp:
        for sub in ('T91', 'BSD200'):
            for f in sorted((train / sub / 'HR').glob('*.png')):
                if min(read_image_size(f)) >= CROP:  # a few T91 photos are smaller than one tile
                    os.symlink(f, Path(tmp) / f'{sub}_{f.name}')
        out = create_paired_lmdb(tmp, WORK, scale=4, crop_size=CROP, step=CROP // 2, fmt='raw', prefix='train',
                                 workers=2, overwrite=True)
    print('wrote', *out)


if __name__ == '__main__':
    main()
