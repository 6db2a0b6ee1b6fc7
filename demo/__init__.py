"""``make demo``: the whole ckdsr pipeline on a laptop CPU, from bundled photos to a report.

Sits beside ``tools/`` (it drives ``tools/train.py`` and ``tools/fit_codebook.py``), so it is not one
of the installed packages: ``tools/demo.py`` and the tests import it from the repository root. (Not
called ``demo``: with ``tools/`` first on ``sys.path``, ``import demo`` would find ``tools/demo.py``.)
Modules: ``pipeline`` (the stages), ``config`` (``options/demo/pipeline.yaml``), ``photos`` (the
data), ``runs`` (tool calls), ``logs`` (``train.log`` parsing), ``scoring`` (evaluation, params and
MACs), ``figures`` and ``report`` (the outputs).
"""
