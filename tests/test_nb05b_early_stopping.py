"""Cancel exceptions, the redefined Runner, LR_Find and EarlyStoppingCallback from
nbs/05b_early_stopping.ipynb."""
import itertools
import math
import re

import pytest
import torch
from torch import nn, optim, tensor
import torch.nn.functional as F

import exp.nb_04
from exp.nb_05b import (CancelBatchException, CancelEpochException, CancelTrainException,
                        Callback, EarlyStoppingCallback, LR_Find, Learner, Runner,
                        def_device)
from exp.nb_05b import _snapshot as snapshot   # private: not part of `import *`


@pytest.fixture
def make_data(make_tiny_data):
    """A factory: 30 training examples of 5 features (3 batches of 10), `n_valid` for validation
    (batches of 20: validation uses 2*bs)."""
    return lambda n_valid=20: make_tiny_data(n_train=30, n_valid=n_valid, bs=10, shape=(5,))


@pytest.fixture
def learner(make_data, make_tiny_model):
    "A factory: 04's Learner of a 5-8-2 MLP on `data` (default `make_data()`)."
    def make(data=None, opt_func=lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9), seed=0):
        # on def_device: where the Runner puts batches
        model = make_tiny_model(5, 2, n_hidden=8, seed=seed).to(def_device)
        return Learner(model, opt_func(model.parameters()), F.cross_entropy, data or make_data())
    return make


class EventLog(Callback):
    def __init__(self): self.events = []
    def __call__(self, event): self.events.append((event, self.run.in_train))
    def count(self, event, in_train=None):
        return sum(e == event and (in_train is None or t == in_train) for e, t in self.events)
    def names(self): return [e for e, _ in self.events]


class Raise(Callback):
    def __init__(self, exc, event, when=lambda run: True):
        self.exc, self.when = exc, when
        setattr(self, event, self._maybe)
    def _maybe(self):
        if self.when(self.run): raise self.exc()


@pytest.fixture
def fit(learner):
    """A factory: fit `learn` (default `learner()`) for `epochs` with an EventLog and `cbs`; return
    the Runner, the log, and whether the weights moved."""
    def run_fit(*cbs, epochs=2, learn=None):
        learn = learn or learner()
        w0 = [p.detach().clone() for p in learn.model.parameters()]
        run = Runner(cbs=[EventLog(), *cbs])
        run.fit(epochs, learn)
        moved = any(not torch.equal(a, b) for a, b in zip(w0, learn.model.parameters()))
        return run, run.event_log, moved
    return run_fit


def test_runner_is_a_subclass_of_04s():
    assert issubclass(Runner, exp.nb_04.Runner) and Runner is not exp.nb_04.Runner


# ---------------------------------------------------------------- the three exceptions

def test_cancel_batch_skips_the_rest_of_the_batch_only(fit):
    run, log, moved = fit(Raise(CancelBatchException, 'after_pred', lambda r: r.in_train))
    assert not moved                                        # no training batch reached its step
    assert log.count('after_loss', True) == 0 and log.count('after_step') == 0
    assert log.count('after_cancel_batch') == 2*3
    assert log.count('after_batch') == 2*(3+1)              # every batch still ends
    assert log.count('begin_validate') == 2 and log.count('after_epoch') == 2
    assert run.n_iter == 6


def test_cancel_batch_after_backward_skips_the_step(fit):
    run, log, moved = fit(Raise(CancelBatchException, 'after_backward'))
    assert not moved and log.count('after_backward') == 6 and log.count('after_step') == 0


def test_cancel_batch_on_some_batches(fit):
    first_batch = Raise(CancelBatchException, 'after_backward', lambda r: r.iter == 0)
    run, log, moved = fit(first_batch, epochs=3)
    assert moved and log.count('after_step') == 3*2 and log.count('after_cancel_batch') == 3


