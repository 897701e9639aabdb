"""The matmul ladder of nbs/01_matmul.ipynb, measured in one run on this machine.

    python bench/matmul.py [--rows 5] [--repeat 3] [--big 1024]

Prints, for a (rows×784) @ (784×10) product: time per call, speed-up over the three-loop
version, and GFLOPS, for every method; then PyTorch's GFLOPS on a big square product, as the
machine's reference. The methods take turns for `repeat` rounds, each timed by `time_op`
(torch.utils.benchmark); a time is the median over the rounds, a speed-up the median of the
rounds' ratios. The last line is the headline ratio: torch's `@` against the three-loop version.
"""
import statistics

import torch

from exp.nb_01 import matmul_loops, matmul_rowcol, matmul_bcast, matmul_einsum, test_near
from nbio import run_cli
from timing import alternate, check_counts, median_ratio, time_op

METHODS = {'3 Python loops': matmul_loops, '2 loops + elementwise': matmul_rowcol,
           '1 loop + broadcasting': matmul_bcast, 'einsum': matmul_einsum,
           'torch @ (BLAS)': torch.matmul}
BASE = '3 Python loops'


def ladder(rows=5, repeat=3):
    "name -> seconds per call in each round, for the same (rows×784) @ (784×10) product."
    torch.manual_seed(0)
    a, b = torch.rand(rows, 784), torch.randn(784, 10)
    reference = matmul_loops(a, b)
    for f in METHODS.values(): test_near(f(a, b), reference)   # a fast wrong answer is no speed-up
    def timed(f): return lambda: time_op(f, a, b).median
    return alternate({name: timed(f) for name, f in METHODS.items()}, repeat)


def main(rows=5, repeat=3, big=1024):
    check_counts(rows=rows, repeat=repeat, big=big)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads; '
          f'({rows}×784) @ (784×10), {repeat} rounds')
    times, flops = ladder(rows, repeat), 2 * rows * 784 * 10
    print(f'{"method":<24}{"time":>14}{"speed-up":>12}{"GFLOPS":>10}')
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f'{name:<24}{t * 1e6:>12.1f}µs{median_ratio(times[BASE], ts):>11,.0f}×'
              f'{flops / t / 1e9:>10.3f}')
    a, b = torch.randn(big, big), torch.randn(big, big)
    gflops = 2 * big**3 / time_op(torch.matmul, a, b).median / 1e9
    print(f'reference: torch @ on {big}×{big}: {gflops:.1f} GFLOPS')
    speed_up = median_ratio(times[BASE], times['torch @ (BLAS)'])
    print(f'ratio torch @ / 3 Python loops (speed-up, same run): {speed_up:,.0f}×')


if __name__ == '__main__':
    run_cli(main)
