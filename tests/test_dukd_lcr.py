"""DUKD label consistency: all 16 op combinations undone exactly (paper), the released code's
forward-order "inverse" wrong exactly when the transpose meets one flip (official)."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from ckdsr.losses.lcr import OPS, IDENTITY, apply_transform, undo_transform, undo_transforms

COMBOS = [combo for r in range(5) for combo in itertools.combinations(OPS, r)]  # canonical order kept
NAMES = ['+'.join(c) or IDENTITY for c in COMBOS]
#: transpose with exactly one flip: the forward-order re-application is a 180-degree rotation
WRONG = {n for n, c in zip(NAMES, COMBOS) if 'transpose' in c and ('vflip' in c) != ('hflip' in c)}


def dyadic(*shape, seed=0):
    """Values k/256: 1 - (1 - x) == x exactly in float32."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 257, shape, generator=g).float() / 256


def up2(x):  # an "SR network" that commutes exactly with every op (it moves values, no arithmetic)
    return F.interpolate(x, scale_factor=2, mode='nearest')


def test_there_are_16_combinations_and_4_wrong_ones():
    assert len(NAMES) == 16 == len(set(NAMES))
    assert WRONG == {'vflip+transpose', 'hflip+transpose', 'invert+vflip+transpose', 'invert+hflip+transpose'}


@pytest.mark.parametrize('name', NAMES)
def test_reverse_order_undoes_every_combination_exactly(name):
    x = dyadic(2, 3, 6, 6)
    assert torch.equal(undo_transform(apply_transform(x, name), name), x)
    # on a network output: g^-1(S(g(x))) == S(x) for an S that commutes with the ops (DUKD's student side)
    assert torch.equal(undo_transform(up2(apply_transform(x, name)), name), up2(x))


@pytest.mark.parametrize('name', NAMES)
def test_forward_order_is_wrong_exactly_where_expected(name):
    x = dyadic(2, 3, 6, 6, seed=1)
    back = undo_transform(apply_transform(x, name), name, order='forward')
    if name in WRONG:
        assert torch.equal(back, x.flip(-2).flip(-1))  # rotated by 180 degrees, not undone
        assert not torch.equal(back, x)
    else:
        assert torch.equal(back, x)


def test_per_image_forward_order_matches_per_name():
    x = dyadic(16, 3, 4, 4, seed=2)
    y = torch.stack([apply_transform(x[i:i + 1], n)[0] for i, n in enumerate(NAMES)])
    for order in ('reverse', 'forward'):
        got = undo_transforms(y, NAMES, order=order)
        want = torch.stack([undo_transform(y[i:i + 1], n, order=order)[0] for i, n in enumerate(NAMES)])
        assert torch.equal(got, want)
    bad = [i for i, n in enumerate(NAMES) if not torch.equal(undo_transforms(y, NAMES, order='forward')[i], x[i])]
    assert sorted(NAMES[i] for i in bad) == sorted(WRONG)


def test_unknown_order_is_a_clear_error():
    with pytest.raises(ValueError, match='undo order'):
        undo_transform(torch.zeros(1, 1, 2, 2), 'hflip', order='backward')
