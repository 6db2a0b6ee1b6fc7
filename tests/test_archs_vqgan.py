import argparse

import pytest
import torch
import torch.nn.functional as F

from ckdsr.archs.vqgan import VQGAN_F16_1024_URL, AttnBlock, VQGANEncoder
from ckdsr.utils.registry import ARCH_REGISTRY

F16_1024 = dict(ch=128, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2, attn_resolutions=(16,),
                resolution=256, in_channels=3, z_channels=256, double_z=False)
SMALL = dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(16,), resolution=32,
             in_channels=3, z_channels=32, double_z=False)
SMALL_NET = dict(SMALL, embed_dim=32, n_embed=16, taps=(0, 1))


def taming_key_shapes(ch, ch_mult, num_res_blocks, attn_resolutions, resolution, in_channels,
                      z_channels, double_z, embed_dim, n_embed):
    """Parameter names/shapes of taming's VQModel encoder side, written out from taming's
    ``Encoder`` / ``VQModel`` source (``taming/modules/diffusionmodules/model.py``)."""
    s = {}

    def conv(name, cin, cout, k):
        s[f'{name}.weight'], s[f'{name}.bias'] = (cout, cin, k, k), (cout,)

    def norm(name, c):
        s[f'{name}.weight'], s[f'{name}.bias'] = (c,), (c,)

    def resblock(name, cin, cout):
        norm(f'{name}.norm1', cin)
        conv(f'{name}.conv1', cin, cout, 3)
        norm(f'{name}.norm2', cout)
        conv(f'{name}.conv2', cout, cout, 3)
        if cin != cout:
            conv(f'{name}.nin_shortcut', cin, cout, 1)

    def attn(name, c):
        norm(f'{name}.norm', c)
        for part in ('q', 'k', 'v', 'proj_out'):
            conv(f'{name}.{part}', c, c, 1)

    conv('encoder.conv_in', in_channels, ch, 3)
    res, cin = resolution, ch
    for level, mult in enumerate(ch_mult):
        for j in range(num_res_blocks):
            resblock(f'encoder.down.{level}.block.{j}', cin, ch * mult)
            cin = ch * mult
            if res in attn_resolutions:
                attn(f'encoder.down.{level}.attn.{j}', cin)
        if level < len(ch_mult) - 1:
            conv(f'encoder.down.{level}.downsample.conv', cin, cin, 3)
            res //= 2
    resblock('encoder.mid.block_1', cin, cin)
    attn('encoder.mid.attn_1', cin)
    resblock('encoder.mid.block_2', cin, cin)
    norm('encoder.norm_out', cin)
    conv('encoder.conv_out', cin, z_channels * (2 if double_z else 1), 3)
    conv('quant_conv', z_channels, embed_dim, 1)
    s['quantize.embedding.weight'] = (n_embed, embed_dim)
    return s


def write_taming_checkpoint(path, cfg, embed_dim, n_embed, seed=0):
    """A Lightning-style checkpoint: random encoder tensors plus decoder / loss junk."""
    g = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(shape, generator=g) * 0.05
             for k, shape in taming_key_shapes(**cfg, embed_dim=embed_dim, n_embed=n_embed).items()}
    state.update({
        'decoder.conv_in.weight': torch.zeros(4, 4, 3, 3),
        'decoder.up.0.block.0.conv1.weight': torch.zeros(4, 4, 3, 3),
        'post_quant_conv.weight': torch.zeros(4, 4, 1, 1),
        'loss.discriminator.main.0.weight': torch.zeros(4, 3, 4, 4),
        'loss.perceptual_loss.net.slice1.0.weight': torch.zeros(4, 3, 3, 3),
        'loss.logvar': torch.zeros(()),
    })
    torch.save({'epoch': 3, 'global_step': 1234, 'pytorch-lightning_version': '1.0.8',
                'state_dict': state, 'optimizer_states': [], 'lr_schedulers': []}, path)
    return state


