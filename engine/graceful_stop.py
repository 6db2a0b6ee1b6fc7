"""Graceful stop on SIGINT / SIGTERM: finish the current step, save a training state, exit.

SIGTERM is what SLURM, Kubernetes and most schedulers send before killing a preempted job; SIGINT is
Ctrl-C. The first signal only sets a flag that the training loop reads after each step; a second
signal of either kind stops at once (``KeyboardInterrupt``), keeping the newest complete training
state, as the atomic writes guarantee. Under DDP the ranks agree with one all-reduce of the flag per
step, so every rank stops after the same iteration even when only one received the signal.
"""
import signal
import threading
from typing import Dict, Optional

import torch

from ckdsr.utils.dist import all_reduce_mean

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def stop_exit_code(signum: int) -> int:
    """The exit status of a run stopped by ``signum``: ``128 + signum`` (130 SIGINT, 143 SIGTERM), the
    shell's convention for "ended by this signal", so job scripts can tell a stop from a finished run."""
    return 128 + int(signum)


class StopRequest:
    """Installs the handlers for the duration of a ``with`` block and remembers the first signal."""

    def __init__(self, world_size: int = 1):
        self.world_size = world_size
        self.signum: Optional[int] = None
        self._previous: Dict[int, object] = {}

    def __enter__(self) -> 'StopRequest':
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            for s in STOP_SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:  # the second signal: stop now
            raise KeyboardInterrupt(f'second {signal.Signals(signum).name}: stopping without saving')
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ''

    def agreed(self) -> bool:
        """Whether any rank was asked to stop (a collective under DDP: every rank must call it)."""
        if self.world_size <= 1:
            return self.signum is not None
        share = float(all_reduce_mean(torch.tensor(float(self.signum is not None))))
        if share > 0 and self.signum is None:
            self.signum = signal.SIGTERM  # stopping because another rank was asked to
        return share > 0
