"""``make demo``: the whole ckdsr pipeline on a laptop CPU, from bundled photos to a report.

Stages (``tools/demo.py`` is a thin command line over :func:`run_demo`):

1. data     -- scikit-image photos -> training LMDB + held-out benchmark folder (:mod:`ckdsr.demo.photos`)
2. teacher  -- ``tools/train.py`` on the first run of ``options/demo/pipeline.yaml``
3. students -- every further run, each a ``tools/train.py`` call; KD runs get the teacher's weights
               and architecture, and a run with an offline teacher embedding first gets its DMM
               codebook from ``tools/fit_codebook.py``
4. evaluate -- bicubic and every network on the held-out photos (:mod:`ckdsr.demo.scoring`)
5. report   -- the table, ``report.md``, ``curves.png``, ``crops.png`` (:mod:`ckdsr.demo.report`,
               :mod:`ckdsr.demo.figures`)
"""
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

from ckdsr.demo import figures, photos, runs, scoring
from ckdsr.demo.config import DEFAULT_PIPELINE, Pipeline, RunSpec, load_pipeline
from ckdsr.demo.logs import RunHistory
from ckdsr.demo.report import MethodRow, ReportContext, describe_network, format_table, write_report

REPO = Path(__file__).resolve().parents[1]


@dataclass
class DemoResult:
    out: Path
    rows: List[MethodRow]
    table: str
    report: Path
    curves: Path
    crops: Path
    crop_titles: List[str] = field(default_factory=list)
    curve_legends: Dict[str, List[str]] = field(default_factory=dict)
    seconds: float = 0.0


def set_item(key: str, value: Any) -> str:
    """One ``--set`` item; strings that YAML would misread, and containers, are written as JSON."""
    if isinstance(value, str) and re.fullmatch(r'[\w./+-]+', value) and not re.fullmatch(r'[-+\d.eE]+', value):
        return f'{key}={value}'
    return f'{key}={json.dumps(value)}'


def resolved_tree(run: RunSpec, sets: List[str]) -> Dict[str, Any]:
    """The run's option tree with ``sets`` applied (not validated: ``tools/train.py`` does that)."""
    from ckdsr.utils.options import apply_overrides, read_yaml
    return apply_overrides(read_yaml(str(run.options)), sets)


@dataclass
class TrainedRun:
    spec: RunSpec
    tree: Dict[str, Any]          # resolved options
    history: RunHistory
    weights: Path                 # net_g_latest.pth


