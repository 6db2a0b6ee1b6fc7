"""The demo's pipeline file (``options/demo/pipeline.yaml``): load, apply ``tiny:``, check.

The file says which photos train and which are held out, how the training LMDB is cut, which option
files are trained (the first run is the teacher), the codebook size and the report settings. With
``--tiny`` its ``tiny:`` section is merged in: ``tiny.data`` / ``tiny.codebook`` replace keys of
``data`` / ``codebook``, and ``tiny.set`` adds ``--set`` overrides (``all`` for every run, then per
run key). Mistakes are reported with the file and key, before any work starts.
"""
import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Tuple

from ckdsr.demo.photos import check_split

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PIPELINE = REPO / 'options' / 'demo' / 'pipeline.yaml'

_TOP = {'scale', 'data', 'runs', 'codebook', 'report', 'tiny'}
_DATA = {'train_photos', 'heldout_photos', 'heldout_name', 'crop_size', 'step', 'format'}
_REPORT = {'lr_size', 'crop_image', 'crop_size'}


@dataclass
class RunSpec:
    key: str
    label: str
    options: Path
    sets: List[str] = field(default_factory=list)   # extra --set overrides (from tiny.set)


@dataclass
class Pipeline:
    scale: int
    data: Dict[str, Any]
    runs: List[RunSpec]
    num_codes: int
    codebook_batches: int
    lr_size: Tuple[int, int]
    crop_image: str
    crop_size: int
    source: Path
    tiny: bool = False

    @property
    def teacher(self) -> RunSpec:
        return self.runs[0]


class PipelineError(ValueError):
    pass


def _unknown(section: Dict[str, Any], allowed, where: str, source: Path) -> None:
    extra = sorted(set(section) - set(allowed))
    if extra:
        raise PipelineError(f'{source}: {where}{extra[0]}: unknown key (valid: {", ".join(sorted(allowed))})')


def load_pipeline(path: Path = DEFAULT_PIPELINE, tiny: bool = False) -> Pipeline:
    from ckdsr.utils.options import read_yaml
    path = Path(path)
    tree = read_yaml(str(path))
    _unknown(tree, _TOP, '', path)
    data = dict(tree.get('data') or {})
    codebook = dict(tree.get('codebook') or {})
    tiny_sets: Dict[str, List[str]] = {}
    if tiny:
        t = tree.get('tiny') or {}
        _unknown(t, {'data', 'codebook', 'set'}, 'tiny.', path)
        data.update(t.get('data') or {})
        codebook.update(t.get('codebook') or {})
        tiny_sets = {k: [str(s) for s in v] for k, v in (t.get('set') or {}).items()}
    _unknown(data, _DATA, 'data.', path)
    missing = sorted(k for k in ('train_photos', 'heldout_photos', 'crop_size', 'step') if k not in data)
    if missing:
        raise PipelineError(f'{path}: data.{missing[0]}: required')
    data.setdefault('heldout_name', 'heldout')
    data.setdefault('format', 'raw')
    try:
        check_split(data['train_photos'], data['heldout_photos'])
    except ValueError as err:
        raise PipelineError(f'{path}: {err}') from None

    runs = []
    for i, item in enumerate(tree.get('runs') or []):
        _unknown(item, {'key', 'label', 'options'}, f'runs.{i}.', path)
        opt = REPO / item['options']
        if not opt.is_file():
            raise PipelineError(f'{path}: runs.{i}.options: {opt} not found')
        key = str(item['key'])
        runs.append(RunSpec(key, str(item.get('label', key)), opt, tiny_sets.get('all', []) + tiny_sets.get(key, [])))
    if len(runs) < 2:
        raise PipelineError(f'{path}: runs: list the teacher first, then at least one student')
    keys = [r.key for r in runs]
    if len(set(keys)) != len(keys):
        raise PipelineError(f'{path}: runs: keys must be unique, got {keys}')
    unknown_sets = sorted(set(tiny_sets) - set(keys) - {'all'})
    if unknown_sets:
        raise PipelineError(f'{path}: tiny.set.{unknown_sets[0]}: no run with that key (runs: {", ".join(keys)})')

    _unknown(codebook, {'num_codes', 'num_batches'}, 'codebook.', path)
    report = dict(tree.get('report') or {})
    _unknown(report, _REPORT, 'report.', path)
    crop_image = report.get('crop_image') or data['heldout_photos'][0]
    if crop_image not in data['heldout_photos']:
        crop_image = data['heldout_photos'][0]  # e.g. --tiny holds out fewer photos
    lr_size = tuple(int(v) for v in report.get('lr_size', (320, 180)))
    return Pipeline(scale=int(tree.get('scale', 4)), data=copy.deepcopy(data), runs=runs,
                    num_codes=int(codebook.get('num_codes', 128)),
                    codebook_batches=int(codebook.get('num_batches', 200)), lr_size=lr_size,
                    crop_image=crop_image, crop_size=int(report.get('crop_size', 64)), source=path, tiny=tiny)
