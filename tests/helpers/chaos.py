"""Kill training runs at chosen moments and compare what they leave with an uninterrupted run.

Each run is ``tools/train.py``'s ``main()`` in a forked child (torch is imported once, so a run costs
its build and steps, not an interpreter start). A *plan* says when the child signals itself:

- ``('step', k)``: after its k-th training step;
- ``('write', k, 'mid')``: during its k-th checkpoint write, half the bytes in the temp file;
- ``('write', k, 'before_replace')`` / ``('write', k, 'after_replace')``: around the k-th rename of a
  finished temp file over its target;
- ``('validate', k)``: between its k-th validation and the best-checkpoint update.

The parent may also send the signal after a delay (``after_s``): a moment nobody chose.
"""
import io
import os
import random
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]


def _load_train_cli():
    import importlib.util
    spec = importlib.util.spec_from_file_location('ckdsr_train_cli_chaos', REPO / 'tools' / 'train.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


TRAIN_CLI = _load_train_cli()
# the first optimizer built in a process imports torch._dynamo (seconds); do it once, before forking
torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def _install_plan(plan: Optional[Tuple], signum: int) -> None:
    """Patch this (child) process so it sends itself ``signum`` at the plan's moment."""
    if plan is None:
        return
    import ckdsr.utils.checkpoint as ck
    import ckdsr.utils.progress as progress
    from ckdsr.engine.trainer import Trainer
    kind, k = plan[0], plan[1]
    counter = {'n': 0}

    def hit() -> bool:
        counter['n'] += 1
        return counter['n'] == k

    def fire() -> None:
        os.kill(os.getpid(), signum)

    if kind == 'step':
        original = progress.MessageLogger.iter_done

        def iter_done(self, *a, **kw):
            out = original(self, *a, **kw)
            if hit():
                fire()
            return out
        progress.MessageLogger.iter_done = iter_done
    elif kind == 'validate':
        original = Trainer._keep_best

        def keep_best(self, results):
            if hit():
                fire()
            return original(self, results)
        Trainer._keep_best = keep_best
    elif kind == 'write' and plan[2] == 'mid':
        original = torch.save

        def save(obj, f, *a, **kw):
            if not hit():
                return original(obj, f, *a, **kw)
            buf = io.BytesIO()
            original(obj, buf, *a, **kw)
            data = buf.getvalue()
            f.write(data[:len(data) // 2])
            f.flush()
            fire()
            f.write(data[len(data) // 2:])  # reached only by a graceful signal
        torch.save = save
    elif kind == 'write':
        original = os.replace
        where = plan[2]

        def replace(src, dst, *a, **kw):
            if '.tmp-' not in str(src) or not hit():
                return original(src, dst, *a, **kw)
            if where == 'before_replace':
                fire()
            out = original(src, dst, *a, **kw)
            if where == 'after_replace':
                fire()
            return out
        ck.os.replace = replace  # utils.checkpoint's os module is the global one: child-only patch
    else:
        raise ValueError(plan)


def _child_setup(log: Path, plan: Optional[Tuple], signum: int) -> None:
    """In a fresh child: output to ``log``, fresh logger handlers, one thread, the plan installed."""
    err = open(log, 'a', buffering=1)
    os.dup2(err.fileno(), 2)
    os.dup2(err.fileno(), 1)
    sys.stderr = sys.stdout = err
    import logging
    lg = logging.getLogger('ckdsr')
    for h in list(lg.handlers):  # the parent's console/file handlers point elsewhere
        lg.removeHandler(h)
    torch.set_num_threads(1)
    _install_plan(plan, signum)


def run_child(argv: Sequence[str], log: Path, plan: Optional[Tuple] = None, signum: int = signal.SIGKILL,
              after_s: Optional[float] = None) -> int:
    """Run ``train.py main(argv)`` in a forked child; returns its exit code, or ``-signum`` when a
    signal ended it. The child's stderr goes to ``log`` (appended)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child
        code = 99
        try:
            _child_setup(log, plan, signum)
            code = TRAIN_CLI.main(list(argv))
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    if after_s is not None:
        deadline = time.time() + after_s
        while time.time() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.002)
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def random_plans(rng: random.Random, n: int, max_step: int, max_write: int) -> List[Tuple]:
    """``n`` plans: the five kinds in turn (so every kind occurs once n >= 5), random positions."""
    kinds = [('step',), ('write', 'mid'), ('write', 'before_replace'), ('write', 'after_replace'), ('validate',)]
    plans = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        if kind[0] == 'step':
            plans.append(('step', rng.randint(1, max_step)))
        elif kind[0] == 'validate':
            plans.append(('validate', rng.randint(1, 2)))
        else:
            plans.append(('write', rng.randint(1, max_write), kind[1]))
    rng.shuffle(plans)
    return plans


# ---------------------------------------------------------------------- comparisons
def _equal(a: Any, b: Any, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), f'{where}: keys {list(a)} vs {list(b)}'
        for k in a:
            _equal(a[k], b[k], f'{where}.{k}')
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _equal(x, y, f'{where}[{i}]')
    else:
        assert a == b, f'{where}: {a!r} vs {b!r}'


def assert_same_experiment(ref: Path, got: Path, total: int) -> Dict[str, Any]:
    """Every model file and the final training state equal (bit for bit, tensor by tensor); no
    temp file left in ``got``. Returns a small summary."""
    ref_models = sorted(os.listdir(ref / 'models'))
    got_models = sorted(os.listdir(got / 'models'))
    assert got_models == ref_models, (got_models, ref_models)
    assert 'net_g_best.pth' in ref_models and 'net_g_latest.pth' in ref_models
    for name in ref_models:
        _equal(torch.load(ref / 'models' / name, map_location='cpu'),
               torch.load(got / 'models' / name, map_location='cpu'), name)
    final = f'{total}.state'
    _equal(torch.load(ref / 'training_states' / final, map_location='cpu', weights_only=False),
           torch.load(got / 'training_states' / final, map_location='cpu', weights_only=False), final)
    temps = [str(p) for p in got.rglob('*') if '.tmp-' in p.name]
    assert not temps, temps
    return {'models': ref_models}


def run_ddp_children(argv: Sequence[str], log: Path, world_size: int = 2, plans: Optional[Dict[int, Tuple]] = None,
                     signum: int = signal.SIGTERM) -> List[int]:
    """``train.py main(argv + --launcher pytorch)`` in ``world_size`` forked gloo processes (torchrun's
    environment set by hand; this process hosts the store on a port it never releases, as
    ``tests/helpers/gloo.py`` explains); ``plans[rank]`` as in :func:`run_child`. Returns every rank's
    exit code."""
    import torch.distributed as dist
    store = dist.TCPStore('127.0.0.1', 0, world_size, is_master=True, wait_for_workers=False)
    port = store.port
    pids = []
    for rank in range(world_size):
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 99
            try:
                os.environ.update({'RANK': str(rank), 'LOCAL_RANK': str(rank), 'WORLD_SIZE': str(world_size),
                                   'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': str(port),
                                   'TORCHELASTIC_USE_AGENT_STORE': 'True'})
                os.environ.setdefault('GLOO_SOCKET_IFNAME', 'lo')
                _child_setup(log, (plans or {}).get(rank), signum)
                code = TRAIN_CLI.main(list(argv) + ['--launcher', 'pytorch'])
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stderr.flush()
                os._exit(code)
        pids.append(pid)
    codes = []
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        codes.append(os.waitstatus_to_exitcode(status))
    del store
    return codes
