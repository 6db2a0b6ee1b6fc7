"""ONNX export (models/onnx_export.py, tools/export.py): onnxruntime equals the PyTorch forward within
1e-4 on real LR images of different sizes (one graph, dynamic H/W), for tiny EDSR / RCAN / SwinIR
students and the released CARN-M weights."""
import json

import pytest
import torch

from ckdsr.data.image_io import read_image
from ckdsr.models.network_io import build_network
from ckdsr.models.onnx_export import compare_with_onnx, export_onnx
from ckdsr.tools import export as export_tool

TOL = 1e-4
TINY = {
    'EDSR': {'type': 'EDSR', 'num_feat': 8, 'num_block': 2},
    'RCAN': {'type': 'RCAN', 'num_feat': 16, 'num_group': 2, 'num_block': 2, 'squeeze_factor': 4},
    # window 8 on Set5 LR sizes 72x72, 64x64, 86x57: padded (57 -> 64), unpadded and shifted-window masks
    'SwinIR': {'type': 'SwinIR', 'embed_dim': 12, 'depths': [2], 'num_heads': [2], 'window_size': 8,
               'img_size': 32, 'mlp_ratio': 2, 'upsampler': 'pixelshuffle'},
}


@pytest.fixture(scope='module')
def set5_x4(benchmark_dir):
    files = sorted((benchmark_dir / 'Set5' / 'LR_bicubic' / 'X4').glob('*.png'))
    assert len(files) == 5
    return files


def _random_weights(net, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05 + p)
    return net.eval()


@pytest.mark.parametrize('arch', sorted(TINY))
def test_tiny_students_match_onnxruntime(tmp_path, set5_x4, arch):
    net = _random_weights(build_network(TINY[arch], 4))
    path = export_onnx(net, str(tmp_path / f'{arch}.onnx'), scale=4)
    files = [set5_x4[2], set5_x4[4]]   # butterfly 64x64 (no window padding), woman 86x57 (padded)
    rows = compare_with_onnx(net, path, 4, [read_image(f) for f in files], [f.name for f in files])
    assert len({tuple(r['lr_hw']) for r in rows}) == 2          # one graph, two input sizes
    assert max(r['max_abs_diff'] for r in rows) < TOL, rows
    assert min(r['max_abs_diff'] for r in rows) >= 0.0


def _carn_m_cli(tmp_path, shared_dir, scale, images):
    out, report = tmp_path / f'carn_m_x{scale}.onnx', tmp_path / 'report.json'
    rc = export_tool.main(['--arch', 'CARN_M', '--weights', str(shared_dir / 'weights' / 'carn_m.pth'),
                           '--scale', str(scale), '--format', 'onnx', '--out', str(out), '--check-images',
                           *map(str, images), '--report', str(report)])
    assert rc == 0 and out.is_file()
    return json.loads(report.read_text())


def test_carn_m_released_weights_via_cli(tmp_path, shared_dir, set5_x4):
    r = _carn_m_cli(tmp_path, shared_dir, 4, [set5_x4[1], set5_x4[4]])
    assert [c['name'] for c in r['check']] == ['birdx4.png', 'womanx4.png']
    assert r['max_abs_diff'] < TOL


@pytest.mark.slow
@pytest.mark.parametrize('scale', [2, 3, 4])
def test_carn_m_released_weights_all_set5(tmp_path, shared_dir, benchmark_dir, scale):
    folder = benchmark_dir / 'Set5' / 'LR_bicubic' / f'X{scale}'
    r = _carn_m_cli(tmp_path, shared_dir, scale, [folder])
    assert len(r['check']) == 5 and r['max_abs_diff'] < TOL


def test_onnx_batch_dimension_is_dynamic(tmp_path):
    import onnxruntime as ort
    net = _random_weights(build_network(TINY['EDSR'], 2))
    path = export_onnx(net, str(tmp_path / 'e.onnx'), scale=2)
    x = torch.rand(3, 3, 10, 7)
    out = ort.InferenceSession(path, providers=['CPUExecutionProvider']).run(['sr'], {'lr': x.numpy()})[0]
    with torch.no_grad():
        ref = net(x).numpy()
    assert out.shape == (3, 3, 20, 14) and abs(out - ref).max() < TOL


def test_check_failure_is_reported(tmp_path, set5_x4, capsys):
    """A tolerance no export can meet (negative) makes the tool fail with one error line."""
    w = tmp_path / 'w.pth'
    torch.save({'params': _random_weights(build_network(TINY['EDSR'], 4)).state_dict()}, w)
    rc = export_tool.main(['--arch', 'EDSR', '--set', 'num_feat=8', 'num_block=2', '--weights', str(w),
                           '--scale', '4', '--format', 'onnx', '--out', str(tmp_path / 'e.onnx'),
                           '--check-images', str(set5_x4[2]), '--tol', '-1'])
    err = capsys.readouterr().err
    assert rc == 1 and 'error: onnxruntime differs from PyTorch' in err


@pytest.mark.slow
@pytest.mark.parametrize('option', ['options/facd_edsr_x4.yml', 'options/dckd_rcan_x4.yml',
                                    'options/dckd_swinir_x4.yml'])
def test_paper_size_students_via_option_file(tmp_path, set5_x4, option):
    """The students as configured (EDSR R16C64, RCAN 10x6, SwinIR 60 ch 4x6), randomly initialised,
    exported with the -opt form and checked on two Set5 LR images."""
    from tests.conftest import REPO_ROOT
    from ckdsr.utils.options import read_yaml
    tree = read_yaml(str(REPO_ROOT / option))
    torch.manual_seed(1)
    net = build_network(tree['network_g'], tree['scale']).eval()
    weights, report = tmp_path / 'net_g.pth', tmp_path / 'report.json'
    torch.save({'params': net.state_dict()}, weights)
    rc = export_tool.main(['-opt', str(REPO_ROOT / option), '--set', f'path.pretrain_network_g={weights}',
                           '--format', 'onnx', '--out', str(tmp_path / 'student.onnx'), '--check-images',
                           str(set5_x4[1]), str(set5_x4[4]), '--report', str(report)])
    assert rc == 0 and json.loads(report.read_text())['max_abs_diff'] < TOL
