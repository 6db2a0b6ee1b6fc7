"""The demo's result table (console and Markdown) and ``report.md``."""
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]

COLOUR_SHIFT_NOTE = 1.0   # grey levels: a mean SR - HR channel offset this large gets a sentence

COLUMNS = ('Method', 'Network', 'Params', 'MACs', 'Y-PSNR', 'Y-SSIM', 'Colour R, G, B', 'Steps', 'Train time')


@dataclass
class MethodRow:
    key: str
    label: str
    network: str = '-'
    params: Optional[int] = None
    macs: Optional[int] = None
    psnr: float = float('nan')
    ssim: float = float('nan')
    steps: Optional[int] = None
    train_s: Optional[float] = None
    colour_shift: Optional[Tuple[float, float, float]] = None   # mean SR - HR per RGB channel, grey levels


def describe_network(cfg: Dict[str, Any]) -> str:
    """``EDSR 8x32`` (blocks x channels), ``RCAN 10x6x64``; other archs by type."""
    t = cfg.get('type', '?')
    if t == 'EDSR':
        return f"EDSR {cfg.get('num_block', 16)}x{cfg.get('num_feat', 64)}"
    if t == 'RCAN':
        return f"RCAN {cfg.get('num_group', 10)}x{cfg.get('num_block', 16)}x{cfg.get('num_feat', 64)}"
    return t


def human(n: Optional[float], unit: str = '') -> str:
    if n is None:
        return '-'
    for div, suffix in ((1e9, 'G'), (1e6, 'M'), (1e3, 'k')):
        if abs(n) >= div:
            return f'{n / div:.2f}{suffix}{unit}'
    return f'{n:.0f}{unit}'


def seconds(s: Optional[float]) -> str:
    if s is None:
        return '-'
    return f'{s:.1f} s' if s < 120 else f'{int(s // 60)} min {s % 60:02.0f} s'


def colour(shift: Optional[Tuple[float, float, float]]) -> str:
    """The mean SR - HR offset per channel, grey levels: '+2.0, -1.3, +0.1'."""
    return '-' if shift is None else ', '.join(f'{v:+.1f}' for v in shift)


def cells(row: MethodRow) -> List[str]:
    return [row.label, row.network, human(row.params), human(row.macs), f'{row.psnr:.2f}', f'{row.ssim:.4f}',
            colour(row.colour_shift), '-' if row.steps is None else str(row.steps), seconds(row.train_s)]


def format_table(rows: Sequence[MethodRow], lr_size: Tuple[int, int], scale: int) -> str:
    """Fixed-width console table."""
    header = list(COLUMNS)
    header[3] = f'MACs@{lr_size[0]}x{lr_size[1]}'
    body = [cells(r) for r in rows]
    widths = [max(len(x[i]) for x in [header] + body) for i in range(len(header))]

    def line(cs):
        return '  '.join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cs, widths)))

    return '\n'.join([line(header), '  '.join('-' * w for w in widths)] + [line(b) for b in body])


def markdown_table(rows: Sequence[MethodRow], lr_size: Tuple[int, int], scale: int) -> str:
    header = list(COLUMNS)
    header[3] = f'MACs ({lr_size[0]}x{lr_size[1]} -> x{scale})'
    out = ['| ' + ' | '.join(header) + ' |', '| ' + ' | '.join(['---', '---'] + ['---:'] * (len(header) - 2)) + ' |']
    out += ['| ' + ' | '.join(cells(r)) + ' |' for r in rows]
    return '\n'.join(out)


def versus(delta: float, what: str) -> str:
    """'1.23 dB above bicubic' / '0.40 dB below bicubic'."""
    return f'{abs(delta):.2f} dB {"above" if delta >= 0 else "below"} {what}'


def reading(rows: Sequence[MethodRow], teacher_key: str, baseline_key: str = 'scratch') -> List[str]:
    """Plain sentences comparing the methods (differences in Y-PSNR)."""
    by = {r.key: r for r in rows}
    out = []
    bic, teacher, base = by.get('bicubic'), by.get(teacher_key), by.get(baseline_key)
    if bic and teacher:
        out.append(f'The teacher ({teacher.network}) is {versus(teacher.psnr - bic.psnr, "bicubic")}.')
    if base and bic:
        out.append(f'The student trained from scratch ({base.network}) is {versus(base.psnr - bic.psnr, "bicubic")}.')
    if base:
        for r in rows:
            if r.key in ('bicubic', teacher_key, baseline_key):
                continue
            out.append(f'{r.label}: {r.psnr - base.psnr:+.2f} dB Y-PSNR and {r.ssim - base.ssim:+.4f} SSIM '
                       f'against the same student trained from scratch for the same {r.steps} steps.')
    for r in rows:
        if r.colour_shift and max(abs(v) for v in r.colour_shift) >= COLOUR_SHIFT_NOTE:
            shift = ', '.join(f'{c} {v:+.1f}' for c, v in zip('RGB', r.colour_shift))
            out.append(f'{r.label} shifts colours: on average its output is {shift} grey levels (of 255) off the '
                       'HR; Y-PSNR sees only part of such a cast.')
    return out


