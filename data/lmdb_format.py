"""The on-disk LMDB layout shared by the writer (``ckdsr.data.lmdb_writer``) and the reader backend.

A database is a folder ``<name>.lmdb`` holding LMDB's ``data.mdb`` / ``lock.mdb`` plus
``meta_info.txt`` with one line per image, BasicSR's format::

    0001_s001.png (480,480,3) 1        # PNG value, written with compression level 1
    0001_s001 (480,480,3) raw          # raw value: h*w*c bytes of uint8 RGB, row-major HWC

The LMDB key is the name without its image extension (BasicSR: ``line.split('.')[0]``).
PNG values are what BasicSR writes (BGR-encoded PNG, decoded back to RGB here), so each side
reads the other's PNG databases. Raw databases also hold the marker key :data:`FORMAT_KEY`
(never listed in ``meta_info.txt``, so BasicSR's key list is unaffected).
"""
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Tuple

from ckdsr.data.image_io import IMAGE_EXTENSIONS

META_INFO = 'meta_info.txt'
#: marker key written into raw-format databases; its value is :data:`RAW_MARKER`
FORMAT_KEY = b'__ckdsr_format__'
RAW_MARKER = b'raw-uint8-hwc-rgb/1'
RAW = 'raw'
PNG = 'png'
FORMATS = (PNG, RAW)

_LINE = re.compile(r'^(\S+)\s+\((\d+),\s*(\d+),\s*(\d+)\)\s+(\S+)\s*$')


@dataclass(frozen=True)
class MetaEntry:
    """One ``meta_info.txt`` line."""
    key: str
    shape: Tuple[int, int, int]
    compression: str  # PNG compression level (a digit string) or 'raw'

    @property
    def fmt(self) -> str:
        return RAW if self.compression == RAW else PNG

    def line(self) -> str:
        name = self.key if self.fmt == RAW else f'{self.key}.png'
        h, w, c = self.shape
        return f'{name} ({h},{w},{c}) {self.compression}'


def key_from_name(name: str) -> str:
    """``'0001_s001.png'`` -> ``'0001_s001'``; names without an image extension are kept."""
    stem, ext = os.path.splitext(name)
    return stem if ext.lower() in IMAGE_EXTENSIONS else name


def parse_meta_line(line: str, where: str = META_INFO) -> MetaEntry:
    m = _LINE.match(line.strip())
    if not m:
        raise ValueError(f'{where}: cannot parse meta_info line {line.strip()!r} '
                         "(expected 'name (h,w,c) compression')")
    name, h, w, c, comp = m.groups()
    if comp != RAW and not comp.isdigit():
        raise ValueError(f"{where}: compression field must be a PNG level or 'raw', got {comp!r}")
    return MetaEntry(key_from_name(name), (int(h), int(w), int(c)), comp)


def read_meta_info(lmdb_path: os.PathLike) -> Dict[str, MetaEntry]:
    """``key -> MetaEntry`` in file order; a missing file or bad line names the database."""
    path = Path(lmdb_path) / META_INFO
    if not path.is_file():
        raise FileNotFoundError(f'{path} not found: every LMDB needs a meta_info.txt '
                                "listing 'name (h,w,c) compression' per image")
    entries: Dict[str, MetaEntry] = {}
    with open(path, 'r', encoding='utf-8') as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            entry = parse_meta_line(line, f'{path}:{lineno}')
            if entry.key in entries:
                raise ValueError(f'{path}:{lineno}: duplicate key {entry.key!r}')
            entries[entry.key] = entry
    if not entries:
        raise ValueError(f'{path} lists no images')
    return entries


def write_meta_info(lmdb_path: os.PathLike, entries: Iterable[MetaEntry]) -> None:
    with open(Path(lmdb_path) / META_INFO, 'w', encoding='utf-8') as f:
        for e in entries:
            f.write(e.line() + '\n')
