"""Look inside one training step without changing it.

:class:`StepInstrument` attaches to a built model (``SRModel``, ``KDModel``, ``CSDModel``, ...) and,
while attached, wraps -- by instance attributes and module hooks, nothing in the core code:

* the phases of ``BaseModel.train_step``: ``feed_data`` (data), ``compute_losses`` (forward),
  ``_all_finite`` (the host sync of the finite check; the backward starts when it returns),
  ``before_optimizer_step`` (the backward ends), every optimizer's ``step`` / ``zero_grad``, the
  schedulers, the EMA update and ``after_step`` (component hooks: history update, PCL's D step);
* every signal provider of ``model.graph`` (KD models) and every loss term;
* every network the step can run: the student (``model.net_g`` as called, wrappers included), the
  teacher, and each ``nn.Module`` a distillation component holds (embedding net, history model,
  discriminator, regressors), through forward pre/post hooks.

Each boundary reads a device-synchronised clock and charges the elapsed time to the innermost open
region, so the per-region times are exclusive and add up to the step. With ``record=True`` the
top-level network calls of a step are recorded (input shapes, grad mode, which parameters train)
and, under a ``FlopCounterMode``, their forward FLOPs; :func:`build_essential_parts` turns them into
bare closures that replay them.
"""
from collections import defaultdict
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from benchmarks.lib.timing import clock, median

#: provider owner (component name or base signal) -> breakdown category
OWNER_CATEGORY = {
    'data': 'data', 'student': 'student fwd', 'teacher': 'teacher fwd', 'history': 'history fwd',
    'embedding': 'embedding fwd', 'teacher_embedding': 'embedding fwd', 'pcl': 'pcl samples + D embedding',
    'facd': 'facd regressors + alpha', 'lcr': 'lcr transforms', 'negatives': 'bicubic negatives',
}

#: breakdown categories in table order
CATEGORIES = ('data', 'teacher fwd', 'history fwd', 'embedding fwd', 'pcl samples + D embedding',
              'facd regressors + alpha', 'lcr transforms', 'bicubic negatives', 'student fwd', 'loss',
              'finite check', 'backward', 'optimizer', 'ema', 'after_step', 'other')


