"""The Runner and callbacks of notebook 04 (exp.nb_04): event order, control flow, stats, failures.

Small synthetic data sets in float64, so every run takes milliseconds and numbers can be compared
tightly with a hand-written computation.
"""
import copy
import functools
import math
import types

import pytest
import torch
import torch.nn.functional as F

from exp.nb_04 import (AvgStats, AvgStatsCallback, Callback, DataBunch, DataLoader, Dataset,
                       Learner, Runner, TerminateOnNaNCallback, TrainEvalCallback, accuracy,
                       camel2snake, def_device, fit, get_model, listify)

# One training batch fires all six batch events; a validation batch has no backward pass and no
# step.
TRAIN_BATCH = ['begin_batch', 'after_pred', 'after_loss', 'after_backward', 'after_step',
               'after_batch']
VALID_BATCH = ['begin_batch', 'after_pred', 'after_loss', 'after_batch']
# One epoch over 3 training batches and 2 validation batches.
EPOCH = (['begin_epoch'] + TRAIN_BATCH * 3 + ['begin_validate'] + VALID_BATCH * 2 + ['after_epoch'])
# The whole 2-epoch fit: 1 + 2 * (1 + 18 + 1 + 8 + 1) + 1 = 60 events.
EXPECTED_2_EPOCHS = ['begin_fit'] + EPOCH * 2 + ['after_fit']


def make_data(n_train=6, n_valid=8, bs=2, valid_bs=4, n_in=4, c=3, seed=0):
    """Float64 random data; loaders in a fixed order (no shuffling) so runs can be replayed by
    hand."""
    g = torch.Generator().manual_seed(seed)
    x_t = torch.randn(n_train, n_in, generator=g, dtype=torch.float64)
    x_v = torch.randn(n_valid, n_in, generator=g, dtype=torch.float64)
    y_t = torch.randint(0, c, (n_train,), generator=g)
    y_v = torch.randint(0, c, (n_valid,), generator=g)
    return DataBunch(DataLoader(Dataset(x_t, y_t), bs), DataLoader(Dataset(x_v, y_v), valid_bs),
                     c=c)


def make_learner(data, lr=0.1, seed=0, loss_func=F.cross_entropy):
    torch.manual_seed(seed)
    model, opt = get_model(data, lr=lr, nh=5)
    return Learner(model.double(), opt, loss_func, data)


def on_device(*ts): return [t.to(def_device) for t in ts]


def params(model): return [p.detach().clone() for p in model.parameters()]


def assert_params_equal(a, b):
    for p, q in zip(a, b): assert torch.equal(p, q)


class EventLog(Callback):
    """Called for every event (its own __call__) and writes each one down."""
    _order = -10   # first, so it sees an event even when a later callback raises at it
    def __init__(self): self.events = []
    def __call__(self, event): self.events.append(event)


class FitEnd(Callback):
    def begin_fit(self): self.ended = False
    def after_fit(self): self.ended = True


def fit_events(epochs=2, cbs=(), **kw):
    data = make_data(**kw)
    run = Runner(cbs=[*cbs, EventLog()])
    learn = make_learner(data)
    run.fit(epochs, learn)
    return run, learn


# --- event order -----------------------------------------------------------------------------

def test_exact_event_sequence_two_epochs_three_batches():
    run, _ = fit_events(2)
    assert len(run.data.train_dl) == 3 and len(run.data.valid_dl) == 2
    assert len(EXPECTED_2_EPOCHS) == 60
    assert run.event_log.events == EXPECTED_2_EPOCHS


def test_the_loops_start_where_a_callback_sets_them_then_at_zero_again():
    """09b's resume sets start_epoch and start_iter at begin_fit: the epochs, and the batches of
    that fit's first training pass, are counted from them (09b's loader gives only the batches
    not done; this one gives all three)."""
    seen = []
    class Start(Callback):
        def begin_fit(self): self.run.start_epoch, self.run.start_iter = 1, 2
        def begin_batch(self): seen.append((self.epoch, self.iter, self.in_train))
    run, _ = fit_events(epochs=3, cbs=[Start()])
    assert [s[:2] for s in seen if s[2]] == [(1, 2), (1, 3), (1, 4), (2, 0), (2, 1), (2, 2)]
    assert [s[:2] for s in seen if not s[2]] == [(e, i) for e in (1, 2) for i in range(2)]
    assert run.start_epoch == run.start_iter == 0   # the next fit starts at the beginning


