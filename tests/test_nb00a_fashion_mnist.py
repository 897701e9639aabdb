"""Fashion-MNIST in exp.nb_00a: the from-scratch IDX reader (and its refusals), the four
DataFiles, fetched through find_file from their sources in order (Debian's folder, the authors'
server, then the Debian package), ending with the offline fallback (a .deb built here, never
downloaded), and the PNG folder (atomic, built once), made from a few random images. Every test
has its own empty cache and no $DLF_DATA."""
import gzip, hashlib, struct

import numpy as np
import PIL.Image
import pytest
import torch

from exp import nb_00a
from exp.nb_00a import (FASHION_CLASSES, FASHION_MNIST, DebSource, UrlSource, fashion_image_folder,
                        read_idx)

NAMES = ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte',
         't10k-labels-idx1-ubyte']


# every test with its own empty cache, no $DLF_DATA, and its own .deb downloads (conftest.py)
pytestmark = pytest.mark.usefixtures('isolated')


def idx_bytes(a, code):
    "IDX bytes of the array `a` with type code `code` (values written big-endian)."
    big = {0x08: '>u1', 0x09: '>i1', 0x0B: '>i2', 0x0C: '>i4', 0x0D: '>f4', 0x0E: '>f8'}[code]
    header = bytes([0, 0, code, a.ndim]) + struct.pack(f'>{a.ndim}I', *a.shape)
    return header + a.astype(big).tobytes()


# --- the IDX reader ------------------------------------------------------------------------------

@pytest.mark.parametrize('code,dtype', [
    (0x08, np.uint8),
    (0x09, np.int8),
    (0x0B, np.int16),
    (0x0C, np.int32),
    (0x0D, np.float32),
    (0x0E, np.float64),
])
def test_read_idx_round_trips_every_type(tmp_path, code, dtype):
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    if code == 0x08: a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / 'f').write_bytes(idx_bytes(a, code))
    got = read_idx(tmp_path / 'f')
    assert got.shape == (2, 3, 4) and np.array_equal(got, a) and got.dtype.isnative
    got[0, 0, 0] = 1   # a writable copy, so torch.from_numpy does not warn


def test_read_idx_one_dimension_is_labels(tmp_path):
    (tmp_path / 'labels').write_bytes(idx_bytes(np.array([9, 0, 3], np.uint8), 0x08))
    assert read_idx(tmp_path / 'labels').tolist() == [9, 0, 3]


@pytest.mark.parametrize('data,message', [
    (b'', r'magic number is missing'),
    (b'\x89PNG\r\n\x1a\n', r'not an IDX file: its magic number is 89504e47'),
    # unknown type code
    (bytes([0, 0, 0x07, 1]) + struct.pack('>I', 1) + b'x', r'not an IDX file'),
    # second byte not 0
    (bytes([0, 1, 0x08, 1]) + struct.pack('>I', 1) + b'x', r'not an IDX file'),
    (bytes([0, 0, 0x08, 3]) + struct.pack('>2I', 2, 2),
     r'header cut short: 3 dimensions need 16 bytes'),
    (bytes([0, 0, 0x08, 2]) + struct.pack('>2I', 2, 3) + bytes(5),
     r'promises \(2, 3\) values of uint8 \(6 bytes\), but 5'),
    (bytes([0, 0, 0x08, 2]) + struct.pack('>2I', 2, 3) + bytes(7), r'but 7 bytes follow'),
    (bytes([0, 0, 0x0C, 1]) + struct.pack('>I', 2) + bytes(4),
     r'\(2,\) values of >i4 \(8 bytes\), but 4'),
])
def test_malformed_idx_is_refused_naming_the_file(tmp_path, data, message):
    path = tmp_path / 'bad-idx'
    path.write_bytes(data)
    with pytest.raises(ValueError, match=message) as e:
        read_idx(path)
    assert str(path) in str(e.value)


# --- the four DataFiles --------------------------------------------------------------------------

def test_fashion_files_sources_in_order_system_folder_server_debian():
    sums = ['c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888',   # in NAMES' order
            'bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9',
            '5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b',
            '0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34']
    assert [(df.name, df.sha256) for df in FASHION_MNIST] == list(zip(NAMES, sums))
    for df in FASHION_MNIST:
        system, upstream, deb = df.sources
        debian_path = f'/usr/share/datasets/fashion-mnist/{df.name}.gz'
        server = 'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com'
        assert system == UrlSource(f'file://{debian_path}', gunzip=True)
        assert upstream == UrlSource(f'{server}/{df.name}.gz', gunzip=True)
        assert deb == DebSource('dataset-fashion-mnist', f'.{debian_path}', gunzip=True)


def fake_fashion(n_train=12, n_test=5):
    "Small stand-ins for the four decompressed files: {name: bytes}, plus the arrays."
    rng = np.random.default_rng(0)
    arrays = {'train-images-idx3-ubyte': rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              'train-labels-idx1-ubyte': (np.arange(n_train) % 10).astype(np.uint8),
              't10k-images-idx3-ubyte': rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              't10k-labels-idx1-ubyte': (np.arange(n_test) % 10).astype(np.uint8)}
    return {k: idx_bytes(a, 0x08) for k, a in arrays.items()}, arrays


