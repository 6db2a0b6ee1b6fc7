"""Name -> object registries for archs, losses, models, datasets and metrics.

A miss answers with the closest registered names, so a typo in an option file's ``type:``
is a one-line fix.
"""
from typing import Any, Callable, Dict, Iterator, Optional

from ckdsr.utils.suggest import closest


class Registry:
    """A named mapping filled by the ``@REGISTRY.register()`` decorator."""

    def __init__(self, name: str):
        self._name = name
        self._items: Dict[str, Any] = {}

    @property
    def name(self) -> str:
        return self._name

    def register(self, obj: Optional[Any] = None, name: Optional[str] = None) -> Callable:
        """Register ``obj`` under ``name`` (default: its ``__name__``). Usable as a decorator."""

        def _add(o):
            key = name or o.__name__
            if key in self._items and self._items[key] is not o:
                raise KeyError(f"'{key}' is already registered in the {self._name} registry")
            self._items[key] = o
            return o

        return _add(obj) if obj is not None else _add

    def get(self, name: str) -> Any:
        if name in self._items:
            return self._items[name]
        hits = closest(name, self._items)
        hint = f" Did you mean {', '.join(repr(h) for h in hits)}?" if hits else ""
        raise KeyError(
            f"No {self._name} named '{name}'.{hint} Registered: {', '.join(sorted(self._items))}")

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def keys(self):
        return sorted(self._items)

    def __repr__(self) -> str:
        return f"Registry({self._name}: {', '.join(sorted(self._items))})"


ARCH_REGISTRY = Registry('arch')
LOSS_REGISTRY = Registry('loss')
MODEL_REGISTRY = Registry('model')
DATASET_REGISTRY = Registry('dataset')
METRIC_REGISTRY = Registry('metric')