def _tensors(obj) -> List[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    return []


def _describe(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        cl = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        return {'shape': list(x.shape), 'dtype': str(x.dtype).replace('torch.', ''), 'channels_last': cl,
                'requires_grad': bool(x.requires_grad)}
    if isinstance(x, (list, tuple)):
        return [_describe(v) for v in x]
    if isinstance(x, (int, float, str, bool)) or x is None:
        return x
    return repr(type(x).__name__)


def _module_has_trainable(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())


def discover_networks(model) -> List[Tuple[str, nn.Module]]:
    """(label, module) of every network a step of ``model`` may call (outermost objects as called)."""
    from ckdsr.models.ema import ModelEMA
    nets: List[Tuple[str, nn.Module]] = [('student', model.net_g)]
    teacher = getattr(model, 'teacher', None)
    if teacher is not None:
        nets.append(('teacher', teacher.net))
    for comp in getattr(model, 'components', []):
        if comp is teacher:
            continue
        for attr, val in vars(comp).items():
            if isinstance(val, ModelEMA):
                val = val.module
            if val is getattr(model, 'net_g', None) or (teacher is not None and val is teacher.net):
                continue
            if isinstance(val, nn.ModuleList):
                nets += [(f'{comp.name}.{attr}[{i}]', m) for i, m in enumerate(val)]
            elif isinstance(val, nn.Module):
                nets.append((comp.name if attr in ('net', comp.name) else f'{comp.name}.{attr}', val))
    seen, out = set(), []
    for label, m in nets:
        if id(m) not in seen:
            seen.add(id(m))
            out.append((label, m))
    return out


def component_optimizers(model) -> List[Tuple[str, torch.optim.Optimizer]]:
    out = [(f'optimizer_{k}', o) for k, o in model.optimizers.items()]
    for comp in getattr(model, 'components', []):
        for attr, val in vars(comp).items():
            if isinstance(val, torch.optim.Optimizer):
                out.append((f'{comp.name}.{attr}', val))
    return out


def provider_owners(model) -> Dict[str, str]:
    """First output signal of each provider -> the component (or base role) owning it."""
    owners = {'lq': 'data', 'sr': 'student', 'teacher_sr': 'teacher'}
    for comp in getattr(model, 'components', []):
        for p in comp.providers():
            owners.setdefault(p.outputs[0], comp.name)
    return owners


class StepInstrument:
    """Attach with ``with StepInstrument(model, device) as ins:``; run ``model.train_step`` inside.

    After each step: ``ins.last_times`` (region path -> seconds), ``ins.calls`` (recorded network
    calls, when ``record``), ``ins.step_calls`` (``Step.calls`` of the model's last step, KD models).
    ``timing=False`` leaves the clock alone (no synchronisation): for the recording/FLOP step.
    """

    def __init__(self, model, device: torch.device, timing: bool = True, record: bool = False):
        self.model, self.device = model, device
        self.timing, self.record = timing, record
        self.stack: List[str] = []
        self.times: Dict[Tuple[str, ...], float] = defaultdict(float)
        self.last = 0.0
        self.calls: List[Dict[str, Any]] = []
        self.counter = None  # a FlopCounterMode while counting
        self._undo: List[Callable[[], None]] = []
        self._net_stack: List[Tuple[int, Optional[Dict[str, Any]]]] = []
        self._backward_token: Optional[int] = None
        self.nets = discover_networks(model)
        self.owners = provider_owners(model)

    # ------------------------------------------------------------------ the clock
    def _charge(self) -> None:
        if not self.timing:
            return
        now = clock(self.device)
        if self.stack:
            self.times[tuple(self.stack)] += now - self.last
        self.last = now

    def enter(self, label: str) -> int:
        self._charge()
        self.stack.append(label)
        return len(self.stack) - 1

    def exit(self, token: int) -> None:
        self._charge()
        del self.stack[token:]

    def region(self, label: str, fn: Callable) -> Callable:
        def wrapped(*args, **kwargs):
            token = self.enter(label)
            try:
                return fn(*args, **kwargs)
            finally:
                self.exit(token)
        return wrapped

    # ------------------------------------------------------------------ attaching
    def _patch(self, obj, attr: str, new) -> None:
        had = attr in vars(obj)
        old = vars(obj).get(attr)
        setattr(obj, attr, new)

        def undo():
            if had:
                setattr(obj, attr, old)
            else:
                delattr(obj, attr)
        self._undo.append(undo)

    def __enter__(self):
        m = self.model
        ins = self

        def train_step(batch, current_iter):
            ins.times = defaultdict(float)
            ins.calls = []
            ins._net_stack = []
            ins._backward_token = None
            ins.stack = []
            ins.last = clock(ins.device) if ins.timing else 0.0
            token = ins.enter('step')
            try:
                return orig_train_step(batch, current_iter)
            finally:
                ins.exit(token)
                ins.stack = []
                ins.last_times = dict(ins.times)
                last = getattr(m, 'last_step', None)
                ins.step_calls = dict(last.calls) if last is not None else {}

        orig_train_step = m.train_step
        self._patch(m, 'train_step', train_step)
        for attr, label in (('feed_data', 'data'), ('before_step', 'before_step'), ('compute_losses', 'forward'),
                            ('after_step', 'after_step')):
            self._patch(m, attr, self.region(label, getattr(m, attr)))

        orig_finite = m._all_finite

        def all_finite(total):
            token = ins.enter('finite check')
            try:
                ok = orig_finite(total)
            finally:
                ins.exit(token)
            if ok:
                ins._backward_token = ins.enter('backward')
            return ok
        self._patch(m, '_all_finite', all_finite)

        orig_before_opt = m.before_optimizer_step

        def before_optimizer_step(current_iter):
            if ins._backward_token is not None:
                ins.exit(ins._backward_token)
                ins._backward_token = None
            token = ins.enter('before_optimizer_step')
            try:
                return orig_before_opt(current_iter)
            finally:
                ins.exit(token)
        self._patch(m, 'before_optimizer_step', before_optimizer_step)

        for label, opt in component_optimizers(m):
            kind = 'optimizer' if label == 'optimizer_g' else label
            self._patch(opt, 'step', self.region(kind, opt.step))
            self._patch(opt, 'zero_grad', self.region(kind, opt.zero_grad))
        for sched in m.schedulers.values():
            self._patch(sched, 'step', self.region('scheduler', sched.step))
        if m.ema is not None:
            self._patch(m.ema, 'update', self.region('ema', m.ema.update))

        graph = getattr(m, 'graph', None)
        if graph is not None:
            for p in {id(p): p for p in graph.providers.values()}.values():
                self._patch(p, 'fn', self.region('provider:' + p.outputs[0], p.fn))
        if hasattr(m, 'terms'):
            terms = m.terms
            m.terms = [_TermProxy(t, self) for t in terms]
            self._undo.append(lambda: setattr(m, 'terms', terms))

        for label, net in self.nets:
            self._attach_net(label, net)
        return self

    def __exit__(self, *exc):
        for undo in reversed(self._undo):
            undo()
        self._undo = []
        return False

    # ------------------------------------------------------------------ network calls
    def _call_start(self, label: str, module: nn.Module, method: str, args, kwargs) -> None:
        nested = any(lab.startswith('net:') for lab in self.stack)
        rec = None
        if self.record and not nested:
            rec = {'net': label, 'module': module, 'method': method, 'path': list(self.stack),
                   'args': [_describe(a) for a in args],
                   'kwargs': {k: v for k, v in kwargs.items() if not isinstance(v, torch.Tensor)},
                   'grad_enabled': torch.is_grad_enabled(),
                   'input_requires_grad': any(t.requires_grad for t in _tensors(args)),
                   'trainable': _module_has_trainable(module),
                   'flops0': self.counter.get_total_flops() if self.counter is not None else None}
        token = self.enter('net:' + label)
        self._net_stack.append((token, rec))

    def _call_end(self, output) -> None:
        if not self._net_stack:
            return
        token, rec = self._net_stack.pop()
        self.exit(token)
        if rec is not None:
            flops0 = rec.pop('flops0')
            if flops0 is not None:
                rec['fwd_flops'] = self.counter.get_total_flops() - flops0
            rec['out'] = _describe(output) if output is not None else None
            self.calls.append(rec)

    def _attach_net(self, label: str, net: nn.Module) -> None:
        def pre(module, args, kwargs):
            self._call_start(label, module, 'forward', args, kwargs)

        def post(module, args, output):
            self._call_end(output)

        h1 = net.register_forward_pre_hook(pre, with_kwargs=True)
        h2 = net.register_forward_hook(post, always_call=True)
        self._undo += [h1.remove, h2.remove]
        # networks used through another entry point (PCL's discriminator: forward_features)
        orig = getattr(net, 'forward_features', None)
        if callable(orig):
            def forward_features(*args, **kwargs):
                self._call_start(label, net, 'forward_features', args, kwargs)
                out = None
                try:
                    out = orig(*args, **kwargs)
                    return out
                finally:
                    self._call_end(out)
            self._patch(net, 'forward_features', forward_features)

    # ------------------------------------------------------------------ reading
    def category(self, path: Tuple[str, ...]) -> Tuple[str, bool]:
        """(breakdown category, whether a network forward was running) of a region path."""
        in_net = any(p.startswith('net:') for p in path)
        if 'backward' in path:
            return 'backward', False
        if 'after_step' in path:
            return 'after_step', in_net
        if any(p in ('optimizer', 'scheduler', 'before_optimizer_step') for p in path):
            return 'optimizer', False
        if 'ema' in path:
            return 'ema', False
        providers = [p for p in path if p.startswith('provider:')]
        if providers:
            owner = self.owners.get(providers[-1].split(':', 1)[1], 'other')
            return OWNER_CATEGORY.get(owner, owner), in_net
        if any(p.startswith('term:') for p in path):
            return 'loss', in_net
        if 'net:student' in path:
            return 'student fwd', True
        nets = [p for p in path if p.startswith('net:')]
        if nets:
            return nets[-1][4:] + ' fwd', True
        last = path[-1]
        if last == 'forward':
            return 'loss', False
        if last in ('data', 'finite check'):
            return last, False
        return 'other', False

    def breakdown(self, times: Dict[Tuple[str, ...], float]) -> Dict[str, Dict[str, float]]:
        """category -> {'total': s, 'net': s of network forwards inside it}."""
        out: Dict[str, Dict[str, float]] = {}
        for path, t in times.items():
            cat, in_net = self.category(path)
            slot = out.setdefault(cat, {'total': 0.0, 'net': 0.0})
            slot['total'] += t
            if in_net:
                slot['net'] += t
        return out


class _TermProxy:
    """A loss term timed as ``term:<name>`` (its own work; providers it triggers are theirs)."""

    def __init__(self, term, ins: StepInstrument):
        self._term, self._ins = term, ins
        self.name = term.name

    def __getattr__(self, item):
        return getattr(self._term, item)

    def __call__(self, step):
        token = self._ins.enter('term:' + self.name)
        try:
            return self._term(step)
        finally:
            self._ins.exit(token)


# ----------------------------------------------------------------------------- the step, measured
def instrumented_step(model, batch, device: torch.device, it: int
                      ) -> Tuple[Dict[str, Dict[str, float]], Dict[str, int]]:
    """One step with the breakdown clock attached: (category -> {'total', 'net'} seconds, Step.calls)."""
    with StepInstrument(model, device) as ins:
        model.train_step(batch, it)
        return ins.breakdown(ins.last_times), ins.step_calls


def median_breakdown(per_step: List[Dict[str, Dict[str, float]]]) -> Dict[str, Dict[str, float]]:
    """Median over steps of each category (a category missing in a step counts as 0)."""
    cats = sorted({c for s in per_step for c in s}, key=lambda c: CATEGORIES.index(c) if c in CATEGORIES else 99)
    out = {c: {'total': median([s.get(c, {}).get('total', 0.0) for s in per_step]),
               'net': median([s.get(c, {}).get('net', 0.0) for s in per_step])} for c in cats}
    out['_sum'] = {'total': median([sum(v['total'] for v in s.values()) for s in per_step]), 'net': 0.0}
    return out


def record_step(model, batch, device: torch.device, it: int, count_flops: bool = True):
    """One step with the network calls recorded (and FLOPs counted); returns (calls, Step.calls,
    total FLOPs of the step or None, note)."""
    note = None
    with StepInstrument(model, device, timing=False, record=True) as ins:
        total = None
        if count_flops:
            from torch.utils.flop_counter import FlopCounterMode
            try:
                with FlopCounterMode(display=False) as counter:
                    ins.counter = counter
                    model.train_step(batch, it)
                total = int(counter.get_total_flops())
            except Exception as err:  # noqa: BLE001 -- e.g. a compiled graph the counter cannot follow
                note = f'FLOP counting failed ({type(err).__name__}: {err}); calls recorded without FLOPs'
                ins.counter = None
                model.train_step(batch, it)
        else:
            model.train_step(batch, it)
        calls, step_calls = list(ins.calls), dict(ins.step_calls)
    return calls, step_calls, total, note


# ----------------------------------------------------------------------------- essential parts, bare
def _make_input(desc: Any, device: torch.device, requires_grad: bool):
    if isinstance(desc, dict) and 'shape' in desc:
        dtype = getattr(torch, desc['dtype'])
        t = torch.rand(desc['shape'], device=device, dtype=dtype)
        if desc.get('channels_last'):
            t = t.contiguous(memory_format=torch.channels_last)
        if requires_grad and t.is_floating_point():
            t.requires_grad_(True)
        return t
    if isinstance(desc, list):
        return [_make_input(d, device, requires_grad) for d in desc]
    return desc


def _sum_outputs(out) -> torch.Tensor:
    ts = [t for t in _tensors(out) if t.is_floating_point()]
    return sum(t.float().mean() for t in ts)


def _find_optimizer(model, module: nn.Module) -> Optional[torch.optim.Optimizer]:
    ids = {id(p) for p in module.parameters()}
    for _, opt in component_optimizers(model):
        if any(id(p) in ids for g in opt.param_groups for p in g['params']):
            return opt
    return None


def group_calls(calls: List[Dict[str, Any]]) -> Dict[str, List[Dict[str, Any]]]:
    """Essential parts: the trainable calls of the forward pass (student; CSD's two widths; FACD's
    regressors) replayed with their backward and optimizer step; each frozen network's calls
    (with an input-gradient backward where the step needs one); trainable calls in ``after_step``
    (PCL's discriminator update) with their backward and optimizer step."""
    parts: Dict[str, List[Dict[str, Any]]] = {}
    for c in calls:
        after = 'after_step' in c['path']
        if c['trainable'] and c['grad_enabled']:
            key = f"{c['net']} update (fwd+bwd+opt)" if after else 'student fwd+bwd+opt'
        else:
            grad = c['grad_enabled'] and c['input_requires_grad']
            key = f"{c['net']} fwd" + (' + input bwd' if grad else '')
        parts.setdefault(key, []).append(c)
    return parts


def build_essential_parts(model, calls: List[Dict[str, Any]], device: torch.device
                          ) -> Dict[str, Tuple[Callable[[], None], Dict[str, Any]]]:
    """Each essential part of the step as a bare closure (plain module calls on random inputs of the
    recorded shapes, the same autocast), with what it replays: ``name -> (fn, info)``."""
    autocast = model.autocast
    parts: Dict[str, Tuple[Callable[[], None], Dict[str, Any]]] = {}
    for key, group in group_calls(calls).items():
        trainable = group[0]['trainable'] and group[0]['grad_enabled']
        grad_input = group[0]['grad_enabled'] and group[0]['input_requires_grad']
        inputs = [([_make_input(a, device, isinstance(a, dict) and a.get('requires_grad', False)) for a in c['args']],
                   c['kwargs']) for c in group]
        modules = [c['module'] if c['method'] == 'forward' else getattr(c['module'], c['method']) for c in group]
        opt = _find_optimizer(model, group[0]['module']) if trainable else None
        # e.g. PCL's D: its parameters train only inside its own update (after_step)
        toggle = list({id(c['module']): c['module'] for c in group
                       if trainable and not _module_has_trainable(c['module'])}.values())

        def fn(inputs=inputs, modules=modules, trainable=trainable, grad_input=grad_input, opt=opt, toggle=toggle):
            if trainable or grad_input:
                for m in toggle:
                    m.requires_grad_(True)
                with autocast():
                    total = sum(_sum_outputs(m(*a, **kw)) for m, (a, kw) in zip(modules, inputs))
                total.backward()
                if opt is not None:
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                for m in toggle:
                    m.requires_grad_(False)
                    for p in m.parameters():
                        p.grad = None
                for a, _ in inputs:
                    for t in _tensors(a):
                        t.grad = None
            else:
                with torch.no_grad(), autocast():
                    for m, (a, kw) in zip(modules, inputs):
                        m(*a, **kw)

        images = sum(c['args'][0]['shape'][0] for c in group if c['args'] and isinstance(c['args'][0], dict))
        parts[key] = (fn, {'calls': len(group), 'images': images, 'optimizer_step': opt is not None})
    if model.ema is not None:
        parts['ema update'] = (lambda: model.ema.update(model.net_g),
                               {'calls': 0, 'images': 0, 'optimizer_step': False})
    return parts


def summarize_calls(calls: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """JSON-safe description of the recorded top-level network calls."""
    out = []
    for c in calls:
        first = c['args'][0] if c['args'] else None
        out.append({'net': c['net'], 'in': first['shape'] if isinstance(first, dict) else None,
                    'kwargs': {k: v for k, v in c['kwargs'].items() if isinstance(v, (int, float, str, bool))},
                    'grad': bool(c['grad_enabled'] and (c['trainable'] or c['input_requires_grad'])),
                    'trainable': bool(c['trainable']),
                    'phase': 'after_step' if 'after_step' in c['path'] else 'forward',
                    'within': next((p for p in reversed(c['path']) if p.startswith(('provider:', 'term:'))), None),
                    'fwd_flops': c.get('fwd_flops')})
    return out

