"""Where each external file an option file may point to comes from: one table for every message.

An option file names weights and data that ckdsr cannot download on its own (published teachers,
VGG19, the taming VQGAN) or that a ckdsr command makes (LMDBs, codebooks, trained runs). When
such a path is missing, :func:`describe` says who publishes it and where, or which command makes
it; the option validator, the weight loaders, ``tools/model_info.py`` and ``tools/train.py
--dry-run`` all take their text from here. The URLs are the ones the shipped option files cite.
"""
import os
import re
from dataclasses import dataclass
from typing import Callable, Optional, Tuple, Union

Source = Union[str, Callable[[re.Match], str]]


@dataclass(frozen=True)
class ExternalFile:
    """Files whose name matches ``pattern`` (a regex searched in the path, '/' separators):
    ``what`` they are, ``publisher``, and ``source`` (a URL, or the command that makes them)."""
    pattern: str
    what: str
    publisher: str
    source: Source

    def match(self, path: str) -> Optional[re.Match]:
        return re.search(self.pattern, path.replace(os.sep, '/'))

    def text(self, m: re.Match) -> str:
        source = self.source(m) if callable(self.source) else self.source
        return f'{self.what} ({self.publisher}): {source}'


def _trained_run(m: re.Match) -> str:
    run = m.group(1)
    found = option_file_named(run)
    return (f'train it: python tools/train.py -opt {found}' if found else
            f'train the run named {run} with tools/train.py (its options file sets name: {run})')


def option_file_named(run: str, root: str = 'options') -> Optional[str]:
    """The shipped option file whose ``name:`` is ``run`` (by text: no YAML parsing), or None."""
    line = re.compile(rf'^name:\s*[\'"]?{re.escape(run)}[\'"]?\s*(#.*)?$', re.M)
    base = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), root)
    for folder, _, files in sorted(os.walk(base)):
        for name in sorted(files):
            if name.endswith('.yml'):
                path = os.path.join(folder, name)
                with open(path, 'r', encoding='utf-8') as f:
                    if line.search(f.read()):
                        return os.path.relpath(path, os.path.dirname(base))
    return None


def _codebook(m: re.Match) -> str:
    k = m.group(1) or '<K>'
    return (f'make it: python tools/fit_codebook.py -opt <this option file> --num-codes {k} '
            f'--out {m.string}')


_DIV2K_LMDB = ('make it from DIV2K (https://data.vision.ee.ethz.ch/cvl/DIV2K/, DIV2K_train_HR and '
               'DIV2K_train_LR_bicubic): python tools/create_lmdb.py --hr datasets/DIV2K/DIV2K_train_HR '
               '--lr datasets/DIV2K/DIV2K_train_LR_bicubic --scale 2 3 4 --out datasets/DIV2K')

