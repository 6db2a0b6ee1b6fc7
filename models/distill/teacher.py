"""The frozen teacher: one no-grad forward per step giving ``teacher_sr`` and ``teacher_feats``.

Other components may ask for the teacher's output on further images (DUKD/DCKD*'s label-consistency
term runs it on transformed copies of the LR batch) with :meth:`Teacher.add_input`. Those images are
concatenated with the LR batch and go through the SAME forward whenever their (C, H, W) equals the
batch's (always, for square training patches); an image group of another shape gets its own forward.
"""
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch

from ckdsr.models.distill.component import Component
from ckdsr.models.network_io import build_network, freeze, load_weights, to_device
from ckdsr.models.signals import Provider
from ckdsr.utils.feature_taps import FeatureTaps

Images = Union[torch.Tensor, List[torch.Tensor]]


class Teacher(Component):
    """Loads ``network_t`` from ``path.pretrain_network_t``, frozen; never wrapped in DDP."""

    name = 'teacher'

    def __init__(self, cfg: Dict[str, Any], path_opt: Dict[str, Any], scale: int, device: torch.device,
                 taps: Sequence[str] = (), autocast=None, channels_last: bool = False):
        net = build_network(cfg, scale)
        weights = path_opt.get('pretrain_network_t')
        if not weights:
            raise FileNotFoundError('path.pretrain_network_t: a KD run needs the trained teacher\'s weights '
                                    '(train one with options/train_*.yml or use a published checkpoint)')
        load_weights(net, weights, path_opt.get('param_key_t', 'auto'), path_opt.get('strict_load_t', True),
                     'path.pretrain_network_t')
        self.net = freeze(to_device(net, device, channels_last))  # same memory format as its input
        self.tap_paths = list(taps)
        FeatureTaps(self.net, self.tap_paths).remove()  # check the paths now, not at the first step
        self.autocast = autocast
        self.extra_inputs: Dict[str, str] = {}  # output signal -> signal holding the images

    def add_input(self, output: str, source: str) -> None:
        """Also provide ``output`` = the teacher on the images of signal ``source`` (a tensor, or a
        list of tensors whose result is a list in the same order), batched with the main forward."""
        if output in ('teacher_sr', 'teacher_feats') or output in self.extra_inputs:
            raise ValueError(f"teacher: signal '{output}' is already provided")
        self.extra_inputs[output] = source

    def _context(self):
        return self.autocast() if self.autocast else torch.autocast('cpu', enabled=False)

    @torch.no_grad()
    def run(self, lq: torch.Tensor):
        """``(sr, [features at the taps])`` for a batch, in one forward."""
        with self._context():
            if not self.tap_paths:
                return self.net(lq).float(), []
            with FeatureTaps(self.net, self.tap_paths) as taps:
                out = self.net(lq)
                feats = taps.features()
        return out.float(), [f.float() for f in feats]

    @torch.no_grad()
    def run_batched(self, batches: Sequence[torch.Tensor], taps_of: Optional[int] = None
                    ) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """The teacher on every tensor of ``batches``, concatenating those of equal (C, H, W) into one
        forward (first-seen order). ``taps_of``: index of the batch whose tapped features to return
        (it must come first in its shape group, which the caller ensures by passing it first)."""
        groups: Dict[Tuple[int, ...], List[int]] = {}
        for i, x in enumerate(batches):
            groups.setdefault(tuple(x.shape[1:]), []).append(i)
        outs: List[Optional[torch.Tensor]] = [None] * len(batches)
        feats: List[torch.Tensor] = []
        for idx in groups.values():
            x = batches[idx[0]] if len(idx) == 1 else torch.cat([batches[i] for i in idx], 0)
            with self._context():
                if taps_of is not None and taps_of in idx and self.tap_paths:
                    with FeatureTaps(self.net, self.tap_paths) as taps:
                        y = self.net(x)
                        tapped = taps.features()
                    n = batches[taps_of].shape[0]
                    feats = [f[:n].float() for f in tapped]  # the tapped batch is first in its group
                else:
                    y = self.net(x)
            y = y.float()
            start = 0
            for i in idx:
                n = batches[i].shape[0]
                outs[i] = y[start:start + n]
                start += n
        return outs, feats

    def providers(self) -> List[Provider]:
        extra = dict(self.extra_inputs)

        def teacher_forward(step):
            main = step.wants('teacher_sr') or step.wants('teacher_feats')
            batches: List[torch.Tensor] = [step['lq']] if main else []
            layout: List[Tuple[str, bool, int, int]] = []  # (signal, was a list, first batch, count)
            for out, src in extra.items():
                if not step.wants(out):
                    continue
                images: Images = step[src]
                as_list = isinstance(images, (list, tuple))
                parts = list(images) if as_list else [images]
                layout.append((out, as_list, len(batches), len(parts)))
                batches.extend(parts)
            results, feats = self.run_batched(batches, taps_of=0 if main and step.wants('teacher_feats') else None)
            values: Dict[str, Any] = {}
            if main:
                values['teacher_sr'], values['teacher_feats'] = results[0], feats
            for out, as_list, first, count in layout:
                parts = results[first:first + count]
                values[out] = parts if as_list else parts[0]
            return values

        deps = {'teacher_sr': ('lq',), 'teacher_feats': ('lq',), **{o: (s,) for o, s in extra.items()}}
        return [Provider(('teacher_sr', 'teacher_feats') + tuple(extra), teacher_forward, deps=deps,
                         doc='frozen teacher output and its tapped features (no grad), plus its output on '
                             'images other components ask for, in the same forward')]
