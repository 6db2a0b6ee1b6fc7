"""The CPU distillation experiment: one student, one teacher, every method, same data and steps.

    python benchmarks/kd_cpu/prepare_data.py
    python benchmarks/kd_cpu/run.py [--methods scratch logits_kd fakd ...] [--set train.total_iter=N]

Teacher: the official CARN-M x4 weights (DIV2K-trained). Student: EDSR 8x32. Each method is an
option file in options/experiments/cpu_carnm_x4/ trained with tools/train.py; every student, the
teacher and bicubic are then scored on Set5 and Set14 x4 (Y-PSNR/SSIM, crop 4) with the same
evaluation code as tools/test.py. Results: benchmarks/results/kd_cpu_carnm_x4.{json,md}.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

OPTIONS = ROOT / 'options' / 'experiments' / 'cpu_carnm_x4'
RESULTS = ROOT / 'benchmarks' / 'results'
SETS = ('Set5', 'Set14')
METHODS = ('scratch', 'logits_kd', 'fakd', 'facd', 'dckd_offline', 'csd', 'edsr128_scratch', 'init_kd',
           'l1_finetune', 'pcl_finetune')


def shared() -> Path:
    env = os.environ.get('CKDSR_SHARED')
    return Path(env) if env else ROOT.parent / 'shared'


def evaluate(net, scale=4):
    from ckdsr.data.benchmark_dataset import BenchmarkDataset
    from ckdsr.engine.evaluation import average, evaluate_dataset, make_forward
    net.eval()
    out = {}
    for name in SETS:
        ds = BenchmarkDataset(str(shared() / 'datasets' / 'benchmark' / name), scale=scale)
        out[name] = average(evaluate_dataset(make_forward(net, scale), ds, scale))
    return out


class Bicubic:
    """MATLAB-style bicubic upscaling as a 'network' (the usual bicubic row)."""

    training = False

    def eval(self):
        return self

    def __call__(self, lq):
        import numpy as np
        import torch
        from ckdsr.data.matlab_imresize import imresize
        img = lq[0].permute(1, 2, 0).cpu().numpy().astype(np.float64)
        up = imresize(img, 4)
        return torch.from_numpy(np.clip(up, 0, 1)).permute(2, 0, 1)[None].float()


CODEBOOK = ROOT / 'benchmarks' / 'kd_cpu' / 'work' / 'carnm_c3_codebook.pth'


def fit_codebook_if_needed(method: str) -> None:
    """The offline DCKD run needs a codebook fitted on the teacher's features first."""
    if method == 'dckd_offline' and not CODEBOOK.exists():
        subprocess.run([sys.executable, 'tools/fit_codebook.py', '-opt', str(OPTIONS / f'{method}.yml'),
                        '--num-codes', '256', '--out', str(CODEBOOK)], cwd=ROOT, check=True)


def train(method: str, sets) -> float:
    fit_codebook_if_needed(method)
    cmd = [sys.executable, 'tools/train.py', '-opt', str(OPTIONS / f'{method}.yml')]
    if sets:
        cmd += ['--set', *sets]
    t0 = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True)
    return time.time() - t0, ' '.join(cmd[1:])


def student_net(method: str):
    from ckdsr.models.network_io import build_network, load_weights
    from ckdsr.utils.options import load_options
    opt = load_options(str(OPTIONS / f'{method}.yml'))
    exp = Path(opt['path']['experiments_root'])
    exp = exp if exp.is_absolute() else ROOT / exp
    weights = exp / opt['name'] / 'models' / 'net_g_latest.pth'
    cfg, key = opt['network_g'], 'auto'
    if cfg['type'] == 'SlimmableEDSR':  # CSD: the exported narrow student (params_student)
        width = opt['distill']['csd']['student_width']
        cfg = {'type': 'EDSR', 'num_feat': int(cfg['num_feat'] * width), 'num_block': cfg['num_block']}
        key = 'params_student'
    net = build_network(cfg, 4)
    load_weights(net, str(weights), key, True, str(weights))
    from ckdsr.utils.complexity import count_params
    return net, count_params(net)


