"""PCL-SISR in KDModel: samples, discriminator embedding, the alternation, variants, resume."""
import copy
import io
import logging

import pytest
import torch
import torch.nn.functional as F

from ckdsr.losses.pcl_discriminator_loss import dual_contrastive_loss
from ckdsr.models import build_model
from ckdsr.models.distill.pcl import OFFICIAL_NO_GRAD_WARNING
from tests.helpers.kd import save_standin_teacher, tiny_kd_options
from tests.helpers.tiny_run import tiny_sr_options, write_options
from ckdsr.utils.option_spec import OptionError
from ckdsr.utils.options import load_options

TINY_D = {'type': 'PCLDiscriminator', 'num_feat': 4, 'num_blocks': 8}
L1 = {'type': 'L1Loss', 'weight': 1.0, 'name': 'l_pix'}
PCL_TERM = {'type': 'PCLInfoNCELoss', 'weight': 1.0, 'name': 'l_cl'}


def pcl_options(tmp_path, variant='paper', teacher=False, losses=None, **pcl):
    losses = losses or [L1, PCL_TERM]
    if teacher:
        opt = tiny_kd_options(tmp_path, losses)
    else:
        opt = tiny_sr_options(tmp_path)
        opt['model_type'] = 'KDModel'
        opt['network_g'] = {'type': 'EDSR', 'num_feat': 8, 'num_block': 1}
        opt['train'].pop('pixel_opt')
        opt['train']['losses'] = losses
    opt['distill'] = {'pcl': {'variant': variant, 'network_d': dict(TINY_D), **pcl}}
    return opt


def build(tmp_path, opt, name='pcl.yml', seed=0):
    torch.manual_seed(seed)
    return build_model(load_options(str(write_options(opt, tmp_path / name))))


def batch(it=0, scale=2, b=2, size=8):
    g = torch.Generator().manual_seed(100 + it)
    return {'lq': torch.rand(b, 3, size, size, generator=g),
            'gt': torch.rand(b, 3, size * scale, size * scale, generator=g)}


def fresh_step(model, b):
    model.feed_data(b)
    return model.new_step()


def pcl(model):
    return next(c for c in model.components if c.name == 'pcl')


# ---------------------------------------------------------------------------- samples and signals
def test_samples_and_embedding_signals(tmp_path):
    model = build(tmp_path, pcl_options(tmp_path))
    b = batch()
    step = fresh_step(model, b)
    pos, neg = step['positives'], step['negatives']
    assert pos.shape == neg.shape == (2, 4, 3, 16, 16)
    assert torch.equal(pos[:, 0], b['gt'])  # GT is the first positive
    up = F.interpolate(b['lq'], size=(16, 16), mode='bicubic', align_corners=False).clamp(0, 1)
    # paper: K_N = 4 negatives, all blurred GT -- the upsampled LR is not one of them
    assert not any(torch.allclose(neg[:, k], up, atol=1e-3) for k in range(4))
    assert not torch.equal(pos[:, 1], b['gt']) and not torch.equal(neg[:, 0], b['gt'])
    # tiny D (4..32 channels), Haar halves 16 -> 8; paper taps: blocks 0, 1, 2, 3 at strides 1, 2, 2, 4
    assert [tuple(f.shape) for f in step['emb_sr']] == [(2, 4, 8, 8), (2, 4, 4, 4), (2, 8, 4, 4), (2, 8, 2, 2)]
    assert [tuple(f.shape) for f in step['emb_positives']] == [(2, 4, 4, 8, 8), (2, 4, 4, 4, 4),
                                                                (2, 4, 8, 4, 4), (2, 4, 8, 2, 2)]
    official = build(tmp_path, pcl_options(tmp_path, 'official'), name='official.yml')
    neg_o = fresh_step(official, b)['negatives']
    up_ac = F.interpolate(b['lq'], size=(16, 16), mode='bicubic', align_corners=True).clamp(0, 1)
    assert torch.equal(neg_o[:, 0], up_ac)  # official: the upsampled LR is the first negative
    assert step['emb_sr'][0].requires_grad and not step['emb_negatives'][0].requires_grad


def test_paper_embedding_is_eval_bn_and_batch_invariant(tmp_path):
    """Paper variant: D in eval mode, so the one batched pass over all 16 sample images equals
    embedding each image on its own."""
    model = build(tmp_path, pcl_options(tmp_path))
    step = fresh_step(model, batch())
    comp = pcl(model)
    emb = step['emb_negatives']
    assert not comp.net_d.training
    one = comp.net_d.forward_features(step['negatives'][1, 2:3], comp.taps)
    for layer, f in zip(emb, one):
        assert torch.allclose(layer[1, 2], f[0], atol=1e-6)


