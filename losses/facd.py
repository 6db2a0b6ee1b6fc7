"""FACD: feature-domain adaptive contrastive distillation (Moon et al., IEEE Access 2023).

Three pieces, all pure functions of tensors:

- :func:`adaptive_indicator` -- the per-patch switch alpha_i of the adaptive distillation;
- :class:`FACDReconstructionLoss` -- the adaptive image loss L_SR;
- :class:`FACDFeatureContrastLoss` -- the feature-domain contrastive loss (and, applied to output
  images with one "tap", the ICD ablation).

There is no released code. Where the paper text could not be checked, the choices are options and are
documented below (see also DESIGN.md, method table, row FACD).

Notation: ``||a - b||_1`` of two images/feature maps means the *mean* absolute difference over all of
their elements (C*H*W), as ``torch.nn.L1Loss`` computes it, not the sum.

Units (assumption, no released code): the networks see [0, 1] images. ``pixel_range`` of
:class:`FACDReconstructionLoss` says on which range L_SR is measured: 1 (default, [0, 1]) or 255
(EDSR-PyTorch's [0, 255], the code base of FAKD and CSD), which multiplies L_SR by 255 and so
changes its balance against lambda * L_FACD (the contrastive ratio has no unit).
"""
from typing import List, Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ckdsr.utils.registry import LOSS_REGISTRY

NORMALIZE_MODES = ('channel', 'image', 'none')
DISTANCES = ('l1_ratio', 'infonce')
BATCH_REDUCTIONS = ('sum', 'mean')
PIXEL_RANGES = (1, 255)


