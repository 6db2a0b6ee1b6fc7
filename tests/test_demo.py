"""``make demo`` (tools/demo.py): the whole pipeline with --tiny, plus its pieces."""
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from ckdsr.demo.config import PipelineError, load_pipeline
from ckdsr.demo.figures import gain_box
from ckdsr.demo.logs import parse_line, read_history
from ckdsr.demo.pipeline import set_item
from ckdsr.demo.report import MethodRow, full_run_files, reading
from ckdsr.utils.options import read_yaml

REPO = Path(__file__).resolve().parents[1]
METHODS = ['Bicubic', 'Student, scratch', 'Student, logits KD', 'Student, DCKD (offline)', 'Teacher']
CROP_PANELS = ['LR-bicubic', 'Student, scratch', 'Student, logits KD', 'Student, DCKD (offline)', 'Teacher', 'HR']


# ----------------------------------------------------------------------------- the pieces
def test_log_lines_parse():
    ev = parse_line('2026-01-02 03:04:05,678 INFO: [epoch:  1, iter:   1,200/1,500, lr:(9.973e-04)] '
                    '2.50 it/s, data 3%, eta: 00:02:00 | l_pix: 1.5e-02 l_kd: 2.0e-02 l_total: 3.5e-02')
    assert (ev.kind, ev.iter, ev.total, ev.it_per_s) == ('progress', 1200, 1500, 2.5)
    assert ev.values == {'l_pix': 0.015, 'l_kd': 0.02, 'l_total': 0.035}
    assert ev.time == datetime(2026, 1, 2, 3, 4, 5, 678000)
    ev = parse_line('2026-01-02 03:04:05,678 INFO: validation my set @ iter 300: psnr: 27.1234, ssim: 0.8012')
    assert (ev.kind, ev.iter, ev.dataset, ev.values) == ('validation', 300, 'my set', {'psnr': 27.1234, 'ssim': 0.8012})
    assert parse_line('2026-01-02 03:04:05,678 INFO: training done').kind == 'done'
    assert parse_line('some other line') is None


def test_history_keeps_the_last_run_of_an_appended_log(tmp_path):
    log = tmp_path / 'train.log'
    stamp = '2026-01-02 03:04:{:02d},000 INFO: '
    log.write_text('\n'.join([
        stamp.format(0) + 'experiment x: 10 training samples, starting at 0',
        stamp.format(1) + '[epoch:  0, iter: 5/10, lr:(1.0e-03)] 1.00 it/s, data 0% | l_pix: 9.0e-01',
        stamp.format(10) + 'experiment x: 10 training samples, starting at 0',
        stamp.format(12) + '[epoch:  0, iter: 5/10, lr:(1.0e-03)] 2.50 it/s, data 0% | l_pix: 5.0e-01',
        stamp.format(13) + 'validation v @ iter 5: psnr: 20.0000',
        stamp.format(15) + '[epoch:  0, iter:10/10, lr:(1.0e-03)] 5.00 it/s, data 0% | l_pix: 4.0e-01',
        stamp.format(16) + 'training done']) + '\n')
    hist = read_history(str(log))
    assert hist.curve('l_pix') == ([5, 10], [0.5, 0.4])
    assert hist.curve('psnr', 'validation') == ([5], [20.0])
    assert hist.step_seconds == pytest.approx(5 / 2.5 + 5 / 5.0)
    assert hist.wall_seconds == pytest.approx(6.0) and hist.finished and hist.total_iter == 10


def test_set_items_are_yaml_safe():
    assert set_item('a.b', '/tmp/x/y.lmdb') == 'a.b=/tmp/x/y.lmdb'
    assert set_item('a', '/tmp/with space: colon') == 'a="/tmp/with space: colon"'
    assert set_item('a', None) == 'a=null'
    assert set_item('n', {'type': 'EDSR', 'num_feat': 8}) == 'n={"type": "EDSR", "num_feat": 8}'
    assert set_item('a', '1e3') == 'a="1e3"'  # stays a string


def test_a_failing_tool_names_the_step_and_its_log(tmp_path):
    from ckdsr.demo.runs import DemoError, run_tool
    bad = tmp_path / 'bad.yml'
    bad.write_text('name: x\ntrain: {total_itr: 3}\n')
    log = tmp_path / 'logs' / 'train_bad.log'
    with pytest.raises(DemoError) as err:
        run_tool('train', ['-opt', str(bad)], log, 'training bad')
    assert 'training bad failed (exit code 2)' in str(err.value) and str(log) in str(err.value)
    assert "train.total_itr: unknown key (did you mean 'train.total_iter'?)" in str(err.value)
    assert log.read_text().startswith('$ python tools/train.py -opt ')


