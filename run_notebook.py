"""Run notebooks top to bottom in a fresh kernel and report pass/FAIL, one line each.

    python run_notebook.py nbs/01_matmul.ipynb [more ...] [--save] [--timeout 1200]
    python run_notebook.py --all [--save]

Each notebook runs in a new `python3` kernel whose working directory is the notebook's
folder and whose PYTHONPATH starts with the repo root (the folder above the notebook's),
so `from exp.nb_01 import *` works. `--save` writes the executed outputs back into the
notebook, and only when every cell ran cleanly. The exit status is 1 if any notebook failed.
"""
import builtins
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import fire
import nbformat
import zmq
from jupyter_client import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

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


# ---- reading and writing notebooks -------------------------------------------------

def load_notebook(path):
    "Read and validate a notebook, or raise NotebookFailure naming the file."
    if not path.is_file(): raise NotebookFailure(f'no such file: {path}')
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except Exception as e:
        raise NotebookFailure(f'not a valid notebook: {path} ({first_line(e)})') from None
    return nb


def save_notebook(nb, path):
    "Write `nb` to `path`, or raise NotebookFailure saying why it could not."
    try: write_atomically(nb, path)
    except OSError as e: raise NotebookFailure(f'could not save {path}: {e}') from None


def write_atomically(nb, path):
    "Write a temp file in the same folder, then os.replace: readers never see half a notebook."
    mode = path.stat().st_mode & 0o777
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as f: nbformat.write(nb, f)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


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

def kernel_env(repo_root):
    "The environment for the kernel: ours, with the repo root first on PYTHONPATH."
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(p for p in [str(repo_root), env.get('PYTHONPATH')] if p)
    env.setdefault('PYDEVD_DISABLE_FILE_VALIDATION', '1')  # silence a debugger warning
    return env


def start_options(repo_root):
    "How to start the kernel: our env plus the repo root, and encrypted traffic where supported."
    options = {'env': kernel_env(repo_root)}
    if 'transport_encryption' in KernelManager.class_trait_names() and zmq.has('curve'):
        options['transport_encryption'] = 'auto'  # else ipykernel warns about plain TCP
    return options


def execute(nb, folder, timeout):
    "Run every cell of `nb` in a fresh kernel started in `folder`; raise NotebookFailure on error."
    current = {'index': None}
    def on_cell_execute(cell, cell_index): current['index'] = cell_index
    # The kernel is thrown away afterwards, so stop it at once: a graceful shutdown of a kernel
    # stuck in a timed-out cell only makes it print a ZMQ error.
    client = NotebookClient(nb, timeout=timeout, kernel_name='python3', record_timing=False,
                            shutdown_kernel='immediate', on_cell_execute=on_cell_execute,
                            resources={'metadata': {'path': str(folder)}})
    try:
        client.execute(**start_options(folder.parent))
    except CellTimeoutError:
        raise NotebookFailure(describe(nb, current['index'],
                                   [f'timed out: still running after {timeout} s (--timeout)']))
    except DeadKernelError:
        raise NotebookFailure(describe(nb, current['index'], ['the kernel died while running this cell']))
    except CellExecutionError as e:
        i = current['index']
        raise NotebookFailure(describe(nb, i, error_lines(nb.cells[i], e)))
    except Exception as e:
        raise NotebookFailure(describe(nb, current['index'], [f'{type(e).__name__}: {first_line(e)}']))


def run_notebook(path, timeout=1200, save=False):
    "Run one notebook top to bottom; with `save`, write the outputs back if it passed."
    path, start = Path(path), time.perf_counter()
    try:
        nb = load_notebook(path)
        execute(nb, path.resolve().parent, timeout)
        if save: save_notebook(nb, path)
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


def main(*paths, all=False, save=False, timeout=1200):
    """Run the given notebooks (or --all in nbs/) in fresh kernels; exit 1 if any failed.

    --save writes the executed outputs back into each notebook that passed.
    --timeout is the limit in seconds for a single cell."""
    check_args(paths, all, save, timeout)
    paths = all_notebooks() if all else [str(p) for p in paths]  # fire turns `01` into an int
    if not paths: print(f'no notebooks in {NBS}')  # nothing to fail: exit 0
    results = run_notebooks(paths, timeout=timeout, save=save)
    if not builtins.all(r.ok for r in results): sys.exit(1)  # `all` is the flag here


if __name__ == '__main__':
    fire.Fire(main)
