"""Benchmark a trained network: the logic behind ``tools/test.py``.

Both command-line forms end in the same thing, a validated BasicSR-style *test option tree*
(``name, scale, num_gpu, network_g, path.{pretrain_network_g, param_key_g, strict_load_g},
datasets.test_*, val.{metrics, self_ensemble, tile, tile_overlap}``):

* ``-opt FILE [--set k=v ...]`` reads it from a file (:func:`options_from_file`);
* ``--arch NAME --weights PATH --scale S --datasets DIR ...`` builds it
  (:func:`options_from_arch`), one tree per scale, so a multi-scale net such as CARN-M is
  scored at x2, x3 and x4 in one call.

:func:`run_test` then builds every dataset first (a bad folder fails before any weights load),
builds the network for the tree's scale (``upscale`` comes from ``scale`` unless the block sets
it; a mismatch is an error), loads the weights with :func:`ckdsr.archs.checkpoint_layouts.load_pretrained`
(BasicSR ``params``/``params_ema``, EDSR-PyTorch, RCAN, SwinIR and CARN-pytorch layouts) and scores
each set with :func:`ckdsr.engine.evaluation.evaluate_dataset`, timing every forward pass.
"""
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

from ckdsr.engine.data_setup import build_dataset, dataset_phase
from ckdsr.engine.evaluation import DEFAULT_METRICS, evaluate_dataset, make_forward, with_y_convention
from ckdsr.engine.report import DatasetResult, y_convention_label
from ckdsr.utils.option_spec import OptionError

EVAL_PHASES = ('val', 'test')
WARM_UP_SIZE = 48  # LR pixels


class EvalSetupError(RuntimeError):
    """Something the user named cannot be used (a dataset folder, a weight file, a device)."""


# ----------------------------------------------------------------------------- option trees
def options_from_file(path: str, sets: Sequence[str] = ()) -> Dict[str, Any]:
    """Read, override (``--set a.b=v``) and validate a test option file."""
    from ckdsr.utils.options import load_options
    return load_options(path, sets=sets)


def parse_arch_sets(items: Sequence[str]) -> Dict[str, Any]:
    """``['num_feat=64', 'depths=[6,6]']`` -> ``{'num_feat': 64, 'depths': [6, 6]}`` (YAML values)."""
    from ckdsr.utils.options import yaml_value
    out = {}
    for item in items:
        key, sep, value = item.partition('=')
        if not sep or not key.strip():
            raise OptionError([f"--set expects key=value (a constructor option of --arch), got '{item}'"],
                              source='--set')
        out[key.strip()] = yaml_value(value) if value.strip() else None
    return out


def dataset_names(dirs: Sequence[str]) -> List[str]:
    """Display names from folder names (``.../benchmark/Set5`` -> ``Set5``), made unique."""
    names: List[str] = []
    for d in dirs:
        base = os.path.basename(os.path.normpath(d)) or 'dataset'
        name, n = base, 2
        while name in names:
            name, n = f'{base}_{n}', n + 1
        names.append(name)
    return names


def options_from_arch(arch: str, weights: str, scale: int, datasets: Sequence[str],
                      arch_sets: Sequence[str] = (), param_key: Optional[str] = 'auto', strict: bool = True,
                      self_ensemble: bool = False, tile: Optional[int] = None, tile_overlap: int = 16,
                      name: Optional[str] = None, y_convention: str = 'basicsr') -> Dict[str, Any]:
    """The test option tree of the direct form, validated like a file (``source`` names the flags).

    ``y_convention`` ('basicsr' | 'matlab', ``--y-convention``) is set on the PSNR/SSIM metrics."""
    from ckdsr.models.option_schema import schema_for
    from ckdsr.utils.options import validate_tree
    if not datasets:
        raise OptionError(['--datasets: give at least one folder holding HR/ (and LR_bicubic/X<s>/)'],
                          source='tools/test.py')
    tree = {
        'name': name or f'{arch}_x{scale}',
        'model_type': 'SRModel',
        'scale': scale,
        'network_g': {'type': arch, **parse_arch_sets(arch_sets)},
        'path': {'pretrain_network_g': weights, 'param_key_g': param_key, 'strict_load_g': strict},
        'datasets': {f'test_{i + 1}': {'type': 'BenchmarkDataset', 'name': ds_name, 'dataroot': root}
                     for i, (ds_name, root) in enumerate(zip(dataset_names(datasets), datasets))},
        'val': {'metrics': with_y_convention(DEFAULT_METRICS, y_convention), 'self_ensemble': self_ensemble,
                'tile': tile, 'tile_overlap': tile_overlap},
    }
    return validate_tree(tree, schema_for(tree, '--arch'), source=f'--arch {arch}')


