"""FAKD: feature-affinity knowledge distillation (He, Dai, Lu, Jiang, Xia; ICIP 2020), spatial-affinity loss.

For each tapped feature map F (B, C, H, W), every spatial position's C-vector is scaled to unit L2
norm, ``f / (||f||_2 + eps)`` with eps = 1e-8 added to the norm (official
``feature_transformation.spatial_similarity``), and the spatial affinity is
``A = F_hat^T F_hat`` (B, HW, HW). The loss at one tap is the mean absolute difference of the
student's and the teacher's affinities over all B*HW*HW entries (``nn.L1Loss``); the official
``FeatureLoss`` *sums* the taps (``tap_reduction='sum'``, default), ``'mean'`` averages them.
Channel counts of student and teacher may differ; spatial sizes must match. The teacher side is
detached. The official optional pooling (``MaxPool2d``/``AvgPool2d``, kernel = stride = k,
``ceil_mode=True``) before the affinity is ``pool`` / ``pool_type``.

Memory grows as B*(HW)^2 per tap; the loss refuses to start when its estimate exceeds
``max_affinity_bytes`` rather than running the device out of memory mid-training.
"""
from typing import List, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ckdsr.utils.registry import LOSS_REGISTRY

#: live (HW x HW) buffers per tap: the affinity difference, its absolute value, its gradient
_BUFFERS_PER_TAP = 3


def normalize_positions(feat: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, HW) with every position's C-vector divided by (its L2 norm + eps)."""
    f = feat.flatten(2)
    return f / (torch.linalg.vector_norm(f, dim=1, keepdim=True) + eps)


def spatial_affinity(feat: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """FAKD spatial affinity A = F_hat^T F_hat of a (B, C, H, W) map: (B, HW, HW) cosine similarities."""
    f = normalize_positions(feat, eps)
    return f.transpose(1, 2) @ f


def affinity_difference(student: torch.Tensor, teacher: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """A_S - A_T as one batched product [S_hat; T_hat]^T [S_hat; -T_hat] (one HW x HW buffer, not three)."""
    s = normalize_positions(student, eps)
    t = normalize_positions(teacher, eps)
    left = torch.cat([s, t], dim=1)
    right = torch.cat([s, -t], dim=1)
    return left.transpose(1, 2) @ right


@LOSS_REGISTRY.register()
class FAKDLoss(nn.Module):
    """Spatial-affinity distillation loss over a list of tapped feature maps.

    Args:
        eps: added to each position's L2 norm before dividing (official 1e-8).
        tap_reduction: 'sum' (official) or 'mean' over taps.
        pool: k > 1 pools features k x k (stride k, ceil mode) first; memory falls by about k^4.
        pool_type: 'max' (official default) or 'avg'.
        max_affinity_bytes: refuse to allocate affinities whose estimated total
            (sum over taps of B * (HW)^2 * element size * 3) exceeds this (default 4 GiB).
    """

    def __init__(self, eps: float = 1e-8, tap_reduction: Literal['sum', 'mean'] = 'sum', pool: int = 1,
                 pool_type: Literal['max', 'avg'] = 'max', max_affinity_bytes: int = 4 * 2 ** 30):
        super().__init__()
        if tap_reduction not in ('sum', 'mean'):
            raise ValueError(f"tap_reduction must be 'sum' or 'mean', got {tap_reduction!r}")
        if pool_type not in ('max', 'avg'):
            raise ValueError(f"pool_type must be 'max' or 'avg', got {pool_type!r}")
        if pool < 1:
            raise ValueError(f'pool must be >= 1, got {pool}')
        self.eps = eps
        self.tap_reduction = tap_reduction
        self.pool = pool
        self.pool_type = pool_type
        self.max_affinity_bytes = max_affinity_bytes

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool == 1:
            return x
        fn = F.max_pool2d if self.pool_type == 'max' else F.avg_pool2d
        return fn(x, kernel_size=self.pool, stride=self.pool, ceil_mode=True)

    def estimate_bytes(self, feats: Sequence[torch.Tensor]) -> int:
        """Estimated peak bytes of the affinity buffers for these (already pooled) maps."""
        total = 0
        for f in feats:
            b, _, h, w = f.shape
            total += b * (h * w) ** 2 * f.element_size() * _BUFFERS_PER_TAP
        return total

    def _guard(self, feats: Sequence[torch.Tensor]) -> None:
        need = self.estimate_bytes(feats)
        if need <= self.max_affinity_bytes:
            return
        sizes = ', '.join(f'{f.shape[-2]}x{f.shape[-1]}' for f in feats)
        b = feats[0].shape[0]
        raise MemoryError(
            f'FAKDLoss: spatial affinities for feature maps of {sizes} (batch {b}) need about '
            f'{need / 2 ** 30:.2f} GiB (B*(HW)^2 per tap), over max_affinity_bytes = '
            f'{self.max_affinity_bytes / 2 ** 30:.2f} GiB. Use a smaller training patch '
            f'(datasets.train.gt_size; the taps see the LR patch gt_size/scale), or set the loss '
            f'option pool: 2 (k x k pooling before the affinity, memory / k^4; now pool: {self.pool}), '
            f'or raise max_affinity_bytes if the device really has the memory.')

    def forward(self, student_feats: List[torch.Tensor], teacher_feats: List[torch.Tensor]) -> torch.Tensor:
        """Sum (or mean) over taps of mean |A_S - A_T|; lists of (B, C_s, H, W) / (B, C_t, H, W)."""
        if len(student_feats) != len(teacher_feats) or not student_feats:
            raise ValueError(f'FAKDLoss needs the same non-zero number of student and teacher taps, '
                             f'got {len(student_feats)} and {len(teacher_feats)}')
        students = [self._pool(s) for s in student_feats]
        teachers = [self._pool(t.detach()) for t in teacher_feats]
        for i, (s, t) in enumerate(zip(students, teachers)):
            if s.dim() != 4 or s.shape[0] != t.shape[0] or s.shape[-2:] != t.shape[-2:]:
                raise ValueError(f'FAKDLoss tap {i}: student {tuple(s.shape)} and teacher {tuple(t.shape)} '
                                 'must be (B, C, H, W) with equal B, H and W')
        self._guard(students)
        losses = [affinity_difference(s, t.to(s.dtype), self.eps).abs().mean()
                  for s, t in zip(students, teachers)]
        total = torch.stack(losses).sum()
        return total / len(losses) if self.tap_reduction == 'mean' else total

    def extra_repr(self) -> str:
        return (f'eps={self.eps}, tap_reduction={self.tap_reduction!r}, pool={self.pool}, '
                f'pool_type={self.pool_type!r}, max_affinity_bytes={self.max_affinity_bytes}')
