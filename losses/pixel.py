"""Pixel losses between a prediction and a target of the same shape (no weights inside)."""
from typing import Literal

import torch
from torch import nn

from ckdsr.utils.registry import LOSS_REGISTRY

Reduction = Literal['mean', 'sum', 'none']


def reduce(x: torch.Tensor, reduction: str) -> torch.Tensor:
    """'mean' over all elements, 'sum', or 'none' (elementwise)."""
    if reduction == 'mean':
        return x.mean()
    if reduction == 'sum':
        return x.sum()
    if reduction == 'none':
        return x
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


class _PixelLoss(nn.Module):
    def __init__(self, reduction: Reduction = 'mean'):
        super().__init__()
        reduce(torch.zeros(()), reduction)  # validate early
        self.reduction = reduction

    def _check(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        if pred.shape != target.shape:
            raise ValueError(f'{type(self).__name__}: pred {tuple(pred.shape)} and target '
                             f'{tuple(target.shape)} differ in shape')

    def extra_repr(self) -> str:
        return f'reduction={self.reduction!r}'


@LOSS_REGISTRY.register()
class L1Loss(_PixelLoss):
    """Mean absolute error |pred - target| (EDSR's L1 objective)."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self._check(pred, target)
        return reduce((pred - target).abs(), self.reduction)


@LOSS_REGISTRY.register()
class MSELoss(_PixelLoss):
    """Mean squared error (pred - target)^2."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self._check(pred, target)
        return reduce((pred - target) ** 2, self.reduction)


@LOSS_REGISTRY.register()
class CharbonnierLoss(_PixelLoss):
    """Charbonnier loss sqrt((pred - target)^2 + eps) (LapSRN, Lai et al. 2017, Eq. 2).

    ``eps`` is added to the squared difference, as in BasicSR (default 1e-12, i.e. a
    1e-6 floor per element).
    """

    def __init__(self, reduction: Reduction = 'mean', eps: float = 1e-12):
        super().__init__(reduction)
        self.eps = eps

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self._check(pred, target)
        return reduce(torch.sqrt((pred - target) ** 2 + self.eps), self.reduction)

    def extra_repr(self) -> str:
        return f'reduction={self.reduction!r}, eps={self.eps}'
