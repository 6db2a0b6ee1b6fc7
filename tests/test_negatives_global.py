"""Negatives from the global batch (issue 17, point 8): 2 gloo processes == 1 process on the same batch.

CSD draws its ``num`` negatives from the global batch and FACD contrasts each image with the other
images of the global batch; the CSD / DCKD contrastive ratio takes its means over the global batch
(ContrastiveRatioLoss ``reduce: global``: per-layer sums and counts all-reduced). So a 2-process run
with 2 images per rank must give the losses and the (DDP-averaged) gradients of one process with the
4 images. Each test checks the 2-process run against a 1-process run built from the same options and
seed, and that the per-rank (local) reading would have given a different value (so the comparison
can fail). The loss-level tests of the reduction: ``tests/test_contrastive_ratio_global.py``.
"""
import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ckdsr.losses.contrastive_ratio import ContrastiveRatioLoss
from ckdsr.losses.facd import FACDFeatureContrastLoss
from ckdsr.models import build_model
from ckdsr.models.network_io import unwrap
from tests.helpers.gloo import run_gloo
from tests.helpers.kd import tiny_kd_options
from tests.helpers.standins import write_vqgan
from tests.helpers.tiny_run import tiny_sr_options, write_options
from ckdsr.utils.dist_gather import gather_batch, gather_signal
from ckdsr.utils.options import load_options

B_LOCAL, WORLD = 2, 2


# ---------------------------------------------------------------------------------------------- gather_batch
def _gather_worker(rank, world_size, out):
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]) + 10 * rank  # rank 0: 1..4, rank 1: 11..14
    x.requires_grad_(True)
    y = gather_batch(x)
    w = torch.arange(8, dtype=torch.float32).view(4, 2)
    loss = (w * y).sum() + (y ** 2).sum() * (rank + 1)  # the ranks compute DIFFERENT losses here
    loss.backward()
    res = {'y': y.detach(), 'grad': x.grad.clone(), 'requires_grad': y.requires_grad,
           'plain': gather_batch(torch.full((1, 3), float(rank))), 'list': gather_signal([x.detach(), None][:1])}
    try:
        gather_batch(torch.zeros(rank + 1, 2))  # batch sizes differ between ranks
    except ValueError as err:
        res['error'] = str(err)
    torch.save(res, Path(out) / f'{rank}.pt')


def test_gather_batch_values_and_gradient(tmp_path):
    run_gloo(_gather_worker, tmp_path, str(tmp_path), world_size=WORLD)
    r0, r1 = (torch.load(tmp_path / f'{r}.pt') for r in range(2))
    want = torch.tensor([[1., 2.], [3., 4.], [11., 12.], [13., 14.]])
    for r in (r0, r1):
        assert torch.equal(r['y'], want) and r['requires_grad']
        assert torch.equal(r['plain'], torch.tensor([[0., 0., 0.], [1., 1., 1.]]))
        assert torch.equal(r['list'][0], want)
        assert 'different shapes' in r['error'] and 'batch_size_per_gpu' in r['error']
    # backward sums every rank's gradient for this rank's rows: d/dy of rank k's loss = w + 2 (k+1) y,
    # summed over k = 0, 1: 2 w + 6 y; rank r keeps rows 2r, 2r+1
    w = torch.arange(8, dtype=torch.float32).view(4, 2)
    total = 2 * w + 6 * want
    assert torch.equal(r0['grad'], total[:2]) and torch.equal(r1['grad'], total[2:])


def test_one_process_returns_the_input():
    x = torch.ones(2, 3, requires_grad=True)
    assert gather_batch(x) is x and gather_signal(None) is None
    with pytest.raises(TypeError, match='cannot gather a dict'):
        gather_signal({'a': x})


# ---------------------------------------------------------------------------------------------- models
def _run(model, batch):
    """One train_step; returns (losses, gradients after the cross-rank averaging, step signals)."""
    grads = {}
    parent = model.before_optimizer_step

    def capture(it):
        parent(it)  # KDModel averages the component parameters' gradients across ranks here
        named = list(unwrap(model.net_g).named_parameters())
        named += [(f'component.{i}', p) for i, p in enumerate(model.component_params)]
        grads.update({n: p.grad.detach().clone() for n, p in named if p.grad is not None})

    model.before_optimizer_step = capture
    losses = model.train_step(batch, 1)
    return {k: v.item() for k, v in losses.items()}, grads, model.last_step.values


