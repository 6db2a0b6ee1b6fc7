"""SwinIR: published parameter counts, shifted-window attention against a dense-attention oracle,
masks for any input size, window padding, and the release's stored buffers."""
import pytest
import torch
import torch.nn.functional as F

from ckdsr.archs.swin_transformer import SwinTransformerBlock, shifted_window_mask
from ckdsr.archs.swinir import SwinIR
from ckdsr.utils.registry import ARCH_REGISTRY

SWINIR_M = dict(upscale=4, embed_dim=180, depths=[6] * 6, num_heads=[6] * 6, window_size=8, mlp_ratio=2,
                upsampler='pixelshuffle', resi_connection='1conv')
STUDENT = dict(upscale=4, embed_dim=60, depths=[6] * 4, num_heads=[6] * 4, window_size=8, mlp_ratio=2,
               upsampler='pixelshuffle', img_size=64)


def tiny(**kw):
    cfg = dict(upscale=2, embed_dim=12, depths=[2, 2], num_heads=[2, 3], window_size=4, mlp_ratio=2,
               upsampler='pixelshuffle', img_size=16, drop_path_rate=0.0)
    cfg.update(kw)
    return SwinIR(**cfg).eval()


@pytest.mark.parametrize('cfg, published', [
    (dict(SWINIR_M, img_size=48), 11.90e6),  # the count does not depend on img_size (48 or 64)
    (dict(SWINIR_M, img_size=64), 11.90e6),
    (STUDENT, 1.235e6),                      # DCKD's SwinIR student
])
def test_published_param_counts(cfg, published):
    with torch.device('meta'):
        net = ARCH_REGISTRY.get('SwinIR')(**cfg)
    assert abs(sum(p.numel() for p in net.parameters()) - published) / published < 1e-3


def wrapped(coord, size, shift):
    return coord >= size - shift if shift else torch.zeros_like(coord, dtype=torch.bool)


def rolled_coords(h, w, shift):
    rows, cols = torch.arange(h).repeat_interleave(w), torch.arange(w).repeat(h)
    return (rows - shift) % h, (cols - shift) % w   # where torch.roll(-shift) moves each token


