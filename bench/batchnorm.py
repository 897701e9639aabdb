"""From-scratch BatchNorm (nbs/07_batchnorm.ipynb) against nn.BatchNorm2d: one training step's
forward + backward.

    .venv/bin/python bench/batchnorm.py [--repeats 15] [--threads 1]

Both layers get the same input and the same upstream gradient, in training mode (batch statistics,
running statistics updated), float32 on `def_device`. Timed: forward, then backward into the input
and the parameters. Two from-scratch versions are measured: 07's first `BatchNorm`, whose backward
autograd derives from the forward's many small operations, and the exported `BatchNorm`, whose
backward is written out by hand (`BatchNormFunction`). The layers take turns for `repeats` rounds,
each timed by `time_op` (torch.utils.benchmark); `Compare` prints the median times, and the
median of the per-round ratios is reported for each shape (goal: at most 1.5x).
The last line gives the exported BatchNorm's worst ratio over the shapes.
"""
import torch
from torch import nn
from torch.utils.benchmark import Compare

from exp.nb_07 import BatchNorm, def_device
from nbio import run_cli
from timing import alternate, check_counts, median_ratios, set_threads, time_op

AutogradBatchNorm = BatchNorm.__base__   # 07's first version: the same layer, backward by autograd
SHAPES = [(64, 16, 28, 28), (512, 8, 14, 14), (128, 64, 14, 14)]
REF, LABEL, MIN_RUN_TIME = 'nn.BatchNorm2d', 'BatchNorm forward + backward', 0.05


def make_step(layer, x, g):
    "One forward + backward of `layer` on `x` with upstream gradient `g`, gradients cleared first."
    def step():
        x.grad = None
        layer.zero_grad()
        layer(x).backward(g)
    return step


def check_same(ours, ref, x, g):
    "Before timing: the two layers give the same output and input gradient (float32 tolerance)."
    x1, x2 = x.detach().clone().requires_grad_(), x.detach().clone().requires_grad_()
    y1, y2 = ours(x1), ref(x2)
    y1.backward(g); y2.backward(g)
    same = torch.allclose(y1, y2, atol=1e-4) and torch.allclose(x1.grad, x2.grad, atol=1e-4)
    assert same, type(ours).__name__


def bench_shape(shape, repeats):
    "Per-round Measurements of each layer's step on `shape` (name -> list)."
    nf, sub_label = shape[1], 'x'.join(map(str, shape))
    x = torch.randn(*shape, device=def_device).mul_(2).add_(1).requires_grad_()
    g = torch.randn(*shape, device=def_device)
    layers = {REF: nn.BatchNorm2d(nf), 'autograd BatchNorm': AutogradBatchNorm(nf),
              'BatchNorm': BatchNorm(nf)}
    for layer in layers.values(): layer.to(def_device).train()
    for name in ('autograd BatchNorm', 'BatchNorm'): check_same(layers[name], layers[REF], x, g)
    def timed(name):
        step = make_step(layers[name], x, g)
        return lambda: time_op(step, min_run_time=MIN_RUN_TIME, label=LABEL,
                               sub_label=sub_label, description=name)
    return alternate({name: timed(name) for name in layers}, repeats)


def main(repeats=15, threads=1):
    "`repeats` rounds in which the layers take turns; `threads` torch threads (0: torch's default)."
    check_counts(repeats=repeats)
    n_threads = set_threads(threads)
    torch.manual_seed(0)
    print(f'device {def_device}, {n_threads} torch thread(s), {repeats} rounds')
    results = {shape: bench_shape(shape, repeats) for shape in SHAPES}
    Compare([m for res in results.values() for ms in res.values() for m in ms]).print()
    worst = 0.
    for shape, res in results.items():
        ratios = median_ratios({k: [m.median for m in ms] for k, ms in res.items()}, REF)
        print(f'{"x".join(map(str, shape)):>14}: autograd BatchNorm '
              f'{ratios["autograd BatchNorm"]:.2f}x, BatchNorm (hand-written backward) '
              f'{ratios["BatchNorm"]:.2f}x {REF}\'s time')
        worst = max(worst, ratios['BatchNorm'])
    print(f'BatchNorm/nn.BatchNorm2d fwd+bwd (worst of {len(SHAPES)} shapes, goal at most 1.5x): '
          f'{worst:.2f}x')


if __name__ == '__main__':
    run_cli(main)
