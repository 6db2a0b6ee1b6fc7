"""Schedulers: lrs at given iterations against hand-computed values, warm-up, exact resume."""
import copy
import math

import pytest
import torch
from torch import nn

from ckdsr.models.schedulers import (SCHEDULER_ARGS, IterLRScheduler, build_scheduler, scheduler_class,
                               scheduler_signature)

C = math.cos(math.pi / 4)


def _opt(lr=1.0, groups=1):
    nets = [nn.Linear(1, 1) for _ in range(groups)]
    return torch.optim.SGD([{'params': n.parameters(), 'lr': lr * (i + 1)} for i, n in enumerate(nets)])


def _run(sched, n):
    """lrs of iterations 1..n as the training loop sees them (step after each iteration)."""
    out = []
    for _ in range(n):
        out.append(sched.optimizer.param_groups[0]['lr'])
        sched.step()
    return out


def test_multistep_hand_values():
    # BasicSR: iteration i runs at scheduler step i-1; milestones [2, 4] halve at steps 2 and 4
    sched = build_scheduler(_opt(), {'type': 'MultiStepLR', 'milestones': [2, 4], 'gamma': 0.5})
    assert _run(sched, 6) == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.25])
    assert sched.get_lr_at(3) == pytest.approx([0.5])
    assert sched.get_lr_at(100) == pytest.approx([0.25])


def test_multistep_restarts_hand_values():
    cfg = {'type': 'MultiStepRestartLR', 'milestones': [2, 4, 6, 8], 'gamma': 0.5,
           'restarts': [5], 'restart_weights': [0.5]}
    sched = build_scheduler(_opt(), cfg)
    # steps 0..8: 1, 1, .5, .5, .25 | restart at 5 -> .5, milestone 6 -> .25, .25, milestone 8 -> .125
    assert [sched.get_lr_at(s + 1)[0] for s in range(9)] == pytest.approx(
        [1, 1, 0.5, 0.5, 0.25, 0.5, 0.25, 0.25, 0.125])


def test_cosine_restart_hand_values():
    cfg = {'type': 'CosineAnnealingRestartLR', 'periods': [4, 4], 'restart_weights': [1, 0.5],
           'eta_min': 0}
    sched = build_scheduler(_opt(), cfg)
    expected = [1, (1 + C) / 2, 0.5, (1 - C) / 2, 0,              # steps 0..4: first period
                0.25 * (1 + C), 0.25, 0.25 * (1 - C), 0,          # steps 5..8: weight 0.5
                0]                                                # past the end: held
    assert _run(sched, 10) == pytest.approx(expected, abs=1e-12)


def test_cosine_eta_min():
    cfg = {'type': 'CosineAnnealingRestartLR', 'periods': [2], 'restart_weights': [1], 'eta_min': 0.1}
    sched = build_scheduler(_opt(), cfg)
    # eta + 0.5 * (1 - eta) * (1 + cos(pi * s / 2)): 1, 0.55, 0.1
    assert [sched.get_lr_at(i)[0] for i in (1, 2, 3)] == pytest.approx([1, 0.55, 0.1])


def test_warmup_then_schedule():
    sched = build_scheduler(_opt(), {'type': 'MultiStepLR', 'milestones': [2, 4], 'gamma': 0.5},
                            warmup_iter=4)
    # iterations 1..3 < warmup_iter: base * i / 4; from 4 on the schedule at step i - 1
    assert _run(sched, 6) == pytest.approx([0.25, 0.5, 0.75, 0.5, 0.25, 0.25])


def test_param_groups_scale_by_their_own_base():
    sched = build_scheduler(_opt(lr=1.0, groups=2), {'type': 'MultiStepLR', 'milestones': [1], 'gamma': 0.1},
                            warmup_iter=2)
    assert sched.get_last_lr() == pytest.approx([0.5, 1.0])
    sched.step()
    assert [g['lr'] for g in sched.optimizer.param_groups] == pytest.approx([0.1, 0.2])


def test_resume_is_exact():
    cfg = {'type': 'CosineAnnealingRestartLR', 'periods': [5, 7], 'restart_weights': [1, 0.3],
           'eta_min': 1e-7}
    full = _run(build_scheduler(_opt(lr=2e-4), cfg, warmup_iter=3), 14)

    first = build_scheduler(_opt(lr=2e-4), cfg, warmup_iter=3)
    head = _run(first, 6)
    state = copy.deepcopy(first.state_dict())
    opt2 = _opt(lr=2e-4)
    opt2.param_groups[0]['lr'] = 123.0          # whatever the optimizer state says
    resumed = build_scheduler(opt2, cfg, warmup_iter=3)
    resumed.load_state_dict(state)
    assert opt2.param_groups[0]['lr'] == pytest.approx(full[6])
    assert head + _run(resumed, 8) == full      # bit-identical, not just close


def test_set_iter_is_pure_jump():
    sched = build_scheduler(_opt(), {'type': 'MultiStepLR', 'milestones': [2, 4], 'gamma': 0.5})
    sched.set_iter(5)
    assert sched.optimizer.param_groups[0]['lr'] == 0.25 and sched.current_iter == 5
    sched.set_iter(1)
    assert sched.optimizer.param_groups[0]['lr'] == 1.0


def test_errors_name_keys_and_cfg_untouched():
    cfg = {'type': 'CosineAnnealingRestartLR', 'periods': [4, 4], 'restart_weights': [1]}
    before = copy.deepcopy(cfg)
    with pytest.raises(ValueError, match=r'train\.scheduler\.restart_weights: needs one weight per period'):
        build_scheduler(_opt(), cfg)
    assert cfg == before
    with pytest.raises(KeyError, match=r"train\.scheduler\.milestone: unknown option.*'milestones'"):
        build_scheduler(_opt(), {'type': 'MultiStepLR', 'milestone': [2]})
    with pytest.raises(KeyError, match=r"unknown scheduler 'CosineAnnealingRestart'.*"
                                       r"did you mean 'CosineAnnealingRestartLR'"):
        build_scheduler(_opt(), {'type': 'CosineAnnealingRestart', 'periods': [1]})
    with pytest.raises(KeyError, match='missing required option.*milestones'):
        build_scheduler(_opt(), {'type': 'MultiStepLR'})
    with pytest.raises(ValueError, match=r'train\.scheduler\.milestones: expected integers'):
        build_scheduler(_opt(), {'type': 'MultiStepLR', 'milestones': [2.5]})


def test_signature_introspection():
    sig = scheduler_signature('MultiStepLR')
    assert list(sig) == ['milestones', 'gamma', 'restarts', 'restart_weights']
    assert sig['gamma'] == 0.1
    assert SCHEDULER_ARGS['CosineAnnealingRestartLR']['eta_min'] == 0.0
    assert scheduler_class('MultiStepLR') is scheduler_class('MultiStepRestartLR')
    assert isinstance(build_scheduler(_opt(), {'type': 'MultiStepLR', 'milestones': [1]}), IterLRScheduler)
