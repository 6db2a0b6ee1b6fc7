"""ckdsr's option schema: BasicSR's key names where the concept is the same.

The base schema covers what every run has (datasets, network_g, path, train, val, logger). A
model class adds its own sections through ``option_sections()`` (e.g. KDModel adds the teacher,
the helper networks and the distillation terms), so a new method never edits this file.
"""
import importlib.util
import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Literal, Optional, Union

from ckdsr.utils.custom_imports import import_custom_modules
from ckdsr.utils.option_spec import (REQUIRED, Block, DictOf, Field, ListOf, OptionError, Section,
                               merge_sections, paths_checked, registry_resolver, signature_params)
from ckdsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY


def _import_packages() -> None:
    """Fill the registries (explicit imports; each package lists its modules)."""
    import ckdsr.archs  # noqa: F401
    import ckdsr.data  # noqa: F401
    import ckdsr.losses  # noqa: F401
    import ckdsr.metrics  # noqa: F401
    import ckdsr.models  # noqa: F401


def optimizer_resolver(name: str):
    from ckdsr.models.optimizers import optimizer_class
    params, var_kw = signature_params(optimizer_class(name))
    params.pop('params', None)
    return params, var_kw


def scheduler_resolver(name: str):
    from ckdsr.models.schedulers import scheduler_class
    params, var_kw = signature_params(scheduler_class(name))
    params.pop('optimizer', None)
    return params, var_kw


def metric_resolver(name: str):
    """A metric's option keys: its arguments after the two images."""
    params, var_kw = signature_params(METRIC_REGISTRY.get(name))
    return dict(list(params.items())[2:]), var_kw


LOADER_FIELDS = {
    'name': Field(Optional[str], None, 'display name of the dataset (logs, result tables)'),
    'phase': Field(Optional[str], None, "train | val | test; defaults to the key's prefix"),
    'batch_size_per_gpu': Field(int, 1, 'batch size of each process', minimum=1),
    'num_worker_per_gpu': Field(int, 0, 'data-loader worker processes of each process', minimum=0),
    'dataset_enlarge_ratio': Field(int, 1, 'repeat the dataset this many times per epoch (train)', minimum=1),
    'use_shuffle': Field(bool, True, 'shuffle the training set'),
    'pin_memory': Field(bool, False, 'pin host memory of batches (CUDA)'),
    'persistent_workers': Field(bool, False, 'keep loader workers alive between epochs'),
    'prefetch_mode': Field(Optional[Literal['cpu', 'cuda']], None, 'accepted for BasicSR compatibility, a no-op: '
                           "batches are moved to the device by the model (docs/basicsr_compat.md)"),
    'progressive': Field(Optional[Dict[str, Any]], None, 'progressive patch/batch schedule (train): '
                         '{iters: [stage lengths], gt_size: [...], batch_size_per_gpu: [...]}, see data/progressive.py'),
}

DATASET_BLOCK = Block(registry_resolver(DATASET_REGISTRY), 'dataset', extra=LOADER_FIELDS,
                      injected=('scale', 'phase'), doc='a registered dataset plus its loader settings')

PIXEL_LOSS_BLOCK = Block(registry_resolver(LOSS_REGISTRY), 'loss', required=False,
                         extra={'loss_weight': Field(float, 1.0, 'weight of this term')},
                         doc='BasicSR-style pixel loss against the ground truth')


#: BasicSR model classes that ckdsr's own class does in full. BasicSR's SwinIRModel only adds padding
#: of the input to a multiple of the window at test time, which ckdsr's SwinIR does itself (pad_mode).
BASICSR_MODEL_ALIASES = {'SwinIRModel': 'SRModel'}


@dataclass
class ModelTypeField(Field):
    """``model_type``, with BasicSR's aliases replaced by the ckdsr class (the saved tree names that)."""

    def validate(self, value: Any, where: str, problems: List[str]) -> Any:
        return super().validate(BASICSR_MODEL_ALIASES.get(value, value) if isinstance(value, str) else value,
                                where, problems)


