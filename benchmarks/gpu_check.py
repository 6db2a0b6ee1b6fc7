"""The CUDA path in one prepared run (``make gpu-check``; about 5 minutes on one GPU).

    python benchmarks/gpu_check.py                      # CUDA, every method, paper shapes
    python benchmarks/gpu_check.py --methods logits dckd --steps 10
    python benchmarks/gpu_check.py --device cpu --tiny  # the same code on the CPU, tiny nets (tests)

For every method's real option file (benchmarks/lib/methods.py), with stand-in weights written in the
published formats and a synthetic batch (no dataset is read):

1. **CPU reference**: the model built on the CPU in fp32 from seed 0 takes one step on a small
   comparison batch (``--cmp-batch`` images of the file's patch); its loss terms are the reference.
2. For each precision, **fp32** and **bf16 + channels_last** (``train.amp: bf16``,
   ``train.channels_last: true``), the model is built on ``--device`` from the same seed and the same
   stand-in files, and
   * takes its first step on the comparison batch: each loss term against the CPU's (relative
     difference; fp32 within ``--fp32-rtol``, as cuDNN may use TF32 for fp32 convolutions) and, for
     bf16, against the same device's fp32 step (within ``--bf16-rtol``). Terms built from random
     samples (DCKD's degraded negatives, PCL's sharpened/blurred samples, DUKD's upcycled samples)
     draw from the device's generator, which differs between CPU and CUDA: their CPU comparison is
     expected to be loose, the same-device bf16/fp32 comparison is the one that checks them;
   * then at the file's batch and patch (``--tiny``: 4 x 12 px, shrunk nets): ``--warmup`` untimed
     steps, ``--steps`` timed steps (device-synchronised wall clock; median), peak memory of the
     timed steps (``torch.cuda.max_memory_allocated``; RSS on the CPU), the FLOPs of one step
     (``FlopCounterMode``) and the achieved FLOP/s as a fraction of the peak measured now by a
     large matmul and 3x3 convolution in the same dtype.
3. With two or more GPUs (or ``--dist gloo`` on the CPU): one DDP step of the logits-KD model in two
   processes (NCCL on CUDA), checking that both ranks hold the same weights afterwards.

Results: ``<out-dir>/gpu_check[_cpu][_tiny].json`` (one record per method and precision, plus
the environment) and ``.md`` (a table). Exit code 1 when a step failed or a comparison is out of
tolerance.
"""
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import copy  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from typing import Any, Dict, List, Optional  # noqa: E402

import torch  # noqa: E402

from benchmarks.lib import methods as M  # noqa: E402
from benchmarks.lib.timing import PeakMemory, machine_info, measure_peak, median, sync  # noqa: E402

PRECISIONS = {'fp32': (None, False), 'bf16+CL': ('bf16', True)}
PEAK_DTYPE = {'fp32': torch.float32, 'bf16+CL': torch.bfloat16}
RESULTS = M.REPO / 'benchmarks' / 'results'


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--device', default='cuda', help='cuda | cuda:N | cpu')
    p.add_argument('--tiny', action='store_true', help='shrunk nets, batch 4, LR patch 12 (the CPU test mode)')
    p.add_argument('--methods', nargs='+', default=None, help=f"subset of {', '.join(M.METHODS)} (default: all)")
    p.add_argument('--steps', type=int, default=5, help='timed steps per method and precision')
    p.add_argument('--warmup', type=int, default=2, help='untimed steps first')
    p.add_argument('--cmp-batch', type=int, default=2, help='images of the CPU comparison batch')
    p.add_argument('--fp32-rtol', type=float, default=1e-2, help='fp32 device vs CPU, per loss term')
    p.add_argument('--bf16-rtol', type=float, default=0.1, help='bf16+CL vs fp32 on the same device, per loss term')
    p.add_argument('--dist', choices=('auto', 'off', 'gloo', 'nccl'), default='auto',
                   help='the 2-process step: auto = NCCL when two GPUs are visible')
    p.add_argument('--quick-peak', action='store_true', help='small peak-FLOP/s problem (tests)')
    p.add_argument('--out-dir', default=str(RESULTS))
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)
    args.methods = args.methods or M.available_methods()
    unknown = [m for m in args.methods if m not in M.METHODS]
    if unknown:
        p.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(M.METHODS)}")
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        p.error('--device cuda: no CUDA device here; use --device cpu --tiny for the CPU mode')
    return args


