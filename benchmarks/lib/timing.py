"""Clocks, peak memory and the machine's measured peak FLOP/s.

CUDA timings synchronise before reading the clock (``torch.cuda.synchronize``); peak memory on CUDA
is ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``. On CPU, peak memory is the
process's peak resident set size (the kernel's ``VmHWM``, reset when measuring starts), reported as
the peak and as the increase over the value when measuring started.
"""
import os
import platform
import statistics
import subprocess
import threading
import time
from typing import Any, Callable, Dict, List, Optional

import torch

from benchmarks.lib.methods import REPO


def sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


#: the CPU clock: 'process' (CPU seconds used by this process) or 'wall'
_CPU_CLOCK = {'kind': 'process'}


def set_cpu_clock(kind: str) -> None:
    """'process': ``time.process_time`` -- the CPU time this process used, which on a shared,
    oversubscribed machine leaves out the time other processes held the cores (wall time there
    mostly measures the load); 'wall': ``time.perf_counter``."""
    if kind not in ('process', 'wall'):
        raise ValueError(f"cpu clock must be 'process' or 'wall', got {kind!r}")
    _CPU_CLOCK['kind'] = kind


def clock_kind(device: torch.device) -> str:
    if device.type == 'cuda':
        return 'wall (torch.cuda.synchronize before each reading)'
    return 'process CPU time (time.process_time)' if _CPU_CLOCK['kind'] == 'process' else 'wall (time.perf_counter)'


def clock(device: torch.device) -> float:
    """Seconds, after the device has finished the queued work (see :func:`set_cpu_clock` for CPU)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        return time.perf_counter()
    return time.process_time() if _CPU_CLOCK['kind'] == 'process' else time.perf_counter()


def median(xs: List[float]) -> float:
    return float(statistics.median(xs)) if xs else float('nan')


def quartiles(xs: List[float]) -> List[float]:
    if len(xs) < 2:
        return [xs[0], xs[0]] if xs else [float('nan')] * 2
    q = statistics.quantiles(xs, n=4, method='inclusive')
    return [float(q[0]), float(q[2])]


def time_call(fn: Callable[[], Any], device: torch.device, reps: int, warmup: int = 1) -> List[float]:
    """Wall seconds of ``reps`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = clock(device)
        fn()
        times.append(clock(device) - t0)
    return times


# ----------------------------------------------------------------------------- memory
def rss_bytes() -> int:
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    except (OSError, ValueError):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _status_kb(field: str) -> Optional[int]:
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_rss_peak() -> bool:
    """Reset the kernel's peak-RSS mark of this process (``VmHWM``; Linux >= 4.0)."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


class PeakMemory:
    """``with PeakMemory(device) as mem: ...`` then ``mem.result()``: peak bytes while inside.

    CUDA: ``max_memory_allocated``. CPU: the kernel's peak resident set size (``VmHWM``), reset on
    entry through ``/proc/self/clear_refs`` -- no sampling thread, which would steal the GIL from
    the timed code; where that reset is not possible, a thread samples the RSS every ``interval``.
    """

    def __init__(self, device: torch.device, interval: float = 0.002):
        self.device, self.interval = device, interval
        self.peak = self.start = 0
        self.method = ''
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __enter__(self):
        if self.device.type == 'cuda':
            sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
            self.method = 'cuda max_memory_allocated'
        elif reset_rss_peak() and _status_kb('VmHWM') is not None:
            self.start = rss_bytes()
            self.method = 'process peak RSS (VmHWM, reset on entry)'
        else:
            self.start = self.peak = rss_bytes()
            self.method = f'process RSS sampled every {self.interval * 1e3:.0f} ms'
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)

    def __exit__(self, *exc):
        if self.device.type == 'cuda':
            sync(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        elif self._thread is None:
            self.peak = max(_status_kb('VmHWM') * 1024, rss_bytes())
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, rss_bytes())
        return False

    def result(self) -> Dict[str, Any]:
        return {'kind': self.method, 'peak_mb': self.peak / 2 ** 20, 'start_mb': self.start / 2 ** 20,
                'increase_mb': (self.peak - self.start) / 2 ** 20}


# ----------------------------------------------------------------------------- peak FLOP/s
def measure_peak(device: torch.device, dtype: torch.dtype = torch.float32, quick: bool = False,
                 reps: int = 5) -> Dict[str, Any]:
    """Achieved FLOP/s of a large matmul and a large 3x3 convolution on ``device`` (the machine's
    practical peak for the kind of work an SR step does), measured now, in ``dtype``."""
    cuda = device.type == 'cuda'
    n = (8192 if cuda else 2048) if not quick else 512
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    mm = time_call(lambda: a @ b, device, reps, warmup=2)
    mm_flops = 2.0 * n ** 3
    batch, ch, hw = ((64, 128, 96) if cuda else (8, 64, 64)) if not quick else (2, 32, 32)
    x = torch.randn(batch, ch, hw, hw, device=device, dtype=dtype)
    conv = torch.nn.Conv2d(ch, ch, 3, padding=1, bias=False).to(device=device, dtype=dtype)
    if cuda:
        x = x.contiguous(memory_format=torch.channels_last)
        conv = conv.to(memory_format=torch.channels_last)
    with torch.no_grad():
        cv = time_call(lambda: conv(x), device, reps, warmup=2)
    conv_flops = 2.0 * batch * ch * ch * 9 * hw * hw
    out = {'dtype': str(dtype).replace('torch.', ''),
           'matmul': {'shape': [n, n, n], 'tflops': mm_flops / median(mm) / 1e12},
           'conv3x3': {'shape': [batch, ch, hw, hw], 'tflops': conv_flops / median(cv) / 1e12},
           'tf32': bool(cuda and torch.backends.cuda.matmul.allow_tf32)}
    out['peak_tflops'] = max(out['matmul']['tflops'], out['conv3x3']['tflops'])
    return out


# ----------------------------------------------------------------------------- environment
def git_commit() -> Optional[str]:
    try:
        sha = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=REPO, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return f'{sha}{"+dirty" if dirty else ""}' if sha else None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info(device: torch.device) -> Dict[str, Any]:
    info = {'platform': platform.platform(), 'python': platform.python_version(), 'torch': torch.__version__,
            'cpu_count': os.cpu_count(), 'torch_threads': torch.get_num_threads(),
            'loadavg': [round(v, 2) for v in os.getloadavg()] if hasattr(os, 'getloadavg') else None,
            'device': str(device), 'git': git_commit(),
            'time': time.strftime('%Y-%m-%dT%H:%M:%S%z')}
    if device.type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(device)
        info['cuda'] = torch.version.cuda
    return info
