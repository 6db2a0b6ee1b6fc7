"""Load pretrained weights from the checkpoint layouts researchers actually have.

``load_pretrained(net, path)`` reads the file (``weights_only``: no code runs on load; the legacy
non-zip pickles of PyTorch <= 1.5 read too), picks the state_dict out of its wrapper
(``params`` / ``params_ema`` / ``state_dict``), strips ``module.`` / ``_orig_mod.`` prefixes,
detects the layout from the keys, translates the key names to ours and compares with the net before
touching any weight. A mismatch is one error naming the file, the layout, and the first missing /
unexpected keys and shape conflicts (with counts).

Layouts, each translated by ordered regex rename rules (first match wins; keys no rule matches pass
through unchanged and surface as "unexpected" if wrong):

- ``basicsr``: our own names (BasicSR's), also used by BasicSR-trained EDSR/RCAN/SwinIR files.
- ``edsr_pytorch``: EDSR-PyTorch (Lim et al.) ``head/body/tail`` with ``sub_mean/add_mean``
  MeanShift convs in the state_dict.
- ``rcan_official``: RCAN's release (built on EDSR-PyTorch), ``body.{g}.body.{b}.body.3.conv_du``.
- ``swinir_official``: SwinIR release files; names equal ours, the derived ``attn_mask`` /
  ``relative_position_index`` buffers are dropped by the modules themselves (``legacy_state_keys``).
- ``nafnet_official`` / ``restormer_official``: the NAFNet / Restormer releases (``params``); names
  equal :class:`ckdsr.archs.nafnet.NAFNet` / :class:`ckdsr.archs.restormer.Restormer`'s.
- ``carn_pytorch``: CARN-pytorch (``sub_mean.shifter``); names equal :class:`ckdsr.archs.carn.CARN_M`'s.

The MeanShift convs of the EDSR-PyTorch / RCAN layouts are not copied: our nets hold the mean as a
buffer. They are checked against the net's ``mean * img_range`` instead, so a checkpoint trained
with another mean or ``rgb_range`` fails loudly rather than shifting every output.
"""

import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple

import torch
from torch import nn

from ckdsr.utils.feature_taps import unwrap_model

Rules = Sequence[Tuple[str, str]]

_TAIL_RULES: Rules = (
    (r'^head\.0\.', 'conv_first.'),
    (r'^tail\.0\.(\d+)\.', r'upsample.\1.'),
    (r'^tail\.1\.', 'conv_last.'),
)
EDSR_PYTORCH_RULES: Rules = _TAIL_RULES + (
    (r'^body\.(\d+)\.body\.0\.', r'body.\1.conv1.'),
    (r'^body\.(\d+)\.body\.2\.', r'body.\1.conv2.'),
    (r'^body\.\d+\.(weight|bias)$', r'conv_after_body.\1'),
)
RCAN_OFFICIAL_RULES: Rules = _TAIL_RULES + (
    (r'^body\.(\d+)\.body\.(\d+)\.body\.0\.', r'body.\1.residual_group.\2.rcab.0.'),
    (r'^body\.(\d+)\.body\.(\d+)\.body\.2\.', r'body.\1.residual_group.\2.rcab.2.'),
    (r'^body\.(\d+)\.body\.(\d+)\.body\.3\.conv_du\.0\.', r'body.\1.residual_group.\2.rcab.3.attention.1.'),
    (r'^body\.(\d+)\.body\.(\d+)\.body\.3\.conv_du\.2\.', r'body.\1.residual_group.\2.rcab.3.attention.3.'),
    (r'^body\.(\d+)\.body\.\d+\.(weight|bias)$', r'body.\1.conv.\2'),
    (r'^body\.\d+\.(weight|bias)$', r'conv_after_body.\1'),
)
MEAN_SHIFT_KEYS = ('sub_mean.weight', 'sub_mean.bias', 'add_mean.weight', 'add_mean.bias')


