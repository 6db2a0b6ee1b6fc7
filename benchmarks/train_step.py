"""Time one training step of a method, built from its real option file, and split it into parts.

    python benchmarks/train_step.py --method logits [--device cpu|cuda] [--preset tiny|paper]
        [--amp bf16] [--channels-last] [--compile] [--steps 20 --warmup 5] [--batch B --lr-patch P]
    python benchmarks/train_step.py --method all --preset tiny        # every method with an option file
    python benchmarks/train_step.py --option options/dckd_star_swinir_x4.yml --label dckd*

What one run measures, in this order, on one synthetic batch (smooth random HR patches and their
bicubic LR; see benchmarks/lib/methods.py for the presets and stand-in weights):

1. ``--warmup`` untimed steps, then ``--steps`` timed ``model.train_step`` calls (device-synchronised
   wall clock): the median step time, its quartiles, and the peak memory of the timed steps.
2. Interleaved with those, as many instrumented steps: the step split into data, teacher forward, helper
   forwards (history model, embedding net, PCL discriminator, FACD regressors, ...), student
   forward, loss terms, the finite check, backward, optimizer, EMA and ``after_step`` hooks
   (providers, loss terms and phases wrapped, networks hooked; benchmarks/lib/instrument.py).
3. One step with every top-level network call recorded (input shapes, grad mode) under
   ``FlopCounterMode``: the FLOPs of the whole step (forward + backward + hooks) and the forward
   FLOPs of each network call, and ``Step.calls`` (provider calls per step).
4. Interleaved too, the essential parts alone: the recorded network calls replayed as bare module calls on random
   inputs of the same shapes (teacher forward, embedding passes, history forward, the student's
   forward + backward + optimizer step, D's update, the EMA lerp). *Overhead ratio* = step time /
   sum of the parts.
5. Interleaved too, the plain student step (``SRModel`` with the same network_g, optimizer, EMA and precision,
   ``L1(S, GT)``), timed the same way: *vs scratch* = step time / scratch step time.
6. The machine's peak in the same run: a large matmul and a large 3x3 convolution; the step's
   achieved FLOP/s is shown as a fraction of it.

Each run appends one record to ``benchmarks/results/train_step.json`` and regenerates the tables of
``benchmarks/RESULTS.md``.
"""
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import gc  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from typing import Any, Dict, List, Optional  # noqa: E402

import torch  # noqa: E402

from benchmarks.lib import methods as M  # noqa: E402
from benchmarks.lib import report  # noqa: E402
from benchmarks.lib.instrument import (build_essential_parts, instrumented_step, median_breakdown,  # noqa: E402
                                       record_step, summarize_calls)
from benchmarks.lib.timing import (PeakMemory, clock, clock_kind, machine_info, measure_peak,  # noqa: E402
                                   median, quartiles, set_cpu_clock, sync)

