"""DUKD: data upcycling knowledge distillation (Zhang et al., arXiv 2309.14162; published as AugKD,
ICLR 2025). Facts from the released code (github.com/yun224/DUKD, ``models/dukd_model.py``) with
line references: ``shared/methods/dukd.md``; the paper/code switches: ``docs/dukd.md``.

The ``distill.dukd`` component provides the upcycled samples and their network outputs as signals;
the loss terms are plain ``L1Loss`` terms over them (the released code uses BasicSR ``L1Loss``, mean,
for every DUKD term, weighted by ``pixel_opt`` or ``kd_opt``):

====================  ======================================================================
``dukd_zi_lq``        zoom-in samples: ``n_zoom_in`` LR-sized tiles of each HR patch, (n*B, C, h, w)
``dukd_zi_teacher``   the teacher on the plain tiles: their only label (no ground truth)
``dukd_zi_input``     the tiles under label-consistency ops g (per tile: colour inversion, the two
                      flips, transpose, each with probability ``lcr_prob``; identity without LCR)
``dukd_zi_sr``        g^-1(student(g(tile))), with gradient
``dukd_zo_lq``        zoom-out samples: MATLAB-bicubic 1/s downscale of the LR patch, (B, C, h/s, w/s)
``dukd_zo_gt``        their target: the LR patch itself
``dukd_zo_teacher``   the teacher on the zoom-out samples
``dukd_zo_sr``        the student on the zoom-out samples, with gradient
====================  ======================================================================

Per step the teacher runs once over [LR batch, zoom-in tiles] (same size) plus once over the smaller
zoom-out batch; the student likewise (:meth:`KDModel.add_student_input`). Zoom-out runs only when a
term reads a ``dukd_zo_*`` signal (the released ``dukd_opt.zoom_out``).

``variant: official`` reproduces four behaviours of the released code, each its own switch
(``null`` = the variant's value): ``two_steps`` (two optimizer steps per iteration, the first
gradient kept into the second: ``zero_grad`` only before step A), ``teacher_train_mode`` (the
teacher is never put in eval mode: SwinIR's stochastic depth stays on), ``lcr_undo: forward`` (the
"inverse" re-applies the ops in forward order: wrong when the transpose meets one flip) and
``shared_tiles`` (one draw of tile positions for the whole batch).
"""
from typing import Any, Dict, List, Literal, Optional, Sequence

import torch

from ckdsr.losses.lcr import OPS, apply_transforms, check_ops, sample_transforms, undo_transforms
from ckdsr.models.distill.component import SeededComponent
from ckdsr.models.distill.dukd_upcycle import draw_tiles, zoom_in, zoom_out
from ckdsr.models.distill.registry import ComponentSpec, register_component
from ckdsr.models.signals import Provider
from ckdsr.utils.option_spec import Field, Section

#: what ``variant`` decides when a switch is left null (docs/dukd.md)
VARIANT_DEFAULTS: Dict[str, Dict[str, Any]] = {
    'paper': {'two_steps': False, 'teacher_train_mode': False, 'lcr_undo': 'reverse', 'shared_tiles': False},
    'official': {'two_steps': True, 'teacher_train_mode': True, 'lcr_undo': 'forward', 'shared_tiles': True},
}

ZOOM_OUT_SIGNALS = ('dukd_zo_lq', 'dukd_zo_gt', 'dukd_zo_teacher', 'dukd_zo_sr')


def resolve(cfg: Dict[str, Any], key: str) -> Any:
    """``cfg[key]``, or the value its ``variant`` (default paper) gives when it is null or absent."""
    value = cfg.get(key)
    return VARIANT_DEFAULTS[cfg.get('variant') or 'paper'][key] if value is None else value


