"""Storage backends: where image bytes come from. Each ``get(key)`` returns an HWC uint8 RGB array.

``io_backend: {type: disk | lmdb | memory, ...}`` in an option file picks one per data root:

- ``disk``: a folder of image files; keys are file names relative to the folder.
- ``lmdb``: a ``.lmdb`` folder (see :mod:`ckdsr.data.lmdb_format`), PNG or raw values; checked for
  damage at construction (:mod:`ckdsr.data.lmdb_check`: truncated ``data.mdb``, listed keys missing),
  then opened lazily in each process (so forked DataLoader workers get their own handle),
  read-only, ``lock=False``.
- ``memory``: a folder or an LMDB decoded to uint8 once, at construction (forked workers
  share the pages copy-on-write).

Treat returned arrays as read-only: the lmdb and memory backends hand out read-only arrays.
"""
import inspect
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Tuple

import numpy as np

from ckdsr.data.image_io import decode_image, is_image_file, read_image
from ckdsr.data.lmdb_check import LmdbDamagedError, check_lmdb
from ckdsr.data.lmdb_format import FORMAT_KEY, RAW, RAW_MARKER, read_meta_info
from ckdsr.utils.registry import Registry
from ckdsr.utils.suggest import did_you_mean

STORAGE_BACKENDS = Registry('storage backend')


class StorageBackend:
    """Base class: ``keys()``, ``get(key)``, ``path_of(key)``, ``key in backend``."""

    def __init__(self, root: str):
        self.root = os.fspath(root)

    def keys(self) -> List[str]:
        raise NotImplementedError

    def get(self, key: str) -> np.ndarray:
        raise NotImplementedError

    def path_of(self, key: str) -> str:
        """A human-readable location of ``key`` (used as ``gt_path`` / ``lq_path``)."""
        return os.path.join(self.root, key)

    def __contains__(self, key: str) -> bool:
        return key in set(self.keys())

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.root!r})'


def is_lmdb_dir(path: os.PathLike) -> bool:
    return (Path(path) / 'data.mdb').is_file()


@STORAGE_BACKENDS.register(name='disk')
class DiskBackend(StorageBackend):
    """Image files in one folder (not recursive)."""

    def __init__(self, root: str):
        super().__init__(root)
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f'image folder not found: {self.root}')
        self._keys = None

    def keys(self) -> List[str]:
        if self._keys is None:
            self._keys = sorted(e.name for e in os.scandir(self.root)
                                if e.is_file() and is_image_file(e.name))
        return self._keys

    def __contains__(self, key: str) -> bool:
        return os.path.isfile(os.path.join(self.root, key))

    def get(self, key: str) -> np.ndarray:
        return read_image(os.path.join(self.root, key))


_OPEN_ENVS: Dict[Tuple[int, str], Any] = {}


def open_lmdb_readonly(root: str, readahead: bool = False):
    """The process's read-only handle on an LMDB (py-lmdb refuses to open one twice per process).

    Opened with BasicSR's flags (``readonly``, ``lock=False``, ``meminit=False``); never closed.
    """
    key = (os.getpid(), os.path.realpath(root))
    env = _OPEN_ENVS.get(key)
    if env is None:
        import lmdb

        env = lmdb.open(root, readonly=True, lock=False, readahead=readahead, meminit=False,
                        max_readers=2048)
        _OPEN_ENVS[key] = env
    return env


