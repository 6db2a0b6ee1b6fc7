"""Models: own the trained networks, optimizers, EMA and resume state."""
from ckdsr.models import kd_model  # noqa: F401
from ckdsr.models import csd_model  # noqa: F401
from ckdsr.models import sr_model  # noqa: F401
from ckdsr.models.base_model import BaseModel  # noqa: F401
from ckdsr.utils.registry import MODEL_REGISTRY


def build_model(opt, is_train: bool = True, rank: int = 0, world_size: int = 1, device=None, check: bool = True):
    """Build ``opt['model_type']`` from the model registry; ``check`` runs the structural checks of
    :mod:`ckdsr.models.build_checks` (one tiny forward per network, layer-weight counts) before any data
    is read, raising an OptionError that names the option key."""
    from ckdsr.models.build_checks import check_model
    cls = MODEL_REGISTRY.get(opt.get('model_type', 'SRModel'))
    model = cls(opt, is_train=is_train, rank=rank, world_size=world_size, device=device)
    if check:
        check_model(model, opt)
    return model
