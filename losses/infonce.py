"""PCL-SISR's InfoNCE over mean pixel-wise cosine similarity (Wu et al., TNNLS 2023, the contrastive loss).

Checked against the authors' released code (``src/loss/adversarial.py``, ``nce``): features are
L2-normalised along channels at every position, the similarity of two maps is the mean over positions
of the channel-wise dot product, the positive's logit comes first and ``cross_entropy`` with target 0
gives the loss per image (mean over the batch), averaged over positives and then over tapped layers.
There is no temperature in the code (tau = 1); the paper's tau is the ``temperature`` option here.

What belongs to the model, not to this loss: the official code also appends "shuffled" negatives
(the negatives of other images of the batch, ``--shuffle_neg``) -- stack them into ``negatives``;
and it computes the SR image's embedding under ``torch.no_grad`` (DESIGN.md, PCL-SISR, variant
``official``), which is done where the embedding is evaluated.
"""
from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from ckdsr.utils.registry import LOSS_REGISTRY


def mean_cosine_similarity(anchor: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """s(a, x) = mean over (H, W) of cos(a[:, :, h, w], x[:, :, h, w]) along channels.

    ``anchor (B, C, H, W)``, ``others (B, K, C, H, W)`` -> ``(B, K)``.
    """
    a = F.normalize(anchor, dim=1).unsqueeze(1)  # (B, 1, C, H, W)
    x = F.normalize(others, dim=2)
    return (a * x).sum(dim=2).mean(dim=(-2, -1))


def _as_stack(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.dim() == 4:  # a single positive / negative given as (B, C, H, W)
        return x.unsqueeze(1)
    if x.dim() != 5:
        raise ValueError(f'{name} must be (B, K, C, H, W) or (B, C, H, W), got {tuple(x.shape)}')
    return x


@LOSS_REGISTRY.register()
class PCLInfoNCELoss(nn.Module):
    """PCL-SISR contrastive loss: for each tapped layer l and each positive p_k::

        loss = -log( exp(s(a, p_k)/tau) / ( exp(s(a, p_k)/tau) + sum_j exp(s(a, n_j)/tau) ) )

    with s the mean pixel-wise cosine similarity (:func:`mean_cosine_similarity`); averaged over the
    batch, over the P positives and over the layers. Each positive is contrasted with all Q negatives,
    never with the other positives. Positives and negatives are targets and are detached.

    ``forward(anchor, positives, negatives)``: lists over layers of ``(B, C, H, W)``,
    ``(B, P, C, H, W)`` and ``(B, Q, C, H, W)`` tensors (a 4-D tensor is read as P or Q = 1).
    """

    def __init__(self, temperature: float = 1.0):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {temperature}')
        self.temperature = float(temperature)

    def layer_loss(self, anchor: torch.Tensor, positives: torch.Tensor,
                   negatives: torch.Tensor) -> torch.Tensor:
        pos = mean_cosine_similarity(anchor, positives.detach()) / self.temperature  # (B, P)
        neg = mean_cosine_similarity(anchor, negatives.detach()) / self.temperature  # (B, Q)
        neg_lse = torch.logsumexp(neg, dim=1, keepdim=True)  # (B, 1), shared by every positive
        # -log(e^p / (e^p + sum e^n)) = log(e^p + e^{lse(n)}) - p
        return (torch.logaddexp(pos, neg_lse) - pos).mean()

    def forward(self, anchor: List[torch.Tensor], positives: List[torch.Tensor],
                negatives: List[torch.Tensor]) -> torch.Tensor:
        if not (len(anchor) == len(positives) == len(negatives)) or not anchor:
            raise ValueError(f'need the same non-zero number of layers for anchor, positives and '
                             f'negatives, got {len(anchor)}, {len(positives)}, {len(negatives)}')
        total = anchor[0].new_zeros(())
        for a, p, n in zip(anchor, positives, negatives):
            p, n = _as_stack(p, 'positives'), _as_stack(n, 'negatives')
            if p.shape[0] != a.shape[0] or n.shape[0] != a.shape[0] or p.shape[2:] != a.shape[1:] \
                    or n.shape[2:] != a.shape[1:]:
                raise ValueError(f'shape mismatch: anchor {tuple(a.shape)}, positives {tuple(p.shape)}, '
                                 f'negatives {tuple(n.shape)}')
            total = total + self.layer_loss(a, p, n)
        return total / len(anchor)
