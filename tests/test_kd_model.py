"""KDModel: terms over signals, the frozen teacher, taps, one forward per frozen net per step."""
import pytest
import torch

from ckdsr.models import build_model
from tests.helpers.kd import tiny_kd_options
from tests.helpers.tiny_run import write_options
from ckdsr.utils.option_spec import OptionError
from ckdsr.utils.options import load_options

LOGITS_KD = [{'type': 'L1Loss', 'weight': 1.0},
             {'type': 'L1Loss', 'weight': 1.0, 'name': 'l_kd', 'inputs': {'target': 'teacher_sr'}}]


def build(tmp_path, losses, distill=None, **kw):
    opt = load_options(str(write_options(tiny_kd_options(tmp_path, losses, distill, **kw), tmp_path / 'kd.yml')))
    return build_model(opt), opt


def batch(scale=2, b=2, size=8):
    g = torch.Generator().manual_seed(0)
    lq = torch.rand(b, 3, size, size, generator=g)
    return {'lq': lq, 'gt': torch.rand(b, 3, size * scale, size * scale, generator=g)}


def test_logits_kd_step_leaves_teacher_untouched_and_runs_it_once(tmp_path):
    model, _ = build(tmp_path, LOGITS_KD)
    teacher = model.teacher.net
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student_before = {k: v.clone() for k, v in model.net_g.state_dict().items()}
    for it in (1, 2):
        losses = model.train_step(batch(), it)
        assert set(losses) == {'l_l1', 'l_kd', 'l_total'}
        assert model.last_step.calls == {'lq': 1, 'sr': 1, 'teacher_sr': 1}
    assert not teacher.training and all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert any(not torch.equal(v, student_before[k]) for k, v in model.net_g.state_dict().items())


def test_logits_kd_loss_values(tmp_path):
    model, _ = build(tmp_path, LOGITS_KD)
    b = batch()
    with torch.no_grad():
        sr = model.net_g(b['lq'])
        t = model.teacher.net(b['lq'])
    losses = model.train_step(b, 1)
    assert torch.allclose(losses['l_l1'], (sr - b['gt']).abs().mean())
    assert torch.allclose(losses['l_kd'], (sr - t).abs().mean())


def test_fakd_taps_features_of_both_nets(tmp_path):
    losses = [{'type': 'L1Loss', 'weight': 0.5}, {'type': 'L1Loss', 'weight': 0.5, 'inputs': {'target': 'teacher_sr'}},
              {'type': 'FAKDLoss', 'weight': 10.0}]
    distill = {'taps': {'student': ['body.0', 'body.1'], 'teacher': ['body.0', 'body.1']}}
    model, _ = build(tmp_path, losses, distill)
    out = model.train_step(batch(), 1)
    assert set(out) == {'l_l1', 'l_l1_2', 'l_fakd', 'l_total'}
    assert out['l_fakd'] > 0
    assert model.last_step.calls['teacher_sr'] == 1
    feats = model.last_step.values['student_feats']
    assert [f.shape[1] for f in feats] == [8, 8] and feats[0].requires_grad
    assert [f.shape[1] for f in model.last_step.values['teacher_feats']] == [16, 16]


def test_unknown_signal_and_bad_tap_are_clear(tmp_path):
    with pytest.raises(KeyError, match="unknown signal 'teacher_srr' \\(did you mean 'teacher_sr'\\?\\)"):
        build(tmp_path, [{'type': 'L1Loss', 'inputs': {'target': 'teacher_srr'}}])
    with pytest.raises(KeyError, match="feature tap 'body.9' is not a module path"):
        build(tmp_path, LOGITS_KD + [{'type': 'FAKDLoss'}], {'taps': {'student': ['body.9'], 'teacher': ['body.0']}})


def test_term_option_errors_name_the_key(tmp_path):
    opt = tiny_kd_options(tmp_path, [{'type': 'L1Los', 'weight': 1.0}])
    with pytest.raises(OptionError, match=r"train.losses.0.type: No loss named 'L1Los'. Did you mean 'L1Loss'"):
        load_options(str(write_options(opt, tmp_path / 'k.yml')))
    opt = tiny_kd_options(tmp_path, [{'type': 'L1Loss', 'wieght': 1.0}])
    with pytest.raises(OptionError, match=r"train.losses.0.wieght: unknown key \(did you mean 'train.losses.0.weight'\?\)"):
        load_options(str(write_options(opt, tmp_path / 'k.yml')))


def test_missing_teacher_weights_name_the_option(tmp_path):
    opt = tiny_kd_options(tmp_path, LOGITS_KD)
    opt['path']['pretrain_network_t'] = str(tmp_path / 'nope.pth')
    with pytest.raises(OptionError, match='path.pretrain_network_t: file or folder not found'):
        load_options(str(write_options(opt, tmp_path / 'k.yml')))
    del opt['path']['pretrain_network_t']
    o = load_options(str(write_options(opt, tmp_path / 'k.yml')))
    with pytest.raises(FileNotFoundError, match='path.pretrain_network_t'):
        build_model(o)


def test_resume_state_holds_no_frozen_teacher(tmp_path):
    model, _ = build(tmp_path, LOGITS_KD)
    model.train_step(batch(), 1)
    state = model.training_state()
    flat = repr(state.keys()) + repr(state['networks'].keys()) + repr(state['extra'].keys())
    assert 'teacher' not in flat
    n_student = sum(v.numel() for v in model.net_g.state_dict().values())
    assert sum(v.numel() for v in state['networks']['params'].values()) == n_student
