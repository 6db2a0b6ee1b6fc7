"""DCKD's history model: update arithmetic, schedule, negatives, resume state."""
import logging

import pytest
import torch

from ckdsr.models import build_model
from ckdsr.models.distill.history import DEFAULT_SCHEDULE, check_schedule, update_due, update_period
from tests.helpers.kd import tiny_kd_options
from tests.helpers.tiny_run import write_options
from ckdsr.utils.options import load_options


def build(tmp_path, history=None, ema_decay=0.999, distill_extra=None, losses=None):
    distill = {'history': history if history is not None else {}, **(distill_extra or {})}
    opt = tiny_kd_options(tmp_path, losses or [{'type': 'L1Loss'},
                                               {'type': 'L1Loss', 'name': 'l_kd', 'inputs': {'target': 'teacher_sr'}}],
                          distill, ema_decay=ema_decay)
    opt = load_options(str(write_options(opt, tmp_path / 'o.yml')))
    return build_model(opt)


def history_of(model):
    return next(c for c in model.components if c.name == 'history')


def batch(b=2, size=8, scale=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {'lq': torch.rand(b, 3, size, size, generator=g),
            'gt': torch.rand(b, 3, size * scale, size * scale, generator=g)}


def fill(net, value):
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(value)


# ----------------------------------------------------------------------------------- schedule
def test_default_schedule_periods_and_due_iterations():
    s = check_schedule(DEFAULT_SCHEDULE)
    assert [update_period(s, it) for it in (1, 1000, 100000, 100001, 200000, 200001, 300000, 300001, 10 ** 6)] == \
        [1000, 1000, 1000, 2000, 2000, 3000, 3000, 3000, 3000]
    due = {it: update_due(s, it) for it in (999, 1000, 1500, 100000, 101000, 102000, 200000, 201000, 202000,
                                            300000, 301000, 303000, 600000)}
    assert due == {999: False, 1000: True, 1500: False, 100000: True, 101000: False, 102000: True, 200000: True,
                   201000: True, 202000: False, 300000: True, 301000: False, 303000: True, 600000: True}
    # 250k iterations: 100 updates up to 100k, 50 (102k..200k), 17 (201k..249k)
    assert sum(update_due(s, it) for it in range(1, 250001)) == 167


def test_schedule_is_checked():
    with pytest.raises(ValueError, match='must increase'):
        check_schedule([[200, 1], [100, 2]])
    with pytest.raises(ValueError, match=r'schedule.0: expected \[until_iter, every\]'):
        check_schedule([[100, 0]])
    with pytest.raises(ValueError, match='at least one'):
        check_schedule([])


# ----------------------------------------------------------------------------------- update arithmetic
def test_update_follows_the_ema_student_with_decay_01(tmp_path):
    model = build(tmp_path, {'variant': 'official', 'schedule': [[10, 2]]})
    hist = history_of(model)
    assert hist.source == 'ema'
    fill(hist.net, 1.0)
    fill(model.ema.module, 3.0)
    fill(model.net_g, -7.0)  # the raw student is not what the history follows
    hist.after_step(model, 1)  # not due: every 2
    assert all(torch.all(p == 1.0) for p in hist.net.parameters())
    hist.after_step(model, 2)  # 0.1 * 1 + 0.9 * 3 = 2.8
    assert all(torch.allclose(p, torch.full_like(p, 2.8)) for p in hist.net.parameters())
    fill(model.ema.module, 5.0)
    hist.after_step(model, 4)  # 0.1 * 2.8 + 0.9 * 5 = 4.78
    assert all(torch.allclose(p, torch.full_like(p, 4.78)) for p in hist.net.parameters())
    assert hist.updates == 2 and hist.last_update == 4


def test_update_past_the_last_pair_keeps_the_last_period(tmp_path):
    model = build(tmp_path, {'source': 'ema', 'schedule': [[4, 1], [8, 3]]})
    hist = history_of(model)
    fill(hist.net, 0.0)
    fill(model.ema.module, 1.0)
    done = []
    for it in range(1, 20):
        before = hist.updates
        hist.after_step(model, it)
        if hist.updates > before:
            done.append(it)
    assert done == [1, 2, 3, 4, 6, 9, 12, 15, 18]
    # nine updates towards 1 from 0: 1 - 0.1 ** 9
    p = next(hist.net.parameters())
    assert torch.allclose(p, torch.full_like(p, 1 - 0.1 ** 9))


def test_without_ema_the_history_follows_the_raw_student_with_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger='ckdsr'):
        model = build(tmp_path, {'variant': 'official', 'schedule': [[10, 1]]}, ema_decay=0.0)
    assert 'follows the raw student' in caplog.text
    hist = history_of(model)
    assert model.ema is None and hist.source == 'student'
    fill(hist.net, 2.0)
    fill(model.net_g, 4.0)
    hist.after_step(model, 1)  # 0.1 * 2 + 0.9 * 4 = 3.8
    assert all(torch.allclose(p, torch.full_like(p, 3.8)) for p in hist.net.parameters())


