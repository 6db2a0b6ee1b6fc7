"""ckdsr.utils.logger (idempotent set-up, rank handling, optional tensorboard) and utils.progress lines."""
import logging
import sys

import pytest
import torch

from ckdsr.utils import logger as L
from ckdsr.utils.progress import MessageLogger, ProgressMessage, format_eta


@pytest.fixture
def clean_logger():
    """Remove handlers (and restore the level) a test adds, so tests do not leak into each other."""
    log = logging.getLogger(L.LOGGER_NAME)
    before, level = list(log.handlers), log.level
    yield log
    log.setLevel(level)
    for h in list(log.handlers):
        if h not in before:
            log.removeHandler(h)
            h.close()


def _ours(log):
    return [h for h in log.handlers if getattr(h, L._MARK, False)]


def test_root_logger_idempotent_with_file(clean_logger, tmp_path):
    log = L.get_root_logger()
    n = len([h for h in _ours(log) if not isinstance(h, logging.FileHandler)])  # console only
    assert L.get_root_logger() is log
    log_file = tmp_path / 'logs' / 'train.log'
    L.get_root_logger(str(log_file))
    L.get_root_logger(str(log_file))
    files = [h for h in _ours(log) if isinstance(h, logging.FileHandler)]
    assert len(files) == 1 and len(_ours(log)) == n + 1
    log.info('hello %d', 5)
    files[0].flush()
    text = log_file.read_text()
    assert text.count('INFO: hello 5') == 1
    assert log.level == logging.INFO


def test_non_main_rank_is_warning_only_without_file(clean_logger, tmp_path, monkeypatch):
    monkeypatch.setattr(L, 'get_dist_info', lambda: (1, 2))
    log = L.get_root_logger(str(tmp_path / 'r1.log'))
    assert log.level == logging.WARNING
    assert not any(isinstance(h, logging.FileHandler) for h in _ours(log))
    assert not (tmp_path / 'r1.log').exists()
    assert isinstance(L.init_tb_logger(str(tmp_path / 'tb')), L.NullWriter)


def test_missing_tensorboard_gives_warning_and_noop_writer(clean_logger, tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, 'torch.utils.tensorboard', None)   # import now fails
    with caplog.at_level(logging.WARNING, logger=L.LOGGER_NAME):
        writer = L.init_tb_logger(str(tmp_path / 'tb'))
    assert isinstance(writer, L.NullWriter)
    assert 'tensorboard unavailable' in caplog.text
    writer.add_scalar('losses/l_pix', 1.0, 3)
    writer.flush()
    writer.close()
    assert not (tmp_path / 'tb').exists()


def test_real_tensorboard_writer(clean_logger, tmp_path):
    pytest.importorskip('tensorboard')
    writer = L.init_tb_logger(str(tmp_path / 'tb'))
    writer.add_scalar('losses/l_pix', 0.5, 1)
    writer.close()
    assert any(p.name.startswith('events.out.tfevents') for p in (tmp_path / 'tb').iterdir())


# ---------------------------------------------------------------- progress lines
def _clock(times):
    it = iter(times)
    return lambda: next(it)


class _Writer:
    def __init__(self):
        self.scalars = []

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))


def test_progress_line_from_clock_marks():
    writer = _Writer()
    # start 0; iter 1: data 0.25, done 1.0; iter 2: data 1.25, done 2.0
    # pause (validation) then start 100; iter 3: data 100.5, done 101; iter 4: data 101.1, done 102
    clock = _clock([0.0, 0.25, 1.0, 1.25, 2.0, 100.0, 100.5, 101.0, 101.1, 102.0])
    ml = MessageLogger(total_iter=3602, start_iter=0, tb_writer=writer, clock=clock)
    ml.start()
    for _ in range(2):
        ml.data_done()
        ml.iter_done()
    msg = ml.log(1, 2, [1e-4], {'l_pix': torch.tensor(0.125), 'l_kd': 0.5})
    # window: 2 iterations in 2.0 s busy, 0.5 s of it waiting for data; 3600 left at 1.0 s/it
    assert str(msg) == ('[epoch:  1, iter:    2/3,602, lr:(1.000e-04)] 1.00 it/s, data 25%, '
                        'eta: 01:00:00 | l_pix: 1.2500e-01 l_kd: 5.0000e-01')
    assert ('losses/l_pix', 0.125, 2) in writer.scalars and ('train/lr', 1e-4, 2) in writer.scalars
    assert ('train/data_share', 0.25, 2) in writer.scalars and ('train/it_per_s', 1.0, 2) in writer.scalars

    ml.start()                       # the 98 s pause is not counted
    for _ in range(2):
        ml.data_done()
        ml.iter_done()
    msg = ml.message(1, 4, [1e-4])
    assert msg.it_per_s == pytest.approx(1.0)
    assert msg.data_share == pytest.approx(0.6 / 2.0)
    assert msg.eta_s == pytest.approx(3598.0)
    assert str(msg).endswith('1.00 it/s, data 30%, eta: 00:59:58')


def test_progress_after_resume_with_given_timings():
    ml = MessageLogger(total_iter=2000, start_iter=1000, clock=_clock([]))
    for _ in range(10):
        ml.record(iter_time=0.5, data_time=0.1)
    msg = ml.message(3, 1010, [1e-4, 2e-5], {'l_total': 1.0})
    assert isinstance(msg, ProgressMessage)
    assert msg.it_per_s == pytest.approx(2.0) and msg.data_share == pytest.approx(0.2)
    assert msg.eta_s == pytest.approx(990 * 0.5)
    assert str(msg) == ('[epoch:  3, iter:1,010/2,000, lr:(1.000e-04,2.000e-05)] 2.00 it/s, data 20%, '
                        'eta: 00:08:15 | l_total: 1.0000e+00')


def test_progress_before_any_timing_and_eta_format():
    msg = MessageLogger(total_iter=10, clock=_clock([])).message(0, 0, [0.1])
    assert msg.eta_s is None and msg.it_per_s == 0.0
    assert 'eta: --:--:--' in str(msg) and '|' not in str(msg)
    assert format_eta(90061) == '1d 01:01:01'
    assert format_eta(59.6) == '00:01:00'


def test_progress_line_goes_to_logger(clean_logger, caplog):
    log = L.get_root_logger()
    ml = MessageLogger(total_iter=4, logger=log, clock=_clock([0.0, 0.5, 1.0]))
    ml.start()
    ml.data_done()
    ml.iter_done()
    with caplog.at_level(logging.INFO, logger=L.LOGGER_NAME):
        ml.log(1, 1, [1e-3], {'l_pix': 2.0})
    assert 'iter:1/4, lr:(1.000e-03)] 1.00 it/s, data 50%, eta: 00:00:03 | l_pix: 2.0000e+00' in caplog.text


def test_a_second_log_file_replaces_the_first(clean_logger, tmp_path):
    log = L.get_root_logger(str(tmp_path / 'a.log'))
    log.info('first run')
    L.get_root_logger(str(tmp_path / 'b.log'))
    log.info('second run')
    files = [h for h in _ours(log) if isinstance(h, logging.FileHandler)]
    assert [h.baseFilename for h in files] == [str(tmp_path / 'b.log')]
    assert 'second run' not in (tmp_path / 'a.log').read_text()
    assert 'second run' in (tmp_path / 'b.log').read_text()
