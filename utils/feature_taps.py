"""Intermediate features by module path, through forward hooks (the torchdistill idea): archs carry
no distillation code, option files name the modules to tap.

    with FeatureTaps(net, ['body.1', 'conv_after_body'], detach=False) as taps:
        out = net(lr)
        f_body1, f_after = taps.features()      # in the order given, then cleared

Every forward of the tapped net (its outermost module) opens a new *call*. When one step runs the
same net twice (CSD: full width, then the slim student; a history model on two batches), read
``taps.features(call=i)`` or ``taps.features_per_call()`` before clearing. A module that runs more
than once inside one call (a shared block, e.g. CARN-M's recursive ``b1``) cannot be tapped
unambiguously and reading it raises. Tapped tensors are the module outputs themselves: an in-place op
after the module (ReLU(inplace=True)) would change them, which is why our archs use no in-place
activations. Paths may carry the ``module.`` prefix of DataParallel/DDP or ``_orig_mod.`` of
torch.compile; hooks go on the wrapped module, so they fire whichever way it is called.
torch.compile: tapping is tested eagerly; create the taps before compiling if you compile.
"""
from typing import Dict, Iterable, List, Optional

import torch
from torch import nn

from ckdsr.utils.suggest import closest

WRAPPER_PREFIXES = ('module.', '_orig_mod.')


def unwrap_model(net: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if isinstance(net, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            net = net.module
        elif isinstance(getattr(net, '_orig_mod', None), nn.Module):
            net = net._orig_mod
        else:
            return net


def resolve_module(root: nn.Module, path: str) -> nn.Module:
    """The submodule of ``root`` at dotted ``path`` ('' is the root); an unknown path raises a
    KeyError naming it and the closest existing module paths."""
    while path.startswith(WRAPPER_PREFIXES):
        path = path.split('.', 1)[1]
    try:  # direct lookup; the full scan below is only for the error message
        return root.get_submodule(path)
    except AttributeError:
        pass
    modules = dict(root.named_modules())
    hits = closest(path, [p for p in modules if p], n=5)
    hint = f"; closest: {', '.join(hits)}" if hits else ''
    raise KeyError(f"feature tap '{path}' is not a module path of {type(root).__name__}{hint}")


class FeatureTaps:
    """Forward hooks recording the outputs of the modules at ``paths`` of ``net``.

    Hooks are registered at construction and removed by :meth:`remove` or on leaving a ``with``
    block. ``detach=True`` stores detached outputs (no graph kept, e.g. for a frozen teacher).
    """

    def __init__(self, net: nn.Module, paths: Iterable[str], detach: bool = False):
        self.root = unwrap_model(net)
        self.paths = list(paths)
        if len(set(self.paths)) != len(self.paths):
            raise ValueError(f'feature taps list a path twice: {self.paths}')
        self.detach = detach
        self._calls: List[Dict[str, List]] = []
        modules = [resolve_module(self.root, p) for p in self.paths]
        self._handles = [self.root.register_forward_pre_hook(self._open_call)]
        for path, module in zip(self.paths, modules):
            self._handles.append(module.register_forward_hook(self._recorder(path)))

    # -- hooks -----------------------------------------------------------------------------------
    def _open_call(self, _module, _args) -> None:
        self._calls.append({})

    def _recorder(self, path: str):
        def hook(_module, _args, output):
            if not self._calls:  # the tapped module was run on its own, outside the root
                self._calls.append({})
            if self.detach:
                output = output.detach() if isinstance(output, torch.Tensor) else output
            self._calls[-1].setdefault(path, []).append(output)
        return hook

    # -- reading -----------------------------------------------------------------------------------
    @property
    def num_calls(self) -> int:
        """Forward calls of the net recorded since the last clear."""
        return len(self._calls)

    def _read(self, index: int) -> List:
        record = self._calls[index]
        out = []
        for path in self.paths:
            values = record.get(path, [])
            if not values:
                raise RuntimeError(f"feature tap '{path}' did not run in forward call {index} of "
                                   f'{type(self.root).__name__}; tap a module on the path the input takes')
            if len(values) > 1:
                raise RuntimeError(f"feature tap '{path}' ran {len(values)} times in one forward call (a shared "
                                   'module); tap a module that runs once per forward, e.g. its parent block')
            out.append(values[0])
        return out

    def features(self, call: Optional[int] = None, clear: bool = True) -> List:
        """The tapped outputs, in the order of ``paths``, of forward call ``call`` (None: the only
        call recorded; more than one is an error). ``clear`` forgets all recorded calls afterwards."""
        n = len(self._calls)
        if n == 0:
            raise RuntimeError('no forward call recorded by the feature taps: run the net after creating '
                               'the taps (and before clearing them)')
        if call is None and n > 1:
            raise RuntimeError(f'the feature taps recorded {n} forward calls; pass call=0..{n - 1} '
                               'or use features_per_call()')
        index = 0 if call is None else call
        if not -n <= index < n:
            raise IndexError(f'feature taps: call {call} out of range, {n} forward calls recorded')
        out = self._read(index)
        if clear:
            self.clear()
        return out

    def features_per_call(self, clear: bool = True) -> List[List]:
        """``[features(call=0), features(call=1), ...]`` for every recorded call."""
        out = [self._read(i) for i in range(len(self._calls))]
        if clear:
            self.clear()
        return out

    def clear(self) -> None:
        self._calls = []

    # -- lifetime ----------------------------------------------------------------------------------
    def remove(self) -> None:
        """Remove every hook (idempotent) and forget recorded features."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.clear()

    def __enter__(self) -> 'FeatureTaps':
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
