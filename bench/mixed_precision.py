"""Training steps of 10c's CNN in float32, under autocast (bfloat16 on the CPU, float16 on CUDA),
and with 10c's from-scratch `MixedPrecision` (float16), through the Learner on the same random
Fashion-MNIST-shaped batches.

    .venv/bin/python bench/mixed_precision.py [--rounds 5] [--batches 20] [--bs 128] [--threads 0]
        [--fp16_scratch]

Each variant fits a freshly seeded CNN (09c's recipe: conv_layer, 07's BatchNorm, nfs [32, 64],
Adam) for one epoch of `batches` training batches (validation: one batch), timed by the harness's
wall clock. The variants take turns, `rounds` times after one warm-up fit each; the median seconds
per training batch is reported for each, and each one's ratio to float32 from the same round
(median over rounds). `--fp16_scratch` adds MixedPrecision in float16; it is off unless passed,
since on a CPU PyTorch has slow float16 kernels: on a GPU, pass it. The CPU's bfloat16
instructions (from /proc/cpuinfo, 01's `read_cpuinfo`) are printed first.
The last line: autocast's time as a ratio of float32's (below 1: faster).
"""
import statistics
from functools import partial

import torch
import torch.nn.functional as F

from exp.nb_10c import (AutocastCallback, DataBunch, Dataset, Learner, MixedPrecision, adam_opt,
                        autocast_dtype, conv_layer, def_device, get_cnn_model, get_dls, init_cnn,
                        read_cpuinfo)
from nbio import run_cli
from timing import alternate, check_counts, clock, median_ratios, set_threads

FLAGS = ('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16')


def _cpu_flags():
    "The first processor's flags in /proc/cpuinfo; none where it cannot be read (not Linux)."
    try: return set(read_cpuinfo().get('flags', '').split())
    except OSError: return set()


def _data(batches, bs):
    g = torch.Generator().manual_seed(0)
    x = torch.randn((batches + 1)*bs, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (len(x),), generator=g)
    n = batches*bs
    return DataBunch(*get_dls(Dataset(x[:n], y[:n]), Dataset(x[n:], y[n:]), bs), c_in=1, c_out=10)


def _fit_time(data, cbs):
    "A function timing one epoch's fit: seconds per training batch (the validation batch included)."
    def run():
        torch.manual_seed(0)
        model = get_cnn_model(data, [32, 64], conv_layer); init_cnn(model)
        learn = Learner(model.to(def_device), data, F.cross_entropy, opt_func=adam_opt(), lr=1e-3,
                        cb_funcs=cbs)
        learn.logger = lambda *a: None
        with clock() as t: learn.fit(1)
        return t.wall / len(data.train_dl)
    return run


def main(rounds=5, batches=20, bs=128, threads=0, fp16_scratch=False):
    check_counts(rounds=rounds, batches=batches, bs=bs)
    n_threads = set_threads(threads)
    flags = _cpu_flags()
    print(f"device {def_device}, {n_threads} torch thread(s); CPU: "
          + ', '.join(f"{f} {f in flags}" for f in FLAGS)
          + f"; PyTorch CPU capability {torch.backends.cpu.get_cpu_capability()}")
    data = _data(batches, bs)
    autocast = f"autocast {str(autocast_dtype(def_device.type)).replace('torch.', '')}"
    variants = {'float32': [], autocast: [AutocastCallback]}
    if fp16_scratch: variants['MixedPrecision float16'] = [partial(MixedPrecision, scale_wait=10)]
    times = alternate({k: _fit_time(data, cbs) for k, cbs in variants.items()}, rounds, warmup=1)
    ratios = median_ratios(times, 'float32')
    for k, ts in times.items():
        print(f"{k:24} {statistics.median(ts)*1000:8.1f} ms per batch   "
              f"{ratios[k]:.2f}x float32's time")
    print(f"{autocast} / float32 time ratio: {ratios[autocast]:.2f}")


if __name__ == '__main__': run_cli(main)