def _model_worker(rank, world_size, tmp):
    tmp = Path(tmp)
    batch = torch.load(tmp / 'batch.pt')
    rows = slice(rank * B_LOCAL, (rank + 1) * B_LOCAL)  # rank r: its slice of the global batch
    torch.manual_seed(0)
    model = build_model(load_options(str(tmp / 'opt.yml')), rank=rank, world_size=world_size)
    assert isinstance(model.net_g, torch.nn.parallel.DistributedDataParallel)
    losses, grads, values = _run(model, {'lq': batch['lq'][rows], 'gt': batch['gt'][rows]})
    keep = {k: values[k] for k in ('negatives',) if k in values}
    torch.save({'losses': losses, 'grads': grads, 'values': keep}, tmp / f'{rank}.pt')


def _two_processes_and_one(tmp_path, opt, batch):
    """(rank results, single-process result) for the same options, seed and global batch."""
    write_options(opt, tmp_path / 'opt.yml')
    torch.save(batch, tmp_path / 'batch.pt')
    run_gloo(_model_worker, tmp_path, str(tmp_path), world_size=WORLD)
    ranks = [torch.load(tmp_path / f'{r}.pt', weights_only=False) for r in range(WORLD)]
    torch.manual_seed(0)
    single = build_model(load_options(str(tmp_path / 'opt.yml')))
    return ranks, single


def _assert_same_gradients(ranks, ref_grads):
    assert ref_grads
    for res in ranks:
        assert set(res['grads']) == set(ref_grads)
        for name, g in ref_grads.items():
            assert torch.allclose(res['grads'][name], g, rtol=1e-4, atol=1e-7), name


# ---- FACD: every other image of the global batch is a negative
FACD_NET = {'type': 'EDSR', 'num_feat': 8, 'num_block': 2}
FACD_TEACHER = {'type': 'EDSR', 'num_feat': 16, 'num_block': 2}
FACD_SIGNALS = ['student_feats_regressed', 'teacher_feats_normalized', 'alpha']


def facd_options(tmp):
    losses = [
        {'type': 'FACDReconstructionLoss', 'weight': 1.0, 'name': 'l_sr', 'inputs': {'alpha': 'alpha'}},
        {'type': 'FACDFeatureContrastLoss', 'weight': 4.0, 'name': 'l_facd', 'tap_weights': [0.6, 0.4],
         'normalize': 'none',
         'inputs': {'student_feats': 'student_feats_regressed_global',
                    'teacher_feats': 'teacher_feats_normalized_global', 'alpha': 'alpha_global'}},
    ]
    distill = {'taps': {'student': ['body.0', 'body.1'], 'teacher': ['body.0', 'body.1']},
               'facd': {}, 'gather': {'signals': FACD_SIGNALS}}
    return tiny_kd_options(tmp, losses, distill, teacher=FACD_TEACHER, student=FACD_NET)


def test_facd_two_processes_equal_one_process_on_the_global_batch(tmp_path):
    opt = facd_options(tmp_path)
    g = torch.Generator().manual_seed(3)
    lq = torch.rand(WORLD * B_LOCAL, 3, 8, 8, generator=g)
    probe_opt = copy.deepcopy(opt)
    write_options(probe_opt, tmp_path / 'probe.yml')
    torch.manual_seed(0)
    probe = build_model(load_options(str(tmp_path / 'probe.yml')))
    with torch.no_grad():  # GT = teacher output for images 0, 2 (alpha 1), student output for 1, 3 (alpha 0)
        sr, t = probe.net_g(lq), probe.teacher.net(lq)
    gt = torch.stack([t[0], sr[1], t[2], sr[3]])
    ranks, single = _two_processes_and_one(tmp_path, opt, {'lq': lq, 'gt': gt})
    ref_losses, ref_grads, ref_values = _run(single, {'lq': lq, 'gt': gt})
    assert ref_values['alpha'].tolist() == [1.0, 0.0, 1.0, 0.0]

    for res in ranks:  # the feature term is the global one on every rank
        assert res['losses']['l_facd'] == pytest.approx(ref_losses['l_facd'], rel=1e-5)
    # L_SR is a per-rank mean; the ranks' average (what DDP optimises) is the global one
    assert sum(r['losses']['l_sr'] for r in ranks) / WORLD == pytest.approx(ref_losses['l_sr'], rel=1e-5)
    _assert_same_gradients(ranks, ref_grads)

    # rank 0's own 2 images only (the former behaviour) would give another value: 2 negatives, not 6
    feats = [ref_values[s] for s in FACD_SIGNALS]
    local = FACDFeatureContrastLoss(tap_weights=[0.6, 0.4], normalize='none')(
        [f[:B_LOCAL] for f in feats[0]], [f[:B_LOCAL] for f in feats[1]], feats[2][:B_LOCAL])
    assert 4.0 * local.item() != pytest.approx(ref_losses['l_facd'], rel=1e-2)


