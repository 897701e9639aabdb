"""Run a training function of notebook 12 (or any module) on several processes, on one machine or
several.

On this machine, N processes started for you (12's `launch`: spawn, gloo on 127.0.0.1):
    .venv/bin/python dist_launch.py train_mnist --nprocs 2 [--epochs 1 --bs 64 ...]

The same code under torchrun, which starts one process per rank and sets RANK, WORLD_SIZE...:
    .venv/bin/torchrun --nproc_per_node=2 dist_launch.py train_mnist --epochs 1

Several machines (2 x 1 process here; one line on each machine, ENDPOINT = host:port of the first):
    .venv/bin/torchrun --nnodes=2 --nproc_per_node=1 --node_rank=0 --rdzv-backend=c10d \\
        --rdzv-endpoint=ENDPOINT --rdzv-id=myrun dist_launch.py train_mnist
    .venv/bin/torchrun --nnodes=2 --nproc_per_node=1 --node_rank=1 --rdzv-backend=c10d \\
        --rdzv-endpoint=ENDPOINT --rdzv-id=myrun dist_launch.py train_mnist

TARGET, first on the line, is a function of exp.nb_12 (`train_mnist`, `train_toy`,
`fit_toy_learner`) or 'package.module:function'. Other flags go to the function as keyword
arguments, except the launcher's own: --nprocs (ignored under torchrun), --port (default: a free
one), --timeout (seconds a collective may wait for a peer), --threads (per process), --out FILE
(torch.save of rank 0's result; an existing file is replaced only with --overwrite). Every flag is
checked against the launcher's and the function's parameters before any process starts: a typo
stops it with the nearest flag named (exit status 2). So are a count below 1 (--steps, --epochs,
--bs, --n_train: a run that would train nothing) and an --out whose folder is missing or not
writable (a run whose result would be lost at its end).
"""
import os
import sys

from exp.nb_12 import (exit_without_teardown, import_target, launch_main, out_problem,
                       under_torchrun)
from nbio import HELP, UsageError, fail, run_cli, tool_name

COUNTS = ('steps', 'epochs', 'bs', 'n_train')   # TARGET's parameters that count: 1 or more


def check_run(out, overwrite, kwargs):
    """UsageError, before anything starts, for a count below 1 and for an --out that could not
    take the result (only rank 0 saves it)."""
    for k in COUNTS:
        v = kwargs.get(k, 1)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise UsageError(f'--{k} must be a whole number >= 1, got {v!r}')
    if out is None or os.environ.get('RANK', '0') != '0': return
    problem = out_problem(out, overwrite, overwrite_flag='--overwrite')
    if problem: raise UsageError(f'--out {out}: {problem}')


def main(target, *, nprocs=2, port=None, timeout=60, threads=1, out=None, overwrite=False,
         **kwargs):
    check_run(out, overwrite, kwargs)
    launch_main(target, nprocs=nprocs, port=port, timeout=timeout, threads=threads, out=out,
                overwrite=overwrite, **kwargs)
    if under_torchrun(): exit_without_teardown()  # done and saved, as `launch`'s ranks are


def target_function(argv):
    """The function that TARGET, the first argument, names; UsageError when there is none."""
    if not argv or argv[0].startswith('-'):
        raise UsageError('give TARGET first: a function of exp.nb_12 (train_mnist, train_toy, '
                         "fit_toy_learner) or 'package.module:function'")
    try:
        return import_target(argv[0])
    except ValueError as e:  # no such function in the module
        raise UsageError(e) from None
    except ImportError as e:
        raise UsageError(f'TARGET {argv[0]!r}: cannot import its module: {e}') from None


def cli(argv=None):
    """The command line: TARGET's parameters are valid flags too (see nbio.run_cli)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in HELP: return run_cli(main, argv)
    try:
        fn = target_function(argv)
    except UsageError as e:
        fail(e, 2, tool_name(main))
    return run_cli(main, argv, also=[fn])


if __name__ == '__main__':
    cli()