class _Demo:
    """State shared by the stages: settings, output folders, the commands run, timings."""

    def __init__(self, cfg: Pipeline, out: Path, progress: bool, echo: Callable[[str], None]):
        self.cfg, self.out, self.progress, self.echo = cfg, out, progress, echo
        self.logs = out / 'logs'
        self.commands: List[Tuple[str, str]] = []
        self.notes: List[str] = []
        self.stage_seconds: List[Tuple[str, float]] = []
        self.bench = Path()                                  # the held-out set, once prepare_data has run
        self.total_stages = 4 + len(cfg.runs) - 1
        self._stage = None

    # ------------------------------------------------------------------ stage headings and timing
    def stage(self, name: str, text: str) -> None:
        self.end_stage()
        self._stage = (name, time.perf_counter())
        self.echo(f'\n[{len(self.stage_seconds) + 1}/{self.total_stages}] {text}')

    def end_stage(self) -> None:
        if self._stage is not None:
            self.stage_seconds.append((self._stage[0], time.perf_counter() - self._stage[1]))
            self._stage = None

    # ------------------------------------------------------------------ 1. data
    def prepare_data(self) -> Dict[str, Any]:
        d, scale = self.cfg.data, self.cfg.scale
        self.stage('data', f'data: {len(d["train_photos"])} training photos -> LMDB of {d["crop_size"]} px '
                           f'sub-images; {len(d["heldout_photos"])} held out ({", ".join(d["heldout_photos"])}) '
                           '-> benchmark folder')
        data = photos.prepare_data(self.out, d['train_photos'], d['heldout_photos'], d['heldout_name'], scale,
                                   d['crop_size'], d['step'], d['format'], progress=self.progress)
        bench = self.bench = Path(data['benchmark'])
        lmdb = ['python', 'tools/create_lmdb.py', '--hr', str(self.out / 'data' / 'photos_train_HR'), '--out',
                str(self.out / 'data'), '--scale', str(scale), '--crop-size', str(d['crop_size']), '--step',
                str(d['step']), '--format', d['format'], '--prefix', 'demo_train', '--overwrite']
        make_lr = ['python', 'tools/make_lr.py', '--hr', str(bench / 'HR'), '--out', str(bench), '--scale', str(scale),
                   '--overwrite']
        self.commands += [('training LMDB (the demo calls the same function in-process)', runs.command_text(lmdb)),
                          ('held-out benchmark LR (in-process, the same function)', runs.command_text(make_lr))]
        self.echo(f'  {data["num_subimages"]} training sub-images; held-out set {bench}')
        return data

    # ------------------------------------------------------------------ 2-3. training
    def train_all(self, data: Dict[str, Any]) -> List[TrainedRun]:
        common = [set_item('path.experiments_root', str(self.out / 'experiments')),
                  set_item('datasets.train.dataroot_gt', data['train_gt']),
                  set_item('datasets.train.dataroot_lq', data['train_lq']),
                  set_item('datasets.val.dataroot', data['benchmark'])]
        done: List[TrainedRun] = []
        for i, spec in enumerate(self.cfg.runs):
            sets = common + list(spec.sets)
            tree = resolved_tree(spec, sets)
            self.stage(spec.key, f'{"teacher" if i == 0 else "student"} "{spec.label}": '
                                 f'{describe_network(tree["network_g"])}, {tree["train"]["total_iter"]} steps '
                                 f'({spec.options.relative_to(REPO)})')
            if i > 0 and tree.get('model_type') == 'KDModel':
                teacher = done[0]
                sets += [set_item('path.pretrain_network_t', str(teacher.weights)),
                         set_item('network_t', teacher.tree['network_g'])]
                sets = self.codebook(spec, sets)
                tree = resolved_tree(spec, sets)
            exp = self.out / 'experiments' / tree['name']
            hist = runs.train(spec.options, sets, exp, self.logs / f'train_{spec.key}.log', spec.label,
                              progress=self.progress)
            self.commands.append((f'train {spec.label}', hist.command))
            psnr = hist.validation[-1][1].get('psnr') if hist.validation else None
            self.echo(f'  done: {hist.total_iter} steps, {hist.step_seconds:.1f} s in training steps'
                      + (f', last validation Y-PSNR {psnr:.2f} dB' if psnr is not None else ''))
            done.append(TrainedRun(spec, tree, hist, exp / 'models' / 'net_g_latest.pth'))
        return done

    def codebook(self, spec: RunSpec, sets: List[str]) -> List[str]:
        """Give a run with ``distill.teacher_embedding.codebook_path`` a codebook fitted on the teacher.

        Without ``tools/fit_codebook.py`` in the checkout the run goes on without its DMM term (and
        the report says so)."""
        tree = resolved_tree(spec, sets)
        emb = (tree.get('distill') or {}).get('teacher_embedding') or {}
        if not emb.get('codebook_path'):
            return sets
        if not runs.tool_path('fit_codebook').is_file():
            losses = [t for t in tree['train']['losses'] if t.get('type') != 'DMMLoss']
            self.notes.append(f'{spec.label}: tools/fit_codebook.py is not in this checkout, so this run had no '
                              'DMM codebook and trained without its DMMLoss term.')
            self.echo(f'  note: {self.notes[-1]}')
            return sets + [set_item('distill.teacher_embedding.codebook_path', None), set_item('train.losses', losses)]
        k = self.cfg.num_codes
        path = self.out / 'experiments' / 'codebooks' / f'{spec.key}_codebook_k{k}.pth'
        log = self.logs / f'fit_codebook_{spec.key}.log'
        self.echo(f'  fitting the DMM codebook ({k} codes) on the teacher\'s features')
        cmd = runs.fit_codebook(spec.options, sets, k, path, log,
                                extra=['--num-batches', str(self.cfg.codebook_batches)], progress=self.progress)
        summary = [line for line in log.read_text(encoding='utf-8').splitlines() if line.startswith('codebook ')]
        if summary:
            self.echo(f'  {summary[-1]}')
        self.commands.append((f'DMM codebook for {spec.label}', cmd))
        return sets + [set_item('distill.teacher_embedding.codebook_path', str(path))]

    # ------------------------------------------------------------------ 4. evaluation
    def evaluate(self, trained: List[TrainedRun]) -> Tuple[List[TrainedRun], Dict[str, Any]]:
        """Scores of bicubic and every run; also returns the runs in display order (students, then teacher)."""
        from tqdm import tqdm
        scale, bench = self.cfg.scale, self.bench
        self.stage('evaluate', f'evaluate: bicubic and {len(trained)} networks on {bench.name} '
                               f'(x{scale}, Y-PSNR/SSIM, crop border {scale})')
        order = trained[1:] + trained[:1]
        sr_root = self.out / 'results'
        scores: Dict[str, Any] = {}
        with tqdm(total=len(order) + 1, desc='evaluate', unit='method', disable=not self.progress) as bar:
            scores['bicubic'] = scoring.evaluate_bicubic(scale, bench, sr_root / 'bicubic')
            bar.update(1)
            for run in order:
                key = run.spec.key
                scores[key] = scoring.evaluate_network(key, run.tree['network_g'], run.weights, scale, bench,
                                                       sr_root / key)
                self.commands.append((f'score {run.spec.label}', scores[key].command))
                bar.update(1)
        return order, scores

    def table_rows(self, order: List[TrainedRun], scores: Dict[str, Any]) -> List[MethodRow]:
        bic = scores['bicubic']
        rows = [MethodRow('bicubic', 'Bicubic', 'MATLAB imresize', psnr=bic.psnr, ssim=bic.ssim,
                          colour_shift=scoring.colour_shift(bic.image_dir, self.bench, self.cfg.scale))]
        for run in order:
            net, s = run.tree['network_g'], scores[run.spec.key]
            params, macs = scoring.complexity(net, self.cfg.scale, self.cfg.lr_size)
            shift = scoring.colour_shift(s.image_dir, self.bench, self.cfg.scale)
            rows.append(MethodRow(run.spec.key, run.spec.label, describe_network(net), params, macs, s.psnr, s.ssim,
                                  run.history.total_iter, run.history.step_seconds, shift))
        return rows

    # ------------------------------------------------------------------ 5. pictures
    def crops(self, scores: Dict[str, Any], order: List[TrainedRun], path: Path):
        """``crops.png``; returns the panel titles and a caption."""
        from ckdsr.data.image_io import read_image
        name, scale, bench = self.cfg.crop_image, self.cfg.scale, self.bench
        bic = read_image(scores['bicubic'].image_dir / f'{name}_x{scale}.png')
        hr = read_image(next(p for p in (bench / 'HR').iterdir() if p.stem == name))
        hr = hr[:bic.shape[0], :bic.shape[1]]                    # mod-crop, as the benchmark set does
        size = min(self.cfg.crop_size, bic.shape[0] - 2 * scale, bic.shape[1] - 2 * scale)
        panels = [('LR-bicubic', bic)]
        for run in order:
            panels.append((run.spec.label, read_image(scores[run.spec.key].image_dir / f'{name}_x{scale}.png')))
        teacher = panels[-1][1]                                  # order ends with the teacher
        box = figures.gain_box(hr, bic, teacher, size, margin=scale)
        title = (f'{name}, x{scale}: the {size}x{size} HR-pixel crop at (x={box[0]}, y={box[1]}) where the teacher '
                 'gains most on bicubic; enlarged, nearest neighbour')
        titles = figures.plot_crops(panels, hr, box, size, path, title)
        order_text = ' | '.join(t.split('\n')[0] for t in titles)
        return titles, f'{title}. Panels, left to right: {order_text}'


