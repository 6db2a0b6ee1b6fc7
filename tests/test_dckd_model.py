"""A DCKD step end to end on tiny nets: what runs how often, what gets gradients, the loss terms."""
import pytest
import torch

from ckdsr.losses.contrastive_ratio import ContrastiveRatioLoss
from ckdsr.losses.dmm import DMMLoss
from ckdsr.models import build_model
from tests.helpers.kd import tiny_kd_options
from tests.helpers.standins import write_vqgan
from tests.helpers.tiny_run import write_options
from ckdsr.utils.options import load_options

TINY_VQGAN = {'type': 'VQGANEncoder', 'ch': 32, 'ch_mult': [1, 1, 2, 2, 4], 'z_channels': 32, 'embed_dim': 32,
              'n_embed': 16, 'return_z': True}
W = [0.03125, 0.0625, 0.125, 0.25, 1.0]
DCKD_LOSSES = [
    {'type': 'L1Loss', 'name': 'l_pix'},
    {'type': 'L1Loss', 'name': 'l_kd', 'inputs': {'target': 'teacher_sr'}},
    {'type': 'ContrastiveRatioLoss', 'weight': 0.1, 'name': 'l_dcl', 'weights': W, 'eps': 1e-7},
    {'type': 'DMMLoss', 'weight': 0.001, 'name': 'l_ce', 'variant': 'paper'},
]


