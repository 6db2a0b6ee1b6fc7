"""DCKD's DMM loss against hand-computed values (K = 3 codes, 2-dim features)."""
import math

import pytest
import torch

from ckdsr.losses.dmm import DMMLoss, code_logits
from ckdsr.utils.registry import LOSS_REGISTRY

e = math.exp

# codebook: e0 = (0,0), e1 = (1,0), e2 = (0,1)
CODEBOOK = torch.tensor([[0., 0.], [1., 0.], [0., 1.]])
# two positions (B=1, D=2, h=1, w=2):
#   student: A = (1,0), B = (0,1)      teacher: A = (0,0), B = (1,1)
STUDENT = torch.tensor([[1., 0.], [0., 1.]]).t().reshape(1, 2, 1, 2)
TEACHER = torch.tensor([[0., 0.], [1., 1.]]).t().reshape(1, 2, 1, 2)
# squared distances to (e0, e1, e2):
#   student A: (1, 0, 2)   student B: (1, 2, 0)
#   teacher A: (0, 1, 1)   teacher B: (2, 1, 1)
D_STUDENT = [[1, 0, 2], [1, 2, 0]]
D_TEACHER = [[0, 1, 1], [2, 1, 1]]


def softmax(xs):
    z = sum(e(x) for x in xs)
    return [e(x) / z for x in xs]


def log_softmax(xs):
    lse = math.log(sum(e(x) for x in xs))
    return [x - lse for x in xs]


def test_code_logits_are_negative_squared_distances():
    logits = code_logits(STUDENT, CODEBOOK)  # (1, 3, 1, 2)
    assert logits[0, :, 0, 0].tolist() == [-1.0, -0.0, -2.0]
    assert logits[0, :, 0, 1].tolist() == [-1.0, -2.0, -0.0]


def test_paper_variant_hand_value():
    # position A: p_T = softmax(0,-1,-1) ; log p_S = log_softmax(-1,0,-2)
    ce = []
    for d_s, d_t in zip(D_STUDENT, D_TEACHER):
        p_t = softmax([-d for d in d_t])
        log_p_s = log_softmax([-d for d in d_s])
        ce.append(-sum(pt * lq for pt, lq in zip(p_t, log_p_s)))
    # written out for position A: p_T = (1, e^-1, e^-1)/(1 + 2e^-1)
    z_a = 1 + 2 * e(-1)
    lse_a = math.log(e(-1) + 1 + e(-2))
    ce_a = -((1 / z_a) * (-1 - lse_a) + (e(-1) / z_a) * (0 - lse_a) + (e(-1) / z_a) * (-2 - lse_a))
    assert ce[0] == pytest.approx(ce_a, rel=1e-12)
    loss = DMMLoss()(STUDENT, TEACHER, CODEBOOK)
    assert loss.item() == pytest.approx((ce[0] + ce[1]) / 2, rel=1e-6)


def test_paper_variant_temperature_divides_logits():
    tau = 2.0
    ce = []
    for d_s, d_t in zip(D_STUDENT, D_TEACHER):
        p_t = softmax([-d / tau for d in d_t])
        log_p_s = log_softmax([-d / tau for d in d_s])
        ce.append(-sum(pt * lq for pt, lq in zip(p_t, log_p_s)))
    loss = DMMLoss(temperature=tau)(STUDENT, TEACHER, CODEBOOK)
    assert loss.item() == pytest.approx((ce[0] + ce[1]) / 2, rel=1e-6)


def test_official_variant_applies_softmax_twice_on_the_student():
    # released code: F.cross_entropy(q_S, p_T) with q_S = softmax(-d_S) -> log_softmax(q_S)
    ce = []
    for d_s, d_t in zip(D_STUDENT, D_TEACHER):
        p_t = softmax([-d for d in d_t])
        q_s = softmax([-d for d in d_s])
        log_q = log_softmax(q_s)
        ce.append(-sum(pt * lq for pt, lq in zip(p_t, log_q)))
    # position A written out: q_S = (e^-1, 1, e^-2)/Z, second log_softmax: q - log(sum exp q)
    z = e(-1) + 1 + e(-2)
    q = [e(-1) / z, 1 / z, e(-2) / z]
    lse_q = math.log(e(q[0]) + e(q[1]) + e(q[2]))
    p = [1 / (1 + 2 * e(-1)), e(-1) / (1 + 2 * e(-1)), e(-1) / (1 + 2 * e(-1))]
    assert ce[0] == pytest.approx(-sum(pk * (qk - lse_q) for pk, qk in zip(p, q)), rel=1e-12)
    official = DMMLoss(variant='official')(STUDENT, TEACHER, CODEBOOK)
    assert official.item() == pytest.approx((ce[0] + ce[1]) / 2, rel=1e-6)
    assert abs(official.item() - DMMLoss()(STUDENT, TEACHER, CODEBOOK).item()) > 0.1


def test_batch_and_positions_are_averaged():
    # a batch of two copies of the same latent pair gives the same mean as one copy
    s2, t2 = torch.cat([STUDENT, STUDENT]), torch.cat([TEACHER, TEACHER])
    assert DMMLoss()(s2, t2, CODEBOOK).item() == pytest.approx(DMMLoss()(STUDENT, TEACHER, CODEBOOK).item())
    # identical student and teacher at a position with a one-code distribution: CE = entropy ~ 0
    z = torch.tensor([10., 0.]).view(1, 2, 1, 1)
    book = torch.tensor([[10., 0.], [0., 0.], [-10., 0.]])
    assert DMMLoss()(z, z, book).item() == pytest.approx(0.0, abs=1e-6)


def test_expanded_distance_matches_brute_force():
    torch.manual_seed(0)
    z = torch.randn(2, 8, 3, 4, dtype=torch.float64)
    book = torch.randn(5, 8, dtype=torch.float64)
    brute = -((z.permute(0, 2, 3, 1)[..., None, :] - book) ** 2).sum(-1).permute(0, 3, 1, 2)
    assert torch.allclose(code_logits(z, book), brute, atol=1e-10)


def test_gradient_reaches_student_only():
    s, t = STUDENT.clone().requires_grad_(), TEACHER.clone().requires_grad_()
    DMMLoss()(s, t, CODEBOOK).backward()
    assert s.grad is not None and torch.count_nonzero(s.grad) > 0 and t.grad is None


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match='variant'):
        DMMLoss(variant='both')
    with pytest.raises(ValueError, match='same D'):
        DMMLoss()(STUDENT, TEACHER, torch.zeros(3, 4))
    assert LOSS_REGISTRY.get('DMMLoss') is DMMLoss