RESULTS_JSON = M.REPO / 'benchmarks' / 'results' / 'train_step.json'
RESULTS_MD = M.REPO / 'benchmarks' / 'RESULTS.md'


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--method', nargs='+', default=None,
                   help=f"{' | '.join(M.METHODS)} | all (every method whose option file exists)")
    p.add_argument('--option', help='benchmark this option file instead of the method\'s default one')
    p.add_argument('--label', help='name of the row (default: the method, or the option file name)')
    p.add_argument('--device', default='cpu', help='cpu | cuda | cuda:N')
    p.add_argument('--preset', choices=M.PRESETS, default='tiny')
    p.add_argument('--amp', choices=['bf16', 'fp16'], default=None, help='train.amp (autocast dtype)')
    p.add_argument('--channels-last', action='store_true', help='train.channels_last (CUDA only, as training)')
    p.add_argument('--compile', action='store_true', help='train.compile: torch.compile the student')
    p.add_argument('--steps', type=int, default=20, help='timed steps (and instrumented steps, and replay reps)')
    p.add_argument('--warmup', type=int, default=5, help='untimed steps first')
    p.add_argument('--batch', type=int, default=None, help='batch size (default: tiny 4, paper the file\'s)')
    p.add_argument('--lr-patch', type=int, default=None, help='LR patch size (default: tiny 12, paper the file\'s)')
    p.add_argument('--threads', type=int, default=1,
                   help='torch.set_num_threads on CPU (default 1: on a shared, loaded machine more OpenMP threads '
                        'than free cores spin against each other and make small steps many times slower)')
    p.add_argument('--cpu-clock', choices=['process', 'wall'], default='process',
                   help='CPU timings: process CPU time (default; robust to other processes on a shared machine) '
                        'or wall time')
    p.add_argument('--profile', type=int, default=0, metavar='N',
                   help='after the measurements, run N steps under torch.profiler and print the top operators')
    p.add_argument('--no-scratch', action='store_true', help='skip the scratch baseline')
    p.add_argument('--no-flops', action='store_true', help='skip the FLOP count')
    p.add_argument('--flops-only', action='store_true',
                   help='only count the FLOPs of one step (no timing): for paper-size nets on a CPU, with a small '
                        '--batch; the table scales the count to the option file\'s batch')
    p.add_argument('--quick-peak', action='store_true', help='small peak-FLOP/s problem (tests)')
    p.add_argument('--json', default=str(RESULTS_JSON), help='results file to append to')
    p.add_argument('--md', default=str(RESULTS_MD), help='RESULTS.md to regenerate ("" to skip)')
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)
    if not args.method and not args.option:
        p.error('give --method and/or --option')
    if args.method == ['all']:
        args.method = M.available_methods()
    for m in args.method or []:
        if m not in M.METHODS:
            p.error(f"unknown method '{m}'; choose from {', '.join(M.METHODS)} or all")
    if args.option and args.method and len(args.method) > 1:
        p.error('--option goes with one --method (its label)')
    return args


# ----------------------------------------------------------------------------- measuring
def warm(model, batch, n: int, it: int) -> int:
    for _ in range(n):
        model.train_step(batch, it)
        it += 1
    return it


def step_memory(model, batch, device, it: int, steps: int = 2):
    with PeakMemory(device) as mem:
        for _ in range(steps):
            model.train_step(batch, it)
            it += 1
    return mem.result(), it


