"""Official-layout export (archs/official_layouts_export.py, tools/export.py --format official):
spandrel (the loader of chaiNNer / ComfyUI; a test-only dependency) loads the exported file, detects
the architecture and scale, and computes ckdsr's outputs on a real LR image."""
import pytest
import spandrel
import torch

from ckdsr.archs.official_layouts_export import ExportLayoutError, official_state
from ckdsr.data.image_io import read_image
from ckdsr.models.network_io import build_network
from ckdsr.tools import export as export_tool

STUDENTS = [  # tiny versions of the distilled students: RCAN (x3) and SwinIR with either upsampler
    ('RCAN', 3, {'type': 'RCAN', 'num_feat': 16, 'num_group': 2, 'num_block': 2, 'squeeze_factor': 4}),
    ('SwinIR', 4, {'type': 'SwinIR', 'embed_dim': 12, 'depths': [2, 2], 'num_heads': [2, 2], 'window_size': 8,
                   'img_size': 48, 'mlp_ratio': 2, 'upsampler': 'pixelshuffle'}),
    ('SwinIR', 2, {'type': 'SwinIR', 'embed_dim': 12, 'depths': [2], 'num_heads': [3], 'window_size': 4,
                   'img_size': 16, 'mlp_ratio': 2, 'upsampler': 'pixelshuffledirect'}),
]


def _random_weights(net, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return net.eval()


@pytest.mark.parametrize('arch, scale, cfg', STUDENTS, ids=['rcan_x3', 'swinir_ps_x4', 'swinir_psd_x2'])
def test_spandrel_loads_export(tmp_path, benchmark_dir, arch, scale, cfg):
    net = _random_weights(build_network(cfg, scale))
    weights, out = tmp_path / 'net_g.pth', tmp_path / 'official.pth'
    torch.save({'params_ema': net.state_dict()}, weights)
    sets = [f'{k}={v}' for k, v in cfg.items() if k != 'type']
    assert export_tool.main(['--arch', arch, '--set', *sets, '--weights', str(weights), '--scale', str(scale),
                             '--format', 'official', '--out', str(out)]) == 0

    desc = spandrel.ModelLoader().load_from_file(str(out))
    assert desc.architecture.id == arch and desc.scale == scale
    img = read_image(benchmark_dir / 'Set5' / 'LR_bicubic' / f'X{scale}' / f'womanx{scale}.png')[:37, :29]
    lr = torch.from_numpy(img.copy()).permute(2, 0, 1).unsqueeze(0).float() / 255.0
    with torch.no_grad():
        ours = net(lr.clone())
        theirs = desc.model.eval()(lr.clone())   # spandrel's RCAN scales its input in place
    assert theirs.shape == ours.shape == (1, 3, 37 * scale, 29 * scale)
    assert (theirs - ours).abs().max().item() < 1e-5


def test_refuses_what_spandrel_would_compute_differently():
    rcan = build_network(dict(STUDENTS[0][2], res_scale=0.5), 3)
    with pytest.raises(ExportLayoutError, match='res_scale'):
        official_state(rcan)
    swin = build_network(dict(STUDENTS[2][2], img_range=255.0), 2)
    with pytest.raises(ExportLayoutError, match='img_range'):
        official_state(swin)
    with pytest.raises(ExportLayoutError, match='supports RCAN, SwinIR; got EDSR'):
        official_state(build_network({'type': 'EDSR', 'num_feat': 8, 'num_block': 1}, 2))


def test_round_trip_through_ckdsr_loader(tmp_path):
    """The exported file loads back into a fresh ckdsr net with the official-layout reader."""
    from ckdsr.archs.checkpoint_layouts import load_pretrained
    cfg = STUDENTS[0][2]
    net = _random_weights(build_network(cfg, 3))
    layout, state = official_state(net)
    torch.save(state, tmp_path / 'o.pth')
    fresh = build_network(cfg, 3)
    report = load_pretrained(fresh, str(tmp_path / 'o.pth'))
    assert layout == report.layout == 'rcan_official'
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), fresh.state_dict().values()))


@pytest.mark.parametrize('option', ['options/dckd_rcan_x4.yml', 'options/dckd_swinir_x4.yml'])
def test_paper_size_students_from_their_option_files(tmp_path, benchmark_dir, option):
    """The DCKD students as configured (RCAN 10x6, SwinIR 60 ch 4x6, x4), randomly initialised,
    exported with the -opt form: spandrel finds the arch and scale and gives ckdsr's output."""
    from tests.conftest import REPO_ROOT
    from ckdsr.utils.options import read_yaml
    tree = read_yaml(str(REPO_ROOT / option))
    torch.manual_seed(1)  # the archs' own random init: outputs stay in a sane range (max |out| ~0.9)
    net = build_network(tree['network_g'], tree['scale']).eval()
    weights, out = tmp_path / 'net_g.pth', tmp_path / 'official.pth'
    torch.save({'params': net.state_dict()}, weights)
    assert export_tool.main(['-opt', str(REPO_ROOT / option), '--set', f'path.pretrain_network_g={weights}',
                             '--format', 'official', '--out', str(out)]) == 0
    desc = spandrel.ModelLoader().load_from_file(str(out))
    assert (desc.architecture.id, desc.scale) == (tree['network_g']['type'], 4)
    img = read_image(benchmark_dir / 'Set5' / 'LR_bicubic' / 'X4' / 'birdx4.png')[:20, :27]
    lr = torch.from_numpy(img.copy()).permute(2, 0, 1).unsqueeze(0).float() / 255.0
    with torch.no_grad():
        ours = net(lr.clone())
        diff = (desc.model.eval()(lr.clone()) - ours).abs().max().item()
    assert ours.abs().max().item() > 0.1 and diff < 1e-5, (diff, ours.abs().max().item())
