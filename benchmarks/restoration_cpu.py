"""DCKD beyond SR on a CPU: every deblurring / deraining option file trained end to end, shrunk.

    python benchmarks/restoration_cpu.py [--iters 40] [--teacher-iters 150] [--out benchmarks/results]

For each shipped file ``{scratch,kd,dckd}_{nafnet,restormer}_gopro.yml`` and
``{scratch,kd,dckd}_restormer_rain13k.yml`` the option tree is kept (model type, loss terms and weights,
optimizer, schedule type, history, progressive schedule, metric conventions) and only sizes shrink:
the networks (student and teacher ~ width / 4 or less, 1-2 blocks per level), the VQGAN encoder (random
weights, 32 channels: no checkpoint here, so its contrastive and DMM terms run but carry no
pretrained perception), the iteration counts (schedules scaled to ``--iters``), patches (32 px) and the
data: small synthetic GoPro / Rain13K stand-ins in the real folder layouts (motion-blur kernels of 9-15 px and
rain streaks on the shipped Set5 / Set14 photos, tests/helpers/restoration_sets.py). A shrunk teacher
is first trained from scratch per (arch, task) for ``--teacher-iters``; KD and DCKD distil from it.

Every network is scored on the synthetic test split with its task's convention (deblurring: RGB, no
crop; deraining: Y of MATLAB rgb2ycbcr, no crop). Writes ``restoration_cpu.{json,md}``. The numbers
show that each method trains end to end; they say nothing about the paper's tables.
"""
import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FILES = [f'{m}_{a}_{t}' for a, t in (('nafnet', 'gopro'), ('restormer', 'gopro'), ('restormer', 'rain13k'))
         for m in ('scratch', 'kd', 'dckd')]
STUDENT = {'NAFNet': {'width': 4, 'middle_blk_num': 1, 'enc_blk_nums': [1, 1], 'dec_blk_nums': [1, 1]},
           'Restormer': {'dim': 8, 'num_blocks': [1, 1, 1, 1], 'num_refinement_blocks': 1, 'heads': [1, 1, 2, 2]}}
TEACHER = {'NAFNet': {'width': 8, 'middle_blk_num': 2, 'enc_blk_nums': [1, 2], 'dec_blk_nums': [1, 1]},
           'Restormer': {'dim': 12, 'num_blocks': [1, 2, 2, 2], 'num_refinement_blocks': 1, 'heads': [1, 2, 2, 4]}}
TINY_VQGAN = {'ch': 32, 'ch_mult': [1, 1, 2, 2, 4], 'num_res_blocks': 1, 'z_channels': 32, 'embed_dim': 32,
              'n_embed': 64, 'allow_random': True, 'checkpoint_path': None}
PATCH = 32


def shared() -> Path:
    env = os.environ.get('CKDSR_SHARED')
    return Path(env) if env else ROOT.parent / 'shared'


def make_sets(tmp: Path):
    from tests.helpers.restoration_sets import make_gopro, make_rain, photo_sources
    src = photo_sources(shared())
    return {'gopro': (make_gopro(tmp / 'GoPro' / 'train', src, sequences=4, per_seq=4, size=48, seed=1,
                                 blur_range=(9, 16)),
                      make_gopro(tmp / 'GoPro' / 'test', src[::-1], sequences=1, per_seq=4, size=48, seed=2,
                                 blur_range=(9, 16))),
            'rain13k': (make_rain(tmp / 'Rain13K', src, n=16, size=48, seed=1),
                        make_rain(tmp / 'Rain100H', src[::-1], n=4, size=48, seed=2))}


