"""Run a training function from notebook 12 (or any module) on several processes, one machine or several.

On this machine, N processes started for you (12's `launch`: spawn, gloo on 127.0.0.1):
    .venv/bin/python dist_launch.py train_mnist --nprocs 2 [--epochs 1 --bs 64 ...]

The same code under torchrun, which starts one process per rank and sets RANK, WORLD_SIZE, MASTER_ADDR...:
    .venv/bin/torchrun --nproc_per_node=2 dist_launch.py train_mnist --epochs 1

Several machines (here 2 x 1 process; run one line on each machine, ENDPOINT = host:port of the first):
    .venv/bin/torchrun --nnodes=2 --nproc_per_node=1 --node_rank=0 --rdzv-backend=c10d \\
        --rdzv-endpoint=ENDPOINT --rdzv-id=myrun dist_launch.py train_mnist
    .venv/bin/torchrun --nnodes=2 --nproc_per_node=1 --node_rank=1 --rdzv-backend=c10d \\
        --rdzv-endpoint=ENDPOINT --rdzv-id=myrun dist_launch.py train_mnist

TARGET is a function of exp.nb_12 (`train_mnist`, `train_toy`, `fit_toy_learner`) or 'package.module:function'.
Other flags go to the function as keyword arguments, except the launcher's own: --nprocs (ignored under torchrun),
--port (default: a free one), --timeout (seconds a collective may wait for a peer), --threads (per process),
--out FILE (torch.save of rank 0's result).
"""
import sys
from pathlib import Path

import fire

sys.path.insert(0, str(Path(__file__).resolve().parent))
from exp.nb_12 import exit_without_teardown, launch_main, under_torchrun  # noqa: E402


def main(target, nprocs=2, port=None, timeout=60, threads=1, out=None, **kwargs):
    launch_main(target, nprocs=nprocs, port=port, timeout=timeout, threads=threads, out=out, **kwargs)
    if under_torchrun(): exit_without_teardown()   # done and saved, as `launch`'s ranks are


if __name__ == '__main__':
    fire.Fire(main)
