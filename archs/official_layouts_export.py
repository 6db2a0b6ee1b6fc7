"""Write RCAN and SwinIR weights in the official release layouts, the inverse of
:mod:`ckdsr.archs.checkpoint_layouts` for those two archs.

The official layouts are what the field's loaders read: spandrel (the loader behind chaiNNer and
ComfyUI) detects RCAN from ``head.0`` / ``tail.1`` / ``body.0.body.0.body.3.conv_du`` keys and SwinIR
from ``layers.0.residual_group.blocks.0.attn.relative_position_index`` and friends, and infers every
size from tensor shapes. What spandrel cannot infer it fixes (spandrel 0.4.2,
``architectures/RCAN/__init__.py`` and ``SwinIR/__init__.py``): RCAN ``rgb_range`` 255, the DIV2K
mean, ``res_scale`` 1; SwinIR ``img_range`` 1 (255 for window 7), ``patch_norm``, ``qkv_bias``, no
``ape``, reflect padding. A net that differs in those would load there and compute something else,
so :func:`official_state` refuses it with the option that differs.

Every export is checked before it is returned: converting it back with the reader of
:mod:`ckdsr.archs.checkpoint_layouts` must give this net's state dict, tensor for tensor.
"""
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from ckdsr.archs.checkpoint_layouts import Rules, get_layout, rename
from ckdsr.archs.swin_transformer import relative_position_index, shifted_window_mask
from ckdsr.utils.feature_taps import unwrap_model

DIV2K_MEAN = (0.4488, 0.4371, 0.4040)  # EDSR-PyTorch / RCAN / SwinIR releases (and spandrel)

# ours -> RCAN release (EDSR-PyTorch naming); group/block counts are filled in per net
RCAN_EXPORT_RULES: Rules = (
    (r'^conv_first\.', 'head.0.'),
    (r'^upsample\.(\d+)\.', r'tail.0.\1.'),
    (r'^conv_last\.', 'tail.1.'),
    (r'^body\.(\d+)\.residual_group\.(\d+)\.rcab\.0\.', r'body.\1.body.\2.body.0.'),
    (r'^body\.(\d+)\.residual_group\.(\d+)\.rcab\.2\.', r'body.\1.body.\2.body.2.'),
    (r'^body\.(\d+)\.residual_group\.(\d+)\.rcab\.3\.attention\.1\.', r'body.\1.body.\2.body.3.conv_du.0.'),
    (r'^body\.(\d+)\.residual_group\.(\d+)\.rcab\.3\.attention\.3\.', r'body.\1.body.\2.body.3.conv_du.2.'),
    (r'^body\.(\d+)\.conv\.(weight|bias)$', r'body.\1.body.{num_block}.\2'),
    (r'^conv_after_body\.(weight|bias)$', r'body.{num_group}.\1'),
)


class ExportLayoutError(ValueError):
    """The net cannot be written in the requested official layout (or would load differently)."""


def _no_official_name(key: str) -> str:
    raise ExportLayoutError(f'no official-layout name for the tensor {key}')


def _rename(state: Dict[str, torch.Tensor], rules: Rules) -> Dict[str, torch.Tensor]:
    """``state`` renamed by ``rules`` (every key must match one), as detached CPU copies."""
    return {k: v.detach().cpu().clone() for k, v in rename(state, rules, _no_official_name).items()}


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ExportLayoutError(message)


def _mean_is(net: nn.Module, mean: Sequence[float]) -> bool:
    m = getattr(net, 'mean', None)
    return m is not None and m.numel() == len(mean) and torch.allclose(
        m.detach().flatten().float().cpu(), torch.tensor(mean), atol=1e-6)


def rcan_official_state(net: nn.Module) -> Dict[str, torch.Tensor]:
    """RCAN release layout, with the ``sub_mean`` / ``add_mean`` 1x1 convs (rgb_range 255, std 1)."""
    _require(float(net.img_range) == 255.0, f'RCAN: img_range is {net.img_range}; the official layout (and '
             'spandrel) assume rgb_range 255: export a net built with img_range=255')
    _require(_mean_is(net, DIV2K_MEAN), f'RCAN: rgb_mean must be the DIV2K mean {DIV2K_MEAN} for the official layout')
    scales = {float(m.res_scale) for m in net.modules() if hasattr(m, 'res_scale')}
    _require(scales <= {1.0}, f'RCAN: res_scale {sorted(scales)}; spandrel builds RCAN with res_scale 1')
    groups = len(net.body)
    blocks = len(net.body[0].residual_group)
    rules = [(p, r.format(num_block=blocks, num_group=groups)) for p, r in RCAN_EXPORT_RULES]
    state = _rename(net.state_dict(), rules)
    c = state['head.0.weight'].shape[1]
    _require(c == 3 and state['tail.1.weight'].shape[0] == 3, 'RCAN: the official layout has 3 colour channels')
    bias = 255.0 * torch.tensor(DIV2K_MEAN)
    eye = torch.eye(3).view(3, 3, 1, 1)
    state.update({'sub_mean.weight': eye.clone(), 'sub_mean.bias': -bias,
                  'add_mean.weight': eye.clone(), 'add_mean.bias': bias.clone()})
    return state


