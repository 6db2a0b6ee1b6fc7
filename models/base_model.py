"""BaseModel: the trained network, its EMA copy, optimizers, schedulers and one training step.

Subclasses say *what* the loss is (``compute_losses``) and may add per-step hooks
(``before_step`` / ``after_step``: DCKD's history update, PCL's discriminator step); the step
mechanics (AMP, NaN guard agreed across ranks, clipping, EMA, LR schedule) live here once.
"""
import logging
from contextlib import nullcontext
from typing import Any, Dict, Iterator, Optional

import torch
from torch import nn

from ckdsr.models.ema import ModelEMA
from ckdsr.models.network_io import build_network, load_weights, to_device, unwrap
from ckdsr.models.optimizers import build_optimizer
from ckdsr.models.replica_sync import sync_replicas
from ckdsr.models.schedulers import build_scheduler
from ckdsr.utils.dist import all_reduce_mean

logger = logging.getLogger('ckdsr')

AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}
#: device types where ``train.channels_last`` takes effect (on the CPU it is slower, so runs stay
#: NCHW there; tests/test_amp_channels_last.py adds 'cpu' to exercise the memory format without a GPU)
CHANNELS_LAST_DEVICES = ('cuda',)


class NonFiniteLossError(RuntimeError):
    """Raised after ``train.max_bad_steps`` consecutive non-finite losses."""


def select_device(num_gpu: Any, rank: int = 0) -> torch.device:
    """``num_gpu: 0`` -> CPU; 'auto' or >0 -> this process's CUDA device when CUDA is available.

    Under torchrun, ``ckdsr.utils.dist.init_dist`` has already selected the device of LOCAL_RANK.
    """
    if num_gpu == 0 or not torch.cuda.is_available():
        return torch.device('cpu')
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.device('cuda', torch.cuda.current_device())
    return torch.device('cuda', rank % torch.cuda.device_count())


