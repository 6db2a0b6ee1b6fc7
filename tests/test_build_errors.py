"""Bad input gets one ``error:`` line and exit status 2, naming the option key and where the value
came from: the option file, or ``--set`` (issue 16, point 10). Structural mistakes (a network's
scale, layer-weight counts) are found when the model is built, before any data is read.

``tools/train.py``'s ``main`` runs in this process (no interpreter start-up per case).
"""
from pathlib import Path

import pytest
import torch

from ckdsr.models import build_model
from ckdsr.models.build_checks import check_layer_weights, check_scales
from ckdsr.models.network_io import build_network
from tests.helpers.kd import tiny_kd_options
from tests.helpers.tiny_run import write_options
from ckdsr.tools.create_lmdb import main as create_lmdb_main
from ckdsr.tools.train import main as train_main
from ckdsr.utils.option_spec import OptionError
from ckdsr.utils.options import load_options

KD_LOSSES = [{'type': 'L1Loss', 'name': 'l_pix'},
             {'type': 'L1Loss', 'name': 'l_kd', 'inputs': {'target': 'teacher_sr'}}]


@pytest.fixture(scope='module')
def kd_run(tmp_path_factory):
    """A tiny x2 KD option file (48 px training photos, EDSR 16->8 stand-in teacher) and bad files."""
    tmp = tmp_path_factory.mktemp('kd')
    opt = tiny_kd_options(tmp, KD_LOSSES, total_iter=1)
    files = {'options': write_options(opt, tmp / 'kd.yml')}
    files['garbage'] = tmp / 'garbage.pth'
    files['garbage'].write_bytes(b'not a checkpoint at all ' * 8)
    files['truncated'] = tmp / 'truncated.pth'
    files['truncated'].write_bytes((tmp / 'teacher.pth').read_bytes()[:600])
    files['rcan'] = tmp / 'rcan.pth'
    torch.save({'params': build_network({'type': 'RCAN', 'num_group': 1, 'num_block': 1, 'num_feat': 16},
                                        2).state_dict()}, files['rcan'])
    return tmp, opt, files


def run_train(argv, capsys):
    code = train_main(argv)
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.startswith('error: ')]


SET_CASES = {  # --set value -> the one error line after 'error: --set: '
    'datasets.train.batch_size_per_gpu=0': 'datasets.train.batch_size_per_gpu: must be >= 1, got 0',
    'datasets.train.num_worker_per_gpu=-1': 'datasets.train.num_worker_per_gpu: must be >= 0, got -1',
    'train.optim_g.lr=fast': "train.optim_g.lr: expected number or Tensor, got str 'fast'",
    'datasets.train.gt_size=15': 'datasets.train.gt_size: 15 is not a multiple of scale 2 (the LR patch would be 7.5 px)',
    'network_g.upscale=4': 'network_g.upscale: 4 differs from scale 2 (leave it out: it defaults to scale)',
    'network_t.upscale=3': 'network_t.upscale: 3 differs from scale 2 (leave it out: it defaults to scale)',
    'train.total_iter=0': 'train.total_iter: must be >= 1, got 0',
    'train.total_iter=-5': 'train.total_iter: must be >= 1, got -5',
    'trian.total_iter=3': "trian: unknown key (did you mean 'train'?)",
    'train.optim_g.lr=-1': 'train.optim_g: Invalid learning rate: -1',  # torch's own check, keyed
    'train.optim_g.betas=[0.9]': 'train.optim_g.betas: expected list of 2 (number or Tensor), got list [0.9]',
    'train.ema_decay=2': 'train.ema_decay: must be <= 1, got 2',
    'scale=0': 'scale: must be >= 1, got 0',
    'num_gpu=-3': 'num_gpu: must be >= 0, got -3',
    'logger.print_freq=0': 'logger.print_freq: must be >= 1, got 0',
    'datasets.train.io_backend.type=lmbd': (
        "datasets.train.io_backend.type: No storage backend named 'lmbd'. Did you mean 'lmdb'? Registered: disk, "
        'lmdb, memory'),
    'train.losses.1.inputs.target=teacher_srr': (
        "train.losses: unknown signal 'teacher_srr' (did you mean 'teacher_sr'?); available: gt, lq, sr, "
        'student_feats, teacher_feats, teacher_sr'),
}


@pytest.mark.parametrize('override', list(SET_CASES))
def test_bad_set_value_is_one_error_line_naming_set_and_the_key(override, kd_run, capsys, tmp_path):
    _, _, files = kd_run
    code, lines = run_train(['-opt', str(files['options']), '--set', override,
                             f'path.experiments_root={tmp_path}'], capsys)
    assert (code, lines) == (2, [f'error: --set: {SET_CASES[override]}'])


