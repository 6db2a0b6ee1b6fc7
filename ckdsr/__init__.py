"""ckdsr: contrastive knowledge distillation for compact single-image super-resolution.

Everything is imported through this namespace: ``from ckdsr.archs import RCAN``,
``from ckdsr.models import build_model``. Installed (``pip install .``), the subpackages live in
this folder. In a source checkout they are the top-level folders beside it (``archs/``,
``models/``, ...), which the checkout's layout fixes; this module then adds the checkout's root to
the package search path, so the same ``ckdsr.*`` imports work in both.
"""
import os as _os

__version__ = '0.1.0'

_HERE = _os.path.dirname(_os.path.abspath(__file__))
_CHECKOUT = _os.path.dirname(_HERE)
if (not _os.path.isdir(_os.path.join(_HERE, 'utils'))
        and _os.path.isfile(_os.path.join(_CHECKOUT, 'utils', '__init__.py'))):
    __path__.append(_CHECKOUT)  # noqa: F821  (a package's own __path__)
