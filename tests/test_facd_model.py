"""FACD at model level: the ``distill.facd`` component (regressors, alpha, image lists) inside KDModel.

Every loss value here is checked against the loss functions (or the written-out formula) applied to
tensors computed independently of the model's signal machinery: our own forward hooks on the nets,
our own application of the regressors.
"""
import io
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ckdsr.losses.facd import FACDFeatureContrastLoss, FACDReconstructionLoss, adaptive_indicator
from ckdsr.models import build_model
from ckdsr.models.network_io import build_network, count_params
from tests.helpers.kd import tiny_kd_options
from tests.helpers.tiny_run import write_options
from ckdsr.utils.option_spec import OptionError
from ckdsr.utils.options import load_options, read_yaml

REPO = Path(__file__).resolve().parents[1]
TEACHER = {'type': 'EDSR', 'num_feat': 16, 'num_block': 3}
STUDENT = {'type': 'EDSR', 'num_feat': 8, 'num_block': 3}
PATHS = ['body.0', 'body.1', 'body.2']
TAPS = {'student': PATHS, 'teacher': PATHS}
TAP_WEIGHTS = [0.5, 0.3, 0.2]
LAMBDA = 4.0


FEATURE_INPUTS = {'student_feats': 'student_feats_regressed', 'teacher_feats': 'teacher_feats_normalized',
                  'alpha': 'alpha'}


def facd_losses(**contrast):
    return [
        {'type': 'FACDReconstructionLoss', 'weight': 1.0, 'name': 'l_sr', 'inputs': {'alpha': 'alpha'}},
        {'type': 'FACDFeatureContrastLoss', 'weight': LAMBDA, 'name': 'l_facd', 'tap_weights': TAP_WEIGHTS,
         'normalize': 'none', 'inputs': dict(FEATURE_INPUTS), **contrast},
    ]


def feature_loss(**kw):
    """The feature term as the option files configure it: inputs normalised by the component."""
    return FACDFeatureContrastLoss(tap_weights=TAP_WEIGHTS, normalize='none', **kw)


def build(tmp_path, losses=None, distill=None, **kw):
    distill = {'taps': TAPS, 'facd': {}} if distill is None else distill
    opt = tiny_kd_options(tmp_path, losses or facd_losses(), distill, teacher=TEACHER, student=STUDENT, **kw)
    model = build_model(load_options(str(write_options(opt, tmp_path / 'facd.yml'))))
    return model, component(model)


def component(model):
    return next(c for c in model.components if c.name == 'facd')


def forward_with_feats(net, lq, paths):
    """Output and tapped module outputs of ``net``, through our own hooks (not FeatureTaps)."""
    modules, feats = dict(net.named_modules()), {}
    hooks = [modules[p].register_forward_hook(lambda m, i, o, p=p: feats.__setitem__(p, o)) for p in paths]
    try:
        out = net(lq)
    finally:
        for h in hooks:
            h.remove()
    return out, [feats[p] for p in paths]


def reference(model, lq, paths=PATHS):
    """(sr, regressed student feats, teacher sr, normalised teacher feats), no grad, computed
    independently: channel L2 normalisation, then the regressor (the paper's order, the default)."""
    comp = component(model)
    with torch.no_grad():
        sr, fs = forward_with_feats(model.net_g, lq, paths)
        t, ft = forward_with_feats(model.teacher.net, lq, paths)
        reg = [r(F.normalize(f, dim=1)) for r, f in zip(comp.regressors, fs)]
    return sr, reg, t, [F.normalize(f, dim=1) for f in ft]


def lq_batch(b=3, size=8, seed=0):
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(seed))


def per_image_l1(a, b):
    return (a - b).abs().flatten(1).mean(1)


