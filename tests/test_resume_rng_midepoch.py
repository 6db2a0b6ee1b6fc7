"""Resume in the middle of an epoch, end to end through the Trainer, on a step that draws from the
global RNG (issue 22 point 1).

The run: offline DCKD (random degradations of the LR for the negatives, from the method's own
generator) with a tiny SwinIR student whose stochastic depth (``drop_path_rate``) draws its masks
from the global torch generator at every training forward. 6 images, batch 2: 3 iterations per
epoch; a state every 2 iterations, so the state at iteration 2 lies inside the first epoch (one
batch of it left) and the resumed run also crosses an epoch boundary. Resuming from it must give
the weights of the uninterrupted run bit for bit; with the RNG restore disabled
(``ckdsr.engine.trainer.set_rng_state`` made a no-op) it must not, which shows the test depends on it.
"""
import torch
import torch.nn.functional as F

from ckdsr.models.distill.teacher_embedding import save_codebook
from tests.helpers.kd import tiny_kd_options
from tests.helpers.tiny_run import write_options
from ckdsr.utils.options import load_options

TEACHER = {'type': 'EDSR', 'num_feat': 16, 'num_block': 3}
STUDENT = {'type': 'SwinIR', 'embed_dim': 8, 'depths': [2], 'num_heads': [2], 'window_size': 4, 'mlp_ratio': 2,
           'upsampler': 'pixelshuffle', 'img_size': 8, 'drop_path_rate': 0.5}
LOSSES = [{'type': 'L1Loss', 'name': 'l_pix'},
          {'type': 'L1Loss', 'name': 'l_kd', 'inputs': {'target': 'teacher_sr'}},
          {'type': 'ContrastiveRatioLoss', 'weight': 0.1, 'name': 'l_dcl', 'weights': [0.5, 1.0]},
          {'type': 'DMMLoss', 'weight': 0.001, 'name': 'l_ce'}]
TOTAL, SAVE_EVERY, RESUME_AT = 5, 2, 2


def options(root, name, resume_state=None):
    root.mkdir(parents=True, exist_ok=True)
    codebook = save_codebook(str(root / 'cb.pth'), F.normalize(torch.randn(8, 16, generator=torch.Generator()
                                                                           .manual_seed(3)), dim=1),
                             {'z_tap': 'body.1', 'normalize_z': True, 'downscale': 2})
    distill = {'teacher_embedding': {'taps': ['body.0', 'body.1'], 'z_tap': 'body.1', 'codebook_path': codebook},
               'history': {'schedule': [[100, 1]]}}
    opt = tiny_kd_options(root, LOSSES, distill, teacher=TEACHER, student=STUDENT, total_iter=TOTAL,
                          ema_decay=0.999)
    opt['name'] = name
    opt['val']['val_freq'] = 10 ** 6
    opt['logger'].update(save_checkpoint_freq=SAVE_EVERY, print_freq=1, keep_states=None)
    if resume_state:
        opt['path']['resume_state'] = str(resume_state)
    return load_options(str(write_options(opt, root / f'{name}.yml')))


def final_weights(trainer):
    trainer.run()
    state = torch.load(trainer.paths.models + '/net_g_latest.pth', map_location='cpu')
    return state


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        for name in a[k]:
            assert torch.equal(a[k][name], b[k][name]), (k, name)


def differs(a, b):
    return any(not torch.equal(a[k][name], b[k][name]) for k in a for name in a[k])


def test_mid_epoch_resume_through_the_trainer_restores_the_global_rng(tmp_path, monkeypatch):
    from ckdsr.engine import trainer as trainer_mod
    from ckdsr.engine.trainer import Trainer

    ref = Trainer(options(tmp_path / 'ref', 'ref'))
    assert len(ref.train_set) == 6 and ref.loader.batch_size == 2  # 3 iterations per epoch
    ref_weights = final_weights(ref)
    state = tmp_path / 'ref' / 'experiments' / 'ref' / 'training_states' / f'{RESUME_AT}.state'
    saved = torch.load(state, map_location='cpu', weights_only=False)
    assert saved['iter'] == RESUME_AT and saved['epoch'] == 0
    assert saved['sampler']['position'] == 2 * RESUME_AT < 6  # inside the epoch, not at its end

    # the step really draws from the global torch RNG: the same step under two global states differs
    net = ref.model.net_g.train()
    lq = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.manual_seed(1)
        out1 = net(lq)
        torch.manual_seed(2)
        out2 = net(lq)
    assert not torch.equal(out1, out2)

    resumed = Trainer(options(tmp_path / 'resumed', 'resumed', resume_state=state))
    assert resumed.current_iter == RESUME_AT
    assert_same(final_weights(resumed), ref_weights)

    # the same resume without the RNG restore ends elsewhere: the test above depends on it
    monkeypatch.setattr(trainer_mod, 'set_rng_state', lambda s: None)
    no_rng = Trainer(options(tmp_path / 'no_rng', 'no_rng', resume_state=state))
    assert no_rng.current_iter == RESUME_AT
    assert differs(final_weights(no_rng), ref_weights)
