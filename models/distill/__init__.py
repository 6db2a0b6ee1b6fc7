"""Distillation components: each adds signal providers (and maybe hooks and state) to KDModel.

Importing a component module registers its ``distill.<key>`` section; list each one here.
"""
from models.distill import builtin  # noqa: F401
