"""BasicSR option files load as they are (issue 19.1) and train, with only the nets shrunk by ``--set``.

The three files follow the key set of BasicSR's own ``options/train/EDSR/train_EDSR_Mx4.yml``,
``options/train/RCAN/train_RCAN_x2.yml`` and ``options/train/SwinIR/train_SwinIR_SRx2_scratch_P48W8_DIV2K_500k_B4G8.yml``
(``!!float 5e3`` frequencies, ``logger.wandb``, ``dist_params``, ``prefetch_mode: ~``, SwinIR's
``model_type: SwinIRModel``); only the data roots point at tiny synthetic images.
"""
from pathlib import Path

import pytest

from ckdsr.data.image_io import read_image, write_png
from ckdsr.data.matlab_imresize import bicubic_downsample
from tests.helpers.tiny_run import make_image_folder
from ckdsr.utils.option_spec import OptionError
from ckdsr.utils.options import load_options, yaml_value

_DATA = """
datasets:
  train:
    name: DIV2K
    type: PairedImageDataset
    dataroot_gt: @GT@
    dataroot_lq: @LQ@
    meta_info_file: ~
    filename_tmpl: '{}'
    io_backend:
      type: disk

    gt_size: @GT_SIZE@
    use_hflip: true
    use_rot: true

    # data loader
    use_shuffle: true
    num_worker_per_gpu: 6
    batch_size_per_gpu: @BATCH@
    dataset_enlarge_ratio: @ENLARGE@
    prefetch_mode: ~

  val:
    name: Set5
    type: PairedImageDataset
    dataroot_gt: @VAL_GT@
    dataroot_lq: @VAL_LQ@
    io_backend:
      type: disk
"""

_TAIL = """
# path
path:
  pretrain_network_g: ~
  strict_load_g: true
  resume_state: ~

# training settings
train:
  ema_decay: 0.999
  optim_g:
    type: Adam
    lr: !!float @LR@
    weight_decay: 0
    betas: [0.9, 0.99]

  scheduler:
    type: MultiStepLR
    milestones: @MILESTONES@
    gamma: 0.5

  total_iter: @TOTAL@
  warmup_iter: -1  # no warm up

  # losses
  pixel_opt:
    type: L1Loss
    loss_weight: 1.0
    reduction: mean

# validation settings
val:
  val_freq: !!float 5e3
  save_img: false

  metrics:
    psnr: # metric name, can be arbitrary
      type: calculate_psnr
      crop_border: @SCALE@
      test_y_channel: @Y@

# logging settings
logger:
  print_freq: 100
  save_checkpoint_freq: !!float 5e3
  use_tb_logger: true
  wandb:
    project: ~
    resume_id: ~

# dist training settings
dist_params:
  backend: nccl
  port: 29500
"""

EDSR = """# general settings
name: 203_EDSR_Mx4_f64b16_DIV2K_300k_B16G1_wandb
model_type: SRModel
scale: 4
num_gpu: 1  # set num_gpu: 0 for cpu mode
manual_seed: 10
""" + _DATA + """
# network structures
network_g:
  type: EDSR
  num_in_ch: 3
  num_out_ch: 3
  num_feat: 64
  num_block: 16
  upscale: 4
  res_scale: 1
  img_range: 255.
  rgb_mean: [0.4488, 0.4371, 0.4040]
""" + _TAIL

RCAN = """# general settings
name: 201_RCANx2_scratch_DIV2K_rand0
model_type: SRModel
scale: 2
num_gpu: 1  # set num_gpu: 0 for cpu mode
manual_seed: 10
""" + _DATA + """
# network structures
network_g:
  type: RCAN
  num_in_ch: 3
  num_out_ch: 3
  num_feat: 64
  num_group: 10
  num_block: 20
  squeeze_factor: 16
  upscale: 2
  res_scale: 1
  img_range: 255.
  rgb_mean: [0.4488, 0.4371, 0.4040]
""" + _TAIL

SWINIR = """# general settings
name: train_SwinIR_SRx2_scratch_P48W8_DIV2K_500k_B4G8
model_type: SwinIRModel
scale: 2
num_gpu: auto
manual_seed: 0
""" + _DATA + """
# network structures
network_g:
  type: SwinIR
  upscale: 2
  in_chans: 3
  img_size: 48
  window_size: 8
  img_range: 1.
  depths: [6, 6, 6, 6, 6, 6]
  embed_dim: 180
  num_heads: [6, 6, 6, 6, 6, 6]
  mlp_ratio: 2
  upsampler: 'pixelshuffle'
  resi_connection: '1conv'
""" + _TAIL

