"""ckdsr: contrastive knowledge distillation for compact single-image super-resolution."""
from setuptools import setup

PACKAGES = ['archs', 'losses', 'models', 'models.distill', 'data', 'metrics', 'utils', 'engine', 'ckdsr_demo']

setup(
    name='ckdsr',
    version='0.1.0',
    description='Train compact SR networks by contrastive knowledge distillation (CSD, FACD, PCL-SISR, DCKD)',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    python_requires='>=3.9',
    packages=PACKAGES,
    install_requires=[
        'torch>=2.1',  # bring your own CUDA build; not pinned
        'torchvision',
        'opencv-python',
        'pyyaml',
        'lmdb',
        'numpy',
        'scipy',
        'tensorboard',
        'tqdm',
    ],
    extras_require={
        # scikit-image: independent PSNR/SSIM oracle in tests and the demo's bundled photos;
        # matplotlib: the demo's curves and crops pictures; pytest-xdist: two single-thread test
        # workers (make test), which keep the suite fast on a 2-core machine
        'dev': ['pytest', 'pytest-xdist', 'scikit-image', 'matplotlib'],
    },
)
