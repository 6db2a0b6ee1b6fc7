"""What DCKD-offline's terms reward along a global colour shift: the gradient w.r.t. a per-channel offset.

    python benchmarks/kd_study/colour_probe.py --student <net_g_N.pth> [--centre] [--batches 8]

For training-like batches (aligned 96 px HR / 24 px MATLAB-LR crops of the validation photos) and a
student, adds a per-channel offset ``delta`` (3 values, grey levels / 255) to the student's output and
reports, at ``delta = 0``, d/d(delta) in units of "per grey level" of

- ``dcl``: DCKD's contrastive ratio (taps c1, c2, c3 of CARN-M, weights 0.25, 0.5, 1; positive: the
  teacher's output; negatives: the history model -- here the student itself, as right after an update
  -- on the clean LR and 4 noisy copies, sigma U[1, 30]/255, grey with p 0.5),
  and its numerator (``dcl_num``: distance to the teacher) and denominator (``dcl_den``: summed distance
  to the negatives) on their own,
- ``dmm``: DMM's cross-entropy to the teacher's code distribution (``--codebook``),
- ``l1``: L1(SR, HR) + L1(SR, T) (the pixel terms: they hold the mean colour where their gradient is 0),

and the offset by which 0.1 x the contrastive gradient moves the point where the pixel terms' gradient
is 0 (a linear estimate: -0.1 g_dcl / (dg_l1 / d delta), the slope by finite differences at +-2 levels). Also the
embedding's sensitivity to a mean shift: mean |emb(x + 1/255) - emb(x)| over mean |emb(x) - emb(neg)|.
``--centre`` probes the colour-centred embedding (distill.teacher_embedding.centre_colour).
"""
import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.kd_study.run import WORK, shared  # noqa: E402


