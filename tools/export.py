"""Export a trained network for deployment: ONNX (dynamic H/W, checked with onnxruntime), or the
official RCAN / SwinIR key layout that spandrel (chaiNNer, ComfyUI) and the original repositories load.

    # ONNX, checked on real images: max |onnxruntime - PyTorch| must stay under --tol (default 1e-4)
    python tools/export.py --arch CARN_M --weights ../shared/weights/carn_m.pth --scale 4 \\
        --format onnx --out carn_m_x4.onnx --check-images ../shared/datasets/benchmark/Set5/LR_bicubic/X4
    # a distilled student in the official layout (RCAN or SwinIR)
    python tools/export.py -opt options/dckd_swinir_x4.yml --set path.pretrain_network_g=net_g_best.pth \\
        --format official --out swinir_student_x4.pth

The network comes from ``-opt`` / ``--arch`` exactly as in ``tools/test.py``. ``--format official``
writes a bare state dict (``torch.save``) in the release's key names, checked by reading it back
with ckdsr's own loader; see :mod:`ckdsr.archs.official_layouts_export` for what spandrel assumes.
"""
try:
    import _bootstrap  # noqa: F401  (run as a script: tools/ is sys.path[0])
except ImportError:  # imported as tools.export with the repository root already on sys.path
    pass

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    from ckdsr.engine.deploy_net import add_network_args, check_network_args
    p = argparse.ArgumentParser(description='Export an SR network to ONNX or to the official RCAN/SwinIR layout.')
    add_network_args(p)
    p.add_argument('--format', choices=('onnx', 'official'), required=True)
    p.add_argument('--out', required=True, help='output file (.onnx or .pth)')
    p.add_argument('--opset', type=int, default=17, help='ONNX opset (default 17)')
    p.add_argument('--check-images', metavar='DIR_OR_FILE', nargs='+', default=[],
                   help='ONNX: compare onnxruntime with PyTorch on these LR images (folders or files)')
    p.add_argument('--tol', type=float, default=1e-4, help='ONNX check: largest allowed max |difference| (1e-4)')
    p.add_argument('--img-size', type=int, default=None,
                   help='official SwinIR: training size stored in attn_mask (default network_g.img_size or 64)')
    p.add_argument('--report', metavar='JSON', help='write what was exported and the check results as JSON')
    p.add_argument('--debug', action='store_true', help='full tracebacks instead of one error: line')
    args = p.parse_args(argv)
    check_network_args(p, args)
    if args.check_images and args.format != 'onnx':
        p.error('--check-images goes with --format onnx')
    return args


def read_check_images(paths: List[str]):
    from ckdsr.data.image_io import read_image
    from ckdsr.engine.deploy_net import list_inputs
    try:
        files = [f for p in paths for f in list_inputs(p)]
    except FileNotFoundError as err:
        raise FileNotFoundError(f'--check-images: {err}') from None
    return [read_image(f) for f in files], [f.name for f in files]


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    import torch
    from ckdsr.archs.official_layouts_export import ExportLayoutError, official_state
    from ckdsr.engine.deploy_net import network_from_args
    from ckdsr.engine.test_runner import EvalSetupError
    from ckdsr.utils.option_spec import OptionError
    try:
        net, opt, report = network_from_args(args)
        images, names = read_check_images(args.check_images) if args.check_images else ([], [])
        result = {'network_g': opt['network_g'], 'scale': opt['scale'], 'weights': report.path,
                  'format': args.format, 'out': args.out}
        if args.format == 'official':
            img_size = args.img_size or opt['network_g'].get('img_size')
            layout, state = official_state(net, img_size=img_size)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            torch.save(state, args.out)
            result['layout'] = layout
            print(f'wrote {args.out} ({layout} layout, {len(state)} tensors; read back by ckdsr and equal)')
        else:
            from ckdsr.models.onnx_export import compare_with_onnx, export_onnx
            export_onnx(net, args.out, opt['scale'], opset=args.opset)
            print(f'wrote {args.out} (opset {args.opset}, dynamic N/H/W)')
            if images:
                rows = compare_with_onnx(net, args.out, opt['scale'], images, names)
                worst = max(r['max_abs_diff'] for r in rows)
                result.update({'check': rows, 'max_abs_diff': worst, 'tol': args.tol})
                for r in rows:
                    print(f"  {r['name']} {r['lr_hw'][0]}x{r['lr_hw'][1]}: max |onnx - torch| {r['max_abs_diff']:.3g}")
                if worst > args.tol:
                    print(f'error: onnxruntime differs from PyTorch by {worst:.3g} > --tol {args.tol:g}',
                          file=sys.stderr)
                    return 1
    except (OptionError, EvalSetupError, ExportLayoutError, FileNotFoundError) as err:
        if args.debug:
            raise
        print('\n'.join(f'error: {line}' for line in str(err).splitlines()), file=sys.stderr)
        return 2
    if args.report:
        Path(args.report).write_text(json.dumps(result, indent=1) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
