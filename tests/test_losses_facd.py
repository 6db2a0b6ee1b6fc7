"""FACD losses against hand-computed values (arithmetic written out below)."""
import math

import pytest
import torch

from ckdsr.losses.facd import FACDFeatureContrastLoss, FACDReconstructionLoss, adaptive_indicator
from ckdsr.utils.registry import LOSS_REGISTRY


def images(rows):
    """(B, 1, 1, W) images from lists of pixel values."""
    return torch.tensor(rows, dtype=torch.float32).view(len(rows), 1, 1, -1)


# gt = 0 everywhere; dyadic values so every mean is exact in float32.
#            student          teacher
# image 0: [0.125, 0.375]   [0.5, 1.0]     ||S-GT|| = 0.25 < ||T-GT|| = 0.75 -> alpha 0
# image 1: [0.5, 0.5]       [0.25, 0.25]   0.5 > 0.25                        -> alpha 1
# image 2: [0.5, 0.0]       [0.25, 0.25]   0.25 == 0.25 (tie)                -> alpha 1
SR = images([[0.125, 0.375], [0.5, 0.5], [0.5, 0.0]])
TEACHER = images([[0.5, 1.0], [0.25, 0.25], [0.25, 0.25]])
GT = torch.zeros_like(SR)


def test_adaptive_indicator_hand_values():
    alpha = adaptive_indicator(SR, TEACHER, GT)
    assert alpha.tolist() == [0.0, 1.0, 1.0]
    assert alpha.dtype == SR.dtype and not alpha.requires_grad


def test_adaptive_indicator_compares_student_and_teacher_to_gt():
    # swapping student and teacher flips the strict cases (the tie stays 1)
    assert adaptive_indicator(TEACHER, SR, GT).tolist() == [1.0, 0.0, 1.0]


def test_reconstruction_loss_hand_value():
    # ||S-GT||_1 per image: 0.25, 0.5, 0.25 ; ||S-T||_1: (0.375+0.625)/2=0.5, 0.25, (0.25+0.25)/2=0.25
    # alpha = [0, 1, 1]:
    #   image 0: (2-0)*0.25 + 0*0.5  = 0.5
    #   image 1: (2-1)*0.5  + 1*0.25 = 0.75
    #   image 2: (2-1)*0.25 + 1*0.25 = 0.5
    expected = (0.5 + 0.75 + 0.5) / (2 * 3)
    loss = FACDReconstructionLoss()(SR, TEACHER, GT)
    assert loss.item() == pytest.approx(expected, abs=1e-7)
    # alpha given explicitly gives the same
    assert FACDReconstructionLoss()(SR, TEACHER, GT, torch.tensor([0., 1., 1.])).item() == \
        pytest.approx(expected, abs=1e-7)


def test_reconstruction_loss_pixel_range_255_is_l1_on_0_255_images():
    # pixel_range 255: the same hand value in [0, 255] units, (0.5 + 0.75 + 0.5) * 255 / 6 = 74.375
    expected = (0.5 + 0.75 + 0.5) * 255 / (2 * 3)
    loss = FACDReconstructionLoss(pixel_range=255)(SR, TEACHER, GT)
    assert loss.item() == pytest.approx(74.375, rel=1e-6) and expected == 74.375
    # ... which is the [0, 1] loss computed on images scaled to [0, 255] (alpha is scale-free)
    on_255 = FACDReconstructionLoss(pixel_range=1)(SR * 255, TEACHER * 255, GT * 255)
    assert loss.item() == pytest.approx(on_255.item(), rel=1e-6)
    with pytest.raises(ValueError, match=r'pixel_range must be one of \(1, 255\)'):
        FACDReconstructionLoss(pixel_range=100)


def test_reconstruction_loss_fcd_ablation_is_half_l1_half_kd():
    # use_alpha=False: alpha = 1 everywhere -> image 0 becomes 0.25 + 0.5 = 0.75
    expected = (0.75 + 0.75 + 0.5) / (2 * 3)
    loss = FACDReconstructionLoss(use_alpha=False)(SR, TEACHER, GT)
    assert loss.item() == pytest.approx(expected, abs=1e-7)
    half_half = 0.5 * (SR - GT).abs().mean() + 0.5 * (SR - TEACHER).abs().mean()
    assert loss.item() == pytest.approx(half_half.item(), abs=1e-7)


def test_reconstruction_loss_does_not_backprop_into_teacher():
    sr, teacher = SR.clone().requires_grad_(), TEACHER.clone().requires_grad_()
    FACDReconstructionLoss()(sr, teacher, GT).backward()
    assert sr.grad is not None and teacher.grad is None


