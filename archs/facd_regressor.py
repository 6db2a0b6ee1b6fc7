"""FACD's deep regressor (Feature-domain Adaptive Contrastive Distillation for efficient single image
super-resolution, Moon et al., 2022): five 1x1 convolutions with PReLU between them, mapping a
student feature map onto the teacher's channel count before the contrastive feature loss.
"""
from typing import Optional

from torch import Tensor, nn

from ckdsr.utils.registry import ARCH_REGISTRY


@ARCH_REGISTRY.register()
class FACDRegressor(nn.Module):
    """``num_layers`` 1x1 convs ``in -> hidden -> ... -> hidden -> out`` with PReLU between them
    (none after the last). ``hidden_channels`` defaults to ``out_channels``; ``prelu_per_channel``
    gives each PReLU one slope per channel instead of torch's single shared slope."""

    def __init__(self,
                 in_channels: int = 64,
                 out_channels: int = 256,
                 hidden_channels: Optional[int] = None,
                 num_layers: int = 5,
                 prelu_per_channel: bool = False):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f'FACDRegressor: num_layers must be >= 1, got {num_layers}')
        hidden = hidden_channels or out_channels
        widths = [in_channels] + [hidden] * (num_layers - 1) + [out_channels]
        layers = []
        for i in range(num_layers):
            layers.append(nn.Conv2d(widths[i], widths[i + 1], 1))
            if i < num_layers - 1:
                layers.append(nn.PReLU(widths[i + 1] if prelu_per_channel else 1))
        self.body = nn.Sequential(*layers)
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)
