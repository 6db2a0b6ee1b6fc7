"""DUKD/DCKD label-consistency regularisation: invertible LR transforms, their sampling, the loss."""
import inspect
import itertools

import pytest
import torch
import torch.nn.functional as F

from ckdsr.losses.lcr import (OPS, LabelConsistencyLoss, apply_transform, apply_transforms, parse_transform,
                        sample_transforms, undo_transform, undo_transforms)
from ckdsr.utils.registry import LOSS_REGISTRY

# all 16 composites (each op in or out, canonical order)
ALL_NAMES = ['+'.join(c) or 'identity' for r in range(5) for c in itertools.combinations(OPS, r)]


def dyadic(*shape, seed=0):
    """Values k/256: img_range - (img_range - x) == x exactly in float32."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 257, shape, generator=g).float() / 256


def test_sixteen_distinct_transforms():
    assert len(ALL_NAMES) == 16
    x = dyadic(1, 1, 3, 3)
    outs = {tuple(apply_transform(x, n).flatten().tolist()) for n in ALL_NAMES}
    assert len(outs) == 16


def test_single_ops_by_hand():
    x = torch.tensor([[0.0, 0.25], [0.5, 0.75]]).view(1, 1, 2, 2)
    assert apply_transform(x, 'invert').flatten().tolist() == [1.0, 0.75, 0.5, 0.25]
    assert apply_transform(x, 'hflip').flatten().tolist() == [0.25, 0.0, 0.75, 0.5]    # left-right
    assert apply_transform(x, 'vflip').flatten().tolist() == [0.5, 0.75, 0.0, 0.25]    # up-down
    assert apply_transform(x, 'transpose').flatten().tolist() == [0.0, 0.5, 0.25, 0.75]
    assert torch.equal(apply_transform(x, 'identity'), x)
    assert apply_transform(x, 'invert', img_range=255.).flatten().tolist() == [255., 254.75, 254.5, 254.25]


@pytest.mark.parametrize('name', ALL_NAMES)
def test_undo_of_apply_is_exact(name):
    square = dyadic(2, 3, 4, 4)
    assert torch.equal(undo_transform(apply_transform(square, name), name), square)
    rect = dyadic(2, 3, 4, 6, seed=1)  # transpose changes the shape, undo restores it
    assert torch.equal(undo_transform(apply_transform(rect, name), name), rect)


def test_order_matters_reapplying_is_not_the_inverse():
    # DUKD undoes by applying the same ordered ops again: with one flip + transpose that is a rotation
    x = dyadic(1, 1, 3, 3)
    again = apply_transform(apply_transform(x, 'vflip+transpose'), 'vflip+transpose')
    assert torch.equal(again, torch.rot90(x, 2, dims=(-2, -1)))
    assert not torch.equal(again, x)
    assert torch.equal(undo_transform(apply_transform(x, 'vflip+transpose'), 'vflip+transpose'), x)


class ToySR(torch.nn.Module):
    """1x1 conv then nearest x2 upsampling: commutes with flips and transposes; with bias
    b = (1 - W.1)/2 it also satisfies f(1 - x) = 1 - f(x), i.e. it commutes with inversion."""

    def __init__(self, inversion_equivariant: bool = True):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.weight = torch.randn(3, 3, 1, 1, generator=g, dtype=torch.float64)
        row_sum = self.weight.sum(dim=(1, 2, 3))
        self.bias = (1 - row_sum) / 2 if inversion_equivariant else torch.randn(3, generator=g,
                                                                                 dtype=torch.float64)

    def forward(self, x):
        return F.interpolate(F.conv2d(x, self.weight, self.bias), scale_factor=2, mode='nearest')


@pytest.mark.parametrize('name', ALL_NAMES)
def test_teacher_on_transformed_input_undone_equals_teacher(name):
    net = ToySR()
    x = torch.rand(2, 3, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    undone = undo_transform(net(apply_transform(x, name)), name)
    assert torch.allclose(undone, net(x), atol=1e-12)


def test_non_equivariant_net_is_detected():
    net = ToySR(inversion_equivariant=False)
    x = torch.rand(1, 3, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    undone = undo_transform(net(apply_transform(x, 'invert')), 'invert')
    assert not torch.allclose(undone, net(x), atol=1e-3)


def test_per_image_transforms_match_single_image_calls():
    x = dyadic(5, 3, 4, 4)
    names = ['invert+transpose', 'identity', 'hflip', 'invert+transpose', 'vflip+hflip']
    out = apply_transforms(x, names)
    for i, n in enumerate(names):
        assert torch.equal(out[i:i + 1], apply_transform(x[i:i + 1], n))
    assert torch.equal(undo_transforms(out, names), x)


def test_per_image_transpose_needs_square_images():
    with pytest.raises(ValueError, match='square'):
        apply_transforms(dyadic(2, 3, 4, 6), ['transpose', 'identity'])
    # without a transpose a rectangular batch is fine
    assert apply_transforms(dyadic(2, 3, 4, 6), ['hflip', 'invert']).shape == (2, 3, 4, 6)


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="unknown transform 'rot90'"):
        parse_transform('hflip+rot90')
    with pytest.raises(ValueError, match='batch of 2'):
        apply_transforms(dyadic(2, 3, 4, 4), ['hflip'])


def test_sample_transforms():
    a = sample_transforms(8, torch.Generator().manual_seed(7))
    b = sample_transforms(8, torch.Generator().manual_seed(7))
    assert a == b and len(a) == 8 and all(n in ALL_NAMES for n in a)
    assert sample_transforms(4, prob=0.0) == ['identity'] * 4
    assert sample_transforms(3, prob=1.0) == ['invert+vflip+hflip+transpose'] * 3
    assert set(sample_transforms(50, prob=1.0, ops=('hflip', 'invert'))) == {'invert+hflip'}
    names = sample_transforms(4000, torch.Generator().manual_seed(8), prob=0.5)
    for op in OPS:  # each op independently with probability 0.5 (fixed seed: deterministic)
        freq = sum(op in parse_transform(n) for n in names) / len(names)
        assert 0.45 < freq < 0.55
    assert 0.03 < names.count('identity') / len(names) < 0.1  # 0.5**4 = 0.0625
    with pytest.raises(ValueError):
        sample_transforms(2, ops=('rot90',))


def test_label_consistency_loss_hand_value_and_gradient():
    student = torch.tensor([0.5, 0.25, 1.0, 0.0]).view(1, 1, 2, 2).requires_grad_()
    teacher = torch.tensor([0.25, 0.75, 1.0, 0.5]).view(1, 1, 2, 2).requires_grad_()
    loss = LabelConsistencyLoss()(student, teacher)
    assert loss.item() == pytest.approx((0.25 + 0.5 + 0.0 + 0.5) / 4)
    loss.backward()
    assert student.grad is not None and teacher.grad is None
    assert LOSS_REGISTRY.get('LabelConsistencyLoss') is LabelConsistencyLoss
    assert not inspect.signature(LabelConsistencyLoss).parameters
