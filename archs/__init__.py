"""Networks, registered in ``utils.registry.ARCH_REGISTRY`` on import (one line per module)."""
from archs import edsr  # noqa: F401
from archs import slimmable_edsr  # noqa: F401
from archs import rcan  # noqa: F401
from archs import swinir  # noqa: F401
from archs import carn  # noqa: F401
from archs import slimmable_rcan  # noqa: F401
from archs import slimmable_carn  # noqa: F401
from archs import haar  # noqa: F401
from archs import vgg  # noqa: F401
from archs import vqgan  # noqa: F401
from archs import pcl_discriminator  # noqa: F401
from archs import facd_regressor  # noqa: F401
from archs import nafnet  # noqa: F401
from archs import restormer  # noqa: F401