def test_dataroot_that_is_a_file(kd_run, capsys):
    _, _, files = kd_run
    code, lines = run_train(['-opt', str(files['options']), '--set', f'datasets.train.dataroot_gt={files["rcan"]}'],
                            capsys)
    assert (code, lines) == (2, [f'error: --set: datasets.train.dataroot_gt: {files["rcan"]} is a file; expected a '
                                 'folder of images or an .lmdb folder'])


@pytest.mark.filterwarnings('ignore:Initializing zero-element tensors')
def test_a_network_that_cannot_run_is_reported_with_its_key(kd_run, capsys, tmp_path):
    _, _, files = kd_run
    code, lines = run_train(['-opt', str(files['options']), '--set', 'network_g.num_feat=0',
                             f'path.experiments_root={tmp_path}'], capsys)
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith('error: --set: network_g: one forward of a 1x3x8x8 input failed (RuntimeError: ')


def test_patch_larger_than_the_training_images(kd_run, capsys, tmp_path):
    tmp, _, files = kd_run
    code, lines = run_train(['-opt', str(files['options']), '--set', 'datasets.train.gt_size=64'], capsys)
    assert (code, lines) == (2, [f'error: --set: datasets.train.gt_size: 64 is larger than the training image '
                                 f'0000.png (48x48, w x h) in {tmp / "train" / "HR"}'])


@pytest.mark.parametrize('name, message', [
    ('garbage', '{} is not a readable weights-only torch checkpoint (Unsupported operand 110); the file is '
                'damaged or not a PyTorch checkpoint'),
    ('truncated', '{} is not a readable weights-only torch checkpoint (PytorchStreamReader failed reading zip '
                  'archive: failed finding central directory); the file is damaged or not a PyTorch checkpoint'),
    ('rcan', "{} (layout 'basicsr', param_key 'params') does not fit EDSR: "),
])
def test_bad_teacher_file_is_one_line_naming_the_option(name, message, kd_run, capsys, tmp_path):
    _, _, files = kd_run
    code, lines = run_train(['-opt', str(files['options']), '--set', f'path.pretrain_network_t={files[name]}',
                             f'path.experiments_root={tmp_path}'], capsys)
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith(f'error: --set: path.pretrain_network_t: {message.format(files[name])}')


def test_a_mistake_in_the_file_names_the_file_not_set(kd_run, capsys, tmp_path):
    tmp, opt, _ = kd_run
    bad = {**opt, 'datasets': {**opt['datasets'], 'train': {**opt['datasets']['train'], 'batch_size_per_gpu': 0}}}
    path = write_options(bad, tmp_path / 'bad.yml')
    code, lines = run_train(['-opt', str(path), '--set', 'train.total_iter=2'], capsys)
    assert (code, lines) == (2, [f'error: {path}: datasets.train.batch_size_per_gpu: must be >= 1, got 0'])


def test_debug_keeps_the_traceback(kd_run, capsys):
    _, _, files = kd_run
    with pytest.raises(OptionError, match='train.total_iter: must be >= 1'):
        train_main(['-opt', str(files['options']), '--set', 'train.total_iter=0', '--debug'])


def test_a_network_with_the_wrong_scale_is_found_by_one_tiny_forward(kd_run):
    """Nets built for x2 checked against scale 3 (as an arch whose scale is not its `upscale` key
    would be): the forward probe names each network, instead of a shape mismatch at the first step."""
    tmp, _, _ = kd_run
    model = build_model(load_options(str(tmp / 'kd.yml')), check=False)
    assert check_scales(model, 2) == []
    assert check_scales(model, 3) == [
        f'{key}: maps a 8x8 input to 16x16, not 24x24 (scale 3); check {key}.upscale and the options that set '
        'its scale' for key in ('network_g', 'network_t')]


def test_probe_leaves_random_streams_and_modes_alone(kd_run):
    tmp, opt, _ = kd_run
    model = build_model(load_options(str(tmp / 'kd.yml')), check=False)
    state = torch.get_rng_state()
    check_scales(model, 2)
    assert torch.equal(state, torch.get_rng_state())
    assert model.net_g.training and not model.teacher.net.training


FACD_TAPS = ['body.0', 'body.1', 'body.2']


