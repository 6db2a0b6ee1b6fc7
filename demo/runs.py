"""Run ckdsr's command-line tools for the demo, with a progress bar and a saved log per call.

Each step calls the tool's own ``main(argv)`` -- ``tools/train.py -opt FILE --set ...``,
``tools/fit_codebook.py ...`` -- with exactly the arguments a user would type (the report lists
them), in this process: no interpreter start-up per step. While a tool runs, the ``ckdsr``
logger's console output is held back to warnings; every log line, and anything the tool prints to
stdout or stderr, goes to ``<log>``, and the training loop's progress lines drive a tqdm bar (iteration, loss, last
validation PSNR). Log handlers a run adds (its ``train.log``) are closed when it ends.
"""
import contextlib
import importlib.util
import io
import logging
import os
import shlex
import shutil
import sys
import traceback
from collections import deque
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from ckdsr.demo.logs import RunHistory, parse_line, read_history

REPO = Path(__file__).resolve().parents[1]


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and where its output is."""


def command_text(cmd: Sequence[str], cwd: Path = REPO) -> str:
    """A copy-pasteable command line; absolute paths under ``cwd`` (also in ``key=path``) made relative."""
    return shlex.join(_relative(str(arg), cwd) for arg in cmd)


def _relative(arg: str, cwd: Path) -> str:
    key, sep, value = arg.partition('=')
    target = value if sep else arg
    if os.path.isabs(target):
        rel = os.path.relpath(target, cwd)
        if not rel.startswith('..'):
            return f'{key}={rel}' if sep else rel
    return arg


def tool_path(name: str) -> Path:
    return REPO / 'tools' / f'{name}.py'


def _load_tool(name: str):
    """``tools/<name>.py`` as a module (tools/ is not a package)."""
    mod_name = f'_ckdsr_tool_{name}'
    if mod_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(mod_name, tool_path(name))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[mod_name] = module
    return sys.modules[mod_name]


class _LineHandler(logging.Handler):
    """Writes each formatted record to the step's log and hands it to ``on_line``."""

    def __init__(self, stream, on_line: Optional[Callable[[str], None]], tail: deque):
        super().__init__(logging.INFO)
        from ckdsr.utils.logger import LOG_FORMAT
        self.setFormatter(logging.Formatter(LOG_FORMAT))
        self.stream, self.on_line, self.tail = stream, on_line, tail

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        self.stream.write(line + '\n')
        self.stream.flush()
        self.tail.append(line)
        if self.on_line is not None:
            self.on_line(line)


class _TeeText(io.TextIOBase):
    """A text stream for stdout/stderr during a tool call: everything goes to the step's log, and
    complete lines also to ``tail`` (for the error message if the step fails)."""

    def __init__(self, stream, tail: deque):
        super().__init__()
        self.stream, self.tail, self._partial = stream, tail, ''

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.stream.write(text)
        *lines, self._partial = (self._partial + text).replace('\r', '\n').split('\n')
        self.tail.extend(line for line in lines if line.strip())
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


