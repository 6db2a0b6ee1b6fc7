"""Stand-in teachers for KD tests: tiny nets saved in the real BasicSR checkpoint layout."""
from pathlib import Path
from typing import Any, Dict

import torch

from ckdsr.models.network_io import build_network
from tests.helpers.tiny_run import tiny_sr_options


def save_standin_teacher(cfg: Dict[str, Any], path: Path, scale: int, seed: int = 0) -> Path:
    """A randomly initialised ``cfg`` net saved as ``{'params': state_dict}`` (BasicSR layout)."""
    torch.manual_seed(seed)
    net = build_network(cfg, scale)
    torch.save({'params': net.state_dict()}, path)
    return path


def tiny_kd_options(tmp: Path, losses, distill=None, teacher=None, student=None, **train) -> Dict[str, Any]:
    opt = tiny_sr_options(tmp, **train)
    teacher = teacher or {'type': 'EDSR', 'num_feat': 16, 'num_block': 2}
    opt['model_type'] = 'KDModel'
    opt['network_g'] = student or {'type': 'EDSR', 'num_feat': 8, 'num_block': 2}
    opt['network_t'] = teacher
    opt['path']['pretrain_network_t'] = str(save_standin_teacher(teacher, tmp / 'teacher.pth', opt['scale']))
    opt['train'].pop('pixel_opt')
    opt['train']['losses'] = losses
    if distill:
        opt['distill'] = distill
    return opt
