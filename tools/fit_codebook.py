"""Fit a codebook on the frozen teacher's features, for DCKD's DMM term with the offline embedding.

    python tools/fit_codebook.py -opt options/dckd_rcan_x4_offline.yml --num-codes 1024 \
        --out experiments/codebooks/rcan_10x20_x4_body4_k1024.pth

Reads the option file's teacher (``network_t``, ``path.pretrain_network_t``), its training set
(``datasets.train``) and ``distill.teacher_embedding`` (taps, ``z_tap``, ``downscale``,
``normalize_z``). Each training patch (the HR side, embedded exactly as training embeds an SR image:
bicubic-downscaled by ``downscale``, then the teacher up to ``z_tap``) gives its z vectors; a random
subset of positions per patch is pooled and clustered by k-means (k-means++ seeding, then Lloyd
iterations; an empty cluster is re-seeded with the point farthest from its centre). The (K, D)
centres are written with the settings they were fitted under, which the run checks on loading.
Nothing is downloaded. ``codebook_path`` in the file may point at the output: it need not exist yet.
"""
import argparse
import os
import sys
import time
from typing import Optional, Tuple, Union

if __package__ in (None, ''):  # run as a script (python tools/x.py): the repository root on sys.path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402


# --------------------------------------------------------------------------- k-means
def nearest(x: torch.Tensor, centers: torch.Tensor, chunk: int = 65536) -> Tuple[torch.Tensor, torch.Tensor]:
    """Index of the nearest centre and the squared distance to it, for each row of ``x`` (N, D)."""
    c_sq = centers.pow(2).sum(1)
    idx, dist = [], []
    for part in x.split(chunk):
        d2 = (part.pow(2).sum(1, keepdim=True) - 2 * part @ centers.T + c_sq).clamp_min(0)
        d, i = d2.min(1)
        idx.append(i)
        dist.append(d)
    return torch.cat(idx), torch.cat(dist)


