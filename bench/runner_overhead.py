"""What the Runner and its callbacks cost: one MNIST epoch, Runner vs the same loop written by hand.

    .venv/bin/python bench/runner_overhead.py [--repeats 9] [--threads 1]

Both sides start from the same initial weights, see the same batches in the same (seeded) order
from the same DataLoader, use the same SGD optimizer, and do the same work: move each batch to
`def_device`, forward, loss, a NaN/inf check on the loss, batch-size-weighted totals of loss and
accuracy kept as tensors, backward, step, zero_grad, then validation under no_grad. The NaN check
reads each loss before its step, as TerminateOnNaNCallback does on every device (on a GPU, both
sides wait for it once per batch). The Runner does it through TrainEvalCallback,
AvgStatsCallback([accuracy]) and TerminateOnNaNCallback, so the difference is the cost of the
callback machinery. A "bare" loop (no check, no stats) is timed too, to show what the stats
themselves cost.

The three take turns, `repeats` times, each epoch timed by the harness's `clock`, and the median
of the per-repeat ratios is reported (goal: at most 3% overhead), by the wall clock and by this
process's CPU time (on a busy machine the CPU time ignores the moments when another program had
the core; on a GPU only the wall clock counts). Default: one torch thread. This tiny model gains
little from more, it keeps the timing steady on a busy machine, and the shorter each batch takes
the larger the loop's relative overhead, so it is the demanding case.
"""
import contextlib
import copy
import io
import math
import statistics

import torch
import torch.nn.functional as F

from exp.nb_04 import (AvgStatsCallback, Learner, Runner, TerminateOnNaNCallback,
                       TrainEvalCallback, accuracy, add_weighted, def_device, get_model,
                       mnist_databunch)
from nbio import run_cli
from timing import alternate, check_counts, clock, median_ratio, set_threads

BS, LR, SEED, SHUFFLE_SEED = 64, 0.1, 42, 1


def check_loss(loss):
    "The NaN check of one batch, as TerminateOnNaNCallback's: read the loss before the step."
    if not math.isfinite(loss.item()): raise FloatingPointError('loss is not finite')


def plain_pass(model, opt, loss_func, dl, train, stats):
    "One pass over `dl` written out by hand; returns [loss, accuracy] (None when not `stats`)."
    model.train(train)
    tot_loss, tot_acc, count = None, None, 0
    with torch.set_grad_enabled(train):
        for xb, yb in dl:
            xb, yb = xb.to(def_device), yb.to(def_device)
            pred = model(xb)
            loss = loss_func(pred, yb)
            if stats:
                check_loss(loss)
                bn = xb.shape[0]
                tot_loss = add_weighted(tot_loss, loss, bn)
                tot_acc = add_weighted(tot_acc, accuracy(pred, yb), bn)
                count += bn
            if train:
                loss.backward()
                opt.step()
                opt.zero_grad()
    if not stats: return None
    return [tot_loss.item() / count, tot_acc.item() / count]


def plain_epoch(model, opt, loss_func, data, stats=True):
    """One epoch written out by hand; returns [[train loss, acc], [valid loss, acc]] (or [] when
    not `stats`)."""
    res = [plain_pass(model, opt, loss_func, dl, train, stats)
           for train, dl in ((True, data.train_dl), (False, data.valid_dl))]
    model.eval()
    return res if stats else []


def epochs(data):
    "The three ways to run one epoch, each returning (its clock, its stats), from the same start."
    torch.manual_seed(SEED)
    init = copy.deepcopy(get_model(data)[0].state_dict())
    def fresh():
        model, opt = get_model(data, lr=LR)
        model.load_state_dict(init)
        torch.manual_seed(SHUFFLE_SEED)
        return model, opt
    def runner():
        model, opt = fresh()
        run = Runner(cbs=[TrainEvalCallback(), AvgStatsCallback([accuracy]),
                          TerminateOnNaNCallback()])
        learn = Learner(model, opt, F.cross_entropy, data)
        with clock() as t, contextlib.redirect_stdout(io.StringIO()): run.fit(1, learn)
        return t, [run.avg_stats.train_stats.avg_stats, run.avg_stats.valid_stats.avg_stats]
    def plain(stats=True):
        model, opt = fresh()
        with clock() as t: res = plain_epoch(model, opt, F.cross_entropy, data, stats=stats)
        return t, res
    return {'runner': runner, 'plain': plain, 'bare': lambda: plain(stats=False)}


def report(results, n_batches):
    "Print each repeat, the medians and the ratios; the last line is the runner's overhead."
    t = {k: [c for c, _ in rs] for k, rs in results.items()}
    for i, (a, b, c) in enumerate(zip(t['runner'], t['plain'], t['bare'])):
        print(f"  repeat {i}: wall runner {a.wall:.3f}s plain {b.wall:.3f}s bare {c.wall:.3f}s"
              f"  runner/plain: wall {a.wall/b.wall:.3f}, cpu {a.cpu/b.cpu:.3f}")
    def med(k): return statistics.median(c.wall for c in t[k])
    def ratio(k, base, what): return median_ratio([getattr(c, what) for c in t[k]],
                                                  [getattr(c, what) for c in t[base]])
    print(f"train/valid loss, accuracy: {results['runner'][-1][1]} (the same for both loops)")
    print(f"median epoch (wall): runner {med('runner'):.3f}s, plain {med('plain'):.3f}s, "
          f"bare {med('bare'):.3f}s; per batch: runner {1e6*med('runner')/n_batches:.0f}us, "
          f"plain {1e6*med('plain')/n_batches:.0f}us")
    print(f"stats and NaN check, plain/bare (median ratio, wall): "
          f"{ratio('plain', 'bare', 'wall'):.3f}")
    for k in ('wall', 'cpu'):
        r = ratio('runner', 'plain', k)
        print(f'runner/plain, median ratio ({k:4s}): {r:.3f} -> runner overhead {100*(r-1):+.1f}% '
              f'(goal: at most +3%)')


def main(repeats=9, threads=1):
    """Time `repeats` epochs each way; `threads` torch threads (0 leaves torch's default)."""
    check_counts(repeats=repeats)
    n_threads = set_threads(threads)
    data = mnist_databunch(BS)
    n_batches = len(data.train_dl) + len(data.valid_dl)
    print(f'one MNIST epoch: {len(data.train_dl)} training batches of {BS}, '
          f'{len(data.valid_dl)} validation batches, device {def_device}, '
          f'{n_threads} torch thread(s), {repeats} repeats')
    results = alternate(epochs(data), repeats, warmup=1)
    stats_run, stats_plain = results['runner'][-1][1], results['plain'][-1][1]
    for r, p in zip(stats_run, stats_plain):   # same work: the same numbers
        assert all(math.isclose(x, y, rel_tol=1e-5) for x, y in zip(r, p)), (stats_run, stats_plain)
    report(results, n_batches)


if __name__ == '__main__':
    run_cli(main)
