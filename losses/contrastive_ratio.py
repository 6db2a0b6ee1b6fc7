"""L1 contrastive ratio shared by CSD (Wang et al., IJCAI 2021) and DCKD (Zhou et al.,
arXiv 2412.08939), their contrastive regularisation:

    L = sum_l w_l * mean|a_l - p_l| / (sum_k mean|a_l - n_{l,k}| + eps)

a = anchor (student) embedding, p = positive (teacher output's embedding), n_k = negatives, at
embedding layer l. Each mean is over the *whole batch* (all B*C*H*W elements; by default the
global batch of every DDP rank, below), so each layer gives
one scalar ratio -- both official codes (CSD ``ContrastLoss.L1_forward``, DCKD ``ContrasLoss``)
compute ``l1(a, p) / (mean(sum_k |a - n_k|) + 1e-7)``; neither forms per-sample ratios nor detaches
the anchor in the denominator. Positive and negatives are detached here (CSD's released scripts pass
``--contrast_t_detach``; in DCKD they come from frozen nets); ``detach_positive: false``
reproduces CSD's code without that flag, where the shared-weight teacher also gets gradient.

Several GPUs (issue 17, point 8). Every mean is ``sum / count`` and, per layer, the numerator's and
the denominator's count are both the anchor's element count (``sum_k mean_{B*F}|a - n_k| =
sum_{k,B,F}|a - n_k| / (B*F)``). ``reduce: global`` (default) all-reduces the per-layer sums and
counts over the DDP ranks (:func:`ckdsr.utils.dist_gather.all_reduce_sum`, a few scalars instead of the
embeddings of the whole batch), so every mean runs over the GLOBAL batch and W GPUs x b images
compute the value and, after DDP's gradient averaging, the gradient of one process on W*b images.
Per-sample negatives (DCKD) need nothing else; negatives shared by the batch (CSD) must be the same
tensor on every rank (:class:`ckdsr.models.distill.negatives.BicubicNegatives` draws them so). With one
process ``global`` and ``local`` give identical results. ``reduce: local`` takes the means over this
rank's images only: the released codes' per-GPU ratio. DCKD's release runs 4 GPUs x 16 images
(``docs/dckd.md``, release row 4: "B16G4") and each process computes ``cri_cl`` on its own batch
(``basicsr/models/dckd_model.py`` ``optimize_parameters``; nothing gathered) -- ``local`` with 4
processes reproduces it; CSD's release trains on one GPU (``demo.sh``:
``CUDA_VISIBLE_DEVICES=1``, ``--n_GPUs`` default 1, batch 16), its ratio over the whole batch --
``global`` reproduces it with any number of GPUs. Do not combine ``global`` with inputs that are
already gathered (``*_global`` signals): the gradient would be summed over ranks twice.
"""
from typing import List, Literal, Sequence, Tuple

import torch
from torch import nn

from ckdsr.utils.dist_gather import all_reduce_sum
from ckdsr.utils.registry import LOSS_REGISTRY

#: CSD / DCKD layer weights for 5 embedding levels (VGG19 relu1_1..relu5_1, VQGAN levels)
DEFAULT_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)


def _accumulator(t: torch.Tensor) -> torch.dtype:
    """Sums in at least float32 (a half-precision sum of |.| over a batch overflows)."""
    return torch.promote_types(t.dtype, torch.float32)


