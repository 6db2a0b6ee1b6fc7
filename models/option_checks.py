"""Checks across option keys, run right after the schema check (before anything is built).

The schema checks each key alone; these check keys against each other: every top-level network's
``upscale`` against ``scale``, the training patch against the scale and against the training
images when their sizes are known without decoding them (an LMDB's ``meta_info.txt``, PNG headers),
the optimizer and schedule as torch builds them, and each dataset's storage backend.
Each problem is one line starting with the option key path, as the schema's are.
"""
import os
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ckdsr.utils.option_spec import paths_checked


def _train_sets(opt: Dict[str, Any]) -> Iterator[Tuple[str, Dict[str, Any]]]:
    for key, cfg in (opt.get('datasets') or {}).items():
        if isinstance(cfg, dict) and (cfg.get('phase') or key.split('_')[0]) == 'train':
            yield key, cfg


def network_scales(opt: Dict[str, Any]) -> List[str]:
    """``network_*.upscale`` given explicitly and different from ``scale``."""
    scale = opt.get('scale')
    problems = []
    for key, cfg in opt.items():
        if key.startswith('network_') and isinstance(cfg, dict) and 'upscale' in cfg:
            if cfg['upscale'] != scale:
                problems.append(f'{key}.upscale: {cfg["upscale"]} differs from scale {scale} '
                                f'(leave it out: it defaults to scale)')
    return problems


def patch_vs_scale(opt: Dict[str, Any]) -> List[str]:
    """The HR training patch must be a whole number of LR pixels."""
    scale = opt.get('scale')
    problems = []
    for key, cfg in _train_sets(opt):
        gt = cfg.get('gt_size')
        if isinstance(gt, int) and isinstance(scale, int) and scale > 0 and gt % scale:
            problems.append(f'datasets.{key}.gt_size: {gt} is not a multiple of scale {scale} '
                            f'(the LR patch would be {gt / scale:g} px)')
    return problems


def smallest_image(cfg: Dict[str, Any]) -> Optional[Tuple[str, int, int]]:
    """``(name, h, w)`` of the smallest GT image (by its short side) when sizes are cheap to know:
    an LMDB's ``meta_info.txt``, or the PNG headers of a folder. None otherwise."""
    root = cfg.get('dataroot_gt')
    if not isinstance(root, str) or not os.path.isdir(root):
        return None
    backend = (cfg.get('io_backend') or {}).get('type', 'disk')
    sizes: List[Tuple[str, int, int]] = []
    if backend == 'lmdb':
        from ckdsr.data.lmdb_format import META_INFO, read_meta_info
        if not os.path.isfile(os.path.join(root, META_INFO)):
            return None
        try:
            sizes = [(e.key, e.shape[0], e.shape[1]) for e in read_meta_info(root).values()]
        except ValueError:
            return None  # a damaged meta_info is reported when the database opens
    elif backend == 'disk':
        from ckdsr.data.image_io import read_image_size
        for name in sorted(os.listdir(root)):
            if name.lower().endswith('.png'):
                h, w = read_image_size(os.path.join(root, name))
                sizes.append((name, h, w))
    return min(sizes, key=lambda s: min(s[1], s[2])) if sizes else None


def patch_vs_images(opt: Dict[str, Any]) -> List[str]:
    """The HR training patch must fit in every training (sub-)image, when their sizes are known."""
    if not paths_checked():
        return []
    problems = []
    for key, cfg in _train_sets(opt):
        gt = cfg.get('gt_size')
        if not isinstance(gt, int):
            continue
        small = smallest_image(cfg)
        if small and min(small[1], small[2]) < gt:
            name, h, w = small
            problems.append(f'datasets.{key}.gt_size: {gt} is larger than the training image {name} '
                            f'({w}x{h}, w x h) in {cfg["dataroot_gt"]}')
    return problems


def optimizer_and_schedule(opt: Dict[str, Any]) -> List[str]:
    """Build ``train.optim_g`` (and its scheduler) over one dummy parameter, so that what torch
    itself refuses (a negative lr, betas outside [0, 1)...) names the option block."""
    import torch
    from ckdsr.models.optimizers import build_optimizer
    from ckdsr.models.schedulers import build_scheduler
    train = opt.get('train') or {}
    if not isinstance(train.get('optim_g'), dict):
        return []
    try:
        optim = build_optimizer([torch.zeros(1, requires_grad=True)], train['optim_g'], where='train.optim_g')
    except (ValueError, KeyError, TypeError) as err:
        return [_keyed(err, 'train.optim_g')]
    if isinstance(train.get('scheduler'), dict):
        try:
            build_scheduler(optim, train['scheduler'], warmup_iter=train.get('warmup_iter', -1))
        except (ValueError, KeyError, TypeError) as err:
            return [_keyed(err, 'train.scheduler')]
    return []


def _keyed(err: BaseException, where: str) -> str:
    """``err``'s message, prefixed with ``where`` unless it already names that option block."""
    text = ' '.join(str(err.args[0] if isinstance(err, KeyError) and err.args else err).split())
    return text if text.startswith(where) else f'{where}: {text}'


def storage(opt: Dict[str, Any]) -> List[str]:
    """Each dataset's ``io_backend`` names a storage backend and only its options; a ``dataroot``
    that exists is a folder (an LMDB is a folder too)."""
    import inspect
    from ckdsr.data.file_client import STORAGE_BACKENDS
    problems = []
    for key, cfg in (opt.get('datasets') or {}).items():
        if not isinstance(cfg, dict):
            continue
        backend = cfg.get('io_backend')
        if isinstance(backend, dict) and 'type' in backend:
            try:
                cls = STORAGE_BACKENDS.get(backend['type'])
            except KeyError as err:
                problems.append(f'datasets.{key}.io_backend.type: {err.args[0]}')
            else:
                params = [p for p in inspect.signature(cls.__init__).parameters if p not in ('self', 'root')]
                for k in backend:
                    if k != 'type' and k not in params:
                        problems.append(f"datasets.{key}.io_backend.{k}: not an option of the {backend['type']} "
                                        f"backend (valid: {', '.join(params) or 'none'})")
        for root_key in ('dataroot', 'dataroot_gt', 'dataroot_lq'):
            root = cfg.get(root_key)
            if paths_checked() and isinstance(root, str) and os.path.isfile(root):
                problems.append(f'datasets.{key}.{root_key}: {root} is a file; expected a folder of images '
                                'or an .lmdb folder')
    return problems


CHECKS = (network_scales, patch_vs_scale, patch_vs_images, optimizer_and_schedule, storage)


def check_options(opt: Dict[str, Any]) -> List[str]:
    """Every problem found by :data:`CHECKS` on a schema-valid tree."""
    return [p for check in CHECKS for p in check(opt)]
