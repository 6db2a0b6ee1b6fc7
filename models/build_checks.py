"""Structural checks of a freshly built model, before any data is read (issue 16, point 10).

One no-grad forward of every network on a tiny input checks that it upscales by ``scale``; the
layer counts of the loss terms are checked against the taps and embedding layers they weight.
Mistakes that used to surface at the first step as a shape mismatch (or deep in a loss) become
one line naming the option key. The input comes from a private generator, so the run's random
streams are untouched, and each network is returned to its train/eval mode.
"""
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
from torch import nn

from ckdsr.models.network_io import unwrap
from ckdsr.utils.option_spec import OptionError

PROBE = 8  # LR side of the probe input (SwinIR pads to its window itself)


def _in_channels(net: nn.Module) -> int:
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    return 3


def _probe(net: nn.Module, side: int, device: torch.device) -> Any:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, _in_channels(net), side, side, generator=gen).to(device)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            return net(x)
    finally:
        net.train(was_training)


def networks(model) -> Iterator[Tuple[str, nn.Module]]:
    """``(option key, module)`` of every network that maps LR to SR."""
    yield 'network_g', unwrap(model.net_g)
    teacher = getattr(model, 'teacher', None)
    if teacher is not None and getattr(teacher, 'net', None) is not None:
        yield 'network_t', teacher.net


def check_scales(model, scale: int) -> List[str]:
    problems = []
    for key, net in networks(model):
        try:
            out = _probe(net, PROBE, model.device)
        except Exception as err:  # noqa: BLE001 - reported with the option key
            problems.append(f'{key}: one forward of a 1x{_in_channels(net)}x{PROBE}x{PROBE} input failed '
                            f'({type(err).__name__}: {" ".join(str(err).split())[:200]})')
            continue
        out = out[0] if isinstance(out, (tuple, list)) else out
        if not isinstance(out, torch.Tensor) or out.dim() != 4:
            continue  # not an image-to-image net: nothing to compare
        want = PROBE * scale
        if tuple(out.shape[-2:]) != (want, want):
            problems.append(f'{key}: maps a {PROBE}x{PROBE} input to {out.shape[-1]}x{out.shape[-2]}, not '
                            f'{want}x{want} (scale {scale}); check {key}.upscale and the options that set its scale')
    return problems


def _embedding_layers(model) -> Optional[Tuple[str, int]]:
    """``('distill.<key>', number of layers)`` of the embedding component, if any."""
    from ckdsr.models.distill.embedding import Embedding
    for comp in getattr(model, 'components', []):
        if isinstance(comp, Embedding):
            x_side = 32  # a multiple of 16: the VQGAN encoder downsamples by 16
            gen = torch.Generator().manual_seed(0)
            x = torch.rand(1, 3, x_side, x_side, generator=gen).to(model.device)
            with torch.no_grad():
                feats, _ = comp._run(x)
            return f'distill.{comp.name}', len(feats)
    return None


def check_layer_weights(model) -> List[str]:
    """Per-layer weights of each loss term against the taps / embedding layers they weight."""
    terms = getattr(model, 'terms', None)
    if not terms:
        return []
    train_opt = model.opt.get('train') or {}
    offset = 1 if train_opt.get('pixel_opt') else 0  # KDModel puts pixel_opt first
    student_taps = list(getattr(model, 'student_taps', []) or [])
    embedding = None
    problems = []
    for i, term in enumerate(terms):
        where = f'train.losses.{i - offset}'
        loss = term.loss
        if hasattr(loss, 'tap_weights') and student_taps and len(loss.tap_weights) != len(student_taps):
            problems.append(f'{where}.tap_weights: {len(loss.tap_weights)} weights for the '
                            f'{len(student_taps)} taps of distill.taps.student')
        reads_embedding = any(str(sig).startswith('emb_') for sig in term.inputs.values())
        if hasattr(loss, 'weights') and reads_embedding:
            embedding = embedding or _embedding_layers(model)
            if embedding and len(loss.weights) != embedding[1]:
                problems.append(f'{where}.weights: {len(loss.weights)} layer weights for the '
                                f'{embedding[1]} layers of {embedding[0]}')
    return problems


def check_model(model, opt: Dict[str, Any]) -> None:
    """Raise one OptionError listing every structural problem of ``model``."""
    problems = check_scales(model, opt['scale'])
    if not problems:
        problems = check_layer_weights(model)
    if problems:
        raise OptionError(problems, source=None)
