"""Issue 17 points 1, 6, 7: the DCKD and PCL-SISR settings of the shipped option files (paper versus
released), the PCL sample sets and the DCKD history model's source and negatives.

The paper values pinned here (DCKD, AAAI 2025, Implementation Details; PCL-SISR, IEEE TNNLS 2023)
are listed with their sources in docs/dckd.md and docs/pcl.md.
"""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ckdsr.data import pcl_samples
from ckdsr.data.pcl_samples import make_pcl_samples, sharpen, sharpness_factors
from ckdsr.models.distill import history as history_mod
from ckdsr.models.distill import pcl as pcl_mod
from ckdsr.models.schedulers import build_scheduler
from tests.test_dckd_history import batch as dckd_batch
from tests.test_dckd_history import build as build_dckd
from tests.test_dckd_history import fill, history_of
from ckdsr.utils.options import read_yaml

OPTIONS = Path(__file__).resolve().parents[1] / 'options'
DCKD_PAPER = ['dckd_rcan_x2.yml', 'dckd_rcan_x3.yml', 'dckd_rcan_x4.yml', 'dckd_rcan_x4_offline.yml',
              'dckd_swinir_x2.yml', 'dckd_swinir_x3.yml', 'dckd_swinir_x4.yml', 'dckd_star_swinir_x4.yml']
DCKD_OFFICIAL = ['dckd_star_swinir_x4_official.yml']
# the DCKD Table 2 comparison: logits KD in place, scratch students and FAKD in options/dckd_baselines/
COMPARISON = {f'kd_rcan_x{s}.yml': f'dckd_rcan_x{s}.yml' for s in (2, 3, 4)}
COMPARISON.update({f'dckd_baselines/fakd_rcan_x{s}.yml': f'dckd_rcan_x{s}.yml' for s in (2, 3, 4)})
COMPARISON.update({f'dckd_baselines/scratch_rcan_10x6_x{s}.yml': f'dckd_rcan_x{s}.yml' for s in (2, 3, 4)})
COMPARISON.update({f'dckd_baselines/scratch_swinir_s60_x{s}.yml': f'dckd_swinir_x{s}.yml' for s in (2, 3, 4)})
PAPER_TRAIN = {'optim_g': {'type': 'Adam', 'lr': 1e-4, 'weight_decay': 0, 'betas': [0.9, 0.99], 'eps': 1e-8},
               'scheduler': {'type': 'MultiStepLR', 'milestones': [100000, 200000], 'gamma': 0.1},
               'total_iter': 250000}


def opt(name):
    return read_yaml(str(OPTIONS / name))


def lr_at(scheduler_cfg, iters):
    param = torch.nn.Parameter(torch.zeros(1))
    sched = build_scheduler(torch.optim.Adam([param], lr=1e-4), scheduler_cfg)
    return [sched.get_lr_at(it)[0] for it in iters]


# ----------------------------------------------------------------------------------- 17.1 DCKD schedule
@pytest.mark.parametrize('name', DCKD_PAPER + list(COMPARISON))
def test_dckd_paper_and_comparison_files_use_the_paper_schedule(name):
    o = opt(name)
    train, data = o['train'], o['datasets']['train']
    for key, value in PAPER_TRAIN.items():
        assert train[key] == value, (name, key)
    assert data['batch_size_per_gpu'] == 16 and data['gt_size'] == 48 * o['scale'], name
    # x0.1 at every 1e5 updates: 1e-4 up to 100k, 1e-5 up to 200k, 1e-6 to the end
    got = lr_at(train['scheduler'], [1, 100000, 100001, 200000, 200001, 250000])
    assert got == pytest.approx([1e-4, 1e-4, 1e-5, 1e-5, 1e-6, 1e-6], rel=1e-9), name


@pytest.mark.parametrize('name', DCKD_OFFICIAL)
def test_dckd_official_file_keeps_the_released_constant_lr(name):
    train = opt(name)['train']
    assert train['scheduler'] == {'type': 'MultiStepLR', 'milestones': [250000], 'gamma': 0.1}
    assert train['total_iter'] == 250000
    assert set(lr_at(train['scheduler'], [1, 100001, 200001, 250000])) == {1e-4}  # never decays


