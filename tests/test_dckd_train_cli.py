"""`python tools/train.py -opt options/dckd_rcan_x4.yml` as users type it: the shipped nets, stand-in
weight files in the published formats, tiny data through --set."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers.standins import write_rcan_official, write_vqgan_lightning
from tests.helpers.tiny_run import make_image_folder
from ckdsr.utils.options import read_yaml

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / 'options' / 'dckd_rcan_x4.yml'
_spec = importlib.util.spec_from_file_location('ckdsr_train_cli', REPO / 'tools' / 'train.py')
train_cli = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_cli)


#: a narrower VQGAN (same levels, taps and layout) for the quick test; the RCAN pair stays as shipped
SMALL_VQGAN = {'ch': 32, 'z_channels': 32, 'embed_dim': 32, 'n_embed': 64}


def tiny_overrides(tmp: Path, with_weights: bool = True, small_vqgan: bool = False):
    """--set values: 2 synthetic 48 px photos (LR patch 12, batch 1), 1 iteration on the CPU."""
    tree = read_yaml(str(SHIPPED))
    if small_vqgan:
        tree['distill']['embedding'].update(SMALL_VQGAN)
    data = make_image_folder(tmp / 'data', 2, size=48)
    sets = [f'datasets.train.dataroot_gt={data / "HR"}', 'datasets.train.dataroot_lq=null',
            'datasets.train.lq_from_gt=true', 'datasets.train.io_backend.type=disk', 'datasets.train.gt_size=48',
            'datasets.train.batch_size_per_gpu=1', 'datasets.train.num_worker_per_gpu=0',
            'datasets.train.dataset_enlarge_ratio=1', f'datasets.val.dataroot={data}', 'train.total_iter=1',
            'num_gpu=0', f'path.experiments_root={tmp / "exp"}', 'logger.use_tb_logger=false', 'logger.print_freq=1']
    if with_weights:  # stand-ins in the published layouts: the RCAN authors' file, taming's Lightning 1.0 file
        teacher = write_rcan_official(tree['network_t'], tmp / 'RCAN_BIX4.pt', tree['scale'])
        vqgan = write_vqgan_lightning(tree['distill']['embedding'], tmp / 'last.ckpt')
        sets += [f'path.pretrain_network_t={teacher}', f'distill.embedding.checkpoint_path={vqgan}']
    if small_vqgan:
        sets += [f'distill.embedding.{k}={v}' for k, v in SMALL_VQGAN.items()]
    return sets


def check_run(tmp: Path):
    exp = tmp / 'exp' / 'dckd_rcan_x4'
    log = (exp / 'train.log').read_text()
    for term in ('l_pix', 'l_kd', 'l_dcl', 'l_ce', 'l_total'):
        assert term in log, term
    state = torch.load(exp / 'training_states' / '1.state', map_location='cpu', weights_only=False)
    assert set(state['model']['extra']['history']) >= {'weights', 'generator'}
    assert 'params_ema' in state['model']['networks']


def test_shipped_dckd_rcan_x4_trains_through_the_cli_entry_point(tmp_path):
    """tools/train.py's main() in this process (the command's code path without the interpreter
    start-up), the shipped RCAN 10x20 -> 10x6 pair, a narrower stand-in VQGAN; the slow tests below
    run the file exactly as shipped, in process and as a command."""
    assert train_cli.main(['-opt', str(SHIPPED), '--set', *tiny_overrides(tmp_path, small_vqgan=True)]) == 0
    check_run(tmp_path)


@pytest.mark.slow
def test_shipped_dckd_rcan_x4_full_size_trains_through_the_cli_entry_point(tmp_path):
    assert train_cli.main(['-opt', str(SHIPPED), '--set', *tiny_overrides(tmp_path)]) == 0
    check_run(tmp_path)


@pytest.mark.slow
def test_shipped_dckd_rcan_x4_trains_as_a_command(tmp_path):
    proc = subprocess.run([sys.executable, 'tools/train.py', '-opt', 'options/dckd_rcan_x4.yml', '--set',
                           *tiny_overrides(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_run(tmp_path)


def test_without_the_weight_files_the_error_names_the_keys_and_the_files(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the file's relative weight paths point nowhere here
    rc = train_cli.main(['-opt', str(SHIPPED), '--set', *tiny_overrides(tmp_path, with_weights=False)])
    assert rc == 2
    err = capsys.readouterr().err
    assert 'path.pretrain_network_t: file or folder not found: experiments/pretrained_models/RCAN_BIX4.pt' in err
    assert ('distill.embedding.checkpoint_path: file or folder not found: '
            'experiments/pretrained_models/vqgan_imagenet_f16_1024/ckpts/last.ckpt') in err
    assert not (tmp_path / 'exp').exists()  # nothing started
