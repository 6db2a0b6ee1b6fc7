"""Label-consistency regularisation (LCR) of DUKD as DCKD's released configs use it (DCKD*).

Signal ``lcr_teacher_sr`` = undo(teacher(apply(lq))): each LR image gets an independently drawn
composite of colour inversion, the two flips and a transpose (each op with probability ``prob``;
DCKD's released x2/x3/x4 configs: ``noisy.prob: 0.5``, all four ops), the teacher runs on the
transformed batch and its SR output is transformed back (:func:`ckdsr.losses.lcr.undo_transforms`, the
exact inverse, as DCKD's ``noising(..., revert=True)``). The
:class:`ckdsr.losses.lcr.LabelConsistencyLoss` term pulls the student's output on the *plain* LR to it:

    L_lcr = mean | S(x) - T^{-1}(teacher(T(x))) |     (DUKD label consistency; DCKD released cri_lcr)

The student never sees the transformed input (released DCKD code: ``s_out = net_g(lq)`` only).

One teacher forward: the transformed batch is handed to the :class:`~models.distill.teacher.Teacher`
(:meth:`add_input`), which concatenates it with the plain LR batch, as the official code does with
``net_t(torch.cat([lq, t_lq]))``. With non-square LR images, transposed images change shape and
form a second group (a second teacher forward); training patches are square, so that never happens
in training.
"""
from typing import Any, Dict, List, Sequence

import torch

from ckdsr.losses.lcr import (IDENTITY, OPS, apply_transforms, check_ops, parse_transform, sample_transforms,
                              undo_transforms)
from ckdsr.models.distill.component import SeededComponent
from ckdsr.models.distill.registry import ComponentSpec, register_component
from ckdsr.models.signals import Provider
from ckdsr.utils.option_spec import Field, Section


def _without_transpose(name: str) -> str:
    ops = [op for op in parse_transform(name) if op != 'transpose']
    return '+'.join(ops) or IDENTITY


def shape_groups(names: Sequence[str], height: int, width: int) -> List[List[int]]:
    """Image indices grouped so each group's transformed images share one shape: all images when
    ``height == width``; otherwise those without a transpose, then those with one."""
    if height == width:
        return [list(range(len(names)))]
    plain = [i for i, n in enumerate(names) if 'transpose' not in parse_transform(n)]
    moved = [i for i, n in enumerate(names) if 'transpose' in parse_transform(n)]
    return [g for g in (plain, moved) if g]


class LabelConsistency(SeededComponent):
    name = 'lcr'

    def __init__(self, model, cfg: Dict[str, Any]):
        if getattr(model, 'teacher', None) is None:
            raise ValueError('distill.lcr: label consistency needs the teacher (set network_t and '
                             'path.pretrain_network_t)')
        self.prob = float(cfg['prob'])
        if not 0.0 <= self.prob <= 1.0:
            raise ValueError(f'distill.lcr.prob must be in [0, 1], got {self.prob}')
        self.ops = check_ops(cfg['ops'], 'distill.lcr.ops')
        self.img_range = float(cfg['img_range'])
        self.generator = torch.Generator().manual_seed(int(model.seed) + 7919 + 1000003 * int(model.rank))
        model.teacher.add_input('lcr_teacher_raw', 'lcr_lq')

    def make_inputs(self, lq: torch.Tensor) -> Dict[str, Any]:
        names = sample_transforms(lq.shape[0], self.generator, self.prob, self.ops)
        groups = shape_groups(names, lq.shape[-2], lq.shape[-1])
        return {'lcr_lq': [self._apply(lq[g], [names[i] for i in g]) for g in groups],
                'lcr_plan': (names, groups)}

    def _apply(self, x: torch.Tensor, names: List[str]) -> torch.Tensor:
        if x.shape[-1] == x.shape[-2] or not any('transpose' in parse_transform(n) for n in names):
            return apply_transforms(x, names, self.img_range)
        # a non-square group where every image is transposed: transpose is the last op applied
        # (canonical order), so apply the others per image, then transpose the whole group
        return apply_transforms(x, [_without_transpose(n) for n in names], self.img_range).transpose(-2, -1)

    def _undo(self, y: torch.Tensor, names: List[str]) -> torch.Tensor:
        if y.shape[-1] == y.shape[-2] or not any('transpose' in parse_transform(n) for n in names):
            return undo_transforms(y, names, self.img_range)
        # undo runs the ops in reverse order: the transpose first
        return undo_transforms(y.transpose(-2, -1), [_without_transpose(n) for n in names], self.img_range)

    def undo(self, raw: List[torch.Tensor], plan) -> torch.Tensor:
        names, groups = plan
        out = None
        for g, y in zip(groups, raw):
            back = self._undo(y, [names[i] for i in g])
            if out is None:
                out = back.new_empty((len(names),) + tuple(back.shape[1:]))
            out[torch.tensor(g, device=back.device)] = back
        return out

    def providers(self) -> List[Provider]:
        return [
            Provider(('lcr_lq', 'lcr_plan'), lambda step: self.make_inputs(step['lq']), deps=('lq',),
                     doc='the LR batch under per-image random invertible transforms (groups of one shape)'),
            Provider(('lcr_teacher_sr',), lambda step: {'lcr_teacher_sr': self.undo(step['lcr_teacher_raw'],
                                                                                    step['lcr_plan'])},
                     deps=('lcr_teacher_raw', 'lcr_plan'),
                     doc='teacher SR of the transformed LR, transformed back (DUKD label consistency)'),
        ]


register_component(ComponentSpec(
    key='lcr',
    schema=Section({
        'prob': Field(float, 0.5, 'probability of each op per image (DCKD released configs: 0.5; DUKD: 0.3)'),
        'ops': Field(Sequence[str], list(OPS), 'invertible ops drawn independently: invert, vflip, hflip, transpose'),
        'img_range': Field(float, 1.0, 'inversion is img_range - x (images in [0, 1])'),
    }, absent_none=True, doc='DUKD label consistency (DCKD*): teacher on transformed LR, undone'),
    build=lambda model, cfg: LabelConsistency(model, cfg),
    doc='provides lcr_teacher_sr'))