# ----------------------------------------------------------------------------- building and stepping
def method_tree(method: str, tiny: bool):
    """(option tree, batch size, LR patch, option file) of a method."""
    path = M.method_option(method)
    tree = M.load_option_file(path)
    batch, lr_patch = M.batch_settings(tree, 'tiny' if tiny else 'paper', None, None)
    if tiny:
        tree, _ = M.tiny_tree(tree, lr_patch)
    return tree, batch, lr_patch, path


def with_flags(prepared: Dict[str, Any], device: torch.device, amp: Optional[str], channels_last: bool):
    tree = copy.deepcopy(prepared)
    tree['num_gpu'] = 0 if device.type == 'cpu' else 'auto'
    train = tree.setdefault('train', {})
    train.pop('amp', None)
    train.pop('channels_last', None)
    if amp:
        train['amp'] = amp
    if channels_last:
        train['channels_last'] = True
    return tree


def build(tree, device: torch.device, source: str, seed: int):
    torch.manual_seed(seed)
    model, _ = M.build_from_tree(tree, device, source)
    return model


def first_step(model, batch, seed: int) -> Dict[str, float]:
    torch.manual_seed(seed)
    return {k: float(v) for k, v in model.train_step(batch, 1).items()}


def rel_diffs(a: Dict[str, float], ref: Dict[str, float]) -> Dict[str, float]:
    return {k: abs(a[k] - ref[k]) / max(abs(ref[k]), 1e-8) for k in ref if k in a}


def timed_steps(model, batch, device: torch.device, warmup: int, steps: int):
    it = 2
    for _ in range(warmup):
        model.train_step(batch, it)
        it += 1
    times = []
    with PeakMemory(device) as mem:
        for _ in range(steps):
            sync(device)
            t0 = time.perf_counter()
            model.train_step(batch, it)
            sync(device)
            times.append(time.perf_counter() - t0)
            it += 1
    return times, mem.result(), it


def count_flops(model, batch, it: int) -> Optional[int]:
    from torch.utils.flop_counter import FlopCounterMode
    try:
        with FlopCounterMode(display=False) as counter:
            model.train_step(batch, it)
        return int(counter.get_total_flops())
    except Exception:  # noqa: BLE001 -- a graph the counter cannot follow: report no FLOPs, not a failure
        return None


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == 'cuda':
        torch.cuda.empty_cache()


def check_method(method: str, args, device: torch.device, peaks: Dict[str, Dict[str, Any]], tmp: Path
                 ) -> List[Dict[str, Any]]:
    tree, batch_size, lr_patch, path = method_tree(method, args.tiny)
    scale = tree.get('scale', 4)
    prepared = M.prepare_tree(tree, torch.device('cpu'), tmp / method)  # stand-in files, written once
    cmp_batch = M.synthetic_batch(args.cmp_batch, lr_patch, scale, seed=args.seed + 1)
    batch = M.synthetic_batch(batch_size, lr_patch, scale, seed=args.seed + 2)
    source = f'{M.rel(path)} ({"tiny" if args.tiny else "paper"})'
    cpu = torch.device('cpu')
    ref_model = build(with_flags(prepared, cpu, None, False), cpu, source, args.seed)
    cpu_losses = first_step(ref_model, cmp_batch, args.seed)
    del ref_model
    free(cpu)
    records, fp32_losses = [], None
    for name, (amp, cl) in PRECISIONS.items():
        rec: Dict[str, Any] = {'method': method, 'option': M.rel(path), 'precision': name, 'device': str(device),
                               'preset': 'tiny' if args.tiny else 'paper', 'batch': batch_size, 'lr_patch': lr_patch,
                               'scale': scale, 'cpu_first_losses': cpu_losses}
        try:
            model = build(with_flags(prepared, device, amp, cl), device, source, args.seed)
            rec['channels_last_applied'] = bool(model.channels_last)
            losses = first_step(model, cmp_batch, args.seed)
            rec['first_losses'] = losses
            rec['rel_vs_cpu'] = rel_diffs(losses, cpu_losses)
            if name == 'fp32':
                fp32_losses = losses
                rec['ok'] = max(rec['rel_vs_cpu'].values()) <= args.fp32_rtol
            else:
                rec['rel_vs_fp32'] = rel_diffs(losses, fp32_losses) if fp32_losses else {}
                rec['ok'] = bool(rec['rel_vs_fp32']) and max(rec['rel_vs_fp32'].values()) <= args.bf16_rtol
            rec['finite'] = all(v == v and abs(v) != float('inf') for v in losses.values())
            rec['ok'] = rec['ok'] and rec['finite']
            del model
            free(device)
            model = build(with_flags(prepared, device, amp, cl), device, source, args.seed)
            times, mem, it = timed_steps(model, batch, device, args.warmup, args.steps)
            rec.update({'step_s': median(times), 'step_times_s': times, 'memory': mem})
            flops = count_flops(model, batch, it)
            peak = peaks[name]['peak_tflops'] * 1e12
            rec.update({'step_flops': flops, 'peak_tflops': peaks[name]['peak_tflops'],
                        'achieved_tflops': flops / rec['step_s'] / 1e12 if flops else None,
                        'fraction_of_peak': flops / rec['step_s'] / peak if flops else None})
            del model
        except Exception as err:  # noqa: BLE001 -- one method's failure must not stop the check of the others
            rec.update({'ok': False, 'error': f'{type(err).__name__}: {err}', 'traceback': traceback.format_exc()})
        free(device)
        records.append(rec)
        print(summary_line(rec), flush=True)
    return records


