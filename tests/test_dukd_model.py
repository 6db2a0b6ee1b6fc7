"""DUKD in a KDModel: network calls per step, hand-computed term values, the official switches."""
import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ckdsr.models import build_model
from ckdsr.models.network_io import unwrap
from tests.helpers.kd import tiny_kd_options
from tests.helpers.tiny_run import write_options
from ckdsr.utils.options import load_options

TERMS = [
    {'type': 'L1Loss', 'name': 'l_pix'},
    {'type': 'L1Loss', 'name': 'l_kd', 'inputs': {'target': 'teacher_sr'}},
    {'type': 'L1Loss', 'name': 'l_zi', 'inputs': {'pred': 'dukd_zi_sr', 'target': 'dukd_zi_teacher'}},
    {'type': 'L1Loss', 'name': 'l_zo_pix', 'inputs': {'pred': 'dukd_zo_sr', 'target': 'dukd_zo_gt'}},
    {'type': 'L1Loss', 'name': 'l_zo_kd', 'inputs': {'pred': 'dukd_zo_sr', 'target': 'dukd_zo_teacher'}},
]


def build(tmp_path, dukd=None, terms=TERMS, **kw):
    opt = tiny_kd_options(tmp_path, terms, {'dukd': dukd if dukd is not None else {}}, **kw)
    return build_model(load_options(str(write_options(opt, tmp_path / 'o.yml'))))


def dukd_of(model):
    return next(c for c in model.components if c.name == 'dukd')


def record(net):
    shapes = []
    net.register_forward_pre_hook(lambda m, args: shapes.append(tuple(args[0].shape)))
    return shapes


class Up(nn.Module):
    """``a * nearest x2 upsampling``: commutes exactly with the LCR ops (up to the inversion's offset)."""

    def __init__(self, a):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(float(a)))

    def forward(self, x):
        return self.a * F.interpolate(x, scale_factor=2, mode='nearest')


# ----------------------------------------------------------------------------- network calls
@pytest.mark.parametrize('variant,teacher,student', [
    ('paper', [(6, 3, 8, 8), (2, 3, 4, 4)], [(6, 3, 8, 8), (2, 3, 4, 4)]),
    ('official', [(6, 3, 8, 8), (2, 3, 4, 4)], [(2, 3, 8, 8), (4, 3, 8, 8), (2, 3, 4, 4)]),
])
def test_network_calls_per_step(tmp_path, variant, teacher, student):
    model = build(tmp_path, {'variant': variant, 'n_zoom_in': 2})
    t_calls, s_calls = record(model.teacher.net), record(unwrap(model.net_g))
    model.train_step({'lq': torch.rand(2, 3, 8, 8), 'gt': torch.rand(2, 3, 16, 16)}, 1)
    # paper: [LR, zoom-in tiles] in ONE forward per network, the smaller zoom-out batch in a second;
    # official: the teacher likewise, the student on the LR, then (after the first optimizer step) the tiles
    assert t_calls == teacher
    assert s_calls == student
    assert model.last_step.calls['teacher_sr'] == 1  # one provider call for all teacher outputs


def test_without_zoom_out_terms_each_network_runs_once(tmp_path):
    model = build(tmp_path, {'n_zoom_in': 1}, terms=TERMS[:3])
    t_calls, s_calls = record(model.teacher.net), record(unwrap(model.net_g))
    model.train_step({'lq': torch.rand(3, 3, 8, 8), 'gt': torch.rand(3, 3, 16, 16)}, 1)
    assert t_calls == [(6, 3, 8, 8)] and s_calls == [(6, 3, 8, 8)]


# ----------------------------------------------------------------------------- hand-computed values
LQ = torch.tensor([[[[0.25, 0.5], [0.75, 1.0]]]])
GT = torch.tensor([[[[0.0, 0.25, 0.5, 0.75], [0.0, 0.25, 0.5, 0.75],
                     [1.0, 1.0, 0.5, 0.5], [1.0, 1.0, 0.5, 0.5]]]])


