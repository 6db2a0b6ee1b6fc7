"""The teacher-vs-bicubic check run before distilling (engine/teacher_check.py)."""
import logging

import pytest
import torch
from torch import nn

from ckdsr.data.benchmark_dataset import BenchmarkDataset
from ckdsr.data.matlab_imresize import imresize_torch
from ckdsr.engine.evaluation import average, evaluate_dataset
from ckdsr.engine.teacher_check import TeacherCheck, check_teacher, log_teacher_check
from ckdsr.models.network_io import build_network
from tests.helpers.gloo import run_gloo
from tests.helpers.tiny_run import make_image_folder

METRICS = {'psnr': {'type': 'calculate_psnr', 'crop_border': 2, 'test_y_channel': True}}
VAL = {'metrics': METRICS}


class BicubicNet(nn.Module):
    """A 'teacher' that is MATLAB bicubic itself (scores exactly bicubic's PSNR)."""

    def forward(self, x):
        return imresize_torch(x, 2)


def _val_sets(root):
    make_image_folder(root, 3, size=24, seed=5)
    return {'tinyval': BenchmarkDataset(str(root), scale=2, name='tinyval')}


def _random_teacher():
    torch.manual_seed(0)
    return build_network({'type': 'EDSR', 'num_feat': 8, 'num_block': 1}, 2)


def test_random_teacher_is_below_bicubic_and_warns(tmp_path, caplog):
    sets = _val_sets(tmp_path / 'val')
    net = _random_teacher()
    net.train()
    result = check_teacher(net, sets, VAL, 2, torch.device('cpu'))
    assert net.training  # the mode is restored
    bicubic = average(evaluate_dataset(lambda x: imresize_torch(x, 2), sets['tinyval'], 2, METRICS))['psnr']
    assert result.dataset == 'tinyval' and result.metric == 'psnr'
    assert result.bicubic == bicubic and result.teacher < bicubic and result.below_bicubic
    with caplog.at_level(logging.INFO, logger='ckdsr'):
        log_teacher_check(result)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == 'ckdsr']
    assert len(warnings) == 1
    for cause in ('BELOW bicubic', 'wrong scale', 'wrong weights', 'wrong input range', 'val.check_teacher: false'):
        assert cause in warnings[0]
    assert any(r.getMessage() == result.line() for r in caplog.records if r.levelno == logging.INFO)


def test_the_check_leaves_the_global_random_generators_as_they_were(tmp_path):
    from ckdsr.utils.rng import get_rng_state
    sets, net = _val_sets(tmp_path / 'val'), _random_teacher()
    torch.manual_seed(3)
    before = get_rng_state()
    check_teacher(net, sets, VAL, 2, torch.device('cpu'))
    after = get_rng_state()
    assert after['python'] == before['python'] and torch.equal(after['torch'], before['torch'])
    assert (after['numpy'][1] == before['numpy'][1]).all() and after['numpy'][2] == before['numpy'][2]


def test_a_teacher_as_good_as_bicubic_does_not_warn(tmp_path, caplog):
    result = check_teacher(BicubicNet(), _val_sets(tmp_path / 'val'), VAL, 2, torch.device('cpu'))
    assert result.teacher == result.bicubic and not result.below_bicubic
    with caplog.at_level(logging.INFO, logger='ckdsr'):
        log_teacher_check(result)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name == 'ckdsr']
    assert result.line() == (f'teacher check on tinyval: teacher psnr {result.teacher:.4f} vs bicubic '
                             f'{result.bicubic:.4f} (+0.0000)')


def test_line_and_threshold_on_given_values(caplog):
    low = TeacherCheck('Set5', 'psnr', teacher=30.0, bicubic=33.6625)
    assert low.below_bicubic
    assert low.line() == 'teacher check on Set5: teacher psnr 30.0000 vs bicubic 33.6625 (-3.6625)'
    high = TeacherCheck('Set5', 'psnr', teacher=38.1, bicubic=33.66)
    assert not high.below_bicubic and high.line().endswith('(+4.4400)')
    with caplog.at_level(logging.INFO, logger='ckdsr'):
        log_teacher_check(low, rank=1)  # only rank 0 logs
        log_teacher_check(None)
    assert not caplog.records


def test_no_validation_set_means_no_check():
    assert check_teacher(BicubicNet(), {}, VAL, 2, torch.device('cpu')) is None


def _ranked_check(rank, world_size, root, out):
    sets = {'tinyval': BenchmarkDataset(root, scale=2, name='tinyval')}
    result = check_teacher(_random_teacher(), sets, VAL, 2, torch.device('cpu'), rank=rank, world_size=world_size)
    torch.save((result.teacher, result.bicubic), f'{out}.{rank}')


@pytest.mark.filterwarnings('ignore::DeprecationWarning')
def test_two_gloo_ranks_give_the_single_process_result(tmp_path):
    sets = _val_sets(tmp_path / 'val')  # 3 images: rank 0 scores two, rank 1 one
    single = check_teacher(_random_teacher(), sets, VAL, 2, torch.device('cpu'))
    out = str(tmp_path / 'result')
    run_gloo(_ranked_check, tmp_path, str(tmp_path / 'val'), out)
    for rank in range(2):
        teacher, bicubic = torch.load(f'{out}.{rank}')
        assert teacher == pytest.approx(single.teacher, abs=1e-9) and bicubic == pytest.approx(single.bicubic, abs=1e-9)
