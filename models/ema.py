"""Exponential moving average (EMA) of a network's parameters and buffers.

``ema = decay * ema + (1 - decay) * new`` for every floating-point parameter and buffer;
integer and bool buffers (e.g. BatchNorm's ``num_batches_tracked``) are copied. The averaged
network is a frozen deep copy: ``eval()`` mode, ``requires_grad`` off, never wrapped in DDP.
"""
import copy
from typing import List, Optional, Tuple

import torch
from torch import nn


def unwrap_model(model: nn.Module) -> nn.Module:
    """Strip DDP / DataParallel (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, '_orig_mod') and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def _split_tensors(net: nn.Module) -> Tuple[List[str], List[torch.Tensor], List[str], List[torch.Tensor]]:
    """(float names, float tensors, other names, other tensors) over parameters then buffers."""
    f_names, f_tensors, o_names, o_tensors = [], [], [], []
    named = list(net.named_parameters()) + list(net.named_buffers())
    for name, t in named:
        if t.is_floating_point() or t.is_complex():
            f_names.append(name)
            f_tensors.append(t)
        else:
            o_names.append(name)
            o_tensors.append(t)
    return f_names, f_tensors, o_names, o_tensors


class ModelEMA:
    """A frozen copy of ``model`` whose parameters and buffers track it; the net is ``self.module``.

    Args:
        model: the trained network (DDP- or compile-wrapped is fine; it is unwrapped).
        decay: weight of the old average, in [0, 1]; BasicSR's ``train.ema_decay`` (e.g. 0.999).
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = self._check_decay(decay)
        self.module = copy.deepcopy(unwrap_model(model))
        self.module.eval().requires_grad_(False)
        for p in self.module.parameters():
            p.grad = None  # deepcopy copies gradients too

    @staticmethod
    def _check_decay(decay: float) -> float:
        decay = float(decay)
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f'train.ema_decay must be in [0, 1], got {decay}')
        return decay

    @torch.no_grad()
    def update(self, model: nn.Module, decay: Optional[float] = None) -> None:
        """Move the average towards ``model``; ``decay`` overrides ``self.decay`` for this call."""
        d = self.decay if decay is None else self._check_decay(decay)
        # re-collected every call: ``.to()`` replaces buffer tensors, so cached lists would go stale
        f_names, f_new, o_names, o_new = _split_tensors(unwrap_model(model))
        e_f_names, f_ema, e_o_names, o_ema = _split_tensors(self.module)
        if f_names != e_f_names or o_names != e_o_names:
            differing = sorted(set(e_f_names + e_o_names) ^ set(f_names + o_names))
            raise ValueError(f'ModelEMA.update: model does not match the EMA copy (differing '
                             f'tensors: {differing[:5] or "same names, different order"})')
        if f_new:
            # lerp(ema, new, w) = ema + w * (new - ema) = (1 - w) * ema + w * new, with w = 1 - d
            torch._foreach_lerp_(f_ema, f_new, 1.0 - d)
        for ema_t, new_t in zip(o_ema, o_new):
            ema_t.copy_(new_t)

    def state_dict(self) -> dict:
        """The EMA network's ``state_dict`` (loadable into a plain copy of the network)."""
        return self.module.state_dict()

    def load_state_dict(self, state_dict: dict, strict: bool = True):
        """Load EMA weights (in place, so the tracked tensor lists stay valid)."""
        return self.module.load_state_dict(state_dict, strict=strict)
