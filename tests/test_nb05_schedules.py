"Schedules, combine_scheds, one-cycle, ParamScheduler and Recorder from nbs/05_anneal.ipynb."
import math

import pytest
import torch
from torch import nn, optim
import torch.nn.functional as F

from exp.nb_05 import (Callback, DataBunch, Dataset, Learner, ParamScheduler, Recorder, Runner, annealer,
                       combine_scheds, cos_1cycle_anneal, create_phases, get_dls, one_cycle, sched_cos,
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


@pytest.mark.parametrize('start,end', [(0., 1.), (1., 0.), (-1., 1.)])
def test_sched_exp_refuses_sign_change_or_zero(start, end):
    with pytest.raises(ValueError, match='same sign'): sched_exp(start, end)(0.5)


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
    f = combine_scheds([0.1]*10, [sched_lin(i, i+1) for i in range(10)])   # sum(0.1*10) != 1 exactly
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


@pytest.mark.parametrize('lr_max,pct,div_start,div_end', [(0.5, 0.3, 25., 1e4), (2., 0.25, 10., 100.)])
def test_one_cycle_is_the_piecewise_cosine_formula(lr_max, pct, div_start, div_end):
    "Warm-up from lr_max/div_start to lr_max over pct of training, then down to lr_max/div_end, both half cosines."
    eta0, eta1 = lr_max/div_start, lr_max/div_end
    def formula(p):
        if p < pct: return lr_max + (eta0 - lr_max)*(1 + math.cos(math.pi*p/pct))/2
        return eta1 + (lr_max - eta1)*(1 + math.cos(math.pi*(p - pct)/(1 - pct)))/2
    f = one_cycle(lr_max, pct_start=pct, div_start=div_start, div_end=div_end)
    for i in range(201): assert close(f(i/200), formula(i/200), 1e-9), i/200


def test_cos_1cycle_anneal_pieces():
    up, down = cos_1cycle_anneal(0.95, 0.85, 0.95)
    assert close(up(0), 0.95) and close(up(1), 0.85) and close(down(0), 0.85) and close(down(1), 0.95)


# ---------------------------------------------------------------- callbacks on a tiny problem

def tiny_data(n_train=40, n_valid=16, bs=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, xv = torch.randn(n_train, 5, generator=g), torch.randn(n_valid, 5, generator=g)
    return DataBunch(*get_dls(Dataset(x, (x[:, 0] > 0).long()), Dataset(xv, (xv[:, 0] > 0).long()), bs), c=2)


def two_group_learner(data, **opt_kw):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 2))
    opt = optim.SGD([{'params': model[0].parameters()}, {'params': model[2].parameters()}], lr=0.1, **opt_kw)
    return Learner(model, opt, F.cross_entropy, data)


class SeenAtStep(Callback):
    "What the optimizer holds when it steps: (lr, momentum) of every group, per training batch."
    _order = 50
    def begin_fit(self): self.seen = []
    def after_backward(self):
        self.seen.append([(pg['lr'], pg['momentum']) for pg in self.run.opt.param_groups])


def test_param_scheduler_sets_each_group_from_its_schedule():
    data, epochs = tiny_data(), 3
    lr_scheds = [sched_lin(0.05, 0.01), one_cycle(0.3)]
    mom = sched_cos(0.9, 0.8)
    run = Runner(cbs=[SeenAtStep(), ParamScheduler('lr', lr_scheds), ParamScheduler('momentum', mom)])
    run.fit(epochs, two_group_learner(data, momentum=0.5))
    n = epochs*len(data.train_dl)
    seen = run.seen_at_step.seen
    assert len(seen) == n
    for i, groups in enumerate(seen):
        for (lr, m), f in zip(groups, lr_scheds):
            assert close(lr, f(i/n), 1e-9) and close(m, mom(i/n), 1e-9), (i, lr, m)


def test_param_scheduler_one_function_for_all_groups():
    data = tiny_data()
    run = Runner(cbs=[SeenAtStep(), ParamScheduler('lr', sched_lin(1., 0.))])
    run.fit(2, two_group_learner(data))
    n = 2*len(data.train_dl)
    for i, groups in enumerate(run.seen_at_step.seen):
        assert all(close(lr, 1 - i/n, 1e-9) for lr, _ in groups)


def test_param_scheduler_errors_name_the_problem():
    data = tiny_data()
    with pytest.raises(ValueError, match='3 schedules for 2 param groups'):
        Runner(cbs=ParamScheduler('lr', [sched_no(1, 1)]*3)).fit(1, two_group_learner(data))
    with pytest.raises(KeyError, match="'mom'"):
        Runner(cbs=ParamScheduler('mom', sched_no(1, 1))).fit(1, two_group_learner(data))


def test_param_scheduler_changes_training():
    "A schedule the optimizer ignored would leave training as at the constant rate."
    data = tiny_data()
    def final_weights(cbs):
        learn = two_group_learner(data)
        torch.manual_seed(1)
        Runner(cbs=cbs).fit(2, learn)
        return [p.detach().clone() for p in learn.model.parameters()]
    const, zero = final_weights([]), final_weights([ParamScheduler('lr', sched_no(0., 0.))])
    torch.manual_seed(0)
    init = [p.detach() for p in nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 2)).parameters()]
    assert all(torch.equal(a, b) for a, b in zip(zero, init))        # lr 0: nothing moved
    assert any(not torch.equal(a, b) for a, b in zip(const, init))   # lr 0.1: it did


class LossLog(Callback):
    _order = 50
    def begin_fit(self): self.losses = []
    def after_batch(self):
        if self.run.in_train: self.losses.append(self.run.loss.item())


def test_recorder_one_lr_and_loss_per_training_batch():
    data, epochs = tiny_data(n_train=44), 2   # 6 training batches, the last one short
    lr_scheds = [sched_lin(0.2, 0.1), sched_cos(0.05, 0.)]
    run = Runner(cbs=[Recorder(), LossLog(), ParamScheduler('lr', lr_scheds)])
    run.fit(epochs, two_group_learner(data))
    n = epochs*len(data.train_dl)
    rec = run.recorder
    assert len(rec.losses) == n and [len(l) for l in rec.lrs] == [n, n]
    assert torch.allclose(torch.stack(rec.losses), torch.tensor(run.loss_log.losses))
    for lrs, f in zip(rec.lrs, lr_scheds):
        assert all(close(lr, f(i/n), 1e-9) for i, lr in enumerate(lrs))


def test_recorder_plots(tmp_path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    run = Runner(cbs=Recorder())
    run.fit(1, two_group_learner(tiny_data()))
    run.recorder.plot_lr(); run.recorder.plot_loss(skip_last=1)
    lines = plt.gca().get_lines()
    assert len(lines[-1].get_ydata()) == len(run.recorder.losses) - 1
    plt.close('all')


@pytest.mark.parametrize('cb', [Recorder(), ParamScheduler('lr', sched_no(0.1, 0.1))], ids=['Recorder', 'ParamScheduler'])
def test_callbacks_need_param_groups(cb):
    from exp.nb_05 import Optimizer   # 03's hand-written optimizer: no param_groups
    model = nn.Linear(5, 2)
    with pytest.raises(TypeError, match=f"{type(cb).__name__} needs an optimizer with `param_groups`"):
        Runner(cbs=cb).fit(1, Learner(model, Optimizer(model.parameters()), F.cross_entropy, tiny_data()))