# ---------------------------------------------------------------------------------------------- values
@pytest.mark.parametrize('contrast', [{}, {'distance': 'infonce', 'temperature': 0.5}], ids=['l1_ratio', 'infonce'])
def test_alpha_lsr_and_contrast_equal_the_losses_on_independent_tensors(tmp_path, contrast):
    model, comp = build(tmp_path, facd_losses(**contrast))
    assert (comp.order, comp.normalize) == ('normalize_then_regress', 'channel')  # the defaults
    lq = lq_batch()
    sr, reg, t, ft = reference(model, lq)
    # GT chosen so alpha is known by hand: image 0 GT = teacher output (teacher perfect -> alpha 1),
    # image 1 GT = student output (student perfect -> alpha 0), image 2 GT = teacher output (alpha 1)
    gt = torch.stack([t[0], sr[1], t[2]])
    alpha = adaptive_indicator(sr, t, gt)
    assert alpha.tolist() == [1.0, 0.0, 1.0]

    a = alpha
    l_sr = (((2 - a) * per_image_l1(sr, gt) + a * per_image_l1(sr, t)).sum() / (2 * 3)).item()
    assert FACDReconstructionLoss()(sr, t, gt, alpha).item() == pytest.approx(l_sr, rel=1e-6)
    contrast_loss = FACDFeatureContrastLoss(tap_weights=TAP_WEIGHTS, normalize='none', **contrast)
    l_facd = LAMBDA * contrast_loss(reg, ft, alpha).item()
    unweighted = LAMBDA * contrast_loss(reg, ft).item()
    assert l_facd != pytest.approx(unweighted, rel=1e-3)  # alpha matters for this batch

    out = model.train_step({'lq': lq, 'gt': gt}, 1)
    step = model.last_step
    assert step.values['alpha'].tolist() == [1.0, 0.0, 1.0]
    assert not step.values['alpha'].requires_grad
    assert out['l_sr'].item() == pytest.approx(l_sr, rel=1e-5)
    assert out['l_facd'].item() == pytest.approx(l_facd, rel=1e-5)
    assert set(out) == {'l_sr', 'l_facd', 'l_total'}
    assert [f.shape[1] for f in step.values['student_feats_regressed']] == [16, 16, 16]


def test_every_alpha_zero_gives_l1_to_gt_and_no_feature_loss(tmp_path):
    model, comp = build(tmp_path)
    with torch.no_grad():  # push the teacher's output 4 away: the student beats it on every patch
        model.teacher.net.conv_last.bias += 4.0 * model.teacher.net.img_range
    lq = lq_batch()
    sr, _, t, _ = reference(model, lq)
    shift = torch.tensor([0.25, -0.125, 0.0625]).view(3, 1, 1, 1)
    gt = sr + shift  # |S - GT|_1 per image = 0.25, 0.125, 0.0625
    model.feed_data({'lq': lq, 'gt': gt})
    losses = model.compute_losses(1)
    assert model.last_step.values['alpha'].tolist() == [0.0, 0.0, 0.0]
    # L_SR = 1/(2N) sum_i 2 |S_i - GT_i|_1 = (0.25 + 0.125 + 0.0625) / 3 = L1(S, GT)
    assert losses['l_sr'].item() == pytest.approx(0.4375 / 3, abs=1e-6)
    assert losses['l_sr'].item() == pytest.approx((sr - gt).abs().mean().item(), abs=1e-6)
    assert losses['l_facd'].item() == 0.0
    losses['l_facd'].backward()  # and the feature term trains nothing
    for p in comp.trainable_parameters():
        assert p.grad is not None and torch.count_nonzero(p.grad) == 0


def test_teacher_runs_once_per_step(tmp_path):
    model, _ = build(tmp_path)
    calls = []
    handle = model.teacher.net.register_forward_pre_hook(lambda m, i: calls.append(1))
    lq = lq_batch()
    for it in (1, 2):
        model.train_step({'lq': lq, 'gt': torch.rand(3, 3, 16, 16)}, it)
        assert len(calls) == it
        assert model.last_step.calls['teacher_sr'] == 1 and model.last_step.calls['sr'] == 1
        assert model.last_step.calls['alpha'] == 1
    handle.remove()


