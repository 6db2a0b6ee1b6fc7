"""Scale-1 paired restoration data: GoPro deblurring and deraining (Rain13K and its test sets).

Folder layouts (as distributed by the NAFNet / Restormer data scripts):

- ``GoProDataset``: ``<dataroot>/<sequence>/blur/<name>`` paired with ``<dataroot>/<sequence>/sharp/<name>``
  (``dataroot`` = ``GoPro/train`` or ``GoPro/test``).
- ``DerainDataset``: ``<dataroot>/input/<name>`` paired with ``<dataroot>/target/<name>`` (Rain13K, Test100,
  Rain100H, Rain100L, Test2800, Test1200).

With ``io_backend: {type: lmdb}`` both read ``<dataroot>/<lq dir>.lmdb`` and ``<dataroot>/<gt dir>.lmdb``
(``blur``/``sharp``, ``input``/``target``) as written by ``tools/create_lmdb.py --task gopro|rain``
(:mod:`ckdsr.data.restoration_lmdb`); the two databases must hold the same keys.

Training items are aligned ``gt_size`` crops (the shared transforms at scale 1) with flips /
rotations; test items are whole images. A key may carry its own patch size (``(index, seed, size)``
from :mod:`ckdsr.data.progressive`'s batch schedule), which then replaces ``gt_size``.
"""
import os
import random
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from torch.utils.data import Dataset

from ckdsr.data.file_client import build_backend
from ckdsr.data.image_io import is_image_file
from ckdsr.data.transforms import augment, check_pair, paired_random_crop, to_tensor
from ckdsr.utils.registry import DATASET_REGISTRY

#: ``(index, seed, patch size)``: a seeded key with the progressive schedule's patch size
RestorationKey = Union[int, Tuple[int, int], Tuple[int, int, int]]


def unpack_restoration_key(key: RestorationKey) -> Tuple[int, random.Random, Optional[int]]:
    """``(index, rng, patch size or None)`` of an ``int``, ``(index, seed)`` or ``(index, seed, size)`` key."""
    if isinstance(key, (tuple, list)):
        size = int(key[2]) if len(key) == 3 else None
        return int(key[0]), random.Random(int(key[1])), size
    return int(key), random.Random(random.getrandbits(64)), None


def _images(folder: Path) -> List[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_file() and is_image_file(e.name))


def _paired_names(lq_dir: Path, gt_dir: Path, what: str) -> List[str]:
    """Names present in both folders; any image without its partner is an error naming it."""
    for d in (lq_dir, gt_dir):
        if not d.is_dir():
            raise FileNotFoundError(f'{what}: folder not found: {d}')
    lq, gt = _images(lq_dir), _images(gt_dir)
    only_lq, only_gt = sorted(set(lq) - set(gt)), sorted(set(gt) - set(lq))
    if only_lq or only_gt:
        lone = (lq_dir / only_lq[0]) if only_lq else (gt_dir / only_gt[0])
        raise FileNotFoundError(f'{what}: {len(only_lq) + len(only_gt)} image(s) without a partner, e.g. {lone} '
                                f'(pairs need equal file names in {lq_dir.name}/ and {gt_dir.name}/)')
    return gt