@pytest.mark.parametrize('variant', ['paper', 'official'])
@pytest.mark.parametrize('lcr_prob,l_zi', [(None, 0.5625), (1.0, 0.4375)])
def test_hand_computed_terms(tmp_path, variant, lcr_prob, l_zi):
    """Teacher T = up2, student S = 2 * up2, x2, every tile (n = 4). By hand, with u = up2:
    l_pix = mean|2u(x) - y| = 11/16; l_kd = mean|u(x)| = mean(x) = 0.625;
    l_zi  = mean|2u(t) - u(t)| = mean(y) = 9/16 without LCR; with all four ops on every tile,
            g^-1(2u(g(t))) = 2u(t) - 1 (the inversion's offset doubles), so mean|u(t) - 1| = 7/16;
    zoom-out: x_zo = mean(x) = 0.625 (2x2 -> 1x1, symmetric kernel), S(x_zo) = 1.25:
    l_zo_pix = mean|1.25 - x| = 0.625; l_zo_kd = |1.25 - 0.625| = 0.625."""
    model = build(tmp_path, {'variant': variant, 'n_zoom_in': 4, 'lcr_prob': lcr_prob})
    model.net_g, model.teacher.net = Up(2.0), Up(1.0).requires_grad_(False)
    model.feed_data({'lq': LQ, 'gt': GT})
    step = model.new_step()
    got = {t.name: float(t(step).detach()) for t in model.terms}
    want = {'l_pix': 11 / 16, 'l_kd': 0.625, 'l_zi': l_zi, 'l_zo_pix': 0.625, 'l_zo_kd': 0.625}
    assert got == pytest.approx(want, abs=1e-7)


def test_hand_computed_terms_with_weights(tmp_path):
    terms = [dict(t, weight=w) for t, w in zip(TERMS, (5.0, 1.0, 1.0, 5.0, 1.0))]  # EDSR's lambda_pix 5
    model = build(tmp_path, {'n_zoom_in': 4, 'lcr_prob': None}, terms=terms)
    model.net_g, model.teacher.net = Up(2.0), Up(1.0).requires_grad_(False)
    model.feed_data({'lq': LQ, 'gt': GT})
    losses = model.compute_losses(1)
    assert float(losses['l_pix'].detach()) == pytest.approx(5 * 11 / 16)
    assert float(losses['l_zo_pix'].detach()) == pytest.approx(5 * 0.625)
    assert float(sum(losses.values()).detach()) == pytest.approx(55 / 16 + 0.625 + 9 / 16 + 3.125 + 0.625)


# ----------------------------------------------------------------------------- LCR at model level
def dyadic(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 257, shape, generator=g).float() / 256


@pytest.mark.parametrize('variant', ['paper', 'official'])
def test_lcr_undo_at_model_level(tmp_path, variant):
    model = build(tmp_path, {'variant': variant, 'n_zoom_in': 4, 'lcr_prob': 0.5}, terms=TERMS[:3])
    model.net_g = Up(1.0)
    model.feed_data({'lq': dyadic(8, 3, 6, 6), 'gt': dyadic(8, 3, 12, 12, seed=1)})
    step = model.new_step()
    names, tiles, out = step['dukd_zi_ops'], step['dukd_zi_lq'], step['dukd_zi_sr']
    assert len(set(names)) >= 8
    assert not torch.equal(step['dukd_zi_input'], tiles)  # the student saw transformed tiles
    wrong = [i for i, n in enumerate(names) if 'transpose' in n and ('vflip' in n) != ('hflip' in n)]
    assert wrong
    plain = Up(1.0)(tiles).detach()
    for i in range(len(names)):
        if variant == 'official' and i in wrong:
            assert torch.equal(out[i], plain[i].flip(-2).flip(-1))  # the released code's 180-degree rotation
        else:
            assert torch.equal(out[i], plain[i])


def test_teacher_labels_the_plain_tiles(tmp_path):
    model = build(tmp_path, {'n_zoom_in': 2, 'lcr_prob': 1.0}, terms=TERMS[:3])
    model.feed_data({'lq': torch.rand(2, 3, 8, 8), 'gt': torch.rand(2, 3, 16, 16)})
    step = model.new_step()
    with torch.no_grad():
        want = model.teacher.net(step['dukd_zi_lq'])
    assert torch.allclose(step['dukd_zi_teacher'], want, atol=1e-5)
    assert not step['dukd_zi_teacher'].requires_grad and step['dukd_zi_sr'].requires_grad


# ----------------------------------------------------------------------------- official switches
def grads(net, loss):
    return torch.autograd.grad(loss, list(net.parameters()))


