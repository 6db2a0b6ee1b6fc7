"""Small synthetic deblurring / deraining sets in the real GoPro / Rain13K folder layouts.

No GoPro or Rain13K here: sharp crops of the shipped photos (``../shared/datasets``) are degraded
with a linear motion-blur kernel (GoPro stand-in) or additive rain streaks (Rain13K stand-in):
sparse bright drops smeared along one direction by the same line kernel. Deterministic per seed.
"""
from pathlib import Path
from typing import List, Sequence

import cv2
import numpy as np

from ckdsr.data.image_io import read_image, write_png


def motion_kernel(length: int, angle_deg: float) -> np.ndarray:
    """A normalised ``length`` x ``length`` line kernel through the centre at ``angle_deg``."""
    k = np.zeros((length, length), np.float32)
    c = (length - 1) / 2
    t = np.deg2rad(angle_deg)
    for s in np.linspace(-c, c, 4 * length):
        k[int(round(c + s * np.sin(t))), int(round(c + s * np.cos(t)))] = 1.0
    return k / k.sum()


def motion_blur(img: np.ndarray, length: int, angle_deg: float) -> np.ndarray:
    out = cv2.filter2D(img.astype(np.float32), -1, motion_kernel(length, angle_deg), borderType=cv2.BORDER_REFLECT)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def rain_streaks(img: np.ndarray, rng: np.random.Generator, density: float = 0.01, length: int = 9,
                 angle_deg: float = 100.0, strength: float = 200.0) -> np.ndarray:
    drops = (rng.random(img.shape[:2]) < density).astype(np.float32) * strength
    streaks = cv2.filter2D(drops, -1, motion_kernel(length, angle_deg)) * length / 2
    return np.clip(img.astype(np.float32) + streaks[..., None], 0, 255).round().astype(np.uint8)


def _crops(sources: Sequence[Path], size: int, n: int, rng: np.random.Generator) -> List[np.ndarray]:
    out = []
    for i in range(n):
        img = read_image(sources[i % len(sources)])
        h, w = img.shape[:2]
        y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
        out.append(np.ascontiguousarray(img[y:y + size, x:x + size]))
    return out


def make_gopro(root: Path, sources: Sequence[Path], sequences: int = 2, per_seq: int = 2, size: int = 32,
               seed: int = 0, blur_range: Sequence[int] = (3, 8)) -> Path:
    """``root/<GOPRxxxx>/{blur,sharp}/00000k.png`` (GoPro's train|test layout), kernel lengths drawn from
    ``blur_range`` (half-open); returns ``root``."""
    rng = np.random.default_rng(seed)
    crops = _crops(sources, size, sequences * per_seq, rng)
    for s in range(sequences):
        seq = root / f'GOPR03{72 + s}_07_0{s}'
        for d in ('blur', 'sharp'):
            (seq / d).mkdir(parents=True, exist_ok=True)
        for k in range(per_seq):
            sharp = crops[s * per_seq + k]
            blur = motion_blur(sharp, int(rng.integers(*blur_range)), float(rng.uniform(0, 180)))
            name = f'{k + 1:06d}.png'  # the same names recur in every sequence, as in GoPro
            write_png(seq / 'sharp' / name, sharp)
            write_png(seq / 'blur' / name, blur)
    return root


def make_rain(root: Path, sources: Sequence[Path], n: int = 4, size: int = 32, seed: int = 0) -> Path:
    """``root/{input,target}/<k>.png`` (Rain13K / Rain100H layout); returns ``root``."""
    rng = np.random.default_rng(seed)
    for d in ('input', 'target'):
        (root / d).mkdir(parents=True, exist_ok=True)
    for k, clean in enumerate(_crops(sources, size, n, rng), 1):
        write_png(root / 'target' / f'{k}.png', clean)
        write_png(root / 'input' / f'{k}.png', rain_streaks(clean, rng, angle_deg=float(rng.uniform(70, 110))))
    return root


def photo_sources(shared_dir: Path) -> List[Path]:
    """Shipped photos large enough for the crops (Set5 / Set14 HR)."""
    bench = shared_dir / 'datasets' / 'benchmark'
    return sorted((bench / 'Set5' / 'HR').glob('*.png')) + sorted((bench / 'Set14' / 'HR').glob('*.png'))
