"""The table of external files (utils/external_files.py) feeds every missing-file message (issue 16,
point 11): each path a shipped option file names is in it, and the messages name the option key."""
import glob
import os
import re
from pathlib import Path

import pytest

from ckdsr.models.network_io import load_weights
from ckdsr.utils.external_files import EXTERNAL_FILES, describe, option_file_named
from ckdsr.utils.option_spec import OptionError, paths_unchecked
from ckdsr.utils.options import load_options

REPO = Path(__file__).resolve().parents[1]
PATH_KEY = re.compile(r'^(dataroot.*|.*_path|pretrain_network_\w+)$')


def shipped_paths():
    """``(option file, key path, value)`` of every file or folder a shipped option file names."""
    out = []
    for f in sorted(glob.glob(str(REPO / 'options' / '**' / '*.yml'), recursive=True)):
        with paths_unchecked():
            tree = load_options(f)

        def walk(node, where):
            if isinstance(node, dict):
                for k, v in node.items():
                    if isinstance(v, str) and PATH_KEY.match(str(k)):
                        out.append((os.path.relpath(f, REPO), f'{where}{k}', v))
                    walk(v, f'{where}{k}.')
            elif isinstance(node, list):
                for i, v in enumerate(node):
                    walk(v, f'{where}{i}.')
        walk(tree, '')
    return out


def test_every_path_in_a_shipped_option_file_says_where_to_get_it():
    paths = shipped_paths()
    assert len(paths) > 100
    unknown = sorted({(key, value) for _, key, value in paths if not describe(value)})
    assert unknown == []


def test_rows_give_a_url_or_a_command_that_exists():
    for row in EXTERNAL_FILES:
        if callable(row.source):
            continue
        commands = re.findall(r'python ([\w/]+\.py)', row.source)
        assert row.source.count('https://') or commands, row
        for script in commands:
            assert (REPO / script).is_file(), script


@pytest.mark.parametrize('path, expected', [
    ('experiments/pretrained_models/vgg19-dcbb9e9d.pth',
     "torchvision's ImageNet VGG19 weights (PyTorch / torchvision): https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"),
    ('experiments/pretrained_models/edsr_x3-ea3ef2c6.pt', 'the official EDSR (R32C256) weights (Lim et al., '
     'EDSR-PyTorch): https://cv.snu.ac.kr/research/EDSR/models/edsr_x3-ea3ef2c6.pt'),
    ('experiments/codebooks/rcan_10x20_x4_body4_k1024.pth', "a k-means codebook of the teacher's features (made "
     'by ckdsr): make it: python tools/fit_codebook.py -opt <this option file> --num-codes 1024 --out '
     'experiments/codebooks/rcan_10x20_x4_body4_k1024.pth'),
    ('experiments/train_rcan_10x20_x2/models/net_g_latest.pth', 'the weights of a ckdsr training run (made by '
     'ckdsr): train it: python tools/train.py -opt options/train_rcan_10x20_x2.yml'),
    ('somewhere/else.pth', ''),
])
def test_describe(path, expected):
    assert describe(path) == expected


def test_trained_runs_named_in_option_files_are_shipped_runs():
    runs = {m.group(1) for _, _, v in shipped_paths() for m in [re.search(r'experiments/([^/]+)/models/', v)] if m}
    assert runs and {r for r in runs if option_file_named(r) is None} == set()


def test_missing_file_message_names_the_key_and_where_to_get_it(tmp_path):
    path = tmp_path / 'o.yml'
    path.write_text('name: x\nnetwork_g: {type: EDSR}\npath:\n  pretrain_network_g: nowhere/RCAN_BIX4.pt\n')
    with pytest.raises(OptionError) as err:
        load_options(str(path))
    assert err.value.lines() == [
        f'{path}: path.pretrain_network_g: file or folder not found: nowhere/RCAN_BIX4.pt; the official RCAN '
        '10x20 weights (Zhang et al., the RCAN authors): https://github.com/yulunzhang/RCAN (RCAN_TestCode/model, '
        'models_ECCV2018RCAN)']


def test_weight_loader_says_where_to_get_a_missing_file():
    import torch
    with pytest.raises(FileNotFoundError, match=r'^path.pretrain_network_t: pretrained weights not found: '
                                                r'x/carn_m.pth .*; the official CARN-M weights .*CARN-pytorch'):
        load_weights(torch.nn.Conv2d(1, 1, 1), 'x/carn_m.pth', 'auto', True, 'path.pretrain_network_t')


def test_arch_loaders_take_their_download_text_from_the_table():
    from ckdsr.archs.vgg import VGG19_URL, missing_weights_error
    from ckdsr.archs.vqgan import VQGAN_F16_1024_URL, VQGANEncoder
    vgg = str(missing_weights_error('distill.embedding.weights_path', None))
    assert vgg == ('distill.embedding.weights_path is not set: VGG19 needs '
                   f'{describe("vgg19-dcbb9e9d.pth")}; download it and set distill.embedding.weights_path to its path.')
    assert VGG19_URL in vgg
    with pytest.raises(FileNotFoundError) as err:
        VQGANEncoder(ch=32, z_channels=32, embed_dim=32, n_embed=4, option_key='distill.embedding.checkpoint_path')
    assert describe('vqgan_imagenet_f16_1024/ckpts/last.ckpt') in str(err.value)
    assert VQGAN_F16_1024_URL in str(err.value)
