"""Benchmark a trained SR network: PSNR / SSIM on Y (crop border = scale), timing, JSON and CSV.

    # a BasicSR-style test option file (network_g, path.pretrain_network_g, datasets.test_*, val)
    python tools/test.py -opt options/test/test_carn_m_x4.yml [--set path.pretrain_network_g=W.pth]

    # or directly; a multi-scale net (CARN_M) runs at every --scale given
    python tools/test.py --arch CARN_M --weights ../shared/weights/carn_m.pth --scale 2 3 4 \\
        --datasets ../shared/datasets/benchmark/{Set5,Set14,B100} --json carn_m.json --csv carn_m.csv
    python tools/test.py --arch RCAN --set num_group=10 num_block=6 --weights net_g.pth --scale 4 \\
        --datasets datasets/benchmark/Set5 --self-ensemble --tile 256 --tile-overlap 16

Each dataset folder holds ``HR/`` and ``LR_bicubic/X<s>/<name>x<s>.png`` (EDSR layout); a set
without ``LR_bicubic/X<s>`` (Manga109) gets its LR from the MATLAB-exact bicubic, and says so.
Weights load in any layout :func:`ckdsr.archs.checkpoint_layouts.load_pretrained` knows (BasicSR
``params``/``params_ema``, EDSR-PyTorch, RCAN, SwinIR, CARN-pytorch's legacy pickle).
The protocol is described in docs/evaluation.md.
"""
try:
    import _bootstrap  # noqa: F401  (run as a script: tools/ is sys.path[0])
except ImportError:  # imported as tools.test with the repository root already on sys.path
    pass

import argparse
import os
import sys
from typing import List, Optional

DIRECT_ONLY = ('arch', 'weights', 'scale', 'datasets')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description='Benchmark an SR network (PSNR/SSIM on Y, crop border = scale).')
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument('-opt', '--opt', help='test option file (BasicSR style)')
    src.add_argument('--arch', help='registered arch name (EDSR, RCAN, SwinIR, CARN_M, ...)')
    p.add_argument('--set', nargs='+', action='extend', default=[], metavar='KEY=VALUE',
                   help='with --arch: constructor options (num_feat=64); with -opt: option overrides '
                        '(path.pretrain_network_g=w.pth); values are YAML')
    p.add_argument('--weights', help='checkpoint to test (with --arch)')
    p.add_argument('--param-key', default='auto',
                   help="entry holding the state_dict: auto | params | params_ema | none (bare file)")
    p.add_argument('--scale', type=int, nargs='+', help='upscaling factor(s) (with --arch)')
    p.add_argument('--datasets', nargs='+', metavar='DIR', help='benchmark folders with HR/ and LR_bicubic/X<s>/')
    p.add_argument('--name', help='run name for the report (default <arch>_x<scale>)')
    p.add_argument('--self-ensemble', action='store_true', help='x8 geometric self-ensemble')
    p.add_argument('--tile', type=int, default=None, help='tile size in LR pixels (tiled inference)')
    p.add_argument('--tile-overlap', type=int, default=None, help='tile overlap in LR pixels (default 16)')
    p.add_argument('--y-convention', choices=('basicsr', 'matlab'), default=None,
                   help='Y of the PSNR/SSIM: basicsr = float Y (default), matlab = MATLAB rgb2ycbcr on uint8, '
                        'Y rounded to uint8; with -opt, overrides val.metrics')
    p.add_argument('--metric-space', choices=('rgb', 'y'), default=None,
                   help='score PSNR/SSIM on rgb (deblurring convention) or y (SR, deraining); overrides val.metrics')
    p.add_argument('--crop-border', type=int, default=None,
                   help='pixels cropped from each border before scoring (default: the scale; 0 for restoration)')
    p.add_argument('--save-images', metavar='DIR', help='write SR images to DIR/<dataset>/<name>_x<s>.png')
    p.add_argument('--json', metavar='OUT', help='write per-image and average results as JSON')
    p.add_argument('--csv', metavar='OUT', help='write per-image and average results as CSV')
    p.add_argument('--device', default='auto', help='auto | cpu | cuda | cuda:N (default auto)')
    p.add_argument('--debug', action='store_true', help='full tracebacks instead of one error: line')
    p.add_argument('--progress', action=argparse.BooleanOptionalAction, default=None,
                   help='progress bar per dataset (default: val.pbar, or when stderr is a terminal)')
    args = p.parse_args(argv)
    if args.crop_border is not None and args.crop_border < 0:
        p.error(f'--crop-border must be >= 0, got {args.crop_border}')
    if args.opt:
        given = [f'--{k}' for k in DIRECT_ONLY if getattr(args, k) is not None]
        if given:
            p.error(f"{', '.join(given)} belong to the --arch form; with -opt use --set (e.g. "
                    'path.pretrain_network_g=W.pth, datasets.test_1.dataroot=DIR)')
    else:
        missing = [f'--{k}' for k in ('weights', 'scale', 'datasets') if getattr(args, k) is None]
        if missing:
            p.error(f"--arch needs {', '.join(missing)}")
    return args