def test_callbacks_run_in_order_of_their__order_attribute():
    calls = []
    def make(name, order):
        methods = {'_order': order, 'begin_fit': lambda self: calls.append(name)}
        return type(name, (Callback,), methods)()
    run = Runner(cbs=[make('C', 5), make('A', -3), make('B', 0), make('D', 5)])
    run.fit(0, make_learner(make_data()))
    assert calls == ['A', 'B', 'C', 'D']   # ties (C, D) keep the order they were given in


def test_every_callback_runs_even_when_an_earlier_one_returned_true():
    calls = []
    class First(Callback):
        _order = -1
        def begin_epoch(self): calls.append('first'); return True
    class Second(Callback):
        def begin_epoch(self): calls.append('second')
    run, _ = fit_events(1, cbs=[Second(), First()])
    assert calls == ['first', 'second']
    assert 'after_pred' not in run.event_log.events[:run.event_log.events.index('begin_validate')]


# --- names ------------------------------------------------------------------------------------

def test_camel2snake_and_listify():
    assert camel2snake('AvgStatsCallback') == 'avg_stats_callback'
    assert camel2snake('ParamScheduler') == 'param_scheduler'
    assert camel2snake('LR_Find') == 'lr_find'
    assert listify(None) == [] and listify((1, 2)) == [1, 2] and listify('ab') == ['ab']
    assert listify(3) == [3]


def test_callbacks_reachable_by_snake_case_name():
    class MyFancyCallback(Callback): pass
    fancy = MyFancyCallback()
    run = Runner(cbs=fancy, cb_funcs=[lambda: AvgStatsCallback(accuracy)])
    assert run.my_fancy is fancy
    assert isinstance(run.avg_stats, AvgStatsCallback)
    assert isinstance(run.train_eval, TrainEvalCallback)
    assert isinstance(run.terminate_on_nan, TerminateOnNaNCallback)
    names = [cb.name for cb in run.cbs]
    assert names == ['train_eval', 'terminate_on_nan', 'my_fancy', 'avg_stats']


def test_defaults_not_duplicated_and_bad_callbacks_rejected():
    te = TrainEvalCallback()
    run = Runner(cbs=[te])
    assert sum(isinstance(cb, TrainEvalCallback) for cb in run.cbs) == 1 and run.train_eval is te
    with pytest.raises(TypeError, match='cb_funcs'):
        Runner(cbs=[AvgStatsCallback])   # a class where an instance belongs
    class ModelCallback(Callback): pass
    with pytest.raises(ValueError, match="'model'"):
        Runner(cbs=ModelCallback())      # would hide run.model


def test_callback_names_may_not_hide_runner_state_but_may_replace_a_callback():
    # `xb` is None until the first batch: still taken
    for state in ['loss', 'xb', 'epoch', 'n_epochs']:
        cls = type(state.title().replace('_', '') + 'Callback', (Callback,), {})
        assert cls().name == state
        with pytest.raises(ValueError, match=f"'{state}'"): Runner(cbs=cls())
    class Spy(Callback): pass
    first, second = Spy(), Spy()
    run = Runner(cbs=[first, second])
    assert run.spy is second and run.cbs[-2:] == [first, second]


def test_get_model_default_learning_rate():
    model, opt = get_model(make_data())
    assert [pg['lr'] for pg in opt.param_groups] == [0.1]
    assert next(model.parameters()).device.type == def_device.type


