"""Which option file each method benchmarks, the ``tiny`` / ``paper`` presets, and model building.

A method is *just an option file*: :data:`METHODS` lists, per method, the option files that stand for
it (the first one that exists is used; ``--option`` picks any other). The benchmark builds the model
from that file through the same validation and ``models.build_model`` path as ``tools/train.py``;
only three things are replaced:

* the data: a synthetic batch (smooth random HR patches and their bicubic LR), so no dataset is read;
* published weights: stand-ins written in the published formats (:mod:`tests.helpers.standins`, the
  same writers the option-file tests use), so the real loading code runs;
* for ``--preset tiny``: every network is shrunk (fewer channels, fewer blocks) and the patch is
  12 LR pixels, while the loss terms, taps, helpers and their settings stay those of the file.
  Feature-tap paths are mapped onto the shrunk nets by relative depth (``body.9`` of 32 blocks ->
  ``body.2`` of 8), checked against the built nets.

``--preset paper`` keeps the file's nets, batch and patch size.

The *scratch baseline* of a method (its plain student step) is derived from the same file:
``SRModel`` with ``network_g`` (CSD: the slimmable net at the student width), the same optimizer,
EMA and precision settings, and ``L1(S, GT)`` only.
"""
import copy
import glob
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[2]

#: method -> option files standing for it, most representative first (paper nets where a file has them)
METHODS: Dict[str, Tuple[str, ...]] = {
    'scratch': ('options/train_rcan_10x6_x4.yml', 'options/experiments/cpu_carnm_x4/scratch.yml'),
    'logits': ('options/kd_rcan_x4.yml', 'options/experiments/cpu_carnm_x4/logits_kd.yml'),
    'fakd': ('options/fakd_rcan_x4.yml', 'options/experiments/cpu_carnm_x4/fakd.yml'),
    'csd': ('options/csd_edsr_x4.yml',),
    'facd': ('options/facd_edsr_x4.yml', 'options/facd_rcan_x4.yml'),
    'pcl': ('options/pcl_edsr_x4.yml', 'options/pcl_rcan_x4.yml'),
    'dckd': ('options/dckd_rcan_x4.yml', 'options/dckd_swinir_x4.yml'),
    # the RCAN pair with every DUKD part on (x3; the released x4 config has no zoom-out and no LCR)
    'dukd': ('options/dukd_rcan_x3.yml', 'options/dukd_edsr_x4.yml'),
}

PRESETS = ('tiny', 'paper')
TINY_LR_PATCH = 12
TINY_BATCH = 4


def method_option(method: str) -> Optional[Path]:
    """The option file of ``method`` (None when none of its files exists yet)."""
    for rel in METHODS[method]:
        path = REPO / rel
        if path.is_file():
            return path
    return None


def available_methods() -> List[str]:
    return [m for m in METHODS if method_option(m) is not None]


def all_option_files() -> List[Path]:
    return sorted(Path(p) for p in glob.glob(str(REPO / 'options' / '**' / '*.yml'), recursive=True))