class BaseModel:
    """Training/inference wrapper around ``network_g``."""

    @classmethod
    def option_sections(cls) -> Dict[str, Any]:
        """Extra option-schema sections this model understands (merged into the base schema)."""
        return {}

    def __init__(self, opt: Dict[str, Any], is_train: bool = True, rank: int = 0, world_size: int = 1,
                 device: Optional[torch.device] = None):
        self.opt = opt
        self.rank, self.world_size = rank, world_size
        self.device = device or select_device(opt.get('num_gpu', 'auto'), rank)
        self.scale = opt['scale']
        train_opt = opt.get('train') or {}
        self.is_train = is_train and bool(train_opt)
        self.channels_last = bool(train_opt.get('channels_last')) and self.device.type in CHANNELS_LAST_DEVICES
        self.amp_dtype = AMP_DTYPES.get(train_opt.get('amp')) if self.is_train else None

        path = opt.get('path') or {}
        net = build_network(opt['network_g'], self.scale)
        load_weights(net, path.get('pretrain_network_g'), path.get('param_key_g', 'auto'),
                     path.get('strict_load_g', True), 'path.pretrain_network_g')
        self.net_g = to_device(net, self.device, self.channels_last)
        self.ema = None
        self.optimizers: Dict[str, torch.optim.Optimizer] = {}
        self.schedulers: Dict[str, Any] = {}
        self.bad_steps = 0
        if self.is_train:
            self.setup_training(train_opt)

    # ------------------------------------------------------------------ set-up
    def setup_training(self, train_opt: Dict[str, Any]) -> None:
        decay = train_opt.get('ema_decay', 0.0)
        if decay > 0:
            self.ema = ModelEMA(self.net_g, decay)
        self.net_g.train()
        self.optimizers['g'] = build_optimizer(list(self.trainable_parameters()), train_opt['optim_g'])
        # losses first: they may add param groups to optimizer g (e.g. FACD's regressors), which the
        # scheduler must know from the start (it schedules, saves and restores every group)
        self.build_losses(train_opt)
        if train_opt.get('scheduler'):
            self.schedulers['g'] = build_scheduler(self.optimizers['g'], train_opt['scheduler'],
                                                   warmup_iter=train_opt.get('warmup_iter', -1))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=train_opt.get('amp') == 'fp16')
        self.grad_clip = train_opt.get('grad_clip')
        self.max_bad_steps = train_opt.get('max_bad_steps', 5)
        # every copy made above (EMA, history model, component nets) still holds this rank's own
        # random init: make them all rank 0's before DDP wraps the net (issue 16, point 4); a
        # collective, like the DDP wrap, so only where the net will be wrapped
        if self.world_size > 1:
            sync_replicas(self)
        self.net_g = self.wrap_for_training(self.net_g, train_opt)

    def wrap_for_training(self, net: nn.Module, train_opt: Dict[str, Any]) -> nn.Module:
        """DDP for multi-process runs (trained nets only), then optional torch.compile."""
        if self.world_size > 1:
            ids = [self.device.index] if self.device.type == 'cuda' else None
            net = nn.parallel.DistributedDataParallel(net, device_ids=ids,
                                                      find_unused_parameters=self.find_unused_parameters)
        if train_opt.get('compile'):
            net = torch.compile(net)
        return net

    #: DDP setting; True for models that run only part of the network in some steps
    find_unused_parameters = False

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        return (p for p in self.net_g.parameters() if p.requires_grad)

    def build_losses(self, train_opt: Dict[str, Any]) -> None:
        """Create loss modules from the options (subclasses)."""

    # ------------------------------------------------------------------ the step
    def feed_data(self, batch: Dict[str, Any]) -> None:
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        self.lq = batch['lq'].to(self.device, non_blocking=True).contiguous(memory_format=fmt)
        gt = batch.get('gt')
        self.gt = gt.to(self.device, non_blocking=True).contiguous(memory_format=fmt) if gt is not None else None

    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def compute_losses(self, current_iter: int) -> Dict[str, torch.Tensor]:
        """Weighted loss terms by name (subclasses). Their sum is minimised."""
        raise NotImplementedError

    def before_step(self, current_iter: int) -> None:
        """Hook run before the forward pass of each iteration."""

    def before_optimizer_step(self, current_iter: int) -> None:
        """Hook run after backward, before clipping and the optimizer step."""

    def after_step(self, current_iter: int) -> None:
        """Hook run after the optimizer step of each iteration (EMA already updated)."""

    def train_step(self, batch: Dict[str, Any], current_iter: int) -> Dict[str, torch.Tensor]:
        """One optimisation step; returns detached loss terms (no host sync)."""
        self.feed_data(batch)
        self.before_step(current_iter)
        opt = self.optimizers['g']
        with self.autocast():
            losses = self.compute_losses(current_iter)
        total = sum(losses.values())
        if not self._all_finite(total):
            opt.zero_grad(set_to_none=True)
            if 'g' in self.schedulers:  # keep the schedule on the iteration count
                self.schedulers['g'].set_iter(current_iter + 1)
            self.bad_steps += 1
            logger.warning(f'iter {current_iter}: non-finite loss, step skipped '
                           f'({self.bad_steps}/{self.max_bad_steps} in a row)')
            if self.bad_steps >= self.max_bad_steps:
                raise NonFiniteLossError(f'{self.bad_steps} consecutive non-finite losses at iter '
                                         f'{current_iter}; lower the learning rate or check the data')
            return {k: v.detach() for k, v in losses.items()}
        self.bad_steps = 0
        self.backward_and_step(total, current_iter)
        opt.zero_grad(set_to_none=True)
        if 'g' in self.schedulers:
            self.schedulers['g'].step()
        if self.ema is not None:
            self.ema.update(self.net_g)
        self.after_step(current_iter)
        out = {k: v.detach() for k, v in losses.items()}
        out['l_total'] = total.detach()
        return out

    def backward_and_step(self, total: torch.Tensor, current_iter: int) -> None:
        """Scaled backward of ``total``, :meth:`before_optimizer_step`, clipping to ``grad_clip``, one
        step of the ``g`` optimizer; the gradient is left for the caller to clear."""
        opt = self.optimizers['g']
        self.scaler.scale(total).backward()
        self.before_optimizer_step(current_iter)
        if self.grad_clip:
            self.scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(self.net_g.parameters(), self.grad_clip)
        self.scaler.step(opt)
        self.scaler.update()

    def _all_finite(self, total: torch.Tensor) -> bool:
        """Finite on every rank (one tiny all-reduce, so ranks skip a bad step together)."""
        flag = torch.isfinite(total.detach()).float()
        if self.world_size > 1:
            flag = all_reduce_mean(flag)
        return bool(flag.item() == 1.0)

    def current_lr(self) -> float:
        return self.optimizers['g'].param_groups[0]['lr']

    # ------------------------------------------------------------------ inference
    def inference_net(self, use_ema: bool = True) -> nn.Module:
        """The network validation and export use: the EMA copy when there is one."""
        if use_ema and self.ema is not None:
            return self.ema.module
        return unwrap(self.net_g)

    # ------------------------------------------------------------------ state
    def network_state(self) -> Dict[str, Any]:
        """What an exported weights file holds (BasicSR layout)."""
        state = {'params': unwrap(self.net_g).state_dict()}
        if self.ema is not None:
            state['params_ema'] = self.ema.module.state_dict()
        return state

    def training_state(self) -> Dict[str, Any]:
        """Everything needed to resume: trained nets, optimizers, schedulers, scaler, extras.

        Frozen networks are not included (they are reloaded from their option paths).
        """
        return {
            'networks': self.network_state(),
            'optimizers': {k: o.state_dict() for k, o in self.optimizers.items()},
            'schedulers': {k: s.state_dict() for k, s in self.schedulers.items()},
            'scaler': self.scaler.state_dict(),
            'bad_steps': self.bad_steps,
            'extra': self.extra_state(),
        }

    def load_training_state(self, state: Dict[str, Any]) -> None:
        nets = state['networks']
        unwrap(self.net_g).load_state_dict(nets['params'])
        if self.ema is not None:
            self.ema.module.load_state_dict(nets.get('params_ema', nets['params']))
        for k, o in self.optimizers.items():
            o.load_state_dict(state['optimizers'][k])
        for k, s in self.schedulers.items():
            s.load_state_dict(state['schedulers'][k])
        self.scaler.load_state_dict(state['scaler'])
        self.bad_steps = state.get('bad_steps', 0)
        self.load_extra_state(state.get('extra') or {})

    def extra_state(self) -> Dict[str, Any]:
        """Method-specific resume state (history model, discriminator...)."""
        return {}

    def load_extra_state(self, state: Dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` saved."""