def test_callback_reads_runner_state_and_writes_through_run():
    class Halve(Callback):
        def after_loss(self):
            assert self.loss is self.run.loss   # reading forwards to the runner
            self.run.loss = self.loss / 2       # writing must go through self.run
    data = make_data()
    # one batch per pass: halving the loss halves the gradient, so SGD moves the weights half as far
    first_a, first_b = make_learner(data), make_learner(data)
    Runner(cbs=Stop1()).fit(1, first_a)
    Runner(cbs=[Stop1(), Halve()]).fit(1, first_b)
    start = make_learner(data).model
    for p0, p1, p2 in zip(params(start), params(first_a.model), params(first_b.model)):
        torch.testing.assert_close(p2 - p0, (p1 - p0) / 2)
    with pytest.raises(AttributeError, match='not attached'):
        Halve().loss


class Stop1(Callback):
    """Ends every pass through a data loader after its first batch."""
    def after_batch(self): return True


# --- control flow -----------------------------------------------------------------------------

def test_begin_batch_true_skips_that_batch():
    class SkipSecondTrainBatch(Callback):
        def begin_batch(self): return self.run.in_train and self.run.iter == 1
    data = make_data()
    run, learn = fit_events(1, cbs=[SkipSecondTrainBatch()])
    # by hand: SGD on training batches 0 and 2 only
    ref = make_learner(data)
    for i, (xb, yb) in enumerate(data.train_dl):
        if i == 1: continue
        xb, yb = on_device(xb, yb)
        F.cross_entropy(ref.model(xb), yb).backward()
        ref.opt.step(); ref.opt.zero_grad()
    for p, q in zip(learn.model.parameters(), ref.model.parameters()):
        torch.testing.assert_close(p, q)
    ev = run.event_log.events
    # batch 1: nothing but begin/after
    assert ev[1:10] == ['begin_epoch', *TRAIN_BATCH, 'begin_batch', 'after_batch']
    assert ev.count('after_step') == 2 and run.n_iter == 3                           # still counted


def test_after_loss_true_skips_backward_and_step():
    class NoUpdate(Callback):
        def after_loss(self): return True
    data = make_data()
    run, learn = fit_events(1, cbs=[NoUpdate()])
    assert_params_equal(params(learn.model), params(make_learner(data).model))
    assert 'after_backward' not in run.event_log.events and 'after_step' not in run.event_log.events


def test_after_backward_true_accumulates_gradients():
    class AccumulateAll(Callback):
        def after_backward(self): return True
    data = make_data()
    run, learn = fit_events(1, cbs=[AccumulateAll()])
    ref = make_learner(data)
    for xb, yb in data.train_dl:
        F.cross_entropy(ref.model(xb.to(def_device)), yb.to(def_device)).backward()
    for p, q in zip(learn.model.parameters(), ref.model.parameters()):
        torch.testing.assert_close(p, q)             # never stepped
        torch.testing.assert_close(p.grad, q.grad)   # gradients of all 3 batches added up


def test_after_batch_begin_validate_after_epoch_and_begin_fit_stop_things():
    run, _ = fit_events(2, cbs=[Stop1()])
    assert run.event_log.events.count('after_batch') == 2 * (1 + 1) and run.n_iter == 2

    class NoValid(Callback):
        def begin_validate(self): return True
    run, _ = fit_events(1, cbs=[NoValid()])
    assert run.event_log.events[-3:] == ['begin_validate', 'after_epoch', 'after_fit']

    class OneEpoch(Callback):
        def after_epoch(self): return True
    run, _ = fit_events(5, cbs=[OneEpoch()])
    assert run.event_log.events.count('begin_epoch') == 1
    assert run.event_log.events[-1] == 'after_fit'

    class NoFit(Callback):
        def begin_fit(self): return True
    run, _ = fit_events(5, cbs=[NoFit()])
    assert run.event_log.events == ['begin_fit', 'after_fit']


# --- TrainEvalCallback --------------------------------------------------------------------------