# ---- feature-domain contrastive loss: batch of 3, 2 taps -----------------------------------------
# Tap 1, C=2, H=W=1. Raw -> channel-normalised:
#   s0 (3,4)->(.6,.8)   s1 (0,2)->(0,1)   s2 (5,0)->(1,0)
#   t0 (0,5)->(0,1)     t1 (6,8)->(.6,.8) t2 (2,0)->(1,0)
TAP1_S = torch.tensor([[3., 4.], [0., 2.], [5., 0.]]).view(3, 2, 1, 1)
TAP1_T = torch.tensor([[0., 5.], [6., 8.], [2., 0.]]).view(3, 2, 1, 1)
# Tap 2, C=2, H=1, W=2; per position vectors (already unit, scaled by 2 to exercise the normalisation):
#   s0 [(1,0),(0,1)]  s1 [(0,1),(0,1)]  s2 [(1,0),(1,0)]
#   t0 [(1,0),(1,0)]  t1 [(0,1),(0,1)]  t2 [(0,1),(1,0)]


def positions(vectors):
    """(B, 2, 1, W) from per-image lists of per-position 2-vectors."""
    return torch.tensor(vectors, dtype=torch.float32).permute(0, 2, 1).unsqueeze(2)


TAP2_S = 2 * positions([[(1, 0), (0, 1)], [(0, 1), (0, 1)], [(1, 0), (1, 0)]])
TAP2_T = 2 * positions([[(1, 0), (1, 0)], [(0, 1), (0, 1)], [(0, 1), (1, 0)]])
EPS = 1e-7

# Tap 1 distances d(a,b) = (|a1-b1| + |a2-b2|) / 2:
#   row 0: d(s0,t0)=(.6+.2)/2=.4  d(s0,t1)=0  d(s0,t2)=(.4+.8)/2=.6  d(s0,s1)=.4  d(s0,s2)=.6
#   row 1: d(s1,t1)=.4  d(s1,t0)=0  d(s1,t2)=(1+1)/2=1  d(s1,s0)=.4  d(s1,s2)=1
#   row 2: d(s2,t2)=0   d(s2,t0)=1  d(s2,t1)=.6  d(s2,s0)=.6  d(s2,s1)=1
TAP1_RATIO = [0.4 / (0 + 0.6 + 0.4 + 0.6 + EPS), 0.4 / (0 + 1 + 0.4 + 1 + EPS), 0.0]
# Tap 2 distances, mean over 4 elements (2 channels x 2 positions):
#   row 0: d(s0,t0)=(0+1+0+1)/4=.5  d(s0,t1)=.5  d(s0,t2)=(1+1+1+1)/4=1  d(s0,s1)=.5  d(s0,s2)=.5
#   row 1: d(s1,t1)=0 -> ratio 0
#   row 2: d(s2,t2)=(1+0+1+0)/4=.5  d(s2,t0)=0  d(s2,t1)=1  d(s2,s0)=.5  d(s2,s1)=1
TAP2_RATIO = [0.5 / (0.5 + 1 + 0.5 + 0.5 + EPS), 0.0, 0.5 / (0 + 1 + 0.5 + 1 + EPS)]


def test_feature_contrast_ratio_hand_value_with_alpha():
    # default batch_reduction 'sum': the paper's Eq. 4 sums over the batch (no 1/N)
    loss_fn = FACDFeatureContrastLoss(tap_weights=[0.7, 0.3], eps=EPS)
    alpha = torch.tensor([1., 0., 1.])
    tap1 = 1 * TAP1_RATIO[0] + 0 * TAP1_RATIO[1] + 1 * TAP1_RATIO[2]  # = 0.25
    tap2 = 1 * TAP2_RATIO[0] + 0 * TAP2_RATIO[1] + 1 * TAP2_RATIO[2]  # = 0.4
    expected = 0.7 * tap1 + 0.3 * tap2
    assert expected == pytest.approx(0.295, rel=1e-5)
    loss = loss_fn([TAP1_S, TAP2_S], [TAP1_T, TAP2_T], alpha)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # 'mean' divides by the batch size (3), alpha = 0 images included
    mean_fn = FACDFeatureContrastLoss(tap_weights=[0.7, 0.3], eps=EPS, batch_reduction='mean')
    assert mean_fn([TAP1_S, TAP2_S], [TAP1_T, TAP2_T], alpha).item() == pytest.approx(0.295 / 3, rel=1e-5)


def test_feature_contrast_ratio_without_alpha_uses_every_image():
    loss_fn = FACDFeatureContrastLoss(tap_weights=[0.7, 0.3], eps=EPS)
    expected = 0.7 * sum(TAP1_RATIO) + 0.3 * sum(TAP2_RATIO)
    loss = loss_fn([TAP1_S, TAP2_S], [TAP1_T, TAP2_T])
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_feature_contrast_every_alpha_zero_gives_zero_loss_and_gradient():
    s1, s2 = TAP1_S.clone().requires_grad_(), TAP2_S.clone().requires_grad_()
    loss = FACDFeatureContrastLoss(tap_weights=[0.7, 0.3])([s1, s2], [TAP1_T, TAP2_T], torch.zeros(3))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.count_nonzero(s1.grad) == 0 and torch.count_nonzero(s2.grad) == 0


