"""Distillation components: each adds signal providers (and maybe hooks and state) to KDModel.

Importing a component module registers its ``distill.<key>`` section; list each one here.
"""
from ckdsr.models.distill import builtin  # noqa: F401
from ckdsr.models.distill import facd  # noqa: F401
from ckdsr.models.distill import pcl  # noqa: F401
from ckdsr.models.distill import history  # noqa: F401
from ckdsr.models.distill import lcr  # noqa: F401
from ckdsr.models.distill import teacher_embedding  # noqa: F401
from ckdsr.models.distill import init_student  # noqa: F401
from ckdsr.models.distill import gather  # noqa: F401
from ckdsr.models.distill import dukd  # noqa: F401
