"""load_pretrained on stand-in checkpoints written in each real layout (random tensors under the
real key names, saved with torch.save), plus the real CARN-M release file."""
import pytest
import torch
from torch import nn

from ckdsr.archs.carn import CARN_M
from ckdsr.archs.checkpoint_layouts import CheckpointMismatchError, LayoutError, detect_layout, load_pretrained
from ckdsr.archs.edsr import EDSR
from ckdsr.archs.rcan import RCAN
from ckdsr.archs.swinir import SwinIR

MEAN = torch.tensor([0.4488, 0.4371, 0.4040])


def tiny_edsr(**kw):
    torch.manual_seed(kw.pop('seed', 0))
    cfg = dict(num_feat=8, num_block=2, upscale=4)
    cfg.update(kw)
    return EDSR(**cfg).eval()


def same_output(a, b, shape=(1, 3, 6, 5)):
    x = torch.rand(*shape)
    with torch.no_grad():
        return torch.allclose(a(x), b(x), atol=1e-6)


def mean_shift_convs(rgb_range=255.0):
    eye = torch.eye(3).view(3, 3, 1, 1)
    return {'sub_mean.weight': eye, 'sub_mean.bias': -rgb_range * MEAN,
            'add_mean.weight': eye.clone(), 'add_mean.bias': rgb_range * MEAN}


def edsr_pytorch_state(net, num_block=2, rgb_range=255.0):
    """EDSR-PyTorch names (head / body.i.body.{0,2} / body.n / tail.0.{0,2} / tail.1)."""
    ours = net.state_dict()
    theirs = mean_shift_convs(rgb_range)
    for p in ('weight', 'bias'):
        theirs[f'head.0.{p}'] = ours[f'conv_first.{p}']
        for i in range(num_block):
            theirs[f'body.{i}.body.0.{p}'] = ours[f'body.{i}.conv1.{p}']
            theirs[f'body.{i}.body.2.{p}'] = ours[f'body.{i}.conv2.{p}']
        theirs[f'body.{num_block}.{p}'] = ours[f'conv_after_body.{p}']
        theirs[f'tail.0.0.{p}'] = ours[f'upsample.0.{p}']
        theirs[f'tail.0.2.{p}'] = ours[f'upsample.2.{p}']
        theirs[f'tail.1.{p}'] = ours[f'conv_last.{p}']
    return theirs


def test_basicsr_wrappers_and_param_key(tmp_path):
    a, b = tiny_edsr(seed=1), tiny_edsr(seed=2)
    path = tmp_path / 'EDSR_x4.pth'
    torch.save({'params': a.state_dict(), 'params_ema': b.state_dict()}, path)
    net = tiny_edsr(seed=3)
    report = load_pretrained(net, str(path))                       # auto prefers the EMA weights
    assert report.param_key == 'params_ema' and report.layout == 'basicsr' and report.clean
    assert same_output(net, b)
    load_pretrained(net, str(path), param_key='params')
    assert same_output(net, a)
    with pytest.raises(RuntimeError, match='params'):
        load_pretrained(net, str(path), param_key=None)             # not a bare state_dict
    with pytest.raises(KeyError, match='ema'):
        load_pretrained(net, str(path), param_key='ema')


def test_params_ema_falls_back_to_params_as_basicsr_does(tmp_path):
    src = tiny_edsr(seed=1)
    torch.save({'params': src.state_dict()}, tmp_path / 'p.pth')
    net = tiny_edsr(seed=2)
    with pytest.warns(UserWarning, match='params_ema'):
        report = load_pretrained(net, str(tmp_path / 'p.pth'), param_key='params_ema')
    assert report.param_key == 'params' and same_output(net, src)


