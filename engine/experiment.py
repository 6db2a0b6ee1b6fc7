"""Experiment folders: ``<root>/<name>/{models,training_states,visualization,tb_logger}``."""
import os
from dataclasses import dataclass
from typing import Any, Dict


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

    def make(self) -> None:
        for d in (self.models, self.training_states, self.visualization):
            os.makedirs(d, exist_ok=True)


def experiment_paths(opt: Dict[str, Any]) -> ExperimentPaths:
    """Folder of this run; ``path.experiments_root`` overrides ``./experiments``."""
    root = (opt.get('path') or {}).get('experiments_root') or 'experiments'
    return ExperimentPaths(os.path.join(os.path.abspath(os.path.expanduser(root)), opt['name']))
