"""DCKD's history model and its negatives (Zhou et al., "Dynamic Contrastive Knowledge Distillation
for Efficient Image Restoration", AAAI 2025, section "Dynamic contrastive regularisation").

The history model is a frozen copy of the student that lags behind it: every ``every`` iterations

    his <- d * his + (1 - d) * src,   d = 0.1   (paper: the EMA-updated history model of DCR;
                                                 released code: update_model_ema(update_decay))

where ``src`` is the current student (``source: student``, the paper) or the EMA student
(``source: ema``; official code: ``update_model_ema`` reads ``net_g_ema``, so it needs
``train.ema_decay > 0``; without an EMA copy it falls back to the current student with a warning). The period grows with training: 1000 iterations for the first 100k,
2000 until 200k, 3000 after (official ``step: [1000, 2000, 3000]`` indexed by
``(iter - 1) // 100000``, which fails past 300k; here ``schedule`` is a list of
``[until_iter, every]`` pairs and the last pair's period continues forever). At start the history
model is a copy of the source (official ``update_model_ema(0)``).

Negatives (signal ``negatives``, (B, N, C, H, W)): the history model applied to the clean LR batch
(``include_clean``) and ``num_degraded`` degraded copies of it (official: clean + ``num_neg: 4``, so
N = 5; paper: 4 degraded), all in ONE batched forward. Degradations come from :class:`ckdsr.data.degradations.Degrader` (official default: Gaussian
noise sigma U[1, 30]/255, grey with probability 0.5; blur and resize available), drawn from a
``torch.Generator`` that is part of the resume state.

``variant`` (``paper`` | ``official``) sets the defaults of the two points where the released code
and the paper differ (docs/dckd.md): ``source`` (paper: the current student, section "Dynamic
contrastive regularisation"; release: the EMA student) and ``include_clean`` (paper Eq. 4: the
negatives are N degraded images; release: the clean LR plus ``num_neg: 4`` degraded copies). An
explicit ``source`` / ``include_clean`` overrides the variant.

Differences from the official code, both documented choices: the update also averages floating
point buffers (ModelEMA; RCAN/SwinIR have none that change), and degradation parameters are drawn
per image and copy (see :mod:`ckdsr.data.degradations`).
"""
import logging
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple

import torch

from ckdsr.data.degradations import Degrader
from ckdsr.models.distill.component import Component, load_generator_state
from ckdsr.models.distill.registry import ComponentSpec, register_component
from ckdsr.models.ema import ModelEMA
from ckdsr.models.network_io import unwrap
from ckdsr.models.signals import Provider
from ckdsr.utils.option_spec import Field, Section, signature_params

logger = logging.getLogger('ckdsr')

#: official DCKD: every 1000 iterations up to 100k, 2000 up to 200k, 3000 after
DEFAULT_SCHEDULE = ((100000, 1000), (200000, 2000), (300000, 3000))

#: what ``variant`` decides when ``source`` / ``include_clean`` are left null
VARIANT_DEFAULTS: Dict[str, Dict[str, Any]] = {
    'paper': {'source': 'student', 'include_clean': False},
    'official': {'source': 'ema', 'include_clean': True},
}


def resolve(cfg: Dict[str, Any], key: str) -> Any:
    """``cfg[key]``, or the value of ``cfg['variant']`` (default paper) when it is null or absent."""
    value = cfg.get(key)
    return VARIANT_DEFAULTS[cfg.get('variant') or 'paper'][key] if value is None else value


def check_schedule(schedule: Sequence[Sequence[int]], where: str = 'distill.history.schedule') -> List[Tuple[int, int]]:
    """``[[until_iter, every], ...]`` with increasing ``until_iter`` and positive periods."""
    pairs = []
    for i, pair in enumerate(schedule):
        if len(pair) != 2 or any(int(v) != v or v < 1 for v in pair):
            raise ValueError(f'{where}.{i}: expected [until_iter, every] with positive integers, got {list(pair)}')
        pairs.append((int(pair[0]), int(pair[1])))
    if not pairs:
        raise ValueError(f'{where}: needs at least one [until_iter, every] pair')
    for (a, _), (b, _) in zip(pairs, pairs[1:]):
        if b <= a:
            raise ValueError(f'{where}: until_iter values must increase, got {[p[0] for p in pairs]}')
    return pairs


def update_period(schedule: Sequence[Tuple[int, int]], it: int) -> int:
    """The period at iteration ``it`` (1-based): that of the first pair with ``it <= until_iter``;
    past the last pair, the last pair's period."""
    for until, every in schedule:
        if it <= until:
            return every
    return schedule[-1][1]


def update_due(schedule: Sequence[Tuple[int, int]], it: int) -> bool:
    """Whether the history model is updated after iteration ``it`` (official: ``it % step[i] == 0``)."""
    return it % update_period(schedule, it) == 0