def test_cancel_epoch_skips_the_rest_of_the_epoch(fit):
    after_first_step = Raise(CancelEpochException, 'after_step', lambda r: r.iter == 0)
    run, log, moved = fit(after_first_step, epochs=3)
    assert moved
    assert log.count('after_step') == 3                     # one training batch per epoch
    assert log.count('begin_batch', True) == 3 and log.count('begin_batch', False) == 0
    # validation is part of the rest of the epoch
    assert log.count('begin_validate') == 0
    assert log.count('after_cancel_epoch') == 3 and log.count('after_epoch') == 3
    assert run.n_iter == 3                                  # the interrupted batch was counted
    names = log.names()
    i = names.index('after_cancel_epoch')
    assert names[i-2:i+3] == ['after_step', 'after_batch', 'after_cancel_epoch', 'after_epoch',
                              'begin_epoch']


def test_cancel_epoch_from_begin_validate_and_during_validation(fit):
    _, log, _ = fit(Raise(CancelEpochException, 'begin_validate'))
    assert log.count('begin_batch', False) == 0 and log.count('after_epoch') == 2
    assert log.count('after_step') == 6
    _, log, _ = fit(Raise(CancelEpochException, 'after_loss', lambda r: not r.in_train))
    assert log.count('after_cancel_epoch') == 2 and log.count('after_epoch') == 2
    assert log.count('after_step') == 6


def test_cancel_train_stops_fit_and_after_fit_still_runs(fit):
    third_step = Raise(CancelTrainException, 'after_step', lambda r: r.n_iter == 3)
    run, log, moved = fit(third_step, epochs=10)
    assert log.count('after_step') == 4 and log.count('begin_epoch') == 2 and run.n_iter == 4
    assert log.names()[-4:] == ['after_step', 'after_batch', 'after_cancel_train', 'after_fit']
    # 04's TrainEvalCallback.after_fit ran
    assert log.count('after_fit') == 1 and not run.model.training


@pytest.mark.parametrize('event', ['begin_fit', 'begin_epoch', 'begin_validate', 'after_epoch'])
def test_cancel_train_from_outside_batches(fit, event):
    run, log, _ = fit(Raise(CancelTrainException, event), epochs=3)
    assert log.count('after_cancel_train') == 1 and log.names()[-1] == 'after_fit'
    assert log.count('begin_epoch') == (0 if event == 'begin_fit' else 1)


def test_other_exceptions_and_misplaced_cancels_still_propagate(fit):
    with pytest.raises(ZeroDivisionError) as e: fit(Raise(ZeroDivisionError, 'after_loss'))
    assert e.value.__notes__ == ['raised in Raise.after_loss']
    with pytest.raises(CancelTrainException): fit(Raise(CancelTrainException, 'after_fit'))
    with pytest.raises(CancelEpochException): fit(Raise(CancelEpochException, 'begin_fit'))


def test_runner_usable_again_after_a_cancel(fit, learner):
    learn = learner()
    fit(Raise(CancelTrainException, 'after_step'), learn=learn)
    run, log, moved = fit(learn=learn)
    assert moved and log.count('after_step') == 6


# ---------------------------------------------------------------- LR_Find

class Watch(Callback):
    "Copies the weights just before LR_Find restores them (LR_Find's _order is -1)."
    _order = -2
    def after_fit(self): self.final = [p.detach().clone() for p in self.run.model.parameters()]


def warmed_up(learner, opt_func):
    "A learner whose optimizer already has state (momentum buffers / Adam moments) from 4 batches."
    learn = learner(opt_func=opt_func)
    Runner(cbs=Raise(CancelTrainException, 'begin_batch', lambda r: r.n_iter == 4)).fit(2, learn)
    return learn


def assert_same_state(a, b):
    (ma, oa), (mb, ob) = a, b
    assert ma.keys() == mb.keys() and all(torch.equal(ma[k], mb[k]) for k in ma)
    assert oa['param_groups'] == ob['param_groups']
    assert oa['state'].keys() == ob['state'].keys()
    for k, st in oa['state'].items():
        assert st.keys() == ob['state'][k].keys()
        for n, v in st.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(ob['state'][k][n])), n