@pytest.mark.parametrize('name', list(COMPARISON))
def test_comparison_files_use_the_dckd_networks(name):
    o, ref = opt(name), opt(COMPARISON[name])
    assert o['network_g'] == ref['network_g'] and o['scale'] == ref['scale'], name
    if o.get('network_t'):
        assert o['network_t'] == ref['network_t'], name
    assert o['manual_seed'] == ref['manual_seed'] == 10 and o['train']['ema_decay'] == 0.999


def test_comparison_set_is_complete():
    shipped = {p.relative_to(OPTIONS).as_posix() for p in (OPTIONS / 'dckd_baselines').glob('*.yml')}
    assert shipped == {k for k in COMPARISON if k.startswith('dckd_baselines/')}


# ----------------------------------------------------------------------------------- 17.7 DCKD history
@pytest.mark.parametrize('name', DCKD_PAPER + DCKD_OFFICIAL)
def test_dckd_files_history_variant_and_explicit_keys_agree(name):
    h = opt(name)['distill']['history']
    variant = 'official' if name in DCKD_OFFICIAL else 'paper'
    assert h['variant'] == variant
    expected = {'paper': ('student', False), 'official': ('ema', True)}[variant]
    assert (h['source'], h['include_clean']) == expected
    assert {k: history_mod.resolve({'variant': variant}, k) for k in ('source', 'include_clean')} == \
        dict(zip(('source', 'include_clean'), expected))
    assert h['num_degraded'] == 4


def test_dckd_official_file_switches():
    o = opt('dckd_star_swinir_x4_official.yml')
    assert o['distill']['embedding']['input_range'] == '01'
    assert o['distill']['lcr'] and any(t['type'] == 'LabelConsistencyLoss' for t in o['train']['losses'])
    assert next(t for t in o['train']['losses'] if t['type'] == 'DMMLoss')['variant'] == 'official'


@pytest.mark.parametrize('variant, n, clean_first', [('paper', 4, False), ('official', 5, True)])
def test_dckd_negatives_in_a_step(tmp_path, variant, n, clean_first):
    """Paper Eq. 4: N degraded images; release: the clean LR + 4 degraded copies. One forward of B*N."""
    model = build_dckd(tmp_path, {'variant': variant})
    hist = history_of(model)
    calls = []
    hist.net.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    b = dckd_batch()
    step = model.new_step()
    model.feed_data(b)
    negatives = step['negatives']
    assert calls == [2 * n]
    assert negatives.shape == (2, n, 3, 16, 16)
    with torch.no_grad():
        clean = hist.net(b['lq'])
    assert [torch.allclose(negatives[:, k], clean, atol=1e-6) for k in range(n)] == \
        [clean_first] + [False] * (n - 1)


@pytest.mark.parametrize('variant, expected', [('paper', 5.0), ('official', 3.0)])
def test_dckd_history_source_student_or_ema(tmp_path, variant, expected):
    model = build_dckd(tmp_path, {'variant': variant, 'schedule': [[10, 1]]})
    hist = history_of(model)
    fill(hist.net, 0.0)
    fill(model.ema.module, 3.0)
    fill(model.net_g, 5.0)
    hist.after_step(model, 1)  # 0.1 * 0 + 0.9 * source
    assert all(torch.allclose(p, torch.full_like(p, 0.9 * expected)) for p in hist.net.parameters())


# ----------------------------------------------------------------------------------- 17.6 PCL files
def test_pcl_paper_file():
    o = opt('pcl_edsr_x4.yml')
    p = o['distill']['pcl']
    assert p['variant'] == 'paper'
    assert o['train']['total_iter'] == 200000
    assert sum(o['train']['scheduler']['periods']) == 200000
    assert sum(p['scheduler_d']['periods']) == 200000
    assert p['taps'] == [0, 1, 2, 3]  # "the first 4 intermediate layers"
    assert p['num_neg'] == 4 and p['include_lr'] is False  # K_N = 4, all blurred GT
    assert p['num_pos'] == 4 and p['sharp_range'][0] >= 1.0  # GT + sharpened GT, factors > 1
    defaults = {k: pcl_mod.resolve({'variant': 'paper'}, k) for k in ('taps', 'include_lr', 'sharp_range')}
    assert (list(defaults['taps']), defaults['include_lr'], list(defaults['sharp_range'])) == \
        (p['taps'], p['include_lr'], p['sharp_range'])  # the file writes out its variant's defaults


@pytest.mark.parametrize('variant, taps, include_lr, sharp', [('paper', [0, 1, 2, 3], False, (1.0, 3.0)),
                                                              ('official', [4], True, (0.5, 3.0))])
