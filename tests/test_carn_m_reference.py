"""End-to-end check of the evaluation protocol: tools/test.py with the released CARN-M weights on the
MATLAB bicubic LR files reproduces an independent reference evaluation (SR rounded to uint8, Y not
rounded, crop border = scale, greyscale read as 3 channels) to 0.01 dB PSNR and 0.0005 SSIM.

Default run (about 30 s on one core): x4 Set5 + Set14, x3 and x2 Set5, tiled x4 Set5, the
option-file form, and x4 Set5 with ``--y-convention matlab`` against an evaluation written here
from the saved SR PNGs. Set14 at x3 / x2, B100 at every scale and the MATLAB-Y table of all
nine cells are slow-marked.
"""
import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO_ROOT
from ckdsr.tools.test import main

#: independent reference evaluation of carn_m.pth: {scale: {set: (PSNR, SSIM)}}
REFERENCE = {
    4: {'Set5': (31.883, 0.8910), 'Set14': (28.418, 0.7772), 'B100': (27.446, 0.7313)},
    3: {'Set5': (34.058, 0.9248), 'Set14': (30.103, 0.8377), 'B100': (28.935, 0.8011)},
    2: {'Set5': (37.678, 0.9595), 'Set14': (33.303, 0.9152), 'B100': (31.971, 0.8972)},
}
PSNR_TOL, SSIM_TOL = 0.01, 0.0005
IMAGES = {'Set5': 5, 'Set14': 14, 'B100': 100}


def run_tool(tmp_path, *args):
    """``tools/test.py ARGS --json`` in-process; the JSON document."""
    out = tmp_path / f'results_{len(list(tmp_path.iterdir()))}.json'
    rc = main([str(a) for a in args] + ['--json', str(out), '--device', 'cpu', '--no-progress'])
    assert rc == 0
    return json.loads(out.read_text())


def carn(shared_dir, tmp_path, scales, sets, *extra):
    bench = shared_dir / 'datasets' / 'benchmark'
    return run_tool(tmp_path, '--arch', 'CARN_M', '--weights', shared_dir / 'weights' / 'carn_m.pth',
                    '--scale', *scales, '--datasets', *[bench / s for s in sets], *extra)


def check_reference(doc, expected_runs):
    got = {(r['dataset'], r['scale']): r for r in doc['results']}
    assert sorted(got) == sorted(expected_runs)
    for (name, scale), res in got.items():
        psnr, ssim = REFERENCE[scale][name]
        assert res['num_images'] == IMAGES[name] and res['lr_generated'] is False
        assert abs(res['average']['psnr'] - psnr) < PSNR_TOL, (name, scale, res['average'])
        assert abs(res['average']['ssim'] - ssim) < SSIM_TOL, (name, scale, res['average'])


@pytest.fixture(scope='module')
def x4_whole(shared_dir, tmp_path_factory):
    return carn(shared_dir, tmp_path_factory.mktemp('carn_x4'), [4], ['Set5', 'Set14'])


def test_x4_set5_set14_reproduce_the_reference(x4_whole):
    check_reference(x4_whole, [('Set5', 4), ('Set14', 4)])
    meta = x4_whole['meta']
    assert meta['weights']['layout'] == 'carn_pytorch' and meta['weights']['tensors_loaded'] == 58
    # Set14 'bridge' is a single-channel PNG: scored like the others, read as 3 channels
    bridge = next(r for r in x4_whole['results'][1]['images'] if r['name'] == 'bridge')
    assert 20 < bridge['psnr'] < 40


def test_x3_x2_set5_reproduce_the_reference(shared_dir, tmp_path):
    check_reference(carn(shared_dir, tmp_path, [3, 2], ['Set5']), [('Set5', 3), ('Set5', 2)])


def test_tiled_inference_matches_whole_images(shared_dir, tmp_path, x4_whole):
    # CARN-M's receptive field is wider than the 8 px margin, so tiles are not bit-exact; the
    # protocol only asks for the same PSNR to 0.01 dB, per image and on average
    tiled = carn(shared_dir, tmp_path, [4], ['Set5'], '--tile', 48, '--tile-overlap', 16)
    assert tiled['meta']['tile'] == 48
    whole = {r['name']: r['psnr'] for r in x4_whole['results'][0]['images']}
    for row in tiled['results'][0]['images']:
        assert abs(row['psnr'] - whole[row['name']]) < 0.01, row['name']
    assert abs(tiled['results'][0]['average']['psnr'] - x4_whole['results'][0]['average']['psnr']) < 0.01


def test_option_file_form_reproduces_set5_x4(shared_dir, tmp_path):
    set5 = shared_dir / 'datasets' / 'benchmark' / 'Set5'
    doc = run_tool(tmp_path, '-opt', REPO_ROOT / 'options' / 'test' / 'test_carn_m_x4.yml', '--set',
                   f"path.pretrain_network_g={shared_dir / 'weights' / 'carn_m.pth'}",
                   f'datasets={{test_1: {{name: Set5, type: BenchmarkDataset, dataroot: "{set5}"}}}}')
    check_reference(doc, [('Set5', 4)])


@pytest.mark.slow
def test_x3_x2_set14_reproduce_the_reference(shared_dir, tmp_path):
    check_reference(carn(shared_dir, tmp_path, [3, 2], ['Set14']), [('Set14', 3), ('Set14', 2)])


