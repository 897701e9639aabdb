"""The matmul ladder of nbs/01_matmul.ipynb, measured in one run on this machine.

    python bench/matmul.py [--rows 5] [--repeat 3] [--big 1024]

Prints, for a (rows×784) @ (784×10) product: time per call, speed-up over the three-loop
version, and GFLOPS, for every method; then PyTorch's GFLOPS on a big square product, as the
machine's reference. The last line is the headline ratio: torch's `@` against the three-loop
version. Every ratio comes from timings taken in this same run.
"""
import sys
from pathlib import Path

import fire
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from exp.nb_01 import matmul_loops, matmul_rowcol, matmul_bcast, matmul_einsum, time_it, test_near

METHODS = {'3 Python loops': matmul_loops, '2 loops + elementwise': matmul_rowcol,
           '1 loop + broadcasting': matmul_bcast, 'einsum': matmul_einsum, 'torch @ (BLAS)': torch.matmul}


def ladder(rows=5, repeat=3):
    "Seconds per call for each method on the same (rows×784) @ (784×10) product."
    torch.manual_seed(0)
    a, b = torch.rand(rows, 784), torch.randn(784, 10)
    reference = matmul_loops(a, b)
    times = {}
    for name, f in METHODS.items():
        test_near(f(a, b), reference)          # a fast wrong answer is no speed-up
        times[name] = time_it(f, a, b, repeat=1 if f is matmul_loops else repeat)
    return times, 2 * rows * 784 * 10


def main(rows=5, repeat=3, big=1024):
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads; '
          f'({rows}×784) @ (784×10)')
    times, flops = ladder(rows, repeat)
    base = times['3 Python loops']
    print(f'{"method":<24}{"time":>14}{"speed-up":>12}{"GFLOPS":>10}')
    for name, t in times.items():
        print(f'{name:<24}{t * 1e6:>12.1f}µs{base / t:>11,.0f}×{flops / t / 1e9:>10.3f}')
    a, b = torch.randn(big, big), torch.randn(big, big)
    print(f'reference: torch @ on {big}×{big}: {2 * big**3 / time_it(torch.matmul, a, b, repeat=repeat) / 1e9:.1f} GFLOPS')
    print(f'ratio torch @ / 3 Python loops (speed-up, same run): {base / times["torch @ (BLAS)"]:,.0f}×')


if __name__ == '__main__':
    fire.Fire(main)