class LayoutError(ValueError):
    """The checkpoint's layout cannot be translated for this net (e.g. a different mean shift)."""


def rename(state: Mapping[str, torch.Tensor], rules: Rules,
           unmatched: Optional[Callable[[str], str]] = None) -> Dict[str, torch.Tensor]:
    """Apply the first matching ``(pattern, replacement)`` of ``rules`` to every key. A key no rule
    matches keeps its name, or takes ``unmatched(key)`` (which may raise) when that is given."""
    out = {}
    for key, value in state.items():
        for pattern, repl in rules:
            new, hits = re.subn(pattern, repl, key)
            if hits:
                key = new
                break
        else:
            if unmatched is not None:
                key = unmatched(key)
        out[key] = value
    return out


def check_mean_shift(state: Mapping[str, torch.Tensor], net: nn.Module, layout: str) -> List[str]:
    """Check EDSR-PyTorch MeanShift convs (``weight = I / std``, ``bias = -/+ rgb_range * mean / std``)
    against the net's ``mean * img_range`` (std 1). Returns notes; raises :class:`LayoutError`."""
    present = [k for k in MEAN_SHIFT_KEYS if k in state]
    if not present:
        return []
    mean, img_range = getattr(net, 'mean', None), getattr(net, 'img_range', None)
    if mean is None or img_range is None:
        raise LayoutError(f"a {layout} checkpoint carries sub_mean/add_mean, but {type(net).__name__} has no "
                          "'mean'/'img_range' to check them against; load it into EDSR, SlimmableEDSR or RCAN")
    expected = (mean.detach().flatten().double().cpu() * float(img_range))
    for name, sign in (('sub_mean', -1.0), ('add_mean', 1.0)):
        weight, bias = state.get(f'{name}.weight'), state.get(f'{name}.bias')
        if weight is not None:
            eye = torch.eye(weight.shape[0], dtype=torch.float64)
            if weight.shape[:2] != eye.shape or not torch.allclose(weight.double().flatten(1), eye, atol=1e-5):
                raise LayoutError(f'{name}.weight of this {layout} checkpoint divides by an rgb_std != 1, which '
                                  f'{type(net).__name__} does not model; retrain or fold the std into conv_first')
        if bias is not None:
            implied = bias.double().flatten().cpu() * sign
            if implied.shape != expected.shape or not torch.allclose(implied, expected, rtol=1e-4, atol=1e-4):
                raise LayoutError(
                    f'{name}.bias of this {layout} checkpoint implies rgb_range*rgb_mean = '
                    f'{[round(v, 4) for v in implied.tolist()]}, the net uses img_range*rgb_mean = '
                    f'{[round(v, 4) for v in expected.tolist()]}; set the network options img_range / rgb_mean '
                    'to match the checkpoint')
    return [f'{layout}: sub_mean/add_mean match img_range*rgb_mean, dropped (the net keeps the mean as a buffer)']


@dataclass(frozen=True)
class Layout:
    """A checkpoint layout: a name, a detector over the key set, and rename rules to our names."""

    name: str
    detect: Callable[[Sequence[str]], bool]
    rules: Rules = ()
    mean_shift: bool = False
    notes: Tuple[str, ...] = field(default=())

    def convert(self, state: Mapping[str, torch.Tensor], net: nn.Module) -> Tuple[Dict[str, torch.Tensor], List[str]]:
        """(state with our key names, notes about what was checked or dropped)."""
        notes = list(self.notes)
        if self.mean_shift:
            notes += check_mean_shift(state, net, self.name)
            state = {k: v for k, v in state.items() if k not in MEAN_SHIFT_KEYS}
        return rename(state, self.rules), notes


def _has(pattern: str) -> Callable[[Sequence[str]], bool]:
    regex = re.compile(pattern)
    return lambda keys: any(regex.search(k) for k in keys)


