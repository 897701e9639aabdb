"""The longer run of notebook 14a: its GPT trained on 13's character split for as many whole passes
over the training chapters as fit in `minutes` here, then scored on the chapters held out of
training and of tuning (13's 'held' part) and on the validation chapters, against 13's interpolated
Kneser-Ney 5-gram counted on the same training text. The goal: below the 5-gram's bits per
character on the held-out text.

    .venv/bin/python bench/lm.py [--minutes 30] [--threads 1] [--d_model 192] [--n_layers 3]
        [--n_heads 6] [--ctx 64] [--bs 16] [--lr 5e-3] [--wd 0.1] [--epochs 0] [--seed 0]

With --epochs 0 (the default) the number of passes is chosen first: `probe` training steps are
timed through the same Learner, and the run gets the most whole passes whose estimated time fits
`minutes` with a fifth to spare (at least one); the one-cycle schedule spans them. --epochs N
fixes it instead. The GPT reads pieces of `ctx` characters on their own, in training and in
scoring, as in 14a. Timed by the harness's wall clock; one torch thread by default, as 14a and 13a
train. The last line: bits per character of the GPT and of the 5-gram on the held-out text, and
the training time. A run of the defaults (4 passes, 13,440 steps, 1,363,008 parameters) took 39
minutes on a machine busier than during its first timed steps (the fifth held back since), and
scored 1.639 bits per character on the held-out text against the 5-gram's 1.833.
"""
import math
import time

from exp.nb_14a import (GPT_LM, Callback, CancelTrainException, DataLoader, KneserNey,
                        LM_PreLoader, bits_per_char, char_data, char_lm_data, def_device,
                        gpt_learner, lm_nats, model_device, split_novels, sync, train_gpt)
from nbio import UsageError, run_cli
from timing import check_counts, clock, set_threads


class _StepClock(Callback):
    "The clock after each of the first `steps` training batches, then the fit stops."
    def __init__(self, steps): self.steps,self.marks = steps,[]
    def after_batch(self):
        if not self.in_train: return
        sync(model_device(self.run.model)); self.marks.append(time.perf_counter())
        if len(self.marks) > self.steps: raise CancelTrainException()

def _passes(data, settings, minutes, probe):
    """(passes, seconds a step, seconds a pass): the most whole passes (at least one) whose time,
    estimated from `probe` timed training steps (after one to warm up), fits 80% of `minutes`."""
    learn = gpt_learner(data, settings, progress=False)
    learn.logger = lambda *a: None
    timer = _StepClock(min(probe, len(data.train_dl) - 1))
    learn.fit(1, cbs=[timer])
    per_step = (timer.marks[-1] - timer.marks[0]) / (len(timer.marks) - 1)
    per_pass = per_step * len(data.train_dl)
    # a fifth held back: each pass also scores validation, and other jobs may slow the machine
    return max(1, math.floor(0.8 * minutes*60 / per_pass)), per_step, per_pass


def _score(model, ids, bs, ctx):
    "Bits per character of `model` on `ids`, read in pieces of `ctx` characters (bs streams)."
    return bits_per_char(lm_nats(model, DataLoader(LM_PreLoader(ids, bs, ctx), bs))[0])


def main(minutes=30., threads=1, d_model=192, n_layers=3, n_heads=6, ctx=64, bs=16, lr=5e-3,
         wd=0.1, epochs=0, probe=30, seed=0):
    check_counts(d_model=d_model, n_layers=n_layers, n_heads=n_heads, ctx=ctx, bs=bs,
                 probe=probe)
    if not minutes > 0: raise UsageError(f'minutes must be > 0, got {minutes!r}')
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise UsageError(f'epochs must be a whole number >= 0 (0: as many as fit), got {epochs!r}')
    if d_model % n_heads:
        raise UsageError(f'd_model {d_model} must be a multiple of n_heads {n_heads}')
    n_threads = set_threads(threads)
    settings = {**GPT_LM, 'd_model': d_model, 'n_layers': n_layers, 'n_heads': n_heads,
                'ctx': ctx, 'bptt': ctx, 'bs': bs, 'lr': lr, 'wd': wd, 'seed': seed}
    split = split_novels()
    data, vocab = char_lm_data(settings, split)
    print(f"device {def_device}, {n_threads} torch thread(s); {len(data.train_dl)} steps a pass "
          f"of {bs} x {ctx} characters")
    if not epochs:
        epochs, per_step, per_pass = _passes(data, settings, minutes, probe)
        print(f"{per_step*1e3:.0f} ms a step over {probe} steps: {per_pass/60:.1f} minutes a "
              f"pass, {epochs} pass(es) fit in {minutes:g} minutes")
        data, vocab = char_lm_data(settings, split)   # the first pass's order again
    settings['epochs'] = epochs
    with clock() as t: learn, _ = train_gpt(data, settings, progress=False)
    model = learn.model
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{n_params:,} parameters, {epochs} pass(es), {epochs*len(data.train_dl)} steps in "
          f"{t.wall:.0f} s ({t.wall/60:.1f} minutes)")
    _, train_ids, valid_ids = char_data(split)
    held_ids = vocab.numericalize(split.text('held'))
    five = KneserNey(train_ids, 5, len(vocab))
    rows = {}
    for name, ids in [('validation', valid_ids), ('held-out', held_ids)]:
        rows[name] = (_score(model, ids, bs, ctx),
                      bits_per_char(-five.log_probs(ids).mean().item()))
        print(f"{name:10} ({len(ids):,} characters): GPT {rows[name][0]:.3f}, 5-gram "
              f"{rows[name][1]:.3f} bits per character")
    gpt, ngram = rows['held-out']
    print(f"held-out text: GPT {gpt:.3f} against the 5-gram's {ngram:.3f} bits per character "
          f"({gpt - ngram:+.3f}; {'below' if gpt < ngram else 'not below'}), after {t.wall:.0f} s "
          "of training")


if __name__ == '__main__': run_cli(main)
