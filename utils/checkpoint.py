"""Crash-safe checkpoint files: atomic writes and finding the newest complete training state.

Training states are ``<dir>/<iter>.state``. A write goes to ``<path>.tmp-<pid>`` in the same
directory, is flushed and fsync'ed, then renamed over ``path`` (``os.replace`` is atomic on POSIX
and Windows), so a reader sees the old file or the new one, never half of one.
"""
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, List, Optional, Union

import torch

PathLike = Union[str, os.PathLike]
STATE_SUFFIX = '.state'
_STATE_NAME = re.compile(r'^(\d+)\.state$')
_TMP_NAME = re.compile(r'\.tmp-\d+$')  # what an interrupted :func:`save_atomic` leaves behind


def state_path(directory: PathLike, current_iter: int) -> Path:
    """``<directory>/<current_iter>.state``."""
    return Path(directory) / f'{int(current_iter)}{STATE_SUFFIX}'


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself (POSIX); silently skipped where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_atomic(obj: Any, path: PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (tmp file + flush + fsync + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'{path.name}.tmp-{os.getpid()}')
    try:
        with open(tmp, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def load_state(path: PathLike, map_location: Any = 'cpu') -> Any:
    """Load a file written by :func:`save_atomic`.

    Uses ``weights_only=False``: training states hold optimizer/scheduler state, numpy RNG
    states and other plain Python objects that the weights-only unpickler rejects. Only load
    files this toolkit wrote (unpickling can run code). A corrupt or truncated file raises one
    ``RuntimeError`` naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'checkpoint file not found: {path}')
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:
        raise RuntimeError(f'checkpoint file {path} is corrupt or incomplete '
                           f'({type(err).__name__}: {err})'.splitlines()[0]) from err


def is_loadable(path: PathLike) -> bool:
    """Whether ``path`` is a non-empty, complete torch file (memory-mapped, so tensors stay on disk)."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return False
        torch.load(path, map_location='cpu', weights_only=False, mmap=True)
        return True
    except Exception:
        return False


@dataclass
class StateScan:
    """What :func:`scan_states` found: the newest loadable state, the newer ones it skipped, and
    how many ``<iter>.state`` files there are in all."""
    latest: Optional[Path] = None
    skipped: List[Path] = field(default_factory=list)
    count: int = 0


def scan_states(directory: PathLike) -> StateScan:
    """Find the ``<iter>.state`` with the highest ``iter`` that loads.

    Temporary files of interrupted writes and other names are not candidates; empty and
    unloadable (truncated, corrupt) candidates newer than the chosen one are listed in
    ``skipped``, newest first (all of them when none loads).
    """
    directory = Path(directory)
    scan = StateScan()
    if not directory.is_dir():
        return scan
    candidates = []
    for entry in directory.iterdir():
        m = _STATE_NAME.match(entry.name)
        if m and entry.is_file():
            candidates.append((int(m.group(1)), entry))
    scan.count = len(candidates)
    for _, path in sorted(candidates, reverse=True):
        if is_loadable(path):
            scan.latest = path
            break
        scan.skipped.append(path)
    return scan


def find_latest_state(directory: PathLike) -> Optional[Path]:
    """The ``<iter>.state`` file with the highest ``iter`` that loads, or ``None``.

    Temporary files of interrupted writes, other names, empty and unloadable (truncated) files
    are skipped.
    """
    return scan_states(directory).latest


def remove_stale_temps(directories: Iterable[PathLike]) -> List[Path]:
    """Delete the ``*.tmp-<pid>`` files interrupted writes left in ``directories`` (not recursive);
    returns what was removed. Call it only while no other process writes there."""
    removed = []
    for d in directories:
        d = Path(d)
        if not d.is_dir():
            continue
        for entry in sorted(d.iterdir()):
            if _TMP_NAME.search(entry.name) and entry.is_file():
                entry.unlink(missing_ok=True)
                removed.append(entry)
    return removed
