import pytest

from ckdsr.utils.registry import Registry
from ckdsr.utils.suggest import closest, did_you_mean


def test_register_and_get():
    reg = Registry('thing')

    @reg.register()
    class Alpha:
        pass

    reg.register(int, name='Integer')
    assert reg.get('Alpha') is Alpha
    assert reg.get('Integer') is int
    assert 'Alpha' in reg and 'Beta' not in reg
    assert list(reg) == ['Alpha', 'Integer']


def test_miss_names_closest():
    reg = Registry('arch')
    reg.register(type('RCAN', (), {}))
    reg.register(type('EDSR', (), {}))
    with pytest.raises(KeyError) as err:
        reg.get('RCNA')
    assert "No arch named 'RCNA'" in str(err.value)
    assert "Did you mean 'RCAN'" in str(err.value)


def test_duplicate_registration_rejected():
    reg = Registry('x')
    reg.register(type('A', (), {}))
    with pytest.raises(KeyError, match='already registered'):
        reg.register(type('A', (), {}))


def test_suggestions():
    assert closest('total_itr', ['total_iter', 'warmup_iter', 'ema_decay'])[0] == 'total_iter'
    assert did_you_mean('trian', ['train', 'val']) == " (did you mean 'train'?)"
    assert did_you_mean('zzz', ['train', 'val']) == ''
