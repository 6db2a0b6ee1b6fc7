"""CSDModel: one slimmable net trained at two widths, contrastive term on VGG features."""
import copy
import os

import pytest
import torch
import torch.nn.functional as F

from ckdsr.archs.edsr import EDSR
from ckdsr.archs.slimmable_edsr import SlimmableEDSR
from ckdsr.models import build_model
from ckdsr.models.distill.negatives import BicubicNegatives
from ckdsr.archs.slimmable_ops import as_slimmable
from ckdsr.models.network_io import build_network, unwrap
from tests.helpers.gloo import run_env_gloo
from tests.helpers.kd import save_standin_teacher
from tests.helpers.tiny_run import tiny_sr_options, write_options
from ckdsr.utils.option_spec import OptionError
from ckdsr.utils.options import load_options

LAYERS = ['relu1_1', 'relu2_1']  # two VGG levels keep the tests fast; the option files use five
LAYER_WEIGHTS = [0.25, 1.0]
STUDENT_CH = 4  # 0.25 of 16


def csd_options(tmp, variant='paper', embedding=None, csd=None, losses=None, network=None, **train):
    """A tiny CSD run; ``init_from: scratch`` unless ``csd`` says otherwise (the pretrained default is
    tested on its own below)."""
    opt = tiny_sr_options(tmp, **train)
    opt['model_type'] = 'CSDModel'
    opt['network_g'] = network or {'type': 'SlimmableEDSR', 'num_feat': 16, 'num_block': 2, 'res_scale': 0.1}
    opt['train'].pop('pixel_opt')
    opt['train']['losses'] = losses or [
        {'type': 'L1Loss', 'weight': 255.0, 'name': 'l_pix'},
        {'type': 'ContrastiveRatioLoss', 'weight': 200.0, 'name': 'l_con', 'weights': LAYER_WEIGHTS},
        {'type': 'L1Loss', 'weight': 255.0, 'name': 'l_teacher', 'inputs': {'pred': 'teacher_sr'}},
    ]
    opt['distill'] = {
        'csd': {'variant': variant, 'student_width': 0.25, 'init_from': 'scratch', **(csd or {})},
        'negatives': {'source': 'bicubic', 'num': 10},
        'embedding': embedding or {'type': 'VGG19Features', 'layers': LAYERS, 'allow_random': True},
    }
    return opt


def build(tmp_path, name='csd.yml', **kw):
    return build_model(load_options(str(write_options(csd_options(tmp_path, **kw), tmp_path / name))))


