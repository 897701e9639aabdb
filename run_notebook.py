"""Run notebooks top to bottom in a fresh kernel and report pass/FAIL, one line each.

    python run_notebook.py nbs/01_matmul.ipynb [more ...] [--save] [--timeout 1200]
    python run_notebook.py --all [--save]

Each notebook runs in a new `python3` kernel whose working directory is the notebook's
folder and whose PYTHONPATH starts with the repo root (the folder above the notebook's),
so `from exp.nb_01 import *` works. `--save` writes the executed outputs back into the
notebook, and only when every cell ran cleanly and the file was not changed while it ran (your
edits win: nothing is written). The exit status is 1 if any notebook failed.

Ctrl-C (SIGINT) stops everything: the running cell is interrupted, the kernel shut down, nothing
saved, and one line names the notebook and cell; exit status 130. A second Ctrl-C kills the kernel
at once. Output never fails on the terminal's encoding (unencodable characters are escaped).
"""
import asyncio
import builtins
import contextlib
import hashlib
import os
import re
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import fire
import nbformat
import zmq
from jupyter_client import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from nbio import NotebookError, atomic_open, parse_notebook

NBS = Path(__file__).resolve().parent / 'nbs'
SOURCE_LINES = 3     # lines of the failing cell's source to show
TRACEBACK_LINES = 6  # last lines of the traceback to show
ANSI = re.compile(r'\x1b\[[0-9;?]*[A-Za-z]')


@dataclass
class Result:
    path: Path
    ok: bool
    seconds: float
    message: str = ''  # why it failed; empty when it passed


class NotebookFailure(Exception):
    "A notebook failed; the message already says which file or cell, and why."


class Interrupted(KeyboardInterrupt):
    "Ctrl-C stopped the run; the message names the notebook and cell it stopped in."


# ---- reading and writing notebooks -------------------------------------------------

def read_bytes(path):
    "The notebook file's bytes, or NotebookFailure naming the file."
    if not path.is_file(): raise NotebookFailure(f'no such file: {path}')
    try: return path.read_bytes()
    except OSError as e: raise NotebookFailure(f'cannot read {path}: {e.strerror or e}') from None


def load_notebook(path, data):
    "Parse and validate the notebook read from `path` as `data`, or raise NotebookFailure."
    try: return parse_notebook(data, path)
    except NotebookError as e: raise NotebookFailure(f'not a valid notebook: {path} ({e.reason})') from None


def digest(data): return hashlib.sha256(data).hexdigest()


def save_notebook(nb, path, read_digest):
    """Write `nb` over `path` atomically, but only if the file still holds what was read (hash
    `read_digest`): edits made while the notebook ran are never overwritten."""
    def unchanged(_tmp):
        if digest(read_bytes(path)) != read_digest:
            raise NotebookFailure(f'{path} changed on disk while it ran: not saved (the file on disk '
                                  'is kept as it is); run it again to save fresh outputs')
    try:
        with atomic_open(path, 'w', check=unchanged) as f: nbformat.write(nb, f)
    except OSError as e: raise NotebookFailure(f'could not save {path}: {e}') from None


# ---- describing a failure ----------------------------------------------------------

def first_line(e):
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def strip_ansi(text): return ANSI.sub('', text)


def cell_name(nb, index):
    "'cell 7 (code cell 4)': position among all cells, and among code cells, from 1."
    code_no = sum(c.cell_type == 'code' for c in nb.cells[:index + 1])
    return f'cell {index + 1} (code cell {code_no})'


def source_head(cell, n=SOURCE_LINES):
    "The first `n` lines of a cell's source, indented, with '...' if there is more."
    lines = cell.source.strip().splitlines()
    head = [f'    | {line}' for line in lines[:n]]
    return head + (['    | ...'] if len(lines) > n else [])


def error_lines(cell, exc):
    "'ename: evalue' plus the last lines of the traceback, from the cell's error output."
    err = next((o for o in cell.get('outputs', []) if o.output_type == 'error'), None)
    if err is None: return [f'{exc.ename}: {exc.evalue}']
    headline = f'{err.ename}: {err.evalue}'
    tb = strip_ansi('\n'.join(err.traceback)).splitlines()
    tb = [l for l in tb if l.strip() and l.strip('-') and l.strip() != headline.strip()]
    return [headline] + [f'    {l}' for l in tb[-TRACEBACK_LINES:]]


