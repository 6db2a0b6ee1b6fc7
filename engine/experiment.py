"""Experiment folders: ``<root>/<name>/{models,training_states,visualization,tb_logger}``.

A fresh run (no resume state) never reuses a folder: an existing one is first renamed to
``<name>_archived_<YYYYmmdd_HHMMSS>`` (BasicSR's convention), so old checkpoints can neither be
overwritten nor picked up by a later ``--auto_resume``.
"""
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, Optional


@dataclass(frozen=True)
class ExperimentPaths:
    root: str

    @property
    def models(self) -> str:
        return os.path.join(self.root, 'models')

    @property
    def training_states(self) -> str:
        return os.path.join(self.root, 'training_states')

    @property
    def visualization(self) -> str:
        return os.path.join(self.root, 'visualization')

    @property
    def tb_logger(self) -> str:
        return os.path.join(self.root, 'tb_logger')

    @property
    def log_file(self) -> str:
        return os.path.join(self.root, 'train.log')

    @property
    def options_file(self) -> str:
        return os.path.join(self.root, 'options.yml')

    @property
    def checkpoint_dirs(self):
        """Folders that atomic writes put ``*.tmp-<pid>`` files in."""
        return (self.root, self.models, self.training_states)

    def make(self) -> None:
        for d in (self.models, self.training_states, self.visualization):
            os.makedirs(d, exist_ok=True)

    def archive(self, now: Optional[float] = None) -> Optional[str]:
        """Rename an existing folder to ``<root>_archived_<YYYYmmdd_HHMMSS>`` (``_2``, ``_3``... when
        that name is taken); returns the new path, or ``None`` when there was nothing to rename."""
        if not os.path.lexists(self.root):
            return None
        stamp = time.strftime('%Y%m%d_%H%M%S', time.localtime(now))
        target = f'{self.root}_archived_{stamp}'
        n = 1
        while os.path.lexists(target):
            n += 1
            target = f'{self.root}_archived_{stamp}_{n}'
        os.rename(self.root, target)
        return target


def experiment_paths(opt: Dict[str, Any]) -> ExperimentPaths:
    """Folder of this run; ``path.experiments_root`` overrides ``./experiments``."""
    root = (opt.get('path') or {}).get('experiments_root') or 'experiments'
    return ExperimentPaths(os.path.join(os.path.abspath(os.path.expanduser(root)), opt['name']))
