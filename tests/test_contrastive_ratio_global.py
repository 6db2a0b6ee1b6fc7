"""The contrastive ratio over the GLOBAL batch by all-reducing sums and counts (issue 17, point 8).

ContrastiveRatioLoss ``reduce: global`` all-reduces each layer's sums of |a - p|, sum_k |a - n_k| and
the anchor element count (utils.dist_gather.all_reduce_sum, whose backward all-reduces the incoming
gradient). 2 gloo processes x 2 images must give the loss value and the DDP-averaged parameter
gradient of 1 process x 4 images, for per-sample negatives (DCKD) and for negatives shared by the
batch (CSD); ``reduce: local`` (the released per-GPU ratio) must differ, so the comparison can fail.
The model-level runs (CSDModel, DCKD's KDModel) are in ``tests/test_negatives_global.py``.
"""
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ckdsr.losses.contrastive_ratio import ContrastiveRatioLoss
from ckdsr.models.distill.gather import Gather, refuse_double_reduction, require_global_inputs
from ckdsr.models.distill.terms import build_terms
from tests.helpers.gloo import run_gloo
from ckdsr.utils.dist_gather import all_reduce_sum

B_LOCAL, WORLD, K = 2, 2, 3
WEIGHTS = [0.5, 1.0]


# ---------------------------------------------------------------------------------------------- all_reduce_sum
def _all_reduce_worker(rank, world_size, out):
    x = torch.tensor([1.0, 2.0]) + 10 * rank  # rank 0: [1, 2], rank 1: [11, 12]
    x.requires_grad_(True)
    y = all_reduce_sum(x)  # [12, 14] on both ranks
    loss = (torch.tensor([3.0, 5.0]) * y).sum() * (rank + 1) + (y ** 2).sum()  # DIFFERENT losses per rank
    loss.backward()
    counts = all_reduce_sum(torch.tensor([rank + 1, 7], dtype=torch.int64))  # no grad, integer
    torch.save({'y': y.detach(), 'grad': x.grad.clone(), 'counts': counts}, Path(out) / f'{rank}.pt')


def test_all_reduce_sum_values_and_gradient(tmp_path):
    run_gloo(_all_reduce_worker, tmp_path, str(tmp_path), world_size=WORLD)
    r0, r1 = (torch.load(tmp_path / f'{r}.pt') for r in range(WORLD))
    y = torch.tensor([12.0, 14.0])
    # rank k's dL_k/dy = (k+1) [3, 5] + 2 y; summed over k = 0, 1: 3 [3, 5] + 4 y = [57, 71] on both ranks
    for r in (r0, r1):
        assert torch.equal(r['y'], y)
        assert torch.equal(r['grad'], torch.tensor([57.0, 71.0]))
        assert torch.equal(r['counts'], torch.tensor([3, 14])) and r['counts'].dtype == torch.int64


def test_all_reduce_sum_is_the_identity_with_one_process():
    x = torch.ones(3, requires_grad=True)
    assert all_reduce_sum(x) is x


