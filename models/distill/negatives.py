"""Negative images for contrastive terms (signal ``negatives``).

* ``bicubic`` (CSD): bicubic-upsampled LR images of the GLOBAL batch (all DDP ranks' images, so
  ``num`` negatives are drawn from the same images whatever the GPU count; issue 17, point 8),
  shared by every anchor: (K,C,H,W), the same on every rank.
* ``history`` (DCKD): the history model on the clean LR and N-1 degraded copies, in one
  batched forward: (B,N,C,H,W). Provided by :mod:`ckdsr.models.distill.history`.
"""
from typing import List

import torch
import torch.nn.functional as F

from ckdsr.models.distill.component import SeededComponent
from ckdsr.models.distill.gather import require_global_inputs
from ckdsr.models.signals import Provider
from ckdsr.utils.dist_gather import gather_batch


class BicubicNegatives(SeededComponent):
    """CSD's negatives: ``num`` images of the global batch, their LR bicubic-upsampled (shared across
    the batch). The LR batch is gathered from every rank (no gradient: the negatives are detached)
    and every rank draws the same indices (same seed, same generator state), so a run on W GPUs of
    b images uses the negatives one process uses on W*b images: ``min(num, W*b)`` of them."""

    name = 'negatives'

    def __init__(self, num: int, scale: int, seed: int = 0, clamp: bool = True):
        self.num, self.scale, self.clamp = num, scale, clamp
        self.generator = torch.Generator().manual_seed(seed)
        self.checked = False

    def before_step(self, model, current_iter: int) -> None:
        """CSD's ratio averages over the whole batch: with several processes its loss must reduce over
        the ranks (ContrastiveRatioLoss ``reduce: global``) or read the gathered batch (``distill.gather``),
        or it is refused."""
        if not self.checked:
            require_global_inputs(model, 'ContrastiveRatioLoss', ('anchor', 'positive'),
                                  "CSD's contrastive ratio (batch means over the anchors)")
            self.checked = True

    def providers(self) -> List[Provider]:
        def make(step):
            lq = gather_batch(step['lq'].detach())  # the global batch, rank order
            b = lq.shape[0]
            idx = torch.randperm(b, generator=self.generator)[:min(self.num, b)].to(lq.device)
            up = F.interpolate(lq[idx], scale_factor=self.scale, mode='bicubic', align_corners=False)
            # CSD's released code keeps the bicubic overshoot (clamp=False)
            return {'negatives': up.clamp(0, 1) if self.clamp else up}

        return [Provider(('negatives',), make, deps=('lq',), doc='bicubic-upsampled LR of batch images')]