def test_train_eval_modes_and_fractional_epochs():
    seen = []
    class Watch(Callback):
        _order = 1   # after TrainEvalCallback has updated the counters
        def begin_batch(self): seen.append(('mode', self.run.in_train, self.model.training))
        def after_batch(self):
            seen.append(('count', self.run.in_train, self.run.n_epochs, self.run.n_iter))
    run, learn = fit_events(2, cbs=[Watch()])
    train_counts = [(e, i) for kind, tr, *rest in seen if kind == 'count' and tr for e, i in [rest]]
    third = 1 / 3
    expected = [third, 2 * third, 1, 1 + third, 1 + 2 * third, 2]
    assert [i for _, i in train_counts] == [1, 2, 3, 4, 5, 6]
    for (e, _), x in zip(train_counts, expected): assert math.isclose(e, x, rel_tol=1e-12)
    # validation batches leave the counters alone and run in eval mode
    valid_counts = [rest for kind, tr, *rest in seen if kind == 'count' and not tr]
    counts = [tuple(v) for v in valid_counts]
    assert counts == [(pytest.approx(1.), 3)] * 2 + [(pytest.approx(2.), 6)] * 2
    assert all(tr == training for kind, tr, training in (s for s in seen if s[0] == 'mode'))
    assert not learn.model.training


# --- AvgStats -------------------------------------------------------------------------------------

def test_avg_stats_weights_batches_by_size():
    stats = AvgStats([], in_train=True)
    for n, loss in [(4, 1.), (4, 1.), (2, 4.)]:
        batch_loss = torch.tensor(loss, device=def_device)
        stats.accumulate(types.SimpleNamespace(xb=torch.zeros(n, 3), loss=batch_loss))
    assert stats.count == 10
    # 1.6; unweighted mean would be 2
    assert stats.avg_stats == [pytest.approx((4 + 4 + 2 * 4.) / 10)]


def test_avg_stats_callback_matches_whole_data_with_short_last_batch():
    # 10 validation items in batches of 4: 4, 4, 2
    data = make_data(n_valid=10, valid_bs=4)
    assert [len(xb) for xb, _ in data.valid_dl] == [4, 4, 2]
    learn = make_learner(data)
    run = Runner(cb_funcs=lambda: AvgStatsCallback([accuracy]))
    run.fit(1, learn)
    x, y = on_device(data.valid_ds.x, data.valid_ds.y)
    with torch.no_grad(): out = learn.model(x)
    loss, acc = run.avg_stats.valid_stats.avg_stats
    assert run.avg_stats.valid_stats.count == 10
    assert loss == pytest.approx(F.cross_entropy(out, y).item(), rel=1e-10)
    assert acc == pytest.approx(accuracy(out, y).item(), rel=1e-6)   # accuracy is float32
    assert run.avg_stats.train_stats.count == 6


def test_runner_matches_nb03_fit():
    data = make_data(n_train=20, n_valid=10, bs=4, valid_bs=3)
    a, b = make_learner(data), make_learner(data)
    hist = fit(2, a.model, a.loss_func, a.opt, data.train_dl, data.valid_dl)
    run = Runner(cb_funcs=lambda: AvgStatsCallback(accuracy))
    run.fit(2, b)
    (loss, acc), (loss03, acc03) = run.avg_stats.valid_stats.avg_stats, hist[-1]
    # accuracy is float32
    assert loss == pytest.approx(loss03, rel=1e-10) and acc == pytest.approx(acc03, rel=1e-6)
    for p, q in zip(a.model.parameters(), b.model.parameters()): torch.testing.assert_close(p, q)


# --- failures -----------------------------------------------------------------------------------

class MyError(RuntimeError): pass


def test_exception_in_callback_keeps_type_and_names_callback_and_event():
    boom = MyError('boom')
    class Exploding(Callback):
        def after_backward(self): raise boom
    run = Runner(cbs=[Exploding(), FitEnd()])
    with pytest.raises(MyError) as info:
        run.fit(1, make_learner(make_data()))
    assert info.value is boom                                    # the same object, same type
    assert info.value.__notes__ == ['raised in Exploding.after_backward']
    assert run.fit_end.ended


