"""PCL-SISR: contrastive fine-tuning with a trained discriminator as the embedding.

Wu, Jiang, Liu, "A Practical Contrastive Learning Framework for Single-Image Super-Resolution",
IEEE TNNLS 2023 (arXiv 2111.13924); official code github.com/Aitical/PCL-SISR
(``src/loss/adversarial.py``, ``src/trainer.py``, ``src/scripts/RCAN_scripts/rcanx4_PCL.sh``).

The ``distill.pcl`` component holds

* the **sample generator** (:func:`ckdsr.data.pcl_samples.make_pcl_samples`): positives = GT + sharpened
  GT, negatives = Gaussian-blurred GT (paper) or upsampled LR + blurred GT (official), 4 + 4,
  drawn from the component's own seeded ``torch.Generator`` (its state is resume state);
* the **embedding discriminator** (:class:`ckdsr.archs.pcl_discriminator.PCLDiscriminator` on the Haar
  LH/HL/HH sub-bands) with its own optimizer and scheduler (``optim_d`` / ``scheduler_d``);
* the **alternation**: after every SR step (``after_step``) one discriminator step (``d_steps``)
  with the dual contrastive loss (:func:`ckdsr.losses.pcl_discriminator_loss.dual_contrastive_loss`,
  Yu et al. ICCV 2021 eqs. 3-4) on real = every positive (GT, sharpened GT) and fake = the
  blurred-GT negatives + the step's SR output, detached -- what the official ``Adversarial.forward``
  feeds with ``--contras_D_train`` (the upsampled-LR negative, when there is one, is *not* a fake
  there; ``d_fake_lr`` adds it). During the SR step the discriminator is frozen (``requires_grad`` off).

Signals: ``positives``, ``negatives`` (B, K, C, H, W images), and the discriminator features at the
tapped blocks ``emb_sr``, ``emb_positives``, ``emb_negatives`` (lists over taps of (B, C, H, W) /
(B, K, C, H, W)), which :class:`ckdsr.losses.infonce.PCLInfoNCELoss` reads by default (the paper's
L_CL; total = L1 + alpha * L_CL is written in ``train.losses``).

Variants (DESIGN.md section 4; docs/pcl.md):

* ``paper``: "the first 4 intermediate layers" of the discriminator (blocks 0, 1, 2, 3) at the
  conv-BN output ("before ReLU"); K_N = 4 negatives, all Gaussian-blurred GT (the upsampled LR as
  a negative is one of the paper's ablation configurations); positives GT + GT sharpened with
  factors above 1 (U(1, 3]: the range is an assumption); the SR image's features with gradient
  through the frozen discriminator (BN in eval mode: every image is embedded with D's running
  statistics, so one batched no-grad pass serves all positives and negatives).
* ``official``: what the released script runs: one block (4), the upsampled LR as the first of
  the 4 negatives, sharpening factors U[0.5, 3], post-activation features (the
  in-place LeakyReLU overwrites the "before ReLU" taps), BN in train mode with one pass per image
  set (as the code calls the discriminator once per set), the samples rounded to 8 bit, blur drawn
  once per copy for the batch, LR upsampled with ``align_corners=True`` -- and the SR image's
  features under ``torch.no_grad``: the contrastive term is computed and logged but gives the SR
  network no gradient at all (a warning says so at build time).
"""
import logging
from typing import Any, Dict, Iterable, List, Literal, Optional, Sequence

import torch
from torch import nn

from ckdsr.data.pcl_samples import make_pcl_samples
from ckdsr.losses.pcl_discriminator_loss import dual_contrastive_loss
from ckdsr.models.distill.component import Component
from ckdsr.models.distill.registry import ComponentSpec, register_component
from ckdsr.models.network_io import build_network, load_weights, to_device
from ckdsr.models.optimizers import build_optimizer
from ckdsr.models.option_schema import optimizer_resolver, scheduler_resolver
from ckdsr.models.schedulers import build_scheduler
from ckdsr.models.signals import Provider
from ckdsr.utils.option_spec import Block, Field, Section, registry_resolver
from ckdsr.utils.registry import ARCH_REGISTRY

logger = logging.getLogger('ckdsr')

