"""The GPU check: does the project run on one CUDA GPU as it runs on the CPU? At most 5 minutes.

    python gpu_check.py                      # the check (make gpu-check)
    python gpu_check.py bundle [PATH]        # on a CPU machine with network (make gpu-bundle)
    python gpu_check.py install [PATH]       # on the GPU machine, offline: the bundle installed

The check prints the device, its compute capability, the CUDA and cuDNN versions, bfloat16 (native)
and the TF32 settings, then runs, with the torch this Python finds (2.11 or later; its CUDA build
is the machine's, never replaced):
- whole test files: the device rule's and those of chapters 04, 05b, 06, 07, 09b, 10c, 11 and 12
  (`FULL_TESTS`), the chapters whose code a GPU changes;
- from every other test file that mentions `torch.cuda`, the tests whose name or parameters say
  cuda or gpu (pytest -k): the ones that skip, or are not even generated, without a GPU;
- notebooks 04, 05b and 10c through run_notebook.py (nothing saved).
The three steps run side by side, and any still running when the 5 minutes are up is stopped.
On a machine without a CUDA GPU it prints one line saying it skipped, and exits 0.

A GPU machine may have no network, so `bundle` gathers the rest on a machine that has one, in
one xz-compressed tar, gpu-bundle.tar.xz (54 MB here; refused over 60 MB): the MNIST and
Fashion-MNIST data caches, and wheels of the requirements but torch (the GPU machine's own), ruff
(lint only), numba (only notebook 01 uses it), rdata (00a's novels reader) and scipy (a
test's reference). The pure-Python wheels are there once, compiled
ones (pyzmq, rpds-py, ...) for each CPython in `PYTHONS`, on x86-64 Linux. 3.10 is left out: pip
picks the wheels of a dependency needed only below 3.11 (tomli, for pytest) by the Python running
it, not the target's. numpy, matplotlib and Pillow are not in it either: their wheels for one Python
alone (about 40 MB with matplotlib's compiled needs) would not fit beside the data, and every
PyTorch image we know of has them; `install` names any that is missing. `install` pip-installs the
wheels into the Python that runs it, with no index (what is already installed and fits is kept),
and unpacks the data into the data cache (00a's `cache_dir()`), leaving a file already there alone.
"""
import importlib
import importlib.metadata
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

try:   # nbio reads notebooks with nbformat, which a GPU machine lacks until `install` has run
    import nbio
    from nbio import ToolError, UsageError
except ImportError as e:
    nbio, NBIO_MISSING = None, e.name
    class ToolError(Exception): "A failure reported in one line (nbio's, when nbio is there)."
    UsageError = ToolError

REPO = Path(__file__).resolve().parent   # as nbio.REPO: the tools sit at the repo root

BUDGET_S = 300
MIN_TORCH = (2, 11)
FULL_TESTS = ('test_device_rule.py', 'test_nb04_*.py', 'test_nb05b_*.py', 'test_nb06_*.py',
              'test_nb07_*.py', 'test_nb09b_*.py', 'test_nb10c_*.py', 'test_nb11_*.py',
              'test_nb12_*.py')
CUDA_KEYWORDS = 'cuda or gpu'
NOTEBOOKS = ('04_callbacks', '05b_early_stopping', '10c_mixed_precision')
BUNDLE = 'gpu-bundle.tar.xz'
MAX_BUNDLE_MB = 60
# requirements.txt entries the bundle leaves out, and why
NOT_BUNDLED = {'torch': "the GPU machine's own CUDA build is used", 'ruff': 'lint only',
               'numba': 'only notebook 01 uses it, and the check does not run it',
               'rdata': "only 00a's novels reader uses it (it pulls in pandas), and the check "
                        'does not fetch the novels',
               'scipy': "tests only (15b's FID against scipy.linalg.sqrtm), not among the "
                        "check's tests"}
# left out for their size: the GPU machine must have them (install says so if it has not)
EXPECTED_THERE = ('numpy', 'matplotlib', 'Pillow')
PYTHONS = ('3.11', '3.12', '3.13', '3.14')
PLATFORMS = ('manylinux_2_28_x86_64', 'manylinux_2_27_x86_64', 'manylinux_2_26_x86_64',
             'manylinux_2_24_x86_64', 'manylinux_2_17_x86_64', 'manylinux2014_x86_64',
             'manylinux2010_x86_64', 'manylinux_2_12_x86_64', 'manylinux_2_5_x86_64',
             'manylinux1_x86_64')
REQS_NAME = 'requirements-gpu.txt'


