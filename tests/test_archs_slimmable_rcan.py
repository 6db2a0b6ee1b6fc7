"""SlimmableRCAN (CSD on RCAN): sizes per width, full width = RCAN, channel attention sliced with the
width, export as a plain RCAN, and the tools/model_info.py width rows."""
import importlib.util

import pytest
import torch

from ckdsr.archs.rcan import RCAN
from ckdsr.archs.slimmable_ops import as_slimmable
from ckdsr.archs.slimmable_rcan import SlimmableRCAN
from tests.conftest import REPO_ROOT


def n_params(net):
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize('upscale, groups, blocks', [(4, 10, 20), (3, 2, 3), (2, 2, 3)])
def test_sizes_per_width_equal_plain_rcan_of_the_sliced_width(upscale, groups, blocks):
    with torch.device('meta'):
        slim = SlimmableRCAN(num_feat=64, num_group=groups, num_block=blocks, upscale=upscale)
    if upscale == 4:
        assert n_params(slim) == 15_592_355  # RCAN 10x20 x4, the published 15.59M
    for width, feat in ((0.25, 16), (0.5, 32), (0.75, 48), (1.0, 64)):
        with torch.device('meta'):
            plain = RCAN(num_feat=feat, num_group=groups, num_block=blocks, upscale=upscale)
        assert slim.effective_num_params(width) == n_params(plain), width


def test_x4_student_count_by_hand():
    """Width 0.75 of RCAN 10x20 x4 by hand: 48 channels, CA bottleneck 3."""
    c, r, k = 48, 3, 9
    rcab = 2 * (k * c * c + c) + (c * r + r) + (r * c + c)
    group = 20 * rcab + k * c * c + c
    frame = (k * 3 * c + c) + (k * c * c + c) + 2 * (k * c * 4 * c + 4 * c) + (k * c * 3 + 3)
    with torch.device('meta'):
        slim = SlimmableRCAN(num_feat=64, num_group=10, num_block=20)
    assert slim.effective_num_params(0.75) == 10 * group + frame == 8_778_939


@pytest.mark.parametrize('upscale', [2, 3, 4])
def test_full_width_equals_rcan_with_the_same_weights(upscale):
    torch.manual_seed(0)
    rcan = RCAN(num_feat=32, num_group=2, num_block=2, upscale=upscale).eval()
    slim = SlimmableRCAN(num_feat=32, num_group=2, num_block=2, upscale=upscale).eval()
    slim.load_state_dict(rcan.state_dict())  # same key names
    x = torch.rand(2, 3, 7, 6)
    with torch.no_grad():
        torch.testing.assert_close(slim(x, 1.0), rcan(x))


@pytest.mark.parametrize("upscale, width", [(4, 0.75), (3, 0.5), (2, 0.25)])
def test_exported_student_is_a_plain_rcan_equal_to_the_slim_forward(upscale, width):
    torch.manual_seed(1)
    slim = SlimmableRCAN(num_feat=32, num_group=2, num_block=2, squeeze_factor=4, upscale=upscale).eval()
    student = slim.export(width).eval()
    assert type(student) is RCAN and student.conv_first.out_channels == int(32 * width)
    assert n_params(student) == slim.effective_num_params(width)
    x = torch.rand(2, 3, 7, 9)
    with torch.no_grad():
        torch.testing.assert_close(student(x), slim(x, width), rtol=1e-5, atol=1e-6)
        assert not torch.allclose(slim(x, width), slim(x, 1.0))


