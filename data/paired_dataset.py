"""``PairedImageDataset``: GT / LQ pairs from disk, LMDB or memory, BasicSR's option keys."""
import os
from typing import Any, Dict, List, Optional, Tuple

from torch.utils.data import Dataset

from ckdsr.data.file_client import StorageBackend, build_backend
from ckdsr.data.matlab_imresize import bicubic_downsample, modcrop
from ckdsr.data.sample_key import Key, unpack_key
from ckdsr.data.transforms import augment, mod_crop_to_lq, paired_random_crop, random_crop, to_tensor
from ckdsr.utils.registry import DATASET_REGISTRY


def read_name_list(meta_info_file: str) -> List[str]:
    """First whitespace-separated token of each non-empty line (BasicSR's meta_info files)."""
    if not os.path.isfile(meta_info_file):
        raise FileNotFoundError(f'meta_info_file not found: {meta_info_file}')
    with open(meta_info_file, 'r', encoding='utf-8') as f:
        names = [line.split()[0] for line in f if line.strip()]
    if not names:
        raise ValueError(f'meta_info_file {meta_info_file} lists no images')
    return names


@DATASET_REGISTRY.register()
class PairedImageDataset(Dataset):
    """GT and LQ images paired by name; random crop + flips in the train phase.

    Pairing: GT key ``stem.ext`` pairs with LQ key ``filename_tmpl.format(stem) + ext`` (LMDB
    keys have no extension, so the default ``'{}'`` pairs equal keys). GT keys come from
    ``meta_info_file`` (disk), the LMDB's own ``meta_info.txt`` (lmdb), or the folder listing.
    The GT is cropped to LQ size x ``scale`` (it may be up to ``scale - 1`` px larger).
    ``lq_from_gt`` makes the LQ from the (cropped, augmented) GT with the MATLAB-exact bicubic,
    so no ``dataroot_lq`` is needed.

    Items: ``{'lq', 'gt'}`` float CHW tensors in [0, 1] and ``{'lq_path', 'gt_path'}`` strings.
    """

    accepts_seeded_keys = True

    def __init__(self, dataroot_gt: str = '', dataroot_lq: Optional[str] = None,
                 meta_info_file: Optional[str] = None, io_backend: Optional[Dict[str, Any]] = None,
                 filename_tmpl: str = '{}', gt_size: Optional[int] = None, use_hflip: bool = True,
                 use_rot: bool = True, scale: int = 4, phase: str = 'train', lq_from_gt: bool = False,
                 name: Optional[str] = None):
        super().__init__()
        if not dataroot_gt:
            raise ValueError('PairedImageDataset: dataroot_gt is required')
        if dataroot_lq is None and not lq_from_gt:
            raise ValueError('PairedImageDataset: dataroot_lq is required unless lq_from_gt is true')
        if '{}' not in filename_tmpl:
            raise ValueError(f"PairedImageDataset: filename_tmpl must contain '{{}}', got {filename_tmpl!r}")
        self.scale = int(scale)
        self.gt_size = gt_size
        self.use_hflip = use_hflip
        self.use_rot = use_rot
        self.phase = phase
        self.lq_from_gt = lq_from_gt
        self.name = name or os.path.basename(os.path.normpath(dataroot_gt))
        if gt_size is not None and gt_size % self.scale:
            raise ValueError(f'PairedImageDataset: gt_size {gt_size} is not a multiple of scale {scale}')
        io_backend = dict(io_backend or {'type': 'disk'})
        self.gt_backend: StorageBackend = build_backend(io_backend, dataroot_gt)
        self.lq_backend: Optional[StorageBackend] = (
            None if lq_from_gt else build_backend(io_backend, dataroot_lq))
        self.pairs = self._pair_keys(meta_info_file, filename_tmpl, io_backend['type'] == 'lmdb')

    def _pair_keys(self, meta_info_file: Optional[str], tmpl: str, is_lmdb: bool) -> List[Tuple[str, str]]:
        if meta_info_file and not is_lmdb:
            gt_keys = read_name_list(meta_info_file)
        else:
            gt_keys = self.gt_backend.keys()
        if not gt_keys:
            raise FileNotFoundError(f'no images found in {self.gt_backend.root}')
        if self.lq_backend is None:
            return [(k, '') for k in gt_keys]
        pairs = []
        for key in gt_keys:
            stem, ext = os.path.splitext(key)
            pairs.append((key, tmpl.format(stem) + ext))
        missing = [lq for _, lq in pairs if lq not in self.lq_backend]
        if missing:
            raise FileNotFoundError(
                f'{len(missing)} LQ image(s) missing for GT in {self.gt_backend.root}, e.g. '
                f'{self.lq_backend.path_of(missing[0])} (filename_tmpl {tmpl!r})')
        return pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: Key) -> Dict[str, Any]:
        index, rng = unpack_key(key)
        gt_key, lq_key = self.pairs[index]
        gt_path = self.gt_backend.path_of(gt_key)
        gt = self.gt_backend.get(gt_key)
        train = self.phase == 'train'
        if self.lq_from_gt:
            gt = modcrop(gt, self.scale)
            if train and self.gt_size:
                gt = random_crop(gt, self.gt_size, rng, gt_path)
            if train:
                gt = augment([gt], self.use_hflip, self.use_rot, rng)[0]
            lq = bicubic_downsample(gt, self.scale)
            lq_path = f'{gt_path} (bicubic x{self.scale})'
        else:
            lq_path = self.lq_backend.path_of(lq_key)
            lq = self.lq_backend.get(lq_key)
            gt = mod_crop_to_lq(gt, lq, self.scale, gt_path, lq_path)
            if train and self.gt_size:
                gt, lq = paired_random_crop(gt, lq, self.gt_size, self.scale, rng, gt_path, lq_path)
            if train:
                gt, lq = augment([gt, lq], self.use_hflip, self.use_rot, rng)
        return {'lq': to_tensor(lq), 'gt': to_tensor(gt), 'lq_path': lq_path, 'gt_path': gt_path}

    def __repr__(self) -> str:
        return (f'PairedImageDataset({self.name!r}, {len(self)} pairs, x{self.scale}, phase={self.phase}, '
                f'gt={self.gt_backend!r}, lq={self.lq_backend!r})')