# ---- CSD: num negatives drawn from the global batch, contrastive ratio over the global batch
CSD_LAYERS, CSD_WEIGHTS, CSD_NUM = ['relu1_1', 'relu2_1'], [0.25, 1.0], 3


def csd_options(tmp, route='reduce'):
    """``route``: 'reduce' (the option files: per-rank signals, reduce: global) or 'gather' (the
    gathered batch, reduce: local: every rank holds the whole batch's embeddings)."""
    opt = tiny_sr_options(tmp)
    opt['model_type'] = 'CSDModel'
    opt['network_g'] = {'type': 'SlimmableEDSR', 'num_feat': 16, 'num_block': 2, 'res_scale': 0.1}
    opt['train'].pop('pixel_opt')
    opt['train']['losses'] = [
        {'type': 'L1Loss', 'weight': 255.0, 'name': 'l_pix'},
        {'type': 'ContrastiveRatioLoss', 'weight': 200.0, 'name': 'l_con', 'weights': CSD_WEIGHTS},
        {'type': 'L1Loss', 'weight': 255.0, 'name': 'l_teacher', 'inputs': {'pred': 'teacher_sr'}},
    ]
    opt['distill'] = {
        'csd': {'variant': 'paper', 'student_width': 0.25, 'init_from': 'scratch'},
        'negatives': {'source': 'bicubic', 'num': CSD_NUM},  # 3 > the 2 images of one rank
        'embedding': {'type': 'VGG19Features', 'layers': CSD_LAYERS, 'allow_random': True},
    }
    if route == 'gather':
        opt['train']['losses'][1].update(reduce='local', inputs={'anchor': 'emb_sr_global',
                                                                 'positive': 'emb_teacher_sr_global'})
        opt['distill']['gather'] = {'signals': ['emb_sr', 'emb_teacher_sr']}
    return opt


@pytest.mark.parametrize('route', ['reduce', 'gather'])
def test_csd_two_processes_equal_one_process_on_the_global_batch(tmp_path, route):
    opt = csd_options(tmp_path, route)
    g = torch.Generator().manual_seed(5)
    batch = {'lq': torch.rand(WORLD * B_LOCAL, 3, 8, 8, generator=g),
             'gt': torch.rand(WORLD * B_LOCAL, 3, 16, 16, generator=g)}
    ranks, single = _two_processes_and_one(tmp_path, opt, batch)
    gen = torch.Generator()
    gen.set_state(next(c for c in single.components if c.name == 'negatives').generator.get_state())
    idx = torch.randperm(WORLD * B_LOCAL, generator=gen)[:CSD_NUM]
    ref_losses, ref_grads, ref_values = _run(single, batch)

    want = F.interpolate(batch['lq'][idx], scale_factor=2, mode='bicubic', align_corners=False).clamp(0, 1)
    assert torch.equal(ref_values['negatives'], want)
    for res in ranks:  # the same 3 negatives, drawn from all 4 images, on both ranks
        assert res['values']['negatives'].shape[0] == CSD_NUM
        assert torch.equal(res['values']['negatives'], want)
        assert res['losses']['l_con'] == pytest.approx(ref_losses['l_con'], rel=1e-5)
    for name in ('l_pix', 'l_teacher'):  # per-rank means; their average is the global mean
        assert sum(r['losses'][name] for r in ranks) / WORLD == pytest.approx(ref_losses[name], rel=1e-5)
    _assert_same_gradients(ranks, ref_grads)

    # rank 0's 2 anchors with the same negatives (reduce: local on per-rank signals) differ beyond the
    # tolerance used above (a ratio of batch means is not a mean of ratios) ...
    a, p, n = (ref_values[k] for k in ('emb_sr', 'emb_teacher_sr', 'emb_negatives'))
    con = ContrastiveRatioLoss(CSD_WEIGHTS, reduce='local')
    local = con([x[:B_LOCAL] for x in a], [x[:B_LOCAL] for x in p], n)
    assert 200 * local.item() != pytest.approx(ref_losses['l_con'], rel=1e-4)
    # ... and the former per-rank draw, min(3, 2) = 2 negatives from rank 0's own images, by far
    vgg = next(c for c in single.components if c.name == 'embedding').net
    with torch.no_grad():
        own = F.interpolate(batch['lq'][:B_LOCAL], scale_factor=2, mode='bicubic', align_corners=False).clamp(0, 1)
        former = con([x[:B_LOCAL] for x in a], [x[:B_LOCAL] for x in p], list(vgg(own)))
    assert 200 * former.item() != pytest.approx(ref_losses['l_con'], rel=0.1)


