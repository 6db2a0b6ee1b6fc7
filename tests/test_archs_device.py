"""Device and dtype agnosticism of every SR arch, checked without a GPU: a forward with all tensors
on the meta device fails if a module makes a tensor on the CPU (masks, paddings, means), and a
float64 forward fails if a constant keeps float32."""
import copy

import pytest
import torch
from torch.func import functional_call

import ckdsr.archs  # noqa: F401  (fills ARCH_REGISTRY)
from ckdsr.utils.registry import ARCH_REGISTRY

TINY = {
    'EDSR': dict(num_feat=8, num_block=1, upscale=3),
    'SlimmableEDSR': dict(num_feat=8, num_block=1, upscale=2, width_mult=0.5),
    'RCAN': dict(num_feat=8, num_group=1, num_block=1, squeeze_factor=4, upscale=2),
    'SwinIR': dict(upscale=2, embed_dim=8, depths=[2], num_heads=[2], window_size=4, mlp_ratio=2,
                   upsampler='pixelshuffle', img_size=16),
    'CARN_M': dict(upscale=3),
    'SlimmableRCAN': dict(num_feat=16, num_group=1, num_block=1, squeeze_factor=4, upscale=2, width_mult=0.5),
    'SlimmableCARN_M': dict(num_feat=16, group=4, upscale=3, width_mult=0.5),
}


@pytest.mark.parametrize('name', sorted(TINY))
def test_forward_on_meta_stand_ins(name):
    net = ARCH_REGISTRY.get(name)(**TINY[name])
    stand_ins = {k: torch.empty_like(t, device='meta')
                 for k, t in list(net.named_parameters()) + list(net.named_buffers())}
    out = functional_call(net, stand_ins, (torch.empty(2, 3, 7, 9, device='meta'),))
    scale = TINY[name]['upscale']
    assert out.device.type == 'meta' and out.shape == (2, 3, 7 * scale, 9 * scale)


#: float64 vs float32 forward of the same weights: float32 rounds at 2^-24 = 6e-8 relative; these
#: nets are a few layers deep with outputs below 1, so the two agree to ~1e-7 (measured: at most
#: 1.2e-7, SwinIR). 2e-6 leaves a 15x margin and is still 4 orders below what a float64-only
#: divergence (a mask, a padding, a branch taken differently) produces.
FLOAT64_VS_FLOAT32_ATOL = 2e-6


@pytest.mark.parametrize('name', sorted(TINY))
def test_float64_forward(name):
    torch.manual_seed(0)
    net32 = ARCH_REGISTRY.get(name)(**TINY[name]).eval()
    net = copy.deepcopy(net32).double()
    x = torch.rand(1, 3, 7, 9, dtype=torch.float64)
    with torch.no_grad():
        out = net(x)
        ref = net32(x.float())
    assert out.dtype == torch.float64 and torch.isfinite(out).all()
    assert out.shape == ref.shape and ref.abs().max() > 0.1  # a real output, not a constant
    torch.testing.assert_close(out, ref.double(), rtol=0, atol=FLOAT64_VS_FLOAT32_ATOL)
