"""PCL-SISR losses (InfoNCE over mean cosine similarity; dual contrastive discriminator loss) against
hand-computed values."""
import inspect
import math

import pytest
import torch
import torch.nn.functional as F

from ckdsr.losses.infonce import PCLInfoNCELoss, mean_cosine_similarity
from ckdsr.losses.pcl_discriminator_loss import DualContrastiveDiscriminatorLoss, DualContrastiveGeneratorLoss
from ckdsr.utils.registry import LOSS_REGISTRY

e = math.exp


def maps(vectors):
    """(N, 2, 1, W) feature maps from per-map lists of per-position 2-vectors."""
    return torch.tensor(vectors, dtype=torch.float32).permute(0, 2, 1).unsqueeze(2)


# Layer 1: B=2, C=2, H=1, W=2, two positives, three negatives; s = mean over the 2 positions of cos.
# image 0: anchor positions (3,0),(0,3)  (norms do not matter)
#   p1 (2,0),(5,0)   cos 1, 0          -> s = 0.5
#   p2 (1,1),(1,1)   cos 1/√2, 1/√2    -> s = 1/√2
#   n1 (-1,0),(0,3)  cos -1, 1         -> s = 0
#   n2 (0,1),(1,0)   cos 0, 0          -> s = 0
#   n3 (0,-1),(0,-2) cos 0, -1         -> s = -0.5
# image 1: anchor (1,0),(1,0)
#   p1 (1,0),(1,0) -> 1      p2 (0,1),(0,1) -> 0
#   n1 (1,0),(0,1) -> 0.5    n2 (-1,0),(-1,0) -> -1    n3 (0,1),(1,0) -> 0.5
ANCHOR1 = maps([[(3, 0), (0, 3)], [(1, 0), (1, 0)]])
POS1 = torch.stack([maps([[(2, 0), (5, 0)], [(1, 1), (1, 1)]]),
                    maps([[(1, 0), (1, 0)], [(0, 1), (0, 1)]])])          # (B, P, C, H, W)
NEG1 = torch.stack([maps([[(-1, 0), (0, 3)], [(0, 1), (1, 0)], [(0, -1), (0, -2)]]),
                    maps([[(1, 0), (0, 1)], [(-1, 0), (-1, 0)], [(0, 1), (1, 0)]])])
# Layer 2: B=2, C=1, H=W=1: every cosine is the sign product.
#   anchor 2 / -1 ; positives 1, 3 / -2, -1  (cos 1) ; negatives -1, 4, -5 / 1, 1, -1
ANCHOR2 = torch.tensor([2., -1.]).view(2, 1, 1, 1)
POS2 = torch.tensor([[1., 3.], [-2., -1.]]).view(2, 2, 1, 1, 1)
NEG2 = torch.tensor([[-1., 4., -5.], [1., 1., -1.]]).view(2, 3, 1, 1, 1)


def nce(pos, negs, tau):
    return -math.log(e(pos / tau) / (e(pos / tau) + sum(e(n / tau) for n in negs)))


def test_mean_cosine_similarity_hand_values():
    sims = mean_cosine_similarity(ANCHOR1, torch.cat([POS1, NEG1], dim=1))
    expected = [[0.5, 1 / math.sqrt(2), 0, 0, -0.5], [1, 0, 0.5, -1, 0.5]]
    assert torch.allclose(sims, torch.tensor(expected), atol=1e-6)


def test_infonce_hand_value_two_layers():
    tau = 0.5
    layer1 = (nce(0.5, [0, 0, -0.5], tau) + nce(1 / math.sqrt(2), [0, 0, -0.5], tau)      # image 0
              + nce(1, [0.5, -1, 0.5], tau) + nce(0, [0.5, -1, 0.5], tau)) / 4            # image 1
    layer2 = (nce(1, [-1, 1, -1], tau) * 2                                                 # image 0
              + nce(1, [-1, -1, 1], tau) * 2) / 4                                          # image 1
    loss = PCLInfoNCELoss(temperature=tau)([ANCHOR1, ANCHOR2], [POS1, POS2], [NEG1, NEG2])
    assert loss.item() == pytest.approx((layer1 + layer2) / 2, rel=1e-6)


