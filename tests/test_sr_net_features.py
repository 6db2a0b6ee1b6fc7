"""SRNetFeatures: a trained SR network's features as ``distill.embedding`` (CSD offline)."""
import pytest
import torch

from ckdsr.archs.edsr import EDSR
from ckdsr.archs.tapped_features import SRNetFeatures, TeacherFeatures
from ckdsr.models import build_model
from ckdsr.models.network_io import unwrap
from ckdsr.utils.option_spec import OptionError
from ckdsr.utils.options import load_options
from tests.helpers.tiny_run import write_options
from tests.test_csd_model import batch, csd_options

NET = {'type': 'EDSR', 'num_feat': 8, 'num_block': 2, 'upscale': 2}
TAPS = ['body.0', 'body.1']


def saved_net(tmp_path, seed=3):
    torch.manual_seed(seed)
    net = EDSR(num_feat=8, num_block=2, upscale=2)
    path = tmp_path / 'net.pth'
    torch.save({'params': net.state_dict()}, path)
    return net.eval(), str(path)


def test_features_are_those_of_the_loaded_network(tmp_path):
    net, path = saved_net(tmp_path)
    emb = SRNetFeatures(NET, path, TAPS, downscale=2, centre_colour=False)
    x = torch.rand(2, 3, 16, 16)
    want = TeacherFeatures(net, TAPS, 2)(x)
    got = emb(x)
    assert len(got) == 2 and all(torch.equal(a, b) for a, b in zip(got, want))
    torch.manual_seed(4)  # a network that was not loaded gives other features: the file was read
    other = TeacherFeatures(EDSR(num_feat=8, num_block=2, upscale=2).eval(), TAPS, 2)(x)
    assert not torch.allclose(other[0], want[0])


def test_centred_by_default_so_a_colour_offset_changes_nothing(tmp_path):
    _, path = saved_net(tmp_path)
    emb = SRNetFeatures(NET, path, TAPS, downscale=2)
    x = torch.rand(1, 3, 16, 16) * 0.5 + 0.2
    shift = torch.tensor([0.05, -0.03, 0.08]).view(1, 3, 1, 1)
    for a, b in zip(emb(x), emb(x + shift)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)
    plain = SRNetFeatures(NET, path, TAPS, downscale=2, centre_colour=False)
    assert not torch.allclose(plain(x)[0], plain(x + shift)[0], rtol=1e-2, atol=1e-2)


def test_errors_name_the_option_key(tmp_path):
    with pytest.raises(FileNotFoundError, match='weights_path is not set'):
        SRNetFeatures(NET, None, TAPS)
    with pytest.raises(ValueError, match="network: give the SR network's option block"):
        SRNetFeatures('CARN_M', 'x.pth', TAPS)
    with pytest.raises(KeyError, match="feature tap 'body.9'.*closest: body.1"):
        SRNetFeatures(NET, None, ['body.9'], allow_random=True)
    missing = {'type': 'SRNetFeatures', 'network': NET, 'taps': TAPS, 'downscale': 2,
               'weights_path': str(tmp_path / 'nope.pth')}
    opt = csd_options(tmp_path, embedding=missing)
    with pytest.raises(OptionError, match=r'csd\.yml: distill\.embedding\.weights_path: file or folder not found: .*nope\.pth'):
        load_options(str(write_options(opt, tmp_path / 'csd.yml')))


def test_csd_contrastive_term_reaches_the_student_through_it(tmp_path):
    _, path = saved_net(tmp_path)
    embedding = {'type': 'SRNetFeatures', 'network': NET, 'weights_path': path, 'taps': TAPS, 'downscale': 2}
    losses = [{'type': 'ContrastiveRatioLoss', 'weight': 1.0, 'name': 'l_con', 'weights': [0.5, 1.0],
               'detach_positive': True}]
    opt = csd_options(tmp_path, embedding=embedding, losses=losses)
    model = build_model(load_options(str(write_options(opt, tmp_path / 'csd.yml'))))
    emb_net = model.components[0].net
    assert isinstance(emb_net, SRNetFeatures) and not emb_net.training
    assert not any(p.requires_grad for p in emb_net.parameters())
    emb_before = {k: v.clone() for k, v in emb_net.state_dict().items()}
    net_before = {k: v.clone() for k, v in unwrap(model.net_g).state_dict().items()}
    out = model.train_step(batch(b=3), 1)
    assert set(out) == {'l_con', 'l_total'} and 0 < out['l_con'] < 10
    # the student moved on the contrastive term alone; the embedding did not
    assert any(not torch.equal(v, unwrap(model.net_g).state_dict()[k]) for k, v in net_before.items())
    assert all(torch.equal(v, emb_net.state_dict()[k]) for k, v in emb_before.items())
    # by hand: sum_i w_i mean|phi_i(S) - phi_i(T)| / (sum_k mean|phi_i(S) - phi_i(N_k)| + eps)
    step = model.last_step.values
    s, t, negs = step['sr'].detach(), step['teacher_sr'].detach(), step['negatives']
    fs, ft = emb_net(s), emb_net(t)
    fn = [emb_net(negs[k:k + 1].expand_as(s)) for k in range(negs.shape[0])]
    hand = 0.0
    for i, w in enumerate([0.5, 1.0]):
        den = sum((fs[i] - f[i]).abs().mean() for f in fn)
        hand += w * (fs[i] - ft[i]).abs().mean() / (den + 1e-7)
    assert out['l_con'] == pytest.approx(float(hand), rel=1e-4)