class DataUpcycling(SeededComponent):
    """Zoom-in / zoom-out samples, label consistency on the zoom-in tiles, the official switches."""

    name = 'dukd'

    def __init__(self, model, cfg: Dict[str, Any]):
        if getattr(model, 'teacher', None) is None:
            raise ValueError('distill.dukd: the upcycled samples are labelled by the teacher (set network_t '
                             'and path.pretrain_network_t)')
        self.model = model
        self.scale = int(model.scale)
        self.n = int(cfg['n_zoom_in'])
        if not 1 <= self.n <= self.scale ** 2:
            raise ValueError(f'distill.dukd.n_zoom_in must be in [1, {self.scale ** 2}] at x{self.scale}, '
                             f'got {self.n}')
        self.lcr_prob = cfg.get('lcr_prob')
        if self.lcr_prob is not None and not 0.0 <= float(self.lcr_prob) <= 1.0:
            raise ValueError(f'distill.dukd.lcr_prob must be in [0, 1] or null, got {self.lcr_prob}')
        self.ops = check_ops(cfg['lcr_ops'], 'distill.dukd.lcr_ops')
        self.img_range = float(cfg['img_range'])
        self.two_steps = bool(resolve(cfg, 'two_steps'))
        self.teacher_train_mode = bool(resolve(cfg, 'teacher_train_mode'))
        self.lcr_undo = resolve(cfg, 'lcr_undo')
        self.shared_tiles = bool(resolve(cfg, 'shared_tiles'))
        self.generator = torch.Generator().manual_seed(int(model.seed) + 4099 + 1000003 * int(model.rank))
        if self.teacher_train_mode:
            model.teacher.net.train()  # no gradient still (it changes no student gradient): see docs/dukd.md
        model.teacher.add_input('dukd_zi_teacher', 'dukd_zi_lq')
        model.teacher.add_input('dukd_zo_teacher', 'dukd_zo_lq')
        if not self.two_steps:  # batched with the student's main forward
            model.add_student_input('dukd_zi_raw', 'dukd_zi_input')
            model.add_student_input('dukd_zo_sr', 'dukd_zo_lq')

    # ------------------------------------------------------------------ samples
    def make_zoom_in(self, lq: torch.Tensor, gt: torch.Tensor) -> Dict[str, Any]:
        positions = draw_tiles(lq.shape[0], self.scale, self.n, self.generator, self.shared_tiles)
        return {'dukd_zi_lq': zoom_in(gt, self.scale, tuple(lq.shape[-2:]), positions),
                'dukd_zi_positions': positions}

    def make_zi_input(self, tiles: torch.Tensor) -> Dict[str, Any]:
        if self.lcr_prob is None:
            return {'dukd_zi_input': tiles, 'dukd_zi_ops': None}
        names = sample_transforms(tiles.shape[0], self.generator, float(self.lcr_prob), self.ops)
        if tiles.shape[-1] != tiles.shape[-2] and any('transpose' in n for n in names):
            raise ValueError(f'distill.dukd.lcr_ops: transpose needs square LR patches, got '
                             f'{tuple(tiles.shape[-2:])}')
        return {'dukd_zi_input': apply_transforms(tiles, names, self.img_range), 'dukd_zi_ops': names}

    def undo(self, raw: torch.Tensor, names: Optional[List[str]]) -> torch.Tensor:
        if names is None:
            return raw
        return undo_transforms(raw, names, self.img_range, order=self.lcr_undo)

    # ------------------------------------------------------------------ signals
    def providers(self) -> List[Provider]:
        self._check_terms()
        net = self.model

        def student_on(src, out):  # two_steps: its own forward, run after the intermediate step
            return lambda step: {out: net.net_g(step[src])}

        providers = [
            Provider(('dukd_zi_lq', 'dukd_zi_positions'), lambda s: self.make_zoom_in(s['lq'], s['gt']),
                     deps=('lq', 'gt'), doc='DUKD zoom-in samples: LR-sized tiles of the HR patch'),
            Provider(('dukd_zi_input', 'dukd_zi_ops'), lambda s: self.make_zi_input(s['dukd_zi_lq']),
                     deps=('dukd_zi_lq',), doc='zoom-in tiles under the per-tile label-consistency ops'),
            Provider(('dukd_zi_sr',), lambda s: {'dukd_zi_sr': self.undo(s['dukd_zi_raw'], s['dukd_zi_ops'])},
                     deps=('dukd_zi_raw', 'dukd_zi_ops'), doc='student on the transformed tiles, transformed back'),
            Provider(('dukd_zo_lq', 'dukd_zo_gt'),
                     lambda s: dict(zip(('dukd_zo_lq', 'dukd_zo_gt'), zoom_out(s['lq'], self.scale))),
                     deps=('lq',), doc='DUKD zoom-out samples (MATLAB bicubic 1/s of the LR) and their LR target'),
        ]
        if self.two_steps:
            providers += [
                Provider(('dukd_zi_raw',), student_on('dukd_zi_input', 'dukd_zi_raw'), deps=('dukd_zi_input',),
                         doc='student on the transformed tiles (after the intermediate step)'),
                Provider(('dukd_zo_sr',), student_on('dukd_zo_lq', 'dukd_zo_sr'), deps=('dukd_zo_lq',),
                         doc='student on the zoom-out samples (after the intermediate step)')]
        return providers

    def late_signals(self) -> Sequence[str]:
        return ('dukd_zi_raw', 'dukd_zo_sr') if self.two_steps else ()

    def _check_terms(self) -> None:
        terms = getattr(self.model, 'terms', [])
        if not any(sig.startswith('dukd_zi') or sig.startswith('dukd_zo')
                   for t in terms for sig in t.inputs.values()):
            raise ValueError('distill.dukd: no term of train.losses reads a dukd_zi_* or dukd_zo_* signal; add '
                             'e.g. {type: L1Loss, inputs: {pred: dukd_zi_sr, target: dukd_zi_teacher}}')