# ----------------------------------------------------------------------------- 2-process step
def _dist_worker(rank: int, world: int, backend: str, store: str, tiny: bool, out: str) -> None:
    import torch.distributed as dist
    if backend == 'nccl':
        torch.cuda.set_device(rank)
        device = torch.device('cuda', rank)
    else:
        torch.set_num_threads(1)
        device = torch.device('cpu')
    dist.init_process_group(backend, init_method=f'file://{store}', rank=rank, world_size=world)
    try:
        tree, batch_size, lr_patch, path = method_tree('logits', tiny)
        with tempfile.TemporaryDirectory(prefix=f'gpu_check_dist{rank}_') as tmp:
            prepared = M.prepare_tree(tree, torch.device('cpu'), Path(tmp))
            t = with_flags(prepared, device, 'bf16' if backend == 'nccl' else None, backend == 'nccl')
            from ckdsr.models import build_model
            from ckdsr.models.option_schema import schema_for
            from ckdsr.utils.options import validate_tree
            opt = validate_tree(t, schema_for(t, str(path)), str(path))
            torch.manual_seed(0)
            model = build_model(opt, is_train=True, rank=rank, world_size=world, device=device)
            batch = M.synthetic_batch(batch_size, lr_patch, tree.get('scale', 4), seed=10 + rank)
            sync(device)
            t0 = time.perf_counter()
            losses = model.train_step(batch, 1)
            sync(device)
            step = time.perf_counter() - t0
            net = getattr(model.net_g, 'module', model.net_g)
            flat = torch.cat([p.detach().float().flatten() for p in net.parameters()])
            gathered = [torch.zeros_like(flat) for _ in range(world)]
            dist.all_gather(gathered, flat)
            same = all(torch.equal(gathered[0], g) for g in gathered[1:])
            if rank == 0:
                Path(out).write_text(json.dumps({'backend': backend, 'world_size': world, 'step_s': step,
                                                 'weights_equal_across_ranks': same,
                                                 'loss_rank0': float(losses['l_total'])}))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def dist_check(backend: str, tiny: bool, tmp: Path) -> Dict[str, Any]:
    import torch.multiprocessing as mp
    store, out = tmp / 'dist_store', tmp / 'dist.json'
    method = 'spawn' if backend == 'nccl' else ('fork' if 'fork' in mp.get_all_start_methods() else 'spawn')
    try:
        mp.start_processes(_dist_worker, args=(2, backend, str(store), tiny, str(out)), nprocs=2, join=True,
                           start_method=method)
        rec = json.loads(out.read_text())
        rec['ok'] = bool(rec['weights_equal_across_ranks'])
    except Exception as err:  # noqa: BLE001
        rec = {'backend': backend, 'ok': False, 'error': f'{type(err).__name__}: {err}'}
    return rec


