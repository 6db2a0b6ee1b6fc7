"""The 'ckdsr' logger (console + file on rank 0, warnings only elsewhere) and a lazy tensorboard writer."""
import logging
import os
import sys
from typing import Any, Dict, Optional

from ckdsr.utils.dist import get_dist_info

LOGGER_NAME = 'ckdsr'
LOG_FORMAT = '%(asctime)s %(levelname)s: %(message)s'
_MARK = '_ckdsr_handler'  # attribute tagging the handlers this module added


def _our_handlers(logger: logging.Logger):
    return [h for h in logger.handlers if getattr(h, _MARK, False)]


def get_root_logger(log_file: Optional[str] = None, level: int = logging.INFO) -> logging.Logger:
    """The 'ckdsr' logger, set up once per process (repeated calls add nothing twice).

    Rank 0 logs at ``level`` to the console and, once ``log_file`` is given, appends to that file;
    a later call with another file switches to it (runs started one after another in one process
    each keep their own log). Other ranks log warnings and errors to the console only.
    Records still propagate to the root logger (so pytest's ``caplog`` sees them); do not add
    handlers to the root logger as well, or lines print twice.
    """
    logger = logging.getLogger(LOGGER_NAME)
    rank, _ = get_dist_info()
    logger.setLevel(level if rank == 0 else logging.WARNING)
    ours = _our_handlers(logger)
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
               for h in ours):
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter(LOG_FORMAT))
        setattr(console, _MARK, True)
        logger.addHandler(console)
    files = [h for h in ours if isinstance(h, logging.FileHandler)]
    wanted = os.path.abspath(log_file) if (log_file is not None and rank == 0) else None
    for h in files:  # one log file at a time: a new run in the same process gets only its own
        if rank != 0 or (wanted is not None and h.baseFilename != wanted):
            logger.removeHandler(h)
            h.close()
    if wanted is not None and not any(h.baseFilename == wanted for h in files):
        os.makedirs(os.path.dirname(wanted), exist_ok=True)
        handler = logging.FileHandler(wanted, mode='a', encoding='utf-8')
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        setattr(handler, _MARK, True)
        logger.addHandler(handler)
    return logger


def detach_log_files() -> None:
    """Stop writing to any log file: a run about to be built in this process must not log into the
    previous run's ``train.log`` (its records -- e.g. from ``ckdsr.data`` modules, children of the
    'ckdsr' logger -- would land in that folder, even after it is archived)."""
    logger = logging.getLogger(LOGGER_NAME)
    for h in _our_handlers(logger):
        if isinstance(h, logging.FileHandler):
            logger.removeHandler(h)
            h.close()


class NullWriter:
    """Stands in for ``SummaryWriter`` where tensorboard is unavailable or off: every call is a no-op."""

    def __getattr__(self, name: str):
        if name.startswith('__'):
            raise AttributeError(name)
        return self._noop

    @staticmethod
    def _noop(*args: Any, **kwargs: Any) -> None:
        return None


def init_tb_logger(log_dir: str, opt: Optional[Dict[str, Any]] = None):
    """A tensorboard ``SummaryWriter`` on rank 0; a :class:`NullWriter` on other ranks, or (with a
    warning) when tensorboard cannot be imported.

    With the run's option tree ``opt``, the writers it asks for: tensorboard when
    ``logger.use_tb_logger``, Weights & Biases when ``logger.wandb.project`` (files beside
    ``log_dir``, see :mod:`ckdsr.utils.wandb_logger`), both through one :class:`TeeWriter`; None when
    neither is on."""
    if get_dist_info()[0] != 0:
        return NullWriter()
    if opt is not None:
        return _run_writers(log_dir, opt)
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        get_root_logger().warning(f'tensorboard unavailable ({err}); logger.use_tb_logger ignored, '
                                  'no tensorboard scalars will be written')
        return NullWriter()
    return SummaryWriter(log_dir=str(log_dir))


def _run_writers(log_dir: str, opt: Dict[str, Any]):
    from ckdsr.utils.wandb_logger import TeeWriter, init_wandb_writer, wandb_options
    writers = []
    if (opt.get('logger') or {}).get('use_tb_logger'):
        writers.append(init_tb_logger(log_dir))
    if wandb_options(opt) is not None:
        writers.append(init_wandb_writer(opt, os.path.dirname(os.path.abspath(log_dir))))
    if not writers:
        return None
    return writers[0] if len(writers) == 1 else TeeWriter(*writers)