def batches(n_batches: int, batch: int, gen: torch.Generator):
    from ckdsr.data.bicubic_lr import list_images
    from ckdsr.data.image_io import read_image
    hr_imgs, lr_imgs = [], []
    for p in list_images(WORK / 'val' / 'HR'):
        hr_imgs.append(read_image(p))
        lr_imgs.append(read_image(WORK / 'val' / 'LR_bicubic' / 'X4' / f'{p.stem}x4.png'))
    for _ in range(n_batches):
        hrs, lrs = [], []
        for _ in range(batch):
            i = int(torch.randint(len(hr_imgs), (1,), generator=gen))
            lr = lr_imgs[i]
            y = int(torch.randint(lr.shape[0] - 24 + 1, (1,), generator=gen))
            x = int(torch.randint(lr.shape[1] - 24 + 1, (1,), generator=gen))
            lrs.append(lr[y:y + 24, x:x + 24])
            hrs.append(hr_imgs[i][4 * y:4 * y + 96, 4 * x:4 * x + 96])
        to_t = lambda a: torch.from_numpy(np.stack(a).astype(np.float32) / 255).permute(0, 3, 1, 2)  # noqa: E731
        yield to_t(lrs), to_t(hrs)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--student', help='EDSR 8x32 weights (default: a random init)')
    p.add_argument('--num-feat', type=int, default=32)
    p.add_argument('--num-block', type=int, default=8)
    p.add_argument('--centre', action='store_true', help='probe the colour-centred embedding')
    p.add_argument('--codebook', help='DMM codebook (tools/fit_codebook.py) for the dmm row')
    p.add_argument('--scan', nargs='*', type=float, default=[-30, -10, -3, 0, 3, 10, 30],
                   help='offsets (grey levels) at which the contrastive ratio is printed, per channel')
    p.add_argument('--batches', type=int, default=8)
    p.add_argument('--batch', type=int, default=16)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from ckdsr.data.degradations import Degrader
    from ckdsr.losses.contrastive_ratio import ContrastiveRatioLoss, l1_to_negatives
    from ckdsr.models.distill.teacher_embedding import TeacherFeatures
    from ckdsr.models.network_io import build_network, load_weights
    teacher = build_network({'type': 'CARN_M'}, 4)
    load_weights(teacher, str(shared() / 'weights' / 'carn_m.pth'), 'auto', True, 'carn_m.pth')
    teacher.eval().requires_grad_(False)
    student = build_network({'type': 'EDSR', 'num_feat': args.num_feat, 'num_block': args.num_block}, 4)
    if args.student:
        load_weights(student, args.student, 'auto', True, args.student)
    student.eval().requires_grad_(False)
    from ckdsr.losses.dmm import DMMLoss
    from ckdsr.models.distill.teacher_embedding import load_codebook
    book = load_codebook(args.codebook)[0] if args.codebook else None
    emb = TeacherFeatures(teacher, ['c1', 'c2', 'c3'], 4, z_tap='c3', with_z=True, centre_colour=args.centre)
    dcl = ContrastiveRatioLoss([0.25, 0.5, 1.0])
    degrader = Degrader(noise_prob=1.0, noise_range=[1, 30], gray_noise_prob=0.5, blur_prob=0.0, resize_prob=0.0)
    gen = torch.Generator().manual_seed(0)
    rows = {k: [] for k in ('dcl', 'dcl_num', 'dcl_den', 'dmm', 'l1', 'l1_slope', 'sens')}
    scan = {c: [] for c in range(3)}
    for lq, gt in batches(args.batches, args.batch, gen):
        with torch.no_grad():
            sr, t_sr = student(lq), teacher(lq)
            x = torch.cat([lq.unsqueeze(1), degrader(lq, 4, gen)], 1)
            negs = student(x.flatten(0, 1)).unflatten(0, x.shape[:2])
            e_p, z_p = emb(t_sr)
            e_n = [f.unflatten(0, negs.shape[:2]) for f in emb(negs.flatten(0, 1))[0]]
        delta = torch.zeros(1, 3, 1, 1, requires_grad=True)
        e_a, z_a = emb(sr + delta)

        def grad(v):
            return torch.autograd.grad(v, delta, retain_graph=True)[0].flatten() / 255  # per grey level

        rows['dcl'].append(grad(dcl(e_a, e_p, e_n)))
        rows['dcl_num'].append(grad(sum(w * (a - q).abs().mean() for w, a, q in zip(dcl.weights, e_a, e_p))))
        rows['dmm'].append(grad(DMMLoss()(z_a, z_p, book)) if book is not None else torch.zeros(3))
        rows['dcl_den'].append(grad(sum(w * l1_to_negatives(a, n) for w, a, n in zip(dcl.weights, e_a, e_n))))
        g1 = [torch.autograd.grad((sr + d - gt).abs().mean() + (sr + d - t_sr).abs().mean(), d)[0].flatten() / 255
              for d in (torch.full((1, 3, 1, 1), s / 255, requires_grad=True) for s in (-2.0, 2.0))]
        rows['l1_slope'].append((g1[1] - g1[0]) / 4)  # d(grad)/d(grey level)
        d0 = torch.zeros(1, 3, 1, 1, requires_grad=True)
        rows['l1'].append(torch.autograd.grad((sr + d0 - gt).abs().mean() + (sr + d0 - t_sr).abs().mean(),
                                              d0)[0].flatten() / 255)
        with torch.no_grad():
            for c in range(3):
                vals = []
                for t in args.scan:
                    d = torch.zeros(1, 3, 1, 1)
                    d[0, c] = t / 255
                    vals.append(float(dcl(emb(sr + d)[0], e_p, e_n)))
                scan[c].append(vals)
            shifted = emb(sr + 1 / 255)[0]
            base = emb(sr)[0]
            rows['sens'].append(torch.tensor([float((s - b).abs().mean() / l1_to_negatives(b, n) * n.shape[1])
                                              for s, b, n in zip(shifted, base, e_n)]))
    mean = {k: torch.stack(v).mean(0) for k, v in rows.items()}
    std = {k: torch.stack(v).std(0) for k, v in rows.items()}
    print(f"student: {args.student or 'random init'}; embedding: {'colour-centred' if args.centre else 'plain'}; "
          f'{args.batches} batches of {args.batch}')
    for k in ('dcl', 'dcl_num', 'dcl_den', 'dmm', 'l1', 'l1_slope'):
        print(f'{k:9s} d/d(grey level) R,G,B: ' + ', '.join(f'{m:+.3e} (sd {s:.1e})' for m, s in zip(mean[k], std[k])))
    shift = -0.1 * mean['dcl'] / mean['l1_slope']
    print('offset by which 0.001 x dmm moves the balance point (grey levels) R,G,B: '
          + ', '.join(f'{v:+.2f}' for v in -0.001 * mean['dmm'] / mean['l1_slope']))
    print('offset by which 0.1 x dcl moves the pixel terms\' balance point (grey levels, linear estimate) R,G,B: '
          + ', '.join(f'{v:+.2f}' for v in shift))
    print('contrastive ratio (weighted sum, unscaled) when one channel of the student output is offset by '
          f'{args.scan} grey levels:')
    for c in range(3):
        print(f"  {'RGB'[c]}: " + ', '.join(f'{v:.4f}' for v in torch.tensor(scan[c]).mean(0).tolist()))
    k = negs.shape[1]
    print(f'K = {k} negatives: the ratio of an anchor far from every image tends to sum(w) / K = '
          f'{sum(dcl.weights) / k:.4f}')
    print('embedding sensitivity (|emb(x + 1 grey level) - emb(x)| / |emb(x) - emb(negative)|) per tap c1,c2,c3: '
          + ', '.join(f'{v:.3f}' for v in mean['sens']))


if __name__ == '__main__':
    main()
