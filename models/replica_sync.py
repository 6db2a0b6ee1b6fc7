"""Make every copy of the trained network identical on all DDP ranks before the first step.

Each rank seeds its generators with ``manual_seed + rank`` (different crops per rank, as BasicSR
does), so each rank builds ``network_g`` with its own random initialisation. DDP broadcasts rank
0's parameters and buffers when it wraps the net, but the copies made before that -- the EMA
student, DCKD's history model (a copy of the EMA student), randomly initialised component nets
(FACD's regressors, PCL's discriminator) -- would keep each rank's own values, so rank >= 1 would
validate, pick ``net_g_best`` and draw negatives with a different network (issue 16, point 4).

:func:`sync_replicas` broadcasts, from rank 0, every parameter and buffer of the trained net, its
EMA copy and every ``nn.Module`` (or :class:`~models.ema.ModelEMA`) held by a distillation
component. Frozen nets loaded from files (teacher, embedding) are included: they are equal anyway,
and a randomly initialised stand-in would otherwise differ. One coalesced broadcast per dtype.
"""
import logging
from typing import Dict, Iterator, List, Tuple

import torch
import torch.distributed as dist
from torch import nn

from ckdsr.models.ema import ModelEMA, unwrap_model

logger = logging.getLogger('ckdsr')


def replicated_modules(model) -> List[Tuple[str, nn.Module]]:
    """``(name, module)`` of every network copy a training model holds that must match across ranks:
    ``network_g`` (unwrapped), ``ema``, and each component's modules (``<component>.<attribute>``)."""
    out = [('network_g', unwrap_model(model.net_g))]
    if getattr(model, 'ema', None) is not None:
        out.append(('ema', model.ema.module))
    for comp in getattr(model, 'components', None) or ():
        for attr, value in sorted(vars(comp).items()):
            if isinstance(value, ModelEMA):
                value = value.module
            if isinstance(value, nn.Module):
                out.append((f'{comp.name}.{attr}', value))
    return out


def module_tensors(modules: List[Tuple[str, nn.Module]]) -> Iterator[Tuple[str, torch.Tensor]]:
    """``(qualified name, tensor)`` of every parameter and buffer, each tensor object once."""
    seen = set()
    for name, module in modules:
        for source in (module.named_parameters(remove_duplicate=True), module.named_buffers(remove_duplicate=True)):
            for key, t in source:
                if id(t) not in seen:
                    seen.add(id(t))
                    yield f'{name}.{key}', t


def _comm_device(t: torch.Tensor) -> torch.device:
    """nccl broadcasts CUDA tensors in place; gloo is given CPU copies (always supported)."""
    return t.device if dist.get_backend() == 'nccl' else torch.device('cpu')


@torch.no_grad()
def broadcast_tensors_(tensors: List[torch.Tensor], src: int = 0) -> int:
    """Overwrite ``tensors`` on every rank with rank ``src``'s values, bit for bit; returns bytes sent.

    Tensors are grouped by (dtype, device) and each group travels as one flat buffer. Every rank
    must pass tensors of the same shapes and dtypes in the same order.
    """
    groups: Dict[Tuple[torch.dtype, torch.device], List[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.dtype, t.device), []).append(t)
    nbytes = 0
    for (dtype, _), group in groups.items():
        device = _comm_device(group[0])
        flat = torch.cat([t.detach().reshape(-1).to(device) for t in group])
        dist.broadcast(flat, src=src)
        offset = 0
        for t in group:
            n = t.numel()
            t.copy_(flat[offset:offset + n].view_as(t))
            offset += n
        nbytes += flat.numel() * flat.element_size()
    return nbytes


def sync_replicas(model, src: int = 0) -> None:
    """Broadcast every replicated network copy of ``model`` (see module doc) from rank ``src``.

    A collective: every rank calls it at the same point (end of ``BaseModel.setup_training``).
    No-op without a process group. Shapes are checked first (one small object gather), so a rank
    that built a different network fails with its name instead of hanging or corrupting weights.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    modules = replicated_modules(model)
    named = list(module_tensors(modules))
    layout = [(k, tuple(t.shape), str(t.dtype)) for k, t in named]
    layouts: List = [None] * dist.get_world_size()
    dist.all_gather_object(layouts, layout)
    for rank, other in enumerate(layouts):
        if other != layouts[src]:
            diff = next((a, b) for a, b in zip(layouts[src] + [None], other + [None]) if a != b)
            raise RuntimeError(f'DDP: rank {rank} built different networks than rank {src} '
                               f'(first difference: {diff[1]} vs {diff[0]}); every rank must use the same options')
    nbytes = broadcast_tensors_([t for _, t in named], src=src)
    if dist.get_rank() == 0:
        logger.info(f'DDP: {len(named)} tensors ({nbytes / 2 ** 20:.1f} MiB) of '
                    f'{", ".join(n for n, _ in modules)} broadcast from rank {src}')
