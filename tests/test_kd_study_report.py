"""benchmarks/kd_study: the paired statistics of the study report and the colour offset of the runner."""
import math

import numpy as np

from benchmarks.kd_study.report import contrasts, summarise, t_interval
from benchmarks.kd_study.run import colour_offset


def test_t_interval_by_hand():
    m, lo, hi = t_interval([1.0, 2.0, 3.0])  # mean 2, sd 1, t(0.975, 2) = 4.302653
    half = 4.302653 / math.sqrt(3)
    assert m == 2.0 and abs(lo - (2 - half)) < 1e-5 and abs(hi - (2 + half)) < 1e-5
    assert math.isnan(t_interval([0.5])[1])


def test_colour_offset_is_the_summed_channel_difference_on_the_common_crop():
    gt = np.full((5, 6, 3), 100, np.uint8)
    sr = np.full((4, 4, 3), 100, np.uint8)
    sr[..., 0] += 2  # R 2 levels brighter everywhere
    sr[0, 0, 2] = 96  # one pixel 4 levels darker in B
    total, count = colour_offset(sr, gt)
    assert count == 16 and total.tolist() == [32.0, 0.0, -4.0]


def record(method, seed, psnr, colour=(0.0, 0.0, 0.0), step=10):
    scores = {s: {'psnr': psnr, 'ssim': 0.5, 'colour': list(colour)}
              for s in ('val', 'B100', 'Set5', 'Set14', 'Urban100')}
    return {'run': f'{method}_s{seed}', 'method': method, 'student': '4x16', 'seed': seed, 'step': step,
            'total_steps': 10, 'tag': '', 'sets': [], 'train_s': 60.0, 'scores': scores}


def test_summary_pairs_by_seed_and_ignores_intermediate_steps():
    recs = [record('scratch', 0, 25.0), record('scratch', 1, 26.0), record('scratch', 2, 27.0),
            record('logits_kd', 0, 25.1), record('logits_kd', 1, 26.3), record('logits_kd', 2, 27.2, (3.0, 0, 0)),
            record('logits_kd', 0, 20.0, step=5)]
    rows = {r['method']: r for r in summarise(recs)}
    kd = rows['logits_kd']
    d, lo, hi, n = kd['diff']['B100']
    assert n == 3 and abs(d - 0.2) < 1e-9 and lo < 0.2 < hi   # diffs 0.1, 0.3, 0.2
    assert abs(kd['B100']['psnr'][0] - 26.2) < 1e-9 and kd['colour'] == [1.0, 0.0, 0.0]
    assert 'diff' not in rows['scratch']


def test_baseline_has_the_same_length_and_contrasts_pair_by_seed():
    short = [dict(record('scratch', 0, 24.0), total_steps=3, step=3, tag='short', run='scratch_short'),
             dict(record('dckd_offline', 0, 23.0), total_steps=3, step=3, tag='trial', run='dckd_trial')]
    recs = [record('scratch', 0, 25.0), record('scratch', 1, 26.0),
            record('logits_kd', 0, 25.2), record('logits_kd', 1, 26.4),
            record('dckd_offline', 0, 25.3), record('dckd_offline', 1, 26.3), record('dckd_offline', 2, 30.0)] + short
    rows = {(r['method'], r['tag']): r for r in summarise(recs)}
    # the 3-step trial is compared with the 3-step scratch of another trial, not the 10-step runs
    assert abs(rows[('dckd_offline', 'trial')]['diff']['val'][0] - (-1.0)) < 1e-9
    c = {x['method'] + '-' + x['reference']: x for x in contrasts(recs, '4x16')}
    d = c['dckd_offline-logits_kd']
    assert d['seeds'] == [0, 1] and abs(d['diff']['B100'][0] - 0.0) < 1e-9  # +0.1 and -0.1
    assert abs(d['diff']['B100'][1] - (-d['diff']['B100'][2])) < 1e-9 and d['diff']['B100'][3] == 2
    assert 'dckd_offline-dckd_no_contrastive' not in c  # no runs of the reference: no row


def test_ssim_differences_are_paired_too():
    recs = [record('scratch', 0, 25.0), record('scratch', 1, 26.0), record('csd', 0, 25.0), record('csd', 1, 26.0)]
    for r, ssim in zip(recs[2:], (0.503, 0.501)):
        r['scores']['B100']['ssim'] = ssim
    row = {r['method']: r for r in summarise(recs)}['csd']
    m, lo, hi, n = row['diff_ssim']['B100']
    assert abs(m - 0.002) < 1e-9 and n == 2 and lo < 0.002 < hi and row['diff']['B100'][0] == 0.0
