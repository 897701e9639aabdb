"""09: the generic Optimizer, its steppers and stats, matched step for step to torch.optim in
float64."""
import copy
import types

import pytest
import torch
import torch.nn.functional as F
from torch import optim

from exp.nb_09 import (AverageGrad, Optimizer, ParamScheduler, StatefulOptimizer, adam_opt,
                       adam_step, conv_layer, fit_steps, get_cnn_model, l2_reg, lamb,
                       max_param_diff, momentum_step, sgd_mom_opt, sgd_opt, sgd_step, weight_decay)
from exp.nb_09 import _adam_stats

TOL = 1e-12   # float64: what is left is rounding
DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


def batch(device='cpu'):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(32, 1, 28, 28, generator=g, dtype=torch.float64).to(device),
            torch.randint(0, 10, (32,), generator=g).to(device))

def small_model(device='cpu'):
    torch.manual_seed(1)
    data = types.SimpleNamespace(c=10, c_in=1, c_out=10)
    return get_cnn_model(data, [4, 8], conv_layer).double().to(device)

def compare(ours, theirs, device='cpu', n=10, params=lambda m: m.parameters()):
    """Ours and torch's from the same start on the same batch; the largest weight difference after
    `n` steps."""
    m1 = small_model(device); m2 = copy.deepcopy(m1)
    xb,yb = batch(device)
    l1 = fit_steps(m1, ours(params(m1)), xb, yb, n)
    fit_steps(m2, theirs(params(m2)), xb, yb, n)
    assert l1[-1] < l1[0]
    return max_param_diff(m1, m2)

T_ADAM = dict(lr=0.01, betas=(0.9, 0.99), eps=1e-8)
O_ADAM = dict(lr=0.01, mom=0.9, sqr_mom=0.99, eps=1e-8)
CASES = {
    'sgd': (lambda ps: sgd_opt(ps, lr=0.1), lambda ps: optim.SGD(ps, lr=0.1)),
    'sgd_mom_wd': (lambda ps: StatefulOptimizer(ps, [l2_reg, momentum_step], stats=AverageGrad(),
                                                lr=0.05, mom=0.9, wd=0.01),
                   lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=0.01)),
    'adam': (adam_opt(**O_ADAM), lambda ps: optim.Adam(ps, **T_ADAM)),
    'adam_l2': (lambda ps: StatefulOptimizer(ps, [l2_reg, adam_step], stats=_adam_stats(), wd=0.1,
                                             **O_ADAM),
                lambda ps: optim.Adam(ps, weight_decay=0.1, **T_ADAM)),
    'adamw': (adam_opt(wd=0.1, **O_ADAM), lambda ps: optim.AdamW(ps, weight_decay=0.1, **T_ADAM)),
}

@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('name', list(CASES))
def test_matches_torch_after_10_steps(name, device):
    ours,theirs = CASES[name]
    assert compare(ours, theirs, device) < TOL

def test_a_real_difference_is_caught():
    """The comparison can fail: decoupled decay with momentum is not torch's SGD (L2), and lr 0.1 is
    not 0.11."""
    torch_l2 = lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=0.01)
    assert compare(lambda ps: sgd_mom_opt(ps, lr=0.05, mom=0.9), torch_l2) > 1e-6
    assert compare(lambda ps: sgd_opt(ps, lr=0.1), lambda ps: optim.SGD(ps, lr=0.11)) > 1e-6

def test_per_group_hyper_parameters_match_torch():
    groups = lambda m: [{'params': list(m[:-1].parameters()), 'lr': 0.001},
                        {'params': list(m[-1].parameters())}]
    d = compare(lambda pgs: adam_opt(wd=0.1, **O_ADAM)(pgs),
                lambda pgs: optim.AdamW([{**pgs[0]}, pgs[1]], weight_decay=0.1, **T_ADAM),
                params=groups)
    assert d < TOL
    opt = sgd_opt(groups(small_model()), lr=0.1)
    assert [pg['lr'] for pg in opt.param_groups] == [0.001, 0.1] and opt.hypers is opt.param_groups

def test_l2_reg_runs_before_the_stats_whatever_the_order_given():
    ours = lambda ps: StatefulOptimizer(ps, [momentum_step, l2_reg], stats=AverageGrad(), lr=0.05,
                                        mom=0.9, wd=0.01)
    assert compare(ours, lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=0.01)) < TOL

