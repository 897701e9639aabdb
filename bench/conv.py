"""From-scratch `conv2d` (nbs/06: im2col + one matrix product) against `F.conv2d`, forward + backward.

    .venv/bin/python bench/conv.py [--repeats 15] [--threads 0]

Two shapes: an MNIST-sized batch (64x8x28x28, 3x3 kernel, 8 -> 16 channels, padding 1) and a
bigger one (32x32x56x56, 3x3, 32 -> 64). One timed step is a forward pass, `.sum()`, and the backward
pass into the input, the weight and the bias, on `def_device`. The two functions are timed
alternately, `repeats` times each, so a busy spell of the machine hits both; the ratio is the median
of the per-repeat ratios. Goal: at most 2x.

Where the time goes: our step is also split into its parts, each timed alone (medians):
  im2col      building the columns from the input (the forward of `_Im2Col`)
  product     the forward matrix product with the bias (`addmm`) and the transpose of the output
  product'    its backward: two matrix products (for the weight and the columns) and a sum (bias)
  col2im      the backward of `_Im2Col`: adding the column gradients back into the input's shape
The parts add up to roughly the whole step (autograd's own bookkeeping is the rest). The size of the
column matrix is printed too: im2col makes kh*kw copies of the input, and every part above reads or
writes a matrix that size, where oneDNN (behind `F.conv2d` on a CPU) works through the input in
cache-sized blocks without ever writing the columns out.

Default: torch's own thread count (0). The last line gives both ratios.
"""
import os
import statistics
import sys
import time
from pathlib import Path

import fire
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from exp.nb_06 import conv2d, def_device  # noqa: E402
from exp.nb_06 import _Im2Col  # noqa: E402  (the im2col op conv2d is built on)

SHAPES = {'64x8x28x28 3x3 8->16': ((64, 8, 28, 28), (16, 8, 3, 3), 1, 1),
          '32x32x56x56 3x3 32->64': ((32, 32, 56, 56), (64, 32, 3, 3), 1, 1)}


def sync():
    if def_device.type == 'cuda': torch.cuda.synchronize()


def seconds(f):
    "Wall time of one call of f, waiting for the GPU if there is one."
    sync(); t = time.perf_counter(); f(); sync()
    return time.perf_counter() - t


def make_step(conv, x, w, b, stride, padding):
    "One forward + backward of `conv`, gradients cleared first."
    def step():
        for t in (x, w, b): t.grad = None
        conv(x, w, b, stride, padding).sum().backward()
    return step


def parts(x, w, b, stride, padding, repeats):
    "Median seconds of each part of our conv2d step (see the module docstring)."
    ks, s, p = tuple(w.shape[2:]), (stride, stride), (padding, padding)
    xd, wd, bd = x.detach(), w.detach().reshape(w.shape[0], -1), b.detach()
    xg = x.detach().requires_grad_()
    cols = _Im2Col.apply(xd, ks, s, p)
    out = torch.addmm(bd[:, None], wd, cols)
    g = torch.ones_like(out)
    jobs = {
        'im2col': lambda: _Im2Col.apply(xd, ks, s, p),
        'product': lambda: torch.addmm(bd[:, None], wd, cols).view(w.shape[0], x.shape[0], -1).transpose(0, 1).contiguous(),
        "product'": lambda: (g @ cols.t(), wd.t() @ g, g.sum(1)),
        'im2col+col2im': lambda: _Im2Col.apply(xg, ks, s, p).backward(torch.ones_like(cols)),
    }
    for f in jobs.values(): f()   # warm up
    res = {k: statistics.median(seconds(f) for _ in range(repeats)) for k, f in jobs.items()}
    res['col2im'] = max(res.pop('im2col+col2im') - res['im2col'], 0.)
    return res


def bench_shape(name, xs, ws, stride, padding, repeats):
    "Alternate F.conv2d and conv2d steps; return the median ratio and print the details."
    torch.manual_seed(0)
    x, w = torch.randn(xs, device=def_device, requires_grad=True), torch.randn(ws, device=def_device, requires_grad=True)
    b = torch.randn(ws[0], device=def_device, requires_grad=True)
    ours, ref = make_step(conv2d, x, w, b, stride, padding), make_step(F.conv2d, x, w, b, stride, padding)
    torch.testing.assert_close(conv2d(x, w, b, stride, padding), F.conv2d(x, w, b, stride, padding), rtol=1e-4, atol=1e-4)
    for _ in range(2): ours(); ref()   # warm up
    t_ours, t_ref, sys_ours, sys_ref = [], [], 0., 0.
    for _ in range(repeats):
        s0 = os.times().system; t_ref.append(seconds(ref))
        s1 = os.times().system; t_ours.append(seconds(ours))
        sys_ref += s1 - s0; sys_ours += os.times().system - s1
    ratio = statistics.median(a / b for a, b in zip(t_ours, t_ref))
    print(f'{name}: F.conv2d {1e3*statistics.median(t_ref):.1f} ms, conv2d {1e3*statistics.median(t_ours):.1f} ms '
          f'(median of {repeats}), conv2d/F.conv2d {ratio:.2f}x')
    print(f'  time in the kernel (system time, mostly handing out fresh memory pages) per step: '
          f'conv2d {1e3*sys_ours/repeats:.1f} ms, F.conv2d {1e3*sys_ref/repeats:.1f} ms')
    split = parts(x, w, b, stride, padding, repeats)
    total = sum(split.values())
    print('  conv2d split: ' + ', '.join(f'{k} {1e3*v:.1f} ms ({100*v/total:.0f}%)' for k, v in split.items()))
    n_cols = w[0].numel() * xs[0] * F.conv2d(x[:1, :, :, :], w, None, stride, padding)[0, 0].numel()
    print(f'  the column matrix: {w[0].numel()} x {n_cols // w[0].numel()} = {4*n_cols/2**20:.0f} MiB in float32, written by im2col, '
          f'read by the product, and again as its gradient in the backward; the input is {4*x.numel()/2**20:.1f} MiB')
    return ratio


def main(repeats=15, threads=0):
    """Time each shape `repeats` times each way; `threads` torch threads (0: torch's default)."""
    if threads: torch.set_num_threads(threads)
    print(f'device {def_device}, {torch.get_num_threads()} torch thread(s)')
    ratios = {name: bench_shape(name, *args, repeats) for name, args in SHAPES.items()}
    print('conv2d/F.conv2d fwd+bwd: ' + ', '.join(f'{r:.1f}x ({name})' for name, r in ratios.items()))


if __name__ == '__main__':
    fire.Fire(main)
