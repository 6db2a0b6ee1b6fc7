"""Stand-in weight files in the real published formats, for option files that name real weights.

Each writer builds the network with random weights and saves it the way the published file is
laid out, so the real loading code runs. Extend ``EMBEDDING_WRITERS`` for new frozen helpers.
"""
import copy
from pathlib import Path
from typing import Any, Callable, Dict

import torch

from ckdsr.models.network_io import build_network
from tests.helpers.kd import save_standin_teacher


def _random_embedding(cfg: Dict[str, Any]):
    args = {k: v for k, v in cfg.items() if not k.endswith('_path')}
    return build_network({**args, 'allow_random': True})


def write_vgg(cfg: Dict[str, Any], path: Path) -> Path:
    """torchvision's vgg19-dcbb9e9d.pth layout: ``features.N.weight`` (classifier omitted)."""
    torch.save(_random_embedding(cfg).state_dict(), path)
    return path


def write_vqgan(cfg: Dict[str, Any], path: Path) -> Path:
    """A Lightning checkpoint as taming-transformers publishes it: ``{'state_dict': ...}``."""
    torch.save({'state_dict': _random_embedding(cfg).state_dict(), 'global_step': 0}, path)
    return path


EMBEDDING_WRITERS: Dict[str, Callable[[Dict[str, Any], Path], Path]] = {
    'VGG19Features': write_vgg,
    'VQGANEncoder': write_vqgan,
}


def with_standin_weights(tree: Dict[str, Any], tmp: Path) -> Dict[str, Any]:
    """A copy of an option tree whose weight paths point at stand-ins written under ``tmp``."""
    tree = copy.deepcopy(tree)
    scale = tree.get('scale', 4)
    path = tree.setdefault('path', {})
    if tree.get('network_t'):
        path['pretrain_network_t'] = str(save_standin_teacher(tree['network_t'], tmp / 'teacher.pth', scale))
    if path.get('pretrain_network_g'):
        path['pretrain_network_g'] = str(save_standin_teacher(tree['network_g'], tmp / 'net_g.pth', scale, seed=1))
    emb = (tree.get('distill') or {}).get('embedding')
    if emb and emb.get('type') in EMBEDDING_WRITERS:
        for key in [k for k in emb if k.endswith('_path')]:
            emb[key] = str(EMBEDDING_WRITERS[emb['type']](emb, tmp / f'{emb["type"]}.pth'))
    return tree


# --- DCKD offline embedding: a stand-in codebook in tools/fit_codebook.py's format ---------------------
def write_teacher_codebook(tree: Dict[str, Any], path: Path, num_codes: int = 16, seed: int = 0) -> Path:
    """Random unit-norm codes with the channel count of ``distill.teacher_embedding``'s z tap of
    ``network_t``, saved with the metadata ``tools/fit_codebook.py`` writes."""
    from ckdsr.models.distill.teacher_embedding import build_teacher_features, save_codebook
    cfg = tree['distill']['teacher_embedding']
    scale = tree.get('scale', 4)
    net = build_network(tree['network_t'], scale).eval()
    feats = build_teacher_features(net, {**cfg, 'codebook_path': None}, scale, with_codebook=False)
    with torch.no_grad():
        _, z = feats(torch.rand(1, 3, 8 * scale, 8 * scale))
    g = torch.Generator().manual_seed(seed)
    book = torch.nn.functional.normalize(torch.randn(num_codes, z.shape[1], generator=g), dim=1)
    meta = {'z_tap': feats.z_tap, 'normalize_z': feats.normalize_z, 'downscale': feats.downscale}
    save_codebook(str(path), book, meta)
    return path


_with_standin_weights_base = with_standin_weights


def with_standin_weights(tree: Dict[str, Any], tmp: Path) -> Dict[str, Any]:  # noqa: F811 (extends the above)
    """As above, plus a stand-in codebook for ``distill.teacher_embedding.codebook_path``."""
    tree = _with_standin_weights_base(tree, tmp)
    emb = (tree.get('distill') or {}).get('teacher_embedding')
    if emb and emb.get('codebook_path'):
        emb['codebook_path'] = str(write_teacher_codebook(tree, tmp / 'teacher_codebook.pth'))
    return tree