@pytest.mark.parametrize('variant', ['paper', 'official'])
def test_optimizer_steps(tmp_path, variant):
    """SGD (lr 0.1), every tile, no LCR: deterministic, so the update can be replayed by hand.
    paper: w1 = w0 - lr * (gA + gB)(w0); official: w' = w0 - lr * gA(w0), w1 = w' - lr * (gA(w0) + gB(w'))
    (the released code's second step reuses the first gradient: zero_grad only before step A)."""
    model = build(tmp_path, {'variant': variant, 'n_zoom_in': 4, 'lcr_prob': None},
                  optim_g={'type': 'SGD', 'lr': 0.1})
    model.schedulers.clear()
    lq, gt = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 16, 16)
    ref = copy.deepcopy(unwrap(model.net_g))
    teacher = model.teacher.net

    def loss_a(net):
        sr = net(lq)
        return (sr - gt).abs().mean() + (sr - teacher(lq)).abs().mean()

    def loss_b(net):
        tiles = gt.reshape(2, 3, 2, 8, 2, 8).permute(0, 2, 4, 1, 3, 5).reshape(8, 3, 8, 8)
        x_zo = model.last_step.values['dukd_zo_lq']
        zo = net(x_zo)
        return ((net(tiles) - teacher(tiles)).abs().mean() + (zo - lq).abs().mean()
                + (zo - teacher(x_zo)).abs().mean())

    model.train_step({'lq': lq, 'gt': gt}, 1)
    g_a = grads(ref, loss_a(ref))
    if variant == 'paper':
        g_b = grads(ref, loss_b(ref))
        with torch.no_grad():
            for p, a, b in zip(ref.parameters(), g_a, g_b):
                p -= 0.1 * (a + b)
    else:
        with torch.no_grad():
            for p, a in zip(ref.parameters(), g_a):
                p -= 0.1 * a
        g_b = grads(ref, loss_b(ref))
        with torch.no_grad():
            for p, a, b in zip(ref.parameters(), g_a, g_b):
                p -= 0.1 * (a + b)
    for p, q in zip(unwrap(model.net_g).parameters(), ref.parameters()):
        assert torch.allclose(p, q, atol=1e-6), variant


def test_official_step_logs_every_term_and_the_total(tmp_path):
    model = build(tmp_path, {'variant': 'official'})
    out = model.train_step({'lq': torch.rand(2, 3, 8, 8), 'gt': torch.rand(2, 3, 16, 16)}, 1)
    assert list(out) == ['l_pix', 'l_kd', 'l_zi', 'l_zo_pix', 'l_zo_kd', 'l_total']
    assert float(out['l_total']) == pytest.approx(sum(float(out[k]) for k in list(out)[:-1]), rel=1e-6)
    assert model.late_terms == ['l_zi', 'l_zo_pix', 'l_zo_kd']


@pytest.mark.parametrize('variant,training', [('paper', False), ('official', True)])
def test_teacher_mode(tmp_path, variant, training):
    swin = {'type': 'SwinIR', 'embed_dim': 12, 'depths': [2], 'num_heads': [2], 'window_size': 4,
            'img_size': 8, 'mlp_ratio': 2, 'upsampler': 'pixelshuffle'}
    model = build(tmp_path, {'variant': variant}, terms=TERMS[:3], teacher=swin)
    drops = [m for m in model.teacher.net.modules() if type(m).__name__ == 'DropPath']
    assert drops and all(m.training == training for m in drops)  # stochastic depth on only when official
    assert not any(p.requires_grad for p in model.teacher.net.parameters())


def switches(comp):
    return comp.two_steps, comp.teacher_train_mode, comp.lcr_undo, comp.shared_tiles


def test_switches_override_the_variant(tmp_path):
    comp = dukd_of(build(tmp_path, {'variant': 'official', 'two_steps': False, 'shared_tiles': False}))
    assert switches(comp) == (False, True, 'forward', False)
    assert switches(dukd_of(build(tmp_path / 'b', {}))) == (False, False, 'reverse', False)
    assert switches(dukd_of(build(tmp_path / 'c', {'variant': 'official'}))) == (True, True, 'forward', True)