LAYOUTS: Tuple[Layout, ...] = (
    Layout('rcan_official', _has(r'^body\.\d+\.body\.\d+\.body\.3\.conv_du\.'), RCAN_OFFICIAL_RULES, True),
    Layout('edsr_pytorch', lambda k: 'head.0.weight' in k and 'tail.1.weight' in k, EDSR_PYTORCH_RULES, True),
    Layout('carn_pytorch', _has(r'^sub_mean\.shifter\.'),
           notes=('carn_pytorch: key names equal CARN_M; mean-shift convs loaded as frozen parameters',)),
    Layout('swinir_official', _has(r'^layers\.\d+\.residual_group\.blocks\.\d+\.attn\.'),
           notes=('swinir: stored attn_mask / relative_position_index are recomputed, not loaded',)),
    Layout('nafnet_official', _has(r'^(encoders|decoders|middle_blks)\.\d+\.\d+\.sca\.1\.weight$'),
           notes=('nafnet: key names equal the NAFNet release (megvii-research/NAFNet, params)',)),
    Layout('restormer_official', _has(r'^encoder_level1\.\d+\.attn\.qkv_dwconv\.weight$'),
           notes=('restormer: key names equal the Restormer release (swz30/Restormer, params)',)),
    Layout('basicsr', lambda keys: True),
)


def detect_layout(keys: Sequence[str]) -> Layout:
    """The first layout of :data:`LAYOUTS` whose detector accepts ``keys`` (``basicsr`` otherwise)."""
    keys = list(keys)
    return next(layout for layout in LAYOUTS if layout.detect(keys))


def get_layout(name: str) -> Layout:
    """A layout by name (for callers that know the source and want no detection)."""
    for layout in LAYOUTS:
        if layout.name == name:
            return layout
    raise KeyError(f"unknown checkpoint layout '{name}'; known: {', '.join(l.name for l in LAYOUTS)}")


# -- loading --------------------------------------------------------------------------------------
WRAPPER_KEYS = ('params_ema', 'params', 'state_dict')  # searched in this order by param_key='auto'
STRIPPED_PREFIXES = ('module.', '_orig_mod.')
SHOWN = 5


class CheckpointMismatchError(RuntimeError):
    """The checkpoint's tensors do not fit the network (missing / unexpected keys, shape conflicts)."""


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did: the layout and wrapper key used, and any mismatches."""

    path: str
    layout: str
    param_key: Optional[str]
    loaded: int = 0
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    shape_conflicts: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.unexpected or self.shape_conflicts)


def read_checkpoint(path: str) -> Mapping:
    """``torch.load(path, map_location='cpu', weights_only=True)`` with one-line errors."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'pretrained weights not found: {path} (check the path option, e.g. '
                                'path.pretrain_network_g)')
    try:
        raw = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised with the path and what to do
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RuntimeError(f'{path} is not a readable weights-only torch checkpoint ({first}); if it pickles '
                           'a whole model object, re-save its state_dict() with torch.save') from err
    if not isinstance(raw, Mapping):
        raise RuntimeError(f'{path} holds a {type(raw).__name__}, not a state_dict or a dict wrapping one')
    return raw


def _is_state_dict(obj) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def select_state_dict(raw: Mapping, param_key: Optional[str],
                      path: str) -> Tuple[Dict[str, torch.Tensor], Optional[str]]:
    """Pick the state_dict: ``'auto'`` tries params_ema, params, state_dict, then the bare file;
    a named key must exist (BasicSR's params_ema -> params fallback is kept, with a warning);
    ``None`` means the file is the state_dict."""
    if param_key == 'auto':
        for key in WRAPPER_KEYS:
            if _is_state_dict(raw.get(key)):
                return dict(raw[key]), key
        param_key = None
    if param_key is None:
        if not _is_state_dict(raw):
            keys = ', '.join(map(str, list(raw)[:8]))
            raise RuntimeError(f'{path} is not a bare state_dict (top-level keys: {keys}); set the param key '
                               "(e.g. param_key_g) to the entry holding the weights, or 'auto'")
        return dict(raw), None
    if param_key not in raw and param_key == 'params_ema' and 'params' in raw:
        warnings.warn(f"{path} has no 'params_ema'; loading 'params' instead (as BasicSR does)")
        param_key = 'params'
    if param_key not in raw:
        raise KeyError(f"{path} has no entry '{param_key}' (top-level keys: {', '.join(map(str, list(raw)[:8]))}); "
                       "set the param key (e.g. param_key_g) to one of them or to 'auto'")
    if not _is_state_dict(raw[param_key]):
        raise RuntimeError(f"{path}: entry '{param_key}' is not a state_dict of tensors")
    return dict(raw[param_key]), param_key


