"Schedules, combine_scheds, one-cycle, ParamScheduler and Recorder from nbs/05_anneal.ipynb."
import math

import pytest
import torch
from torch import nn, optim
import torch.nn.functional as F

from exp.nb_05 import (Callback, Learner, ParamScheduler, Recorder, Runner,
                       annealer, combine_scheds, cos_1cycle_anneal, create_learner, create_phases,
                       get_model, get_model_func, one_cycle, pg_dicts, sched_cos,
                       sched_exp, sched_lin, sched_no)


def close(a, b, tol=1e-12): return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


# ---------------------------------------------------------------- schedule functions

@pytest.mark.parametrize('sched,start,end,want', [
    (sched_lin, 1., 3., [1., 2., 3.]),
    (sched_lin, 0.5, 0.1, [0.5, 0.3, 0.1]),
    (sched_cos, 1., 3., [1., 2., 3.]),
    (sched_cos, 0.4, 0., [0.4, 0.2, 0.]),
    (sched_no, 0.7, 99., [0.7, 0.7, 0.7]),
    (sched_exp, 1e-3, 1e-1, [1e-3, 1e-2, 1e-1]),
    (sched_exp, 4., 1., [4., 2., 1.]),
])
def test_schedules_at_0_half_1(sched, start, end, want):
    f = sched(start, end)
    for pos, w in zip([0, 0.5, 1], want): assert close(f(pos), w), (sched.__name__, pos, f(pos), w)


def test_sched_cos_is_the_sgdr_formula():
    eta_max, eta_min = 0.8, 0.05
    f = sched_cos(eta_max, eta_min)
    for t in range(11):
        sgdr = eta_min + 0.5*(eta_max - eta_min)*(1 + math.cos(t/10*math.pi))
        assert close(f(t/10), sgdr)


def test_sched_lin_and_exp_between_the_grid_points():
    assert close(sched_lin(2., 4.)(0.25), 2.5)
    assert close(sched_exp(1., 16.)(0.25), 2.)   # the same factor per equal step of pos
    f = sched_exp(0.1, 10.)
    ratios = [f((i+1)/8)/f(i/8) for i in range(8)]
    assert all(close(r, ratios[0], 1e-9) for r in ratios)


@pytest.mark.parametrize('start,end', [(0., 1.), (1., 0.), (-1., 1.), (0, 1)])
def test_sched_exp_refuses_sign_change_or_zero_when_made(start, end):
    """Refused by the maker itself: before, sched_exp(0, 1) returned a schedule that failed only
    when called."""
    with pytest.raises(ValueError, match='same sign'): sched_exp(start, end)


def test_annealer_tries_a_new_schedule_at_both_ends():
    calls = []
    @annealer
    def sched_log(start, end, pos):
        calls.append(pos)
        return math.log(start) + pos*(math.log(end) - math.log(start))
    # fails where it is made
    with pytest.raises(ValueError, match='math domain'): sched_log(0., 1.)
    calls.clear()
    f = sched_log(1., math.e)
    assert calls == [0, 1] and close(f(0.5), 0.5)


def test_annealer_keeps_names_and_makes_functions_of_pos():
    assert sched_lin.__name__ == 'sched_lin' and sched_cos.__name__ == 'sched_cos'
    @annealer
    def sched_sq(start, end, pos): return start + pos**2*(end - start)
    assert close(sched_sq(0, 4)(0.5), 1.)


# ---------------------------------------------------------------- combine_scheds

def test_combine_scheds_boundaries_and_continuity():
    f = combine_scheds([0.3, 0.7], [sched_cos(0.3, 0.6), sched_cos(0.6, 0.2)])
    assert close(f(0), 0.3) and close(f(0.3), 0.6) and close(f(1), 0.2)
    assert close(f(0.15), 0.45) and close(f(0.65), 0.4)        # middle of each phase
    assert abs(f(0.3 - 1e-9) - f(0.3)) < 1e-6                    # continuous at the boundary
    assert abs(f(1 - 1e-9) - f(1)) < 1e-6