def write(rows, path_md: Path, path_json: Path, extra: str) -> None:
    path_json.write_text(json.dumps(rows, indent=1))
    lines = ['| method | params | Set5 PSNR / SSIM | Set14 PSNR / SSIM | train time | command |',
             '| --- | ---: | --- | --- | ---: | --- |']
    for r in rows:
        cells = [f"{r['scores'][s]['psnr']:.3f} / {r['scores'][s]['ssim']:.4f}" for s in SETS]
        t = f"{r['train_s'] / 60:.1f} min" if r.get('train_s') else '–'
        command = r.get('command', '').replace(str(ROOT) + os.sep, '')
        lines.append(f"| {r['method']} | {r['params']:,} | {cells[0]} | {cells[1]} | {t} | "
                     f"{'`' + command + '`' if command else '–'} |")
    notes = ROOT / 'benchmarks' / 'kd_cpu' / 'notes.md'  # hand-written reading of the numbers
    tail = '\n' + notes.read_text() if notes.exists() else ''
    path_md.write_text(extra + '\n' + '\n'.join(lines) + '\n' + tail)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--methods', nargs='*', default=[m for m in METHODS if (OPTIONS / f'{m}.yml').exists()])
    p.add_argument('--set', nargs='*', default=[], help='overrides passed to every training run')
    p.add_argument('--skip-train', action='store_true', help='only evaluate existing runs')
    args = p.parse_args(argv)
    import torch
    from ckdsr.models.network_io import build_network, load_weights
    torch.set_num_threads(os.cpu_count() or 1)
    path_json = RESULTS / 'kd_cpu_carnm_x4.json'
    rows = {r['method']: r for r in (json.loads(path_json.read_text()) if path_json.exists() else [])}
    if 'bicubic' not in rows:
        rows['bicubic'] = {'method': 'bicubic', 'params': 0, 'scores': evaluate(Bicubic())}
    if 'teacher (CARN-M)' not in rows:
        teacher = build_network({'type': 'CARN_M'}, 4)
        load_weights(teacher, str(shared() / 'weights' / 'carn_m.pth'), 'auto', True, 'carn_m.pth')
        from ckdsr.utils.complexity import count_params
        rows['teacher (CARN-M)'] = {'method': 'teacher (CARN-M)', 'params': count_params(teacher),
                                    'scores': evaluate(teacher)}
    for m in args.methods:
        row = rows.get(m, {'method': m})
        if not args.skip_train:
            row['train_s'], row['command'] = train(m, args.set)
        net, row['params'] = student_net(m)
        row['scores'] = evaluate(net)
        rows[m] = row
        print(m, row['scores'], flush=True)
        save(rows, path_json)
    save(rows, path_json)


def save(rows, path_json: Path) -> None:
    """Merge with what is on disk (several runners may share the file), then write JSON + table."""
    on_disk = {r['method']: r for r in (json.loads(path_json.read_text()) if path_json.exists() else [])}
    on_disk.update(rows)
    order = ['bicubic', 'teacher (CARN-M)'] + [m for m in METHODS if m in on_disk]
    uptime = subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()
    header = ('# CPU distillation experiment: CARN-M teacher -> EDSR 8x32 student, x4\n\n'
              'Data: 96 px sub-images of T91 + BSD200 (../shared), MATLAB-exact bicubic LR. Same student, '
              'data, batch (16), steps (500) and schedule for every method (the two fine-tunes: 100 steps '
              'at batch 8 from the scratch student; csd and init_kd use an EDSR 8x128 instead of CARN-M as '
              'the wide net, see below). Y-PSNR/SSIM, crop 4, on the MATLAB LR files. '
              f'Machine: {os.cpu_count()} CPU cores, one thread per run, up to three runs sharing them '
              f'(train times include that sharing); load when written: `{uptime}`.\n'
              'Reproduce: `python benchmarks/kd_cpu/prepare_data.py && python benchmarks/kd_cpu/run.py`.\n')
    write([on_disk[k] for k in order if k in on_disk], RESULTS / 'kd_cpu_carnm_x4.md', path_json, header)


if __name__ == '__main__':
    main()
