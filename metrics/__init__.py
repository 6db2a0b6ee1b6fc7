"""PSNR / SSIM on Y (MATLAB-faithful) and tensor -> uint8 image conversion."""
from ckdsr.metrics.psnr import calculate_psnr  # noqa
from ckdsr.metrics.ssim import calculate_ssim  # noqa
from ckdsr.metrics.tensor_image import tensor2img  # noqa
