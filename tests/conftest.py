"""Shared fixtures: where the read-only reference data lives, and a tmp experiment root."""
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def find_shared() -> Path:
    """``$CKDSR_SHARED`` if set, else ``../shared`` beside the repository; may not exist."""
    env = os.environ.get('CKDSR_SHARED')
    return Path(env) if env else REPO_ROOT.parent / 'shared'


@pytest.fixture(scope='session')
def shared_dir() -> Path:
    path = find_shared()
    if not (path / 'datasets').is_dir():
        pytest.skip(f'reference data not found at {path} (set CKDSR_SHARED to the folder holding '
                    'datasets/ and weights/)')
    return path


@pytest.fixture(scope='session')
def benchmark_dir(shared_dir) -> Path:
    return shared_dir / 'datasets' / 'benchmark'