# ----------------------------------------------------------------------------- errors and state
@pytest.mark.parametrize('dukd,terms,match', [
    ({'n_zoom_in': 5}, TERMS, r'distill.dukd.n_zoom_in must be in \[1, 4\]'),
    ({'lcr_prob': 1.5}, TERMS, r'distill.dukd.lcr_prob must be in \[0, 1\]'),
    ({'lcr_ops': ['rotate']}, TERMS, 'distill.dukd.lcr_ops'),
    ({}, TERMS[:2], 'no term of train.losses reads a dukd_zi'),
])
def test_bad_options_are_clear_errors(tmp_path, dukd, terms, match):
    with pytest.raises(ValueError, match=match):
        build(tmp_path, dukd, terms=terms)


def test_two_steps_refuse_fp16(tmp_path):
    with pytest.raises(ValueError, match='train.amp: fp16'):
        build(tmp_path, {'variant': 'official'}, amp='fp16')


def test_generator_is_resume_state(tmp_path):
    model = build(tmp_path / 'a', {'n_zoom_in': 2})
    state = model.training_state()['extra']['dukd']
    lq, gt = torch.rand(4, 3, 8, 8), torch.rand(4, 3, 16, 16)
    first = dukd_of(model).make_zoom_in(lq, gt)['dukd_zi_positions']
    other = build(tmp_path / 'b', {'n_zoom_in': 2})
    dukd_of(other).generator.manual_seed(12345)
    other.load_extra_state({'dukd': state})
    assert torch.equal(dukd_of(other).make_zoom_in(lq, gt)['dukd_zi_positions'], first)


@pytest.mark.parametrize('variant', ['paper', 'official'])
def test_non_finite_loss_skips_the_whole_iteration(tmp_path, variant):
    model = build(tmp_path, {'variant': variant})
    before = {k: v.clone() for k, v in unwrap(model.net_g).state_dict().items()}
    lq = torch.rand(2, 3, 8, 8)
    lq[0, 0, 0, 0] = float('nan')
    out = model.train_step({'lq': lq, 'gt': torch.rand(2, 3, 16, 16)}, 1)
    assert not torch.isfinite(sum(out.values()))
    assert model.bad_steps == 1
    for k, v in unwrap(model.net_g).state_dict().items():
        assert torch.equal(v, before[k]), k  # no optimizer step at all (not even the official first one)


def test_student_taps_see_only_the_lr_batch(tmp_path):
    from ckdsr.utils.feature_taps import FeatureTaps
    model = build(tmp_path, {'n_zoom_in': 2}, terms=TERMS[:3])
    model.student_taps = ['body.0']  # as distill.taps.student would set (FAKD-style terms read them)
    model.needed = model.needed | {'student_feats'}
    lq = torch.rand(3, 3, 8, 8)
    model.feed_data({'lq': lq, 'gt': torch.rand(3, 3, 16, 16)})
    calls = record(unwrap(model.net_g))
    step = model.new_step()
    feats, sr = step['student_feats'], step['sr']
    assert calls == [(9, 3, 8, 8)]  # one forward: 3 LR + 6 tiles
    assert sr.shape[0] == 3 and step['dukd_zi_sr'].shape[0] == 6
    with FeatureTaps(model.net_g, ['body.0']) as taps:
        model.net_g(lq)
        alone = taps.features()
    assert torch.allclose(feats[0], alone[0], atol=1e-6)


@pytest.mark.parametrize('variant', ['paper', 'official'])
def test_resume_continues_exactly(tmp_path, variant):
    def data(seed):
        g = torch.Generator().manual_seed(seed)
        return {'lq': torch.rand(2, 3, 8, 8, generator=g), 'gt': torch.rand(2, 3, 16, 16, generator=g)}

    cfg = {'variant': variant, 'n_zoom_in': 2, 'lcr_prob': 0.5}
    model = build(tmp_path / 'a', cfg)
    for it in (1, 2):
        model.train_step(data(it), it)
    other = build(tmp_path / 'b', cfg)  # same stand-in teacher (seeded writer), different draws so far
    buf = io.BytesIO()  # through bytes, as a resumed run reads its file (no tensor shared with `model`)
    torch.save(model.training_state(), buf)
    buf.seek(0)
    other.load_training_state(torch.load(buf, weights_only=False))
    torch.manual_seed(12345)  # the step must not depend on the global RNG
    a = model.train_step(data(3), 3)
    b = other.train_step(data(3), 3)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    for x, y in zip(unwrap(model.net_g).parameters(), unwrap(other.net_g).parameters()):
        assert torch.equal(x, y)