def kmeans_plus_plus(x: torch.Tensor, k: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii, 2007): each next centre is drawn with probability
    proportional to the squared distance to the nearest centre chosen so far."""
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=generator))
    centers = [x[first]]
    d2 = (x - x[first]).pow(2).sum(1)
    for _ in range(1, k):
        if float(d2.sum()) <= 0:  # fewer distinct points than k: any point will do
            nxt = int(torch.randint(n, (1,), generator=generator))
        else:
            nxt = int(torch.multinomial(d2.cpu().double(), 1, generator=generator))
        centers.append(x[nxt])
        d2 = torch.minimum(d2, (x - x[nxt]).pow(2).sum(1))
    return torch.stack(centers)


def kmeans(x: torch.Tensor, k: int, iters: int = 50, init: Union[str, torch.Tensor] = 'kmeans++',
           generator: Optional[torch.Generator] = None, tol: float = 1e-7):
    """Lloyd's k-means on the rows of ``x`` (N, D): ``(centres (k, D), assignment (N,), mean squared
    distance to the assigned centre)``. ``init``: 'kmeans++', 'random' (k distinct rows) or a (k, D)
    tensor. A cluster left empty is re-seeded with the point farthest from its current centre."""
    n = x.shape[0]
    if n < k:
        raise ValueError(f'k-means: {n} samples for {k} codes; use more batches or fewer codes')
    if isinstance(init, torch.Tensor):
        centers = init.to(x).clone()
    elif init == 'kmeans++':
        centers = kmeans_plus_plus(x, k, generator)
    elif init == 'random':
        centers = x[torch.randperm(n, generator=generator)[:k].to(x.device)].clone()
    else:
        raise ValueError(f"k-means: init must be 'kmeans++', 'random' or a tensor, got {init!r}")
    for _ in range(iters):
        assign, d2 = nearest(x, centers)
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros_like(centers).index_add_(0, assign, x)
        new = sums / counts.clamp_min(1).unsqueeze(1).to(x.dtype)
        empty = (counts == 0).nonzero().flatten()
        if len(empty):
            far = d2.topk(len(empty)).indices
            new[empty] = x[far]
        shift = (new - centers).abs().max()
        centers = new
        if shift <= tol and not len(empty):
            break
    assign, d2 = nearest(x, centers)
    return centers, assign, float(d2.mean())


# --------------------------------------------------------------------------- features
def collect_features(opt, device: torch.device, num_batches: int, per_image: int, max_samples: int,
                     seed: int) -> Tuple[torch.Tensor, dict]:
    """z vectors (M, D) of the teacher embedding over random training patches, and the settings."""
    from ckdsr.engine.data_setup import build_dataset
    from ckdsr.models.distill.teacher import Teacher
    from ckdsr.models.distill.teacher_embedding import build_teacher_features

    cfg = opt['distill']['teacher_embedding']
    teacher = Teacher(opt['network_t'], opt.get('path') or {}, opt['scale'], device)
    feats = build_teacher_features(teacher.net, cfg, opt['scale'], with_codebook=False)
    train_key = next(k for k in opt['datasets'] if k.startswith('train'))
    dcfg = opt['datasets'][train_key]
    dataset = build_dataset(train_key, dcfg, opt['scale'])
    g = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=dcfg.get('batch_size_per_gpu', 16), shuffle=True,
                                         num_workers=dcfg.get('num_worker_per_gpu', 0), generator=g)
    pool, total = [], 0
    done = 0
    while done < num_batches and total < max_samples:
        for batch in loader:
            with torch.no_grad():
                _, z = feats(batch['gt'].to(device))
            z = z.permute(0, 2, 3, 1).reshape(z.shape[0], -1, z.shape[1])  # (B, h*w, D)
            take = min(per_image, z.shape[1])
            for row in z:
                pick = torch.randperm(row.shape[0], generator=g)[:take].to(row.device)
                pool.append(row[pick].float())
                total += take
            done += 1
            if done >= num_batches or total >= max_samples:
                break
    x = torch.cat(pool)[:max_samples]
    meta = {'z_tap': feats.z_tap, 'normalize_z': feats.normalize_z, 'downscale': feats.downscale,
            'centre_colour': feats.centre_colour,
            'teacher': opt['network_t']['type'], 'teacher_weights': (opt.get('path') or {}).get('pretrain_network_t'),
            'batches': done}
    return x, meta


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description='Fit a k-means codebook on teacher features (offline DCKD DMM).')
    p.add_argument('-opt', '--opt', required=True, help='option file with network_t, datasets.train and '
                                                        'distill.teacher_embedding')
    p.add_argument('--num-codes', type=int, required=True, help='codebook size K (the VQGAN has 1024)')
    p.add_argument('--out', required=True, help='where to write the codebook (.pth)')
    p.add_argument('--num-batches', type=int, default=200, help='training batches to read (default 200)')
    p.add_argument('--positions-per-image', type=int, default=64, help='z vectors sampled per patch (default 64)')
    p.add_argument('--max-samples', type=int, default=200000, help='cap on the pooled vectors (default 200k)')
    p.add_argument('--iters', type=int, default=50, help='Lloyd iterations (default 50)')
    p.add_argument('--init', choices=['kmeans++', 'random'], default='kmeans++')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--set', nargs='+', default=[], metavar='KEY.PATH=VALUE', help='option overrides (YAML values)')
    args = p.parse_args(argv)

    from ckdsr.models.base_model import select_device
    from ckdsr.models.distill.teacher_embedding import save_codebook
    from ckdsr.utils.option_spec import OptionError
    from ckdsr.utils.options import apply_overrides, load_options, read_yaml

    try:
        raw = apply_overrides(read_yaml(args.opt), args.set)
        if not (raw.get('distill') or {}).get('teacher_embedding'):
            raise OptionError(['distill.teacher_embedding: missing; the codebook is fitted on the features it '
                               'names (see options/dckd_rcan_x4_offline.yml)'], source=args.opt)
        # the codebook is what we are making: its path need not exist yet
        opt = load_options(args.opt, sets=list(args.set) + ['distill.teacher_embedding.codebook_path=null'])
    except OptionError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    device = select_device(opt.get('num_gpu', 'auto'))
    t0 = time.time()
    x, meta = collect_features(opt, device, args.num_batches, args.positions_per_image, args.max_samples, args.seed)
    print(f'collected {x.shape[0]} teacher feature vectors of dimension {x.shape[1]} from {meta["batches"]} '
          f'batches at {meta["z_tap"]} ({time.time() - t0:.1f}s)')
    g = torch.Generator().manual_seed(args.seed)
    book, assign, inertia = kmeans(x, args.num_codes, args.iters, args.init, g)
    used = int(torch.bincount(assign, minlength=args.num_codes).gt(0).sum())
    d_all = (x[:4096].pow(2).sum(1, keepdim=True) - 2 * x[:4096] @ book.T + book.pow(2).sum(1)).clamp_min(0)
    meta.update({'num_codes': args.num_codes, 'num_samples': int(x.shape[0]), 'iters': args.iters,
                 'init': args.init, 'seed': args.seed, 'mean_sq_dist_nearest': inertia,
                 'mean_sq_dist_all': float(d_all.mean()), 'option_file': args.opt})
    save_codebook(args.out, book, meta)
    print(f'codebook {tuple(book.shape)} -> {args.out}: {used}/{args.num_codes} codes used; mean squared distance '
          f'to the nearest code {inertia:.4g}, to any code {meta["mean_sq_dist_all"]:.4g} '
          f'(DMM logits are -distance / DMMLoss.temperature)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
