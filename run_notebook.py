"""Run notebooks top to bottom in a fresh kernel and report pass/FAIL, one line each.

    python run_notebook.py nbs/01_matmul.ipynb [more ...] [--save] [--timeout 1200]
    python run_notebook.py --all [--save] [--jobs 2]

Each notebook runs in a new `python3` kernel whose working directory is the notebook's
folder and whose PYTHONPATH starts with the repo root (the folder above the notebook's),
so `from exp.nb_01 import *` works. `--save` writes the executed outputs back into the
notebook, and only when every cell ran cleanly and the file was not changed while it ran (your
edits win: nothing is written). The exit status is 1 if any notebook failed, 2 for a command line
that makes no sense (nothing runs then).

`--jobs 2` runs two notebooks at a time, the longest chain first (a notebook and those in NEEDS
that wait for it). Those in RUN_ALONE (they use both cores) run with nothing beside them, and so
do those in TIMES_THINGS when their outputs are saved. Every other kernel runs on one thread, so
running two at once changes no figure. The lines come as the notebooks finish.

Ctrl-C (SIGINT) stops everything: the running cell is interrupted, the kernel shut down, nothing
saved, and one line names the notebook and cell; exit status 130. A second Ctrl-C kills the kernel
at once. Output never fails on the terminal's encoding (unencodable characters are escaped).
"""
import asyncio
import builtins
import concurrent.futures
import contextlib
import hashlib
import math
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import zmq
from jupyter_client import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from nbio import NBS, NotebookError, UsageError, atomic_open, cell_name, notebooks, parse_notebook
from nbio import read_bytes, run_cli

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
    "Ctrl-C stopped the run; `where` names the notebook(s) and cell(s) it stopped in."

    def __init__(self, where):
        super().__init__(where)
        self.where = where

    def __str__(self):
        return (f'interrupted: stopped in {self.where}; the kernel is shut down and nothing was '
                'saved')


# ---- reading and writing notebooks -------------------------------------------------

def read_file(path):
    "(bytes, notebook) of the file at `path`, or NotebookFailure: one line naming the file."
    try:
        data = read_bytes(path)
        return data, parse_notebook(data, path)
    except NotebookError as e: raise NotebookFailure(str(e)) from None


def digest(data): return hashlib.sha256(data).hexdigest()


def save_notebook(nb, path, read_digest):
    """Write `nb` over `path` atomically, but only if the file still holds what was read (hash
    `read_digest`): edits made while the notebook ran are never overwritten."""
    def unchanged(_tmp):
        try: now = read_bytes(path)
        except NotebookError as e: raise NotebookFailure(str(e)) from None
        if digest(now) != read_digest:
            raise NotebookFailure(f'{path} changed on disk while it ran: not saved (the file on '
                                  'disk is kept as it is); run it again to save fresh outputs')
    try:
        with atomic_open(path, 'w', check=unchanged) as f: nbformat.write(nb, f)
    except OSError as e: raise NotebookFailure(f'could not save {path}: {e}') from None


# ---- describing a failure ----------------------------------------------------------

def first_line(e):
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def strip_ansi(text): return ANSI.sub('', text)


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
        RUNNING.add(self)

    def close(self):
        RUNNING.discard(self)

    def install(self, **_):  # nbclient's on_notebook_start hook, called in its event loop
        with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows; not main thread
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self.handle)

    def handle(self):
        send_kernel(self.client, signal.SIGKILL if self.requested else signal.SIGINT)
        self.requested = True

    def seen(self):
        """True once Ctrl-C (or SIGTERM) came: ours, nbclient's before ours was installed (whose
        only trace is the clean-up future it keeps), or the main thread's under --jobs."""
        cleanup = getattr(self.client, '_async_cleanup_kernel_future', None)
        return self.requested or STOP_ALL.is_set() or cleanup is not None


# Under --jobs the notebooks run in threads, which get no signals: Ctrl-C reaches the main thread,
# which sets STOP_ALL and passes the Ctrl-C to every kernel in RUNNING (see stop_running).
RUNNING = set()
STOP_ALL = threading.Event()


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
        if stop.seen(): raise Interrupted('')  # Ctrl-C between cells: an idle kernel ignores it
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
    finally:
        stop.close()
    if stop.seen(): raise Interrupted('after the last cell')


def failure(nb, index, e, timeout):
    "The NotebookFailure describing exception `e`, raised while running cell `index` of `nb`."
    if isinstance(e, CellTimeoutError):
        what = [f'timed out: still running after {timeout} s (--timeout)']
    elif isinstance(e, DeadKernelError): what = ['the kernel died while running this cell']
    elif isinstance(e, CellExecutionError): what = error_lines(nb.cells[index], e)
    elif isinstance(e, Exception): what = [f'{type(e).__name__}: {first_line(e)}']
    else: raise e  # SystemExit and the like are not a notebook's failure
    return NotebookFailure(describe(nb, index, what))


