"""kd_study.{md,json,png} from the study's records (benchmarks/results/kd_study_records.jsonl).

Per (student, method, tag) at the final step of its runs: mean +- std over seeds of Y-PSNR / SSIM per
set, the paired difference to scratch (same student, seed and step; for the fine-tunes: pcl_finetune
minus l1_finetune) with its 95% t-interval, and the mean per-channel colour offset (SR - HR, grey
levels) over the test sets. The plot: test PSNR vs step per method (B100, or the test set scored at the
most checkpoints; the validation split while no test set has a curve), mean and min-max over seeds;
validation trials (``--tag``) dashed.
"""
import json
import math
import os
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / 'benchmarks' / 'results'
SETS = ('val', 'B100', 'Set5', 'Set14', 'Urban100')
TEST = ('B100', 'Set5', 'Set14', 'Urban100')
FACD_CHOSEN = '0.01'
BASELINE = {'pcl_finetune': 'l1_finetune', 'l1_finetune': None}   # everything else: scratch
#: paired contrasts that isolate one term: (what it measures, method, reference): the two option files
#: differ only in that term (options/experiments/kd_study/)
CONTRASTS = (
    ('DCL + DMM on top of logits KD', 'dckd_offline', 'logits_kd'),
    ('DCL (the contrastive term) in DCKD', 'dckd_offline', 'dckd_no_contrastive'),
    ('DMM in DCKD', 'dckd_offline', 'dckd_no_dmm'),
    ('L1(S, T) in DCKD', 'dckd_offline', 'dckd_no_kd'),
    ('DMM on top of logits KD', 'dckd_no_contrastive', 'logits_kd'),
    ('DUKD\'s zoom-in/out + LCR on top of logits KD', 'dukd', 'logits_kd'),
    ('PCL vs L1 fine-tuning', 'pcl_finetune', 'l1_finetune'),
    ('CSD\'s contrastive term (L_con) in its joint training', 'csd', 'csd_joint'),
)


def mean_std(v: Sequence[float]) -> Tuple[float, float]:
    m = sum(v) / len(v)
    s = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else float('nan')
    return m, s


def t_interval(d: Sequence[float], level: float = 0.95) -> Tuple[float, float, float]:
    """Mean of the paired differences and its two-sided ``level`` t-interval (nan with one pair)."""
    from scipy import stats
    m, s = mean_std(d)
    if len(d) < 2:
        return m, float('nan'), float('nan')
    h = stats.t.ppf(0.5 + level / 2, len(d) - 1) * s / math.sqrt(len(d))
    return m, m - h, m + h


def final_records(records: List[Dict[str, Any]]) -> Dict[Tuple[str, str, str], Dict[int, Dict[str, Any]]]:
    """``{(student, method, tag): {seed: record at the run's last step}}`` (runs that reached it)."""
    out = defaultdict(dict)
    for r in records:
        if r['step'] == r['total_steps']:
            out[(r['student'], r['method'], r.get('tag', ''))][r['seed']] = r
    return out


