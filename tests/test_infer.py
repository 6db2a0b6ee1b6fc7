"""tools/infer.py: upscale a folder of images without HR; outputs equal the net's own forward
(whole image, x8 self-ensemble, tiling), existing files are kept, errors are one line."""
import shutil

import numpy as np
import torch

from ckdsr.data.image_io import read_image
from ckdsr.metrics import tensor2img
from ckdsr.models.inference import self_ensemble_forward
from ckdsr.models.network_io import build_network
from ckdsr.tools import infer

CFG = {'type': 'EDSR', 'num_feat': 8, 'num_block': 1}


def _setup(tmp_path, benchmark_dir):
    torch.manual_seed(0)
    net = build_network(CFG, 2).eval()
    weights = tmp_path / 'net_g.pth'
    torch.save({'params': net.state_dict()}, weights)
    photos = tmp_path / 'photos'
    photos.mkdir()
    for name in ('birdx2.png', 'womanx2.png'):
        shutil.copy(benchmark_dir / 'Set5' / 'LR_bicubic' / 'X2' / name, photos / name)
    (photos / 'notes.txt').write_text('not an image')
    args = ['--arch', 'EDSR', '--set', 'num_feat=8', 'num_block=1', '--weights', str(weights), '--scale', '2',
            '--input', str(photos), '--device', 'cpu', '--no-progress']
    return net, photos, args


def _expected(forward, path):
    lr = torch.from_numpy(read_image(path)).permute(2, 0, 1).unsqueeze(0).float() / 255.0
    with torch.no_grad():
        return tensor2img(forward(lr))


def test_folder_whole_and_self_ensemble(tmp_path, benchmark_dir):
    net, photos, args = _setup(tmp_path, benchmark_dir)
    assert infer.main(args + ['--output', str(tmp_path / 'out')]) == 0
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == ['birdx2_x2.png', 'womanx2_x2.png']
    got = read_image(tmp_path / 'out' / 'womanx2_x2.png')
    lr_h, lr_w = read_image(photos / 'womanx2.png').shape[:2]
    assert got.shape == (2 * lr_h, 2 * lr_w, 3)
    np.testing.assert_array_equal(got, _expected(net, photos / 'womanx2.png'))

    assert infer.main(args + ['--output', str(tmp_path / 'se'), '--self-ensemble', '--suffix', '']) == 0
    se = read_image(tmp_path / 'se' / 'birdx2.png')
    np.testing.assert_array_equal(se, _expected(lambda x: self_ensemble_forward(net, x), photos / 'birdx2.png'))
    assert not np.array_equal(se, _expected(net, photos / 'birdx2.png'))


def test_tiled_equals_whole_for_a_short_receptive_field(tmp_path, benchmark_dir):
    """EDSR with one block sees 5.5 LR px each side (five 3x3 convs at LR, one at HR = half an LR px),
    under the kept margin of overlap 12 // 2: tiling changes nothing beyond float error, so at most a
    rounding step on a few pixels."""
    net, photos, args = _setup(tmp_path, benchmark_dir)
    assert infer.main(args + ['--output', str(tmp_path / 't'), '--tile', '32', '--tile-overlap', '12']) == 0
    tiled = read_image(tmp_path / 't' / 'womanx2_x2.png').astype(int)
    whole = _expected(net, photos / 'womanx2.png').astype(int)
    assert np.abs(tiled - whole).max() <= 1


def test_keeps_existing_outputs_unless_overwrite(tmp_path, benchmark_dir, capsys):
    _, _, args = _setup(tmp_path, benchmark_dir)
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'birdx2_x2.png').write_bytes(b'mine')
    assert infer.main(args + ['--output', str(out)]) == 0
    assert (out / 'birdx2_x2.png').read_bytes() == b'mine' and 'skip' in capsys.readouterr().err
    assert infer.main(args + ['--output', str(out), '--overwrite']) == 0
    assert read_image(out / 'birdx2_x2.png').shape[2] == 3


def test_one_line_errors(tmp_path, benchmark_dir, capsys):
    _, _, args = _setup(tmp_path, benchmark_dir)
    bad_input = [a if a != str(tmp_path / 'photos') else str(tmp_path / 'nowhere') for a in args]
    assert infer.main(bad_input + ['--output', str(tmp_path / 'o')]) == 2
    assert capsys.readouterr().err.strip() == f"error: --input: no such file or folder: {tmp_path / 'nowhere'}"
    bad_w = [a if not a.endswith('net_g.pth') else str(tmp_path / 'missing.pth') for a in args]
    assert infer.main(bad_w + ['--output', str(tmp_path / 'o')]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: path.pretrain_network_g:') and 'missing.pth' in err


def test_option_file_form_equals_arch_form(tmp_path, shared_dir, benchmark_dir):
    """-opt with a test option file (its dataset folders need not exist) gives the --arch form's images."""
    from tests.conftest import REPO_ROOT
    src = benchmark_dir / 'Set5' / 'LR_bicubic' / 'X4' / 'birdx4.png'
    weights = shared_dir / 'weights' / 'carn_m.pth'
    common = ['--input', str(src), '--device', 'cpu', '--no-progress']
    assert infer.main(['-opt', str(REPO_ROOT / 'options' / 'test' / 'test_carn_m_x4.yml'), '--set',
                       f'path.pretrain_network_g={weights}', '--output', str(tmp_path / 'a')] + common) == 0
    assert infer.main(['--arch', 'CARN_M', '--weights', str(weights), '--scale', '4',
                       '--output', str(tmp_path / 'b')] + common) == 0
    a, b = read_image(tmp_path / 'a' / 'birdx4_x4.png'), read_image(tmp_path / 'b' / 'birdx4_x4.png')
    assert a.shape == (288, 288, 3)
    np.testing.assert_array_equal(a, b)


def test_undecodable_image_is_skipped_and_reported(tmp_path, benchmark_dir, capsys):
    _, photos, args = _setup(tmp_path, benchmark_dir)
    (photos / 'broken.png').write_bytes(b'not a png')
    assert infer.main(args + ['--output', str(tmp_path / 'out')]) == 1
    captured = capsys.readouterr()
    assert 'broken.png' in captured.err and '1 input(s) could not be read' in captured.out
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == ['birdx2_x2.png', 'womanx2_x2.png']
