"""The taming VQGAN checkpoint (a Lightning 1.0 file) loads without pytorch_lightning / omegaconf."""
import importlib.util
import sys

import pytest
import torch

from ckdsr.archs.vqgan import VQGANEncoder
from tests.helpers.standins import write_vqgan_lightning

TINY = {'ch': 32, 'ch_mult': [1, 1, 2, 2, 4], 'z_channels': 32, 'embed_dim': 32, 'n_embed': 16}


@pytest.mark.skipif(any(importlib.util.find_spec(m) for m in ('pytorch_lightning', 'omegaconf')),
                    reason='needs an environment without pytorch_lightning and omegaconf')
def test_lightning_checkpoint_loads_with_inert_placeholders(tmp_path):
    torch.manual_seed(3)
    path = write_vqgan_lightning({'type': 'VQGANEncoder', **TINY}, tmp_path / 'last.ckpt')
    torch.manual_seed(3)
    saved = VQGANEncoder(allow_random=True, **TINY).state_dict()  # the same random init
    with pytest.raises(ModuleNotFoundError, match='pytorch_lightning|omegaconf'):
        torch.load(path, map_location='cpu', weights_only=False)  # what a plain full unpickle does
    with pytest.warns(UserWarning, match='inert placeholders'):
        net = VQGANEncoder(checkpoint_path=str(path), **TINY)
    for k, v in net.state_dict().items():
        assert torch.equal(v, saved[k]), k
    assert 'pytorch_lightning' not in sys.modules and 'omegaconf' not in sys.modules
