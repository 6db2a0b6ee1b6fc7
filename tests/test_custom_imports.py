"""``custom_imports`` (issue 19.3): the user's own modules register archs and losses that an option
file then names by ``type:``, without editing the toolkit; a failing import is one line naming its item."""
import sys
import textwrap

import pytest

from tests.helpers.tiny_run import tiny_sr_options, write_options
from ckdsr.utils.option_spec import OptionError
from ckdsr.utils.options import load_options
from ckdsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY

MODULE = 'ckdsr_test19_user_ext'
ARCH, LOSS = 'Test19TinyUpsampler', 'Test19CountingL1Loss'

USER_MODULE = f'''
"""A user's extension: one arch and one loss, registered on ckdsr's registries."""
import torch
from torch import nn

from ckdsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY


@ARCH_REGISTRY.register()
class {ARCH}(nn.Module):
    def __init__(self, num_feat: int = 8, upscale: int = 2):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, num_feat, 3, 1, 1), nn.ReLU(),
                                  nn.Conv2d(num_feat, 3 * upscale ** 2, 3, 1, 1), nn.PixelShuffle(upscale))

    def forward(self, x):
        return self.body(x)


@LOSS_REGISTRY.register()
class {LOSS}(nn.Module):
    calls = 0

    def __init__(self, scale_by: float = 1.0):
        super().__init__()
        self.scale_by = scale_by

    def forward(self, pred, target):
        type(self).calls += 1
        return self.scale_by * (pred - target).abs().mean()
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """``MODULE`` written to a folder on sys.path; its registrations and import are undone after."""
    folder = tmp_path / 'user_code'
    folder.mkdir()
    (folder / f'{MODULE}.py').write_text(textwrap.dedent(USER_MODULE))
    (folder / 'ckdsr_test19_broken.py').write_text('raise RuntimeError("broken on purpose")\n')
    monkeypatch.syspath_prepend(str(folder))
    yield MODULE
    for registry, name in ((ARCH_REGISTRY, ARCH), (LOSS_REGISTRY, LOSS)):
        registry._items.pop(name, None)  # other tests list the registries: leave them as they were
    for name in (MODULE, 'ckdsr_test19_broken'):
        sys.modules.pop(name, None)


def _opt(tmp_path, imports):
    opt = tiny_sr_options(tmp_path, total_iter=1)
    opt['custom_imports'] = imports
    opt['network_g'] = {'type': ARCH, 'num_feat': 4}
    opt['train']['pixel_opt'] = {'type': LOSS, 'scale_by': 2.0, 'loss_weight': 1.0}
    opt['val']['val_freq'] = 1
    return opt


def test_user_arch_and_loss_train_one_iteration(tmp_path, user_module):
    from ckdsr.engine.trainer import Trainer
    assert ARCH not in ARCH_REGISTRY  # nothing registered before the option file asks for it
    opt = load_options(str(write_options(_opt(tmp_path, [user_module]), tmp_path / 'o.yml')))
    assert opt['custom_imports'] == [user_module] and opt['network_g'] == {'type': ARCH, 'num_feat': 4}
    trainer = Trainer(opt)
    assert type(trainer.model.net_g).__name__ == ARCH
    loss_cls = LOSS_REGISTRY.get(LOSS)
    result = trainer.run()
    assert result['iter'] == 1 and result['best']['iter'] == 1
    assert loss_cls.calls == 1


def test_without_custom_imports_the_types_are_unknown(tmp_path, user_module):
    with pytest.raises(OptionError, match=rf"network_g\.type: No arch named '{ARCH}'"):
        load_options(str(write_options(_opt(tmp_path, []), tmp_path / 'o.yml')))


def test_failed_imports_are_one_line_each_naming_the_item(tmp_path, user_module):
    path = write_options(_opt(tmp_path, [user_module, 'ckdsr_test19_missing', 'ckdsr_test19_broken']),
                         tmp_path / 'o.yml')
    with pytest.raises(OptionError) as err:
        load_options(str(path))
    assert str(err.value).splitlines() == [
        f"{path}: custom_imports.1: cannot import 'ckdsr_test19_missing': ModuleNotFoundError: No module named "
        "'ckdsr_test19_missing' (is it installed, or its folder on PYTHONPATH?)",
        f"{path}: custom_imports.2: cannot import 'ckdsr_test19_broken': RuntimeError: broken on purpose"]


def test_set_names_the_source_and_bad_shapes_are_rejected(tmp_path, user_module):
    path = write_options(_opt(tmp_path, [user_module]), tmp_path / 'o.yml')
    with pytest.raises(OptionError) as err:
        load_options(str(path), sets=['custom_imports.0=ckdsr_test19_missing'])
    assert str(err.value).startswith("--set: custom_imports.0: cannot import 'ckdsr_test19_missing'")
    with pytest.raises(OptionError) as err:
        load_options(str(path), sets=[f'custom_imports={user_module}'])
    assert str(err.value) == (f"--set: custom_imports: expected a list of module names, got str '{user_module}'")