def test_mask_separates_regions_brought_together_by_the_shift():
    h, w, ws, s = 8, 12, 4, 2
    mask = shifted_window_mask(h, w, ws, s)
    assert mask.shape == ((h // ws) * (w // ws), ws * ws, ws * ws)
    for win in range(mask.shape[0]):
        r0, c0 = (win // (w // ws)) * ws, (win % (w // ws)) * ws
        rr = r0 + torch.arange(ws).repeat_interleave(ws)
        cc = c0 + torch.arange(ws).repeat(ws)
        wr, wc = wrapped(rr, h, s), wrapped(cc, w, s)
        cross = (wr[:, None] != wr[None, :]) | (wc[:, None] != wc[None, :])
        assert torch.equal(mask[win], torch.where(cross, -100.0, 0.0))


def dense_block(blk, x, h, w):
    """Oracle: the block as dense attention over all tokens, windows and shift expressed as masks."""
    ws, s, nh = blk.window_size, blk.shift_size, blk.attn.num_heads
    b, n, c = x.shape
    pr, pc = rolled_coords(h, w, s)
    win = (pr // ws) * (w // ws) + pc // ws
    ir, ic = pr % ws, pc % ws
    rel = (ir[:, None] - ir[None, :] + ws - 1) * (2 * ws - 1) + (ic[:, None] - ic[None, :] + ws - 1)
    bias = blk.attn.relative_position_bias_table[rel].permute(2, 0, 1)
    wr, wc = wrapped(pr, h, s), wrapped(pc, w, s)
    cross = (wr[:, None] != wr[None, :]) | (wc[:, None] != wc[None, :])
    q, k, v = blk.attn.qkv(blk.norm1(x)).view(b, n, 3, nh, c // nh).permute(2, 0, 3, 1, 4)
    scores = (q * blk.attn.scale) @ k.transpose(-2, -1) + bias - 100.0 * cross
    scores = scores.masked_fill(win[:, None] != win[None, :], float('-inf'))
    y = blk.attn.proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c))
    x = x + y
    return x + blk.mlp(blk.norm2(x))


@pytest.mark.parametrize('shift', [0, 2])
def test_window_attention_block_equals_dense_oracle(shift):
    torch.manual_seed(0)
    h, w, c = 8, 12, 12
    blk = SwinTransformerBlock(c, num_heads=3, window_size=4, shift_size=shift, mlp_ratio=2).eval()
    torch.nn.init.normal_(blk.attn.relative_position_bias_table, std=1.0)  # make the bias matter
    x = torch.randn(2, h * w, c)
    mask = shifted_window_mask(h, w, 4, shift) if shift else None
    with torch.no_grad():
        torch.testing.assert_close(blk(x, (h, w), mask), dense_block(blk, x, h, w), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('pad_mode', ['reflect', 'symmetric'])
def test_sizes_not_divisible_by_the_window_are_padded_then_cropped(pad_mode):
    torch.manual_seed(1)
    net = tiny(pad_mode=pad_mode)
    x = torch.rand(1, 3, 7, 9)
    if pad_mode == 'reflect':
        padded = F.pad(x, (0, 3, 0, 1), mode='reflect')
    else:  # the official test script's flip-and-concatenate padding
        padded = torch.cat([x, torch.flip(x, [2])], 2)[:, :, :8, :]
        padded = torch.cat([padded, torch.flip(padded, [3])], 3)[:, :, :, :12]
    with torch.no_grad():
        out = net(x)
        assert out.shape == (1, 3, 14, 18)
        torch.testing.assert_close(out, net(padded)[..., :14, :18])


def test_inputs_smaller_than_the_window_and_mask_cache():
    net = tiny()
    with torch.no_grad():
        assert net(torch.rand(1, 3, 2, 3)).shape == (1, 3, 4, 6)
    m = net.attn_mask(16, 20, torch.device('cpu'))
    assert net.attn_mask(16, 20, torch.device('cpu')) is m        # cached per size
    assert not torch.equal(net.attn_mask(20, 16, torch.device('cpu')), m)  # same window count, other layout
    for size in range(4, 48, 4):
        net.attn_mask(size, size, torch.device('cpu'))
    assert len(net._masks) == 8                                    # bounded


@pytest.mark.parametrize('kw, out_hw', [
    (dict(upsampler='pixelshuffledirect', upscale=3), (24, 24)),
    (dict(upsampler='nearest+conv', upscale=4), (32, 32)),
    (dict(upsampler='', upscale=1, resi_connection='3conv'), (8, 8)),
    (dict(upsampler='pixelshuffle', upscale=2, in_chans=1), (16, 16)),
])
def test_upsampler_variants(kw, out_hw):
    net = tiny(**kw)
    x = torch.rand(1, net.conv_first.in_channels, 8, 8)
    with torch.no_grad():
        assert net(x).shape[-2:] == out_hw


def test_release_buffers_load_with_plain_strict_load_state_dict():
    torch.manual_seed(2)
    src, dst = tiny(), tiny()
    state = src.state_dict()
    state['layers.0.residual_group.blocks.1.attn_mask'] = torch.zeros(16, 16, 16)
    state['layers.1.residual_group.blocks.0.attn.relative_position_index'] = torch.zeros(16, 16, dtype=torch.long)
    dst.load_state_dict(state, strict=True)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x))


@pytest.mark.parametrize('kw, words', [
    (dict(upsampler='pixel'), 'upsampler'),
    (dict(upsampler='', upscale=2), 'upscale 1'),
    (dict(resi_connection='2conv'), 'resi_connection'),
    (dict(depths=[2, 2, 2]), 'num_heads'),
    (dict(pad_mode='zeros'), 'pad_mode'),
])
def test_bad_options_are_one_clear_error(kw, words):
    with pytest.raises(ValueError, match=words) as err:
        tiny(**kw)
    assert str(err.value).startswith('SwinIR') and '\n' not in str(err.value)


def test_gradient_checkpointing_gives_the_same_output_and_gradients():
    torch.manual_seed(3)
    plain = tiny().train()
    ckpt = tiny(use_checkpoint=True).train()
    ckpt.load_state_dict(plain.state_dict())
    x = torch.rand(1, 3, 8, 8)
    plain(x).square().mean().backward()
    ckpt(x).square().mean().backward()
    torch.testing.assert_close(ckpt.conv_first.weight.grad, plain.conv_first.weight.grad)
    torch.testing.assert_close(ckpt.layers[0].residual_group.blocks[1].attn.qkv.weight.grad,
                               plain.layers[0].residual_group.blocks[1].attn.qkv.weight.grad)
