"""Weighted loss terms over named signals (``train.losses`` of a KDModel)."""
import inspect
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

import torch
from torch import nn

import ckdsr.losses  # noqa: F401  (fills LOSS_REGISTRY)
from ckdsr.utils.build import build_from_cfg
from ckdsr.utils.option_spec import Block, Field, registry_resolver
from ckdsr.utils.registry import LOSS_REGISTRY

#: a loss argument name -> the signal it reads unless the term's ``inputs:`` says otherwise
ARG_DEFAULTS = {
    'pred': 'sr', 'target': 'gt',
    'student_feats': 'student_feats', 'teacher_feats': 'teacher_feats',
    'anchor': 'emb_sr', 'positive': 'emb_teacher_sr', 'positives': 'emb_positives',
    'negatives': 'emb_negatives',
    'student_z': 'z_sr', 'teacher_z': 'z_teacher_sr', 'codebook': 'codebook',
    'sr': 'sr', 'teacher': 'teacher_sr', 'gt': 'gt', 'alpha': 'alpha',
    'student_sr': 'sr', 'teacher_sr_undone': 'lcr_teacher_sr',
}

TERM_FIELDS = {
    'weight': Field(float, 1.0, 'weight of the term in the total loss'),
    'name': Field(Optional[str], None, 'name in logs (default l_<type>)'),
    'inputs': Field(Optional[Dict[str, str]], None, 'loss argument -> signal name overrides'),
}

TERM_BLOCK = Block(registry_resolver(LOSS_REGISTRY), 'loss', extra=TERM_FIELDS,
                   doc='a weighted loss term; its arguments read the signals named in `inputs`')


def forward_args(loss: nn.Module) -> List[str]:
    """Names of the tensors a loss's ``forward`` takes (required arguments only)."""
    sig = inspect.signature(loss.forward)
    return [n for n, p in sig.parameters.items()
            if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def optional_args(loss: nn.Module) -> List[str]:
    """Names of the tensors a loss's ``forward`` takes optionally (with a default), e.g. FACD's
    ``alpha``; they are fed from a signal only when the term's ``inputs:`` names them."""
    sig = inspect.signature(loss.forward)
    return [n for n, p in sig.parameters.items()
            if p.default is not inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


@dataclass
class Term:
    name: str
    weight: float
    loss: nn.Module
    inputs: Dict[str, str]  # loss argument -> signal

    def __call__(self, step) -> torch.Tensor:
        return self.weight * self.loss(**{arg: step[sig] for arg, sig in self.inputs.items()})


def build_terms(cfgs: List[Mapping[str, Any]], device: torch.device, where: str = 'train.losses') -> List[Term]:
    """Terms from option blocks; signal names default from :data:`ARG_DEFAULTS`."""
    terms, names = [], set()
    for i, cfg in enumerate(cfgs):
        loss = build_from_cfg(cfg, LOSS_REGISTRY, skip=tuple(TERM_FIELDS)).to(device)
        given = dict(cfg.get('inputs') or {})
        inputs = {}
        for arg in forward_args(loss):
            if arg in given:
                inputs[arg] = given.pop(arg)
            elif arg in ARG_DEFAULTS:
                inputs[arg] = ARG_DEFAULTS[arg]
            else:
                raise KeyError(f"{where}.{i}.inputs: loss {cfg['type']} takes '{arg}'; say which signal "
                               f"feeds it (inputs: {{{arg}: <signal>}})")
        for arg in optional_args(loss):  # an optional argument reads a signal only when named
            if arg in given:
                inputs[arg] = given.pop(arg)
        if given:
            raise KeyError(f"{where}.{i}.inputs: {cfg['type']}.forward has no argument(s) {sorted(given)}; "
                           f"it takes {forward_args(loss) + optional_args(loss)}")
        name = cfg.get('name') or f"l_{cfg['type'].replace('Loss', '').lower()}"
        base, k = name, 2
        while name in names:
            name, k = f'{base}_{k}', k + 1
        names.add(name)
        terms.append(Term(name, float(cfg.get('weight', 1.0)), loss, inputs))
    return terms