def test_gain_box_finds_where_the_better_image_gains_most():
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 255, (40, 60, 3)).astype(np.uint8)
    base = np.full_like(hr, 128)
    better = base.copy()
    better[20:30, 35:45] = hr[20:30, 35:45]          # exact there, as bad as base elsewhere
    better[0:10, 0:10] = hr[0:10, 0:10]              # also exact, but inside the 4 px margin
    assert gain_box(hr, base, better, 10, margin=4) == (35, 20)


def test_reading_compares_with_scratch_and_flags_a_colour_cast():
    rows = [MethodRow('bicubic', 'Bicubic', psnr=28.0, ssim=0.78),
            MethodRow('scratch', 'S', 'EDSR 4x16', psnr=28.5, ssim=0.79, steps=300, colour_shift=(0.2, -0.4, 0.1)),
            MethodRow('dckd', 'D', 'EDSR 4x16', psnr=28.4, ssim=0.80, steps=300, colour_shift=(2.04, -1.5, 0.0)),
            MethodRow('teacher', 'T', 'EDSR 8x32', psnr=29.25, ssim=0.81, steps=1000, colour_shift=(0.0, 0.0, 0.0))]
    text = reading(rows, 'teacher')
    assert text[0] == 'The teacher (EDSR 8x32) is 1.25 dB above bicubic.'
    assert text[1] == 'The student trained from scratch (EDSR 4x16) is 0.50 dB above bicubic.'
    assert text[2].startswith('D: -0.10 dB Y-PSNR and +0.0100 SSIM against the same student trained from scratch')
    assert len(text) == 4 and text[3].startswith('D shifts colours: on average its output is R +2.0, G -1.5, B +0.0')


def test_colour_shift_is_the_mean_channel_offset(tmp_path):
    from ckdsr.demo.scoring import colour_shift
    from ckdsr.data.image_io import write_png
    (tmp_path / 'HR').mkdir()
    hr = np.full((9, 10, 3), 100, np.uint8)
    write_png(tmp_path / 'HR' / 'a.png', hr)
    write_png(tmp_path / 'a_x4.png', (hr[:8, :8] + np.array([3, 0, 0], np.uint8)))  # SR is HR mod-cropped
    assert colour_shift(tmp_path, tmp_path, 4) == (3.0, 0.0, 0.0)


def test_pipeline_file_and_option_files_agree():
    cfg = load_pipeline()
    assert [r.key for r in cfg.runs] == ['teacher', 'scratch', 'logits_kd', 'dckd']
    assert not set(cfg.data['train_photos']) & set(cfg.data['heldout_photos'])
    trees = {r.key: read_yaml(str(r.options)) for r in cfg.runs}
    students = [trees[k] for k in ('scratch', 'logits_kd', 'dckd')]
    for key in ('network_g', 'datasets', 'manual_seed', 'scale'):
        assert all(t[key] == students[0][key] for t in students), key
    for key in ('optim_g', 'scheduler', 'total_iter', 'ema_decay'):
        assert all(t['train'][key] == students[0]['train'][key] for t in students), key
    for t in trees.values():
        assert t['train']['scheduler']['periods'] == [t['train']['total_iter']]
    teacher, student = trees['teacher']['network_g'], students[0]['network_g']
    assert teacher['num_feat'] * teacher['num_block'] > student['num_feat'] * student['num_block']
    tiny = load_pipeline(tiny=True)
    assert tiny.runs[0].sets and tiny.num_codes < cfg.num_codes


def test_pipeline_errors_name_the_key(tmp_path):
    bad = tmp_path / 'p.yaml'
    bad.write_text((REPO / 'options' / 'demo' / 'pipeline.yaml').read_text().replace(
        'heldout_photos: [chelsea, coffee, camera]', 'heldout_photos: [chelsea, astronaut]'))
    with pytest.raises(PipelineError, match=r"\['astronaut'\] are both training and held-out"):
        load_pipeline(bad)
    bad.write_text('data: {train_photos: [astronaut], heldout_photos: [chelsea], crop_size: 96, step: 96, '
                   'stride: 3}\n')
    with pytest.raises(PipelineError, match='data.stride: unknown key'):
        load_pipeline(bad)