def run_demo(out: Path, tiny: bool = False, pipeline: Path = DEFAULT_PIPELINE, progress: bool = True,
             echo: Callable[[str], None] = print) -> DemoResult:
    """Run every stage into ``out``; print the table; return what was written."""
    t_start = time.perf_counter()
    out = Path(out).resolve()
    cfg = load_pipeline(pipeline, tiny=tiny)
    out.mkdir(parents=True, exist_ok=True)
    demo = _Demo(cfg, out, progress, echo)
    import torch
    echo(f'ckdsr demo{" --tiny" if tiny else ""}: {len(cfg.runs)} training runs on CPU, torch threads: '
         f'{torch.get_num_threads()} (OMP_NUM_THREADS sets it; on a busy machine 1 avoids oversubscription); '
         f'output in {out}')
    data = demo.prepare_data()
    trained = demo.train_all(data)
    order, scores = demo.evaluate(trained)
    rows = demo.table_rows(order, scores)

    demo.stage('report', 'report: table, report.md, curves.png, crops.png')
    curves, crops, report = out / 'curves.png', out / 'crops.png', out / 'report.md'
    legends = figures.plot_curves([(r.spec.label, r.history) for r in trained], curves,
                                  bicubic_psnr=scores['bicubic'].psnr, dataset=demo.bench.name)
    titles, caption = demo.crops(scores, order, crops)
    demo.end_stage()
    table = format_table(rows, cfg.lr_size, cfg.scale)
    ctx = ReportContext(out=out, scale=cfg.scale, tiny=tiny, data={**cfg.data, 'num_subimages': data['num_subimages']},
                        photo_notes={k: v[1] for k, v in photos.PHOTOS.items()}, rows=rows,
                        teacher_key=cfg.teacher.key, lr_size=cfg.lr_size, commands=demo.commands,
                        stage_seconds=demo.stage_seconds, notes=demo.notes, crop_caption=caption)
    write_report(ctx, report)
    total = time.perf_counter() - t_start
    echo('\n' + table)
    echo(f'\nwhole pipeline: {total:.0f} s.  Report: {report}\n  curves: {curves}\n  crops:  {crops}')
    return DemoResult(out, rows, table, report, curves, crops, titles, legends, total)
