import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ckdsr.archs.vgg import IMAGENET_MEAN, IMAGENET_STD, VGG19_URL, VGG19Features, vgg19_layer_names
from ckdsr.utils.registry import ARCH_REGISTRY

# torchvision vgg19 'E' config: (module index, in, out) of every conv in `features`
CONVS = [(0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256),
         (14, 256, 256), (16, 256, 256), (19, 256, 512), (21, 512, 512), (23, 512, 512),
         (25, 512, 512), (28, 512, 512), (30, 512, 512), (32, 512, 512), (34, 512, 512)]


def standin_state(prefix='features.', with_classifier=True, seed=0, upto=34):
    """Random tensors under torchvision's vgg19-dcbb9e9d.pth key names and shapes (convs with
    index <= ``upto``). The classifier keys carry the real names but tiny shapes: they must be
    ignored anyway."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for idx, cin, cout in CONVS:
        if idx > upto:
            break
        state[f'{prefix}{idx}.weight'] = torch.randn(cout, cin, 3, 3, generator=g) * 0.05
        state[f'{prefix}{idx}.bias'] = torch.randn(cout, generator=g) * 0.05
    if with_classifier:
        for idx in (0, 3, 6):
            state[f'classifier.{idx}.weight'] = torch.zeros(2, 2)
            state[f'classifier.{idx}.bias'] = torch.zeros(2)
    return state


@pytest.fixture(scope='module')
def weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp('vgg') / 'vgg19-dcbb9e9d.pth'
    torch.save(standin_state(), path)
    return str(path)


def test_layer_names_match_torchvision_indices():
    from torchvision.models import vgg19

    names = vgg19_layer_names()
    with torch.device('meta'):  # structure only: skip allocating the 140M parameters
        features = vgg19(weights=None).features
    assert len(names) == len(features) == 37
    kinds = {'conv': nn.Conv2d, 'relu': nn.ReLU, 'pool': nn.MaxPool2d}
    for name, module in zip(names, features):
        assert isinstance(module, kinds[name[:4]]), (name, module)
    want = {'relu1_1': 1, 'relu2_1': 6, 'relu3_1': 11, 'relu4_1': 20, 'relu5_1': 29,
            'conv5_4': 34, 'pool5': 36}
    assert {n: names.index(n) for n in want} == want
    assert [i for i, n in enumerate(names) if n.startswith('conv')] == [c[0] for c in CONVS]


def test_loads_standin_in_torchvision_format(weights_file):
    net = VGG19Features(weights_path=weights_file)
    state = standin_state()
    assert len(net.features) == 30  # truncated after relu5_1 = features.29
    for idx, _, _ in CONVS[:13]:
        assert torch.equal(net.features[idx].weight, state[f'features.{idx}.weight'])
        assert torch.equal(net.features[idx].bias, state[f'features.{idx}.bias'])
    outs = net(torch.rand(2, 3, 32, 32))
    assert [tuple(o.shape) for o in outs] == [(2, 64, 32, 32), (2, 128, 16, 16), (2, 256, 8, 8),
                                             (2, 512, 4, 4), (2, 512, 2, 2)]
    assert ARCH_REGISTRY.get('VGG19Features') is VGG19Features


@pytest.mark.parametrize('prefix', ['features.', ''])
def test_accepts_features_only_files(tmp_path, prefix):
    path = tmp_path / 'vgg_features.pth'
    torch.save(standin_state(prefix=prefix, with_classifier=False, seed=3, upto=5), path)
    net = VGG19Features(layers=['relu2_1'], weights_path=str(path))
    assert torch.equal(net.features[5].weight, standin_state(seed=3, upto=5)['features.5.weight'])


@pytest.mark.parametrize('norm', ['imagenet', 'none_255', 'none'])
def test_input_norm_and_first_layer_by_hand(weights_file, norm):
    net = VGG19Features(layers=['relu1_1'], weights_path=weights_file, input_norm=norm)
    state = standin_state(upto=0)
    x = torch.rand(1, 3, 8, 8)
    if norm == 'imagenet':
        xin = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    elif norm == 'none_255':  # CSD official: [0, 255] input, no mean subtraction
        xin = x * 255.0
    else:
        xin = x
    want = F.relu(F.conv2d(xin, state['features.0.weight'], state['features.0.bias'], padding=1))
    assert torch.allclose(net(x)[0], want, atol=1e-4, rtol=1e-5)


def test_order_and_conv_taps_not_clobbered_by_inplace_relu(weights_file):
    net = VGG19Features(layers=['relu2_1', 'conv1_1', 'relu1_1'], weights_path=weights_file,
                        input_norm='none')
    relu21, conv11, relu11 = net(torch.rand(1, 3, 8, 8) - 0.5)
    assert relu21.shape[1] == 128 and conv11.shape[1] == 64
    assert (conv11 < 0).any()  # an in-place ReLU would have zeroed these
    assert torch.allclose(relu11, conv11.clamp(min=0))


def test_gradient_reaches_the_input(weights_file):
    net = VGG19Features(weights_path=weights_file).requires_grad_(False)
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    sum(o.mean() for o in net(x)).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_input_gradient_matches_finite_differences(weights_file):
    """The autograd input gradient in float64 against central differences along random directions:
    <grad f(x), v> == (f(x + h v) - f(x - h v)) / 2h. With h = 1e-6 the truncation error is ~h^2 and
    the rounding error ~1e-16 / h = 1e-10; a ReLU or max-pool switch inside [x - hv, x + hv] costs
    O(h) at most, so 1e-5 relative is a safe bound and far below a wrong gradient's error."""
    net = VGG19Features(weights_path=weights_file).requires_grad_(False).double()
    g = torch.Generator().manual_seed(5)
    x = torch.rand(1, 3, 16, 16, generator=g, dtype=torch.float64)
    coeffs = [1.0, 0.5, 2.0, 0.25, 3.0]  # a distinct weight per tap, so no tap can hide behind another

    def f(inp):
        return sum(c * o.square().mean() for c, o in zip(coeffs, net(inp)))

    xg = x.clone().requires_grad_(True)
    f(xg).backward()
    grad = xg.grad
    assert grad.abs().sum() > 0
    h = 1e-6
    for _ in range(3):
        v = torch.randn(x.shape, generator=g, dtype=torch.float64)
        with torch.no_grad():
            fd = (f(x + h * v) - f(x - h * v)) / (2 * h)
        analytic = (grad * v).sum()
        assert abs(fd - analytic) <= 1e-5 * abs(analytic), (fd.item(), analytic.item())