@contextlib.contextmanager
def _captured(stream, on_line, tail: deque):
    """Route the ``ckdsr`` logger, stdout and stderr to ``stream`` for the duration of one tool call."""
    from ckdsr.utils.logger import get_root_logger
    logger = get_root_logger()                  # its console handler is bound to the real stderr
    consoles = [h for h in logger.handlers
                if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
    levels = [h.level for h in consoles]
    before = set(logger.handlers)
    bridge = _LineHandler(stream, on_line, tail)
    for h in consoles:
        h.setLevel(logging.WARNING)
    logger.addHandler(bridge)
    try:
        tee = _TeeText(stream, tail)
        with contextlib.redirect_stdout(tee), contextlib.redirect_stderr(tee):
            yield
    finally:
        logger.removeHandler(bridge)
        for h in set(logger.handlers) - before:   # e.g. the run's train.log
            if isinstance(h, logging.FileHandler):
                logger.removeHandler(h)
                h.close()
        for h, level in zip(consoles, levels):
            h.setLevel(level)


def run_tool(name: str, argv: Sequence[str], log_path: Path, label: str,
             on_line: Optional[Callable[[str], None]] = None) -> str:
    """``python tools/<name>.py ARGV`` in this process; returns that command line.

    Raises :class:`DemoError` (with the last lines of output) when the tool fails."""
    cmd = command_text(['python', f'tools/{name}.py', *argv])
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: deque = deque(maxlen=15)
    code, error = 0, None
    with open(log_path, 'w', encoding='utf-8') as log:
        log.write(f'$ {cmd}\n')
        cwd = os.getcwd()
        try:
            os.chdir(REPO)                      # option files name paths relative to the repository
            with _captured(log, on_line, tail):
                code = _load_tool(name).main(list(argv))
        except SystemExit as err:               # argparse errors
            code = err.code if isinstance(err.code, int) else 1
        except Exception as err:  # noqa: BLE001 -- reported with its traceback below
            error = err
            log.write(traceback.format_exc())
        finally:
            os.chdir(cwd)
    if error is not None or code:
        last = '\n    '.join(tail) or '(no log lines)'
        why = f'{type(error).__name__}: {error}' if error is not None else f'exit code {code}'
        raise DemoError(f'{label} failed ({why}); full output in {log_path}; last lines:\n    {last}') from error
    return cmd


def train(opt_file: Path, sets: Sequence[str], exp_dir: Path, log_path: Path, label: str,
          progress: bool = True) -> RunHistory:
    """``tools/train.py -opt opt_file --set ...`` into a fresh ``exp_dir``; the run's history."""
    from tqdm import tqdm
    shutil.rmtree(exp_dir, ignore_errors=True)   # a rerun must not append to the previous train.log
    argv = ['-opt', str(opt_file)] + (['--set', *sets] if sets else [])
    bar = tqdm(total=None, desc=f'train {label}', unit='it', disable=not progress, leave=True, dynamic_ncols=True)
    post: Dict[str, str] = {}

    def on_line(line: str) -> None:
        event = parse_line(line)
        if event is None:
            return
        if event.kind == 'progress':
            if bar.total != event.total:
                bar.total = event.total
            bar.update(event.iter - bar.n)
            loss = event.values.get('l_total', event.values.get('l_pix'))
            if loss is not None:
                post['loss'] = f'{loss:.4f}'
        elif event.kind == 'validation' and 'psnr' in event.values:
            post['val_psnr'] = f"{event.values['psnr']:.2f}"
        else:
            return
        bar.set_postfix(post, refresh=True)

    try:
        cmd = run_tool('train', argv, log_path, f'training {label}', on_line)
    finally:
        bar.close()
    log_file = exp_dir / 'train.log'
    if not log_file.is_file():
        raise DemoError(f'training {label}: no {log_file} was written; see {log_path}')
    hist = read_history(str(log_file))
    hist.command = cmd
    return hist


def fit_codebook(opt_file: Path, sets: Sequence[str], num_codes: int, out_path: Path, log_path: Path,
                 extra: Sequence[str] = (), progress: bool = True) -> str:
    """Fit DMM's codebook on the teacher's features with ``tools/fit_codebook.py``; the command run."""
    from tqdm import tqdm
    if not tool_path('fit_codebook').is_file():
        raise DemoError('tools/fit_codebook.py is not in this checkout')
    argv: List[str] = ['-opt', str(opt_file)] + (['--set', *sets] if sets else [])
    argv += ['--num-codes', str(num_codes), '--out', str(out_path), *extra]
    with tqdm(total=1, desc='fit codebook', unit='step', disable=not progress, leave=True) as bar:
        cmd = run_tool('fit_codebook', argv, log_path, 'fitting the DMM codebook')
        bar.update(1)
    if not out_path.is_file():
        raise DemoError(f'tools/fit_codebook.py did not write {out_path}; see {log_path}')
    return cmd
