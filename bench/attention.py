"""Attention three ways (nbs/14_attention.ipynb): the naive `scaled_dot_product_attention` (the
whole T x T matrix of weights), `tiled_attention` (FlashAttention's tiling as Python loops over
tensor operations) and PyTorch's `F.scaled_dot_product_attention`: time and peak memory of one
causal forward pass, without gradients.

    .venv/bin/python bench/attention.py [--lengths 1024,4096] [--rounds 3] [--heads 4]
        [--block_size 128] [--threads 1]

Inputs: q, k and v of (1, heads, T, 64), float32, on `def_device`, for each T in `lengths`. The
three outputs are first checked to agree (float32 tolerance). Time: each forward pass timed by
the harness's `time_op` (torch.utils.benchmark), the three taking turns for `rounds` rounds
(`alternate`); a ratio is the median of the per-round ratios to PyTorch's time. Memory: 14's
`forward_peak_bytes`, one fresh process per function and length (on one thread): the peak
resident memory beyond what the process held before the pass (on a GPU, PyTorch's peak of
allocated device memory), so memory freed by an earlier pass cannot hide the next one's growth.
The last line gives both ratios at the longest T.
"""
import statistics

import torch
from torch.utils.benchmark import Compare

from exp.nb_14 import attention_forwards, def_device, forward_peak_bytes
from nbio import UsageError, run_cli
from timing import alternate, check_counts, median_ratios, no_tf32, set_threads, time_op

D, REF, LABEL, MIN_RUN_TIME = 64, 'torch', 'causal attention forward', 0.1


def qkv(T, heads, seed=0):
    "Seeded q, k, v of (1, heads, T, D) on `def_device`."
    torch.manual_seed(seed)
    return [torch.randn(1, heads, T, D, device=def_device) for _ in range(3)]


def check_same(fns, q, k, v):
    "Before timing: every function's output agrees with PyTorch's (TF32 off)."
    with torch.no_grad(), no_tf32():
        ref = fns[REF](q, k, v, is_causal=True)
        for name, f in fns.items():
            torch.testing.assert_close(f(q, k, v, is_causal=True), ref, rtol=1e-4, atol=1e-5,
                                       msg=lambda m, name=name: f'{name} against {REF}: {m}')


def bench_length(T, heads, rounds, block_size):
    "name -> per-round Measurements of each function's forward pass at length T."
    fns = attention_forwards(block_size)
    q, k, v = qkv(T, heads)
    check_same(fns, q, k, v)
    def timed(name):
        def call():
            with torch.no_grad(): fns[name](q, k, v, is_causal=True)
        return lambda: time_op(call, min_run_time=MIN_RUN_TIME, label=LABEL,
                               sub_label=f'T={T}', description=name)
    return alternate({name: timed(name) for name in fns}, rounds)


def parse_lengths(lengths):
    "`lengths` (an int, or several: 1024,4096) as a list of ints >= 1."
    lengths = [lengths] if isinstance(lengths, int) else list(lengths)
    if not lengths: raise UsageError('lengths must name at least one length')
    for T in lengths: check_counts(lengths=T)
    return lengths


def main(lengths=(1024, 4096), rounds=3, heads=4, block_size=128, threads=1):
    "Time and peak memory of the three at each T in `lengths`; `threads` torch threads (0: all)."
    lengths = parse_lengths(lengths)
    check_counts(rounds=rounds, heads=heads, block_size=block_size)
    n_threads = set_threads(threads)
    print(f'device {def_device}, {n_threads} torch thread(s) (memory: 1 thread), {rounds} rounds, '
          f'q, k, v of (1, {heads}, T, {D}) float32, causal, block size {block_size}')
    times = {T: bench_length(T, heads, rounds, block_size) for T in lengths}
    Compare([m for res in times.values() for ms in res.values() for m in ms]).print()
    names = list(attention_forwards())
    mem = {(n, T): forward_peak_bytes(n, T, D, def_device, block_size, heads)[0]
           for T in lengths for n in names}
    print(f"{'T':>6} | " + ' | '.join(f'{n + " MiB":>12}' for n in names))
    for T in lengths:
        print(f'{T:>6} | ' + ' | '.join(f'{mem[n, T] / 2**20:>12.2f}' for n in names))
    T = lengths[-1]
    ratios = median_ratios({n: [m.median for m in ms] for n, ms in times[T].items()}, REF)
    print(f"T={T}: median time per pass " + ', '.join(
        f'{n} {statistics.median(m.median for m in times[T][n]) * 1e3:.1f} ms' for n in names))
    def mem_ratio(n): return f'{mem[n, T] / mem[REF, T]:.1f}x' if mem[REF, T] else 'n/a'
    print(f'ratios at T={T} (x {REF}): time naive {ratios["naive"]:.1f}x, tiled '
          f'{ratios["tiled"]:.1f}x; peak memory naive {mem_ratio("naive")}, tiled '
          f'{mem_ratio("tiled")}')


if __name__ == '__main__':
    run_cli(main)
