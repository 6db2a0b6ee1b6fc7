"""Result files: ``benchmarks/results/*.json`` (lists of run records, appended) and the generated
tables of ``benchmarks/RESULTS.md``.

RESULTS.md mixes generated tables and written analysis. The generator only rewrites what lies
between ``<!-- BEGIN GENERATED: <name> -->`` and ``<!-- END GENERATED: <name> -->`` markers; the
text around them is kept. A missing file is created from a skeleton with every marker.
"""
import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

SECTIONS = ('train_step_summary', 'train_step_breakdown', 'train_step_essential', 'train_step_calls',
            'train_step_flops', 'inference')


def load_records(path: Path) -> List[Dict[str, Any]]:
    if not path.is_file():
        return []
    data = json.loads(path.read_text() or '[]')
    if not isinstance(data, list):
        raise ValueError(f'{path}: expected a JSON list of run records')
    return data


def _json_safe(obj):
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return repr(obj)


def append_json(path: Path, record: Dict[str, Any]) -> None:
    """Append ``record`` to the JSON list in ``path`` (atomic replace)."""
    records = load_records(path)
    records.append(_json_safe(record))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + '.tmp')
    tmp.write_text(json.dumps(records, indent=1) + '\n')
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- selecting rows
def _key(r: Dict[str, Any]) -> Tuple:
    return (r.get('label'), r.get('option'), r.get('preset'), r.get('device'), r.get('amp'),
            bool(r.get('channels_last')), bool(r.get('compile')), r.get('batch'), r.get('lr_patch'))