def shrink(tree, sets, tmp: Path, iters: int, name: str, net_g=None, teacher_path=None):
    """The option tree with small nets, data, patches and a schedule scaled to ``iters``."""
    from ckdsr.utils.options import load_options
    from tests.helpers.tiny_run import write_options
    tree = copy.deepcopy(tree)
    task = tree['name'].split('_')[-1]
    train_root, test_root = sets[task]
    arch = tree['network_g']['type']
    tree['name'] = name
    tree['num_gpu'] = 0
    tree['network_g'] = {'type': arch, **(net_g or STUDENT[arch])}
    if 'network_t' in tree:
        tree['network_t'] = {'type': arch, **TEACHER[arch]}
        tree['path']['pretrain_network_t'] = str(teacher_path)
    tree['path'].update(experiments_root=str(tmp / 'experiments'), pretrain_network_g=None, resume_state=None)
    tr = tree['datasets']['train']
    tr.update(dataroot=str(train_root), io_backend={'type': 'disk'}, gt_size=PATCH, num_worker_per_gpu=0)
    if 'progressive' in tr:  # same shape of schedule: three stages growing the patch, shrinking the batch
        third = max(1, iters // 3)
        tr['progressive'] = {'iters': [third, third, iters - 2 * third], 'gt_size': [16, 24, 32],
                             'batch_size_per_gpu': [8, 4, 2]}
    else:
        tr['batch_size_per_gpu'] = 4
    tree['datasets']['val'].update(dataroot=str(test_root))
    if 'distill' in tree:
        tree['distill']['embedding'].update(TINY_VQGAN)
        tree['distill']['history']['schedule'] = [[iters, max(1, iters // 4)]]
    tree['train']['total_iter'] = iters
    tree['train']['scheduler']['periods'] = [iters]
    tree['val']['val_freq'] = 10 ** 9
    tree['logger'].update(print_freq=max(1, iters // 4), save_checkpoint_freq=10 ** 9, use_tb_logger=False)
    return load_options(str(write_options(tree, tmp / f'{name}.yml')))


def score(net, dataset, metrics):
    from ckdsr.engine.evaluation import average, evaluate_dataset, make_forward
    net.eval()
    return average(evaluate_dataset(make_forward(net, 1), dataset, 1, metrics))


def train(opt):
    """``(trainer, seconds, l_total of every step)`` after running ``opt`` to its total_iter."""
    from ckdsr.engine.trainer import Trainer
    start = time.perf_counter()
    trainer = Trainer(opt)
    totals = []
    step = trainer.model.train_step

    def recorded(batch, it):
        losses = step(batch, it)
        totals.append(float(losses['l_total']))
        return losses

    trainer.model.train_step = recorded
    trainer.run()
    return trainer, time.perf_counter() - start, totals


def loss_trend(totals):
    """Mean l_total of the first and of the last quarter of the steps."""
    k = max(1, len(totals) // 4)
    return [sum(totals[:k]) / k, sum(totals[-k:]) / k]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--iters', type=int, default=40, help='student iterations per file')
    p.add_argument('--teacher-iters', type=int, default=150, help='iterations of each shrunk teacher')
    p.add_argument('--files', nargs='+', default=FILES, choices=FILES)
    p.add_argument('--out', default=str(ROOT / 'benchmarks' / 'results'))
    args = p.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    from ckdsr.engine.data_setup import build_dataset
    from ckdsr.engine.evaluation import metric_conventions
    from ckdsr.utils.options import read_yaml

    rows, teachers = [], {}
    with tempfile.TemporaryDirectory(prefix='restoration_cpu_') as tmp_name:
        tmp = Path(tmp_name)
        sets = make_sets(tmp)
        for file in args.files:
            tree = read_yaml(str(ROOT / 'options' / f'{file}.yml'))
            method, arch, task = file.split('_')
            key = (arch, task)
            if key not in teachers:  # the shrunk teacher: the scratch file with the teacher's size
                scratch = read_yaml(str(ROOT / 'options' / f'scratch_{arch}_{task}.yml'))
                t_opt = shrink(scratch, sets, tmp, args.teacher_iters, f'teacher_{arch}_{task}',
                               net_g=TEACHER[scratch['network_g']['type']])
                trainer, secs, totals = train(t_opt)
                path = tmp / f'teacher_{arch}_{task}.pth'
                torch.save({'params': trainer.model.net_g.state_dict()}, path)
                test = build_dataset('val', t_opt['datasets']['val'], 1)
                metrics = t_opt['val']['metrics']
                teachers[key] = path
                rows.append({'file': f'(teacher, scratch_{arch}_{task} shape)', 'task': task,
                             'convention': metric_conventions(metrics, 1), 'iters': args.teacher_iters,
                             'params': sum(p.numel() for p in trainer.model.net_g.parameters()), 'train_s': secs,
                             'l_total': loss_trend(totals), **score(trainer.model.net_g, test, metrics)})
                identity = torch.nn.Identity()
                rows.append({'file': '(input, no network)', 'task': task, 'convention': metric_conventions(metrics, 1),
                             'iters': 0, 'params': 0, 'train_s': 0.0, **score(identity, test, metrics)})
            opt = shrink(tree, sets, tmp, args.iters, file, teacher_path=teachers[key])
            trainer, secs, totals = train(opt)
            test = build_dataset('val', opt['datasets']['val'], 1)
            metrics = opt['val']['metrics']
            terms = [t.name for t in getattr(trainer.model, 'terms', [])] or ['l_pix']
            rows.append({'file': file, 'task': task, 'convention': metric_conventions(metrics, 1), 'iters': args.iters,
                         'params': sum(p.numel() for p in trainer.model.net_g.parameters()), 'train_s': secs,
                         'terms': terms, 'l_total': loss_trend(totals), **score(trainer.model.net_g, test, metrics)})
            print(f"{file}: psnr {rows[-1]['psnr']:.3f} ssim {rows[-1]['ssim']:.4f} ({secs:.1f} s)", flush=True)
    write(rows, Path(args.out), args)
    return 0


def write(rows, out: Path, args) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / 'restoration_cpu.json').write_text(json.dumps({'args': vars(args), 'rows': rows}, indent=1))
    lines = ['# DCKD beyond SR on a CPU (shrunk nets, synthetic GoPro / Rain13K stand-ins)', '',
             'Produced by `python benchmarks/restoration_cpu.py ' + ' '.join(
                 f'--{k.replace("_", "-")} {v}' for k, v in vars(args).items() if k in ('iters', 'teacher_iters')) + '`.',
             'Every shipped option file, its nets shrunk (student/teacher sizes in the script), its schedules scaled,',
             'a random 32-channel VQGAN encoder in place of the taming checkpoint; synthetic 48 px sets',
             '(16 training pairs, 4 test pairs), 32 px patches. Scores on the synthetic test split, raw student',
             '(not EMA) weights, with the task convention in the last column. These show the methods train end to',
             "end; they are not the paper's numbers.", '',
             'l_total: mean of the first -> last quarter of the steps (the weighted sum of the listed terms).', '',
             '| file | task | iters | params | train s | loss terms | l_total | PSNR | SSIM | convention |',
             '| --- | --- | ---: | ---: | ---: | --- | --- | ---: | ---: | --- |']
    for r in rows:
        lines.append(f"| {r['file']} | {r['task']} | {r['iters']} | {r['params']:,} | {r['train_s']:.1f} | "
                     f"{', '.join(r.get('terms', [])) or '-'} | "
                     + (f"{r['l_total'][0]:.4f} -> {r['l_total'][1]:.4f}" if 'l_total' in r else '-')
                     + f" | {r['psnr']:.3f} | {r['ssim']:.4f} | {r['convention']} |")
    (out / 'restoration_cpu.md').write_text('\n'.join(lines) + '\n')
    print(f"wrote {out / 'restoration_cpu.md'}")


if __name__ == '__main__':
    sys.exit(main())
