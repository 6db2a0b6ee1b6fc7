"""Per-iteration learning-rate schedules from BasicSR-style ``scheduler:`` blocks.

A *schedule* (``MultiStepRestartLR``, ``CosineAnnealingRestartLR``) is a pure function
``lr(base_lr, step)``; :class:`IterLRScheduler` applies one to an optimizer, adds BasicSR's linear
warm-up and holds the resume state. Iterations are BasicSR's ``current_iter`` (1-based): BasicSR
steps its torch scheduler before every iteration but the first, so iteration ``i`` runs at the
schedule's ``step = i - 1``, except that iterations ``i < warmup_iter`` run at
``base_lr * i / warmup_iter``.
"""
import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import torch

from ckdsr.models.optimizers import callable_signature, resolve_kwargs
from ckdsr.utils.suggest import lookup


def _int_list(where: str, values: Sequence[Any], minimum: int) -> List[int]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ValueError(f'{where}: expected integers >= {minimum}, got {list(values)}')
        out.append(v)
    return out


class MultiStepRestartLR:
    """BasicSR's MultiStepRestartLR (``type: MultiStepLR`` maps here, as in BasicSR).

    After restart ``r`` (step 0 counts as a restart with weight 1) the lr is
    ``base_lr * weight_r * gamma ** #(milestones m with r < m <= step)``.
    """

    def __init__(self, milestones: Sequence[int], gamma: float = 0.1, restarts: Sequence[int] = (0,),
                 restart_weights: Sequence[float] = (1.0,)):
        self.milestones = sorted(_int_list('scheduler.milestones', milestones, 0))
        self.gamma = float(gamma)
        restarts = _int_list('scheduler.restarts', restarts, 0)
        if len(restarts) != len(restart_weights):
            raise ValueError(f'scheduler.restart_weights: needs one weight per restart '
                             f'({len(restarts)} restarts, {len(restart_weights)} weights)')
        self.restarts = {0: 1.0}
        self.restarts.update({r: float(w) for r, w in zip(restarts, restart_weights)})

    def lr(self, base_lr: float, step: int) -> float:
        last = max(r for r in self.restarts if r <= step)
        decays = sum(1 for m in self.milestones if last < m <= step)
        return base_lr * self.restarts[last] * self.gamma ** decays


class CosineAnnealingRestartLR:
    """BasicSR's CosineAnnealingRestartLR: cosine from ``weight_k * base_lr`` to ``eta_min``.

    Period ``k`` covers steps ``(C_{k-1}, C_k]`` (step 0 belongs to the first), where ``C`` is the
    cumulative sum of ``periods``; inside it
    ``lr = eta_min + weight_k * 0.5 * (base_lr - eta_min) * (1 + cos(pi * (step - C_{k-1}) / period_k))``.
    Past the last period the lr stays at the final value (BasicSR raises there).
    """

    def __init__(self, periods: Sequence[int], restart_weights: Sequence[float] = (1.0,),
                 eta_min: float = 0.0):
        self.periods = _int_list('scheduler.periods', periods, 1)
        if len(self.periods) != len(restart_weights) or not self.periods:
            raise ValueError(f'scheduler.restart_weights: needs one weight per period '
                             f'({len(self.periods)} periods, {len(restart_weights)} weights)')
        self.weights = [float(w) for w in restart_weights]
        self.eta_min = float(eta_min)
        self.ends = [sum(self.periods[:k + 1]) for k in range(len(self.periods))]

    def lr(self, base_lr: float, step: int) -> float:
        step = min(step, self.ends[-1])
        k = next(i for i, end in enumerate(self.ends) if step <= end)
        start = self.ends[k - 1] if k else 0
        cos = math.cos(math.pi * (step - start) / self.periods[k])
        return self.eta_min + self.weights[k] * 0.5 * (base_lr - self.eta_min) * (1.0 + cos)


