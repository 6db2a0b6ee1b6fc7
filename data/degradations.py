"""Batched tensor degradations for DCKD's negative samples (Zhou et al., "Dynamic Contrastive
Knowledge Distillation for Efficient Image Restoration", AAAI 2025).

DCKD's negatives are the history model applied to 1 clean + N-1 degraded copies of the LR input.
The released code (``basicsr/models/dckd_model.py``) degrades each copy by, in this order:

1. Gaussian blur, probability ``gaussian_blur_prob``: kernel sizes kx, ky drawn independently from
   {3, 5, 7, 9, 11}, sigmas sx, sy independently from U[0.1, 2] (kornia ``gaussian_blur2d``,
   reflect border);
2. resize, probability ``resize_prob``: 'up' (1/4) to U[1, 1.5] or 'down' (3/4) to U[0.5, 1] of the
   size, mode drawn from area / bilinear / bicubic;
3. Gaussian noise, probability ``gaussian_noise_prob``: BasicSR's ``random_add_gaussian_noise_pt``
   with sigma U[1, 30]/255 *per image*, grey (one noise map for all channels) per image with
   probability ``gray_noise_prob``, clipped to [0, 1];
4. resize back to the original size (mode drawn again).

Its released configs set blur 0, resize 0, noise 1, grey 0.5: noise only. Those are our defaults.

Differences, all documented choices: blur parameters are drawn per image and copy here (the official
code draws one set per copy for the whole batch: ``blur_batch_shared=True`` reproduces that); the
resize step keeps the official per-copy draw (a copy's images share one size); BasicSR's grey noise
reuses one spatial noise pattern for every grey image of the batch, here every image draws its own.
Everything is drawn from the given ``torch.Generator`` (on its device), so a seed fixes the output.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


# --------------------------------------------------------------------------- random draws
def _gen_device(generator: Optional[torch.Generator], device: torch.device) -> torch.device:
    return generator.device if generator is not None else device


def rand_uniform(shape: Sequence[int], low: float, high: float,
                 generator: Optional[torch.Generator], device: torch.device) -> Tensor:
    """U[low, high) samples drawn on the generator's device, returned on ``device``."""
    u = torch.rand(tuple(shape), generator=generator, device=_gen_device(generator, device))
    return (low + (high - low) * u).to(device)


def rand_bernoulli(shape: Sequence[int], p: float, generator: Optional[torch.Generator],
                   device: torch.device) -> Tensor:
    """Boolean mask, True with probability ``p``."""
    return rand_uniform(shape, 0.0, 1.0, generator, device) < p


def rand_odd_sizes(shape: Sequence[int], low: int, high: int,
                   generator: Optional[torch.Generator], device: torch.device) -> Tensor:
    """Odd integers uniform over {low, low+2, ..., high} (both odd)."""
    if low % 2 == 0 or high % 2 == 0 or low > high or low < 1:
        raise ValueError(f'kernel size range must be two odd numbers low <= high, got ({low}, {high})')
    k = torch.randint(low // 2, high // 2 + 1, tuple(shape), generator=generator,
                      device=_gen_device(generator, device))
    return (2 * k + 1).to(device)


def rand_normal(shape: Sequence[int], generator: Optional[torch.Generator], device: torch.device,
                dtype: torch.dtype = torch.float32) -> Tensor:
    g_dev = _gen_device(generator, device)
    return torch.randn(tuple(shape), generator=generator, device=g_dev, dtype=dtype).to(device)