def batch(b=3, size=8, scale=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {'lq': torch.rand(b, 3, size, size, generator=g),
            'gt': torch.rand(b, 3, size * scale, size * scale, generator=g)}


def negatives_component(model):
    return next(c for c in model.components if isinstance(c, BicubicNegatives))


def test_step_runs_the_shared_net_twice_and_vgg_once_per_side(tmp_path):
    model = build(tmp_path)
    net, vgg = unwrap(model.net_g), model.components[0].net
    widths, vgg_batches = [], []
    net.register_forward_pre_hook(lambda m, args, kwargs: widths.append(kwargs.get('width_mult')), with_kwargs=True)
    vgg.register_forward_pre_hook(lambda m, args: vgg_batches.append((args[0].shape[0], torch.is_grad_enabled())))
    b = batch(b=3)
    losses = model.train_step(b, 1)
    assert set(losses) == {'l_pix', 'l_con', 'l_teacher', 'l_total'}
    assert sorted(widths) == [0.25, 1.0]                       # student and teacher, nothing else
    # VGG: the student output with grad (B), teacher + 3 negatives (min(10, B)) in one no-grad pass
    assert sorted(vgg_batches) == [(3, True), (6, False)]
    assert model.last_step.calls == {'lq': 1, 'sr': 1, 'teacher_sr': 1, 'emb_sr': 1, 'negatives': 1,
                                     'emb_teacher_sr': 1}
    assert model.teacher is None and model.last_step.values['teacher_sr'].requires_grad


def _hand_contrastive(s, t, negs, vgg, weights, eps=1e-7):
    """Paper Eq. 5 written out: sum_i w_i mean|phi_i(S)-phi_i(T)| / (sum_k mean|phi_i(S)-phi_i(N_k)| + eps)."""
    fs, ft = vgg(s), vgg(t)
    fn = [vgg(negs[k:k + 1]) for k in range(negs.shape[0])]  # each negative on its own
    total = 0.0
    for i, w in enumerate(weights):
        pos = (fs[i] - ft[i]).abs().mean()
        neg = sum((fs[i] - fn[k][i].expand_as(fs[i])).abs().mean() for k in range(len(fn)))
        total = total + w * pos / (neg + eps)
    return total


@pytest.mark.parametrize('variant', ['paper', 'official'])
def test_loss_values_match_an_independent_computation(tmp_path, variant):
    model = build(tmp_path, variant=variant)
    net, vgg = unwrap(model.net_g), model.components[0].net
    b = batch(b=3)
    gen = torch.Generator()
    gen.set_state(negatives_component(model).generator.get_state())
    with torch.no_grad():
        s, t = net(b['lq'], width_mult=0.25), net(b['lq'], width_mult=1.0)
        idx = torch.randperm(3, generator=gen)
        negs = F.interpolate(b['lq'][idx], scale_factor=2, mode='bicubic', align_corners=False)
        if variant == 'paper':
            negs = negs.clamp(0, 1)
        con = _hand_contrastive(s, t, negs, vgg, LAYER_WEIGHTS)
    assert vgg.input_norm == {'paper': 'imagenet', 'official': 'none_255'}[variant]
    losses = model.train_step(b, 1)
    assert torch.allclose(losses['l_pix'], 255 * (s - b['gt']).abs().mean(), rtol=1e-5)
    assert torch.allclose(losses['l_teacher'], 255 * (t - b['gt']).abs().mean(), rtol=1e-5)
    assert torch.allclose(losses['l_con'], 200 * con, rtol=1e-4)
    assert 0 < con < 1


def test_gradients_reach_the_shared_weights_from_both_widths(tmp_path):
    model = build(tmp_path)
    model.feed_data(batch())
    losses = model.compute_losses(1)
    w = unwrap(model.net_g).body[0].conv1.weight  # 16 x 16 x 3 x 3; the student uses [:4, :4]
    grads = {k: torch.autograd.grad(v, w, retain_graph=True)[0] for k, v in losses.items()}
    inside = (slice(0, STUDENT_CH), slice(0, STUDENT_CH))
    outside = torch.ones_like(w, dtype=torch.bool)
    outside[inside] = False
    for name in ('l_pix', 'l_con'):  # student terms: the slice only (the teacher is detached in l_con)
        assert grads[name][inside].abs().sum() > 0, name
        assert torch.count_nonzero(grads[name][outside]) == 0, name
    assert grads['l_teacher'][outside].abs().sum() > 0 and grads['l_teacher'][inside].abs().sum() > 0
    sum(losses.values()).backward()
    assert torch.allclose(w.grad, grads['l_pix'] + grads['l_con'] + grads['l_teacher'], atol=1e-6)
    # why DDP needs no find_unused_parameters: even the student width alone gives EVERY parameter a
    # gradient tensor (zeros outside its slice), and the full width uses them all
    params = list(unwrap(model.net_g).parameters())
    assert all(p.grad is not None for p in params)
    model.feed_data(batch(seed=3))
    student_only = torch.autograd.grad(model.compute_losses(2)['l_pix'], params, allow_unused=True)
    assert all(g is not None for g in student_only)


def test_validation_and_export_use_the_student_width(tmp_path):
    from ckdsr.engine.trainer import Trainer
    from ckdsr.archs.checkpoint_layouts import load_pretrained
    from ckdsr.engine.evaluation import evaluate_dataset, make_forward
    opt = load_options(str(write_options(csd_options(tmp_path, total_iter=2, ema_decay=0.5), tmp_path / 'c.yml')))
    opt['val']['val_freq'] = 2
    opt['logger']['save_checkpoint_freq'] = 2
    trainer = Trainer(opt)
    trainer.run()
    model = trainer.model
    net = model.inference_net()
    assert net is model.ema.module and net.width_mult == 0.25 and unwrap(model.net_g).width_mult == 0.25
    x = batch(b=1)['lq']
    with torch.no_grad():
        assert torch.equal(net(x), net(x, width_mult=0.25))
    # the exported file: the whole shared net (params, params_ema) and a plain narrow EDSR
    path = tmp_path / 'experiments' / 'tiny' / 'models' / 'net_g_2.pth'
    state = torch.load(path, map_location='cpu', weights_only=True)
    assert set(state) == {'params', 'params_ema', 'params_student'}
    full = SlimmableEDSR(num_feat=16, num_block=2, res_scale=0.1, upscale=2)
    load_pretrained(full, str(path), param_key='params_ema')
    student = EDSR(num_feat=STUDENT_CH, num_block=2, res_scale=0.1, upscale=2)
    load_pretrained(student, str(path), param_key='params_student')
    with torch.no_grad():
        assert torch.allclose(student(x), full(x, width_mult=0.25), atol=1e-6)
        assert torch.allclose(student(x), net(x), atol=1e-6)
    # validation scored the student: same PSNR as the exported plain EDSR on the validation set
    results = trainer.validate()
    (name, ds), = trainer.val_sets.items()

    def mean_psnr(forward):
        rows = evaluate_dataset(forward, ds, 2, opt['val']['metrics'])
        return sum(r['psnr'] for r in rows) / len(rows)

    assert results[name]['psnr'] == pytest.approx(mean_psnr(make_forward(student, 2)), abs=1e-9)
    assert results[name]['psnr'] != pytest.approx(mean_psnr(lambda z: full(z, width_mult=1.0)), abs=1e-3)


def test_resume_state_holds_the_shared_net_once_and_resumes_exactly(tmp_path):
    torch.manual_seed(0)  # the same random stand-in VGG in both (real runs load its weights file)
    a = build(tmp_path, name='a.yml', ema_decay=0.9)
    a.train_step(batch(seed=1), 1)
    state = a.training_state()
    nets = state['networks']
    assert set(nets) == {'params', 'params_ema'}
    n_net = sum(v.numel() for v in unwrap(a.net_g).state_dict().values())
    assert sum(v.numel() for v in nets['params'].values()) == n_net
    assert set(state['extra']) == {'negatives'}  # the draw of the negatives; frozen VGG is not saved
    state = copy.deepcopy(state)
    torch.manual_seed(0)
    b = build(tmp_path, name='b.yml', ema_decay=0.9)
    b.load_training_state(state)
    la, lb = a.train_step(batch(seed=2), 2), b.train_step(batch(seed=2), 2)
    for k in la:
        assert torch.equal(la[k], lb[k]), k
    for k, v in unwrap(a.net_g).state_dict().items():
        assert torch.equal(v, unwrap(b.net_g).state_dict()[k]), k


def test_variant_fills_only_what_the_file_leaves_out(tmp_path):
    paper = build(tmp_path, name='p.yml')
    assert negatives_component(paper).clamp is True
    assert paper.components[0].net.input_norm == 'imagenet'
    official = build(tmp_path, name='o.yml', variant='official')
    assert negatives_component(official).clamp is False
    assert official.components[0].net.input_norm == 'none_255'
    explicit = build(tmp_path, name='e.yml', variant='official', csd={'clamp_negatives': True},
                     embedding={'type': 'VGG19Features', 'layers': LAYERS, 'allow_random': True, 'input_norm': 'none'})
    assert negatives_component(explicit).clamp is True
    assert explicit.components[0].net.input_norm == 'none'
    # the loaded option tree is left alone
    opt = load_options(str(write_options(csd_options(tmp_path, variant='official'), tmp_path / 'x.yml')))
    before = copy.deepcopy(opt)
    build_model(opt)
    assert opt == before


def test_official_negatives_keep_the_bicubic_overshoot(tmp_path):
    lq = torch.zeros(2, 3, 8, 8)
    lq[..., ::2, :] = 1.0  # stripes: bicubic overshoots past 0 and 1
    b = {'lq': lq, 'gt': torch.rand(2, 3, 16, 16)}
    for variant, outside in (('paper', False), ('official', True)):
        model = build(tmp_path, name=f'{variant}.yml', variant=variant)
        model.train_step(b, 1)
        negs = model.last_step.values['negatives']
        assert negs.shape == (2, 3, 16, 16)
        assert bool((negs < 0).any() or (negs > 1).any()) is outside, variant


def test_option_errors(tmp_path):
    opt = csd_options(tmp_path)
    opt['network_t'] = {'type': 'EDSR'}
    with pytest.raises(OptionError, match='network_t: unknown key'):
        load_options(str(write_options(opt, tmp_path / 'a.yml')))
    opt = csd_options(tmp_path)
    opt['network_g'] = {'type': 'EDSR', 'num_feat': 16, 'num_block': 1}
    with pytest.raises(TypeError, match='needs a slimmable network'):
        build_model(load_options(str(write_options(opt, tmp_path / 'b.yml'))))
    with pytest.raises(ValueError, match=r'distill.csd.student_width: .*width_mult 0.3 gives 4.8 of 16'):
        build(tmp_path, name='c.yml', csd={'student_width': 0.3})
    losses = [{'type': 'L1Loss'}, {'type': 'ContrastiveRatioLoss', 'weights': LAYER_WEIGHTS, 'detach_positive': False}]
    with pytest.raises(ValueError, match='detach_positive: false cannot train the teacher'):
        build(tmp_path, name='d.yml', losses=losses)


def _ddp_worker(rank, world_size, tmp):
    import torch.distributed as dist
    dist.init_process_group('gloo', rank=rank, world_size=world_size)  # env:// set by run_env_gloo
    opt = load_options(str(os.path.join(tmp, 'ddp.yml')))
    model = build_model(opt, rank=rank, world_size=world_size)
    assert isinstance(model.net_g, torch.nn.parallel.DistributedDataParallel)
    for it in (1, 2):
        model.train_step(batch(seed=10 * it + rank), it)  # different data on each rank
    dist.destroy_process_group()
    torch.save(unwrap(model.net_g).state_dict(), os.path.join(tmp, f'{rank}.pt'))


def test_two_process_ddp_keeps_the_shared_net_in_sync(tmp_path):
    opt = csd_options(tmp_path)  # the ratio's default reduce: global sums over both ranks (issue 17.8)
    write_options(opt, tmp_path / 'ddp.yml')
    run_env_gloo(_ddp_worker, str(tmp_path))
    s0, s1 = (torch.load(tmp_path / f'{r}.pt', weights_only=True) for r in range(2))
    init = unwrap(build(tmp_path, name='init.yml').net_g).state_dict()  # same seed: the start point
    for k in s0:
        assert torch.equal(s0[k], s1[k]), k
    assert any(not torch.equal(s0[k], init[k]) for k in s0)


# ----------------------------------------------------------------------------- init from a trained net
TINY_NETS = {  # plain trained network -> the slimmable network_g that CSD trains, and a student width
    'EDSR': ({'type': 'EDSR', 'num_feat': 16, 'num_block': 2, 'res_scale': 0.1},
             {'type': 'SlimmableEDSR', 'num_feat': 16, 'num_block': 2, 'res_scale': 0.1}, 0.25),
    'RCAN': ({'type': 'RCAN', 'num_feat': 16, 'num_group': 2, 'num_block': 1, 'squeeze_factor': 4},
             {'type': 'SlimmableRCAN', 'num_feat': 16, 'num_group': 2, 'num_block': 1, 'squeeze_factor': 4}, 0.5),
    'CARN_M': ({'type': 'CARN_M', 'num_feat': 16, 'group': 4},
               {'type': 'SlimmableCARN_M', 'num_feat': 16, 'group': 4}, 0.5),
}


def pretrained_options(tmp_path, kind, **kw):
    plain, slim, width = TINY_NETS[kind]
    weights = save_standin_teacher(plain, tmp_path / f'{kind}.pth', 2, seed=5)
    opt = csd_options(tmp_path, network=slim, csd={'init_from': 'pretrained', 'student_width': width}, **kw)
    opt['path']['pretrain_network_g'] = str(weights)
    return opt, weights


@pytest.mark.parametrize('kind', sorted(TINY_NETS))
def test_default_init_starts_from_the_trained_full_width_network(tmp_path, kind):
    opt, weights = pretrained_options(tmp_path, kind, ema_decay=0.9)
    opt['distill']['csd'].pop('init_from')  # the default
    model = build_model(load_options(str(write_options(opt, tmp_path / 'p.yml'))))
    trained = build_network(TINY_NETS[kind][0], 2)
    trained.load_state_dict(torch.load(weights, weights_only=True)['params'])
    net, width = unwrap(model.net_g), TINY_NETS[kind][2]
    for key, value in trained.state_dict().items():  # every weight is the trained network's
        assert torch.equal(net.state_dict()[key], value), key
        assert torch.equal(model.ema.module.state_dict()[key], value), key
    # the narrow net is the trained network's first channels (CARN-M: of each group)
    narrow = net.narrow_state_dict(width)
    for key, value in as_slimmable(trained).narrow_state_dict(width).items():
        assert torch.equal(narrow[key], value), key
    c = int(16 * width)
    first = {'EDSR': 'body.1.conv2.weight', 'RCAN': 'body.1.residual_group.0.rcab.2.weight'}.get(kind)
    if first:
        assert torch.equal(narrow[first], trained.state_dict()[first][:c, :c])
        assert torch.equal(narrow['conv_first.weight'], trained.state_dict()['conv_first.weight'][:c])
    x = batch(b=1)['lq']
    with torch.no_grad():  # so the student starts as the channel-split trained network
        assert torch.allclose(net(x), as_slimmable(trained).export(width)(x), atol=1e-6)
        assert torch.allclose(net(x, width_mult=1.0), trained(x), atol=1e-6)


def test_init_errors_name_the_keys(tmp_path):
    opt = csd_options(tmp_path, csd={'init_from': 'pretrained'})
    with pytest.raises(ValueError, match=r'distill.csd.init_from is pretrained \(the default\) but '
                                         r'path.pretrain_network_g is not set'):
        build_model(load_options(str(write_options(opt, tmp_path / 'a.yml'))))
    opt['path']['pretrain_network_g'] = str(tmp_path / 'missing.pth')
    with pytest.raises(OptionError, match=r'path.pretrain_network_g: file or folder not found: .*missing.pth'):
        build_model(load_options(str(write_options(opt, tmp_path / 'b.yml'))))
    opt, _ = pretrained_options(tmp_path, 'EDSR')
    opt['distill']['csd']['init_from'] = 'scratch'
    with pytest.raises(ValueError, match='init_from is scratch but path.pretrain_network_g is set'):
        build_model(load_options(str(write_options(opt, tmp_path / 'c.yml'))))


@pytest.mark.parametrize('kind', ['RCAN', 'CARN_M'])
def test_csd_step_and_student_export_on_rcan_and_carn(tmp_path, kind):
    opt, _ = pretrained_options(tmp_path, kind)
    model = build_model(load_options(str(write_options(opt, tmp_path / 'r.yml'))))
    widths = []
    net = unwrap(model.net_g)
    net.register_forward_pre_hook(lambda m, args, kwargs: widths.append(kwargs.get('width_mult')), with_kwargs=True)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    losses = model.train_step(batch(b=3), 1)
    width = TINY_NETS[kind][2]
    assert sorted(widths) == [width, 1.0] and all(torch.isfinite(v) for v in losses.values())
    assert any(not torch.equal(v, before[k]) for k, v in net.state_dict().items())
    student = build_network({**TINY_NETS[kind][0], 'num_feat': int(16 * width)}, 2)
    student.load_state_dict(model.network_state()['params_student'])  # a plain narrow RCAN / CARN-M
    x = batch(b=1)['lq']
    with torch.no_grad():
        assert torch.allclose(student(x), net(x, width_mult=width), atol=1e-6)


def _carn_ddp_worker(rank, world_size, tmp):
    import torch.distributed as dist
    dist.init_process_group('gloo', rank=rank, world_size=world_size)  # env:// set by run_env_gloo
    model = build_model(load_options(os.path.join(tmp, 'carn.yml')), rank=rank, world_size=world_size)
    assert model.net_g.find_unused_parameters  # the x3/x4 heads of the multi-scale net get no gradient
    for it in (1, 2):
        model.train_step(batch(seed=10 * it + rank), it)
    dist.destroy_process_group()
    torch.save(unwrap(model.net_g).state_dict(), os.path.join(tmp, f'carn{rank}.pt'))


def test_two_process_ddp_trains_the_multi_scale_carn_m(tmp_path):
    """Only one head of the multi-scale CARN-M runs: DDP must not wait for the others' gradients."""
    losses = [{'type': 'L1Loss', 'weight': 255.0, 'name': 'l_pix'},
              {'type': 'L1Loss', 'weight': 255.0, 'name': 'l_teacher', 'inputs': {'pred': 'teacher_sr'}}]
    opt, _ = pretrained_options(tmp_path, 'CARN_M', losses=losses)
    opt['distill'] = {'csd': opt['distill']['csd']}
    write_options(opt, tmp_path / 'carn.yml')
    run_env_gloo(_carn_ddp_worker, str(tmp_path))
    s0, s1 = (torch.load(tmp_path / f'carn{r}.pt', weights_only=True) for r in range(2))
    for k in s0:
        assert torch.equal(s0[k], s1[k]), k
    trained = torch.load(tmp_path / 'CARN_M.pth', weights_only=True)['params']
    assert not torch.equal(s0['entry.weight'], trained['entry.weight'])
    assert torch.equal(s0['upsample.up3.body.0.weight'], trained['upsample.up3.body.0.weight'])  # unused head


# ----------------------------------------------------------------------------- the shipped option files
def test_shipped_csd_files_start_from_a_trained_network():
    from tests.conftest import REPO_ROOT
    from ckdsr.utils.options import read_yaml
    files = sorted((REPO_ROOT / 'options').glob('csd_*.yml'))
    csd_files = [f for f in files if read_yaml(str(f))['model_type'] == 'CSDModel']
    names = {f.name for f in csd_files}
    assert {f'csd_{n}_x{s}.yml' for n in ('edsr', 'rcan') for s in (2, 3, 4)} | {'csd_carn_x4.yml'} <= names
    for f in csd_files:
        tree, text = read_yaml(str(f)), f.read_text()
        assert tree['distill']['csd'].get('init_from', 'pretrained') == 'pretrained', f.name
        assert tree['path']['pretrain_network_g'], f.name
        assert 'ASSUMPTION' in text and 'ImageNet mean/std' in text, f.name  # the "paper" VGG input
    for s in (2, 3, 4):
        tree = read_yaml(str(REPO_ROOT / 'options' / f'csd_rcan_x{s}.yml'))
        assert tree['network_g'] == {'type': 'SlimmableRCAN', 'num_feat': 64, 'num_group': 10, 'num_block': 20,
                                     'squeeze_factor': 16}
        assert tree['distill']['csd']['student_width'] == 0.75  # the released RCAN widths [0.75, 1.0]
    carn = read_yaml(str(REPO_ROOT / 'options' / 'csd_carn_x4.yml'))
    assert carn['network_g']['type'] == 'SlimmableCARN_M' and carn['path']['pretrain_network_g'].endswith('carn_m.pth')
