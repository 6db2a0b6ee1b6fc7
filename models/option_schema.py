"""ckdsr's option schema: BasicSR's key names where the concept is the same.

The base schema covers what every run has (datasets, network_g, path, train, val, logger). A
model class adds its own sections through ``option_sections()`` (e.g. KDModel adds the teacher,
the helper networks and the distillation terms), so a new method never edits this file.
"""
from typing import Any, Dict, Literal, Optional, Union

from utils.option_spec import (REQUIRED, Block, DictOf, Field, OptionError, Section,
                               merge_sections, registry_resolver, signature_params)
from utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY


def _import_packages() -> None:
    """Fill the registries (explicit imports; each package lists its modules)."""
    import archs  # noqa: F401
    import data  # noqa: F401
    import losses  # noqa: F401
    import metrics  # noqa: F401
    import models  # noqa: F401


def optimizer_resolver(name: str):
    from models.optimizers import optimizer_class
    params, var_kw = signature_params(optimizer_class(name))
    params.pop('params', None)
    return params, var_kw


def scheduler_resolver(name: str):
    from models.schedulers import scheduler_class
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
    'prefetch_mode': Field(Optional[str], None, "accepted for BasicSR compatibility; only null/'cpu'"),
    'progressive': Field(Optional[Dict[str, Any]], None, 'progressive patch/batch schedule (train): '
                         '{iters: [stage lengths], gt_size: [...], batch_size_per_gpu: [...]}, see data/progressive.py'),
}

DATASET_BLOCK = Block(registry_resolver(DATASET_REGISTRY), 'dataset', extra=LOADER_FIELDS,
                      injected=('scale', 'phase'), doc='a registered dataset plus its loader settings')

PIXEL_LOSS_BLOCK = Block(registry_resolver(LOSS_REGISTRY), 'loss', required=False,
                         extra={'loss_weight': Field(float, 1.0, 'weight of this term')},
                         doc='BasicSR-style pixel loss against the ground truth')


def base_schema() -> Section:
    """The sections every model has."""
    return Section({
        'name': Field(str, REQUIRED, 'experiment name; its folder is <experiments_root>/<name>'),
        'model_type': Field(str, 'SRModel', 'registered model class (SRModel, KDModel, ...)'),
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
            'tb_images': Field(int, 0, minimum=0, doc='log the outputs of the first N images of each validation set to '
                               'tensorboard (with logger.use_tb_logger; under DDP, those rank 0 scores)'),
            'metrics': DictOf(Block(metric_resolver, 'metric'), doc='named metrics, e.g. psnr, ssim'),
        }, absent_none=True, doc='validation settings'),
        'logger': Section({
            'print_freq': Field(int, 100, 'print a progress line every this many iterations', minimum=1),
            'save_checkpoint_freq': Field(int, 5000, 'save a training state every this many iterations', minimum=1),
            'use_tb_logger': Field(bool, True, 'write tensorboard scalars'),
            'keep_states': Field(Optional[int], 3, 'keep only the newest N training states (null: all)', minimum=1),
        }),
        'dist_params': Section({
            'backend': Field(Optional[str], None, 'process-group backend (default nccl on CUDA, gloo on CPU)'),
            'port': Field(int, 29500, 'accepted for BasicSR compatibility (torchrun sets the port)'),
        }),
    })


def schema_for(tree: Dict[str, Any], source: str = '<options>') -> Section:
    """The base schema merged with what ``tree['model_type']``'s class adds."""
    _import_packages()
    model_type = tree.get('model_type', 'SRModel')
    if not isinstance(model_type, str):
        raise OptionError([f'model_type: expected str, got {model_type!r}'], source=source)
    try:
        cls = MODEL_REGISTRY.get(model_type)
    except KeyError as err:
        raise OptionError([f'model_type: {err.args[0]}'], source=source) from None
    extra = cls.option_sections() if hasattr(cls, 'option_sections') else {}
    return merge_sections(base_schema(), extra)