#: file -> publisher and URL, or the command that makes it (first match wins)
EXTERNAL_FILES: Tuple[ExternalFile, ...] = (
    ExternalFile(r'vgg19-dcbb9e9d\.pth$', "torchvision's ImageNet VGG19 weights", 'PyTorch / torchvision',
                 'https://download.pytorch.org/models/vgg19-dcbb9e9d.pth'),
    ExternalFile(r'vqgan_imagenet_f16_1024', "taming-transformers' 'VQGAN ImageNet (f=16), 1024' checkpoint "
                 '(vqgan_imagenet_f16_1024, ckpts/last.ckpt)',
                 'CompVis, taming-transformers',
                 'https://heibox.uni-heidelberg.de/d/8088892a516d4e3baf92/ (linked from '
                 'github.com/CompVis/taming-transformers); no download possible: '
                 'options/dckd_rcan_x4_offline.yml embeds with the teacher itself'),
    ExternalFile(r'RCAN_BIX[234]\.pt$', 'the official RCAN 10x20 weights', 'Zhang et al., the RCAN authors',
                 'https://github.com/yulunzhang/RCAN (RCAN_TestCode/model, models_ECCV2018RCAN)'),
    ExternalFile(r'001_classicalSR_DIV2K_s48w8_SwinIR-M_x[234]\.pth$', 'the official SwinIR-M weights',
                 'Liang et al., the SwinIR authors', 'https://github.com/JingyunLiang/SwinIR/releases/tag/v0.0'),
    ExternalFile(r'(?i)(edsr_x[234]-[0-9a-f]+\.pt)$', 'the official EDSR (R32C256) weights',
                 'Lim et al., EDSR-PyTorch',
                 lambda m: f'https://cv.snu.ac.kr/research/EDSR/models/{m.group(1).lower()}'),
    ExternalFile(r'EDSR_Lx([234])\.pth$', 'an EDSR R32C256 teacher', 'trained with ckdsr, or BasicSR\'s model zoo',
                 lambda m: f'train it: python tools/train.py -opt options/train_edsr_r32c256_x{m.group(1)}.yml, or '
                           f'use EDSR_Lx{m.group(1)}_f256b32_DIV2K_official-*.pth from '
                           'https://github.com/XPixelGroup/BasicSR/blob/master/docs/ModelZoo.md'),
    ExternalFile(r'RCAN_10x20_x([234])\.pth$', 'an RCAN 10x20 teacher', 'trained with ckdsr, or the RCAN authors',
                 lambda m: f'train it: python tools/train.py -opt options/train_rcan_10x20_x{m.group(1)}.yml, or '
                           f'use RCAN_BIX{m.group(1)}.pt from https://github.com/yulunzhang/RCAN'),
    ExternalFile(r'EDSR_Lx[234]_f256b32_DIV2K_official-[0-9a-f]+\.pth$', "BasicSR's EDSR (R32C256) weights",
                 'XPixelGroup, BasicSR model zoo',
                 'https://github.com/XPixelGroup/BasicSR/blob/master/docs/ModelZoo.md'),
    ExternalFile(r'carn_m\.pth$', 'the official CARN-M weights (checkpoint/carn_m.pth)',
                 'Ahn et al., CARN-pytorch', 'https://github.com/nmhkahn/CARN-pytorch'),
    ExternalFile(r'NAFNet-GoPro-width(32|64)\.pth$', 'the official NAFNet GoPro weights', 'megvii-research, NAFNet',
                 'https://github.com/megvii-research/NAFNet/blob/main/docs/GoPro.md (Evaluation: pretrained models)'),
    ExternalFile(r'motion_deblurring\.pth$', 'the official Restormer motion-deblurring weights', 'Zamir et al., Restormer',
                 'https://github.com/swz30/Restormer/tree/main/Motion_Deblurring (pretrained_models)'),
    ExternalFile(r'deraining\.pth$', 'the official Restormer deraining weights', 'Zamir et al., Restormer',
                 'https://github.com/swz30/Restormer/tree/main/Deraining (pretrained_models)'),
    ExternalFile(r'GoPro/train_lmdb', 'GoPro training LMDBs (blur.lmdb, sharp.lmdb)', 'made by ckdsr',
                 'make them from the GoPro train set (download: https://github.com/megvii-research/NAFNet/blob/main/'
                 'docs/GoPro.md): python tools/create_lmdb.py --task gopro --root datasets/GoPro/train '
                 '--out datasets/GoPro/train_lmdb'),
    ExternalFile(r'GoPro/test', 'the GoPro test set', 'Nah et al., as packaged by NAFNet',
                 'https://github.com/megvii-research/NAFNet/blob/main/docs/GoPro.md'),
    ExternalFile(r'Rain13K_lmdb', 'Rain13K training LMDBs (input.lmdb, target.lmdb)', 'made by ckdsr',
                 'make them from Rain13K (download: https://github.com/swz30/Restormer/tree/main/Deraining/Datasets): '
                 'python tools/create_lmdb.py --task rain --root datasets/Deraining/train/Rain13K '
                 '--out datasets/Deraining/train/Rain13K_lmdb'),
    ExternalFile(r'Deraining/test/(Test100|Rain100H|Rain100L|Test1200|Test2800)', 'a deraining test set',
                 'as collected by Restormer', 'https://github.com/swz30/Restormer/tree/main/Deraining (README, step 2)'),
    ExternalFile(r'codebooks/[^/]*?(?:_k(\d+))?\.pth$', "a k-means codebook of the teacher's features",
                 'made by ckdsr', _codebook),
    ExternalFile(r'DIV2K_train_(HR|LR_bicubic_X[234])_sub(_raw)?\.lmdb', 'a DIV2K sub-image LMDB',
                 'made by ckdsr', _DIV2K_LMDB),
    ExternalFile(r'benchmark/(Set5|Set14|B100|Urban100|Manga109)\b', 'a benchmark set in HR/ + LR_bicubic/X<s>/ '
                 'layout', 'EDSR-PyTorch (benchmark.tar)', 'https://cv.snu.ac.kr/research/EDSR/benchmark.tar'),
    ExternalFile(r'^demo_out/', 'a file of the demo', 'made by ckdsr',
                 'make it: python tools/demo.py (make demo), which writes demo_out/'),
    ExternalFile(r'benchmarks/(\w+)/work/.*\.lmdb', 'a training LMDB of a CPU experiment', 'made by ckdsr',
                 lambda m: f'make it: python benchmarks/{m.group(1)}/prepare_data.py'),
    ExternalFile(r'benchmarks/(\w+)/work/', 'a file of a CPU experiment', 'made by ckdsr',
                 lambda m: f'make it: python benchmarks/{m.group(1)}/run.py (see benchmarks/{m.group(1)}/)'),
    ExternalFile(r'experiments/([^/]+)/models/net_g_\w+\.pth$', 'the weights of a ckdsr training run',
                 'made by ckdsr', _trained_run),
)


def lookup(path: str) -> Optional[Tuple[ExternalFile, re.Match]]:
    """The table row for ``path`` (and its match), or None."""
    for row in EXTERNAL_FILES:
        m = row.match(str(path))
        if m:
            return row, m
    return None


def describe(path: str) -> str:
    """``'<what> (<publisher>): <URL or command>'`` for a known external file, else ''."""
    hit = lookup(path)
    return hit[0].text(hit[1]) if hit else ''