def test_combine_scheds_each_phase_sees_its_full_range():
    f = combine_scheds([0.25, 0.5, 0.25], [sched_lin(0, 1), sched_lin(10, 20), sched_lin(1, 0)])
    assert close(f(0.25), 10.) and close(f(0.5), 15.) and close(f(0.75 - 1e-12), 20., 1e-6)
    assert close(f(0.75), 1.) and close(f(1), 0.)   # at a boundary the later phase takes over


def test_combine_scheds_empty_phases_are_skipped():
    f = combine_scheds([0.5, 0., 0.5], [sched_lin(0, 1), sched_no(9, 9), sched_lin(1, 0)])
    assert [f(p) for p in [0, 0.5, 1]] == [0, 1, 0]
    g = combine_scheds([0.5, 0.5, 0.], [sched_lin(0, 1), sched_lin(1, 0), sched_no(9, 9)])
    assert g(1) == 0


def test_combine_scheds_floating_point_pcts_reach_pos_1():
    # sum(0.1*10) != 1 exactly
    f = combine_scheds([0.1]*10, [sched_lin(i, i+1) for i in range(10)])
    assert close(f(1), 10.) and close(f(0.55), 5.5, 1e-9)


@pytest.mark.parametrize('pcts,n', [([0.5, 0.6], 2), ([0.5, 0.5], 1), ([1.2, -0.2], 2)])
def test_combine_scheds_bad_pcts(pcts, n):
    with pytest.raises(ValueError, match='combine_scheds'): combine_scheds(pcts, [sched_no(0, 0)]*n)


@pytest.mark.parametrize('pos', [-0.1, 1.1])
def test_combine_scheds_pos_out_of_range(pos):
    with pytest.raises(ValueError, match=r'\[0, 1\]'): combine_scheds([1.], [sched_no(0, 0)])(pos)


# ---------------------------------------------------------------- one-cycle

def test_create_phases():
    assert create_phases(0.3) == [0.3, 0.7]
    assert all(close(a, b) for a, b in zip(create_phases([0.2, 0.4]), [0.2, 0.4, 0.4]))


@pytest.mark.parametrize('lr_max,pct', [(0.5, 0.3), (2., 0.25)])
def test_one_cycle_shape(lr_max, pct):
    f = one_cycle(lr_max, pct_start=pct)
    pos = [i/400 for i in range(401)]
    v = [f(p) for p in pos]
    assert close(v[0], lr_max/25) and close(v[-1], lr_max/1e4)
    peak = max(range(len(v)), key=v.__getitem__)
    assert close(pos[peak], pct) and close(v[peak], lr_max)
    assert all(a <= b for a, b in zip(v[:peak], v[1:peak+1]))     # rising
    assert all(a >= b for a, b in zip(v[peak:-1], v[peak+1:]))    # then falling
    assert v[-1] < v[0]                                            # ends below where it started


@pytest.mark.parametrize('lr_max,pct,div_start,div_end',
                         [(0.5, 0.3, 25., 1e4), (2., 0.25, 10., 100.)])
def test_one_cycle_is_the_piecewise_cosine_formula(lr_max, pct, div_start, div_end):
    """Warm-up from lr_max/div_start to lr_max over pct of training, then down to lr_max/div_end,
    both half cosines."""
    eta0, eta1 = lr_max/div_start, lr_max/div_end
    def formula(p):
        if p < pct: return lr_max + (eta0 - lr_max)*(1 + math.cos(math.pi*p/pct))/2
        return eta1 + (lr_max - eta1)*(1 + math.cos(math.pi*(p - pct)/(1 - pct)))/2
    f = one_cycle(lr_max, pct_start=pct, div_start=div_start, div_end=div_end)
    for i in range(201): assert close(f(i/200), formula(i/200), 1e-9), i/200


@pytest.mark.parametrize('kw,arg', [
    (dict(lr_max=-0.5), 'lr_max'), (dict(lr_max=0), 'lr_max'),
    (dict(lr_max=float('nan')), 'lr_max'),
    (dict(lr_max=0.5, div_start=0), 'div_start'), (dict(lr_max=0.5, div_start=-25), 'div_start'),
    (dict(lr_max=0.5, div_end=0), 'div_end'),
    (dict(lr_max=0.5, pct_start=1.5), 'pct_start'),
    (dict(lr_max=0.5, pct_start=-0.1), 'pct_start')])