def test_official_embedding_is_train_bn_one_pass_per_set(tmp_path):
    """Official variant: train-mode BN, one pass per image set (B images), like the released code."""
    model = build(tmp_path, pcl_options(tmp_path, 'official'))
    comp = pcl(model)
    assert comp.taps == [4] and comp.net_d.tap_point == 'post_act' and comp.embed_bn == 'batch'
    step = fresh_step(model, batch())
    emb = step['emb_positives']
    ref = copy.deepcopy(comp.net_d).train()
    with torch.no_grad():
        f = ref.forward_features(step['positives'][:, 2], [4])[0]  # the batch of third positives
    assert torch.allclose(emb[0][:, 2], f, atol=1e-6)
    with torch.no_grad():  # a joint batch would give different BN statistics: the check can fail
        joint = ref.forward_features(step['positives'].reshape(-1, 3, 16, 16), [4])[0]
    assert not torch.allclose(joint.reshape(2, 4, *joint.shape[1:])[:, 2], f, atol=1e-4)


# ---------------------------------------------------------------------------- gradients of the term
def test_paper_contrastive_term_alone_trains_the_sr_net(tmp_path):
    model = build(tmp_path, pcl_options(tmp_path))
    step = fresh_step(model, batch())
    value = next(t for t in model.terms if t.name == 'l_cl')(step)  # the weighted term alone
    grads = torch.autograd.grad(value, list(model.net_g.parameters()))
    assert value.requires_grad and value.item() > 0
    assert sum(g.abs().sum().item() for g in grads) > 0
    assert all(g.abs().sum() > 0 for g in grads[-2:])  # reaches the last conv
    assert all(p.grad is None for p in pcl(model).net_d.parameters())  # D is frozen: no grads there


def test_official_contrastive_term_gives_exactly_zero_gradient(tmp_path, caplog):
    opt = pcl_options(tmp_path, 'official', losses=[L1, {**PCL_TERM, 'weight': 5.0}])
    with caplog.at_level(logging.WARNING):
        model = build(tmp_path, opt)
    assert any(OFFICIAL_NO_GRAD_WARNING in r.getMessage() for r in caplog.records)
    model.feed_data(batch())
    losses = model.compute_losses(1)
    assert losses['l_cl'].item() > 0 and not losses['l_cl'].requires_grad  # computed and logged
    params = list(model.net_g.parameters())
    g_total = torch.autograd.grad(sum(losses.values()), params, retain_graph=True)
    g_l1 = torch.autograd.grad(losses['l_pix'], params)
    for a, b in zip(g_total, g_l1):
        assert torch.equal(a, b)  # L1 + 5 * L_CL trains exactly like L1 alone


def test_paper_total_gradient_differs_from_l1_alone(tmp_path):
    model = build(tmp_path, pcl_options(tmp_path))
    model.feed_data(batch())
    losses = model.compute_losses(1)
    params = list(model.net_g.parameters())
    g_total = torch.autograd.grad(sum(losses.values()), params, retain_graph=True)
    g_l1 = torch.autograd.grad(losses['l_pix'], params)
    assert any(not torch.equal(a, b) for a, b in zip(g_total, g_l1))


# ---------------------------------------------------------------------------- the discriminator step
@pytest.mark.parametrize('variant, blurred', [('paper', (0, 1, 2, 3)), ('official', (1, 2, 3))])
def test_discriminator_step_feeds_real_positives_fake_blurred_and_sr(tmp_path, variant, blurred):
    """Replay the D step by hand: SGD(lr) on the dual contrastive loss with real = the 4 positives,
    fake = the blurred-GT negatives (paper: all 4; official: the 3 after the upsampled LR, which is
    not shown to D) + the detached SR output."""
    lr = 0.5
    model = build(tmp_path, pcl_options(tmp_path, variant, optim_d={'type': 'SGD', 'lr': lr}))
    comp = pcl(model)
    d0 = copy.deepcopy(comp.net_d)
    g_ids = {id(p) for g in model.optimizers['g'].param_groups for p in g['params']}
    assert not g_ids & {id(p) for p in comp.net_d.parameters()}  # D is not in the SR optimizer
    assert isinstance(comp.optimizer_d, torch.optim.SGD)

    out = model.train_step(batch(), 1)
    step = model.last_step
    sr, pos, neg = step['sr'].detach(), step['positives'], step['negatives']
    ref = d0.train().requires_grad_(True)
    logits_sr = ref(sr)
    real = torch.cat([ref(pos[:, k]) for k in range(4)])
    fake = torch.cat([ref(neg[:, k]) for k in blurred] + [logits_sr])
    loss = dual_contrastive_loss(real, fake)
    loss.backward()
    assert torch.allclose(out['l_pcl_d'], loss.detach(), atol=1e-6)
    changed = 0
    for (name, p), p0 in zip(comp.net_d.named_parameters(), ref.parameters()):
        expected = p0.detach() - lr * p0.grad
        assert torch.allclose(p, expected, atol=1e-6), name
        changed += int(not torch.equal(p, p0.detach()))
    assert changed == len(list(ref.parameters()))  # every D parameter moved
    same = [torch.equal(b, b0) for b, b0 in zip(comp.net_d.buffers(), ref.buffers())]
    if variant == 'paper':
        assert all(same)  # BN statistics from the same per-set passes (the embedding ran in eval mode)
    else:
        assert not all(same)  # official: the train-mode embedding passes of the SR step moved them too
    # D is frozen again, without stale gradients, and the SR net did its own step
    assert all(not p.requires_grad and p.grad is None for p in comp.net_d.parameters())
    assert set(out) == {'l_pix', 'l_cl', 'l_total', 'l_pcl_d'}