def run_notebook(path, timeout=1200, save=False):
    "Run one notebook top to bottom; with `save`, write the outputs back if it passed."
    path, start = Path(path), time.perf_counter()
    try:
        data, nb = read_file(path)
        try: execute(nb, path.resolve().parent, timeout)
        except Interrupted as e: raise Interrupted(f'{path}, {e.where}') from None
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


def run_notebooks(paths, timeout=1200, save=False, echo=True, jobs=1):
    """Run each notebook (going on past failures), `jobs` at a time as `run_scheduled` says; print
    one line each as it finishes if `echo`. Returns the Results in the order of `paths`."""
    paths = [Path(p) for p in paths]
    width = max((len(p.name) for p in paths), default=0)
    def report(result):
        if echo: print(format_result(result, width), flush=True)
    def run(path): return run_notebook(path, timeout=timeout, save=save)
    if jobs > 1: return run_scheduled(paths, jobs, run, report, alone=runs_alone(save))
    results = []
    for path in paths:
        results.append(run(path))
        report(results[-1])
    return results


# ---- several at once (--jobs) -------------------------------------------------------

# Seconds each notebook took in a quiet `run_notebook.py --all --save --jobs 2` (two at a time as
# scheduled here, those in TIMES_THINGS alone; a test run prints the same line), on the 2-core
# AVX2 machine of 2026-12-07 (15c's: alone, from an empty model cache). Only their order matters:
# the schedule starts the longest chain first.
# A notebook not listed counts as the longest.
SECONDS = {
    '00_exports': 3, '00a_data': 6, '01_matmul': 41, '02_fully_connected': 17,
    '03_minibatch_training': 23, '04_callbacks': 11, '05_anneal': 31, '05b_early_stopping': 9,
    '06_cnn_hooks_init': 83, '07_batchnorm': 98, '07a_lsuv': 52, '08_data_block': 74,
    '09_optimizers': 102, '09b_learner': 48, '09c_progress_bar': 134, '10_augmentation': 60,
    '10b_mixup_label_smoothing': 84, '10c_mixed_precision': 196, '11_xresnet': 885,
    '11a_transfer_learning': 186, '12_distributed': 63, '13_text': 19, '13a_rnn_lstm': 236,
    '13b_ulmfit': 109, '14_attention': 85, '14a_gpt': 383, '15_autoencoder': 117,
    '15a_vae': 150, '15b_fid': 39, '15c_ddpm': 817,
}

# Every kernel has one thread (kernel_env) unless the notebook sets another count itself, so two
# notebooks at once change no figure: a float sum's rounding depends on the thread count, not on
# what else the machine runs. Timings do change, hence two lists of notebooks that run alone.
# RUN_ALONE: always, with nothing beside them: they use both cores, and a timeout could trip on a
# shared machine. (No notebook asserts on a timing: speed is printed, and measured in bench/.)
RUN_ALONE = {
    '11_xresnet': 'trains on 2 threads',
    '12_distributed': 'starts 2 processes whose collectives have timeouts',
    '15c_ddpm': 'trains and samples on 2 threads (beside another kernel, 3 threads share 2 cores '
                'and its sampling cell ran past the 1200 s timeout on CI)',
}
# TIMES_THINGS: alone when their outputs are saved (--save), since the printed timings are kept
# and the prose quotes them; beside another notebook in a plain run, whose outputs are thrown away
# (none of these asserts on a timing).
TIMES_THINGS = {
    '01_matmul': 'times the matmul ladder',
    '02_fully_connected': 'times the versions of a training step against each other',
    '03_minibatch_training': 'times the loaders against each other',
    '06_cnn_hooks_init': 'times conv2d against the first version',
    '08_data_block': 'times loaders with 0, 1 and 2 worker processes',
    '10_augmentation': 'times per-image against whole-batch augmentation',
    '10c_mixed_precision': 'times a pass in each dtype',
}


# NEEDS: a notebook that loads what another saves to the data cache starts only once that one has
# finished (it would otherwise train the same model itself, beside it: wasted, not wrong).
NEEDS = {
    '13b_ulmfit': '13a_rnn_lstm',   # loads the character language model 13a trains and saves
    '14a_gpt': '13a_rnn_lstm',   # reads the validation curve 13a saves with that model
    '15b_fid': '15a_vae',   # scores the VAE 15a trains and saves
    '15c_ddpm': '15b_fid',   # loads 15b's classifier (and 15a's VAE, which 15b waits for)
}


def runs_alone(save):
    """The names of the notebooks that run with nothing beside them, in a run that saves or not."""
    return set(RUN_ALONE) | (set(TIMES_THINGS) if save else set())


