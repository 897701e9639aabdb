"""From-scratch BatchNorm (nbs/07_batchnorm.ipynb) against nn.BatchNorm2d: one training step's forward + backward.

    .venv/bin/python bench/batchnorm.py [--repeats 15] [--threads 1]

Both layers get the same input and the same upstream gradient, in training mode (batch statistics,
running statistics updated), float32 on `def_device`. Timed: forward, then backward into the input
and the parameters. Two from-scratch versions are measured: 07's first `BatchNorm`, whose backward
autograd derives from the forward's many small operations, and the exported `BatchNorm`, whose
backward is written out by hand (`BatchNormFunction`). The layers are timed alternately, `repeats`
times, and the median of the per-repeat ratios is reported for each shape (goal: at most 1.5x).
The last line gives the exported BatchNorm's worst ratio over the shapes.
"""
import statistics
import sys
import time
from pathlib import Path

import fire
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from exp.nb_07 import BatchNorm, def_device  # noqa: E402

AutogradBatchNorm = BatchNorm.__base__   # 07's first version: the same layer, backward by autograd
SHAPES = [(64, 16, 28, 28), (512, 8, 14, 14), (128, 64, 14, 14)]


def _sync():
    if def_device.type == 'cuda': torch.cuda.synchronize()


def step_time(layer, x, g, n):
    "Median seconds of `n` forward + backward passes of `layer` on `x` with upstream gradient `g`."
    ts = []
    for _ in range(n):
        x.grad = None
        layer.zero_grad()
        _sync(); t = time.perf_counter()
        layer(x).backward(g)
        _sync(); ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def check_same(ours, ref, x, g):
    "Before timing: the two layers give the same output and input gradient (float32 tolerance)."
    x1, x2 = x.detach().clone().requires_grad_(), x.detach().clone().requires_grad_()
    y1, y2 = ours(x1), ref(x2)
    y1.backward(g); y2.backward(g)
    assert torch.allclose(y1, y2, atol=1e-4) and torch.allclose(x1.grad, x2.grad, atol=1e-4), type(ours).__name__


def main(repeats=15, threads=1, inner=5):
    """`repeats` alternating rounds of `inner` timed steps each; `threads` torch threads (0: torch's default)."""
    if threads: torch.set_num_threads(threads)
    torch.manual_seed(0)
    print(f'device {def_device}, {torch.get_num_threads()} torch thread(s), {repeats} rounds of {inner} steps')
    worst = 0.
    for shape in SHAPES:
        nf = shape[1]
        x = torch.randn(*shape, device=def_device).mul_(2).add_(1).requires_grad_()
        g = torch.randn(*shape, device=def_device)
        layers = {'nn.BatchNorm2d': nn.BatchNorm2d(nf), 'autograd BatchNorm': AutogradBatchNorm(nf),
                  'BatchNorm': BatchNorm(nf)}
        for l in layers.values(): l.to(def_device).train()
        for name in ('autograd BatchNorm', 'BatchNorm'): check_same(layers[name], layers['nn.BatchNorm2d'], x, g)
        times = {k: [] for k in layers}
        for k, l in layers.items(): step_time(l, x, g, 2)   # warm up
        for _ in range(repeats):   # alternate, so a busy spell of the machine hits all three alike
            for k, l in layers.items(): times[k].append(step_time(l, x, g, inner))
        ref = times['nn.BatchNorm2d']
        ratios = {k: statistics.median(t / r for t, r in zip(times[k], ref)) for k in ('autograd BatchNorm', 'BatchNorm')}
        print(f'{"x".join(map(str, shape)):>14}: nn.BatchNorm2d {1e3*statistics.median(ref):.3f} ms, '
              f'autograd BatchNorm {ratios["autograd BatchNorm"]:.2f}x, BatchNorm (hand-written backward) '
              f'{ratios["BatchNorm"]:.2f}x')
        worst = max(worst, ratios['BatchNorm'])
    print(f'BatchNorm/nn.BatchNorm2d fwd+bwd (worst of {len(SHAPES)} shapes, goal at most 1.5x): {worst:.2f}x')


if __name__ == '__main__':
    fire.Fire(main)