def test_one_cycle_refuses_bad_arguments_naming_them(kw, arg):
    "Before: a negative rate gave a schedule of negative rates, div_start=0 a ZeroDivisionError."
    with pytest.raises(ValueError, match=f'one_cycle: {arg} must'): one_cycle(**kw)


@pytest.mark.parametrize('pct', [0., 1.])
def test_one_cycle_without_warm_up_or_descent(pct):
    f = one_cycle(1., pct_start=pct)
    if pct == 0: assert close(f(0), 1.) and close(f(1), 1e-4)
    else: assert close(f(0), 1/25) and close(f(1), 1.)


def torch_one_cycle(n, lr_max, pct_start, div_factor, final_div_factor, moms):
    "(lr, momentum) that torch's OneCycleLR sets before each of `n` SGD steps."
    opt = optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr_max, momentum=moms[1])
    sched = optim.lr_scheduler.OneCycleLR(opt, lr_max, total_steps=n, pct_start=pct_start,
                                          div_factor=div_factor, final_div_factor=final_div_factor,
                                          cycle_momentum=True,
                                          base_momentum=moms[0], max_momentum=moms[1])
    seen = []
    for i in range(n):
        seen.append((opt.param_groups[0]['lr'], opt.param_groups[0]['momentum']))
        opt.step()
        if i < n - 1: sched.step()
    return torch.tensor(seen, dtype=torch.float64)


ONE_CYCLE_SETTINGS = [(294, 0.5, 0.3, 25., 1e4, (0.85, 0.95)),
                      (50, 2., 0.25, 10., 100., (0.8, 0.9)),
                      (7, 0.1, 0.5, 5., 1e3, (0.85, 0.95))]

@pytest.mark.parametrize('n,lr_max,pct,div,final_div,moms', ONE_CYCLE_SETTINGS)
def test_one_cycle_matches_torch_onecyclelr_step_by_step(n, lr_max, pct, div, final_div, moms):
    """Torch's step i is our pos i/(n-1), with the peak moved to torch's step pct*n-1 and div_end =
    div*final_div."""
    theirs = torch_one_cycle(n, lr_max, pct, div, final_div, moms)
    pct_ours = (pct*n - 1)/(n - 1)
    lr_f = one_cycle(lr_max, pct_start=pct_ours, div_start=div, div_end=div*final_div)
    mom_f = combine_scheds(create_phases(pct_ours), cos_1cycle_anneal(moms[1], moms[0], moms[1]))
    ours = torch.tensor([(lr_f(i/(n-1)), mom_f(i/(n-1))) for i in range(n)], dtype=torch.float64)
    assert torch.allclose(ours, theirs, rtol=1e-9, atol=0), (ours - theirs).abs().max()
    # torch's end: measured from the start
    assert close(theirs[-1, 0].item(), lr_max/div/final_div, 1e-9)
    # ours by default: from the peak
    assert close(one_cycle(lr_max)(1), lr_max/1e4)


def test_param_scheduler_one_cycle_is_within_one_step_of_torch(data, two_group_learner):
    """What ParamScheduler really sets (pos = i/N) against OneCycleLR over the same N steps: at most
    one step apart."""
    epochs = 3
    n = epochs*len(data.train_dl)
    lr_f = one_cycle(0.4, div_end=25*1e4)
    mom_f = combine_scheds(create_phases(0.3), cos_1cycle_anneal(0.95, 0.85, 0.95))
    run = Runner(cbs=[SeenAtStep(), ParamScheduler('lr', lr_f), ParamScheduler('momentum', mom_f)])
    run.fit(epochs, two_group_learner(data, momentum=0.9))
    ours = torch.tensor([groups[0] for groups in run.seen_at_step.seen], dtype=torch.float64)
    theirs = torch_one_cycle(n, 0.4, 0.3, 25., 1e4, (0.85, 0.95))
    one_step = (theirs[1:] - theirs[:-1]).abs().max(0).values
    assert ((ours - theirs).abs().max(0).values <= one_step + 1e-12).all()
    # but not the same: the step conventions differ
    assert not torch.allclose(ours, theirs, rtol=1e-9, atol=0)


