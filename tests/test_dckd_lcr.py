"""DCKD*'s label-consistency component: exact undo at model level, one batched teacher forward."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ckdsr.models import build_model
from tests.helpers.kd import tiny_kd_options
from tests.helpers.tiny_run import write_options
from ckdsr.utils.options import load_options

LOSSES = [{'type': 'L1Loss'}, {'type': 'L1Loss', 'name': 'l_kd', 'inputs': {'target': 'teacher_sr'}},
          {'type': 'LabelConsistencyLoss', 'name': 'l_lcr'}]


class NearestUp(nn.Module):
    """x2 nearest upsampling: moves values without arithmetic, so it commutes EXACTLY with flips,
    transposes and inversion (1 - x is computed on the same values either way)."""

    def forward(self, x):
        return F.interpolate(x, scale_factor=2, mode='nearest')


def build(tmp_path, lcr=None, **kw):
    opt = tiny_kd_options(tmp_path, LOSSES, {'lcr': lcr if lcr is not None else {}}, **kw)
    return build_model(load_options(str(write_options(opt, tmp_path / 'o.yml'))))


def lcr_of(model):
    return next(c for c in model.components if c.name == 'lcr')


def dyadic(b, h, w, seed=0):
    """Values k/256: 1 - (1 - x) == x exactly in float32."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 257, (b, 3, h, w), generator=g).float() / 256


def step_on(model, lq):
    model.feed_data({'lq': lq, 'gt': torch.zeros(lq.shape[0], 3, lq.shape[2] * 2, lq.shape[3] * 2)})
    return model.new_step()


def count_forwards(net):
    shapes = []
    net.register_forward_pre_hook(lambda m, args: shapes.append(tuple(args[0].shape)))
    return shapes


@pytest.mark.parametrize('prob', [1.0, 0.5])
@pytest.mark.parametrize('hw', [(6, 6), (4, 6)])
def test_undo_is_the_exact_inverse_at_model_level(tmp_path, prob, hw):
    model = build(tmp_path, {'prob': prob})
    model.teacher.net = NearestUp()
    lq = dyadic(8, *hw)
    step = step_on(model, lq)
    names = step['lcr_plan'][0]
    if prob == 1.0:
        assert names == ['invert+vflip+hflip+transpose'] * 8
    else:
        assert len(set(names)) > 2
    assert torch.equal(step['lcr_teacher_sr'], step['teacher_sr'])
    assert torch.equal(step['teacher_sr'], NearestUp()(lq))
    # and the teacher did see transformed images (not the plain batch again)
    raw = step['lcr_teacher_raw']
    seen = torch.cat([r.flatten(1) for r in raw])
    assert not torch.equal(seen, NearestUp()(lq).flatten(1))


def test_square_batch_is_one_teacher_forward_with_the_main_batch(tmp_path):
    model = build(tmp_path)
    shapes = count_forwards(model.teacher.net)
    s_shapes = count_forwards(model.net_g)
    lq = torch.rand(3, 3, 8, 8)
    losses = model.train_step({'lq': lq, 'gt': torch.rand(3, 3, 16, 16)}, 1)
    assert shapes == [(6, 3, 8, 8)]  # [lq, transformed lq] in ONE forward, as the released code
    assert s_shapes == [(3, 3, 8, 8)]  # the student sees the plain batch only
    step = model.last_step
    assert step.calls['teacher_sr'] == 1
    with torch.no_grad():
        t_plain = model.teacher.net(lq)
    assert torch.allclose(step.values['teacher_sr'], t_plain, atol=1e-5)
    expected = (step.values['sr'].detach() - step.values['lcr_teacher_sr']).abs().mean()
    assert torch.allclose(losses['l_lcr'], expected)
    assert not step.values['lcr_teacher_sr'].requires_grad


def test_non_square_batch_transposes_go_in_a_second_forward(tmp_path):
    model = build(tmp_path, {'prob': 1.0, 'ops': ['hflip', 'transpose']})
    shapes = count_forwards(model.teacher.net)
    step = step_on(model, torch.rand(2, 3, 4, 6))
    out = step['lcr_teacher_sr']
    assert shapes == [(2, 3, 4, 6), (2, 3, 6, 4)]  # plain batch; transposed batch (other shape)
    assert out.shape == (2, 3, 8, 12)


@pytest.mark.parametrize('hw', [(5, 5), (5, 7)])
def test_undo_inverts_apply_on_sr_size_tensors(tmp_path, hw):
    comp = lcr_of(build(tmp_path, {'prob': 0.5}))
    plan = comp.make_inputs(dyadic(6, *hw, seed=1))['lcr_plan']
    names, groups = plan
    assert len(set(names)) >= 4
    y = dyadic(6, 2 * hw[0], 2 * hw[1], seed=2)
    # what an equivariant teacher would return: the SR-size tensor under the same transforms
    raw = [comp._apply(y[g], [names[i] for i in g]) for g in groups]
    assert len(raw) == (1 if hw[0] == hw[1] else 2)
    assert torch.equal(comp.undo(raw, plan), y)


def test_generator_is_resume_state(tmp_path):
    model = build(tmp_path / 'a')
    comp = lcr_of(model)
    state = model.training_state()['extra']['lcr']
    first = comp.make_inputs(torch.rand(16, 3, 4, 4))['lcr_plan'][0]
    other = build(tmp_path / 'b')
    lcr_of(other).generator.manual_seed(12345)
    other.load_extra_state({'lcr': state})
    assert lcr_of(other).make_inputs(torch.rand(16, 3, 4, 4))['lcr_plan'][0] == first


def test_lcr_needs_a_teacher(tmp_path):
    opt = tiny_kd_options(tmp_path, [{'type': 'L1Loss'}], {'lcr': {}})
    del opt['network_t']
    del opt['path']['pretrain_network_t']
    with pytest.raises(ValueError, match='distill.lcr: label consistency needs the teacher'):
        build_model(load_options(str(write_options(opt, tmp_path / 'o.yml'))))


def test_bad_ops_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"distill.lcr.ops: \['rot90'\]"):
        build(tmp_path, {'ops': ['rot90']})