def flops_by_net(calls: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    out: Dict[str, Dict[str, Any]] = {}
    for c in calls:
        key = c['net'] + (' (update)' if c['phase'] == 'after_step' else '') + (' [grad]' if c['grad'] else '')
        slot = out.setdefault(key, {'calls': 0, 'images': 0, 'fwd_flops': 0})
        slot['calls'] += 1
        slot['images'] += c['in'][0] if c['in'] else 0
        slot['fwd_flops'] += c['fwd_flops'] or 0
    return out


def interleaved_rounds(model, scratch, parts, batch, device, rounds: int, it: int, sit: int):
    """``rounds`` rounds of: one step of the method, one scratch step, each essential part once, one
    instrumented step of the method. Interleaving exposes all of them to the same machine load
    (this machine is shared), so their ratios hold even when the load changes."""
    step, sstep, breakdowns, step_calls = [], [], [], {}
    part_t = {k: [] for k in parts}
    gc.collect()
    gc.disable()
    try:
        for _ in range(rounds):
            t0 = clock(device)
            model.train_step(batch, it)
            step.append(clock(device) - t0)
            it += 1
            if scratch is not None:
                t0 = clock(device)
                scratch.train_step(batch, sit)
                sstep.append(clock(device) - t0)
                sit += 1
            for k, (fn, _) in parts.items():
                t0 = clock(device)
                fn()
                part_t[k].append(clock(device) - t0)
            bd, step_calls = instrumented_step(model, batch, device, it)
            breakdowns.append(bd)
            it += 1
    finally:
        gc.enable()
    return step, sstep, part_t, median_breakdown(breakdowns), step_calls, it


def run_one(label: str, method: Optional[str], option: Path, args) -> Dict[str, Any]:
    device = torch.device(args.device)
    if device.type == 'cpu' and args.threads:
        torch.set_num_threads(args.threads)
    set_cpu_clock(args.cpu_clock)
    torch.manual_seed(args.seed)
    tree = M.load_option_file(option)
    scale = tree.get('scale', 4)
    batch_size, lr_patch = M.batch_settings(tree, args.preset, args.batch, args.lr_patch)
    notes: List[str] = []
    if args.preset == 'tiny':
        tree, tiny_notes = M.tiny_tree(tree, lr_patch)
        notes += tiny_notes
    if device.type != 'cuda' and args.channels_last:
        notes.append('channels_last requested: BaseModel applies it on CUDA only, so this CPU run is NCHW')
    batch = M.synthetic_batch(batch_size, lr_patch, scale, seed=args.seed)
    record: Dict[str, Any] = {
        'tool': 'train_step', 'label': label, 'method': method, 'option': M.rel(option), 'preset': args.preset,
        'device': device.type, 'amp': args.amp, 'channels_last': bool(args.channels_last),
        'compile': bool(args.compile), 'batch': batch_size, 'lr_patch': lr_patch, 'scale': scale,
        'steps': args.steps, 'warmup': args.warmup, 'machine': machine_info(device), 'notes': notes,
        'clock': clock_kind(device),
        'nets': {k: tree[k] for k in ('network_g', 'network_t') if tree.get(k)},
    }
    dtypes = [torch.float32] + ([torch.bfloat16 if args.amp == 'bf16' else torch.float16] if args.amp else [])
    compute = str(dtypes[-1]).replace('torch.', '')
    file_batch = M.batch_settings(M.load_option_file(option), args.preset, None, None)[0]
    with tempfile.TemporaryDirectory(prefix='ckdsr_bench_') as tmp:
        ktree = M.prepare_tree(tree, device, Path(tmp) / 'run', args.amp, args.channels_last, args.compile)
        model, opt = M.build_from_tree(ktree, device, M.rel(option))
        record['model_type'] = opt.get('model_type')
        if args.flops_only:
            return flops_only(record, model, batch, device, file_batch)
        scratch = None
        if opt.get('model_type') != 'SRModel' and not args.no_scratch:
            stree = M.prepare_tree(M.scratch_tree(tree), device, Path(tmp) / 'scratch', args.amp,
                                   args.channels_last, args.compile)
            scratch, _ = M.build_from_tree(stree, device, M.rel(option) + ' (scratch)')
        record['params'] = {'student': sum(p.numel() for p in model.net_g.parameters())}

        it, sit = warm(model, batch, args.warmup, 1), 1
        if scratch is not None:
            sit = warm(scratch, batch, args.warmup, sit)
        record['memory'], it = step_memory(model, batch, device, it)
        if scratch is not None:
            smem, sit = step_memory(scratch, batch, device, sit)
        calls, step_calls, flops, note = record_step(model, batch, device, it, count_flops=not args.no_flops)
        it += 1
        if note:
            record['notes'].append(note)
        parts = build_essential_parts(model, calls, device)
        for fn, _ in parts.values():  # warm the bare calls (allocator, autograd, kernel choice)
            fn()
            fn()
        peak_before = {str(d).replace('torch.', ''): measure_peak(device, d, quick=args.quick_peak) for d in dtypes}

        step, sstep, part_t, breakdown, bd_calls, it = interleaved_rounds(model, scratch, parts, batch, device,
                                                                          args.steps, it, sit)
        peak_after = {str(d).replace('torch.', ''): measure_peak(device, d, quick=args.quick_peak) for d in dtypes}
        if args.profile:
            profile_steps(model, batch, device, args.profile, it)
            it += args.profile

    essential_rounds = [sum(part_t[k][i] for k in parts) for i in range(args.steps)]
    summary = summarize_calls(calls)
    record.update({
        'step_s': median(step), 'step_quartiles_s': quartiles(step), 'step_times_s': step,
        'breakdown_s': breakdown, 'step_calls': step_calls or bd_calls,
        'network_calls': summary, 'flops_by_net': flops_by_net(summary), 'step_flops': flops,
        'essential_s': {k: {**info, 'median_s': median(part_t[k])} for k, (_, info) in parts.items()},
        'essential_sum_s': sum(median(part_t[k]) for k in parts),
        # paired per round (same machine load): median of step_i / sum of parts_i
        'overhead_ratio': median([a / b for a, b in zip(step, essential_rounds)]) if parts else None,
        'overhead_ratio_of_medians': median(step) / sum(median(part_t[k]) for k in parts) if parts else None,
        # noise on a shared machine only adds time: the minima estimate the unloaded costs
        'step_min_s': min(step), 'essential_min_s': {k: min(part_t[k]) for k in parts},
        'overhead_ratio_of_minima': min(step) / sum(min(part_t[k]) for k in parts) if parts else None,
    })
    loss_s = (breakdown.get('loss') or {}).get('total', 0.0)
    if parts:
        record['overhead_excl_loss'] = record['step_s'] / (record['essential_sum_s'] + loss_s)
    if scratch is not None:
        record['scratch'] = {'step_s': median(sstep), 'step_quartiles_s': quartiles(sstep), 'memory': smem}
        record['vs_scratch'] = median([a / b for a, b in zip(step, sstep)])
        record['scratch']['step_min_s'] = min(sstep)
        record['vs_scratch_of_minima'] = min(step) / min(sstep)
    elif record['model_type'] == 'SRModel':
        record['scratch'] = {'step_s': record['step_s'], 'step_quartiles_s': record['step_quartiles_s'],
                             'memory': record['memory']}
        record['vs_scratch'] = 1.0
    for d in peak_before:  # the better of the two measurements of the same run
        best = max((peak_before[d], peak_after[d]), key=lambda p: p['peak_tflops'])
        best['measured_tflops'] = [peak_before[d]['peak_tflops'], peak_after[d]['peak_tflops']]
        peak_before[d] = best
    record['peak'] = peak_before
    if flops:
        peak = record['peak'][compute]['peak_tflops'] * 1e12
        record['achieved_tflops'] = flops / record['step_s'] / 1e12
        record['fraction_of_peak'] = flops / record['step_s'] / peak
        record['peak_dtype'] = compute
    record['machine']['loadavg_end'] = [round(v, 2) for v in os.getloadavg()]
    return record


def profile_steps(model, batch, device, steps: int, it: int, rows: int = 30) -> None:
    """Print torch.profiler's operator table (self time) over ``steps`` steps."""
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == 'cuda' else [])
    with profile(activities=acts) as prof:
        for i in range(steps):
            model.train_step(batch, it + i)
        sync(device)
    key = 'self_cuda_time_total' if device.type == 'cuda' else 'self_cpu_time_total'
    print(prof.key_averages().table(sort_by=key, row_limit=rows))


