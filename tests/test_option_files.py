"""Every shipped option file validates, builds with stand-in weights and runs two training steps.

Paper-size networks are built for real; only the data is replaced (tiny synthetic patches), so
the check is cheap while the configuration under test is the one users run. Per file, the loss
terms the step computed are the terms the file declares (names, in order) and each is its
declared weight times what its loss module returned in that step; test-only files build a
network whose parameter count is the one its option values give.
"""
import glob
import os
from pathlib import Path

import pytest
import torch

from ckdsr.models import build_model
from ckdsr.models.option_schema import schema_for
from tests.helpers.standins import with_standin_weights
from tests.helpers.tiny_run import make_image_folder
from ckdsr.utils.option_spec import paths_unchecked
from ckdsr.utils.options import read_yaml, validate_tree

REPO = Path(__file__).resolve().parents[1]
OPTION_FILES = sorted(p for p in glob.glob(str(REPO / 'options' / '**' / '*.yml'), recursive=True))
LR_PATCH = 6
MIN_HR = 16  # VGG relu5_1 and the VQGAN's f16 encoder need >= 16 px


def lr_patch(scale: int) -> int:
    return max(LR_PATCH, -(-MIN_HR // scale))


def tiny_data(tree, tmp: Path):
    """Swap the datasets for a few synthetic photos (the loaders are tested elsewhere)."""
    scale = tree.get('scale', 4)
    folder = make_image_folder(tmp / 'data', 3, size=lr_patch(scale) * scale * 2)
    datasets = {}
    for key, cfg in (tree.get('datasets') or {}).items():
        if key.startswith('train'):
            datasets[key] = {'type': 'PairedImageDataset', 'dataroot_gt': str(folder / 'HR'), 'lq_from_gt': True,
                             'io_backend': {'type': 'disk'}, 'gt_size': lr_patch(scale) * scale, 'batch_size_per_gpu': 2}
        else:
            datasets[key] = {'type': 'BenchmarkDataset', 'dataroot': str(folder), 'name': cfg.get('name', key)}
    return {**tree, 'datasets': datasets}


def test_there_are_option_files():
    assert len(OPTION_FILES) >= 1


# ------------------------------------------------------------------------------ declared loss terms
def declared_terms(train):
    """``[(name, weight)]`` the file declares: ``train.losses`` (KD models; a term is named ``name``,
    else ``l_<type without Loss, lower case>``, repeats suffixed _2, _3...) or ``pixel_opt`` (SRModel:
    one ``l_pix`` term weighted ``loss_weight``; an L1 of weight 1 when the file has none)."""
    if 'losses' in train:
        out, seen = [], set()
        for cfg in train['losses']:
            base = cfg.get('name') or 'l_' + cfg['type'].replace('Loss', '').lower()
            name, k = base, 2
            while name in seen:
                name, k = f'{base}_{k}', k + 1
            seen.add(name)
            out.append((name, float(cfg.get('weight', 1.0))))
        return out
    return [('l_pix', float((train.get('pixel_opt') or {}).get('loss_weight', 1.0)))]


def loss_modules(model):
    """``{term name: loss module}`` of a built model (KD terms, or SRModel's pixel loss)."""
    if hasattr(model, 'terms'):
        return {t.name: t.loss for t in model.terms}
    return {'l_pix': model.pixel_loss}


def record_calls(modules):
    """Each loss module's outputs during the next step: ``{name: [tensor, ...]}``."""
    calls = {name: [] for name in modules}
    for name, mod in modules.items():
        mod.register_forward_hook(lambda m, args, out, name=name: calls[name].append(out.detach()))
    return calls


def declared_logs(tree):
    """Values a step logs after ``l_total`` that are not part of it: PCL's discriminator loss (its
    own optimizer) when ``distill.pcl`` trains the discriminator."""
    pcl = (tree.get('distill') or {}).get('pcl')
    return ['l_pcl_d'] if pcl is not None and pcl.get('d_steps', 1) > 0 else []


def check_terms(losses, declared, calls, logs=()):
    assert list(losses) == [n for n, _ in declared] + ['l_total'] + list(logs), (list(losses), declared)
    for name, weight in declared:
        assert len(calls[name]) == 1, f'{name}: its loss ran {len(calls[name])} times in one step'
        torch.testing.assert_close(losses[name], weight * calls[name][0], rtol=1e-6, atol=0)
    torch.testing.assert_close(losses['l_total'], sum(losses[n] for n, _ in declared), rtol=1e-6, atol=0)


# ------------------------------------------------------------------------ test-only network sizes
def rcan_params(g, scale):
    """RCAN (Zhang et al. 2018): head conv, groups of RCABs (two 3x3 convs and channel attention,
    1x1 convs F -> F/r -> F) each closed by a 3x3 conv, a body conv, a pixel-shuffle upsampler
    (one x4 conv per factor 2, or one x9 conv for x3) and a tail conv; all convs with bias."""
    f, r = g['num_feat'], g['num_feat'] // g['squeeze_factor']

    def conv(cin, cout, k=3):
        return cin * cout * k * k + cout
    rcab = 2 * conv(f, f) + conv(f, r, 1) + conv(r, f, 1)
    group = g['num_block'] * rcab + conv(f, f)
    ups = [conv(f, 9 * f)] if scale == 3 else [conv(f, 4 * f)] * {2: 1, 4: 2, 8: 3}[scale]
    return conv(3, f) + g['num_group'] * group + conv(f, f) + sum(ups) + conv(f, 3)


def carn_m_params(g):
    """CARN-M (Ahn et al. 2018; CARN-pytorch's carn_m.py): entry conv, three cascading blocks (one
    efficient residual unit: two grouped 3x3 convs and a 1x1, plus 1x1 fusions of 2F, 3F, 4F
    channels), the network's own three fusions, grouped pixel-shuffle upsamplers for x2, x3 and x4
    (multi-scale), the exit conv and the two 1x1 mean-shift convs (24 values)."""
    f, grp = g['num_feat'], g['group']

    def conv(cin, cout, k=3, groups=1):
        return cin // groups * cout * k * k + cout
    fusions = sum(conv(k * f, f, 1) for k in (2, 3, 4))
    block = 2 * conv(f, f, groups=grp) + conv(f, f, 1) + fusions
    assert g['multi_scale'], 'the shipped CARN-M test file is multi-scale'
    ups = conv(f, 4 * f, groups=grp) + conv(f, 9 * f, groups=grp) + 2 * conv(f, 4 * f, groups=grp)
    return 2 * conv(3, 3, 1) + conv(3, f) + 3 * block + fusions + ups + conv(f, 3)


def restormer_params(g):
    """The Restormer release's deraining / deblurring network: 26,126,644 parameters (its defaults)."""
    assert set(g) == {'type'}, 'the shipped Restormer test file uses the release defaults'
    return 26_126_644


TEST_ONLY_SIZES = {'RCAN': lambda g, s: rcan_params(g, s), 'CARN_M': lambda g, s: carn_m_params(g),
                   'Restormer': lambda g, s: restormer_params(g)}


def check_test_only_network(model, opt, path):
    g = opt['network_g']
    assert g['type'] in TEST_ONLY_SIZES, f'{path}: add the parameter count of a {g["type"]} test file here'
    want = TEST_ONLY_SIZES[g['type']](g, opt['scale'])
    got = sum(p.numel() for p in model.net_g.parameters())
    assert got == want, f"{path}: {g['type']} built with {got} parameters, its option values give {want}"


@pytest.mark.parametrize('path', OPTION_FILES, ids=[os.path.relpath(p, REPO / 'options') for p in OPTION_FILES])
def test_option_file_builds_and_runs_two_steps(path, tmp_path):
    tree = read_yaml(path)
    with paths_unchecked():  # the file as shipped (its data folders are not here)
        validate_tree(tree, schema_for(tree, path), path)
    tree = tiny_data(with_standin_weights(tree, tmp_path), tmp_path)
    tree['num_gpu'] = 0
    tree.setdefault('path', {})['experiments_root'] = str(tmp_path / 'exp')
    opt = validate_tree(tree, schema_for(tree, path), path)
    model = build_model(opt, is_train=bool(opt.get('train')))
    if not opt.get('train'):
        check_test_only_network(model, opt, path)
        return
    from ckdsr.engine.data_setup import build_dataset
    ds = build_dataset('train', opt['datasets']['train'], opt['scale'])
    batch = {k: torch.stack([ds[0][k], ds[1][k]]) for k in ('lq', 'gt')}
    declared = declared_terms(tree['train'])
    calls = record_calls(loss_modules(model))
    for it in (1, 2):
        for c in calls.values():
            c.clear()
        losses = model.train_step(batch, it)
        assert torch.isfinite(losses['l_total']), losses
        check_terms(losses, declared, calls, declared_logs(tree))
