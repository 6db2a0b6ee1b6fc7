"""Restormer: DCKD Table 1 parameter counts, the release's key names and checkpoint layout, blocks."""
import pytest
import torch

from ckdsr.archs.checkpoint_layouts import load_pretrained
from ckdsr.archs.restormer import MDTA, STUDENT_LAYOUT, TEACHER_LAYOUT, ChannelLayerNorm, Restormer


def n_params(**kwargs) -> int:
    with torch.device('meta'):
        return sum(p.numel() for p in Restormer(**kwargs).parameters())


def blocks(layout) -> int:
    nb = layout['num_blocks']
    return 2 * sum(nb[:3]) + nb[3] + layout['num_refinement_blocks']


def test_teacher_and_student_sizes_match_dckd_table_1():
    assert n_params() == n_params(**TEACHER_LAYOUT) == 26_126_644  # Table 1: 48 ch, 44 blocks, 26.1M
    assert blocks(TEACHER_LAYOUT) == 44 and blocks(STUDENT_LAYOUT) == 22
    assert round(n_params(**STUDENT_LAYOUT) / 1e6, 1) == 3.8  # 24 ch, 22 blocks, 3.8M


def test_release_key_names():
    with torch.device('meta'):
        keys = set(Restormer().state_dict())
    for key in ('patch_embed.proj.weight', 'encoder_level1.0.norm1.body.weight', 'encoder_level1.0.norm1.body.bias',
                'encoder_level1.0.attn.temperature', 'encoder_level1.0.attn.qkv_dwconv.weight',
                'latent.7.ffn.project_in.weight', 'down1_2.body.0.weight', 'up4_3.body.0.weight',
                'reduce_chan_level3.weight', 'decoder_level1.3.ffn.dwconv.weight', 'refinement.3.attn.project_out.weight',
                'output.weight'):
        assert key in keys, key
    assert 'output.bias' not in keys and 'skip_conv.weight' not in keys  # bias=False, no dual-pixel skip


def test_any_input_size_and_global_residual():
    torch.manual_seed(0)
    net = Restormer(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 2, 2, 4]).eval()
    x = torch.rand(1, 3, 11, 14)
    with torch.no_grad():
        assert net(x).shape == x.shape
        torch.nn.init.zeros_(net.output.weight)
        torch.testing.assert_close(net(x), x)
    dual = Restormer(inp_channels=6, out_channels=3, dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1,
                     heads=[1, 1, 1, 1], dual_pixel_task=True)
    assert dual(torch.rand(1, 6, 8, 8)).shape == (1, 3, 8, 8)


def test_layer_norms_hand_computed():
    x = torch.tensor([1.0, 3.0]).view(1, 2, 1, 1)  # mean 2, var 1
    with_bias = ChannelLayerNorm(2, 'WithBias')(x).flatten()
    torch.testing.assert_close(with_bias, torch.tensor([-1.0, 1.0]) / (1 + 1e-5) ** 0.5)
    bias_free = ChannelLayerNorm(2, 'BiasFree')(x).flatten()  # the mean is not subtracted
    torch.testing.assert_close(bias_free, torch.tensor([1.0, 3.0]) / (1 + 1e-5) ** 0.5)
    with pytest.raises(ValueError, match='LayerNorm_type'):
        ChannelLayerNorm(2, 'Batch')


def test_mdta_attends_over_channels():
    """One head, identity projections: out = softmax(q_hat k_hat^T * t) v with q = k = v = x."""
    torch.manual_seed(0)
    attn = MDTA(2, 1, bias=False)
    with torch.no_grad():
        attn.qkv.weight.copy_(torch.cat([torch.eye(2)] * 3).view(6, 2, 1, 1))
        attn.qkv_dwconv.weight.zero_()
        attn.qkv_dwconv.weight[:, 0, 1, 1] = 1.0  # identity depth-wise conv
        attn.project_out.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
        attn.temperature.fill_(2.0)
    x = torch.randn(1, 2, 3, 3)
    v = x.reshape(2, 9)
    q = v / v.norm(dim=1, keepdim=True)
    expected = torch.softmax(q @ q.T * 2.0, dim=-1) @ v
    torch.testing.assert_close(attn(x).reshape(2, 9), expected)


def test_release_params_file_loads_strictly(tmp_path):
    torch.manual_seed(1)
    cfg = dict(dim=8, num_blocks=[1, 1, 1, 2], num_refinement_blocks=1, heads=[1, 2, 2, 4])
    stand_in = Restormer(**cfg)
    path = tmp_path / 'deraining.pth'
    torch.save({'params': stand_in.state_dict()}, path)
    net = Restormer(**cfg)
    report = load_pretrained(net, str(path))
    assert report.layout == 'restormer_official' and report.param_key == 'params' and report.clean
    for (k, a), b in zip(stand_in.state_dict().items(), net.state_dict().values()):
        assert torch.equal(a, b), k
