"""PSNR / SSIM on Y (MATLAB-faithful) and tensor -> uint8 image conversion."""
from metrics.psnr import calculate_psnr  # noqa
from metrics.ssim import calculate_ssim  # noqa
from metrics.tensor_image import tensor2img  # noqa