def strip_prefixes(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Drop wrapper prefixes (``module.`` from DataParallel/DDP, ``_orig_mod.`` from torch.compile)."""
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in STRIPPED_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        out[key] = value
    return out


def ignored_keys(net: nn.Module) -> Set[str]:
    """Checkpoint keys the net's modules drop on load (their ``legacy_state_keys``)."""
    return {f'{name}.{key}' if name else key
            for name, module in net.named_modules() for key in getattr(module, 'legacy_state_keys', ())}


def _listing(kind: str, items: List[str]) -> str:
    more = f', ... (+{len(items) - SHOWN} more)' if len(items) > SHOWN else ''
    return f'{len(items)} {kind} [{", ".join(items[:SHOWN])}{more}]'


def compare(state: Mapping[str, torch.Tensor], net: nn.Module) -> Tuple[List[str], List[str], List[str]]:
    """(missing, unexpected, shape conflicts) of ``state`` against the net's persistent state."""
    own = net.state_dict()
    ignored = ignored_keys(net)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own and k not in ignored]
    conflicts = [f'{k}: checkpoint {tuple(v.shape)} vs net {tuple(own[k].shape)}'
                 for k, v in state.items() if k in own and v.shape != own[k].shape]
    return missing, unexpected, conflicts


def load_pretrained(net: nn.Module, path: str, param_key: Optional[str] = 'auto', strict: bool = True,
                    layout: str = 'auto') -> LoadReport:
    """Load ``path`` into ``net`` (wrappers such as DDP are looked through) and return a report.

    ``param_key``: 'auto' | 'params' | 'params_ema' | any wrapper key | None (bare state_dict).
    ``layout``: 'auto' (detect from the keys) or a name from :data:`ckdsr.archs.checkpoint_layouts.LAYOUTS`.
    ``strict``: raise :class:`CheckpointMismatchError` on any mismatch, before changing the net;
    otherwise load every key whose name and shape fit and list the rest in the report.
    """
    target = unwrap_model(net)
    raw = read_checkpoint(path)
    state, used_key = select_state_dict(raw, param_key, path)
    state = strip_prefixes(state)
    chosen = detect_layout(list(state)) if layout == 'auto' else get_layout(layout)
    try:
        state, notes = chosen.convert(state, target)
    except LayoutError as err:
        raise LayoutError(f'{path}: {err}') from None
    missing, unexpected, conflicts = compare(state, target)
    report = LoadReport(path, chosen.name, used_key, missing=missing, unexpected=unexpected,
                        shape_conflicts=conflicts, notes=notes)
    if strict and not report.clean:
        parts = [_listing(kind, items) for kind, items in
                 (('missing keys', missing), ('unexpected keys', unexpected), ('shape conflicts', conflicts)) if items]
        raise CheckpointMismatchError(
            f"{path} (layout '{chosen.name}', param_key {used_key!r}) does not fit {type(target).__name__}: "
            f"{'; '.join(parts)}. Check the network options (num_feat, num_block, upscale, ...) against "
            'the checkpoint, or load with strict=False')
    bad = {c.split(':', 1)[0] for c in conflicts}
    fitting = {k: v for k, v in state.items() if k not in bad}
    target.load_state_dict(fitting, strict=False)
    own = target.state_dict()
    report.loaded = sum(k in own for k in fitting)
    return report
