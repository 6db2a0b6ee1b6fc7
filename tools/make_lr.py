"""Make MATLAB-exact bicubic LR images in EDSR layout.

    python tools/make_lr.py --hr datasets/Manga109/HR --out datasets/Manga109 --scale 2 --scale 4

writes ``<out>/LR_bicubic/X<s>/<name>x<s>.png`` = ``imresize(modcrop(HR, s), 1/s, 'bicubic')``.
Existing files are kept unless ``--overwrite``.
"""
import sys
from pathlib import Path
if __package__ in (None, ''):  # run as a script (python tools/x.py): the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402

from ckdsr.data.bicubic_lr import make_lr_folder  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--hr', required=True, help='folder of HR images')
    parser.add_argument('--out', required=True, help='dataset root; LR goes to <out>/LR_bicubic/X<s>')
    parser.add_argument('--scale', type=int, action='append', required=True,
                        help='downscaling factor; repeat for several (--scale 2 --scale 4)')
    parser.add_argument('--workers', type=int, default=1, help='parallel processes')
    parser.add_argument('--overwrite', action='store_true', help='replace existing LR files')
    parser.add_argument('--compress-level', type=int, default=3, help='PNG compression 0-9')
    args = parser.parse_args(argv)
    counts = make_lr_folder(args.hr, args.out, args.scale, workers=args.workers,
                            overwrite=args.overwrite, compress_level=args.compress_level,
                            progress=True)
    print(f"wrote {counts['written']} LR images, kept {counts['skipped']} existing ones, "
          f"under {Path(args.out) / 'LR_bicubic'}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
