"""Data layer: image I/O, MATLAB-exact bicubic, storage backends, transforms, datasets, loaders."""
from data import image_io  # noqa
from data import matlab_imresize  # noqa
from data import file_client  # noqa
from data import transforms  # noqa
from data import sampler  # noqa
from data import loader  # noqa
from data import paired_dataset  # noqa
from data import benchmark_dataset  # noqa
from data import degradations  # noqa
from data import pcl_samples  # noqa
from data import restoration_dataset  # noqa