@pytest.mark.slow
def test_b100_reproduces_the_reference(shared_dir, tmp_path):
    doc = carn(shared_dir, tmp_path, [4, 3, 2], ['B100'])
    check_reference(doc, [('B100', 4), ('B100', 3), ('B100', 2)])


# ------------------------------------------------------------------------ MATLAB-style Y (issue 17.9)
#: CARN-M row of the benchmark table of Ahn et al., ECCV 2018 (as docs/evaluation.md copies it)
PAPER = {
    2: {'Set5': (37.53, 0.9583), 'Set14': (33.26, 0.9141), 'B100': (31.92, 0.8960)},
    3: {'Set5': (33.99, 0.9236), 'Set14': (30.08, 0.8367), 'B100': (28.91, 0.8000)},
    4: {'Set5': (31.92, 0.8903), 'Set14': (28.42, 0.7762), 'B100': (27.44, 0.7304)},
}


def matlab_y(img: np.ndarray) -> np.ndarray:
    """MATLAB rgb2ycbcr on uint8, Y only: 16 + (65.481 R + 128.553 G + 24.966 B) / 255 rounded half
    away from zero to an integer (Y >= 16, so floor(y + 0.5))."""
    r, g, b = (img[..., i].astype(np.float64) for i in range(3))
    return np.floor(16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0 + 0.5)


def independent_matlab_eval(sr_root, bench, name, scale):
    """{image: (PSNR, SSIM)} from the saved SR PNGs and the HR files, read with PIL: uint8 Y,
    HR cropped to the SR size, crop border = scale, scikit-image SSIM (Gaussian 11x11, sigma 1.5)."""
    from skimage.metrics import structural_similarity
    out = {}
    for hr_file in sorted((bench / name / 'HR').glob('*.png')):
        sr = np.asarray(Image.open(sr_root / name / f'{hr_file.stem}_x{scale}.png').convert('RGB'))
        hr = np.asarray(Image.open(hr_file).convert('RGB'))[:sr.shape[0], :sr.shape[1]]
        a, b = (matlab_y(x)[scale:-scale, scale:-scale] for x in (sr, hr))
        psnr = 10 * np.log10(255.0 ** 2 / np.mean((a - b) ** 2))
        ssim = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                     data_range=255)
        out[hr_file.stem] = (psnr, ssim)
    return out


def check_matlab_run(doc, sr_root, bench, cells):
    got = {(r['dataset'], r['scale']): r for r in doc['results']}
    assert sorted(got) == sorted(cells) and doc['meta']['y_convention'] == 'matlab'
    for (name, scale), res in got.items():
        assert res['y_convention'] == 'matlab' and res['num_images'] == IMAGES[name]
        want = independent_matlab_eval(sr_root, bench, name, scale)
        assert sorted(want) == sorted(r['name'] for r in res['images'])
        for row in res['images']:
            assert abs(row['psnr'] - want[row['name']][0]) < 1e-3, (name, scale, row)
            assert abs(row['ssim'] - want[row['name']][1]) < 1e-5, (name, scale, row)
        avg_psnr = float(np.mean([p for p, _ in want.values()]))
        avg_ssim = float(np.mean([q for _, q in want.values()]))
        assert abs(res['average']['psnr'] - avg_psnr) < PSNR_TOL, (name, scale, res['average'], avg_psnr)
        assert abs(res['average']['ssim'] - avg_ssim) < SSIM_TOL
    return got


def test_matlab_y_x4_set5_reproduces_an_independent_evaluation(shared_dir, tmp_path, x4_whole):
    sr_root = tmp_path / 'sr'
    doc = carn(shared_dir, tmp_path, [4], ['Set5'], '--y-convention', 'matlab', '--save-images', sr_root)
    got = check_matlab_run(doc, sr_root, shared_dir / 'datasets' / 'benchmark', [('Set5', 4)])
    # the same SR, other Y: rounding Y lowers x4 Set5 by about 0.02 dB here
    basicsr = x4_whole['results'][0]['average']['psnr']
    assert x4_whole['results'][0]['y_convention'] == 'basicsr'
    assert 0.005 < basicsr - got[('Set5', 4)]['average']['psnr'] < 0.1


@pytest.mark.slow
def test_matlab_y_table_and_its_distance_to_the_paper(shared_dir, tmp_path):
    """All nine cells with MATLAB Y against the independent evaluation; then both conventions
    against the paper: issue 17.9 reports MATLAB within 0.071 dB, BasicSR within 0.15 dB."""
    sr_root, bench = tmp_path / 'sr', shared_dir / 'datasets' / 'benchmark'
    sets = ['Set5', 'Set14', 'B100']
    doc = carn(shared_dir, tmp_path, [2, 3, 4], sets, '--y-convention', 'matlab', '--save-images', sr_root)
    got = check_matlab_run(doc, sr_root, bench, [(n, s) for s in (2, 3, 4) for n in sets])
    gaps = {(n, s): (got[(n, s)]['average']['psnr'] - PAPER[s][n][0], REFERENCE[s][n][0] - PAPER[s][n][0])
            for (n, s) in got}
    assert max(abs(m) for m, _ in gaps.values()) < 0.0715, gaps
    assert max(abs(b) for _, b in gaps.values()) < 0.15, gaps