register_component(ComponentSpec(
    key='dukd',
    schema=Section({
        'variant': Field(Literal['paper', 'official'], 'paper',
                         'paper: the sound version of each switch below; official: the released code '
                         '(docs/dukd.md)'),
        'n_zoom_in': Field(int, 1, 'zoom-in tiles per HR patch (released n_gt_sub: 2 for EDSR x2, else 1)'),
        'lcr_prob': Field(Optional[float], 0.3,
                          'label consistency on the zoom-in tiles: probability of each op per tile '
                          '(released noisy.prob 0.3; null: no LCR, as the released RCAN x2 config)'),
        'lcr_ops': Field(Sequence[str], list(OPS), 'self-inverse ops drawn independently: invert, vflip, '
                                                   'hflip, transpose (released: all four)'),
        'img_range': Field(float, 1.0, 'inversion is img_range - x (images in [0, 1])'),
        'two_steps': Field(Optional[bool], None,
                           'two optimizer steps per iteration (plain KD terms, then the upcycled ones with the '
                           'first gradient kept); null: paper false, official true'),
        'teacher_train_mode': Field(Optional[bool], None,
                                    'leave the teacher in train mode (SwinIR stochastic depth on); null: paper '
                                    'false, official true'),
        'lcr_undo': Field(Optional[Literal['reverse', 'forward']], None,
                          'undo the LCR ops in reverse order (the inverse) or forward order (released code); '
                          'null: paper reverse, official forward'),
        'shared_tiles': Field(Optional[bool], None,
                              'one draw of tile positions for the whole batch; null: paper false (per image), '
                              'official true'),
    }, absent_none=True, doc='DUKD: zoom-in/zoom-out upcycled samples and label consistency'),
    build=lambda model, cfg: DataUpcycling(model, cfg),
    doc='provides dukd_zi_{lq,teacher,input,sr}, dukd_zo_{lq,gt,teacher,sr}'))