# ---------------------------------------------------------------------------------------------- the loss under DDP
class TwoLayers(nn.Module):
    """A tiny trainable 'embedding': two conv layers, both outputs are contrastive layers."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 5, 3, padding=1)

    def forward(self, x):
        f1 = self.c1(x)
        return [f1, self.c2(torch.relu(f1))]


def _data():
    g = torch.Generator().manual_seed(7)
    n = WORLD * B_LOCAL
    return {'x': torch.rand(n, 3, 6, 6, generator=g),
            'pos': [torch.rand(n, 4, 6, 6, generator=g), torch.rand(n, 5, 6, 6, generator=g)],
            'neg_per_sample': torch.rand(n, K, 3, 6, 6, generator=g),
            'neg_shared': torch.rand(K, 3, 6, 6, generator=g)}


def _net():
    torch.manual_seed(0)
    return TwoLayers().double()


def _loss_and_grads(net, module, data, rows, negatives):
    """ContrastiveRatioLoss on the images ``rows``; negatives are the net's detached embeddings of
    per-sample (B, K, ...) or shared (K, ...) negative images, as DCKD's / CSD's are."""
    anchor = net(data['x'][rows].double())
    inner = net.module if isinstance(net, DistributedDataParallel) else net
    with torch.no_grad():
        if negatives == 'per_sample':
            imgs = data['neg_per_sample'][rows].double()
            neg = [f.view(imgs.shape[0], K, *f.shape[1:]) for f in inner(imgs.flatten(0, 1))]
        else:
            neg = inner(data['neg_shared'].double())  # the same tensors on every rank
    loss = module(anchor, [p[rows].double() for p in data['pos']], neg)
    net.zero_grad()
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in inner.named_parameters()}


def _ddp_loss_worker(rank, world_size, out):
    data, rows = _data(), slice(rank * B_LOCAL, (rank + 1) * B_LOCAL)
    res = {}
    for negatives in ('per_sample', 'shared'):
        for reduce in ('global', 'local'):
            net = DistributedDataParallel(_net())  # averages the parameter gradients over the ranks
            res[negatives, reduce] = _loss_and_grads(net, ContrastiveRatioLoss(WEIGHTS, reduce=reduce), data,
                                                     rows, negatives)
    torch.save(res, Path(out) / f'{rank}.pt')


@pytest.fixture(scope='module')
def ddp_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('ratio_ddp')
    run_gloo(_ddp_loss_worker, tmp, str(tmp), world_size=WORLD)
    return [torch.load(tmp / f'{r}.pt') for r in range(WORLD)]


@pytest.mark.parametrize('negatives', ['per_sample', 'shared'])  # DCKD's, CSD's
def test_two_ranks_give_the_one_process_loss_and_gradient(ddp_results, negatives):
    data, everything = _data(), slice(0, WORLD * B_LOCAL)
    ref_loss, ref_grads = _loss_and_grads(_net(), ContrastiveRatioLoss(WEIGHTS), data, everything, negatives)
    local_one, _ = _loss_and_grads(_net(), ContrastiveRatioLoss(WEIGHTS, reduce='local'), data, everything,
                                   negatives)
    assert local_one == ref_loss  # one process: local and global are the same computation
    for res in ddp_results:
        loss, grads = res[negatives, 'global']
        assert loss == pytest.approx(ref_loss, rel=1e-12)
        for name, g in ref_grads.items():
            assert torch.allclose(grads[name], g, rtol=1e-10, atol=1e-14), name
    # the per-GPU ratio (reduce: local) differs: in value on some rank, and in the averaged gradient
    local = [res[negatives, 'local'] for res in ddp_results]
    assert any(abs(loss - ref_loss) > 1e-4 * ref_loss for loss, _ in local)
    assert any(not torch.allclose(local[0][1][n], g, rtol=1e-4) for n, g in ref_grads.items())
    # local ranks' gradients are averaged by DDP: still equal across ranks (a per-GPU objective, no crash)
    assert all(torch.equal(local[0][1][n], local[1][1][n]) for n in ref_grads)


# ---------------------------------------------------------------------------------------------- hand value
def test_hand_value_two_layers_single_process():
    # layer 1: anchor (B=2, 1, 1, 2) = [1, 2], [0, 4]; positive [1, 1], [2, 4]: sum|a-p| = 3, count 4
    # shared negatives (K=2): [0, 0] -> 3 + 4, [1, 2] -> 0 + 3: sum 10; ratio (3/4) / (10/4 + eps)
    a1 = torch.tensor([1., 2., 0., 4.], dtype=torch.float64).view(2, 1, 1, 2)
    p1 = torch.tensor([1., 1., 2., 4.], dtype=torch.float64).view(2, 1, 1, 2)
    n1 = torch.tensor([0., 0., 1., 2.], dtype=torch.float64).view(2, 1, 1, 2)
    # layer 2: one element; a = 1, p = 0, per-sample negatives 3 and -1: |a-n| = 2 + 2
    a2, p2 = torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64)
    n2 = torch.tensor([[[3.], [-1.]]], dtype=torch.float64)
    eps = 1e-7
    want = 0.5 * 0.75 / (2.5 + eps) + 1.0 * 1.0 / (4.0 + eps)
    for reduce in ('global', 'local'):
        got = ContrastiveRatioLoss(WEIGHTS, reduce=reduce)([a1, a2], [p1, p2], [n1, n2]).item()
        assert abs(got - want) < 1e-12


def test_half_precision_sums_do_not_overflow():
    # 4 * 64 * 32 * 32 elements of |a - p| = 8: the sum 2.1e6 overflows float16 (max 65504); the mean does not
    a = torch.full((4, 64, 32, 32), 8.0, dtype=torch.float16)
    p = torch.zeros_like(a)
    n = torch.full((2, 64, 32, 32), 4.0, dtype=torch.float16)  # 2 shared negatives: |a - n| = 4 each
    got = ContrastiveRatioLoss([1.0], eps=0.0)([a], [p], [n])
    assert got.dtype == torch.float32 and got.item() == pytest.approx(8.0 / (4.0 + 4.0))


# ---------------------------------------------------------------------------------------------- guards
class _Model:
    """What the guards read: opt, terms, world_size."""

    def __init__(self, losses, world_size):
        self.opt, self.world_size = {'train': {}}, world_size
        self.terms = build_terms(losses, torch.device('cpu'))


def _ratio_term(reduce, inputs=None):
    cfg = {'type': 'ContrastiveRatioLoss', 'name': 'l_con', 'weights': [1.0], 'reduce': reduce}
    return [{'type': 'L1Loss'}, {**cfg, **({'inputs': inputs} if inputs else {})}]


def test_global_reduction_accepts_per_rank_signals_under_ddp():
    require_global_inputs(_Model(_ratio_term('global'), 2), 'ContrastiveRatioLoss', ('anchor', 'positive'), 'x')
    refuse_double_reduction(_Model(_ratio_term('global'), 2))
    gathered = {'anchor': 'emb_sr_global', 'positive': 'emb_teacher_sr_global'}
    refuse_double_reduction(_Model(_ratio_term('local', gathered), 2))  # the gather route: fine
    with pytest.raises(ValueError, match=r"train.losses.1.inputs.anchor \(l_con\): reads 'emb_sr', this rank's "
                                         r"images only, with 2 processes; .* or set reduce: global"):
        require_global_inputs(_Model(_ratio_term('local'), 2), 'ContrastiveRatioLoss', ('anchor',), 'the ratio')


def test_gathered_inputs_with_the_global_reduction_are_refused():
    gathered = {'anchor': 'emb_sr_global', 'positive': 'emb_teacher_sr_global'}
    model = _Model(_ratio_term('global', gathered), 1)  # refused with one process too: a config error
    with pytest.raises(ValueError, match=r"train.losses.1.inputs.anchor \(l_con\): reads the gathered "
                                         r"'emb_sr_global' but ContrastiveRatioLoss reduces over the ranks itself "
                                         r"\(reduce: global\); the gradient would be summed twice: read 'emb_sr', "
                                         r"or set reduce: local"):
        Gather(['emb_sr']).before_step(model, 1)


def test_reduce_option_is_checked():
    with pytest.raises(ValueError, match="reduce: 'all' is not one of global, local"):
        ContrastiveRatioLoss([1.0], reduce='all')


# ---------------------------------------------------------------------------------------------- option files
def _ratio_terms(path):
    opt = yaml.safe_load(Path(path).read_text())
    return opt, [t for t in opt['train']['losses'] if t['type'] == 'ContrastiveRatioLoss']


def test_option_files_reduce_over_the_global_batch_without_gathering_embeddings():
    root = Path(__file__).resolve().parents[1] / 'options'
    csd = sorted(p for p in root.glob('csd_*.yml') if not p.name.startswith('csd_baseline'))
    dckd = sorted(root.glob('dckd_*.yml'))
    assert len(csd) == 7 and dckd
    for path in csd:  # CSD: per-rank embeddings, sums all-reduced; only the LR batch is gathered (negatives)
        opt, terms = _ratio_terms(path)
        assert len(terms) == 1 and terms[0]['reduce'] == 'global' and 'inputs' not in terms[0], path.name
        assert 'gather' not in opt['distill'], path.name
    for path in dckd:  # DCKD: the default (global), except the released 4-GPU config's per-GPU ratio
        _, terms = _ratio_terms(path)
        want = 'local' if path.name == 'dckd_star_swinir_x4_official.yml' else 'global'
        assert all(t.get('reduce', 'global') == want and 'inputs' not in t for t in terms), path.name
