"""L1 contrastive ratio shared by CSD (Wang et al., IJCAI 2021) and DCKD (Zhou et al.,
arXiv 2412.08939), their contrastive regularisation:

    L = sum_l w_l * mean|a_l - p_l| / (sum_k mean|a_l - n_{l,k}| + eps)

a = anchor (student) embedding, p = positive (teacher output's embedding), n_k = negatives, at
embedding layer l. Each mean is over the *whole batch* (all B*C*H*W elements), so each layer gives
one scalar ratio -- both official codes (CSD ``ContrastLoss.L1_forward``, DCKD ``ContrasLoss``)
compute ``l1(a, p) / (mean(sum_k |a - n_k|) + 1e-7)``; neither forms per-sample ratios nor detaches
the anchor in the denominator. Positive and negatives are detached here (CSD's released scripts pass
``--contrast_t_detach``; in DCKD they come from frozen nets); ``detach_positive: false``
reproduces CSD's code without that flag, where the shared-weight teacher also gets gradient.
"""
from typing import List, Sequence

import torch
from torch import nn

from utils.registry import LOSS_REGISTRY

#: CSD / DCKD layer weights for 5 embedding levels (VGG19 relu1_1..relu5_1, VQGAN levels)
DEFAULT_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)


def l1_to_negatives(anchor: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """sum_k mean|anchor - n_k|, means over the batch. ``anchor`` (B, *F); ``negatives`` either
    per sample (B, K, *F) or shared by the whole batch (K, *F), as CSD's bicubic negatives are."""
    if negatives.dim() == anchor.dim() + 1:
        if negatives.shape[0] != anchor.shape[0] or negatives.shape[2:] != anchor.shape[1:]:
            raise ValueError(f'per-sample negatives {tuple(negatives.shape)} do not fit anchor '
                             f'{tuple(anchor.shape)}: expected (B, K, *F)')
        diff = anchor.unsqueeze(1) - negatives  # (B, K, *F)
        k = negatives.shape[1]
    elif negatives.dim() == anchor.dim():
        if negatives.shape[1:] != anchor.shape[1:]:
            raise ValueError(f'shared negatives {tuple(negatives.shape)} do not fit anchor '
                             f'{tuple(anchor.shape)}: expected (K, *F)')
        diff = anchor.unsqueeze(0) - negatives.unsqueeze(1)  # (K, B, *F)
        k = negatives.shape[0]
    else:
        raise ValueError(f'negatives must be (B, K, *F) or (K, *F) for anchor (B, *F); got '
                         f'{tuple(negatives.shape)} for {tuple(anchor.shape)}')
    # mean over K*B*F elements times K == sum over k of the per-negative batch means
    return diff.abs().mean() * k


def contrastive_ratio(anchor: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor,
                      eps: float = 1e-7) -> torch.Tensor:
    """One layer's mean|a - p| / (sum_k mean|a - n_k| + eps); no detaching here."""
    if positive.shape != anchor.shape:
        raise ValueError(f'positive {tuple(positive.shape)} and anchor {tuple(anchor.shape)} differ')
    return (anchor - positive).abs().mean() / (l1_to_negatives(anchor, negatives) + eps)


@LOSS_REGISTRY.register()
class ContrastiveRatioLoss(nn.Module):
    """Weighted sum over embedding layers of the L1 contrastive ratio (see module docstring).

    Args:
        weights: one weight per layer (CSD/DCKD: 1/32, 1/16, 1/8, 1/4, 1).
        eps: added to the negative-distance denominator (both official codes: 1e-7).
        detach_positive: stop gradient through the positive (default, as CSD's scripts and DCKD).
        detach_negatives: stop gradient through the negatives (default, as both official codes).
    """

    def __init__(self, weights: Sequence[float] = DEFAULT_WEIGHTS, eps: float = 1e-7,
                 detach_positive: bool = True, detach_negatives: bool = True):
        super().__init__()
        if len(weights) == 0:
            raise ValueError('ContrastiveRatioLoss needs at least one layer weight')
        self.weights = [float(w) for w in weights]
        self.eps = eps
        self.detach_positive = detach_positive
        self.detach_negatives = detach_negatives

    def ratios(self, anchor: List[torch.Tensor], positive: List[torch.Tensor],
               negatives: List[torch.Tensor]) -> List[torch.Tensor]:
        """The unweighted per-layer ratios (for logging)."""
        if not len(anchor) == len(positive) == len(negatives) == len(self.weights):
            raise ValueError(f'ContrastiveRatioLoss has {len(self.weights)} layer weights but got '
                             f'{len(anchor)} anchor, {len(positive)} positive and {len(negatives)} '
                             'negative feature maps')
        out = []
        for a, p, n in zip(anchor, positive, negatives):
            p = p.detach() if self.detach_positive else p
            n = n.detach() if self.detach_negatives else n
            out.append(contrastive_ratio(a, p, n, self.eps))
        return out

    def forward(self, anchor: List[torch.Tensor], positive: List[torch.Tensor],
                negatives: List[torch.Tensor]) -> torch.Tensor:
        """anchor/positive: per layer (B, C, H, W); negatives: per layer (B, K, C, H, W), or
        (K, C, H, W) shared by the whole batch."""
        ratios = self.ratios(anchor, positive, negatives)
        return sum(w * r for w, r in zip(self.weights, ratios))

    def extra_repr(self) -> str:
        return (f'weights={self.weights}, eps={self.eps}, detach_positive={self.detach_positive}, '
                f'detach_negatives={self.detach_negatives}')