#: option ``type`` -> schedule class
SCHEDULES: Dict[str, Callable] = {
    'MultiStepLR': MultiStepRestartLR,
    'MultiStepRestartLR': MultiStepRestartLR,
    'CosineAnnealingRestartLR': CosineAnnealingRestartLR,
}


def scheduler_class(type_name: str, where: str = 'scheduler') -> Callable:
    """The schedule class registered as ``type_name``; its constructor's keywords are the option keys."""
    return lookup(SCHEDULES, type_name, 'scheduler', where)


def scheduler_signature(type_name: str) -> Dict[str, Any]:
    """Accepted option keys of scheduler ``type_name`` and their defaults (``REQUIRED`` if none)."""
    return callable_signature(scheduler_class(type_name).__init__)


#: ``{type: {key: default}}`` for every known scheduler (for the option validator)
SCHEDULER_ARGS: Dict[str, Dict[str, Any]] = {name: scheduler_signature(name) for name in SCHEDULES}


class IterLRScheduler:
    """Sets an optimizer's lr for each iteration from a schedule, with linear warm-up.

    On construction the lr of iteration 1 is applied; call :meth:`step` once after every
    optimizer step (it applies the lr of the next iteration). ``state_dict`` stores the next
    iteration and the base lrs, so a resumed run continues exactly.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule, warmup_iter: Optional[int] = -1):
        self.optimizer = optimizer
        self.schedule = schedule
        self.warmup_iter = -1 if warmup_iter is None else int(warmup_iter)
        self.base_lrs = [float(g['lr']) for g in optimizer.param_groups]
        self.current_iter = 1
        self._apply()

    def get_lr_at(self, current_iter: int) -> List[float]:
        """The lr of every param group at 1-based iteration ``current_iter`` (pure)."""
        if current_iter < self.warmup_iter:
            return [b * current_iter / self.warmup_iter for b in self.base_lrs]
        return [self.schedule.lr(b, current_iter - 1) for b in self.base_lrs]

    def _apply(self) -> None:
        for group, lr in zip(self.optimizer.param_groups, self.get_lr_at(self.current_iter)):
            group['lr'] = lr

    def step(self) -> None:
        """Advance to the next iteration and set its lr."""
        self.current_iter += 1
        self._apply()

    def set_iter(self, current_iter: int) -> None:
        """Jump to ``current_iter`` (e.g. to stay in sync after a skipped step) and set its lr."""
        self.current_iter = int(current_iter)
        self._apply()

    def get_last_lr(self) -> List[float]:
        """The lrs currently set (those of ``self.current_iter``)."""
        return self.get_lr_at(self.current_iter)

    def state_dict(self) -> Dict[str, Any]:
        return {'current_iter': self.current_iter, 'base_lrs': list(self.base_lrs)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if len(state['base_lrs']) != len(self.optimizer.param_groups):
            raise ValueError(f"scheduler state has {len(state['base_lrs'])} param groups, the "
                             f'optimizer {len(self.optimizer.param_groups)}')
        self.base_lrs = [float(b) for b in state['base_lrs']]
        self.current_iter = int(state['current_iter'])
        self._apply()


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Mapping[str, Any], warmup_iter: Optional[int] = -1,
                    where: str = 'train.scheduler') -> IterLRScheduler:
    """An :class:`IterLRScheduler` for ``cfg['type']``; ``warmup_iter`` is BasicSR's
    ``train.warmup_iter`` (-1: none). ``cfg`` is never mutated."""
    if 'type' not in cfg:
        raise KeyError(f"{where}: missing 'type' (one of {', '.join(SCHEDULES)})")
    cls = scheduler_class(cfg['type'], where)
    kwargs = resolve_kwargs(where, cfg, scheduler_signature(cfg['type']))
    try:
        schedule = cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(str(err).replace('scheduler.', f'{where}.', 1)) from None
    return IterLRScheduler(optimizer, schedule, warmup_iter)
