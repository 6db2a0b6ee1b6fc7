"""Proposed fixes for per-step waste found by the benchmark, applied in-process (monkeypatched) so
their effect can be measured before anyone edits the core files (``--try-fixes taps,ema``).

* ``taps`` -- ``utils.feature_taps.resolve_module`` builds ``dict(root.named_modules())`` for every
  path, and KD models create their ``FeatureTaps`` (teacher taps, student taps, the offline embedding's
  taps and stoppers) every step: a walk over all modules per tap per step (RCAN 10x20: 2440 modules).
  Fix: ``root.get_submodule(path)`` first (a walk down the path), the full scan only to build the
  error message of an unknown path.
* ``ema`` -- ``models.ema.ModelEMA.update`` re-collects and compares the names of every parameter and
  buffer of both networks each step before one ``torch._foreach_lerp_``. Fix: collect the tensor
  lists once per source network and reuse them (invalidate when a network is moved with ``.to()`` or
  replaced; ``load_state_dict`` copies in place and keeps them valid).
"""
import sys
from typing import Iterable, List

import torch

FIXES = ('taps', 'ema')


def _fast_resolve(orig):
    from utils.feature_taps import WRAPPER_PREFIXES

    def resolve_module(root, path):
        p = path
        while p.startswith(WRAPPER_PREFIXES):
            p = p.split('.', 1)[1]
        try:
            return root.get_submodule(p)
        except AttributeError:
            return orig(root, path)  # the original raises with the closest paths
    resolve_module.__wrapped__ = orig
    return resolve_module


def _cached_update(orig):
    from models.ema import _split_tensors, unwrap_model

    @torch.no_grad()
    def update(self, model, decay=None):
        d = self.decay if decay is None else self._check_decay(decay)
        src = unwrap_model(model)
        cache = getattr(self, '_bench_cache', None)
        if cache is None or cache[0] is not src:
            f_names, f_new, o_names, o_new = _split_tensors(src)
            e_f_names, f_ema, e_o_names, o_ema = _split_tensors(self.module)
            if f_names != e_f_names or o_names != e_o_names:
                return orig(self, model, decay)  # the original raises with the differing names
            cache = self._bench_cache = (src, f_ema, f_new, o_ema, o_new)
        _, f_ema, f_new, o_ema, o_new = cache
        if f_new:
            torch._foreach_lerp_(f_ema, f_new, 1.0 - d)
        for ema_t, new_t in zip(o_ema, o_new):
            ema_t.copy_(new_t)
    return update


def apply(names: Iterable[str]) -> List[str]:
    """Apply the named fixes to this process; returns what was applied."""
    applied = []
    for name in names:
        if name == 'taps':
            import utils.feature_taps as ft
            orig = ft.resolve_module
            if hasattr(orig, '__wrapped__'):  # applied already
                applied.append(name)
                continue
            fast = _fast_resolve(orig)
            for mod in list(sys.modules.values()):  # modules that imported the function by name
                if getattr(mod, 'resolve_module', None) is orig:
                    mod.resolve_module = fast
        elif name == 'ema':
            from models.ema import ModelEMA
            if not getattr(ModelEMA.update, '_bench_fix', False):
                ModelEMA.update = _cached_update(ModelEMA.update)
                ModelEMA.update._bench_fix = True
        else:
            raise ValueError(f"unknown fix '{name}'; known: {', '.join(FIXES)}")
        applied.append(name)
    return applied
