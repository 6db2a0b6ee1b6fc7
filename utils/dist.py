"""Distributed helpers that degrade to single-process no-ops when no process group exists.

Launch with ``torchrun --nproc_per_node=N tools/train.py ... --launcher pytorch``; torchrun sets
``LOCAL_RANK``, ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``. Under SLURM,
``srun tools/train.py ... --launcher slurm`` derives the same variables from SLURM's (as BasicSR's
``init_dist`` does for its slurm launcher).
"""
import functools
import os
import re
import subprocess
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
import torch.distributed as dist

_ENV_KEYS = ('LOCAL_RANK', 'RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')
_SLURM_KEYS = ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST')
DEFAULT_MASTER_PORT = 29500  # torchrun's and BasicSR's default


def first_slurm_host(nodelist: str) -> str:
    """The first host of a SLURM node list (``gpu[03-05,9],cpu1`` -> ``gpu03``), keeping zero padding."""
    m = re.match(r'([^,\[]+)(?:\[([^\]]+)\])?', nodelist.strip())
    if not m or not m.group(1):
        raise ValueError(f'SLURM_NODELIST {nodelist!r}: cannot read a host name from it')
    prefix, ranges = m.group(1), m.group(2)
    if ranges is None:
        return prefix
    return prefix + ranges.split(',')[0].split('-')[0]


def _scontrol_first_host(nodelist: str) -> Optional[str]:
    """``scontrol show hostnames <nodelist>``'s first line, or None where scontrol is unavailable."""
    try:
        out = subprocess.run(['scontrol', 'show', 'hostnames', nodelist], capture_output=True, text=True,
                             timeout=30, check=True).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return out[0] if out else None


def slurm_env(environ: Dict[str, str], n_gpu: int = 0, resolve_host: Callable[[str], Optional[str]] = None
              ) -> Dict[str, str]:
    """torchrun-style variables from a SLURM task's environment.

    ``RANK`` = ``SLURM_PROCID``, ``WORLD_SIZE`` = ``SLURM_NTASKS``, ``LOCAL_RANK`` = ``SLURM_LOCALID``
    (else the rank modulo ``n_gpu``), ``MASTER_ADDR`` = the first host of ``SLURM_NODELIST`` (by
    ``resolve_host``, default ``scontrol show hostnames``, else parsed here), ``MASTER_PORT`` = the
    environment's, else 29500. ``MASTER_ADDR``/``MASTER_PORT`` already set are kept.
    """
    missing = [k for k in _SLURM_KEYS if not environ.get(k)]
    if missing:
        raise RuntimeError(f"launcher 'slurm' needs {', '.join(missing)} in the environment "
                           '(start the run with srun)')
    rank, world = int(environ['SLURM_PROCID']), int(environ['SLURM_NTASKS'])
    if 'SLURM_LOCALID' in environ:
        local = int(environ['SLURM_LOCALID'])
    else:
        local = rank % n_gpu if n_gpu else 0
    addr = environ.get('MASTER_ADDR')
    if not addr:
        nodes = environ['SLURM_NODELIST']
        addr = (resolve_host or _scontrol_first_host)(nodes) or first_slurm_host(nodes)
    return {'RANK': str(rank), 'WORLD_SIZE': str(world), 'LOCAL_RANK': str(local), 'MASTER_ADDR': addr,
            'MASTER_PORT': str(environ.get('MASTER_PORT') or DEFAULT_MASTER_PORT)}


def is_dist() -> bool:
    """Whether a default process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def init_dist(launcher: str = 'pytorch', backend: Optional[str] = None) -> Tuple[int, int]:
    """Join the process group described by torchrun's (``launcher='pytorch'``) or SLURM's
    (``launcher='slurm'``, see :func:`slurm_env`) environment; returns ``(rank, world_size)``.

    ``backend`` defaults to ``nccl`` when CUDA is available, else ``gloo``. With CUDA, this
    process's device is set to ``cuda:LOCAL_RANK`` (gloo runs with more processes than GPUs
    leave it unset). A second call is a no-op.
    """
    if launcher not in ('pytorch', 'slurm'):
        raise ValueError(f"--launcher {launcher!r} is not supported ('pytorch' for torchrun, 'slurm' for srun)")
    if is_dist():
        return get_dist_info()
    if launcher == 'slurm':
        n_gpu = torch.cuda.device_count() if torch.cuda.is_available() else 0
        os.environ.update(slurm_env(os.environ, n_gpu))
    missing = [k for k in _ENV_KEYS if k not in os.environ]
    if missing:
        raise RuntimeError(f"launcher 'pytorch' needs {', '.join(missing)} in the environment "
                           '(start the run with torchrun)')
    local_rank = int(os.environ['LOCAL_RANK'])
    rank, world_size = int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])
    if backend is None:
        backend = 'nccl' if torch.cuda.is_available() else 'gloo'
    device_id = None
    n_gpu = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if local_rank < n_gpu:
        torch.cuda.set_device(local_rank)
        if backend == 'nccl':
            device_id = torch.device('cuda', local_rank)
    elif backend == 'nccl':
        raise RuntimeError(f'LOCAL_RANK={local_rank} but only {n_gpu} CUDA device(s) are visible; '
                           'nccl needs one GPU per process (use fewer processes or backend gloo)')
    dist.init_process_group(backend=backend, init_method='env://', rank=rank, world_size=world_size,
                            device_id=device_id)
    return get_dist_info()


def get_dist_info() -> Tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` without a process group."""
    if is_dist():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    return get_dist_info()[0] == 0


def barrier() -> None:
    if is_dist():
        dist.barrier()


def _comm_device() -> torch.device:
    """Where tensors must live for collectives of the current backend."""
    if is_dist() and dist.get_backend() == 'nccl':
        return torch.device('cuda', torch.cuda.current_device())
    return torch.device('cpu')


def all_reduce_mean(value: Union[torch.Tensor, Dict[str, Any]]
                    ) -> Union[torch.Tensor, Dict[str, torch.Tensor]]:
    """Mean over ranks of a tensor, or of every value of a dict (one collective for the whole dict).

    Returns detached tensors on the inputs' devices and leaves the input untouched. Floating
    tensors keep their dtype; numbers and integer tensors come back as float32.
    """
    if isinstance(value, torch.Tensor):
        return all_reduce_mean({'_': value})['_']
    keys = list(value)
    tensors = [v.detach() if isinstance(v, torch.Tensor) else torch.tensor(float(v)) for v in value.values()]
    if not tensors:
        return {}
    if not is_dist():
        return {k: t.clone() if t.is_floating_point() else t.float() for k, t in zip(keys, tensors)}
    device = _comm_device()
    flat = torch.cat([t.reshape(-1).to(device=device, dtype=torch.float64) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    out, offset = {}, 0
    for k, t in zip(keys, tensors):
        n = t.numel()
        dtype = t.dtype if t.is_floating_point() else torch.float32
        out[k] = flat[offset:offset + n].reshape(t.shape).to(device=t.device, dtype=dtype)
        offset += n
    return out


def all_gather_object(obj: Any) -> List[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` (picklable objects); ``[obj]`` without a group."""
    if not is_dist():
        return [obj]
    out: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (the argument is ignored on the other ranks)."""
    if not is_dist():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def master_only(fn: Callable) -> Callable:
    """Run ``fn`` only on rank 0; other ranks get ``None``."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if is_main_process():
            return fn(*args, **kwargs)
        return None

    return wrapper


def destroy() -> None:
    """Leave the process group (no-op without one)."""
    if is_dist():
        dist.destroy_process_group()
