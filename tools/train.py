"""Train a model from an option file.

    python tools/train.py -opt options/dckd_rcan_x4.yml [--set train.total_iter=1000] [--auto_resume]
    torchrun --nproc_per_node=4 tools/train.py -opt options/dckd_rcan_x4.yml --launcher pytorch
    srun --ntasks=8 --gpus-per-task=1 python tools/train.py -opt options/dckd_rcan_x4.yml --launcher slurm

Exit status: 0 done; 2 an ``error:`` line (bad options, unreadable states, a full disk, NaN stop...);
130 / 143 stopped by SIGINT / SIGTERM after saving a training state (continue with --auto_resume).
"""
import argparse
import os
import sys

if __package__ in (None, ''):  # run as a script (python tools/x.py): the repository root on sys.path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ckdsr.utils.option_spec import OptionError  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Train a ckdsr model from a YAML option file.')
    p.add_argument('-opt', '--opt', required=True, help='path to the option YAML file')
    p.add_argument('--set', nargs='+', default=[], metavar='KEY.PATH=VALUE',
                   help='override options; values are parsed as YAML (e.g. train.total_iter=1000)')
    p.add_argument('--force_yml', nargs='+', default=[], metavar='KEY:PATH=VALUE',
                   help="BasicSR-style overrides with ':' separators")
    p.add_argument('--auto_resume', action='store_true', help='resume from the newest complete training state')
    p.add_argument('--dry-run', '--dry_run', action='store_true',
                   help='validate, list missing files and where to get them, print the networks; train nothing')
    p.add_argument('--debug', action='store_true', help='full tracebacks instead of one error: line')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
                   help="'pytorch' when started by torchrun, 'slurm' when started by srun (DDP)")
    p.add_argument('--local_rank', '--local-rank', type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from ckdsr.utils.options import load_options
    from ckdsr.utils.cli_errors import OneLineErrors
    errors = OneLineErrors(args.opt, args.set, args.force_yml, debug=args.debug)  # error: lines, exit 2
    with errors:
        if args.dry_run:
            from ckdsr.engine.dry_run import dry_run
            return dry_run(args.opt, args.set, args.force_yml)
        opt = errors.tree = load_options(args.opt, sets=args.set, force_yml=args.force_yml)
    if errors.exit_code:
        return errors.exit_code
    from ckdsr.utils.dist import destroy, init_dist
    if args.launcher != 'none':
        try:
            init_dist(args.launcher, backend=(opt.get('dist_params') or {}).get('backend'))
        except (RuntimeError, ValueError) as err:
            if args.debug:
                raise
            print(f'error: --launcher {args.launcher}: {err}', file=sys.stderr)
            return 2
    from ckdsr.engine.graceful_stop import stop_exit_code
    from ckdsr.engine.trainer import Trainer, TrainingError
    try:
        result = Trainer(opt, auto_resume=args.auto_resume).run()
    except TrainingError as err:  # run-time failures (full disk, NaN stop, unreadable states...)
        if args.debug:
            raise
        if not errors.handle(err):  # those naming an option key get its source (file or --set)
            print(f'error: {err}', file=sys.stderr)
        return 2
    except Exception as err:
        if not errors.handle(err):  # names an option key (build-time checks): one error: line
            raise
        return 2
    except KeyboardInterrupt:
        print('error: interrupted; nothing more was saved (the newest complete training state is kept: '
              'continue with --auto_resume)', file=sys.stderr)
        return 130
    finally:
        if args.launcher != 'none':
            destroy()
    return stop_exit_code(result['stopped']) if result['stopped'] else 0


if __name__ == '__main__':
    sys.exit(main())