def test_cos_1cycle_anneal_pieces():
    up, down = cos_1cycle_anneal(0.95, 0.85, 0.95)
    assert close(up(0), 0.95) and close(up(1), 0.85)
    assert close(down(0), 0.85) and close(down(1), 0.95)


# ---------------------------------------------------------------- callbacks on a tiny problem

@pytest.fixture
def data(make_tiny_data):
    "40 training examples of 5 features in batches of 8, and 16 for validation."
    return make_tiny_data(n_train=40, bs=8, shape=(5,))


@pytest.fixture
def two_group_learner(make_tiny_model):
    "A factory: 04's Learner of a 5-6-2 MLP whose two linear layers are two SGD param groups."
    def make(data, **opt_kw):
        model = make_tiny_model(5, 2, n_hidden=6)
        groups = [{'params': model[1].parameters()}, {'params': model[3].parameters()}]
        return Learner(model, optim.SGD(groups, lr=0.1, **opt_kw), F.cross_entropy, data)
    return make


class SeenAtStep(Callback):
    "What the optimizer holds when it steps: (lr, momentum) of every group, per training batch."
    _order = 50
    def begin_fit(self): self.seen = []
    def after_backward(self):
        self.seen.append([(pg['lr'], pg['momentum']) for pg in self.run.opt.param_groups])


def test_param_scheduler_sets_each_group_from_its_schedule(data, two_group_learner):
    epochs = 3
    lr_scheds = [sched_lin(0.05, 0.01), one_cycle(0.3)]
    mom = sched_cos(0.9, 0.8)
    run = Runner(cbs=[SeenAtStep(), ParamScheduler('lr', lr_scheds),
                      ParamScheduler('momentum', mom)])
    run.fit(epochs, two_group_learner(data, momentum=0.5))
    n = epochs*len(data.train_dl)
    seen = run.seen_at_step.seen
    assert len(seen) == n
    for i, groups in enumerate(seen):
        for (lr, m), f in zip(groups, lr_scheds):
            assert close(lr, f(i/n), 1e-9) and close(m, mom(i/n), 1e-9), (i, lr, m)


def test_param_scheduler_one_function_for_all_groups(data, two_group_learner):
    run = Runner(cbs=[SeenAtStep(), ParamScheduler('lr', sched_lin(1., 0.))])
    run.fit(2, two_group_learner(data))
    n = 2*len(data.train_dl)
    for i, groups in enumerate(run.seen_at_step.seen):
        assert all(close(lr, 1 - i/n, 1e-9) for lr, _ in groups)


def test_param_scheduler_errors_name_the_problem(data, two_group_learner):
    with pytest.raises(ValueError, match='3 schedules for 2 param groups'):
        Runner(cbs=ParamScheduler('lr', [sched_no(1, 1)]*3)).fit(1, two_group_learner(data))
    with pytest.raises(KeyError, match="'mom'"):
        Runner(cbs=ParamScheduler('mom', sched_no(1, 1))).fit(1, two_group_learner(data))


def test_param_scheduler_changes_training(data, make_tiny_model, two_group_learner):
    "A schedule the optimizer ignored would leave training as at the constant rate."
    def final_weights(cbs):
        learn = two_group_learner(data)
        torch.manual_seed(1)
        Runner(cbs=cbs).fit(2, learn)
        return [p.detach().clone() for p in learn.model.parameters()]
    const, zero = final_weights([]), final_weights([ParamScheduler('lr', sched_no(0., 0.))])
    init = [p.detach() for p in make_tiny_model(5, 2, n_hidden=6).parameters()]
    assert all(torch.equal(a, b) for a, b in zip(zero, init))        # lr 0: nothing moved
    assert any(not torch.equal(a, b) for a, b in zip(const, init))   # lr 0.1: it did


class LossLog(Callback):
    _order = 50
    def begin_fit(self): self.losses = []
    def after_batch(self):
        if self.run.in_train: self.losses.append(self.run.loss.item())


