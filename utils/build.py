"""Build registered objects from option sub-trees without mutating them."""
import copy
from typing import Any, Mapping

from ckdsr.utils.registry import Registry

#: keys that belong to the surrounding option block, not to the constructor
META_KEYS = ('type',)


def build_from_cfg(cfg: Mapping[str, Any], registry: Registry, skip=(), **extra) -> Any:
    """``registry.get(cfg['type'])(**rest_of_cfg, **extra)``; ``cfg`` itself is left untouched.

    ``skip`` names further keys of ``cfg`` that the caller consumes itself (e.g. a loss term's
    ``weight``).
    """
    if 'type' not in cfg:
        raise KeyError(f"option block for the {registry.name} registry has no 'type' key: {dict(cfg)}")
    cls = registry.get(cfg['type'])
    kwargs = {k: copy.deepcopy(v) for k, v in cfg.items() if k not in META_KEYS and k not in skip}
    kwargs.update(extra)
    return cls(**kwargs)