# (file text, scale, values of the BasicSR file, --set that shrink the net)
CASES = {
    'EDSR': (EDSR, 4, {'GT_SIZE': '192', 'BATCH': '16', 'ENLARGE': '100', 'LR': '1e-4',
                       'MILESTONES': '[200000]', 'TOTAL': '300000', 'Y': 'false'},
             ['network_g.num_feat=8', 'network_g.num_block=1']),
    'RCAN': (RCAN, 2, {'GT_SIZE': '96', 'BATCH': '16', 'ENLARGE': '100', 'LR': '1e-4',
                       'MILESTONES': '[200000]', 'TOTAL': '300000', 'Y': 'false'},
             ['network_g.num_feat=16', 'network_g.num_group=1', 'network_g.num_block=1']),
    'SwinIR': (SWINIR, 2, {'GT_SIZE': '96', 'BATCH': '4', 'ENLARGE': '1', 'LR': '2e-4',
                           'MILESTONES': '[250000, 400000, 450000, 475000]', 'TOTAL': '500000', 'Y': 'true'},
               ['network_g.img_size=12', 'network_g.window_size=4', 'network_g.depths=[1]',
                'network_g.embed_dim=12', 'network_g.num_heads=[2]']),
}


def _paired_folder(root: Path, n: int, size: int, scale: int, seed: int):
    """HR images in ``root/HR`` and their bicubic LR, under the same names, in ``root/LR``."""
    make_image_folder(root, n, size=size, seed=seed)
    (root / 'LR').mkdir(exist_ok=True)
    for p in sorted((root / 'HR').iterdir()):
        write_png(str(root / 'LR' / p.name), bicubic_downsample(read_image(str(p)), scale))
    return root / 'HR', root / 'LR'


def write_basicsr_file(tmp_path: Path, arch: str) -> Path:
    text, scale, values, _ = CASES[arch]
    gt, lq = _paired_folder(tmp_path / 'train', 4, 48, scale, seed=1)
    val_gt, val_lq = _paired_folder(tmp_path / 'val', 1, 24, scale, seed=2)
    values = dict(values, GT=gt, LQ=lq, VAL_GT=val_gt, VAL_LQ=val_lq, SCALE=scale)
    for key, value in values.items():
        text = text.replace(f'@{key}@', str(value))
    path = tmp_path / f'train_{arch}.yml'
    path.write_text(text)
    return path


def small_run(tmp_path: Path, arch: str):
    """``--set`` a user would give for a CPU smoke run: tiny net, patches and batch, two iterations."""
    return CASES[arch][3] + [
        'num_gpu=0', f'path.experiments_root={tmp_path / "experiments"}', 'train.total_iter=2e0',
        'datasets.train.gt_size=24', 'datasets.train.batch_size_per_gpu=2', 'datasets.train.num_worker_per_gpu=0',
        'val.val_freq=2', 'logger.print_freq=1', 'logger.use_tb_logger=false']


@pytest.mark.parametrize('arch', sorted(CASES))
def test_basicsr_file_loads_unchanged_with_its_frequencies_as_ints(tmp_path, arch):
    path = write_basicsr_file(tmp_path, arch)
    with pytest.raises(OptionError, match='gt_size'):  # a real check still runs: 192/96 px > the 48 px images
        load_options(str(path))
    opt = load_options(str(path), sets=['datasets.train.gt_size=24'])
    assert opt['val']['val_freq'] == 5000 and type(opt['val']['val_freq']) is int
    assert opt['logger']['save_checkpoint_freq'] == 5000 and type(opt['logger']['save_checkpoint_freq']) is int
    assert opt['logger']['wandb'] == {'project': None, 'resume_id': None, 'entity': None}
    assert opt['train']['optim_g']['lr'] == pytest.approx(float(CASES[arch][2]['LR']))
    assert opt['model_type'] == 'SRModel'  # SwinIRModel is read as SRModel
    assert opt['dist_params'] == {'backend': 'nccl', 'port': 29500}


