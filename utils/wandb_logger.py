"""Optional Weights & Biases logging: BasicSR's ``logger.wandb: {project, resume_id, entity}``.

Off unless ``logger.wandb.project`` is set; the ``wandb`` package is imported only then. The run
receives the scalars the tensorboard writer receives (``losses/*``, ``train/*``, ``val/*``) through
:class:`WandbWriter`, which has ``SummaryWriter``'s ``add_scalar``/``close``; only rank 0 opens a
run (the caller decides, as for tensorboard). As in BasicSR, ``resume_id`` continues an existing
wandb run (``resume='allow'``) and the run is named after the experiment with the resolved option
tree as its config. Unlike BasicSR, the scalars are logged directly rather than by syncing the
tensorboard files, so ``logger.use_tb_logger: false`` with wandb on is allowed (assumption: nobody
relies on the sync's extra tensorboard-only entries).
"""
import os
from typing import Any, Dict, Optional

from ckdsr.utils.option_spec import OptionError

INSTALL_HINT = 'pip install wandb'


def wandb_options(opt: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """``opt['logger']['wandb']`` when it turns wandb on (a non-empty ``project``), else None."""
    section = (opt.get('logger') or {}).get('wandb') or {}
    return section if section.get('project') else None


def import_wandb():
    """The ``wandb`` module, or a one-line OptionError naming ``logger.wandb.project``."""
    try:
        import wandb
    except ImportError as err:
        raise OptionError([f'logger.wandb.project: is set but the wandb package cannot be imported ({err}); '
                           f'{INSTALL_HINT}, or set logger.wandb.project: ~'], source=None) from None
    return wandb


class WandbWriter:
    """Forwards ``SummaryWriter`` calls to a wandb run: ``add_scalar(tag, value, step)`` becomes
    ``run.log({tag: value}, step=step)``; ``close()`` finishes the run. Other writer calls (images)
    are no-ops."""

    def __init__(self, run: Any):
        self.run = run

    def add_scalar(self, tag: str, value: Any, global_step: Optional[int] = None, *args, **kwargs) -> None:
        step = None if global_step is None else int(global_step)
        self.run.log({tag: float(value)}, step=step)

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None

    def __getattr__(self, name: str):
        if name.startswith('__'):
            raise AttributeError(name)
        return lambda *args, **kwargs: None


def init_wandb_writer(opt: Dict[str, Any], run_dir: str) -> WandbWriter:
    """Start the wandb run of an experiment; files go to ``$WANDB_DIR`` if set, else ``run_dir``."""
    section = wandb_options(opt)
    if section is None:
        raise ValueError('init_wandb_writer: logger.wandb.project is not set')
    wandb = import_wandb()
    kwargs: Dict[str, Any] = {'project': section['project'], 'name': opt.get('name'), 'config': opt}
    if section.get('entity'):
        kwargs['entity'] = section['entity']
    if section.get('resume_id'):
        kwargs.update(id=str(section['resume_id']), resume='allow')
    if not os.environ.get('WANDB_DIR'):
        os.makedirs(run_dir, exist_ok=True)
        kwargs['dir'] = run_dir
    return WandbWriter(wandb.init(**kwargs))


class TeeWriter:
    """Sends every writer call to each of several writers (tensorboard and wandb)."""

    def __init__(self, *writers: Any):
        self.writers = writers

    def __getattr__(self, name: str):
        if name.startswith('__'):
            raise AttributeError(name)

        def call(*args, **kwargs):
            for w in self.writers:
                getattr(w, name)(*args, **kwargs)
        return call
