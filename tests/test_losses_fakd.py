"""FAKD spatial-affinity loss against hand-computed affinities."""
import pytest
import torch

from ckdsr.losses.fakd import FAKDLoss, affinity_difference, spatial_affinity


def _map(*positions):
    """(1, C, 1, N) float64 map whose columns are the given C-vectors."""
    return torch.tensor(positions, dtype=torch.float64).t().reshape(1, len(positions[0]), 1, len(positions))


# tap 1 (1 x 2 positions): student C=2, teacher C=3 (channel counts may differ)
S1 = _map((3., 4.), (1., 0.))        # unit vectors (.6, .8), (1, 0): A_S = [[1, .6], [.6, 1]]
T1 = _map((0., 2., 0.), (0., 0., 5.))  # unit vectors e2, e3:          A_T = [[1, 0], [0, 1]]
# tap 2 (2 x 1 positions), C=1: student 2, -3 -> +1, -1; teacher 1, 1 -> +1, +1
S2 = torch.tensor([2., -3.], dtype=torch.float64).view(1, 1, 2, 1)
T2 = torch.tensor([1., 1.], dtype=torch.float64).view(1, 1, 2, 1)


def test_affinity_by_hand():
    a = spatial_affinity(S1)
    assert torch.allclose(a, torch.tensor([[[1., .6], [.6, 1.]]], dtype=torch.float64), atol=1e-8)


def test_loss_hand_value_sum_and_mean_over_taps():
    # tap 1: |A_S - A_T| = [[0, .6], [.6, 0]] -> mean .3 ; tap 2: [[0, 2], [2, 0]] -> mean 1
    assert abs(FAKDLoss()([S1, S2], [T1, T2]).item() - 1.3) < 1e-7
    assert abs(FAKDLoss(tap_reduction='mean')([S1, S2], [T1, T2]).item() - 0.65) < 1e-7


def test_eps_is_added_to_the_norm():
    # eps = 1: student (3,4)/(5+1), (1,0)/(1+1); teacher (0,2,0)/(2+1), (0,0,5)/(5+1)
    # A_S = [[25/36, 1/4], [1/4, 1/4]], A_T = [[16/36, 0], [0, 25/36]]
    # |diff| = [[9/36, 9/36], [9/36, 16/36]] -> mean 43/144
    assert abs(FAKDLoss(eps=1.0)([S1], [T1]).item() - 43 / 144) < 1e-12


def test_pooling_max_ceil_mode_and_avg():
    # 2 x 3 map, pool 2 with ceil mode -> 2 positions: blocks {1,-5,0,0} and the partial {2,-1}
    s = torch.tensor([[1., -5., 2.], [0., 0., -1.]]).view(1, 1, 2, 3)   # max: 1, 2   -> A = ones
    t = torch.tensor([[-1., -2., 3.], [-4., -3., 0.]]).view(1, 1, 2, 3)  # max: -1, 3 -> A = [[1,-1],[-1,1]]
    assert abs(FAKDLoss(pool=2)([s], [t]).item() - 1.0) < 1e-6
    # avg differs from max: student blocks avg -1.5, 1 (signs differ) vs max 3, 1 (same sign)
    s = torch.tensor([[3., -9., 1., 1.], [0., 0., 1., 1.]]).view(1, 1, 2, 4)
    t = torch.ones(1, 1, 2, 4)
    assert abs(FAKDLoss(pool=2)([s], [t]).item() - 0.0) < 1e-6
    assert abs(FAKDLoss(pool=2, pool_type='avg')([s], [t]).item() - 1.0) < 1e-6


def test_difference_trick_equals_naive_affinities():
    torch.manual_seed(0)
    s, t = torch.randn(2, 5, 3, 4), torch.randn(2, 9, 3, 4)
    assert torch.allclose(affinity_difference(s, t), spatial_affinity(s) - spatial_affinity(t), atol=1e-6)


def test_gradient_reaches_student_only_and_survives_zero_vectors():
    s = torch.randn(1, 4, 3, 3)
    s[..., 0, 0] = 0  # a zero feature vector: norm gradient must not be NaN
    s.requires_grad_(True)
    t = torch.randn(1, 6, 3, 3, requires_grad=True)
    FAKDLoss()([s], [t]).backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    assert t.grad is None


def test_memory_guard_names_patch_and_options():
    feats = [torch.zeros(2, 4, 32, 32)]
    loss = FAKDLoss(max_affinity_bytes=1_000_000)
    assert loss.estimate_bytes(feats) == 2 * 1024 ** 2 * 4 * 3
    with pytest.raises(MemoryError) as err:
        loss(feats, feats)
    msg = str(err.value)
    assert '32x32' in msg and 'gt_size' in msg and 'pool: 2' in msg and 'max_affinity_bytes' in msg
    # 4 x 4 pooling: 8 x 8 positions, 2 * 64^2 * 4 * 3 bytes = 98 KB fits
    assert FAKDLoss(pool=4, max_affinity_bytes=1_000_000)(feats, feats).item() == 0


def test_shape_errors():
    with pytest.raises(ValueError, match='same non-zero number'):
        FAKDLoss()([S1], [T1, T2])
    with pytest.raises(ValueError, match='equal B, H and W'):
        FAKDLoss()([S1], [T2])
