"""Models: own the trained networks, optimizers, EMA and resume state."""
from models import kd_model  # noqa: F401
from models import csd_model  # noqa: F401
from models import sr_model  # noqa: F401
from models.base_model import BaseModel  # noqa: F401
from utils.registry import MODEL_REGISTRY


def build_model(opt, is_train: bool = True, rank: int = 0, world_size: int = 1, device=None):
    """Build ``opt['model_type']`` from the model registry."""
    cls = MODEL_REGISTRY.get(opt.get('model_type', 'SRModel'))
    return cls(opt, is_train=is_train, rank=rank, world_size=world_size, device=device)
