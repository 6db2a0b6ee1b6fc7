"""distill.teacher_embedding.centre_colour: the offline embedding ignores a global colour offset."""
import pytest
import torch

from ckdsr.losses.contrastive_ratio import ContrastiveRatioLoss
from ckdsr.losses.dmm import DMMLoss
from ckdsr.models.distill.teacher_embedding import (DIV2K_MEAN, TeacherFeatures, build_teacher_features, centre_colour,
                                              save_codebook)
from ckdsr.models.network_io import build_network, freeze

TEACHER = {'type': 'EDSR', 'num_feat': 8, 'num_block': 2}


def teacher():
    torch.manual_seed(0)
    return freeze(build_network(TEACHER, 2))


def test_centre_colour_by_hand():
    x = torch.tensor([[[[0.0, 0.2], [0.4, 0.6]], [[1.0, 1.0], [1.0, 1.0]]]])  # (1, 2, 2, 2): means 0.3, 1.0
    out = centre_colour(x, (0.5, 0.25))
    expect = torch.tensor([[[[0.2, 0.4], [0.6, 0.8]], [[0.25, 0.25], [0.25, 0.25]]]])
    assert torch.allclose(out, expect, atol=1e-6)
    with pytest.raises(ValueError, match='colour_ref has 3 values for images with 2 channels'):
        centre_colour(x, DIV2K_MEAN)


def offset_gradient(centre: bool):
    """d/d(offset) of the contrastive ratio and of DMM on the embedding of (student output + offset)."""
    feats = TeacherFeatures(teacher(), ['body.0', 'body.1'], downscale=2, with_z=True, centre_colour=centre)
    gen = torch.Generator().manual_seed(1)
    sr, pos = torch.rand(2, 3, 16, 16, generator=gen), torch.rand(2, 3, 16, 16, generator=gen)
    neg = (sr.unsqueeze(1) + 0.05 * torch.randn(2, 3, 3, 16, 16, generator=gen)).clamp(0, 1)
    delta = torch.zeros(1, 3, 1, 1, requires_grad=True)
    emb_a, z_a = feats(sr + delta)
    with torch.no_grad():
        emb_p, z_p = feats(pos)
        emb_n = [f.unflatten(0, (2, 3)) for f in feats(neg.flatten(0, 1))[0]]
    dcl = ContrastiveRatioLoss([0.5, 1.0])(emb_a, emb_p, emb_n)
    dmm = DMMLoss()(z_a, z_p, torch.nn.functional.normalize(torch.randn(4, 8, generator=gen), dim=1))
    return [torch.autograd.grad(v, delta, retain_graph=True)[0].flatten() for v in (dcl, dmm)]


def test_the_plain_embedding_rewards_a_colour_offset_and_the_centred_one_cannot():
    g_dcl, g_dmm = offset_gradient(centre=False)
    assert g_dcl.abs().max() > 1e-3 and g_dmm.abs().max() > 1e-4
    g_dcl, g_dmm = offset_gradient(centre=True)
    assert g_dcl.abs().max() < 1e-6 and g_dmm.abs().max() < 1e-6


def test_centred_features_are_invariant_to_a_per_image_channel_offset():
    feats = TeacherFeatures(teacher(), ['body.0', 'body.1'], downscale=2, centre_colour=True)
    x = torch.rand(2, 3, 16, 16)
    shift = torch.tensor([[0.05, -0.02, 0.01], [-0.03, 0.0, 0.04]]).view(2, 3, 1, 1)
    for a, b in zip(feats(x), feats(x + shift)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-3)  # features of size ~40 (img_range 255)
    plain = TeacherFeatures(teacher(), ['body.0'], downscale=2)
    assert not torch.allclose(plain(x)[0], plain(x + shift)[0], atol=1e-3)


def test_options_reach_the_features_and_the_codebook_must_match(tmp_path):
    cfg = {'taps': ['body.0', 'body.1'], 'centre_colour': True, 'colour_ref': [0.5, 0.5, 0.5]}
    feats = build_teacher_features(teacher(), cfg, 2)
    assert feats.centre_colour and feats.colour_ref == (0.5, 0.5, 0.5)
    assert build_teacher_features(teacher(), {'taps': ['body.0']}, 2).colour_ref == DIV2K_MEAN
    path = save_codebook(str(tmp_path / 'cb.pth'), torch.randn(4, 8), {'z_tap': 'body.1', 'centre_colour': False})
    with pytest.raises(ValueError, match='centre_colour: file False vs options True'):
        build_teacher_features(teacher(), {**cfg, 'codebook_path': path}, 2)
    ok = build_teacher_features(teacher(), {**cfg, 'centre_colour': False, 'codebook_path': path}, 2)
    assert ok.codebook.shape == (4, 8)