def _installed(module: str) -> bool:
    """Whether ``import module`` can find it (already imported counts), without importing it."""
    if module in sys.modules:
        return sys.modules[module] is not None
    return importlib.util.find_spec(module) is not None


@dataclass
class MetricBlock(Block):
    """A metric block that also takes BasicSR's ``better`` key: ``higher`` (BasicSR's default, and
    how ckdsr ranks ``net_g_best``) is a no-op, dropped from the tree; ``lower`` is refused."""

    def validate(self, value: Any, where: str, problems: List[str]) -> Any:
        if isinstance(value, dict) and 'better' in value:
            value = dict(value)
            better = value.pop('better')
            if better != 'higher':
                problems.append(f"{where}.better: only 'higher' is supported (ckdsr keeps the best checkpoint by "
                                f"the highest first metric), got {better!r}")
        return super().validate(value, where, problems)


@dataclass
class WandbSection(Section):
    """``logger.wandb``: also checks (without importing it) that wandb is installed when ``project`` is set."""

    def validate(self, value: Any, where: str, problems: List[str]) -> Any:
        out = super().validate(value, where, problems)
        if isinstance(out, dict) and out.get('project') and paths_checked() and not _installed('wandb'):
            problems.append(f'{where}.project: is set but the wandb package is not installed; '
                            f'pip install wandb, or set {where}.project: ~')
        return out


