"""How long the damage check at LMDB open takes (:mod:`ckdsr.data.lmdb_check`, issue 16 point 9).

    python benchmarks/lmdb_check.py [--keys 32208] [--repeats 7] [--out benchmarks/results/lmdb_check.md]

Builds, in a temporary folder, an LMDB with DIV2K's sub-image count (800 images x 40.26 tiles =
32,208 keys named like BasicSR's ``0001_s001``) and its ``meta_info.txt``, twice: once with small
values (64 bytes, all in leaf pages) and once with 3 KiB values (each in its own overflow page,
as real 480x480 tiles are), then times, on the warm page cache:

* ``check_size`` -- ``data.mdb`` size against ``last_pgno * psize`` (two stat-like calls);
* ``check_keys`` -- the one cursor pass over the keys plus the meta_info comparison;
* the whole ``LmdbBackend(...)`` construction (meta_info parse, open, both checks, close).

The cursor pass reads keys and value *lengths* only (py-lmdb ``buffers=True``), so its cost does
not grow with the size of the values: the second database shows it.
"""
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import lmdb  # noqa: E402

from ckdsr.data.file_client import LmdbBackend, open_lmdb_readonly  # noqa: E402
from ckdsr.data.lmdb_check import check_keys, check_size  # noqa: E402
from ckdsr.data.lmdb_format import RAW, MetaEntry, read_meta_info, write_meta_info  # noqa: E402

DIV2K_KEYS = 32208  # DIV2K train HR: 800 images cut into 480x480 sub-images with step 240


def key_names(n: int):
    """``0001_s001`` ... : 40 or 41 sub-images per image, as BasicSR names them."""
    out, img = [], 0
    while len(out) < n:
        img += 1
        per = 41 if img % 4 else 40
        out.extend(f'{img:04d}_s{s:03d}' for s in range(1, per + 1))
    return out[:n]


def build(root: Path, keys, value_bytes: int) -> Path:
    """An LMDB of ``len(keys)`` raw values of ``value_bytes`` bytes, with its meta_info.txt."""
    root.mkdir(parents=True)
    value = bytes(range(256)) * (value_bytes // 256) + bytes(value_bytes % 256)
    env = lmdb.open(str(root), map_size=len(keys) * (value_bytes + 4096) * 2 + (1 << 24))
    with env.begin(write=True) as txn:
        for k in keys:
            txn.put(k.encode('ascii'), value)
    env.close()
    write_meta_info(root, (MetaEntry(k, (1, value_bytes // 3, 3), RAW) for k in keys))
    return root


def timed(fn, repeats: int):
    fn()  # warm: page cache, first-call imports
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--keys', type=int, default=DIV2K_KEYS)
    p.add_argument('--repeats', type=int, default=7)
    p.add_argument('--out', default=str(Path(__file__).resolve().parent / 'results' / 'lmdb_check.md'))
    args = p.parse_args(argv)
    keys = key_names(args.keys)
    rows = []
    with tempfile.TemporaryDirectory(prefix='lmdb_check_') as tmp:
        for label, nbytes in (('64 B values (leaf pages)', 63), ('3 KiB values (overflow pages)', 3072)):
            root = build(Path(tmp) / f'db_{nbytes}.lmdb', keys, nbytes)
            size_mb = (root / 'data.mdb').stat().st_size / 2 ** 20
            meta = read_meta_info(root)
            # first, as a run opens it: LmdbBackend opens the environment for the check and closes it
            t_open = timed(lambda: LmdbBackend(str(root)), args.repeats)
            env = open_lmdb_readonly(str(root))
            stat = env.stat()
            pages = (stat['leaf_pages'] + stat['branch_pages']) * stat['psize'] / 2 ** 20
            t_size = timed(lambda: check_size(env, str(root)), args.repeats)
            t_keys = timed(lambda: check_keys(env, str(root), meta), args.repeats)
            rows.append((f'{label}, raw meta (key + value length)', size_mb, pages, t_size, t_keys, t_open))
            # BasicSR's PNG databases: the same pass, keys only
            png_meta = {k: MetaEntry(k, e.shape, '1') for k, e in meta.items()}
            t_png = timed(lambda: check_keys(env, str(root), png_meta), args.repeats)
            rows.append((f'{label}, PNG meta (keys only)', size_mb, pages, t_size, t_png, None))
            print(f'{label}: data.mdb {size_mb:.1f} MiB, check_size {t_size[0] * 1e3:.3f} ms, '
                  f'check_keys {t_keys[0] * 1e3:.1f} ms (keys only {t_png[0] * 1e3:.1f} ms), '
                  f'LmdbBackend() {t_open[0] * 1e3:.1f} ms')
    lines = [
        '# LMDB damage check at open',
        '',
        f'`python benchmarks/lmdb_check.py --keys {args.keys} --repeats {args.repeats}`: a synthetic LMDB of '
        f'{args.keys:,} keys (DIV2K\'s 480x480 sub-image count, BasicSR key names) and its meta_info.txt, '
        'built in a temporary folder; median (and best) of the repeats after one warm-up call, data in the '
        'page cache, one process.',
        f'Machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end '
        f'(other jobs running), Python {platform.python_version()}, py-lmdb {lmdb.__version__} '
        f'(LMDB {".".join(map(str, lmdb.version()))}).',
        '',
        '| database | data.mdb | B-tree pages | check_size | check_keys (one cursor pass) | LmdbBackend() total |',
        '| --- | ---: | ---: | ---: | ---: | ---: |',
    ]
    for label, size_mb, pages, (s_med, s_min), (k_med, k_min), total in rows:
        total_txt = f'{total[0] * 1e3:.1f} ms ({total[1] * 1e3:.1f})' if total else '-'
        lines.append(f'| {label} | {size_mb:.1f} MiB | {pages:.2f} MiB | {s_med * 1e3:.3f} ms ({s_min * 1e3:.3f}) | '
                     f'{k_med * 1e3:.1f} ms ({k_min * 1e3:.1f}) | {total_txt} |')
    lines += [
        '',
        '`check_keys` reads keys and value lengths, never values, so the 3 KiB database (one overflow page '
        'per value, like real PNG tiles) costs about what the small one does. `LmdbBackend()` adds parsing '
        'meta_info.txt (one regex per line; it was already there before the check). On a cold page cache the pass '
        'also reads the B-tree pages (column "B-tree pages": leaf + branch pages) from disk; overflow pages, '
        'where large values live, are never read. A PNG database (BasicSR\'s) takes the keys-only pass.',
        'The machine is shared: with a load average above the core count, the median can be twice the best '
        'time; the best time is the better estimate of the cost itself.',
        '',
    ]
    Path(args.out).write_text('\n'.join(lines))
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