@pytest.mark.parametrize('legacy', [False, True])
def test_edsr_pytorch_layout_with_module_prefix(tmp_path, legacy):
    src = tiny_edsr(seed=4)
    state = {f'module.{k}': v for k, v in edsr_pytorch_state(src).items()}
    path = tmp_path / 'model_best.pt'
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    net = tiny_edsr(seed=5)
    report = load_pretrained(net, str(path))
    assert report.layout == 'edsr_pytorch' and report.clean and report.loaded == len(src.state_dict())
    assert same_output(net, src)


def test_edsr_pytorch_mean_shift_must_match_img_range(tmp_path):
    src = tiny_edsr()
    torch.save(edsr_pytorch_state(src, rgb_range=1.0), tmp_path / 'edsr_range1.pt')
    with pytest.raises(LayoutError, match='img_range') as err:
        load_pretrained(tiny_edsr(), str(tmp_path / 'edsr_range1.pt'))
    assert 'edsr_range1.pt' in str(err.value) and '\n' not in str(err.value)
    net = tiny_edsr(img_range=1.0)  # a net configured like the checkpoint loads
    assert load_pretrained(net, str(tmp_path / 'edsr_range1.pt')).clean


def test_rcan_official_layout(tmp_path):
    torch.manual_seed(6)
    src = RCAN(num_feat=16, num_group=2, num_block=2, squeeze_factor=4, upscale=2).eval()
    ours = src.state_dict()
    theirs = mean_shift_convs()
    for p in ('weight', 'bias'):
        theirs[f'head.0.{p}'] = ours[f'conv_first.{p}']
        for g in range(2):
            for b in range(2):
                o, t = f'body.{g}.residual_group.{b}.rcab', f'body.{g}.body.{b}.body'
                theirs[f'{t}.0.{p}'] = ours[f'{o}.0.{p}']
                theirs[f'{t}.2.{p}'] = ours[f'{o}.2.{p}']
                theirs[f'{t}.3.conv_du.0.{p}'] = ours[f'{o}.3.attention.1.{p}']
                theirs[f'{t}.3.conv_du.2.{p}'] = ours[f'{o}.3.attention.3.{p}']
            theirs[f'body.{g}.body.2.{p}'] = ours[f'body.{g}.conv.{p}']
        theirs[f'body.2.{p}'] = ours[f'conv_after_body.{p}']
        theirs[f'tail.0.0.{p}'] = ours[f'upsample.0.{p}']
        theirs[f'tail.1.{p}'] = ours[f'conv_last.{p}']
    torch.save(theirs, tmp_path / 'RCAN_BIX2.pt')
    torch.manual_seed(7)
    net = RCAN(num_feat=16, num_group=2, num_block=2, squeeze_factor=4, upscale=2).eval()
    report = load_pretrained(net, str(tmp_path / 'RCAN_BIX2.pt'))
    assert report.layout == 'rcan_official' and report.clean
    assert same_output(net, src)


@pytest.mark.parametrize('key', ['params', 'params_ema'])
def test_swinir_release_layout(tmp_path, key):
    cfg = dict(upscale=2, embed_dim=12, depths=[2, 2], num_heads=[2, 2], window_size=4, mlp_ratio=2,
               upsampler='pixelshuffle', img_size=16)
    torch.manual_seed(8)
    src = SwinIR(**cfg).eval()
    state = dict(src.state_dict())
    for layer in range(2):
        for blk in range(2):
            prefix = f'layers.{layer}.residual_group.blocks.{blk}'
            state[f'{prefix}.attn.relative_position_index'] = torch.zeros(16, 16, dtype=torch.long)
            if blk % 2:
                state[f'{prefix}.attn_mask'] = torch.zeros(16, 16, 16)  # stored for the 16x16 training size
    torch.save({key: state}, tmp_path / '001_classicalSR_DF2K_s64w8_SwinIR-M_x2.pth')
    torch.manual_seed(9)
    net = SwinIR(**cfg).eval()
    report = load_pretrained(net, str(tmp_path / '001_classicalSR_DF2K_s64w8_SwinIR-M_x2.pth'))
    assert report.layout == 'swinir_official' and report.param_key == key and report.clean
    assert same_output(net, src, shape=(1, 3, 10, 7))