def base_schema() -> Section:
    """The sections every model has."""
    return Section({
        'name': Field(str, REQUIRED, 'experiment name; its folder is <experiments_root>/<name>'),
        'custom_imports': ListOf(Field(str), doc='your own modules to import first (dotted names, e.g. '
                                 'my_pkg.my_arch): the archs, losses, datasets... they register can then be '
                                 'named by `type:`; see utils/custom_imports.py'),
        'model_type': ModelTypeField(str, 'SRModel', 'registered model class (SRModel, KDModel, ...); BasicSR\'s '
                                     'SwinIRModel is read as SRModel (docs/basicsr_compat.md)'),
        'scale': Field(int, 4, 'upscaling factor', minimum=1),
        'num_gpu': Field(Union[int, Literal['auto']], 'auto', "GPUs per process group; 'auto' uses what is there, 0 = CPU",
                         minimum=0),
        'manual_seed': Field(Optional[int], 0, 'seed for python / numpy / torch (per rank: seed + rank)'),
        'datasets': DictOf(DATASET_BLOCK, key_pattern=r'(train|val|test)(_\w+)?',
                           key_hint='dataset keys are train, val, val_<x>, test_<x>'),
        'network_g': Block(registry_resolver(ARCH_REGISTRY), 'arch', doc='the trained network'),
        'path': Section({
            'experiments_root': Field(Optional[str], None, 'root of experiment folders (default ./experiments)'),
            'pretrain_network_g': Field(Optional[str], None, 'weights to initialise network_g', path=True),
            'param_key_g': Field(Optional[str], 'auto', "key inside the checkpoint: auto | params | params_ema | null (bare)"),
            'strict_load_g': Field(bool, True, 'require an exact key match when loading network_g'),
            'resume_state': Field(Optional[str], None, 'training state to resume from', path=True),
        }),
        'train': Section({
            'ema_decay': Field(float, 0.0, 'EMA decay of network_g (0 disables the EMA copy)', minimum=0, maximum=1),
            'optim_g': Block(optimizer_resolver, 'optimizer', doc='optimizer of network_g'),
            'scheduler': Block(scheduler_resolver, 'scheduler', required=False, doc='LR schedule (per iteration)'),
            'total_iter': Field(int, REQUIRED, 'number of training iterations', minimum=1),
            'warmup_iter': Field(int, -1, 'linear LR warm-up iterations (-1: none)'),
            'pixel_opt': PIXEL_LOSS_BLOCK,
            'grad_clip': Field(Optional[float], None, 'clip the gradient norm of network_g to this value'),
            'amp': Field(Optional[Literal['bf16', 'fp16']], None, 'mixed precision for the forward passes'),
            'channels_last': Field(bool, False, 'use channels_last memory format (CUDA)'),
            'compile': Field(bool, False, 'torch.compile the trained network'),
            'max_bad_steps': Field(int, 5, 'abort after this many consecutive non-finite losses', minimum=1),
        }, absent_none=True, doc='training settings (absent in test-only files)'),
        'val': Section({
            'val_freq': Field(int, 5000, 'validate every this many iterations (0: never)', minimum=0),
            'save_img': Field(bool, False, 'save validation outputs as PNG'),
            'use_ema': Field(bool, True, 'validate the EMA network when there is one'),
            'self_ensemble': Field(bool, False, 'x8 self-ensemble at validation/test'),
            'tile': Field(Optional[int], None, 'tile size (LR px) for tiled inference'),
            'tile_overlap': Field(int, 16, 'overlap between tiles (LR px)', minimum=0),
            'pbar': Field(bool, False, 'show a progress bar while validating'),
            'check_teacher': Field(bool, True, 'KD runs: before training, score the teacher and bicubic on the first '
                                   'validation set and warn when the teacher is below bicubic (engine/teacher_check.py)'),
            'tb_images': Field(int, 0, minimum=0, doc='log the outputs of the first N images of each validation set to '
                               'tensorboard (with logger.use_tb_logger; under DDP, those rank 0 scores)'),
            'metrics': DictOf(MetricBlock(metric_resolver, 'metric'), doc='named metrics, e.g. psnr, ssim '
                              "(BasicSR's `better: higher` is accepted and has no effect)"),
        }, absent_none=True, doc='validation settings'),
        'logger': Section({
            'print_freq': Field(int, 100, 'print a progress line every this many iterations', minimum=1),
            'save_checkpoint_freq': Field(int, 5000, 'save a training state every this many iterations', minimum=1),
            'use_tb_logger': Field(bool, True, 'write tensorboard scalars'),
            'keep_states': Field(Optional[int], 3, 'keep only the newest N training states (null: all)', minimum=1),
            'wandb': WandbSection({
                'project': Field(Optional[str], None, 'Weights & Biases project; logging to wandb is on when set '
                                 '(needs `pip install wandb`)'),
                'resume_id': Field(Optional[Union[str, int]], None, 'id of a wandb run to continue (resume=allow)'),
                'entity': Field(Optional[str], None, 'wandb user or team (default: your wandb default)'),
            }, absent_none=True, doc='optional Weights & Biases logging of the tensorboard scalars (rank 0)'),
        }),
        'dist_params': Section({
            'backend': Field(Optional[str], None, 'process-group backend (default nccl on CUDA, gloo on CPU)'),
            'port': Field(int, 29500, 'accepted for BasicSR compatibility (torchrun sets the port)'),
        }),
    })


def schema_for(tree: Dict[str, Any], source: str = '<options>') -> Section:
    """The base schema merged with what ``tree['model_type']``'s class adds. The modules of
    ``tree['custom_imports']`` are imported first, so their registered types are known."""
    _import_packages()
    import_custom_modules(tree, source=source)
    model_type = tree.get('model_type', 'SRModel')
    if not isinstance(model_type, str):
        raise OptionError([f'model_type: expected str, got {model_type!r}'], source=source)
    model_type = BASICSR_MODEL_ALIASES.get(model_type, model_type)
    try:
        cls = MODEL_REGISTRY.get(model_type)
    except KeyError as err:
        raise OptionError([f'model_type: {err.args[0]}'], source=source) from None
    extra = cls.option_sections() if hasattr(cls, 'option_sections') else {}
    return merge_sections(base_schema(), extra)
