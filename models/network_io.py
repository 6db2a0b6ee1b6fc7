"""Build networks from option blocks and move/freeze them (no training logic here)."""
from typing import Any, Dict, Optional

import torch
from torch import nn

import archs  # noqa: F401  (fills ARCH_REGISTRY)
from utils.build import build_from_cfg
from utils.feature_taps import unwrap_model
from utils.registry import ARCH_REGISTRY


def build_network(cfg: Dict[str, Any], scale: Optional[int] = None) -> nn.Module:
    """Build ``cfg`` from the arch registry; ``upscale`` defaults to the run's ``scale``."""
    extra = {}
    if scale is not None and 'upscale' not in cfg:
        from utils.option_spec import signature_params
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
    from archs.checkpoint_layouts import load_pretrained
    try:
        load_pretrained(net, path, param_key=param_key, strict=strict)
    except FileNotFoundError as err:
        raise FileNotFoundError(f'{option_key}: {err}') from None


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
