"""Pure loss modules over tensors, registered in LOSS_REGISTRY. One explicit import per module."""
from losses import pixel  # noqa
from losses import fakd  # noqa
from losses import contrastive_ratio  # noqa
from losses import facd  # noqa
from losses import infonce  # noqa
from losses import pcl_discriminator_loss  # noqa
from losses import dmm  # noqa
from losses import lcr  # noqa
