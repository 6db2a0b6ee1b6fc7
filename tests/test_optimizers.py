"""build_optimizer / optimizer_signature: types, keys, errors, cfg left untouched."""
import copy

import pytest
import torch
from torch import nn

from ckdsr.models.optimizers import OPTIMIZER_ARGS, REQUIRED, build_optimizer, optimizer_signature


def _params():
    return nn.Linear(2, 2).parameters()


def test_adam_from_basicsr_block_and_cfg_untouched():
    cfg = {'type': 'Adam', 'lr': 1e-4, 'weight_decay': 0, 'betas': [0.9, 0.99]}
    before = copy.deepcopy(cfg)
    opt = build_optimizer(_params(), cfg)
    assert isinstance(opt, torch.optim.Adam)
    group = opt.param_groups[0]
    assert group['lr'] == 1e-4 and group['weight_decay'] == 0
    assert tuple(group['betas']) == (0.9, 0.99)
    assert cfg == before and isinstance(cfg['betas'], list)


@pytest.mark.parametrize('name, cls', [('AdamW', torch.optim.AdamW), ('SGD', torch.optim.SGD)])
def test_other_types(name, cls):
    opt = build_optimizer(_params(), {'type': name, 'lr': 0.5})
    assert type(opt) is cls and opt.param_groups[0]['lr'] == 0.5


def test_param_groups_keep_their_own_lr():
    a, b = nn.Linear(1, 1), nn.Linear(1, 1)
    groups = [{'params': a.parameters()}, {'params': b.parameters(), 'lr': 1e-3}]
    opt = build_optimizer(groups, {'type': 'SGD', 'lr': 0.1, 'momentum': 0.9})
    assert [g['lr'] for g in opt.param_groups] == [0.1, 1e-3]
    assert opt.param_groups[0]['momentum'] == 0.9


def test_yaml_string_number_is_converted():
    # PyYAML reads `lr: 1e-4` (no dot) as the string '1e-4'
    opt = build_optimizer(_params(), {'type': 'Adam', 'lr': '1e-4'})
    assert opt.param_groups[0]['lr'] == pytest.approx(1e-4)
    with pytest.raises(ValueError, match=r"optim_g\.lr: expected a number"):
        build_optimizer(_params(), {'type': 'Adam', 'lr': 'fast'}, where='optim_g')


def test_unknown_type_suggests_closest():
    with pytest.raises(KeyError, match="unknown optimizer 'Adamw'.*did you mean 'AdamW'"):
        build_optimizer(_params(), {'type': 'Adamw', 'lr': 1e-4})


def test_unknown_key_names_block_and_suggests():
    with pytest.raises(KeyError, match=r"train\.optim_g\.beta: unknown option.*did you mean 'betas'"):
        build_optimizer(_params(), {'type': 'Adam', 'beta': [0.9, 0.99]}, where='train.optim_g')


def test_missing_type():
    with pytest.raises(KeyError, match="missing 'type'"):
        build_optimizer(_params(), {'lr': 1e-4})


def test_signature_introspection():
    sig = optimizer_signature('Adam')
    assert 'params' not in sig and 'self' not in sig
    assert sig['lr'] == 1e-3 and sig['betas'] == (0.9, 0.999) and sig['weight_decay'] == 0
    assert set(OPTIMIZER_ARGS) == {'Adam', 'AdamW', 'SGD'}
    assert OPTIMIZER_ARGS['SGD']['momentum'] == 0
    assert all(v is not REQUIRED for v in OPTIMIZER_ARGS['AdamW'].values())
    sig['lr'] = 99   # a fresh dict each call
    assert optimizer_signature('Adam')['lr'] == 1e-3
