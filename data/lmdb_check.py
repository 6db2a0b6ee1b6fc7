"""Damage checks run when an LMDB is opened, so a broken database fails before training starts.

Two failures used to surface late (issue 16, point 9): a truncated ``data.mdb`` killed the process
with SIGBUS (exit 135, no message) at the first read of a page past the end of the file, and a key
listed in ``meta_info.txt`` but absent from the database crashed a run only when the sampler
reached it. :func:`check_lmdb` finds both at open, before any value is read:

1. **size**: LMDB maps ``data.mdb`` into memory and records, in its meta page, the last page
   it has written (``env.info()['last_pgno']``, pages of ``env.stat()['psize']`` bytes). A file
   shorter than ``(last_pgno + 1) * psize`` bytes is truncated (an interrupted copy or download):
   a read of a missing page would be a SIGBUS, so the check fails first. The file may be longer
   (preallocated or grown space), never shorter.
2. **keys**: one cursor pass over the database (keys in B-tree order; values are not read, only
   their lengths, which LMDB stores in the leaf nodes) collects every key; each ``meta_info.txt``
   key must be among them, and a raw value must have the ``h * w * c`` bytes its line states.
   32,208 keys (DIV2K's sub-image count) take 20-90 ms on the shared 2-core machine (keys only,
   as for BasicSR's PNG databases: best 22-36 ms), whatever the size of the values
   (``benchmarks/results/lmdb_check.md``).

Both failures raise :class:`LmdbDamagedError` with one line naming the database and the first bad
key (in ``meta_info.txt`` order) or the size mismatch.
"""
import os
from typing import Any, Mapping, Optional

from ckdsr.data.lmdb_format import META_INFO, RAW


class LmdbDamagedError(ValueError):
    """An LMDB whose ``data.mdb`` is truncated or which lacks keys its ``meta_info.txt`` lists;
    ``root`` is the database folder (the dataset builder adds the option key naming it)."""

    def __init__(self, message: str, root: str = ''):
        super().__init__(message)
        self.root = root


def check_size(env: Any, root: str) -> None:
    """``data.mdb`` holds at least every page the environment records; else :class:`LmdbDamagedError`."""
    path = os.path.join(root, 'data.mdb')
    size = os.path.getsize(path)
    pages = env.info()['last_pgno'] + 1
    psize = env.stat()['psize']
    need = pages * psize
    if size < need:
        raise LmdbDamagedError(f'LMDB {root} is damaged: data.mdb has {size} bytes but the environment records '
                               f'{pages} pages of {psize} bytes = {need} bytes (truncated copy?); '
                               'copy or rebuild the database', root)


def check_keys(env: Any, root: str, meta: Mapping[str, Any]) -> None:
    """Every key of ``meta`` (``key -> MetaEntry``) is in the database, with the right size when raw.

    One cursor pass: keys only for PNG databases; for raw ones in ``buffers`` mode, where values are
    only measured (a memoryview over the map), never read.
    """
    with_raw = any(entry.fmt == RAW for entry in meta.values())
    with env.begin(write=False, buffers=with_raw) as txn:
        if with_raw:  # value lengths are needed: memoryviews over the map, never copied
            lengths = {bytes(key): len(value) for key, value in txn.cursor()}
        else:  # PNG values: keys only
            lengths = dict.fromkeys(txn.cursor().iternext(keys=True, values=False), 0)
    missing, first_bad = 0, None
    for lineno, (key, entry) in enumerate(meta.items(), 1):
        n = lengths.get(key.encode('ascii'))
        if n is None:
            missing += 1
            if first_bad is None:
                first_bad = (lineno, key)
        elif entry.fmt == RAW:
            h, w, c = entry.shape
            if n != h * w * c:
                raise LmdbDamagedError(f'LMDB {root} is damaged: key {key!r} (entry {lineno} of {META_INFO}) has a '
                                       f'raw value of {n} bytes, meta_info says ({h},{w},{c}) = {h * w * c}', root)
    if first_bad is not None:
        lineno, key = first_bad
        raise LmdbDamagedError(f'LMDB {root} is damaged: key {key!r} (entry {lineno} of {META_INFO}) is missing from '
                               f'the database ({missing} of {len(meta)} listed keys missing); rebuild it or use '
                               f'the {META_INFO} written with it', root)


def check_lmdb(env: Any, root: str, meta: Optional[Mapping[str, Any]]) -> None:
    """Both checks: the size first (a truncated file must not be read), then the keys."""
    check_size(env, root)
    if meta:
        check_keys(env, root, meta)