def test_nan_loss_stops_with_epoch_and_batch_in_message():
    calls = []
    def loss_nan_at_epoch1_batch1(pred, yb):
        calls.append(1)
        loss = F.cross_entropy(pred, yb)
        # training batches 0-2 and validation batches 0-1 make 5 calls per epoch; call 7 is
        # epoch 1, training batch 1
        return loss * float('nan') if len(calls) == 7 else loss
    data = make_data()
    learn = make_learner(data, loss_func=loss_nan_at_epoch1_batch1)
    run = Runner(cbs=[FitEnd(), EventLog()])
    with pytest.raises(FloatingPointError, match=r'epoch 1, training batch 1\b') as info:
        run.fit(3, learn)
    assert 'nan' in str(info.value)
    assert info.value.__notes__ == ['raised in TerminateOnNaNCallback.after_loss']
    assert run.fit_end.ended and run.event_log.events[-2:] == ['after_loss', 'after_fit']
    # the NaN batch never stepped
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())


def test_absurd_learning_rate_is_stopped():
    data = make_data(n_train=64, bs=8)
    learn = make_learner(data, lr=1e8)
    with pytest.raises(FloatingPointError, match=r'epoch \d+, (training|validation) batch \d+'):
        Runner().fit(50, learn)


def test_keyboard_interrupt_runs_after_fit_and_leaves_model_usable():
    class CtrlC(Callback):
        def after_backward(self):   # mid-epoch, between backward and step: gradients are half-used
            if self.run.iter == 1: raise KeyboardInterrupt
    data = make_data()
    learn = make_learner(data)
    run = Runner(cbs=[CtrlC(), FitEnd(), EventLog()])
    with pytest.raises(KeyboardInterrupt) as info:
        run.fit(2, learn)
    assert info.value.__notes__ == ['raised in CtrlC.after_backward']
    assert run.fit_end.ended and run.event_log.events[-1] == 'after_fit'
    assert run.n_iter == 1 and not learn.model.training
    # the model still predicts, and the same model and optimizer train on
    with torch.no_grad(): out = learn.model(data.valid_ds.x.to(def_device))
    assert out.shape == (8, 3) and torch.isfinite(out).all()
    before = params(learn.model)
    run2 = Runner(cb_funcs=lambda: AvgStatsCallback(accuracy))
    run2.fit(1, learn)
    assert run2.n_iter == 3 and run2.avg_stats.train_stats.count == 6
    # the next fit started from zeroed gradients: one clean epoch of SGD from `before`
    ref = copy.deepcopy(learn)
    for p, b in zip(ref.model.parameters(), before): p.data.copy_(b)
    ref.opt = torch.optim.SGD(ref.model.parameters(), lr=0.1)
    for xb, yb in data.train_dl:
        xb, yb = on_device(xb, yb)
        F.cross_entropy(ref.model(xb), yb).backward()
        ref.opt.step(); ref.opt.zero_grad()
    for p, q in zip(learn.model.parameters(), ref.model.parameters()):
        torch.testing.assert_close(p, q)


# --- misspelled callback methods: refused, naming the nearest event ------------------------------

def test_runner_events_are_exactly_the_events_a_fit_fires():
    run, _ = fit_events(2)
    assert set(run.event_log.events) == set(Runner.events)
    assert len(Runner.events) == len(set(Runner.events)) == 11


@pytest.mark.parametrize('typo, nearest', [
    ('begin_bacth', 'begin_batch'),
    ('after_los', 'after_loss'),
    ('begin_epochs', 'begin_epoch'),
    ('after_validate', 'begin_validate'),
])
def test_misspelled_event_method_is_refused_naming_the_nearest_event(typo, nearest):
    methods = {typo: lambda self: None, 'begin_fit': lambda self: None}
    cls = type('TypoCallback', (Callback,), methods)
    with pytest.raises(ValueError) as info:
        Runner(cbs=cls())
    msg = str(info.value)
    assert f"TypoCallback: {typo!r} is not an event" in msg and f"did you mean {nearest!r}?" in msg
    with pytest.raises(ValueError, match=typo):   # the same check for cb_funcs and for add_cbs
        Runner(cb_funcs=cls)
    run = Runner()
    with pytest.raises(ValueError, match=typo):
        run.add_cbs(cls())


