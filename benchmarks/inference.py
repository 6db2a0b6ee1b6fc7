"""Inference speed of the paper students and teachers on tools/test.py's model path, 1280x720 output.

    python benchmarks/inference.py [--nets edsr_r16c64 rcan_10x6 ...] [--device cpu|cuda]
        [--tiles 0 128] [--tile-overlap 16] [--lr-size 320x180] [--reps 3] [--amp bf16] [--channels-last]

Each network is built from the ``network_g`` of its option file (random weights: speed does not depend
on them), put in ``eval()``, and run the way ``tools/test.py`` runs it: ``ckdsr.engine.evaluation.make_forward``
(tiling when ``tile > 0``) under ``torch.inference_mode()`` (and autocast with ``--amp``), on one
image of ``--lr-size`` (default 320x180: 1280x720 output at x4). Per network and tiling: seconds per
image (median of ``--reps`` after one warm-up), images/s, MACs of the pass (FlopCounterMode on the meta
device; a tiled pass counts every tile, overlap included), the achieved GMAC/s and the peak memory.
The big teachers are slow on a CPU at 720p: ``--lr-size`` shrinks the input, and the table says so.
Each run appends one record to ``benchmarks/results/inference.json`` and regenerates the inference table
of ``benchmarks/RESULTS.md``.
"""
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import gc  # noqa: E402
import os  # noqa: E402
from typing import Any, Dict, List, Tuple  # noqa: E402

import torch  # noqa: E402

from benchmarks.lib import report  # noqa: E402
from benchmarks.lib.methods import REPO, load_option_file, rel  # noqa: E402
from benchmarks.lib.timing import (PeakMemory, clock, clock_kind, machine_info, median,  # noqa: E402
                                   set_cpu_clock)

RESULTS_JSON = REPO / 'benchmarks' / 'results' / 'inference.json'
RESULTS_MD = REPO / 'benchmarks' / 'RESULTS.md'
SCALE = 4
OUT_720P = (720, 1280)  # H, W

#: name -> (option file whose network_g it is, fallback config when the file is absent)
NETS: Dict[str, Tuple[str, Dict[str, Any]]] = {
    'edsr_r16c64': ('options/train_edsr_r16c64_x4.yml', {'type': 'EDSR', 'num_feat': 64, 'num_block': 16}),
    'edsr_r32c256': ('options/train_edsr_r32c256_x4.yml',
                     {'type': 'EDSR', 'num_feat': 256, 'num_block': 32, 'res_scale': 0.1}),
    'rcan_10x6': ('options/train_rcan_10x6_x4.yml',
                  {'type': 'RCAN', 'num_feat': 64, 'num_group': 10, 'num_block': 6, 'squeeze_factor': 16}),
    'rcan_10x20': ('options/train_rcan_10x20_x4.yml',
                   {'type': 'RCAN', 'num_feat': 64, 'num_group': 10, 'num_block': 20, 'squeeze_factor': 16}),
    'swinir_s60': ('options/train_swinir_s60_x4.yml',
                   {'type': 'SwinIR', 'upscale': 4, 'img_size': 48, 'window_size': 8, 'img_range': 1.0,
                    'depths': [6, 6, 6, 6], 'embed_dim': 60, 'num_heads': [6, 6, 6, 6], 'mlp_ratio': 2,
                    'upsampler': 'pixelshuffle', 'resi_connection': '1conv'}),
    'swinir_m': ('options/train_swinir_m_x4.yml',
                 {'type': 'SwinIR', 'upscale': 4, 'img_size': 48, 'window_size': 8, 'img_range': 1.0,
                  'depths': [6] * 6, 'embed_dim': 180, 'num_heads': [6] * 6, 'mlp_ratio': 2,
                  'upsampler': 'pixelshuffle', 'resi_connection': '1conv'}),
    'carn_m': ('options/test/test_carn_m_x4.yml', {'type': 'CARN_M', 'upscale': 4}),
}


def parse_size(text: str) -> Tuple[int, int]:
    """'WxH' -> (H, W)."""
    w, h = (int(v) for v in text.lower().split('x'))
    return h, w


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--nets', nargs='+', default=list(NETS), choices=list(NETS))
    p.add_argument('--device', default='cpu', help='cpu | cuda | cuda:N')
    p.add_argument('--lr-size', default=None, help='LR input WxH (default 320x180: 1280x720 output at x4)')
    p.add_argument('--tiles', nargs='+', type=int, default=[0, 128], help='tile sizes in LR px (0: whole image)')
    p.add_argument('--tile-overlap', type=int, default=16, help="tools/test.py's default overlap")
    p.add_argument('--reps', type=int, default=3)
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--amp', choices=['bf16', 'fp16'], default=None)
    p.add_argument('--channels-last', action='store_true')
    p.add_argument('--threads', type=int, default=1, help='torch.set_num_threads on CPU')
    p.add_argument('--cpu-clock', choices=['process', 'wall'], default='process')
    p.add_argument('--json', default=str(RESULTS_JSON))
    p.add_argument('--md', default=str(RESULTS_MD), help='RESULTS.md to regenerate ("" to skip)')
    return p.parse_args(argv)