def build(tmp_path, lcr=False, vqgan=None, losses=None, **vq_over):
    """A tiny DCKD model (history ``variant: official``: EMA source, clean + 4 degraded negatives).
    ``vqgan``: an existing stand-in VQGAN file to load (a resumed run loads the same file)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    vq = {**TINY_VQGAN, **vq_over}
    vq['checkpoint_path'] = str(write_vqgan(vq, tmp_path / 'last.ckpt')) if vqgan is None else vqgan
    distill = {'embedding': vq, 'history': {'variant': 'official', 'schedule': [[100, 1]]}}
    losses = list(losses or DCKD_LOSSES)
    if lcr:
        distill['lcr'] = {}
        losses.append({'type': 'LabelConsistencyLoss', 'name': 'l_lcr'})
    opt = tiny_kd_options(tmp_path, losses, distill, ema_decay=0.999)
    return build_model(load_options(str(write_options(opt, tmp_path / 'o.yml'))))


def comp(model, name):
    return next(c for c in model.components if c.name == name)


def batch(b=2, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {'lq': torch.rand(b, 3, size, size, generator=g), 'gt': torch.rand(b, 3, 2 * size, 2 * size, generator=g)}


def record(net):
    sizes = []
    net.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]))
    return sizes


@pytest.mark.parametrize('lcr', [False, True])
def test_one_step_runs_each_frozen_net_once_batched(tmp_path, lcr):
    model = build(tmp_path, lcr=lcr)
    hist, emb = comp(model, 'history'), comp(model, 'embedding')
    t_calls, h_calls, e_calls, s_calls = (record(n) for n in (model.teacher.net, hist.net, emb.net, model.net_g))
    z_calls = record(emb.net.encoder.mid.block_1)  # past the taps: only rows whose z is used
    losses = model.train_step(batch(), 1)
    expected_terms = {'l_pix', 'l_kd', 'l_dcl', 'l_ce', 'l_total'} | ({'l_lcr'} if lcr else set())
    assert set(losses) == expected_terms
    b, n = 2, 5
    assert t_calls == [2 * b if lcr else b]  # teacher: ONE forward (with the LCR batch when on)
    assert h_calls == [b * n]  # history: ONE forward over clean + 4 degraded copies
    assert e_calls == [b, b + b * n]  # encoder: anchor (with grad), then ONE pass over teacher_sr + negatives
    assert z_calls == [b, b]  # z of the student output, then of the teacher output only (not negatives)
    assert s_calls == [b]
    v = model.last_step.values
    with torch.no_grad():
        _, z_teacher = emb.net(v['teacher_sr'])
    torch.testing.assert_close(v['z_teacher_sr'], z_teacher, rtol=1e-4, atol=1e-5)
    calls = model.last_step.calls
    assert {k: calls[k] for k in ('teacher_sr', 'negatives', 'emb_sr', 'emb_teacher_sr', 'codebook')} == \
        {'teacher_sr': 1, 'negatives': 1, 'emb_sr': 1, 'emb_teacher_sr': 1, 'codebook': 1}
    assert all(v == 1 for v in calls.values())


def test_frozen_nets_get_no_gradients_and_stay_unchanged(tmp_path):
    model = build(tmp_path, lcr=True)
    frozen = {'teacher': model.teacher.net, 'embedding': comp(model, 'embedding').net}
    before = {k: {n: v.clone() for n, v in net.state_dict().items()} for k, net in frozen.items()}
    for it in (1, 2):
        model.train_step(batch(seed=it), it)
    for key, net in {**frozen, 'history': comp(model, 'history').net}.items():
        assert not net.training, key
        assert all(not p.requires_grad and p.grad is None for p in net.parameters()), key
    for key, net in frozen.items():
        assert all(torch.equal(v, before[key][n]) for n, v in net.state_dict().items()), key
    step = model.last_step
    assert step.values['emb_sr'][0].requires_grad and step.values['z_sr'].requires_grad
    assert not any(f.requires_grad for f in step.values['emb_teacher_sr'] + step.values['emb_negatives'])
    assert not step.values['negatives'].requires_grad and not step.values['teacher_sr'].requires_grad


def test_loss_terms_are_the_paper_total(tmp_path):
    model = build(tmp_path)
    losses = model.train_step(batch(), 1)
    v = model.last_step.values
    sr = v['sr'].detach()
    assert torch.allclose(losses['l_pix'], (sr - v['gt']).abs().mean())
    assert torch.allclose(losses['l_kd'], (sr - v['teacher_sr']).abs().mean())
    emb_sr = [f.detach() for f in v['emb_sr']]
    # per level: mean|a - p| / (sum_j mean|a - n_j| + 1e-7), negatives (B, N, C, h, w)
    by_hand = 0.0
    for w, a, p, negs in zip(W, emb_sr, v['emb_teacher_sr'], v['emb_negatives']):
        assert negs.shape[:2] == (2, 5)
        den = sum((a - negs[:, j]).abs().mean() for j in range(5))
        by_hand = by_hand + w * (a - p).abs().mean() / (den + 1e-7)
    assert torch.allclose(losses['l_dcl'], 0.1 * by_hand, rtol=1e-5)
    module = ContrastiveRatioLoss(W)(emb_sr, v['emb_teacher_sr'], v['emb_negatives'])
    assert torch.allclose(losses['l_dcl'], 0.1 * module)
    ce = DMMLoss('paper')(v['z_sr'].detach(), v['z_teacher_sr'], v['codebook'])
    assert torch.allclose(losses['l_ce'], 0.001 * ce)
    total = sum(losses[k] for k in ('l_pix', 'l_kd', 'l_dcl', 'l_ce'))
    assert torch.allclose(losses['l_total'], total)


def test_official_switches_reach_the_encoder_and_the_loss(tmp_path):
    losses = [dict(t) for t in DCKD_LOSSES]
    losses[3]['variant'] = 'official'
    model = build(tmp_path, losses=losses, input_range='01')
    assert comp(model, 'embedding').net.input_range == '01'
    assert next(t for t in model.terms if t.name == 'l_ce').loss.variant == 'official'
    out = model.train_step(batch(), 1)
    assert torch.isfinite(out['l_total'])


def test_missing_vqgan_names_the_key_and_where_to_download(tmp_path):
    vq = {**TINY_VQGAN}
    opt = tiny_kd_options(tmp_path, DCKD_LOSSES, {'embedding': vq, 'history': {}}, ema_decay=0.999)
    o = load_options(str(write_options(opt, tmp_path / 'o.yml')))
    with pytest.raises(FileNotFoundError) as err:
        build_model(o)
    msg = str(err.value)
    assert 'distill.embedding.checkpoint_path is not set' in msg
    assert 'vqgan_imagenet_f16_1024' in msg and 'https://heibox.uni-heidelberg.de/d/8088892a516d4e3baf92/' in msg


def test_resume_keeps_dckd_state(tmp_path):
    model = build(tmp_path / 'a', lcr=True)
    for it in (1, 2):
        model.train_step(batch(seed=it), it)
    state = model.training_state()
    assert set(state['extra']) >= {'history', 'lcr'}
    # A resumed run loads the frozen VQGAN from the same checkpoint path (frozen nets are not resume
    # state). The stand-in writer draws random weights from the global RNG, so a second file written
    # here would hold a different encoder: that, not the DCKD state, made this test order-dependent.
    other = build(tmp_path / 'b', lcr=True, vqgan=str(tmp_path / 'a' / 'last.ckpt'))
    other.load_training_state(state)
    for name in ('embedding', 'history'):
        for x, y in zip(comp(model, name).net.state_dict().values(), comp(other, name).net.state_dict().values()):
            assert torch.equal(x, y), name
    torch.manual_seed(12345)  # the steps must not depend on the global RNG (its state differs below)
    a = model.train_step(batch(seed=3), 3)
    b = other.train_step(batch(seed=3), 3)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
