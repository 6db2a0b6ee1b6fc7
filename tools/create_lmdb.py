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
"""
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import os  # noqa: E402

from data.lmdb_writer import create_paired_lmdb  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--hr', required=True, help='folder of HR images')
    parser.add_argument('--lr', default=None, help='folder of LR images (<name>x<s>.png), or of '
                        'X<s> sub-folders (required for several scales); '
                        'omit to make them with the MATLAB-exact bicubic')
    parser.add_argument('--out', required=True, help='folder that receives the .lmdb folders')
    parser.add_argument('--scale', type=int, nargs='+', default=[4],
                        help='one or more scales (2 3 4: one shared HR database)')
    parser.add_argument('--crop-size', type=int, default=480, help='HR sub-image size')
    parser.add_argument('--step', type=int, default=240, help='HR sub-image stride')
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
    args = parser.parse_args(argv)
    scale = args.scale[0] if len(args.scale) == 1 else args.scale
    paths = create_paired_lmdb(
        args.hr, args.out, scale, lr_dir=args.lr, crop_size=args.crop_size, step=args.step,
        thresh_size=args.thresh_size, fmt=args.format, compress_level=args.compress_level,
        prefix=args.prefix, workers=args.workers, overwrite=args.overwrite,
        map_size=args.map_size, progress=True)
    for path in paths:
        print(f'wrote {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