@dataclass
class ReportContext:
    out: Path
    scale: int
    tiny: bool
    data: Dict[str, Any]                       # the pipeline's data section + num_subimages
    photo_notes: Dict[str, str]
    rows: List[MethodRow]
    teacher_key: str
    lr_size: Tuple[int, int]
    commands: List[Tuple[str, str]]            # (what, command)
    stage_seconds: List[Tuple[str, float]]
    notes: List[str] = field(default_factory=list)
    crop_caption: str = ''


def _photo_list(names: Sequence[str], notes: Dict[str, str]) -> str:
    return '\n'.join(f'  - `{n}`: {notes.get(n, "")}' for n in names)


FULL_RUN = [
    ('DIV2K sub-image LMDBs (480 px tiles, step 240; LR made with the MATLAB-exact bicubic)',
     'python tools/create_lmdb.py --hr datasets/DIV2K/DIV2K_train_HR --out datasets/DIV2K --scale 4'),
    ('benchmark LR images, for any set that lacks LR_bicubic/X4 (repeat per set)',
     'python tools/make_lr.py --hr datasets/benchmark/Set5/HR --out datasets/benchmark/Set5 --scale 4'),
    ('the teacher, RCAN 10x20 (or use the RCAN authors\' RCAN_BIX4.pt)',
     'python tools/train.py -opt options/train_rcan_10x20_x4.yml'),
    ('DCKD, RCAN 10x20 -> 10x6 with the VQGAN embedding (taming-transformers vqgan_imagenet_f16_1024)',
     'python tools/train.py -opt options/dckd_rcan_x4.yml '
     '--set path.pretrain_network_t=experiments/train_rcan_10x20_x4/models/net_g_latest.pth'),
    ('or DCKD fully offline, as in this demo: fit the codebook on the teacher, then train',
     'python tools/fit_codebook.py -opt options/dckd_rcan_x4_offline.yml '
     '--set path.pretrain_network_t=experiments/train_rcan_10x20_x4/models/net_g_latest.pth '
     '--num-codes 1024 --out experiments/codebooks/rcan_10x20_x4_body4_k1024.pth\n'
     'python tools/train.py -opt options/dckd_rcan_x4_offline.yml '
     '--set path.pretrain_network_t=experiments/train_rcan_10x20_x4/models/net_g_latest.pth'),
    ('the controls: the student from scratch, and logits KD',
     'python tools/train.py -opt options/train_rcan_10x6_x4.yml\n'
     'python tools/train.py -opt options/kd_rcan_x4.yml '
     '--set path.pretrain_network_t=experiments/train_rcan_10x20_x4/models/net_g_latest.pth'),
    ('the five benchmark sets (Set5, Set14, B100, Urban100, Manga109), x4, Y-PSNR/SSIM, crop border 4',
     'python tools/test.py -opt options/test/test_rcan_10x6_x4.yml '
     '--set path.pretrain_network_g=experiments/dckd_rcan_x4/models/net_g_latest.pth --json results/dckd_rcan_x4.json'),
]
MULTI_GPU = 'torchrun --nproc_per_node=4 tools/train.py -opt options/dckd_rcan_x4.yml --launcher pytorch'


def full_run_files() -> List[str]:
    """Repository files the full-run commands name (a test checks they exist)."""
    import re
    names = set()
    for _, cmd in FULL_RUN:
        names.update(re.findall(r'(?:tools|options)/[\w/]+\.(?:py|yml)', cmd))
    return sorted(names)


def torch_threads() -> int:
    import torch
    return torch.get_num_threads()


