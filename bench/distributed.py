"""Samples per second of data-parallel training (notebook 12): 1 process against 2 processes, one
thread each, on the same model and the same global batch, and the share of each step spent in the
all-reduce of the gradients.

    .venv/bin/python bench/distributed.py [--rounds 3] [--steps 40] [--bs 256] [--nh 1024]

The model is an MLP (784 -> nh -> nh -> 10, float32) trained with SGD on a fixed random batch (no
data loading, so the figure is compute + communication only). Each variant is a fresh `launch`
(gloo on 127.0.0.1) whose ranks run 12's `time_dp_steps`: `steps` timed steps after 3 warm-up
steps, each timed, and its all-reduce apart, by a wall clock read after `sync`; the variants take
turns, `rounds` times, and medians are reported:
  - 1 process, the global batch of `bs` rows;
  - 2 processes with 12's from-scratch `average_gradients` after backward (its time, measured on
    each rank, is the all-reduce share; it includes waiting for the slower rank);
  - 2 processes with DistributedDataParallel (all-reduce in buckets, overlapped with backward).
Samples/s = steps * bs / the slowest rank's total of step times. The last line: DDP's samples/s
on 2 processes over 1 process's (the median of the per-round ratios).
"""
import statistics

from exp.nb_12 import launch, time_dp_steps
from nbio import UsageError, run_cli
from timing import alternate, check_counts, median_ratio

RUNS = {'1 process': (1, 'scratch'), '2 processes, our all-reduce': (2, 'scratch'),
        '2 processes, DDP': (2, 'ddp')}


def main(rounds=3, steps=40, bs=256, nh=1024):
    check_counts(rounds=rounds, steps=steps, bs=bs, nh=nh)
    if bs % 2:
        raise UsageError(f"bs must be even (it is split over 2 processes), got {bs}")
    def run(n, mode): return lambda: launch(time_dp_steps, n, steps, bs, nh, mode, threads=1)
    results = alternate({name: run(*args) for name, args in RUNS.items()}, rounds)
    # per rank: (seconds of all its timed steps, seconds of them in the all-reduce)
    totals = {name: [[(sum(s for s, _ in r), sum(c for _, c in r)) for r in res] for res in rs]
              for name, rs in results.items()}
    rates = {name: [steps * bs / max(t for t, _ in res) for res in rs]
             for name, rs in totals.items()}
    ours = totals['2 processes, our all-reduce']
    share = statistics.median(statistics.mean(c / t for t, c in res) for res in ours)
    print(f"MLP 784-{nh}-{nh}-10, global batch {bs}, {steps} timed steps, 1 thread per process, "
          f"median of {rounds} rounds")
    for name in RUNS: print(f"{name:30s} {statistics.median(rates[name]):9.0f} samples/s")
    print(f"share of a step inside the all-reduce (2 processes, ours): {share:.0%}")
    print(f"2 processes (DDP) / 1 process, samples/s: "
          f"{median_ratio(rates['2 processes, DDP'], rates['1 process']):.2f}")


if __name__ == '__main__':
    run_cli(main)
