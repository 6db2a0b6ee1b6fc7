"""tests/conftest.py: a missing ``../shared`` skips its tests locally but fails the run where ``CI`` is set."""
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT

NEEDS_DATA = '''
def test_needs_reference_data(shared_dir):
    assert (shared_dir / 'datasets').is_dir()
'''


def run_pytest(tmp_path, **env):
    """pytest on a one-test file that uses the ``shared_dir`` fixture, with ``CKDSR_SHARED`` pointing nowhere."""
    (tmp_path / 'test_uses_shared.py').write_text(NEEDS_DATA)
    (tmp_path / 'pytest.ini').write_text('[pytest]\n')  # not the repository's setup.cfg
    clean = {k: v for k, v in os.environ.items() if k != 'CI'}
    proc = subprocess.run([sys.executable, '-m', 'pytest', '-p', 'tests.conftest', '-p', 'no:cacheprovider',
                           '-rs', '-q', '-c', str(tmp_path / 'pytest.ini'), str(tmp_path / 'test_uses_shared.py')],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                          env={**clean, 'CKDSR_SHARED': str(tmp_path / 'nowhere'), **env})
    return proc.returncode, proc.stdout + proc.stderr


def test_missing_shared_fails_under_ci_and_says_how_to_fix(tmp_path):
    rc, out = run_pytest(tmp_path, CI='true')
    assert rc == 1, out
    assert '1 error' in out and 'skipped' not in out
    assert f"reference data not found at {tmp_path / 'nowhere'}" in out
    assert 'set CKDSR_SHARED to the folder holding datasets/ and weights/' in out and 'CI is set' in out


def test_missing_shared_skips_without_ci(tmp_path):
    rc, out = run_pytest(tmp_path)
    assert rc == 0, out
    assert '1 skipped' in out and 'set CKDSR_SHARED' in out
    rc, out = run_pytest(tmp_path, CI='false')
    assert rc == 0 and '1 skipped' in out, out
