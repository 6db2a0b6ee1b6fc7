"""Networks, registered in ``ckdsr.utils.registry.ARCH_REGISTRY`` on import (one line per module)."""
from ckdsr.archs import edsr  # noqa: F401
from ckdsr.archs import slimmable_edsr  # noqa: F401
from ckdsr.archs import rcan  # noqa: F401
from ckdsr.archs import swinir  # noqa: F401
from ckdsr.archs import carn  # noqa: F401
from ckdsr.archs import slimmable_rcan  # noqa: F401
from ckdsr.archs import slimmable_carn  # noqa: F401
from ckdsr.archs import haar  # noqa: F401
from ckdsr.archs import vgg  # noqa: F401
from ckdsr.archs import vqgan  # noqa: F401
from ckdsr.archs import pcl_discriminator  # noqa: F401
from ckdsr.archs import facd_regressor  # noqa: F401
from ckdsr.archs import nafnet  # noqa: F401
from ckdsr.archs import restormer  # noqa: F401
from ckdsr.archs import tapped_features  # noqa: F401

# the networks a user names most often, importable as ``from ckdsr.archs import RCAN``
from ckdsr.archs.carn import CARN_M  # noqa: E402,F401
from ckdsr.archs.edsr import EDSR  # noqa: E402,F401
from ckdsr.archs.nafnet import NAFNet  # noqa: E402,F401
from ckdsr.archs.rcan import RCAN  # noqa: E402,F401
from ckdsr.archs.restormer import Restormer  # noqa: E402,F401
from ckdsr.archs.slimmable_carn import SlimmableCARN_M  # noqa: E402,F401
from ckdsr.archs.slimmable_edsr import SlimmableEDSR  # noqa: E402,F401
from ckdsr.archs.slimmable_rcan import SlimmableRCAN  # noqa: E402,F401
from ckdsr.archs.swinir import SwinIR  # noqa: E402,F401
