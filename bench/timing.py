"""The timing every script in bench/ shares (each imports it as `timing`, a file beside it).

- `time_op`: one operation, timed by PyTorch's own `torch.utils.benchmark.Timer`
  (`blocked_autorange` does the warm-up, picks how many calls to time at once, and waits for the
  GPU), on the threads this process uses.
- `clock`: wall, CPU and system seconds of a whole block (an epoch, a run of several processes),
  waiting for the GPU before each reading when CUDA is in use.
- `alternate` and `median_ratio(s)`: the variants take turns round after round, and a ratio is the
  median of the ratios within each round, so a busy spell of the machine slows both sides of it.
- `check_counts` and `set_threads`: the flags, checked before anything runs; a refused value is
  a UsageError, which nbio's run_cli prints as one line (exit status 2), as for an unknown flag.
- `no_tf32`: full float32 products inside the block, for a check against float32 results.
"""
import contextlib
import os
import statistics
import time
from types import SimpleNamespace

import torch
from torch.utils import benchmark

from exp.nb_03 import sync as sync_device
from exp.nb_05b import check_count
from nbio import UsageError


def check_counts(**counts):
    """Refuse any of `counts` (flag=value) that is not a whole number >= 1 (05b's `check_count`);
    the message starts at the flag, as run_cli already names the script."""
    try: check_count('', **counts)
    except ValueError as e: raise UsageError(str(e).removeprefix(': ')) from None


def set_threads(threads):
    "Use `threads` torch threads (0 keeps torch's default); returns the number in use."
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise UsageError("threads must be a whole number >= 0 (0: torch's default), "
                         f"got {threads!r}")
    if threads: torch.set_num_threads(threads)
    return torch.get_num_threads()


def sync():
    """Wait for the work queued on the current GPU (03's `sync`), only once CUDA is in use: a clock
    read before it would miss it, and a CPU run must not start CUDA for it."""
    if torch.cuda.is_initialized(): sync_device('cuda')


def tf32_setting():
    "What TF32 (10-bit mantissa products on NVIDIA cards since Ampere) is allowed for, in words."
    return (f'TF32 for matmul {torch.backends.cuda.matmul.allow_tf32}, '
            f'for cuDNN convolutions {torch.backends.cudnn.allow_tf32}')


@contextlib.contextmanager
def no_tf32():
    """No TF32 inside the block, the settings put back after. On a recent NVIDIA card cuDNN
    convolutions use TF32 unless told (a product's inputs rounded to 10 bits of mantissa, errors
    around 1e-3), so a result checked against a float32 computation at 1e-4 would fail there."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try: yield
    finally: torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@contextlib.contextmanager
def clock():
    """Time the block: yields a namespace that gets `wall`, `cpu` (this process, all threads) and
    `system` (time in the kernel, such as handing out fresh memory pages) seconds at its end."""
    t = SimpleNamespace()
    sync()
    wall, cpu, system = time.perf_counter(), time.process_time(), os.times().system
    yield t
    sync()
    t.wall, t.cpu = time.perf_counter() - wall, time.process_time() - cpu
    t.system = os.times().system - system


def time_op(f, *args, min_run_time=0.2, **labels):
    """`f(*args)` measured by torch.utils.benchmark: its Measurement (`.median`: seconds per call).
    Timer runs on one thread unless told otherwise; here it runs on as many as this process uses
    (see `set_threads`). `labels`: Timer's label, sub_label and description, for `Compare`."""
    timer = benchmark.Timer('f(*args)', globals=dict(f=f, args=args),
                            num_threads=torch.get_num_threads(), **labels)
    return timer.blocked_autorange(min_run_time=min_run_time)


def alternate(variants, rounds, warmup=0):
    """name -> the list of what variant `name` (a function of no arguments) returned in each of
    `rounds` rounds. The variants take turns within every round; `warmup` untimed calls of each
    come first."""
    check_count('alternate', rounds=rounds)
    for f in variants.values():
        for _ in range(warmup): f()
    results = {name: [] for name in variants}
    for _ in range(rounds):
        for name, f in variants.items(): results[name].append(f())
    return results


def median_ratio(xs, ys):
    "The median of the ratios x/y, each x and y taken in the same round."
    if not xs or len(xs) != len(ys):
        raise ValueError(f'median_ratio: needs two lists of the same length >= 1, '
                         f'got {len(xs)} and {len(ys)} results')
    return statistics.median(x / y for x, y in zip(xs, ys))


def median_ratios(results, baseline):
    "name -> `median_ratio` of its results (as `alternate` returns them) to `baseline`'s results."
    return {name: median_ratio(rs, results[baseline]) for name, rs in results.items()}
