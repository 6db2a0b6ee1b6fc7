"""CSDModel: contrastive self-distillation (Wang et al., "Towards Compact Single Image
Super-Resolution via Contrastive Self-distillation", IJCAI 2021).

ONE slimmable network (``network_g``: :class:`ckdsr.archs.slimmable_edsr.SlimmableEDSR`,
:class:`ckdsr.archs.slimmable_rcan.SlimmableRCAN` or :class:`ckdsr.archs.slimmable_carn.SlimmableCARN_M`) is trained
at two widths that share weights: the teacher at ``distill.csd.teacher_width`` (1.0) and the student
(CS-Student, the channel-splitting SR network) at ``distill.csd.student_width`` (0.25), the first
channels of every conv. Per step (paper Eq. 7):

    L = L1(S, HR) + lambda_con * L_con + lambda_t * L1(T, HR)                (lambda_con 200, lambda_t 1)
    L_con = sum_i w_i * mean|phi_i(S) - phi_i(T)| / (sum_k mean|phi_i(S) - phi_i(N_k)| + 1e-7)   (Eq. 5)

phi_i = VGG19 relu{i}_1, w = 1/32, 1/16, 1/8, 1/4, 1, T detached, N_k = bicubic-upsampled LR of 10
batch images. The signals: ``sr`` = net(lq, width=student) and ``teacher_sr`` = net(lq, width=teacher),
BOTH with gradient (two forwards of the shared net, nothing else runs it); the frozen VGG runs once on
[teacher; negatives] without gradient and once on the student output (:mod:`ckdsr.models.distill.embedding`).
By default (``distill.csd.init_from: pretrained``) the shared net starts from a trained full-width
network (``path.pretrain_network_g``, a plain EDSR / RCAN / CARN-M checkpoint: same key names), as
the CSD description and the released script do; ``init_from: scratch`` trains both widths jointly
from a random init. The terms are ordinary ``train.losses`` entries (L1Loss, ContrastiveRatioLoss,
L1Loss with ``inputs: {pred: teacher_sr}``); ``distill.csd`` (:data:`ckdsr.models.distill.csd.CSD_SCHEMA`) holds the
widths and the paper/official switch.

Inference: the module's default ``width_mult`` is set to the student width on the trained net and on
its EMA copy, so validation, ``inference_net`` and tools that call ``net(x)`` see the student. Every
exported weights file (``net_g_<iter>.pth``, ``net_g_latest.pth``, ``net_g_best.pth``) holds the
full shared net under ``params`` (and ``params_ema``) -- a slimmable config with ``width_mult``
picks either width -- and, with ``export_student`` (default), the student as a standalone narrow
plain-network state_dict under ``params_student``
(:meth:`ckdsr.archs.slimmable_ops.Slimmable.narrow_state_dict`), so a plain ``EDSR`` / ``RCAN`` / ``CARN_M``
config with ``num_feat = student_width * num_feat`` evaluates it with ``param_key_g: params_student``
(``tools/test.py --param-key params_student``). Resume states hold the shared net once (no student copy).

DDP: the net is wrapped once and both forwards go through the wrapper. Every parameter gets a gradient
in every step (a width-w forward slices each conv's weight, and autograd gives the whole tensor a
gradient, zero outside the slice; the full width uses everything anyway), and autograd sums the two
forwards' contributions before each parameter's gradient hook fires, so one all-reduce per parameter
carries both: ``find_unused_parameters`` stays False -- except for a multi-scale network (CARN-M),
whose unused upsampling heads get no gradient at all.
"""
import logging
from typing import Any, Dict, List, Optional

import torch

from ckdsr.archs.slimmable_ops import Slimmable
from ckdsr.models.distill.csd import CSD_SCHEMA, resolve_variant
from ckdsr.models.distill.negatives import BicubicNegatives
from ckdsr.models.kd_model import KDModel
from ckdsr.models.network_io import unwrap
from ckdsr.models.signals import Provider
from ckdsr.utils.feature_taps import FeatureTaps
from ckdsr.utils.option_spec import merge_sections
from ckdsr.utils.registry import MODEL_REGISTRY

logger = logging.getLogger('ckdsr')


