"""Two gloo processes: every copy of the trained net is rank 0's from step 0 (issue 16, point 4).

Each rank seeds with ``manual_seed + rank``, so each builds its own random init; DDP broadcasts
rank 0's weights into the trained net only. The EMA student, DCKD's history model (a copy of the
EMA) and FACD's randomly initialised regressors must be rank 0's too, or rank 1 validates its
shard with another network and draws negatives from another history model.
"""
import copy

import torch

from ckdsr.models.network_io import unwrap
from tests.helpers.gloo import run_gloo
from tests.helpers.kd import tiny_kd_options
from tests.helpers.tiny_run import write_options
from ckdsr.utils.options import load_options

PATHS = ['body.0', 'body.1']
TOTAL = 4


def _options(tmp_path):
    losses = [
        {'type': 'FACDReconstructionLoss', 'weight': 1.0, 'name': 'l_sr', 'inputs': {'alpha': 'alpha'}},
        {'type': 'FACDFeatureContrastLoss', 'weight': 4.0, 'name': 'l_facd', 'tap_weights': [0.5, 0.5],
         'normalize': 'none', 'inputs': {'student_feats': 'student_feats_regressed_global',
                                         'teacher_feats': 'teacher_feats_normalized_global',
                                         'alpha': 'alpha_global'}},
    ]
    # FACD's negatives are the other images of the GLOBAL batch: its contrast reads gathered signals
    distill = {'taps': {'student': PATHS, 'teacher': PATHS}, 'facd': {},
               'gather': {'signals': ['student_feats_regressed', 'teacher_feats_normalized', 'alpha']},
               'history': {'source': 'ema', 'schedule': [[100, 2]], 'num_degraded': 1}}
    opt = tiny_kd_options(tmp_path, losses, distill, ema_decay=0.9, total_iter=TOTAL)
    opt['val']['val_freq'] = TOTAL
    opt['logger']['save_checkpoint_freq'] = TOTAL
    return opt


def _component(model, name):
    return next(c for c in model.components if c.name == name)


def _copies(model):
    """Every copy of the trained net, as CPU state dicts."""
    def sd(net):
        return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    return {'net_g': sd(unwrap(model.net_g)), 'ema': sd(model.ema.module),
            'history': sd(_component(model, 'history').net), 'regressors': sd(_component(model, 'facd').regressors)}


def _train_worker(rank, world_size, opt_file, out_dir):
    from ckdsr.engine.trainer import Trainer
    trainer = Trainer(load_options(opt_file))
    at_start = _copies(trainer.model)
    trainer.run()  # TOTAL steps, validating at the last one
    torch.save({'start': at_start, 'end': _copies(trainer.model), 'best': trainer.best,
                'history_updates': _component(trainer.model, 'history').updates},
               f'{out_dir}/{rank}.pt')


def _validate_worker(rank, world_size, opt_file, ema_file, out_file):
    """One process: Trainer.validate of the EMA weights in ``ema_file``."""
    from ckdsr.engine.trainer import Trainer
    trainer = Trainer(load_options(opt_file))
    assert trainer.world_size == 1
    trainer.model.ema.module.load_state_dict(torch.load(ema_file, weights_only=True))
    trainer.current_iter = TOTAL
    torch.save(trainer.validate(), out_file)


def _assert_bit_equal(a, b, what):
    assert a.keys() == b.keys(), what
    for k in a:
        assert torch.equal(a[k], b[k]), f'{what}: {k} differs between rank 0 and rank 1'


