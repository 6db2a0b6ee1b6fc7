"""Distillation components: each adds signal providers (and maybe hooks and state) to KDModel."""
