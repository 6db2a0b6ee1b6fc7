"""SlimmableCARN_M (CSD on CARN): sizes per width, full width = CARN-M (the authors' weights), grouped
slicing (the first channels of each group), export as a plain CARN-M."""
import pytest
import torch

from ckdsr.archs.carn import CARN_M
from ckdsr.archs.checkpoint_layouts import load_pretrained
from ckdsr.archs.slimmable_carn import SlimmableCARN_M
from ckdsr.archs.slimmable_ops import as_slimmable


def n_params(net):
    return sum(p.numel() for p in net.parameters())


def test_sizes_per_width_equal_plain_carn_m_of_the_sliced_width():
    with torch.device('meta'):
        slim = SlimmableCARN_M()
    assert n_params(slim) == 414_811  # the published CARN-M file
    for width, feat in ((0.25, 16), (0.5, 32), (0.75, 48), (1.0, 64)):
        with torch.device('meta'):
            plain = CARN_M(num_feat=feat)
        assert slim.effective_num_params(width) == n_params(plain), width
    assert slim.effective_num_params(0.5) == 105_275


def test_authors_weights_load_and_full_width_equals_carn_m(shared_dir):
    weights = str(shared_dir / 'weights' / 'carn_m.pth')
    plain, slim = CARN_M().eval(), SlimmableCARN_M().eval()
    load_pretrained(plain, weights)
    load_pretrained(slim, weights)
    x = torch.rand(1, 3, 6, 5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for scale in (2, 3, 4):
            torch.testing.assert_close(slim(x, 1.0, upscale=scale), plain(x, upscale=scale))


@pytest.mark.parametrize('upscale, multi_scale, width', [(4, True, 0.25), (3, True, 0.5), (2, False, 0.75)])
def test_exported_student_is_a_plain_carn_m_equal_to_the_slim_forward(upscale, multi_scale, width):
    torch.manual_seed(1)
    slim = SlimmableCARN_M(upscale=upscale, multi_scale=multi_scale, num_feat=16).eval()
    student = slim.export(width).eval()
    assert type(student) is CARN_M and student.entry.out_channels == int(16 * width)
    assert n_params(student) == slim.effective_num_params(width)
    x = torch.rand(2, 3, 5, 7)
    with torch.no_grad():
        torch.testing.assert_close(student(x), slim(x, width), rtol=1e-5, atol=1e-6)
        assert not torch.allclose(slim(x, width), slim(x, 1.0))


def test_grouped_slices_take_the_first_channels_of_each_group():
    """16 channels in 4 groups of 4; width 0.5 uses channels {0,1, 4,5, 8,9, 12,13} everywhere."""
    torch.manual_seed(2)
    slim = SlimmableCARN_M(num_feat=16, group=4)
    used = torch.tensor([0, 1, 4, 5, 8, 9, 12, 13])
    full, state = slim.state_dict(), slim.narrow_state_dict(0.5)
    assert torch.equal(state['entry.weight'], full['entry.weight'][used])
    # grouped 3x3 (16 x 4 in-group inputs): the used outputs, the first 2 in-group inputs
    assert torch.equal(state['b1.b1.body.0.weight'], full['b1.b1.body.0.weight'][used][:, :2])
    # 1x1 fusion of [x, b1(x)] (32 inputs): the used channels of both parts
    cols = torch.cat([used, 16 + used])
    assert torch.equal(state['b2.c1.body.0.weight'], full['b2.c1.body.0.weight'][used][:, cols])
    # x2 upsampling conv (64 outputs, PixelShuffle(2)): the 4 sub-pixel outputs of each used channel
    rows = (4 * used[:, None] + torch.arange(4)).flatten()
    assert torch.equal(state['upsample.up2.body.0.weight'], full['upsample.up2.body.0.weight'][rows][:, :2])
    assert torch.equal(state['exit.weight'], full['exit.weight'][:, used])
    assert torch.equal(state['sub_mean.shifter.bias'], full['sub_mean.shifter.bias'])  # the frozen shifts, whole
    # the narrow forward's gradients stay inside those slices
    slim(torch.rand(1, 3, 6, 6), 0.5).mean().backward()
    grad = slim.b1.b1.body[0].weight.grad
    unused = torch.tensor([c for c in range(16) if c not in used.tolist()])
    assert grad[used][:, :2].abs().sum() > 0
    assert grad[unused].abs().sum() == 0 and grad[:, 2:].abs().sum() == 0


def test_plain_view_shares_tensors_and_reads_the_structure():
    torch.manual_seed(3)
    plain = CARN_M(upscale=3, num_feat=16, group=2)
    view = as_slimmable(plain)
    assert (view.upscale, view.multi_scale, view.group, view.num_feat) == (3, True, 2, 16)
    assert view.entry.weight.data_ptr() == plain.entry.weight.data_ptr()
    x = torch.rand(1, 3, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(view(x, 1.0), plain(x))


def test_bad_width_and_scale_are_clear_errors():
    net = SlimmableCARN_M(num_feat=16, group=4)
    with pytest.raises(ValueError, match=r'SlimmableCARN_M: width_mult 0.125 gives 2 of 16 channels.*multiple of 4'):
        net(torch.rand(1, 3, 4, 4), 0.125)
    with pytest.raises(ValueError, match='cannot run at x8'):
        net(torch.rand(1, 3, 4, 4), 1.0, upscale=8)
