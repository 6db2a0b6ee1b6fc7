"""One ``error:`` line per problem for the command-line tools (exit status 2), tracebacks with --debug.

An :class:`~utils.option_spec.OptionError` is always the user's mistake. Any other exception is
reported the same way only when its message starts with an option key path of the run's tree
(``train.losses: unknown signal ...``, ``path.pretrain_network_t: ...``): that is how ckdsr's
builders name the option at fault. Anything else is a bug and keeps its traceback. The source
of each line is the option file, or ``--set`` when the value at that key came from there.
"""
import re
import sys
from typing import Any, Dict, Iterable, List, Optional, TextIO

from ckdsr.utils.option_spec import OptionError

_KEY_PATH = re.compile(r'^([A-Za-z_]\w*)(\.[\w-]+)*$')


def option_error_of(err: BaseException, tree: Optional[Dict[str, Any]] = None) -> Optional[OptionError]:
    """``err`` as an OptionError with an unknown source, when it names an option key; else None."""
    if isinstance(err, OptionError):
        return err
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    if not isinstance(text, str) or ': ' not in text:
        return None
    key = text.split(': ', 1)[0]
    if not _KEY_PATH.match(key):
        return None
    top = key.split('.', 1)[0]
    known = set(tree) if tree else set()
    if top not in known:
        return None
    return OptionError([' '.join(text.split())], source=None)


def error_lines(err: BaseException, opt_file: str, sets: Iterable[str] = (), force_yml: Iterable[str] = (),
                tree: Optional[Dict[str, Any]] = None) -> Optional[List[str]]:
    """``['error: <source>: <key>: <problem>', ...]`` for a user error, None for anything else."""
    from ckdsr.utils.options import attribute
    found = option_error_of(err, tree)
    if found is None:
        return None
    return [f'error: {line}' for line in attribute(found, opt_file, sets, force_yml).lines()]


class OneLineErrors:
    """``with OneLineErrors(opt_file, sets) as guard: ...`` prints user errors as ``error:`` lines
    and sets ``guard.exit_code = 2`` instead of raising; ``debug=True`` lets them raise."""

    def __init__(self, opt_file: str, sets: Iterable[str] = (), force_yml: Iterable[str] = (),
                 debug: bool = False, stream: Optional[TextIO] = None):
        self.opt_file, self.sets, self.force_yml = opt_file, list(sets or ()), list(force_yml or ())
        self.debug = debug
        self.stream = stream
        self.tree: Optional[Dict[str, Any]] = None  # set once loaded: lets build errors be recognised
        self.exit_code = 0

    def __enter__(self) -> 'OneLineErrors':
        return self

    def handle(self, err: BaseException) -> bool:
        """Print ``err`` and return True when it is a user error (never with ``debug``)."""
        if self.debug:
            return False
        lines = error_lines(err, self.opt_file, self.sets, self.force_yml, self.tree)
        if lines is None:
            return False
        print('\n'.join(lines), file=self.stream or sys.stderr, flush=True)
        self.exit_code = 2
        return True

    def __exit__(self, exc_type, exc, tb) -> bool:
        return exc is not None and isinstance(exc, Exception) and self.handle(exc)
