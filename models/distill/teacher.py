"""The frozen teacher: one no-grad forward per step giving ``teacher_sr`` and ``teacher_feats``."""
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import nn

from models.distill.component import Component
from models.network_io import build_network, freeze, load_weights, to_device
from models.signals import Provider
from utils.feature_taps import FeatureTaps


class Teacher(Component):
    """Loads ``network_t`` from ``path.pretrain_network_t``, frozen; never wrapped in DDP."""

    name = 'teacher'

    def __init__(self, cfg: Dict[str, Any], path_opt: Dict[str, Any], scale: int, device: torch.device,
                 taps: Sequence[str] = (), autocast=None):
        net = build_network(cfg, scale)
        weights = path_opt.get('pretrain_network_t')
        if not weights:
            raise FileNotFoundError('path.pretrain_network_t: a KD run needs the trained teacher\'s weights '
                                    '(train one with options/train_*.yml or use a published checkpoint)')
        load_weights(net, weights, path_opt.get('param_key_t', 'auto'), path_opt.get('strict_load_t', True),
                     'path.pretrain_network_t')
        self.net = freeze(to_device(net, device))
        self.tap_paths = list(taps)
        FeatureTaps(self.net, self.tap_paths).remove()  # check the paths now, not at the first step
        self.autocast = autocast

    @torch.no_grad()
    def run(self, lq: torch.Tensor):
        """``(sr, [features at the taps])`` for a batch, in one forward."""
        ctx = self.autocast() if self.autocast else torch.autocast('cpu', enabled=False)
        with ctx:
            if not self.tap_paths:
                return self.net(lq).float(), []
            with FeatureTaps(self.net, self.tap_paths) as taps:
                out = self.net(lq)
                feats = taps.features()
        return out.float(), [f.float() for f in feats]

    def providers(self) -> List[Provider]:
        def teacher_forward(step):
            sr, feats = self.run(step['lq'])
            return {'teacher_sr': sr, 'teacher_feats': feats}

        return [Provider(('teacher_sr', 'teacher_feats'), teacher_forward, deps=('lq',),
                         doc='frozen teacher output and its tapped features (no grad)')]