class HistoryNegatives(Component):
    """The history model (a :class:`ModelEMA` of the source with decay ``d``) and its negatives."""

    name = 'history'

    def __init__(self, model, cfg: Dict[str, Any]):
        if (model.opt.get('distill') or {}).get('negatives'):
            raise ValueError('distill.history and distill.negatives both provide the `negatives` signal; '
                             'DCKD uses distill.history: remove distill.negatives')
        self.variant = cfg.get('variant') or 'paper'
        self.source = resolve(cfg, 'source')
        if self.source == 'ema' and model.ema is None:
            logger.warning('distill.history.source is "ema" but train.ema_decay is 0 (no EMA student): '
                           'the history model follows the raw student instead (official DCKD uses '
                           'ema_decay 0.999)')
            self.source = 'student'
        self.decay = float(cfg['decay'])
        if not 0.0 <= self.decay <= 1.0:
            raise ValueError(f'distill.history.decay must be in [0, 1], got {self.decay}')
        self.schedule = check_schedule(cfg['schedule'])
        self.num_degraded = int(cfg['num_degraded'])
        self.include_clean = bool(resolve(cfg, 'include_clean'))
        if self.num_degraded < 0 or self.num_degraded + self.include_clean < 1:
            raise ValueError('distill.history: needs at least one negative (include_clean and/or num_degraded >= 1)')
        self.degrader = Degrader(**(cfg.get('degradation') or {}))
        self.generator = torch.Generator().manual_seed(int(model.seed) + 1000003 * int(model.rank))
        self.autocast = model.autocast
        self.history = ModelEMA(self.source_net(model), self.decay)  # a frozen copy of the source
        self.updates = 0
        self.last_update = 0

    # ------------------------------------------------------------------ the update
    def source_net(self, model) -> torch.nn.Module:
        return model.ema.module if self.source == 'ema' else unwrap(model.net_g)

    @property
    def net(self) -> torch.nn.Module:
        return self.history.module

    def update(self, model) -> None:
        """``his <- d * his + (1 - d) * src`` on every floating-point parameter and buffer."""
        self.history.update(self.source_net(model), decay=self.decay)
        self.updates += 1

    def after_step(self, model, current_iter: int) -> None:
        if update_due(self.schedule, current_iter):
            self.update(model)
            self.last_update = current_iter

    # ------------------------------------------------------------------ negatives
    def inputs(self, lq: torch.Tensor) -> torch.Tensor:
        """(B, N, C, H, W): the clean LR (if ``include_clean``) then ``num_degraded`` degraded copies."""
        parts = [lq.unsqueeze(1)] if self.include_clean else []
        if self.num_degraded:
            parts.append(self.degrader(lq, self.num_degraded, self.generator))
        return torch.cat(parts, 1)

    @torch.no_grad()
    def negatives(self, lq: torch.Tensor) -> torch.Tensor:
        x = self.inputs(lq.detach())
        b, n = x.shape[:2]
        ctx = self.autocast() if self.autocast else torch.autocast('cpu', enabled=False)
        with ctx:
            out = self.net(x.reshape(b * n, *x.shape[2:]))  # ONE batched forward
        out = out.float()
        return out.reshape(b, n, *out.shape[1:])

    def providers(self) -> List[Provider]:
        return [Provider(('negatives',), lambda step: {'negatives': self.negatives(step['lq'])}, deps=('lq',),
                         doc='history model on the clean + degraded LR, (B, N, C, H, W), one forward')]

    # ------------------------------------------------------------------ resume state
    def state_dict(self) -> Dict[str, Any]:
        return {'weights': self.history.state_dict(), 'generator': self.generator.get_state(),
                'updates': self.updates, 'last_update': self.last_update, 'source': self.source}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if 'weights' in state:
            self.history.load_state_dict(state['weights'])
        load_generator_state(self.generator, state)
        self.updates = int(state.get('updates', 0))
        self.last_update = int(state.get('last_update', 0))
        if state.get('source', self.source) != self.source:
            logger.warning(f"distill.history: the saved history model followed the {state['source']} "
                           f'network; it now follows the {self.source} one')


def _degradation_section() -> Section:
    params, _ = signature_params(Degrader)
    return Section({k: Field(ann, default, f'Degrader.{k}') for k, (ann, default) in params.items()},
                   doc='how the N-1 copies of the LR are degraded (default: official DCKD, noise only)')


register_component(ComponentSpec(
    key='history',
    schema=Section({
        'variant': Field(Literal['paper', 'official'], 'paper',
                         'sets the defaults of source and include_clean: paper (current student; N degraded '
                         'negatives, Eq. 4) or official (EMA student; clean LR + degraded copies)'),
        'source': Field(Optional[Literal['ema', 'student']], None,
                        'network the history model follows: the EMA student (official; needs train.ema_decay > 0) '
                        'or the current student (paper); null: the variant\'s'),
        'decay': Field(float, 0.1, 'd in his = d*his + (1-d)*src (paper: 0.1)'),
        'schedule': Field(Sequence[Sequence[int]], [list(p) for p in DEFAULT_SCHEDULE],
                          'update every `every` iterations until `until_iter`: [[until_iter, every], ...]; '
                          'the last period continues past the last until_iter'),
        'num_degraded': Field(int, 4, 'degraded LR copies per image (official num_neg: 4; the paper\'s N '
                                      'is taken as 4 too, an assumption)'),
        'include_clean': Field(Optional[bool], None, 'also feed the clean LR to the history model '
                                                     '(null: the variant\'s; official yes, paper no)'),
        'degradation': _degradation_section(),
    }, absent_none=True, doc='DCKD history model: negatives = history(clean + degraded LR)'),
    build=lambda model, cfg: HistoryNegatives(model, cfg),
    doc='provides negatives (B, N, C, H, W) from the history model'))
