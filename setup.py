"""ckdsr: contrastive knowledge distillation for compact single-image super-resolution.

The repository keeps its packages at the top level (``archs/``, ``models/``, ...); installed, they
are subpackages of ``ckdsr`` only (``ckdsr.archs``, ``ckdsr.models``), so ckdsr claims no generic
top-level module name (``utils``, ``data``, ``models``) on a user's import path.
"""
from setuptools import setup

SUBPACKAGES = ['archs', 'losses', 'models', 'models.distill', 'data', 'metrics', 'utils', 'engine', 'demo', 'tools']

# console entry point -> tools/<module>.py, each with main(argv=None) -> exit status
ENTRY_POINTS = {
    'ckdsr-train': 'train',
    'ckdsr-test': 'test',
    'ckdsr-lmdb': 'create_lmdb',
    'ckdsr-make-lr': 'make_lr',
    'ckdsr-infer': 'infer',
    'ckdsr-export': 'export',
    'ckdsr-model-info': 'model_info',
    'ckdsr-fit-codebook': 'fit_codebook',
}

setup(
    name='ckdsr',
    version='0.1.0',
    description='Train compact SR networks by contrastive knowledge distillation (CSD, FACD, PCL-SISR, DCKD)',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    python_requires='>=3.9',
    packages=['ckdsr'] + [f'ckdsr.{p}' for p in SUBPACKAGES],
    package_dir={'ckdsr': 'ckdsr', **{f'ckdsr.{p}': p.replace('.', '/') for p in SUBPACKAGES}},
    entry_points={'console_scripts': [f'{name} = ckdsr.tools.{mod}:main' for name, mod in ENTRY_POINTS.items()]},
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
        # workers (make test), which keep the suite fast on a 2-core machine; onnx + onnxruntime:
        # tools/export.py --format onnx and its check against onnxruntime (onnxscript: torch.onnx's
        # dynamo exporter needs it; the TorchScript exporter that tools/export.py uses does not);
        # spandrel (chaiNNer/ComfyUI's loader): only tests/test_export_spandrel.py, which checks that
        # the official-layout export loads there, detected with the right arch and scale;
        # wandb: logger.wandb is optional at run time (imported only when logger.wandb.project is
        # set), but tests/test_wandb_logger.py runs the real package in offline mode
        'dev': ['pytest', 'pytest-xdist', 'scikit-image', 'matplotlib', 'onnx', 'onnxruntime', 'onnxscript',
                'spandrel', 'wandb'],
    },
)
