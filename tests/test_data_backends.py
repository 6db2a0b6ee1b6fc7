"""ckdsr.data.file_client: disk, lmdb (png/raw) and memory backends return the same uint8 RGB arrays."""
import pickle

import numpy as np
import pytest

from ckdsr.data.file_client import DiskBackend, LmdbBackend, MemoryBackend, build_backend
from ckdsr.data.image_io import write_png
from ckdsr.data.lmdb_writer import create_paired_lmdb


@pytest.fixture(scope='module')
def stores(tmp_path_factory):
    """Five random 32x40 images as a folder, a PNG LMDB and a raw LMDB (one sub-image each)."""
    root = tmp_path_factory.mktemp('stores')
    rng = np.random.default_rng(0)
    imgs = {f'im{i}': rng.integers(0, 256, (32, 40, 3), dtype=np.uint8) for i in range(5)}
    for name, img in imgs.items():
        write_png(root / 'HR' / f'{name}.png', img)
    dbs = {fmt: create_paired_lmdb(root / 'HR', root, 2, crop_size=32, step=100, fmt=fmt,
                                   prefix='set', progress=False)[0] for fmt in ('png', 'raw')}
    return root, imgs, dbs


def test_all_backends_agree(stores):
    root, imgs, dbs = stores
    disk = build_backend({'type': 'disk'}, str(root / 'HR'))
    assert isinstance(disk, DiskBackend) and disk.keys() == [f'{k}.png' for k in imgs]
    readers = {
        'lmdb-png': build_backend({'type': 'lmdb'}, str(dbs['png'])),
        'lmdb-raw': build_backend({'type': 'lmdb', 'readahead': False}, str(dbs['raw'])),
        'mem-raw': build_backend({'type': 'memory'}, str(dbs['raw'])),
        'mem-png': MemoryBackend(str(dbs['png'])),
    }
    mem_disk = MemoryBackend(str(root / 'HR'))
    assert mem_disk.nbytes == 5 * 32 * 40 * 3
    for name, img in imgs.items():
        np.testing.assert_array_equal(disk.get(f'{name}.png'), img)
        np.testing.assert_array_equal(mem_disk.get(f'{name}.png'), img)
        for label, b in readers.items():
            got = b.get(f'{name}_s001')
            assert got.dtype == np.uint8 and got.shape == (32, 32, 3), label
            np.testing.assert_array_equal(got, img[:, :32], err_msg=label)
            assert not got.flags.writeable, label  # shared data: read-only


def test_missing_keys_name_key_and_database(stores):
    root, _, dbs = stores
    b = LmdbBackend(str(dbs['raw']))
    with pytest.raises(KeyError, match=r"im9_s001.*set_HR_sub_raw\.lmdb") as e:
        b.get('im9_s001')
    assert "did you mean 'im" in str(e.value)  # closest-key hint
    with pytest.raises(KeyError, match='nope'):
        MemoryBackend(str(root / 'HR')).get('nope')
    with pytest.raises(FileNotFoundError, match='nope.png'):
        DiskBackend(str(root / 'HR')).get('nope.png')
    assert 'im0_s001' in b and 'im9_s001' not in b and b.path_of('k').endswith('.lmdb:k')


def test_lmdb_opens_lazily_and_pickles_without_handle(stores):
    _, imgs, dbs = stores
    b = LmdbBackend(str(dbs['png']))
    assert b._env is None  # nothing opened until the first read
    first = b.get('im0_s001')
    assert b._env is not None
    clone = pickle.loads(pickle.dumps(b))
    assert clone._env is None
    np.testing.assert_array_equal(clone.get('im0_s001'), first)


def test_bad_backend_options(stores, tmp_path):
    root, _, _ = stores
    with pytest.raises(KeyError, match="'lmdb'"):
        build_backend({'type': 'lmbd'}, str(root))
    with pytest.raises(KeyError, match="readahed.*readahead"):
        build_backend({'type': 'lmdb', 'readahed': True}, str(root))
    with pytest.raises(KeyError, match="'type'"):
        build_backend({}, str(root))
    with pytest.raises(FileNotFoundError, match='no data.mdb'):
        LmdbBackend(str(tmp_path))
    with pytest.raises(FileNotFoundError, match='not found'):
        DiskBackend(str(tmp_path / 'missing'))


def test_raw_value_size_mismatch_is_detected(stores, tmp_path):
    import shutil

    _, _, dbs = stores
    copy = tmp_path / 'bad.lmdb'
    shutil.copytree(dbs['raw'], copy)
    meta = (copy / 'meta_info.txt').read_text().replace('im0_s001 (32,32,3)', 'im0_s001 (31,32,3)')
    (copy / 'meta_info.txt').write_text(meta)
    with pytest.raises(ValueError, match=r'im0_s001.*\(31,32,3\)'):
        LmdbBackend(str(copy)).get('im0_s001')
    (copy / 'meta_info.txt').write_text(meta.replace(' raw', ' 1'))  # claims PNG values
    with pytest.raises(ValueError, match='format marker'):
        LmdbBackend(str(copy)).get('im1_s001')
    (copy / 'meta_info.txt').write_text('garbage line\n')
    with pytest.raises(ValueError, match='meta_info.txt:1'):
        LmdbBackend(str(copy))
