"""Label-consistency regularisation (LCR) of DUKD (Zhang et al., "Data Upcycling Knowledge Distillation
for Image Super-Resolution", 2023), as DCKD's released x4 configs use it (DCKD*).

The teacher sees an invertibly transformed LR input; its SR output is transformed back and the student's
output on the plain input is pulled to it with L1. The model runs the teacher; this module provides the
transforms, their sampling and the loss.

Transforms (names joined with '+' compose, applied left to right, undone right to left):

- ``'invert'``: colour inversion ``img_range - x``; undone on the SR output by ``img_range - y``
  (an SR network maps an inverted image to about the inverse of its SR image);
- ``'hflip'``: left-right mirror (flip along W, dim -1);
- ``'vflip'``: up-down mirror (flip along H, dim -2);
- ``'transpose'``: swap H and W;
- ``'identity'``.

Both released codes (DUKD ``noising``; DCKD ``noising`` with ``revert``) draw each of the four ops
independently per image with probability ``prob`` (DCKD x4 config: 0.5; DUKD default 0.3) and apply
them in the order invert, flip H (their 'h'), flip W (their 'v'), transpose; :func:`sample_transforms`
returns names in that order (``invert+vflip+hflip+transpose``; their 'h' is our 'vflip'). DCKD undoes
in the reverse order, which is the exact inverse and what :func:`undo_transform` does. DUKD undoes by
applying the same ordered ops again, which is not the inverse when exactly one flip is combined with
the transpose (``transpose(vflip(transpose(vflip(x))))`` is a 180-degree rotation of x).
:func:`undo_transform` with ``order='forward'`` reproduces that for ``distill.dukd``'s official variant.
The loss in both codes is ``L1Loss`` (mean).

Exactness: flips and transposes are exact; ``img_range - (img_range - x)`` is exact only for values
whose float representation allows it (e.g. k/256), not for every k/255.
"""
from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

from ckdsr.utils.registry import LOSS_REGISTRY

OPS = ('invert', 'vflip', 'hflip', 'transpose')  # canonical order, as the released codes apply them
IDENTITY = 'identity'


def parse_transform(name: str) -> List[str]:
    """Split ``'invert+hflip'`` into its ops; ``'identity'`` is the empty list."""
    if name == IDENTITY:
        return []
    ops = name.split('+')
    for op in ops:
        if op not in OPS:
            raise ValueError(f"unknown transform '{op}' in '{name}'; valid: {', '.join(OPS)}, "
                             f"'{IDENTITY}', or ops joined with '+'")
    return ops


def _apply_op(x: torch.Tensor, op: str, img_range: float) -> torch.Tensor:
    if op == 'invert':
        return img_range - x
    if op == 'hflip':
        return x.flip(-1)
    if op == 'vflip':
        return x.flip(-2)
    return x.transpose(-2, -1)


def apply_transform(x: torch.Tensor, name: str, img_range: float = 1.0) -> torch.Tensor:
    """Apply the (composite) transform ``name`` to every image of ``x (..., H, W)``."""
    for op in parse_transform(name):
        x = _apply_op(x, op, img_range)
    return x


UNDO_ORDERS = ('reverse', 'forward')


def undo_transform(y: torch.Tensor, name: str, img_range: float = 1.0, order: str = 'reverse') -> torch.Tensor:
    """Undo ``name`` on an output ``y`` (e.g. the SR of a transformed LR): every op is its own inverse
    (inversion: ``img_range - y``), so the ops are applied again in reverse order.

    ``order='forward'`` re-applies them in the forward order instead, as DUKD's released code does
    (``models/dukd_model.py``): not the inverse when the transpose meets exactly one flip."""
    if order not in UNDO_ORDERS:
        raise ValueError(f"undo order must be one of {', '.join(UNDO_ORDERS)}, got {order!r}")
    ops = parse_transform(name)
    for op in (reversed(ops) if order == 'reverse' else ops):
        y = _apply_op(y, op, img_range)
    return y


def _per_image(x: torch.Tensor, names: Sequence[str], fn, img_range: float) -> torch.Tensor:
    if len(names) != x.shape[0]:
        raise ValueError(f'got {len(names)} transform names for a batch of {x.shape[0]}')
    if x.shape[-1] != x.shape[-2] and any('transpose' in parse_transform(n) for n in names):
        raise ValueError(f'a per-image transpose needs square images to keep one batch, got '
                         f'{tuple(x.shape[-2:])}')
    order, pieces = [], []
    for name in dict.fromkeys(names):  # unique names, first-seen order
        idx = [i for i, n in enumerate(names) if n == name]
        order.extend(idx)
        pieces.append(fn(x[idx], name, img_range))
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return torch.cat(pieces)[inverse.to(x.device)]


def apply_transforms(x: torch.Tensor, names: Sequence[str], img_range: float = 1.0) -> torch.Tensor:
    """Apply ``names[i]`` to image ``x[i]`` of a batch ``(B, C, H, W)``."""
    return _per_image(x, names, apply_transform, img_range)


def undo_transforms(y: torch.Tensor, names: Sequence[str], img_range: float = 1.0,
                    order: str = 'reverse') -> torch.Tensor:
    """Undo ``names[i]`` on output ``y[i]`` of a batch ``(B, C, H, W)`` (``order``: see
    :func:`undo_transform`)."""
    return _per_image(y, names, lambda x, name, r: undo_transform(x, name, r, order), img_range)


def check_ops(ops: Sequence[str], key: str) -> Tuple[str, ...]:
    """``ops`` as a tuple; a ValueError naming the option ``key`` when it is empty or holds an op not in
    :data:`OPS`."""
    ops = tuple(ops)
    bad = [op for op in ops if op not in OPS]
    if bad or not ops:
        raise ValueError(f"{key}: {bad or 'empty'}; choose among {', '.join(OPS)}")
    return ops


def sample_transforms(n: int, generator: Optional[torch.Generator] = None, prob: float = 0.5,
                      ops: Sequence[str] = OPS) -> List[str]:
    """Draw one composite transform per image: each op of ``ops`` is included independently with
    probability ``prob`` (as DUKD/DCKD do). Names list the ops in canonical order; none -> 'identity'."""
    for op in ops:
        if op not in OPS:
            raise ValueError(f"unknown transform '{op}'; valid: {', '.join(OPS)}")
    canonical = [op for op in OPS if op in ops]
    draws = torch.rand(n, len(canonical), generator=generator) < prob
    return ['+'.join(op for op, on in zip(canonical, row) if on) or IDENTITY for row in draws.tolist()]


@LOSS_REGISTRY.register()
class LabelConsistencyLoss(nn.Module):
    """L1 (mean absolute difference) between the student's SR of the plain input and the teacher's SR
    of the transformed input, transformed back. ``forward(student_sr, teacher_sr_undone)``; the teacher
    side is a target and is detached. L1 is what DUKD and DCKD use (``L1Loss``, mean)."""

    def __init__(self):  # no options; explicit so the option validator sees none
        super().__init__()

    def forward(self, student_sr: torch.Tensor, teacher_sr_undone: torch.Tensor) -> torch.Tensor:
        if student_sr.shape != teacher_sr_undone.shape:
            raise ValueError(f'student_sr {tuple(student_sr.shape)} and teacher_sr_undone '
                             f'{tuple(teacher_sr_undone.shape)} differ in shape')
        return (student_sr - teacher_sr_undone.detach()).abs().mean()
