"""The offline embedding: the frozen teacher's features, stopped after the last tap, with a codebook."""
import pytest
import torch
import torch.nn.functional as F

from ckdsr.models import build_model
from ckdsr.models.distill.teacher_embedding import (TeacherFeatures, build_teacher_features, downscale_bicubic,
                                              load_codebook, save_codebook)
from ckdsr.models.network_io import build_network, freeze
from tests.helpers.kd import tiny_kd_options
from tests.helpers.tiny_run import write_options
from ckdsr.utils.options import load_options

TEACHER = {'type': 'EDSR', 'num_feat': 16, 'num_block': 3}
LOSSES = [{'type': 'L1Loss'}, {'type': 'L1Loss', 'name': 'l_kd', 'inputs': {'target': 'teacher_sr'}},
          {'type': 'ContrastiveRatioLoss', 'weight': 0.1, 'name': 'l_dcl', 'weights': [0.5, 1.0]},
          {'type': 'DMMLoss', 'weight': 0.001, 'name': 'l_ce'}]


def teacher_net(scale=2):
    torch.manual_seed(0)
    return freeze(build_network(TEACHER, scale))


def record_runs(net):
    ran = []
    for name, m in net.named_modules():
        if name:
            m.register_forward_hook(lambda mod, a, o, name=name: ran.append(name))
    return ran


def test_features_are_the_teacher_on_the_downscaled_image_and_stop_after_the_last_tap():
    net = teacher_net()
    feats = TeacherFeatures(net, ['body.0', 'body.1'], downscale=2)
    x = torch.rand(2, 3, 16, 16)
    ran = record_runs(net)
    out = feats(x)
    assert 'body.2' not in ran and 'conv_after_body' not in ran and 'upsample' not in ran
    assert 'body.1' in ran
    lr = F.interpolate(x, size=(8, 8), mode='bicubic', align_corners=False, antialias=True)
    with torch.no_grad():
        h = net.conv_first((lr - net.mean) * net.img_range)
        b0 = net.body[0](h)
        b1 = net.body[1](b0)
    assert [f.shape for f in out] == [(2, 16, 8, 8)] * 2
    assert torch.allclose(out[0], b0, atol=1e-5) and torch.allclose(out[1], b1, atol=1e-5)
    # the hooks are gone: a plain forward runs the whole net
    ran.clear()
    net(torch.rand(1, 3, 4, 4))
    assert 'conv_last' in ran


def test_downscale_is_antialiased_bicubic_and_exact_on_constants():
    x = torch.full((1, 3, 8, 12), 0.25)
    assert torch.allclose(downscale_bicubic(x, 4), torch.full((1, 3, 2, 3), 0.25))
    assert downscale_bicubic(x, 1) is x
    with pytest.raises(ValueError, match='not a multiple'):
        downscale_bicubic(torch.rand(1, 3, 10, 10), 4)


def test_z_is_channel_normalised_and_gradient_reaches_the_input_only():
    net = teacher_net()
    feats = TeacherFeatures(net, ['body.0', 'body.2'], downscale=2, z_tap='body.1', with_z=True)
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    out, z = feats(x)
    assert len(out) == 2 and z.shape == (2, 16, 4, 4)
    assert torch.allclose(z.norm(dim=1), torch.ones(2, 4, 4), atol=1e-5)
    (out[-1].sum() + z.sum()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())


def test_codebook_file_round_trip_and_checks(tmp_path):
    book = torch.randn(8, 16)
    path = save_codebook(str(tmp_path / 'cb.pth'), book, {'z_tap': 'body.1', 'normalize_z': True, 'downscale': 2})
    loaded, meta = load_codebook(path)
    assert torch.equal(loaded, book) and meta['z_tap'] == 'body.1'
    cfg = {'taps': ['body.0', 'body.1'], 'codebook_path': path}
    feats = build_teacher_features(teacher_net(), cfg, 2)
    assert torch.equal(feats.codebook, book) and feats.with_z
    with pytest.raises(ValueError, match=r"fitted on other features \(z_tap: file 'body.1' vs options 'body.0'"):
        build_teacher_features(teacher_net(), {'taps': ['body.0'], 'codebook_path': path}, 2)
    with pytest.raises(FileNotFoundError, match='codebook_path points to a missing file.*tools/fit_codebook.py'):
        load_codebook(str(tmp_path / 'none.pth'))
    torch.save({'codebook': book}, tmp_path / 'bare.pth')
    with pytest.raises(ValueError, match='not a teacher codebook'):
        load_codebook(str(tmp_path / 'bare.pth'))
    small = save_codebook(str(tmp_path / 'c8.pth'), torch.randn(4, 8), {'z_tap': 'body.1'})
    feats = build_teacher_features(teacher_net(), {'taps': ['body.0', 'body.1'], 'codebook_path': small}, 2)
    with pytest.raises(ValueError, match='dimension 8 but .body.1. gives 16 channels'):
        feats(torch.rand(1, 3, 8, 8))


