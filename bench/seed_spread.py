"""How far an asserted accuracy moves with the seed: the spread a notebook's threshold is set from.

    .venv/bin/python bench/seed_spread.py [--run nb07] [--seeds 5] [--first 0] [--threads 1]

A run on another device (a GPU's arithmetic, TF32, another BLAS) changes the result about as much
as another seed does, so a threshold asserted in a notebook should sit below the seeds' spread,
not at one run's figure. This script repeats a notebook's asserted training with seeds `first`,
`first + 1`, ... and prints each accuracy, then the mean, the sample standard deviation, the
minimum and the maximum. The last line gives the bound mean - 3 standard deviations.

Runs (`--run`), each with the notebook's own settings (tests/test_bench_seed_spread.py checks
that they still match the notebook's cell):
  nb07          07's "99% on MNIST in 3 epochs" (validation accuracy, 10,000 images): 30 s per
                seed on one thread of a quiet 2-core machine, up to 4 min beside other work.
  nb11_mnist    11's three-epoch XResNet on all 60,000 labelled MNIST images, test accuracy:
                about 6 to 9 min per seed on two threads, 11's own count (9.3 in its last run).
  nb11_fashion  the same for Fashion-MNIST (flips): about 10 min per seed on two threads.
Notebook 11's two asserted runs take about 20 minutes per seed together, so 5 seeds of both are
about 1 h 40 min of both cores: not run so far. 11's thresholds would be set from them as 07's
was: the mean minus 3 standard deviations.
"""
import contextlib
import io
import statistics
from functools import partial

import torch
from torch import optim

from nbio import UsageError, run_cli
from timing import check_counts, clock, set_threads

# 07's cell "99% on MNIST in 3 epochs": nfs_big, lr_big, epochs_big, its SGD, and cell 6's batch
NB07 = dict(nfs=[16, 32, 64, 64, 64], lr=1.5, epochs=3, momentum=0.9, weight_decay=5e-4, bs=512)
# 11's MNIST_RUN and FASHION_RUN, and the augmentation each is trained with
NB11 = {'nb11_mnist': dict(width=24, stem_strides=(1, 2, 1), bs=256, lr=1e-2, wd=0.05, epochs=3),
        'nb11_fashion': dict(width=16, stem_strides=(1, 1, 1), bs=256, lr=1e-2, wd=0.05, epochs=3)}
NB11_TFMS = {'nb11_mnist': 'shifts', 'nb11_fashion': 'flip_batch'}
THREADS = {'nb07': 1, 'nb11_mnist': 2, 'nb11_fashion': 2}


def nb07_run(data, seed):
    "07's asserted training from `seed`: its validation accuracy after 3 epochs."
    from exp.nb_07 import (AvgStatsCallback, BatchTransformXCallback, DeviceCallback,
                           ParamScheduler, accuracy, conv_layer, get_learn_run, mnist_view,
                           one_cycle)
    s = NB07
    cbs = [partial(AvgStatsCallback, accuracy), DeviceCallback,
           partial(BatchTransformXCallback, mnist_view),
           partial(ParamScheduler, 'lr', one_cycle(s['lr']))]
    torch.manual_seed(seed)
    opt = partial(optim.SGD, momentum=s['momentum'], weight_decay=s['weight_decay'])
    learn, run = get_learn_run(s['nfs'], data, s['lr'], conv_layer, cbs=cbs, opt_func=opt)
    with contextlib.redirect_stdout(io.StringIO()): run.fit(s['epochs'], learn)
    return run.avg_stats.valid_stats.avg_stats[1]


def nb11_run(name, splits, seed):
    "11's three-epoch run `name` on all labelled images from `seed`: its test accuracy."
    from exp import nb_11
    learn, norm, _ = nb_11.fit_xresnet(splits, [getattr(nb_11, NB11_TFMS[name])], seed=seed,
                                       **NB11[name])
    return nb_11.eval_accuracy(learn, splits[4], splits[5], norm)


def trainer(run):
    "A function seed -> accuracy for `run`, its data loaded once."
    if run == 'nb07':
        from exp.nb_07 import mnist_databunch
        return partial(nb07_run, mnist_databunch(bs=NB07['bs']))
    from exp.nb_11 import fashion_splits, mnist_splits, with_valid_in_train
    splits = mnist_splits() if run == 'nb11_mnist' else fashion_splits()
    return partial(nb11_run, run, with_valid_in_train(splits))


def summary(accs):
    "mean, sample standard deviation, min, max of `accs` (at least two)."
    return statistics.mean(accs), statistics.stdev(accs), min(accs), max(accs)


def main(run='nb07', seeds=5, first=0, threads=None):
    """Train `run` from `seeds` seeds (`first` on) and print the spread of its accuracy.
    `threads`: torch threads (default: the notebook's own count)."""
    if run not in THREADS:
        raise UsageError(f'run must be one of {", ".join(THREADS)}, got {run!r}')
    check_counts(seeds=seeds)
    if seeds < 2: raise UsageError(f'seeds must be at least 2 for a spread, got {seeds}')
    if isinstance(first, bool) or not isinstance(first, int) or first < 0:
        raise UsageError(f'first must be a whole number >= 0, got {first!r}')
    n_threads = set_threads(THREADS[run] if threads is None else threads)
    print(f'{run}: seeds {first}..{first + seeds - 1}, {n_threads} torch thread(s)')
    train, accs = trainer(run), []
    for seed in range(first, first + seeds):
        with clock() as t: accs.append(train(seed))
        print(f'  seed {seed}: accuracy {accs[-1]:.4f} ({t.wall:.0f} s)', flush=True)
    mean, sd, lo, hi = summary(accs)
    print(f'{run}: mean {mean:.4f}, standard deviation {sd:.4f}, min {lo:.4f}, max {hi:.4f} '
          f'over {seeds} seeds; mean - 3 sd = {mean - 3 * sd:.4f}')


if __name__ == '__main__':
    run_cli(main)