def test_full_config_key_names_and_shapes_match_taming():
    net = VQGANEncoder(allow_random=True)
    got = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert got == taming_key_shapes(**F16_1024, embed_dim=256, n_embed=1024)
    assert tuple(net.codebook.shape) == (1024, 256)
    assert ARCH_REGISTRY.get('VQGANEncoder') is VQGANEncoder


def test_encoder_param_count_by_independent_formula():
    def conv3(i, o): return 9 * i * o + o
    def conv1(i, o): return i * o + o
    def gn(c): return 2 * c
    def res(i, o): return gn(i) + conv3(i, o) + gn(o) + conv3(o, o) + (conv1(i, o) if i != o else 0)
    def attn(c): return gn(c) + 4 * conv1(c, c)

    levels = (2 * res(128, 128) + 2 * res(128, 128) + res(128, 256) + res(256, 256)
              + 2 * res(256, 256) + res(256, 512) + res(512, 512) + 2 * attn(512))
    downs = 2 * conv3(128, 128) + 2 * conv3(256, 256)
    mid = 2 * res(512, 512) + attn(512)
    formula = conv3(3, 128) + levels + downs + mid + gn(512) + conv3(512, 256)
    net = VQGANEncoder(allow_random=True)
    assert sum(p.numel() for p in net.encoder.parameters()) == formula == 29_298_176
    assert sum(p.numel() for p in net.parameters()) == formula + conv1(256, 256) + 1024 * 256


def test_attention_is_placed_by_level_not_runtime_size():
    net = VQGANEncoder(allow_random=True, return_z=True)
    assert [len(d.attn) for d in net.encoder.down] == [0, 0, 0, 0, 2]  # 256/16 -> level 4
    calls = []
    net.encoder.down[4].attn[0].register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        net(torch.rand(1, 3, 32, 32))
    assert calls == [1]  # used at a 2x2 runtime size, because it is level 4


def test_tapped_shapes_and_z_on_32px():
    net = VQGANEncoder(allow_random=True, return_z=True)
    with torch.no_grad():
        feats, z = net(torch.rand(2, 3, 32, 32))
    assert [tuple(f.shape) for f in feats] == [(2, 128, 32, 32), (2, 128, 16, 16), (2, 256, 8, 8),
                                              (2, 256, 4, 4), (2, 512, 2, 2)]
    assert tuple(z.shape) == (2, 256, 2, 2)
    assert net.tap_channels() == [128, 128, 256, 256, 512]


def test_stop_after_taps_skips_mid_block_with_identical_features():
    torch.manual_seed(0)
    net = VQGANEncoder(allow_random=True, **SMALL_NET)
    mid_calls = []
    net.encoder.mid.block_1.register_forward_hook(lambda *a: mid_calls.append(1))
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        short = net(x)
        assert mid_calls == []
        net.return_z = True
        full, z = net(x)
    assert mid_calls == [1]
    assert len(short) == len(full) == 2
    for a, b in zip(short, full):
        assert torch.equal(a, b)
    assert tuple(z.shape) == (1, 32, 8, 8)


def test_tap_is_the_first_resnet_block_output_before_attention():
    torch.manual_seed(1)
    net = VQGANEncoder(allow_random=True, input_range='01', **dict(SMALL_NET, taps=(1,)))
    enc = net.encoder
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        h = enc.down[0].downsample(enc.down[0].block[0](enc.conv_in(x)))
        want = enc.down[1].block[0](h)
        (got,) = net(x)
    assert len(enc.down[1].attn) == 1  # level 1 has attention, the tap precedes it
    assert torch.allclose(got, want)