# ---- the check ---------------------------------------------------------------------------------

def gpu_or_skip():
    """torch, when this Python has it and it sees a CUDA GPU; else None after printing the one
    line that says why the check skipped. A GPU without torch is an error, not a skip."""
    try: import torch
    except ImportError:
        if Path('/dev/nvidiactl').exists():
            raise ToolError(f'a GPU is here, but {sys.executable} cannot import torch: run the '
                            'Python that has the CUDA build (make gpu-check GPU_PYTHON=...)')
        print(f'gpu_check: skipped: no torch in {sys.executable}, and no GPU here')
        return None
    if not torch.cuda.is_available():
        build = f'CUDA {torch.version.cuda} build' if torch.version.cuda else 'no CUDA in its build'
        print(f'gpu_check: skipped: no CUDA GPU here (torch {torch.__version__}, {build})')
        return None
    version = tuple(int(n) for n in re.findall(r'\d+', torch.__version__)[:2])
    if version < MIN_TORCH:
        raise ToolError(f'torch {torch.__version__} is older than the '
                        f'{".".join(map(str, MIN_TORCH))} the project needs')
    return torch


def describe(torch):
    "The lines that say what this GPU and this torch are."
    d = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(d)
    return [f'device: {props.name} (cuda:{d}), {props.total_memory / 2**30:.0f} GiB, '
            f'compute capability {props.major}.{props.minor}',
            f'torch {torch.__version__}, CUDA {torch.version.cuda}, '
            f'cuDNN {torch.backends.cudnn.version()}, Python {sys.version.split()[0]}',
            'bfloat16 native (not emulated): '
            f'{torch.cuda.is_bf16_supported(including_emulation=False)}; TF32 for matmul '
            f'{torch.backends.cuda.matmul.allow_tf32}, for cuDNN convolutions '
            f'{torch.backends.cudnn.allow_tf32} (float32 matmul precision '
            f'{torch.get_float32_matmul_precision()!r})']


def has_package(name):
    "Whether this Python has the distribution `name` installed."
    try: importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError: return False
    return True


def missing_packages():
    "The requirements (but those the check does without) that this Python does not have."
    names = [requirement_name(r) for r in bundled_requirements()] + list(EXPECTED_THERE)
    return [n for n in names if not has_package(n)]


def missing_data():
    "The data files the tests and notebooks read that are not in the data cache."
    from exp.nb_00a import FASHION_MNIST, MNIST, cache_dir
    return [str(cache_dir() / df.name) for df in (MNIST, *FASHION_MNIST)
            if not (cache_dir() / df.name).is_file()]


def chosen_tests(tests=REPO / 'tests'):
    """(whole files, files whose CUDA tests alone run): paths relative to the repo."""
    full = sorted({p for pattern in FULL_TESTS for p in tests.glob(pattern)})
    cuda = [p for p in sorted(tests.glob('test_*.py'))   # not this script's own tests
            if p not in full and p.name != 'test_gpu_check.py'
            and 'torch.cuda' in p.read_text(encoding='utf-8')]
    def rel(ps): return [str(p.relative_to(REPO)) for p in ps]
    return rel(full), rel(cuda)


def steps(python=sys.executable):
    "name -> command line of each step of the check (run from the repo's root)."
    full, cuda = chosen_tests()
    pytest = [python, '-m', 'pytest', '-q', '--tb=line', '-o', 'addopts=', '-rfE',
              '-p', 'no:cacheprovider']
    return {'notebooks': [python, 'run_notebook.py', *(f'nbs/{n}.ipynb' for n in NOTEBOOKS),
                          '--jobs', str(len(NOTEBOOKS))],
            'test files': pytest + full,
            'CUDA tests': pytest + ['-k', CUDA_KEYWORDS] + cuda}


def child_env():
    "Our environment with the repo root first on PYTHONPATH: no install of the project needed."
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(p for p in [str(REPO), env.get('PYTHONPATH')] if p)
    return env