@pytest.mark.parametrize('opt_func', [
    lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
    lambda ps: optim.Adam(ps, lr=1e-3),
], ids=['sgd_momentum', 'adam'])
def test_lr_find_stops_on_explosion_and_restores_everything(learner, opt_func):
    learn = warmed_up(learner, opt_func)
    assert learn.opt.state_dict()['state']                    # there is optimizer state to protect
    before = snapshot(learn.model, learn.opt)
    lrf = LR_Find(max_iter=200, min_lr=1e-4, max_lr=1e6)
    run = Runner(cbs=[lrf, Watch()])
    run.fit(100, learn)
    assert len(lrf.losses) < lrf.max_iter                      # stopped early...
    last = lrf.losses[-1]
    # ...because the loss exploded
    assert not math.isfinite(last) or last > lrf.explode*lrf.best_loss
    best = list(itertools.accumulate(lrf.losses, min))
    assert all(l <= lrf.explode*b for l, b in zip(lrf.losses[1:-1], best))  # and not before
    # it did train
    assert any(not torch.equal(a, b) for a, b in zip(run.watch.final, before[0].values()))
    assert_same_state(snapshot(learn.model, learn.opt), before)
    assert all(p.grad is None or not p.grad.any() for p in learn.model.parameters())


def test_lr_find_runs_max_iter_when_the_loss_does_not_explode(learner):
    learn = warmed_up(learner, lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9))
    before = snapshot(learn.model, learn.opt)
    lrf = LR_Find(max_iter=10, min_lr=1e-6, max_lr=1e-3)
    run = Runner(cbs=[lrf, EventLog()])
    run.fit(20, learn)
    assert len(lrf.losses) == 10 and run.n_iter == 10
    assert run.event_log.count('after_backward') == 10
    assert run.event_log.count('begin_batch', False) == 0     # validation skipped
    for i, lr in enumerate(lrf.lrs): assert math.isclose(lr, 1e-6*(1e-3/1e-6)**(i/10), rel_tol=1e-9)
    assert_same_state(snapshot(learn.model, learn.opt), before)


def test_lr_find_catches_nan_before_terminate_on_nan(learner):
    learn = learner(opt_func=lambda ps: optim.SGD(ps, lr=0.1))
    lrf = LR_Find(max_iter=50, min_lr=1e30, max_lr=1e35)      # the first step already blows up
    Runner(cbs=lrf).fit(5, learn)                               # no FloatingPointError
    assert len(lrf.losses) < 50
    assert not math.isfinite(lrf.losses[-1]) or lrf.losses[-1] > 10*lrf.best_loss


def test_lr_find_needs_a_torch_like_optimizer(make_data):
    from exp.nb_05b import Optimizer
    data = make_data()
    model = nn.Sequential(nn.Linear(5, 2))
    with pytest.raises(TypeError, match='LR_Find needs an optimizer'):
        learn = Learner(model, Optimizer(model.parameters()), F.cross_entropy, data)
        Runner(cbs=LR_Find()).fit(1, learn)


# ---------------------------------------------------------------- early stopping

class ScriptedValidLoss(Callback):
    "Replaces every validation loss of epoch e by vals[e] (so the epoch's valid loss is vals[e])."
    def __init__(self, vals): self.vals = vals
    def after_loss(self):
        if not self.run.in_train: self.run.loss = tensor(self.vals[self.run.epoch])


@pytest.mark.parametrize('vals,patience,min_delta,best,stop', [
    ([1.0, 0.8, 0.9, 0.85, 0.95, 0.7, 0.6, 0.5], 3, 0., 1, 4),
    # patient enough to see the late gains
    ([1.0, 0.8, 0.9, 0.85, 0.95, 0.7, 0.6, 0.5], 4, 0., 7, None),
    # improvements below min_delta don't count
    ([1.0, 0.99, 0.98, 0.97, 0.96, 0.95], 2, 0.05, 0, 2),
    ([1.0, 0.99, 0.98, 0.97, 0.96, 0.95], 2, 0., 5, None),
    ([1.0, 1.0, 1.0], 1, 0., 0, 1),                                 # equal is not better
])
def test_early_stopping(fit, vals, patience, min_delta, best, stop):
    es = EarlyStoppingCallback(patience=patience, min_delta=min_delta)
    run, log, _ = fit(ScriptedValidLoss(vals), es, epochs=len(vals))
    assert es.best_epoch == best and es.stopped_epoch == stop
    n_epochs = len(vals) if stop is None else stop + 1
    assert log.count('after_epoch') == n_epochs and log.count('begin_epoch') == n_epochs
    assert log.names()[-1] == 'after_fit'
    assert es.valid_losses == pytest.approx(vals[:n_epochs])
    if stop is not None: assert stop - best >= patience and log.count('after_cancel_train') == 1


