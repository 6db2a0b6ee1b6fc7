"""Put the repository root on ``sys.path`` so ``python tools/<script>.py`` finds the packages.

Scripts start with ``import _bootstrap  # noqa: F401`` (``tools/`` is ``sys.path[0]`` when a script
in it runs); nothing else belongs here.
"""
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)