# --------------------------------------------------------------------------- blur
def gaussian_kernels_1d(sizes: Tensor, sigmas: Tensor, width: int) -> Tensor:
    """(N, width) centred 1D Gaussian kernels, kernel i truncated to ``sizes[i]`` taps (zero
    outside) and normalised to sum 1. Matches kornia's ``get_gaussian_kernel1d`` for odd sizes;
    a size of 1 gives the identity (a delta)."""
    x = torch.arange(width, device=sigmas.device, dtype=sigmas.dtype) - width // 2
    sig = sigmas.to(x.dtype).reshape(-1, 1)
    w = torch.exp(-x.pow(2) / (2 * sig.pow(2)))
    w = w * (x.abs() <= (sizes.reshape(-1, 1) // 2)).to(w.dtype)
    return w / w.sum(dim=1, keepdim=True)


def blur_per_sample(x: Tensor, kernel_h: Tensor, kernel_w: Tensor) -> Tensor:
    """Separable blur of each image of ``x`` (N, C, H, W) with its own kernels ``kernel_h``,
    ``kernel_w`` (N, K), K odd, reflect border, as one grouped convolution per axis."""
    n, c, h, w = x.shape
    k = kernel_h.shape[-1]
    pad = k // 2
    if pad and (h <= pad or w <= pad):
        raise ValueError(f'blur_per_sample: image {h}x{w} too small for a reflect-padded '
                         f'{k}-tap kernel (needs both sides > {pad})')
    wh = kernel_h.to(x.dtype).repeat_interleave(c, dim=0).reshape(n * c, 1, k, 1)
    ww = kernel_w.to(x.dtype).repeat_interleave(c, dim=0).reshape(n * c, 1, 1, k)
    y = F.pad(x.reshape(1, n * c, h, w), (pad, pad, pad, pad), mode='reflect')
    y = F.conv2d(F.conv2d(y, wh, groups=n * c), ww, groups=n * c)
    return y.reshape(n, c, h, w)


def random_gaussian_blur(x: Tensor, n_copies: int, prob: float, kernel_range: Sequence[int],
                         sigma_range: Sequence[float], isotropic: bool, batch_shared: bool,
                         generator: Optional[torch.Generator]) -> Tensor:
    """Blur images of ``x`` (B*n_copies, C, H, W), laid out batch-major, each with probability
    ``prob``; kernel sizes odd in ``kernel_range``, sigmas U[``sigma_range``]. ``batch_shared``
    draws one parameter set per copy, shared by the batch (official DCKD / PCL-SISR)."""
    dev = x.device
    b = x.shape[0] // n_copies
    shape = (1, n_copies) if batch_shared else (b, n_copies)
    apply = rand_bernoulli(shape, prob, generator, dev)
    ky = rand_odd_sizes(shape, kernel_range[0], kernel_range[1], generator, dev)
    sy = rand_uniform(shape, sigma_range[0], sigma_range[1], generator, dev)
    if isotropic:
        kx, sx = ky, sy
    else:
        kx = rand_odd_sizes(shape, kernel_range[0], kernel_range[1], generator, dev)
        sx = rand_uniform(shape, sigma_range[0], sigma_range[1], generator, dev)
    ones = torch.ones_like(ky)
    ky, kx = torch.where(apply, ky, ones), torch.where(apply, kx, ones)
    if not bool((ky > 1).any() or (kx > 1).any()):
        return x
    width = int(max(ky.max(), kx.max()))

    def per_image(t: Tensor) -> Tensor:
        return t.expand(b, n_copies).reshape(-1)

    kern_h = gaussian_kernels_1d(per_image(ky), per_image(sy), width)
    kern_w = gaussian_kernels_1d(per_image(kx), per_image(sx), width)
    return blur_per_sample(x, kern_h, kern_w)


# --------------------------------------------------------------------------- noise
def add_gaussian_noise(x: Tensor, sigma: Tensor, gray: Tensor,
                       generator: Optional[torch.Generator]) -> Tensor:
    """``x`` (N, C, H, W) plus N(0, sigma_i^2) noise per image ``i`` (sigma in [0, 1] units);
    images with ``gray[i]`` get one noise map shared by all channels."""
    n, c, h, w = x.shape
    noise = rand_normal((n, c, h, w), generator, x.device, x.dtype)
    if bool(gray.any()):
        mono = rand_normal((n, 1, h, w), generator, x.device, x.dtype).expand(n, c, h, w)
        noise = torch.where(gray.reshape(n, 1, 1, 1), mono, noise)
    return x + noise * sigma.to(x.dtype).reshape(n, 1, 1, 1)


# --------------------------------------------------------------------------- the degrader
class Degrader:
    """Draws ``n`` independently degraded copies of a batch of LR images in one batched pass.

    ``degrade(lr, n, generator)`` maps ``lr`` (B, C, H, W) in [0, 1] to (B, n, C, H, W), applying
    blur -> (resize down) -> noise -> (resize back) as DCKD's released code, each step with its own
    probability. ``noise_range`` is in 8-bit levels (sigma U[1, 30]/255 by default). Only the
    resize step loops, over the ``n`` copies (each copy has one size); nothing loops over images.
    """

    def __init__(self,
                 noise_prob: float = 1.0,
                 noise_range: Sequence[float] = (1.0, 30.0),
                 gray_noise_prob: float = 0.5,
                 blur_prob: float = 0.0,
                 blur_kernel: Sequence[int] = (3, 11),
                 blur_sigma: Sequence[float] = (0.1, 2.0),
                 blur_isotropic: bool = False,
                 blur_batch_shared: bool = False,
                 resize_prob: float = 0.0,
                 resize_range: Sequence[float] = (0.5, 1.5),
                 resize_up_prob: float = 0.25,
                 resize_modes: Sequence[str] = ('area', 'bilinear', 'bicubic'),
                 clip: bool = True):
        for name, p in (('noise_prob', noise_prob), ('gray_noise_prob', gray_noise_prob),
                        ('blur_prob', blur_prob), ('resize_prob', resize_prob),
                        ('resize_up_prob', resize_up_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f'Degrader: {name} must be in [0, 1], got {p}')
        if not 0 < resize_range[0] <= 1.0 <= resize_range[1]:
            raise ValueError(f'Degrader: resize_range must satisfy 0 < low <= 1 <= high, '
                             f'got {list(resize_range)}')
        bad = [m for m in resize_modes if m not in ('area', 'bilinear', 'bicubic', 'nearest')]
        if bad or not resize_modes:
            raise ValueError(f'Degrader: resize_modes must be among area, bilinear, bicubic, '
                             f'nearest; got {list(resize_modes)}')
        rand_odd_sizes((0,), blur_kernel[0], blur_kernel[1], None, torch.device('cpu'))  # validate
        if not 0 <= noise_range[0] <= noise_range[1] or not 0 < blur_sigma[0] <= blur_sigma[1]:
            raise ValueError(f'Degrader: need 0 <= noise_range[0] <= noise_range[1] and '
                             f'0 < blur_sigma[0] <= blur_sigma[1], got {list(noise_range)}, '
                             f'{list(blur_sigma)}')
        self.noise_prob = noise_prob
        self.noise_range = tuple(noise_range)
        self.gray_noise_prob = gray_noise_prob
        self.blur_prob = blur_prob
        self.blur_kernel = tuple(blur_kernel)
        self.blur_sigma = tuple(blur_sigma)
        self.blur_isotropic = blur_isotropic
        self.blur_batch_shared = blur_batch_shared
        self.resize_prob = resize_prob
        self.resize_range = tuple(resize_range)
        self.resize_up_prob = resize_up_prob
        self.resize_modes = tuple(resize_modes)
        self.clip = clip

    def __call__(self, lr: Tensor, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        return self.degrade(lr, n, generator)

    def degrade(self, lr: Tensor, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        if lr.dim() != 4:
            raise ValueError(f'Degrader.degrade expects (B, C, H, W), got {tuple(lr.shape)}')
        b, c, h, w = lr.shape
        dev = lr.device
        if n == 0:
            return lr.new_empty((b, 0, c, h, w))
        x = lr.unsqueeze(1).expand(b, n, c, h, w).reshape(b * n, c, h, w)
        if self.blur_prob > 0:
            x = random_gaussian_blur(x, n, self.blur_prob, self.blur_kernel, self.blur_sigma,
                                     self.blur_isotropic, self.blur_batch_shared, generator)
        # noise parameters per image and copy (BasicSR draws sigma and grey per image)
        noisy = rand_bernoulli((b * n,), self.noise_prob, generator, dev)
        sigma = rand_uniform((b * n,), self.noise_range[0], self.noise_range[1], generator, dev)
        sigma = torch.where(noisy, sigma / 255.0, torch.zeros_like(sigma))
        gray = rand_bernoulli((b * n,), self.gray_noise_prob, generator, dev)

        if self.resize_prob > 0:
            x = self._resize_noise_resize(x.reshape(b, n, c, h, w), sigma.reshape(b, n),
                                          gray.reshape(b, n), generator)
        else:
            x = self._noise(x, sigma, gray, generator)
        return x.reshape(b, n, c, h, w)

    def _noise(self, x: Tensor, sigma: Tensor, gray: Tensor,
               generator: Optional[torch.Generator]) -> Tensor:
        if self.noise_prob > 0:
            x = add_gaussian_noise(x, sigma, gray, generator)
        return x.clamp(0.0, 1.0) if self.clip else x

    def _interp(self, x: Tensor, size: Tuple[int, int], mode: str) -> Tensor:
        align = None if mode in ('area', 'nearest') else False
        return F.interpolate(x, size=size, mode=mode, align_corners=align)

    def _resize_noise_resize(self, x: Tensor, sigma: Tensor, gray: Tensor,
                             generator: Optional[torch.Generator]) -> Tensor:
        """Per copy: resize (one scale and mode for the batch), noise, resize back."""
        b, n, c, h, w = x.shape
        dev = x.device
        lo, hi = self.resize_range
        resized = rand_bernoulli((n,), self.resize_prob, generator, dev).tolist()
        up = rand_bernoulli((n,), self.resize_up_prob, generator, dev).tolist()
        u = rand_uniform((n,), 0.0, 1.0, generator, dev).tolist()
        modes = torch.randint(len(self.resize_modes), (n, 2), generator=generator,
                              device=_gen_device(generator, dev)).tolist()
        out = []
        for j in range(n):
            xj = x[:, j]
            if resized[j]:
                scale = 1.0 + u[j] * (hi - 1.0) if up[j] else lo + u[j] * (1.0 - lo)
                size = (max(1, int(h * scale)), max(1, int(w * scale)))
                if size != (h, w):
                    xj = self._interp(xj, size, self.resize_modes[modes[j][0]])
                    xj = self._noise(xj, sigma[:, j], gray[:, j], generator)
                    out.append(self._interp(xj, (h, w), self.resize_modes[modes[j][1]]))
                    continue
            out.append(self._noise(xj, sigma[:, j], gray[:, j], generator))
        y = torch.stack(out, dim=1)
        if self.clip:
            y = y.clamp(0.0, 1.0)
        return y.reshape(b * n, c, h, w)
