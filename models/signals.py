"""Per-step signals: named tensors computed lazily, at most once per step.

A distillation term names the signals it consumes (``sr``, ``teacher_sr``, ``student_feats``,
``emb_negatives``...). A *provider* computes one or more signals from others; its dependencies are
declared up front, so the model can work out before training which frozen networks must run and
with which inputs — and batch them into one call each (DESIGN section 3).
"""
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set

from ckdsr.utils.suggest import closest


@dataclass
class Provider:
    """``fn(step) -> {signal: value}`` producing ``outputs`` from ``deps``.

    ``deps`` is a list shared by all outputs, or a mapping ``output -> list`` when each output
    reads different signals (one batched pass serving several outputs).
    """
    outputs: Sequence[str]
    fn: Callable[['Step'], Dict[str, Any]]
    deps: Any = ()
    doc: str = ''

    def deps_of(self, name: str) -> Sequence[str]:
        return self.deps.get(name, ()) if isinstance(self.deps, dict) else self.deps


class SignalGraph:
    """The providers of one model; answers which signals a set of terms needs transitively."""

    def __init__(self):
        self.providers: Dict[str, Provider] = {}

    def add(self, provider: Provider) -> None:
        for name in provider.outputs:
            self.providers[name] = provider

    def closure(self, wanted: Iterable[str], where: str = 'train.losses') -> Set[str]:
        """All signals needed to produce ``wanted`` (raises on an unknown name)."""
        seen: Set[str] = set()
        stack = list(wanted)
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            if name not in self.providers:
                hits = closest(name, self.providers)
                hint = f" (did you mean '{hits[0]}'?)" if hits else ''
                raise KeyError(f"{where}: unknown signal '{name}'{hint}; available: "
                               f"{', '.join(sorted(self.providers))}")
            seen.add(name)
            stack.extend(self.providers[name].deps_of(name))
        return seen

    def names(self) -> List[str]:
        return sorted(self.providers)


@dataclass
class Step:
    """The signals of one training step; ``step[name]`` computes on first use, then caches."""
    graph: SignalGraph
    needed: Set[str]
    values: Dict[str, Any] = field(default_factory=dict)
    calls: Dict[str, int] = field(default_factory=dict)  # provider call counts (tests, benchmarks)

    def __getitem__(self, name: str) -> Any:
        if name not in self.values:
            provider = self.graph.providers[name]
            out = provider.fn(self)
            key = provider.outputs[0]
            self.calls[key] = self.calls.get(key, 0) + 1
            missing = [o for o in provider.outputs if o not in out and o in self.needed]
            if missing:
                raise RuntimeError(f'provider of {provider.outputs} did not return {missing}')
            self.values.update(out)
        return self.values[name]

    def wants(self, name: str) -> bool:
        """Whether any term of this model needs ``name`` (lets providers skip unneeded work)."""
        return name in self.needed

    def get(self, name: str, default: Optional[Any] = None) -> Any:
        return self[name] if name in self.graph.providers else default
