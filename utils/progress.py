"""Training progress lines: speed, data-loader wait share, ETA and loss terms.

The loop marks two moments per iteration on :class:`MessageLogger`::

    progress.start()                         # before the loop, and again after validation/saving
    for batch in loader:
        progress.data_done()                 # the batch has arrived
        losses = model.train_step(batch, it)
        progress.iter_done()                 # the iteration is over
        if it % print_freq == 0:
            progress.log(epoch, it, scheduler.get_last_lr(), losses)

Time outside ``start() .. iter_done()`` (validation, checkpointing) is not counted.

Interactive runs (rank 0's stderr is a terminal) also get a tqdm bar (:func:`training_bar`) that
:class:`MessageLogger` advances; the log lines still go to the log file, and to the console through
``tqdm.write`` so they do not tear the bar. Runs whose stderr is a file or pipe are unchanged.
"""
import logging
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, TextIO

import torch


def format_eta(seconds: Optional[float]) -> str:
    """``HH:MM:SS``, with a ``Nd`` prefix past a day; ``--:--:--`` when unknown."""
    if seconds is None:
        return '--:--:--'
    s = int(round(seconds))
    days, s = divmod(s, 86400)
    hms = f'{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}'
    return f'{days}d {hms}' if days else hms


def _to_float(v: Any) -> float:
    if isinstance(v, torch.Tensor):
        return float(v.detach().float().mean().item())
    return float(v)


@dataclass
class ProgressMessage:
    """One progress line's values; ``str()`` formats it."""
    epoch: int
    current_iter: int
    total_iter: int
    lrs: Sequence[float]
    it_per_s: float
    data_share: float
    eta_s: Optional[float]
    losses: Dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        total = f'{self.total_iter:,}'
        lrs = ','.join(f'{lr:.3e}' for lr in self.lrs)
        line = (f'[epoch:{self.epoch:3d}, iter:{self.current_iter:>{len(total)},}/{total}, lr:({lrs})] '
                f'{self.it_per_s:.2f} it/s, data {100 * self.data_share:.0f}%, '
                f'eta: {format_eta(self.eta_s)}')
        if self.losses:
            line += ' | ' + ' '.join(f'{k}: {v:.4e}' for k, v in self.losses.items())
        return line


