"""``tools/train.py --dry-run``: what a run needs, what is missing and where to get it, its networks.

Works on a paper option file before its datasets and weights exist: the option file is validated
(every mistake other than a missing file is still an error), each missing file is listed with
the option key and where it is published or which command makes it (:mod:`ckdsr.utils.external_files`),
and every top-level ``network_*`` is built on the meta device to print its parameter count. When
the weight files are all there, the whole model is built on the CPU and checked as a real run is
(one tiny forward per network, tap and layer-weight counts), still without reading any data.
"""
import sys
from typing import Any, Dict, Iterable, List, Optional, TextIO, Tuple

import torch

from ckdsr.utils.option_spec import OptionError, paths_unchecked

MISSING = 'file or folder not found'


def load_allowing_missing(path: str, sets: Iterable[str] = (), force_yml: Iterable[str] = ()
                          ) -> Tuple[Dict[str, Any], List[str]]:
    """``(validated tree, ['<source>: <key>: file or folder not found: ...; <where to get it>'])``.

    Only missing files are tolerated; any other problem raises the usual OptionError.
    """
    from ckdsr.utils.options import load_options
    try:
        return load_options(path, sets, force_yml), []
    except OptionError as err:
        keep = [i for i, p in enumerate(err.problems) if MISSING not in p]
        if keep:
            raise OptionError([err.problems[i] for i in keep], source=err.source,
                              sources=[err.sources[i] for i in keep]) from None
        missing = err.lines()
    with paths_unchecked():
        return load_options(path, sets, force_yml), missing


def network_blocks(opt: Dict[str, Any]) -> List[Tuple[str, Dict[str, Any]]]:
    """Every top-level ``network_*`` block, with ``upscale`` filled from ``scale`` as a run does."""
    from ckdsr.utils.option_spec import signature_params
    from ckdsr.utils.registry import ARCH_REGISTRY
    blocks = []
    for key, cfg in opt.items():
        if key.startswith('network_') and isinstance(cfg, dict) and 'type' in cfg:
            cfg = dict(cfg)
            params, _ = signature_params(ARCH_REGISTRY.get(cfg['type']))
            if 'upscale' in params and 'upscale' not in cfg and 'scale' in opt:
                cfg['upscale'] = opt['scale']
            blocks.append((key, cfg))
    return blocks


def build_on_meta(cfg: Dict[str, Any]) -> torch.nn.Module:
    """Build ``cfg`` on the meta device, without allocating its weights (archs that cannot are built
    on the CPU); also what ``tools/model_info.py`` measures."""
    from ckdsr.utils.build import build_from_cfg
    from ckdsr.utils.registry import ARCH_REGISTRY
    try:
        with torch.device('meta'):
            return build_from_cfg(cfg, ARCH_REGISTRY)
    except (NotImplementedError, RuntimeError):
        return build_from_cfg(cfg, ARCH_REGISTRY)


def network_lines(opt: Dict[str, Any]) -> List[str]:
    from ckdsr.utils.complexity import count_params, params_text
    lines = []
    for key, cfg in network_blocks(opt):
        lines.append(f'{key}: {cfg["type"]}  {params_text(count_params(build_on_meta(cfg)))}')
    return lines


def weights_missing(missing: List[str]) -> bool:
    """Whether a missing file is one the model build needs (weights, not data)."""
    return any(not line.split(': ', 2)[1].startswith('datasets.') for line in missing)


def dry_run(path: str, sets: Iterable[str] = (), force_yml: Iterable[str] = (),
            out: Optional[TextIO] = None) -> int:
    """Print what the run needs; 0 when it can start, 2 when files are missing."""
    out = out or sys.stdout
    opt, missing = load_allowing_missing(path, sets, force_yml)
    print(f'{path}: {opt["name"]} ({opt.get("model_type", "SRModel")}, x{opt["scale"]})', file=out)
    for line in network_lines(opt):
        print(f'  {line}', file=out)
    if missing:
        print(f'missing ({len(missing)}): the run cannot start until these exist', file=out)
        for line in missing:
            print(f'  {line}', file=out)
    if not weights_missing(missing):
        from ckdsr.models import build_model
        build_model(opt, is_train=True, device=torch.device('cpu'))  # raises OptionError naming the key
        print('model built and checked on the CPU (one tiny forward per network; tap and layer-weight '
              'counts)', file=out)
    if missing:
        return 2
    print('ready: every file is there', file=out)
    return 0