def test_infonce_default_temperature_is_one_and_4d_means_one_sample():
    # one positive (P=1, given as 4-D) and one negative: image 0 of layer 1, p1 and n3
    loss = PCLInfoNCELoss()([ANCHOR1[:1]], [POS1[:1, 0]], [NEG1[:1, 2]])
    assert loss.item() == pytest.approx(-math.log(e(0.5) / (e(0.5) + e(-0.5))), rel=1e-6)


def test_infonce_gradient_reaches_anchor_only():
    a = ANCHOR1.clone().requires_grad_()
    p, n = POS1.clone().requires_grad_(), NEG1.clone().requires_grad_()
    PCLInfoNCELoss()([a], [p], [n]).backward()
    assert a.grad is not None and torch.count_nonzero(a.grad) > 0
    assert p.grad is None and n.grad is None


def test_infonce_shape_errors():
    with pytest.raises(ValueError, match='layers'):
        PCLInfoNCELoss()([ANCHOR1], [POS1, POS2], [NEG1])
    with pytest.raises(ValueError, match='shape mismatch'):
        PCLInfoNCELoss()([ANCHOR1], [POS2], [NEG1])


# ---- dual contrastive loss ------------------------------------------------------------------------
REAL = torch.tensor([1., 0.]).view(1, 1, 1, 2)         # patch logits, shapes do not matter
FAKE = torch.tensor([0.5, -1., 2.]).view(1, 1, 1, 3)


def test_dual_contrastive_discriminator_hand_value():
    # each real against all fakes
    half_real = (-math.log(e(1) / (e(1) + e(0.5) + e(-1) + e(2)))
                 - math.log(e(0) / (e(0) + e(0.5) + e(-1) + e(2)))) / 2
    # each negated fake against all negated reals
    half_fake = (-math.log(e(-0.5) / (e(-0.5) + e(-1) + e(0)))
                 - math.log(e(1) / (e(1) + e(-1) + e(0)))
                 - math.log(e(-2) / (e(-2) + e(-1) + e(0)))) / 3
    loss = DualContrastiveDiscriminatorLoss()(REAL, FAKE)
    assert loss.item() == pytest.approx(half_real + half_fake, rel=1e-6)


def test_dual_contrastive_generator_swaps_roles():
    half_fake = (-math.log(e(0.5) / (e(0.5) + e(1) + e(0)))
                 - math.log(e(-1) / (e(-1) + e(1) + e(0)))
                 - math.log(e(2) / (e(2) + e(1) + e(0)))) / 3
    half_real = (-math.log(e(-1) / (e(-1) + e(-0.5) + e(1) + e(-2)))
                 - math.log(e(0) / (e(0) + e(-0.5) + e(1) + e(-2)))) / 2
    loss = DualContrastiveGeneratorLoss()(REAL, FAKE)
    assert loss.item() == pytest.approx(half_fake + half_real, rel=1e-6)


def test_dual_contrastive_matches_cross_entropy_form_and_is_stable():
    # the softmax-CE form of Yu et al. (a (N, 1+M) logit matrix, target 0), built independently
    torch.manual_seed(0)
    real, fake = torch.randn(2, 1, 4, 4, dtype=torch.float64) * 3, torch.randn(5, 1, 4, 4, dtype=torch.float64)

    def half(a, c):
        a, c = a.reshape(-1), c.reshape(-1)
        logits = torch.cat([a[:, None], c[None, :].expand(a.numel(), -1)], dim=1)
        return F.cross_entropy(logits, torch.zeros(a.numel(), dtype=torch.long))

    expected = half(real, fake) + half(-fake, -real)
    assert DualContrastiveDiscriminatorLoss()(real, fake).item() == pytest.approx(expected.item(), rel=1e-12)
    big = DualContrastiveDiscriminatorLoss()(real * 1000, fake * 1000)
    assert torch.isfinite(big)


def test_registered_with_option_signatures():
    for name in ('PCLInfoNCELoss', 'DualContrastiveDiscriminatorLoss', 'DualContrastiveGeneratorLoss'):
        assert name in LOSS_REGISTRY
    assert list(inspect.signature(PCLInfoNCELoss).parameters) == ['temperature']
    # no options: an empty signature, not nn.Module's (*args, **kwargs)
    assert not inspect.signature(DualContrastiveDiscriminatorLoss).parameters
    assert not inspect.signature(DualContrastiveGeneratorLoss).parameters