class MessageLogger:
    """Times iterations and formats a :class:`ProgressMessage` every time :meth:`log` is called.

    ``it/s`` and the data-wait share are averaged over the iterations since the previous line
    (since ``start_iter`` for the first); the ETA uses the average time per iteration of the whole
    run. ``clock`` is injectable for tests. ``tb_writer`` (a ``SummaryWriter``) receives
    ``losses/<name>``, ``train/lr`` (``train/lr_<i>`` for further groups), ``train/it_per_s`` and
    ``train/data_share``; ``logger`` receives each line at INFO.
    """

    def __init__(self, total_iter: int, start_iter: int = 0, tb_writer: Any = None, logger: Any = None,
                 clock: Callable[[], float] = time.perf_counter, bar: Any = None):
        self.total_iter, self.start_iter = int(total_iter), int(start_iter)
        self.tb_writer, self.logger, self._clock = tb_writer, logger, clock
        self.bar = bar  # a tqdm bar (training_bar) advanced once per iteration, or None
        self._mark: Optional[float] = None
        self._data_time = 0.0                                # of the iteration in progress
        self._window = {'iter': self.start_iter, 'busy': 0.0, 'data': 0.0}
        self._run_busy = 0.0

    # -------------------------------------------------------------- timing
    def start(self) -> None:
        """Start (or restart, after a pause) the clock of the next iteration."""
        self._mark = self._clock()
        self._data_time = 0.0

    def data_done(self) -> None:
        """The current iteration's batch is ready: the time since the iteration began was data wait."""
        if self._mark is None:
            self.start()
        self._data_time = self._clock() - self._mark

    def iter_done(self) -> None:
        """The current iteration is over; the next one starts now."""
        now = self._clock()
        if self._mark is not None:
            self.record(now - self._mark, self._data_time)
        self._mark = now
        self._data_time = 0.0
        if self.bar is not None:
            self.bar.update(1)

    def record(self, iter_time: float, data_time: float) -> None:
        """Add one iteration's timings (seconds; ``data_time`` is part of ``iter_time``)."""
        self._window['busy'] += iter_time
        self._window['data'] += data_time
        self._run_busy += iter_time

    # -------------------------------------------------------------- output
    def message(self, epoch: int, current_iter: int, lrs: Sequence[float],
                losses: Optional[Mapping[str, Any]] = None) -> ProgressMessage:
        """Build the line for ``current_iter`` and open a new averaging window."""
        w = self._window
        busy = w['busy']
        it_per_s = (current_iter - w['iter']) / busy if busy > 0 else 0.0
        data_share = w['data'] / busy if busy > 0 else 0.0
        done = current_iter - self.start_iter
        eta = None
        if done > 0 and self._run_busy > 0:
            eta = (self.total_iter - current_iter) * self._run_busy / done
        self._window = {'iter': current_iter, 'busy': 0.0, 'data': 0.0}
        return ProgressMessage(epoch=epoch, current_iter=current_iter, total_iter=self.total_iter,
                               lrs=[float(lr) for lr in lrs], it_per_s=it_per_s, data_share=data_share,
                               eta_s=eta, losses={k: _to_float(v) for k, v in (losses or {}).items()})

    def log(self, epoch: int, current_iter: int, lrs: Sequence[float],
            losses: Optional[Mapping[str, Any]] = None) -> ProgressMessage:
        """:meth:`message`, then write it to the logger and the tensorboard writer."""
        msg = self.message(epoch, current_iter, lrs, losses)
        if self.logger is not None:
            self.logger.info(str(msg))
        if self.bar is not None and msg.losses:
            self.bar.set_postfix_str(' '.join(f'{k}: {v:.3e}' for k, v in msg.losses.items()), refresh=False)
        if self.tb_writer is not None:
            for name, value in msg.losses.items():
                self.tb_writer.add_scalar(f'losses/{name}', value, current_iter)
            for i, lr in enumerate(msg.lrs):
                self.tb_writer.add_scalar('train/lr' if i == 0 else f'train/lr_{i}', lr, current_iter)
            self.tb_writer.add_scalar('train/it_per_s', msg.it_per_s, current_iter)
            self.tb_writer.add_scalar('train/data_share', msg.data_share, current_iter)
        return msg


class _ThroughBar:
    """A stream whose writes go through ``tqdm.write`` (the bar is cleared, the text written, the bar
    redrawn)."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> None:
        from tqdm import tqdm
        tqdm.write(text, file=self.stream, end='')

    def flush(self) -> None:
        self.stream.flush()


@contextmanager
def training_bar(total_iter: int, start_iter: int = 0, enabled: bool = True, stream: Optional[TextIO] = None,
                 logger: Optional[logging.Logger] = None) -> Iterator[Any]:
    """A tqdm bar over the training iterations when ``enabled`` and ``stream`` (default: stderr) is a
    terminal, else None. While it is shown, ``logger``'s console handlers that write to ``stream``
    print through ``tqdm.write``; file handlers are untouched."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, 'isatty', None)
    if not enabled or not (isatty and isatty()):
        yield None
        return
    from tqdm import tqdm
    handlers = [h for h in (logger.handlers if logger is not None else [])
                if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
                and h.stream is stream]
    bar = tqdm(total=total_iter, initial=start_iter, file=stream, desc='train', unit='it', dynamic_ncols=True)
    for h in handlers:
        h.setStream(_ThroughBar(stream))
    try:
        yield bar
    finally:
        for h in handlers:
            h.setStream(stream)
        bar.close()