def swinir_official_state(net: nn.Module, img_size: int = 64) -> Dict[str, torch.Tensor]:
    """SwinIR release layout: our names plus the derived buffers the release stores,
    ``attn.relative_position_index`` (every block) and ``attn_mask`` (shifted blocks) for an
    ``img_size`` x ``img_size`` training size, rounded up to a multiple of the window (spandrel reads
    the window size from the first and its ``img_size`` from the second; neither changes the output)."""
    ws, shift = net.window_size, net.shift_size
    expected_range = 255.0 if ws == 7 else 1.0
    _require(float(net.img_range) == expected_range, f'SwinIR: img_range {net.img_range}; spandrel assumes '
             f'{expected_range:g} for window size {ws}')
    _require(shift > 0, 'SwinIR: img_size <= window_size (no shifted windows) has no spandrel equivalent')
    _require(not net.ape, 'SwinIR: ape=True is not in the layout spandrel reads (it builds ape=False)')
    _require(net.pad_mode == 'reflect', f"SwinIR: pad_mode '{net.pad_mode}'; spandrel pads with reflect")
    _require(getattr(net.patch_embed, 'norm', None) is not None, 'SwinIR: patch_norm=False; spandrel builds '
             'patch_norm=True')
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    _require('layers.0.residual_group.blocks.0.attn.qkv.bias' in state, 'SwinIR: qkv_bias=False; spandrel '
             'builds qkv_bias=True')
    side = -(-max(int(img_size), ws + 1) // ws) * ws
    rpi = relative_position_index(ws)
    mask = shifted_window_mask(side, side, ws, shift)
    for i, layer in enumerate(net.layers):
        for j, _ in enumerate(layer.residual_group.blocks):
            prefix = f'layers.{i}.residual_group.blocks.{j}.'
            state[prefix + 'attn.relative_position_index'] = rpi.clone()
            if j % 2:
                state[prefix + 'attn_mask'] = mask.clone()
    return state


EXPORTERS: Dict[str, Tuple[str, Callable[..., Dict[str, torch.Tensor]]]] = {
    'RCAN': ('rcan_official', rcan_official_state),
    'SwinIR': ('swinir_official', swinir_official_state),
}


def official_state(net: nn.Module, img_size: Optional[int] = None) -> Tuple[str, Dict[str, torch.Tensor]]:
    """``(layout name, state dict in that layout)`` for an RCAN or SwinIR net, checked by reading it
    back (:func:`check_round_trip`)."""
    net = unwrap_model(net)
    name = type(net).__name__
    if name not in EXPORTERS:
        raise ExportLayoutError(f"official-layout export supports {', '.join(EXPORTERS)}; got {name} "
                                '(export it to ONNX instead, or keep the BasicSR params file)')
    layout, fn = EXPORTERS[name]
    state = fn(net, img_size or 64) if name == 'SwinIR' else fn(net)
    check_round_trip(net, layout, state)
    return layout, state


def check_round_trip(net: nn.Module, layout: str, state: Dict[str, torch.Tensor]) -> None:
    """``state`` read back by :mod:`ckdsr.archs.checkpoint_layouts` must equal ``net.state_dict()`` exactly."""
    from ckdsr.archs.checkpoint_layouts import detect_layout
    detected = detect_layout(state.keys()).name
    _require(detected == layout, f'export check: the written keys are detected as {detected}, not {layout}')
    back, _ = get_layout(layout).convert(state, net)
    legacy = tuple(f'.{k}' for m in net.modules() for k in getattr(m, 'legacy_state_keys', ()))
    back = {k: v for k, v in back.items() if not k.endswith(legacy)}
    ours = net.state_dict()
    _require(set(back) == set(ours), 'export check: keys differ after reading back: '
             f'{sorted(set(back) ^ set(ours))[:5]}')
    bad = [k for k in ours if not torch.equal(back[k], ours[k].detach().cpu())]
    _require(not bad, f'export check: tensors differ after reading back: {bad[:5]}')
