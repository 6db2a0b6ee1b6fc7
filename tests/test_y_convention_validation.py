"""``y_convention`` in validation during training: the per-metric key of ``val.metrics`` is validated
by the option schema and reaches the scores the Trainer logs (issue 17 point 9)."""
import os

import numpy as np
import pytest

from ckdsr.data.image_io import read_image
from ckdsr.metrics import tensor2img
from tests.helpers.tiny_run import tiny_sr_options, write_options
from ckdsr.utils.option_spec import OptionError
from ckdsr.utils.options import load_options


def _y_matlab(img):
    r, g, b = (img[..., i].astype(np.int64) for i in range(3))
    return (16 + (65481 * r + 128553 * g + 24966 * b + 127500) // 255000).astype(np.float64)


def test_validation_scores_both_conventions_as_the_metric_blocks_say(tmp_path):
    from ckdsr.engine.trainer import Trainer
    opt = tiny_sr_options(tmp_path, total_iter=3)
    base = {'type': 'calculate_psnr', 'crop_border': 2, 'test_y_channel': True}
    opt['val'].update(save_img=True, metrics={'psnr': base, 'psnr_matlab': {**base, 'y_convention': 'matlab'}})
    trainer = Trainer(load_options(str(write_options(opt, tmp_path / 'o.yml'))))
    trainer.run()  # validates at iteration 3
    log = (tmp_path / 'experiments' / 'tiny' / 'train.log').read_text()
    assert 'validation tinyval @ iter 3: psnr: ' in log and 'psnr_matlab: ' in log
    got = trainer.validate()['tinyval']
    ds = trainer.val_sets['tinyval']
    want = []
    for i in range(len(ds)):
        item = ds[i]
        sr = read_image(os.path.join(trainer.paths.visualization, 'tinyval', f"{item['name']}_3.png"))
        a, b = (_y_matlab(x)[2:-2, 2:-2] for x in (sr, tensor2img(item['gt'])))
        want.append(10 * np.log10(255.0 ** 2 / np.mean((a - b) ** 2)))
    assert got['psnr_matlab'] == pytest.approx(np.mean(want), abs=1e-9)
    assert abs(got['psnr'] - got['psnr_matlab']) > 1e-4


def test_a_bad_convention_is_one_clear_option_error(tmp_path):
    opt = tiny_sr_options(tmp_path)
    opt['val']['metrics']['psnr']['y_convention'] = 'MATLAB'
    with pytest.raises(OptionError, match=r"val\.metrics\.psnr\.y_convention: expected one of 'basicsr', 'matlab'"):
        load_options(str(write_options(opt, tmp_path / 'o.yml')))