def test_loads_taming_lightning_checkpoint_ignoring_decoder(tmp_path):
    path = tmp_path / 'last.ckpt'
    state = write_taming_checkpoint(path, SMALL, embed_dim=32, n_embed=16)
    net = VQGANEncoder(checkpoint_path=str(path), **SMALL_NET)
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), k
    other = VQGANEncoder(allow_random=True, **SMALL_NET)
    other.load_taming_checkpoint(str(path))
    assert torch.equal(other.codebook, state['quantize.embedding.weight'])
    pickled = tmp_path / 'with_hparams.ckpt'  # non-tensor objects need a full unpickle
    torch.save({'state_dict': state, 'hyper_parameters': argparse.Namespace(lr=1e-4)}, pickled)
    with pytest.warns(UserWarning, match='weights_only'):
        VQGANEncoder(checkpoint_path=str(pickled), **SMALL_NET)
    bare = tmp_path / 'bare.pth'  # DCKD-style converted file: a plain state dict
    torch.save({k: v for k, v in state.items() if not k.startswith(('decoder', 'loss'))}, bare)
    VQGANEncoder(checkpoint_path=str(bare), **SMALL_NET)


def test_mismatched_checkpoint_is_one_clear_error(tmp_path):
    path = tmp_path / 'last.ckpt'
    write_taming_checkpoint(path, SMALL, embed_dim=32, n_embed=16)
    with pytest.raises(ValueError, match='my.key.*missing: .*encoder.down.1.downsample'):
        VQGANEncoder(checkpoint_path=str(path), option_key='my.key',
                     **dict(SMALL_NET, ch_mult=(1, 2, 2)))
    with pytest.raises(ValueError, match=r'wrong shape: quantize.embedding.weight \(16, 32\)'):
        VQGANEncoder(checkpoint_path=str(path), **dict(SMALL_NET, n_embed=8))


def test_missing_checkpoint_names_option_key_and_source(tmp_path):
    key = 'train.embedding.checkpoint_path'
    for path in (None, str(tmp_path / 'absent.ckpt')):
        with pytest.raises(FileNotFoundError) as err:
            VQGANEncoder(checkpoint_path=path, option_key=key, **SMALL_NET)
        assert key in str(err.value) and VQGAN_F16_1024_URL in str(err.value)


def test_input_range_pm1_maps_to_minus_one_one():
    torch.manual_seed(2)
    a = VQGANEncoder(allow_random=True, input_range='pm1', **SMALL_NET)
    b = VQGANEncoder(allow_random=True, input_range='01', **SMALL_NET)
    b.load_state_dict(a.state_dict())
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        for fa, fb in zip(a(x), b(2 * x - 1)):
            assert torch.allclose(fa, fb, atol=1e-6)


def test_attention_matches_taming_formula():
    torch.manual_seed(3)
    block = AttnBlock(32)
    x = torch.randn(2, 32, 5, 6)
    b, c, h, w = x.shape
    n = block.norm(x)
    q = block.q(n).reshape(b, c, h * w).permute(0, 2, 1)
    k = block.k(n).reshape(b, c, h * w)
    weights = F.softmax(torch.bmm(q, k) * c ** -0.5, dim=2)
    v = block.v(n).reshape(b, c, h * w)
    ref = x + block.proj_out(torch.bmm(v, weights.permute(0, 2, 1)).reshape(b, c, h, w))
    with torch.no_grad():
        assert torch.allclose(block(x), ref, atol=1e-5)


@pytest.mark.parametrize('taps', [(0, 1), ()])
def test_z_rows_computes_z_for_those_rows_only(taps):
    torch.manual_seed(2)
    net = VQGANEncoder(allow_random=True, return_z=True, **dict(SMALL_NET, taps=taps)).eval()
    x = torch.rand(5, 3, 16, 16)
    rows_seen = []
    net.encoder.mid.block_1.register_forward_hook(lambda m, inp, out: rows_seen.append(inp[0].shape[0]))
    with torch.no_grad():
        feats_all, z_all = net(x)
        feats, z = net(x, z_rows=slice(1, 3))
        none_feats, none_z = net(x, z_rows=slice(0, 0))
    assert rows_seen == [5, 2]  # the empty slice never reaches the mid block
    assert none_z is None
    torch.testing.assert_close(z, z_all[1:3], rtol=1e-5, atol=1e-6)
    for a, b, c in zip(feats_all, feats, none_feats):  # features still cover every row
        assert a.shape[0] == 5
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a, c)