# --- taming's VQGAN checkpoint as Lightning 1.0 saved it ------------------------------------------------
def write_vqgan_lightning(cfg: Dict[str, Any], path: Path) -> Path:
    """Like :func:`write_vqgan`, plus what a real taming ``last.ckpt`` pickles besides tensors: callback
    states keyed by the ``pytorch_lightning`` ModelCheckpoint *class* and ``omegaconf`` hyper-parameters.
    The classes live in stand-in modules that exist only while saving, so loading must not need them."""
    import sys
    import types
    names = ('pytorch_lightning', 'pytorch_lightning.callbacks', 'pytorch_lightning.callbacks.model_checkpoint',
             'omegaconf', 'omegaconf.dictconfig')
    made = [n for n in names if n not in sys.modules]
    for n in made:
        sys.modules[n] = types.ModuleType(n)
    try:
        checkpoint_cls = type('ModelCheckpoint', (), {'__module__': 'pytorch_lightning.callbacks.model_checkpoint'})
        config_cls = type('DictConfig', (), {'__module__': 'omegaconf.dictconfig'})
        sys.modules['pytorch_lightning.callbacks.model_checkpoint'].ModelCheckpoint = checkpoint_cls
        sys.modules['omegaconf.dictconfig'].DictConfig = config_cls
        hparams = config_cls()
        hparams.__dict__.update({'embed_dim': cfg.get('embed_dim', 256), 'n_embed': cfg.get('n_embed', 1024)})
        torch.save({'epoch': 7, 'global_step': 1234, 'pytorch-lightning_version': '1.0.8',
                    'callbacks': {checkpoint_cls: {'best_model_score': torch.tensor(0.5), 'best_model_path': 'x'}},
                    'hyper_parameters': hparams,
                    'state_dict': _random_embedding(cfg).state_dict()}, path)
    finally:
        for n in made:
            del sys.modules[n]
    return path


# --- the RCAN authors' release layout (RCAN_BIX{2,3,4}.pt) --------------------------------------------
def write_rcan_official(cfg: Dict[str, Any], path: Path, scale: int, seed: int = 0) -> Path:
    """A random RCAN saved as the RCAN authors' ``RCAN_BIX{s}.pt``: a bare state dict in EDSR-PyTorch
    names (``head``, ``body.{g}.body.{b}.body.3.conv_du``, ``tail``) with the MeanShift convs."""
    import re
    torch.manual_seed(seed)
    net = build_network(cfg, scale)
    groups, blocks = len(net.body), len(net.body[0].residual_group)
    rules = ((r'^conv_first\.', 'head.0.'),
             (r'^body\.(\d+)\.residual_group\.(\d+)\.rcab\.3\.attention\.1\.', r'body.\1.body.\2.body.3.conv_du.0.'),
             (r'^body\.(\d+)\.residual_group\.(\d+)\.rcab\.3\.attention\.3\.', r'body.\1.body.\2.body.3.conv_du.2.'),
             (r'^body\.(\d+)\.residual_group\.(\d+)\.rcab\.(\d)\.', r'body.\1.body.\2.body.\3.'),
             (r'^body\.(\d+)\.conv\.', rf'body.\1.body.{blocks}.'),
             (r'^conv_after_body\.', f'body.{groups}.'),
             (r'^upsample\.', 'tail.0.'),
             (r'^conv_last\.', 'tail.1.'))
    state = {}
    for key, value in net.state_dict().items():
        for pattern, repl in rules:
            if re.match(pattern, key):
                key = re.sub(pattern, repl, key)
                break
        state[key] = value
    mean = net.mean.reshape(3) * net.img_range
    eye = torch.eye(3).view(3, 3, 1, 1)
    state.update({'sub_mean.weight': eye, 'sub_mean.bias': -mean, 'add_mean.weight': eye.clone(), 'add_mean.bias': mean})
    torch.save(state, path)
    return path
