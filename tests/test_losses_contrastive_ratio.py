"""L1 contrastive ratio (CSD / DCKD) against hand-computed values."""
import pytest
import torch

from ckdsr.losses.contrastive_ratio import ContrastiveRatioLoss, contrastive_ratio
from ckdsr.utils.build import build_from_cfg
from ckdsr.utils.registry import LOSS_REGISTRY


def _t(x, shape):
    return torch.tensor(x, dtype=torch.float64).view(*shape)


# layer 1: (B=2, C=1, H=1, W=2), K=3 per-sample negatives
A1 = _t([1, 2, 0, 4], (2, 1, 1, 2))
P1 = _t([1, 1, 2, 4], (2, 1, 1, 2))            # |a-p| = [0,1],[2,0] -> mean 3/4
N1 = _t([0, 0, 1, 2, 3, 2,                       # sample 0: distances 3, 0, 2
         0, 0, 1, 1, 0, 8], (2, 3, 1, 1, 2))     # sample 1: distances 4, 4, 4
# per-negative batch means: (3+4)/4, (0+4)/4, (2+4)/4 -> sum 1.75 + 1 + 1.5 = 4.25
# layer 2: (B=2, C=2, H=1, W=1)
A2 = _t([1, -1, 2, 2], (2, 2, 1, 1))
P2 = _t([1, 1, 2, 2], (2, 2, 1, 1))            # |a-p| = [0,2],[0,0] -> mean 2/4
N2 = _t([1, -1, 0, 0, 3, -1,                     # sample 0: distances 0, 2, 2
         2, 2, 2, 2, 2, 3], (2, 3, 2, 1, 1))     # sample 1: distances 0, 0, 1
# per-negative batch means: 0/4, 2/4, 3/4 -> sum 1.25
EPS = 1e-7


def test_two_layers_three_negatives_hand_value():
    loss = ContrastiveRatioLoss(weights=[0.5, 2.0])
    want = 0.5 * 0.75 / (4.25 + EPS) + 2.0 * 0.5 / (1.25 + EPS)
    assert abs(loss([A1, A2], [P1, P2], [N1, N2]).item() - want) < 1e-12
    r = loss.ratios([A1, A2], [P1, P2], [N1, N2])
    assert abs(r[0].item() - 0.75 / (4.25 + EPS)) < 1e-12 and abs(r[1].item() - 0.5 / (1.25 + EPS)) < 1e-12


def test_eps_in_denominator():
    # every negative equals the anchor: ratio = mean|a-p| / eps = 0.5 / 1e-7
    a = _t([1, 2], (1, 1, 1, 2))
    p = _t([1, 3], (1, 1, 1, 2))
    n = a.unsqueeze(1).repeat(1, 3, 1, 1, 1)
    assert abs(ContrastiveRatioLoss(weights=[1.0])([a], [p], [n]).item() - 0.5 / 1e-7) < 1e-6
    assert abs(ContrastiveRatioLoss(weights=[1.0], eps=0.5)([a], [p], [n]).item() - 1.0) < 1e-12


def test_shared_negatives_hand_value_and_equivalence():
    # shared (K=2, C, H, W): n0 = [0,0] -> distances 3 (s0), 4 (s1); n1 = [1,2] -> 0 (s0), 1+2 (s1)
    shared = _t([0, 0, 1, 2], (2, 1, 1, 2))
    want = 0.75 / ((3 + 4) / 4 + (0 + 3) / 4 + EPS)
    assert abs(contrastive_ratio(A1, P1, shared).item() - want) < 1e-12
    per_sample = shared.unsqueeze(0).expand(2, -1, -1, -1, -1)
    assert abs(contrastive_ratio(A1, P1, per_sample).item() - want) < 1e-12


def test_positive_and_negatives_detached_anchor_trained():
    a = A1.clone().requires_grad_(True)
    p = P1.clone().requires_grad_(True)
    n = N1.clone().requires_grad_(True)
    ContrastiveRatioLoss(weights=[1.0])([a], [p], [n]).backward()
    assert a.grad is not None and a.grad.abs().sum() > 0
    assert p.grad is None and n.grad is None
    p2 = P1.clone().requires_grad_(True)
    ContrastiveRatioLoss(weights=[1.0], detach_positive=False)([A1], [p2], [N1]).backward()
    assert p2.grad is not None


def test_anchor_gradient_by_hand():
    # one element: L = |a-p| / (|a-n| + eps), a=1, p=0, n=3: dL/da = 1/2 - 1*(-1)/2^2 = 0.75 (eps=0)
    a = torch.tensor([[1.]], dtype=torch.float64, requires_grad=True)
    loss = ContrastiveRatioLoss(weights=[1.0], eps=0.0)
    p = torch.tensor([[0.]], dtype=torch.float64)
    n = torch.tensor([[[3.]]], dtype=torch.float64)
    loss([a], [p], [n]).backward()
    assert abs(a.grad.item() - 0.75) < 1e-12


def test_default_weights_registry_and_errors():
    loss = build_from_cfg({'type': 'ContrastiveRatioLoss'}, LOSS_REGISTRY)
    assert loss.weights == [1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0]
    with pytest.raises(ValueError, match='5 layer weights'):
        loss([A1], [P1], [N1])
    with pytest.raises(ValueError, match='do not fit'):
        contrastive_ratio(A1, P1, N2)
