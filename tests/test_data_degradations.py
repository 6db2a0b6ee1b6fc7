import math

import pytest
import torch
import torch.nn.functional as F

from ckdsr.data.degradations import (Degrader, blur_per_sample, gaussian_kernels_1d, rand_odd_sizes,
                               random_gaussian_blur)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def textured(b=2, c=3, h=16, w=16, seed=0):
    return torch.rand(b, c, h, w, generator=gen(seed))


def test_shapes_and_default_is_official_noise_only():
    d = Degrader()
    assert (d.noise_prob, d.noise_range, d.gray_noise_prob) == (1.0, (1.0, 30.0), 0.5)
    assert d.blur_prob == 0.0 and d.resize_prob == 0.0 and d.clip
    out = d(textured(), 4, gen(0))
    assert out.shape == (2, 4, 3, 16, 16)
    assert Degrader().degrade(textured(), 0).shape == (2, 0, 3, 16, 16)


@pytest.mark.parametrize('opts', [{}, {'blur_prob': 1.0}, {'blur_prob': 0.5, 'resize_prob': 1.0}])
def test_deterministic_given_generator(opts):
    d, lr = Degrader(**opts), textured()
    a, b, c = d(lr, 3, gen(7)), d(lr, 3, gen(7)), d(lr, 3, gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a[:, 0], a[:, 1])  # copies are independent draws


def test_clamped_to_unit_range_unless_clip_off():
    lr = torch.cat([torch.zeros(1, 3, 16, 16), torch.ones(1, 3, 16, 16)])
    out = Degrader(noise_range=(30, 30))(lr, 2, gen(1))
    assert out.min() >= 0 and out.max() <= 1
    assert (out[0] > 0).any() and (out[1] < 1).any()
    raw = Degrader(noise_range=(30, 30), clip=False)(lr, 2, gen(1))
    assert raw.min() < 0 and raw.max() > 1


def test_noise_std_matches_sigma_per_image():
    lr = torch.full((4, 3, 64, 64), 0.5)
    out = Degrader(noise_range=(10, 10), gray_noise_prob=0.0, clip=False)(lr, 2, gen(2))
    std = (out - 0.5).flatten(2).std(dim=2)  # (B, n)
    assert torch.allclose(std, torch.full_like(std, 10 / 255), rtol=0.05)
    # default U[1, 30]/255 sigma, drawn per image and copy
    out = Degrader(gray_noise_prob=0.0, clip=False)(lr, 8, gen(3))
    std = (out - 0.5).flatten(2).std(dim=2)
    assert std.min() > 0.9 / 255 and std.max() < 31 / 255
    assert std.std() > 2 / 255  # sigmas really differ between images


def test_grey_noise_is_equal_across_channels():
    lr = textured(seed=4)
    grey = Degrader(gray_noise_prob=1.0, clip=False)(lr, 3, gen(4)) - lr.unsqueeze(1)
    assert torch.allclose(grey[:, :, 0], grey[:, :, 1], atol=1e-6)
    assert torch.allclose(grey[:, :, 0], grey[:, :, 2], atol=1e-6)
    colour = Degrader(gray_noise_prob=0.0, clip=False)(lr, 3, gen(4)) - lr.unsqueeze(1)
    assert not torch.allclose(colour[:, :, 0], colour[:, :, 1], atol=1e-3)


def test_nothing_enabled_is_identity():
    lr = textured(seed=5)
    out = Degrader(noise_prob=0.0)(lr, 3, gen(5))
    assert torch.equal(out, lr.unsqueeze(1).expand_as(out))


def test_gaussian_kernels_by_hand():
    k = gaussian_kernels_1d(torch.tensor([5, 3, 1]), torch.tensor([1.0, 2.0, 0.7]), width=7)
    x = torch.arange(-2, 3, dtype=torch.float32)
    g = torch.exp(-x ** 2 / 2)
    assert torch.allclose(k[0], torch.cat([torch.zeros(1), g / g.sum(), torch.zeros(1)]))
    e = math.exp(-1 / 8)
    assert torch.allclose(k[1, 2:5], torch.tensor([e, 1.0, e]) / (1 + 2 * e))
    assert torch.equal(k[2], torch.tensor([0, 0, 0, 1.0, 0, 0, 0]))  # size 1: identity


def test_per_sample_blur_equals_one_conv_per_image():
    x = textured(b=3, c=2, h=12, w=10, seed=6)
    kh = gaussian_kernels_1d(torch.tensor([3, 5, 1]), torch.tensor([0.8, 1.5, 1.0]), 5)
    kw = gaussian_kernels_1d(torch.tensor([5, 1, 3]), torch.tensor([1.2, 1.0, 0.4]), 5)
    got = blur_per_sample(x, kh, kw)
    for i in range(3):
        k2d = (kh[i].view(5, 1) * kw[i].view(1, 5)).expand(2, 1, 5, 5)
        want = F.conv2d(F.pad(x[i:i + 1], (2, 2, 2, 2), mode='reflect'), k2d, groups=2)
        assert torch.allclose(got[i:i + 1], want, atol=1e-6)


def test_blur_keeps_constants_and_tiny_sigma_is_identity():
    const = torch.full((2, 3, 12, 12), 0.3)
    out = Degrader(noise_prob=0.0, blur_prob=1.0)(const, 3, gen(9))
    assert torch.allclose(out, torch.full_like(out, 0.3), atol=1e-6)
    lr = textured(seed=9)
    out = Degrader(noise_prob=0.0, blur_prob=1.0, blur_sigma=(1e-3, 1e-3))(lr, 2, gen(9))
    assert torch.allclose(out, lr.unsqueeze(1).expand_as(out), atol=1e-6)
    blurred = Degrader(noise_prob=0.0, blur_prob=1.0)(lr, 2, gen(9))
    assert blurred.std() < lr.std()


def test_batch_shared_blur_is_one_draw_per_copy():
    lr = textured(b=1, seed=10).expand(4, 3, 16, 16)
    shared = random_gaussian_blur(lr.repeat_interleave(3, 0), 3, 1.0, (3, 11), (0.1, 2.0),
                                  False, True, gen(10)).view(4, 3, 3, 16, 16)
    assert all(torch.equal(shared[0], shared[i]) for i in range(1, 4))
    own = random_gaussian_blur(lr.repeat_interleave(3, 0), 3, 1.0, (3, 11), (0.1, 2.0),
                               False, False, gen(10)).view(4, 3, 3, 16, 16)
    assert not all(torch.equal(own[0], own[i]) for i in range(1, 4))


def test_odd_kernel_sizes_cover_the_range():
    k = rand_odd_sizes((2000,), 3, 11, gen(11), torch.device('cpu'))
    assert set(k.tolist()) == {3, 5, 7, 9, 11}
    with pytest.raises(ValueError):
        Degrader(blur_kernel=(2, 11))


def test_resize_down_up_keeps_size_and_range():
    lr = textured(seed=12)
    out = Degrader(noise_prob=0.0, resize_prob=1.0)(lr, 4, gen(12))
    assert out.shape == (2, 4, 3, 16, 16)
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out, lr.unsqueeze(1).expand_as(out), atol=1e-3)
    noisy = Degrader(resize_prob=1.0, resize_range=(0.5, 1.0), resize_up_prob=0.0)(lr, 2, gen(13))
    assert noisy.shape == (2, 2, 3, 16, 16)
    with pytest.raises(ValueError):
        Degrader(resize_range=(1.2, 1.5))
