"""``logger.wandb`` (issue 19.1): off unless ``project`` is set, wandb imported only then, the same
scalars as tensorboard from rank 0, BasicSR's ``resume_id``/``entity``, one-line error without wandb.

The end-to-end test runs the real ``wandb`` package (a ``dev`` extra) in offline mode with
``WANDB_DIR`` in tmp; the argument tests use a fake module put in ``sys.modules``.
"""
import sys
import types

import pytest

from tests.helpers.tiny_run import tiny_sr_options, write_options
from ckdsr.utils import logger as logger_mod
from ckdsr.utils.option_spec import OptionError
from ckdsr.utils.options import load_options
from ckdsr.utils.wandb_logger import TeeWriter, WandbWriter, import_wandb, init_wandb_writer


class FakeRun:
    def __init__(self, **kwargs):
        self.kwargs, self.logged, self.finished = kwargs, [], False

    def log(self, data, step=None):
        self.logged.append((data, step))

    def finish(self):
        self.finished = True


@pytest.fixture
def fake_wandb(monkeypatch):
    module = types.ModuleType('wandb')
    module.runs = []

    def init(**kwargs):
        module.runs.append(FakeRun(**kwargs))
        return module.runs[-1]
    module.init = init
    monkeypatch.setitem(sys.modules, 'wandb', module)
    return module


def _opt(tmp_path, **wandb):
    opt = tiny_sr_options(tmp_path)
    opt['logger']['wandb'] = wandb or None
    return opt


def test_off_unless_project_is_set_and_never_imported(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'wandb', None)  # any `import wandb` would now raise ImportError
    for wandb in ({}, {'project': None, 'resume_id': None}):
        opt = load_options(str(write_options(_opt(tmp_path, **wandb), tmp_path / 'o.yml')))
        assert logger_mod.init_tb_logger(str(tmp_path / 'tb'), opt) is None  # use_tb_logger is false too
        opt['logger']['use_tb_logger'] = True
        writer = logger_mod.init_tb_logger(str(tmp_path / 'tb'), opt)
        assert type(writer).__name__ == 'SummaryWriter'
        writer.close()


def test_missing_package_is_one_line_naming_the_key(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'wandb', None)
    path = write_options(_opt(tmp_path, project='sr'), tmp_path / 'o.yml')
    with pytest.raises(OptionError) as err:
        load_options(str(path))
    assert str(err.value) == (f'{path}: logger.wandb.project: is set but the wandb package is not installed; '
                              'pip install wandb, or set logger.wandb.project: ~')
    with pytest.raises(OptionError) as err:  # the same at run start, for a tree loaded elsewhere
        import_wandb()
    assert len(str(err.value).splitlines()) == 1
    assert str(err.value).startswith('logger.wandb.project: is set but the wandb package cannot be imported')
    assert 'pip install wandb' in str(err.value)


def test_init_passes_basicsr_settings(tmp_path, fake_wandb, monkeypatch):
    monkeypatch.delenv('WANDB_DIR', raising=False)
    opt = load_options(str(write_options(_opt(tmp_path, project='sr', resume_id='3x8abc12', entity='lab'),
                                         tmp_path / 'o.yml')))
    writer = init_wandb_writer(opt, str(tmp_path / 'exp'))
    kwargs = fake_wandb.runs[0].kwargs
    assert kwargs == {'project': 'sr', 'name': 'tiny', 'config': opt, 'entity': 'lab', 'id': '3x8abc12',
                      'resume': 'allow', 'dir': str(tmp_path / 'exp')}
    writer.add_scalar('losses/l_pix', 0.25, 3)
    writer.add_image('val/x', object(), 3)  # images are not sent
    writer.close()
    assert fake_wandb.runs[0].logged == [({'losses/l_pix': 0.25}, 3)] and fake_wandb.runs[0].finished


def test_fresh_run_has_no_id_and_other_ranks_open_nothing(tmp_path, fake_wandb, monkeypatch):
    monkeypatch.setenv('WANDB_DIR', str(tmp_path / 'wb'))
    opt = load_options(str(write_options(_opt(tmp_path, project='sr'), tmp_path / 'o.yml')))
    writer = logger_mod.init_tb_logger(str(tmp_path / 'exp' / 'tb_logger'), opt)
    assert isinstance(writer, WandbWriter)  # tensorboard off: wandb alone
    assert fake_wandb.runs[0].kwargs == {'project': 'sr', 'name': 'tiny', 'config': opt}  # WANDB_DIR decides
    monkeypatch.setattr(logger_mod, 'get_dist_info', lambda: (1, 2))
    assert isinstance(logger_mod.init_tb_logger(str(tmp_path / 'tb'), opt), logger_mod.NullWriter)
    assert len(fake_wandb.runs) == 1


def test_tee_writer_sends_each_call_to_every_writer():
    a, b = FakeRun(), FakeRun()
    tee = TeeWriter(WandbWriter(a), WandbWriter(b))
    tee.add_scalar('val/set/psnr', 30.5, 10)
    tee.close()
    assert a.logged == b.logged == [({'val/set/psnr': 30.5}, 10)] and a.finished and b.finished


def test_offline_run_logs_the_tensorboard_scalars(tmp_path, monkeypatch):
    import wandb  # a dev extra (setup.py)
    monkeypatch.setenv('WANDB_MODE', 'offline')
    monkeypatch.setenv('WANDB_DIR', str(tmp_path / 'wandb_dir'))
    monkeypatch.setenv('WANDB_SILENT', 'true')
    (tmp_path / 'wandb_dir').mkdir()
    from torch.utils.tensorboard import SummaryWriter
    tb_scalars, wandb_scalars, runs = [], [], []
    real_add_scalar, real_init = SummaryWriter.add_scalar, wandb.init

    def add_scalar(self, tag, value, step=None, *args, **kwargs):
        tb_scalars.append((tag, float(value), step))
        return real_add_scalar(self, tag, value, step, *args, **kwargs)

    def init(**kwargs):
        run = real_init(**kwargs)
        real_log = run.log

        def log(data, step=None, **kw):
            wandb_scalars.extend((k, v, step) for k, v in data.items())
            return real_log(data, step=step, **kw)
        run.log = log
        runs.append(run)
        return run
    monkeypatch.setattr(SummaryWriter, 'add_scalar', add_scalar)
    monkeypatch.setattr(wandb, 'init', init)

    from ckdsr.engine.trainer import Trainer
    opt = _opt(tmp_path, project='ckdsr-test')
    opt['logger'].update(use_tb_logger=True)
    opt = load_options(str(write_options(opt, tmp_path / 'o.yml')))
    Trainer(opt).run()
    assert {t for t, _, _ in tb_scalars} >= {'losses/l_pix', 'train/lr', 'val/tinyval/psnr'}
    assert wandb_scalars == tb_scalars
    assert runs[0].config['name'] == 'tiny' and runs[0].offline
    assert list((tmp_path / 'wandb_dir' / 'wandb').glob(f'offline-run-*-{runs[0].id}/run-{runs[0].id}.wandb'))