def schedule(paths, alone):
    """The order (indices into `paths`) to start notebooks in under --jobs: those named in `alone`
    first, then the others, each group longest chain first: a notebook's own seconds plus the
    longest chain of those that wait for it (NEEDS), so 15a, which three chapters wait for, starts
    before a longer notebook that nothing waits for. On a fresh machine two notebooks may then
    fetch or build the same data set at once: wasted work, not wrong, since each build is written
    to a temporary folder and renamed into the cache whole (00a)."""
    names = {Path(p).stem for p in paths}
    def chain(name):
        after = [n for n, need in NEEDS.items() if need == name and n in names]
        return SECONDS.get(name, math.inf) + max(map(chain, after), default=0)
    def key(i):
        name = Path(paths[i]).stem
        return (name not in alone, -chain(name), i)
    return sorted(range(len(paths)), key=key)


def run_scheduled(paths, jobs, run, report, alone):
    """run(path) for each of `paths` in threads, in `schedule` order: at most `jobs` at a time, a
    notebook named in `alone` with nothing beside it, and one named in NEEDS only after the one it
    needs has finished (the next one in order takes its place meanwhile). report(result) as each
    finishes (in this thread). Returns the results in the order of `paths`. Ctrl-C stops every
    kernel and raises Interrupted."""
    results, running = [None] * len(paths), {}
    def finish(future):
        results[running.pop(future)] = future.result()
        report(future.result())
    def wait(room):  # until at most `room` notebooks run
        while len(running) > room:
            done, _ = concurrent.futures.wait(running, return_when='FIRST_COMPLETED')
            for future in done: finish(future)
    index = {Path(p).stem: i for i, p in enumerate(paths)}
    def waits_for_another(i):  # NEEDS: what it loads is not in the cache yet
        need = NEEDS.get(Path(paths[i]).stem)
        return need in index and results[index[need]] is None
    with concurrent.futures.ThreadPoolExecutor(jobs, thread_name_prefix='notebook') as pool:
        try:
            pending = schedule(paths, alone)
            while pending:
                i = next((j for j in pending if not waits_for_another(j)), None)
                if i is None:   # every one left waits for one that runs: let one finish
                    assert running, f'NEEDS has a cycle among {[paths[j] for j in pending]}'
                    wait(len(running) - 1)
                    continue
                pending.remove(i)
                by_itself = Path(paths[i]).stem in alone
                wait(0 if by_itself else jobs - 1)
                running[pool.submit(run, paths[i])] = i
                if by_itself: wait(0)
            wait(0)
        except KeyboardInterrupt:
            stop_running(running, finish)
        finally:
            STOP_ALL.clear()
    return results


def stop_running(running, finish):
    """Ctrl-C under --jobs: interrupt every running kernel (a second Ctrl-C kills them), wait for
    their threads, then raise Interrupted naming each notebook and cell that was stopped."""
    STOP_ALL.set()
    for stop in list(RUNNING): stop.handle()
    stopped = []
    while running:
        try:
            done, _ = concurrent.futures.wait(running, return_when='FIRST_COMPLETED')
        except KeyboardInterrupt:
            for stop in list(RUNNING): stop.handle()
            continue
        for future in done:
            if isinstance(future.exception(), Interrupted):
                stopped.append(future.exception().where)
                running.pop(future)
            else:
                finish(future)
    raise Interrupted(' and '.join(stopped) or 'between notebooks')


def check_args(paths, all, timeout, jobs):
    "UsageError if the command line makes no sense."
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise UsageError(f'--timeout must be a positive number of seconds (got {timeout!r})')
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise UsageError(f'--jobs must be a whole number of notebooks at a time, 1 or more '
                         f'(got {jobs!r})')
    if all and paths: raise UsageError('give notebook paths or --all, not both')
    if not all and not paths: raise UsageError('no notebooks given: pass their paths, or --all')


def never_fail_on_encoding():
    "Escape what the terminal's encoding cannot show (PYTHONIOENCODING=ascii) instead of crashing."
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors='backslashreplace')


def main(*paths, all=False, save=False, timeout=1200, jobs=1):
    """Run the given notebooks (or --all in nbs/) in fresh kernels; exit 1 if any failed.

    --save writes the executed outputs back into each notebook that passed.
    --timeout is the limit in seconds for a single cell.
    --jobs runs that many notebooks at a time (some alone: see RUN_ALONE, TIMES_THINGS)."""
    never_fail_on_encoding()
    check_args(paths, all, timeout, jobs)
    paths = notebooks(NBS) if all else [str(p) for p in paths]  # fire turns `01` into an int
    if not paths: print(f'no notebooks in {NBS}')  # nothing to fail: exit 0
    try:
        results = run_notebooks(paths, timeout=timeout, save=save, jobs=jobs)
    except KeyboardInterrupt as e:  # Interrupted, or a Ctrl-C between notebooks
        print(str(e) if isinstance(e, Interrupted) else 'interrupted: stopped between notebooks',
              file=sys.stderr, flush=True)
        sys.exit(130)
    if not builtins.all(r.ok for r in results): sys.exit(1)  # `all` is the flag here


if __name__ == '__main__':
    run_cli(main)