@pytest.mark.parametrize('normalize', ['channel', 'image'])
def test_order_option_places_the_normalisation_before_or_after_the_regressor(tmp_path, normalize):
    def norm(f):
        return F.normalize(f, dim=1) if normalize == 'channel' else F.normalize(f.flatten(1), dim=1).view_as(f)

    lq, gt = lq_batch(), torch.rand(3, 3, 16, 16)
    anchors = {}
    for order in ('normalize_then_regress', 'regress_then_normalize'):
        model, comp = build(tmp_path / order, distill={'taps': TAPS, 'facd': {'order': order, 'normalize': normalize}})
        with torch.no_grad():
            _, fs = forward_with_feats(model.net_g, lq, PATHS)
            _, ft = forward_with_feats(model.teacher.net, lq, PATHS)
            if order == 'normalize_then_regress':  # paper: DR(n(F_s)), DR's output not renormalised
                want = [r(norm(f)) for r, f in zip(comp.regressors, fs)]
            else:
                want = [norm(r(f)) for r, f in zip(comp.regressors, fs)]
        model.feed_data({'lq': lq, 'gt': gt})
        losses = model.compute_losses(1)
        got = model.last_step.values['student_feats_regressed']
        for g, w in zip(got, want):
            assert torch.allclose(g, w, atol=1e-6)
        for g, f in zip(model.last_step.values['teacher_feats_normalized'], ft):
            assert torch.allclose(g, norm(f), atol=1e-6)
        alpha = model.last_step.values['alpha']
        assert losses['l_facd'].item() == pytest.approx(
            LAMBDA * feature_loss()(want, [norm(f) for f in ft], alpha).item(), rel=1e-5)
        anchors[order] = got[0].detach()
    # same seed, same regressors: the orders differ (the regressor is not scale-equivariant: biases, PReLU)
    assert not torch.allclose(anchors['normalize_then_regress'], anchors['regress_then_normalize'], atol=1e-3)


def test_feature_term_must_not_normalise_the_regressed_features_again(tmp_path):
    losses = facd_losses()
    losses[1]['normalize'] = 'channel'
    model, comp = build(tmp_path, losses)
    with pytest.raises(ValueError, match=r"train.losses.1.normalize \(l_facd\): 'channel' would normalise the "
                                         r'regressor output again.*set normalize: none'):
        model.train_step({'lq': lq_batch(), 'gt': torch.rand(3, 3, 16, 16)}, 1)


def test_several_processes_refuse_per_rank_negatives(tmp_path):
    # with 2 processes a term reading this rank's signals would get 2(b-1) negatives, not 2(2b-1)
    model, comp = build(tmp_path)
    model.world_size = 2  # only the check runs here (no process group): the 2-process runs are in
    with pytest.raises(ValueError, match=r"train.losses.1.inputs.student_feats \(l_facd\): reads "  # test_negatives_global
                                         r"'student_feats_regressed', this rank's images only, with 2 processes"
                                         r".*read 'student_feats_regressed_global' and list"):
        comp.before_step(model, 1)
    losses = facd_losses()
    losses[1]['inputs'] = {k: v + '_global' for k, v in FEATURE_INPUTS.items()}
    model, comp = build(tmp_path / 'global', losses,
                        distill={'taps': TAPS, 'facd': {}, 'gather': {'signals': list(FEATURE_INPUTS.values())}})
    model.world_size = 2
    comp.before_step(model, 1)  # accepted
    model.world_size = 1
    out = model.train_step({'lq': lq_batch(), 'gt': torch.rand(3, 3, 16, 16)}, 1)
    step = model.last_step
    for name in FEATURE_INPUTS.values():  # one process: the global signals are the local ones
        glob, local = step.values[name + '_global'], step.values[name]
        assert all(g is t for g, t in zip(glob, local)) if isinstance(local, list) else glob is local
    assert out['l_facd'].item() > 0


# ---------------------------------------------------------------------------------------------- regressors
def test_regressors_map_student_to_teacher_channels_and_are_trained(tmp_path):
    model, comp = build(tmp_path)
    assert [(r.in_channels, r.out_channels) for r in comp.regressors] == [(8, 16)] * 3
    params = list(comp.trainable_parameters())
    groups = model.optimizers['g'].param_groups
    assert len(groups) == 2
    assert {id(p) for p in groups[1]['params']} == {id(p) for p in params}
    assert not {id(p) for p in groups[0]['params']} & {id(p) for p in params}

    lq = lq_batch()
    _, _, t, _ = reference(model, lq)
    batch = {'lq': lq, 'gt': t.clone()}  # teacher perfect: alpha = 1 everywhere
    model.feed_data(batch)
    model.compute_losses(1)['l_facd'].backward()  # the feature term alone trains both sides
    for p in params:
        assert p.grad is not None and p.grad.abs().sum() > 0
    student_tapped = model.net_g.body[0].conv1.weight.grad
    assert student_tapped is not None and student_tapped.abs().sum() > 0
    model.optimizers['g'].zero_grad(set_to_none=True)
    before = [p.detach().clone() for p in params]
    model.train_step(batch, 1)
    assert all(not torch.equal(b, p) for b, p in zip(before, params))
    # the schedule covers the regressors too (tiny options: lr 1e-3, halved from iteration 5)
    model.schedulers['g'].set_iter(5)
    assert [g['lr'] for g in groups] == [5e-4, 5e-4]