#: settings a variant decides when the option is left null
VARIANT_DEFAULTS: Dict[str, Dict[str, Any]] = {
    'paper': {'taps': (0, 1, 2, 3), 'tap_point': 'pre_act', 'sr_grad': True, 'embed_bn': 'eval',
              'include_lr': False, 'sharp_range': (1.0, 3.0),
              'blur_batch_shared': False, 'align_corners': False, 'quantize': False},
    'official': {'taps': (4,), 'tap_point': 'post_act', 'sr_grad': False, 'embed_bn': 'batch',
                 'include_lr': True, 'sharp_range': (0.5, 3.0),
                 'blur_batch_shared': True, 'align_corners': True, 'quantize': True},
}

SIGNALS = ('positives', 'negatives', 'emb_sr', 'emb_positives', 'emb_negatives')

OFFICIAL_NO_GRAD_WARNING = (
    'distill.pcl: sr_grad is off (variant official): the discriminator features of the SR output are '
    'computed under torch.no_grad, as in the released PCL-SISR code, so the contrastive term is computed '
    'and logged but contributes ZERO gradient -- only the other terms (L1) train the network. '
    'Use variant: paper (or sr_grad: true) to train with the contrastive loss.')

PCL_SCHEMA = Section({
    'variant': Field(Literal['paper', 'official'], 'paper',
                     'paper: 4 taps, gradient through the frozen discriminator; official: the released '
                     'scripts (1 tap, SR features under no_grad: the contrastive term trains nothing)'),
    'network_d': Block(registry_resolver(ARCH_REGISTRY), 'arch', required=False,
                       doc='the embedding discriminator (null: {type: PCLDiscriminator}); an unset '
                           'tap_point follows the variant (paper pre_act, official post_act)'),
    'pretrain_network_d': Field(Optional[str], None, 'weights to initialise the discriminator', path=True),
    'param_key_d': Field(Optional[str], 'auto', 'key inside the discriminator checkpoint'),
    'strict_load_d': Field(bool, True, 'require an exact key match for the discriminator'),
    'optim_d': Block(optimizer_resolver, 'optimizer', required=False,
                     doc="the discriminator's optimizer (null: train.optim_g's settings, as the official code)"),
    'scheduler_d': Block(scheduler_resolver, 'scheduler', required=False,
                         doc="the discriminator's LR schedule (null: train.scheduler's settings)"),
    'taps': Field(Optional[List[int]], None,
                  'discriminator blocks (0-based) whose features are contrasted (null: paper [0, 1, 2, 3], '
                  '"the first 4 intermediate layers"; official [4], --cl_layer 4)'),
    'sr_grad': Field(Optional[bool], None,
                     "backpropagate the contrastive term into the SR net through the frozen discriminator "
                     "(null: paper true, official false)"),
    'embed_bn': Field(Optional[Literal['eval', 'batch']], None,
                      'BatchNorm of the embedding passes: eval (running statistics, one batched pass) or '
                      'batch (train mode, one pass per image set, as the official code); null: paper eval, '
                      'official batch'),
    'd_steps': Field(int, 1, 'discriminator updates per iteration (official --gan_k)'),
    'd_fake_lr': Field(bool, False, 'also show the upsampled-LR negative to the discriminator as fake '
                                    '(the official code does not)'),
    'num_pos': Field(int, 4, 'positives: GT + (num_pos - 1) sharpened GT'),
    'num_neg': Field(int, 4, 'negatives: [upsampled LR if include_lr] + blurred GT, num_neg in all (paper K_N = 4)'),
    'include_lr': Field(Optional[bool], None, 'the bicubically upsampled LR is the first negative (null: paper '
                                              'false, all negatives blurred GT; official true)'),
    'sharp_range': Field(Optional[List[float]], None, 'sharpness factors drawn from U(a, b] (null: paper '
                                                      '[1, 3], factors above 1, range an assumption; official '
                                                      '[0.5, 3], --sharp_value 0.5 --sharp_range 2.5)'),
    'blur_kernel': Field(List[int], (3, 11), 'odd Gaussian kernel sizes in [a, b]'),
    'blur_sigma': Field(List[float], (0.1, 2.0), 'Gaussian sigma range U[a, b]'),
    'blur_isotropic': Field(bool, False, 'one kernel size and sigma for both axes'),
    'blur_batch_shared': Field(Optional[bool], None, 'one blur per copy for the whole batch '
                                                     '(null: paper false, official true)'),
    'align_corners': Field(Optional[bool], None, 'bicubic LR upsampling with align_corners '
                                                 '(null: paper false, official true)'),
    'quantize': Field(Optional[bool], None, 'round generated samples to 8 bit (null: paper false, official true)'),
    'signal_prefix': Field(str, '', "prefix of the signal names (e.g. 'pcl_' to combine PCL with "
                                    'another embedding in one run; point the term\'s inputs at them)'),
}, absent_none=True, doc='PCL-SISR: trained discriminator embedding, samples and alternation')