def apply_cli_val(opt: Dict[str, Any], self_ensemble: bool = False, tile: Optional[int] = None,
                  tile_overlap: Optional[int] = None, y_convention: Optional[str] = None) -> Dict[str, Any]:
    """Command-line inference switches on top of an option file's ``val`` block (a copy);
    ``y_convention`` is set on every Y-channel metric (the protocol's when the file lists none)."""
    val = dict(opt.get('val') or {})
    if y_convention is not None:
        if y_convention not in ('basicsr', 'matlab'):
            raise OptionError([f"--y-convention: expected basicsr or matlab, got '{y_convention}'"],
                              source='tools/test.py')
        val['metrics'] = with_y_convention(val.get('metrics') or DEFAULT_METRICS, y_convention)
    if self_ensemble:
        val['self_ensemble'] = True
    if tile is not None:
        val['tile'] = tile
    if tile_overlap is not None:
        val['tile_overlap'] = tile_overlap
    return {**opt, 'val': val}


# ----------------------------------------------------------------------------- building blocks
def resolve_device(name: str = 'auto') -> torch.device:
    """'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'."""
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        device = torch.device(name)
    except RuntimeError:
        raise EvalSetupError(f"--device: unknown device '{name}' (use cpu, cuda, cuda:N or auto)") from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise EvalSetupError('--device cuda: CUDA is not available on this machine (use --device cpu)')
    return device


def build_eval_datasets(opt: Dict[str, Any]) -> Dict[str, Any]:
    """``{display name: dataset}`` for every val/test block; errors name the block and its folder."""
    out = {}
    for key, cfg in (opt.get('datasets') or {}).items():
        if dataset_phase(key, cfg) not in EVAL_PHASES:
            continue
        try:
            ds = build_dataset(key, cfg, opt['scale'])
        except (FileNotFoundError, ValueError, OSError) as err:
            root = cfg.get('dataroot') or cfg.get('dataroot_gt') or ''
            raise EvalSetupError(f'datasets.{key} ({root}): {err}') from None
        name = cfg.get('name') or getattr(ds, 'name', None) or key
        if len(ds) == 0:
            raise EvalSetupError(f'datasets.{key} ({name}): no images found')
        out[name] = ds
    if not out:
        raise EvalSetupError('no test datasets: add datasets.test_1 (type BenchmarkDataset, dataroot: a folder '
                             'with HR/ and LR_bicubic/X<s>/) or pass --datasets')
    return out


def build_test_network(opt: Dict[str, Any]):
    """``(net, load report)``: ``network_g`` built for ``opt['scale']`` with its weights loaded."""
    from ckdsr.archs.checkpoint_layouts import load_pretrained
    from ckdsr.models.network_io import build_network
    scale = opt['scale']
    cfg = opt['network_g']
    if cfg.get('upscale', scale) != scale:
        raise EvalSetupError(f"network_g.upscale is {cfg['upscale']} but scale is {scale}: the network would "
                             'not produce the scale the metrics expect; drop upscale or make them equal')
    path = opt.get('path') or {}
    weights = path.get('pretrain_network_g')
    if not weights:
        raise EvalSetupError('path.pretrain_network_g is not set (--weights): nothing to test')
    try:
        net = build_network(cfg, scale)
    except (TypeError, ValueError) as err:
        raise EvalSetupError(f"network_g ({cfg['type']}): {err}") from None
    try:
        report = load_pretrained(net, weights, param_key=path.get('param_key_g', 'auto'),
                                 strict=path.get('strict_load_g', True))
    except FileNotFoundError as err:
        raise EvalSetupError(f'path.pretrain_network_g: {err}') from None
    except (RuntimeError, KeyError, ValueError) as err:
        raise EvalSetupError(f'path.pretrain_network_g: {err.args[0] if err.args else err}') from None
    return net, report


class TimedForward:
    """``forward`` that records each call's wall time (CUDA synchronised), in call order."""

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], device: torch.device):
        self.forward, self.device, self.times = forward, device, []

    def _sync(self) -> None:
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self._sync()
        start = time.perf_counter()
        out = self.forward(x)
        self._sync()
        self.times.append(time.perf_counter() - start)
        return out