def flops_only(record: Dict[str, Any], model, batch, device, file_batch: int) -> Dict[str, Any]:
    calls, step_calls, flops, note = record_step(model, batch, device, 1, count_flops=True)
    summary = summarize_calls(calls)
    record.update({'flops_only': True, 'step_s': None, 'step_flops': flops, 'step_calls': step_calls,
                   'network_calls': summary, 'flops_by_net': flops_by_net(summary),
                   'file_batch': file_batch,
                   'flops_at_file_batch': flops * file_batch / record['batch'] if flops else None,
                   'params': {'student': sum(p.numel() for p in model.net_g.parameters())}})
    if note:
        record['notes'].append(note)
    record['machine']['loadavg_end'] = [round(v, 2) for v in os.getloadavg()]
    return record


def print_record(r: Dict[str, Any]) -> None:
    if r.get('flops_only'):
        print(f"\n{r['label']} [{r['option']}] preset {r['preset']}: batch {r['batch']}, LR patch {r['lr_patch']}: "
              f"{r['step_flops'] / 1e9:.1f} GFLOP/step counted, x{r['file_batch'] / r['batch']:g} -> "
              f"{r['flops_at_file_batch'] / 1e12:.2f} TFLOP at the file's batch {r['file_batch']}")
        for k, v in r['flops_by_net'].items():
            print(f"  {k}: {v['calls']} call(s), {v['images']} img, fwd {v['fwd_flops'] / 1e9:.1f} GFLOP")
        print(f"  Step.calls: {r['step_calls']}")
        return
    ms = 1e3
    print(f"\n{r['label']} [{r['option']}] preset {r['preset']} on {r['device']}: batch {r['batch']}, "
          f"LR patch {r['lr_patch']}, load {r['machine']['loadavg']}")
    q = r['step_quartiles_s']
    print(f"  step {r['step_s'] * ms:.1f} ms (IQR {q[0] * ms:.1f}-{q[1] * ms:.1f})"
          + (f", scratch {r['scratch']['step_s'] * ms:.1f} ms, vs scratch {r['vs_scratch']:.2f}x"
             if 'scratch' in r else '')
          + (f", overhead ratio {r['overhead_ratio']:.3f} (of medians {r['overhead_ratio_of_medians']:.3f}, "
             f"of minima {r['overhead_ratio_of_minima']:.3f}; excl. loss terms {r['overhead_excl_loss']:.3f})"
             if r.get('overhead_ratio') else ''))
    parts = ', '.join(f"{k} {v['total'] * ms:.1f}"
                      + (f" (net {v['net'] * ms:.1f})" if 0 < v['net'] < v['total'] else '')
                      for k, v in r['breakdown_s'].items() if k != '_sum')
    print(f"  breakdown (ms): {parts}")
    print('  essential (ms): ' + ', '.join(f"{k} {v['median_s'] * ms:.1f}" for k, v in r['essential_s'].items())
          + f" = {r['essential_sum_s'] * ms:.1f}")
    if r.get('step_calls'):
        print(f"  Step.calls: {r['step_calls']}")
    if r.get('step_flops'):
        print(f"  FLOPs/step {r['step_flops'] / 1e9:.2f} G, achieved {r['achieved_tflops'] * 1e3:.1f} GFLOP/s = "
              f"{r['fraction_of_peak'] * 100:.1f}% of the measured {r['peak_dtype']} peak "
              f"{r['peak'][r['peak_dtype']]['peak_tflops'] * 1e3:.1f} GFLOP/s")
    print(f"  memory: {r['memory']['kind']} peak {r['memory']['peak_mb']:.0f} MB "
          f"(+{r['memory']['increase_mb']:.0f} MB during the steps)")
    for n in r['notes']:
        print(f'  note: {n}')


