"""Tiled inference, x8 self-ensemble and pad/crop against whole-image inference and explicit oracles."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from ckdsr.models.inference import (crop_to_size, pad_to_multiple, padded_forward, self_ensemble_forward,
                              sr_forward, tiled_forward)


def _tiny_sr_net(scale=2, seed=0):
    """Three 3x3 convs (receptive field 7x7, radius 3) + pixel shuffle; biases make the zero
    padding at tile borders visible."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                        nn.ReLU(), nn.Conv2d(8, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale))
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.uniform_(m.bias, 0.2, 0.6)
    return net.eval()


def _nearest_up(scale):
    return lambda x: x.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)


@pytest.mark.parametrize('size,tile,overlap', [((37, 29), 12, 8), ((24, 50), 16, 7), ((10, 41), 16, 6)])
def test_tiled_equals_whole_image(size, tile, overlap):
    net = _tiny_sr_net()
    lr = torch.rand(2, 3, *size)
    with torch.no_grad():
        whole = net(lr)
        tiled = tiled_forward(net, lr, 2, tile, overlap)
    assert tiled.shape == whole.shape == (2, 3, size[0] * 2, size[1] * 2)
    assert (tiled - whole).abs().max().item() < 1e-5


def test_tiled_overlap_too_small_is_detectably_wrong():
    # margin 1 < receptive-field radius 3: the check above must be able to fail
    net = _tiny_sr_net()
    lr = torch.rand(1, 3, 30, 30)
    with torch.no_grad():
        err = (tiled_forward(net, lr, 2, 12, 2) - net(lr)).abs().max().item()
    assert err > 1e-3


def test_tiled_single_tile_and_bad_args():
    net = _tiny_sr_net()
    lr = torch.rand(1, 3, 9, 9)
    with torch.no_grad():
        assert torch.equal(tiled_forward(net, lr, 2, 16, 4), net(lr))
        assert torch.equal(tiled_forward(net, lr, 2, 0, 0), net(lr))
    with pytest.raises(ValueError, match='tile_overlap'):
        tiled_forward(net, torch.rand(1, 3, 20, 20), 2, 8, 8)
    with pytest.raises(ValueError, match='scale=3'):
        tiled_forward(net, torch.rand(1, 3, 20, 20), 3, 8, 4)


def test_tiled_keeps_gradients_unless_caller_disables_them():
    net = _tiny_sr_net()
    out = tiled_forward(net, torch.rand(1, 3, 20, 20), 2, 12, 6)
    assert out.requires_grad
    with torch.inference_mode():
        assert not tiled_forward(net, torch.rand(1, 3, 20, 20), 2, 12, 6).requires_grad


def test_self_ensemble_identity_like_net_is_exact():
    # dyadic values k/256: sums of 8 copies and the division by 8 are exact in float32
    lr = torch.randint(0, 256, (2, 3, 5, 7)).float() / 256
    up = _nearest_up(3)
    assert torch.equal(self_ensemble_forward(up, lr), up(lr))


def test_self_ensemble_matches_rot90_oracle():
    """Dihedral group written as rot90^k and rot90^k o flip (a different parametrisation)."""
    net = _tiny_sr_net(seed=3)
    lr = torch.rand(1, 3, 6, 9)
    with torch.no_grad():
        outs = []
        for k in range(4):
            outs.append(torch.rot90(net(torch.rot90(lr, k, (2, 3))), -k, (2, 3)))
            outs.append(torch.rot90(net(torch.rot90(lr.flip(3), k, (2, 3))), -k, (2, 3)).flip(3))
        want = torch.stack(outs).mean(0)
        got = self_ensemble_forward(net, lr)
        assert (got - want).abs().max().item() < 1e-6
        # and the ensemble is not trivially the plain forward for this non-equivariant net
        assert (got - net(lr)).abs().max().item() > 1e-3


def test_pad_to_multiple_symmetric_by_hand():
    x = torch.tensor([[[[1., 2., 3.]]]])
    y, size = pad_to_multiple(x, 5)
    assert size == (1, 3)
    assert y.shape == (1, 1, 5, 5)
    assert y[0, 0, 0].tolist() == [1, 2, 3, 3, 2]
    assert torch.equal(y[0, 0, :, 0], torch.ones(5))  # H mirrored repeatedly: a single row stays
    z, _ = pad_to_multiple(torch.tensor([[[[1., 2.]]]]), 7)
    assert z[0, 0, 0].tolist() == [1, 2, 2, 1, 1, 2, 2]
    r, _ = pad_to_multiple(x, 5, mode='replicate')
    assert r[0, 0, 0].tolist() == [1, 2, 3, 3, 3]
    same, _ = pad_to_multiple(x, 1)
    assert same is x


def test_padded_forward_crops_back():
    calls = []

    def windowed(x):
        calls.append(tuple(x.shape[-2:]))
        assert x.shape[-2] % 8 == 0 and x.shape[-1] % 8 == 0
        return _nearest_up(2)(x)

    lr = torch.rand(1, 3, 13, 10)
    out = padded_forward(windowed, lr, 2, 8)
    assert calls == [(16, 16)]
    assert torch.equal(out, _nearest_up(2)(lr))
    assert crop_to_size(torch.zeros(1, 1, 32, 32), (13, 10), 2).shape == (1, 1, 26, 20)


def test_sr_forward_composition_equals_whole_image_ensemble():
    net = _tiny_sr_net(seed=5)

    def windowed(x):
        assert x.shape[-2] % 4 == 0 and x.shape[-1] % 4 == 0
        return net(x)

    # H = 32 needs no padding; W = 11 < tile, so each tile spans the full width and is padded
    # exactly like the whole image (also after the ensemble's transposes)
    lr = torch.rand(1, 3, 32, 11)
    with torch.no_grad():
        want = self_ensemble_forward(lambda x: padded_forward(windowed, x, 2, 4), lr)
        got = sr_forward(windowed, lr, 2, tile=12, tile_overlap=8, self_ensemble=True, multiple=4)
    assert (got - want).abs().max().item() < 1e-5
    assert np.isfinite(got.numpy()).all()
