"""Datasets and loaders from the ``datasets:`` option block."""
from typing import Any, Dict, Tuple

import ckdsr.data  # noqa: F401  (fills DATASET_REGISTRY)
from ckdsr.data.lmdb_check import LmdbDamagedError
from ckdsr.models.option_schema import LOADER_FIELDS
from ckdsr.utils.build import build_from_cfg
from ckdsr.utils.option_spec import signature_params
from ckdsr.utils.registry import DATASET_REGISTRY


def dataset_phase(key: str, cfg: Dict[str, Any]) -> str:
    """``train``/``val``/``test`` from the block's ``phase`` or its key (``val_2`` -> ``val``)."""
    return cfg.get('phase') or key.split('_')[0]


def build_dataset(key: str, cfg: Dict[str, Any], scale: int):
    """Build one dataset; loader keys are left to :func:`build_loader`."""
    phase = dataset_phase(key, cfg)
    params, _ = signature_params(DATASET_REGISTRY.get(cfg['type']))
    extra = {}
    if 'scale' in params and 'scale' not in cfg:
        extra['scale'] = scale
    if 'phase' in params:
        extra['phase'] = phase
    try:
        return build_from_cfg(cfg, DATASET_REGISTRY, skip=tuple(LOADER_FIELDS), **extra)
    except LmdbDamagedError as err:  # name the option holding the damaged database: one error: line
        field = next((k for k, v in cfg.items() if k.startswith('dataroot') and str(v) == err.root), 'io_backend')
        raise LmdbDamagedError(f'datasets.{key}.{field}: {err}', root=err.root) from None


def build_train_loader(cfg: Dict[str, Any], dataset, seed: int, rank: int, world_size: int) -> Tuple[Any, Any]:
    """``(loader, sampler)`` for the training set (a progressive schedule if ``progressive`` is set)."""
    from ckdsr.data.loader import build_dataloader
    if cfg.get('progressive'):
        from ckdsr.data.progressive import build_progressive_loader
        return build_progressive_loader(
            dataset, cfg['progressive'], num_worker_per_gpu=cfg.get('num_worker_per_gpu', 0),
            dataset_enlarge_ratio=cfg.get('dataset_enlarge_ratio', 1), use_shuffle=cfg.get('use_shuffle', True),
            pin_memory=cfg.get('pin_memory', False), persistent_workers=cfg.get('persistent_workers', False),
            seed=seed, rank=rank, world_size=world_size)
    return build_dataloader(
        dataset, phase='train', batch_size_per_gpu=cfg.get('batch_size_per_gpu', 1),
        num_worker_per_gpu=cfg.get('num_worker_per_gpu', 0),
        dataset_enlarge_ratio=cfg.get('dataset_enlarge_ratio', 1), use_shuffle=cfg.get('use_shuffle', True),
        pin_memory=cfg.get('pin_memory', False), persistent_workers=cfg.get('persistent_workers', False),
        seed=seed, rank=rank, world_size=world_size)


def eval_datasets(opt: Dict[str, Any], phases=('val', 'test')) -> Dict[str, Any]:
    """``{display name: dataset}`` for every val/test block."""
    out = {}
    for key, cfg in (opt.get('datasets') or {}).items():
        if dataset_phase(key, cfg) in phases:
            out[cfg.get('name') or key] = build_dataset(key, cfg, opt['scale'])
    return out
