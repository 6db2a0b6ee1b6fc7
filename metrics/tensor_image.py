"""Network output tensor -> uint8 image, rounded exactly like BasicSR's ``tensor2img``."""
import numpy as np
import torch


def tensor2img(tensor: torch.Tensor) -> np.ndarray:
    """(C, H, W) or (1, C, H, W) float RGB in [0, 1] -> uint8 HWC RGB.

    Clamps to [0, 1], multiplies by 255 in float32 and rounds half to even (numpy/torch
    ``round``), as BasicSR's ``(img * 255.0).round()`` does.
    """
    t = tensor.detach()
    if t.dim() == 4:
        if t.shape[0] != 1:
            raise ValueError(f'tensor2img takes one image; got a batch of {t.shape[0]}')
        t = t[0]
    if t.dim() == 2:
        t = t[None]
    if t.dim() != 3:
        raise ValueError(f'tensor2img expects (C,H,W) or (1,C,H,W), got {tuple(tensor.shape)}')
    t = t.to(device='cpu', dtype=torch.float32).clamp(0.0, 1.0)
    t = torch.round(t * 255.0)
    return t.permute(1, 2, 0).contiguous().numpy().astype(np.uint8)
