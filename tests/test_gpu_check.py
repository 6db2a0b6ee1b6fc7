"""benchmarks/gpu_check.py in its CPU mode (--device cpu --tiny), so the prepared GPU check cannot rot:
one method in fp32 and bf16, compared with the CPU reference, timed, and the 2-process step (gloo)."""
import json

from benchmarks import gpu_check


def test_gpu_check_cpu_tiny_mode(tmp_path):
    rc = gpu_check.main(['--device', 'cpu', '--tiny', '--methods', 'logits', '--steps', '1', '--warmup', '1',
                         '--quick-peak', '--dist', 'gloo', '--out-dir', str(tmp_path)])
    data = json.loads((tmp_path / 'gpu_check_cpu_tiny.json').read_text())
    records = data['records']
    assert [(r['method'], r['precision']) for r in records] == [('logits', 'fp32'), ('logits', 'bf16+CL')]
    fp32, bf16 = records
    assert 'error' not in fp32 and 'error' not in bf16, (fp32.get('traceback'), bf16.get('traceback'))
    # the same CPU build and batch as the reference: fp32 is the reference itself, bit for bit
    assert fp32['first_losses'] == fp32['cpu_first_losses'] and max(fp32['rel_vs_cpu'].values()) == 0.0
    assert 0.0 < max(bf16['rel_vs_fp32'].values()) < 0.1      # bf16 really ran, and stayed near fp32
    for r in records:
        assert r['step_s'] > 0 and r['step_flops'] > 0 and 0 < r['fraction_of_peak']
        assert r['memory']['peak_mb'] > 0 and r['ok']
    assert data['dist']['backend'] == 'gloo' and data['dist']['weights_equal_across_ranks']
    assert data['env']['peaks']['bf16+CL']['dtype'] == 'bfloat16'
    md = (tmp_path / 'gpu_check_cpu_tiny.md').read_text()
    assert '| logits | fp32 | yes |' in md and '2-process step (gloo): ok' in md
    assert rc == 0