def test_pcl_component_takes_the_variant_defaults(tmp_path, variant, taps, include_lr, sharp):
    from tests.test_pcl_model import build as build_pcl
    from tests.test_pcl_model import pcl, pcl_options
    comp = pcl(build_pcl(tmp_path, pcl_options(tmp_path, variant)))
    assert comp.taps == taps
    assert comp.sample_kwargs['include_lr'] is include_lr and comp.sample_kwargs['sharp_range'] == sharp


def test_pcl_official_file_keeps_the_script():
    o = opt('pcl_rcan_x4.yml')
    p = o['distill']['pcl']
    assert p['variant'] == 'official'
    assert o['train']['total_iter'] == 600000
    assert o['train']['scheduler']['periods'] == [200000, 200000, 200000]  # three cosine restarts
    assert p['taps'] == [4] and p['include_lr'] is True and p['sharp_range'] == [0.5, 3.0]
    assert pcl_mod.resolve({'variant': 'official'}, 'include_lr') is True
    assert tuple(pcl_mod.resolve({'variant': 'official'}, 'sharp_range')) == (0.5, 3.0)


# ----------------------------------------------------------------------------------- 17.6 PCL samples
def pair(b=2, h=16, scale=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, h, h, generator=g), torch.rand(b, 3, h // scale, h // scale, generator=g)


def test_paper_samples_blurred_negatives_and_sharpened_positives():
    gt, lr = pair()
    kw = {k: pcl_mod.resolve({'variant': 'paper'}, k) for k in ('include_lr', 'sharp_range')}
    pos, neg = make_pcl_samples(gt, lr, 4, generator=torch.Generator().manual_seed(3), **kw)
    assert pos.shape == neg.shape == (2, 4, 3, 16, 16)
    # the factors are the generator's first draws: replay them
    factors = sharpness_factors(2 * 3, kw['sharp_range'], torch.Generator().manual_seed(3), gt.device)
    assert bool((factors > 1.0).all()) and bool((factors <= 3.0).all())
    assert torch.equal(pos[:, 0], gt)
    expected = sharpen(gt.unsqueeze(1).expand(2, 3, 3, 16, 16).reshape(6, 3, 16, 16), factors)
    assert torch.equal(pos[:, 1:], expected.reshape(2, 3, 3, 16, 16))
    up = F.interpolate(lr, size=(16, 16), mode='bicubic', align_corners=False).clamp(0, 1)
    for k in range(4):  # every negative is a blurred GT: smoother than GT, not the upsampled LR
        assert not torch.allclose(neg[:, k], up, atol=1e-3)
        assert (neg[:, k] - gt).abs().mean() > 0
        assert neg[:, k].diff(dim=-1).abs().mean() < gt.diff(dim=-1).abs().mean()


def test_official_samples_put_the_upsampled_lr_first():
    gt, lr = pair()
    pos, neg = make_pcl_samples(gt, lr, 4, generator=torch.Generator().manual_seed(3), include_lr=True,
                                sharp_range=(0.5, 3.0), align_corners=True)
    up = F.interpolate(lr, size=(16, 16), mode='bicubic', align_corners=True).clamp(0, 1)
    assert torch.equal(neg[:, 0], up)
    factors = sharpness_factors(2 * 3, (0.5, 3.0), torch.Generator().manual_seed(3), gt.device)
    assert bool((factors > 0.5).all()) and bool((factors <= 3.0).all())


def test_sharpness_factors_exclude_the_lower_bound(monkeypatch):
    """The largest u torch.rand can return (1 - 2^-24) still gives a factor above 1 in float32."""
    u_max = torch.tensor(1.0 - 2.0 ** -24)
    assert u_max < 1.0
    monkeypatch.setattr(pcl_samples, 'rand_uniform', lambda shape, lo, hi, g, dev: u_max.expand(shape))
    f = sharpness_factors(3, (1.0, 3.0), None, torch.device('cpu'))
    assert bool((f > 1.0).all())
    monkeypatch.setattr(pcl_samples, 'rand_uniform', lambda shape, lo, hi, g, dev: torch.zeros(shape))
    assert bool((sharpness_factors(3, (1.0, 3.0), None, torch.device('cpu')) == 3.0).all())


def test_bad_sharp_range_names_the_key():
    gt, lr = pair()
    with pytest.raises(ValueError, match='sharp_range'):
        make_pcl_samples(gt, lr, 4, sharp_range=(2.0, 1.0))
