"""Image files <-> HWC uint8 RGB numpy arrays (the only place that knows cv2 is BGR).

Greyscale files come back with 3 identical channels and alpha is dropped, as
``cv2.IMREAD_COLOR`` does; 16-bit files are reduced to 8 bits the same way.
"""
import os
import struct
from pathlib import Path
from typing import Tuple, Union

import cv2
import numpy as np

PathLike = Union[str, os.PathLike]

#: extensions treated as images when listing a folder
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.ppm', '.webp')

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


class ImageReadError(ValueError):
    """A file (or byte string) that exists but cannot be decoded as an image."""


def is_image_file(name: PathLike) -> bool:
    return str(name).lower().endswith(IMAGE_EXTENSIONS)


def decode_image(data: Union[bytes, bytearray, memoryview, np.ndarray], name: str = '<bytes>') -> np.ndarray:
    """Decode encoded image bytes (PNG, JPEG, ...) to HWC uint8 RGB; ``name`` is used in errors."""
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    if buf.size == 0:
        raise ImageReadError(f'cannot decode image {name}: it is empty')
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None:
        raise ImageReadError(f'cannot decode image {name}: corrupt or not an image')
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_image(path: PathLike) -> np.ndarray:
    """Read an image file as HWC uint8 RGB; missing or corrupt files raise an error naming them."""
    path = os.fspath(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise FileNotFoundError(f'image file not found: {path}') from None
    except IsADirectoryError:
        raise ImageReadError(f'cannot read image {path}: it is a directory') from None
    return decode_image(data, name=path)


def encode_png(img: np.ndarray, compress_level: int = 1) -> bytes:
    """Encode an HWC uint8 RGB (or HW grey) image as PNG bytes, as BasicSR stores them in LMDB."""
    img = _check_uint8(img)
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else img
    ok, buf = cv2.imencode('.png', bgr, [cv2.IMWRITE_PNG_COMPRESSION, int(compress_level)])
    if not ok:
        raise RuntimeError(f'PNG encoding failed for an image of shape {img.shape}')
    return buf.tobytes()


def write_png(path: PathLike, img: np.ndarray, compress_level: int = 3) -> None:
    """Write ``img`` (HWC uint8 RGB) as a PNG; creates parent folders; atomic (temp + rename)."""
    path = Path(path)
    if path.suffix.lower() != '.png':
        raise ValueError(f'write_png writes .png files only, got {path}')
    data = encode_png(img, compress_level)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.tmp-{os.getpid()}')
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_image_size(path: PathLike) -> Tuple[int, int]:
    """``(height, width)`` of an image; PNG headers are parsed without decoding the pixels."""
    path = os.fspath(path)
    try:
        with open(path, 'rb') as f:
            head = f.read(24)
    except FileNotFoundError:
        raise FileNotFoundError(f'image file not found: {path}') from None
    if head[:8] == _PNG_SIGNATURE and head[12:16] == b'IHDR':
        width, height = struct.unpack('>II', head[16:24])
        return int(height), int(width)
    h, w = read_image(path).shape[:2]
    return h, w


def _check_uint8(img: np.ndarray) -> np.ndarray:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
        raise TypeError(f'expected a uint8 numpy image, got {getattr(img, "dtype", type(img))}')
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise ValueError(f'expected an HW or HWC (C=3) image, got shape {img.shape}')
    return img