def main(argv=None) -> int:
    args = parse_args(argv)
    jobs = []
    if args.option:
        method = (args.method or [None])[0]
        jobs.append((args.label or method or Path(args.option).stem, method, Path(args.option).resolve()))
    else:
        for m in args.method:
            path = M.method_option(m)
            if path is None:
                print(f"skip {m}: none of its option files exists yet ({', '.join(M.METHODS[m])})")
                continue
            jobs.append((args.label if len(args.method) == 1 and args.label else m, m, path))
    if len(jobs) > 1:  # one process per method: independent memory peaks, no state carried over
        rc = 0
        base = [a for a in (argv if argv is not None else sys.argv[1:])]
        for label, method, _ in jobs:
            cmd = [sys.executable, __file__] + _without_method(base) + ['--method', method, '--md', '']
            print('$ ' + ' '.join(cmd[1:]), flush=True)
            rc |= subprocess.call(cmd)
        if args.md:
            report.write_results_md(Path(args.md), Path(args.json))
        return rc
    for label, method, path in jobs:
        record = run_one(label, method, path, args)
        report.append_json(Path(args.json), record)
        print_record(record)
    if args.md:
        report.write_results_md(Path(args.md), Path(args.json))
        print(f'wrote {args.md}')
    return 0


def _without_method(argv: List[str]) -> List[str]:
    out, skip = [], False
    for a in argv:
        if skip and not a.startswith('--'):
            continue
        skip = False
        if a == '--method':
            skip = True
            continue
        if a.startswith('--method='):
            continue
        out.append(a)
    return out


if __name__ == '__main__':
    sys.exit(main())
