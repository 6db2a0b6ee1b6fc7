"""Every method's training step under bf16 autocast and under channels_last, on the CPU.

Each method's real option file (benchmarks/lib/methods.py picks it) with every network shrunk
(``tiny_tree``: same loss terms, taps, helpers and settings), stand-in weights and a tiny synthetic
batch (LR patch >= 16 HR px, as tests/test_option_files.py: VGG relu5_1 and the VQGAN's f16 encoder
need it). Per method, three models built from the same seed take one step on the same batch:

* fp32 NCHW, the reference;
* ``train.channels_last`` (allowed on the CPU here through ``ckdsr.models.base_model.CHANNELS_LAST_DEVICES``):
  every conv net of the model (student, teacher, helpers) must hold channels_last weights, and the
  first-step losses equal the reference's up to float reordering (``CL_RTOL``);
* ``train.amp: bf16``: the step runs, the losses are finite and near the reference's (bf16 keeps 8
  mantissa bits), the student's weights and gradients stay fp32, and the weights change.

``torch.compile`` of a student is behind the slow marker.
"""
import pytest
import torch
from torch import nn

from benchmarks.lib import methods as M

BATCH = 2
# channels_last reorders float sums. CSD's l_con (a ratio of VGG feature distances between two nearly equal
# outputs, VGG fed [0, 255]) is the most sensitive term: 2.6e-4 relative here, and switching the conv
# backend alone (torch.backends.mkldnn off, still NCHW) moved it by 9.5e-4 (measured). A memory-format bug
# (a wrong permutation) changes the losses by O(1).
CL_RTOL = 2e-3
# Found by this test: under bf16 autocast CSD's contrastive term was far off (first step 79.5 against fp32's
# 21.44 on the tiny CSD set-up) while the VGG embedding ran in bf16; embeddings now run in fp32 (checked
# on its own below, with the tighter tolerance a contrastive ratio needs).
BF16_KNOWN_OFF = set()


def lr_patch(scale: int) -> int:
    return max(6, -(-16 // scale))


@pytest.fixture(scope='module')
def tiny_trees():
    cache = {}

    def get(method):
        if method not in cache:
            tree = M.load_option_file(M.method_option(method))
            small, _ = M.tiny_tree(tree, lr_patch(tree.get('scale', 4)))
            cache[method] = small
        return cache[method]
    return get


def build_and_step(tree, tmp_path, tag, amp=None, channels_last=False, compile=False, steps=1):
    device = torch.device('cpu')
    t = M.prepare_tree(tree, device, tmp_path / tag, amp=amp, channels_last=channels_last, compile=compile)
    torch.manual_seed(0)
    model, _ = M.build_from_tree(t, device, f'{tag} (tiny)')
    scale = t.get('scale', 4)
    batch = M.synthetic_batch(BATCH, lr_patch(scale), scale, seed=1)
    before = {k: v.detach().clone() for k, v in model.net_g.state_dict().items()}
    losses = []
    for it in range(1, steps + 1):
        torch.manual_seed(it)
        losses.append({k: float(v) for k, v in model.train_step(batch, it).items()})
    return model, losses, before


def conv_nets(model):
    """Every conv layer the model holds, found through its attributes (nets, components, loss terms,
    dicts and lists of them) up to a few levels deep."""
    seen, convs = set(), {}

    def walk(obj, depth):
        if id(obj) in seen or depth > 5 or isinstance(obj, (torch.Tensor, str, bytes, int, float)):
            return
        seen.add(id(obj))
        if isinstance(obj, nn.Module):
            convs.update({id(m): m for m in obj.modules() if isinstance(m, nn.Conv2d)})
            return
        if isinstance(obj, dict):
            items = obj.values()
        elif isinstance(obj, (list, tuple)):
            items = obj
        elif hasattr(obj, '__dict__') and not isinstance(obj, torch.optim.Optimizer):
            items = vars(obj).values()
        else:
            return
        for v in items:
            walk(v, depth + 1)
    walk(model, 0)
    return list(convs.values())


@pytest.fixture(autouse=True)
def channels_last_on_cpu(monkeypatch):
    import ckdsr.models.base_model as bm
    monkeypatch.setattr(bm, 'CHANNELS_LAST_DEVICES', ('cuda', 'cpu'))


@pytest.mark.parametrize('method', M.available_methods())
def test_step_bf16_and_channels_last(method, tiny_trees, tmp_path):
    tree = tiny_trees(method)
    _, (ref,), _ = build_and_step(tree, tmp_path, 'fp32')

    cl_model, (cl,), _ = build_and_step(tree, tmp_path, 'cl', channels_last=True)
    assert cl_model.channels_last
    convs = [m for m in conv_nets(cl_model) if m.weight.shape[-1] > 1 or m.weight.shape[-2] > 1]
    assert convs, 'no conv layers found'
    not_cl = [m for m in convs if not m.weight.is_contiguous(memory_format=torch.channels_last)]
    assert not not_cl, f'{len(not_cl)} of {len(convs)} convs hold NCHW weights under channels_last'
    assert list(cl) == list(ref)
    for k in ref:
        assert cl[k] == pytest.approx(ref[k], rel=CL_RTOL, abs=1e-6), (k, cl[k], ref[k])

    bf_model, (bf,), before = build_and_step(tree, tmp_path, 'bf16', amp='bf16')
    assert list(bf) == list(ref)
    for k in ref:
        assert bf[k] == bf[k] and abs(bf[k]) != float('inf'), (k, bf[k])
        if (method, k) not in BF16_KNOWN_OFF:
            assert bf[k] == pytest.approx(ref[k], rel=0.1, abs=2e-3), (k, bf[k], ref[k])
    params = dict(bf_model.net_g.named_parameters())
    assert all(p.dtype == torch.float32 for p in params.values())
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in params.values())
    moved = [k for k, v in bf_model.net_g.state_dict().items() if k in before and not torch.equal(v, before[k])]
    assert moved, 'the bf16 step changed no weight'


def test_csd_contrastive_term_under_bf16(tiny_trees, tmp_path):
    tree = tiny_trees('csd')
    _, (ref,), _ = build_and_step(tree, tmp_path, 'fp32')
    _, (bf,), _ = build_and_step(tree, tmp_path, 'bf16', amp='bf16')
    assert bf['l_con'] == pytest.approx(ref['l_con'], rel=0.1)


@pytest.mark.slow
def test_compiled_student_matches_eager(tiny_trees, tmp_path):
    """train.compile (torch.compile of the student) gives the eager step's losses, two steps."""
    tree = tiny_trees('logits')
    _, eager, _ = build_and_step(tree, tmp_path, 'eager', steps=2)
    model, compiled, _ = build_and_step(tree, tmp_path, 'compiled', compile=True, steps=2)
    assert hasattr(model.net_g, '_orig_mod')
    for a, b in zip(eager, compiled):
        assert list(a) == list(b)
        for k in a:
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-6), (k, a[k], b[k])