def summarise(records: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    finals = final_records(records)
    rows = []
    for (student, method, tag), by_seed in sorted(finals.items(), key=lambda kv: order_key(kv[0])):
        row = {'student': student, 'method': method, 'tag': tag, 'seeds': sorted(by_seed),
               'steps': next(iter(by_seed.values()))['total_steps'],
               'sets': next(iter(by_seed.values())).get('sets', []),
               'train_min': mean_std([r['train_s'] / 60 for r in by_seed.values()])[0]}
        for s in SETS:
            if all(s in r['scores'] for r in by_seed.values()):
                row[s] = {k: mean_std([r['scores'][s][k] for r in by_seed.values()]) for k in ('psnr', 'ssim')}
        colours = [[r['scores'][s]['colour'] for s in TEST if s in r['scores']] for r in by_seed.values()]
        row['colour'] = [sum(c[i] for cs in colours for c in cs) / sum(len(cs) for cs in colours) for i in range(3)]
        base_m = BASELINE.get(method, 'scratch')
        base = None
        if base_m and method != base_m:
            base = baseline_runs(finals, student, base_m, tag, row['steps'])
        if base:
            row['baseline'] = base_m
            row.update(paired_differences(by_seed, base))
        rows.append(row)
    return rows


def paired_differences(runs, base) -> Dict[str, Dict[str, Tuple[float, float, float, int]]]:
    """``{'diff': {set: (mean, lo, hi, n)}, 'diff_ssim': {...}}``: ``runs`` minus ``base`` (both
    ``{seed: final record}``) over the seeds both have, PSNR and SSIM, with the 95% t-interval."""
    out: Dict[str, Dict[str, Tuple[float, float, float, int]]] = {}
    for metric, field in (('psnr', 'diff'), ('ssim', 'diff_ssim')):
        for s in SETS:
            d = [runs[k]['scores'][s][metric] - base[k]['scores'][s][metric] for k in sorted(runs)
                 if k in base and s in runs[k]['scores'] and s in base[k]['scores']]
            if d:
                out.setdefault(field, {})[s] = t_interval(d) + (len(d),)
    return out


def baseline_runs(finals, student: str, method: str, tag: str, steps: int):
    """The baseline's runs of the same length: the same trial (tag) first, then the untagged runs, then
    any trial of that length (e.g. a 300-step trial is compared with the 300-step scratch)."""
    tags = [tag, ''] + sorted(t for (st, m, t) in finals if st == student and m == method)
    for t in tags:
        runs = finals.get((student, method, t))
        if runs and next(iter(runs.values()))['total_steps'] == steps:
            return runs
    return None


#: settings chosen on the validation split: (what, method, [(value, trial tag or '' for the option
#: file's own runs)], chosen value, why when the val column alone does not decide). Seed 0, val PSNR
#: at the final step of each trial; the option files in options/experiments/kd_study/ carry the choice.
DECISIONS = (
    ('offline DCKD embedding colour-centred (`distill.teacher_embedding.centre_colour`, 300-step runs; '
     'colour_cast.md)', 'dckd_offline', [('false', 'colour'), ('true', 'colour_centred')], 'true', ''),
    ('DCKD contrastive weight (paper 0.1)', 'dckd_offline',
     [('0.1', 'dcl0.1'), ('0.03', 'dcl0.03'), ('0.01', 'dcl0.01')], '0.03',
     '0.03 and 0.01 tie on val, 0.001 dB apart: the one nearer the paper\'s weight is kept'),
    ('DMM temperature (the released code has none: T = 1; with the L2-normalised offline z the softmax over the '
     'codes is nearly uniform at T = 1, L_ce 5.52 of log 256 = 5.55; at T = 0.05 it is 2.76)', 'dckd_offline',
     [('1', ''), ('0.05', 'dmm_t0.05')], '1', 'no difference on val: the released T = 1 is kept'),
    ('FAKD weight (shipped fakd_*.yml: 10)', 'fakd',
     [('10', 'fakd_w10'), ('1', 'fakd_w1'), ('0.1', 'fakd_w0.1'), ('0.01', 'fakd_w0.01')], '0.1', ''),
    ('FACD feature-contrast weight λ (shipped facd_*.yml: 4, Eq. 4 summed over the batch)', 'facd',
     [('4', 'facd_w4'), ('1', 'facd_w1'), ('0.25', 'facd_w0.25'), ('0.05', 'facd_w0.05'), ('0.01', 'facd_w0.01'),
      ('0 (adaptive L_SR alone)', 'facd_w0')], FACD_CHOSEN,
     'every positive weight is below weight 0 on val: the feature term does not help here; weight 0 is '
     'not FACD, so the best positive weight is kept'),
)


def decisions_markdown(records: List[Dict[str, Any]]) -> List[str]:
    """The 'settings chosen' list: every value tried with its val PSNR (seed 0, final step)."""
    val = {}
    for r in records:
        if r['seed'] == 0 and r['step'] == r['total_steps'] and 'val' in r['scores']:
            val[(r['method'], r.get('tag', ''))] = r['scores']['val']['psnr']
    out = ['Settings chosen on the validation split (val Y-PSNR of seed 0 per value tried; the option files '
           'carry the chosen value, every other weight is the shipped method file\'s):', '']
    for what, method, tried, chosen, why in DECISIONS:
        cells = [f"{'**' if v == chosen else ''}{v}: "
                 f"{f'{val[(method, t)]:.3f}' if (method, t) in val else 'not run'}{'**' if v == chosen else ''}"
                 for v, t in tried]
        out.append(f'- {what}: ' + '; '.join(cells) + f' → **{chosen}**' + (f' ({why})' if why else ''))
    out.append('- CSD contrastive weight: 200/255 = 0.784 (the released `--contra_lambda 200` against L1 on '
               '[0, 255]), not tuned; its embedding is CARN-M\'s colour-centred features (SRNetFeatures), '
               'the stand-in for VGG19')
    return out + ['']


def contrasts(records: List[Dict[str, Any]], student: str) -> List[Dict[str, Any]]:
    """The paired differences of :data:`CONTRASTS` (untagged runs at their last step, seeds both have)."""
    finals = final_records(records)
    out = []
    for label, method, ref in CONTRASTS:
        a, b = finals.get((student, method, ''), {}), finals.get((student, ref, ''), {})
        seeds = sorted(set(a) & set(b))
        if not seeds:
            continue
        out.append({'what': label, 'method': method, 'reference': ref, 'seeds': seeds,
                    **paired_differences(a, b)})
    return out


def order_key(k):
    from benchmarks.kd_study.run import METHODS
    student, method, tag = k
    return (student, tag != '', tag, list(METHODS).index(method) if method in METHODS else 99)


def fmt_ms(ms, nd=3):
    m, s = ms
    return f'{m:.{nd}f} ± {s:.{nd}f}' if not math.isnan(s) else f'{m:.{nd}f}'


def fmt_diff(d, nd=3):
    m, lo, hi, n = d
    return f'{m:+.{nd}f} [{lo:+.{nd}f}, {hi:+.{nd}f}]' if not math.isnan(lo) else f'{m:+.{nd}f} (n={n})'


def markdown(rows: List[Dict[str, Any]], records: List[Dict[str, Any]]) -> str:
    uptime = subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()
    out = ['# Distillation study: CARN-M teacher -> small EDSR students, x4', '',
           'Generated by `python benchmarks/kd_study/run.py --report` from '
           '`benchmarks/results/kd_study_records.jsonl` (one record per method, student, seed and checkpoint). '
           'Setup, plan and how to continue: `benchmarks/kd_study/README.md`; the colour cast: '
           '`benchmarks/kd_study/colour_cast.md`.', '',
           'Y-PSNR (dB) / SSIM on Y, crop 4, MATLAB LR files, final weights of each run; mean ± std over seeds. '
           '`val` is the validation split (6 held-out training photos, the only split loss weights may be '
           'chosen on); the others are test sets (Urban100: its first 20 images). Δ: paired difference to '
           'scratch (same student, seed, steps, data order; pcl_finetune: to l1_finetune) with its 95% '
           't-interval. Colour: mean SR − HR per channel (R, G, B grey levels of 255) over the test sets.',
           '', f'Machine: {os.cpu_count()} CPU cores, one thread per run; load when written: `{uptime}`. '
           '`train min` is the wall time of the training command (shared cores: compare within a load).', '',
           'Rows with a tag are validation trials (their settings are listed at the end).', '']
    out += decisions_markdown(records)
    for student in sorted({r['student'] for r in rows}):
        mine = [r for r in rows if r['student'] == student]
        main, trials = [r for r in mine if not r['tag']], [r for r in mine if r['tag']]
        out += [f'## Student EDSR {student}', '', '### Paired difference to the baseline (dB, 95% t-interval)', '']
        head = ['method', 'seeds', 'steps', 'baseline'] + [f'Δ {s}' for s in SETS] + \
               ['Δ SSIM B100 (×1e-3)', 'colour R, G, B', 'train min']
        out += ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
        for r in main:
            cells = [r['method'], str(len(r['seeds'])), str(r['steps']), r.get('baseline', '–')]
            cells += [fmt_diff(r['diff'][s]) if s in r.get('diff', {}) else '–' for s in SETS]
            ssim = r.get('diff_ssim', {}).get('B100')
            cells.append(fmt_diff(tuple(v * 1e3 for v in ssim[:3]) + ssim[3:], 1) if ssim else '–')
            cells += [', '.join(f'{v:+.2f}' for v in r['colour']), f"{r['train_min']:.1f}"]
            out.append('| ' + ' | '.join(cells) + ' |')
        out += ['', '### Scores (Y-PSNR dB / SSIM, mean ± std over seeds)', '']
        head = ['method', 'seeds'] + [f'{s}' for s in SETS]
        out += ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
        for r in main:
            cells = [r['method'], str(len(r['seeds']))]
            cells += [f"{fmt_ms(r[s]['psnr'], 2)} / {fmt_ms(r[s]['ssim'], 4)}" if s in r else '–' for s in SETS]
            out.append('| ' + ' | '.join(cells) + ' |')
        pairs = contrasts(records, student)
        if pairs:
            out += ['', '### What one term does (paired: two option files that differ only in it)', '']
            head = ['term', 'method − reference', 'seeds'] + [f'Δ {s}' for s in SETS] + ['Δ SSIM B100 (×1e-3)']
            out += ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
            for c in pairs:
                cells = [c['what'], f"{c['method']} − {c['reference']}", str(len(c['seeds']))]
                cells += [fmt_diff(c['diff'][s]) if s in c.get('diff', {}) else '–' for s in SETS]
                ssim = c.get('diff_ssim', {}).get('B100')
                cells.append(fmt_diff(tuple(v * 1e3 for v in ssim[:3]) + ssim[3:], 1) if ssim else '–')
                out.append('| ' + ' | '.join(cells) + ' |')
        if trials:
            out += ['', '### Validation trials (choose on `val` only; test columns for the record)', '']
            head = ['method', 'tag', 'seeds', 'steps', 'val PSNR', 'Δ val', 'B100 PSNR', 'colour R, G, B']
            out += ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
            for r in trials:
                cells = [r['method'], r['tag'], str(len(r['seeds'])), str(r['steps']),
                         fmt_ms(r['val']['psnr'], 3) if 'val' in r else '–',
                         fmt_diff(r['diff']['val']) if 'val' in r.get('diff', {}) else '–',
                         fmt_ms(r['B100']['psnr'], 2) if 'B100' in r else '–',
                         ', '.join(f'{v:+.2f}' for v in r['colour'])]
                out.append('| ' + ' | '.join(cells) + ' |')
        out.append('')
    tried = sorted({(r.get('tag', ''), ' '.join(r.get('sets', []))) for r in records if r.get('tag') or r.get('sets')})
    out += ['## Settings tried (validation trials)', '']
    out += [f'- `{t or "(no tag)"}`: `{s or "(option files as shipped)"}`' for t, s in tried] or ['- none yet']
    out.append('')
    return '\n'.join(out)


#: one colour per method (matplotlib's ten, then three more): 13 methods, no two alike
PALETTE = [f'C{i}' for i in range(10)] + ['black', 'gold', 'teal']
#: test sets by size (images): the largest set scored at the most checkpoints draws the curves
SET_SIZE = {'B100': 100, 'Urban100': 20, 'Set14': 14, 'Set5': 5}


def curve_set(records: List[Dict[str, Any]]) -> str:
    """The test set scored at the most checkpoints (intermediate checkpoints may be scored on fewer
    sets), the larger one on a tie; the validation split only when no test set has a curve."""
    counts = {s: sum(s in r['scores'] for r in records) for s in SETS}
    finals = len({r['run'] for r in records})
    best = max(TEST, key=lambda s: (counts[s], SET_SIZE[s]))
    return best if counts[best] > finals or counts['val'] <= finals else 'val'


def paired_curves(records: List[Dict[str, Any]], set_name: str):
    """``{(student, method): {step: {seed: psnr}}}`` for the untagged runs (the trials are in the table)."""
    curves = defaultdict(lambda: defaultdict(dict))
    for r in records:
        if not r.get('tag') and set_name in r['scores']:
            curves[(r['student'], r['method'])][r['step']][r['seed']] = r['scores'][set_name]['psnr']
    return curves


def plot(records: List[Dict[str, Any]], path: Path, set_name: str = '') -> None:
    """Per student: (left) test Y-PSNR vs step per method, mean over seeds with the min-max band;
    (right) the same as the paired difference to the baseline of the same seed and step."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from benchmarks.kd_study.run import METHODS
    set_name = set_name or curve_set(records)
    curves = paired_curves(records, set_name)
    students = sorted({k[0] for k in curves}) or ['-']
    fig, axes = plt.subplots(len(students), 2, figsize=(14, 5 * len(students)), squeeze=False)
    for (ax, dax), student in zip(axes, students):
        for (st, method), by_step in sorted(curves.items(), key=lambda kv: order_key((kv[0][0], kv[0][1], ''))):
            if st != student or len(by_step) < 2:
                continue
            colour = PALETTE[list(METHODS).index(method) % len(PALETTE)] if method in METHODS else 'grey'
            steps = sorted(by_step)
            vals = [list(by_step[t].values()) for t in steps]
            ax.plot(steps, [sum(v) / len(v) for v in vals], marker='o', ms=3, color=colour, label=method)
            ax.fill_between(steps, [min(v) for v in vals], [max(v) for v in vals], color=colour, alpha=0.15)
            base = curves.get((student, BASELINE.get(method, 'scratch') or ''), {})
            diffs = [(t, [by_step[t][k] - base[t][k] for k in by_step[t] if k in base.get(t, {})]) for t in steps]
            diffs = [(t, d) for t, d in diffs if d]
            if diffs and base is not by_step:
                dax.plot([t for t, _ in diffs], [sum(d) / len(d) for _, d in diffs], marker='o', ms=3,
                         color=colour, label=f"{method} − {BASELINE.get(method, 'scratch')}")
                dax.fill_between([t for t, _ in diffs], [min(d) for _, d in diffs], [max(d) for _, d in diffs],
                                 color=colour, alpha=0.12)
        ax.set_title(f'EDSR {student}: {set_name} Y-PSNR vs step (mean; band: min-max over seeds)')
        dax.set_title(f'EDSR {student}: paired difference to the baseline on {set_name} (same seed and step)')
        dax.axhline(0.0, color='k', lw=0.8)
        for a, ylabel in ((ax, 'Y-PSNR (dB)'), (dax, 'Δ Y-PSNR (dB)')):
            a.set_xlabel('training step')
            a.set_ylabel(ylabel)
            a.grid(alpha=0.3)
            if a.get_legend_handles_labels()[0]:
                a.legend(fontsize=7, ncol=2)
            else:
                a.text(0.5, 0.5, 'no study runs recorded yet', ha='center', transform=a.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(records: List[Dict[str, Any]], results: Path = RESULTS) -> None:
    rows = summarise(records)
    results.mkdir(parents=True, exist_ok=True)
    pairs = {st: contrasts(records, st) for st in sorted({r['student'] for r in rows})}
    (results / 'kd_study.json').write_text(json.dumps({'rows': rows, 'contrasts': pairs}, indent=1))
    (results / 'kd_study.md').write_text(markdown(rows, records))
    if records:
        plot(records, results / 'kd_study.png')
