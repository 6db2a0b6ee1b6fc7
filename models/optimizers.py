"""Optimizers from BasicSR-style option blocks, e.g.
``optim_g: {type: Adam, lr: 1.0e-4, weight_decay: 0, betas: [0.9, 0.99]}``.

The accepted keys of each type are read from the optimizer's signature (``optimizer_signature``),
so the option validator and this builder agree on what is allowed.
"""
import inspect
from typing import Any, Callable, Dict, Iterable, Mapping

import torch

from ckdsr.utils.suggest import did_you_mean, lookup

#: option ``type`` -> optimizer class
OPTIMIZERS: Dict[str, Callable] = {
    'Adam': torch.optim.Adam,
    'AdamW': torch.optim.AdamW,
    'SGD': torch.optim.SGD,
}


class _Required:
    """Marker default of a key that has no default value."""

    def __repr__(self) -> str:
        return 'REQUIRED'


REQUIRED = _Required()


def callable_signature(fn: Callable, skip: Iterable[str] = ()) -> Dict[str, Any]:
    """``{keyword: default}`` of ``fn`` (``REQUIRED`` where there is none), minus ``skip``/``self``."""
    out = {}
    for name, p in inspect.signature(fn).parameters.items():
        if name in ('self', *skip) or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = p.default
        if default is p.empty or type(default).__name__ == '_RequiredParameter':
            default = REQUIRED
        out[name] = default
    return out


def resolve_kwargs(where: str, cfg: Mapping[str, Any], signature: Mapping[str, Any]) -> Dict[str, Any]:
    """Check ``cfg`` (minus ``type``) against ``signature`` and return constructor kwargs.

    ``where`` names the option block in errors (e.g. ``'train.optim_g'``). YAML 1.1 reads ``1e-4``
    as a string; such numeric strings are converted where the default is a number. Lists become
    tuples where the default is a tuple (``betas``). ``cfg`` is never mutated.
    """
    kwargs = {}
    for key, value in cfg.items():
        if key == 'type':
            continue
        if key not in signature:
            raise KeyError(f"{where}.{key}: unknown option for type '{cfg.get('type')}'"
                           f"{did_you_mean(key, signature)}; accepted: {', '.join(signature)}")
        default = signature[key]
        if isinstance(value, str) and isinstance(default, (int, float)) and not isinstance(default, bool):
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f'{where}.{key}: expected a number, got {value!r}') from None
        elif isinstance(value, list) and isinstance(default, tuple):
            value = tuple(value)
        elif isinstance(value, (list, dict)):
            value = type(value)(value)  # shallow copy: the built object must not alias cfg
        kwargs[key] = value
    missing = [k for k, d in signature.items() if d is REQUIRED and k not in kwargs]
    if missing:
        raise KeyError(f"{where}: missing required option(s) {', '.join(missing)} "
                       f"for type '{cfg.get('type')}'")
    return kwargs


def optimizer_class(type_name: str, where: str = 'optim') -> Callable:
    """The optimizer class registered as ``type_name``; a miss names the closest type."""
    return lookup(OPTIMIZERS, type_name, 'optimizer', where)


def optimizer_signature(type_name: str) -> Dict[str, Any]:
    """Accepted option keys of optimizer ``type_name`` and their defaults (``REQUIRED`` if none)."""
    return callable_signature(optimizer_class(type_name).__init__, skip=('params',))


#: ``{type: {key: default}}`` for every known optimizer (for the option validator)
OPTIMIZER_ARGS: Dict[str, Dict[str, Any]] = {name: optimizer_signature(name) for name in OPTIMIZERS}


def build_optimizer(params_or_groups, cfg: Mapping[str, Any], where: str = 'optim') -> torch.optim.Optimizer:
    """Build ``cfg['type']`` over ``params_or_groups`` (tensors or param-group dicts).

    ``where`` is the option path used in error messages (e.g. ``'train.optim_g'``).
    """
    if 'type' not in cfg:
        raise KeyError(f"{where}: missing 'type' (one of {', '.join(OPTIMIZERS)})")
    cls = optimizer_class(cfg['type'], where)
    kwargs = resolve_kwargs(where, cfg, optimizer_signature(cfg['type']))
    return cls(params_or_groups, **kwargs)
