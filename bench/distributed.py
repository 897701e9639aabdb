"""Samples per second of data-parallel training (notebook 12): 1 process against 2 processes, one
thread each, on the same model and the same global batch, and the share of each step spent in the
all-reduce of the gradients.

    .venv/bin/python bench/distributed.py [--rounds 3] [--steps 40] [--bs 256] [--nh 1024]

The model is an MLP (784 -> nh -> nh -> 10, float32) trained with SGD on a fixed random batch (no
data loading, so the figure is compute + communication only). Each variant is a fresh `launch`
(gloo on 127.0.0.1) whose ranks time `steps` steps after 3 warm-up steps with the harness's wall
clock; the variants take turns, `rounds` times, and medians are reported:
  - 1 process, the global batch of `bs` rows;
  - 2 processes with 12's from-scratch `average_gradients` after backward (its time, measured on
    each rank, is the all-reduce share; it includes waiting for the slower rank);
  - 2 processes with DistributedDataParallel (all-reduce in buckets, overlapped with backward).
Samples/s = steps * bs / the slowest rank's time. The last line: DDP's samples/s on 2 processes over
1 process's (the median of the per-round ratios).
"""
import statistics

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from exp.nb_12 import (DistributedDataParallel, average_gradients, broadcast_params, launch,
                       num_distrib, rank_device, sgd_opt)
from nbio import UsageError, run_cli
from timing import alternate, check_counts, clock, median_ratio

WARMUP = 3
RUNS = {'1 process': (1, 'scratch'), '2 processes, our all-reduce': (2, 'scratch'),
        '2 processes, DDP': (2, 'ddp')}


def _setup(bs, nh, mode):
    "This rank's model (wrapped for `mode`), optimizer and share of a fixed random batch."
    world = num_distrib()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, nh), nn.ReLU(), nn.Linear(nh, nh), nn.ReLU(),
                          nn.Linear(nh, 10))
    model = model.to(rank_device())   # this rank's GPU (NCCL needs it there), or the CPU
    model = DistributedDataParallel(model) if mode == 'ddp' else broadcast_params(model)
    g = torch.Generator().manual_seed(dist.get_rank() if world > 1 else 0)
    x = torch.randn(bs // world, 784, generator=g).to(rank_device())
    y = torch.randint(0, 10, (bs // world,), generator=g).to(rank_device())
    return model, sgd_opt(model.parameters(), lr=0.01), x, y


def _time_steps(steps, bs, nh, mode):
    "Run on every rank: (seconds for `steps` steps, seconds of them inside average_gradients)."
    model, opt, x, y = _setup(bs, nh, mode)
    world, comm = num_distrib(), 0.
    def step():
        nonlocal comm
        F.cross_entropy(model(x), y).backward()
        if mode == 'scratch':
            with clock() as t: average_gradients(model)
            comm += t.wall
        opt.step(); opt.zero_grad()
    for _ in range(WARMUP): step()
    if world > 1: dist.barrier()
    comm = 0.
    with clock() as t:
        for _ in range(steps): step()
        if world > 1: dist.barrier()
    return t.wall, comm


def main(rounds=3, steps=40, bs=256, nh=1024):
    check_counts(rounds=rounds, steps=steps, bs=bs, nh=nh)
    if bs % 2:
        raise UsageError(f"bs must be even (it is split over 2 processes), got {bs}")
    import distributed as this   # this file as a module: spawned processes import _time_steps
    def run(n, mode): return lambda: launch(this._time_steps, n, steps, bs, nh, mode, threads=1)
    results = alternate({name: run(*args) for name, args in RUNS.items()}, rounds)
    rates = {name: [steps * bs / max(t for t, _ in res) for res in rs]
             for name, rs in results.items()}
    ours = results['2 processes, our all-reduce']
    share = statistics.median(statistics.mean(c / t for t, c in res) for res in ours)
    print(f"MLP 784-{nh}-{nh}-10, global batch {bs}, {steps} timed steps, 1 thread per process, "
          f"median of {rounds} rounds")
    for name in RUNS: print(f"{name:30s} {statistics.median(rates[name]):9.0f} samples/s")
    print(f"share of a step inside the all-reduce (2 processes, ours): {share:.0%}")
    print(f"2 processes (DDP) / 1 process, samples/s: "
          f"{median_ratio(rates['2 processes, DDP'], rates['1 process']):.2f}")


if __name__ == '__main__':
    run_cli(main)
