"""Dual contrastive loss over patch logits (Yu et al., "Dual Contrastive Loss and Attention for GANs",
ICCV 2021, eqs. 3-4), as PCL-SISR trains its embedding discriminator with it.

Checked against PCL-SISR's released code (``src/loss/adversarial.py``, ``contrastive_D_loss`` and the
``patchD`` branch): every logit of the real set and of the fake set is flattened (batch *and* patch
positions together; the official run concatenates GT + sharpened GT as "real" and the negatives + the SR
output as "fake" along the batch), then

    L_D = mean_i -log( e^{r_i}  / (e^{r_i}  + sum_j e^{f_j})  )      (each real against all fakes)
        + mean_j -log( e^{-f_j} / (e^{-f_j} + sum_i e^{-r_i}) )      (each fake against all reals)

No temperature. Because the competitors of every real logit are the same set, the log-sum-exp of the
fakes is one scalar and each term is ``softplus(lse(f) - r_i)``: O(N + M), no (N, M) matrix.

Generator side: the code computes the same loss with the roles swapped,
``contrastive_D_loss(d_fake, d_real)`` (:class:`DualContrastiveGeneratorLoss`), but PCL's released
scripts pass ``--no_ad_loss``, so the SR network is trained by L1 + InfoNCE only (and the discriminator
pass on the SR image runs under ``no_grad`` anyway). The generator loss is provided for completeness.
"""
import torch
import torch.nn.functional as F
from torch import nn

from ckdsr.utils.registry import LOSS_REGISTRY


def contrastive_half(anchors: torch.Tensor, competitors: torch.Tensor) -> torch.Tensor:
    """mean_i -log( e^{a_i} / (e^{a_i} + sum_j e^{c_j}) ) over flattened ``anchors`` and ``competitors``."""
    a = anchors.reshape(-1)
    lse = torch.logsumexp(competitors.reshape(-1), dim=0)
    return F.softplus(lse - a).mean()


def dual_contrastive_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Yu et al. (2021) eqs. 3-4: reals against all fakes plus negated fakes against all negated reals."""
    return contrastive_half(real_logits, fake_logits) + contrastive_half(-fake_logits, -real_logits)


@LOSS_REGISTRY.register()
class DualContrastiveDiscriminatorLoss(nn.Module):
    """Discriminator loss: the real (GT / positive) logits score high against the fake
    (negative / SR) logits, and vice versa. ``forward(real_logits, fake_logits)``, any shapes
    (e.g. ``(B, 1, 4, 4)`` patch logits); every element is one logit."""

    def __init__(self):  # no options; explicit so the option validator sees none
        super().__init__()

    def forward(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return dual_contrastive_loss(real_logits, fake_logits)


@LOSS_REGISTRY.register()
class DualContrastiveGeneratorLoss(nn.Module):
    """Generator counterpart (roles swapped, as in PCL's code): the SR logits should win against the
    real ones. Same argument order as the discriminator loss, ``forward(real_logits, fake_logits)``;
    the swap happens inside. PCL's released scripts do not use it."""

    def __init__(self):  # no options; explicit so the option validator sees none
        super().__init__()

    def forward(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return dual_contrastive_loss(fake_logits, real_logits)
