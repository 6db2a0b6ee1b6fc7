"""tools/create_lmdb.py + data.lmdb_writer: bit-exact round trips, BasicSR compatibility, safety."""
import importlib.util
import mmap
import os
import re
import signal
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

import ckdsr.data.lmdb_writer as lmdb_writer
from ckdsr.data.file_client import LmdbBackend
from ckdsr.data.image_io import encode_png, read_image
from ckdsr.data.lmdb_format import FORMAT_KEY, RAW_MARKER, read_meta_info
from ckdsr.data.bicubic_lr import make_lr_folder
from ckdsr.data.image_io import read_image_size
from ckdsr.data.lmdb_writer import create_paired_lmdb, estimate_map_size, lmdb_paths
from ckdsr.data.matlab_imresize import bicubic_downsample, modcrop
from ckdsr.data.subimages import subimage_grid

REPO = Path(__file__).resolve().parents[1]
CROP, STEP, SCALE = 48, 24, 4


@pytest.fixture(scope='module')
def t91_subset(tmp_path_factory, shared_dir):
    """Ten T91 images (copied: tests never write next to the reference data)."""
    hr = tmp_path_factory.mktemp('t91') / 'T91_HR'
    hr.mkdir()
    for p in sorted((shared_dir / 'datasets' / 'train' / 'T91' / 'HR').glob('*.png'))[:10]:
        shutil.copy(p, hr / p.name)
    return hr


def _expected(hr_dir: Path):
    """name -> (HR sub-image, LR sub-image) made independently of the writer."""
    out = {}
    for p in sorted(hr_dir.glob('*.png')):
        hr = modcrop(read_image(p), SCALE)
        lr = bicubic_downsample(hr, SCALE)
        for i, (y, x) in enumerate(subimage_grid(*hr.shape[:2], CROP, STEP), 1):
            ly, lx, lc = y // SCALE, x // SCALE, CROP // SCALE
            out[f'{p.stem}_s{i:03d}'] = (hr[y:y + CROP, x:x + CROP], lr[ly:ly + lc, lx:lx + lc])
    return out


