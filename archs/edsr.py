"""EDSR (Lim et al., CVPR-W 2017) with BasicSR's class, argument and state_dict key names."""
from typing import Sequence

from ckdsr.archs.blocks import MeanShiftedResidualSR, ResidualBlockNoBN, check_upscale, make_layer
from ckdsr.utils.registry import ARCH_REGISTRY


@ARCH_REGISTRY.register()
class EDSR(MeanShiftedResidualSR):
    """Enhanced deep residual network for single-image SR.

    Input and output are RGB in [0, 1]; internally ``(x - rgb_mean) * img_range`` as in the paper's
    mean-shift layer. Keys: ``conv_first``, ``body.{i}.conv1/conv2``, ``conv_after_body``,
    ``upsample.{0,2}``, ``conv_last`` (the mean is a non-persistent buffer, not in the state_dict).
    Published sizes: R16C64 x4 1.518M parameters, R32C256 x4 (res_scale 0.1) 43.09M.
    """

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_block: int = 16,
                 upscale: int = 4, res_scale: float = 1.0, img_range: float = 255.,
                 rgb_mean: Sequence[float] = (0.4488, 0.4371, 0.4040)):
        super().__init__()
        check_upscale('EDSR', upscale)
        self.num_in_ch, self.num_out_ch, self.num_feat, self.num_block = num_in_ch, num_out_ch, num_feat, num_block
        self.res_scale = res_scale
        self.build_frame('EDSR', num_in_ch, num_out_ch, num_feat, upscale, img_range, rgb_mean,
                         lambda: make_layer(lambda: ResidualBlockNoBN(num_feat, res_scale), num_block))