def start(cmd):
    return subprocess.Popen(cmd, cwd=REPO, env=child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def finish(proc, deadline):
    "(exit status or None if it ran out of time, its output); a late one is killed, children too."
    try: out, _ = proc.communicate(timeout=max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return None, out
    return proc.returncode, out


def check(budget=BUDGET_S):
    "The GPU check; True when every step passed within `budget` seconds."
    torch = gpu_or_skip()
    if torch is None: return True
    for line in describe(torch): print(line)
    missing = missing_packages()
    if missing:
        raise ToolError(f'{sys.executable} lacks {", ".join(missing)}: install the bundle first '
                        f'(python gpu_check.py install {BUNDLE})')
    absent = missing_data()
    if absent: raise ToolError(f'no data file {", ".join(absent)}: install the bundle first')
    t0 = time.monotonic()
    deadline = t0 + budget
    procs = {name: start(cmd) for name, cmd in steps().items()}   # side by side, one GPU
    try: results = {name: finish(proc, deadline) for name, proc in procs.items()}
    finally:   # Ctrl-C too: the steps run in sessions of their own, which it does not reach
        for proc in procs.values():
            if proc.poll() is None: os.killpg(proc.pid, signal.SIGKILL)
    ok = True
    for name, (status, out) in results.items():
        print(f'--- {name}: ' + ('passed' if status == 0 else 'FAILED' if status is not None
                                 else f'stopped: still running after {budget} s'))
        print(out.rstrip())
        ok = ok and status == 0
    print(f'gpu_check: {"passed" if ok else "FAILED"} in {time.monotonic() - t0:.0f} s '
          f'(at most {budget} s)')
    return ok


# ---- the bundle ----------------------------------------------------------------------------------

def requirement_name(line):
    "The distribution a requirements line names: 'torch==2.13.0' -> 'torch'."
    return re.split(r'[\s<>=!~;\[]', line.strip(), maxsplit=1)[0]


def requirements(path=REPO / 'requirements.txt'):
    "The requirement lines of `path`, comments and blank lines left out."
    lines = Path(path).read_text(encoding='utf-8').splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith('#')]


def bundled_requirements(path=REPO / 'requirements.txt'):
    "The requirements whose wheels the bundle holds (see NOT_BUNDLED and EXPECTED_THERE)."
    leave = set(NOT_BUNDLED) | set(EXPECTED_THERE)
    return [r for r in requirements(path) if requirement_name(r) not in leave]


def download_command(python_version, dest):
    "pip's command line that fetches the bundled requirements' wheels for one CPython version."
    platforms = [a for p in PLATFORMS for a in ('--platform', p)]
    return [sys.executable, '-m', 'pip', 'download', '--quiet', '--only-binary=:all:',
            '--implementation', 'cp', '--python-version', python_version, *platforms,
            '--dest', str(dest), *bundled_requirements()]


def data_files():
    "(name in the bundle, path) of each data file, fetched (and checked) if need be."
    from exp.nb_00a import FASHION_MNIST, MNIST, find_file
    return [(df.name, find_file(df)) for df in (MNIST, *FASHION_MNIST)]


def members(wheels, data):
    """(name in the tar, path) of everything the bundle holds: the requirements the install step
    asks pip for (no path: written from `bundled_requirements`), the wheels in folder `wheels`,
    the data files `data` (as `data_files` gives them)."""
    whls = sorted(Path(wheels).glob('*.whl'))
    if not whls: raise ToolError(f'no wheels in {wheels}')
    return ([(REQS_NAME, None)] + [(f'wheels/{w.name}', w) for w in whls]
            + [(f'data/{name}', path) for name, path in data])


def stored(wheel):
    """The wheel's bytes re-zipped without compression: the tar's xz then compresses the Python
    source in it about twice as well as zip's own deflate did. pip installs it the same."""
    out = io.BytesIO()
    with zipfile.ZipFile(wheel) as zin, zipfile.ZipFile(out, 'w', zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            zout.writestr(info, zin.read(info), compress_type=zipfile.ZIP_STORED)
    return out.getvalue()


def content(name, path):
    "The bytes the bundle holds under `name`."
    if path is None:
        return ''.join(f'{r}\n' for r in bundled_requirements() + list(EXPECTED_THERE)).encode()
    return stored(path) if name.endswith('.whl') else Path(path).read_bytes()


def add_bytes(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
    tar.addfile(info, io.BytesIO(data))


def write_bundle(dest, parts):
    """Write the tar.xz `dest` from `members`' list; over MAX_BUNDLE_MB it is refused and nothing
    is left behind. Returns its size in MB."""
    def size_ok(tmp):
        mb = os.path.getsize(tmp) / 1e6
        if mb > MAX_BUNDLE_MB:
            raise ToolError(f'the bundle would be {mb:.1f} MB, over the {MAX_BUNDLE_MB} MB '
                            'allowed; nothing written')
    with nbio.atomic_open(dest, 'wb', check=size_ok) as f:
        with tarfile.open(fileobj=f, mode='w:xz') as tar:
            for name, path in parts: add_bytes(tar, name, content(name, path))
    return os.path.getsize(dest) / 1e6


def bundle(dest=REPO / BUNDLE):
    "Download the wheels, gather the data, write the bundle `dest`."
    with tempfile.TemporaryDirectory() as wheels:
        for v in PYTHONS:
            res = subprocess.run(download_command(v, wheels), capture_output=True, text=True)
            if res.returncode:
                raise ToolError(f'pip could not fetch the wheels for Python {v}: '
                                + (res.stderr.strip().splitlines() or ['(no message)'])[-1])
        mb = write_bundle(dest, members(wheels, data_files()))
    print(f'gpu_check: wrote {dest}: {mb:.1f} MB (wheels for CPython {", ".join(PYTHONS)} '
          f'on x86-64 Linux, MNIST and Fashion-MNIST)')


# ---- install -------------------------------------------------------------------------------------

def unpack_data(tar, cache):
    "The bundle's data files into `cache`; a file already there is left alone."
    from nbio import atomic_open   # importable now that the wheels are installed
    cache.mkdir(parents=True, exist_ok=True)
    written = []
    for m in tar.getmembers():
        if not m.name.startswith('data/'): continue
        name = Path(m.name).name   # by base name only: nothing lands outside `cache`
        if (cache / name).exists(): continue
        with atomic_open(cache / name) as f: shutil.copyfileobj(tar.extractfile(m), f)
        written.append(name)
    return written


def install(path=REPO / BUNDLE):
    "pip-install the bundle's wheels (no index) into this Python; its data into the data cache."
    path = Path(path)
    if not path.is_file(): raise ToolError(f'no bundle at {path}: make gpu-bundle writes one')
    if not has_package('torch'):
        raise ToolError(f'{sys.executable} has no torch: install into the Python that has the '
                        "GPU's CUDA build of torch")
    absent = [n for n in EXPECTED_THERE if not has_package(n)]
    if absent:
        raise ToolError(f'{sys.executable} lacks {", ".join(absent)}, which the bundle leaves out '
                        'for their size: bring their wheels for this Python and pip-install them')
    with tarfile.open(path) as tar, tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / 'wheels').mkdir()
        for m in tar.getmembers():   # by base name only: nothing lands outside `tmp`
            if m.name == REQS_NAME: dest = Path(tmp) / REQS_NAME
            elif m.name.startswith('wheels/'): dest = Path(tmp) / 'wheels' / Path(m.name).name
            else: continue
            dest.write_bytes(tar.extractfile(m).read())
        res = subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet', '--no-index',
                              '--find-links', str(Path(tmp) / 'wheels'),
                              '-r', str(Path(tmp) / REQS_NAME)], capture_output=True, text=True)
        if res.returncode:
            raise ToolError('pip install from the bundle failed: '
                            + (res.stderr.strip().splitlines() or ['(no message)'])[-1])
        importlib.invalidate_caches()
        from exp.nb_00a import cache_dir
        written = unpack_data(tar, cache_dir())
    print(f'gpu_check: installed the wheels into {sys.executable}; data in {cache_dir()}: '
          + (f'wrote {", ".join(written)}' if written else 'every file was there already'))


