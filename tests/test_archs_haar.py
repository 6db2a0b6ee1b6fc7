import pytest
import torch
import torch.nn.functional as F

from ckdsr.archs.haar import HaarDWT, haar_dwt, haar_idwt
from ckdsr.utils.registry import ARCH_REGISTRY


def test_hand_values_on_one_block():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)  # a b / c d
    ll, lh, hl, hh = (t.item() for t in haar_dwt(x))
    assert ll == pytest.approx((1 + 2 + 3 + 4) / 2)   # 5
    assert lh == pytest.approx((1 + 2 - 3 - 4) / 2)   # -2: top minus bottom
    assert hl == pytest.approx((1 - 2 + 3 - 4) / 2)   # -1: left minus right
    assert hh == pytest.approx((1 - 2 - 3 + 4) / 2)   # 0


def test_blocks_are_independent_and_shapes_halve():
    x = torch.zeros(1, 1, 4, 6)
    x[0, 0, 2:4, 4:6] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    bands = haar_dwt(x)
    for band in bands:
        assert band.shape == (1, 1, 2, 3)
    assert bands[0][0, 0, 1, 2] == pytest.approx(5.0)
    assert bands[0].abs().sum() == pytest.approx(5.0)  # every other block is zero


def test_round_trip_and_orthonormality():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 24, dtype=torch.float64)
    bands = haar_dwt(x)
    assert torch.allclose(haar_idwt(*bands), x, atol=1e-6)
    energy = sum(b.pow(2).sum() for b in bands)
    assert energy.item() == pytest.approx(x.pow(2).sum().item(), rel=1e-10)


def test_odd_sizes_reflect_pad_and_crop_back():
    torch.manual_seed(1)
    x = torch.randn(1, 2, 7, 9)
    bands = haar_dwt(x)
    assert bands[0].shape == (1, 2, 4, 5)
    padded = F.pad(x, (0, 1, 0, 1), mode='reflect')
    assert torch.equal(padded[..., 7, :9], x[..., 5, :])  # x[N] = x[N-2]
    for got, want in zip(bands, haar_dwt(padded)):
        assert torch.allclose(got, want)
    assert torch.allclose(haar_idwt(*bands, size=(7, 9)), x, atol=1e-6)
    assert haar_idwt(*bands).shape[-2:] == (8, 10)
    with pytest.raises(ValueError, match='odd'):
        haar_dwt(x, odd='error')


def test_module_concatenates_bands_band_major():
    torch.manual_seed(2)
    x = torch.rand(2, 3, 8, 8)
    _, lh, hl, hh = haar_dwt(x)
    out = HaarDWT(bands=('LH', 'HL', 'HH'))(x)
    assert out.shape == (2, 9, 4, 4)
    assert torch.equal(out[:, 0:3], lh) and torch.equal(out[:, 3:6], hl)
    assert torch.equal(out[:, 6:9], hh)
    assert ARCH_REGISTRY.get('HaarDWT') is HaarDWT
    with pytest.raises(ValueError):
        HaarDWT(bands=('LX',))


def test_constant_image_has_no_detail():
    x = torch.full((1, 3, 6, 6), 0.7)
    ll, lh, hl, hh = haar_dwt(x)
    assert torch.allclose(ll, torch.full_like(ll, 1.4))
    for band in (lh, hl, hh):
        assert band.abs().max() < 1e-6