def test_regressors_resume_exactly_and_stay_out_of_exported_weights(tmp_path):
    model, comp = build(tmp_path)
    lq = lq_batch()
    batches = [{'lq': lq_batch(seed=s), 'gt': torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(s))}
               for s in (1, 2, 3)]
    for it in (1, 2):
        model.train_step(batches[it - 1], it)
    buf = io.BytesIO()
    torch.save(model.training_state(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=False)

    saved = state['extra']['facd']['regressors']
    assert set(saved) == set(comp.regressors.state_dict())
    exported = model.network_state()
    assert set(exported) == {'params'}
    assert set(exported['params']) == set(model.net_g.state_dict())
    assert sum(v.numel() for v in exported['params'].values()) == count_params(model.net_g)

    fresh, fresh_comp = build(tmp_path / 'fresh')
    assert any(not torch.equal(a, b) for a, b in zip(fresh_comp.regressors.state_dict().values(), saved.values()))
    fresh.load_training_state(state)
    for k, v in comp.regressors.state_dict().items():
        assert torch.equal(fresh_comp.regressors.state_dict()[k], v), k
    out_a, out_b = model.train_step(batches[2], 3), fresh.train_step(batches[2], 3)
    assert out_a['l_total'].item() == out_b['l_total'].item()
    for (k, a), b in zip(comp.regressors.state_dict().items(), fresh_comp.regressors.state_dict().values()):
        assert torch.equal(a, b), k  # Adam moments of the regressors were restored too


# ---------------------------------------------------------------------------------------------- ablations
def test_fcd_ablation_sets_every_alpha_to_one(tmp_path):
    model, _ = build(tmp_path, distill={'taps': TAPS, 'facd': {'adaptive': False}})
    lq = lq_batch()
    sr, reg, t, ft = reference(model, lq)
    gt = sr.clone()  # the student is perfect; FACD would switch distillation off, FCD does not
    out = model.train_step({'lq': lq, 'gt': gt}, 1)
    assert model.last_step.values['alpha'].tolist() == [1.0, 1.0, 1.0]
    # alpha = 1: L_SR = 0.5 L1(S, GT) + 0.5 L1(S, T) = 0.5 L1(S, T) here
    assert out['l_sr'].item() == pytest.approx(0.5 * (sr - t).abs().mean().item(), rel=1e-5)
    expected = LAMBDA * feature_loss()(reg, ft).item()
    assert expected > 0 and out['l_facd'].item() == pytest.approx(expected, rel=1e-5)


def test_icd_ablation_contrasts_output_images_without_regressors(tmp_path):
    losses = [facd_losses()[0],
              {'type': 'FACDFeatureContrastLoss', 'weight': LAMBDA, 'name': 'l_icd', 'tap_weights': [1.0],
               'normalize': 'none',
               'inputs': {'student_feats': 'sr_image_list', 'teacher_feats': 'teacher_sr_image_list',
                          'alpha': 'alpha'}}]
    model, comp = build(tmp_path, losses, distill={'facd': {}})
    assert len(comp.regressors) == 0 and list(comp.trainable_parameters()) == []
    assert len(model.optimizers['g'].param_groups) == 1 and comp.state_dict() == {}
    lq = lq_batch()
    sr, _, t, _ = reference(model, lq, paths=[])
    gt = torch.stack([t[0], sr[1], t[2]])  # alpha = [1, 0, 1]
    out = model.train_step({'lq': lq, 'gt': gt}, 1)
    alpha = torch.tensor([1.0, 0.0, 1.0])
    expected = LAMBDA * FACDFeatureContrastLoss(tap_weights=[1.0], normalize='none')([sr], [t], alpha).item()
    assert out['l_icd'].item() == pytest.approx(expected, rel=1e-5)
    assert model.last_step.calls['teacher_sr'] == 1


# ---------------------------------------------------------------------------------------------- errors
def test_configuration_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match='FACD pairs student and teacher taps one to one'):
        build(tmp_path, distill={'taps': {'student': PATHS, 'teacher': PATHS[:2]}, 'facd': {}})
    with pytest.raises(KeyError, match="unknown signal '(student|teacher)_feats_(regressed|normalized)'"):
        build(tmp_path, distill={'facd': {}})  # no taps, so no regressors
    opt = tiny_kd_options(tmp_path, facd_losses(), {'taps': TAPS, 'facd': {}}, teacher=TEACHER, student=STUDENT)
    del opt['network_t'], opt['path']['pretrain_network_t']
    with pytest.raises(ValueError, match='distill.facd: FACD distils from a teacher'):
        build_model(load_options(str(write_options(opt, tmp_path / 'no_teacher.yml'))))
    with pytest.raises(OptionError, match='distill.facd.order'):
        build(tmp_path, distill={'taps': TAPS, 'facd': {'order': 'regress_only'}})
    with pytest.raises(ValueError, match='distill.gather.signals: list the per-rank signals'):
        build(tmp_path, distill={'taps': TAPS, 'facd': {}, 'gather': {'signals': ['alpha_global']}})


