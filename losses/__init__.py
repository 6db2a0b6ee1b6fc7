"""Pure loss modules over tensors, registered in LOSS_REGISTRY. One explicit import per module."""
from ckdsr.losses import pixel  # noqa
from ckdsr.losses import fakd  # noqa
from ckdsr.losses import contrastive_ratio  # noqa
from ckdsr.losses import facd  # noqa
from ckdsr.losses import infonce  # noqa
from ckdsr.losses import pcl_discriminator_loss  # noqa
from ckdsr.losses import dmm  # noqa
from ckdsr.losses import lcr  # noqa