@pytest.fixture
def offline(tmp_path, monkeypatch, make_deb, answer_apt):
    """Fashion-MNIST's DataFiles rebuilt for stand-in files: no Debian folder, an unreachable
    server, and apt-get download answered by a .deb laid out like Debian's (counted)."""
    raw, arrays = fake_fashion()
    members = {f'./usr/share/datasets/fashion-mnist/{n}.gz': gzip.compress(raw[n]) for n in NAMES}
    deb = make_deb(tmp_path / 'dataset-fashion-mnist_all.deb', members)
    downloads = answer_apt(deb)
    monkeypatch.setattr(nb_00a, '_FASHION_SYSTEM', tmp_path / 'no-debian-folder')
    monkeypatch.setattr(nb_00a, '_FASHION_URL', (tmp_path / 'no-server').as_uri() + '/')
    files = tuple(nb_00a._fashion_file(n, hashlib.sha256(raw[n]).hexdigest()) for n in NAMES)
    monkeypatch.setattr(nb_00a, 'FASHION_MNIST', files)
    return arrays, downloads, files


def test_offline_fallback_reads_all_four_from_one_deb(offline):
    arrays, downloads, _ = offline
    x_train, y_train, x_test, y_test = nb_00a.get_fashion_mnist()
    assert downloads == ['dataset-fashion-mnist']   # one download serves the four files
    assert x_train.dtype == torch.uint8 and y_train.dtype == torch.int64
    assert x_train.shape == (12, 28, 28)
    assert torch.equal(x_train, torch.from_numpy(arrays['train-images-idx3-ubyte']))
    assert torch.equal(y_test, torch.from_numpy(arrays['t10k-labels-idx1-ubyte']).long())
    cache = nb_00a.cache_dir()
    # cached decompressed, nothing else
    assert sorted(p.name for p in cache.iterdir()) == sorted(NAMES)
    nb_00a.get_fashion_mnist()
    assert downloads == ['dataset-fashion-mnist']   # the second time from the cache


def test_every_source_failing_lists_them_in_order(offline, monkeypatch):
    def apt_download(package, folder, timeout=300):
        raise OSError('apt-get download dataset-fashion-mnist failed: unable to locate package')
    monkeypatch.setattr(nb_00a, '_apt_download', apt_download)
    with pytest.raises(FileNotFoundError) as e:
        nb_00a.get_fashion_mnist()
    msg = str(e.value)
    order = ['cache', 'no-debian-folder/train-images-idx3-ubyte.gz',
             'no-server/train-images-idx3-ubyte.gz', 'apt-get download dataset-fashion-mnist']
    positions = [msg.index(s) for s in order]
    assert positions == sorted(positions) and 'Tried:' in msg


def test_a_file_in_dlf_data_comes_first(offline, tmp_path, monkeypatch):
    arrays, downloads, files = offline
    mine = tmp_path / 'mine'; mine.mkdir()
    for n in NAMES: (mine / n).write_bytes(idx_bytes(arrays[n], 0x08))
    monkeypatch.setenv('DLF_DATA', str(mine))
    x_train, *_ = nb_00a.get_fashion_mnist()
    assert downloads == []
    assert torch.equal(x_train, torch.from_numpy(arrays['train-images-idx3-ubyte']))


def test_class_names_are_folder_names():
    assert len(FASHION_CLASSES) == 10 == len(set(FASHION_CLASSES))
    assert all(c.isidentifier() and c == c.lower() for c in FASHION_CLASSES)


# --- the image fashion_folder ---------------------------------------------------------------------

def test_image_folder_holds_every_image_pixel_for_pixel(fake_fashion_mnist, fashion_folder):
    (x_train, y_train, x_test, y_test), _ = fake_fashion_mnist
    for split, xs, ys in (('train', x_train, y_train), ('valid', x_test, y_test)):
        files = sorted((fashion_folder / split).rglob('*.png'))
        assert len(files) == len(xs)
        for fn in files:
            i = int(fn.stem)
            assert fn.parent.name == FASHION_CLASSES[ys[i]]
            assert np.array_equal(np.asarray(PIL.Image.open(fn)), xs[i].numpy())
    assert 'train 40' in (fashion_folder / 'COMPLETE').read_text()
    # no temporary fashion_folder left
    assert [p.name for p in fashion_folder.parent.iterdir()] == ['png']


def test_image_folder_is_built_once(fake_fashion_mnist, fashion_folder):
    _, calls = fake_fashion_mnist
    stamp = (fashion_folder / 'COMPLETE').stat().st_mtime_ns
    assert fashion_image_folder(fashion_folder) == fashion_folder and calls == [1]
    assert (fashion_folder / 'COMPLETE').stat().st_mtime_ns == stamp


def full_disk(job): raise OSError('disk full')   # module level: the pool pickles it by name


def test_failed_build_leaves_nothing_and_half_built_is_never_taken(fake_fashion_mnist, tmp_path,
                                                                   monkeypatch):
    dest = tmp_path / 'png'
    half = tmp_path / '.png-building-killed'   # what a build killed half-way leaves
    (half / 'train' / 'coat').mkdir(parents=True)
    monkeypatch.setattr(nb_00a, '_write_pngs', full_disk)   # raises in the worker processes
    with pytest.raises(OSError, match='disk full'):
        fashion_image_folder(dest)
    assert not dest.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['.png-building-killed']
    monkeypatch.undo()
    monkeypatch.setattr(nb_00a, 'get_fashion_mnist', lambda: fake_fashion_mnist[0])
    assert (fashion_image_folder(dest) / 'COMPLETE').is_file()


def test_a_folder_not_built_here_is_refused_untouched(fake_fashion_mnist, tmp_path):
    dest = tmp_path / 'png'; dest.mkdir()
    (dest / 'mine.txt').write_text('mine')
    with pytest.raises(FileExistsError, match='has no COMPLETE file'):
        fashion_image_folder(dest)
    assert [p.name for p in dest.iterdir()] == ['mine.txt'] and fake_fashion_mnist[1] == []
