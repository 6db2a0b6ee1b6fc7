"""Benchmark evaluation: run a network over a dataset, score each image, gather across ranks.

Used by validation during training and by ``tools/test.py``. Under DDP each rank scores its own
share of the images (``rank::world_size``) and the per-image results are gathered, so no rank
idles into a collective timeout.
"""
import os
from typing import Any, Callable, Dict, List, Mapping, Optional

import numpy as np
import torch
from torch import nn

from ckdsr.data.image_io import write_png as write_image
from ckdsr.metrics import tensor2img
from ckdsr.models.inference import self_ensemble_forward, tiled_forward
from ckdsr.utils.dist import all_gather_object
from ckdsr.utils.registry import METRIC_REGISTRY

#: metric settings of the evaluation protocol (DESIGN section 6); Y in float, as BasicSR
DEFAULT_METRICS = {
    'psnr': {'type': 'calculate_psnr', 'test_y_channel': True, 'y_convention': 'basicsr'},
    'ssim': {'type': 'calculate_ssim', 'test_y_channel': True, 'y_convention': 'basicsr'},
}


def with_y_convention(metrics: Mapping[str, Mapping[str, Any]], convention: str) -> Dict[str, Dict[str, Any]]:
    """A copy of ``metrics`` whose Y-channel metrics use ``convention`` ('basicsr' | 'matlab')."""
    return {name: {**cfg, 'y_convention': convention} if cfg.get('test_y_channel') else dict(cfg)
            for name, cfg in metrics.items()}


def with_metric_space(metrics: Mapping[str, Mapping[str, Any]], space: Optional[str] = None,
                      crop_border: Optional[int] = None) -> Dict[str, Dict[str, Any]]:
    """A copy of ``metrics`` scored on ``space`` ('rgb' | 'y': sets ``test_y_channel``) and/or with
    ``crop_border`` (restoration conventions: deblurring RGB, crop 0; deraining Y, crop 0)."""
    if space not in (None, 'rgb', 'y'):
        raise ValueError(f"--metric-space: expected rgb or y, got '{space}'")
    out = {}
    for name, cfg in metrics.items():
        cfg = dict(cfg)
        if space is not None:
            cfg['test_y_channel'] = space == 'y'
        if crop_border is not None:
            cfg['crop_border'] = int(crop_border)
        out[name] = cfg
    return out


def metric_conventions(metrics: Mapping[str, Mapping[str, Any]], scale: int) -> str:
    """One line naming each metric's space and border crop, e.g. 'psnr: RGB, crop 0; ssim: RGB, crop 0'."""
    parts = []
    for name, cfg in metrics.items():
        space = f"Y ({cfg.get('y_convention', 'basicsr')})" if cfg.get('test_y_channel') else 'RGB'
        parts.append(f"{name}: {space}, crop {cfg.get('crop_border', scale)}")
    return '; '.join(parts)


def make_forward(net: nn.Module, scale: int, self_ensemble: bool = False, tile: Optional[int] = None,
                 tile_overlap: int = 16) -> Callable[[torch.Tensor], torch.Tensor]:
    """``lq -> sr`` with optional x8 self-ensemble and tiling (tiles inside each ensemble member)."""

    def base(x: torch.Tensor) -> torch.Tensor:
        if tile:
            return tiled_forward(net, x, scale, tile=tile, tile_overlap=tile_overlap)
        return net(x)

    if self_ensemble:
        return lambda x: self_ensemble_forward(base, x)
    return base


def score(sr_img: np.ndarray, gt_img: np.ndarray, metrics: Mapping[str, Mapping[str, Any]],
          scale: int) -> Dict[str, float]:
    """Each metric of ``metrics`` on uint8 HWC RGB images; crop_border defaults to the scale."""
    out = {}
    for name, cfg in metrics.items():
        kwargs = {k: v for k, v in cfg.items() if k != 'type'}
        kwargs.setdefault('crop_border', scale)
        out[name] = float(METRIC_REGISTRY.get(cfg['type'])(sr_img, gt_img, **kwargs))
    return out


@torch.inference_mode()
def evaluate_dataset(forward: Callable[[torch.Tensor], torch.Tensor], dataset, scale: int,
                     metrics: Optional[Mapping[str, Mapping[str, Any]]] = None,
                     device: torch.device = torch.device('cpu'), rank: int = 0, world_size: int = 1,
                     save_dir: Optional[str] = None, suffix: str = '', progress: bool = False,
                     autocast_dtype: Optional[torch.dtype] = None,
                     on_image: Optional[Callable[[int, str, np.ndarray], None]] = None) -> List[Dict[str, Any]]:
    """Per-image results ``[{'name', <metric>: value, ...}]`` in dataset order, on every rank.

    ``on_image(index, name, sr_uint8_hwc)`` is called for every image this rank scores.
    """
    metrics = metrics or DEFAULT_METRICS
    indices = list(range(rank, len(dataset), world_size))
    if progress and rank == 0:
        from tqdm import tqdm
        indices = tqdm(indices, desc='eval', unit='img', leave=False)
    rows = []
    for i in indices:
        item = dataset[i]
        lq = item['lq'].unsqueeze(0).to(device)
        if autocast_dtype is not None:
            with torch.autocast(device.type, dtype=autocast_dtype):
                sr = forward(lq)
        else:
            sr = forward(lq)
        sr_img = tensor2img(sr[0].float())
        gt_img = tensor2img(item['gt'])
        name = item.get('name') or os.path.splitext(os.path.basename(item.get('lq_path', str(i))))[0]
        row = {'index': i, 'name': name, **score(sr_img, gt_img, metrics, scale)}
        if save_dir:
            os.makedirs(save_dir, exist_ok=True)
            write_image(os.path.join(save_dir, f'{name}{suffix}.png'), sr_img)
        if on_image is not None:
            on_image(i, name, sr_img)
        rows.append(row)
    if world_size > 1:
        rows = [r for part in all_gather_object(rows) for r in part]
    rows.sort(key=lambda r: r['index'])
    return [{k: v for k, v in r.items() if k != 'index'} for r in rows]


def average(rows: List[Dict[str, Any]]) -> Dict[str, float]:
    """Mean of every numeric column."""
    if not rows:
        return {}
    keys = [k for k, v in rows[0].items() if isinstance(v, float)]
    return {k: float(np.mean([r[k] for r in rows])) for k in keys}
