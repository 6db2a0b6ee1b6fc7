"""SRModel: plain supervised training of one SR network (teachers, scratch students)."""
from typing import Any, Dict

import torch

from ckdsr.models.base_model import BaseModel
import ckdsr.losses  # noqa: F401  (fills LOSS_REGISTRY)
from ckdsr.utils.build import build_from_cfg
from ckdsr.utils.registry import LOSS_REGISTRY, MODEL_REGISTRY


@MODEL_REGISTRY.register()
class SRModel(BaseModel):
    """``L = loss_weight * pixel_opt(net_g(lq), gt)`` (BasicSR's ``pixel_opt``)."""

    def build_losses(self, train_opt: Dict[str, Any]) -> None:
        cfg = train_opt.get('pixel_opt') or {'type': 'L1Loss', 'loss_weight': 1.0}
        self.pixel_weight = cfg.get('loss_weight', 1.0)
        self.pixel_loss = build_from_cfg(cfg, LOSS_REGISTRY, skip=('loss_weight',)).to(self.device)

    def compute_losses(self, current_iter: int) -> Dict[str, torch.Tensor]:
        self.output = self.net_g(self.lq)
        return {'l_pix': self.pixel_weight * self.pixel_loss(self.output, self.gt)}