def test_discriminator_has_own_schedule(tmp_path):
    opt = pcl_options(tmp_path, optim_d={'type': 'Adam', 'lr': 1e-3},
                      scheduler_d={'type': 'MultiStepLR', 'milestones': [1], 'gamma': 0.1})
    model = build(tmp_path, opt)
    comp = pcl(model)
    model.train_step(batch(0), 1)
    assert comp.optimizer_d.param_groups[0]['lr'] == pytest.approx(1e-3)
    model.train_step(batch(1), 2)
    assert comp.optimizer_d.param_groups[0]['lr'] == pytest.approx(1e-4)
    assert model.optimizers['g'].param_groups[0]['lr'] == pytest.approx(1e-3)  # G: its own schedule


# ---------------------------------------------------------------------------- resume
@pytest.mark.parametrize('variant', ['paper', 'official'])
def test_resume_is_bit_exact_including_discriminator(tmp_path, variant):
    opt = pcl_options(tmp_path, variant)
    straight = build(tmp_path, opt, seed=0)
    for it in range(1, 5):
        straight.train_step(batch(it), it)

    first = build(tmp_path, opt, seed=0)
    for it in (1, 2):
        first.train_step(batch(it), it)
    buf = io.BytesIO()
    torch.save(first.training_state(), buf)
    assert set(first.training_state()['extra']['pcl']) >= {'net_d', 'optimizer_d', 'generator'}

    other = copy.deepcopy(opt)
    other['manual_seed'] = 123  # another sample-generator seed and other initial weights:
    resumed = build(tmp_path, other, name='other.yml', seed=1)  # only the state can make it match
    buf.seek(0)
    resumed.load_training_state(torch.load(buf, weights_only=False))
    for it in (3, 4):
        resumed.train_step(batch(it), it)

    for (k, a), b in zip(straight.net_g.state_dict().items(), resumed.net_g.state_dict().values()):
        assert torch.equal(a, b), k
    for (k, a), b in zip(pcl(straight).net_d.state_dict().items(), pcl(resumed).net_d.state_dict().values()):
        assert torch.equal(a, b), k
    assert torch.equal(pcl(straight).generator.get_state(), pcl(resumed).generator.get_state())


# ---------------------------------------------------------------------------- where PCL runs
def test_fine_tuning_stage_starts_from_pretrained_weights_without_teacher(tmp_path):
    opt = pcl_options(tmp_path)
    opt['path']['pretrain_network_g'] = str(save_standin_teacher(opt['network_g'], tmp_path / 'g.pth', 2, seed=5))
    model = build(tmp_path, opt)
    saved = torch.load(tmp_path / 'g.pth')['params']
    assert model.teacher is None
    for k, v in model.net_g.state_dict().items():
        assert torch.equal(v, saved[k]), k
    out = model.train_step(batch(), 1)
    assert torch.isfinite(out['l_total']) and 'l_pcl_d' in out


def test_pcl_term_inside_a_kd_run_with_teacher(tmp_path):
    losses = [L1, {'type': 'L1Loss', 'weight': 1.0, 'name': 'l_kd', 'inputs': {'target': 'teacher_sr'}}, PCL_TERM]
    model = build(tmp_path, pcl_options(tmp_path, teacher=True, losses=losses))
    out = model.train_step(batch(), 1)
    assert set(out) == {'l_pix', 'l_kd', 'l_cl', 'l_total', 'l_pcl_d'}
    assert model.last_step.calls['teacher_sr'] == 1 and model.last_step.calls['positives'] == 1