def test_two_ranks_hold_identical_ema_history_and_components_and_validate_like_one(tmp_path):
    opt = _options(tmp_path)
    opt_file = write_options(opt, tmp_path / 'ddp.yml')
    run_gloo(_train_worker, tmp_path, str(opt_file), str(tmp_path))
    r0, r1 = (torch.load(tmp_path / f'{r}.pt', weights_only=False) for r in range(2))
    assert r0['history_updates'] == r1['history_updates'] == TOTAL // 2  # the history model did move
    for when in ('start', 'end'):
        for what in ('net_g', 'ema', 'history', 'regressors'):
            _assert_bit_equal(r0[when][what], r1[when][what], f'{what} at {when}')
    # not vacuous: the EMA and the history model lag the student after training
    assert any(not torch.equal(r0['end']['ema'][k], r0['end']['net_g'][k]) for k in r0['end']['ema'])
    assert any(not torch.equal(r0['end']['history'][k], r0['end']['ema'][k]) for k in r0['end']['ema'])

    # DDP validation (each rank scored one of the two images with its EMA) == one process scoring
    # both with rank 0's EMA weights (in a child process too: the Trainer stays out of pytest's)
    single = copy.deepcopy(opt)
    single['name'] = 'tiny_single'
    torch.save(r0['end']['ema'], tmp_path / 'ema.pth')
    run_gloo(_validate_worker, tmp_path, str(write_options(single, tmp_path / 'single.yml')),
             str(tmp_path / 'ema.pth'), str(tmp_path / 'single.pt'), world_size=1)
    results = torch.load(tmp_path / 'single.pt', weights_only=False)
    assert r0['best']['iter'] == TOTAL and r0['best'] == r1['best']
    assert results['tinyval'][r0['best']['metric']] == r0['best']['value']


def _sync_worker(rank, world_size, out_dir):
    from types import SimpleNamespace

    from torch import nn

    from ckdsr.models.ema import ModelEMA
    from ckdsr.models.replica_sync import replicated_modules, sync_replicas
    torch.manual_seed(100 + rank)  # each rank its own init, as under seed_everything(seed, rank)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    net[1].num_batches_tracked.fill_(rank + 3)  # an integer buffer travels too
    ema = ModelEMA(net, 0.9)
    comp = SimpleNamespace(name='comp', regressor=nn.Linear(2, 2), history=ModelEMA(ema.module, 0.1), note=5)
    model = SimpleNamespace(net_g=net, ema=ema, components=[comp])
    names = [n for n, _ in replicated_modules(model)]
    before = {n: {k: v.clone() for k, v in m.state_dict().items()} for n, m in replicated_modules(model)}
    sync_replicas(model)
    after = {n: m.state_dict() for n, m in replicated_modules(model)}
    ema.update(net)  # the EMA's cached tensor lists survived the in-place broadcast
    bad = SimpleNamespace(net_g=nn.Linear(2, 2 + rank), ema=None, components=[])
    try:
        sync_replicas(bad)
        error = None
    except RuntimeError as err:
        error = str(err)
    torch.save({'names': names, 'before': before, 'after': after, 'error': error}, f'{out_dir}/sync{rank}.pt')


def test_sync_replicas_copies_every_tensor_from_rank_0_and_refuses_different_networks(tmp_path):
    run_gloo(_sync_worker, tmp_path, str(tmp_path))
    r0, r1 = (torch.load(tmp_path / f'sync{r}.pt', weights_only=False) for r in range(2))
    assert r0['names'] == ['network_g', 'ema', 'comp.history', 'comp.regressor']
    for name in r0['names']:
        _assert_bit_equal(r0['after'][name], r0['before'][name], f'{name} on rank 0')  # rank 0 keeps its own
        _assert_bit_equal(r1['after'][name], r0['before'][name], f'{name} on rank 1')  # rank 1 gets rank 0's
        assert any(not torch.equal(r1['before'][name][k], r0['before'][name][k]) for k in r0['before'][name])
    assert r1['after']['network_g']['1.num_batches_tracked'].item() == 3
    expected = ("DDP: rank 1 built different networks than rank 0 (first difference: "
                "('network_g.weight', (3, 2), 'torch.float32') vs ('network_g.weight', (2, 2), 'torch.float32')); "
                'every rank must use the same options')
    assert r0['error'] == r1['error'] == expected
