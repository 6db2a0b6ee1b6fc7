"""Parameters and MACs of a network, from an arch name or from an option file's network blocks.

    python tools/model_info.py --arch EDSR --set num_feat=256 num_block=32 res_scale=0.1
    python tools/model_info.py --arch SwinIR --set embed_dim=60 depths=[6,6,6,6] num_heads=[6,6,6,6] \\
        mlp_ratio=2 upsampler=pixelshuffle --lr-size 320x180 --json
    python tools/model_info.py -opt options/dckd_rcan_x4.yml      # every top-level network_* block

With ``-opt`` the option file is validated, but its datasets and weights need not exist yet: each
missing file is listed on stderr with its option key and where to get it (utils/external_files.py).

``--set`` values are parsed as YAML. ``--lr-size WxH`` (default 320x180: 1280x720 output at x4).
``--scale`` fills ``upscale`` for ``--arch`` when the arch takes one and ``--set`` does not give it.
MACs are FLOPs/2 as counted by ``torch.utils.flop_counter`` (convs, linears, attention matmuls);
the net is built and run on the meta device, so paper-size nets cost no memory or compute.
"""
try:
    import _bootstrap  # noqa: F401  (run as a script: tools/ is sys.path[0])
except ImportError:  # imported as tools.model_info with the repository root already on sys.path
    pass

import argparse
import inspect
import json
import sys
from typing import Any, Dict, List, Tuple

import yaml

import ckdsr.archs  # noqa: F401  (fills ARCH_REGISTRY)
from ckdsr.archs.slimmable_ops import Slimmable, width_param_counts
from ckdsr.engine.dry_run import build_on_meta, load_allowing_missing, network_blocks
from ckdsr.utils.complexity import count_params, macs_and_output_shape, params_text
from ckdsr.utils.option_spec import OptionError
from ckdsr.utils.registry import ARCH_REGISTRY
from ckdsr.utils.suggest import did_you_mean


def parse_size(text: str) -> Tuple[int, int]:
    """'320x180' -> (width 320, height 180)."""
    try:
        w, h = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--lr-size must look like 320x180 (width x height), got '{text}'")
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f'--lr-size must be positive, got {text}')
    return w, h


def parse_sets(items: List[str]) -> Dict[str, Any]:
    """['num_feat=64', 'depths=[6,6]'] -> {'num_feat': 64, 'depths': [6, 6]} (values as YAML)."""
    out = {}
    for item in items:
        key, sep, value = item.partition('=')
        if not sep or not key.strip():
            raise SystemExit(f"model_info: --set expects key=value, got '{item}'")
        out[key.strip()] = yaml.safe_load(value)
    return out


def describe(name: str, cfg: Dict[str, Any], lr_size: Tuple[int, int]) -> Dict[str, Any]:
    """Params and MACs of one network block at ``lr_size = (W, H)``."""
    net = build_on_meta(cfg)
    in_ch = cfg.get('num_in_ch', cfg.get('in_chans', 3))
    macs, out_shape = macs_and_output_shape(net, (lr_size[1], lr_size[0]), in_ch=in_ch)
    info = {'name': name, 'type': cfg['type'],
            'options': {k: v for k, v in cfg.items() if k != 'type'},
            'params': count_params(net), 'trainable_params': count_params(net, trainable_only=True),
            'macs': macs, 'lr_size': list(lr_size), 'out_size': [out_shape[-1], out_shape[-2]]}
    if isinstance(net, Slimmable):  # CSD's slimmable nets: the parameters each width uses
        info['width_params'] = width_param_counts(net)
    return info


def arch_blocks(args) -> List[Tuple[str, Dict[str, Any]]]:
    """The one block of ``--arch NAME --set ...``; unknown keys name the closest valid one."""
    params = inspect.signature(ARCH_REGISTRY.get(args.arch)).parameters
    cfg = {'type': args.arch, **parse_sets(args.set)}
    for key in cfg:
        if key != 'type' and key not in params:
            raise KeyError(f"{args.arch} has no option '{key}'{did_you_mean(key, params)}")
    if 'upscale' in params and 'upscale' not in cfg:
        cfg['upscale'] = args.scale
    return [('network', cfg)]


def option_blocks(args) -> List[Tuple[str, Dict[str, Any]]]:
    """Every top-level ``network_*`` block of the option file (``upscale`` from ``scale`` as a run
    fills it). Missing data or weight files do not stop it: they are listed on stderr with where
    to get them."""
    opt, missing = load_allowing_missing(args.opt, args.set)
    for line in missing:
        print(f'missing: {line}', file=sys.stderr)
    blocks = network_blocks(opt)
    if not blocks:
        raise ValueError(f'{args.opt} has no top-level network_* block with a type')
    return blocks


def format_row(info: Dict[str, Any]) -> str:
    (w, h), (ow, oh) = info['lr_size'], info['out_size']
    row = (f"{info['name']}: {info['type']}  {params_text(info['params'], info['trainable_params'])}  "
           f"MACs {info['macs']:,} ({info['macs'] / 1e9:.2f}G) at {w}x{h} -> {ow}x{oh}")
    for width, n in (info.get('width_params') or {}).items():
        row += f"\n  width_mult {width}: params {n:,} ({n / 1e6:.3f}M)"
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description='Parameter count and MACs of a ckdsr network.')
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument('--arch', help='registered arch name, e.g. EDSR, RCAN, SwinIR, CARN_M')
    src.add_argument('-opt', '--opt', help='option file: report every top-level network_* block')
    p.add_argument('--set', nargs='+', action='extend', default=[], metavar='KEY=VALUE',
                   help='constructor options for --arch (or option overrides for -opt), YAML values')
    p.add_argument('--scale', type=int, default=4, help='upscale for --arch when not set (default 4)')
    p.add_argument('--lr-size', type=parse_size, default=(320, 180), metavar='WxH',
                   help='input size, width x height (default 320x180)')
    p.add_argument('--json', action='store_true', help='print a JSON list instead of text')
    args = p.parse_args(argv)

    try:
        blocks = arch_blocks(args) if args.arch else option_blocks(args)
        infos = [describe(name, cfg, args.lr_size) for name, cfg in blocks]
    except OptionError as err:  # a mistake in the option file (or --set): one error: line each
        raise SystemExit('\n'.join(f'error: {line}' for line in err.lines())) from None
    except (KeyError, ValueError, TypeError) as err:
        raise SystemExit(f'model_info: {err.args[0] if err.args else err}') from None
    print(json.dumps(infos, indent=2) if args.json else '\n'.join(format_row(i) for i in infos))
    return 0


if __name__ == '__main__':
    sys.exit(main())
