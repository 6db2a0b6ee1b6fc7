import pytest
import torch
import torch.nn.functional as F

from ckdsr.data.pcl_samples import make_pcl_samples, sharpen


def gen(seed):
    return torch.Generator().manual_seed(seed)


def pair(b=2, h=32, scale=4, seed=0):
    g = gen(seed)
    return torch.rand(b, 3, h, h, generator=g), torch.rand(b, 3, h // scale, h // scale, generator=g)


def test_shapes_and_official_composition():
    gt, lr = pair()
    pos, neg = make_pcl_samples(gt, lr, 4, generator=gen(0))
    assert pos.shape == (2, 4, 3, 32, 32) and neg.shape == (2, 4, 3, 32, 32)
    assert torch.equal(pos[:, 0], gt)  # GT + 3 sharpened GT
    up = F.interpolate(lr, size=(32, 32), mode='bicubic', align_corners=False).clamp(0, 1)
    assert torch.equal(neg[:, 0], up)  # upsampled LR + 3 blurred GT
    assert not torch.equal(pos[:, 1], gt) and not torch.equal(neg[:, 1], gt)
    _, neg_official = make_pcl_samples(gt, lr, 4, generator=gen(0), align_corners=True)
    up_ac = F.interpolate(lr, size=(32, 32), mode='bicubic', align_corners=True).clamp(0, 1)
    assert torch.equal(neg_official[:, 0], up_ac)


def test_counts_are_configurable():
    gt, lr = pair()
    pos, neg = make_pcl_samples(gt, lr, 4, n_pos=2, n_neg=6, generator=gen(1))
    assert pos.shape[1] == 2 and neg.shape[1] == 6
    pos, neg = make_pcl_samples(gt, lr, 4, n_pos=3, n_neg=0, include_gt=False, generator=gen(1))
    assert pos.shape[1] == 3 and neg.shape == (2, 0, 3, 32, 32)
    assert not any(torch.equal(pos[:, i], gt) for i in range(3))
    with pytest.raises(ValueError):
        make_pcl_samples(gt, lr, 2)


def test_sharpen_factor_one_is_identity_and_zero_is_smoothing():
    gt, _ = pair(seed=2)
    assert torch.allclose(sharpen(gt, torch.ones(2)), gt)
    img = torch.zeros(1, 1, 3, 3)
    img[0, 0, 1, 1] = 1.0
    smooth = sharpen(img, torch.zeros(1))
    assert smooth[0, 0, 1, 1].item() == pytest.approx(5 / 13)  # kernel [[1,1,1],[1,5,1],[1,1,1]]/13
    assert torch.equal(smooth[0, 0, 0], img[0, 0, 0])  # borders kept


def test_sharpen_matches_torchvision_per_image():
    from torchvision.transforms.functional import adjust_sharpness

    gt, _ = pair(b=3, seed=3)
    factors = torch.tensor([0.5, 1.7, 3.0])
    got = sharpen(gt, factors)
    for i, f in enumerate(factors.tolist()):
        assert torch.allclose(got[i], adjust_sharpness(gt[i], f), atol=1e-6)


def test_tiny_sigma_blur_is_identity():
    gt, lr = pair(seed=4)
    _, neg = make_pcl_samples(gt, lr, 4, n_neg=4, blur_sigma=(1e-3, 1e-3), generator=gen(4))
    for i in range(1, 4):
        assert torch.allclose(neg[:, i], gt, atol=1e-6)
    _, neg = make_pcl_samples(gt, lr, 4, generator=gen(4))
    assert all(neg[:, i].std() < gt.std() for i in range(1, 4))


def test_deterministic_given_generator():
    gt, lr = pair(seed=5)
    a = make_pcl_samples(gt, lr, 4, generator=gen(5))
    b = make_pcl_samples(gt, lr, 4, generator=gen(5))
    c = make_pcl_samples(gt, lr, 4, generator=gen(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[1], c[1])


def test_sharpness_factor_is_per_image_and_quantize_rounds():
    img = torch.rand(1, 3, 16, 16, generator=gen(7)).expand(4, 3, 16, 16)
    pos, _ = make_pcl_samples(img, img[..., ::4, ::4], 4, n_pos=2, n_neg=0, generator=gen(7))
    assert not torch.equal(pos[0, 1], pos[1, 1])  # same image, different factors
    pos, neg = make_pcl_samples(img, img[..., ::4, ::4], 4, quantize=True, generator=gen(7))
    for t in (pos[:, 1:], neg[:, 1:]):
        assert torch.allclose(t * 255, (t * 255).round(), atol=1e-4)