@pytest.mark.parametrize('arch', sorted(CASES))
def test_basicsr_file_trains_two_iterations(tmp_path, arch):
    from ckdsr.engine.trainer import Trainer
    path = write_basicsr_file(tmp_path, arch)
    opt = load_options(str(path), sets=small_run(tmp_path, arch))
    assert opt['train']['total_iter'] == 2 and type(opt['train']['total_iter']) is int
    result = Trainer(opt).run()
    assert result['iter'] == 2 and result['stopped'] is None
    assert result['best']['metric'] == 'psnr' and result['best']['iter'] == 2
    root = tmp_path / 'experiments' / opt['name']
    assert (root / 'models' / 'net_g_latest.pth').is_file()


@pytest.mark.parametrize('text, expected', [('1e3', 1000), ('5e3', 5000), ('!!float 5e3', 5000), ('300000', 300000)])
def test_integral_floats_become_ints_on_the_command_line(tmp_path, text, expected):
    path = write_basicsr_file(tmp_path, 'EDSR')
    opt = load_options(str(path), sets=['datasets.train.gt_size=24', f'train.total_iter={text}',
                                        f'logger.print_freq={text}'])
    assert opt['train']['total_iter'] == expected and type(opt['train']['total_iter']) is int
    assert type(opt['logger']['print_freq']) is int
    assert yaml_value(text) == expected


def test_fractional_float_for_an_int_is_one_clear_line(tmp_path):
    path = write_basicsr_file(tmp_path, 'EDSR')
    text = path.read_text().replace('val_freq: !!float 5e3', 'val_freq: 5000.5')
    path.write_text(text)
    with pytest.raises(OptionError) as err:
        load_options(str(path), sets=['datasets.train.gt_size=24', 'train.total_iter=1e3'])
    assert str(err.value) == f'{path}: val.val_freq: expected int, got float 5000.5'
    with pytest.raises(OptionError) as err:
        load_options(str(path), sets=['datasets.train.gt_size=24', 'train.total_iter=2.5',
                                      'val.val_freq=5e3'])
    assert str(err.value) == '--set: train.total_iter: expected int, got float 2.5'


def test_integral_floats_inside_int_lists_and_arch_arguments(tmp_path):
    path = write_basicsr_file(tmp_path, 'SwinIR')
    opt = load_options(str(path), sets=['datasets.train.gt_size=24', 'network_g.depths=[2e0, 2.0]',
                                        'network_g.embed_dim=1.2e1', 'network_g.num_heads=[2, 2]',
                                        'train.scheduler.milestones=[2.5e5, 4e5]'])
    assert opt['network_g']['depths'] == [2, 2] and all(type(d) is int for d in opt['network_g']['depths'])
    assert opt['network_g']['embed_dim'] == 12 and type(opt['network_g']['embed_dim']) is int
    assert opt['train']['scheduler']['milestones'] == [250000, 400000]
    assert opt['network_g']['mlp_ratio'] == 2  # an int where a float is wanted stays as written


def test_prefetch_mode_outside_basicsr_values_is_rejected(tmp_path):
    path = write_basicsr_file(tmp_path, 'EDSR')
    with pytest.raises(OptionError, match=r"^--set: datasets\.train\.prefetch_mode: expected one of 'cpu', 'cuda' or null, got str 'gpu'$"):
        load_options(str(path), sets=['datasets.train.gt_size=24', 'datasets.train.prefetch_mode=gpu'])


def test_metric_better_higher_is_a_no_op_and_lower_is_refused(tmp_path):
    path = write_basicsr_file(tmp_path, 'EDSR')
    text = path.read_text().replace('test_y_channel: false',
                                    'test_y_channel: false\n      better: higher  # the higher, the better. Default: higher')
    path.write_text(text)
    opt = load_options(str(path), sets=['datasets.train.gt_size=24'])
    assert opt['val']['metrics']['psnr'] == {'type': 'calculate_psnr', 'crop_border': 4, 'test_y_channel': False}
    with pytest.raises(OptionError) as err:
        load_options(str(path), sets=['datasets.train.gt_size=24', 'val.metrics.psnr.better=lower'])
    assert str(err.value) == ("--set: val.metrics.psnr.better: only 'higher' is supported (ckdsr keeps the best "
                              "checkpoint by the highest first metric), got 'lower'")
