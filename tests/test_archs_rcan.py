"""RCAN: published parameter counts, BasicSR key names, channel attention and residual wiring."""
import pytest
import torch
import torch.nn.functional as F

from ckdsr.archs.rcan import RCAN, ChannelAttention
from ckdsr.utils.registry import ARCH_REGISTRY


@pytest.mark.parametrize('num_block, published', [(20, 15.59e6), (6, 5.17e6)])
def test_published_param_counts(num_block, published):
    with torch.device('meta'):
        net = ARCH_REGISTRY.get('RCAN')(num_feat=64, num_group=10, num_block=num_block, squeeze_factor=16,
                                        upscale=4)
    assert abs(sum(p.numel() for p in net.parameters()) - published) / published < 1e-3


def test_basicsr_key_names():
    keys = set(RCAN(num_feat=16, num_group=2, num_block=2, squeeze_factor=4, upscale=2).state_dict())
    for k in ['conv_first.weight', 'body.1.residual_group.1.rcab.0.weight', 'body.1.residual_group.1.rcab.2.bias',
              'body.0.residual_group.0.rcab.3.attention.1.weight', 'body.0.residual_group.0.rcab.3.attention.3.bias',
              'body.1.conv.weight', 'conv_after_body.weight', 'upsample.0.weight', 'conv_last.bias']:
        assert k in keys
    assert len(keys) == 2 * (1 + 2 * (2 * 4 + 1) + 1 + 1 + 1)


def test_channel_attention_by_hand():
    torch.manual_seed(0)
    ca = ChannelAttention(8, squeeze_factor=4)
    x = torch.rand(2, 8, 5, 3)
    w1, b1 = ca.attention[1].weight.view(2, 8), ca.attention[1].bias
    w2, b2 = ca.attention[3].weight.view(8, 2), ca.attention[3].bias
    pooled = x.mean(dim=(2, 3))                                     # (2, 8)
    scale = torch.sigmoid(F.relu(pooled @ w1.T + b1) @ w2.T + b2)   # RCAN eq. 5-6
    torch.testing.assert_close(ca(x), x * scale[:, :, None, None])


def test_forward_matches_residual_in_residual_equations():
    torch.manual_seed(1)
    net = RCAN(num_feat=8, num_group=2, num_block=2, squeeze_factor=4, upscale=2).eval()
    x = torch.rand(1, 3, 6, 5)
    mean = torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1)

    def conv(t, layer):
        return F.conv2d(t, layer.weight, layer.bias, padding=layer.padding)

    h = conv((x - mean) * 255., net.conv_first)
    g = h
    for group in net.body:
        r = g
        for blk in group.residual_group:
            r = r + blk.rcab[3](conv(F.relu(conv(r, blk.rcab[0])), blk.rcab[2]))
        g = g + conv(r, group.conv)
    r = conv(g, net.conv_after_body) + h
    expected = conv(F.pixel_shuffle(conv(r, net.upsample[0]), 2), net.conv_last) / 255. + mean
    with torch.no_grad():
        torch.testing.assert_close(net(x), expected, rtol=1e-5, atol=1e-5)


def test_bad_squeeze_factor_is_one_clear_error():
    with pytest.raises(ValueError, match='squeeze_factor'):
        RCAN(num_feat=10, squeeze_factor=16)
