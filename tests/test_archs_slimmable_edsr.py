"""SlimmableEDSR (CSD): shared weights at two widths, effective size, and standalone export."""
import pytest
import torch

from ckdsr.archs.edsr import EDSR
from ckdsr.archs.slimmable_edsr import SlimmableEDSR, effective_num_params, export_narrow_edsr, narrow_state_dict


def n_params(net):
    return sum(p.numel() for p in net.parameters())


def test_csd_sizes_full_and_quarter_width():
    with torch.device('meta'):
        net = SlimmableEDSR(num_feat=256, num_block=32, upscale=4, res_scale=0.1)
    assert abs(n_params(net) - 43.09e6) / 43.09e6 < 1e-3
    assert abs(effective_num_params(net, 0.25) - 2.70e6) / 2.70e6 < 1e-3
    assert effective_num_params(net, 1.0) == n_params(net)


@pytest.mark.parametrize('upscale', [2, 3, 4])
def test_full_width_equals_edsr_with_the_same_weights(upscale):
    torch.manual_seed(0)
    edsr = EDSR(num_feat=16, num_block=2, upscale=upscale, res_scale=0.1).eval()
    slim = SlimmableEDSR(num_feat=16, num_block=2, upscale=upscale, res_scale=0.1).eval()
    slim.load_state_dict(edsr.state_dict())  # same key names
    x = torch.rand(2, 3, 8, 6)
    with torch.no_grad():
        torch.testing.assert_close(slim(x, 1.0), edsr(x))


@pytest.mark.parametrize('upscale, width', [(4, 0.25), (3, 0.5), (2, 0.75)])
def test_exported_student_equals_slim_forward(upscale, width):
    torch.manual_seed(1)
    slim = SlimmableEDSR(num_feat=16, num_block=2, upscale=upscale, res_scale=0.1).eval()
    student = export_narrow_edsr(slim, width).eval()
    assert isinstance(student, EDSR) and student.num_feat == int(16 * width)
    assert n_params(student) == effective_num_params(slim, width)
    x = torch.rand(2, 3, 7, 9)
    with torch.no_grad():
        torch.testing.assert_close(student(x), slim(x, width), rtol=1e-5, atol=1e-6)
        assert not torch.allclose(slim(x, width), slim(x, 1.0))  # the widths are different nets


def test_student_from_plain_edsr_teacher_takes_first_channels():
    torch.manual_seed(2)
    teacher = EDSR(num_feat=16, num_block=1, upscale=2)
    student = export_narrow_edsr(teacher, 0.25)
    torch.testing.assert_close(student.conv_first.weight, teacher.conv_first.weight[:4])
    torch.testing.assert_close(student.body[0].conv1.weight, teacher.body[0].conv1.weight[:4, :4])
    torch.testing.assert_close(student.upsample[0].weight, teacher.upsample[0].weight[:16, :4])
    torch.testing.assert_close(student.conv_last.weight, teacher.conv_last.weight[:, :4])
    student.conv_first.weight.data.zero_()  # a copy, not a view of the teacher
    assert teacher.conv_first.weight.abs().sum() > 0
    assert set(narrow_state_dict(teacher, 0.25)) == set(teacher.state_dict())


def test_default_width_is_settable():
    torch.manual_seed(3)
    net = SlimmableEDSR(num_feat=8, num_block=1, upscale=2, width_mult=0.5)
    x = torch.rand(1, 3, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(net(x), net(x, 0.5))
        net.width_mult = 1.0
        torch.testing.assert_close(net(x), net(x, 1.0))


def test_slim_gradients_only_reach_the_first_channels():
    torch.manual_seed(4)
    net = SlimmableEDSR(num_feat=8, num_block=1, upscale=2)
    net(torch.rand(1, 3, 6, 6), 0.25).mean().backward()
    grad = net.body[0].conv1.weight.grad
    assert grad[:2, :2].abs().sum() > 0
    assert grad[2:].abs().sum() == 0 and grad[:, 2:].abs().sum() == 0
    assert net.upsample[0].weight.grad[8:].abs().sum() == 0  # 4 * 2 upsampling outputs used


@pytest.mark.parametrize('width', [0.3, 0.0, 1.5])
def test_bad_width_is_one_clear_error(width):
    net = SlimmableEDSR(num_feat=8, num_block=1, upscale=2)
    with pytest.raises(ValueError, match='width_mult') as err:
        net(torch.rand(1, 3, 4, 4), width)
    assert '\n' not in str(err.value)
    with pytest.raises(ValueError, match='width_mult'):
        SlimmableEDSR(num_feat=8, width_mult=width)
