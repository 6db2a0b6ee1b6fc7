"""DCKD's distribution mapping module loss (Zhou et al., "Dynamic Contrastive Knowledge Distillation for
Efficient Image Restoration", AAAI 2025, DMM / L_ce).

Each position of a VQGAN latent z (B, D, h, w) gets a categorical distribution over the K codes of the
codebook E (K, D), from the negative squared distances:

    logits_k = -||z - e_k||^2 / T,      p = softmax_k(logits)

and the student is pulled to the teacher's distribution by cross-entropy (teacher -> student), averaged
over positions and batch.

Variants:

- ``'paper'``:    L = mean_{b,h,w} -sum_k p_T,k * log p_S,k
- ``'official'``: L = mean_{b,h,w} -sum_k p_T,k * log softmax_k(p_S)_k
  The released code (``basicsr/archs/vqgan_arch.py``, ``VectorQuantizerD``, and
  ``basicsr/losses/basic_loss.py``, ``CELoss``) returns the probabilities p = softmax(max_k d - d) (the
  same as softmax(-d): the shift cancels) and passes the student's and the teacher's probabilities to
  ``F.cross_entropy(p_S, p_T)``, which applies log_softmax to its input once more. So the student's
  probabilities go through a second softmax; the teacher's target is used as is. With K = 1024 codes a
  softmax of values in [0, 1] is almost uniform, so the term's value stays close to log K. The released
  code has no temperature (T = 1); here T divides the logits before the first softmax in both variants.

The distances are computed as ||z||^2 - 2 z.e + ||e||^2, never materialising (B, h, w, K, D). The
teacher distribution is a target and is detached.
"""
from typing import Literal

import torch
from torch import nn

from ckdsr.utils.registry import LOSS_REGISTRY

VARIANTS = ('paper', 'official')


def code_logits(z: torch.Tensor, codebook: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``-||z - e_k||^2 / T`` for every position and code: ``(B, D, h, w) x (K, D) -> (B, K, h, w)``."""
    if z.dim() != 4 or codebook.dim() != 2 or z.shape[1] != codebook.shape[1]:
        raise ValueError(f'need z (B, D, h, w) and codebook (K, D) with the same D, got '
                         f'{tuple(z.shape)} and {tuple(codebook.shape)}')
    z_sq = z.pow(2).sum(dim=1, keepdim=True)  # (B, 1, h, w)
    e_sq = codebook.pow(2).sum(dim=1).view(1, -1, 1, 1)  # (1, K, 1, 1)
    cross = torch.einsum('bdhw,kd->bkhw', z, codebook)  # (B, K, h, w)
    sq_dist = (z_sq - 2 * cross + e_sq).clamp_min(0)  # rounding can make a tiny distance negative
    return -sq_dist / temperature


@LOSS_REGISTRY.register()
class DMMLoss(nn.Module):
    """Cross-entropy between the teacher's and the student's code distributions (see module doc).

    ``forward(student_z, teacher_z, codebook)``: ``(B, D, h, w)``, ``(B, D, h, w)``, ``(K, D)``.
    """

    def __init__(self, variant: Literal['paper', 'official'] = 'paper', temperature: float = 1.0):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got '{variant}'")
        if temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {temperature}')
        self.variant = variant
        self.temperature = float(temperature)

    def forward(self, student_z: torch.Tensor, teacher_z: torch.Tensor,
                codebook: torch.Tensor) -> torch.Tensor:
        if student_z.shape != teacher_z.shape:
            raise ValueError(f'student_z {tuple(student_z.shape)} and teacher_z '
                             f'{tuple(teacher_z.shape)} differ in shape')
        p_teacher = torch.softmax(code_logits(teacher_z.detach(), codebook, self.temperature), dim=1)
        logits_student = code_logits(student_z, codebook, self.temperature)
        if self.variant == 'official':
            logits_student = torch.softmax(logits_student, dim=1)  # the second softmax sees these
        log_q = torch.log_softmax(logits_student, dim=1)
        return -(p_teacher * log_q).sum(dim=1).mean()
