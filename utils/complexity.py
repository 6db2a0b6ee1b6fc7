"""Model size and cost: parameter counts and multiply-accumulates (MACs) at a given input size.

MACs come from ``torch.utils.flop_counter.FlopCounterMode`` (convolutions, linear layers and every
matmul, including the Q K^T and attention-times-V products of window attention), divided by 2.
Element-wise work (activations, softmax, norms, additions) is not counted, as in the SR papers'
Mult-Adds. The forward runs on the ``meta`` device with the net's tensors swapped for shape-only
stand-ins, so even a 43M-parameter net at 1280x720 output costs no compute and leaves the net as is.
"""
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

from ckdsr.utils.feature_taps import unwrap_model


def count_params(net: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared tensors once); ``trainable_only`` skips frozen ones."""
    seen, total = set(), 0
    for p in unwrap_model(net).parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def macs_and_output_shape(net: nn.Module, lr_size: Tuple[int, int], in_ch: int = 3, batch: int = 1,
                          forward_kwargs: Optional[Dict[str, Any]] = None) -> Tuple[int, Tuple[int, ...]]:
    """(MACs, output shape) of one forward on a ``batch x in_ch x H x W`` input, ``lr_size = (H, W)``."""
    module = unwrap_model(net)
    stand_ins = {name: torch.empty_like(t, device='meta')
                 for name, t in list(module.named_parameters()) + list(module.named_buffers())}
    x = torch.empty(batch, in_ch, lr_size[0], lr_size[1], device='meta')
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        out = functional_call(module, stand_ins, (x,), forward_kwargs or {}, strict=False)
    return counter.get_total_flops() // 2, tuple(out.shape)


def count_macs(net: nn.Module, lr_size: Tuple[int, int], in_ch: int = 3, batch: int = 1,
               forward_kwargs: Optional[Dict[str, Any]] = None) -> int:
    """MACs of one forward at ``lr_size = (H, W)`` (FLOPs / 2 from FlopCounterMode)."""
    return macs_and_output_shape(net, lr_size, in_ch, batch, forward_kwargs)[0]


def params_text(params: int, trainable: Optional[int] = None) -> str:
    """``'params 1,234,567 (1.235M)'``, plus ``' (N frozen)'`` when ``trainable`` is below ``params``
    (``' (frozen)'`` when it is 0): the one format of tools/model_info.py and train.log."""
    frozen = params - trainable if trainable is not None else 0
    note = ' (frozen)' if frozen and frozen == params else f' ({frozen:,} frozen)' if frozen else ''
    return f'params {params:,} ({params / 1e6:.3f}M){note}'