def test_full_run_commands_name_existing_files():
    files = full_run_files()
    assert 'options/dckd_rcan_x4.yml' in files and 'tools/create_lmdb.py' in files and 'tools/test.py' in files
    missing = [f for f in files if not (REPO / f).is_file()]
    assert not missing


# ----------------------------------------------------------------------------- end to end
def _content_runs(mask: np.ndarray, min_len: int = 20):
    """Lengths of the runs of True in a 1-D mask that are at least ``min_len`` long."""
    runs, n = [], 0
    for v in list(mask) + [False]:
        if v:
            n += 1
        else:
            if n >= min_len:
                runs.append(n)
            n = 0
    return runs


@pytest.fixture(scope='module')
def tiny_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp('demo') / 'demo_out'
    cmd = [sys.executable, str(REPO / 'tools' / 'demo.py'), '--tiny', '--no-progress', '--out', str(out)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900,
                          env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return out, proc.stdout


def test_tiny_demo_prints_the_table(tiny_demo):
    _, stdout = tiny_demo
    lines = stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith('Method'))
    for col in ('Network', 'Params', 'MACs@320x180', 'Y-PSNR', 'Y-SSIM', 'Steps', 'Train time'):
        assert col in lines[head]
    rows = lines[head + 2:head + 2 + len(METHODS)]
    assert [r.split('  ')[0] for r in rows] == METHODS
    for row in rows:
        m = re.search(r'\s(\d+\.\d{2})\s+(\d\.\d{4})\s', row)
        assert m and 5 < float(m[1]) < 60 and 0 < float(m[2]) <= 1, row
    assert 'whole pipeline' in stdout


def test_tiny_demo_writes_the_report(tiny_demo):
    out, _ = tiny_demo
    report = (out / 'report.md').read_text()
    table = [line for line in report.splitlines() if line.startswith('| ')]
    assert table[0].startswith('| Method | Network | Params | MACs (320x180 -> x4) | Y-PSNR | Y-SSIM')
    assert [r.split(' | ')[0][2:] for r in table[2:]] == METHODS
    for needle in ('![training curves](curves.png)', '![crops](crops.png)', 'held-out photos', '`chelsea`',
                   'python tools/train.py -opt options/demo/dckd.yml',
                   'python tools/fit_codebook.py -opt options/demo/dckd.yml',
                   'python tools/create_lmdb.py --hr datasets/DIV2K/DIV2K_train_HR',
                   'python tools/train.py -opt options/dckd_rcan_x4.yml',
                   'tools/test.py -opt options/test/test_rcan_10x6_x4.yml'):
        assert needle in report, needle
    assert 'Panels, left to right: ' + ' | '.join(CROP_PANELS) in report
    assert report.rstrip().endswith('```')   # ends with the full-run commands
    for name in ('teacher', 'scratch', 'logits_kd', 'dckd'):
        assert (out / 'experiments' / f'demo_{name}' / 'models' / 'net_g_latest.pth').is_file()
    assert (out / 'data' / 'benchmark' / 'skimage_heldout' / 'LR_bicubic' / 'X4' / 'chelseax4.png').is_file()


def test_tiny_demo_pictures_have_their_layout(tiny_demo):
    from ckdsr.data.image_io import read_image
    from ckdsr.demo.figures import CURVES_SIZE, DPI, PANEL_INCHES
    out, _ = tiny_demo
    curves = read_image(out / 'curves.png')
    assert curves.shape[:2] == (round(CURVES_SIZE[1] * DPI), round(CURVES_SIZE[0] * DPI))
    crops = read_image(out / 'crops.png')
    assert crops.shape[:2] == (round((PANEL_INCHES + 0.9) * DPI), round(6 * PANEL_INCHES * DPI))
    # the picture band: six separate panels of equal width on a white background
    mid = int(crops.shape[0] * 0.62)
    band = crops[mid - 10:mid + 10]
    runs = _content_runs((band < 250).any(axis=(0, 2)))
    assert len(runs) == 6 and max(runs) - min(runs) <= 2, runs
    # the HR panel (last) is the photo, not a blank: it has texture
    hr_panel = band[:, -runs[-1] - 10:]
    assert hr_panel.std() > 5
