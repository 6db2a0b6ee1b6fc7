"""A frozen embedding network (VGG19, the VQGAN encoder, ...) for contrastive terms.

Signals: ``emb_sr`` (the student output's features, with gradient) and, from ONE batched
no-grad forward over every frozen image set a term needs, ``emb_teacher_sr``, ``emb_gt``,
``emb_negatives`` (B,K,... or K,... per layer) and ``emb_positives``. When the net also returns
a quantiser input ``z`` (VQGAN with ``return_z``), ``z_sr`` / ``z_teacher_sr`` and its
``codebook`` are provided too (DCKD's DMM term).
"""
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from ckdsr.models.distill.component import Component
from ckdsr.models.network_io import build_network, freeze, to_device
from ckdsr.models.signals import Provider
from ckdsr.utils.option_spec import signature_params
from ckdsr.utils.registry import ARCH_REGISTRY

#: embedding signal -> the image signal it embeds (frozen side)
FROZEN_TARGETS = {'emb_teacher_sr': 'teacher_sr', 'emb_gt': 'gt', 'emb_negatives': 'negatives',
                  'emb_positives': 'positives'}


def _option_key_kwargs(cfg: Dict[str, Any], where: str) -> Dict[str, Any]:
    """Tell the arch which option key its weights path is, so a missing file names it."""
    params, _ = signature_params(ARCH_REGISTRY.get(cfg['type']))
    if 'option_key' not in params or 'option_key' in cfg:
        return {}
    path_args = [k for k in params if k.endswith('_path')]
    return {'option_key': f'{where}.{path_args[0]}' if path_args else where}


def _split(x: torch.Tensor, sizes: Sequence[int], shapes: Sequence[Tuple[int, ...]]) -> List[torch.Tensor]:
    parts = torch.split(x, list(sizes), dim=0)
    return [p.reshape(*lead, *p.shape[1:]) for p, lead in zip(parts, shapes)]


class Embedding(Component):
    name = 'embedding'

    def __init__(self, cfg: Dict[str, Any], device: torch.device, where: str = 'distill.embedding',
                 channels_last: bool = False):
        cfg = dict(cfg)
        extra = _option_key_kwargs(cfg, where)
        self.net = freeze(to_device(build_network({**cfg, **extra}), device, channels_last))

    def _run(self, x: torch.Tensor, z_rows: Optional[slice] = None):
        """(features per layer, z or None); ``z_rows`` limits z to those rows (nets returning z).

        Always in float32, autocast off: the contrastive terms compare small differences of
        features, which bf16 rounding swamps (CSD's VGG ratio on a tiny set-up: 79.5 under bf16
        autocast against 21.44 in fp32; 21.48 with this rule). The gradient still reaches a bf16
        student output through the cast.
        """
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self._run_fp32(x.float(), z_rows)

    def _run_fp32(self, x: torch.Tensor, z_rows: Optional[slice]):
        if not getattr(self.net, 'return_z', False):  # z for all rows (or none); sliced here
            out = self.net(x)
            if not isinstance(out, tuple):
                return list(out), None
            z = out[1] if z_rows is None or out[1] is None else out[1][z_rows]
            return list(out[0]), (z if z is None or z.shape[0] else None)
        feats, z = self.net(x, z_rows=z_rows)  # nets with return_z (VQGAN) take z_rows themselves
        return list(feats), z

    def providers(self) -> List[Provider]:
        def anchor(step):
            feats, z = self._run(step['sr'])
            return {'emb_sr': feats, 'z_sr': z}

        def frozen(step):
            wanted = [s for s in FROZEN_TARGETS if step.wants(s) or (s == 'emb_teacher_sr' and step.wants('z_teacher_sr'))]
            images, sizes, leads = [], [], []
            for sig in wanted:
                img = step[FROZEN_TARGETS[sig]].detach()
                lead = tuple(img.shape[:-3])
                images.append(img.reshape(-1, *img.shape[-3:]))
                sizes.append(images[-1].shape[0])
                leads.append(lead)
            z_rows = slice(0, 0)  # z (VQGAN's quantiser input) only for the teacher output's rows
            if 'emb_teacher_sr' in wanted:
                start = sum(sizes[:wanted.index('emb_teacher_sr')])
                z_rows = slice(start, start + sizes[wanted.index('emb_teacher_sr')])
            with torch.no_grad():
                feats, z = self._run(torch.cat(images, 0), z_rows)
            out = {}
            per_layer = [_split(f, sizes, leads) for f in feats]
            for i, sig in enumerate(wanted):
                out[sig] = [layer[i] for layer in per_layer]
            if z is not None:
                lead = leads[wanted.index('emb_teacher_sr')]
                out['z_teacher_sr'] = z.reshape(*lead, *z.shape[1:])
            return out

        frozen_outputs = tuple(FROZEN_TARGETS) + ('z_teacher_sr',)
        return [
            Provider(('emb_sr', 'z_sr'), anchor, deps=('sr',), doc='embedding of the student output (grad)'),
            Provider(frozen_outputs, frozen, deps={**{k: (v,) for k, v in FROZEN_TARGETS.items()},
                                                   'z_teacher_sr': ('teacher_sr',)},
                     doc='one no-grad embedding pass over all frozen images'),
            Provider(('codebook',), lambda step: {'codebook': self.net.codebook.detach()}, doc='embedding codebook'),
        ]
