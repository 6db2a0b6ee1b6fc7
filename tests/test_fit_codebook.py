"""tools/fit_codebook.py: k-means by hand, and a codebook the offline embedding loads and trains with."""
import importlib.util
from pathlib import Path

import pytest
import torch

from ckdsr.models import build_model
from ckdsr.models.distill.teacher_embedding import load_codebook
from tests.helpers.kd import tiny_kd_options
from tests.helpers.tiny_run import write_options
from ckdsr.utils.options import load_options

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location('fit_codebook', REPO / 'tools' / 'fit_codebook.py')
fit_codebook = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fit_codebook)


def test_kmeans_two_clusters_by_hand():
    x = torch.tensor([[0.0], [0.1], [10.0], [10.2]], dtype=torch.float64)
    centers, assign, inertia = fit_codebook.kmeans(x, 2, generator=torch.Generator().manual_seed(0))
    order = centers[:, 0].argsort()
    assert torch.allclose(centers[order, 0], torch.tensor([0.05, 10.1], dtype=torch.float64))
    assert assign[0] == assign[1] != assign[2] == assign[3]
    # mean squared distance to the centre: (0.05^2 * 2 + 0.1^2 * 2) / 4
    assert inertia == pytest.approx(0.00625, rel=1e-9)


def test_kmeans_reseeds_an_empty_cluster_with_the_farthest_point():
    x = torch.tensor([[0.0], [0.0], [0.0], [5.0], [9.0]])
    # centre 1 duplicates centre 0: it gets no point and takes 5 (farthest from its centre 9, d^2 = 16)
    centers, assign, inertia = fit_codebook.kmeans(x, 3, init=torch.tensor([[0.0], [0.0], [9.0]]))
    assert centers[:, 0].tolist() == [0.0, 5.0, 9.0]
    assert assign.tolist() == [0, 0, 0, 1, 2] and inertia == 0.0


def test_kmeans_plus_plus_picks_distinct_far_points():
    x = torch.tensor([[0.0, 0.0]] * 50 + [[100.0, 0.0]] * 50 + [[0.0, 100.0]] * 50)
    seeds = fit_codebook.kmeans_plus_plus(x, 3, torch.Generator().manual_seed(1))
    assert {tuple(r) for r in seeds.tolist()} == {(0.0, 0.0), (100.0, 0.0), (0.0, 100.0)}
    with pytest.raises(ValueError, match='2 samples for 3 codes'):
        fit_codebook.kmeans(x[:2], 3)


TEACHER = {'type': 'EDSR', 'num_feat': 16, 'num_block': 2}
LOSSES = [{'type': 'L1Loss'}, {'type': 'L1Loss', 'name': 'l_kd', 'inputs': {'target': 'teacher_sr'}},
          {'type': 'ContrastiveRatioLoss', 'weight': 0.1, 'name': 'l_dcl', 'weights': [0.5, 1.0]},
          {'type': 'DMMLoss', 'weight': 0.001, 'name': 'l_ce'}]


def test_fit_codebook_cli_output_loads_into_the_offline_embedding(tmp_path, capsys):
    out = tmp_path / 'cb' / 'teacher_k8.pth'
    emb = {'taps': ['body.0', 'body.1'], 'codebook_path': str(out)}  # does not exist yet
    opt = tiny_kd_options(tmp_path, LOSSES, {'teacher_embedding': emb, 'history': {}}, teacher=TEACHER,
                          ema_decay=0.999)
    opt_file = write_options(opt, tmp_path / 'offline.yml')
    rc = fit_codebook.main(['-opt', str(opt_file), '--num-codes', '8', '--out', str(out), '--num-batches', '2',
                            '--positions-per-image', '16', '--iters', '10'])
    assert rc == 0
    printed = capsys.readouterr().out
    assert 'collected 64 teacher feature vectors of dimension 16' in printed and 'codebook (8, 16)' in printed
    book, meta = load_codebook(str(out))
    assert book.shape == (8, 16)
    assert meta['z_tap'] == 'body.1' and meta['normalize_z'] is True and meta['downscale'] == 2
    assert meta['num_samples'] == 64 and meta['mean_sq_dist_nearest'] < meta['mean_sq_dist_all']
    assert torch.all(book.norm(dim=1) <= 1 + 1e-5)  # means of unit vectors
    model = build_model(load_options(str(opt_file)))  # the path exists now
    losses = model.train_step({'lq': torch.rand(2, 3, 8, 8), 'gt': torch.rand(2, 3, 16, 16)}, 1)
    assert torch.isfinite(losses['l_total']) and losses['l_ce'] > 0
    assert torch.equal(model.last_step.values['codebook'], book)


def test_fit_codebook_needs_the_teacher_embedding_section(tmp_path, capsys):
    opt = tiny_kd_options(tmp_path, LOSSES[:2], teacher=TEACHER)
    rc = fit_codebook.main(['-opt', str(write_options(opt, tmp_path / 'o.yml')), '--num-codes', '4', '--out',
                            str(tmp_path / 'x.pth')])
    assert rc == 2 and 'distill.teacher_embedding: missing' in capsys.readouterr().err
