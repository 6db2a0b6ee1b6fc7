"""Build networks from option blocks and move/freeze them (no training logic here)."""
from typing import Any, Dict, Optional

import torch
from torch import nn

import ckdsr.archs  # noqa: F401  (fills ARCH_REGISTRY)
from ckdsr.utils.build import build_from_cfg
from ckdsr.utils.feature_taps import unwrap_model
from ckdsr.utils.option_spec import OptionError, where_to_get
from ckdsr.utils.registry import ARCH_REGISTRY


def build_network(cfg: Dict[str, Any], scale: Optional[int] = None) -> nn.Module:
    """Build ``cfg`` from the arch registry; ``upscale`` defaults to the run's ``scale``."""
    extra = {}
    if scale is not None and 'upscale' not in cfg:
        from ckdsr.utils.option_spec import signature_params
        params, _ = signature_params(ARCH_REGISTRY.get(cfg['type']))
        if 'upscale' in params:
            extra['upscale'] = scale
    return build_from_cfg(cfg, ARCH_REGISTRY, **extra)


def load_weights(net: nn.Module, path: Optional[str], param_key: Optional[str], strict: bool,
                 option_key: str) -> None:
    """Load a checkpoint into ``net`` in any supported layout; errors name ``option_key``.

    ``param_key``: 'auto' (params_ema, params, state_dict, else the bare file), a key, or None
    for a file that is the state dict itself.
    """
    if not path:
        return
    from ckdsr.archs.checkpoint_layouts import load_pretrained
    try:
        load_pretrained(net, path, param_key=param_key, strict=strict)
    except FileNotFoundError as err:
        raise FileNotFoundError(f'{option_key}: {err}{where_to_get(path)}') from None
    except (RuntimeError, ValueError, KeyError) as err:  # unreadable, wrong layout, wrong network
        raise OptionError([f'{option_key}: {checkpoint_problem(err)}'], source=None) from None


def checkpoint_problem(err: BaseException) -> str:
    """One line for a checkpoint that cannot be loaded: torch's multi-paragraph reasons cut to the
    sentence that says what is wrong (a garbage or truncated file, a network that does not fit)."""
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    cause = err.__cause__
    if cause is not None:
        detail = str(cause)
        if 'WeightsUnpickler error:' in detail:  # not a torch zip/pickle of tensors at all
            detail = detail.split('WeightsUnpickler error:', 1)[1].strip().split('\n\n')[0]
        detail = ' '.join(detail.split()).split('. ')[0]
        head = text.split(' (', 1)[0]
        text = f'{head} ({detail}); the file is damaged or not a PyTorch checkpoint'
    return ' '.join(text.split())


def freeze(net: nn.Module) -> nn.Module:
    """Eval mode, no gradients: for teachers, history models and embedding networks."""
    net.eval()
    net.requires_grad_(False)
    return net


unwrap = unwrap_model  # the module inside DDP / DataParallel / torch.compile wrappers


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in unwrap(net).parameters())


def to_device(net: nn.Module, device: torch.device, channels_last: bool = False) -> nn.Module:
    net = net.to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net
