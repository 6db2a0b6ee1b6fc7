"""A trained network's intermediate features as a frozen embedding (no download needed).

:class:`TeacherFeatures` embeds HR-size images with a trained SR network: each image is
bicubic-downscaled into the network's input domain (``downscale``), optionally re-centred to a fixed
mean colour (``centre_colour``: the embedding is then blind to a global colour offset,
benchmarks/kd_study/colour_cast.md), and the network runs only up to its last tapped module; the
outputs at ``taps`` are the embedding levels. DCKD's offline embedding
(:mod:`ckdsr.models.distill.teacher_embedding`) wraps the run's own teacher in it.

:class:`SRNetFeatures` is the same embedding as a registered arch, built from an option block and
its own weights file, for terms that take ``distill.embedding`` (CSD's contrastive term): an offline
stand-in for VGG19 where its weights cannot be had. Design choice of this project (neither the CSD
paper nor its released code embeds with an SR network).
"""
from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ckdsr.archs.official_layouts_export import DIV2K_MEAN
from ckdsr.utils.feature_taps import FeatureTaps, resolve_module
from ckdsr.utils.registry import ARCH_REGISTRY


FIT_HINT = ('fit one with: python tools/fit_codebook.py -opt <this option file> --num-codes 1024 '
            '--out <codebook.pth>')


class _StopForward(Exception):
    """Raised by a hook once every tapped module has run: the rest of the teacher is not needed."""


def downscale_bicubic(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Antialiased bicubic downscaling by an integer ``factor`` (differentiable); 1 is the identity."""
    if factor == 1:
        return x
    if x.shape[-2] % factor or x.shape[-1] % factor:
        raise ValueError(f'teacher embedding: image size {tuple(x.shape[-2:])} is not a multiple of the '
                         f'downscale factor {factor}')
    size = (x.shape[-2] // factor, x.shape[-1] // factor)
    return F.interpolate(x, size=size, mode='bicubic', align_corners=False, antialias=True)


def centre_colour(x: torch.Tensor, ref: Sequence[float] = DIV2K_MEAN) -> torch.Tensor:
    """``x - mean_{h,w}(x) + ref`` per image and channel: the same image with its mean colour set to
    ``ref`` (N, C, H, W), so that anything computed from it ignores a global per-channel offset."""
    if len(ref) != x.shape[1]:
        raise ValueError(f'colour_ref has {len(ref)} values for images with '
                         f'{x.shape[1]} channels')
    return x - x.mean(dim=(2, 3), keepdim=True) + x.new_tensor(list(ref)).view(1, -1, 1, 1)


class TeacherFeatures(nn.Module):
    """``forward(x)`` -> features at ``taps`` (list), or ``(features, z)`` when ``with_z``.

    ``x``: HR-size images (N, C, H, W) in [0, 1]; they are downscaled by ``downscale``, their mean
    colour set to ``colour_ref`` when ``centre_colour``, and the teacher ``net`` runs up to the last
    tapped module. ``codebook`` ((K, D) buffer) when given.
    """

    def __init__(self, net: nn.Module, taps: Sequence[str], downscale: int, z_tap: Optional[str] = None,
                 with_z: bool = False, normalize_z: bool = True, codebook: Optional[torch.Tensor] = None,
                 centre_colour: bool = False, colour_ref: Sequence[float] = DIV2K_MEAN):
        super().__init__()
        if not taps:
            raise ValueError('distill.teacher_embedding.taps: name at least one module path of network_t')
        if int(downscale) < 1:
            raise ValueError(f'distill.teacher_embedding.downscale must be >= 1, got {downscale}')
        self.net = net
        self.taps = list(taps)
        self.downscale = int(downscale)
        self.with_z = with_z
        self.z_tap = z_tap or self.taps[-1]
        self.normalize_z = normalize_z
        self.centre_colour = bool(centre_colour)
        self.colour_ref = tuple(float(v) for v in colour_ref)
        self.paths = self.taps + ([self.z_tap] if with_z and self.z_tap not in self.taps else [])
        for p in self.paths:
            resolve_module(self.net, p)  # unknown paths fail now, naming the closest ones
        if codebook is not None:
            self.register_buffer('codebook', codebook.clone())
        else:
            self.codebook = None

    def features(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Outputs of ``self.paths`` for images ``x``, stopping the teacher after the last of them."""
        lr = downscale_bicubic(x, self.downscale)
        if self.centre_colour:
            lr = centre_colour(lr, self.colour_ref)
        seen = set()

        def stopper(path):
            def hook(_module, _args, _output):
                seen.add(path)
                if len(seen) == len(self.paths):
                    raise _StopForward
            return hook

        with FeatureTaps(self.net, self.paths) as taps:  # its hooks run before the stoppers
            handles = [resolve_module(self.net, p).register_forward_hook(stopper(p)) for p in self.paths]
            try:
                self.net(lr)
            except _StopForward:
                pass
            finally:
                for h in handles:
                    h.remove()
            return taps.features()

    def forward(self, x: torch.Tensor):
        feats = self.features(x)
        out = [f.float() for f in feats[:len(self.taps)]]
        if not self.with_z:
            return out
        z = feats[self.paths.index(self.z_tap)].float()
        if z.dim() != 4:
            raise ValueError(f"distill.teacher_embedding.z_tap: the output of '{self.z_tap}' has shape "
                             f'{tuple(z.shape)}; DMM needs an image-shaped (B, D, h, w) feature map')
        if self.normalize_z:
            z = F.normalize(z, dim=1, eps=1e-8)
        if self.codebook is not None and z.shape[1] != self.codebook.shape[1]:
            raise ValueError(f"distill.teacher_embedding.codebook_path: the codebook has dimension "
                             f"{self.codebook.shape[1]} but '{self.z_tap}' gives {z.shape[1]} channels; {FIT_HINT}")
        return out, z


@ARCH_REGISTRY.register()
class SRNetFeatures(nn.Module):
    """``forward(x)`` -> the features at ``taps`` of a trained SR ``network`` (an arch option block,
    e.g. ``{type: CARN_M, upscale: 4}``) loaded from ``weights_path`` (any layout ckdsr reads), for
    HR-size images ``x`` in [0, 1]; see :class:`TeacherFeatures` for ``downscale`` / ``centre_colour``.
    Frozen: the caller (``distill.embedding``) puts it in eval mode without gradients."""

    def __init__(self, network: Dict[str, Any], weights_path: Optional[str] = None, taps: Sequence[str] = (),
                 downscale: int = 1, centre_colour: bool = True, colour_ref: Optional[Sequence[float]] = None,
                 param_key: Optional[str] = 'auto', allow_random: bool = False,
                 option_key: str = 'weights_path'):
        super().__init__()
        from ckdsr.models.network_io import build_network, freeze, load_weights  # models imports archs
        if not isinstance(network, dict) or 'type' not in network:
            raise ValueError(f"{option_key.rsplit('.', 1)[0]}.network: give the SR network's option block, "
                             "e.g. {type: CARN_M, upscale: 4}")
        if not weights_path and not allow_random:
            raise FileNotFoundError(f'{option_key} is not set: SRNetFeatures embeds with a trained network '
                                    f"(e.g. the official CARN-M weights for {network['type']}); a random one "
                                    'is allowed only with allow_random (tests)')
        net = build_network(dict(network))
        load_weights(net, weights_path, param_key, True, option_key)
        freeze(net)
        self.inner = TeacherFeatures(net, taps, downscale, centre_colour=centre_colour,
                                     colour_ref=colour_ref or DIV2K_MEAN)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        return self.inner(x)