# ----------------------------------------------------------------------------- running
@dataclass
class EvalRun:
    """What one option tree produced."""
    name: str
    scale: int
    results: List[DatasetResult]
    load: Dict[str, Any] = field(default_factory=dict)   # layout, param key, notes of the weight loading
    settings: Dict[str, Any] = field(default_factory=dict)


def dataset_source(ds) -> Dict[str, Any]:
    """Where a dataset's images came from, for the report."""
    out: Dict[str, Any] = {}
    hr = getattr(ds, 'hr_files', None)
    if hr:
        out['root'] = os.fspath(hr[0].parent.parent)
    if hasattr(ds, 'lr_generated'):
        out['lr_generated'] = bool(ds.lr_generated)
        out['lr'] = ('MATLAB-exact bicubic of the mod-cropped HR' if ds.lr_generated
                     else os.fspath(ds.lr_dir))
    return out


def warm_up(forward: Callable[[torch.Tensor], torch.Tensor], dataset, device: torch.device) -> None:
    """One untimed pass on a corner of the first image, so first-call costs (allocator, kernel
    selection, lazy CUDA init) do not land in the first image's time."""
    lq = dataset[0]['lq'].unsqueeze(0)[..., :WARM_UP_SIZE, :WARM_UP_SIZE].to(device)
    forward(lq)
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


@torch.inference_mode()
def run_test(opt: Dict[str, Any], device: torch.device, progress: bool = False,
             save_dir: Optional[str] = None, log: Optional[Callable[[str], None]] = None) -> EvalRun:
    """Score ``opt['network_g']`` on every val/test dataset of ``opt``.

    ``save_dir``: write SR images as ``<save_dir>/<dataset>/<image>_x<scale>.png``.
    ``log``: receives one line per finished dataset (e.g. ``print`` to stderr).
    """
    scale = opt['scale']
    val = opt.get('val') or {}
    metrics = val.get('metrics') or DEFAULT_METRICS
    datasets = build_eval_datasets(opt)           # before the weights: a bad folder fails fast
    net, report = build_test_network(opt)
    net = net.to(device).eval()
    forward = make_forward(net, scale, val.get('self_ensemble', False), val.get('tile'),
                           val.get('tile_overlap', 16))
    warm_up(forward, next(iter(datasets.values())), device)
    results = []
    for name, ds in datasets.items():
        timed = TimedForward(forward, device)
        start = time.perf_counter()
        rows = evaluate_dataset(timed, ds, scale, metrics, device=device,
                                save_dir=os.path.join(save_dir, name) if save_dir else None,
                                suffix=f'_x{scale}', progress=progress)
        wall = time.perf_counter() - start
        if len(timed.times) != len(rows):
            raise RuntimeError(f'{name}: {len(rows)} results but {len(timed.times)} forward passes')
        for row, seconds in zip(rows, timed.times):
            row['time_s'] = seconds
        results.append(DatasetResult(name, scale, rows, list(metrics), wall_s=wall, source=dataset_source(ds),
                                     y_convention=y_convention_label(metrics)))
        if log is not None:
            avg = results[-1].average
            log(f'{name} x{scale} (Y {results[-1].y_convention}): '
                + ', '.join(f'{k} {v:.4f}' for k, v in avg.items() if k != 'time_s')
                + f' ({len(rows)} images, {wall:.1f} s)')
    load = {'path': report.path, 'layout': report.layout, 'param_key': report.param_key,
            'tensors_loaded': report.loaded, 'notes': list(report.notes)}
    settings = {'self_ensemble': bool(val.get('self_ensemble', False)), 'tile': val.get('tile'),
                'tile_overlap': val.get('tile_overlap', 16), 'y_convention': y_convention_label(metrics),
                'metrics': {k: dict(v) for k, v in metrics.items()}}
    return EvalRun(opt.get('name', ''), scale, results, load, settings)


def run_meta(runs: Sequence[EvalRun], opts: Sequence[Dict[str, Any]], device: torch.device,
             argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """The JSON ``meta`` block: what was tested, how, where, when."""
    import platform
    first = runs[0]
    return {
        'name': first.name,
        'network_g': opts[0]['network_g'],
        'scales': [r.scale for r in runs],
        'weights': first.load,
        **first.settings,
        'crop_border': 'scale (unless the metric sets crop_border)',
        'device': str(device),
        'torch': torch.__version__,
        'host': platform.node(),
        'date': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
        'command': list(argv) if argv is not None else None,
    }
