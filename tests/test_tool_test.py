"""tools/test.py on tiny nets and synthetic benchmark folders: its scores against an independent
evaluation (PIL reads, numpy Y, scikit-image metrics), the JSON / CSV files, the option-file form,
multi-scale CARN-M, HR-only sets, saved images, and one clear error for each kind of bad input."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ckdsr.archs.carn import CARN_M
from ckdsr.archs.edsr import EDSR
from ckdsr.engine.report import DatasetResult, format_table, read_csv, results_document, write_csv, write_json
from ckdsr.models.inference import self_ensemble_forward
from tests.conftest import REPO_ROOT
from ckdsr.tools.test import main

TINY = ['num_feat=8', 'num_block=1']
SIZES = {'a': (50, 42), 'b': (37, 45), 'grey': (44, 40)}  # (width, height); odd sizes get mod-cropped


# --------------------------------------------------------------------------------------------- data
def _photo(rng, w, h):
    """A smooth random colour image (uint8 HWC), so the metrics are far from their limits."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(6 * x + c) * np.cos(5 * y - c) for c in (0.0, 1.0, 2.0)], -1)
    return np.clip(127.5 + 100 * base + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)


def _write_set(root: Path, scales, with_lr: bool = True) -> Path:
    rng = np.random.default_rng(3)
    (root / 'HR').mkdir(parents=True)
    for name, (w, h) in SIZES.items():
        img = Image.fromarray(_photo(rng, w, h))
        if name == 'grey':
            img = img.convert('L')
        img.save(root / 'HR' / f'{name}.png')
        for s in scales if with_lr else ():
            (root / 'LR_bicubic' / f'X{s}').mkdir(parents=True, exist_ok=True)
            img.resize((w // s, h // s), Image.BICUBIC).save(root / 'LR_bicubic' / f'X{s}' / f'{name}x{s}.png')
    return root


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('tool_test')
    torch.manual_seed(0)
    edsr = EDSR(num_feat=8, num_block=1, upscale=2).eval()
    torch.save({'params': edsr.state_dict()}, root / 'edsr.pth')
    torch.manual_seed(1)
    carn = CARN_M(upscale=2).eval()
    torch.save(carn.state_dict(), root / 'carn_m.pth')  # bare state_dict, as the release
    (root / 'NoHR' / 'images').mkdir(parents=True)
    return {'root': root, 'edsr': edsr, 'carn': carn,
            'set': _write_set(root / 'SetA', (2, 3)), 'manga': _write_set(root / 'MangaLike', (), with_lr=False)}


# ------------------------------------------------------------------------------------ the oracle
def _y(img):
    r, g, b = (img[..., i].astype(np.float64) for i in range(3))
    return 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0


def _to_uint8(sr: torch.Tensor) -> np.ndarray:
    arr = sr[0].permute(1, 2, 0).numpy().astype(np.float32)
    return np.round(np.clip(arr, 0, 1) * np.float32(255)).astype(np.uint8)


def oracle(forward, folder: Path, scale: int):
    """{name: (psnr, ssim, sr uint8)}: images read with PIL as RGB, HR cropped to LR x scale,
    SR rounded to uint8, Y from the BT.601 formula, crop border = scale, scikit-image metrics."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity
    out = {}
    for name in sorted(SIZES):
        hr = np.asarray(Image.open(folder / 'HR' / f'{name}.png').convert('RGB'))
        lr = np.asarray(Image.open(folder / 'LR_bicubic' / f'X{scale}' / f'{name}x{scale}.png').convert('RGB'))
        with torch.no_grad():
            sr = _to_uint8(forward(torch.from_numpy(lr.copy()).permute(2, 0, 1)[None].float() / 255.0))
        hr = hr[:lr.shape[0] * scale, :lr.shape[1] * scale]
        c = slice(scale, -scale)
        a, b = _y(sr)[c, c], _y(hr)[c, c]
        out[name] = (peak_signal_noise_ratio(b, a, data_range=255),
                     structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                           data_range=255), sr)
    return out


def run(argv, capsys=None):
    rc = main(list(map(str, argv)) + ['--device', 'cpu', '--no-progress'])
    captured = capsys.readouterr() if capsys is not None else None
    return rc, captured


def edsr_args(data, *extra):
    return ['--arch', 'EDSR', '--set', *TINY, '--weights', data['root'] / 'edsr.pth', '--scale', 2, *extra]


# ------------------------------------------------------------------------------------ the tests
def test_direct_form_matches_an_independent_evaluation_and_writes_json_csv(data, tmp_path, capsys):
    js, cs = tmp_path / 'out' / 'r.json', tmp_path / 'r.csv'
    rc, out = run(edsr_args(data, '--datasets', data['set'], '--json', js, '--csv', cs), capsys)
    assert rc == 0, out.err
    want = oracle(data['edsr'], data['set'], 2)
    doc = json.loads(js.read_text())
    (res,) = doc['results']
    assert (res['dataset'], res['scale'], res['num_images'], res['lr_generated']) == ('SetA', 2, 3, False)
    assert [r['name'] for r in res['images']] == sorted(SIZES)
    for row in res['images']:
        psnr, ssim, _ = want[row['name']]
        assert row['psnr'] == pytest.approx(psnr, abs=1e-6) and row['ssim'] == pytest.approx(ssim, abs=1e-7)
        assert row['time_s'] > 0
    for key in ('psnr', 'ssim', 'time_s'):
        assert res['average'][key] == pytest.approx(np.mean([r[key] for r in res['images']]), rel=1e-12)
    assert res['wall_s'] >= sum(r['time_s'] for r in res['images'])
    meta = doc['meta']
    assert meta['weights']['layout'] == 'basicsr' and meta['weights']['param_key'] == 'params'
    assert meta['network_g'] == {'type': 'EDSR', 'num_feat': 8, 'num_block': 1}
    assert (meta['scales'], meta['self_ensemble'], meta['tile'], meta['device']) == ([2], False, None, 'cpu')

    rows = read_csv(cs)
    assert [(r['kind'], r['image']) for r in rows] == [('image', n) for n in sorted(SIZES)] + [('average', '')]
    for row, ref in zip(rows, res['images'] + [res['average']]):
        assert row['dataset'] == 'SetA' and row['scale'] == 2
        assert all(row[k] == pytest.approx(ref[k], rel=1e-12) for k in ('psnr', 'ssim', 'time_s'))

    table = out.out
    assert 'PSNR' in table and 'SSIM' in table and 'ms/img' in table
    line = next(l for l in table.splitlines() if l.startswith('SetA'))
    assert f"{res['average']['psnr']:.3f}" in line and f"{res['average']['ssim']:.4f}" in line


def test_option_file_form_gives_the_direct_form_scores(data, tmp_path, capsys):
    opt = tmp_path / 'test_tiny.yml'
    opt.write_text(f"""name: tiny_test
scale: 2
datasets:
  test_1: {{name: Tiny, type: BenchmarkDataset, dataroot: {data['set']}}}
network_g: {{type: EDSR, num_feat: 8, num_block: 1}}
path: {{pretrain_network_g: /nowhere/net_g.pth, param_key_g: params}}
val:
  metrics:
    psnr: {{type: calculate_psnr, test_y_channel: true}}
""")
    js = tmp_path / 'r.json'
    rc, out = run(['-opt', opt, '--set', f"path.pretrain_network_g={data['root'] / 'edsr.pth'}",
                   '--json', js], capsys)
    assert rc == 0, out.err
    (res,) = json.loads(js.read_text())['results']
    want = oracle(data['edsr'], data['set'], 2)
    assert res['dataset'] == 'Tiny' and list(res['average']) == ['psnr', 'time_s']  # the file's metrics only
    assert [r['psnr'] for r in res['images']] == pytest.approx([want[n][0] for n in sorted(SIZES)], abs=1e-6)


def test_option_file_paths_are_checked_and_direct_flags_refused(data, tmp_path, capsys):
    rc, out = run(['-opt', REPO_ROOT / 'options' / 'test' / 'test_carn_m_x4.yml'], capsys)
    assert rc == 2
    assert 'path.pretrain_network_g: file or folder not found' in out.err and 'Traceback' not in out.err
    with pytest.raises(SystemExit) as err:
        main(['-opt', 'x.yml', '--weights', 'w.pth'])
    assert err.value.code == 2
    assert '--weights belong to the --arch form' in capsys.readouterr().err


def test_a_folder_without_hr_is_one_clear_error(data):
    bad = data['root'] / 'NoHR'
    res = subprocess.run([sys.executable, 'tools/test.py', '--arch', 'EDSR', '--set', *TINY, '--weights',
                          str(data['root'] / 'edsr.pth'), '--scale', '2', '--datasets', str(bad), '--device', 'cpu'],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, OMP_NUM_THREADS='1'))
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert lines[0].startswith(f'error: datasets.test_1 ({bad}):') and f"{bad / 'HR'} not found" in lines[0]
    assert res.stdout == ''


def test_missing_folder_and_bad_weights_name_their_option(data, capsys):
    rc, out = run(edsr_args(data, '--datasets', data['root'] / 'NoSuchSet'), capsys)
    assert rc == 2 and 'datasets.test_1.dataroot: file or folder not found' in out.err
    rc, out = run(['--arch', 'EDSR', '--set', 'num_feat=16', 'num_block=1', '--weights', data['root'] / 'edsr.pth',
                   '--scale', 2, '--datasets', data['set']], capsys)
    assert rc == 2 and out.err.startswith('error: path.pretrain_network_g:') and 'shape conflicts' in out.err
    rc, out = run(['--arch', 'EDSR', '--set', 'num_fet=8', '--weights', data['root'] / 'edsr.pth',
                   '--scale', 2, '--datasets', data['set']], capsys)
    assert rc == 2 and "did you mean 'network_g.num_feat'" in out.err


def test_scale_reaches_the_multi_scale_carn_m(data, tmp_path, capsys):
    js = tmp_path / 'r.json'
    rc, out = run(['--arch', 'CARN_M', '--weights', data['root'] / 'carn_m.pth', '--scale', 2, 3,
                   '--datasets', data['set'], '--json', js], capsys)
    assert rc == 0, out.err
    doc = json.loads(js.read_text())
    assert [(r['dataset'], r['scale']) for r in doc['results']] == [('SetA', 2), ('SetA', 3)]
    assert doc['meta']['weights']['layout'] == 'carn_pytorch' and doc['meta']['scales'] == [2, 3]
    for res in doc['results']:
        s = res['scale']
        want = oracle(lambda x: data['carn'](x, upscale=s), data['set'], s)
        assert [r['psnr'] for r in res['images']] == pytest.approx([want[n][0] for n in sorted(SIZES)], abs=1e-6)
    rc, out = run(['--arch', 'CARN_M', '--set', 'upscale=2', '--weights', data['root'] / 'carn_m.pth',
                   '--scale', 3, '--datasets', data['set']], capsys)
    assert rc == 2 and 'network_g.upscale is 2 but scale is 3' in out.err


def test_hr_only_set_gets_matlab_bicubic_lr_and_says_so_once(data, tmp_path, capsys, caplog):
    js = tmp_path / 'r.json'
    rc, out = run(edsr_args(data, '--datasets', data['manga'], '--json', js), capsys)
    assert rc == 0, out.err
    (res,) = json.loads(js.read_text())['results']
    assert res['lr_generated'] is True and res['num_images'] == 3 and 'MATLAB-exact bicubic' in res['lr']
    assert all(math.isfinite(r['psnr']) and 0 < r['ssim'] < 1 for r in res['images'])
    notes = [r for r in caplog.records if 'MATLAB-exact bicubic' in r.getMessage()]
    assert len(notes) == 1 and 'MangaLike' in notes[0].getMessage()
    assert 'MangaLike *' in out.out and '* LR made from the mod-cropped HR' in out.out


def test_saved_images_are_the_scored_uint8_outputs(data, tmp_path, capsys):
    rc, out = run(edsr_args(data, '--datasets', data['set'], '--save-images', tmp_path / 'sr'), capsys)
    assert rc == 0, out.err
    want = oracle(data['edsr'], data['set'], 2)
    for name in SIZES:
        saved = np.asarray(Image.open(tmp_path / 'sr' / 'SetA' / f'{name}_x2.png'))
        assert np.array_equal(saved, want[name][2])


def test_self_ensemble_and_tiles_reach_the_forward(data, tmp_path, capsys):
    js = tmp_path / 'se.json'
    rc, out = run(edsr_args(data, '--datasets', data['set'], '--self-ensemble', '--json', js), capsys)
    assert rc == 0, out.err
    doc = json.loads(js.read_text())
    want = oracle(lambda x: self_ensemble_forward(data['edsr'], x), data['set'], 2)
    plain = oracle(data['edsr'], data['set'], 2)
    got = [r['psnr'] for r in doc['results'][0]['images']]
    assert doc['meta']['self_ensemble'] is True and 'self-ensemble x8' in out.out
    assert got == pytest.approx([want[n][0] for n in sorted(SIZES)], abs=1e-6)
    assert got != pytest.approx([plain[n][0] for n in sorted(SIZES)], abs=1e-3)
    # the tiny EDSR sees 6 LR px around each output pixel (5 LR convs, 1 HR conv): a 12 px overlap
    # drops 6 px at every inner tile edge, so tiling is exact
    rc, out = run(edsr_args(data, '--datasets', data['set'], '--tile', 16, '--tile-overlap', 12,
                            '--json', js), capsys)
    assert rc == 0, out.err
    doc = json.loads(js.read_text())
    assert (doc['meta']['tile'], doc['meta']['tile_overlap']) == (16, 12) and 'tile 16/12' in out.out
    assert [r['psnr'] for r in doc['results'][0]['images']] == pytest.approx(
        [plain[n][0] for n in sorted(SIZES)], abs=1e-6)


def test_report_files_stay_strict_json_and_round_trip(tmp_path):
    rows = [{'name': 'same', 'psnr': float('inf'), 'ssim': 1.0, 'time_s': 0.5},
            {'name': 'other', 'psnr': 30.0, 'ssim': 0.5, 'time_s': 1.5}]
    res = DatasetResult('S', 4, rows, ['psnr', 'ssim'], wall_s=2.5, source={'lr_generated': False})
    assert res.average == {'psnr': float('inf'), 'ssim': 0.75, 'time_s': 1.0}
    write_json(tmp_path / 'r.json', [res], {'name': 'x'})
    doc = json.loads((tmp_path / 'r.json').read_text())  # strict JSON: inf is written as a string
    assert doc['results'][0]['images'][0]['psnr'] == 'inf' and doc['results'][0]['average']['ssim'] == 0.75
    assert results_document([res], {})['results'][0]['wall_s'] == 2.5
    write_csv(tmp_path / 'r.csv', [res])
    back = read_csv(tmp_path / 'r.csv')
    assert back[0]['psnr'] == float('inf') and back[2]['kind'] == 'average' and back[2]['time_s'] == 1.0
    assert back[0]['y_convention'] == 'basicsr'
    assert results_document([res], {})['results'][0]['y_convention'] == 'basicsr'
    table = format_table([res]).splitlines()
    assert table[0].split() == ['Dataset', 'Scale', 'Images', 'Y', 'PSNR', 'SSIM', 'ms/img', 'total', 's']
    assert table[2].split() == ['S', 'x4', '2', 'basicsr', 'inf', '0.7500', '1000.0', '2.5']
    assert table[3].startswith('Y basicsr: Y = 16 + (65.481 R') and len(table) == 4


# ------------------------------------------------------------------------------ MATLAB-style Y
def _y_matlab(img):
    """MATLAB rgb2ycbcr on uint8: the BT.601 Y rounded half away from zero to uint8 (Y >= 16 > 0)."""
    return np.floor(_y(img) + 0.5)


def _psnr(a, b):
    return 10 * np.log10(255.0 ** 2 / np.mean((a - b) ** 2))


def test_matlab_y_convention_scores_uint8_y_and_is_labelled_everywhere(data, tmp_path, capsys):
    js, cs = tmp_path / 'm.json', tmp_path / 'm.csv'
    rc, out = run(edsr_args(data, '--datasets', data['set'], '--y-convention', 'matlab', '--json', js,
                            '--csv', cs), capsys)
    assert rc == 0, out.err
    want = oracle(data['edsr'], data['set'], 2)
    doc = json.loads(js.read_text())
    (res,) = doc['results']
    hr_dir = data['set'] / 'HR'
    for row in res['images']:
        sr = want[row['name']][2]
        hr = np.asarray(Image.open(hr_dir / f"{row['name']}.png").convert('RGB'))[:sr.shape[0], :sr.shape[1]]
        a, b = _y_matlab(sr)[2:-2, 2:-2], _y_matlab(hr)[2:-2, 2:-2]
        assert row['psnr'] == pytest.approx(_psnr(a, b), abs=1e-9)
        # rounding Y moves the score, so the two conventions are really different numbers
        assert abs(row['psnr'] - want[row['name']][0]) > 1e-4
    assert res['y_convention'] == 'matlab' and doc['meta']['y_convention'] == 'matlab'
    assert all(m['y_convention'] == 'matlab' for m in doc['meta']['metrics'].values())
    assert {r['y_convention'] for r in read_csv(cs)} == {'matlab'}
    line = next(l for l in out.out.splitlines() if l.startswith('SetA'))
    assert line.split()[3] == 'matlab' and 'Y matlab: MATLAB rgb2ycbcr on the uint8 image' in out.out
    assert 'Y basicsr' not in out.out


def test_y_convention_in_an_option_file_and_overridden_from_the_command_line(data, tmp_path, capsys):
    opt = tmp_path / 'test_y.yml'
    opt.write_text(f"""name: y_test
scale: 2
datasets:
  test_1: {{name: Tiny, type: BenchmarkDataset, dataroot: {data['set']}}}
network_g: {{type: EDSR, num_feat: 8, num_block: 1}}
path: {{pretrain_network_g: {data['root'] / 'edsr.pth'}, param_key_g: params}}
val:
  metrics:
    psnr: {{type: calculate_psnr, test_y_channel: true, y_convention: matlab}}
    psnr_float: {{type: calculate_psnr, test_y_channel: true}}
""")
    js = tmp_path / 'r.json'
    rc, out = run(['-opt', opt, '--json', js], capsys)
    assert rc == 0, out.err
    (res,) = json.loads(js.read_text())['results']
    assert res['y_convention'] == 'psnr=matlab psnr_float=basicsr'
    assert 'Y matlab:' in out.out and 'Y basicsr:' in out.out
    want = oracle(data['edsr'], data['set'], 2)
    assert [r['psnr_float'] for r in res['images']] == pytest.approx([want[n][0] for n in sorted(SIZES)], abs=1e-6)
    assert all(abs(r['psnr'] - r['psnr_float']) > 1e-4 for r in res['images'])
    matlab = [r['psnr'] for r in res['images']]
    rc, out = run(['-opt', opt, '--y-convention', 'basicsr', '--json', js], capsys)
    assert rc == 0, out.err
    (res,) = json.loads(js.read_text())['results']
    assert res['y_convention'] == 'basicsr'
    assert [r['psnr'] for r in res['images']] == [r['psnr_float'] for r in res['images']]
    rc, out = run(['-opt', opt, '--y-convention', 'matlab', '--json', js], capsys)
    (res,) = json.loads(js.read_text())['results']
    assert rc == 0 and [r['psnr_float'] for r in res['images']] == matlab
    opt.write_text(opt.read_text().replace('y_convention: matlab', 'y_convention: matlb'))
    rc, out = run(['-opt', opt], capsys)
    assert rc == 2 and 'val.metrics.psnr.y_convention' in out.err and 'Traceback' not in out.err
