"""KDModel: a trained student, a frozen teacher, optional helpers, and weighted loss terms.

Each term names the signals it reads; the model computes every signal at most once per step
(one teacher forward, one batched embedding pass...). Method mechanics are components built
from ``distill.<key>`` sections (see :mod:`ckdsr.models.distill.registry`), so a new method adds a
component and an option file, not a new training loop.
"""
from typing import Any, Dict, List, Optional

import torch

import ckdsr.models.distill  # noqa: F401  (registers the components)
from ckdsr.models.base_model import BaseModel
from ckdsr.models.distill.component import Component
from ckdsr.models.distill.registry import COMPONENT_REGISTRY
from ckdsr.models.distill.teacher import Teacher
from ckdsr.models.distill.terms import TERM_BLOCK, build_terms
from ckdsr.models.network_io import unwrap
from ckdsr.models.signals import Provider, SignalGraph, Step
from ckdsr.utils.feature_taps import FeatureTaps
from ckdsr.utils.option_spec import Block, Field, ListOf, Section, registry_resolver
from ckdsr.utils.registry import ARCH_REGISTRY, MODEL_REGISTRY


@MODEL_REGISTRY.register()
class KDModel(BaseModel):
    """Knowledge distillation with declarative terms (logits KD, FAKD, FACD, DCKD, PCL...)."""

    @classmethod
    def option_sections(cls) -> Dict[str, Any]:
        distill = {spec.key: spec.schema for spec in (COMPONENT_REGISTRY.get(k) for k in COMPONENT_REGISTRY)}
        distill['taps'] = Section({
            'student': ListOf(Field(str), doc='module paths of network_g whose outputs are student_feats'),
            'teacher': ListOf(Field(str), doc='module paths of network_t whose outputs are teacher_feats'),
        })
        return {
            'network_t': Block(registry_resolver(ARCH_REGISTRY), 'arch', required=False, doc='the frozen teacher'),
            'path': Section({
                'pretrain_network_t': Field(Optional[str], None, 'teacher weights', path=True),
                'param_key_t': Field(Optional[str], 'auto', 'key inside the teacher checkpoint (auto | params | params_ema | null)'),
                'strict_load_t': Field(bool, True, 'require an exact key match for the teacher'),
            }),
            'distill': Section(distill, doc='distillation components'),
            'train': Section({'losses': ListOf(TERM_BLOCK, doc='weighted loss terms over named signals')}),
        }

    # ------------------------------------------------------------------ set-up
    def build_losses(self, train_opt: Dict[str, Any]) -> None:
        opt = self.opt
        self.seed = opt.get('manual_seed') or 0
        distill = opt.get('distill') or {}
        taps = distill.get('taps') or {}
        self.components: List[Component] = []
        self.student_inputs: Dict[str, str] = {}  # output signal -> signal holding the images
        if opt.get('network_t'):
            self.teacher = Teacher(opt['network_t'], opt.get('path') or {}, self.scale, self.device,
                                   taps=taps.get('teacher') or (), autocast=self.autocast,
                                   channels_last=self.channels_last)
            self.components.append(self.teacher)
        else:
            self.teacher = None
        for key in COMPONENT_REGISTRY:
            if distill.get(key):
                self.components.append(COMPONENT_REGISTRY.get(key).build(self, distill[key]))
        self.student_taps = list(taps.get('student') or ())
        FeatureTaps(unwrap(self.net_g), self.student_taps).remove()  # check the paths up front
        cfgs = list(train_opt.get('losses') or [])
        if train_opt.get('pixel_opt'):
            pix = dict(train_opt['pixel_opt'])
            pix['weight'] = pix.pop('loss_weight', 1.0)
            cfgs.insert(0, {**pix, 'name': 'l_pix'})
        if not cfgs:
            raise ValueError('train.losses: a KDModel needs at least one loss term')
        self.terms = build_terms(cfgs, self.device)
        self.graph = SignalGraph()
        for provider in self.base_providers():
            self.graph.add(provider)
        for comp in self.components:
            for provider in comp.providers():
                self.graph.add(provider)
        wanted = [sig for term in self.terms for sig in term.inputs.values()]
        self.needed = self.graph.closure(wanted)
        late = {sig for comp in self.components for sig in comp.late_signals()}
        self.late_terms = [t.name for t in self.terms if late & self.graph.closure(t.inputs.values())]
        if self.late_terms and train_opt.get('amp') == 'fp16':
            raise ValueError(f'train.amp: fp16 loss scaling cannot keep the gradient across the intermediate '
                             f'optimizer step that terms {self.late_terms} need; use bf16 or no amp')
        self.component_params = [p for c in self.components for p in c.trainable_parameters()]
        if self.component_params:
            self.optimizers['g'].add_param_group({'params': self.component_params})

    def add_student_input(self, output: str, source: str) -> None:
        """Also provide ``output`` = the student (with gradient) on the images of signal ``source``,
        concatenated with the LR batch into ONE forward when their (C, H, W) agree (another shape:
        its own forward). For components' extra training inputs (DUKD's zoom-in tiles); the student
        has no batch statistics (no BatchNorm), so batching does not change the result."""
        if output in ('sr', 'student_feats') or output in self.student_inputs:
            raise ValueError(f"student: signal '{output}' is already provided")
        self.student_inputs[output] = source

    def base_providers(self) -> List[Provider]:
        extra = dict(self.student_inputs)

        def batch(step):
            return {'lq': self.lq, 'gt': self.gt}

        def student(step):
            lq = step['lq']
            others = [(out, step[src]) for out, src in extra.items() if step.wants(out)]
            joined = [(out, x) for out, x in others if x.shape[1:] == lq.shape[1:]]
            x = torch.cat([lq] + [img for _, img in joined]) if joined else lq
            values = {}
            if self.student_taps and step.wants('student_feats'):
                with FeatureTaps(self.net_g, self.student_taps) as taps:
                    y = self.net_g(x)
                    values['student_feats'] = [f[:lq.shape[0]] for f in taps.features()]
            else:
                y = self.net_g(x)
            values['sr'], start = y[:lq.shape[0]], lq.shape[0]
            for out, img in joined:
                values[out], start = y[start:start + img.shape[0]], start + img.shape[0]
            for out, img in others:
                if out not in values:
                    values[out] = self.net_g(img)
            return values

        deps = {'sr': ('lq',), 'student_feats': ('lq',), **{o: (s,) for o, s in extra.items()}}
        return [Provider(('lq', 'gt'), batch, doc='the batch'),
                Provider(('sr', 'student_feats') + tuple(extra), student, deps=deps,
                         doc='student output (and tapped features), with gradient, plus its output on '
                             'images other components ask for, in the same forward')]

    # ------------------------------------------------------------------ the step
    def new_step(self) -> Step:
        return Step(self.graph, self.needed)

    def compute_losses(self, current_iter: int) -> Dict[str, torch.Tensor]:
        step = self.new_step()
        self.last_step = step
        early = [t for t in self.terms if t.name not in self.late_terms]
        if self.late_terms and early:  # an intermediate optimizer step first (Component.late_signals)
            losses = {term.name: term(step) for term in early}
            if not self.intermediate_step(losses, current_iter):
                return losses  # non-finite: BaseModel skips the iteration
            losses = {k: v.detach() for k, v in losses.items()}
            losses.update({term.name: term(step) for term in self.terms if term.name in self.late_terms})
            losses = {term.name: losses[term.name] for term in self.terms}
        else:
            losses = {term.name: term(step) for term in self.terms}
        self.output = step.values.get('sr')
        return losses

    def intermediate_step(self, losses: Dict[str, torch.Tensor], current_iter: int) -> bool:
        """Backward + optimizer step on ``losses`` WITHOUT clearing the gradient, so the iteration's
        final backward adds to it (DUKD's released code: one ``zero_grad``, two ``optimizer.step``).
        No LR-schedule or EMA update (once per iteration, by BaseModel). False when non-finite."""
        total = sum(losses.values())
        if not self._all_finite(total):
            return False
        self.backward_and_step(total, current_iter)
        return True

    def before_step(self, current_iter: int) -> None:
        for comp in self.components:
            comp.before_step(self, current_iter)

    def before_optimizer_step(self, current_iter: int) -> None:
        """Average the gradients of component-owned trainables (e.g. regressors) across ranks:
        they live outside the student's DDP wrapper."""
        if self.world_size > 1 and self.component_params:
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.component_params]
            flat = torch.cat([g.reshape(-1) for g in grads])
            torch.distributed.all_reduce(flat)
            flat /= self.world_size
            offset = 0
            for p, g in zip(self.component_params, grads):
                p.grad = flat[offset:offset + g.numel()].view_as(g).clone()
                offset += g.numel()

    def after_step(self, current_iter: int) -> None:
        for comp in self.components:
            comp.after_step(self, current_iter)

    def train_step(self, batch: Dict[str, Any], current_iter: int) -> Dict[str, torch.Tensor]:
        """BaseModel's step, plus what components log (e.g. PCL's discriminator loss)."""
        out = super().train_step(batch, current_iter)
        for comp in self.components:
            out.update(comp.logs())
        return out

    # ------------------------------------------------------------------ state
    def extra_state(self) -> Dict[str, Any]:
        return {c.name: c.state_dict() for c in self.components if c.state_dict()}

    def load_extra_state(self, state: Dict[str, Any]) -> None:
        for comp in self.components:
            if comp.name in state:
                comp.load_state_dict(state[comp.name])