def build_options(args) -> list:
    """One validated test option tree per scale (``--metric-space`` / ``--crop-border`` applied)."""
    from ckdsr.engine.evaluation import DEFAULT_METRICS, with_metric_space
    opts = _build_options(args)
    if args.metric_space is None and args.crop_border is None:
        return opts
    for opt in opts:
        val = opt['val'] = dict(opt.get('val') or {})
        val['metrics'] = with_metric_space(val.get('metrics') or DEFAULT_METRICS, args.metric_space, args.crop_border)
    return opts


def _build_options(args) -> list:
    from ckdsr.engine.test_runner import apply_cli_val, options_from_arch, options_from_file
    if args.opt:
        opt = options_from_file(args.opt, args.set)
        return [apply_cli_val(opt, args.self_ensemble, args.tile, args.tile_overlap, args.y_convention)]
    param_key = None if args.param_key.lower() in ('none', 'null') else args.param_key
    overlap = 16 if args.tile_overlap is None else args.tile_overlap
    return [options_from_arch(args.arch, args.weights, s, args.datasets, arch_sets=args.set, param_key=param_key,
                              self_ensemble=args.self_ensemble, tile=args.tile, tile_overlap=overlap,
                              y_convention=args.y_convention or 'basicsr',
                              name=args.name or (f'{args.arch}_x{s}' if len(args.scale) == 1 else args.arch))
            for s in args.scale]


def image_dir(args, opt) -> Optional[str]:
    if args.save_images:
        return args.save_images
    if args.opt and (opt.get('val') or {}).get('save_img'):
        return os.path.join('results', opt['name'], 'visualization')
    return None


def show_progress(args, opt) -> bool:
    """--progress / --no-progress, else the option file's val.pbar, else whether stderr is a terminal."""
    if args.progress is not None:
        return args.progress
    return bool((opt.get('val') or {}).get('pbar')) or sys.stderr.isatty()


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    from ckdsr.engine.evaluation import DEFAULT_METRICS, metric_conventions
    from ckdsr.engine.report import format_table, write_outputs
    from ckdsr.engine.test_runner import EvalSetupError, resolve_device, run_meta, run_test
    from ckdsr.utils.option_spec import OptionError
    try:
        device = resolve_device(args.device)
        opts = build_options(args)
        runs = [run_test(opt, device, progress=show_progress(args, opt), save_dir=image_dir(args, opt), log=log)
                for opt in opts]
    except (OptionError, EvalSetupError) as err:
        if args.debug:
            raise
        print('\n'.join(f'error: {line}' for line in str(err).splitlines()), file=sys.stderr)
        return 2
    results = [res for run in runs for res in run.results]
    first = runs[0]
    net = opts[0]['network_g']
    print(f"{net['type']}  weights {first.load['path']} (layout {first.load['layout']}, "
          f"param key {first.load['param_key']})  device {device}"
          + ('  self-ensemble x8' if first.settings['self_ensemble'] else '')
          + (f"  tile {first.settings['tile']}/{first.settings['tile_overlap']}" if first.settings['tile'] else ''))
    print(format_table(results))
    print('metrics: ' + metric_conventions((opts[0].get('val') or {}).get('metrics') or DEFAULT_METRICS,
                                           opts[0]['scale']))
    meta = run_meta(runs, opts, device, argv=sys.argv[1:] if argv is None else argv)
    write_outputs(results, meta, json_path=args.json, csv_path=args.csv)
    for path in (args.json, args.csv):
        if path:
            print(f'wrote {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
