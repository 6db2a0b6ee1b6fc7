"""The benchmark tools run and write well-formed results (tiny preset, 2 warm steps).

No speed is asserted here: speed targets live in the benchmarks (ratios measured in one run, see
benchmarks/RESULTS.md), never in timed unit tests.
"""
import json

import pytest
import torch

from benchmarks import inference as inference_tool
from benchmarks import train_step as train_tool
from benchmarks.lib import methods as M
from benchmarks.lib import report
from ckdsr.models.network_io import build_network

FAST = ['--preset', 'tiny', '--steps', '2', '--warmup', '2', '--quick-peak']


def _run_train(tmp_path, *args):
    out, md = tmp_path / 'train_step.json', tmp_path / 'RESULTS.md'
    assert train_tool.main(list(args) + FAST + ['--json', str(out), '--md', str(md)]) == 0
    return json.loads(out.read_text()), md.read_text()


def _check_record(r):
    assert r['tool'] == 'train_step' and r['preset'] == 'tiny' and r['device'] == 'cpu'
    assert r['step_s'] > 0 and len(r['step_times_s']) == 2
    assert r['essential_sum_s'] > 0 and r['overhead_ratio'] > 0
    assert r['vs_scratch'] > 0 and r['scratch']['step_s'] > 0
    assert r['step_flops'] > 0 and 0 < r['fraction_of_peak']
    assert r['peak']['float32']['peak_tflops'] > 0
    cats = set(r['breakdown_s'])
    assert {'student fwd', 'backward', 'optimizer'} <= cats
    assert r['memory']['peak_mb'] > 0
    assert any(c['net'] == 'student' and c['grad'] for c in r['network_calls'])
    assert 'fixes' not in r  # the in-process "proposed fixes" are in the core now (issue 19.7)


def test_train_step_scratch_and_logits(tmp_path):
    records, md = _run_train(tmp_path, '--method', 'scratch')
    records, md = _run_train(tmp_path, '--method', 'logits')
    assert len(records) == 2
    for r in records:
        _check_record(r)
    scratch, logits = records
    assert scratch['vs_scratch'] == 1.0 and scratch['model_type'] == 'SRModel'
    assert 'teacher fwd' in logits['breakdown_s']
    assert logits['step_calls'] == {'lq': 1, 'sr': 1, 'teacher_sr': 1}
    assert any(k.startswith('teacher') for k in logits['essential_s'])
    for name in report.SECTIONS:
        assert f'<!-- BEGIN GENERATED: {name} -->' in md and f'<!-- END GENERATED: {name} -->' in md
    summary = md.split('<!-- BEGIN GENERATED: train_step_summary -->')[1].split('<!-- END')[0]
    rows = [line for line in summary.splitlines() if line.startswith('| ')]
    assert len(rows) == 2 + 2  # header, alignment, one row per run
    assert all(row.count('|') == rows[0].count('|') for row in rows)
    assert '| logits |' in summary and '| scratch |' in summary


def test_try_fixes_flag_is_gone(capsys):
    """--try-fixes and benchmarks/lib/fixes.py were removed once both fixes went into the core."""
    with pytest.raises(SystemExit):
        train_tool.parse_args(['--method', 'logits', '--try-fixes', 'taps,ema'])
    assert 'unrecognized arguments: --try-fixes' in capsys.readouterr().err


def test_train_step_flops_only(tmp_path):
    records, md = _run_train(tmp_path, '--method', 'logits', '--flops-only', '--batch', '2')
    (r,) = records
    assert r['flops_only'] and r['step_flops'] > 0
    assert r['flops_at_file_batch'] == pytest.approx(r['step_flops'] * M.TINY_BATCH / 2)
    assert '(count only)' in md


@pytest.mark.slow
@pytest.mark.parametrize('method', M.available_methods())
def test_train_step_every_method(tmp_path, method):
    (r,), _ = _run_train(tmp_path, '--method', method)
    _check_record(r)


def test_inference_tool(tmp_path):
    out, md = tmp_path / 'inference.json', tmp_path / 'RESULTS.md'
    md.write_text('# mine\n\nhand-written text\n')
    argv = ['--nets', 'carn_m', '--lr-size', '40x24', '--tiles', '0', '16', '--tile-overlap', '4', '--reps', '1',
            '--json', str(out), '--md', str(md)]
    assert inference_tool.main(argv) == 0
    (r,) = json.loads(out.read_text())
    assert r['tool'] == 'inference' and len(r['rows']) == 2
    whole, tiled = r['rows']
    assert whole['out_size'] == [96, 160] and not whole['full_720p']
    assert tiled['tiles'] > 1 and tiled['macs'] > whole['macs'] > 0  # overlapping tiles cost more
    text = md.read_text()
    assert text.startswith('# mine\n\nhand-written text\n')  # hand-written text is kept
    assert '| carn_m |' in text and '(**reduced**, --lr-size)' in text


def test_tile_macs_count_every_tile():
    from ckdsr.models.inference import tiled_forward  # noqa: F401  (the helper runs it on meta tensors)
    shapes = inference_tool.tile_shapes((24, 40), 16, 4)
    assert len(shapes) == 2 * 3 and all(s == (16, 16) for s in shapes)


def test_remap_taps_keeps_relative_depth():
    big = build_network({'type': 'EDSR', 'num_feat': 8, 'num_block': 32}, 4)
    small = build_network({'type': 'EDSR', 'num_feat': 8, 'num_block': 8}, 4)
    assert M.remap_taps(['body.9', 'body.19', 'body.31', 'conv_after_body'], big, small, 'x') == \
        ['body.2', 'body.4', 'body.7', 'conv_after_body']
    with pytest.raises(ValueError, match='collide'):
        M.remap_taps(['body.0', 'body.1'], big, small, 'x')


def test_tiny_tree_shrinks_nets_keeps_terms():
    tree = M.load_option_file(M.REPO / 'options' / 'kd_rcan_x4.yml')
    tiny, notes = M.tiny_tree(tree)
    assert tiny['train']['losses'] == tree['train']['losses']
    for key in ('network_g', 'network_t'):
        assert tiny[key]['type'] == tree[key]['type']
        assert tiny[key]['num_feat'] < tree[key]['num_feat']
    scratch = M.scratch_tree(tree)
    assert scratch['model_type'] == 'SRModel' and 'network_t' not in scratch and 'losses' not in scratch['train']
    assert scratch['network_g'] == tree['network_g'] and scratch['train']['optim_g'] == tree['train']['optim_g']


def test_synthetic_batch_shapes():
    b = M.synthetic_batch(3, 12, 4)
    assert b['lq'].shape == (3, 3, 12, 12) and b['gt'].shape == (3, 3, 48, 48)
    assert 0 <= float(b['gt'].min()) and float(b['gt'].max()) <= 1 and torch.isfinite(b['lq']).all()
