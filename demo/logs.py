"""Read a run's history back from the lines the training loop logs (``train.log``).

The trainer logs, through :class:`ckdsr.utils.progress.MessageLogger` and :meth:`ckdsr.engine.trainer.Trainer.validate`::

    2026-01-01 12:00:00,123 INFO: experiment NAME: 283 training samples, ... starting at 0
    2026-01-01 12:00:20,456 INFO: [epoch:  0, iter:   20/1,500, lr:(9.973e-04)] 1.00 it/s, ... | l_pix: 1.5e-01
    2026-01-01 12:00:30,789 INFO: validation Set5 @ iter 30: psnr: 15.7789, ssim: 0.4688
    2026-01-01 12:01:00,000 INFO: training done

:func:`parse_line` turns one line into an event and :func:`read_history` a whole log into a
:class:`RunHistory` (loss and validation curves, training-step time). The demo reads the same
lines live from the training process to drive its progress bar.
"""
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Dict, List, Optional, Tuple

_STAMP = r'(?P<stamp>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3}) \w+: '
_PROGRESS = re.compile(_STAMP + r'\[epoch:\s*\d+, iter:\s*(?P<iter>[\d,]+)/(?P<total>[\d,]+), lr:\([^)]*\)\] '
                       r'(?P<speed>[\d.]+) it/s[^|]*(?:\| (?P<losses>.*))?$')
_VALIDATION = re.compile(_STAMP + r'validation (?P<dataset>.+?) @ iter (?P<iter>\d+): (?P<metrics>.*)$')
_START = re.compile(_STAMP + r'experiment .+: .*starting at (?P<iter>\d+)\s*$')
_DONE = re.compile(_STAMP + r'training done\s*$')
_PAIR = re.compile(r'([A-Za-z_][\w.]*): ([-+\d.eE]+|nan|inf|-inf)')


def _stamp(text: str) -> datetime:
    return datetime.strptime(text, '%Y-%m-%d %H:%M:%S,%f')


def _pairs(text: Optional[str]) -> Dict[str, float]:
    return {k: float(v) for k, v in _PAIR.findall(text or '')}


@dataclass
class Event:
    kind: str                        # 'start' | 'progress' | 'validation' | 'done'
    time: datetime
    iter: int = 0
    total: int = 0
    it_per_s: float = 0.0
    values: Dict[str, float] = field(default_factory=dict)   # losses or metrics
    dataset: str = ''


def parse_line(line: str) -> Optional[Event]:
    """The event a trainer log line records, or None for any other line."""
    line = line.rstrip('\n')
    m = _PROGRESS.search(line)
    if m:
        return Event('progress', _stamp(m['stamp']), int(m['iter'].replace(',', '')),
                     int(m['total'].replace(',', '')), float(m['speed']), _pairs(m['losses']))
    m = _VALIDATION.search(line)
    if m:
        return Event('validation', _stamp(m['stamp']), int(m['iter']), values=_pairs(m['metrics']),
                     dataset=m['dataset'])
    m = _START.search(line)
    if m:
        return Event('start', _stamp(m['stamp']), int(m['iter']))
    m = _DONE.search(line)
    if m:
        return Event('done', _stamp(m['stamp']))
    return None


@dataclass
class RunHistory:
    """What one training run logged."""
    losses: List[Tuple[int, Dict[str, float]]] = field(default_factory=list)      # (iter, mean since the last line)
    validation: List[Tuple[int, Dict[str, float]]] = field(default_factory=list)  # (iter, metrics, first val set)
    step_seconds: float = 0.0        # time inside training steps (sum over progress windows of iters / it/s)
    wall_seconds: float = 0.0        # first to last line: steps plus validation and checkpointing
    total_iter: int = 0
    finished: bool = False
    command: str = ''                # how the run was started (filled in by the demo)

    def add(self, event: Event, last_iter: int) -> int:
        """Fold one event in; returns the iteration reached."""
        if event.kind == 'progress':
            self.losses.append((event.iter, event.values))
            if event.it_per_s > 0:
                self.step_seconds += (event.iter - last_iter) / event.it_per_s
            self.total_iter = event.total
            return event.iter
        if event.kind == 'validation':
            if not self.validation or self.validation[-1][0] != event.iter:  # first val set only
                self.validation.append((event.iter, event.values))
        elif event.kind == 'done':
            self.finished = True
        return last_iter

    def curve(self, key: str, source: str = 'losses') -> Tuple[List[int], List[float]]:
        """``(iters, values)`` of one loss term or validation metric."""
        rows = self.losses if source == 'losses' else self.validation
        pts = [(i, v[key]) for i, v in rows if key in v]
        return [p[0] for p in pts], [p[1] for p in pts]


def read_history(path: str) -> RunHistory:
    """Parse a ``train.log``. A log that holds several runs (the file is appended to) yields the last one."""
    hist, last, first_time, last_time = RunHistory(), 0, None, None
    with open(path, 'r', encoding='utf-8', errors='replace') as f:
        for line in f:
            event = parse_line(line)
            if event is None:
                continue
            if event.kind == 'start':
                hist, last, first_time = RunHistory(), event.iter, event.time
            last = hist.add(event, last)
            first_time = first_time or event.time
            last_time = event.time
    if first_time is not None and last_time is not None:
        hist.wall_seconds = (last_time - first_time).total_seconds()
    return hist