def test_early_stopping_valid_loss_is_the_weighted_average(learner, make_data):
    """Uneven validation batches (20, 20, 5): the loss of the trained model on the whole validation
    set at once."""
    data = make_data(n_valid=45)
    assert [len(yb) for _, yb in data.valid_dl] == [20, 20, 5]
    es, learn = EarlyStoppingCallback(patience=5), learner(data)
    Runner(cbs=es).fit(2, learn)
    # validation comes after the last step, so the final model is the one it measured
    with torch.no_grad():
        x, y = data.valid_ds.x.to(def_device), data.valid_ds.y.to(def_device)
        whole = F.cross_entropy(learn.model(x), y)
    batch_means = [F.cross_entropy(learn.model(xb.to(def_device)), yb.to(def_device)).item()
                   for xb, yb in data.valid_dl]
    # the unweighted mean would be wrong
    assert sum(batch_means) / 3 != pytest.approx(whole.item(), rel=1e-5)
    assert es.valid_losses[-1] == pytest.approx(whole.item(), rel=1e-5)


class EndValidationPass(Callback):
    """Returns True from after_batch at validation batch `i` of epoch `epoch`: the rest of that pass
    is skipped."""
    def __init__(self, epoch, i): self.at_epoch, self.i = epoch, i
    def after_batch(self):
        run = self.run
        return not run.in_train and run.epoch == self.at_epoch and run.iter == self.i


def cancel_valid_epoch(epoch, i):
    "CancelEpochException at validation batch `i` of epoch `epoch`."
    at = lambda r: not r.in_train and r.epoch == epoch and r.iter == i
    return Raise(CancelEpochException, 'after_loss', at)


@pytest.mark.parametrize('cut', ['cancel_epoch', 'end_pass'])
@pytest.mark.parametrize('vals,patience,best,stop', [
    # counted, the partial 2.0 of epoch 1 would stop the run at epoch 1
    ([1.0, 2.0, 0.9, 0.8], 1, 3, None),
    ([1.0, 0.1, 1.1, 1.2], 2, 0, 3),      # counted, the partial 0.1 would be the best epoch
])
def test_early_stopping_ignores_an_epoch_whose_validation_was_cut_short(fit, learner, make_data,
                                                                        cut, vals, patience, best,
                                                                        stop):
    data = make_data(n_valid=45)                  # validation batches of 20, 20, 5
    stopper = cancel_valid_epoch(1, 1) if cut == 'cancel_epoch' else EndValidationPass(1, 1)
    es = EarlyStoppingCallback(patience=patience)
    run, log, _ = fit(stopper, ScriptedValidLoss(vals), es, epochs=len(vals), learn=learner(data))
    assert log.count('after_cancel_epoch') == (cut == 'cancel_epoch')
    assert log.count('after_epoch') == (len(vals) if stop is None else stop + 1)
    kept = [v for e, v in enumerate(vals) if e != 1][:len(es.valid_losses)]
    assert es.valid_losses == pytest.approx(kept)
    assert len(es.valid_losses) == log.count('after_epoch') - 1
    assert es.best_epoch == best and es.stopped_epoch == stop