def test_feature_contrast_infonce_hand_value():
    # tap 1 only, tau = 0.5, logits = -d / tau (same distances as above)
    tau = 0.5
    e = math.exp
    row0 = -math.log(e(-0.4 / tau) / (e(-0.4 / tau) + e(-0 / tau) + e(-0.6 / tau)      # teachers
                                      + e(-0.4 / tau) + e(-0.6 / tau)))                 # students
    row1 = -math.log(e(-0.4 / tau) / (e(-0.4 / tau) + e(-0 / tau) + e(-1 / tau)
                                      + e(-0.4 / tau) + e(-1 / tau)))
    row2 = -math.log(e(-0 / tau) / (e(-0 / tau) + e(-1 / tau) + e(-0.6 / tau)
                                    + e(-0.6 / tau) + e(-1 / tau)))
    loss_fn = FACDFeatureContrastLoss(tap_weights=[1.0], distance='infonce', temperature=tau)
    loss = loss_fn([TAP1_S], [TAP1_T])
    assert loss.item() == pytest.approx(row0 + row1 + row2, rel=1e-5)


def test_icd_single_tap_of_images_without_normalisation():
    # constant RGB images; s0=.5, s1=.25, t0=.75, t1=.25
    s = torch.tensor([0.5, 0.25]).view(2, 1, 1, 1).expand(2, 3, 4, 4)
    t = torch.tensor([0.75, 0.25]).view(2, 1, 1, 1).expand(2, 3, 4, 4)
    # image 0: d(s0,t0)=.25 / (d(s0,t1)=.25 + d(s0,s1)=.25) = 0.5 ; image 1: d(s1,t1) = 0
    loss = FACDFeatureContrastLoss(tap_weights=[1.0], normalize='none', eps=0.0)([s], [t])
    assert loss.item() == pytest.approx(0.5 + 0.0, rel=1e-6)


def test_image_normalisation_scales_whole_map():
    # normalize='image' divides each map by its L2 norm: s0 = 2*(1,1,1,1) -> (.5,.5,.5,.5)
    s = torch.tensor([[2., 2., 2., 2.], [0., 0., 0., 3.]]).view(2, 1, 2, 2)
    t = torch.tensor([[1., 1., 1., 1.], [0., 0., 0., 1.]]).view(2, 1, 2, 2)
    # normalised: s0=t0=(.5,.5,.5,.5), s1=t1=(0,0,0,1): positives 0 -> loss 0
    loss = FACDFeatureContrastLoss(tap_weights=[1.0], normalize='image')([s], [t])
    assert loss.item() == pytest.approx(0.0, abs=1e-7)
    # without normalisation the positives differ: d(s0,t0)=1, so the loss is positive
    assert FACDFeatureContrastLoss(tap_weights=[1.0], normalize='none')([s], [t]).item() > 0.1


def test_batch_of_one_raises():
    with pytest.raises(ValueError, match='at least 2 images'):
        FACDFeatureContrastLoss(tap_weights=[1.0])([TAP1_S[:1]], [TAP1_T[:1]])


def test_tap_count_mismatch_and_bad_options_raise():
    with pytest.raises(ValueError, match='tap_weights'):
        FACDFeatureContrastLoss()([TAP1_S], [TAP1_T])  # default has 3 weights
    with pytest.raises(ValueError, match='distance'):
        FACDFeatureContrastLoss(distance='l2')
    with pytest.raises(ValueError, match='normalize'):
        FACDFeatureContrastLoss(normalize='batch')
    with pytest.raises(ValueError, match="batch_reduction must be one of \\('sum', 'mean'\\)"):
        FACDFeatureContrastLoss(batch_reduction='max')


def test_gradient_reaches_student_not_teacher():
    s, t = TAP1_S.clone().requires_grad_(), TAP1_T.clone().requires_grad_()
    FACDFeatureContrastLoss(tap_weights=[1.0])([s], [t]).backward()
    assert s.grad is not None and torch.count_nonzero(s.grad) > 0 and t.grad is None


def test_registered():
    assert LOSS_REGISTRY.get('FACDReconstructionLoss') is FACDReconstructionLoss
    assert LOSS_REGISTRY.get('FACDFeatureContrastLoss') is FACDFeatureContrastLoss


def test_gradient_matches_finite_differences():
    # the pairwise distances go through torch.cdist(p=1); check its backward numerically
    torch.manual_seed(0)
    s = torch.randn(3, 4, 2, 2, dtype=torch.float64, requires_grad=True)
    t = torch.randn(3, 4, 2, 2, dtype=torch.float64)
    for distance in ('l1_ratio', 'infonce'):
        loss_fn = FACDFeatureContrastLoss(tap_weights=[1.0], distance=distance)
        assert torch.autograd.gradcheck(lambda x: loss_fn([x], [t]), (s,))


def test_builds_from_option_block():
    from ckdsr.utils.build import build_from_cfg
    cfg = {'type': 'FACDFeatureContrastLoss', 'tap_weights': [1.0], 'distance': 'infonce', 'temperature': 0.5}
    loss_fn = build_from_cfg(cfg, LOSS_REGISTRY)
    assert loss_fn.distance == 'infonce' and loss_fn.tap_weights == [1.0] and cfg['type'] == 'FACDFeatureContrastLoss'
