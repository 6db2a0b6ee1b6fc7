"""An embedding that needs no download: the frozen teacher's own features (``distill.teacher_embedding``).

DCKD contrasts images in the feature space of a pretrained VQGAN encoder and maps features to its
codebook (DMM). This component gives the same signals -- ``emb_sr`` (with gradient),
``emb_teacher_sr``, ``emb_negatives``, ``emb_gt``, ``emb_positives``, ``z_sr``, ``z_teacher_sr``,
``codebook`` -- from the teacher the run already loads, so DCKD runs fully offline.

How an image is embedded (an HR-size image: the student output, the teacher output, a history
negative): it is bicubic-downscaled by ``downscale`` (default: the run's scale; torch's antialiased
bicubic, differentiable, equal to MATLAB's ``imresize`` away from the borders) -- the teacher's
input domain -- and the frozen teacher runs on it *only up to the last tapped module* (a forward
hook stops the pass there). The outputs of the modules at ``taps`` are the embedding levels
(``ContrastiveRatioLoss`` gets one weight per tap). ``z`` for DMM is the output of ``z_tap``
(default: the last tap), L2-normalised over channels when ``normalize_z`` (squared distances then
lie in [0, 4], so the DMM softmax has a known scale); its codebook is fitted offline by k-means over
teacher features of the training set (``tools/fit_codebook.py``) and read from ``codebook_path``.

``centre_colour`` (default on): before the teacher, each downscaled image's per-channel mean is
replaced by ``colour_ref`` (default the DIV2K RGB mean of the EDSR / CARN released code,
0.4488, 0.4371, 0.4040), so the embedding -- and every contrastive / DMM term on it -- is exactly
blind to a global colour offset of the image, which the pixel terms alone then decide. Why
(benchmarks/kd_study/colour_cast.md): with the raw teacher features and the student's own history
as negatives, the contrastive ratio is at a maximum at the student's own colour along every channel
offset (moving away from all images lowers it), so training drifts in colour -- the cast of
DCKD-offline. Centring leaves the pixel terms alone to set the mean colour. Design choice of this
project, not from the paper or the released code (which use a VQGAN encoder).

The teacher's weights are shared with the ``teacher_sr`` forward (no second copy). The embedding
passes follow :class:`~models.distill.embedding.Embedding`: one pass with gradient for the student
output, one no-grad batched pass over every frozen image set.
"""
import os
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import nn

from ckdsr.archs.tapped_features import DIV2K_MEAN, FIT_HINT, TeacherFeatures, centre_colour, downscale_bicubic  # noqa: F401
from ckdsr.models.distill.embedding import Embedding
from ckdsr.models.distill.registry import ComponentSpec, register_component
from ckdsr.models.signals import Provider
from ckdsr.utils.option_spec import REQUIRED, Field, Section

CODEBOOK_FORMAT = 'ckdsr.teacher_codebook.v1'
#: ``distill.teacher_embedding.centre_colour`` when the option file leaves it out (chosen on the validation
#: split of benchmarks/kd_study: colour_cast.md)
CENTRE_COLOUR_DEFAULT = True
Z_SIGNALS = ('z_sr', 'z_teacher_sr', 'codebook')


