"""Cut HR (and LR) training images into sub-images and write paired LMDBs.

    python tools/create_lmdb.py --hr datasets/DIV2K/DIV2K_train_HR \\
        --lr datasets/DIV2K/DIV2K_train_LR_bicubic/X4 --scale 4 --out datasets/DIV2K

writes ``<out>/DIV2K_train_HR_sub.lmdb`` and ``<out>/DIV2K_train_LR_bicubic_X4_sub.lmdb``
(``--format raw`` adds ``_raw`` before ``.lmdb``; see ``data/lmdb_writer.py``). Several scales
share one HR database and get one LR database each::

    python tools/create_lmdb.py --hr datasets/DIV2K/DIV2K_train_HR \\
        --lr datasets/DIV2K/DIV2K_train_LR_bicubic --scale 2 3 4 --out datasets/DIV2K

reads the LR from ``--lr``'s ``X2``/``X3``/``X4`` sub-folders and writes ``DIV2K_train_HR_sub.lmdb``
plus ``DIV2K_train_LR_bicubic_X{2,3,4}_sub.lmdb``; the shared HR is mod-cropped to a multiple of
lcm(scales) (12 for 2, 3, 4). Without ``--lr`` the LR is made with the MATLAB-exact bicubic.
Defaults follow BasicSR: crop 480, step 240, thresh_size 0, PNG compression level 1.

Scale-1 restoration pairs (``--task``; see ``data/restoration_lmdb.py``)::

    python tools/create_lmdb.py --task gopro --root datasets/GoPro/train --out datasets/GoPro/train_lmdb
    python tools/create_lmdb.py --task rain --root datasets/Rain13K --out datasets/Rain13K_lmdb

write ``blur.lmdb`` + ``sharp.lmdb`` (GoPro: 512 px tiles, step 256, as the NAFNet / Restormer data
scripts) or ``input.lmdb`` + ``target.lmdb`` (deraining: whole images; ``--crop-size`` cuts tiles).
"""
import sys
from pathlib import Path
if __package__ in (None, ''):  # run as a script (python tools/x.py): the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import os  # noqa: E402

from ckdsr.data.lmdb_writer import create_paired_lmdb  # noqa: E402
from ckdsr.data.restoration_lmdb import create_restoration_lmdb  # noqa: E402

#: --task -> (crop size, step) defaults; SR (no --task): 480 / 240
TASK_CROPS = {None: (480, 240), 'gopro': (512, 256), 'rain': (0, None)}


def flag_of(err: BaseException) -> str:
    """The command-line option an input error is about (for its ``error:`` line)."""
    text = str(err)
    if isinstance(err, FileExistsError):
        return '--out'
    if 'crop_size' in text or 'crop size' in text:
        return '--crop-size'
    if 'thresh' in text:
        return '--thresh-size'
    return '--lr' if ' LR ' in f' {text} ' or 'LR image' in text else '--hr'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--hr', help='folder of HR images (SR)')
    parser.add_argument('--task', choices=('gopro', 'rain'), default=None,
                        help='scale-1 restoration pairs from --root instead of HR/LR (GoPro or deraining layout)')
    parser.add_argument('--root', help='with --task: GoPro split (<sequence>/{blur,sharp}/) or folder with input/ target/')
    parser.add_argument('--lr', default=None, help='folder of LR images (<name>x<s>.png), or of '
                        'X<s> sub-folders (required for several scales); '
                        'omit to make them with the MATLAB-exact bicubic')
    parser.add_argument('--out', required=True, help='folder that receives the .lmdb folders')
    parser.add_argument('--scale', type=int, nargs='+', default=[4],
                        help='one or more scales (2 3 4: one shared HR database)')
    parser.add_argument('--crop-size', type=int, default=None, help='HR sub-image size (default 480; --task '
                        'gopro 512, rain 0 = whole images)')
    parser.add_argument('--step', type=int, default=None, help='HR sub-image stride (default 240; gopro 256)')
    parser.add_argument('--thresh-size', type=int, default=0,
                        help='add a border-flush crop when more than this many pixels remain')
    parser.add_argument('--format', choices=('png', 'raw'), default='png',
                        help='png: BasicSR-compatible values; raw: uint8 RGB bytes (fast reads)')
    parser.add_argument('--compress-level', type=int, default=1, help='PNG compression 0-9')
    parser.add_argument('--prefix', default=None, help='database name prefix (default from --hr)')
    parser.add_argument('--workers', type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument('--map-size', type=int, default=None,
                        help='LMDB map size in bytes (default: estimated from the images)')
    parser.add_argument('--overwrite', action='store_true', help='replace existing databases')
    parser.add_argument('--debug', action='store_true', help='full tracebacks instead of one error: line')
    args = parser.parse_args(argv)
    if (args.task is None) == (args.hr is None) or (args.task is None) != (args.root is None):
        parser.error('give --hr (SR) or --task with --root (restoration pairs)')
    crop, step = TASK_CROPS[args.task]
    args.crop_size = crop if args.crop_size is None else args.crop_size
    args.step = step if args.step is None else args.step
    scale = args.scale[0] if len(args.scale) == 1 else args.scale
    try:
        paths = create_restoration_lmdb(
            args.root, args.out, args.task, crop_size=args.crop_size, step=args.step, thresh_size=args.thresh_size,
            fmt=args.format, compress_level=args.compress_level, overwrite=args.overwrite,
            map_size=args.map_size, progress=True) if args.task else create_paired_lmdb(
            args.hr, args.out, scale, lr_dir=args.lr, crop_size=args.crop_size, step=args.step,
            thresh_size=args.thresh_size, fmt=args.format, compress_level=args.compress_level,
            prefix=args.prefix, workers=args.workers, overwrite=args.overwrite,
            map_size=args.map_size, progress=True)
    except (ValueError, FileExistsError, FileNotFoundError) as err:  # bad input: one line, exit 2
        if args.debug:
            raise
        flag = '--root' if args.task and flag_of(err) == '--hr' else flag_of(err)
        print(f'error: {flag}: {" ".join(str(err).split())}', file=sys.stderr)
        return 2
    for path in paths:
        print(f'wrote {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
