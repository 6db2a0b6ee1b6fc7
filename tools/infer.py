"""Upscale your own images with a trained network (no HR needed): a file or a folder in, PNGs out.

    python tools/infer.py --arch CARN_M --weights ../shared/weights/carn_m.pth --scale 4 \\
        --input photos/ --output photos_x4/ [--tile 256 --tile-overlap 16] [--self-ensemble]
    python tools/infer.py -opt options/dckd_swinir_x4.yml --set path.pretrain_network_g=net_g_best.pth \\
        --input photos/ --output out/

The network is built and loaded as ``tools/test.py`` does (same ``-opt`` / ``--arch`` forms and
checkpoint layouts) and runs through :func:`ckdsr.engine.evaluation.make_forward` (the same tiling and x8
self-ensemble as testing) under ``torch.inference_mode()``. On CUDA it runs under bf16 autocast by
default (``--amp none`` for fp32); on the CPU in fp32. Output: ``<output>/<name>_x<scale>.png``
(``--suffix`` changes the tail); images are read as 3-channel RGB, as in testing.
"""
try:
    import _bootstrap  # noqa: F401  (run as a script: tools/ is sys.path[0])
except ImportError:  # imported as tools.infer with the repository root already on sys.path
    pass

import argparse
import os
import sys
import time
from pathlib import Path
from typing import List, Optional, Tuple

AMP = {'bf16': 'bfloat16', 'fp16': 'float16', 'none': None}


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    from ckdsr.engine.deploy_net import add_network_args, check_network_args
    p = argparse.ArgumentParser(description='Upscale a file or a folder of images with a trained SR network.')
    add_network_args(p)
    p.add_argument('--input', required=True, help='an image file or a folder of images (not recursive)')
    p.add_argument('--output', required=True, help='folder for the upscaled PNGs (created)')
    p.add_argument('--suffix', default=None, help='file name tail (default _x<scale>)')
    p.add_argument('--self-ensemble', action='store_true', help='x8 geometric self-ensemble (8x the time)')
    p.add_argument('--tile', type=int, default=None, help='tile size in LR pixels (bounds memory on large images)')
    p.add_argument('--tile-overlap', type=int, default=16, help='tile overlap in LR pixels (default 16)')
    p.add_argument('--device', default='auto', help='auto | cpu | cuda | cuda:N (default auto)')
    p.add_argument('--amp', choices=sorted(AMP), default='bf16',
                   help='autocast dtype on CUDA (default bf16; ignored on the CPU, which runs fp32)')
    p.add_argument('--overwrite', action='store_true', help='replace existing output files (default: skip them)')
    p.add_argument('--progress', action=argparse.BooleanOptionalAction, default=None,
                   help='progress bar (default: when stderr is a terminal)')
    p.add_argument('--debug', action='store_true', help='full tracebacks instead of one error: line')
    args = p.parse_args(argv)
    check_network_args(p, args)
    if args.tile is not None and args.tile > 0 and not 0 <= args.tile_overlap < args.tile:
        p.error(f'--tile-overlap must be in [0, --tile); got tile {args.tile}, overlap {args.tile_overlap}')
    return args


def upscale_folder(forward, files: List[Path], out_dir: Path, suffix: str, device, amp_dtype=None,
                   progress: bool = False, overwrite: bool = False, log=None) -> Tuple[List[Path], List[Path]]:
    """Run ``forward`` (lq -> sr, NCHW in [0, 1]) on every file; returns (files written, inputs that did
    not decode). Undecodable inputs are reported through ``log`` and skipped."""
    import torch
    from ckdsr.data.image_io import ImageReadError, read_image, write_png
    from ckdsr.metrics import tensor2img
    written, failed = [], []
    items = files
    if progress:
        from tqdm import tqdm
        items = tqdm(files, desc='upscale', unit='img')
    for f in items:
        dest = out_dir / f'{f.stem}{suffix}.png'
        if dest.exists() and not overwrite:
            if log:
                log(f'skip {dest} (exists; --overwrite replaces it)')
            continue
        try:
            img = read_image(f)
        except ImageReadError as err:
            if log:
                log(f'error: {err}; skipped')
            failed.append(f)
            continue
        lq = torch.from_numpy(img).permute(2, 0, 1).unsqueeze(0).to(device=device, dtype=torch.float32) / 255.0
        with torch.inference_mode():
            if amp_dtype is not None:
                with torch.autocast(device.type, dtype=amp_dtype):
                    sr = forward(lq)
            else:
                sr = forward(lq)
        write_png(dest, tensor2img(sr.float()))
        written.append(dest)
    return written, failed


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    import torch
    from ckdsr.engine.deploy_net import list_inputs, network_from_args
    from ckdsr.engine.evaluation import make_forward
    from ckdsr.engine.test_runner import EvalSetupError, resolve_device
    from ckdsr.utils.option_spec import OptionError
    try:
        device = resolve_device(args.device)
        try:
            files = list_inputs(args.input)
        except FileNotFoundError as err:
            raise FileNotFoundError(f'--input: {err}') from None
        net, opt, report = network_from_args(args)
    except (OptionError, EvalSetupError, FileNotFoundError) as err:
        if args.debug:
            raise
        print('\n'.join(f'error: {line}' for line in str(err).splitlines()), file=sys.stderr)
        return 2
    scale = opt['scale']
    net = net.to(device)
    amp_name = AMP[args.amp] if device.type == 'cuda' else None
    amp_dtype = getattr(torch, amp_name) if amp_name else None
    forward = make_forward(net, scale, args.self_ensemble, args.tile, args.tile_overlap)
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = f'_x{scale}' if args.suffix is None else args.suffix
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    print(f"{opt['network_g']['type']} x{scale}  weights {report.path} (layout {report.layout})  device {device}"
          + (f'  autocast {amp_name}' if amp_name else '  fp32')
          + ('  self-ensemble x8' if args.self_ensemble else '')
          + (f'  tile {args.tile}/{args.tile_overlap}' if args.tile else ''), file=sys.stderr)
    start = time.perf_counter()
    written, failed = upscale_folder(forward, files, out_dir, suffix, device, amp_dtype, progress, args.overwrite,
                             log=lambda line: print(line, file=sys.stderr))
    print(f'wrote {len(written)} image(s) to {os.fspath(out_dir)} in {time.perf_counter() - start:.1f} s'
          + (f'; {len(failed)} input(s) could not be read' if failed else ''))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
