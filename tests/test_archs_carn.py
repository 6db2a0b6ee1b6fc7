"""CARN-M: parameter count of the release, multi-scale heads, and the released weights on Set5 x4
against the published protocol (PSNR on Y, crop 4, scikit-image as the oracle)."""
import numpy as np
import pytest
import torch

from ckdsr.archs.carn import CARN_M
from ckdsr.archs.checkpoint_layouts import load_pretrained


def test_param_count_equals_the_release():
    net = CARN_M()
    assert sum(p.numel() for p in net.parameters()) == 414_811
    # the two mean-shift 1x1 convs (24 values) are frozen, as in the release
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == 414_811 - 24


def test_multi_scale_heads_and_input_range():
    torch.manual_seed(0)
    net = CARN_M().eval()
    x = torch.rand(1, 3, 6, 5)
    with torch.no_grad():
        for scale in (2, 3, 4):
            assert net(x, upscale=scale).shape == (1, 3, 6 * scale, 5 * scale)
        # mean shift in [0, 1] units: sub_mean(x) = x - mean
        mean = torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1)
        torch.testing.assert_close(net.sub_mean(x), x - mean)


def test_single_scale_model_rejects_other_scales():
    net = CARN_M(upscale=2, multi_scale=False)
    assert not hasattr(net.upsample, 'up4')
    with pytest.raises(ValueError, match='x4'):
        net(torch.rand(1, 3, 4, 4), upscale=4)
    with pytest.raises(ValueError, match='upscale'):
        CARN_M(upscale=8)


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma of RGB in [0, 255], not rounded."""
    return 16.0 + (65.481 * img[..., 0] + 128.553 * img[..., 1] + 24.966 * img[..., 2]) / 255.0


def test_released_weights_reproduce_set5_x4(shared_dir, benchmark_dir):
    cv2 = pytest.importorskip('cv2')
    from skimage.metrics import peak_signal_noise_ratio

    net = CARN_M(upscale=4).eval()
    report = load_pretrained(net, str(shared_dir / 'weights' / 'carn_m.pth'))
    assert report.layout == 'carn_pytorch' and report.clean and report.loaded == 58
    scores = []
    for hr_path in sorted((benchmark_dir / 'Set5' / 'HR').glob('*.png')):
        lr = cv2.imread(str(benchmark_dir / 'Set5' / 'LR_bicubic' / 'X4' / f'{hr_path.stem}x4.png'))[..., ::-1]
        hr = cv2.imread(str(hr_path))[..., ::-1]
        hr = hr[:lr.shape[0] * 4, :lr.shape[1] * 4].astype(np.float64)
        with torch.no_grad():
            sr = net(torch.from_numpy(lr.copy()).permute(2, 0, 1)[None].float() / 255.0)
        sr = np.round(sr[0].permute(1, 2, 0).clamp(0, 1).numpy().astype(np.float64) * 255.0)
        y_sr, y_hr = rgb_to_y(sr)[4:-4, 4:-4], rgb_to_y(hr)[4:-4, 4:-4]
        scores.append(peak_signal_noise_ratio(y_hr, y_sr, data_range=255))
    assert len(scores) == 5
    assert abs(np.mean(scores) - 31.883) < 0.01
