"""FeatureTaps: features by module path, per forward call, through wrappers, hooks removed on exit."""
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ckdsr.archs.carn import CARN_M
from ckdsr.archs.edsr import EDSR
from ckdsr.archs.slimmable_edsr import SlimmableEDSR
from ckdsr.utils.feature_taps import FeatureTaps


def tiny_edsr():
    torch.manual_seed(0)
    return EDSR(num_feat=8, num_block=2, upscale=2)


def test_features_in_the_order_given_and_equal_to_the_module_outputs():
    net = tiny_edsr()
    x = torch.rand(2, 3, 6, 5)
    with FeatureTaps(net, ['conv_after_body', 'conv_first', 'body.1']) as taps:
        out = net(x)
        after, first, body1 = taps.features()
    mean = net.mean
    expected_first = F.conv2d((x - mean) * 255., net.conv_first.weight, net.conv_first.bias, padding=1)
    torch.testing.assert_close(first, expected_first)
    torch.testing.assert_close(body1, net.body(expected_first))
    torch.testing.assert_close(after, net.conv_after_body(body1))
    assert after.shape == (2, 8, 6, 5) and out.shape == (2, 3, 12, 10)


def test_reading_clears_and_errors_without_a_forward():
    net = tiny_edsr()
    taps = FeatureTaps(net, ['conv_first'])
    with pytest.raises(RuntimeError, match='no forward call'):
        taps.features()
    net(torch.rand(1, 3, 4, 4))
    assert taps.num_calls == 1
    taps.features(clear=False)
    assert len(taps.features()) == 1
    assert taps.num_calls == 0
    taps.remove()


def test_two_calls_in_one_step_are_kept_apart():
    torch.manual_seed(1)
    net = SlimmableEDSR(num_feat=16, num_block=2, upscale=2)
    x = torch.rand(1, 3, 5, 5)
    with FeatureTaps(net, ['body.0', 'conv_after_body']) as taps:
        net(x, 1.0)   # teacher width
        net(x, 0.25)  # CSD student, same weights
        with pytest.raises(RuntimeError, match='2 forward calls'):
            taps.features(clear=False)
        t_feats = taps.features(call=0, clear=False)
        s_feats = taps.features(call=1, clear=False)
        assert [f.shape[1] for f in t_feats] == [16, 16] and [f.shape[1] for f in s_feats] == [4, 4]
        per_call = taps.features_per_call()
        assert all(torch.equal(a, b) for a, b in zip(per_call[1], s_feats))
        net(x)
        with pytest.raises(IndexError, match='call 3'):
            taps.features(call=3)


def test_detach_option_and_gradients_through_taps():
    net = tiny_edsr()
    x = torch.rand(1, 3, 4, 4)
    with FeatureTaps(net, ['body.0'], detach=True) as taps:
        net(x)
        (feat,) = taps.features()
    assert not feat.requires_grad
    with FeatureTaps(net, ['body.0']) as taps:
        net(x)
        (feat,) = taps.features()
    feat.pow(2).mean().backward()  # a feature loss reaches the weights before the tap
    assert net.conv_first.weight.grad.abs().sum() > 0
    assert net.conv_last.weight.grad is None


def test_unknown_path_names_the_closest_modules():
    with pytest.raises(KeyError, match="'conv_after_bdy'.*closest: conv_after_body"):
        FeatureTaps(tiny_edsr(), ['conv_after_bdy'])


def test_hooks_are_removed_on_exit():
    net = tiny_edsr()
    with FeatureTaps(net, ['body.0', 'conv_last']):
        assert len(net.body[0]._forward_hooks) == 1 and len(net._forward_pre_hooks) == 1
    assert not net.body[0]._forward_hooks and not net.conv_last._forward_hooks and not net._forward_pre_hooks


def test_module_prefix_and_dataparallel_wrapper():
    net = tiny_edsr()
    wrapped = nn.DataParallel(net)  # runs the module directly on a CPU-only machine
    with FeatureTaps(wrapped, ['module.body.1']) as taps:
        wrapped(torch.rand(1, 3, 4, 4))
        (feat,) = taps.features()
        net(torch.rand(1, 3, 4, 4))  # calling the inner module directly is recorded as well
        assert taps.num_calls == 1
    assert feat.shape == (1, 8, 4, 4)


def test_distributed_data_parallel_wrapper(tmp_path):
    dist.init_process_group('gloo', init_method=f'file://{tmp_path / "store"}', rank=0, world_size=1)
    try:
        net = tiny_edsr()
        ddp = nn.parallel.DistributedDataParallel(net)
        with FeatureTaps(ddp, ['module.conv_first', 'body.0']) as taps:
            ddp(torch.rand(2, 3, 4, 4)).mean().backward()
            first, body0 = taps.features()
        assert first.shape == body0.shape == (2, 8, 4, 4)
    finally:
        dist.destroy_process_group()


def test_shared_module_running_twice_per_call_is_an_error():
    net = CARN_M()
    with FeatureTaps(net, ['b1.b1', 'b1']) as taps:  # CARN-M applies b1.b1 three times per block
        net(torch.rand(1, 3, 4, 4))
        with pytest.raises(RuntimeError, match="'b1.b1' ran 3 times"):
            taps.features()


def test_module_not_on_the_path_is_reported():
    net = CARN_M()
    with FeatureTaps(net, ['upsample.up2']) as taps:
        net(torch.rand(1, 3, 4, 4), upscale=4)
        with pytest.raises(RuntimeError, match="'upsample.up2' did not run"):
            taps.features()
