import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ckdsr.archs.haar import haar_dwt
from ckdsr.archs.pcl_discriminator import PCLDiscriminator
from ckdsr.utils.registry import ARCH_REGISTRY


def test_structure_matches_official_code():
    d = PCLDiscriminator()
    assert d.channels == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [b.conv.stride[0] for b in d.blocks] == [1, 2, 1, 2, 1, 2, 1, 2]
    assert d.blocks[0].conv.in_channels == 9  # LH, HL, HH of RGB
    assert all(b.conv.bias is None and isinstance(b.bn, nn.BatchNorm2d) for b in d.blocks)
    assert all(b.conv.kernel_size == (3, 3) for b in d.blocks)
    assert d.act.negative_slope == pytest.approx(0.2) and not d.act.inplace
    assert ARCH_REGISTRY.get('PCLDiscriminator') is PCLDiscriminator


def test_param_count_formula():
    chans = [9, 64, 64, 128, 128, 256, 256, 512, 512]
    convs = sum(9 * i * o for i, o in zip(chans[:-1], chans[1:]))
    bns = sum(2 * o for o in chans[1:])  # affine weight + bias (running stats are buffers)
    head = 512 + 1
    assert sum(p.numel() for p in PCLDiscriminator().parameters()) == convs + bns + head == 4_691_265


def test_logits_and_feature_shapes():
    d = PCLDiscriminator().eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert d(x).shape == (2, 1, 4, 4)
        feats = d.forward_features(x, [0, 2, 4, 6])
        assert PCLDiscriminator(pool_size=0).eval()(x).shape == (2, 1, 2, 2)  # 64/2/16
    assert [tuple(f.shape) for f in feats] == [(2, 64, 32, 32), (2, 128, 16, 16), (2, 256, 8, 8),
                                              (2, 512, 4, 4)]


def test_pre_act_is_conv_bn_output_and_post_act_its_activation():
    torch.manual_seed(0)
    pre = PCLDiscriminator(tap_point='pre_act').eval()
    post = PCLDiscriminator(tap_point='post_act').eval()
    post.load_state_dict(pre.state_dict())
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        (p4, p0), (q4, q0) = pre.forward_features(x, [4, 0]), post.forward_features(x, [4, 0])
        want0 = pre.blocks[0](torch.cat(haar_dwt(x)[1:], dim=1))
    assert torch.allclose(p0, want0, atol=1e-6)
    assert (p0 < 0).any() and (p4 < 0).any()
    assert torch.allclose(q0, F.leaky_relu(p0, 0.2)) and torch.allclose(q4, F.leaky_relu(p4, 0.2))


def test_features_with_logits_in_one_pass():
    torch.manual_seed(1)
    d = PCLDiscriminator().eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        logits, (f,) = d.forward_features(x, [4], with_logits=True)
        assert torch.allclose(logits, d(x)) and torch.allclose(f, d.forward_features(x, [4])[0])
    with pytest.raises(ValueError):
        d.forward_features(x, [8])


def test_only_high_frequencies_are_seen():
    d = PCLDiscriminator().eval()
    with torch.no_grad():  # a constant image has no LH/HL/HH content, whatever its level
        assert torch.allclose(d(torch.full((1, 3, 16, 16), 0.2)), d(torch.full((1, 3, 16, 16), 0.9)))


def test_input_scale_only_reaches_batchnorm_eps():
    torch.manual_seed(2)
    a, b = PCLDiscriminator(), PCLDiscriminator(input_scale=255.0)
    b.load_state_dict(a.state_dict())
    x = torch.rand(4, 3, 32, 32)
    assert torch.allclose(a(x), b(x), atol=1e-3)  # train-mode BN normalises the scale away
    assert PCLDiscriminator(use_wavelet=False).blocks[0].conv.in_channels == 3
