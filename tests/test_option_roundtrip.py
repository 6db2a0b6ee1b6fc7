"""Every shipped option file round-trips (issue 16, point 3): load -> save -> load gives the same
tree, and the saved file is accepted again by tools/train.py (--dry-run) and tools/test.py.

The saved ``options.yml`` of a run is what ``save_options`` writes; absent sections are written as
``null`` (``teacher_embedding: null``), which must read back as absent, not as enabled.
"""
import contextlib
import glob
import io
import os
from pathlib import Path

import pytest

from ckdsr.utils.option_spec import REQUIRED, Field, Section, paths_unchecked
from ckdsr.utils.options import load_options, read_yaml, save_options, validate_tree

REPO = Path(__file__).resolve().parents[1]
OPTION_FILES = sorted(glob.glob(str(REPO / 'options' / '**' / '*.yml'), recursive=True))
IDS = [os.path.relpath(p, REPO / 'options') for p in OPTION_FILES]


def test_the_round_trip_covers_subfolders():
    rel = set(IDS)
    assert any(r.startswith('test/') for r in rel) and any('/' not in r for r in rel)
    assert len(OPTION_FILES) >= 50


@pytest.mark.parametrize('path', OPTION_FILES, ids=IDS)
def test_shipped_option_file_round_trips(path, tmp_path):
    with paths_unchecked():  # the data and weights the file names are not on this machine
        first = load_options(path)
        saved = tmp_path / 'options.yml'
        save_options(first, str(saved))
        second = load_options(str(saved))
        save_options(second, str(tmp_path / 'again.yml'))
    assert second == first
    assert (tmp_path / 'again.yml').read_text() == saved.read_text()


def test_null_section_reads_as_absent_not_as_enabled():
    """The bug of issue 16: `teacher_embedding: null` was validated as {} and asked for its taps."""
    schema = Section({'on': Section({'taps': Field(list, REQUIRED)}, absent_none=True),
                      'plain': Section({'k': Field(int, 3)})})
    assert validate_tree({'on': None, 'plain': None}, schema, 'x') == {'on': None, 'plain': {'k': 3}}
    assert validate_tree({}, schema, 'x') == {'on': None, 'plain': {'k': 3}}


def test_saved_kd_and_dckd_options_reload_as_the_issue_reported(tmp_path):
    """The two failures quoted in the issue: a KD run's and a DCKD run's saved options.yml."""
    for name in ('kd_rcan_x4.yml', 'dckd_rcan_x4.yml'):
        with paths_unchecked():
            opt = load_options(str(REPO / 'options' / name))
            assert opt['distill']['teacher_embedding'] is None
            save_options(opt, str(tmp_path / name))
            assert read_yaml(str(tmp_path / name))['distill']['teacher_embedding'] is None
            assert load_options(str(tmp_path / name)) == opt


def test_defaults_are_saved_as_yaml_lists_not_tuples(tmp_path):
    """A tuple default (the DCKD degrader's blur_sigma) reads back as a list: fill it as a list."""
    with paths_unchecked():
        opt = load_options(str(REPO / 'options' / 'dckd_rcan_x4.yml'))
    assert opt['distill']['history']['degradation']['blur_sigma'] == [0.1, 2.0]


def test_saved_training_options_pass_train_dry_run(tmp_path):
    """tools/train.py accepts the saved file: --dry-run validates it and builds the networks."""
    from ckdsr.tools.train import main as train_main
    with paths_unchecked():
        opt = load_options(str(REPO / 'options' / 'dckd_rcan_x4.yml'))
    save_options(opt, str(tmp_path / 'options.yml'))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = train_main(['-opt', str(tmp_path / 'options.yml'), '--dry-run'])
    assert code == 2  # the datasets and weights are missing here...
    text = out.getvalue()
    assert 'network_g: RCAN' in text and 'network_t: RCAN' in text  # ...but the file is accepted


@pytest.mark.parametrize('name', sorted(os.listdir(REPO / 'options' / 'test')))
def test_saved_test_options_are_accepted_by_tools_test(name, tmp_path):
    from ckdsr.engine.test_runner import options_from_file
    with paths_unchecked():
        opt = options_from_file(str(REPO / 'options' / 'test' / name))
        save_options(opt, str(tmp_path / 'options.yml'))
        again = options_from_file(str(tmp_path / 'options.yml'))
    assert again == opt and again['train'] is None


def test_the_options_yml_a_kd_run_writes_loads_again(tmp_path, capsys):
    """The file a real run saves (experiments/<name>/options.yml), through tools/train.py."""
    from tests.helpers.kd import tiny_kd_options
    from tests.helpers.tiny_run import write_options
    from ckdsr.tools.train import main as train_main
    opt = tiny_kd_options(tmp_path, [{'type': 'L1Loss'}, {'type': 'L1Loss', 'name': 'l_kd',
                                                          'inputs': {'target': 'teacher_sr'}}], total_iter=1)
    opt['val']['val_freq'] = 1
    path = write_options(opt, tmp_path / 'kd.yml')
    assert train_main(['-opt', str(path)]) == 0
    saved = tmp_path / 'experiments' / 'tiny' / 'options.yml'
    assert read_yaml(str(saved))['distill']['teacher_embedding'] is None
    assert load_options(str(saved)) == load_options(str(path))
    assert train_main(['-opt', str(saved), '--dry-run']) == 0