@MODEL_REGISTRY.register()
class CSDModel(KDModel):
    """CSD: one slimmable network_g trained at a teacher and a student width that share weights (no network_t)."""

    #: every parameter gets a gradient at every width (slices); see the module docstring
    find_unused_parameters = False

    @classmethod
    def option_sections(cls) -> Dict[str, Any]:
        sections = dict(super().option_sections())
        sections.pop('network_t', None)  # the teacher is network_g itself at full width
        sections.pop('path', None)       # no pretrain_network_t / param_key_t / strict_load_t
        sections['distill'] = merge_sections(sections['distill'], {'csd': CSD_SCHEMA})
        return sections

    def __init__(self, opt: Dict[str, Any], is_train: bool = True, rank: int = 0, world_size: int = 1,
                 device: Optional[torch.device] = None):
        if opt.get('network_t'):
            raise ValueError('network_t: CSDModel trains its teacher itself (network_g at '
                             'distill.csd.teacher_width); remove network_t')
        opt, notes = resolve_variant(opt)
        csd = opt['distill']['csd']
        self._check_init(csd['init_from'], opt.get('path') or {}, is_train and bool(opt.get('train')))
        self.variant = csd['variant']
        self.student_width = float(csd['student_width'])
        self.teacher_width = float(csd['teacher_width'])
        self.export_student = bool(csd['export_student'])
        super().__init__(opt, is_train=is_train, rank=rank, world_size=world_size, device=device)
        net = unwrap(self.net_g)
        self._check_slimmable(net)
        for name, width in (('student_width', self.student_width), ('teacher_width', self.teacher_width)):
            try:
                net.channels_at(width)
            except ValueError as err:
                raise ValueError(f'distill.csd.{name}: {err}') from None
        if not self.student_width < self.teacher_width:
            raise ValueError(f'distill.csd: student_width ({self.student_width}) must be below '
                             f'teacher_width ({self.teacher_width})')
        # validation, inference_net and plain net(x) calls see the student
        net.width_mult = self.student_width
        if self.ema is not None:
            self.ema.module.width_mult = self.student_width
        if self.rank == 0:
            for note in notes:
                logger.info(f'CSD: {note}')
            if self.is_train:
                start = (f"the trained full-width network {opt['path']['pretrain_network_g']}"
                         if csd['init_from'] == 'pretrained' else 'a random init (init_from: scratch)')
                logger.info(f'CSD: the shared net starts from {start}')

    def wrap_for_training(self, net, train_opt: Dict[str, Any]):
        """A multi-scale net (CARN-M's x2/x3/x4 heads) runs one head: DDP must not wait for the others."""
        self.find_unused_parameters = bool(getattr(net, 'multi_scale', False))
        return super().wrap_for_training(net, train_opt)

    @staticmethod
    def _check_init(init_from: str, path: Dict[str, Any], training: bool) -> None:
        """init_from 'pretrained' needs path.pretrain_network_g (a resumed run loads its own state);
        'scratch' must not have one. A missing file is reported by the loader, naming the key."""
        weights = path.get('pretrain_network_g')
        if init_from == 'pretrained' and training and not weights and not path.get('resume_state'):
            raise ValueError('distill.csd.init_from is pretrained (the default) but path.pretrain_network_g is not '
                             'set: give a trained full-width network of the network_g type, or set '
                             'distill.csd.init_from: scratch to train both widths jointly from a random init')
        if init_from == 'scratch' and training and weights:
            raise ValueError(f'distill.csd.init_from is scratch but path.pretrain_network_g is set ({weights}); '
                             'remove one of them (init_from: pretrained loads it)')

    @staticmethod
    def _check_slimmable(net) -> None:
        if not isinstance(net, Slimmable):
            raise TypeError(f'network_g: CSDModel needs a slimmable network (type: SlimmableEDSR, SlimmableRCAN or '
                            f'SlimmableCARN_M) whose forward takes width_mult; got {type(net).__name__}')

    # ------------------------------------------------------------------ set-up
    def build_losses(self, train_opt: Dict[str, Any]) -> None:
        self._check_slimmable(unwrap(self.net_g))
        super().build_losses(train_opt)
        distill = self.opt.get('distill') or {}
        self.teacher_taps = list((distill.get('taps') or {}).get('teacher') or ())
        FeatureTaps(unwrap(self.net_g), self.teacher_taps).remove()  # check the paths up front
        for comp in self.components:
            if isinstance(comp, BicubicNegatives):
                comp.clamp = bool(distill['csd']['clamp_negatives'])
        for term in self.terms:
            loss = term.loss
            positive = term.inputs.get('positive')
            if getattr(loss, 'detach_positive', True) is False and positive in ('emb_teacher_sr', 'emb_teacher_sr_global'):
                raise ValueError(f'train.losses ({term.name}): detach_positive: false cannot train the teacher '
                                 'through the contrastive term here: emb_teacher_sr comes from the no-grad '
                                 'embedding pass. CSD (paper and released scripts, --contrast_t_detach) '
                                 'detaches the teacher; use detach_positive: true')

    def base_providers(self) -> List[Provider]:
        def batch(step):
            return {'lq': self.lq, 'gt': self.gt}

        def run(step, width: float, taps: List[str], feats_signal: str):
            """One forward of the shared net at ``width`` (through the DDP/compile wrapper)."""
            if taps and step.wants(feats_signal):
                with FeatureTaps(self.net_g, taps) as hooks:
                    out = self.net_g(step['lq'], width_mult=width)
                    feats = hooks.features()
                return out, feats
            return self.net_g(step['lq'], width_mult=width), None

        def student(step):
            sr, feats = run(step, self.student_width, self.student_taps, 'student_feats')
            return {'sr': sr, 'student_feats': feats}

        def teacher(step):
            sr, feats = run(step, self.teacher_width, self.teacher_taps, 'teacher_feats')
            return {'teacher_sr': sr, 'teacher_feats': feats}

        return [Provider(('lq', 'gt'), batch, doc='the batch'),
                Provider(('sr', 'student_feats'), student, deps=('lq',),
                         doc='the shared net at the student width (and tapped features), with gradient'),
                Provider(('teacher_sr', 'teacher_feats'), teacher, deps=('lq',),
                         doc='the shared net at the teacher width (and tapped features), with gradient')]

    # ------------------------------------------------------------------ inference and export
    def network_state(self) -> Dict[str, Any]:
        """BasicSR layout (``params``, ``params_ema``: the whole shared net) plus ``params_student``:
        the student as a plain narrow network state_dict, cut from the network validation uses."""
        state = super().network_state()
        if self.export_student:
            use_ema = (self.opt.get('val') or {}).get('use_ema', True)
            state['params_student'] = unwrap(self.inference_net(use_ema)).narrow_state_dict(self.student_width)
        return state

    def training_state(self) -> Dict[str, Any]:
        """The resume state holds the shared net once: no separate student copy."""
        state = super().training_state()
        state['networks'].pop('params_student', None)
        return state
