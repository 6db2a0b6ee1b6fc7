"""Every shipped option file validates, builds with stand-in weights and runs two training steps.

Paper-size networks are built for real; only the data is replaced (tiny synthetic patches), so
the check is cheap while the configuration under test is the one users run.
"""
import glob
import os
from pathlib import Path

import pytest
import torch

from models import build_model
from models.option_schema import schema_for
from tests.helpers.standins import with_standin_weights
from tests.helpers.tiny_run import make_image_folder
from utils.option_spec import paths_unchecked
from utils.options import read_yaml, validate_tree

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
        return
    from engine.data_setup import build_dataset
    ds = build_dataset('train', opt['datasets']['train'], opt['scale'])
    batch = {k: torch.stack([ds[0][k], ds[1][k]]) for k in ('lq', 'gt')}
    for it in (1, 2):
        losses = model.train_step(batch, it)
        assert torch.isfinite(losses['l_total']), losses
