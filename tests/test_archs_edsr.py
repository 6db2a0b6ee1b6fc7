"""EDSR: published parameter counts, BasicSR key names, and the forward pass against the paper's
equations written out with F.conv2d."""
import pytest
import torch
import torch.nn.functional as F

from ckdsr.archs.edsr import EDSR
from ckdsr.utils.registry import ARCH_REGISTRY


def n_params(net):
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize('cfg, published', [
    (dict(num_feat=64, num_block=16), 1.518e6),                   # EDSR baseline x4
    (dict(num_feat=256, num_block=32, res_scale=0.1), 43.09e6),   # EDSR x4 (CSD / FACD teacher)
])
def test_published_param_counts(cfg, published):
    with torch.device('meta'):
        net = ARCH_REGISTRY.get('EDSR')(upscale=4, **cfg)
    assert abs(n_params(net) - published) / published < 1e-3


def test_basicsr_state_dict_keys():
    net = EDSR(num_feat=8, num_block=2, upscale=4)
    keys = set(net.state_dict())
    expected = {f'{m}.{p}' for m in ['conv_first', 'body.0.conv1', 'body.0.conv2', 'body.1.conv1', 'body.1.conv2',
                                     'conv_after_body', 'upsample.0', 'upsample.2', 'conv_last']
                for p in ['weight', 'bias']}
    assert keys == expected  # the mean is a buffer, not in the state_dict (as in BasicSR)


def conv(x, layer):
    return F.conv2d(x, layer.weight, layer.bias, padding=1)


@pytest.mark.parametrize('upscale', [2, 3, 4])
def test_forward_matches_equations(upscale):
    torch.manual_seed(0)
    net = EDSR(num_feat=8, num_block=2, upscale=upscale, res_scale=0.1, img_range=255.).eval()
    x = torch.rand(2, 3, 9, 7)
    mean = torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1)
    h = conv((x - mean) * 255., net.conv_first)
    r = h
    for blk in net.body:
        r = r + 0.1 * conv(F.relu(conv(r, blk.conv1)), blk.conv2)
    r = conv(r, net.conv_after_body) + h
    for i in range(0, len(net.upsample), 2):
        r = F.pixel_shuffle(conv(r, net.upsample[i]), 3 if upscale == 3 else 2)
    expected = conv(r, net.conv_last) / 255. + mean
    with torch.no_grad():
        out = net(x)
    assert out.shape == (2, 3, 9 * upscale, 7 * upscale)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_mean_follows_device_and_dtype():
    net = EDSR(num_feat=8, num_block=1).double()
    x = torch.rand(1, 3, 5, 5, dtype=torch.float64)
    assert net(x).dtype == torch.float64
    assert 'mean' in dict(net.named_buffers())


@pytest.mark.parametrize('kwargs, words', [
    (dict(upscale=5), 'upscale'),
    (dict(num_in_ch=1, num_out_ch=1), 'rgb_mean'),
])
def test_bad_options_raise_one_clear_line(kwargs, words):
    with pytest.raises(ValueError, match=words) as err:
        EDSR(**kwargs)
    assert 'EDSR' in str(err.value) and '\n' not in str(err.value)


def test_single_channel_with_matching_mean():
    net = EDSR(num_in_ch=1, num_out_ch=1, num_feat=8, num_block=1, upscale=2, rgb_mean=[0.5])
    assert net(torch.rand(1, 1, 6, 6)).shape == (1, 1, 12, 12)