@STORAGE_BACKENDS.register(name='lmdb')
class LmdbBackend(StorageBackend):
    """A BasicSR-style LMDB (PNG values) or a raw-uint8 one; the format comes from meta_info."""

    def __init__(self, root: str, readahead: bool = False):
        super().__init__(root)
        if not is_lmdb_dir(self.root):
            raise FileNotFoundError(f'not an LMDB folder (no data.mdb): {self.root}')
        self.readahead = readahead
        self.meta = read_meta_info(self.root)
        self._env = None  # this backend's handle: opened at the first read, in each process
        self._pid = None
        self._check()

    def _check(self) -> None:
        """Fail now, with one line, on a truncated ``data.mdb`` or a listed key the database lacks
        (:mod:`ckdsr.data.lmdb_check`); nothing but LMDB's meta page and B-tree is read.

        The check uses the process's open handle if there is one, else a handle of its own that it
        closes again: py-lmdb refuses to open an environment that is already open in the process,
        and a forked DataLoader worker inherits the parent's list of open environments, so a
        handle left open here would make every worker's first read fail.
        """
        import lmdb

        env = _OPEN_ENVS.get((os.getpid(), os.path.realpath(self.root)))
        own = env is None
        if own:
            try:
                env = lmdb.open(self.root, readonly=True, lock=False, readahead=False, meminit=False)
            except lmdb.Error as err:
                size = os.path.getsize(os.path.join(self.root, 'data.mdb'))
                raise LmdbDamagedError(f'LMDB {self.root} is damaged: data.mdb ({size} bytes) cannot be opened '
                                       f'({type(err).__name__}: {str(err).split(": ", 1)[-1]})',
                                       self.root) from None
        try:
            check_lmdb(env, self.root, self.meta)
        finally:
            if own:
                env.close()

    def keys(self) -> List[str]:
        return list(self.meta)

    def __contains__(self, key: str) -> bool:
        return key in self.meta

    def path_of(self, key: str) -> str:
        return f'{self.root}:{key}'

    def _open(self):
        if self._env is None or self._pid != os.getpid():
            self._env = open_lmdb_readonly(self.root, self.readahead)
            self._pid = os.getpid()
            self._check_marker()
        return self._env

    def _check_marker(self) -> None:
        with self._env.begin(write=False) as txn:
            marker = txn.get(FORMAT_KEY)
        if marker is None:
            return  # BasicSR databases carry no marker; meta_info alone decides
        if marker != RAW_MARKER:
            raise ValueError(f'{self.root}: unknown format marker {marker!r}; expected {RAW_MARKER!r}')
        if any(e.fmt != RAW for e in self.meta.values()):
            raise ValueError(f'{self.root} holds raw values (format marker) but its meta_info.txt '
                             "lists PNG compression levels; expected 'raw' in the last column")

    def get(self, key: str) -> np.ndarray:
        entry = self.meta.get(key)
        if entry is None:
            raise KeyError(f'key {key!r} is not listed in {os.path.join(self.root, "meta_info.txt")}'
                           f'{did_you_mean(key, self.meta)}')
        with self._open().begin(write=False) as txn:
            value = txn.get(key.encode('ascii'))
        if value is None:
            raise KeyError(f'key {key!r} is listed in meta_info.txt but missing from the LMDB {self.root}')
        if entry.fmt == RAW:
            h, w, c = entry.shape
            if len(value) != h * w * c:
                raise ValueError(f'{self.path_of(key)}: raw value has {len(value)} bytes, '
                                 f'meta_info says ({h},{w},{c}) = {h * w * c}')
            return np.frombuffer(value, dtype=np.uint8).reshape(h, w, c)
        img = decode_image(value, name=self.path_of(key))
        img.setflags(write=False)
        return img

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        state['_env'] = None  # each process opens its own handle
        state['_pid'] = None
        return state


@STORAGE_BACKENDS.register(name='memory')
class MemoryBackend(StorageBackend):
    """Every image of a folder or an LMDB, decoded once to uint8 and kept in RAM."""

    def __init__(self, root: str):
        super().__init__(root)
        source = LmdbBackend(root) if is_lmdb_dir(root) else DiskBackend(root)
        self._source_kind = type(source).__name__
        self._images: Dict[str, np.ndarray] = {}
        for key in source.keys():
            img = np.array(source.get(key))  # own, contiguous copy
            img.setflags(write=False)
            self._images[key] = img
        self._path_of = source.path_of

    @property
    def nbytes(self) -> int:
        return sum(img.nbytes for img in self._images.values())

    def keys(self) -> List[str]:
        return list(self._images)

    def __contains__(self, key: str) -> bool:
        return key in self._images

    def path_of(self, key: str) -> str:
        return self._path_of(key)

    def get(self, key: str) -> np.ndarray:
        try:
            return self._images[key]
        except KeyError:
            raise KeyError(f'key {key!r} not found in the in-memory copy of {self.root}'
                           f'{did_you_mean(key, self._images)}') from None


def build_backend(io_backend: Mapping[str, Any], root: str) -> StorageBackend:
    """Build the backend named by ``io_backend['type']`` for ``root``; other keys are its options."""
    if 'type' not in io_backend:
        raise KeyError(f"io_backend needs a 'type' key (one of {', '.join(STORAGE_BACKENDS)}), "
                       f'got {dict(io_backend)}')
    cls = STORAGE_BACKENDS.get(io_backend['type'])
    kwargs = {k: v for k, v in io_backend.items() if k != 'type'}
    params = [p for p in inspect.signature(cls.__init__).parameters if p not in ('self', 'root')]
    for k in kwargs:
        if k not in params:
            raise KeyError(f"io_backend type {io_backend['type']!r} has no option {k!r}"
                           f"{did_you_mean(k, params)}; valid: {params}")
    return cls(root, **kwargs)