def list_gopro_pairs(root: os.PathLike) -> List[Tuple[str, str, str]]:
    """``[(key, blur relative path, sharp relative path)]`` of a GoPro split, keys ``<sequence>_<stem>``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f'GoPro folder not found: {root}')
    seqs = sorted(p for p in root.iterdir() if p.is_dir() and (p / 'sharp').is_dir())
    if not seqs:
        raise FileNotFoundError(f'{root} has no <sequence>/sharp/ folders (GoPro layout: '
                                'train|test/<sequence>/{blur,sharp}/)')
    pairs = []
    for seq in seqs:
        for name in _paired_names(seq / 'blur', seq / 'sharp', f'GoPro sequence {seq.name}'):
            stem = os.path.splitext(name)[0]
            pairs.append((f'{seq.name}_{stem}', f'{seq.name}/blur/{name}', f'{seq.name}/sharp/{name}'))
    return pairs


def list_derain_pairs(root: os.PathLike) -> List[Tuple[str, str, str]]:
    """``[(key, input relative path, target relative path)]`` of a deraining set, keys = file stems."""
    root = Path(root)
    names = _paired_names(root / 'input', root / 'target', f'deraining set {root}')
    if not names:
        raise FileNotFoundError(f'deraining set {root}: no images in input/ and target/')
    return [(os.path.splitext(n)[0], f'input/{n}', f'target/{n}') for n in names]


class RestorationPairDataset(Dataset):
    """Degraded / clean pairs of equal size (scale 1). Subclasses name the layout; ``pairs`` holds
    ``(name, lq key, gt key)`` (keys relative to ``dataroot`` on disk, LMDB keys otherwise).

    Items: ``{'lq', 'gt'}`` float CHW in [0, 1], ``{'lq_path', 'gt_path', 'name'}``.
    """

    accepts_seeded_keys = True
    accepts_patch_size_keys = True  # (index, seed, size) keys from data.progressive
    #: ``(lq folder, gt folder)`` names, also the LMDB names ``<folder>.lmdb``
    folders: Tuple[str, str] = ('', '')
    layout = ''

    def __init__(self, dataroot: str = '', io_backend: Optional[Dict[str, Any]] = None,
                 gt_size: Optional[int] = None, use_hflip: bool = True, use_rot: bool = True,
                 phase: str = 'train', name: Optional[str] = None):
        super().__init__()
        cls = type(self).__name__
        if not dataroot:
            raise ValueError(f'{cls}: dataroot is required')
        self.root = os.fspath(dataroot)
        self.gt_size = gt_size
        self.use_hflip, self.use_rot, self.phase = use_hflip, use_rot, phase
        self.name = name or os.path.basename(os.path.normpath(self.root))
        io_backend = dict(io_backend or {'type': 'disk'})
        if io_backend['type'] == 'disk':
            self.lq_backend = self.gt_backend = build_backend(io_backend, self.root)
            self.pairs = self.list_pairs(self.root)
        else:
            lq_dir, gt_dir = self.folders
            self.lq_backend = build_backend(io_backend, os.path.join(self.root, f'{lq_dir}.lmdb'))
            self.gt_backend = build_backend(io_backend, os.path.join(self.root, f'{gt_dir}.lmdb'))
            self.pairs = self._lmdb_pairs()

    @staticmethod
    def list_pairs(root: str) -> List[Tuple[str, str, str]]:
        raise NotImplementedError

    def _lmdb_pairs(self) -> List[Tuple[str, str, str]]:
        gt_keys = self.gt_backend.keys()
        if not gt_keys:
            raise FileNotFoundError(f'{type(self).__name__}: {self.gt_backend.root} holds no images')
        missing = [k for k in gt_keys if k not in self.lq_backend]
        if missing:
            raise FileNotFoundError(f'{type(self).__name__}: {self.lq_backend.root} lacks {len(missing)} key(s) of '
                                    f'{self.gt_backend.root}, e.g. {missing[0]!r}')
        return [(k, k, k) for k in gt_keys]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: RestorationKey) -> Dict[str, Any]:
        index, rng, size = unpack_restoration_key(key)
        name, lq_key, gt_key = self.pairs[index]
        lq_path, gt_path = self.lq_backend.path_of(lq_key), self.gt_backend.path_of(gt_key)
        lq, gt = self.lq_backend.get(lq_key), self.gt_backend.get(gt_key)
        check_pair(gt, lq, 1, gt_path, lq_path)
        if self.phase == 'train':
            size = size or self.gt_size
            if size:
                gt, lq = paired_random_crop(gt, lq, size, 1, rng, gt_path, lq_path)
            gt, lq = augment([gt, lq], self.use_hflip, self.use_rot, rng)
        return {'lq': to_tensor(lq), 'gt': to_tensor(gt), 'lq_path': lq_path, 'gt_path': gt_path, 'name': name}

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.name!r}, {len(self)} pairs, phase={self.phase}, root={self.root!r})'


@DATASET_REGISTRY.register()
class GoProDataset(RestorationPairDataset):
    """GoPro deblurring pairs: ``<dataroot>/<sequence>/{blur,sharp}/`` (or ``blur.lmdb`` / ``sharp.lmdb``)."""

    folders = ('blur', 'sharp')
    layout = 'gopro'
    list_pairs = staticmethod(list_gopro_pairs)


@DATASET_REGISTRY.register()
class DerainDataset(RestorationPairDataset):
    """Deraining pairs: ``<dataroot>/{input,target}/`` (or ``input.lmdb`` / ``target.lmdb``)."""

    folders = ('input', 'target')
    layout = 'rain'
    list_pairs = staticmethod(list_derain_pairs)


#: ``--task`` of tools/create_lmdb.py -> dataset class (its pair lister and folder names)
RESTORATION_LAYOUTS: Dict[str, type] = {cls.layout: cls for cls in (GoProDataset, DerainDataset)}