def test_every_misnamed_method_is_reported_and_nothing_is_attached():
    class Two(Callback):
        def after_stepp(self): pass
        def begin_validation(self): pass
    class Fine(Callback):
        def begin_fit(self): pass
    run = Runner()
    before = list(run.cbs)
    with pytest.raises(ValueError) as info:
        run.add_cbs([Fine(), Two()])
    msg = str(info.value)
    assert "'after_stepp' is not an event" in msg and "did you mean 'after_step'?" in msg
    assert "'begin_validation' is not an event" in msg and "did you mean 'begin_validate'?" in msg
    assert run.cbs == before and 'fine' not in vars(run)   # Fine was checked but not attached


def test_methods_attached_to_an_instance_are_checked_too():
    cb = Callback()
    cb.after_bacth = lambda: None
    with pytest.raises(ValueError, match="did you mean 'after_batch'"):
        Runner(cbs=cb)


def test_private_helpers_non_methods_and_other_names_are_accepted():
    class Helpers(Callback):
        after_fit_count = 0                       # not a method
        def _after_fit_report(self): pass         # private helper
        def beginning(self): pass                 # no 'begin_' prefix
        def save_after_fit(self): pass            # the prefix is not at the start
        def after_fit(self): self.after_fit_count += 1
    run, _ = fit_events(1, cbs=[Helpers()])
    assert run.helpers.after_fit_count == 1


def test_a_name_close_to_no_event_lists_the_events():
    class Far(Callback):
        def after_zzzzzzzzzzzz(self): pass
    with pytest.raises(ValueError) as info:
        Runner(cbs=Far())
    assert 'close to no event' in str(info.value) and ', '.join(Runner.events) in str(info.value)


def test_a_subclass_extends_events():
    class CancelRunner(Runner):
        events = Runner.events + ('after_cancel_batch',)
    class OnCancel(Callback):
        def after_cancel_batch(self): pass
    assert isinstance(CancelRunner(cbs=OnCancel()).on_cancel, OnCancel)
    with pytest.raises(ValueError, match="'after_cancel_batch' is not an event"):
        Runner(cbs=OnCancel())


# --- run.stop ---------------------------------------------------------------------------------

class StopAt(Callback):
    "Sets run.stop at `event` of the training (or validation) batch with index `n` of `epoch`."
    def __init__(self, event, epoch=0, n=1, in_train=True):
        self.event, self.at = event, (epoch, in_train, n)
        setattr(self, event, self._maybe_stop)
    def _maybe_stop(self):
        if (self.run.epoch, self.run.in_train, self.run.iter) == self.at: self.run.stop = True


def test_stop_in_after_step_ends_fit_after_that_batch():
    run, learn = fit_events(3, cbs=[StopAt('after_step', epoch=1, n=1)])
    ev = run.event_log.events
    assert ev == (['begin_fit'] + EPOCH + ['begin_epoch'] + TRAIN_BATCH * 2
                  + ['begin_validate', 'after_epoch', 'after_fit'])
    assert run.stop and run.n_iter == 5 and run.epoch == 1 and not learn.model.training
    # exactly 5 SGD steps were taken: the batch that set stop was stepped, nothing after it
    data = make_data()
    ref = make_learner(data)
    batches = list(data.train_dl)
    for xb, yb in (batches + batches)[:5]:
        F.cross_entropy(ref.model(xb.to(def_device)), yb.to(def_device)).backward()
        ref.opt.step(); ref.opt.zero_grad()
    for p, q in zip(learn.model.parameters(), ref.model.parameters()):
        torch.testing.assert_close(p, q)


def test_stop_in_after_loss_skips_that_batchs_step():
    data = make_data()
    run, learn = fit_events(2, cbs=[StopAt('after_loss', epoch=0, n=0)])
    assert run.event_log.events == ['begin_fit', 'begin_epoch', 'begin_batch', 'after_pred',
                                    'after_loss', 'after_batch', 'begin_validate', 'after_epoch',
                                    'after_fit']
    assert_params_equal(params(learn.model), params(make_learner(data).model))   # no step at all


