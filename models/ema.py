"""Exponential moving average (EMA) of a network's parameters and buffers.

``ema = decay * ema + (1 - decay) * new`` for every floating-point parameter and buffer;
integer and bool buffers (e.g. BatchNorm's ``num_batches_tracked``) are copied. The averaged
network is a frozen deep copy: ``eval()`` mode, ``requires_grad`` off, never wrapped in DDP.
"""
import copy
import weakref
from typing import Optional

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


class _TensorSlots:
    """Every parameter and buffer of a net (shared tensors once), split into floating-point and other.

    Walking ``named_parameters()``/``named_buffers()`` costs ~12 ms per call on RCAN (1,600 tensors),
    so the walk is done once and cached. The cache stays valid while every module still holds the same
    tensor objects and the same number of tensors and children: ``.to()`` and
    ``load_state_dict(assign=True)`` replace tensors, attaching a submodule adds one, and
    ``still_valid`` notices either (identity checks, several times cheaper than the walk).
    """

    def __init__(self, net: nn.Module):
        self.net = weakref.ref(net)
        self.names = {True: [], False: []}
        self.tensors = {True: [], False: []}
        self.slots, self.shapes, seen = [], [], set()
        for prefix, module in net.named_modules(remove_duplicate=True):
            self.shapes.append((module, len(module._parameters), len(module._buffers), len(module._modules)))
            for store in (module._parameters, module._buffers):
                for key, t in store.items():
                    if t is None:
                        continue
                    self.slots.append((store, key, t))
                    if id(t) in seen:  # a tensor shared by two modules is averaged once
                        continue
                    seen.add(id(t))
                    is_float = t.is_floating_point() or t.is_complex()
                    self.names[is_float].append(f'{prefix}.{key}' if prefix else key)
                    self.tensors[is_float].append(t)

    def still_valid(self, net: nn.Module) -> bool:
        return (self.net() is net
                and all(len(m._parameters) == n_p and len(m._buffers) == n_b and len(m._modules) == n_m
                        for m, n_p, n_b, n_m in self.shapes)
                and all(store.get(key) is t for store, key, t in self.slots))


def _slots(net: nn.Module, cache: dict) -> _TensorSlots:
    """``_TensorSlots`` of ``net`` from ``cache``, rebuilt when the net or one of its tensors changed."""
    slots = cache.get(id(net))
    if slots is None or not slots.still_valid(net):
        if len(cache) >= 4:  # normally two entries: the trained net and the EMA copy
            cache.clear()
        slots = cache[id(net)] = _TensorSlots(net)
    return slots


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
        self._cache = {}  # id(net) -> _TensorSlots

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
        new, ema = _slots(unwrap_model(model), self._cache), _slots(self.module, self._cache)
        f_new, o_new, f_ema, o_ema = new.tensors[True], new.tensors[False], ema.tensors[True], ema.tensors[False]
        if new.names != ema.names:
            differing = sorted(set(sum(new.names.values(), [])) ^ set(sum(ema.names.values(), [])))
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
