"""Benchmark results as a text table, JSON and CSV (``tools/test.py``).

A run produces one :class:`DatasetResult` per (dataset, scale): the per-image rows that
:func:`ckdsr.engine.evaluation.evaluate_dataset` returns, each with the seconds its forward pass took
(``time_s``), their average, and how long the whole set took (``wall_s``: reading, forward,
scoring, saving). Every output names the Y convention its scores used (``y_convention``:
'basicsr' float Y, 'matlab' uint8-rounded Y, 'rgb' when no metric is on Y; see
:mod:`ckdsr.metrics.color`): a column of the table and of the CSV, a key of each JSON result.
"""
import csv
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

#: how each metric is printed in the table (others: 4 decimals)
METRIC_FORMATS = {'psnr': '{:.3f}', 'ssim': '{:.4f}'}
TIME_KEY = 'time_s'
CSV_FIXED = ('dataset', 'scale', 'y_convention', 'kind', 'image')
#: table footnotes explaining each Y convention label
Y_NOTES = {
    'basicsr': 'Y basicsr: Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 in float (BasicSR)',
    'matlab': 'Y matlab: MATLAB rgb2ycbcr on the uint8 image, Y rounded to uint8 (MATLAB scripts scoring uint8 images)',
}


def y_convention_label(metrics: Mapping[str, Mapping[str, Any]]) -> str:
    """'basicsr' | 'matlab' | 'rgb' (no metric on Y) for metric settings that agree; when they
    differ, each metric's, e.g. 'psnr=matlab ssim=basicsr'."""
    per = {name: (cfg.get('y_convention', 'basicsr') if cfg.get('test_y_channel') else 'rgb')
           for name, cfg in metrics.items()}
    kinds = set(per.values())
    if len(kinds) <= 1:
        return kinds.pop() if kinds else 'rgb'
    return ' '.join(f'{k}={v}' for k, v in per.items())


@dataclass
class DatasetResult:
    """Scores of one dataset at one scale."""

    dataset: str
    scale: int
    rows: List[Dict[str, Any]]            # [{'name', <metric>: float, ..., 'time_s': float}]
    metrics: List[str]                    # metric names, in the order of the option file
    wall_s: float = 0.0
    source: Dict[str, Any] = field(default_factory=dict)  # root folder, where the LR came from
    y_convention: str = 'basicsr'         # label from :func:`y_convention_label`

    @property
    def average(self) -> Dict[str, float]:
        """Mean of every metric and of the forward time over the images."""
        keys = list(self.metrics) + ([TIME_KEY] if self.rows and TIME_KEY in self.rows[0] else [])
        return {k: _mean([r[k] for r in self.rows]) for k in keys}

    @property
    def lr_generated(self) -> bool:
        return bool(self.source.get('lr_generated'))

    def to_dict(self) -> Dict[str, Any]:
        return {'dataset': self.dataset, 'scale': self.scale, 'y_convention': self.y_convention,
                'num_images': len(self.rows),
                **self.source, 'average': self.average, 'wall_s': self.wall_s, 'images': self.rows}


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else float('nan')


def _fmt(metric: str, value: float) -> str:
    return METRIC_FORMATS.get(metric, '{:.4f}').format(value)


def metric_names(results: Iterable[DatasetResult]) -> List[str]:
    """Every metric that appears in ``results``, first-seen order."""
    names: List[str] = []
    for res in results:
        names += [m for m in res.metrics if m not in names]
    return names


def format_table(results: Sequence[DatasetResult]) -> str:
    """A fixed-width table: dataset, scale, images, Y convention, each metric's average, ms per
    image, seconds; a footnote explains each Y convention shown.

    A dataset whose LR was generated (no ``LR_bicubic/X<s>``) is marked ``*``, with a footnote.
    """
    metrics = metric_names(results)
    header = ['Dataset', 'Scale', 'Images', 'Y'] + [m.upper() for m in metrics] + ['ms/img', 'total s']
    body = []
    for res in results:
        avg = res.average
        name = res.dataset + (' *' if res.lr_generated else '')
        cells = [name, f'x{res.scale}', str(len(res.rows)), res.y_convention]
        cells += [_fmt(m, avg[m]) if m in avg else '-' for m in metrics]
        cells += [f'{1000 * avg[TIME_KEY]:.1f}' if TIME_KEY in avg else '-', f'{res.wall_s:.1f}']
        body.append(cells)
    widths = [max(len(row[i]) for row in [header] + body) for i in range(len(header))]

    def line(cells):
        return '  '.join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    out = [line(header), '  '.join('-' * w for w in widths)] + [line(r) for r in body]
    shown = ' '.join(r.y_convention for r in results)
    out += [note for key, note in Y_NOTES.items() if key in shown]
    if any(r.lr_generated for r in results):
        out.append('* LR made from the mod-cropped HR with the MATLAB-exact bicubic (no LR_bicubic/X<s> folder)')
    return '\n'.join(out)


def _json_safe(value: Any) -> Any:
    """inf / nan (identical images give PSNR inf) as strings, so the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def results_document(results: Sequence[DatasetResult], meta: Mapping[str, Any]) -> Dict[str, Any]:
    """``{'meta': ..., 'results': [per dataset and scale: averages, timing, per-image rows]}``."""
    return _json_safe({'meta': dict(meta), 'results': [r.to_dict() for r in results]})


def _parent(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)


def write_json(path: str, results: Sequence[DatasetResult], meta: Mapping[str, Any]) -> None:
    _parent(path)
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(results_document(results, meta), f, indent=2, allow_nan=False)
        f.write('\n')


def csv_rows(results: Sequence[DatasetResult]) -> List[Dict[str, Any]]:
    """One row per image (``kind`` 'image') and one per dataset and scale (``kind`` 'average',
    empty ``image``); metric columns plus ``time_s``."""
    rows = []
    for res in results:
        for r in res.rows:
            rows.append({'dataset': res.dataset, 'scale': res.scale, 'y_convention': res.y_convention,
                         'kind': 'image', 'image': r['name'],
                         **{k: v for k, v in r.items() if k != 'name'}})
        rows.append({'dataset': res.dataset, 'scale': res.scale, 'y_convention': res.y_convention,
                     'kind': 'average', 'image': '',
                     **res.average})
    return rows


def write_csv(path: str, results: Sequence[DatasetResult]) -> None:
    metrics = metric_names(results)
    columns = list(CSV_FIXED) + metrics + [TIME_KEY]
    _parent(path)
    with open(path, 'w', encoding='utf-8', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction='ignore', restval='')
        writer.writeheader()
        for row in csv_rows(results):
            writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})


def read_csv(path: str) -> List[Dict[str, Any]]:
    """Rows of a file written by :func:`write_csv`, numbers parsed back (for tests and scripts)."""
    with open(path, 'r', encoding='utf-8', newline='') as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row['scale'] = int(row['scale'])
        for key in [k for k in row if k not in CSV_FIXED]:
            row[key] = float(row[key]) if row[key] != '' else None
    return rows


def write_outputs(results: Sequence[DatasetResult], meta: Mapping[str, Any], json_path: Optional[str] = None,
                  csv_path: Optional[str] = None) -> None:
    if json_path:
        write_json(json_path, results, meta)
    if csv_path:
        write_csv(csv_path, results)
