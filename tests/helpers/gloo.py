"""Run a function in N gloo processes without a "free port" race.

The usual recipe -- ``bind(('127.0.0.1', 0))``, read the port, close the socket, hand the number
to the workers, whose rank 0 binds it again seconds later -- leaves the port free in between;
beside another test file (``pytest -n 2``), whatever binds or connects on the machine in that
window can take it, and the group then fails to form or talks to a foreign store. Neither helper
here ever releases a port it chose:

* :func:`run_gloo` joins through a ``file://`` store in a fresh folder of the test's ``tmp_path``
  (no port at all);
* :func:`run_env_gloo` is for code that joins with ``env://`` (``ckdsr.utils.dist.init_dist``): this
  process hosts the store on port 0 (bound and kept by the store) and the workers connect to it,
  exactly as torchrun's agent does.

gloo's own pair sockets bind port 0 and keep it (no race either).
"""
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Tuple

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _entry(rank: int, fn: Callable, world_size: int, store_file: str, args: Tuple[Any, ...]) -> None:
    os.environ.setdefault('GLOO_SOCKET_IFNAME', 'lo')
    os.environ['OMP_NUM_THREADS'] = '1'
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{store_file}', rank=rank, world_size=world_size)
    try:
        fn(rank, world_size, *args)
        dist.barrier()  # nobody tears the group down while a peer still talks to it
    finally:
        dist.destroy_process_group()


def run_gloo(fn: Callable, tmp_path: Path, *args: Any, world_size: int = 2) -> None:
    """``fn(rank, world_size, *args)`` in ``world_size`` processes joined in one gloo group.

    ``fn`` must be a module-level function. Forked where possible (spares the children a torch
    import); spawned when CUDA is present (CUDA state does not survive a fork).
    """
    store_dir = tempfile.mkdtemp(prefix='gloo_store_', dir=tmp_path)
    store_file = os.path.join(store_dir, 'store')  # must not exist yet: a fresh rendezvous
    fork_ok = 'fork' in mp.get_all_start_methods() and not torch.cuda.is_available()
    mp.start_processes(_entry, args=(fn, world_size, store_file, args), nprocs=world_size, join=True,
                       start_method='fork' if fork_ok else 'spawn')


def run_env_gloo(fn: Callable, *args: Any, world_size: int = 2) -> None:
    """``fn(rank, world_size, *args)`` in ``world_size`` processes whose environment is what torchrun
    gives its workers (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), for
    code that joins with ``init_method='env://'`` (e.g. ``ckdsr.utils.dist.init_dist``). ``fn`` joins the
    group itself and must leave it (``destroy_process_group``) before returning.

    As under torchrun, the store is hosted by the launcher -- this process -- on a port the store
    bound itself (port 0: the kernel picks a free port and the store keeps it), and the workers are
    told ``TORCHELASTIC_USE_AGENT_STORE=True`` so every rank connects as a client. Nothing is
    released between choosing the port and serving on it, so nothing else can take it.
    """
    store = dist.TCPStore('127.0.0.1', 0, world_size, is_master=True, wait_for_workers=False)
    try:
        fork_ok = 'fork' in mp.get_all_start_methods() and not torch.cuda.is_available()
        mp.start_processes(_env_entry, args=(fn, world_size, store.port, args), nprocs=world_size, join=True,
                           start_method='fork' if fork_ok else 'spawn')
    finally:
        del store


def _env_entry(rank: int, fn: Callable, world_size: int, port: int, args: Tuple[Any, ...]) -> None:
    os.environ.update({'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': str(port), 'RANK': str(rank),
                       'LOCAL_RANK': str(rank), 'WORLD_SIZE': str(world_size),
                       'TORCHELASTIC_USE_AGENT_STORE': 'True', 'OMP_NUM_THREADS': '1'})
    os.environ.setdefault('GLOO_SOCKET_IFNAME', 'lo')
    torch.set_num_threads(1)
    fn(rank, world_size, *args)
