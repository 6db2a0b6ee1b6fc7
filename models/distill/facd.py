"""FACD's model side (Moon, J.-G. Kim, Jeong & S. Kim, "Feature-domain Adaptive Contrastive Distillation for
Efficient Single Image Super-Resolution", IEEE Access 2023): the ``distill.facd`` component.

The losses are pure tensor functions in :mod:`ckdsr.losses.facd`; this component supplies what they read:

* ``alpha`` -- the adaptive-distillation switch of the paper's L_SR (alpha_i = 0 where the student's
  output is already closer to GT than the teacher's, else 1; :func:`ckdsr.losses.facd.adaptive_indicator`),
  computed once per step without gradient and shared by the image and the feature term. With
  ``adaptive: false`` it is 1 for every patch: the FCD ablation.
* ``student_feats_regressed`` -- the anchors of the feature-domain contrast: the paper's deep
  regressors R_l (five 1x1 convs + PReLU, student channels -> teacher channels,
  :class:`ckdsr.archs.facd_regressor.FACDRegressor`), one per tap, applied to the student's tapped
  features in the order ``distill.facd.order`` says:

  - ``normalize_then_regress`` (default, the paper: Eq. 3-4 and the text before them normalise the
    feature maps first and compare DR(normalised student feature) with the normalised teacher
    feature; DR's output is not normalised again): ``R_l(n(F^S_l))``;
  - ``regress_then_normalize`` (this code's order before issue 17): ``n(R_l(F^S_l))``;

  with ``n`` the L2 normalisation of ``distill.facd.normalize``. The regressors are trained with
  the student (optimizer g, gradients averaged across DDP ranks by KDModel), saved in the resume
  state, and never exported with the student's weights.
* ``teacher_feats_normalized`` -- ``n(F^T_l)``, the positives and teacher negatives. Both signals
  are final: the contrastive term reads them with ``normalize: none`` (checked before the first
  step). ``distill.gather.signals`` turns them into the global batch (``*_global``), which the
  term must read with several processes (checked too).
* ``sr_image_list`` / ``teacher_sr_image_list`` -- the output images as one-"tap" lists, so the same
  contrastive loss runs in the image domain (the ICD ablation) without a regressor.

Option section (validated by :data:`FACD_SCHEMA`)::

    distill:
      taps: {student: [...], teacher: [...]}   # one regressor per pair, channels found by a probe
      facd:
        adaptive: true                         # false: alpha = 1 everywhere (FCD ablation)
        order: normalize_then_regress          # paper; regress_then_normalize: the former order
        normalize: channel                     # channel | image | none: the L2 normalisation n
        regressor: {num_layers: 5, hidden_channels: null, prelu_per_channel: false}
"""
from typing import Any, Dict, Iterable, List, Literal, Optional, Sequence

import torch
from torch import nn

from ckdsr.archs.facd_regressor import FACDRegressor
from ckdsr.losses.facd import NORMALIZE_MODES, adaptive_indicator, normalize_features
from ckdsr.models.distill.component import Component
from ckdsr.models.distill.gather import require_global_inputs
from ckdsr.models.distill.registry import ComponentSpec, register_component
from ckdsr.models.network_io import unwrap
from ckdsr.models.signals import Provider
from ckdsr.utils.feature_taps import FeatureTaps
from ckdsr.utils.option_spec import Field, Section

#: LR side of the zero image used to find the channel count at each tap (cheap even for EDSR-L)
PROBE_SIZE = 8

ORDERS = ('normalize_then_regress', 'regress_then_normalize')


def regress_features(feats: Sequence[torch.Tensor], regressors: Sequence[nn.Module], order: str,
                     normalize: str) -> List[torch.Tensor]:
    """The anchors of FACD's feature contrast, one per tap: ``R(n(f))`` for ``normalize_then_regress``
    (the paper, Eq. 3-4: DR's output is not renormalised) or ``n(R(f))`` for
    ``regress_then_normalize``; ``n`` = :func:`ckdsr.losses.facd.normalize_features` with ``normalize``."""
    if order not in ORDERS:
        raise ValueError(f"distill.facd.order must be one of {ORDERS}, got '{order}'")
    if len(feats) != len(regressors):
        raise ValueError(f'FACD: {len(feats)} student features for {len(regressors)} regressors')
    if order == 'normalize_then_regress':
        return [r(normalize_features(f, normalize)) for r, f in zip(regressors, feats)]
    return [normalize_features(r(f), normalize) for r, f in zip(regressors, feats)]