def test_stop_in_validation_begin_fit_and_after_epoch():
    run, _ = fit_events(3, cbs=[StopAt('after_batch', epoch=0, n=0, in_train=False)])
    until_validation = EPOCH[:-len(VALID_BATCH) - 1]
    assert run.event_log.events == ['begin_fit'] + until_validation + ['after_epoch', 'after_fit']

    class StopAtStart(Callback):
        def begin_fit(self): self.run.stop = True
    run, _ = fit_events(3, cbs=[StopAtStart()])
    assert run.event_log.events == ['begin_fit', 'after_fit']

    class StopAfterFirstEpoch(Callback):
        def after_epoch(self): self.run.stop = True
    run, _ = fit_events(3, cbs=[StopAfterFirstEpoch()])
    assert run.event_log.events == ['begin_fit'] + EPOCH + ['after_fit']


def test_stop_is_reset_by_the_next_fit():
    run = Runner(cbs=[StopAt('after_step', epoch=0, n=0), EventLog()])
    learn = make_learner(make_data())
    run.fit(2, learn)
    assert run.stop and run.n_iter == 1
    run.stop_at.at = (9, True, 0)   # never
    run.event_log.events.clear()
    run.fit(2, learn)
    assert not run.stop and run.event_log.events == EXPECTED_2_EPOCHS


# --- remove_cbs ---------------------------------------------------------------------------------

def test_remove_cbs_detaches_callbacks():
    log, end = EventLog(), FitEnd()
    run = Runner(cbs=[log, end])
    learn = make_learner(make_data())
    run.remove_cbs([log])
    assert log not in run.cbs and 'event_log' not in vars(run) and run.fit_end is end
    run.fit(1, learn)
    assert log.events == [] and end.ended   # the removed one is no longer called; the other is
    not_ours = r"EventLog \('event_log'\) is not one of this runner's callbacks"
    with pytest.raises(ValueError, match=not_ours):
        run.remove_cbs(log)
    run.add_cbs(log)   # and it can come back under its name
    run.fit(1, learn)
    assert run.event_log is log and log.events[0] == 'begin_fit'


# --- DataBunch with PyTorch's DataLoader: the same training as with ours -------------------------

def test_databunch_with_torch_dataloaders_trains_like_ours():
    ours = make_data()
    tds = [torch.utils.data.DataLoader(dl.ds, batch_size=bs)
           for dl, bs in ((ours.train_dl, 2), (ours.valid_dl, 4))]
    theirs = DataBunch(*tds, c=3)
    assert theirs.train_ds is ours.train_ds and theirs.valid_ds is ours.valid_ds
    a, b = make_learner(ours), make_learner(theirs)
    ra = Runner(cb_funcs=lambda: AvgStatsCallback(accuracy))
    rb = Runner(cb_funcs=lambda: AvgStatsCallback(accuracy))
    ra.fit(2, a); rb.fit(2, b)
    for p, q in zip(a.model.parameters(), b.model.parameters()): torch.testing.assert_close(p, q)
    assert ra.avg_stats.valid_stats.avg_stats == pytest.approx(rb.avg_stats.valid_stats.avg_stats)


def test_get_model_sizes_from_a_torch_tensor_dataset():
    ds = torch.utils.data.TensorDataset(torch.randn(10, 7), torch.randint(0, 3, (10,)))
    dl = lambda: torch.utils.data.DataLoader(ds, batch_size=5)
    data = DataBunch(dl(), dl(), c=3)
    model, _ = get_model(data, nh=4)
    assert model[0].in_features == 7 and model[2].out_features == 3
    run = Runner()
    run.fit(1, Learner(model, torch.optim.SGD(model.parameters(), lr=0.1), F.cross_entropy, data))
    assert run.n_iter == 2


def test_databunch_without_a_dataset_says_so():
    with pytest.raises(TypeError, match=r"list has neither \.dataset .* nor \.ds"):
        DataBunch([1], [2], c=2).train_ds


# --- the NaN guard: the same on every device ---------------------------------------------------

class GpuLikeLoss(torch.Tensor):
    """A CPU tensor that says it is not on the CPU, as a loss on a GPU does: a guard that treats
    the two differently takes its GPU path here."""
    is_cpu = property(lambda self: False)
    is_cuda = property(lambda self: True)
    # results of operations on it are plain tensors, and a read (.item) is one call, as usual
    __torch_function__ = torch._C._disabled_torch_function_impl