# ----------------------------------------------------------------------------- report
def summary_line(r: Dict[str, Any]) -> str:
    if r.get('error'):
        return f"{r['method']:8s} {r['precision']:8s} ERROR {r['error']}"
    worst_cpu = max(r['rel_vs_cpu'].values())
    worst_same = max(r['rel_vs_fp32'].values()) if r.get('rel_vs_fp32') else None
    return (f"{r['method']:8s} {r['precision']:8s} {'ok  ' if r['ok'] else 'FAIL'} step {r['step_s'] * 1e3:8.1f} ms  "
            f"peak {r['memory']['peak_mb']:8.0f} MB  "
            + (f"{r['fraction_of_peak'] * 100:5.1f}% of peak  " if r.get('fraction_of_peak') else '')
            + f"max rel vs CPU {worst_cpu:.2e}" + (f", vs fp32 {worst_same:.2e}" if worst_same is not None else ''))


def table(records: List[Dict[str, Any]], dist_rec: Optional[Dict[str, Any]], env: Dict[str, Any]) -> str:
    lines = [f"# gpu_check: {env.get('gpu') or env['device']} ({env['time']}, torch {env['torch']}, "
             f"git {env.get('git')})", '',
             '| method | precision | ok | batch x LR patch | step ms | peak MB | GFLOP/step | achieved TFLOP/s | '
             '% of measured peak | first-step l_total (CPU / here) | max rel. diff vs CPU | max rel. diff vs fp32 |',
             '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |']
    for r in records:
        if r.get('error'):
            lines.append(f"| {r['method']} | {r['precision']} | **error** | {r['batch']}x{r['lr_patch']} | "
                         f"{r['error'][:120]} | | | | | | | |")
            continue
        same = max(r['rel_vs_fp32'].values()) if r.get('rel_vs_fp32') else None
        prec = r['precision'] + ('' if r['precision'] == 'fp32' or r.get('channels_last_applied')
                                 else ' (channels_last not applied: CPU)')
        cells = [r['method'], prec, 'yes' if r['ok'] else '**no**', f"{r['batch']}x{r['lr_patch']}",
                 f"{r['step_s'] * 1e3:.1f}", f"{r['memory']['peak_mb']:.0f}",
                 f"{r['step_flops'] / 1e9:.1f}" if r.get('step_flops') else '',
                 f"{r['achieved_tflops']:.3g}" if r.get('achieved_tflops') else '',
                 f"{r['fraction_of_peak'] * 100:.1f}% of {r['peak_tflops']:.3g}" if r.get('fraction_of_peak') else '',
                 f"{r['cpu_first_losses']['l_total']:.5g} / {r['first_losses']['l_total']:.5g}",
                 f"{max(r['rel_vs_cpu'].values()):.2e}", '' if same is None else f'{same:.2e}']
        lines.append('| ' + ' | '.join(cells) + ' |')
    if dist_rec:
        failure = dist_rec.get('error') or 'weights differ across ranks'
        lines += ['', f"2-process step ({dist_rec.get('backend')}): "
                  + (f"ok, {dist_rec['step_s'] * 1e3:.1f} ms, weights equal across ranks"
                     if dist_rec.get('ok') else f'**failed**: {failure}')]
    return '\n'.join(lines) + '\n'


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == 'cpu':
        torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
    env = machine_info(device)
    peaks = {name: measure_peak(device, PEAK_DTYPE[name], quick=args.quick_peak) for name in PRECISIONS}
    env['peaks'] = peaks
    started = time.perf_counter()
    records: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix='gpu_check_') as tmp:
        for method in args.methods:
            if M.method_option(method) is None:
                print(f'skip {method}: no option file')
                continue
            records += check_method(method, args, device, peaks, Path(tmp))
        backend = args.dist
        if backend == 'auto':
            backend = 'nccl' if device.type == 'cuda' and torch.cuda.device_count() >= 2 else 'off'
        dist_rec = None if backend == 'off' else dist_check(backend, args.tiny, Path(tmp))
    env['wall_s'] = time.perf_counter() - started
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = 'gpu_check' + ('' if device.type == 'cuda' else f'_{device.type}') + ('_tiny' if args.tiny else '')
    (out_dir / f'{stem}.json').write_text(json.dumps({'env': env, 'records': records, 'dist': dist_rec},
                                                     indent=1, default=str) + '\n')
    (out_dir / f'{stem}.md').write_text(table(records, dist_rec, env))
    print(f"wrote {out_dir / stem}.json and .md ({env['wall_s']:.0f} s)")
    ok = all(r['ok'] for r in records) and (dist_rec is None or dist_rec['ok'])
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
