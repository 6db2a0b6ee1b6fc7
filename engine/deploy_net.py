"""Which trained network a deployment tool (``tools/infer.py``, ``tools/export.py``) works on.

Both take the network the way ``tools/test.py`` does: ``-opt FILE [--set key=value ...]`` (a test or
train option file: ``scale``, ``network_g``, ``path.pretrain_network_g``), or ``--arch NAME
[--set ctor_opt=value ...] --weights PATH --scale S``. The net is built and loaded by
:func:`ckdsr.engine.test_runner.build_test_network`, so every checkpoint layout ``tools/test.py`` reads
(BasicSR ``params``/``params_ema``, EDSR-PyTorch, RCAN, SwinIR, CARN-pytorch) works here too.
"""
import argparse
from pathlib import Path
from typing import Any, Dict, List, Tuple

from torch import nn

from ckdsr.data.image_io import is_image_file
from ckdsr.engine.test_runner import EvalSetupError, build_test_network, options_from_file, parse_arch_sets
from ckdsr.utils.option_spec import OptionError, paths_unchecked


def add_network_args(p: argparse.ArgumentParser) -> None:
    """``-opt`` / ``--arch`` and their companions, as in ``tools/test.py``."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument('-opt', '--opt', help='option file (BasicSR style) with scale, network_g, path.pretrain_network_g')
    src.add_argument('--arch', help='registered arch name (EDSR, RCAN, SwinIR, CARN_M, ...)')
    p.add_argument('--set', nargs='+', action='extend', default=[], metavar='KEY=VALUE',
                   help='with --arch: constructor options (num_feat=64); with -opt: option overrides; values are YAML')
    p.add_argument('--weights', help='checkpoint (with --arch)')
    p.add_argument('--param-key', default='auto', help='auto | params | params_ema | none (bare state_dict)')
    p.add_argument('--scale', type=int, help='upscaling factor (with --arch)')


def check_network_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The argparse-level errors of the two forms (one line each)."""
    if args.opt:
        given = [f'--{k}' for k in ('weights', 'scale') if getattr(args, k) is not None]
        if given:
            p.error(f"{', '.join(given)} belong to the --arch form; with -opt use --set "
                    '(path.pretrain_network_g=W.pth, scale=2)')
    else:
        missing = [f'--{k}' for k in ('weights', 'scale') if getattr(args, k) is None]
        if missing:
            p.error(f"--arch needs {', '.join(missing)}")


def network_options(args: argparse.Namespace) -> Dict[str, Any]:
    """The ``{scale, network_g, path}`` tree of either form (an option file's other paths -- datasets,
    teacher and helper weights -- are not checked; the weights to deploy are, when they load)."""
    if args.opt:
        with paths_unchecked():  # the file's datasets / teacher / helper weights are not needed to deploy
            opt = options_from_file(args.opt, args.set)
        if 'network_g' not in opt:
            raise OptionError(['network_g: missing (the network to deploy)'], source=args.opt)
        return {k: opt[k] for k in ('name', 'scale', 'network_g', 'path') if k in opt}
    param_key = None if args.param_key.lower() in ('none', 'null') else args.param_key
    return {'name': f'{args.arch}_x{args.scale}', 'scale': args.scale,
            'network_g': {'type': args.arch, **parse_arch_sets(args.set)},
            'path': {'pretrain_network_g': args.weights, 'param_key_g': param_key, 'strict_load_g': True}}


def network_from_args(args: argparse.Namespace) -> Tuple[nn.Module, Dict[str, Any], Any]:
    """``(net in eval mode on the CPU, option tree, load report)``; errors are
    :class:`OptionError` / :class:`EvalSetupError` (the tools print them as one ``error:`` line)."""
    opt = network_options(args)
    if 'scale' not in opt:
        raise OptionError(['scale: missing (the upscaling factor of the network)'], source=args.opt)
    try:
        net, report = build_test_network(opt)
    except KeyError as err:  # an unknown arch name: the registry's message names the closest ones
        raise EvalSetupError(f'network_g.type: {err.args[0] if err.args else err}') from None
    return net.eval(), opt, report


def list_inputs(path: str) -> List[Path]:
    """The image files to upscale: ``path`` itself, or the images directly inside the folder ``path``."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise FileNotFoundError(f'no such file or folder: {path}')
    files = sorted(f for f in p.iterdir() if f.is_file() and is_image_file(f.name))
    if not files:
        raise FileNotFoundError(f'no image files (png, jpg, ...) in {path}')
    return files