def lamb_by_hand(model, xb, yb, n, lr, b1, b2, eps, wd):
    ps = list(model.parameters())
    m,v = [torch.zeros_like(p) for p in ps],[torch.zeros_like(p) for p in ps]
    for t in range(1, n+1):
        model.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        with torch.no_grad():
            for p,mi,vi in zip(ps, m, v):
                mi.copy_(b1*mi + (1-b1)*p.grad); vi.copy_(b2*vi + (1-b2)*p.grad**2)
                u = (mi/(1-b1**t)) / ((vi/(1-b2**t)).sqrt() + eps) + wd*p
                ratio = min(p.norm()/u.norm(), 10.) if p.norm() > 0 and u.norm() > 0 else 1.
                p -= lr * ratio * u

@pytest.mark.parametrize('wd', [0., 0.1])
def test_lamb_matches_its_equations(wd):
    m1 = small_model(); m2 = copy.deepcopy(m1)
    # a zero-norm tensor: ratio 1
    torch.nn.init.zeros_(m1[-1].bias); torch.nn.init.zeros_(m2[-1].bias)
    xb,yb = batch()
    opt = lamb(lr=0.01, mom=0.9, sqr_mom=0.99, eps=1e-6, wd=wd)(m1.parameters())
    losses = fit_steps(m1, opt, xb, yb)
    lamb_by_hand(m2, xb, yb, 10, lr=0.01, b1=0.9, b2=0.99, eps=1e-6, wd=wd)
    assert losses[-1] < losses[0]
    assert max_param_diff(m1, m2) < TOL
    m3 = copy.deepcopy(m2); lamb_by_hand(m3, xb, yb, 1, lr=0.01, b1=0.9, b2=0.99, eps=1e-6, wd=wd)
    assert max_param_diff(m2, m3) > 1e-6   # one more step shows: the comparison can fail

def test_bad_hyper_parameters_are_refused():
    ps = list(small_model().parameters())
    with pytest.raises(ValueError, match="'weight_decy'"): sgd_opt(ps, lr=0.1, weight_decy=0.1)
    with pytest.raises(ValueError, match=r"sgd_step needs hyper-parameter\(s\) \['lr'\]"):
        Optimizer(ps, sgd_step)
    with pytest.raises(ValueError, match="param group 1"):
        Optimizer([{'params': ps[:2]}, {'params': ps[2:], 'mom': 0.9}], sgd_step, lr=0.1)
    with pytest.raises(ValueError, match='no parameters'): Optimizer([], sgd_step, lr=0.1)
    with pytest.raises(TypeError, match='param group 0'): Optimizer([[1, 2]], sgd_step, lr=0.1)

def test_defaults_come_from_steppers_and_stats():
    opt = adam_opt()(small_model().parameters(), lr=0.01)
    pg = opt.param_groups[0]
    assert (pg['mom'], pg['sqr_mom'], pg['eps'], pg['wd']) == (0.9, 0.99, 1e-5, 0.)
    # the caller's wins
    assert sgd_opt(small_model().parameters(), lr=0.1, wd=0.2).param_groups[0]['wd'] == 0.2

def test_state_dict_round_trip_repeats_a_run():
    model = small_model(); xb,yb = batch()
    opt = adam_opt(wd=0.1, **O_ADAM)(model.parameters())
    fit_steps(model, opt, xb, yb, 3)
    snap = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    first = fit_steps(model, opt, xb, yb, 3)
    opt.param_groups[0]['lr'] = 1.
    model.load_state_dict(snap[0]); opt.load_state_dict(snap[1])
    assert opt.param_groups[0]['lr'] == 0.01 and opt.state[next(model.parameters())]['step'] == 3
    assert fit_steps(model, opt, xb, yb, 3) == first
    with pytest.raises(ValueError, match='sizes'):
        sgd_opt(list(model.parameters())[:2], lr=0.1).load_state_dict(snap[1])

def test_weight_decay_and_l2_alone():
    p = torch.nn.Parameter(torch.tensor([2.]))
    p.grad = torch.tensor([0.5])
    weight_decay(p, lr=0.1, wd=0.5); assert p.item() == pytest.approx(2 * (1 - 0.05))
    l2_reg(p, lr=0.1, wd=0.5); assert p.grad.item() == pytest.approx(0.5 + 0.5 * p.item())
    sgd_step(p, lr=0.1); assert p.item() == pytest.approx(1.9 - 0.1 * (0.5 + 0.5 * 1.9))

def test_param_scheduler_drives_any_hyper_of_any_group():
    model = small_model()
    opt = adam_opt()([{'params': list(model[:-1].parameters())},
                      {'params': list(model[-1].parameters())}], lr=0.01)
    for name in ['lr', 'mom', 'sqr_mom', 'wd']:
        sched = ParamScheduler(name, [lambda pos: 0.5, lambda pos: 0.25])
        sched.run = types.SimpleNamespace(opt=opt, in_train=True, n_epochs=0., epochs=1)
        sched.begin_fit(); sched.begin_batch()
        assert [pg[name] for pg in opt.param_groups] == [0.5, 0.25]

