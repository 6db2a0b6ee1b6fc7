"""The whole ckdsr pipeline on a CPU, no download: ``make demo`` runs this.

    python tools/demo.py [--out demo_out] [--tiny] [--pipeline options/demo/pipeline.yaml]

Builds a training LMDB and a held-out benchmark folder from the photos scikit-image ships, trains a
teacher, distills a smaller student with DCKD (offline teacher embedding) and trains the same student
from scratch and with logits KD as controls, scores everything and bicubic on the held-out photos,
then prints a table and writes ``<out>/report.md``, ``<out>/curves.png`` and ``<out>/crops.png``.
The default run took 6 minutes on a shared 2-core CPU (1 torch thread; OMP_NUM_THREADS sets it);
``--tiny`` runs the same pipeline with tiny networks and a few steps in well under a minute (a smoke
test: its numbers mean nothing).
What runs, and all sizes, are in ``options/demo/``.
"""
try:
    import _bootstrap  # noqa: F401  (run as a script: tools/ is sys.path[0])
except ImportError:  # imported as tools.demo with the repository root already on sys.path
    pass

import argparse
import sys
from pathlib import Path
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    from ckdsr.demo.config import DEFAULT_PIPELINE, PipelineError
    p = argparse.ArgumentParser(description='Run the ckdsr pipeline end to end on bundled photos (CPU, no download).')
    p.add_argument('--out', default='demo_out', help='output folder (default demo_out)')
    p.add_argument('--tiny', action='store_true', help='tiny networks and a few steps: the pipeline in seconds')
    p.add_argument('--pipeline', default=str(DEFAULT_PIPELINE),
                   help='pipeline file (default options/demo/pipeline.yaml)')
    p.add_argument('--no-progress', action='store_true', help='no progress bars')
    args = p.parse_args(argv)
    from ckdsr.demo.pipeline import run_demo
    from ckdsr.demo.runs import DemoError
    from ckdsr.utils.option_spec import OptionError
    try:
        run_demo(Path(args.out), tiny=args.tiny, pipeline=Path(args.pipeline), progress=not args.no_progress)
    except (DemoError, PipelineError, OptionError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
