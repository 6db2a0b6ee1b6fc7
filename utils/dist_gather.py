"""Gather a batch from every DDP rank, keeping the gradient: the global batch for contrastive negatives.

Contrastive terms whose negatives are "the other images of the batch" (FACD) or "K images of the
batch" (CSD) must see the *global* batch, or the number of negatives -- and so the scale of the
loss -- changes with the number of GPUs (issue 17, point 8).

:func:`gather_batch` concatenates every rank's tensor along dim 0 in rank order, so the result is
the batch one process would see with ``batch_size_per_gpu * world_size`` (the distributed sampler
hands rank ``r`` its own slice of that batch). With gradient, it is an autograd function whose
backward **sums the incoming gradient over ranks** (all-reduce) and returns this rank's slice.

Why the sum: every rank computes the same loss ``L`` from the same gathered tensor, so each rank's
``dL/d(slice r)`` is the same, and the sum is ``world_size * dL/d(slice r)``; DDP (and KDModel for
component parameters) then *averages* parameter gradients over ranks, which divides by
``world_size`` again. A loss computed on the gathered batch, added to per-rank means (L1 terms),
therefore gives exactly the gradient of one process on the global batch, with no extra scaling.
The same backward is right when ranks compute *different* losses from the gathered tensor (then
the sum collects every rank's contribution to this rank's slice).

:func:`all_reduce_sum` is the cheap alternative for losses that are ratios of *means*: instead of
gathering the tensors, each rank all-reduces its per-layer sums and counts (a few scalars). Its
backward all-reduces (sums) the incoming gradient too: every rank's loss depends on every rank's
sums, so rank ``r``'s local sum receives ``sum_k dL_k/dS`` (``= world_size * dL/dS`` when all ranks
compute the same loss ``L(S)``), and DDP's average over ranks of ``(world_size * dL/dS) * ds_r/dtheta``
is ``dL/dS * sum_r ds_r/dtheta``, the single-process gradient of ``L`` (tested in
``tests/test_contrastive_ratio_global.py``). Never feed it values computed from gathered tensors:
the gather's backward sums once more and the gradient comes out ``world_size`` times too large.

Without a process group (or with one process) these functions return their input unchanged.
"""
from typing import Any

import torch
import torch.distributed as dist


def world_size() -> int:
    """Processes in the default group; 1 without one."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _comm_device(t: torch.Tensor) -> torch.device:
    """nccl talks CUDA tensors; gloo is given CPU copies (supported for every collective)."""
    return t.device if dist.get_backend() == 'nccl' else torch.device('cpu')


def _all_gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenation along dim 0 of every rank's ``x`` (same shape on every rank), no autograd."""
    n = dist.get_world_size()
    comm = x.detach().to(_comm_device(x)).contiguous()
    shape = torch.tensor(list(comm.shape), dtype=torch.long, device=comm.device)
    shapes = [torch.empty_like(shape) for _ in range(n)]
    dist.all_gather(shapes, shape)
    if any(not torch.equal(s, shape) for s in shapes):
        raise ValueError(f'gather_batch: ranks hold tensors of different shapes '
                         f'{[tuple(s.tolist()) for s in shapes]}; the global batch needs the same '
                         'batch_size_per_gpu on every rank (datasets.train.batch_size_per_gpu)')
    parts = [torch.empty_like(comm) for _ in range(n)]
    dist.all_gather(parts, comm)
    return torch.cat(parts, 0).to(x.device)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward all-reduces (sums) the gradient and returns this rank's slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.rows = dist.get_rank(), x.shape[0]
        return _all_gather(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        comm = grad.to(_comm_device(grad)).contiguous()  # a copy on gloo-with-CUDA; in place otherwise
        if comm is grad:
            comm = comm.clone()
        dist.all_reduce(comm, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.rows
        return comm[start:start + ctx.rows].to(grad.device)


def gather_batch(x: torch.Tensor) -> torch.Tensor:
    """Every rank's ``x`` concatenated along dim 0 (rank order); differentiable when ``x`` requires
    grad (see the module doc for the gradient). ``x`` itself with one process."""
    if world_size() == 1:
        return x
    if x.requires_grad and torch.is_grad_enabled():
        return _GatherWithGrad.apply(x)
    return _all_gather(x)


def gather_signal(value: Any) -> Any:
    """:func:`gather_batch` applied to a tensor, to each tensor of a list/tuple (per-tap features),
    or ``None`` passed through."""
    if value is None or isinstance(value, torch.Tensor):
        return value if value is None else gather_batch(value)
    if isinstance(value, (list, tuple)):
        return type(value)(gather_signal(v) for v in value)
    raise TypeError(f'gather_signal: cannot gather a {type(value).__name__} (tensors or lists of tensors)')


class _AllReduceSum(torch.autograd.Function):
    """all_reduce(SUM) whose backward is the all_reduce(SUM) of the incoming gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return _all_reduce_copy(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _all_reduce_copy(grad)


def _all_reduce_copy(x: torch.Tensor) -> torch.Tensor:
    """The sum over ranks of ``x``, as a new tensor on ``x``'s device (``x`` is left as it is)."""
    comm = x.detach().to(_comm_device(x)).clone().contiguous()
    dist.all_reduce(comm, op=dist.ReduceOp.SUM)
    return comm.to(x.device)


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum of ``x`` over every rank (every rank gets it), differentiable when ``x`` requires grad
    (backward: the sum over ranks of the incoming gradient; see the module doc). Every rank must
    call it with the same shape. ``x`` itself with one process."""
    if world_size() == 1:
        return x
    if x.requires_grad and torch.is_grad_enabled():
        return _AllReduceSum.apply(x)
    return _all_reduce_copy(x)
