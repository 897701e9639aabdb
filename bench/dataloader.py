"""Our DataLoader (nbs/03_minibatch_training.ipynb) against torch.utils.data.DataLoader, one run.

    python bench/dataloader.py [--repeat 5] [--bs 64,512]

Every loader serves one shuffled epoch of normalized in-memory MNIST (x_train 50000×784, y_train)
in batches of `bs`; nothing is done with the batches. Each epoch is timed by the harness's wall
clock, the loaders taking turns for `repeat` rounds. For each loader: median and best epoch time,
throughput in samples/s (from the median), and the speed-up over PyTorch's default loader
(TensorDataset, per-item fetch + default_collate: the median of the per-round ratios), all measured
in this same run.
The last line gives our default loader's speed-up over PyTorch's default at each batch size.

- ours, whole-batch index: DataLoader(ds, bs, shuffle=True), one `ds[idxs]` per batch
- ours, per item + collate: the same with collate_fn=collate (the general path)
- ours, torch's RandomSampler: DataLoader(ds, batch_size=bs, sampler=RandomSampler(ds)), torch's
  keyword names; the single indices it yields are grouped into batches, then fetched in one lookup
- torch default: torch DataLoader(TensorDataset(x, y), batch_size=bs, shuffle=True)
- torch BatchSampler: torch DataLoader(our Dataset, batch_size=None,
  sampler=BatchSampler(RandomSampler(ds), bs, False)), torch's own way to index whole batches
"""
import statistics

import torch
from torch.utils.data import BatchSampler, RandomSampler, TensorDataset
from torch.utils.data import DataLoader as TorchDataLoader

from exp.nb_03 import DataLoader, Dataset, collate, get_data, normalize
from nbio import run_cli
from timing import alternate, check_counts, clock, median_ratios

BASELINE, OURS = 'torch default', 'ours, whole-batch index'


def loaders(x, y, bs):
    "name -> a function building a fresh loader over the same tensors."
    ds = Dataset(x, y)
    return {
        OURS: lambda: DataLoader(ds, bs, shuffle=True),
        'ours, per item + collate': lambda: DataLoader(ds, bs, shuffle=True, collate_fn=collate),
        "ours, torch's RandomSampler": lambda: DataLoader(ds, batch_size=bs,
                                                          sampler=RandomSampler(ds)),
        BASELINE: lambda: TorchDataLoader(TensorDataset(x, y), batch_size=bs, shuffle=True),
        'torch BatchSampler': lambda: TorchDataLoader(
            ds, batch_size=None, sampler=BatchSampler(RandomSampler(ds), bs, drop_last=False)),
    }


def epoch_time(make_dl, n, bs):
    "A function timing one full epoch of a fresh loader; it checks that every sample was served."
    def run():
        seen, first = 0, None
        with clock() as t:
            for xb, yb in make_dl():
                if first is None: first = xb.shape[0]
                seen += len(yb)
        assert (seen, first) == (n, min(bs, n)), \
            f'served {seen} samples (first batch {first}), expected {n}'
        return t.wall
    return run


def measure(x, y, bs, repeat):
    "name -> list of epoch times; the loaders take turns, after one warm-up epoch each."
    makers = loaders(x, y, bs)
    return alternate({name: epoch_time(f, len(x), bs) for name, f in makers.items()}, repeat,
                     warmup=1)


def report(bs, n, times):
    "Print the table for one batch size; returns our default loader's speed-up over torch's."
    speed_up = median_ratios({k: [1 / t for t in ts] for k, ts in times.items()}, BASELINE)
    print(f'\nbs={bs}: {-(-n // bs)} batches per epoch')
    print(f'{"loader":<29}{"median":>10}{"best":>10}{"samples/s":>13}{"batches/s":>11}'
          f'{"vs torch default":>18}')
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f'{name:<29}{med * 1e3:>8.1f}ms{min(ts) * 1e3:>8.1f}ms{n / med:>13,.0f}'
              f'{-(-n // bs) / med:>11,.0f}{speed_up[name]:>17.1f}×')
    return speed_up[OURS]


def main(repeat=5, bs=(64, 512)):
    bs = [bs] if isinstance(bs, int) else list(bs)
    check_counts(repeat=repeat)
    for b in bs: check_counts(bs=b)
    x_train, y_train, *_ = get_data()
    x_train = normalize(x_train, x_train.mean(), x_train.std())
    torch.manual_seed(0)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads; '
          f'x_train {tuple(x_train.shape)}, one shuffled epoch per timing, {repeat} repeats')
    ratios = {b: report(b, len(x_train), measure(x_train, y_train, b, repeat)) for b in bs}
    print(f'\nours ({OURS}) vs {BASELINE}: '
          + ', '.join(f'{r:.1f}× at bs={b}' for b, r in ratios.items()))


if __name__ == '__main__':
    run_cli(main)