def per_image_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of each image pair: ``(B, ...) x (B, ...) -> (B,)``."""
    return (a - b).abs().flatten(1).mean(dim=1)


@torch.no_grad()
def adaptive_indicator(sr: torch.Tensor, teacher: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """FACD's adaptive-distillation switch alpha, one value per image/patch, shape ``(B,)``.

    alpha_i = 0 where the student is already closer to the ground truth than the teacher,
    ``||S_i - GT_i||_1 < ||T_i - GT_i||_1`` (no distillation from the teacher for that patch), else 1.
    A tie counts as "not better" (alpha = 1). Computed without gradient; returned in ``sr.dtype``.
    """
    if not (sr.shape == teacher.shape == gt.shape):
        raise ValueError(f'sr, teacher and gt must have the same shape, got {tuple(sr.shape)}, '
                         f'{tuple(teacher.shape)}, {tuple(gt.shape)}')
    student_better = per_image_l1(sr, gt) < per_image_l1(teacher, gt)
    return (~student_better).to(sr.dtype)


def _check_alpha(alpha: torch.Tensor, batch: int) -> torch.Tensor:
    alpha = torch.as_tensor(alpha)
    if alpha.dim() != 1 or alpha.shape[0] != batch:
        raise ValueError(f'alpha must have shape ({batch},), got {tuple(alpha.shape)}')
    return alpha


@LOSS_REGISTRY.register()
class FACDReconstructionLoss(nn.Module):
    """FACD's adaptive image loss (paper: L_SR)::

        L_SR = 1/(2N) * sum_i [ (2 - alpha_i) * ||S_i - GT_i||_1 + alpha_i * ||S_i - T_i||_1 ]

    with N the batch size and ``||.||_1`` the mean absolute difference over a patch. With alpha_i = 1 a
    patch gets 0.5*L1(S, GT) + 0.5*L1(S, T) (as in FAKD); with alpha_i = 0 it gets L1(S, GT) only.

    Args:
        use_alpha: False gives the FCD ablation (alpha_i = 1 for every patch).
        pixel_range: 1 (default): ``||.||_1`` on [0, 1] images; 255: on [0, 255] images, i.e. L_SR
            x 255 (the EDSR-PyTorch convention). Which one the paper used is unknown (no released
            code): an assumption either way. alpha is the same under both.

    ``forward(sr, teacher, gt, alpha=None)``: ``alpha`` (B,) as given by :func:`adaptive_indicator`
    (computed here when omitted and ``use_alpha``; ignored when not ``use_alpha``). The teacher image is
    a target: it is detached.
    """

    def __init__(self, use_alpha: bool = True, pixel_range: int = 1):
        super().__init__()
        if pixel_range not in PIXEL_RANGES:
            raise ValueError(f'pixel_range must be one of {PIXEL_RANGES} (images in [0, 1] or [0, 255]), '
                             f'got {pixel_range!r}')
        self.use_alpha = use_alpha
        self.pixel_range = int(pixel_range)

    def forward(self, sr: torch.Tensor, teacher: torch.Tensor, gt: torch.Tensor,
                alpha: Optional[torch.Tensor] = None) -> torch.Tensor:
        teacher = teacher.detach()
        batch = sr.shape[0]
        if not self.use_alpha:
            alpha = sr.new_ones(batch)
        elif alpha is None:
            alpha = adaptive_indicator(sr, teacher, gt)
        alpha = _check_alpha(alpha, batch).to(sr.dtype)
        per_image = (2 - alpha) * per_image_l1(sr, gt) + alpha * per_image_l1(sr, teacher)
        return self.pixel_range * per_image.sum() / (2 * batch)


def normalize_features(feat: torch.Tensor, mode: str) -> torch.Tensor:
    """L2 normalisation of ``(B, C, H, W)`` features: ``'channel'`` (each position's C-vector),
    ``'image'`` (each whole map) or ``'none'``."""
    if mode not in NORMALIZE_MODES:
        raise ValueError(f"normalize must be one of {NORMALIZE_MODES}, got '{mode}'")
    if mode == 'channel':  # unit L2 norm of each position's channel vector
        return F.normalize(feat, dim=1)
    if mode == 'image':  # unit L2 norm of each whole feature map
        return F.normalize(feat.flatten(1), dim=1).view_as(feat)
    return feat


def _pairwise_mean_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``D[i, j] = mean |a_i - b_j|`` over all elements of an image, shape ``(B, B)``.

    Memory: ``torch.cdist(p=1)`` keeps nothing of size B*B*C*H*W for backward, but its CUDA backward
    allocates a transient (B, B, C*H*W) buffer (the CPU one does not): 16 x 16 x 256 x 48 x 48 floats
    = 0.6 GB for an EDSR-R32C256 tap at LR patch 48.
    """
    a2, b2 = a.flatten(1), b.flatten(1)
    return torch.cdist(a2.unsqueeze(0), b2.unsqueeze(0), p=1)[0] / a2.shape[1]


@LOSS_REGISTRY.register()
class FACDFeatureContrastLoss(nn.Module):
    """FACD's feature-domain contrastive loss, summed over taps with ``tap_weights``.

    For tap l, student features s (already mapped to the teacher's channels by the regressor) and
    teacher features t, after L2 normalisation, with d(a, b) the mean absolute difference:

    - ``'l1_ratio'`` (paper)::

          loss_i = d(s_i, t_i) / ( sum_{j != i} [ d(s_i, t_j) + d(s_i, s_j) ] + eps )

    - ``'infonce'`` (alternative)::

          loss_i = -log( exp(-d(s_i, t_i)/tau) /
                         ( exp(-d(s_i, t_i)/tau) + sum_{j != i} [exp(-d(s_i, t_j)/tau) + exp(-d(s_i, s_j)/tau)] ) )

    The positive of image i is the teacher's feature of image i; its negatives are the teacher's and the
    student's features of the other images of the batch. Per tap: ``sum_i alpha_i * loss_i`` with
    ``batch_reduction: sum`` (default: the paper's Eq. 4 sums over the batch with no 1/N), or
    ``(1/B) * sum_i alpha_i * loss_i`` with ``mean``. With ``sum`` the ratio form keeps its scale
    whatever B is (loss_i shrinks like 1/(2(B-1)), the number of negatives); with ``mean`` it
    shrinks like 1/B. The model feeds the *global* batch (all DDP ranks; ``distill.gather``), so B
    -- and with it the negatives -- does not depend on the GPU count.

    alpha: the paper multiplies the positive term by alpha_i. In the ratio form that is exactly
    ``alpha_i * loss_i``; we use the same per-image weight for ``'infonce'``, the only reading under
    which alpha_i = 0 switches distillation off for that patch ("selective distillation"). With
    ``mean`` the division is by all B images (not by the images with alpha = 1); a batch with every
    alpha = 0 gives 0.

    Normalisation (``normalize``): ``'channel'`` (default) scales each position's C-vector to unit L2
    norm; ``'image'`` scales each whole (C, H, W) map; ``'none'`` leaves the input as is -- use it when
    the inputs are normalised already (the FACD component's ``student_feats_regressed`` and
    ``teacher_feats_normalized``, which follow ``distill.facd.order``) and for the ICD ablation on
    RGB images (one tap: ``tap_weights: [1.0]``). Normalising here normalises the regressor's
    output: the ``regress_then_normalize`` order, not the paper's (Eq. 3-4).

    Gradients flow into the student features both as anchors and as negatives of the other images;
    teacher features are targets and are detached.

    A batch of one image has no negatives: ``forward`` raises ``ValueError`` rather than return
    ``d_pos / eps`` (ratio) or 0 (InfoNCE), both meaningless.

    ``forward(student_feats, teacher_feats, alpha=None)``: lists (one entry per tap) of ``(B, C, H, W)``
    tensors, same shapes pairwise; ``alpha`` ``(B,)`` or None (all ones).
    """

    def __init__(self, tap_weights: Sequence[float] = (0.5, 0.3, 0.2),
                 distance: Literal['l1_ratio', 'infonce'] = 'l1_ratio', temperature: float = 1.0,
                 eps: float = 1e-7, normalize: Literal['channel', 'image', 'none'] = 'channel',
                 batch_reduction: Literal['sum', 'mean'] = 'sum'):
        super().__init__()
        if batch_reduction not in BATCH_REDUCTIONS:
            raise ValueError(f"batch_reduction must be one of {BATCH_REDUCTIONS}, got '{batch_reduction}'")
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got '{distance}'")
        if normalize not in NORMALIZE_MODES:
            raise ValueError(f"normalize must be one of {NORMALIZE_MODES}, got '{normalize}'")
        if temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {temperature}')
        self.tap_weights = [float(w) for w in tap_weights]
        self.distance = distance
        self.temperature = float(temperature)
        self.eps = float(eps)
        self.normalize = normalize
        self.batch_reduction = batch_reduction

    def tap_loss(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Per-image loss ``(B,)`` for one tap (before the alpha weighting)."""
        s, t = normalize_features(s, self.normalize), normalize_features(t, self.normalize)
        d_st = _pairwise_mean_l1(s, t)  # (B, B): row i = distances of s_i to every teacher feature
        d_ss = _pairwise_mean_l1(s, s)  # (B, B): row i = distances of s_i to every student feature
        d_pos = d_st.diagonal()
        off_diag = ~torch.eye(s.shape[0], dtype=torch.bool, device=s.device)
        if self.distance == 'l1_ratio':
            d_neg = (d_st * off_diag).sum(1) + (d_ss * off_diag).sum(1)
            return d_pos / (d_neg + self.eps)
        logits_t = -d_st / self.temperature  # includes the positive on the diagonal
        logits_s = (-d_ss / self.temperature).masked_fill(~off_diag, float('-inf'))
        return torch.logsumexp(torch.cat([logits_t, logits_s], dim=1), dim=1) + d_pos / self.temperature

    def forward(self, student_feats: List[torch.Tensor], teacher_feats: List[torch.Tensor],
                alpha: Optional[torch.Tensor] = None) -> torch.Tensor:
        if not (len(student_feats) == len(teacher_feats) == len(self.tap_weights)):
            raise ValueError(f'got {len(student_feats)} student taps, {len(teacher_feats)} teacher taps '
                             f'and {len(self.tap_weights)} tap_weights; they must be equal')
        batch = student_feats[0].shape[0]
        if batch < 2:
            raise ValueError('FACDFeatureContrastLoss needs at least 2 images per batch: the negatives '
                             'of an image are the other images of the batch (got batch size 1)')
        if alpha is None:
            alpha = student_feats[0].new_ones(batch)
        alpha = _check_alpha(alpha, batch)
        total = student_feats[0].new_zeros(())
        for weight, s, t in zip(self.tap_weights, student_feats, teacher_feats):
            if s.shape != t.shape:
                raise ValueError(f'student and teacher features differ in shape: {tuple(s.shape)} vs '
                                 f'{tuple(t.shape)} (map the student to the teacher channels first)')
            per_image = self.tap_loss(s, t.detach())
            weighted = alpha.to(per_image.dtype) * per_image
            total = total + weight * (weighted.sum() if self.batch_reduction == 'sum' else weighted.mean())
        return total
