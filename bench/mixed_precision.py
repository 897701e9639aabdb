"""Training steps of 10c's CNN in float32, under autocast (bfloat16 on the CPU, float16 on CUDA), and with 10c's
from-scratch `MixedPrecision` (float16), through the Learner on the same random Fashion-MNIST-shaped batches.

    .venv/bin/python bench/mixed_precision.py [--rounds 5] [--batches 20] [--bs 128] [--threads 0] [--fp16_scratch False]

Each variant fits a freshly seeded CNN (09c's recipe: conv_layer, 07's BatchNorm, nfs [32, 64], Adam) for one
epoch of `batches` training batches (validation: one batch). The variants are timed alternately, `rounds` times;
the median seconds per training batch is reported for each, and each one's ratio to float32 from the same round
(median over rounds). `--fp16_scratch` adds MixedPrecision in float16: on a CPU PyTorch has slow float16 kernels,
so it is off by default there. The CPU's bfloat16 instructions (from /proc/cpuinfo) are printed first.
The last line: autocast's time as a ratio of float32's (below 1: faster).
"""
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import fire
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from exp.nb_10c import (AutocastCallback, DataBunch, Dataset, Learner, MixedPrecision, adam_opt,  # noqa: E402
                        autocast_dtype, conv_layer, def_device, get_cnn_model, get_dls, init_cnn)


def _cpu_flags():
    try: line = next(l for l in open('/proc/cpuinfo') if l.startswith('flags'))
    except (OSError, StopIteration): return set()
    return set(line.split(':', 1)[1].split())


def _data(batches, bs):
    g = torch.Generator().manual_seed(0)
    x = torch.randn((batches + 1)*bs, 1, 28, 28, generator=g); y = torch.randint(0, 10, (len(x),), generator=g)
    n = batches*bs
    return DataBunch(*get_dls(Dataset(x[:n], y[:n]), Dataset(x[n:], y[n:]), bs), c_in=1, c_out=10)


def _fit_time(data, cbs):
    "Seconds per training batch of one epoch (the validation batch's time is included, as in real training)."
    torch.manual_seed(0)
    model = get_cnn_model(data, [32, 64], conv_layer); init_cnn(model)
    learn = Learner(model.to(def_device), data, F.cross_entropy, opt_func=adam_opt(), lr=1e-3, cb_funcs=cbs)
    learn.logger = lambda *a: None
    if def_device.type == 'cuda': torch.cuda.synchronize()
    t = time.perf_counter(); learn.fit(1)
    if def_device.type == 'cuda': torch.cuda.synchronize()
    return (time.perf_counter() - t)/len(data.train_dl)


def main(rounds=5, batches=20, bs=128, threads=0, fp16_scratch=None):
    if threads: torch.set_num_threads(threads)
    if fp16_scratch is None: fp16_scratch = def_device.type == 'cuda'
    flags = _cpu_flags()
    print(f"device {def_device}, {torch.get_num_threads()} torch thread(s); CPU: "
          + ', '.join(f"{f} {f in flags}" for f in ('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16'))
          + f"; PyTorch CPU capability {torch.backends.cpu.get_cpu_capability()}")
    data = _data(batches, bs)
    variants = {'float32': [], f"autocast {str(autocast_dtype(def_device.type)).replace('torch.', '')}": [AutocastCallback]}
    if fp16_scratch: variants['MixedPrecision float16'] = [partial(MixedPrecision, scale_wait=10)]
    for cbs in variants.values(): _fit_time(data, cbs)   # warm up
    times = {k: [] for k in variants}
    for _ in range(rounds):
        for k,cbs in variants.items(): times[k].append(_fit_time(data, cbs))
    ratios = {k: statistics.median(t/t32 for t,t32 in zip(ts, times['float32'])) for k,ts in times.items()}
    for k,ts in times.items():
        print(f"{k:24} {statistics.median(ts)*1000:8.1f} ms per batch   {ratios[k]:.2f}x float32's time")
    name = next(k for k in variants if k.startswith('autocast'))
    print(f"{name} / float32 time ratio: {ratios[name]:.2f}")


if __name__ == '__main__': fire.Fire(main)
