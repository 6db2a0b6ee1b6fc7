"""tools/make_lr.py reproduces the MATLAB-made benchmark LR images with zero differing pixels."""
import importlib.util
from pathlib import Path

import pytest

from ckdsr.data.bicubic_lr import make_lr_folder
from ckdsr.data.image_io import read_image

REPO = Path(__file__).resolve().parents[1]
SCALES = (2, 3, 4)


def _load_tool():
    spec = importlib.util.spec_from_file_location('make_lr_tool', REPO / 'tools' / 'make_lr.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _assert_reproduced(out_root: Path, ref_root: Path) -> int:
    n = 0
    for s in SCALES:
        refs = sorted((ref_root / 'LR_bicubic' / f'X{s}').glob('*.png'))
        made = sorted((out_root / 'LR_bicubic' / f'X{s}').glob('*.png'))
        assert [p.name for p in made] == [p.name for p in refs]
        for ours, ref in zip(made, refs):
            a, b = read_image(ours), read_image(ref)
            assert a.shape == b.shape, ours.name
            diff = int((a != b).any(axis=2).sum())
            assert diff == 0, f'{ref}: {diff} pixels differ'
            n += 1
    return n


@pytest.mark.parametrize('name', ['Set5', 'Set14'])
def test_cli_reproduces_reference_lr(tmp_path, benchmark_dir, name, capsys):
    ref = benchmark_dir / name
    argv = ['--hr', str(ref / 'HR'), '--out', str(tmp_path)]
    argv += [a for s in SCALES for a in ('--scale', str(s))]
    assert _load_tool().main(argv) == 0
    n = _assert_reproduced(tmp_path, ref)
    assert n == 3 * len(list((ref / 'HR').glob('*.png')))
    assert f'wrote {n} LR images' in capsys.readouterr().out


def test_rerun_keeps_existing_files(tmp_path, benchmark_dir):
    hr = benchmark_dir / 'Set5' / 'HR'
    assert make_lr_folder(hr, tmp_path, [4]) == {'written': 5, 'skipped': 0}
    target = tmp_path / 'LR_bicubic' / 'X4' / 'babyx4.png'
    target.write_bytes(b'kept')  # an existing file is never replaced without overwrite
    assert make_lr_folder(hr, tmp_path, [4]) == {'written': 0, 'skipped': 5}
    assert target.read_bytes() == b'kept'
    assert make_lr_folder(hr, tmp_path, [4], overwrite=True)['written'] == 5
    assert read_image(target).shape == (128, 128, 3)


def test_bad_arguments(tmp_path, benchmark_dir):
    with pytest.raises(FileNotFoundError, match='no_such_dir'):
        make_lr_folder(tmp_path / 'no_such_dir', tmp_path, [2])
    with pytest.raises(ValueError, match='scales'):
        make_lr_folder(benchmark_dir / 'Set5' / 'HR', tmp_path, [1])


@pytest.mark.slow
@pytest.mark.parametrize('name', ['B100', 'Urban100'])
def test_cli_reproduces_reference_lr_large_sets(tmp_path, benchmark_dir, name):
    ref = benchmark_dir / name
    make_lr_folder(ref / 'HR', tmp_path, SCALES, workers=2)
    assert _assert_reproduced(tmp_path, ref) == 3 * len(list((ref / 'HR').glob('*.png')))
