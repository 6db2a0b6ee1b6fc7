"""Distillation components by their ``distill.<key>`` option section."""
from dataclasses import dataclass
from typing import Any, Callable, Dict

from ckdsr.utils.registry import Registry


@dataclass(frozen=True)
class ComponentSpec:
    """``distill.<key>`` is validated by ``schema`` and built by ``build(model, cfg)``."""
    key: str
    schema: Any
    build: Callable[[Any, Dict[str, Any]], Any]
    doc: str = ''


COMPONENT_REGISTRY = Registry('distill component')


def register_component(spec: ComponentSpec) -> ComponentSpec:
    COMPONENT_REGISTRY.register(spec, name=spec.key)
    return spec