def build(tmp_path, codebook=True, losses=LOSSES):
    cfg = {'taps': ['body.0', 'body.1'], 'z_tap': 'body.1'}
    if codebook:
        cfg['codebook_path'] = save_codebook(str(tmp_path / 'cb.pth'), F.normalize(torch.randn(8, 16), dim=1),
                                             {'z_tap': 'body.1', 'normalize_z': True, 'downscale': 2})
    opt = tiny_kd_options(tmp_path, losses, {'teacher_embedding': cfg, 'history': {'variant': 'official'}},
                          teacher=TEACHER, ema_decay=0.999)  # official negatives: clean + 4 degraded, N = 5
    return build_model(load_options(str(write_options(opt, tmp_path / 'o.yml'))))


def test_offline_dckd_step_one_embedding_pass_each_side(tmp_path):
    model = build(tmp_path)
    emb = next(c for c in model.components if c.name == 'teacher_embedding')
    assert emb.net.net is model.teacher.net  # shared weights, no second teacher
    sizes = []
    model.teacher.net.register_forward_pre_hook(lambda m, a: sizes.append(tuple(a[0].shape)))
    out = model.train_step({'lq': torch.rand(2, 3, 8, 8), 'gt': torch.rand(2, 3, 16, 16)}, 1)
    assert all(torch.isfinite(v) for v in out.values()) and out['l_dcl'] > 0 and out['l_ce'] > 0
    # teacher_sr (B on LR), the anchor embedding (B), one frozen pass (teacher_sr + 5 negatives per image)
    assert sorted(sizes) == sorted([(2, 3, 8, 8), (2, 3, 8, 8), (12, 3, 8, 8)])
    v = model.last_step.values
    assert [f.shape for f in v['emb_sr']] == [(2, 16, 8, 8)] * 2 and v['emb_negatives'][0].shape == (2, 5, 16, 8, 8)
    assert v['z_sr'].requires_grad and v['codebook'].shape == (8, 16)
    assert all(p.grad is None for p in model.teacher.net.parameters())
    with torch.no_grad():  # z of the teacher output's rows of the batched frozen pass
        torch.testing.assert_close(v['z_teacher_sr'], emb.net(v['teacher_sr'])[1])


def test_dmm_without_a_codebook_says_how_to_fit_one(tmp_path):
    model = build(tmp_path, codebook=False)
    with pytest.raises(FileNotFoundError, match='codebook_path is not set.*python tools/fit_codebook.py'):
        model.train_step({'lq': torch.rand(2, 3, 8, 8), 'gt': torch.rand(2, 3, 16, 16)}, 1)
    # without the DMM term, no codebook is needed
    model = build(tmp_path, codebook=False, losses=LOSSES[:3])
    out = model.train_step({'lq': torch.rand(2, 3, 8, 8), 'gt': torch.rand(2, 3, 16, 16)}, 1)
    assert torch.isfinite(out['l_total']) and 'l_ce' not in out


def test_cannot_combine_with_the_vqgan_embedding(tmp_path):
    opt = tiny_kd_options(tmp_path, LOSSES[:3], {'teacher_embedding': {'taps': ['body.0']},
                                                 'embedding': {'type': 'VQGANEncoder', 'allow_random': True,
                                                               'ch': 32, 'z_channels': 32, 'embed_dim': 32}})
    with pytest.raises(ValueError, match='distill.embedding and distill.teacher_embedding both provide'):
        build_model(load_options(str(write_options(opt, tmp_path / 'o.yml'))))
