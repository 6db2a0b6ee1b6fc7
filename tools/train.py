"""Train a model from an option file.

    python tools/train.py -opt options/dckd_rcan_x4.yml [--set train.total_iter=1000] [--auto_resume]
    torchrun --nproc_per_node=4 tools/train.py -opt options/dckd_rcan_x4.yml --launcher pytorch
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.option_spec import OptionError  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Train a ckdsr model from a YAML option file.')
    p.add_argument('-opt', '--opt', required=True, help='path to the option YAML file')
    p.add_argument('--set', nargs='+', default=[], metavar='KEY.PATH=VALUE',
                   help='override options; values are parsed as YAML (e.g. train.total_iter=1000)')
    p.add_argument('--force_yml', nargs='+', default=[], metavar='KEY:PATH=VALUE',
                   help="BasicSR-style overrides with ':' separators")
    p.add_argument('--auto_resume', action='store_true', help='resume from the newest complete training state')
    p.add_argument('--launcher', choices=['none', 'pytorch'], default='none',
                   help="'pytorch' when started by torchrun (DDP)")
    p.add_argument('--local_rank', '--local-rank', type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from utils.options import load_options
    try:
        opt = load_options(args.opt, sets=args.set, force_yml=args.force_yml)
    except OptionError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    from utils.dist import destroy, init_dist
    if args.launcher == 'pytorch':
        init_dist('pytorch', backend=(opt.get('dist_params') or {}).get('backend'))
    try:
        from engine.trainer import Trainer
        Trainer(opt, auto_resume=args.auto_resume).run()
    finally:
        if args.launcher == 'pytorch':
            destroy()
    return 0


if __name__ == '__main__':
    sys.exit(main())
