"""Training and validation data of the distillation study: T91 + BSD200 (../shared) minus a fixed held-out list.

    python benchmarks/kd_study/prepare_data.py
    # -> benchmarks/kd_study/work/train_{HR,LR_bicubic_X4}_sub_raw.lmdb     (96 px sub-images, step 48)
    #    benchmarks/kd_study/work/val/{HR,LR_bicubic/X4}                     (the VALIDATION split)

The validation photos (``VALIDATION``) are left out of the training LMDB and written as a benchmark
folder (MATLAB-exact bicubic LR, ``ckdsr.data.bicubic_lr.make_lr_folder``). Loss weights of the study may
be chosen on this split only, never on the test sets (B100, Set5, Set14, Urban100-20). The list is
fixed (chosen before any run, by name: three BSD200 photos and three T91 photos, sizes >= 96 px).
Same cutting as benchmarks/kd_cpu/prepare_data.py (which uses every photo).
"""
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

WORK = ROOT / 'benchmarks' / 'kd_study' / 'work'
CROP = 96
SCALE = 4
#: held out of training; '<subset>_<name>' as the files are named in the LMDB and the val folder
VALIDATION = ('BSD200_105019', 'BSD200_118035', 'BSD200_135069', 'T91_t40', 'T91_tt7', 'T91_tt20')


from benchmarks.kd_cpu.prepare_data import shared_dir  # noqa: E402  (the same reference-data lookup)


def photos():
    """``{'<subset>_<name>': path}`` of every training photo at least one tile large."""
    from ckdsr.data.image_io import read_image_size
    train = shared_dir() / 'datasets' / 'train'
    out = {}
    for sub in ('T91', 'BSD200'):
        for f in sorted((train / sub / 'HR').glob('*.png')):
            if min(read_image_size(f)) >= CROP:  # a few T91 photos are smaller than one tile
                out[f'{sub}_{f.stem}'] = f
    missing = [v for v in VALIDATION if v not in out]
    if missing:
        raise SystemExit(f'validation photos not found in {train}: {missing}')
    return out


def main() -> None:
    from ckdsr.data.bicubic_lr import make_lr_folder
    from ckdsr.data.lmdb_writer import create_paired_lmdb, lmdb_paths
    found = photos()
    val_hr = WORK / 'val' / 'HR'
    val_hr.mkdir(parents=True, exist_ok=True)
    for name in VALIDATION:
        link = val_hr / f'{name}.png'
        if not link.exists():
            os.symlink(found[name], link)
    make_lr_folder(val_hr, WORK / 'val', [SCALE])
    hr_paths = lmdb_paths(WORK, 'train', SCALE, 'raw')
    if all(p.exists() for p in hr_paths):
        print(f'already there: {hr_paths[0]}')
        return
    with tempfile.TemporaryDirectory() as tmp:
        for name, f in found.items():
            if name not in VALIDATION:
                os.symlink(f, Path(tmp) / f'{name}.png')
        out = create_paired_lmdb(tmp, WORK, scale=SCALE, crop_size=CROP, step=CROP // 2, fmt='raw',
                                 prefix='train', workers=1, overwrite=True)
    print('wrote', *out)


if __name__ == '__main__':
    main()
