"""From-scratch `conv2d` (nbs/06: im2col + one matrix product) vs `F.conv2d`, forward + backward.

    .venv/bin/python bench/conv.py [--repeats 15] [--threads 0]

Two shapes: an MNIST-sized batch (64x8x28x28, 3x3 kernel, 8 -> 16 channels, padding 1) and a
bigger one (32x32x56x56, 3x3, 32 -> 64). One timed step is a forward pass, `.sum()`, and the
backward pass into the input, the weight and the bias, on `def_device`. The two outputs are first
checked to agree at 1e-4 with TF32 off; the timing then runs as PyTorch is set (on a recent NVIDIA
card `F.conv2d` uses TF32 by default: the first line says). The two functions are timed
alternately, `repeats` times each (one call each by the harness's `clock`, which also reads the
system time), so a busy spell of the machine hits both; the ratio is the median of the per-repeat
ratios. Goal: at most 2x.

Where the time goes: our step is also split into its parts, each timed alone by `time_op`
(torch.utils.benchmark's Timer; medians):
  im2col      building the columns from the input (the forward of `Im2Col`)
  product     the forward matrix product with the bias (`addmm`) and the transpose of the output
  product'    its backward: two matrix products (for the weight and the columns) and a sum (bias)
  col2im      the backward of `Im2Col`: adding the column gradients back into the input's shape
The parts add up to roughly the whole step (autograd's own bookkeeping is the rest). The size of the
column matrix is printed too: im2col makes kh*kw copies of the input, and every part above reads or
writes a matrix that size, where oneDNN (behind `F.conv2d` on a CPU) works through the input in
cache-sized blocks without ever writing the columns out.

Default: torch's own thread count (0). The last line gives both ratios.
"""
import statistics

import torch
import torch.nn.functional as F

from exp.nb_06 import Im2Col, conv2d, def_device   # Im2Col: the im2col op conv2d is built on
from nbio import run_cli
from timing import (alternate, check_counts, clock, median_ratio, no_tf32, set_threads,
                    tf32_setting, time_op)

SHAPES = {'64x8x28x28 3x3 8->16': ((64, 8, 28, 28), (16, 8, 3, 3), 1, 1),
          '32x32x56x56 3x3 32->64': ((32, 32, 56, 56), (64, 32, 3, 3), 1, 1)}


def make_step(conv, x, w, b, stride, padding):
    "One forward + backward of `conv`, gradients cleared first."
    def step():
        for t in (x, w, b): t.grad = None
        conv(x, w, b, stride, padding).sum().backward()
    return step


def part_jobs(x, w, b, stride, padding):
    "name -> a function doing that part of our conv2d step (see the module docstring)."
    ks, s, p = tuple(w.shape[2:]), (stride, stride), (padding, padding)
    xd, wd, bd = x.detach(), w.detach().reshape(w.shape[0], -1), b.detach()
    xg = x.detach().requires_grad_()
    cols = Im2Col.apply(xd, ks, s, p)
    g = torch.ones_like(torch.addmm(bd[:, None], wd, cols))
    def product():
        out = torch.addmm(bd[:, None], wd, cols)
        return out.view(w.shape[0], x.shape[0], -1).transpose(0, 1).contiguous()
    return {'im2col': lambda: Im2Col.apply(xd, ks, s, p), 'product': product,
            "product'": lambda: (g @ cols.t(), wd.t() @ g, g.sum(1)),
            'im2col+col2im': lambda: Im2Col.apply(xg, ks, s, p).backward(torch.ones_like(cols))}


def parts(x, w, b, stride, padding):
    "Median seconds of each part of our conv2d step, each timed alone by `time_op`."
    jobs = part_jobs(x, w, b, stride, padding)
    res = {k: time_op(f, min_run_time=0.1).median for k, f in jobs.items()}
    res['col2im'] = max(res.pop('im2col+col2im') - res['im2col'], 0.)
    return res


def tensors(xs, ws):
    "Seeded input, weight and bias on `def_device`, all requiring gradients."
    torch.manual_seed(0)
    def rand(*shape): return torch.randn(*shape, device=def_device, requires_grad=True)
    return rand(*xs), rand(*ws), rand(ws[0])


def timed(step):
    "A variant for `alternate`: the clock of one call of `step`."
    def run():
        with clock() as t: step()
        return t
    return run


def print_details(name, x, w, b, stride, padding, times, ratio):
    "The shape's medians, system time, split of our step and the size of the column matrix."
    def med(k): return statistics.median(t.wall for t in times[k])
    # the mean, as the system time comes in ticks of the kernel's clock (often 10 ms)
    def system(k): return statistics.mean(t.system for t in times[k])
    print(f'{name}: F.conv2d {1e3*med("F.conv2d"):.1f} ms, conv2d {1e3*med("conv2d"):.1f} ms '
          f'(median of {len(times["conv2d"])}), conv2d/F.conv2d {ratio:.2f}x')
    print(f'  time in the kernel (system time, mostly handing out fresh memory pages) per step: '
          f'conv2d {1e3*system("conv2d"):.1f} ms, F.conv2d {1e3*system("F.conv2d"):.1f} ms')
    split = parts(x, w, b, stride, padding)
    total = sum(split.values())
    print('  conv2d split: ' + ', '.join(f'{k} {1e3*v:.1f} ms ({100*v/total:.0f}%)'
                                         for k, v in split.items()))
    k = w[0].numel()
    n_out = F.conv2d(x[:1], w, None, stride, padding)[0, 0].numel() * x.shape[0]
    print(f'  the column matrix: {k} x {n_out} = {4*k*n_out/2**20:.0f} MiB in float32, written by '
          f'im2col, read by the product, and again as its gradient in the backward; '
          f'the input is {4*x.numel()/2**20:.1f} MiB')


def bench_shape(name, xs, ws, stride, padding, repeats):
    "Alternate F.conv2d and conv2d steps; return the median ratio and print the details."
    x, w, b = tensors(xs, ws)
    with no_tf32():   # a float32 check: TF32 convolutions on a GPU would miss it by about 1e-3
        torch.testing.assert_close(conv2d(x, w, b, stride, padding),
                                   F.conv2d(x, w, b, stride, padding), rtol=1e-4, atol=1e-4)
    steps = {'F.conv2d': make_step(F.conv2d, x, w, b, stride, padding),
             'conv2d': make_step(conv2d, x, w, b, stride, padding)}
    times = alternate({k: timed(f) for k, f in steps.items()}, repeats, warmup=2)
    ratio = median_ratio([t.wall for t in times['conv2d']], [t.wall for t in times['F.conv2d']])
    print_details(name, x.detach(), w.detach(), b.detach(), stride, padding, times, ratio)
    return ratio


def main(repeats=15, threads=0):
    """Time each shape `repeats` times each way; `threads` torch threads (0: torch's default)."""
    check_counts(repeats=repeats)
    print(f'device {def_device}, {set_threads(threads)} torch thread(s)'
          + (f'; timed with {tf32_setting()}' if def_device.type == 'cuda' else ''))
    ratios = {name: bench_shape(name, *args, repeats) for name, args in SHAPES.items()}
    print('conv2d/F.conv2d fwd+bwd: '
          + ', '.join(f'{r:.1f}x ({name})' for name, r in ratios.items()))


if __name__ == '__main__':
    run_cli(main)