def test_tap_weights_count_must_match_the_taps(tmp_path, capsys):
    losses = [{'type': 'FACDReconstructionLoss', 'name': 'l_sr', 'inputs': {'alpha': 'alpha'}},
              {'type': 'FACDFeatureContrastLoss', 'weight': 4.0, 'name': 'l_facd', 'tap_weights': [0.5, 0.3, 0.2],
               'normalize': 'none', 'inputs': {'student_feats': 'student_feats_regressed',
                                               'teacher_feats': 'teacher_feats_normalized', 'alpha': 'alpha'}}]
    opt = tiny_kd_options(tmp_path, losses, {'taps': {'student': FACD_TAPS, 'teacher': FACD_TAPS}, 'facd': {}},
                          teacher={'type': 'EDSR', 'num_feat': 16, 'num_block': 3},
                          student={'type': 'EDSR', 'num_feat': 8, 'num_block': 3}, total_iter=1)
    path = write_options(opt, tmp_path / 'facd.yml')
    code, lines = run_train(['-opt', str(path), '--set', 'train.losses.1.tap_weights=[0.5,0.5]'], capsys)
    assert (code, lines) == (2, ['error: --set: train.losses.1.tap_weights: 2 weights for the 3 taps of '
                                 'distill.taps.student'])


def test_embedding_layer_weights_must_match_the_embedding_layers(tmp_path):
    losses = [{'type': 'L1Loss'}, {'type': 'ContrastiveRatioLoss', 'weight': 0.1, 'name': 'l_dcl', 'weights': [1.0]}]
    opt = tiny_kd_options(tmp_path, losses, {'teacher_embedding': {'taps': ['body.0', 'body.1']}, 'history': {}},
                          teacher={'type': 'EDSR', 'num_feat': 16, 'num_block': 3})
    model = build_model(load_options(str(write_options(opt, tmp_path / 'o.yml'))), check=False)
    assert check_layer_weights(model) == [
        'train.losses.1.weights: 1 layer weights for the 2 layers of distill.teacher_embedding']
    with pytest.raises(OptionError, match='train.losses.1.weights: 1 layer weights'):
        build_model(model.opt)


def test_create_lmdb_crop_larger_than_the_images_and_existing_output(tmp_path, capsys):
    from tests.helpers.tiny_run import make_image_folder
    hr = make_image_folder(tmp_path / 'img', 2, size=48) / 'HR'
    assert create_lmdb_main(['--hr', str(hr), '--out', str(tmp_path / 'a'), '--scale', '2', '--crop-size', '96',
                             '--workers', '1']) == 2
    lines = [x for x in capsys.readouterr().err.splitlines() if 'error: ' in x]
    assert [x[x.index('error: '):] for x in lines] == [
        f'error: --crop-size: HR {hr / "0000.png"} (48x48 after mod-crop to a multiple of 2) is smaller than '
        'crop_size 96; use a smaller crop_size']
    args = ['--hr', str(hr), '--out', str(tmp_path / 'b'), '--scale', '2', '--crop-size', '24', '--step', '24',
            '--workers', '1']
    assert create_lmdb_main(args) == 0
    capsys.readouterr()
    assert create_lmdb_main(args) == 2
    lines = [x for x in capsys.readouterr().err.splitlines() if 'error: ' in x]
    out = tmp_path / 'b'
    assert lines == [f'error: --out: {out / "img_HR_sub.lmdb"}, {out / "img_LR_bicubic_X2_sub.lmdb"} already exist(s); '
                     'pass overwrite=True (--overwrite) to rebuild']


def test_tools_test_prints_error_lines_and_debug_raises(tmp_path, capsys):
    from ckdsr.tools.test import main as test_main
    opt_file = str(Path(__file__).resolve().parents[1] / 'options' / 'test' / 'test_carn_m_x4.yml')
    argv = ['-opt', opt_file, '--set', 'scale=0']
    assert test_main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines and all(line.startswith('error: ') for line in lines)
    assert 'error: --set: scale: must be >= 1, got 0' in lines
    with pytest.raises(OptionError, match='scale: must be >= 1'):
        test_main(argv + ['--debug'])


@pytest.mark.parametrize('embedding, key', [
    ({'type': 'VQGANEncoder', 'ch': 32, 'z_channels': 32, 'embed_dim': 32, 'n_embed': 64, 'taps': [0, 1]},
     'checkpoint_path'),
    ({'type': 'VGG19Features', 'layers': ['relu1_1', 'relu2_1']}, 'weights_path'),
])
def test_garbage_embedding_weights_are_one_line_naming_the_option(embedding, key, tmp_path, capsys):
    garbage = tmp_path / 'garbage.ckpt'
    garbage.write_bytes(b'garbage' * 20)
    losses = [{'type': 'L1Loss'}, {'type': 'ContrastiveRatioLoss', 'weight': 0.1, 'name': 'l_dcl', 'weights': [1, 1]}]
    opt = tiny_kd_options(tmp_path, losses, {'embedding': {**embedding, key: str(garbage)}, 'negatives': {}},
                          total_iter=1)
    path = write_options(opt, tmp_path / 'o.yml')
    code, lines = run_train(['-opt', str(path)], capsys)
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith(f'error: {path}: distill.embedding.{key}: {garbage} is not a readable torch '
                               'checkpoint (')
    assert lines[0].endswith('); the file is damaged or not a PyTorch checkpoint')
