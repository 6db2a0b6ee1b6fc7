"""tools/test.py on GoPro / deraining layouts with each field's convention: deblurring PSNR/SSIM on RGB
without a border crop, deraining on Y; scores checked against scikit-image on the files themselves."""
import numpy as np
import pytest
import torch
import yaml

from ckdsr.archs.nafnet import NAFNet
from ckdsr.data.image_io import read_image
from ckdsr.engine.evaluation import metric_conventions, with_metric_space
from tests.helpers.restoration_sets import make_gopro, make_rain, photo_sources
from ckdsr.tools.test import main

TINY = dict(img_channel=3, width=8, middle_blk_num=1, enc_blk_nums=[1], dec_blk_nums=[1])


@pytest.fixture(scope='module')
def setup(shared_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp('restoration_eval')
    src = photo_sources(shared_dir)
    net = NAFNet(**TINY)
    torch.nn.init.zeros_(net.ending.weight)  # output = input: the scores are those of the degraded images
    torch.nn.init.zeros_(net.ending.bias)
    torch.save({'params': net.state_dict()}, root / 'identity.pth')
    return {'root': root, 'gopro': make_gopro(root / 'GoPro' / 'test', src, sequences=1, per_seq=2),
            'rain': make_rain(root / 'Rain100H', src, n=2), 'weights': root / 'identity.pth'}


def _opt_file(setup, kind: str) -> str:
    ds = {'type': 'GoProDataset' if kind == 'gopro' else 'DerainDataset', 'dataroot': str(setup[kind]), 'name': kind}
    tree = {'name': f'identity_{kind}', 'model_type': 'SRModel', 'scale': 1,
            'network_g': {'type': 'NAFNet', **TINY},
            'path': {'pretrain_network_g': str(setup['weights']), 'param_key_g': 'params'},
            'datasets': {'test_1': ds}}
    path = setup['root'] / f'{kind}.yml'
    path.write_text(yaml.safe_dump(tree))
    return str(path)


def _pairs(setup, kind):
    if kind == 'gopro':
        seq = next(p for p in setup['gopro'].iterdir() if p.is_dir())
        return [(read_image(seq / 'blur' / n.name), read_image(n)) for n in sorted((seq / 'sharp').iterdir())]
    return [(read_image(p), read_image(setup['rain'] / 'target' / p.name))
            for p in sorted((setup['rain'] / 'input').iterdir())]


def _y(img):
    """MATLAB rgb2ycbcr Y of a uint8 image, rounded to uint8."""
    return np.floor(16 + (65.481 * img[..., 0] + 128.553 * img[..., 1] + 24.966 * img[..., 2]) / 255.0 + 0.5)


def test_deblurring_scores_rgb_without_crop(setup, tmp_path, capsys):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity
    out = tmp_path / 'r.json'
    assert main(['-opt', _opt_file(setup, 'gopro'), '--metric-space', 'rgb', '--crop-border', '0',
                 '--json', str(out), '--device', 'cpu', '--no-progress']) == 0
    printed = capsys.readouterr().out
    assert 'metrics: psnr: RGB, crop 0; ssim: RGB, crop 0' in printed and ' rgb ' in printed
    import json
    avg = json.loads(out.read_text())['results'][0]['average']
    pairs = _pairs(setup, 'gopro')
    want_psnr = np.mean([peak_signal_noise_ratio(g, b, data_range=255) for b, g in pairs])
    want_ssim = np.mean([structural_similarity(g, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                               data_range=255, channel_axis=2) for b, g in pairs])
    assert avg['psnr'] == pytest.approx(want_psnr, abs=1e-6)
    assert avg['ssim'] == pytest.approx(want_ssim, abs=1e-4)


def test_deraining_scores_matlab_y_without_crop(setup, tmp_path):
    from skimage.metrics import peak_signal_noise_ratio
    out = tmp_path / 'r.json'
    assert main(['-opt', _opt_file(setup, 'rain'), '--metric-space', 'y', '--y-convention', 'matlab',
                 '--crop-border', '0', '--json', str(out), '--device', 'cpu', '--no-progress']) == 0
    import json
    res = json.loads(out.read_text())['results'][0]
    assert res['y_convention'] == 'matlab'
    want = np.mean([peak_signal_noise_ratio(_y(g), _y(b), data_range=255) for b, g in _pairs(setup, 'rain')])
    assert res['average']['psnr'] == pytest.approx(want, abs=1e-6)


def test_metric_space_helpers():
    m = with_metric_space({'psnr': {'type': 'calculate_psnr', 'test_y_channel': True}}, 'rgb', 0)
    assert m == {'psnr': {'type': 'calculate_psnr', 'test_y_channel': False, 'crop_border': 0}}
    assert metric_conventions({'p': {'test_y_channel': True, 'y_convention': 'matlab'}}, 4) == 'p: Y (matlab), crop 4'
    with pytest.raises(ValueError, match='--metric-space'):
        with_metric_space({}, 'lab')


def test_negative_crop_is_an_error(setup):
    with pytest.raises(SystemExit):
        main(['-opt', _opt_file(setup, 'rain'), '--crop-border', '-1'])


def test_restoration_cpu_benchmark_smoke(shared_dir, tmp_path):
    """benchmarks/restoration_cpu.py on one file, 2 steps: a teacher row, an input row, the student row."""
    import json
    from benchmarks.restoration_cpu import main as bench
    assert bench(['--files', 'dckd_nafnet_gopro', '--iters', '2', '--teacher-iters', '2', '--out', str(tmp_path)]) == 0
    rows = json.loads((tmp_path / 'restoration_cpu.json').read_text())['rows']
    assert [r['file'] for r in rows] == ['(teacher, scratch_nafnet_gopro shape)', '(input, no network)', 'dckd_nafnet_gopro']
    assert rows[2]['terms'] == ['l_pix', 'l_kd', 'l_dcl', 'l_ce']
    assert rows[2]['convention'] == 'psnr: RGB, crop 0; ssim: RGB, crop 0'
    assert 'dckd_nafnet_gopro' in (tmp_path / 'restoration_cpu.md').read_text()
