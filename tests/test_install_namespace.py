"""The installed package is importable only as ``ckdsr.*`` and its entry points work.

A non-editable ``pip install`` of a copy of the source tree into a fresh virtual environment, used
from another folder: ``import ckdsr.models`` works, the generic names (``utils``, ``data``,
``models``, ...) do not come from ckdsr, and ``ckdsr-train`` trains two iterations. torch and the
other dependencies come from this interpreter's site-packages through a path file (the fresh
environment gets no copy of them; the ``.pth`` files of that site-packages, such as an editable
install of this checkout, are not run).
"""
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.helpers.tiny_run import tiny_sr_options, write_options

REPO = Path(__file__).resolve().parents[1]
SOURCE = ['setup.py', 'README.md', 'ckdsr', 'archs', 'losses', 'models', 'data', 'metrics', 'utils', 'engine',
          'demo', 'tools']
GENERIC = ['utils', 'data', 'models', 'engine', 'metrics', 'archs', 'losses', 'tools', 'demo']


def _copy_source(dst: Path) -> Path:
    ignore = shutil.ignore_patterns('__pycache__', '*.pyc')
    for name in SOURCE:
        src = REPO / name
        (shutil.copytree(src, dst / name, ignore=ignore) if src.is_dir() else shutil.copy2(src, dst / name))
    return dst


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('install')
    (tmp / 'src').mkdir()
    src = _copy_source(tmp / 'src')
    venv = tmp / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True)
    py = venv / 'bin' / 'python'
    wheels = tmp / 'wheels'  # built with this interpreter's setuptools, installed without building
    proc = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '--no-build-isolation',
                           '-w', str(wheels), str(src)], capture_output=True, text=True, cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    wheel = next(wheels.glob('ckdsr-*.whl'))
    proc = subprocess.run([sys.executable, '-m', 'pip', '--python', str(py), 'install', '-q', '--no-deps',
                           '--no-index', str(wheel)], capture_output=True, text=True, cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    site = subprocess.run([str(py), '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / 'host_dependencies.pth').write_text(sysconfig.get_paths()['purelib'] + '\n')
    return venv, Path(site), tmp


def _run(venv: Path, args, cwd: Path):
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'VIRTUAL_ENV')}
    env['OMP_NUM_THREADS'] = '1'
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env)


def test_only_the_ckdsr_namespace_is_installed(installed):
    venv, site, tmp = installed
    code = ('import importlib.util, json, ckdsr, ckdsr.models, ckdsr.engine.trainer\n'
            'from ckdsr.archs import RCAN\n'
            'from ckdsr.models import build_model\n'
            f'generic = {{n: getattr(importlib.util.find_spec(n), "origin", None) for n in {GENERIC!r}}}\n'
            'print(json.dumps({"ckdsr": ckdsr.__file__, "models": ckdsr.models.__file__, "generic": generic}))')
    proc = _run(venv, [str(venv / 'bin' / 'python'), '-c', code], cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(out['ckdsr']).parent == site / 'ckdsr'
    assert Path(out['models']).is_relative_to(site / 'ckdsr')
    for name, origin in out['generic'].items():  # absent, or somebody else's -- never a ckdsr folder
        assert origin is None or not Path(origin).is_relative_to(site / 'ckdsr'), (name, origin)
        assert origin is None or not Path(origin).is_relative_to(REPO), (name, origin)
    assert not (site / 'utils').exists() and not (site / 'models').exists()


def test_entry_point_trains_two_iterations_from_another_folder(installed):
    venv, _, tmp = installed
    work = tmp / 'elsewhere'
    work.mkdir(exist_ok=True)
    opt_file = write_options(tiny_sr_options(work), work / 'tiny.yml')
    proc = _run(venv, [str(venv / 'bin' / 'ckdsr-train'), '-opt', str(opt_file), '--set', 'train.total_iter=2'],
                cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    models = work / 'experiments' / 'tiny' / 'models'
    assert (models / 'net_g_latest.pth').is_file() and (models / 'net_g_2.pth').is_file()
    for tool in ('ckdsr-test', 'ckdsr-lmdb', 'ckdsr-infer', 'ckdsr-export', 'ckdsr-model-info', 'ckdsr-make-lr',
                 'ckdsr-fit-codebook'):
        help_proc = _run(venv, [str(venv / 'bin' / tool), '--help'], cwd=work)
        assert help_proc.returncode == 0 and 'usage' in help_proc.stdout, (tool, help_proc.stderr[-1000:])
