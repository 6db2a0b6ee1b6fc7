"""Parameter / MAC counting (utils.complexity) against hand formulas and CARN-M's published
Mult-Adds, and the tools/model_info.py command line."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from ckdsr.archs.carn import CARN_M
from ckdsr.archs.edsr import EDSR
from ckdsr.archs.swinir import SwinIR
from tests.conftest import REPO_ROOT
from ckdsr.utils.complexity import count_macs, count_params, macs_and_output_shape


def edsr_macs(c, blocks, h, w):
    """EDSR x4 by hand: k*k*Cin*Cout per output pixel of every conv."""
    hw = h * w
    return 9 * (hw * 3 * c + 2 * blocks * hw * c * c + hw * c * c + hw * c * 4 * c + 4 * hw * c * 4 * c
                + 16 * hw * c * 3)


def test_edsr_macs_by_hand():
    net = EDSR(num_feat=8, num_block=2, upscale=4)
    assert count_macs(net, (12, 10)) == edsr_macs(8, 2, 12, 10)


def test_swinir_macs_include_the_attention_matmuls():
    c, ws, hw = 12, 4, 8 * 8
    net = SwinIR(upscale=2, embed_dim=c, depths=[2], num_heads=[2], window_size=ws, mlp_ratio=2,
                 upsampler='pixelshuffledirect', img_size=8)
    n = ws * ws
    per_block = hw * c * 3 * c + 2 * hw * n * c + hw * c * c + hw * 4 * c * c  # qkv, QK^T + AV, proj, mlp
    expected = 9 * hw * (3 * c + c * c + c * c + c * 12) + 2 * per_block
    assert count_macs(net, (8, 8)) == expected


def test_carn_m_matches_published_mult_adds():
    # Ahn et al. 2018, Table: CARN-M x4 32.5G Mult-Adds for a 1280x720 output
    macs, out_shape = macs_and_output_shape(CARN_M(upscale=4), (180, 320))
    assert out_shape == (1, 3, 720, 1280)
    assert abs(macs - 32.5e9) / 32.5e9 < 5e-3


def test_counting_leaves_the_net_untouched():
    net = CARN_M()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    count_macs(net, (8, 8))
    assert all(v.device.type == 'cpu' and torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert count_params(net) == 414_811 and count_params(net, trainable_only=True) == 414_787


def run_cli(*args):
    res = subprocess.run([sys.executable, 'tools/model_info.py', *args], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=120, env=dict(os.environ, OMP_NUM_THREADS='1'))
    return res


def test_cli_arch_json_from_the_repo_root():
    res = run_cli('--arch', 'EDSR', '--set', 'num_feat=8', 'num_block=1', '--lr-size', '16x12', '--json')
    assert res.returncode == 0, res.stderr
    (info,) = json.loads(res.stdout)
    net = EDSR(num_feat=8, num_block=1, upscale=4)
    assert info['params'] == count_params(net) and info['macs'] == edsr_macs(8, 1, 12, 16)
    assert info['lr_size'] == [16, 12] and info['out_size'] == [64, 48] and info['options']['upscale'] == 4


def load_tool():
    spec = importlib.util.spec_from_file_location('model_info', REPO_ROOT / 'tools' / 'model_info.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


OPT = {'name': 'x', 'scale': 2,
       'network_g': {'type': 'EDSR', 'num_feat': 8, 'num_block': 1, 'upscale': 2},
       'network_t': {'type': 'RCAN', 'num_feat': 16, 'num_group': 1, 'num_block': 1, 'squeeze_factor': 4,
                     'upscale': 2},
       'train': {'total_iter': 10}}


def test_cli_option_file_reports_every_network_block(tmp_path, monkeypatch, capsys):
    path = tmp_path / 'opt.yml'
    path.write_text(yaml.safe_dump(OPT))
    calls = []

    def fake_load_options(p, sets=(), force_yml=()):
        calls.append((p, list(sets)))
        return yaml.safe_load(open(p))

    monkeypatch.setattr('ckdsr.utils.options.load_options', fake_load_options)
    tool = load_tool()
    assert tool.main(['-opt', str(path), '--set', 'train.total_iter=5', '--lr-size', '8x8']) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert calls == [(str(path), ['train.total_iter=5'])]
    assert [line.split(':')[0] for line in lines] == ['network_g', 'network_t']
    assert f"{count_params(EDSR(num_feat=8, num_block=1, upscale=2)):,}" in lines[0]
    assert '8x8 -> 16x16' in lines[1]


def test_cli_option_file_without_its_files_and_upscale_from_scale(tmp_path, capsys):
    """Missing weights are listed with where to get them; a block without upscale gets the scale."""
    path = tmp_path / 'opt.yml'
    tree = {**OPT, 'model_type': 'KDModel',
            'network_g': {k: v for k, v in OPT['network_g'].items() if k != 'upscale'},
            'path': {'pretrain_network_g': 'nowhere/carn_m.pth'},
            'train': {'total_iter': 10, 'optim_g': {'type': 'Adam'}, 'losses': [{'type': 'L1Loss'}]}}
    path.write_text(yaml.safe_dump(tree))
    assert load_tool().main(['-opt', str(path), '--json', '--lr-size', '8x8']) == 0
    captured = capsys.readouterr()
    infos = json.loads(captured.out)
    assert [i['name'] for i in infos] == ['network_g', 'network_t'] and infos[0]['out_size'] == [16, 16]
    assert captured.err.startswith(f'missing: {path}: path.pretrain_network_g: file or folder not found: '
                                   'nowhere/carn_m.pth; the official CARN-M weights')


def test_cli_bad_arguments():
    tool = load_tool()
    with pytest.raises(SystemExit):
        tool.main(['--arch', 'EDSR', '--lr-size', '320by180'])
    with pytest.raises(SystemExit, match='key=value'):
        tool.main(['--arch', 'EDSR', '--set', 'num_feat'])
    with pytest.raises(SystemExit, match="No arch named 'EDSRR'.*'EDSR'"):
        tool.main(['--arch', 'EDSRR'])
    with pytest.raises(SystemExit, match="EDSR has no option 'num_feats' \\(did you mean 'num_feat'\\?\\)"):
        tool.main(['--arch', 'EDSR', '--set', 'num_feats=8'])