def resolve(cfg: Dict[str, Any], key: str) -> Any:
    """``cfg[key]``, or the variant's default when it is null."""
    value = cfg.get(key)
    return VARIANT_DEFAULTS[cfg.get('variant', 'paper')][key] if value is None else value


def _split_sets(x: torch.Tensor) -> List[torch.Tensor]:
    """(B, K, C, H, W) -> K tensors (B, C, H, W)."""
    return [x[:, k] for k in range(x.shape[1])]


class PCLComponent(Component):
    """The trained embedding discriminator, its optimizer/scheduler, the sample generator and the
    discriminator step. See the module docstring."""

    name = 'pcl'

    def __init__(self, model, cfg: Dict[str, Any]):
        self.model = model
        self.device = model.device
        self.scale = model.scale
        self.variant = cfg.get('variant', 'paper')
        self.taps = [int(t) for t in resolve(cfg, 'taps')]
        self.sr_grad = bool(resolve(cfg, 'sr_grad'))
        self.embed_bn = resolve(cfg, 'embed_bn')
        self.d_steps = int(cfg.get('d_steps', 1))
        self.d_fake_lr = bool(cfg.get('d_fake_lr', False))
        if self.d_steps < 1:
            raise ValueError('distill.pcl.d_steps: must be >= 1')
        if not self.taps:
            raise ValueError('distill.pcl.taps: need at least one discriminator block')
        self.sample_kwargs = {
            'n_pos': int(cfg.get('num_pos', 4)), 'n_neg': int(cfg.get('num_neg', 4)),
            'include_lr': bool(resolve(cfg, 'include_lr')),
            'sharp_range': tuple(float(v) for v in resolve(cfg, 'sharp_range')),
            'blur_kernel': tuple(cfg.get('blur_kernel', (3, 11))),
            'blur_sigma': tuple(cfg.get('blur_sigma', (0.1, 2.0))),
            'blur_isotropic': bool(cfg.get('blur_isotropic', False)),
            'blur_batch_shared': bool(resolve(cfg, 'blur_batch_shared')),
            'align_corners': bool(resolve(cfg, 'align_corners')),
            'quantize': bool(resolve(cfg, 'quantize')),
        }
        if self.sample_kwargs['n_pos'] < 1 or self.sample_kwargs['n_neg'] < 1:
            raise ValueError('distill.pcl: num_pos and num_neg must be >= 1 (GT and the upsampled LR come first)')
        lo_hi = self.sample_kwargs['sharp_range']
        if len(lo_hi) != 2 or not 0.0 <= lo_hi[0] <= lo_hi[1]:
            raise ValueError(f'distill.pcl.sharp_range: expected [a, b] with 0 <= a <= b, got {list(lo_hi)}')
        prefix = cfg.get('signal_prefix') or ''
        self.sig = {s: prefix + s for s in SIGNALS}

        # ---- the discriminator
        net_cfg = dict(cfg.get('network_d') or {'type': 'PCLDiscriminator'})
        if net_cfg['type'] == 'PCLDiscriminator' and 'tap_point' not in net_cfg:
            net_cfg['tap_point'] = VARIANT_DEFAULTS[self.variant]['tap_point']
        net = build_network(net_cfg)
        if not hasattr(net, 'forward_features'):
            raise TypeError(f"distill.pcl.network_d: {net_cfg['type']} has no forward_features(x, taps); "
                            'use PCLDiscriminator or an arch with that method')
        n_blocks = len(getattr(net, 'blocks', ())) or None
        if n_blocks is not None and any(not 0 <= t < n_blocks for t in self.taps):
            raise ValueError(f'distill.pcl.taps: {self.taps} must be block indices in 0..{n_blocks - 1}')
        load_weights(net, cfg.get('pretrain_network_d'), cfg.get('param_key_d', 'auto'),
                     cfg.get('strict_load_d', True), 'distill.pcl.pretrain_network_d')
        self.net_d = to_device(net, self.device, model.channels_last)  # the memory format of its inputs
        self.net_d.requires_grad_(False)  # frozen except inside the discriminator step

        # ---- its optimizer and schedule (BasicSR-style blocks, defaulting to the SR net's)
        train_opt = model.opt.get('train') or {}
        optim_cfg = cfg.get('optim_d') or train_opt['optim_g']
        self.optimizer_d = build_optimizer(list(self.net_d.parameters()), optim_cfg, where='distill.pcl.optim_d')
        sched_cfg = cfg.get('scheduler_d') or train_opt.get('scheduler')
        self.scheduler_d = (build_scheduler(self.optimizer_d, sched_cfg, warmup_iter=train_opt.get('warmup_iter', -1),
                                            where='distill.pcl.scheduler_d') if sched_cfg else None)
        self.scaler_d = torch.amp.GradScaler(self.device.type, enabled=train_opt.get('amp') == 'fp16')

        # ---- the sample generator (CPU generator: same draws on any device; resume state)
        self.generator = torch.Generator().manual_seed(int(model.seed) + int(model.rank))
        self.last_d_loss: Optional[torch.Tensor] = None

        if not self.sr_grad:
            logger.warning(OFFICIAL_NO_GRAD_WARNING)

    # ------------------------------------------------------------------ embedding
    def _mode(self, train: bool) -> None:
        self.net_d.train(train)

    def features(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Discriminator features of ``x`` (N, C, H, W) at the taps (float32)."""
        return [f.float() for f in self.net_d.forward_features(x, self.taps)]

    def embed_sets(self, sets: Sequence[torch.Tensor]) -> List[List[torch.Tensor]]:
        """No-grad features of image stacks (B, K, C, H, W): per stack, a list over taps of
        (B, K, C', H', W'). ``eval``: one batched pass over everything; ``batch``: train-mode BN
        with one pass per (B, C, H, W) image set, as the official code."""
        with torch.no_grad():
            if self.embed_bn == 'eval':
                self._mode(False)
                flat = torch.cat([s.reshape(-1, *s.shape[-3:]) for s in sets], 0)
                feats = self.features(flat)
                out, offset = [], 0
                for s in sets:
                    n = s.shape[0] * s.shape[1]
                    out.append([f[offset:offset + n].reshape(s.shape[0], s.shape[1], *f.shape[1:]) for f in feats])
                    offset += n
                return out
            self._mode(True)
            out = []
            for s in sets:
                per_set = [self.features(x) for x in _split_sets(s)]  # K lists over taps
                out.append([torch.stack([p[t] for p in per_set], dim=1) for t in range(len(self.taps))])
            return out

    def providers(self) -> List[Provider]:
        self._check_unique_signals()
        sig = self.sig

        def samples(step):
            with torch.no_grad():
                pos, neg = make_pcl_samples(step['gt'], step['lq'], self.scale, generator=self.generator,
                                            **self.sample_kwargs)
            return {sig['positives']: pos, sig['negatives']: neg}

        def anchor(step):
            sr = step['sr']
            self._mode(self.embed_bn == 'batch')
            if self.sr_grad:
                return {sig['emb_sr']: self.features(sr)}
            with torch.no_grad():  # the official code: no gradient reaches the SR network
                return {sig['emb_sr']: self.features(sr.detach())}

        def frozen(step):
            wanted = ([k for k in ('positives', 'negatives') if step.wants(sig['emb_' + k])]
                      or ['positives', 'negatives'])
            feats = self.embed_sets([step[sig[k]] for k in wanted])
            return {sig['emb_' + k]: f for k, f in zip(wanted, feats)}

        return [
            Provider((sig['positives'], sig['negatives']), samples, deps=('lq', 'gt'),
                     doc='PCL positives (GT, sharpened GT) and negatives (blurred GT; official: upsampled LR first)'),
            Provider((sig['emb_sr'],), anchor, deps=('sr',),
                     doc='discriminator features of the SR output (grad in the paper variant)'),
            Provider((sig['emb_positives'], sig['emb_negatives']), frozen,
                     deps={sig['emb_positives']: (sig['positives'],), sig['emb_negatives']: (sig['negatives'],)},
                     doc='no-grad discriminator features of the positives and negatives'),
        ]

    def _check_unique_signals(self) -> None:
        mine = set(self.sig.values())
        for comp in getattr(self.model, 'components', []):
            if comp is self:
                continue
            clash = mine & {name for p in comp.providers() for name in p.outputs}
            if clash:
                raise ValueError(f"distill.pcl and distill.{comp.name} both provide {sorted(clash)}; one run "
                                 f"cannot have two providers of a signal: set distill.pcl.signal_prefix "
                                 f"(e.g. 'pcl_') and point the PCL term's inputs at the prefixed names")

    # ------------------------------------------------------------------ the discriminator step
    def discriminator_loss(self, sr: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor
                           ) -> torch.Tensor:
        """Dual contrastive loss (Yu et al. 2021, eqs. 3-4) of the discriminator in train mode.

        real = every positive (GT, sharpened GT); fake = the SR output (detached) and the
        blurred-GT negatives (plus the upsampled LR, when it is a negative, with ``d_fake_lr``).
        One pass per image set, in the official order (SR, GT, sharpened, blurred), so BatchNorm
        sees the same batches.
        """
        self._mode(True)
        skip_lr = self.sample_kwargs['include_lr'] and not self.d_fake_lr
        fakes_neg = _split_sets(negatives)[1 if skip_lr else 0:]
        d_sr = self.net_d(sr.detach())
        real = [self.net_d(x) for x in _split_sets(positives)]
        fake = [self.net_d(x) for x in fakes_neg] + [d_sr]
        return dual_contrastive_loss(torch.cat(real).float(), torch.cat(fake).float())

    def after_step(self, model, current_iter: int) -> None:
        """One (``d_steps``) discriminator update on this iteration's SR output and samples,
        with the discriminator's own optimizer and schedule; D is frozen again afterwards."""
        step = model.last_step
        with torch.no_grad():
            sr = step['sr'].detach()
            pos, neg = step[self.sig['positives']], step[self.sig['negatives']]
        if self.scheduler_d is not None:
            self.scheduler_d.set_iter(current_iter)  # the lr of this iteration, also after skipped steps
        self.net_d.requires_grad_(True)
        try:
            for _ in range(self.d_steps):
                self.optimizer_d.zero_grad(set_to_none=True)
                with model.autocast():
                    loss = self.discriminator_loss(sr, pos, neg)
                self.scaler_d.scale(loss).backward()
                if model.world_size > 1:
                    self._average_grads()
                self.scaler_d.step(self.optimizer_d)
                self.scaler_d.update()
            self.optimizer_d.zero_grad(set_to_none=True)
        finally:
            self.net_d.requires_grad_(False)
        if model.world_size > 1:
            self._average_buffers()
        self.last_d_loss = loss.detach()

    def _average_grads(self) -> None:
        from ckdsr.utils.dist import all_reduce_mean
        params = [p for p in self.net_d.parameters() if p.grad is not None]
        mean = all_reduce_mean({str(i): p.grad for i, p in enumerate(params)})
        for i, p in enumerate(params):
            p.grad.copy_(mean[str(i)])

    def _average_buffers(self) -> None:
        """Keep BN running statistics identical on every rank (D lives outside DDP)."""
        from ckdsr.utils.dist import all_reduce_mean
        bufs = {k: b for k, b in self.net_d.named_buffers() if b.is_floating_point()}
        mean = all_reduce_mean(bufs)
        for k, b in bufs.items():
            b.copy_(mean[k])

    def before_step(self, model, current_iter: int) -> None:
        self.last_d_loss = None

    def logs(self) -> Dict[str, torch.Tensor]:
        return {'l_pcl_d': self.last_d_loss} if self.last_d_loss is not None else {}

    # ------------------------------------------------------------------ state
    def trainable_parameters(self) -> Iterable[nn.Parameter]:
        return []  # D has its own optimizer; nothing joins the SR net's

    def state_dict(self) -> Dict[str, Any]:
        return {
            'net_d': self.net_d.state_dict(),
            'optimizer_d': self.optimizer_d.state_dict(),
            'scheduler_d': self.scheduler_d.state_dict() if self.scheduler_d is not None else None,
            'scaler_d': self.scaler_d.state_dict(),
            'generator': self.generator.get_state(),
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.net_d.load_state_dict(state['net_d'])
        self.optimizer_d.load_state_dict(state['optimizer_d'])
        if self.scheduler_d is not None and state.get('scheduler_d') is not None:
            self.scheduler_d.load_state_dict(state['scheduler_d'])
        if state.get('scaler_d'):
            self.scaler_d.load_state_dict(state['scaler_d'])
        self.generator.set_state(state['generator'].cpu())  # map_location may have moved it


register_component(ComponentSpec(
    key='pcl',
    schema=PCL_SCHEMA,
    build=lambda model, cfg: PCLComponent(model, cfg),
    doc='provides positives, negatives, emb_sr, emb_positives, emb_negatives (PCL-SISR); trains its '
        'discriminator after every step'))
