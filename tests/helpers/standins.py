"""Stand-in weight files in the real published formats, for option files that name real weights.

Each writer builds the network with random weights and saves it the way the published file is
laid out, so the real loading code runs. Extend ``EMBEDDING_WRITERS`` for new frozen helpers.
"""
import copy
from pathlib import Path
from typing import Any, Callable, Dict

import torch

from models.network_io import build_network
from tests.helpers.kd import save_standin_teacher


def _random_embedding(cfg: Dict[str, Any]):
    args = {k: v for k, v in cfg.items() if not k.endswith('_path')}
    return build_network({**args, 'allow_random': True})


def write_vgg(cfg: Dict[str, Any], path: Path) -> Path:
    """torchvision's vgg19-dcbb9e9d.pth layout: ``features.N.weight`` (classifier omitted)."""
    torch.save(_random_embedding(cfg).state_dict(), path)
    return path


def write_vqgan(cfg: Dict[str, Any], path: Path) -> Path:
    """A Lightning checkpoint as taming-transformers publishes it: ``{'state_dict': ...}``."""
    torch.save({'state_dict': _random_embedding(cfg).state_dict(), 'global_step': 0}, path)
    return path


EMBEDDING_WRITERS: Dict[str, Callable[[Dict[str, Any], Path], Path]] = {
    'VGG19Features': write_vgg,
    'VQGANEncoder': write_vqgan,
}


def with_standin_weights(tree: Dict[str, Any], tmp: Path) -> Dict[str, Any]:
    """A copy of an option tree whose weight paths point at stand-ins written under ``tmp``."""
    tree = copy.deepcopy(tree)
    scale = tree.get('scale', 4)
    path = tree.setdefault('path', {})
    if tree.get('network_t'):
        path['pretrain_network_t'] = str(save_standin_teacher(tree['network_t'], tmp / 'teacher.pth', scale))
    if path.get('pretrain_network_g'):
        path['pretrain_network_g'] = str(save_standin_teacher(tree['network_g'], tmp / 'net_g.pth', scale, seed=1))
    emb = (tree.get('distill') or {}).get('embedding')
    if emb and emb.get('type') in EMBEDDING_WRITERS:
        for key in [k for k in emb if k.endswith('_path')]:
            emb[key] = str(EMBEDDING_WRITERS[emb['type']](emb, tmp / f'{emb["type"]}.pth'))
    return tree