def describe(nb, index, what):
    "A failure message: which cell, its first lines, then `what` went wrong."
    if index is None: return '\n'.join(what)  # failed before any cell ran
    return '\n'.join([f'{cell_name(nb, index)}:', *source_head(nb.cells[index]), *what])


# ---- running -----------------------------------------------------------------------

THREAD_VARS = ('OMP_NUM_THREADS', 'MKL_NUM_THREADS')


def kernel_env(repo_root):
    "The environment for the kernel: ours, with the repo root first on PYTHONPATH."
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(p for p in [str(repo_root), env.get('PYTHONPATH')] if p)
    env.setdefault('PYDEVD_DISABLE_FILE_VALIDATION', '1')  # silence a debugger warning
    # One thread unless the caller says otherwise: a float sum's rounding depends on how it is split
    # across threads, so only a fixed thread count lets a rerun reproduce the committed figures (and
    # the asserts on them) bit for bit.
    for var in THREAD_VARS: env.setdefault(var, '1')
    return env


def start_options(repo_root):
    "How to start the kernel: our env plus the repo root, and encrypted traffic where supported."
    options = {'env': kernel_env(repo_root)}
    if 'transport_encryption' in KernelManager.class_trait_names() and zmq.has('curve'):
        options['transport_encryption'] = 'auto'  # else ipykernel warns about plain TCP
    return options


class StopOnSigint:
    """Ctrl-C while a notebook runs. nbclient's own SIGINT handler (added with the kernel) kills the
    kernel under the running cell and leaves a failing poll task that prints a traceback later.
    Once the kernel is up, ours replaces it: the first Ctrl-C interrupts the running cell, as
    Jupyter's stop button does, so the run ends cleanly and nbclient shuts the kernel down; a
    second Ctrl-C kills the kernel's process group at once."""

    def __init__(self, client):
        self.client, self.requested = client, False

    def install(self, **_):  # nbclient's on_notebook_start hook, called in its event loop
        with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows; not main thread
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self.handle)

    def handle(self):
        send_kernel(self.client, signal.SIGKILL if self.requested else signal.SIGINT)
        self.requested = True

    def seen(self):
        """True once Ctrl-C (or SIGTERM) came: ours, or nbclient's before ours was installed,
        whose only trace is the clean-up future it keeps."""
        return self.requested or getattr(self.client, '_async_cleanup_kernel_future', None) is not None


def send_kernel(client, signum):
    """Send `signum` to the client's kernel if it is still running (SIGINT: the kernel alone, as
    Jupyter's interrupt does; others: its whole process group, so no child is left behind)."""
    provisioner = getattr(getattr(client, 'km', None), 'provisioner', None)
    process = getattr(provisioner, 'process', None)  # None once jupyter_client cleaned it up
    if process is None or process.poll() is not None: return
    with contextlib.suppress(OSError):
        if signum == signal.SIGINT or not provisioner.pgid: process.send_signal(signum)
        else: os.killpg(provisioner.pgid, signum)
        if signum == signal.SIGKILL: process.wait(timeout=10)  # reap it


def execute(nb, folder, timeout):
    """Run every cell of `nb` in a fresh kernel started in `folder`; raise NotebookFailure on error,
    Interrupted (naming the cell) on Ctrl-C."""
    current = {'index': None}
    def on_cell_execute(cell, cell_index):
        current['index'] = cell_index
        if stop.requested: raise Interrupted()  # Ctrl-C came between cells (the idle kernel ignores it)
    # The kernel is thrown away afterwards, so stop it at once: a graceful shutdown of a kernel
    # stuck in a timed-out cell only makes it print a ZMQ error.
    client = NotebookClient(nb, timeout=timeout, kernel_name='python3', record_timing=False,
                            shutdown_kernel='immediate', on_cell_execute=on_cell_execute,
                            resources={'metadata': {'path': str(folder)}})
    stop = StopOnSigint(client)
    client.on_notebook_start = stop.install
    try:
        client.execute(**start_options(folder.parent))
    except BaseException as e:
        if not (stop.seen() or isinstance(e, KeyboardInterrupt)):
            raise failure(nb, current['index'], e, timeout) from None
        send_kernel(client, signal.SIGKILL)  # gone already unless Ctrl-C hit nbclient's clean-up
        raise Interrupted(cell_name(nb, current['index']) if current['index'] is not None
                          else 'while starting the kernel') from None
    if stop.seen(): raise Interrupted('after the last cell')


