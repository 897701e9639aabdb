"""What the Runner and its callbacks cost: one MNIST epoch, Runner vs the same loop written by hand.

    .venv/bin/python bench/runner_overhead.py [--repeats 9] [--threads 1]

Both sides start from the same initial weights, see the same batches in the same (seeded) order
from the same DataLoader, use the same SGD optimizer, and do the same work: move each batch to
`def_device`, forward, loss, a NaN/inf check on the loss, batch-size-weighted totals of loss and
accuracy kept as tensors, backward, step, zero_grad, then validation under no_grad. The NaN check
reads the losses as TerminateOnNaNCallback does: each one on the CPU, in groups of `gpu_every`
(and what is left at the end of each pass) on a GPU, so neither side waits for the GPU every batch. The Runner
does it through TrainEvalCallback, AvgStatsCallback([accuracy]) and TerminateOnNaNCallback, so the
difference is the cost of the callback machinery. A "bare" loop (no check, no stats) is timed too,
to show what the stats themselves cost.

The two are timed alternately, several times, and the median of the per-repeat ratios is
reported (goal: at most 3% overhead), by the wall clock and by this process's CPU time (on a
busy machine the CPU time ignores the moments when another program had the core; on a GPU only
the wall clock counts). Default: one torch thread. This tiny model gains little
from more, it keeps the timing steady on a busy machine, and the shorter each batch takes the
larger the loop's relative overhead, so it is the demanding case.
"""
import contextlib
import copy
import io
import math
import statistics
import sys
import time
from pathlib import Path

import fire
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from exp.nb_04 import (AvgStatsCallback, Learner, Runner, TerminateOnNaNCallback, TrainEvalCallback,  # noqa: E402
                       accuracy, add_weighted, def_device, get_model, mnist_databunch)

BS, LR, SEED, SHUFFLE_SEED = 64, 0.1, 42, 1


def check_finite(losses):
    "Raise if any of `losses` (tensors) is NaN or infinite: one read of the device for the lot."
    if losses and not torch.isfinite(torch.stack(losses)).all().item(): raise FloatingPointError('loss is not finite')
    losses.clear()


def plain_epoch(model, opt, loss_func, data, stats=True):
    """One epoch written out by hand; returns [[train loss, acc], [valid loss, acc]] (or [] when not `stats`)."""
    res = []
    nan_every = 1 if def_device.type == 'cpu' else TerminateOnNaNCallback.gpu_every
    for train, dl in ((True, data.train_dl), (False, data.valid_dl)):
        model.train(train)
        tot_loss, tot_acc, count, unread = None, None, 0, []
        with torch.set_grad_enabled(train):
            for xb, yb in dl:
                xb, yb = xb.to(def_device), yb.to(def_device)
                pred = model(xb)
                loss = loss_func(pred, yb)
                if stats:
                    if nan_every == 1:
                        if not math.isfinite(loss.item()): raise FloatingPointError('loss is not finite')
                    else:
                        unread.append(loss.detach())
                        if len(unread) >= nan_every: check_finite(unread)
                    bn = xb.shape[0]
                    tot_loss = add_weighted(tot_loss, loss, bn)
                    tot_acc = add_weighted(tot_acc, accuracy(pred, yb), bn)
                    count += bn
                if train:
                    loss.backward()
                    opt.step()
                    opt.zero_grad()
        if stats:
            check_finite(unread)
            res.append([tot_loss.item() / count, tot_acc.item() / count])
    model.eval()
    return res


@contextlib.contextmanager
def clocks():
    "Measure the block: yields a dict that gets 'wall' and 'cpu' seconds when the block ends."
    t = {}
    w, c = time.perf_counter(), time.process_time()
    try: yield t
    finally:
        if def_device.type == 'cuda': torch.cuda.synchronize()
        t['wall'], t['cpu'] = time.perf_counter() - w, time.process_time() - c


def main(repeats=9, threads=1):
    """Time `repeats` epochs each way; `threads` torch threads (0 leaves torch's default)."""
    if threads: torch.set_num_threads(threads)
    data = mnist_databunch(BS)
    torch.manual_seed(SEED)
    init = copy.deepcopy(get_model(data)[0].state_dict())

    def fresh():
        model, opt = get_model(data, lr=LR)
        model.load_state_dict(init)
        return model, opt

    def time_runner():
        model, opt = fresh()
        run = Runner(cbs=[TrainEvalCallback(), AvgStatsCallback([accuracy]), TerminateOnNaNCallback()])
        learn = Learner(model, opt, F.cross_entropy, data)
        torch.manual_seed(SHUFFLE_SEED)
        with clocks() as t, contextlib.redirect_stdout(io.StringIO()): run.fit(1, learn)
        return t, [run.avg_stats.train_stats.avg_stats, run.avg_stats.valid_stats.avg_stats]

    def time_plain(stats=True):
        model, opt = fresh()
        torch.manual_seed(SHUFFLE_SEED)
        with clocks() as t: res = plain_epoch(model, opt, F.cross_entropy, data, stats=stats)
        return t, res

    n_batches = len(data.train_dl) + len(data.valid_dl)
    print(f'one MNIST epoch: {len(data.train_dl)} training batches of {BS}, {len(data.valid_dl)} validation '
          f'batches, device {def_device}, {torch.get_num_threads()} torch thread(s), {repeats} repeats')
    time_runner(); time_plain(); time_plain(stats=False)   # warm up
    t_run, t_plain, t_bare = [], [], []
    for i in range(repeats):   # alternate, so slow spells of a busy machine hit all three alike
        (a, stats_run), (b, stats_plain), (c, _) = time_runner(), time_plain(), time_plain(stats=False)
        t_run.append(a); t_plain.append(b); t_bare.append(c)
        print(f"  repeat {i}: wall runner {a['wall']:.3f}s plain {b['wall']:.3f}s bare {c['wall']:.3f}s"
              f"  runner/plain: wall {a['wall']/b['wall']:.3f}, cpu {a['cpu']/b['cpu']:.3f}")
    for r, p in zip(stats_run, stats_plain):   # same work: the same numbers
        assert all(math.isclose(x, y, rel_tol=1e-5) for x, y in zip(r, p)), (stats_run, stats_plain)
    def med(ts, k='wall'): return statistics.median(t[k] for t in ts)
    def med_ratio(ts, us, k): return statistics.median(t[k] / u[k] for t, u in zip(ts, us))
    print(f'train/valid loss, accuracy: {stats_run} (the same for both loops)')
    print(f'median epoch (wall): runner {med(t_run):.3f}s, plain {med(t_plain):.3f}s, bare {med(t_bare):.3f}s; '
          f'per batch: runner {1e6*med(t_run)/n_batches:.0f}us, plain {1e6*med(t_plain)/n_batches:.0f}us')
    print(f"stats and NaN check, plain/bare (median ratio, wall): {med_ratio(t_plain, t_bare, 'wall'):.3f}")
    for k in ('wall', 'cpu'):
        r = med_ratio(t_run, t_plain, k)
        print(f'runner/plain, median ratio ({k:4s}): {r:.3f} -> runner overhead {100*(r-1):+.1f}% (goal: at most +3%)')


if __name__ == '__main__':
    fire.Fire(main)
