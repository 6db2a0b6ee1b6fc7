"""Shared fixtures: where the read-only reference data lives, and a tmp experiment root."""
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def find_shared() -> Path:
    """``$CKDSR_SHARED`` if set, else ``../shared`` beside the repository; may not exist."""
    env = os.environ.get('CKDSR_SHARED')
    return Path(env) if env else REPO_ROOT.parent / 'shared'


def in_ci() -> bool:
    """Whether the environment variable ``CI`` is set (to anything but '', 0, false or no)."""
    return os.environ.get('CI', '').strip().lower() not in ('', '0', 'false', 'no')


@pytest.fixture(scope='session')
def shared_dir() -> Path:
    """The reference data folder. Missing, its tests skip locally but FAIL where ``CI`` is set, so a
    CI job without the data cannot pass while silently dropping the bit-exact and reference checks."""
    path = find_shared()
    if not (path / 'datasets').is_dir():
        how = (f'reference data not found at {path}: set CKDSR_SHARED to the folder holding datasets/ and '
               'weights/ (see ../shared/datasets/SOURCES.md)')
        if in_ci():
            pytest.fail(f'{how}. CI is set, so this is a failure, not a skip (unset CI to skip locally)',
                        pytrace=False)
        pytest.skip(how)
    return path


@pytest.fixture(scope='session')
def benchmark_dir(shared_dir) -> Path:
    return shared_dir / 'datasets' / 'benchmark'


def pytest_collection_modifyitems(config, items):
    """Slow tests are left out of a plain run; ``-m slow`` (or any ``-m``) selects by marker, and a
    slow test named by its node id (``pytest tests/x.py::test_y``) runs as asked."""
    if config.getoption('markexpr'):
        return
    root = str(config.rootpath)
    named = {os.path.relpath(a.split('::')[0], root) + '::' + a.split('::', 1)[1].split('[')[0]
             for a in config.args if '::' in a}
    keep, drop = [], []
    for item in items:
        wanted = item.nodeid.split('[')[0] in named
        (drop if item.get_closest_marker('slow') and not wanted else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