def test_course_calls_09(make_tiny_data):
    """The course's 09 pattern: an optimizer function from steppers given to get_learn_run, with
    Recorder and ParamScheduler."""
    from functools import partial
    from exp.nb_09 import (AvgStatsCallback, Recorder, accuracy, combine_scheds, get_learn_run,
                           sched_cos)
    data = make_tiny_data(shape=(1, 28, 28), n_classes=3)
    sched = combine_scheds([0.3, 0.7], [sched_cos(0.3, 0.6), sched_cos(0.6, 0.2)])
    cbfs = [partial(AvgStatsCallback, accuracy), Recorder, partial(ParamScheduler, 'lr', sched)]
    opt_func = partial(Optimizer, steppers=[sgd_step])
    learn,run = get_learn_run([4], data, 0.4, conv_layer, cbs=cbfs, opt_func=opt_func)
    run.fit(1, learn)
    assert isinstance(learn.opt, Optimizer) and run.recorder.lrs[0][0] == pytest.approx(0.3)
    assert learn.opt.hypers[-1]['lr'] == run.recorder.lrs[-1][-1]

NAN,INF = float('nan'),float('inf')
# (our optimizer function, the bad setting, torch's closest optimizer and setting, or None where
# torch lets it through)
BAD_HYPERS = [
    (sgd_opt, dict(lr=-0.1), (optim.SGD, dict(lr=-0.1))),
    (sgd_opt, dict(lr=NAN), None),                        # SGD takes it (Adam refuses)
    (sgd_opt, dict(lr=INF), None),
    (sgd_opt, dict(lr='0.1'), (optim.SGD, dict(lr='0.1'))),
    (sgd_opt, dict(lr=0.1, wd=-0.01), (optim.SGD, dict(lr=0.1, weight_decay=-0.01))),
    (sgd_opt, dict(lr=0.1, wd=NAN), None),
    (sgd_mom_opt, dict(lr=0.1, mom=-0.1), (optim.SGD, dict(lr=0.1, momentum=-0.1))),
    (sgd_mom_opt, dict(lr=0.1, mom=1), None),             # SGD takes momentum 1 and above
    (sgd_mom_opt, dict(lr=0.1, mom=True), None),
    (adam_opt(), dict(lr=0.01, mom=1.), (optim.Adam, dict(lr=0.01, betas=(1., 0.99)))),
    (adam_opt(), dict(lr=0.01, sqr_mom=1.), (optim.Adam, dict(lr=0.01, betas=(0.9, 1.)))),
    (adam_opt(), dict(lr=0.01, sqr_mom=NAN), (optim.Adam, dict(lr=0.01, betas=(0.9, NAN)))),
    (adam_opt(), dict(lr=0.01, eps=0.), None),            # Adam takes eps=0
    (adam_opt(), dict(lr=0.01, eps=-1e-8), (optim.Adam, dict(lr=0.01, eps=-1e-8))),
]

@pytest.mark.parametrize('opt_func,bad,theirs', BAD_HYPERS, ids=[str(b) for _,b,_ in BAD_HYPERS])
def test_bad_hyper_values_are_refused_naming_the_group(opt_func, bad, theirs):
    """Every setting that makes no sense is refused when the optimizer is made, in any group, the
    name and the group given; torch refuses some of them too."""
    model = small_model()
    if theirs is not None:
        with pytest.raises((ValueError, TypeError)): theirs[0](model.parameters(), **theirs[1])
    name = [k for k in bad if k != 'lr'][-1] if len(bad) > 1 else 'lr'
    with pytest.raises(ValueError, match=f"param group 0: {name} must be"):
        opt_func(model.parameters(), **bad)
    good = {k: 0.1 if k == 'lr' else 0.5 for k in bad}   # the bad value in the second group only
    groups = [{'params': list(model[:-1].parameters())},
              {'params': list(model[-1].parameters()), **bad}]
    with pytest.raises(ValueError, match=f"param group 1: {name} must be"):
        opt_func(groups, **good)

def test_a_hyper_parameter_set_later_is_checked_at_the_step():
    "A schedule's bad value stops the step, naming it, before any weight moves."
    model = small_model(); xb,yb = batch()
    opt = adam_opt(**O_ADAM)([{'params': list(model[:-1].parameters())},
                              {'params': list(model[-1].parameters())}])
    fit_steps(model, opt, xb, yb, 2)
    opt.param_groups[1]['sqr_mom'] = 1.   # debias would divide by 1 - sqr_mom = 0
    before = copy.deepcopy(model)
    F.cross_entropy(model(xb), yb).backward()
    with pytest.raises(ValueError, match=r"step: param group 1: sqr_mom must be .*\[0, 1\)"):
        opt.step()
    assert max_param_diff(model, before) == 0