def latest(records: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The newest record of each configuration, in first-seen order."""
    order, newest = [], {}
    for r in records:
        k = _key(r)
        if k not in newest:
            order.append(k)
        newest[k] = r
    return [newest[k] for k in order]


METHOD_ORDER = ('scratch', 'logits', 'fakd', 'csd', 'facd', 'pcl', 'dckd')


def _order(r: Dict[str, Any]) -> Tuple:
    """Table order: device, preset, flags, then the method order, then the label."""
    m = r.get('method')
    return (r.get('device') or '', r.get('preset') or '', r.get('amp') or '', bool(r.get('channels_last')),
            bool(r.get('compile')), bool(r.get('flops_only')),
            METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER), r.get('label') or '')


def _flags(r: Dict[str, Any]) -> str:
    f = [r['device']] + ([r['amp']] if r.get('amp') else []) + (['CL'] if r.get('channels_last') else []) \
        + (['compile'] if r.get('compile') else [])
    return ' '.join(f)


def _load(r: Dict[str, Any]) -> str:
    """1-min load average at the start / end of the run."""
    m = r.get('machine') or {}
    return ' / '.join(str(v[0]) for v in (m.get('loadavg'), m.get('loadavg_end')) if v)


def _ms(x: Optional[float]) -> str:
    return '' if x is None else (f'{x * 1e3:.1f}' if x * 1e3 < 100 else f'{x * 1e3:.0f}')


def _table(header: List[str], rows: List[List[str]], align: Optional[List[str]] = None) -> List[str]:
    align = align or ['---'] + ['---:'] * (len(header) - 1)
    return ['| ' + ' | '.join(header) + ' |', '| ' + ' | '.join(align) + ' |'] + \
           ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]


# ----------------------------------------------------------------------------- train step tables
BREAKDOWN_COLS = ('data', 'teacher fwd', 'history fwd', 'embedding fwd', 'pcl samples + D embedding',
                  'facd regressors + alpha', 'lcr transforms', 'bicubic negatives', 'student fwd', 'loss',
                  'finite check', 'backward', 'optimizer', 'ema', 'after_step', 'other')


def train_step_summary(records: List[Dict[str, Any]]) -> List[str]:
    rows = []
    for r in records:
        peak = r.get('peak', {}).get(r.get('peak_dtype') or 'float32', {})
        rows.append([
            r['label'], f"`{r['option']}`", r['preset'], _flags(r), f"{r['batch']}x{r['lr_patch']}²",
            _ms(r['step_s']), _ms((r.get('scratch') or {}).get('step_s')),
            f"{r['vs_scratch']:.2f}" if r.get('vs_scratch') else '',
            _ms(r.get('essential_sum_s')),
            (f"**{r['overhead_ratio']:.3f}**" if r['overhead_ratio'] > 1.15 else f"{r['overhead_ratio']:.3f}")
            if r.get('overhead_ratio') else '',
            f"{r['overhead_excl_loss']:.3f}" if r.get('overhead_excl_loss') else '',
            f"{r['step_flops'] / 1e9:.2f}" if r.get('step_flops') else '',
            (f"{r['fraction_of_peak'] * 100:.1f}% of {peak.get('peak_tflops', 0) * 1e3:.0f}"
             if r.get('fraction_of_peak') else ''),
            f"{r['memory']['peak_mb']:.0f} (+{r['memory']['increase_mb']:.0f})",
            _load(r),
        ])
    header = ['method', 'option file', 'preset', 'device', 'batch x LR patch', 'step ms', 'scratch ms',
              'vs scratch', 'essential ms', 'overhead ratio', 'overhead excl. loss terms', 'GFLOP/step',
              'achieved % of peak GFLOP/s',
              'peak MB (+steps)', 'load 1-min start / end']
    return _table(header, rows, ['---'] * 4 + ['---:'] * (len(header) - 4))


def train_step_breakdown(records: List[Dict[str, Any]]) -> List[str]:
    cols = [c for c in BREAKDOWN_COLS if any(c in r.get('breakdown_s', {}) for r in records)]
    rows = []
    for r in records:
        b = r.get('breakdown_s', {})
        cells = []
        for c in cols:
            v = b.get(c)
            if v is None:
                cells.append('')
            elif v.get('net') and v['net'] < v['total'] * 0.995 and c not in ('student fwd',):
                cells.append(f"{_ms(v['total'])} ({_ms(v['net'])})")
            else:
                cells.append(_ms(v['total']))
        rows.append([r['label'], r['preset'], _flags(r)] + cells
                    + [_ms(b.get('_sum', {}).get('total')), _ms(r['step_s'])])
    return _table(['method', 'preset', 'device'] + list(cols) + ['sum (instr.)', 'step (clean)'], rows,
                  ['---'] * 3 + ['---:'] * (len(cols) + 2))


def train_step_essential(records: List[Dict[str, Any]]) -> List[str]:
    rows = []
    for r in records:
        parts = r.get('essential_s') or {}
        cells = '; '.join(f"{k} {_ms(v['median_s'])}" + (f" ({v['images']} img)" if v.get('images') else '')
                          for k, v in parts.items())
        rows.append([r['label'], r['preset'], _flags(r), cells, _ms(r.get('essential_sum_s')), _ms(r['step_s']),
                     f"{r['overhead_ratio']:.3f}" if r.get('overhead_ratio') else ''])
    return _table(['method', 'preset', 'device', 'essential parts alone, ms (images per step)', 'sum', 'step',
                   'overhead ratio'], rows, ['---'] * 4 + ['---:'] * 3)


def train_step_calls(records: List[Dict[str, Any]]) -> List[str]:
    rows = []
    for r in records:
        nets = {}
        for c in r.get('network_calls') or []:
            key = c['net'] + (' (D update)' if c['phase'] == 'after_step' else '') + (' grad' if c['grad'] else '')
            n, imgs = nets.get(key, (0, 0))
            nets[key] = (n + 1, imgs + (c['in'][0] if c.get('in') else 0))
        net_cell = '; '.join(f'{k}: {n} call{"s" if n > 1 else ""}, {i} img' for k, (n, i) in nets.items())
        sc = r.get('step_calls') or {}
        rows.append([r['label'], r['preset'], f"B={r['batch']}", net_cell,
                     ', '.join(f'{k} {v}' for k, v in sc.items()) if sc else '(SRModel: no providers)'])
    return _table(['method', 'preset', 'batch', 'network calls per step (top level)', 'Step.calls (provider calls)'],
                  rows, ['---'] * 5)


def train_step_flops(records: List[Dict[str, Any]]) -> List[str]:
    rows = []
    for r in records:
        if not r.get('step_flops'):
            continue
        fb = r.get('flops_by_net') or {}
        fwd = sum(v['fwd_flops'] for v in fb.values())
        cells = '; '.join(f"{k} {v['fwd_flops'] / 1e9:.3g}" for k, v in fb.items())
        if r.get('flops_only'):
            timing = ['(count only)', '', '']
            scaled = f"{r['flops_at_file_batch'] / 1e9:.4g} (x{r['file_batch'] / r['batch']:g}, B={r['file_batch']})"
        else:
            peak = r['peak'][r['peak_dtype']]
            timing = [f"{peak['matmul']['tflops'] * 1e3:.0f} / {peak['conv3x3']['tflops'] * 1e3:.0f}",
                      f"{r['achieved_tflops'] * 1e3:.1f}", f"{r['fraction_of_peak'] * 100:.1f}%"]
            scaled = ''
        rows.append([r['label'], r['preset'], _flags(r), f"B={r['batch']} P={r['lr_patch']}", cells,
                     f'{fwd / 1e9:.4g}', f"{r['step_flops'] / 1e9:.4g}", f"{r['step_flops'] / max(fwd, 1):.2f}",
                     scaled] + timing)
    return _table(['method', 'preset', 'device', 'counted at', 'forward GFLOP per network (all calls of the step)',
                   'forward GFLOP', 'step GFLOP (counted: fwd + bwd + hooks)', 'step / forward',
                   'step GFLOP at the file\'s batch', 'peak matmul / conv GFLOP/s (same run)', 'achieved GFLOP/s',
                   '% of peak'], rows, ['---'] * 5 + ['---:'] * 7)


# ----------------------------------------------------------------------------- inference table
def inference_table(records: List[Dict[str, Any]]) -> List[str]:
    rows = []
    for r in records:
        for row in r.get('rows', []):
            rows.append([row['net'], f"{row['params'] / 1e6:.3f}M", _flags(r),
                         f"{row['lr_size'][1]}x{row['lr_size'][0]} -> {row['out_size'][1]}x{row['out_size'][0]}"
                         + ('' if row['full_720p'] else ' (**reduced**, --lr-size)'),
                         f"{row['tile']}/{row['tile_overlap']}" if row['tile'] else 'whole image',
                         f"{row['seconds']:.3f}", f"{1 / row['seconds']:.3f}", f"{row['macs'] / 1e9:.1f}",
                         f"{row['macs'] / row['seconds'] / 1e9:.1f}",
                         f"{row['memory']['peak_mb']:.0f} (+{row['memory']['increase_mb']:.0f})",
                         _load(r)])
    return _table(['network', 'params', 'device', 'LR -> SR (W x H)', 'tiling (tile/overlap, LR px)', 's / image',
                   'images / s', 'GMAC / image', 'achieved GMAC/s', 'peak MB (+forward)', 'load 1-min start / end'],
                  rows, ['---'] * 5 + ['---:'] * 6)


# ----------------------------------------------------------------------------- RESULTS.md
SKELETON = """# Benchmarks

Generated tables are rewritten by `benchmarks/train_step.py` and `benchmarks/inference.py`; the text
outside the GENERATED markers is written by hand and kept.

## Training step

### Summary
{train_step_summary}

### Where the step goes (median ms per part; in brackets: of which network forward)
{train_step_breakdown}

### Essential parts measured alone
{train_step_essential}

### Network calls per step
{train_step_calls}

### FLOPs
{train_step_flops}

## Inference (tools/test.py's model path)
{inference}
"""


def _block(name: str, lines: List[str]) -> str:
    return '\n'.join([f'<!-- BEGIN GENERATED: {name} -->'] + lines + [f'<!-- END GENERATED: {name} -->'])


def write_results_md(md_path: Path, train_json: Optional[Path] = None, inference_json: Optional[Path] = None) -> None:
    """Regenerate the generated blocks of ``md_path`` from the JSON result files."""
    results = md_path.parent / 'results'
    train_json = train_json or results / 'train_step.json'
    inference_json = inference_json or results / 'inference.json'
    every = sorted(latest([r for r in load_records(train_json) if r.get('tool') == 'train_step']), key=_order)
    train = [r for r in every if not r.get('flops_only')]
    infer = latest_inference(load_records(inference_json))
    makers: Dict[str, Callable[[], List[str]]] = {
        'train_step_summary': lambda: train_step_summary(train),
        'train_step_breakdown': lambda: train_step_breakdown(train),
        'train_step_essential': lambda: train_step_essential(train),
        'train_step_calls': lambda: train_step_calls(train),
        'train_step_flops': lambda: train_step_flops(every),
        'inference': lambda: inference_table(infer),
    }
    text = md_path.read_text() if md_path.is_file() else SKELETON.format(**{k: _block(k, []) for k in SECTIONS})
    for name, make in makers.items():
        begin, end = f'<!-- BEGIN GENERATED: {name} -->', f'<!-- END GENERATED: {name} -->'
        if begin not in text or end not in text:
            text = text.rstrip('\n') + '\n\n' + _block(name, []) + '\n'
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + _block(name, make()) + tail
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(text)


def latest_inference(records: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Newest record per (device, flags, net set, sizes, tiles)."""
    newest = {}
    for r in records:
        if r.get('tool') != 'inference':
            continue
        k = (r.get('device'), r.get('amp'), bool(r.get('channels_last')),
             tuple((row['net'], tuple(row['lr_size']), row['tile']) for row in r.get('rows', [])))
        newest[k] = r
    # drop rows superseded by a newer record of the same net/size/tile/flags
    seen, out = set(), []
    for r in reversed(list(newest.values())):
        rows = []
        for row in r.get('rows', []):
            rk = (r.get('device'), r.get('amp'), bool(r.get('channels_last')), row['net'], tuple(row['lr_size']),
                  row['tile'])
            if rk not in seen:
                seen.add(rk)
                rows.append(row)
        if rows:
            out.append({**r, 'rows': rows})
    return list(reversed(out))
