"""distill.init_student: a narrow EDSR student starts as the teacher's first channels."""
import pytest
import torch

from ckdsr.archs.edsr import EDSR
from ckdsr.archs.slimmable_edsr import SlimmableEDSR, export_narrow_edsr
from ckdsr.archs.slimmable_ops import as_slimmable
from ckdsr.models import build_model
from ckdsr.models.distill.init_student import init_from_teacher_channels
from tests.helpers.kd import save_standin_teacher, tiny_kd_options
from tests.helpers.tiny_run import write_options
from ckdsr.utils.options import load_options

LOGITS_KD = [{'type': 'L1Loss', 'weight': 1.0},
             {'type': 'L1Loss', 'weight': 1.0, 'name': 'l_kd', 'inputs': {'target': 'teacher_sr'}}]


def build(tmp_path, teacher, student, init=None, losses=LOGITS_KD, **train):
    opt = tiny_kd_options(tmp_path, losses, {'init_student': {} if init is None else init},
                          teacher=teacher, student=student, **train)
    return build_model(load_options(str(write_options(opt, tmp_path / 'kd.yml'))))


def lq(seed=0):
    return torch.rand(2, 3, 10, 10, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def test_student_equals_slimmable_teacher_at_that_width(tmp_path):
    teacher = {'type': 'SlimmableEDSR', 'num_feat': 16, 'num_block': 2, 'res_scale': 0.1}
    student = {'type': 'EDSR', 'num_feat': 4, 'num_block': 2, 'res_scale': 0.1}
    model = build(tmp_path, teacher, student, ema_decay=0.999)
    x = lq()
    want = model.teacher.net(x, width_mult=0.25)
    assert torch.allclose(model.net_g(x), want, atol=1e-6)
    assert torch.allclose(model.ema.module(x), want, atol=1e-6)           # the EMA copy starts there too
    assert not torch.allclose(model.teacher.net(x), want, atol=1e-3)      # a different function at full width
    # the copy is the teacher's weights, not a view of them: training the student leaves the teacher alone
    t_before = {k: v.clone() for k, v in model.teacher.net.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    with torch.enable_grad():
        model.train_step({'lq': x, 'gt': torch.rand(2, 3, 20, 20, generator=g)}, 1)
    assert all(torch.equal(v, t_before[k]) for k, v in model.teacher.net.state_dict().items())
    assert not torch.allclose(model.net_g(x), want, atol=1e-6)


@torch.no_grad()
def test_student_from_plain_edsr_teacher_and_explicit_width(tmp_path):
    teacher = {'type': 'EDSR', 'num_feat': 16, 'num_block': 2}
    student = {'type': 'EDSR', 'num_feat': 8, 'num_block': 2}
    model = build(tmp_path, teacher, student, init={'width_mult': 0.5})
    x = lq(2)
    expected = export_narrow_edsr(model.teacher.net, 0.5)(x)
    assert torch.allclose(model.net_g(x), expected, atol=1e-6)
    # first channels, literally: conv_first keeps all 3 inputs, body convs the [:8, :8] corner
    t, s = model.teacher.net.state_dict(), model.net_g.state_dict()
    assert torch.equal(s['conv_first.weight'], t['conv_first.weight'][:8])
    assert torch.equal(s['body.1.conv2.weight'], t['body.1.conv2.weight'][:8, :8])
    assert torch.equal(s['upsample.0.weight'], t['upsample.0.weight'][:32, :8])  # x2: 4*8 outputs
    assert torch.equal(s['conv_last.weight'], t['conv_last.weight'][:, :8])


def test_init_function_at_x3_with_slimmable_teacher():
    torch.manual_seed(0)
    teacher = SlimmableEDSR(num_feat=16, num_block=1, upscale=3, res_scale=0.1)
    student = EDSR(num_feat=8, num_block=1, upscale=3, res_scale=0.1)
    assert init_from_teacher_channels(student, teacher) == 0.5
    x = lq(3)
    with torch.no_grad():
        assert torch.allclose(student(x), teacher(x, width_mult=0.5), atol=1e-6)


def test_mismatched_student_is_a_clear_error(tmp_path):
    teacher = {'type': 'EDSR', 'num_feat': 16, 'num_block': 2}
    with pytest.raises(ValueError, match=r'differ in num_block: teacher 2 vs student 1'):
        build(tmp_path, teacher, {'type': 'EDSR', 'num_feat': 8, 'num_block': 1})
    with pytest.raises(ValueError, match=r'width_mult 0.25 gives 4 of the teacher.s 16 channels, but '
                                         r'network_g.num_feat is 8'):
        build(tmp_path, teacher, {'type': 'EDSR', 'num_feat': 8, 'num_block': 2}, init={'width_mult': 0.25})
    with pytest.raises(TypeError, match=r'network_g \(CARN_M\) and network_t \(EDSR\) must be the same kind'):
        build(tmp_path, teacher, {'type': 'CARN_M'})
    with pytest.raises(TypeError, match=r'network_g must be one of .*RCAN.*got SwinIR'):
        build(tmp_path, teacher, {'type': 'SwinIR', 'embed_dim': 12, 'depths': [1], 'num_heads': [2],
                                  'window_size': 4, 'img_size': 8, 'upsampler': 'pixelshuffle'})
    student = {'type': 'EDSR', 'num_feat': 8, 'num_block': 2}
    opt = tiny_kd_options(tmp_path, LOGITS_KD, {'init_student': {}}, teacher=teacher, student=student)
    opt['path']['pretrain_network_g'] = str(save_standin_teacher(student, tmp_path / 'g.pth', 2))
    with pytest.raises(ValueError, match='init_student and path.pretrain_network_g both initialise network_g'):
        build_model(load_options(str(write_options(opt, tmp_path / 'g.yml'))))


def test_disabled_leaves_the_random_init(tmp_path):
    teacher = {'type': 'EDSR', 'num_feat': 16, 'num_block': 2}
    model = build(tmp_path, teacher, {'type': 'EDSR', 'num_feat': 8, 'num_block': 2}, init={'enabled': False})
    x = lq()
    with torch.no_grad():
        assert not torch.allclose(model.net_g(x), export_narrow_edsr(model.teacher.net, 0.5)(x), atol=1e-3)


@pytest.mark.parametrize('teacher, student, width', [
    ({'type': 'RCAN', 'num_feat': 16, 'num_group': 2, 'num_block': 1, 'squeeze_factor': 4},
     {'type': 'RCAN', 'num_feat': 12, 'num_group': 2, 'num_block': 1, 'squeeze_factor': 4}, 0.75),
    ({'type': 'SlimmableRCAN', 'num_feat': 16, 'num_group': 2, 'num_block': 1, 'squeeze_factor': 4},
     {'type': 'RCAN', 'num_feat': 8, 'num_group': 2, 'num_block': 1, 'squeeze_factor': 4}, 0.5),
    ({'type': 'CARN_M', 'num_feat': 16, 'group': 4}, {'type': 'CARN_M', 'num_feat': 8, 'group': 4}, 0.5),
    ({'type': 'SlimmableCARN_M', 'num_feat': 16, 'group': 4}, {'type': 'CARN_M', 'num_feat': 4, 'group': 4}, 0.25),
])
def test_narrow_copy_of_rcan_and_carn_teachers(tmp_path, teacher, student, width):
    """The same baseline for RCAN and CARN-M: the student computes the teacher's channel-split net."""
    model = build(tmp_path, teacher, student)
    x = lq(4)
    with torch.no_grad():
        t = as_slimmable(model.teacher.net)
        assert torch.allclose(model.net_g(x), t(x, width_mult=width), atol=1e-6)
        assert torch.allclose(model.net_g(x), t.export(width)(x), atol=1e-6)
    assert next(c for c in model.components if c.name == 'init_student').width == width


def test_rcan_student_with_another_squeeze_factor_is_refused(tmp_path):
    teacher = {'type': 'RCAN', 'num_feat': 16, 'num_group': 1, 'num_block': 1, 'squeeze_factor': 4}
    student = {'type': 'RCAN', 'num_feat': 8, 'num_group': 1, 'num_block': 1, 'squeeze_factor': 8}
    with pytest.raises(ValueError, match='differ in squeeze_factor: teacher 4 vs student 8'):
        build(tmp_path, teacher, student)
