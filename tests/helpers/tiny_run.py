"""Tiny experiments for engine tests: a folder of smooth synthetic photos and a matching option tree."""
import os
from pathlib import Path
from typing import Any, Dict

import numpy as np
import yaml

from ckdsr.data.image_io import write_png as write_image


def smooth_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A uint8 RGB image with structure at several scales (upsampled noise), not pure noise."""
    import cv2
    out = np.zeros((h, w, 3), np.float64)
    for cells, amp in ((4, 0.6), (12, 0.3), (h // 2, 0.1)):
        base = rng.random((cells, cells, 3))
        out += amp * cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(out * 255, 0, 255).round().astype(np.uint8)


def make_image_folder(root: Path, n: int, size: int = 48, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    hr = root / 'HR'
    hr.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        write_image(str(hr / f'{i:04d}.png'), smooth_image(rng, size, size))
    return root


def tiny_sr_options(tmp: Path, **train_overrides) -> Dict[str, Any]:
    train_dir = make_image_folder(tmp / 'train', 6, size=48, seed=1)
    val_dir = make_image_folder(tmp / 'val', 2, size=32, seed=2)
    opt = {
        'name': 'tiny',
        'model_type': 'SRModel',
        'scale': 2,
        'num_gpu': 0,
        'manual_seed': 7,
        'datasets': {
            'train': {'type': 'PairedImageDataset', 'dataroot_gt': str(train_dir / 'HR'), 'lq_from_gt': True,
                      'io_backend': {'type': 'disk'}, 'gt_size': 16, 'batch_size_per_gpu': 2,
                      'num_worker_per_gpu': 0},
            'val': {'type': 'BenchmarkDataset', 'dataroot': str(val_dir), 'name': 'tinyval'},
        },
        'network_g': {'type': 'EDSR', 'num_feat': 8, 'num_block': 1},
        'path': {'experiments_root': str(tmp / 'experiments')},
        'train': {'optim_g': {'type': 'Adam', 'lr': 1e-3}, 'total_iter': 6,
                  'scheduler': {'type': 'MultiStepLR', 'milestones': [4], 'gamma': 0.5},
                  'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0}, **train_overrides},
        'val': {'val_freq': 3, 'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 2,
                                                    'test_y_channel': True}}},
        'logger': {'print_freq': 2, 'save_checkpoint_freq': 3, 'use_tb_logger': False},
    }
    return opt


def write_options(opt: Dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return path
