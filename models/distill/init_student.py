"""``distill.init_student``: start a narrow student from the teacher's first channels (EDSR, RCAN, CARN-M).

The baseline that the CSD issue tracker (github.com/Booooooooooo/CSD) found decisive: instead of a
random initialisation, the student with ``num_feat = w * teacher num_feat`` (otherwise the teacher's
structure) gets a copy of the first ``w`` of every teacher conv's channels (the slices
:mod:`ckdsr.archs.slimmable_ops` defines: ``conv_first`` keeps all input channels, ``conv_last`` all
outputs, an upsampling conv before PixelShuffle(r) its first ``r*r*c`` outputs, RCAN's channel
attention a ``c / squeeze`` bottleneck, CARN-M the first ``c / group`` channels of each group).
For a slimmable teacher (SlimmableEDSR / SlimmableRCAN / SlimmableCARN_M) the student then computes
exactly ``teacher(x, width_mult=w)``, i.e. the CS-Student of a CSD-trained net; for a plain teacher
(EDSR / RCAN / CARN_M) it is that net's channel-split student.
With it, "CSD vs narrow-init + KD vs scratch" are three option files over the same student:

* CSD: ``model_type: CSDModel`` (options/csd_{edsr,rcan,carn}_x4.yml);
* narrow-init + KD: a KDModel with the trained teacher and ``distill.init_student: {}``, terms
  L1(S, GT) + L1(S, T) (or any other KD terms): options/csd_baseline_{edsr,rcan,carn}_x4.yml;
* narrow-init alone: the same with only L1(S, GT) (the teacher is loaded but never run: no term
  reads ``teacher_sr``).

The copy happens once, when the model is built (the teacher is already loaded, the optimizer holds
the student's parameters, which are overwritten in place; the EMA copy is overwritten too). A resumed
run then loads its own saved student over it. ``path.pretrain_network_g`` and ``init_student`` are
exclusive.
"""
import logging
from typing import Any, Dict, Optional

import torch
from torch import nn

from ckdsr.archs.slimmable_ops import Slimmable, as_slimmable
from ckdsr.models.distill.component import Component
from ckdsr.models.distill.registry import ComponentSpec, register_component
from ckdsr.models.network_io import unwrap
from ckdsr.utils.option_spec import Field, Section

logger = logging.getLogger('ckdsr')

INIT_STUDENT_SCHEMA = Section({
    'enabled': Field(bool, True, 'copy the teacher\'s first channels into network_g when the model is built'),
    'width_mult': Field(Optional[float], None, 'fraction of the teacher\'s channels to copy '
                                               '(null: student num_feat / teacher num_feat)'),
}, absent_none=True, doc="initialise a narrow EDSR / RCAN / CARN-M student from the teacher's first channels")


def _slim(role: str, net: nn.Module) -> Slimmable:
    try:
        return as_slimmable(net)
    except TypeError as err:
        raise TypeError(f'distill.init_student: {role} must be {err.args[0].replace("expected ", "")}') from None


def init_from_teacher_channels(student: nn.Module, teacher: nn.Module, width_mult: Optional[float] = None) -> float:
    """Copy ``teacher``'s first channels into ``student`` in place; returns the width used.

    ``teacher``: EDSR, RCAN, CARN_M or their slimmable versions; ``student``: a network of the same
    family with the teacher's structure except ``num_feat = width_mult * teacher.num_feat``.
    """
    t_slim, s_slim = _slim('network_t', teacher), _slim('network_g', student)
    if type(t_slim) is not type(s_slim):
        raise TypeError(f'distill.init_student: network_g ({type(student).__name__}) and network_t '
                        f'({type(teacher).__name__}) must be the same kind of network')
    width = s_slim.num_feat / t_slim.num_feat if width_mult is None else float(width_mult)
    if abs(width * t_slim.num_feat - s_slim.num_feat) > 1e-6:
        raise ValueError(f'distill.init_student.width_mult {width} gives {width * t_slim.num_feat:g} of the '
                         f"teacher's {t_slim.num_feat} channels, but network_g.num_feat is {s_slim.num_feat}")
    t_desc, s_desc = t_slim.plain_kwargs(s_slim.num_feat), s_slim.plain_kwargs(s_slim.num_feat)
    differing = [k for k in t_desc if t_desc[k] != s_desc[k]]
    if differing:
        detail = ', '.join(f'{k}: teacher {t_desc[k]} vs student {s_desc[k]}' for k in differing)
        raise ValueError(f'distill.init_student: network_g must have the teacher\'s structure except its '
                         f'width; they differ in {detail}')
    state = t_slim.narrow_state_dict(width)
    target = student.state_dict()
    missing = sorted(set(target) - set(state))
    if missing:
        raise ValueError(f'distill.init_student: no teacher slice for {missing[:5]}')
    with torch.no_grad():
        for key, value in state.items():
            target[key].copy_(value.to(target[key].device, target[key].dtype))
    return width


class InitStudentFromTeacher(Component):
    """Does its work at construction; no signals, hooks or state."""

    name = 'init_student'

    def __init__(self, model, cfg: Dict[str, Any]):
        self.width = None
        if not cfg.get('enabled', True):
            return
        if getattr(model, 'teacher', None) is None:
            raise ValueError('distill.init_student: needs the teacher (network_t and path.pretrain_network_t)')
        if (model.opt.get('path') or {}).get('pretrain_network_g'):
            raise ValueError('distill.init_student and path.pretrain_network_g both initialise network_g; '
                             'remove one of them')
        student = unwrap(model.net_g)
        self.width = init_from_teacher_channels(student, model.teacher.net, cfg.get('width_mult'))
        if model.ema is not None:
            model.ema.module.load_state_dict(student.state_dict())
        if getattr(model, 'rank', 0) == 0:
            logger.info(f"distill.init_student: network_g starts from the first {self.width:g} of the teacher's "
                        'channels')


register_component(ComponentSpec(
    key='init_student',
    schema=INIT_STUDENT_SCHEMA,
    build=lambda model, cfg: InitStudentFromTeacher(model, cfg),
    doc="copies the teacher's first channels into network_g at build time (no signals)"))