def save_codebook(path: str, codebook: torch.Tensor, meta: Dict[str, Any]) -> str:
    """Write a codebook file: ``{'format', 'codebook': (K, D) float32, 'meta': {...}}``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save({'format': CODEBOOK_FORMAT, 'codebook': codebook.detach().float().cpu().contiguous(),
                'meta': dict(meta)}, path)
    return path


def load_codebook(path: str, where: str = 'distill.teacher_embedding.codebook_path'):
    """``(codebook (K, D), meta)`` from a file written by :func:`save_codebook`."""
    if not path or not os.path.isfile(os.path.expanduser(path)):
        state = 'is not set' if not path else f'points to a missing file ({path})'
        raise FileNotFoundError(f'{where} {state}: DMM with the teacher embedding needs a codebook fitted '
                                f'on teacher features; {FIT_HINT}')
    data = torch.load(os.path.expanduser(path), map_location='cpu', weights_only=True)
    if not isinstance(data, dict) or data.get('format') != CODEBOOK_FORMAT or 'codebook' not in data:
        raise ValueError(f'{where}: {path} is not a teacher codebook written by tools/fit_codebook.py')
    book = data['codebook']
    if book.dim() != 2:
        raise ValueError(f'{where}: {path} holds a codebook of shape {tuple(book.shape)}, expected (K, D)')
    return book.float(), dict(data.get('meta') or {})


def check_codebook_meta(meta: Dict[str, Any], z_tap: str, normalize_z: bool, downscale: int, path: str,
                        centre: bool = False) -> None:
    """The codebook must come from the same features the run computes (keys the file does not record,
    e.g. ``centre_colour`` in files written before that option, are not checked)."""
    expect = {'z_tap': z_tap, 'normalize_z': normalize_z, 'downscale': downscale, 'centre_colour': bool(centre)}
    bad = [f'{k}: file {meta[k]!r} vs options {v!r}' for k, v in expect.items() if k in meta and meta[k] != v]
    if bad:
        raise ValueError(f"distill.teacher_embedding.codebook_path: {path} was fitted on other features "
                         f"({'; '.join(bad)}); {FIT_HINT}")


def build_teacher_features(teacher_net: nn.Module, cfg: Dict[str, Any], scale: int,
                           with_codebook: bool = True) -> TeacherFeatures:
    """The :class:`TeacherFeatures` of a ``distill.teacher_embedding`` section (codebook loaded)."""
    downscale = int(cfg.get('downscale') or scale)
    taps = list(cfg['taps'])
    z_tap = cfg.get('z_tap') or taps[-1]
    path = cfg.get('codebook_path') if with_codebook else None
    centre = bool(cfg.get('centre_colour', CENTRE_COLOUR_DEFAULT))
    colour_ref = cfg.get('colour_ref') or DIV2K_MEAN
    codebook = None
    if path:
        codebook, meta = load_codebook(path)
        check_codebook_meta(meta, z_tap, bool(cfg.get('normalize_z', True)), downscale, path, centre)
    with_z = bool(path) or not with_codebook
    net = TeacherFeatures(teacher_net, taps, downscale, z_tap, with_z=with_z,
                          normalize_z=bool(cfg.get('normalize_z', True)), codebook=codebook,
                          centre_colour=centre, colour_ref=colour_ref)
    return net.to(next(teacher_net.parameters()).device)


class TeacherEmbedding(Embedding):
    """:class:`Embedding` over :class:`TeacherFeatures` (same providers, same batching)."""

    name = 'teacher_embedding'

    def __init__(self, model, cfg: Dict[str, Any]):  # noqa: super().__init__ builds a net from a cfg
        if getattr(model, 'teacher', None) is None:
            raise ValueError('distill.teacher_embedding: embeds with the teacher; set network_t and '
                             'path.pretrain_network_t')
        if (model.opt.get('distill') or {}).get('embedding'):
            raise ValueError('distill.embedding and distill.teacher_embedding both provide the emb_* signals; '
                             'set only one')
        self.net = build_teacher_features(model.teacher.net, cfg, model.scale)

    def providers(self) -> List[Provider]:
        providers = super().providers()
        if self.net.codebook is not None:
            return providers

        def guarded(fn):
            def run(step):
                if any(step.wants(s) for s in Z_SIGNALS):
                    raise FileNotFoundError('distill.teacher_embedding.codebook_path is not set: a term reads '
                                            f'{"/".join(Z_SIGNALS)} (DMM) from a codebook fitted on teacher '
                                            f'features; {FIT_HINT}')
                return fn(step)
            return run

        return [Provider(p.outputs, guarded(p.fn), p.deps, p.doc) for p in providers]


register_component(ComponentSpec(
    key='teacher_embedding',
    schema=Section({
        'taps': Field(Sequence[str], REQUIRED, 'module paths of network_t whose outputs are the embedding levels'),
        'downscale': Field(Optional[int], None, 'bicubic downscale before the teacher (default: the run scale)'),
        'z_tap': Field(Optional[str], None, 'module path whose output is z for DMM (default: the last tap)'),
        'normalize_z': Field(bool, True, 'L2-normalise z over channels (before k-means and in training)'),
        'codebook_path': Field(Optional[str], None, 'codebook fitted by tools/fit_codebook.py (needed for DMM)',
                               path=True),
        'centre_colour': Field(bool, CENTRE_COLOUR_DEFAULT, 'set each image\'s mean colour to colour_ref before the '
                               'teacher: the embedding ignores a global colour offset (benchmarks/kd_study/'
                               'colour_cast.md)'),
        'colour_ref': Field(Optional[Sequence[float]], None, 'mean RGB in [0, 1] of centred images (default: '
                            'the DIV2K mean 0.4488, 0.4371, 0.4040)'),
    }, absent_none=True, doc='offline embedding: the frozen teacher\'s own features (no VQGAN download)'),
    build=lambda model, cfg: TeacherEmbedding(model, cfg),
    doc='provides emb_sr, emb_teacher_sr, emb_negatives, emb_gt, emb_positives, z_sr, z_teacher_sr, codebook'))
