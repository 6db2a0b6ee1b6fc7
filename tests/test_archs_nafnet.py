"""NAFNet: DCKD Table 1 parameter counts, the release's key names and checkpoint layout, shapes, blocks."""
import pytest
import torch

from ckdsr.archs.checkpoint_layouts import load_pretrained
from ckdsr.archs.nafnet import STUDENT_LAYOUT, TEACHER_LAYOUT, LayerNorm2d, NAFBlock, NAFNet, SimpleGate


def n_params(**kwargs) -> int:
    with torch.device('meta'):
        return sum(p.numel() for p in NAFNet(**kwargs).parameters())


def test_teacher_and_student_sizes_match_dckd_table_1():
    # Table 1: teacher width 32, 36 blocks, 17.1M (the released NAFNet-GoPro-width32: 17.11M)
    assert n_params(**TEACHER_LAYOUT) == 17_111_907
    blocks = lambda lay: sum(lay['enc_blk_nums']) + lay['middle_blk_num'] + sum(lay['dec_blk_nums'])  # noqa: E731
    assert blocks(TEACHER_LAYOUT) == 36 and blocks(STUDENT_LAYOUT) == 22
    # student width 16, 22 blocks, 2.7M
    assert round(n_params(**STUDENT_LAYOUT) / 1e6, 1) == 2.7


def test_release_key_names():
    with torch.device('meta'):
        keys = set(NAFNet(**TEACHER_LAYOUT).state_dict())
    for key in ('intro.weight', 'ending.bias', 'encoders.3.27.conv2.weight', 'encoders.0.0.sca.1.weight',
                'downs.3.weight', 'middle_blks.0.beta', 'ups.0.0.weight', 'decoders.3.0.norm2.bias',
                'decoders.0.0.gamma'):
        assert key in keys, key
    assert 'ups.0.0.bias' not in keys  # the release's up conv has no bias


def test_any_input_size_and_global_residual():
    torch.manual_seed(0)
    net = NAFNet(width=8, middle_blk_num=1, enc_blk_nums=[1, 1], dec_blk_nums=[1, 1]).eval()
    x = torch.rand(2, 3, 13, 10)
    with torch.no_grad():
        y = net(x)
        assert y.shape == x.shape
        # ending conv zeroed: the net returns its input exactly (output = input + residual)
        torch.nn.init.zeros_(net.ending.weight)
        torch.nn.init.zeros_(net.ending.bias)
        torch.testing.assert_close(net(x), x)


def test_nafblock_with_zero_scales_is_identity_and_gate_multiplies_halves():
    block = NAFBlock(4)
    x = torch.randn(1, 4, 5, 5)
    torch.testing.assert_close(block(x), x)  # beta = gamma = 0 at init (release)
    g = SimpleGate()(torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 4, 1, 1))
    assert g.flatten().tolist() == [3.0, 8.0]


def test_layernorm2d_hand_computed():
    ln = LayerNorm2d(2)
    x = torch.tensor([1.0, 3.0]).view(1, 2, 1, 1)  # mean 2, var 1 -> (-1, 1) / sqrt(1 + 1e-6)
    expected = torch.tensor([-1.0, 1.0]) / (1 + 1e-6) ** 0.5
    torch.testing.assert_close(ln(x).flatten(), expected)


def test_mismatched_level_lists_are_an_error():
    with pytest.raises(ValueError, match='same length'):
        NAFNet(enc_blk_nums=[1, 1], dec_blk_nums=[1])


def test_release_params_file_loads_strictly(tmp_path):
    torch.manual_seed(1)
    cfg = dict(width=8, middle_blk_num=1, enc_blk_nums=[1, 2], dec_blk_nums=[1, 1])
    stand_in = NAFNet(**cfg)
    path = tmp_path / 'NAFNet-GoPro-width8.pth'
    torch.save({'params': stand_in.state_dict()}, path)  # the release's wrapper key
    net = NAFNet(**cfg)
    report = load_pretrained(net, str(path))
    assert report.layout == 'nafnet_official' and report.param_key == 'params' and report.clean
    for (k, a), b in zip(stand_in.state_dict().items(), net.state_dict().values()):
        assert torch.equal(a, b), k