def failure(nb, index, e, timeout):
    "The NotebookFailure describing exception `e`, raised while running cell `index` of `nb`."
    if isinstance(e, CellTimeoutError): what = [f'timed out: still running after {timeout} s (--timeout)']
    elif isinstance(e, DeadKernelError): what = ['the kernel died while running this cell']
    elif isinstance(e, CellExecutionError): what = error_lines(nb.cells[index], e)
    elif isinstance(e, Exception): what = [f'{type(e).__name__}: {first_line(e)}']
    else: raise e  # SystemExit and the like are not a notebook's failure
    return NotebookFailure(describe(nb, index, what))


def run_notebook(path, timeout=1200, save=False):
    "Run one notebook top to bottom; with `save`, write the outputs back if it passed."
    path, start = Path(path), time.perf_counter()
    try:
        data = read_bytes(path)
        nb = load_notebook(path, data)
        try: execute(nb, path.resolve().parent, timeout)
        except Interrupted as e: raise Interrupted(f'interrupted: stopped in {path}, {e}; the kernel '
                                                   'is shut down and nothing was saved') from None
        if save: save_notebook(nb, path, digest(data))
    except NotebookFailure as e:
        return Result(path, False, time.perf_counter() - start, str(e))
    return Result(path, True, time.perf_counter() - start)


def format_result(result, width=0):
    "'pass  01_matmul.ipynb  12.3s', and for a failure the message indented below."
    status = 'pass' if result.ok else 'FAIL'
    line = f'{status}  {result.path.name:<{width}}  {result.seconds:6.1f}s'
    detail = [f'      {l}' for l in result.message.splitlines()]
    return '\n'.join([line, *detail])


def run_notebooks(paths, timeout=1200, save=False, echo=True):
    "Run each notebook in turn (going on past failures); print one line each if `echo`."
    paths = [Path(p) for p in paths]
    width = max((len(p.name) for p in paths), default=0)
    results = []
    for path in paths:
        results.append(run_notebook(path, timeout=timeout, save=save))
        if echo: print(format_result(results[-1], width), flush=True)
    return results


def all_notebooks(folder=None):
    "Every notebook in `folder` (default: the repo's nbs/), in sorted (= course) order."
    return sorted(Path(folder or NBS).glob('*.ipynb'))


def check_args(paths, all, save, timeout):
    "Exit with a one-line message if the command line makes no sense."
    for flag, value in [('--all', all), ('--save', save)]:  # fire reads `--save x.ipynb` as save='x.ipynb'
        if not isinstance(value, bool): sys.exit(f'{flag} takes no value (got {value!r}): put notebook paths first')
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        sys.exit(f'--timeout must be a positive number of seconds (got {timeout!r})')
    if all and paths: sys.exit('give notebook paths or --all, not both')
    if not all and not paths: sys.exit('no notebooks given: pass their paths, or --all')


def never_fail_on_encoding():
    "Escape what the terminal's encoding cannot show (PYTHONIOENCODING=ascii) instead of crashing."
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError): stream.reconfigure(errors='backslashreplace')


def main(*paths, all=False, save=False, timeout=1200):
    """Run the given notebooks (or --all in nbs/) in fresh kernels; exit 1 if any failed.

    --save writes the executed outputs back into each notebook that passed.
    --timeout is the limit in seconds for a single cell."""
    never_fail_on_encoding()
    check_args(paths, all, save, timeout)
    paths = all_notebooks() if all else [str(p) for p in paths]  # fire turns `01` into an int
    if not paths: print(f'no notebooks in {NBS}')  # nothing to fail: exit 0
    try:
        results = run_notebooks(paths, timeout=timeout, save=save)
    except KeyboardInterrupt as e:  # Interrupted, or a Ctrl-C between notebooks
        print(str(e) if isinstance(e, Interrupted) else 'interrupted: stopped between notebooks',
              file=sys.stderr, flush=True)
        sys.exit(130)
    if not builtins.all(r.ok for r in results): sys.exit(1)  # `all` is the flag here


if __name__ == '__main__':
    fire.Fire(main)
