"""ckdsr.data.image_io: RGB uint8 reads, greyscale -> 3 channels, PNG bytes, clear errors."""
import cv2
import numpy as np
import pytest

from ckdsr.data.image_io import (ImageReadError, decode_image, encode_png, read_image, read_image_size,
                           write_png)


def _rand_img(h=13, w=17, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_png_roundtrip_is_rgb_and_exact(tmp_path):
    img = _rand_img()
    write_png(tmp_path / 'a.png', img)
    back = read_image(tmp_path / 'a.png')
    assert back.dtype == np.uint8 and back.shape == (13, 17, 3)
    np.testing.assert_array_equal(back, img)
    # the file itself is BGR, as every cv2 / BasicSR tool expects
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / 'a.png'))[:, :, ::-1], img)
    np.testing.assert_array_equal(decode_image(encode_png(img, 9)), img)
    assert not list(tmp_path.glob('.*tmp*'))  # the atomic write left no temp file


def test_greyscale_reads_as_three_equal_channels(tmp_path, benchmark_dir):
    bridge = benchmark_dir / 'Set14' / 'HR' / 'bridge.png'
    assert cv2.imread(str(bridge), cv2.IMREAD_UNCHANGED).ndim == 2  # truly single-channel file
    img = read_image(bridge)
    assert img.shape[2] == 3
    assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()
    grey = np.arange(60, dtype=np.uint8).reshape(6, 10)
    write_png(tmp_path / 'g.png', grey)
    np.testing.assert_array_equal(read_image(tmp_path / 'g.png'), np.repeat(grey[..., None], 3, 2))


def test_corrupt_and_missing_files_name_the_file(tmp_path):
    good = encode_png(_rand_img(40, 40))
    bad = tmp_path / 'truncated.png'
    bad.write_bytes(good[:len(good) // 3])
    with pytest.raises(ImageReadError, match='truncated.png'):
        read_image(bad)
    junk = tmp_path / 'junk.png'
    junk.write_bytes(b'not an image at all')
    with pytest.raises(ImageReadError, match='junk.png'):
        read_image(junk)
    empty = tmp_path / 'empty.png'
    empty.write_bytes(b'')
    with pytest.raises(ImageReadError, match='empty.png'):
        read_image(empty)
    with pytest.raises(FileNotFoundError, match='nope.png'):
        read_image(tmp_path / 'nope.png')
    with pytest.raises(ImageReadError, match='key7'):
        decode_image(b'xx', name='key7')


def test_read_image_size_from_png_header(tmp_path, benchmark_dir):
    for p in sorted((benchmark_dir / 'Set14' / 'HR').glob('*.png'))[:4]:
        assert read_image_size(p) == read_image(p).shape[:2]
    cv2.imwrite(str(tmp_path / 'x.bmp'), _rand_img(7, 9))
    assert read_image_size(tmp_path / 'x.bmp') == (7, 9)


def test_write_png_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match='.png'):
        write_png(tmp_path / 'a.jpg', _rand_img())
    with pytest.raises(TypeError):
        write_png(tmp_path / 'a.png', _rand_img().astype(np.float32))
