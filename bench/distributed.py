"""Samples per second of data-parallel training (notebook 12): 1 process against 2 processes, one thread each, on
the same model and the same global batch, and the share of each step spent in the all-reduce of the gradients.

    .venv/bin/python bench/distributed.py [--rounds 3] [--steps 40] [--bs 256] [--nh 1024]

The model is an MLP (784 -> nh -> nh -> 10, float32) trained with SGD on a fixed random batch (no data loading, so
the figure is compute + communication only). Each variant is a fresh `launch` (gloo on 127.0.0.1) that times
`steps` steps after 3 warm-up steps; the variants alternate, `rounds` times, and the median is reported:
  - 1 process, the global batch of `bs` rows;
  - 2 processes with 12's from-scratch `average_gradients` after backward (its time, measured on each rank, is the
    all-reduce share; it includes waiting for the slower rank);
  - 2 processes with DistributedDataParallel (all-reduce in buckets, overlapped with backward).
Samples/s = steps * bs / the slowest rank's time. The last line: DDP's samples/s on 2 processes over 1 process's.
"""
import statistics
import sys
import time
from pathlib import Path

import fire
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from exp.nb_12 import DistributedDataParallel, average_gradients, broadcast_params, launch, num_distrib, sgd_opt  # noqa: E402

WARMUP = 3


def _time_steps(steps, bs, nh, mode):
    "Run on every rank: (seconds for `steps` steps, seconds of them inside average_gradients)."
    world = num_distrib()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, nh), nn.ReLU(), nn.Linear(nh, nh), nn.ReLU(), nn.Linear(nh, 10))
    model = DistributedDataParallel(model) if mode == 'ddp' else broadcast_params(model)
    g = torch.Generator().manual_seed(dist.get_rank() if world > 1 else 0)
    x, y = torch.randn(bs//world, 784, generator=g), torch.randint(0, 10, (bs//world,), generator=g)
    opt,start,comm = sgd_opt(model.parameters(), lr=0.01),None,0.
    for i in range(WARMUP + steps):
        if i == WARMUP:
            if world > 1: dist.barrier()
            start, comm = time.perf_counter(), 0.
        F.cross_entropy(model(x), y).backward()
        if mode == 'scratch':
            t = time.perf_counter(); average_gradients(model); comm += time.perf_counter() - t
        opt.step(); opt.zero_grad()
    if world > 1: dist.barrier()
    return time.perf_counter() - start, comm


def main(rounds=3, steps=40, bs=256, nh=1024):
    if bs % 2: raise ValueError(f"bench/distributed.py: bs={bs} must be even (it is split over 2 processes)")
    import distributed as this   # this file as an importable module: spawned processes must import _time_steps
    runs = {'1 process': (1, 'scratch'), '2 processes, our all-reduce': (2, 'scratch'), '2 processes, DDP': (2, 'ddp')}
    rates, shares = {k: [] for k in runs}, []
    for r in range(rounds):
        for name, (n, mode) in runs.items():
            res = launch(this._time_steps, n, steps, bs, nh, mode, threads=1)
            rates[name].append(steps*bs / max(t for t, _ in res))
            if n == 2 and mode == 'scratch': shares.append(statistics.mean(c/t for t, c in res))
    print(f"MLP 784-{nh}-{nh}-10, global batch {bs}, {steps} timed steps, 1 thread per process, median of {rounds} rounds")
    for name in runs: print(f"{name:30s} {statistics.median(rates[name]):9.0f} samples/s")
    print(f"share of a step inside the all-reduce (2 processes, ours): {statistics.median(shares):.0%}")
    print(f"2 processes (DDP) / 1 process, samples/s: "
          f"{statistics.median(rates['2 processes, DDP']) / statistics.median(rates['1 process']):.2f}")


if __name__ == '__main__':
    fire.Fire(main)
