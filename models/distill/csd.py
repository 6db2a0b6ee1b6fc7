"""CSD's option section and its paper/official switch (Wang et al., "Towards Compact Single Image
Super-Resolution via Contrastive Self-distillation", IJCAI 2021); the model is
:class:`ckdsr.models.csd_model.CSDModel`.

``distill.csd.variant`` fills in, for the options a file leaves out, what the paper and the released
code (github.com/Booooooooooo/CSD, ``PyTorch version``: ``trainer/slim_contrast_trainer.py``,
``loss/contrast_loss.py``, ``main.py --contrast_t_detach --neg_num 10 --contra_lambda 200 --t_lambda 1``)
do differently. An option the file sets itself always wins:

==========================  ===================================  =====================================
what                        paper                                official
==========================  ===================================  =====================================
VGG input                   not stated in any text this          raw [0, 255] pixels, no mean/std
(``distill.embedding``      project has. ASSUMPTION: ImageNet    (``Vgg19`` fed the ``rgb_range=255``
``.input_norm``)            mean/std on [0, 1] (``imagenet``,    tensors): ``none_255``
                            what torchvision's ImageNet VGG19
                            was trained on)
negatives (``clamp_``       not stated. ASSUMPTION: bicubic      bicubic upsampling left unclamped
``negatives``)              upsampling clamped to [0, 1]         (``nn.Upsample(mode='bicubic')``
                                                                 overshoots at edges)
==========================  ===================================  =====================================

Initialisation (``distill.csd.init_from``, the same default for both variants): ``pretrained``
(default) starts the shared net from a trained full-width network given as
``path.pretrain_network_g`` -- the CSD description this project implements (DESIGN.md section 4,
issue 17) trains a teacher first and builds the student from it, and the released script loads a
trained full-width model (``--pre_train`` / ``--teacher_model`` in ``trainer/slim_contrast_trainer.py``
``load_model``). ``scratch`` is the joint-from-scratch run. A missing key or file is a one-line
error naming ``path.pretrain_network_g``.

The same in both (checked in the released code): the teacher's VGG features are detached in the
contrastive term (``--contrast_t_detach``; ContrastiveRatioLoss ``detach_positive: true``); the negatives
are the bicubic-upsampled LR of ``neg_num = 10`` images of the batch, shared by every anchor
(``lr[torch.randperm(neg_num)]``: the first 10 images of the shuffled batch, which is the same draw
in distribution as our 10 random batch images); the ratio is ``l1(T, S) / (sum_k mean|S - N_k| +
1e-7)`` per VGG layer with weights 1/32 ... 1; ``L = L1(S, HR) + 200 L_con + 1 L1(T, HR)``, the
teacher term kept for the whole run (``--t_l_remove 400`` = the epoch count); Adam lr 1e-4 x0.1 at
epoch 200 of 400 (1000 iterations of batch 16 per epoch). The official code computes its L1 terms
on [0, 255] images; the option files therefore weight L1 terms by 255 (see ``options/csd_edsr_x4.yml``).

Several GPUs (issue 17, point 8): the 10 negatives are drawn from the GLOBAL batch (every rank's
images, the same draw on every rank: :class:`ckdsr.models.distill.negatives.BicubicNegatives`) and the
ratio's batch means run over the global batch (ContrastiveRatioLoss ``reduce: global``, the
default: per-layer sums and counts all-reduced, a few scalars; only the LR batch is gathered, for
the negatives), so N GPUs x 16/N images compute the loss and gradient of one GPU x 16 as the
single-GPU release does. ``reduce: local`` reading per-rank signals is refused with several
processes (``tests/test_negatives_global.py``, ``tests/test_contrastive_ratio_global.py``).
"""
from typing import Any, Dict, List, Literal, Optional, Tuple


from ckdsr.utils.option_spec import Field, Section

VARIANTS = ('paper', 'official')

#: per variant: (VGG19Features input_norm, clamp the bicubic negatives to [0, 1]). The 'paper' values
#: are ASSUMPTIONS (no text this project has states them); the 'official' ones are the released code's.
VARIANT_DEFAULTS: Dict[str, Dict[str, Any]] = {
    'paper': {'input_norm': 'imagenet', 'clamp_negatives': True},
    'official': {'input_norm': 'none_255', 'clamp_negatives': False},
}

CSD_SCHEMA = Section({
    'variant': Field(Literal['paper', 'official'], 'paper',
                     'paper | official: defaults for what the released code does differently (VGG input '
                     'scaling, unclamped negatives; the paper values are assumptions); an option set '
                     'explicitly always wins'),
    'student_width': Field(float, 0.25, 'width_mult of the student (CS-Student): the first channels of '
                                        'every conv; validation and export use it'),
    'teacher_width': Field(float, 1.0, 'width_mult of the jointly trained teacher'),
    'clamp_negatives': Field(Optional[bool], None, 'clamp the bicubic negatives to [0, 1] (null: the '
                                                   'variant decides; paper true (an assumption), official false)'),
    'export_student': Field(bool, True, "also write the student as a plain narrow network state_dict "
                                        "(EDSR / RCAN / CARN_M) under 'params_student' in every exported weights file"),
    'init_from': Field(Literal['pretrained', 'scratch'], 'pretrained',
                       'pretrained: the shared net starts from the trained full-width network in '
                       'path.pretrain_network_g (required); scratch: both widths trained jointly from a random init'),
}, doc='CSD: one slimmable net trained at two widths (CSDModel)')


def resolve_variant(opt: Dict[str, Any]) -> Tuple[Dict[str, Any], List[str]]:
    """A copy of ``opt`` with ``distill.csd`` and the VGG embedding's ``input_norm`` filled from
    ``distill.csd.variant`` where the file left them out, plus one note per value filled in.
    ``opt`` is not modified."""
    import copy
    out = copy.deepcopy(opt)
    distill = out.setdefault('distill', {}) or {}
    out['distill'] = distill
    csd = dict(distill.get('csd') or {})
    variant = csd.get('variant') or 'paper'
    if variant not in VARIANTS:
        raise ValueError(f"distill.csd.variant: expected one of {VARIANTS}, got {variant!r}")
    defaults = VARIANT_DEFAULTS[variant]
    notes = []
    csd.setdefault('variant', variant)
    csd.setdefault('student_width', 0.25)
    csd.setdefault('teacher_width', 1.0)
    csd.setdefault('export_student', True)
    csd.setdefault('init_from', 'pretrained')
    if csd.get('clamp_negatives') is None:
        csd['clamp_negatives'] = defaults['clamp_negatives']
        notes.append(f"distill.csd.clamp_negatives = {csd['clamp_negatives']} (variant {variant})")
    distill['csd'] = csd
    emb = distill.get('embedding')
    if emb and emb.get('type') == 'VGG19Features' and 'input_norm' not in emb:
        distill['embedding'] = {**emb, 'input_norm': defaults['input_norm']}
        notes.append(f"distill.embedding.input_norm = {defaults['input_norm']} (variant {variant})")
    return out, notes