def test_recorder_one_lr_and_loss_per_training_batch(make_tiny_data, two_group_learner):
    data, epochs = make_tiny_data(n_train=44, bs=8, shape=(5,)), 2   # 6 batches, the last one short
    lr_scheds = [sched_lin(0.2, 0.1), sched_cos(0.05, 0.)]
    run = Runner(cbs=[Recorder(), LossLog(), ParamScheduler('lr', lr_scheds)])
    run.fit(epochs, two_group_learner(data))
    n = epochs*len(data.train_dl)
    rec = run.recorder
    assert len(rec.losses) == n and [len(l) for l in rec.lrs] == [n, n]
    assert torch.allclose(torch.stack(rec.losses), torch.tensor(run.loss_log.losses))
    for lrs, f in zip(rec.lrs, lr_scheds):
        assert all(close(lr, f(i/n), 1e-9) for i, lr in enumerate(lrs))


def test_recorder_plots(data, two_group_learner, tmp_path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    run = Runner(cbs=Recorder())
    run.fit(1, two_group_learner(data))
    run.recorder.plot_lr(); run.recorder.plot_loss(skip_last=1)
    lines = plt.gca().get_lines()
    assert len(lines[-1].get_ydata()) == len(run.recorder.losses) - 1
    plt.close('all')


@pytest.mark.parametrize('cb', [Recorder(), ParamScheduler('lr', sched_no(0.1, 0.1))],
                         ids=['Recorder', 'ParamScheduler'])
def test_callbacks_need_param_groups(data, cb):
    from exp.nb_05 import Optimizer   # 03's hand-written optimizer: no param_groups
    model = nn.Linear(5, 2)
    needs = f"{type(cb).__name__} needs an optimizer with `param_groups`"
    with pytest.raises(TypeError, match=needs):
        Runner(cbs=cb).fit(1, Learner(model, Optimizer(model.parameters()), F.cross_entropy, data))


def test_recorder_plot_is_loss_against_lr_on_a_log_axis(data, two_group_learner):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    run = Runner(cbs=[Recorder(), ParamScheduler('lr', [sched_exp(1e-3, 1.), sched_lin(0.1, 0.2)])])
    run.fit(2, two_group_learner(data))
    rec = run.recorder
    plt.figure(); rec.plot(skip_last=2)
    line = plt.gca().get_lines()[-1]
    assert plt.gca().get_xscale() == 'log'
    # the last param group's rates
    assert list(line.get_xdata()) == rec.lrs[-1][:-2]
    assert torch.allclose(torch.tensor(line.get_ydata()), torch.stack(rec.losses)[:-2])
    plt.figure(); rec.plot(pgid=0)
    assert list(plt.gca().get_lines()[-1].get_xdata()) == rec.lrs[0]
    plt.close('all')


# ---------------------------------------------------------------- the course's helpers

def test_create_learner_with_get_model_func(data):
    learn = create_learner(get_model_func(0.3), F.cross_entropy, data)
    assert isinstance(learn, Learner) and learn.data is data and learn.loss_func is F.cross_entropy
    assert learn.opt.param_groups[0]['lr'] == 0.3 and learn.model[-1].out_features == data.c
    # the model's own optimizer
    assert learn.opt.param_groups[0]['params'][0] is next(learn.model.parameters())


def test_get_model_func_default_is_get_models(data):
    "A deliberate difference from the course (0.5 there): the same default as 04's get_model."
    import inspect
    default = inspect.signature(get_model).parameters['lr'].default
    assert inspect.signature(get_model_func).parameters['lr'].default == default
    assert get_model_func()(data)[1].param_groups[0]['lr'] == default


def test_pg_dicts_makes_one_param_group_each():
    model = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 2))
    opt = optim.SGD(pg_dicts([model[0].parameters(), model[2].parameters()]), lr=0.1, momentum=0.9)
    assert [len(pg['params']) for pg in opt.param_groups] == [2, 2]
    assert opt.param_groups[1]['params'][0] is model[2].weight
    assert all(pg['lr'] == 0.1 and pg['momentum'] == 0.9 for pg in opt.param_groups)
    assert pg_dicts([]) == []
