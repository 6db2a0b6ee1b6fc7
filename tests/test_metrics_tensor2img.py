"""tensor2img: clamp, x255 in float32, round half to even, HWC RGB uint8."""
import numpy as np
import pytest
import torch

from ckdsr.metrics import tensor2img


def _float32_tie(target):
    """A float32 x with float32(x) * float32(255) == target exactly (target = k + 0.5)."""
    x = np.float32(target / 255.0)
    for _ in range(64):
        p = x * np.float32(255)
        if p == target:
            return x
        x = np.nextafter(x, np.float32(np.inf if p < target else -np.inf), dtype=np.float32)
    raise AssertionError(f'no float32 tie found for {target}: the rounding test would check nothing')


def test_layout_clamp_and_channels():
    t = torch.zeros(1, 3, 2, 4)
    t[0, 0] = 1.0          # R
    t[0, 1] = -0.3         # G, clamped to 0
    t[0, 2] = 2.0          # B, clamped to 1
    img = tensor2img(t)
    assert img.dtype == np.uint8 and img.shape == (2, 4, 3)
    assert (img[..., 0] == 255).all() and (img[..., 1] == 0).all() and (img[..., 2] == 255).all()


def test_round_half_to_even():
    # 0.5 * 255 = 127.5 exactly -> 128 (even); ties found at 2.5 -> 2 and 3.5 -> 4,
    # where rounding half away from zero would give 3 and 4.
    vals = [0.5, _float32_tie(2.5), _float32_tie(3.5), _float32_tie(200.5)]
    t = torch.tensor(np.array(vals, dtype=np.float32)).view(1, 1, 4)
    assert tensor2img(t)[0, :, 0].tolist() == [128, 2, 4, 200]


def test_matches_basicsr_expression_on_random_values():
    torch.manual_seed(0)
    t = torch.rand(3, 7, 5) * 1.2 - 0.1
    ref = (np.clip(t.numpy(), 0, 1).transpose(1, 2, 0) * 255.0).round().astype(np.uint8)
    assert np.array_equal(tensor2img(t), ref)


def test_rejects_batches():
    with pytest.raises(ValueError, match='batch'):
        tensor2img(torch.zeros(2, 3, 4, 4))