@pytest.mark.parametrize('kw,msg', [
    (dict(patience=0), 'patience must be a whole number >= 1, got 0'),
    (dict(patience=1.5), 'patience must be a whole number >= 1, got 1.5'),
    (dict(patience=2.0), 'patience must be a whole number >= 1, got 2.0'),
    (dict(patience=True), 'patience must be a whole number >= 1, got True'),
    (dict(min_delta=-0.1), 'min_delta must be a number >= 0, got -0.1'),
    (dict(min_delta=float('nan')), 'min_delta must be a number >= 0, got nan'),
])
def test_early_stopping_refuses_bad_arguments_naming_them(kw, msg):
    "Before, patience=1.5 was accepted (and acted as 2)."
    with pytest.raises(ValueError, match=f'EarlyStoppingCallback: {msg}'):
        EarlyStoppingCallback(**kw)


@pytest.mark.parametrize('kw,msg', [
    (dict(max_iter=0), 'max_iter must be a whole number >= 1, got 0'),
    (dict(max_iter=-5), 'max_iter must be a whole number >= 1, got -5'),
    (dict(max_iter=2.5), 'max_iter must be a whole number >= 1, got 2.5'),
    (dict(min_lr=0), 'min_lr must be a number > 0, got 0'),
    (dict(max_lr=-1), 'max_lr must be a number > 0, got -1'),
    (dict(min_lr=1., max_lr=0.1), 'min_lr must be below max_lr, got 1.0 and 0.1'),
    (dict(explode=1), 'explode must be > 1'),
    (dict(explode=0), 'explode must be a number > 0, got 0'),
])
def test_lr_find_refuses_bad_arguments_naming_them(kw, msg):
    """Before, LR_Find(max_iter=0) was accepted and its first batch died with a raw
    ZeroDivisionError."""
    with pytest.raises(ValueError, match=re.escape(f'LR_Find: {msg}')): LR_Find(**kw)


def test_lr_find_max_iter_1_runs_one_batch(fit):
    run, log, _ = fit(LR_Find(max_iter=1, min_lr=1e-3, max_lr=1e-2))
    assert run.lr_find.lrs == [1e-3] and run.n_iter == 1


def test_lr_find_plot_draws_its_curve(fit):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    run, _, _ = fit(LR_Find(max_iter=5, min_lr=1e-4, max_lr=1e-2), epochs=3)
    plt.figure(); run.lr_find.plot(skip_last=1)
    line = plt.gca().get_lines()[-1]
    assert list(line.get_xdata()) == run.lr_find.lrs[:-1]
    assert list(line.get_ydata()) == run.lr_find.losses[:-1]
    assert plt.gca().get_xscale() == 'log'
    plt.close('all')


# ---------------------------------------------------- the cancel events and 04's misspelling guard

def test_runner_events_add_the_three_cancel_events_to_04s():
    assert Runner.events[:len(exp.nb_04.Runner.events)] == exp.nb_04.Runner.events
    added = Runner.events[len(exp.nb_04.Runner.events):]
    assert added == ('after_cancel_batch', 'after_cancel_epoch', 'after_cancel_train')


class Listener(Callback):
    def begin_fit(self): self.seen = []
    def after_cancel_batch(self): self.seen.append('batch')
    def after_cancel_epoch(self): self.seen.append('epoch')
    def after_cancel_train(self): self.seen.append('train')


def test_cancel_event_methods_are_accepted_and_called(fit):
    listener = Listener()
    fit(listener, Raise(CancelBatchException, 'after_pred', lambda r: r.in_train and r.iter == 0),
        Raise(CancelEpochException, 'after_step', lambda r: r.iter == 1 and r.epoch == 0),
        Raise(CancelTrainException, 'after_step', lambda r: r.epoch == 1 and r.iter == 2), epochs=3)
    assert listener.seen == ['batch', 'epoch', 'batch', 'train']
    # 04's own Runner does not fire them
    with pytest.raises(ValueError, match='after_cancel_batch'):
        exp.nb_04.Runner(cbs=Listener())


def test_misspelled_cancel_event_is_refused_naming_the_nearest():
    class Typo(Callback):
        def after_cancel_trian(self): pass
    with pytest.raises(ValueError, match="after_cancel_trian.*did you mean 'after_cancel_train'"):
        Runner(cbs=Typo())