def _tool():
    spec = importlib.util.spec_from_file_location('create_lmdb_tool', REPO / 'tools' / 'create_lmdb.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def _build(hr_dir, out, fmt, **kw):
    kw.setdefault('progress', False)
    return create_paired_lmdb(hr_dir, out, SCALE, crop_size=CROP, step=STEP, fmt=fmt, **kw)


@pytest.mark.parametrize('fmt', ['png', 'raw'])
def test_round_trip_is_bit_exact(tmp_path, t91_subset, fmt):
    hr_db, lr_db = _build(t91_subset, tmp_path, fmt)
    assert (hr_db, lr_db) == lmdb_paths(tmp_path, 'T91', SCALE, fmt)
    suffix = '_raw' if fmt == 'raw' else ''
    assert hr_db.name == f'T91_HR_sub{suffix}.lmdb' and lr_db.name == f'T91_LR_bicubic_X4_sub{suffix}.lmdb'
    expected = _expected(t91_subset)
    hr_b, lr_b = LmdbBackend(str(hr_db)), LmdbBackend(str(lr_db))
    assert hr_b.keys() == lr_b.keys() == list(expected)  # BasicSR order: image, then row-major
    for key, (hr, lr) in expected.items():
        np.testing.assert_array_equal(hr_b.get(key), hr)
        np.testing.assert_array_equal(lr_b.get(key), lr)
    first = (hr_db / 'meta_info.txt').read_text().splitlines()[0]
    assert first == ('t1_s001 (48,48,3) raw' if fmt == 'raw' else 't1_s001.png (48,48,3) 1')
    assert (lr_db / 'meta_info.txt').read_text().splitlines()[0].split()[1] == '(12,12,3)'
    assert not [p for p in tmp_path.iterdir() if 'partial' in p.name]


def test_png_databases_read_like_basicsr(tmp_path, t91_subset):
    """BasicSR's reader: keys = line.split('.')[0], values decoded with cv2 as BGR."""
    import lmdb

    hr_db, _ = _build(t91_subset, tmp_path, 'png')
    expected = _expected(t91_subset)
    keys = [line.split('.')[0] for line in (hr_db / 'meta_info.txt').read_text().splitlines()]
    env = lmdb.open(str(hr_db), readonly=True, lock=False, readahead=False, meminit=False)
    with env.begin(write=False) as txn:
        assert txn.get(FORMAT_KEY) is None  # PNG databases stay exactly BasicSR's layout
        for key in keys:
            bgr = cv2.imdecode(np.frombuffer(txn.get(key.encode('ascii')), np.uint8), cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(bgr[:, :, ::-1], expected[key][0])
    env.close()


def test_reads_a_basicsr_made_lmdb(tmp_path):
    """A database laid out as BasicSR's make_lmdb_from_imgs writes it (BGR PNG, level 1)."""
    import lmdb

    rng = np.random.default_rng(0)
    imgs = {f'{i:04d}_s001': rng.integers(0, 256, (32, 24, 3), dtype=np.uint8) for i in range(1, 4)}
    path = tmp_path / 'DIV2K_train_HR_sub.lmdb'
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for key, img in imgs.items():
            ok, buf = cv2.imencode('.png', img[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])
            txn.put(key.encode('ascii'), buf.tobytes())
    env.close()
    (path / 'meta_info.txt').write_text(''.join(f'{k}.png (32,24,3) 1\n' for k in imgs))
    backend = LmdbBackend(str(path))
    assert backend.keys() == list(imgs)
    for key, img in imgs.items():
        np.testing.assert_array_equal(backend.get(key), img)


def test_raw_database_has_format_marker(tmp_path, t91_subset):
    import lmdb

    hr_db, _ = _build(t91_subset, tmp_path, 'raw')
    env = lmdb.open(str(hr_db), readonly=True, lock=False)
    with env.begin() as txn:
        assert txn.get(FORMAT_KEY) == RAW_MARKER
    env.close()
    assert all(e.compression == 'raw' for e in read_meta_info(hr_db).values())


def test_given_lr_folder_and_errors(tmp_path, t91_subset):
    hr_dir = tmp_path / 'HR'
    lr_dir = tmp_path / 'LR'
    hr_dir.mkdir(), lr_dir.mkdir()
    names = sorted(p.name for p in t91_subset.glob('*.png'))[:3]
    for n in names:
        shutil.copy(t91_subset / n, hr_dir / n)
        lr = bicubic_downsample(read_image(t91_subset / n), SCALE)
        cv2.imwrite(str(lr_dir / n.replace('.png', 'x4.png')), lr[:, :, ::-1])
    hr_db, lr_db = _build(hr_dir, tmp_path / 'ok', 'raw', lr_dir=lr_dir, prefix='given')
    assert LmdbBackend(str(lr_db)).keys() == LmdbBackend(str(hr_db)).keys()
    # an HR without its LR, named before any work starts
    (lr_dir / names[1].replace('.png', 'x4.png')).unlink()
    with pytest.raises(FileNotFoundError, match=names[1]):
        _build(hr_dir, tmp_path / 'e1', 'png', lr_dir=lr_dir)
    # an LR of the wrong size
    lr = read_image(t91_subset / names[1])[:40, :40]
    cv2.imwrite(str(lr_dir / names[1].replace('.png', 'x4.png')), lr)
    with pytest.raises(ValueError, match=names[1].replace('.png', 'x4.png')):
        _build(hr_dir, tmp_path / 'e2', 'png', lr_dir=lr_dir)
    # a corrupt HR
    (hr_dir / names[2]).write_bytes(encode_png(lr)[:50])
    with pytest.raises(ValueError, match=names[2]):
        _build(hr_dir, tmp_path / 'e3', 'png')
    for d in ('e1', 'e2', 'e3'):  # nothing that looks like a database is left behind
        assert not (tmp_path / d).exists() or not any((tmp_path / d).iterdir())


def test_existing_output_is_kept_and_interrupts_leave_nothing(tmp_path, t91_subset, monkeypatch):
    hr_db, lr_db = _build(t91_subset, tmp_path, 'raw')
    before = (hr_db / 'data.mdb').read_bytes()
    with pytest.raises(FileExistsError, match='overwrite'):
        _build(t91_subset, tmp_path, 'raw')
    calls = []

    def interrupted(job):
        calls.append(job)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(job)

    real = lmdb_writer.cut_pair
    monkeypatch.setattr(lmdb_writer, 'cut_pair', interrupted)
    with pytest.raises(KeyboardInterrupt):
        _build(t91_subset, tmp_path, 'raw', overwrite=True)
    assert (hr_db / 'data.mdb').read_bytes() == before  # the complete database survived
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([hr_db.name, lr_db.name])
    monkeypatch.setattr(lmdb_writer, 'cut_pair', real)
    _build(t91_subset, tmp_path, 'raw', overwrite=True)
    assert len(LmdbBackend(str(hr_db)).keys()) == len(_expected(t91_subset))


def test_full_map_is_a_clear_error(tmp_path, t91_subset):
    with pytest.raises(RuntimeError, match='map full'):
        _build(t91_subset, tmp_path, 'raw', map_size=64 * 1024)
    assert not list(tmp_path.iterdir())


def test_small_image_and_bad_geometry(tmp_path, t91_subset):
    with pytest.raises(ValueError, match='smaller than crop_size'):
        create_paired_lmdb(t91_subset, tmp_path, SCALE, crop_size=1000, step=500, progress=False)
    with pytest.raises(ValueError, match='multiples of scale'):
        create_paired_lmdb(t91_subset, tmp_path, SCALE, crop_size=50, step=24, progress=False)
    with pytest.raises(ValueError, match='fmt'):
        create_paired_lmdb(t91_subset, tmp_path, SCALE, fmt='jpeg', progress=False)


def test_cli_with_worker_processes(tmp_path, t91_subset):
    tool = _tool()
    argv = ['--hr', str(t91_subset), '--out', str(tmp_path), '--scale', '4', '--crop-size', '48',
            '--step', '24', '--format', 'raw', '--workers', '2', '--prefix', 'cli']
    assert tool.main(argv) == 0
    hr_b = LmdbBackend(str(tmp_path / 'cli_HR_sub_raw.lmdb'))
    expected = _expected(t91_subset)
    assert hr_b.keys() == list(expected)
    key = hr_b.keys()[-1]
    np.testing.assert_array_equal(hr_b.get(key), expected[key][0])


# ---- several scales: one shared HR database, one LR database per scale ----
SCALES = (2, 3, 4)  # lcm 12; CROP and STEP are multiples of 12


@pytest.fixture(scope='module')
def t91_three(tmp_path_factory, t91_subset):
    """Three T91 images whose sides are not multiples of 12 (so the lcm mod-crop matters)."""
    hr = tmp_path_factory.mktemp('t91_three') / 'three_HR'
    hr.mkdir()
    for p in sorted(t91_subset.glob('*.png'))[:3]:
        assert read_image_size(p)[0] % 12 and read_image_size(p)[1] % 12
        shutil.copy(p, hr / p.name)
    return hr


def _expected_multi(hr_dir: Path, scales):
    """name -> [HR sub-image, LR sub-image per scale], computed with plain numpy slicing."""
    mod = int(np.lcm.reduce(scales))
    out = {}
    for p in sorted(hr_dir.glob('*.png')):
        full = read_image(p)
        h, w = full.shape[0] // mod * mod, full.shape[1] // mod * mod
        hr = full[:h, :w]
        lrs = [bicubic_downsample(modcrop(full, s), s) for s in scales]
        for i, (y, x) in enumerate(subimage_grid(h, w, CROP, STEP), 1):
            subs = [hr[y:y + CROP, x:x + CROP]]
            subs += [lr[y // s:y // s + CROP // s, x // s:x // s + CROP // s] for lr, s in zip(lrs, scales)]
            out[f'{p.stem}_s{i:03d}'] = subs
    return out


def _read_all(paths):
    backends = [LmdbBackend(str(p)) for p in paths]
    keys = backends[0].keys()
    assert all(b.keys() == keys for b in backends)  # identical keys, same order
    return {k: [b.get(k) for b in backends] for k in keys}


def test_multi_scale_shares_one_hr_database(tmp_path, t91_three):
    paths = create_paired_lmdb(t91_three, tmp_path, SCALES, crop_size=CROP, step=STEP, fmt='raw',
                               progress=False)
    assert paths == lmdb_paths(tmp_path, 'three', SCALES, 'raw')
    assert [p.name for p in paths] == ['three_HR_sub_raw.lmdb'] + [
        f'three_LR_bicubic_X{s}_sub_raw.lmdb' for s in SCALES]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
    expected = _expected_multi(t91_three, SCALES)
    got = _read_all(paths)
    assert list(got) == list(expected)
    for key, subs in expected.items():
        assert [a.shape for a in got[key]] == [(CROP, CROP, 3)] + [(CROP // s, CROP // s, 3) for s in SCALES]
        for a, b in zip(got[key], subs):
            np.testing.assert_array_equal(a, b)
    for p in paths:  # meta_info lists every key in every database
        assert list(read_meta_info(p)) == list(expected)
    # the map-size estimate bounds the four databases together
    sizes = [read_image_size(p) for p in sorted(t91_three.glob('*.png'))]
    used = sum((p / 'data.mdb').stat().st_size for p in paths)
    assert used <= estimate_map_size(sizes, SCALES, CROP, STEP, 0)
    assert estimate_map_size(sizes, 4, CROP, STEP, 0) == estimate_map_size(sizes, (4,), CROP, STEP, 0)


def test_multi_scale_reads_lr_from_scale_subfolders(tmp_path, t91_three):
    make_lr_folder(t91_three, tmp_path / 'lr', SCALES)  # writes lr/LR_bicubic/X<s>/<stem>x<s>.png
    lr_root = tmp_path / 'lr' / 'LR_bicubic'  # the DIV2K layout: X2/, X3/, X4/
    made = create_paired_lmdb(t91_three, tmp_path / 'made', SCALES, crop_size=CROP, step=STEP,
                              fmt='png', progress=False)
    given = create_paired_lmdb(t91_three, tmp_path / 'given', SCALES, lr_dir=lr_root, crop_size=CROP,
                               step=STEP, fmt='png', progress=False)
    expected = _read_all(made)
    got = _read_all(given)
    assert list(got) == list(expected)
    for key in expected:
        for a, b in zip(got[key], expected[key]):
            np.testing.assert_array_equal(a, b)
    # make_lr's own root (LR_bicubic/X<s> below it) works too
    root = create_paired_lmdb(t91_three, tmp_path / 'root', (4, 2), lr_dir=tmp_path / 'lr',
                              crop_size=CROP, step=STEP, fmt='raw', progress=False)
    assert [p.name for p in root] == ['three_HR_sub_raw.lmdb', 'three_LR_bicubic_X4_sub_raw.lmdb',
                                      'three_LR_bicubic_X2_sub_raw.lmdb']
    expected_42, got_42 = _expected_multi(t91_three, (4, 2)), _read_all(root)  # lcm 4: another grid
    assert list(got_42) == list(expected_42)
    for key in expected_42:
        for a, b in zip(got_42[key], expected_42[key]):
            np.testing.assert_array_equal(a, b)
    # one int scale: a 2-tuple, from the X<s> folder under lr_dir, same values as made ones
    single = create_paired_lmdb(t91_three, tmp_path / 'single', 3, lr_dir=lr_root, crop_size=CROP,
                                step=STEP, fmt='raw', progress=False)
    assert len(single) == 2 and single == lmdb_paths(tmp_path / 'single', 'three', 3, 'raw')
    ref = create_paired_lmdb(t91_three, tmp_path / 'single_ref', 3, crop_size=CROP, step=STEP,
                             fmt='raw', progress=False)
    ref_values, single_values = _read_all(ref), _read_all(single)
    assert list(ref_values) == list(single_values)
    for key in ref_values:
        for a, b in zip(single_values[key], ref_values[key]):
            np.testing.assert_array_equal(a, b)


def test_multi_scale_errors(tmp_path, t91_three):
    def build(out, scales=SCALES, **kw):
        kw = {'crop_size': CROP, 'step': STEP, 'fmt': 'raw', 'progress': False, **kw}
        return create_paired_lmdb(t91_three, tmp_path / out, scales, **kw)

    with pytest.raises(ValueError, match=r'multiples of scale \(4\)'):
        build('e', step=18)  # 18 is a multiple of 2 and 3, not of 4
    with pytest.raises(ValueError, match=r'multiples of scale \(5\)'):
        build('e', scales=(2, 5))
    with pytest.raises(ValueError, match=r'multiples of scale \(3\)'):
        build('e', crop_size=40, step=40, scales=(2, 4, 3))
    for bad in ((4, 4), (), (2, 0)):
        with pytest.raises(ValueError, match='distinct'):
            build('e', scales=bad)
    hr_names = sorted(p.name for p in t91_three.glob('*.png'))
    lr = tmp_path / 'lr'
    make_lr_folder(t91_three, lr, SCALES)
    x3 = lr / 'LR_bicubic' / 'X3'
    (x3 / hr_names[1].replace('.png', 'x3.png')).unlink()
    with pytest.raises(FileNotFoundError) as err:
        build('e', lr_dir=lr / 'LR_bicubic')
    assert str(t91_three / hr_names[1]) in str(err.value) and str(x3) in str(err.value)
    shutil.rmtree(x3)
    with pytest.raises(FileNotFoundError, match=re.escape(str(x3))) as err:
        build('e', lr_dir=lr / 'LR_bicubic')
    assert str(t91_three / hr_names[0]) in str(err.value)
    # an LR of the wrong size names both files
    bad = lr / 'LR_bicubic' / 'X2' / hr_names[0].replace('.png', 'x2.png')
    cv2.imwrite(str(bad), np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(ValueError, match=re.escape(bad.name)) as err:
        build('e', scales=(2, 4), lr_dir=lr / 'LR_bicubic')
    assert hr_names[0] in str(err.value)
    assert not (tmp_path / 'e').exists() or not any((tmp_path / 'e').iterdir())


def test_cli_several_scales(tmp_path, t91_three, capsys):
    argv = ['--hr', str(t91_three), '--out', str(tmp_path), '--scale', '2', '4', '--crop-size', '48',
            '--step', '24', '--format', 'raw', '--workers', '1', '--prefix', 'cli']
    assert _tool().main(argv) == 0
    paths = lmdb_paths(tmp_path, 'cli', (2, 4), 'raw')
    assert capsys.readouterr().out.splitlines() == [f'wrote {p}' for p in paths]
    expected = _expected_multi(t91_three, (2, 4))
    got = _read_all(paths)
    assert list(got) == list(expected)
    for key in (list(expected)[0], list(expected)[-1]):
        for a, b in zip(got[key], expected[key]):
            np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------- damage found at open
# (issue 16, point 9: a truncated data.mdb was a SIGBUS, a missing key a crash mid-run)

@pytest.fixture
def small_raw_db(tmp_path):
    """A raw HR sub-image LMDB of 24 values of 32x32x3 (3 KB each: ~24 data pages), no shared data."""
    from tests.helpers.tiny_run import make_image_folder
    make_image_folder(tmp_path / 'src', 6, size=64, seed=3)
    hr_db, _ = create_paired_lmdb(tmp_path / 'src' / 'HR', tmp_path, 2, crop_size=32, step=32, fmt='raw',
                                  prefix='dmg', progress=False)
    return hr_db


def _copy_db(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    (dst / 'lock.mdb').unlink(missing_ok=True)
    return dst


_READ_ALL = ('import sys, lmdb\n'
             'env = lmdb.open(sys.argv[1], readonly=True, lock=False)\n'
             'with env.begin(buffers=True) as txn:\n'
             '    print(sum(bytes(v)[-1] for _, v in txn.cursor()))\n')

_OPEN_BACKEND = ('import sys\n'
                 'from data.file_client import LmdbBackend\n'
                 'b = LmdbBackend(sys.argv[1])\n'
                 'print(b.get(b.keys()[-1]).sum())\n')


def test_truncated_data_mdb_fails_at_open_instead_of_sigbus(tmp_path, small_raw_db):
    import subprocess
    import sys

    from ckdsr.data.file_client import MemoryBackend
    from ckdsr.data.lmdb_check import LmdbDamagedError
    full = (small_raw_db / 'data.mdb').stat().st_size
    assert len(LmdbBackend(str(small_raw_db)).keys()) == 24  # the intact database opens
    bad = _copy_db(small_raw_db, tmp_path / 'cut.lmdb')
    os.truncate(bad / 'data.mdb', full // 2)
    # the hazard is real: reading the truncated database without the check dies of SIGBUS
    raw = subprocess.run([sys.executable, '-c', _READ_ALL, str(bad)], capture_output=True, text=True, timeout=120)
    assert raw.returncode == -signal.SIGBUS
    # the backend stops before reading a page: an exception with one line, in this process too
    proc = subprocess.run([sys.executable, '-c', _OPEN_BACKEND, str(bad)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr[-1000:]
    last = proc.stderr.strip().splitlines()[-1]
    psize = mmap.PAGESIZE  # LMDB's page size is the OS page size
    assert last == (f'ckdsr.data.lmdb_check.LmdbDamagedError: LMDB {bad} is damaged: data.mdb has {full // 2} bytes but '
                    f'the environment records {full // psize} pages of {psize} bytes = {full} bytes (truncated copy?); '
                    'copy or rebuild the database')
    for backend in (LmdbBackend, MemoryBackend):
        with pytest.raises(LmdbDamagedError, match=rf'^LMDB {re.escape(str(bad))} is damaged: data.mdb has'):
            backend(str(bad))
    # one page short is enough; a file cut inside LMDB's two meta pages does not even open
    short = _copy_db(small_raw_db, tmp_path / 'short.lmdb')
    os.truncate(short / 'data.mdb', full - psize)
    with pytest.raises(LmdbDamagedError, match=rf'has {full - psize} bytes .* = {full} bytes'):
        LmdbBackend(str(short))
    stub = _copy_db(small_raw_db, tmp_path / 'stub.lmdb')
    os.truncate(stub / 'data.mdb', 100)
    with pytest.raises(LmdbDamagedError,
                       match=r'data.mdb \(100 bytes\) cannot be opened \(InvalidError: .*not an LMDB'):
        LmdbBackend(str(stub))


def test_key_listed_but_missing_fails_at_open_naming_the_first(tmp_path, small_raw_db):
    import lmdb

    from ckdsr.data.lmdb_check import LmdbDamagedError
    bad = _copy_db(small_raw_db, tmp_path / 'holes.lmdb')
    keys = list(read_meta_info(bad))
    env = lmdb.open(str(bad), map_size=1 << 24)
    with env.begin(write=True) as txn:  # two listed keys gone
        assert txn.delete(keys[5].encode()) and txn.delete(keys[9].encode())
    env.close()
    with pytest.raises(LmdbDamagedError) as err:
        LmdbBackend(str(bad))
    assert str(err.value) == (f"LMDB {bad} is damaged: key '{keys[5]}' (entry 6 of meta_info.txt) is missing from the "
                              'database (2 of 24 listed keys missing); rebuild it or use the meta_info.txt '
                              'written with it')
    # a raw value of the wrong size is found at open too, not at the first read
    short = _copy_db(small_raw_db, tmp_path / 'short_value.lmdb')
    env = lmdb.open(str(short), map_size=1 << 24)
    with env.begin(write=True) as txn:
        txn.put(keys[3].encode(), b'\0' * 100)
    env.close()
    with pytest.raises(LmdbDamagedError, match=rf"key '{keys[3]}' \(entry 4 of meta_info.txt\) has a raw value of "
                                               r'100 bytes, meta_info says \(32,32,3\) = 3072'):
        LmdbBackend(str(short))


def test_damaged_database_stops_training_before_the_first_step(tmp_path, small_raw_db):
    """The check runs when the training set is built: one error: line naming the option key and the
    database, exit 2, before iteration 1."""
    import subprocess
    import sys

    from tests.helpers.tiny_run import tiny_sr_options, write_options
    bad = _copy_db(small_raw_db, tmp_path / 'train_HR.lmdb')
    os.truncate(bad / 'data.mdb', (bad / 'data.mdb').stat().st_size // 2)
    opt = tiny_sr_options(tmp_path)
    opt['datasets']['train'].update(dataroot_gt=str(bad), io_backend={'type': 'lmdb'})
    proc = subprocess.run([sys.executable, str(REPO / 'tools' / 'train.py'), '-opt',
                           str(write_options(opt, tmp_path / 'o.yml'))], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]  # not 135 / -7 (SIGBUS), not a traceback
    assert 'Traceback' not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
    assert len(errors) == 1 and errors[0].startswith(
        f'error: {tmp_path / "o.yml"}: datasets.train.dataroot_gt: LMDB {bad} is damaged: data.mdb has '), errors
    log = tmp_path / 'experiments' / 'tiny' / 'train.log'
    assert not log.exists() or 'iter:' not in log.read_text()


class _KeySums:
    """A dataset over an LmdbBackend (module level: picklable for spawned workers too)."""

    def __init__(self, backend):
        self.backend = backend

    def __len__(self):
        return len(self.backend.keys())

    def __getitem__(self, i):
        return int(self.backend.get(self.backend.keys()[i]).astype(np.int64).sum())


def test_the_open_check_leaves_no_handle_for_dataloader_workers_to_trip_on(small_raw_db):
    """py-lmdb refuses a second open of an environment in one process, and forked workers inherit
    the parent's open environments: the check at construction must close what it opened."""
    import torch
    backend = LmdbBackend(str(small_raw_db))  # checked (env opened and closed) in this process
    loader = torch.utils.data.DataLoader(_KeySums(backend), batch_size=5, num_workers=2,
                                         multiprocessing_context='fork' if os.name == 'posix' else None)
    got = [int(v) for batch in loader for v in batch]  # was: lmdb.Error '... is already open in this process'
    assert got == [int(backend.get(k).astype(np.int64).sum()) for k in backend.keys()]
