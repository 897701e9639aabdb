"""The calls a learner makes in the course's notebooks 05_anneal and 05b_early_stopping
(fastai/course-v3, nbs/dl2/), written in our own words, run against exp.nb_05b the way the course
imports it: `from exp.nb_05b import *`. Tiny synthetic data, so each test takes a fraction of a
second.
"""
import math

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt
import pytest
from torch import optim   # not a course call: the course's 05 and 05b never name optim themselves

# the course's own import: every name below that is not defined here comes from exp
from exp.nb_05b import *


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close('all')


def course_data(n_train=640, n_valid=256, bs=64, n_in=20, seed=0):
    """The course's set-up (train_ds, valid_ds, c, DataBunch(*get_dls(...), c)) on 10 learnable
    synthetic classes."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n_in, 10, generator=g)
    x_train = torch.randn(n_train, n_in, generator=g)
    x_valid = torch.randn(n_valid, n_in, generator=g)
    y_train, y_valid = (x_train @ w).argmax(1), (x_valid @ w).argmax(1)
    train_ds, valid_ds = Dataset(x_train, y_train), Dataset(x_valid, y_valid)
    c = y_train.max().item() + 1
    return DataBunch(*get_dls(train_ds, valid_ds, bs), c)


loss_func = F.cross_entropy


# ---------------------------------------------------------------- 05: schedules

def test_annealer_made_schedules_as_in_the_course():
    f = sched_lin(1, 2)
    assert math.isclose(f(0.3), 1.3)
    # the course plots its schedules at tensor positions
    a, p = torch.arange(0, 100), torch.linspace(0.01, 1, 100)
    for fn in [sched_no, sched_lin, sched_cos, sched_exp]:
        f = fn(2, 1e-2)
        vals = [f(o) for o in p]
        plt.plot(a, vals, label=fn.__name__)
        assert math.isclose(float(vals[-1]), 2 if fn is sched_no else 1e-2, rel_tol=1e-5)
    plt.legend()


def test_combine_scheds_as_in_the_course():
    sched = combine_scheds([0.3, 0.7], [sched_cos(0.3, 0.6), sched_cos(0.6, 0.2)])
    assert [round(sched(p), 10) for p in [0, 0.3, 1]] == [0.3, 0.6, 0.2]
    same = combine_scheds([0.3, 0.7], cos_1cycle_anneal(0.3, 0.6, 0.2))
    p = torch.linspace(0.01, 1, 100)
    assert all(math.isclose(float(sched(o)), float(same(o))) for o in p)
    plt.plot(torch.arange(0, 100), [sched(o) for o in p])


# ------------------------------------------- 05: training with create_learner and ParamScheduler

def test_create_learner_and_runner_as_in_the_course():
    data = course_data()
    torch.manual_seed(0)
    learn = create_learner(get_model, loss_func, data)
    run = Runner([AvgStatsCallback([accuracy])])
    run.fit(3, learn)
    assert run.avg_stats.valid_stats.avg_stats[1] > 0.3   # chance is 0.1: it learned
    learn = create_learner(partial(get_model, lr=0.3), loss_func, data)
    assert learn.opt.param_groups[0]['lr'] == 0.3


def test_param_scheduler_with_recorder_as_in_the_course():
    data = course_data()
    sched = combine_scheds([0.3, 0.7], [sched_cos(0.3, 0.6), sched_cos(0.6, 0.2)])
    cbfs = [Recorder, partial(AvgStatsCallback, accuracy), partial(ParamScheduler, 'lr', sched)]
    torch.manual_seed(0)
    learn = create_learner(get_model_func(0.3), loss_func, data)
    run = Runner(cb_funcs=cbfs)
    run.fit(3, learn)
    n = 3*len(data.train_dl)
    assert len(run.recorder.lrs[-1]) == n and len(run.recorder.losses) == n
    assert all(math.isclose(lr, sched(i/n)) for i, lr in enumerate(run.recorder.lrs[-1]))
    run.recorder.plot_lr()
    run.recorder.plot_loss()
    assert len(plt.gca().get_lines()) == 2


def test_a_schedule_per_param_group_with_pg_dicts():
    data = course_data()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 50), nn.ReLU(), nn.Linear(50, data.c))
    opt = optim.SGD(pg_dicts([model[0].parameters(), model[2].parameters()]), lr=0.1)
    scheds = [sched_lin(0.1, 0.01), sched_cos(0.4, 0.04)]
    run = Runner(cb_funcs=[Recorder, partial(ParamScheduler, 'lr', scheds)])
    run.fit(2, Learner(model, opt, loss_func, data))
    n = 2*len(data.train_dl)
    for lrs, f in zip(run.recorder.lrs, scheds):
        assert all(math.isclose(lr, f(i/n)) for i, lr in enumerate(lrs))


# ---------------------------------------------------------------- 05b: cancelling and the LR finder

def test_cancel_train_exception_raised_in_a_callback(capsys):
    class TestCallback(Callback):
        _order = 1
        def after_step(self):
            print(self.n_iter)
            if self.n_iter >= 10: raise CancelTrainException()
    data = course_data()
    learn = create_learner(get_model, loss_func, data)
    run = Runner(cb_funcs=TestCallback)
    # ends quietly, in the first of 3 epochs of 10 batches
    run.fit(3, learn)
    assert capsys.readouterr().out.split() == [str(i) for i in range(11)]
    assert run.epoch == 1 and run.n_iter == 11


def test_lr_find_with_recorder_as_in_the_course():
    data = course_data()
    torch.manual_seed(0)
    learn = create_learner(get_model, loss_func, data)
    w0 = [p.detach().clone() for p in learn.model.parameters()]
    run = Runner(cb_funcs=[LR_Find, Recorder])
    run.fit(2, learn)
    lrs = run.recorder.lrs[-1]
    assert 1 < len(lrs) <= 2*len(data.train_dl)
    # exponential, from min_lr
    assert all(math.isclose(lr, 1e-6*(10/1e-6)**(i/100)) for i, lr in enumerate(lrs))
    run.recorder.plot(skip_last=5)
    assert plt.gca().get_xscale() == 'log'
    assert len(plt.gca().get_lines()[-1].get_xdata()) == max(len(lrs) - 5, 0)
    run.recorder.plot_lr()
    # ours also restores the model
    assert all(torch.equal(a, b) for a, b in zip(w0, learn.model.parameters()))