def test_signal_clash_is_an_error_and_prefix_resolves_it(tmp_path):
    opt = pcl_options(tmp_path)
    opt['distill']['negatives'] = {'num': 2}
    with pytest.raises(ValueError, match=r"distill.pcl and distill.negatives both provide \['negatives'\]"):
        build(tmp_path, opt)
    opt['distill']['pcl']['signal_prefix'] = 'pcl_'
    opt['train']['losses'] = [L1, {**PCL_TERM, 'inputs': {'anchor': 'pcl_emb_sr', 'positives': 'pcl_emb_positives',
                                                          'negatives': 'pcl_emb_negatives'}}]
    model = build(tmp_path, opt)
    out = model.train_step(batch(), 1)
    assert 'l_pcl_d' in out and model.last_step.values['pcl_positives'].shape[1] == 4


def test_options_are_validated_with_key_paths(tmp_path):
    opt = pcl_options(tmp_path, optim_d={'type': 'Adam', 'lrr': 1e-4})
    with pytest.raises(OptionError, match=r"distill.pcl.optim_d.lrr: unknown key "
                                          r"\(did you mean 'distill.pcl.optim_d.lr'"):
        load_options(str(write_options(opt, tmp_path / 'bad.yml')))
    opt = pcl_options(tmp_path, variant='offical')
    with pytest.raises(OptionError, match=r"distill.pcl.variant: expected one of 'paper', 'official'"):
        load_options(str(write_options(opt, tmp_path / 'bad.yml')))
    opt = pcl_options(tmp_path, taps=[8])
    with pytest.raises(ValueError, match=r'distill.pcl.taps: \[8\] must be block indices in 0..7'):
        build(tmp_path, opt)


# ---------------------------------------------------------------------------- two processes
def _ddp_worker(rank, world_size, opt_path, out_dir):
    import os
    from ckdsr.utils import dist as D
    D.init_dist('pytorch', backend='gloo')
    torch.manual_seed(0)
    model = build_model(load_options(opt_path), rank=rank, world_size=world_size, device=torch.device('cpu'))
    comp = pcl(model)
    d0 = copy.deepcopy(comp.net_d.state_dict())
    model.train_step(batch(rank), 1)  # each rank its own batch
    step = model.last_step
    torch.save({'d0': d0, 'd1': comp.net_d.state_dict(), 'sr': step['sr'].detach(),
                'pos': step['positives'], 'neg': step['negatives']}, os.path.join(out_dir, f'{rank}.pt'))
    D.barrier()
    D.destroy()


@pytest.mark.slow  # two processes: ~30 s on the shared 2-core machine
def test_two_processes_average_discriminator_grads_and_bn_stats(tmp_path):
    """Under DDP each rank steps D with the mean of both ranks' gradients and ends with the mean BN
    statistics: replayed here from each rank's SR output and samples."""
    from tests.helpers.gloo import run_env_gloo
    lr = 0.5
    opt = pcl_options(tmp_path, optim_d={'type': 'SGD', 'lr': lr})
    path = write_options(opt, tmp_path / 'ddp.yml')
    run_env_gloo(_ddp_worker, str(path), str(tmp_path))
    res = [torch.load(tmp_path / f'{r}.pt', weights_only=False) for r in range(2)]
    for k in res[0]['d1']:
        assert torch.equal(res[0]['d0'][k], res[1]['d0'][k])  # same start
        assert torch.equal(res[0]['d1'][k], res[1]['d1'][k]), k  # same end on both ranks
    model = build(tmp_path, pcl_options(tmp_path))
    grads, bufs = [], []
    for r in res:
        ref = copy.deepcopy(pcl(model).net_d)
        ref.load_state_dict(r['d0'])
        ref.train().requires_grad_(True)
        d_sr = ref(r['sr'])
        real = torch.cat([ref(r['pos'][:, k]) for k in range(4)])
        fake = torch.cat([ref(r['neg'][:, k]) for k in range(4)] + [d_sr])  # paper: 4 blurred GT, no LR
        dual_contrastive_loss(real, fake).backward()
        grads.append({n: p.grad for n, p in ref.named_parameters()})
        bufs.append({n: b for n, b in ref.named_buffers()})
    rank0_only = 0
    for n in grads[0]:
        expected = res[0]['d0'][n] - lr * (grads[0][n] + grads[1][n]) / 2
        assert torch.allclose(res[0]['d1'][n], expected, atol=1e-6), n
        rank0_only += int(not torch.allclose(res[0]['d1'][n], res[0]['d0'][n] - lr * grads[0][n], atol=1e-6))
    assert rank0_only > 0  # the ranks' gradients differ: the average is what was applied
    for n in bufs[0]:
        if bufs[0][n].is_floating_point():
            assert torch.allclose(res[0]['d1'][n], (bufs[0][n] + bufs[1][n]) / 2, atol=1e-6), n