def network_cfg(name: str) -> Tuple[Dict[str, Any], str]:
    path, fallback = NETS[name]
    full = REPO / path
    if full.is_file():
        cfg = load_option_file(full).get('network_g')
        if cfg:
            return dict(cfg), path
    return dict(fallback), '(built-in config)'


def tile_shapes(lr_hw: Tuple[int, int], tile: int, overlap: int) -> List[Tuple[int, int]]:
    """The LR shape of every net call ``tiled_forward`` makes (found by running it on meta tensors)."""
    from ckdsr.models.inference import tiled_forward
    shapes: List[Tuple[int, int]] = []

    def fake(x):
        shapes.append(tuple(x.shape[-2:]))
        return torch.empty(x.shape[0], 3, x.shape[-2] * SCALE, x.shape[-1] * SCALE, device='meta')

    tiled_forward(fake, torch.empty(1, 3, *lr_hw, device='meta'), SCALE, tile, overlap)
    return shapes


def count_pass_macs(net, lr_hw: Tuple[int, int], tile: int, overlap: int) -> int:
    from ckdsr.utils.complexity import count_macs
    if not tile:
        return count_macs(net, lr_hw)
    cache: Dict[Tuple[int, int], int] = {}
    total = 0
    for shape in tile_shapes(lr_hw, tile, overlap):
        if shape not in cache:
            cache[shape] = count_macs(net, shape)
        total += cache[shape]
    return total


def bench_net(name: str, args, device: torch.device, lr_hw: Tuple[int, int]) -> List[Dict[str, Any]]:
    from ckdsr.engine.evaluation import make_forward
    from ckdsr.models.network_io import build_network
    from ckdsr.utils.complexity import count_params
    cfg, source = network_cfg(name)
    torch.manual_seed(0)
    net = build_network(cfg, SCALE).to(device).eval()
    if args.channels_last:
        net = net.to(memory_format=torch.channels_last)
    params = count_params(net)
    lr = torch.rand(1, 3, *lr_hw, device=device)
    if args.channels_last:
        lr = lr.contiguous(memory_format=torch.channels_last)
    amp = {'bf16': torch.bfloat16, 'fp16': torch.float16}.get(args.amp)
    rows = []
    for tile in args.tiles:
        forward = make_forward(net, SCALE, self_ensemble=False, tile=tile or None, tile_overlap=args.tile_overlap)

        def run():
            with torch.inference_mode():
                if amp is not None:
                    with torch.autocast(device.type, dtype=amp):
                        return forward(lr)
                return forward(lr)

        for _ in range(args.warmup):
            out = run()
        gc.collect()
        times = []
        with PeakMemory(device) as mem:
            for _ in range(args.reps):
                t0 = clock(device)
                out = run()
                times.append(clock(device) - t0)
        macs = count_pass_macs(net, lr_hw, tile, args.tile_overlap)
        row = {'net': name, 'cfg': cfg, 'source': source, 'params': params, 'lr_size': list(lr_hw),
               'out_size': list(out.shape[-2:]), 'full_720p': tuple(out.shape[-2:]) == OUT_720P,
               'tile': tile, 'tile_overlap': args.tile_overlap if tile else 0,
               'tiles': len(tile_shapes(lr_hw, tile, args.tile_overlap)) if tile else 1,
               'seconds': median(times), 'times_s': times, 'macs': macs, 'memory': mem.result()}
        rows.append(row)
        print(f"{name:13s} {lr_hw[1]}x{lr_hw[0]} tile {tile or '-':>4} ({row['tiles']} pass(es)): "
              f"{row['seconds']:.3f} s/img, {1 / row['seconds']:.3f} img/s, {macs / 1e9:.1f} GMAC, "
              f"{macs / row['seconds'] / 1e9:.1f} GMAC/s, peak {row['memory']['peak_mb']:.0f} MB "
              f"(+{row['memory']['increase_mb']:.0f})", flush=True)
    del net
    gc.collect()
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == 'cpu' and args.threads:
        torch.set_num_threads(args.threads)
    set_cpu_clock(args.cpu_clock)
    lr_hw = parse_size(args.lr_size) if args.lr_size else (OUT_720P[0] // SCALE, OUT_720P[1] // SCALE)
    record = {'tool': 'inference', 'device': device.type, 'amp': args.amp, 'channels_last': bool(args.channels_last),
              'reps': args.reps, 'clock': clock_kind(device), 'machine': machine_info(device),
              'path': 'ckdsr.engine.evaluation.make_forward under torch.inference_mode (tools/test.py)', 'rows': []}
    for name in args.nets:
        record['rows'] += bench_net(name, args, device, lr_hw)
    record['machine']['loadavg_end'] = [round(v, 2) for v in os.getloadavg()]
    report.append_json(Path(args.json), record)
    if args.md:
        report.write_results_md(Path(args.md), inference_json=Path(args.json))
        print(f'wrote {rel(Path(args.md))}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