def write_report(ctx: ReportContext, path: Path) -> str:
    rows, out = ctx.rows, []
    total = sum(s for _, s in ctx.stage_seconds)
    title = 'ckdsr demo' + (' (--tiny: a smoke test, the numbers mean nothing)' if ctx.tiny else '')
    out += [f'# {title}', '',
            f'{time.strftime("%Y-%m-%d %H:%M")}, {platform.node()}, CPU '
            f'({platform.processor() or platform.machine()}, torch threads: {torch_threads()}); '
            f'whole pipeline {seconds(total)}.',
            '',
            'What happened, end to end, without a GPU or a download: real photos were cut into an LMDB with the '
            'MATLAB-exact bicubic LR, a teacher was trained, a smaller student was distilled from it with DCKD '
            '(offline teacher embedding) and, as controls, trained from scratch and with logits KD for the same '
            'number of steps; all were scored on photos none of them saw in training.', '']
    d = ctx.data
    out += ['## Data', '',
            f'- training photos ({len(d["train_photos"])}), cut into {d["num_subimages"]} sub-images of '
            f'{d["crop_size"]} px (step {d["step"]}) by `create_paired_lmdb` (`tools/create_lmdb.py`):',
            _photo_list(d['train_photos'], ctx.photo_notes),
            f'- held-out photos ({len(d["heldout_photos"])}), the benchmark `{d["heldout_name"]}` in `HR/` + '
            f'`LR_bicubic/X{ctx.scale}/` layout (`tools/make_lr.py`\'s function); never trained on:',
            _photo_list(d['heldout_photos'], ctx.photo_notes),
            '- all photos ship with scikit-image (`skimage.data`); greyscale ones are repeated to RGB.', '']
    out += ['## Results', '',
            f'x{ctx.scale} on the held-out photos: Y-PSNR (dB) and SSIM on the Y channel, crop border {ctx.scale}, '
            'the final weights of each run (`net_g_latest.pth`, not the best validation checkpoint), scored by '
            '`tools/test.py`\'s machinery. Colour: the mean SR - HR offset per channel over every pixel of the '
            'held-out photos (grey levels of 255; a global cast that Y-PSNR only partly sees). MACs: one '
            'forward at the LR size shown. Train time: seconds inside training steps (from the it/s in '
            '`train.log`; validation excluded).', '',
            markdown_table(rows, ctx.lr_size, ctx.scale), '']
    out += ['How to read it:', ''] + [f'- {s}' for s in reading(rows, ctx.teacher_key)]
    t_steps = [r.steps for r in rows if r.key == ctx.teacher_key]
    s_steps = sorted({r.steps for r in rows if r.steps is not None and r.key != ctx.teacher_key})
    steps = f'{"/".join(map(str, s_steps))} student and {"/".join(map(str, t_steps))} teacher steps'
    out += [f'- This is one seed, {steps}, on {d["num_subimages"]} sub-images of '
            f'{len(d["train_photos"])} photos: it shows the toolkit doing each step, not the papers\' numbers. Small '
            'differences between the students can be noise (the demo does not measure run-to-run spread); the full '
            'DIV2K run below is the real comparison.', '']
    out += ['## Curves', '', '![training curves](curves.png)', '',
            'Left: the L1(SR, HR) term every run optimises, averaged over each logging window (the teacher dashed). '
            'Right: Y-PSNR on the held-out photos during training, bicubic dotted. The held-out photos serve as the '
            'validation set here only to draw these curves; no checkpoint is chosen by them.', '']
    out += ['## Crops', '', '![crops](crops.png)', '', ctx.crop_caption + '. Each title gives the Y-PSNR of that crop.',
            '']
    if ctx.notes:
        out += ['## Notes', ''] + [f'- {n}' for n in ctx.notes] + ['']
    out += ['## What ran', '', 'Each step below can be re-run by hand from the repository root.', '']
    for what, cmd in ctx.commands:
        out += [f'- {what}:', '', '  ```bash', f'  {cmd}', '  ```']
    out += ['', 'Time per stage: ' + ', '.join(f'{k} {seconds(v)}' for k, v in ctx.stage_seconds) + '.', '']
    out += ['## The full run (DIV2K, RCAN 10x20 -> RCAN 10x6, x4)', '',
            'Put DIV2K under `datasets/DIV2K/DIV2K_train_HR` and the benchmark sets under '
            '`datasets/benchmark/<Set>/HR` (+ `LR_bicubic/X4`), then:', '', '```bash']
    for what, cmd in FULL_RUN:
        out += [f'# {what}', cmd]
    out += [f'# on 4 GPUs: {MULTI_GPU}', '```', '']
    text = '\n'.join(out)
    path.write_text(text, encoding='utf-8')
    return text
