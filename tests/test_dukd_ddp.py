"""DUKD under 2-process gloo DDP equals one process on the whole batch (both variants: the paper's
two student forwards before one backward, and the official intermediate optimizer step)."""
import os

import pytest
import torch

from ckdsr.models import build_model
from ckdsr.models.network_io import unwrap
from tests.helpers.gloo import run_gloo
from tests.helpers.kd import tiny_kd_options
from tests.helpers.tiny_run import write_options
from tests.test_dukd_model import TERMS
from ckdsr.utils.options import load_options

STEPS = 2


def batch(it):
    g = torch.Generator().manual_seed(100 + it)
    return {'lq': torch.rand(4, 3, 8, 8, generator=g), 'gt': torch.rand(4, 3, 16, 16, generator=g)}


def _worker(rank, world_size, tmp):
    model = build_model(load_options(os.path.join(tmp, 'o.yml')), rank=rank, world_size=world_size)
    assert isinstance(model.net_g, torch.nn.parallel.DistributedDataParallel)
    for it in range(1, STEPS + 1):
        half = {k: v[2 * rank:2 * rank + 2] for k, v in batch(it).items()}
        model.train_step(half, it)
    torch.save(unwrap(model.net_g).state_dict(), os.path.join(tmp, f'{rank}.pt'))


@pytest.mark.parametrize('variant', ['paper', 'official'])
def test_two_process_ddp_matches_one_process(tmp_path, variant):
    # every tile and no LCR: the samples do not depend on the rank's random draws, so the DDP-averaged
    # gradient of the per-rank mean losses equals the one-process gradient on the whole batch
    opt = tiny_kd_options(tmp_path, TERMS, {'dukd': {'variant': variant, 'n_zoom_in': 4, 'lcr_prob': None}},
                          optim_g={'type': 'SGD', 'lr': 0.05})
    opt['train'].pop('scheduler')
    write_options(opt, tmp_path / 'o.yml')
    run_gloo(_worker, tmp_path, str(tmp_path))
    s0, s1 = (torch.load(tmp_path / f'{r}.pt', weights_only=True) for r in range(2))
    single = build_model(load_options(str(tmp_path / 'o.yml')))
    init = {k: v.clone() for k, v in unwrap(single.net_g).state_dict().items()}
    for it in range(1, STEPS + 1):
        single.train_step(batch(it), it)
    ref = unwrap(single.net_g).state_dict()
    for k in s0:
        assert torch.equal(s0[k], s1[k]), k
        assert torch.allclose(s0[k], ref[k], atol=1e-6), k
    assert any(not torch.equal(ref[k], init[k]) for k in ref)
