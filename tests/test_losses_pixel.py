"""Pixel losses against hand-computed values."""
import math

import pytest
import torch

from ckdsr.losses.pixel import CharbonnierLoss, L1Loss, MSELoss
from ckdsr.utils.build import build_from_cfg
from ckdsr.utils.registry import LOSS_REGISTRY

# pred - target = [1, -2, 0, 3]
PRED = torch.tensor([[1., 2.], [3., 4.]], dtype=torch.float64)
TARGET = torch.tensor([[0., 4.], [3., 1.]], dtype=torch.float64)


def test_l1_hand_values():
    assert L1Loss()(PRED, TARGET).item() == 6 / 4
    assert L1Loss(reduction='sum')(PRED, TARGET).item() == 6
    assert L1Loss(reduction='none')(PRED, TARGET).tolist() == [[1, 2], [0, 3]]


def test_mse_hand_values():
    assert MSELoss()(PRED, TARGET).item() == (1 + 4 + 0 + 9) / 4
    assert MSELoss(reduction='sum')(PRED, TARGET).item() == 14


def test_charbonnier_hand_values():
    # default eps 1e-12 (BasicSR) is added to the squared difference: sqrt(0 + 1e-12) = 1e-6
    want = (math.sqrt(1 + 1e-12) + math.sqrt(4 + 1e-12) + 1e-6 + math.sqrt(9 + 1e-12)) / 4
    assert abs(CharbonnierLoss()(PRED, TARGET).item() - want) < 1e-15
    # eps = 0.25: (sqrt(1.25) + sqrt(4.25) + sqrt(0.25) + sqrt(9.25)) / 4
    want = (1.118033988749895 + 2.0615528128088303 + 0.5 + 3.0413812651491097) / 4
    assert abs(CharbonnierLoss(eps=0.25)(PRED, TARGET).item() - want) < 1e-15


def test_charbonnier_gradient_finite_at_zero_difference():
    x = torch.zeros(3, requires_grad=True)
    CharbonnierLoss()(x, torch.zeros(3)).backward()
    assert torch.equal(x.grad, torch.zeros(3))


def test_registry_build_and_errors():
    loss = build_from_cfg({'type': 'L1Loss', 'reduction': 'sum'}, LOSS_REGISTRY)
    assert isinstance(loss, L1Loss) and loss(PRED, TARGET).item() == 6
    with pytest.raises(ValueError, match='reduction'):
        MSELoss(reduction='avg')
    with pytest.raises(ValueError, match='differ in shape'):
        L1Loss()(PRED, TARGET[:1])