def main(command='check', path=None):
    """check (the default): the GPU check. bundle [PATH]: write the bundle (default
    gpu-bundle.tar in the repo). install [PATH]: install a bundle here, offline."""
    if command == 'check':
        if path is not None: raise UsageError('check takes no path')
        if not check(): sys.exit(1)
    elif command == 'bundle': bundle(REPO / BUNDLE if path is None else Path(path))
    elif command == 'install': install(REPO / BUNDLE if path is None else Path(path))
    else: raise UsageError(f'command must be check, bundle or install, got {command!r}')


def bootstrap(argv):
    """The command line when nbio (so fire, nbformat) cannot be imported yet: `install [PATH]`
    works, the check still skips in one line on a machine without a GPU, the rest is refused."""
    try:
        if argv[:1] == ['install'] and len(argv) <= 2: return main(*argv)
        if argv in ([], ['check']) and gpu_or_skip() is None: return None
        raise ToolError(f'{sys.executable} lacks {NBIO_MISSING}: install the bundle first '
                        f'(python gpu_check.py install {BUNDLE})')
    except ToolError as e:
        print(f'gpu_check: {e}', file=sys.stderr)
        sys.exit(1)


if __name__ == '__main__':
    if nbio is None: bootstrap(sys.argv[1:])
    else: nbio.run_cli(main)
