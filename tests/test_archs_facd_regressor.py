import pytest
import torch
from torch import nn

from ckdsr.archs.facd_regressor import FACDRegressor
from ckdsr.utils.registry import ARCH_REGISTRY


def count(net):
    return sum(p.numel() for p in net.parameters())


def test_five_1x1_convs_with_prelu_between():
    net = FACDRegressor(in_channels=64, out_channels=256)
    convs = [m for m in net.body if isinstance(m, nn.Conv2d)]
    prelus = [m for m in net.body if isinstance(m, nn.PReLU)]
    assert len(convs) == 5 and len(prelus) == 4
    assert all(c.kernel_size == (1, 1) for c in convs)
    assert isinstance(net.body[-1], nn.Conv2d)  # no activation after the last conv
    assert [(c.in_channels, c.out_channels) for c in convs] == [(64, 256)] + [(256, 256)] * 4
    assert ARCH_REGISTRY.get('FACDRegressor') is FACDRegressor


@pytest.mark.parametrize('cin,cout,hidden', [(64, 256, None), (64, 64, None), (16, 32, 8)])
def test_param_count_formula(cin, cout, hidden):
    h = hidden or cout
    want = (cin * h + h) + 3 * (h * h + h) + (h * cout + cout) + 4  # 4 single-slope PReLUs
    assert count(FACDRegressor(cin, cout, hidden)) == want
    per_channel = count(FACDRegressor(cin, cout, hidden, prelu_per_channel=True))
    assert per_channel == want - 4 + 4 * h


def test_edsr_student_to_teacher_shapes():
    net = FACDRegressor(in_channels=64, out_channels=256)
    assert count(net) == 64 * 256 + 256 + 3 * (256 * 256 + 256) + 256 * 256 + 256 + 4 == 279_812
    y = net(torch.rand(2, 64, 12, 10))
    assert y.shape == (2, 256, 12, 10)
    y.mean().backward()
    assert net.body[0].weight.grad is not None
    assert FACDRegressor(8, 4, num_layers=1)(torch.rand(1, 8, 3, 3)).shape == (1, 4, 3, 3)
    with pytest.raises(ValueError):
        FACDRegressor(num_layers=0)