def nan_loss_at(call_no, gpu_like=False):
    """A cross-entropy loss that is NaN at its `call_no`-th call (1-based) and fine otherwise;
    `gpu_like`: returned as a GpuLikeLoss."""
    calls = []
    def loss_func(pred, yb):
        calls.append(1)
        loss = F.cross_entropy(pred, yb)
        if len(calls) == call_no: loss = loss * float('nan')
        return loss.as_subclass(GpuLikeLoss) if gpu_like else loss
    return loss_func


class KeepState(Callback):
    "Copies the weights and the optimizer's state at the start of each training batch."
    def begin_batch(self):
        if self.in_train: self.state = copy.deepcopy((params(self.model), self.opt.state_dict()))


def learner_with_momentum(data, loss_func):
    """make_learner's model with SGD that has momentum and weight decay: a step taken with a NaN
    loss would change the weights and the momentum even if the gradients were zeroed."""
    learn = make_learner(data, loss_func=loss_func)
    learn.opt = torch.optim.SGD(learn.model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    return learn


@pytest.mark.parametrize('gpu_like', [False, True], ids=['cpu', 'gpu-like'])
def test_nan_guard_takes_no_step_with_a_nan_loss_on_any_device(gpu_like):
    # 6 training batches per epoch; loss call 4 is training batch 3
    learn = learner_with_momentum(make_data(n_train=12), nan_loss_at(4, gpu_like))
    run = Runner(cbs=KeepState())
    with pytest.raises(FloatingPointError) as info: run.fit(2, learn)
    assert str(info.value).startswith('loss is nan in epoch 0, training batch 3 (0-based; '
                                      '6 batches per pass): stopped before its backward pass')
    assert run.n_iter == 3 and run.iter == 3
    weights, opt_state = run.keep_state.state          # as training batch 3 began
    assert_params_equal(params(learn.model), weights)
    momenta = [s['momentum_buffer'] for s in learn.opt.state_dict()['state'].values()]
    assert_params_equal(momenta, [s['momentum_buffer'] for s in opt_state['state'].values()])


def test_nan_guard_names_a_validation_batch():
    # 3 training and 2 validation batches; loss call 5 is validation batch 1 of epoch 0
    with pytest.raises(FloatingPointError, match=r'^loss is nan in epoch 0, validation batch 1 '
                       r'\(0-based; 2 batches per pass\)'):
        Runner().fit(2, make_learner(make_data(), loss_func=nan_loss_at(5, gpu_like=True)))


def count_reads(monkeypatch):
    """Count the calls that copy a tensor's value to Python (.item, .tolist): on a GPU, each is a
    sync."""
    reads = []
    for meth in ('item', 'tolist'):
        orig = getattr(torch.Tensor, meth)
        def counted(self, *a, _orig=orig, **k):
            reads.append(1)
            return _orig(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, meth, counted)
    return reads


@pytest.mark.parametrize('gpu_like', [False, True], ids=['cpu', 'gpu-like'])
def test_nan_guard_reads_each_loss_once_on_any_device(monkeypatch, gpu_like):
    learn = make_learner(make_data(n_train=12), loss_func=nan_loss_at(0, gpu_like))
    reads = count_reads(monkeypatch)
    Runner().fit(2, learn)                             # 6 training + 2 validation batches an epoch
    assert len(reads) == 2 * 8


def test_nan_guard_takes_no_arguments():
    with pytest.raises(TypeError): TerminateOnNaNCallback(every=50)


# --- names the course's code relies on -----------------------------------------------------------

def test_typing_names_are_exported():
    import typing
    from collections.abc import Iterable
    ns = {}
    exec('from exp.nb_04 import *', ns)
    for name in ('Any', 'Callable', 'Collection', 'Dict', 'Iterator', 'List', 'Optional',
                 'Sequence', 'Tuple', 'Union'):
        assert ns[name] is getattr(typing, name)
    assert ns['Iterable'] is Iterable and ns['partial'] is functools.partial