def test_channel_attention_bottleneck_scales_with_the_width():
    torch.manual_seed(2)
    slim = SlimmableRCAN(num_feat=32, num_group=1, num_block=1, upscale=2)  # CA 32 -> 2 -> 32
    state = slim.narrow_state_dict(0.5)                                     # CA 16 -> 1 -> 16
    full = slim.state_dict()
    squeeze, excite = 'body.0.residual_group.0.rcab.3.attention.1', 'body.0.residual_group.0.rcab.3.attention.3'
    assert torch.equal(state[f'{squeeze}.weight'], full[f'{squeeze}.weight'][:1, :16])
    assert torch.equal(state[f'{excite}.weight'], full[f'{excite}.weight'][:16, :1])
    conv = 'body.0.residual_group.0.rcab.0.weight'
    assert torch.equal(state[conv], full[conv][:16, :16])
    assert torch.equal(state['upsample.0.weight'], full['upsample.0.weight'][:64, :16])
    # gradients of the narrow forward reach exactly those slices
    slim(torch.rand(1, 3, 6, 6), 0.5).mean().backward()
    ca = slim.body[0].residual_group[0].rcab[3].attention
    assert ca[1].weight.grad[:1, :16].abs().sum() > 0 and ca[1].weight.grad[1:].abs().sum() == 0
    assert ca[3].weight.grad[:16, :1].abs().sum() > 0
    assert ca[3].weight.grad[16:].abs().sum() == 0 and ca[3].weight.grad[:, 1:].abs().sum() == 0


def test_plain_rcan_view_and_official_layout_load():
    """A trained plain RCAN (here: the RCAN authors' file layout) is what CSD starts from."""
    from ckdsr.archs.checkpoint_layouts import load_pretrained
    from tests.helpers.standins import write_rcan_official
    import tempfile
    import os
    cfg = {'type': 'RCAN', 'num_feat': 32, 'num_group': 2, 'num_block': 2}
    with tempfile.TemporaryDirectory() as tmp:
        path = write_rcan_official(cfg, os.path.join(tmp, 'RCAN_BIX2.pt'), 2)
        plain = RCAN(num_feat=32, num_group=2, num_block=2, upscale=2)
        slim = SlimmableRCAN(num_feat=32, num_group=2, num_block=2, upscale=2)
        load_pretrained(plain, path)
        load_pretrained(slim, path)
    for k, v in plain.state_dict().items():
        assert torch.equal(slim.state_dict()[k], v), k
    view = as_slimmable(plain)  # shares the plain net's tensors
    assert view.squeeze_factor == 16 and view.num_group == 2 and view.num_block == 2
    assert view.body[0].conv.weight.data_ptr() == plain.body[0].conv.weight.data_ptr()


@pytest.mark.parametrize('width', [0.125, 0.3, 0.0, 1.5])
def test_bad_width_is_one_clear_error(width):
    net = SlimmableRCAN(num_feat=32, num_group=1, num_block=1, upscale=2)
    with pytest.raises(ValueError, match='SlimmableRCAN: width_mult') as err:
        net(torch.rand(1, 3, 4, 4), width)
    assert '\n' not in str(err.value)
    with pytest.raises(ValueError, match='width_mult'):
        SlimmableRCAN(num_feat=32, width_mult=width)


def test_reported_widths_leave_out_the_ones_the_net_cannot_run():
    from ckdsr.archs.slimmable_ops import width_param_counts
    net = SlimmableRCAN(num_feat=32, num_group=1, num_block=1, upscale=2)  # squeeze 16: 16 or 32 channels
    assert list(width_param_counts(net)) == ['0.5', '1.0']


def load_model_info():
    spec = importlib.util.spec_from_file_location('model_info', REPO_ROOT / 'tools' / 'model_info.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_model_info_prints_each_width(capsys):
    tool = load_model_info()
    assert tool.main(['--arch', 'SlimmableRCAN', '--set', 'num_group=2', 'num_block=3', '--lr-size', '4x4']) == 0
    out = capsys.readouterr().out
    for width, feat in (('0.25', 16), ('0.5', 32), ('0.75', 48), ('1.0', 64)):
        with torch.device('meta'):
            n = n_params(RCAN(num_feat=feat, num_group=2, num_block=3))
        assert f'width_mult {width}: params {n:,}' in out, out
    # plain nets print no width rows
    assert tool.main(['--arch', 'RCAN', '--lr-size', '4x4']) == 0
    assert 'width_mult' not in capsys.readouterr().out
