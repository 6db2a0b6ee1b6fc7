"""``BenchmarkDataset``: an EDSR-layout test set (``HR/`` + ``LR_bicubic/X<s>/<name>x<s>.png``)."""
import logging
import os
from pathlib import Path
from typing import Any, Dict, Optional

from torch.utils.data import Dataset

from ckdsr.data.bicubic_lr import list_images, lr_file_name, lr_subdir
from ckdsr.data.image_io import read_image
from ckdsr.data.matlab_imresize import bicubic_downsample, modcrop
from ckdsr.data.sample_key import Key, unpack_key
from ckdsr.data.transforms import mod_crop_to_lq, to_tensor
from ckdsr.utils.registry import DATASET_REGISTRY

logger = logging.getLogger(__name__)


@DATASET_REGISTRY.register()
class BenchmarkDataset(Dataset):
    """Whole benchmark images: HR cropped to LR size x ``scale``, greyscale read as RGB.

    When ``LR_bicubic/X<scale>`` does not exist (Manga109 ships HR only) the LR is made on the
    fly with the MATLAB-exact bicubic from the mod-cropped HR, and a warning says so once.
    Items: ``{'lq', 'gt', 'lq_path', 'gt_path', 'name'}``.
    """

    accepts_seeded_keys = True

    def __init__(self, dataroot: str = '', scale: int = 4, name: Optional[str] = None,
                 phase: str = 'val'):
        super().__init__()
        root = Path(dataroot)
        if not dataroot or not (root / 'HR').is_dir():
            raise FileNotFoundError(f'BenchmarkDataset: {root / "HR"} not found (dataroot must hold HR/ '
                                    'and optionally LR_bicubic/X<s>/)')
        self.scale = int(scale)
        self.name = name or root.name
        self.phase = phase
        self.hr_files = list_images(root / 'HR')
        lr_dir = lr_subdir(root, self.scale)
        self.lr_dir: Optional[Path] = lr_dir if lr_dir.is_dir() else None
        if self.lr_dir is None:
            logger.warning('%s: %s not found; making x%d LR with the MATLAB-exact bicubic on the fly',
                           self.name, lr_dir, self.scale)
        else:
            missing = [p for p in self.hr_files
                       if not (self.lr_dir / lr_file_name(p.stem, self.scale)).is_file()]
            if missing:
                raise FileNotFoundError(f'BenchmarkDataset: no LR for {missing[0]} (expected '
                                        f'{self.lr_dir / lr_file_name(missing[0].stem, self.scale)}); '
                                        f'{len(missing)} missing in total')

    @property
    def lr_generated(self) -> bool:
        return self.lr_dir is None

    def __len__(self) -> int:
        return len(self.hr_files)

    def __getitem__(self, key: Key) -> Dict[str, Any]:
        index, _ = unpack_key(key)
        hr_path = self.hr_files[index]
        gt = read_image(hr_path)
        if self.lr_dir is None:
            gt = modcrop(gt, self.scale)
            lq = bicubic_downsample(gt, self.scale)
            lq_path = f'{hr_path} (bicubic x{self.scale})'
        else:
            lq_path = os.fspath(self.lr_dir / lr_file_name(hr_path.stem, self.scale))
            lq = read_image(lq_path)
            gt = mod_crop_to_lq(gt, lq, self.scale, os.fspath(hr_path), lq_path)
        return {'lq': to_tensor(lq), 'gt': to_tensor(gt), 'lq_path': lq_path,
                'gt_path': os.fspath(hr_path), 'name': hr_path.stem}

    def __repr__(self) -> str:
        src = 'generated' if self.lr_generated else str(self.lr_dir)
        return f'BenchmarkDataset({self.name!r}, {len(self)} images, x{self.scale}, LR {src})'
