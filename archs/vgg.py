"""VGG19 feature extractor (Simonyan & Zisserman, 2015) for perceptual and contrastive losses.

CSD (Wang et al., "Towards Compact Single Image Super-Resolution via Contrastive
Self-distillation", IJCAI 2021) contrasts student, teacher and negatives on relu1_1 ... relu5_1 of an
ImageNet VGG19. Its official code (``loss/contrast_loss.py``) feeds the network the EDSR-style
``rgb_range=255`` images directly: inputs in [0, 255], *no* mean subtraction or std division.
``input_norm='none_255'`` reproduces that from our [0, 1] tensors (multiply by 255);
``'imagenet'`` is the usual torchvision normalisation; ``'none'`` passes the input unchanged.

The architecture is torchvision's ``vgg19(weights=None).features``, truncated after the deepest requested layer.
Layer names follow the usual convention, checked against torchvision's module indices:
relu1_1 = features.1, relu2_1 = 6, relu3_1 = 11, relu4_1 = 20, relu5_1 = 29.
"""
import os
from typing import List, Literal, Optional, Sequence

import torch
from torch import Tensor, nn

from ckdsr.utils.registry import ARCH_REGISTRY
from ckdsr.utils.suggest import closest

VGG19_URL = 'https://download.pytorch.org/models/vgg19-dcbb9e9d.pth'
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_BLOCKS = (2, 2, 4, 4, 4)  # convs per block of VGG19


def vgg19_layer_names() -> List[str]:
    """Names of the 37 modules of torchvision's ``vgg19().features``, in index order."""
    names = []
    for b, n_conv in enumerate(_BLOCKS, start=1):
        for i in range(1, n_conv + 1):
            names += [f'conv{b}_{i}', f'relu{b}_{i}']
        names.append(f'pool{b}')
    return names


def missing_weights_error(option_key: str, path: Optional[str]) -> FileNotFoundError:
    """The one error for absent VGG19 weights: names the option key and the download URL."""
    from ckdsr.utils.external_files import describe  # the one table of external files
    where = 'is not set' if not path else f'points to a missing file ({path})'
    return FileNotFoundError(
        f'{option_key} {where}: VGG19 needs {describe("vgg19-dcbb9e9d.pth")}; download it and set '
        f'{option_key} to its path.')


def load_vgg19_state(path: str, option_key: str) -> dict:
    """The ``features`` part of a VGG19 state dict, keyed by module index (``'0.weight'``...).

    Accepts torchvision's published file (keys ``features.N.*`` plus ``classifier.*``, ignored) or a
    file holding only the feature keys, with or without the ``features.`` prefix.
    """
    if not path or not os.path.isfile(os.path.expanduser(path)):
        raise missing_weights_error(option_key, path)
    try:
        state = torch.load(os.path.expanduser(path), map_location='cpu', weights_only=True)
    except Exception as err:  # noqa: BLE001 - garbage / truncated file: one line naming the option
        first = ' '.join(str(err).split()).split('. ')[0]
        raise ValueError(f'{option_key}: {path} is not a readable torch checkpoint ({first}); the file is '
                         'damaged or not a PyTorch checkpoint') from None
    if isinstance(state, dict) and isinstance(state.get('state_dict'), dict):
        state = state['state_dict']
    out = {}
    for key, value in state.items():
        if key.startswith('classifier.'):
            continue
        key = key[len('features.'):] if key.startswith('features.') else key
        if key.split('.', 1)[0].isdigit():
            out[key] = value
    if not out:
        raise ValueError(f'{option_key}: {path} holds no VGG19 feature weights '
                         f'(expected keys like features.0.weight, as in {VGG19_URL})')
    return out


def _vgg19_features() -> nn.Sequential:
    """torchvision's ``vgg19(weights=None).features`` (config 'E'), built without the 120M-parameter
    classifier that ``vgg19()`` would also allocate and initialise."""
    try:  # lazy: torchvision is an optional, heavy import
        from torchvision.models.vgg import cfgs, make_layers
        return make_layers(cfgs['E'], batch_norm=False)
    except (ImportError, KeyError):  # private helpers moved: fall back to the public builder
        from torchvision.models import vgg19
        return vgg19(weights=None).features


@ARCH_REGISTRY.register()
class VGG19Features(nn.Module):
    """Outputs of the named VGG19 layers, in the order requested, from one forward pass.

    ``weights_path`` is required unless ``allow_random`` (tests only). ``option_key`` is the option
    path that error messages name (the builder passes e.g. ``'train.embedding.weights_path'``).
    """

    def __init__(self,
                 layers: Sequence[str] = ('relu1_1', 'relu2_1', 'relu3_1', 'relu4_1', 'relu5_1'),
                 weights_path: Optional[str] = None,
                 input_norm: Literal['imagenet', 'none_255', 'none'] = 'imagenet',
                 allow_random: bool = False,
                 option_key: str = 'weights_path'):
        super().__init__()
        names = vgg19_layer_names()
        if not layers:
            raise ValueError('VGG19Features: layers must name at least one layer')
        for name in layers:
            if name not in names:
                hint = closest(name, names)
                raise ValueError(f'VGG19Features: unknown layer {name!r}'
                                 + (f" (did you mean {', '.join(map(repr, hint))}?)" if hint else ''))
        if len(set(layers)) != len(layers):
            raise ValueError(f'VGG19Features: duplicate layers in {list(layers)}')
        if input_norm not in ('imagenet', 'none_255', 'none'):
            raise ValueError(f"VGG19Features: input_norm must be 'imagenet', 'none_255' or 'none', "
                             f'got {input_norm!r}')
        self.layers = list(layers)
        self.input_norm = input_norm
        self.weights_path = weights_path
        self._index = [names.index(n) for n in self.layers]
        last = max(self._index)

        features = _vgg19_features()[:last + 1]
        tapped = set(self._index)
        for i, module in enumerate(features):
            # an in-place ReLU would overwrite a tapped conv output; untapped ones stay in place
            if isinstance(module, nn.ReLU) and (i - 1) in tapped:
                module.inplace = False
        self.features = features

        if weights_path is not None:
            state = load_vgg19_state(weights_path, option_key)
            wanted = self.features.state_dict().keys()
            missing = [k for k in wanted if k not in state]
            if missing:
                raise ValueError(f'{option_key}: {weights_path} lacks VGG19 keys '
                                 f"{', '.join('features.' + k for k in missing)}")
            self.features.load_state_dict({k: state[k] for k in wanted}, strict=True)
        elif not allow_random:
            raise missing_weights_error(option_key, None)

        self.register_buffer('mean', torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def normalize(self, x: Tensor) -> Tensor:
        """Map RGB [0, 1] input to what the VGG expects under ``input_norm``."""
        if self.input_norm == 'imagenet':
            return (x - self.mean) / self.std
        if self.input_norm == 'none_255':
            return x * 255.0
        return x

    def forward(self, x: Tensor) -> List[Tensor]:
        h = self.normalize(x)
        found = {}
        wanted = set(self._index)
        for i, module in enumerate(self.features):
            h = module(h)
            if i in wanted:
                found[i] = h
        return [found[i] for i in self._index]