# ----------------------------------------------------------------------------- tiny nets
def _shrink_arch(cfg: Dict[str, Any], lr_patch: int, keep_depth: bool = False) -> Dict[str, Any]:
    """A small network of the same type (and structure) as ``cfg``."""
    cfg = dict(cfg)
    kind = cfg['type']
    if kind in ('EDSR', 'SlimmableEDSR'):
        cfg['num_feat'] = max(8, int(cfg.get('num_feat', 64)) // 8)
        if not keep_depth:
            cfg['num_block'] = max(2, int(cfg.get('num_block', 16)) // 4)
    elif kind == 'RCAN':
        cfg['num_feat'] = 16
        cfg['squeeze_factor'] = 4
        if not keep_depth:
            cfg['num_block'] = max(1, round(int(cfg.get('num_block', 16)) / 6))
    elif kind == 'SwinIR':
        heads = list(cfg.get('num_heads', (6, 6, 6, 6)))
        dim = int(cfg.get('embed_dim', 96))
        h = max(heads)
        cfg['embed_dim'] = h * max(2, (dim // h) // 8)
        if not keep_depth:
            cfg['depths'] = [2] * len(list(cfg.get('depths', (6, 6, 6, 6))))
        cfg['window_size'] = 4
        cfg['img_size'] = lr_patch
    elif kind == 'VQGANEncoder':
        cfg.update(ch=32, num_res_blocks=1, z_channels=32, embed_dim=32, n_embed=256)  # GroupNorm(32) needs ch >= 32
    elif kind == 'PCLDiscriminator':
        cfg['num_feat'] = 8
    # CARN_M (0.41M params), VGG19Features (fixed architecture, published weights): unchanged
    return cfg


def _build_quiet(cfg: Dict[str, Any], scale: Optional[int]) -> nn.Module:
    """The net of ``cfg`` without its weights (on the meta device when the arch allows it)."""
    from ckdsr.models.network_io import build_network
    cfg = dict(cfg)
    if any(k.endswith('_path') for k in cfg):
        cfg = {k: v for k, v in cfg.items() if not k.endswith('_path')}
        cfg['allow_random'] = True
    try:
        with torch.device('meta'):
            return build_network(cfg, scale)
    except Exception:  # noqa: BLE001 -- an arch doing real tensor work in __init__
        return build_network(cfg, scale)


def remap_taps(paths: Sequence[str], orig: nn.Module, small: nn.Module, where: str) -> List[str]:
    """Map module paths of ``orig`` onto ``small``: an index into a shortened Sequential/ModuleList
    keeps its relative depth (first -> first, last -> last). Raises when two taps collide."""
    out = []
    for path in paths:
        a, b, parts = orig, small, []
        for part in path.split('.'):
            if part.isdigit() and isinstance(a, (nn.Sequential, nn.ModuleList)) and len(a) != len(b):
                i, n_a, n_b = int(part), len(a), len(b)
                j = round(i * (n_b - 1) / (n_a - 1)) if n_a > 1 else 0
                a, b = a[i], b[j]
                parts.append(str(j))
            else:
                a, b = a._modules[part], b._modules[part]
                parts.append(part)
        out.append('.'.join(parts))
    if len(set(out)) != len(out):
        raise ValueError(f'{where}: taps {list(paths)} collide on the shrunk net ({out})')
    return out


def tiny_tree(tree: Dict[str, Any], lr_patch: int = TINY_LR_PATCH) -> Tuple[Dict[str, Any], List[str]]:
    """``tree`` with every network shrunk and tap paths remapped; also returns notes."""
    tree = copy.deepcopy(tree)
    scale = tree.get('scale', 4)
    notes: List[str] = []
    distill = tree.get('distill') or {}
    taps = distill.get('taps') or {}
    temb = distill.get('teacher_embedding')
    net_taps = {'network_g': [('distill.taps.student', taps.get('student') or [])],
                'network_t': [('distill.taps.teacher', taps.get('teacher') or [])]}
    if tree.get('model_type') == 'CSDModel':  # CSD's teacher taps name modules of network_g
        net_taps['network_g'].append(('distill.taps.teacher', taps.get('teacher') or []))
    if temb:
        net_taps['network_t'].append(('distill.teacher_embedding.taps', list(temb.get('taps') or [])))
        if temb.get('z_tap'):
            net_taps['network_t'].append(('distill.teacher_embedding.z_tap', [temb['z_tap']]))
    new_taps: Dict[str, List[str]] = {}
    for key in ('network_g', 'network_t'):
        if not tree.get(key):
            continue
        orig_cfg = tree[key]
        orig = _build_quiet(orig_cfg, scale)
        for keep_depth in (False, True):
            cfg = _shrink_arch(orig_cfg, lr_patch, keep_depth)
            small = _build_quiet(cfg, scale)
            try:
                mapped = {where: remap_taps(paths, orig, small, where) for where, paths in net_taps[key] if paths}
                break
            except ValueError as err:
                notes.append(f'{key}: {err}; kept the depth')
        tree[key] = cfg
        new_taps.update(mapped)
    if 'distill.taps.student' in new_taps:
        taps['student'] = new_taps['distill.taps.student']
    if 'distill.taps.teacher' in new_taps:
        taps['teacher'] = new_taps['distill.taps.teacher']
    if temb:
        temb['taps'] = new_taps.get('distill.teacher_embedding.taps', temb.get('taps'))
        if temb.get('z_tap'):
            temb['z_tap'] = new_taps['distill.teacher_embedding.z_tap'][0]
    if distill.get('embedding'):
        distill['embedding'] = _shrink_arch(distill['embedding'], lr_patch)
    pcl = distill.get('pcl')
    if pcl:
        pcl['network_d'] = _shrink_arch(pcl.get('network_d') or {'type': 'PCLDiscriminator'}, lr_patch)
    return tree, notes


# ----------------------------------------------------------------------------- derived trees
def scratch_tree(tree: Dict[str, Any]) -> Dict[str, Any]:
    """The plain student step of ``tree``: SRModel, network_g, L1(S, GT); optimizer, EMA and
    precision settings unchanged."""
    tree = copy.deepcopy(tree)
    distill = tree.pop('distill', None) or {}
    if tree.get('model_type') == 'CSDModel' and tree['network_g'].get('type') == 'SlimmableEDSR':
        tree['network_g']['width_mult'] = float((distill.get('csd') or {}).get('student_width', 0.25))
    tree['model_type'] = 'SRModel'
    tree.pop('network_t', None)
    path = tree.get('path') or {}
    for key in ('pretrain_network_t', 'param_key_t', 'strict_load_t', 'pretrain_network_g', 'param_key_g',
                'strict_load_g'):
        path.pop(key, None)
    train = tree.get('train') or {}
    train.pop('losses', None)
    train['pixel_opt'] = {'type': 'L1Loss', 'loss_weight': 1.0}
    tree['name'] = f"{tree.get('name', 'run')}_scratch"
    return tree


def batch_settings(tree: Dict[str, Any], preset: str, batch: Optional[int], lr_patch: Optional[int]) -> Tuple[int, int]:
    """(batch, LR patch) of a run: the file's (paper) or the tiny preset's, unless given."""
    scale = tree.get('scale', 4)
    train = ((tree.get('datasets') or {}).get('train') or {})
    if preset == 'tiny':
        return batch or TINY_BATCH, lr_patch or TINY_LR_PATCH
    return batch or int(train.get('batch_size_per_gpu', 16)), lr_patch or int(train.get('gt_size', 48 * scale)) // scale


def prepare_tree(tree: Dict[str, Any], device: torch.device, tmp: Path, amp: Optional[str] = None,
                 channels_last: bool = False, compile: bool = False) -> Dict[str, Any]:
    """Stand-in weights, no datasets, the run flags; not yet validated."""
    from tests.helpers.standins import with_standin_weights
    tree = copy.deepcopy(tree)
    tree.pop('datasets', None)
    tree.pop('val', None)
    tree['num_gpu'] = 0 if device.type == 'cpu' else 'auto'
    tree.setdefault('path', {})['experiments_root'] = str(tmp / 'experiments')
    tree.setdefault('logger', {})['use_tb_logger'] = False
    train = tree.setdefault('train', {})
    if amp:
        train['amp'] = amp
    if channels_last:
        train['channels_last'] = True
    if compile:
        train['compile'] = True
    tmp.mkdir(parents=True, exist_ok=True)
    return with_standin_weights(tree, tmp)


def build_from_tree(tree: Dict[str, Any], device: torch.device, source: str):
    """Validate ``tree`` as ``tools/train.py`` does and build its model on ``device``."""
    from ckdsr.models import build_model
    from ckdsr.models.option_schema import schema_for
    from ckdsr.utils.options import validate_tree
    opt = validate_tree(tree, schema_for(tree, source), source)
    return build_model(opt, is_train=True, device=device), opt


def load_option_file(path: Path) -> Dict[str, Any]:
    from ckdsr.utils.options import read_yaml
    return read_yaml(str(path))


# ----------------------------------------------------------------------------- synthetic data
def synthetic_batch(batch: int, lr_patch: int, scale: int, seed: int = 0) -> Dict[str, torch.Tensor]:
    """Smooth random HR patches in [0, 1] (structure at several scales) and their bicubic LR, on CPU
    (the step moves them to the device, as it does with a data loader's batches)."""
    g = torch.Generator().manual_seed(seed)
    hr = lr_patch * scale
    gt = torch.zeros(batch, 3, hr, hr)
    for cells, amp in ((4, 0.6), (max(4, hr // 8), 0.3), (max(4, hr // 2), 0.1)):
        base = torch.rand(batch, 3, cells, cells, generator=g)
        gt += amp * F.interpolate(base, size=(hr, hr), mode='bicubic', align_corners=False)
    gt = gt.clamp(0, 1)
    lq = F.interpolate(gt, size=(lr_patch, lr_patch), mode='bicubic', align_corners=False, antialias=True).clamp(0, 1)
    return {'lq': lq.contiguous(), 'gt': gt.contiguous()}


def rel(path: os.PathLike) -> str:
    try:
        return os.path.relpath(path, REPO)
    except ValueError:
        return str(path)
