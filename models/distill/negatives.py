"""Negative images for contrastive terms (signal ``negatives``).

* ``bicubic`` (CSD): bicubic-upsampled LR images of the batch, shared by every anchor: (K,C,H,W).
* ``history`` (DCKD): the history model on the clean LR and N-1 degraded copies, in one
  batched forward: (B,N,C,H,W). Provided by :mod:`models.distill.history`.
"""
from typing import Any, Dict, List

import torch
import torch.nn.functional as F

from models.distill.component import Component
from models.signals import Provider


class BicubicNegatives(Component):
    """CSD's negatives: ``num`` batch images' LR, bicubic-upsampled (shared across the batch)."""

    name = 'negatives'

    def __init__(self, num: int, scale: int, seed: int = 0, clamp: bool = True):
        self.num, self.scale, self.clamp = num, scale, clamp
        self.generator = torch.Generator().manual_seed(seed)

    def providers(self) -> List[Provider]:
        def make(step):
            lq = step['lq']
            b = lq.shape[0]
            idx = torch.randperm(b, generator=self.generator)[:min(self.num, b)].to(lq.device)
            up = F.interpolate(lq[idx], scale_factor=self.scale, mode='bicubic', align_corners=False)
            # CSD's released code keeps the bicubic overshoot (clamp=False)
            return {'negatives': up.clamp(0, 1) if self.clamp else up}

        return [Provider(('negatives',), make, deps=('lq',), doc='bicubic-upsampled LR of batch images')]

    def state_dict(self) -> Dict[str, Any]:
        return {'generator': self.generator.get_state()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if 'generator' in state:
            self.generator.set_state(state['generator'])