def test_train_steps_update_the_history_from_the_ema_after_its_update(tmp_path):
    model = build(tmp_path, {'variant': 'official', 'schedule': [[100, 2]]})
    hist = history_of(model)
    expected = [p.detach().clone() for p in hist.net.parameters()]
    for it in range(1, 5):
        model.train_step(batch(seed=it), it)
        if it % 2 == 0:  # his = 0.1 his + 0.9 ema (the EMA already moved this step)
            expected = [0.1 * e + 0.9 * q.detach() for e, q in zip(expected, model.ema.module.parameters())]
    for e, p in zip(expected, hist.net.parameters()):
        assert torch.allclose(e, p, atol=1e-6)
    assert hist.updates == 2
    assert not any(torch.equal(e, s) for e, s in zip(hist.net.parameters(), model.net_g.parameters()) if e.numel() > 1)


# ----------------------------------------------------------------------------------- negatives
def test_negatives_are_one_batched_forward_of_clean_then_degraded(tmp_path):
    model = build(tmp_path, {'variant': 'official', 'num_degraded': 3})
    hist = history_of(model)
    calls = []
    hist.net.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape))
    lq = batch()['lq']
    neg = hist.negatives(lq)
    assert calls == [torch.Size([8, 3, 8, 8])]  # B * N = 2 * (1 + 3), one forward
    assert neg.shape == (2, 4, 3, 16, 16) and not neg.requires_grad
    with torch.no_grad():
        clean = hist.net(lq)
    assert torch.allclose(neg[:, 0], clean, atol=1e-6)
    assert not torch.allclose(neg[:, 1], clean, atol=1e-3)  # noisy copies differ
    # noise sigma <= 30/255: the degraded inputs stay close to the clean LR
    x = hist.inputs(lq)
    assert x.shape == (2, 4, 3, 8, 8) and torch.equal(x[:, 0], lq)
    assert 0 < (x[:, 1:] - lq.unsqueeze(1)).abs().mean() < 30 / 255


def test_negatives_signal_in_a_step_and_frozen_history(tmp_path):
    model = build(tmp_path, {'variant': 'official'})
    hist = history_of(model)
    model.train_step(batch(), 1)
    assert all(not p.requires_grad and p.grad is None for p in hist.net.parameters())
    assert not hist.net.training
    step = model.new_step()
    model.feed_data(batch())
    assert step['negatives'].shape == (2, 5, 3, 16, 16)  # default: clean + 4 degraded
    assert step.calls == {'lq': 1, 'negatives': 1}


def test_history_and_bicubic_negatives_cannot_be_combined(tmp_path):
    with pytest.raises(ValueError, match='distill.history and distill.negatives both provide'):
        build(tmp_path, {}, distill_extra={'negatives': {'num': 2}})


# ----------------------------------------------------------------------------------- resume
def test_resume_state_restores_weights_generator_and_counters(tmp_path):
    model = build(tmp_path / 'a', {'schedule': [[100, 1]]})
    for it in (1, 2):
        model.train_step(batch(seed=it), it)
    state = model.training_state()
    saved = state['extra']['history']
    assert set(saved) == {'weights', 'generator', 'updates', 'last_update', 'source'}
    assert saved['updates'] == 2
    other = build(tmp_path / 'b', {'schedule': [[100, 1]]})
    other.load_training_state(state)
    h1, h2 = history_of(model), history_of(other)
    for a, b in zip(h1.net.state_dict().values(), h2.net.state_dict().values()):
        assert torch.equal(a, b)
    lq = batch(seed=9)['lq']
    assert torch.equal(h1.negatives(lq), h2.negatives(lq))  # same degradations drawn next
    assert h2.updates == 2 and h2.last_update == 2


# ----------------------------------------------------------------------------------- paper vs official
@pytest.mark.parametrize('variant, source, include_clean, n', [('paper', 'student', False, 4),
                                                              ('official', 'ema', True, 5)])
def test_variant_sets_the_source_and_the_negative_composition(tmp_path, variant, source, include_clean, n):
    model = build(tmp_path, {'variant': variant})
    hist = history_of(model)
    assert (hist.source, hist.include_clean, hist.num_degraded) == (source, include_clean, 4)
    lq = batch()['lq']
    x = hist.inputs(lq)
    assert x.shape == (2, n, 3, 8, 8)
    clean_rows = [k for k in range(n) if torch.equal(x[:, k], lq)]
    assert clean_rows == ([0] if include_clean else [])  # paper Eq. 4: only degraded images
    assert history_of(build(tmp_path / 'd', {})).source == 'student'  # default variant: paper


def test_explicit_keys_override_the_variant(tmp_path):
    hist = history_of(build(tmp_path, {'variant': 'paper', 'source': 'ema', 'include_clean': True}))
    assert (hist.source, hist.include_clean) == ('ema', True)
    hist = history_of(build(tmp_path / 'o', {'variant': 'official', 'source': 'student', 'include_clean': False}))
    assert (hist.source, hist.include_clean) == ('student', False)


def test_paper_history_follows_the_current_student_not_the_ema(tmp_path):
    model = build(tmp_path, {'variant': 'paper', 'schedule': [[10, 1]]})  # EMA exists (ema_decay 0.999)
    hist = history_of(model)
    assert model.ema is not None and hist.source == 'student'
    fill(hist.net, 1.0)
    fill(model.ema.module, 3.0)
    fill(model.net_g, 5.0)
    hist.after_step(model, 1)  # 0.1 * 1 + 0.9 * 5 = 4.6 (the EMA's 3 would give 2.8)
    assert all(torch.allclose(p, torch.full_like(p, 4.6)) for p in hist.net.parameters())