def negative_abs_sum(anchor: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """sum over k and all elements of |anchor - n_k|. ``anchor`` (B, *F); ``negatives`` either per
    sample (B, K, *F) or shared by the whole batch (K, *F), as CSD's bicubic negatives are."""
    if negatives.dim() == anchor.dim() + 1:
        if negatives.shape[0] != anchor.shape[0] or negatives.shape[2:] != anchor.shape[1:]:
            raise ValueError(f'per-sample negatives {tuple(negatives.shape)} do not fit anchor '
                             f'{tuple(anchor.shape)}: expected (B, K, *F)')
        diff = anchor.unsqueeze(1) - negatives  # (B, K, *F)
    elif negatives.dim() == anchor.dim():
        if negatives.shape[1:] != anchor.shape[1:]:
            raise ValueError(f'shared negatives {tuple(negatives.shape)} do not fit anchor '
                             f'{tuple(anchor.shape)}: expected (K, *F)')
        diff = anchor.unsqueeze(0) - negatives.unsqueeze(1)  # (K, B, *F)
    else:
        raise ValueError(f'negatives must be (B, K, *F) or (K, *F) for anchor (B, *F); got '
                         f'{tuple(negatives.shape)} for {tuple(anchor.shape)}')
    return diff.abs().sum(dtype=_accumulator(anchor))


def l1_to_negatives(anchor: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """sum_k mean|anchor - n_k|, means over this batch's B*F anchor elements (shapes as in
    :func:`negative_abs_sum`)."""
    return negative_abs_sum(anchor, negatives) / anchor.numel()


def abs_sums(anchor: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """One layer's (sum|a - p|, sum_k sum|a - n_k|) as a 2-vector: both divided by ``anchor.numel()``
    they are the ratio's numerator and denominator means."""
    if positive.shape != anchor.shape:
        raise ValueError(f'positive {tuple(positive.shape)} and anchor {tuple(anchor.shape)} differ')
    return torch.stack([(anchor - positive).abs().sum(dtype=_accumulator(anchor)),
                        negative_abs_sum(anchor, negatives)])


def ratio_from_sums(sums: torch.Tensor, count, eps: float) -> torch.Tensor:
    """(sums[..., 0] / count) / (sums[..., 1] / count + eps)."""
    return (sums[..., 0] / count) / (sums[..., 1] / count + eps)


def contrastive_ratio(anchor: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor,
                      eps: float = 1e-7) -> torch.Tensor:
    """One layer's mean|a - p| / (sum_k mean|a - n_k| + eps) over this batch; no detaching here."""
    return ratio_from_sums(abs_sums(anchor, positive, negatives), anchor.numel(), eps)


@LOSS_REGISTRY.register()
class ContrastiveRatioLoss(nn.Module):
    """Weighted sum over embedding layers of the L1 contrastive ratio (see module docstring).

    Args:
        weights: one weight per layer (CSD/DCKD: 1/32, 1/16, 1/8, 1/4, 1).
        eps: added to the negative-distance denominator (both official codes: 1e-7).
        detach_positive: stop gradient through the positive (default, as CSD's scripts and DCKD).
        detach_negatives: stop gradient through the negatives (default, as both official codes).
        reduce: ``global`` (default): the means run over every DDP rank's images (per-layer sums
            and counts all-reduced), so the loss does not depend on the GPU count; ``local``: over
            this rank's images, the released codes' per-GPU ratio (DCKD's release: 4 GPUs x 16).
            Identical with one process. Every rank must call a ``global`` loss in the same order.
    """

    def __init__(self, weights: Sequence[float] = DEFAULT_WEIGHTS, eps: float = 1e-7,
                 detach_positive: bool = True, detach_negatives: bool = True,
                 reduce: Literal['global', 'local'] = 'global'):
        super().__init__()
        if len(weights) == 0:
            raise ValueError('ContrastiveRatioLoss needs at least one layer weight')
        if reduce not in ('global', 'local'):
            raise ValueError(f"ContrastiveRatioLoss reduce: '{reduce}' is not one of global, local")
        self.weights = [float(w) for w in weights]
        self.eps = eps
        self.detach_positive = detach_positive
        self.detach_negatives = detach_negatives
        self.reduce = reduce

    @property
    def reduces_over_ranks(self) -> bool:
        """True when the loss sums over DDP ranks itself: its inputs must be per-rank signals
        (checked by :mod:`ckdsr.models.distill.gather`)."""
        return self.reduce == 'global'

    def ratios(self, anchor: List[torch.Tensor], positive: List[torch.Tensor],
               negatives: List[torch.Tensor]) -> List[torch.Tensor]:
        """The unweighted per-layer ratios (for logging; ``global``: a collective, every rank calls it)."""
        if not len(anchor) == len(positive) == len(negatives) == len(self.weights):
            raise ValueError(f'ContrastiveRatioLoss has {len(self.weights)} layer weights but got '
                             f'{len(anchor)} anchor, {len(positive)} positive and {len(negatives)} '
                             'negative feature maps')
        sums, counts = self._sums_and_counts(anchor, positive, negatives)
        if self.reduce == 'global':
            sums, counts = all_reduce_sum(sums), all_reduce_sum(counts)
        return list(ratio_from_sums(sums, counts.to(sums.dtype), self.eps).unbind(0))

    def _sums_and_counts(self, anchor, positive, negatives) -> Tuple[torch.Tensor, torch.Tensor]:
        """(L, 2) sums of :func:`abs_sums` and the (L,) anchor element counts of this rank."""
        sums = []
        for a, p, n in zip(anchor, positive, negatives):
            p = p.detach() if self.detach_positive else p
            n = n.detach() if self.detach_negatives else n
            sums.append(abs_sums(a, p, n))
        dtype = sums[0].dtype
        for s in sums[1:]:
            dtype = torch.promote_types(dtype, s.dtype)
        stacked = torch.stack([s.to(dtype) for s in sums])
        counts = torch.tensor([a.numel() for a in anchor], dtype=torch.int64, device=stacked.device)
        return stacked, counts

    def forward(self, anchor: List[torch.Tensor], positive: List[torch.Tensor],
                negatives: List[torch.Tensor]) -> torch.Tensor:
        """anchor/positive: per layer (B, C, H, W); negatives: per layer (B, K, C, H, W), or
        (K, C, H, W) shared by the whole batch (the same on every rank with ``reduce: global``)."""
        ratios = self.ratios(anchor, positive, negatives)
        return sum(w * r for w, r in zip(self.weights, ratios))

    def extra_repr(self) -> str:
        return (f'weights={self.weights}, eps={self.eps}, detach_positive={self.detach_positive}, '
                f'detach_negatives={self.detach_negatives}, reduce={self.reduce}')
