"""Data layer: image I/O, MATLAB-exact bicubic, storage backends, transforms, datasets, loaders."""
from ckdsr.data import image_io  # noqa
from ckdsr.data import matlab_imresize  # noqa
from ckdsr.data import file_client  # noqa
from ckdsr.data import transforms  # noqa
from ckdsr.data import sampler  # noqa
from ckdsr.data import loader  # noqa
from ckdsr.data import paired_dataset  # noqa
from ckdsr.data import benchmark_dataset  # noqa
from ckdsr.data import degradations  # noqa
from ckdsr.data import pcl_samples  # noqa
from ckdsr.data import restoration_dataset  # noqa