def test_missing_weights_name_option_key_and_url(tmp_path):
    key = 'train.embedding.weights_path'
    with pytest.raises(FileNotFoundError) as err:
        VGG19Features(weights_path=str(tmp_path / 'nope.pth'), option_key=key)
    assert key in str(err.value) and VGG19_URL in str(err.value)
    with pytest.raises(FileNotFoundError) as err:
        VGG19Features(option_key=key)
    assert key in str(err.value) and VGG19_URL in str(err.value)
    VGG19Features(layers=['relu1_1'], allow_random=True)  # tests may opt out


def test_incomplete_file_and_bad_layers(tmp_path):
    path = tmp_path / 'partial.pth'
    state = standin_state(with_classifier=False, upto=10)
    del state['features.5.weight']
    torch.save(state, path)
    with pytest.raises(ValueError, match='features.5.weight'):
        VGG19Features(layers=['relu3_1'], weights_path=str(path))
    VGG19Features(layers=['relu1_2'], weights_path=str(path))  # only needs features.0 and .2
    with pytest.raises(ValueError, match="unknown layer 'relu5_l'.*did you mean 'relu5_"):
        VGG19Features(layers=['relu5_l'], allow_random=True)
    with pytest.raises(ValueError, match='duplicate'):
        VGG19Features(layers=['relu1_1', 'relu1_1'], allow_random=True)