def test_a_parameter_listed_twice_is_refused():
    "Torch refuses a parameter in two groups (and warns of one twice in a group); ours, both."
    ps = list(small_model().parameters())
    with pytest.raises(ValueError, match='more than one'):
        optim.SGD([{'params': ps[:2]}, {'params': ps[1:]}], lr=0.1)
    with pytest.raises(ValueError, match=r'in param groups 0 and 1.*stepped twice'):
        sgd_opt([{'params': ps[:2]}, {'params': ps[1:]}], lr=0.1)
    with pytest.raises(ValueError, match='twice in param group 0'):
        sgd_opt(ps + ps[:1], lr=0.1)

@pytest.mark.parametrize('name', ['sgd_mom_wd', 'adamw'])
def test_requires_grad_false_freezes_a_parameter_as_with_torch(name):
    """A parameter frozen after some steps stays put (no momentum, no weight decay), as with
    torch.optim; the others still train the same."""
    ours,theirs = CASES[name]
    m1 = small_model(); m2 = copy.deepcopy(m1); xb,yb = batch()
    opts = [ours(m1.parameters()), theirs(m2.parameters())]
    for m,opt in zip((m1, m2), opts): fit_steps(m, opt, xb, yb, 3)
    for m in (m1, m2): m[0][0].weight.requires_grad_(False)
    frozen = [m[0][0].weight.detach().clone() for m in (m1, m2)]
    for m,opt in zip((m1, m2), opts): fit_steps(m, opt, xb, yb, 3)
    assert torch.equal(m2[0][0].weight, frozen[1]), "torch's moved"
    assert torch.equal(m1[0][0].weight, frozen[0]), "ours moved"
    assert max_param_diff(m1, m2) < TOL
    assert all(p.grad is None for p in m1.parameters())   # zero_grad: None, as torch's default

def test_zero_grad_can_still_zero():
    p = torch.nn.Parameter(torch.ones(2)); p.grad = torch.ones(2)
    sgd_opt([p], lr=0.1).zero_grad(set_to_none=False)
    assert torch.equal(p.grad, torch.zeros(2))


def test_debiased_running_average_of_a_constant_is_exact_from_the_first_step():
    from exp.nb_09 import debias
    for dampening in (True, False):
        stat,p = AverageGrad(dampening),torch.zeros(1)
        state = stat.init_state(p)
        for t in range(1, 6):
            p.grad = torch.tensor([3.])
            state = stat.update(p, state, mom=0.9)
            assert state['grad_avg'].item() < 3 or not dampening   # pulled towards its start, 0
            got = state['grad_avg'] / debias(0.9, state['mom_damp'], t)
            torch.testing.assert_close(got, torch.tensor([3.]))


def bowl_path(opt_func, n=40):
    "Points of `n` steps on 0.5*(w0^2 + 50*w1^2) from (-4, 1): a valley 50x steeper across."
    curv = torch.tensor([1., 50.])
    w = torch.tensor([-4., 1.], requires_grad=True)
    opt,points = opt_func([w]),[w.detach().clone()]
    for _ in range(n):
        (0.5 * (curv * w**2).sum()).backward(); opt.step(); opt.zero_grad()
        points.append(w.detach().clone())
    return torch.stack(points), lambda v: 0.5 * (curv * v**2).sum().item()

def test_momentum_and_adam_get_further_than_sgd_along_a_narrow_valley():
    sgd,loss = bowl_path(lambda ps: sgd_opt(ps, lr=0.035))
    mom,_ = bowl_path(lambda ps: sgd_mom_opt(ps, lr=0.01, mom=0.9, wd=0.))
    adam,_ = bowl_path(adam_opt(lr=0.2, mom=0.9, sqr_mom=0.99))
    # SGD removes lr of the distance along the valley per step, no more
    torch.testing.assert_close(sgd[:, 0], -4 * (1 - 0.035)**torch.arange(41.))
    # Adam's first step is about lr in each coordinate, whatever the curvature
    torch.testing.assert_close(adam[1] - adam[0], torch.tensor([0.2, -0.2]), atol=1e-4, rtol=0)
    assert loss(mom[-1]) < loss(sgd[-1]) / 2 and loss(adam[-1]) < loss(sgd[-1]) / 2
