"""ModelEMA: hand-computed averages of parameters and BN buffers, freezing, DDP unwrap, state I/O."""
import pytest
import torch
from torch import nn

from ckdsr.models.ema import ModelEMA, unwrap_model


class TwoParam(nn.Module):
    """Two scalar parameters and a 1-channel BatchNorm (running_mean/var + num_batches_tracked)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor([1.0]))
        self.b = nn.Parameter(torch.tensor([2.0]))
        self.bn = nn.BatchNorm1d(1, affine=False)

    def forward(self, x):
        return self.bn(x * self.a + self.b)


def _set(net, a, b, mean, var, n):
    with torch.no_grad():
        net.a.fill_(a)
        net.b.fill_(b)
        net.bn.running_mean.fill_(mean)
        net.bn.running_var.fill_(var)
        net.bn.num_batches_tracked.fill_(n)


def test_update_arithmetic_by_hand():
    net = TwoParam()
    ema = ModelEMA(net, decay=0.9)
    # initial copy: a=1, b=2, running_mean=0, running_var=1, n=0
    _set(net, a=3.0, b=-2.0, mean=1.0, var=3.0, n=7)
    ema.update(net)
    e = ema.module
    # 0.9 * old + 0.1 * new
    assert e.a.item() == pytest.approx(0.9 * 1 + 0.1 * 3)          # 1.2
    assert e.b.item() == pytest.approx(0.9 * 2 + 0.1 * -2)         # 1.6
    assert e.bn.running_mean.item() == pytest.approx(0.1)
    assert e.bn.running_var.item() == pytest.approx(0.9 + 0.3)     # 1.2
    assert e.bn.num_batches_tracked.item() == 7                    # integer buffer: copied
    assert e.bn.num_batches_tracked.dtype == torch.long
    # second step, with a per-call decay override of 0.5
    _set(net, a=0.0, b=0.0, mean=0.0, var=0.0, n=9)
    ema.update(net, decay=0.5)
    assert e.a.item() == pytest.approx(0.6)
    assert e.b.item() == pytest.approx(0.8)
    assert e.bn.running_var.item() == pytest.approx(0.6)
    assert e.bn.num_batches_tracked.item() == 9
    assert ema.decay == 0.9


def test_frozen_copy_independent_of_model():
    net = TwoParam().train()
    net(torch.randn(4, 1)).sum().backward()
    ema = ModelEMA(net, decay=0.99)
    assert ema.module is not net
    assert not ema.module.training
    assert all(not p.requires_grad for p in ema.module.parameters())
    assert all(p.requires_grad for p in net.parameters())
    assert all(p.grad is None for p in ema.module.parameters()) and net.a.grad is not None
    with torch.no_grad():
        net.a.fill_(5.0)
    assert ema.module.a.item() == 1.0


def test_decay_zero_copies_and_one_freezes():
    net = TwoParam()
    ema = ModelEMA(net, decay=1.0)
    _set(net, 4.0, 5.0, 6.0, 7.0, 3)
    ema.update(net)
    assert ema.module.a.item() == 1.0
    ema.update(net, decay=0.0)
    assert ema.module.a.item() == 4.0 and ema.module.bn.running_var.item() == 7.0


def test_unwraps_module_wrappers():
    net = TwoParam()
    wrapped = nn.DataParallel(net)  # same `.module` unwrapping path as DistributedDataParallel
    assert unwrap_model(wrapped) is net
    ema = ModelEMA(wrapped, decay=0.5)
    assert set(ema.state_dict()) == set(net.state_dict())   # no 'module.' prefix
    _set(net, 3.0, 2.0, 0.0, 1.0, 0)
    ema.update(wrapped)
    assert ema.module.a.item() == pytest.approx(2.0)


def test_state_dict_roundtrip_and_tracking_after_load():
    net = TwoParam()
    ema = ModelEMA(net, decay=0.5)
    _set(net, 3.0, 4.0, 2.0, 5.0, 2)
    ema.update(net)
    saved = {k: v.clone() for k, v in ema.state_dict().items()}

    other = ModelEMA(TwoParam(), decay=0.5)
    other.load_state_dict(saved)
    for k, v in saved.items():
        assert torch.equal(other.state_dict()[k], v)
    other.update(net)                   # loaded tensors are still the ones being averaged
    assert other.module.a.item() == pytest.approx(0.5 * 2.0 + 0.5 * 3.0)


def test_mismatched_model_is_an_error():
    ema = ModelEMA(TwoParam(), decay=0.5)
    with pytest.raises(ValueError, match='does not match'):
        ema.update(nn.Linear(1, 1))


def test_bad_decay_is_an_error():
    with pytest.raises(ValueError, match='ema_decay'):
        ModelEMA(TwoParam(), decay=1.5)


def test_cached_tensor_lists_follow_replaced_tensors():
    """The walk over tensors is cached; replacing a buffer or parameter (as ``.to()`` and
    ``load_state_dict(assign=True)`` do) must not leave the average tracking the old tensor."""
    net = TwoParam()
    ema = ModelEMA(net, decay=0.5)
    ema.update(net)  # fills the cache
    net.bn.running_mean = torch.tensor([4.0])          # buffer replaced by a new tensor
    net.a = nn.Parameter(torch.tensor([5.0]))          # parameter replaced
    ema.update(net)
    assert ema.module.bn.running_mean.item() == pytest.approx(2.0)   # 0.5 * 0 + 0.5 * 4
    assert ema.module.a.item() == pytest.approx(3.0)                 # 0.5 * 1 + 0.5 * 5
    ema.module.bn.running_var = torch.tensor([3.0])    # the EMA side replaced (e.g. moved to a device)
    ema.update(net)
    assert ema.module.bn.running_var.item() == pytest.approx(2.0)    # 0.5 * 3 + 0.5 * 1


def test_new_submodule_invalidates_cache_and_shared_tensor_averaged_once():
    net = TwoParam()
    ema = ModelEMA(net, decay=0.5)
    ema.update(net)
    for m in (net, ema.module):  # the same tensor under two names, added after the cache was built
        m.extra = nn.Linear(1, 1, bias=False)
        m.tied = nn.Linear(1, 1, bias=False)
        m.tied.weight = m.extra.weight
    with torch.no_grad():
        net.extra.weight.fill_(2.0)
        ema.module.extra.weight.fill_(0.0)
    ema.update(net)
    assert ema.module.extra.weight.item() == pytest.approx(1.0)  # once: 0.5 * 0 + 0.5 * 2, not 1.5