def test_csd_several_processes_refuse_a_per_rank_contrastive_ratio(tmp_path):
    opt = csd_options(tmp_path)  # defaults: anchor emb_sr, positive emb_teacher_sr (this rank's)
    model = build_model(load_options(str(write_options(opt, tmp_path / 'global.yml'))))
    model.world_size = 2  # the check only (no process group here)
    negatives = next(c for c in model.components if c.name == 'negatives')
    negatives.before_step(model, 1)  # reduce: global sums over the ranks: accepted
    opt['train']['losses'][1]['reduce'] = 'local'  # this rank's means only
    model = build_model(load_options(str(write_options(opt, tmp_path / 'local.yml'))))
    model.world_size = 2
    negatives = next(c for c in model.components if c.name == 'negatives')
    with pytest.raises(ValueError, match=r"train.losses.1.inputs.anchor \(l_con\): reads 'emb_sr', this rank's "
                                         r"images only, with 2 processes; CSD's contrastive ratio .* read "
                                         r"'emb_sr_global' and list 'emb_sr' in distill.gather.signals, or set "
                                         r"reduce: global"):
        negatives.before_step(model, 1)


# ---- DCKD: per-sample negatives from the history model, contrastive ratio over the global batch
DCKD_VQGAN = {'type': 'VQGANEncoder', 'ch': 32, 'ch_mult': [1, 1], 'z_channels': 32, 'embed_dim': 32,
              'n_embed': 16, 'return_z': True, 'taps': [0, 1]}
DCKD_WEIGHTS = [0.5, 1.0]


def dckd_options(tmp):
    """A tiny DCKD run whose negatives need no random draw: the history model on the clean LR and one
    copy blurred with a fixed isotropic kernel (the degradation generator is seeded per rank, so random
    degradations would differ from one process's). At step 1 the history model is the student itself,
    so the clean negative alone would put the ratio's denominator at ~eps."""
    vq = {**DCKD_VQGAN, 'checkpoint_path': str(write_vqgan(DCKD_VQGAN, tmp / 'last.ckpt'))}
    losses = [{'type': 'L1Loss', 'name': 'l_pix'},
              {'type': 'ContrastiveRatioLoss', 'weight': 0.1, 'name': 'l_dcl', 'weights': DCKD_WEIGHTS}]
    blur = {'noise_prob': 0.0, 'blur_prob': 1.0, 'blur_kernel': [5, 5], 'blur_sigma': [1.5, 1.5],
            'blur_isotropic': True}
    distill = {'embedding': vq, 'history': {'variant': 'paper', 'include_clean': True, 'num_degraded': 1,
                                            'degradation': blur, 'schedule': [[100, 1]]}}
    return tiny_kd_options(tmp, losses, distill)


def test_dckd_two_processes_equal_one_process_on_the_global_batch(tmp_path):
    g = torch.Generator().manual_seed(9)
    batch = {'lq': torch.rand(WORLD * B_LOCAL, 3, 8, 8, generator=g),
             'gt': torch.rand(WORLD * B_LOCAL, 3, 16, 16, generator=g)}
    ranks, single = _two_processes_and_one(tmp_path, dckd_options(tmp_path), batch)
    ref_losses, ref_grads, ref_values = _run(single, batch)
    assert ref_values['emb_negatives'][0].shape[:2] == (WORLD * B_LOCAL, 2)  # per-sample negatives
    for res in ranks:  # the option files' default reduce: global -- nothing gathered
        assert res['losses']['l_dcl'] == pytest.approx(ref_losses['l_dcl'], rel=1e-5)
    assert sum(r['losses']['l_pix'] for r in ranks) / WORLD == pytest.approx(ref_losses['l_pix'], rel=1e-5)
    _assert_same_gradients(ranks, ref_grads)
    # the released per-GPU ratio (reduce: local) on rank 0's 2 images gives another value
    a, p, n = (ref_values[k] for k in ('emb_sr', 'emb_teacher_sr', 'emb_negatives'))
    local = ContrastiveRatioLoss(DCKD_WEIGHTS, reduce='local')(*([x[:B_LOCAL] for x in v] for v in (a, p, n)))
    assert 0.1 * local.item() != pytest.approx(ref_losses['l_dcl'], rel=1e-4)
