"""Export an SR network to ONNX with dynamic height and width, and check it with onnxruntime.

The graph takes ``lr`` (N, C, H, W) float32 RGB in [0, 1] and returns ``sr`` (N, C, sH, sW); N, H and
W are dynamic. It is written with PyTorch's TorchScript-based exporter (``dynamo=False``): in
torch 2.14 the dynamo exporter specialised SwinIR's pad-to-window step to the example size (a
graph exported at 17x23 rejected a 9x31 input; measured here), while the TorchScript exporter keeps
the padding, the shifted-window mask and the window partition symbolic. EDSR, RCAN and CARN-M export
either way.

Limits (SwinIR): the trace takes the branch "pad needed" of ``mirror_pad`` and its ``n == 1`` test
is fixed at export, so H and W must be >= 2 (reflect padding of a 1-pixel side is undefined anyway).

``onnx`` and ``onnxruntime`` are imported only here, when an export or a check runs.
"""
import os
from typing import Dict, List, Sequence

import numpy as np
import torch
from torch import nn

EXAMPLE_SIZE = (2, 3, 19, 23)  # batch 2, odd sizes: not a multiple of any window or scale
DEFAULT_OPSET = 17


class OnnxForward(nn.Module):
    """``net`` with a fixed ``upscale`` argument where the net takes one (multi-scale CARN-M)."""

    def __init__(self, net: nn.Module, scale: int):
        super().__init__()
        import inspect
        self.net = net
        self.scale = scale if 'upscale' in inspect.signature(net.forward).parameters else None

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.net(lr) if self.scale is None else self.net(lr, upscale=self.scale)


def export_onnx(net: nn.Module, path: str, scale: int, opset: int = DEFAULT_OPSET, in_chans: int = 3) -> str:
    """Write ``net`` (eval mode, fp32, CPU) to ``path``; returns the path."""
    import warnings
    module = OnnxForward(net, scale).eval().float().cpu()
    example = torch.rand(EXAMPLE_SIZE[0], in_chans, *EXAMPLE_SIZE[2:], generator=torch.Generator().manual_seed(0))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the exporter's deprecation and tracer notes; the check below decides
        torch.onnx.export(module, (example,), path, dynamo=False, input_names=['lr'], output_names=['sr'],
                          dynamic_axes={'lr': {0: 'n', 2: 'h', 3: 'w'}, 'sr': {0: 'n', 2: 'sh', 3: 'sw'}},
                          opset_version=opset, do_constant_folding=True)
    import onnx
    onnx.checker.check_model(onnx.load(path))
    return path


def onnx_session(path: str):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, torch.get_num_threads())
    return ort.InferenceSession(path, opts, providers=['CPUExecutionProvider'])


def compare_with_onnx(net: nn.Module, path: str, scale: int, images: Sequence[np.ndarray],
                      names: Sequence[str] = ()) -> List[Dict[str, object]]:
    """For each HWC uint8 RGB image: max |onnxruntime - PyTorch| of the fp32 outputs (before any
    rounding), with the two output shapes."""
    session = onnx_session(path)
    module = OnnxForward(net, scale).eval().float().cpu()
    rows = []
    for i, img in enumerate(images):
        lr = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).unsqueeze(0).float() / 255.0
        with torch.inference_mode():
            ref = module(lr.clone()).numpy()
        out = session.run(['sr'], {'lr': lr.numpy()})[0]
        if out.shape != ref.shape:
            raise RuntimeError(f'ONNX output shape {out.shape} != PyTorch {ref.shape} for a {lr.shape} input')
        rows.append({'name': names[i] if i < len(names) else str(i), 'lr_hw': list(lr.shape[-2:]),
                     'max_abs_diff': float(np.abs(out - ref).max())})
    return rows
