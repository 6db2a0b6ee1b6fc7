"""The ``distill.gather`` component: signals over the GLOBAL batch (every DDP rank's images).

``distill.gather.signals: [a, b]`` provides ``a_global`` and ``b_global``: the signal concatenated
over ranks in rank order (:func:`ckdsr.utils.dist_gather.gather_signal`), with gradient where the signal
has one. With one process ``a_global`` is ``a`` itself. A contrastive term that reads the
``*_global`` signals computes, on every rank, the loss one process computes on the global batch;
the gather's backward and DDP's gradient averaging together give that process's gradient (see
:mod:`ckdsr.utils.dist_gather`). So its negatives -- "the other images of the batch" -- no longer depend
on how many GPUs share the batch (issue 17, point 8).

:func:`require_global_inputs` is the guard methods call before their first step: with several
processes, a batch-coupled term that reads a per-rank signal is refused with a one-line error --
unless its loss reduces over the ranks itself (``reduces_over_ranks``: ContrastiveRatioLoss with
``reduce: global`` all-reduces its per-layer sums and counts, a few scalars instead of the whole
batch's embeddings). Such a loss must NOT read a ``*_global`` signal: the gather's backward and
its own both sum over ranks, and the gradient would come out ``world_size`` times too large; the
gather component refuses that before the first step (:func:`refuse_double_reduction`).
"""
from typing import Iterable, List

from ckdsr.models.distill.component import Component
from ckdsr.models.distill.registry import ComponentSpec, register_component
from ckdsr.models.signals import Provider
from ckdsr.utils.dist_gather import gather_signal
from ckdsr.utils.option_spec import Field, ListOf, Section

SUFFIX = '_global'


class Gather(Component):
    """Provides ``<signal>_global`` for each configured signal."""

    name = 'gather'

    def __init__(self, signals: Iterable[str]):
        self.signals = list(signals)
        bad = [s for s in self.signals if s.endswith(SUFFIX)]
        if bad:
            raise ValueError(f'distill.gather.signals: list the per-rank signals, not {bad}')

    checked = False

    def before_step(self, model, current_iter: int) -> None:
        if not self.checked:
            refuse_double_reduction(model)
            self.checked = True

    def providers(self) -> List[Provider]:
        def make(name: str) -> Provider:
            return Provider((name + SUFFIX,), lambda step: {name + SUFFIX: gather_signal(step[name])},
                            deps=(name,), doc=f'{name} over the global batch (all ranks)')
        return [make(s) for s in self.signals]


def _term_offset(model) -> int:
    """``train.pixel_opt``, when set, is term 0: the index in ``train.losses`` is one less."""
    return 1 if (model.opt.get('train') or {}).get('pixel_opt') else 0


def require_global_inputs(model, loss_type: str, args: Iterable[str], why: str) -> None:
    """With several processes, raise if a ``train.losses`` term of ``loss_type`` feeds one of
    ``args`` from a per-rank signal (one not ending in ``_global``), unless the term's loss reduces
    over the ranks itself (``reduces_over_ranks``). No-op with one process."""
    if getattr(model, 'world_size', 1) <= 1:
        return
    offset = _term_offset(model)
    for i, term in enumerate(model.terms):
        if type(term.loss).__name__ != loss_type or getattr(term.loss, 'reduces_over_ranks', False):
            continue
        for arg in args:
            sig = term.inputs.get(arg)
            if sig is not None and not sig.endswith(SUFFIX):
                raise ValueError(
                    f"train.losses.{i - offset}.inputs.{arg} ({term.name}): reads '{sig}', this rank's "
                    f'images only, with {model.world_size} processes; {why} would depend on the GPU count: '
                    f"read '{sig}{SUFFIX}' and list '{sig}' in distill.gather.signals"
                    + (', or set reduce: global' if hasattr(term.loss, 'reduces_over_ranks') else ''))


def refuse_double_reduction(model) -> None:
    """Raise if a term whose loss reduces over the ranks itself (``reduces_over_ranks``) reads a
    gathered ``*_global`` signal (its gradient would be summed over ranks twice). Checked with any
    process count, so a one-GPU trial run already reports it."""
    offset = _term_offset(model)
    for i, term in enumerate(model.terms):
        if not getattr(term.loss, 'reduces_over_ranks', False):
            continue
        for arg, sig in term.inputs.items():
            if sig.endswith(SUFFIX):
                raise ValueError(
                    f"train.losses.{i - offset}.inputs.{arg} ({term.name}): reads the gathered '{sig}' but "
                    f"{type(term.loss).__name__} reduces over the ranks itself (reduce: global); the gradient "
                    f"would be summed twice: read '{sig[:-len(SUFFIX)]}', or set reduce: local")


GATHER_SCHEMA = Section({
    'signals': ListOf(Field(str), doc='signals to gather over all ranks; each <name> provides <name>_global'),
}, absent_none=True, doc='signals over the global batch (all DDP ranks), for batch-coupled contrastive terms')

register_component(ComponentSpec(
    key='gather',
    schema=GATHER_SCHEMA,
    build=lambda model, cfg: Gather(cfg.get('signals') or ()),
    doc='provides <signal>_global for each of distill.gather.signals'))
