"""Score the demo's networks and the bicubic baseline on the held-out benchmark folder.

Networks go through :func:`ckdsr.engine.test_runner.run_test`, the machinery of ``tools/test.py`` (the
option tree of ``tools/test.py --arch ... --weights ... --scale ... --datasets ...``; PSNR/SSIM on Y,
crop border = scale); bicubic is MATLAB's ``imresize(LR, scale, 'bicubic')`` on the uint8 LR, scored
by the same :func:`ckdsr.engine.evaluation.evaluate_dataset`. SR images are saved for the crops figure.
"""
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from ckdsr.engine.evaluation import DEFAULT_METRICS, average, evaluate_dataset


@dataclass
class Score:
    """One method's result on the held-out set."""
    method: str
    psnr: float
    ssim: float
    per_image: List[Dict[str, Any]] = field(default_factory=list)
    image_dir: Optional[Path] = None       # SR images as <name>_x<scale>.png
    command: str = ''                      # the equivalent tools/test.py command


def complexity(network_cfg: Dict[str, Any], scale: int, lr_size: Tuple[int, int]) -> Tuple[int, int]:
    """``(params, MACs)`` of a network block at ``lr_size = (W, H)`` (built on the meta device)."""
    from ckdsr.models.network_io import build_network
    from ckdsr.utils.complexity import count_params, count_macs
    with torch.device('meta'):
        net = build_network(dict(network_cfg), scale)
    return count_params(net), count_macs(net, (lr_size[1], lr_size[0]))


def arch_sets(network_cfg: Dict[str, Any]) -> List[str]:
    """``tools/test.py --set`` items for a network block (values as JSON, which YAML reads)."""
    return [f'{k}={json.dumps(v)}' for k, v in network_cfg.items() if k != 'type']


def test_command(network_cfg: Dict[str, Any], weights: Path, scale: int, bench: Path) -> List[str]:
    cmd = ['python', 'tools/test.py', '--arch', network_cfg['type']]
    sets = arch_sets(network_cfg)
    if sets:
        cmd += ['--set', *sets]
    return cmd + ['--weights', str(weights), '--scale', str(scale), '--datasets', str(bench)]


def evaluate_network(method: str, network_cfg: Dict[str, Any], weights: Path, scale: int, bench: Path,
                     save_root: Path) -> Score:
    """``tools/test.py --arch ... --weights W --scale S --datasets bench`` in-process."""
    from ckdsr.demo.runs import command_text
    from ckdsr.engine.test_runner import options_from_arch, run_test
    opt = options_from_arch(network_cfg['type'], str(weights), scale, [str(bench)], arch_sets=arch_sets(network_cfg),
                            name=method)
    run = run_test(opt, torch.device('cpu'), progress=False, save_dir=str(save_root))
    res = run.results[0]
    avg = res.average
    cmd = command_text(test_command(network_cfg, weights, scale, bench))
    return Score(method, avg['psnr'], avg['ssim'], res.rows, save_root / res.dataset, cmd)


def bicubic_forward(scale: int):
    """LR in [0, 1] -> MATLAB ``imresize(uint8 LR, scale, 'bicubic')`` / 255."""
    from ckdsr.data.matlab_imresize import imresize_torch

    def forward(lq: torch.Tensor) -> torch.Tensor:
        lr = (lq.clamp(0, 1) * 255).round().to(torch.uint8)
        return imresize_torch(lr, scale).float() / 255
    return forward


def evaluate_bicubic(scale: int, bench: Path, save_root: Path) -> Score:
    from ckdsr.data.benchmark_dataset import BenchmarkDataset
    ds = BenchmarkDataset(str(bench), scale=scale)
    save_dir = save_root / ds.name
    rows = evaluate_dataset(bicubic_forward(scale), ds, scale, DEFAULT_METRICS, save_dir=str(save_dir),
                            suffix=f'_x{scale}')
    avg = average(rows)
    return Score('bicubic', avg['psnr'], avg['ssim'], rows, save_dir)


def colour_shift(sr_dir: Path, bench: Path, scale: int) -> Tuple[float, float, float]:
    """Mean of SR - HR per RGB channel (grey levels, 0-255) over every pixel of the held-out set:
    a global colour cast that Y-PSNR only partly sees."""
    import numpy as np

    from ckdsr.data.bicubic_lr import list_images
    from ckdsr.data.image_io import read_image
    total, count = np.zeros(3), 0
    for hr_path in list_images(bench / 'HR'):
        sr = read_image(sr_dir / f'{hr_path.stem}_x{scale}.png').astype(np.float64)
        hr = read_image(hr_path)[:sr.shape[0], :sr.shape[1]].astype(np.float64)
        total += (sr - hr).reshape(-1, 3).sum(0)
        count += sr.shape[0] * sr.shape[1]
    r, g, b = (total / max(count, 1)).tolist()
    return r, g, b
