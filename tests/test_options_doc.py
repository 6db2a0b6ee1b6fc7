"""docs/OPTIONS.md is generated from the schema; it must not go stale."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_option_reference_is_up_to_date():
    proc = subprocess.run([sys.executable, str(REPO / 'tools' / 'options_doc.py'), '--check'],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
