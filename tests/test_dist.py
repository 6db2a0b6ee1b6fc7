"""ckdsr.utils.dist: single-process fallbacks, and two real gloo processes on 127.0.0.1."""
import os

import pytest
import torch

from tests.helpers.gloo import run_env_gloo
from ckdsr.utils import dist as D


def _worker(rank: int, world_size: int, out_dir: str) -> None:
    assert D.init_dist('pytorch', backend='gloo') == (rank, world_size)
    assert D.init_dist('pytorch', backend='gloo') == (rank, world_size)   # idempotent
    losses = {'l_pix': torch.tensor(1.0 + rank), 'l_vec': torch.tensor([rank, 10.0 * rank]),
              'count': torch.tensor(3 * rank), 'num': 2.0 * rank}
    result = {
        'info': D.get_dist_info(),
        'main': D.is_main_process(),
        'mean_tensor': D.all_reduce_mean(torch.full((2, 2), float(rank))),
        'mean_dict': D.all_reduce_mean(losses),
        'input_after': losses['l_pix'].clone(),
        'gathered': D.all_gather_object({'rank': rank, 'name': f'r{rank}'}),
        'broadcast': D.broadcast_object(f'from {rank}', src=1),
        'master': D.master_only(lambda: 'ran')(),
    }
    D.barrier()
    D.destroy()
    torch.save(result, os.path.join(out_dir, f'{rank}.pt'))


def test_two_gloo_processes(tmp_path):
    # the workers get torchrun's environment; the store is hosted here on a port it bound itself
    # (no free-port race, see tests/helpers/gloo.py)
    run_env_gloo(_worker, str(tmp_path))
    results = [torch.load(tmp_path / f'{r}.pt', weights_only=False) for r in range(2)]
    for rank, res in enumerate(results):
        assert res['info'] == (rank, 2)
        assert res['main'] is (rank == 0)
        assert torch.equal(res['mean_tensor'], torch.full((2, 2), 0.5))
        m = res['mean_dict']
        assert set(m) == {'l_pix', 'l_vec', 'count', 'num'}
        assert m['l_pix'].item() == 1.5 and m['l_pix'].dtype == torch.float32
        assert torch.equal(m['l_vec'], torch.tensor([0.5, 5.0]))
        assert m['count'].item() == 1.5 and m['count'].dtype == torch.float32
        assert m['num'].item() == 1.0
        assert res['input_after'].item() == 1.0 + rank              # input untouched
        assert res['gathered'] == [{'rank': 0, 'name': 'r0'}, {'rank': 1, 'name': 'r1'}]
        assert res['broadcast'] == 'from 1'
        assert res['master'] == ('ran' if rank == 0 else None)


def test_single_process_fallbacks():
    assert D.get_dist_info() == (0, 1) and D.is_main_process()
    D.barrier()
    t = torch.tensor([1.0, 2.0], requires_grad=True)
    m = D.all_reduce_mean(t)
    assert torch.equal(m, t.detach()) and not m.requires_grad and m is not t
    means = D.all_reduce_mean({'a': 3, 'b': torch.tensor(2)})
    assert means == {'a': torch.tensor(3.0), 'b': torch.tensor(2.0)}
    assert D.all_gather_object('x') == ['x']
    assert D.broadcast_object({'k': 1}) == {'k': 1}
    assert D.master_only(lambda x: x + 1)(1) == 2
    D.destroy()


def test_init_dist_errors(monkeypatch):
    with pytest.raises(ValueError, match="launcher 'mpi' is not supported"):
        D.init_dist('mpi')
    for key in ('LOCAL_RANK', 'RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(RuntimeError, match='needs LOCAL_RANK, RANK, WORLD_SIZE.*torchrun'):
        D.init_dist('pytorch')