def _input_channels(net: nn.Module) -> int:
    """Input channels of ``net``: those of its first convolution (3 for every SR arch here)."""
    first = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
    return first.in_channels if first is not None else 3


@torch.no_grad()
def tap_channels(net: nn.Module, paths: Sequence[str], device: torch.device, where: str) -> List[int]:
    """Channel count of the output of each module in ``paths`` of ``net``, from one forward of a
    ``1 x C x 8 x 8`` zero image. A tap whose output is not a ``(B, C, H, W)`` map raises (FACD's
    regressor is a 1x1-conv net over feature maps)."""
    net = unwrap(net)
    probe = torch.zeros(1, _input_channels(net), PROBE_SIZE, PROBE_SIZE, device=device)
    with FeatureTaps(net, paths, detach=True) as taps:
        net(probe)
        feats = taps.features()
    out = []
    for path, f in zip(paths, feats):
        if not isinstance(f, torch.Tensor) or f.dim() != 4:
            shape = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
            raise ValueError(f"{where}: tap '{path}' gives {shape}, not a (B, C, H, W) feature map; "
                             'FACD regresses convolutional feature maps')
        out.append(f.shape[1])
    return out


class FACD(Component):
    """Regressors, the adaptive indicator and the image-domain lists of FACD (see module doc)."""

    name = 'facd'

    def __init__(self, model, adaptive: bool = True, regressor: Optional[Dict[str, Any]] = None,
                 order: str = 'normalize_then_regress', normalize: str = 'channel', where: str = 'distill.facd'):
        if getattr(model, 'teacher', None) is None:
            raise ValueError(f'{where}: FACD distils from a teacher; give network_t and path.pretrain_network_t')
        if order not in ORDERS:
            raise ValueError(f"{where}.order: expected one of {ORDERS}, got '{order}'")
        if normalize not in NORMALIZE_MODES:
            raise ValueError(f"{where}.normalize: expected one of {NORMALIZE_MODES}, got '{normalize}'")
        self.adaptive = bool(adaptive)
        self.order, self.normalize = order, normalize
        self.checked = False
        taps = (model.opt.get('distill') or {}).get('taps') or {}
        student_taps, teacher_taps = list(taps.get('student') or ()), list(taps.get('teacher') or ())
        if len(student_taps) != len(teacher_taps):
            raise ValueError(f'distill.taps: FACD pairs student and teacher taps one to one, got '
                             f'{len(student_taps)} student and {len(teacher_taps)} teacher taps')
        reg = dict(regressor or {})
        self.regressors = nn.ModuleList()
        if student_taps:  # no taps: image-domain (ICD) use only, no regressor
            s_ch = tap_channels(model.net_g, student_taps, model.device, 'distill.taps.student')
            t_ch = tap_channels(model.teacher.net, teacher_taps, model.device, 'distill.taps.teacher')
            for cin, cout in zip(s_ch, t_ch):
                self.regressors.append(FACDRegressor(
                    in_channels=cin, out_channels=cout, hidden_channels=reg.get('hidden_channels'),
                    num_layers=reg.get('num_layers', 5), prelu_per_channel=reg.get('prelu_per_channel', False)))
            self.regressors.to(model.device).train()

    # ------------------------------------------------------------------ signals
    def alpha(self, sr: torch.Tensor, teacher_sr: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """alpha_i of L_SR (paper, adaptive distillation): 0 where ||S_i - GT_i||_1 < ||T_i - GT_i||_1,
        else 1; all ones when not ``adaptive`` (FCD). Float32, no gradient, shape ``(B,)``."""
        if not self.adaptive:
            return torch.ones(sr.shape[0], device=sr.device)
        return adaptive_indicator(sr.detach().float(), teacher_sr.float(), gt.float())

    def regress(self, student_feats: List[torch.Tensor]) -> List[torch.Tensor]:
        """The student features of every tap mapped onto the teacher's channels, normalised before
        (paper) or after the regressor, as ``order`` says (:func:`regress_features`)."""
        return regress_features(student_feats, self.regressors, self.order, self.normalize)

    def before_step(self, model, current_iter: int) -> None:
        """Once, before the first step: the configuration checks that need the built terms."""
        if self.checked:
            return
        offset = 1 if (model.opt.get('train') or {}).get('pixel_opt') else 0
        for i, term in enumerate(model.terms):
            reads = term.inputs.get('student_feats', '')
            if type(term.loss).__name__ == 'FACDFeatureContrastLoss' and reads.startswith('student_feats_regressed') \
                    and term.loss.normalize != 'none':
                raise ValueError(f"train.losses.{i - offset}.normalize ({term.name}): '{term.loss.normalize}' would "
                                 'normalise the regressor output again; the FACD signals are normalised already '
                                 '(distill.facd.normalize / order): set normalize: none')
        require_global_inputs(model, 'FACDFeatureContrastLoss', ('student_feats', 'teacher_feats', 'alpha'),
                              "FACD's negatives (the other images of the batch)")
        self.checked = True

    def providers(self) -> List[Provider]:
        out = [
            Provider(('alpha',), lambda step: {'alpha': self.alpha(step['sr'], step['teacher_sr'], step['gt'])},
                     deps=('sr', 'teacher_sr', 'gt'), doc='FACD adaptive indicator alpha (B,), no grad'),
            Provider(('sr_image_list',), lambda step: {'sr_image_list': [step['sr']]}, deps=('sr',),
                     doc='the student output as a one-tap list (ICD: image-domain contrast)'),
            Provider(('teacher_sr_image_list',), lambda step: {'teacher_sr_image_list': [step['teacher_sr']]},
                     deps=('teacher_sr',), doc='the teacher output as a one-tap list (ICD)'),
        ]
        if len(self.regressors):
            out.append(Provider(('student_feats_regressed',),
                                lambda step: {'student_feats_regressed': self.regress(step['student_feats'])},
                                deps=('student_feats',), doc='FACD regressors on the student taps (grad), '
                                                             'normalised as distill.facd.order says'))
            out.append(Provider(('teacher_feats_normalized',),
                                lambda step: {'teacher_feats_normalized': [
                                    normalize_features(f, self.normalize) for f in step['teacher_feats']]},
                                deps=('teacher_feats',), doc='FACD: the teacher taps, L2-normalised'))
        return out

    # ------------------------------------------------------------------ training and state
    def trainable_parameters(self) -> Iterable[nn.Parameter]:
        return list(self.regressors.parameters())

    def state_dict(self) -> Dict[str, Any]:
        return {'regressors': self.regressors.state_dict()} if len(self.regressors) else {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if 'regressors' in state:
            self.regressors.load_state_dict(state['regressors'])


FACD_SCHEMA = Section({
    'adaptive': Field(bool, True, 'alpha_i = 0 for patches the student already restores better than the '
                                  'teacher (paper); false: alpha = 1 everywhere (FCD ablation)'),
    'order': Field(Literal['normalize_then_regress', 'regress_then_normalize'], 'normalize_then_regress',
                   'normalize_then_regress: R(n(F_s)) vs n(F_t), R\'s output not renormalised (paper, Eq. 3-4); '
                   'regress_then_normalize: n(R(F_s)) vs n(F_t) (the former default)'),
    'normalize': Field(Literal['channel', 'image', 'none'], 'channel',
                       "L2 normalisation n of the features: each position's channel vector, each whole map, "
                       'or none (the paper does not say along which axis: assumption)'),
    'regressor': Section({
        'num_layers': Field(int, 5, '1x1 convolutions per regressor (paper: 5)'),
        'hidden_channels': Field(Optional[int], None, 'width of the hidden layers (null: teacher channels)'),
        'prelu_per_channel': Field(bool, False, 'one PReLU slope per channel instead of one shared slope'),
    }, doc='the deep regressor mapping each student tap onto the teacher tap\'s channels'),
}, absent_none=True, doc='FACD: adaptive indicator alpha, trained regressors on the tapped student features')

register_component(ComponentSpec(
    key='facd',
    schema=FACD_SCHEMA,
    build=lambda model, cfg: FACD(model, adaptive=cfg.get('adaptive', True), regressor=cfg.get('regressor'),
                                  order=cfg.get('order', 'normalize_then_regress'),
                                  normalize=cfg.get('normalize', 'channel')),
    doc='provides alpha, student_feats_regressed, teacher_feats_normalized, sr_image_list, teacher_sr_image_list'))