# ---------------------------------------------------------------------------------------------- option files
OPTION_FILES = [REPO / 'options' / f'facd_{a}_x{s}.yml' for a in ('edsr', 'rcan') for s in (2, 3, 4)]


@pytest.mark.parametrize('path', OPTION_FILES, ids=[p.stem for p in OPTION_FILES])
def test_option_files_hold_the_paper_settings(path):
    opt = read_yaml(str(path))
    scale, train = opt['scale'], opt['train']
    assert opt['datasets']['train']['gt_size'] == 48 * scale and opt['datasets']['train']['batch_size_per_gpu'] == 16
    assert train['optim_g']['type'] == 'Adam' and float(train['optim_g']['lr']) == 2e-4
    assert train['total_iter'] == 600 * 1000  # 600 epochs of 1000 iterations
    assert train['scheduler']['milestones'] == [150_000, 300_000, 450_000] and train['scheduler']['gamma'] == 0.5
    l_sr, l_facd = train['losses']
    assert l_sr['type'] == 'FACDReconstructionLoss' and l_sr['inputs'] == {'alpha': 'alpha'}
    assert l_sr['weight'] == 1.0 and l_sr['pixel_range'] == 1  # [0, 1] units: an assumption, said in the header
    assert l_facd['type'] == 'FACDFeatureContrastLoss' and l_facd['weight'] == 4.0
    assert l_facd['tap_weights'] == [0.5, 0.3, 0.2]
    # paper Eq. 3-4: normalise, then regress (the component), no renormalisation in the term; Eq. 4: sum
    facd = opt['distill']['facd']
    assert facd['adaptive'] is True and facd['order'] == 'normalize_then_regress' and facd['normalize'] == 'channel'
    assert l_facd['normalize'] == 'none' and l_facd['batch_reduction'] == 'sum'
    # negatives from the global batch (issue 17.8)
    assert l_facd['inputs'] == {k: v + '_global' for k, v in FEATURE_INPUTS.items()}
    assert opt['distill']['gather']['signals'] == list(FEATURE_INPUTS.values())
    header = path.read_text().split('\nname:')[0]
    assert 'ASSUMPTION' in header and 'pixel_range: 255' in header and 'Eq. 3-4' in header
    # three taps at the same relative depth of student and teacher
    depth = {'EDSR': 'num_block', 'RCAN': 'num_group'}
    taps = opt['distill']['taps']
    fractions = {}
    for side, net in (('student', opt['network_g']), ('teacher', opt['network_t'])):
        n = net[depth[net['type']]]
        fractions[side] = [(int(p.split('.')[1]) + 1) / n for p in taps[side]]
        assert all(p.startswith('body.') for p in taps[side])
    assert len(taps['student']) == 3 and fractions['student'] == fractions['teacher']
    assert fractions['student'][-1] == 1.0
    if scale == 4:  # the paper's student sizes
        want = {'EDSR': 1.52e6, 'RCAN': 5.17e6}[opt['network_g']['type']]
        assert count_params(build_network(opt['network_g'], scale)) == pytest.approx(want, abs=5e3)
