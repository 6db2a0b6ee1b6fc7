"""FACD's order of normalisation and regression (issue 17, point 2) on a hand-computed case.

The paper (Eq. 3-4 and the text before them) normalises the feature maps first and compares
DR(normalised student feature) with the normalised teacher feature; DR's output is not normalised
again (``distill.facd.order: normalize_then_regress``). The former order normalised DR's output
(``regress_then_normalize``). Every number below is worked out by hand in the comments.
"""
import math

import pytest
import torch

from ckdsr.archs.facd_regressor import FACDRegressor
from ckdsr.losses.facd import FACDFeatureContrastLoss
from ckdsr.models.distill.facd import regress_features

# batch of 2, C = 2, one position (H = W = 1)
STUDENT = torch.tensor([[3., 4.], [0., 2.]]).view(2, 2, 1, 1)   # channel-normalised: (.6, .8), (0, 1)
TEACHER = torch.tensor([[2., 0.], [0., -5.]]).view(2, 2, 1, 1)  # channel-normalised: (1, 0), (0, -1)
TEACHER_N = torch.tensor([[1., 0.], [0., -1.]]).view(2, 2, 1, 1)


def one_conv_regressor() -> FACDRegressor:
    """DR = one 1x1 conv, y = W x + b with W = [[1, 0], [1, 1]], b = (0, -1)."""
    reg = FACDRegressor(in_channels=2, out_channels=2, num_layers=1)
    with torch.no_grad():
        reg.body[0].weight.copy_(torch.tensor([[1., 0.], [1., 1.]]).view(2, 2, 1, 1))
        reg.body[0].bias.copy_(torch.tensor([0., -1.]))
    return reg


def ratio_loss():
    # the features arrive normalised (the component's job), the batch is summed (paper Eq. 4)
    return FACDFeatureContrastLoss(tap_weights=[1.0], normalize='none', eps=0.0, batch_reduction='sum')


def test_paper_order_normalise_then_regress_hand_values():
    s = regress_features([STUDENT], [one_conv_regressor()], 'normalize_then_regress', 'channel')[0]
    # DR((.6, .8)) = (.6, .6 + .8 - 1) = (.6, .4);  DR((0, 1)) = (0, 0 + 1 - 1) = (0, 0): NOT renormalised
    assert s.flatten().tolist() == pytest.approx([0.6, 0.4, 0.0, 0.0], abs=1e-6)
    # d = mean |a - b| over the 2 channels; t1 = (1, 0), t2 = (0, -1)
    #   image 1: d(s1,t1) = (.4 + .4)/2 = .4; negatives d(s1,t2) = (.6 + 1.4)/2 = 1, d(s1,s2) = (.6 + .4)/2 = .5
    #            ratio .4 / 1.5 = 4/15
    #   image 2: d(s2,t2) = (0 + 1)/2 = .5;   negatives d(s2,t1) = (1 + 0)/2 = .5,  d(s2,s1) = .5
    #            ratio .5 / 1 = 1/2
    per_image = ratio_loss().tap_loss(s, TEACHER_N)
    assert per_image.tolist() == pytest.approx([4 / 15, 1 / 2], abs=1e-6)
    assert ratio_loss()([s], [TEACHER_N]).item() == pytest.approx(4 / 15 + 1 / 2, abs=1e-6)  # = 23/30


def test_former_order_regress_then_normalise_hand_values():
    s = regress_features([STUDENT], [one_conv_regressor()], 'regress_then_normalize', 'channel')[0]
    # DR((3, 4)) = (3, 3 + 4 - 1) = (3, 6) -> /sqrt(45) = (1, 2)/sqrt(5);  DR((0, 2)) = (0, 1) -> (0, 1)
    a = 1 / math.sqrt(5)
    assert s.flatten().tolist() == pytest.approx([a, 2 * a, 0.0, 1.0], abs=1e-6)
    #   image 1: d(s1,t1) = ((1 - a) + 2a)/2 = (1 + a)/2; d(s1,t2) = (a + 2a + 1)/2 = (1 + 3a)/2;
    #            d(s1,s2) = (a + (1 - 2a))/2 = (1 - a)/2; ratio (1 + a) / ((1 + 3a) + (1 - a)) = 1/2
    #   image 2: d(s2,t2) = (0 + 2)/2 = 1; d(s2,t1) = (1 + 1)/2 = 1; d(s2,s1) = (1 - a)/2
    #            ratio 1 / (1 + (1 - a)/2) = 2 / (3 - a)
    per_image = ratio_loss().tap_loss(s, TEACHER_N)
    assert per_image.tolist() == pytest.approx([0.5, 2 / (3 - a)], abs=1e-6)
    assert ratio_loss()([s], [TEACHER_N]).item() == pytest.approx(0.5 + 2 / (3 - a), abs=1e-6)  # = 1.28346


def test_paper_order_with_prelu_between_two_convs_hand_values():
    # DR = conv1 (identity, bias -.5) -> PReLU (slope .25) -> conv2 (identity, no bias)
    reg = FACDRegressor(in_channels=2, out_channels=2, num_layers=2)
    with torch.no_grad():
        for conv, bias in ((reg.body[0], -0.5), (reg.body[2], 0.0)):
            conv.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
            conv.bias.fill_(bias)
        reg.body[1].weight.fill_(0.25)
    paper = regress_features([STUDENT], [reg], 'normalize_then_regress', 'channel')[0]
    # (.6, .8) -> (.1, .3) -> (.1, .3);  (0, 1) -> (-.5, .5) -> (-.125, .5)
    assert paper.flatten().tolist() == pytest.approx([0.1, 0.3, -0.125, 0.5], abs=1e-6)
    former = regress_features([STUDENT], [reg], 'regress_then_normalize', 'channel')[0]
    # (3, 4) -> (2.5, 3.5) -> /sqrt(18.5);  (0, 2) -> (-.5, 1.5) -> (-.125, 1.5) -> /sqrt(2.265625)
    n1, n2 = math.sqrt(18.5), math.sqrt(2.265625)
    assert former.flatten().tolist() == pytest.approx([2.5 / n1, 3.5 / n1, -0.125 / n2, 1.5 / n2], abs=1e-6)


def test_image_normalisation_and_none():
    reg = one_conv_regressor()
    # 'image' with one position equals 'channel'; 'none' regresses the raw features in both orders
    img = regress_features([STUDENT], [reg], 'normalize_then_regress', 'image')[0]
    assert img.flatten().tolist() == pytest.approx([0.6, 0.4, 0.0, 0.0], abs=1e-6)
    for order in ('normalize_then_regress', 'regress_then_normalize'):
        raw = regress_features([STUDENT], [reg], order, 'none')[0]
        assert raw.flatten().tolist() == pytest.approx([3.0, 6.0, 0.0, 1.0], abs=1e-6)
    with pytest.raises(ValueError, match="distill.facd.order must be one of"):
        regress_features([STUDENT], [reg], 'regress', 'channel')