def test_real_carn_m_release_loads_strictly(shared_dir):
    net = CARN_M()
    report = load_pretrained(net, str(shared_dir / 'weights' / 'carn_m.pth'))
    assert report.layout == 'carn_pytorch' and report.param_key is None and report.clean
    raw = torch.load(shared_dir / 'weights' / 'carn_m.pth', map_location='cpu', weights_only=True)
    assert sum(v.numel() for v in raw.values()) == 414_811
    for k, v in raw.items():
        assert torch.equal(net.state_dict()[k], v)


def test_mismatch_is_one_error_listing_keys_and_leaves_the_net_untouched(tmp_path):
    path = tmp_path / 'edsr_c8.pth'
    torch.save({'params': tiny_edsr().state_dict()}, path)
    net = tiny_edsr(num_feat=16, num_block=3, seed=1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as err:
        load_pretrained(net, str(path))
    msg = str(err.value)
    assert '\n' not in msg and str(path) in msg and "layout 'basicsr'" in msg
    assert '4 missing keys [body.2.conv1.weight' in msg
    assert 'shape conflicts [conv_first.weight: checkpoint (8, 3, 3, 3) vs net (16, 3, 3, 3)' in msg
    assert '(+' in msg and 'more)' in msg
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())

    torch.save({'params': tiny_edsr(num_block=3).state_dict()}, path)
    with pytest.raises(CheckpointMismatchError, match=r'4 unexpected keys \[body\.2\.conv1\.weight'):
        load_pretrained(tiny_edsr(num_block=2), str(path))


def test_non_strict_loads_what_fits(tmp_path):
    src = tiny_edsr(num_block=2, seed=1)
    torch.save(src.state_dict(), tmp_path / 'bare.pth')
    net = tiny_edsr(num_block=3, seed=2)
    report = load_pretrained(net, str(tmp_path / 'bare.pth'), strict=False)
    assert report.missing == ['body.2.conv1.weight', 'body.2.conv1.bias', 'body.2.conv2.weight', 'body.2.conv2.bias']
    assert report.loaded == len(src.state_dict())
    assert torch.equal(net.body[1].conv2.weight, src.body[1].conv2.weight)


def test_wrapped_nets_missing_files_and_unreadable_files(tmp_path):
    src = tiny_edsr(seed=1)
    torch.save({'params': src.state_dict()}, tmp_path / 'a.pth')
    inner = tiny_edsr(seed=2)
    load_pretrained(nn.DataParallel(inner), str(tmp_path / 'a.pth'))
    assert same_output(inner, src)
    with pytest.raises(FileNotFoundError, match='nowhere/edsr.pth'):
        load_pretrained(inner, str(tmp_path / 'nowhere' / 'edsr.pth'))
    torch.save(torch.zeros(3), tmp_path / 'tensor.pth')
    with pytest.raises(RuntimeError, match='tensor.pth'):
        load_pretrained(inner, str(tmp_path / 'tensor.pth'))
    (tmp_path / 'junk.pth').write_bytes(b'not a checkpoint')
    with pytest.raises(RuntimeError, match='junk.pth'):
        load_pretrained(inner, str(tmp_path / 'junk.pth'))


def test_layout_detection_from_keys():
    assert detect_layout(['head.0.weight', 'body.0.body.0.weight', 'tail.1.weight']).name == 'edsr_pytorch'
    assert detect_layout(['head.0.weight', 'body.0.body.0.body.3.conv_du.0.weight', 'tail.1.weight']).name \
        == 'rcan_official'
    assert detect_layout(['sub_mean.shifter.weight', 'entry.weight']).name == 'carn_pytorch'
    assert detect_layout(['conv_first.weight', 'body.0.conv1.weight']).name == 'basicsr'
