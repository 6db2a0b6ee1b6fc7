"""What ``train.log`` records at start so a run can be reproduced: command line, code, software,
machine, processes, device and networks.

:func:`run_info_lines` returns the lines; the trainer logs them once the log file is open. Nothing
here fails a run: a missing ``git`` or a folder that is not a git checkout gives a line saying so.
"""
import os
import platform
import socket
import subprocess
import sys
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ckdsr.utils.complexity import count_params, params_text

#: the checkout this module belongs to (the repository root when run from a clone)
CODE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_OVERRIDE_FLAGS = ('--set', '--force_yml')


def command_line(argv: Sequence[str]) -> str:
    """The command as typed (arguments shell-quoted where needed)."""
    import shlex
    return ' '.join(shlex.quote(a) for a in argv)


def overrides(argv: Sequence[str]) -> List[str]:
    """The ``--set`` / ``--force_yml`` values of ``argv`` (each flag takes the following non-flag
    arguments, as ``argparse``'s ``nargs='+'`` does), in order."""
    out, flag = [], None
    for arg in argv:
        if arg in _OVERRIDE_FLAGS:
            flag = arg
        elif arg.startswith('-'):
            flag = None
        elif flag:
            out.append(arg)
    return out


def git_state(root: str = CODE_ROOT, timeout: float = 10.0) -> str:
    """``'<commit> (clean)'``, ``'<commit> (dirty: uncommitted changes)'`` (tracked files modified;
    untracked files do not count), ``'not a git checkout (<root>)'`` (also when ``root`` is not the
    top of its repository, e.g. an installed copy inside another project) or
    ``'unknown (git not found)'``; never raises."""
    def git(*args: str) -> Tuple[int, str]:
        proc = subprocess.run(['git', '-C', root, *args], capture_output=True, text=True, timeout=timeout)
        return proc.returncode, proc.stdout.strip()
    try:
        rc, out = git('rev-parse', '--show-toplevel', 'HEAD')
        top, _, commit = out.partition('\n')
        # an installed copy inside some other repository (a venv in a project) is not a checkout
        if rc != 0 or not commit or os.path.realpath(top) != os.path.realpath(root):
            return f'not a git checkout ({root})'
        rc, changes = git('status', '--porcelain', '--untracked-files=no')
    except FileNotFoundError:
        return 'unknown (git not found)'
    except (OSError, subprocess.SubprocessError) as err:
        return f'unknown (git failed: {err})'
    if rc != 0:
        return f'{commit} (dirty flag unknown: git status failed)'
    return f'{commit} (dirty: uncommitted changes)' if changes else f'{commit} (clean)'


def versions() -> str:
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return (f'python {platform.python_version()}, torch {torch.__version__}, '
            f'CUDA {torch.version.cuda or "none (CPU build)"}, cuDNN {cudnn or "none"}')


def launcher(world_size: int, environ: Optional[Dict[str, str]] = None) -> str:
    """How the processes were started, from the environment the launchers set."""
    env = os.environ if environ is None else environ
    if world_size <= 1 and 'RANK' not in env:
        return 'none (single process)'
    if 'TORCHELASTIC_RUN_ID' in env:
        return 'pytorch (torchrun)'
    if 'SLURM_PROCID' in env:
        return 'slurm'
    return 'pytorch (env://)'


def device_text(device: torch.device) -> str:
    if device.type == 'cuda':
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f'{device} ({torch.cuda.get_device_name(index)})'
    return str(device)


def _net_line(role: str, net: nn.Module, note: str = '') -> str:
    return (f'network {role}: {type(net).__name__}  '
            f'{params_text(count_params(net), count_params(net, trainable_only=True))}{note}')


def helper_nets(components: Iterable[Any], skip: Iterable[nn.Module] = ()) -> List[Tuple[str, nn.Module]]:
    """``('<component>.<attribute>', net)`` for every module a distillation component holds
    directly (FACD's regressors, PCL's discriminator, DCKD's embedding...), leaving out nets whose
    parameters all belong to ``skip`` (the student, the teacher) or to an earlier helper."""
    seen = {id(p) for net in skip for p in net.parameters()}
    out = []
    for comp in components:
        for attr, value in vars(comp).items():
            if not isinstance(value, nn.Module):
                continue
            params = [p for p in value.parameters() if id(p) not in seen]
            if not params:
                continue
            seen.update(id(p) for p in params)
            out.append((f'{getattr(comp, "name", type(comp).__name__)}.{attr}', value))
    return out


def network_lines(model: Any) -> List[str]:
    """One line per network: the student, the teacher (KD runs) and each helper net."""
    from ckdsr.models.network_io import unwrap
    student = unwrap(model.net_g)
    ema = getattr(model, 'ema', None)
    note = f'  (+ EMA copy, decay {ema.decay})' if ema is not None else ''
    lines = [_net_line('student network_g', student, note)]
    skip = [student] + ([ema.module] if ema is not None else [])
    teacher = getattr(model, 'teacher', None)
    if teacher is not None:
        lines.append(_net_line('teacher network_t', teacher.net))
        skip.append(teacher.net)
    components = [c for c in getattr(model, 'components', ()) if c is not teacher]
    lines += [_net_line(f'helper {name}', net) for name, net in helper_nets(components, skip)]
    return lines


def run_info_lines(model: Any, world_size: int, argv: Optional[Sequence[str]] = None) -> List[str]:
    """The start-of-run lines of ``train.log``."""
    argv = list(sys.argv if argv is None else argv)
    sets = overrides(argv)
    return [
        f'command line: {command_line([sys.executable] + argv)}',
        f'option overrides: {" ".join(sets) if sets else "none"}',
        f'code: ckdsr at {CODE_ROOT}, git commit {git_state()}',
        f'software: {versions()}',
        f'host: {socket.gethostname()} ({platform.platform()})',
        f'processes: world size {world_size}, launcher {launcher(world_size)}',
        f'device: {device_text(model.device)}',
        *network_lines(model),
    ]
