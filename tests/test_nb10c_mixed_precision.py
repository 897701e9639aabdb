"""10c: mixed precision from scratch (half model, float32 masters, dynamic loss scale) and with
torch.autocast."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import exp.nb_10c as nb10c   # the names added with the skip and dtype checks are read from it
from exp.nb_10c import (LR_Find, AutocastCallback, AvgStatsCallback, BatchNorm, Callback,
                        LossScaler, MixedPrecision, accuracy, adam_opt, autocast_dtype, get_master,
                        grad_overflow, has_overflow, model_to_float, model_to_half, sgd_opt,
                        to_master_grads, to_model_params)

cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                          reason="no GPU here: the CUDA path runs where there is one")


class _Flat(nn.Module):
    def forward(self, x): return x.view(x.shape[0], -1)

def every_kind_model():
    """Linear, 07's BatchNorm (on a 1x1 map), torch's BatchNorm1d, linear: every kind of layer
    model_to_half treats."""
    return nn.Sequential(nn.Linear(8, 16), nn.Unflatten(1, (16, 1, 1)), BatchNorm(16), _Flat(),
                         nn.ReLU(), nn.BatchNorm1d(16), nn.Linear(16, 2))

@pytest.fixture
def learner(make_tiny_data, make_tiny_learner):
    """A factory: the learner of `every_kind_model` on 64 + 32 examples of 8 features (4 training
    batches of 16), Adam unless `opt_func` says otherwise, and the averages of accuracy."""
    def make(cbs=(), opt_func=None, lr=1e-2):
        torch.manual_seed(0)
        data = make_tiny_data(n_train=64, n_valid=32)
        return make_tiny_learner(data, every_kind_model(), opt_func=opt_func or adam_opt(), lr=lr,
                                 cb_funcs=[lambda: AvgStatsCallback(accuracy)] + list(cbs))
    return make

def weights(model): return [p.detach().clone() for p in model.parameters()]


# --- the half model -------------------------------------------------------------------------------

@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_model_to_half_keeps_norms_float32_and_computes_close(dtype):
    torch.manual_seed(0)
    m = every_kind_model().eval(); x = torch.randn(5, 8)
    ref = m(x)
    model_to_half(m, dtype)
    for layer in m:
        for p in layer.parameters(recurse=False):
            is_norm = isinstance(layer, (BatchNorm, nn.BatchNorm1d))
            assert p.dtype == (torch.float32 if is_norm else dtype), layer
    out = m(x.to(dtype))
    assert out.dtype == dtype
    assert (out.float() - ref).abs().max() < 0.05
    model_to_float(m)
    assert all(p.dtype == torch.float32 for p in m.parameters())
    assert all(not l._forward_hooks and not l._forward_pre_hooks for l in m.modules())
    assert torch.allclose(m(x), ref, atol=0.05)


def test_get_master_copies_trainable_params_per_group():
    m = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)).half()
    m[0].bias.requires_grad_(False)
    opt = sgd_opt([{'params': list(m[0].parameters())},
                   {'params': list(m[1].parameters()), 'lr': 0.1}], lr=1.)
    model_pgs, master_pgs = get_master(opt)
    assert [len(g) for g in model_pgs] == [1, 2] and model_pgs[0][0] is m[0].weight
    for mps, ps in zip(master_pgs, model_pgs):
        for mp, p in zip(mps, ps):
            assert mp.dtype == torch.float32 and mp.requires_grad and mp.is_leaf
            assert torch.equal(mp, p.float()) and mp.data_ptr() != p.data_ptr()


def test_grads_to_master_unscaled_and_weights_back():
    m = nn.Linear(3, 2).half()
    opt = sgd_opt(m.parameters(), lr=1.)
    model_pgs, master_pgs = get_master(opt)
    m.weight.grad = torch.full_like(m.weight, 512.)   # bias has no gradient
    to_master_grads(model_pgs, master_pgs, loss_scale=256.)
    w, b = master_pgs[0]
    assert w.grad.dtype == torch.float32 and torch.equal(w.grad, torch.full((2, 3), 2.))
    assert b.grad is None
    with torch.no_grad(): w.add_(1e-4)                # a change float16 can't hold next to 1...
    to_model_params(model_pgs, master_pgs)
    assert m.weight.dtype == torch.float16 and torch.equal(m.weight, w.half())


# --- overflow and the scale -----------------------------------------------------------------------

def test_flat_master_refused_clearly():
    opt = sgd_opt(nn.Linear(2, 2).parameters(), lr=1.)
    with pytest.raises(NotImplementedError, match='flat_master'): get_master(opt, flat_master=True)
    with pytest.raises(NotImplementedError, match='flat_master'): MixedPrecision(flat_master=True)
    with pytest.raises(ValueError, match='dtype'): MixedPrecision(dtype=torch.float32)
    model_pgs, master_pgs = get_master(opt, False)     # the course's positional calls
    to_master_grads(model_pgs, master_pgs, False); to_model_params(model_pgs, master_pgs, False)


def test_overflow_of_a_tensor():
    x = torch.randn(64, 32)
    assert not has_overflow(x) and not has_overflow(x.half())
    for bad in (float('inf'), float('-inf'), float('nan')):
        y = x.clone(); y[5, 7] = bad
        assert has_overflow(y) and has_overflow(y.half())


def test_grad_overflow_detects_inf_and_nan():
    ps = [[torch.zeros(3, requires_grad=True)],
          [torch.zeros(2, requires_grad=True), torch.zeros(1, requires_grad=True)]]
    assert not grad_overflow(ps)                      # no gradients at all
    for pg in ps:
        for p in pg: p.grad = torch.ones_like(p)
    assert not grad_overflow(ps)
    ps[1][0].grad[1] = float('inf'); assert grad_overflow(ps)
    ps[1][0].grad[1] = float('-inf'); assert grad_overflow(ps)
    ps[1][0].grad[1] = float('nan'); assert grad_overflow(ps)


def test_forced_float16_overflow_is_detected():
    """A real backward pass in float16 with a loss scale too large: the gradient overflows, and is
    caught."""
    w = torch.ones(4, dtype=torch.float16, requires_grad=True)
    ((w * torch.tensor([1., 2., 3., 4.], dtype=torch.float16)).sum() * 2.**15).backward()
    assert torch.isinf(w.grad).any() and not torch.isinf(w.grad).all()
    assert grad_overflow([[w]])


def test_loss_scaler_halves_on_overflow_and_grows_after_clean_steps():
    s = LossScaler(1024., div_factor=2., scale_wait=3)
    assert s.update(True) is False and s.scale == 512.
    assert all(s.update(False) for _ in range(2)) and s.scale == 512.
    assert s.update(True) is False and s.scale == 256.   # the count restarts after an overflow:
    s.update(False); s.update(False)
    assert s.scale == 256.                               # two clean steps since: not yet
    s.update(False)
    assert s.scale == 512.
    static = LossScaler(512., dynamic=False)
    assert static.update(True) is False and static.update(False) and static.scale == 512.
    for bad in (dict(scale=0), dict(div_factor=1.), dict(scale_wait=0)):
        with pytest.raises(ValueError, match='LossScaler'): LossScaler(**bad)


def _decisions_vs_gradscaler(overflows, init_scale, wait):
    ours = LossScaler(init_scale, 2., wait)
    gs = torch.amp.GradScaler('cpu', init_scale=init_scale, growth_factor=2., backoff_factor=0.5,
                              growth_interval=wait)
    p = torch.zeros(2, requires_grad=True); opt = torch.optim.SGD([p], lr=1.)
    a, b = [], []
    for bad in overflows:
        p.grad = gs.scale(torch.tensor([1., float('nan') if bad else 2.]))
        a.append((ours.scale, not ours.update(grad_overflow([[p]]))))
        before = p.detach().clone(); scale = gs.get_scale()
        gs.step(opt); gs.update(); opt.zero_grad()
        b.append((scale, torch.equal(before, p.detach())))
    return a, b

@pytest.mark.parametrize('seed', range(3))
def test_loss_scaler_decisions_match_gradscaler(seed):
    g = torch.Generator().manual_seed(seed)
    overflows = (torch.rand(80, generator=g) < 0.2).tolist()
    ours, theirs = _decisions_vs_gradscaler(overflows, init_scale=2.**12, wait=3)
    assert ours == theirs
    assert any(s for _, s in ours) and len({sc for sc, _ in ours}) > 2   # both rules were exercised


# --- the callbacks --------------------------------------------------------------------------------

def test_mixed_precision_skips_overflowing_steps_then_trains(learner):
    learn = learner([lambda: MixedPrecision(scale_wait=2)])
    before = weights(learn.model)
    # 24 steps: enough to come down from 2**24 and grow again
    learn.fit(6)
    mp = learn.mixed_precision
    assert mp.skipped[0] and mp.scales[0] == 2.**24   # 2**24/16 per logit: past float16's max
    assert mp.scales[1] == 2.**23 and not all(mp.skipped)
    assert any(b > a for a, b in zip(mp.scales, mp.scales[1:]))   # grown after clean steps
    assert len(mp.scales) == 6*len(learn.data.train_dl)
    # after fit: float32 model, no hooks, the optimizer on the model's own parameters again, state
    # moved back
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())
    assert all(not l._forward_hooks and not l._forward_pre_hooks for l in learn.model.modules())
    params = list(learn.model.parameters())
    assert all(p is q for p, q in zip(learn.opt.param_groups[0]['params'], params))
    assert set(learn.opt.state) == set(params)
    assert any(not torch.equal(a, b) for a, b in zip(before, weights(learn.model)))


def test_mixed_precision_skipped_step_leaves_weights(learner):
    """Every step overflows when the scale can't come down fast enough: the weights must not move at
    all."""
    learn = learner([lambda: MixedPrecision(dynamic=False, loss_scale=2.**20)])
    before = weights(learn.model)
    learn.fit(1)
    assert all(learn.mixed_precision.skipped)
    assert all(torch.equal(a, b) for a, b in zip(before, weights(learn.model)))


def test_mixed_precision_trains_like_float32_and_fits_again(learner):
    ref = learner(lr=3e-2); ref.fit(3)
    learn = learner([lambda: MixedPrecision(max_loss_scale=2.**8)], lr=3e-2); learn.fit(3)
    a_ref = ref.avg_stats.valid_stats.avg_stats[1]; a = learn.avg_stats.valid_stats.avg_stats[1]
    assert not any(learn.mixed_precision.skipped)
    assert a > 0.8 and abs(a - a_ref) <= 0.1
    l_ref, l = ref.avg_stats.train_stats.avg_stats[0], learn.avg_stats.train_stats.avg_stats[0]
    assert abs(l - l_ref) < 0.01                         # the same training, to float16's rounding
    mp = learn.mixed_precision
    learn.remove_cbs(mp)
    # a plain fit afterwards still steps the model itself
    learn.fit(1)
    assert learn.avg_stats.valid_stats.avg_stats[1] > 0.8


def test_mixed_precision_gives_the_learner_back_after_an_error(learner):
    class Boom(Exception): pass
    calls = []
    def bad_loss(pred, yb):
        calls.append(1)
        if len(calls) == 3: raise Boom
        return F.cross_entropy(pred, yb)
    learn = learner([MixedPrecision]); learn.loss_func = bad_loss
    with pytest.raises(Boom): learn.fit(1)
    params = list(learn.model.parameters())
    assert all(p.dtype == torch.float32 for p in params)
    assert all(p is q for p, q in zip(learn.opt.param_groups[0]['params'], params))
    assert all(not l._forward_hooks and not l._forward_pre_hooks for l in learn.model.modules())


def test_course_calls(learner):
    """The course's 10c: MixedPrecision's arguments in its order, `loss_scale` read from the
    callback, the helpers' calls."""
    static = MixedPrecision(512, False, False)             # loss_scale, flat_master, dynamic
    assert static.loss_scale == 512 and not static.scaler.dynamic
    dyn = MixedPrecision(512, False, True, 2.**24, 2., 500)
    assert dyn.loss_scale == 2.**24 and dyn.scaler.scale_wait == 500
    learn = learner([MixedPrecision]); learn.fit(1)
    assert learn.cbs[-1].loss_scale == learn.mixed_precision.loss_scale < 2.**24


def test_mixed_precision_losses_seen_by_others_are_unscaled(learner):
    # lr 0: the weights never move, so losses compare exactly
    ref = learner(opt_func=sgd_opt, lr=0.)
    ref.fit(1)
    learn = learner([lambda: MixedPrecision(max_loss_scale=2.**8)], opt_func=sgd_opt, lr=0.)
    learn.fit(1)
    for s, t in zip(learn.avg_stats.train_stats.avg_stats, ref.avg_stats.train_stats.avg_stats):
        assert abs(s - t) < 0.02


def test_autocast_bfloat16_on_cpu_trains_and_leaves_nothing_on(learner):
    assert autocast_dtype('cpu') == torch.bfloat16 and autocast_dtype('cuda') == torch.float16
    learn = learner([AutocastCallback], lr=3e-2)
    learn.fit(3)
    assert learn.autocast.half == torch.bfloat16 and not learn.autocast.scaler.is_enabled()
    assert learn.avg_stats.valid_stats.avg_stats[1] > 0.8
    assert not torch.is_autocast_enabled('cpu')
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())
    assert all(not l._forward_pre_hooks for l in learn.model.modules())


def test_autocast_left_after_an_error(learner):
    class Boom(Exception): pass
    def bad_loss(pred, yb): raise Boom
    learn = learner([AutocastCallback]); learn.loss_func = bad_loss
    with pytest.raises(Boom): learn.fit(1)
    assert not torch.is_autocast_enabled('cpu')


def test_autocast_float16_with_gradscaler_steps_our_optimizer(learner):
    """The CUDA recipe's mechanics, on the CPU: float16 autocast, GradScaler stepping the course's
    Optimizer."""
    float16 = lambda: AutocastCallback(dtype=torch.float16, init_scale=2.**24)
    learn = learner([float16], lr=3e-2)
    before = weights(learn.model)
    learn.fit(3)
    # it overflowed, and backed off
    assert learn.autocast.scaler.is_enabled() and learn.autocast.scaler.get_scale() < 2.**24
    assert any(not torch.equal(a, b) for a, b in zip(before, weights(learn.model)))
    assert learn.avg_stats.valid_stats.avg_stats[1] > 0.8


@cuda
@pytest.mark.parametrize('cb', [AutocastCallback, MixedPrecision])
def test_cuda_mixed_precision_trains(learner, cb):
    learn = learner([cb], lr=3e-2)
    learn.model.cuda()
    learn.fit(3)
    assert learn.avg_stats.valid_stats.avg_stats[1] > 0.8
    assert all(p.dtype == torch.float32 and p.is_cuda for p in learn.model.parameters())
    if cb is AutocastCallback:
        assert learn.autocast.half == torch.float16 and learn.autocast.scaler.is_enabled()


# --- steps skipped, bad scales, bad batches -------------------------------------------------------

def nan_grads_for(model, n):
    """Make the gradient of `model`'s first parameter NaN in its first `n` backward passes (the
    loss stays finite): a step that must be skipped, as on an overflow."""
    calls = []
    def hook(g):
        calls.append(1)
        return g * float('nan') if len(calls) <= n else g
    next(model.parameters()).register_hook(hook)

class _Steps(Callback):
    "Counts the after_step events of training batches."
    def begin_fit(self): self.n = 0
    def after_step(self): self.n += 1

float16_autocast = lambda **kw: AutocastCallback(dtype=torch.float16, init_scale=2.**10, **kw)

@pytest.mark.parametrize('cb', [lambda: MixedPrecision(max_loss_scale=2.**10), float16_autocast])
def test_a_skipped_step_still_fires_after_step(learner, cb):
    steps = _Steps()
    learn = learner([cb, lambda: steps])
    nan_grads_for(learn.model, 3)
    before = weights(learn.model)
    learn.fit(1)   # 4 batches: 3 skipped, then 1 step
    assert steps.n == 4 and any(not torch.equal(a, b) for a, b in zip(before, weights(learn.model)))

def test_lr_find_stops_under_float16_autocast(learner):
    learn = learner([float16_autocast])
    finder = LR_Find(max_iter=5)
    learn.fit(3, cbs=[finder])
    assert len(finder.lrs) == 5   # stopped at its 5th step, not at the end of the fit (12 batches)

@pytest.mark.parametrize('cb, name', [(MixedPrecision, 'MixedPrecision'),
                                      (float16_autocast, 'AutocastCallback')])
def test_every_step_skipped_stops_the_fit_naming_epoch_batch_and_scale(learner, cb, name):
    learn = learner([cb])
    nan_grads_for(learn.model, 10**6)
    with pytest.raises(RuntimeError, match=rf"{name}: {nb10c.MAX_SKIPS} training steps in a row "
                                           r"skipped.*epoch \d+, batch \d+.*loss scale [\d.e+-]+"):
        learn.fit(100)
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())
    assert not isinstance(learn.opt, nb10c.GatedOptimizer)

def _longest_run(flags):
    "The most True values in a row in `flags`."
    best = n = 0
    for f in flags: n = n + 1 if f else 0; best = max(best, n)
    return best

def test_start_up_skips_from_2_24_are_allowed(learner):
    # a fit from 2**24 overflows for its first steps in a row, and finishes under the default limit
    learn = learner([lambda: MixedPrecision(max_loss_scale=2.**24)])
    learn.fit(2)
    start_up = _longest_run(learn.mixed_precision.skipped)
    assert learn.mixed_precision.skipped[0] and 2 <= start_up < nb10c.MAX_SKIPS
    # the limit counts skips in a row: set to that run's length, the same fit stops in its first
    # epoch; one more and it finishes
    with pytest.raises(RuntimeError, match=rf"MixedPrecision: {start_up} training steps in a row"):
        learner([lambda: MixedPrecision(max_skips=start_up)]).fit(2)
    learner([lambda: MixedPrecision(max_skips=start_up + 1)]).fit(2)

@pytest.mark.parametrize('bad', [float('nan'), float('inf'), 0, -1.])
def test_bad_loss_scales_are_refused(bad):
    with pytest.raises(ValueError, match=r'LossScaler: scale must be a'): LossScaler(scale=bad)
    with pytest.raises(ValueError, match=r'MixedPrecision: max_loss_scale must be a'):
        MixedPrecision(max_loss_scale=bad)
    with pytest.raises(ValueError, match=r'AutocastCallback: init_scale must be a'):
        AutocastCallback(init_scale=bad)

def test_bad_max_skips_refused():
    for cb in (MixedPrecision, AutocastCallback):
        with pytest.raises(ValueError, match='max_skips'): cb(max_skips=0)

def test_mixed_precision_refuses_a_byte_batch(learner):
    learn = learner([MixedPrecision])
    for ds in (learn.data.train_ds, learn.data.valid_ds):
        ds.x = (ds.x * 40 + 128).clamp(0, 255).to(torch.uint8)
    with pytest.raises(TypeError, match=r'MixedPrecision: the batch is torch\.uint8'):
        learn.fit(1)
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())

def test_autocast_runs_where_the_model_is(learner, monkeypatch):
    with pytest.raises(TypeError, match="no device_type.*model's device"):
        AutocastCallback(device_type='cpu')   # no other device to pick
    learn = learner([AutocastCallback]); learn.fit(1)
    assert learn.autocast.dev == 'cpu'
    # a model on a CUDA device without bfloat16 (simulated): bfloat16 is refused before any work
    monkeypatch.setattr(nb10c, 'model_device', lambda m: torch.device('cuda', 0))
    asked = []   # a Volta-class GPU (7.0): no native bfloat16; the model's device is the one asked
    def capability(d=None): asked.append(d); return (7, 0)
    monkeypatch.setattr(torch.cuda, 'get_device_capability', capability)
    for cb in (lambda: AutocastCallback(dtype=torch.bfloat16),
               lambda: MixedPrecision(dtype=torch.bfloat16)):
        learn = learner([cb])
        with pytest.raises(ValueError, match=r'bfloat16.*cuda:0.*float16'): learn.fit(1)
    assert asked and all(torch.device(d) == torch.device('cuda', 0) for d in asked)


# --- what it saves in memory ----------------------------------------------------------------------

def test_saved_bytes_counts_each_saved_tensor_once_and_halves_in_float16():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    x, y = torch.randn(5, 8), torch.randint(0, 4, (5,))
    s32 = nb10c.saved_bytes(m, x, y)
    # the second linear's weight, the one parameter whose gradient path needs it saved
    assert s32['params'] == 16 * 4 * 4
    # the input and the ReLU's output (saved by the ReLU and by the second linear: counted once)
    inp, hidden = 5 * 8 * 4, 5 * 16 * 4
    assert inp + hidden <= s32[torch.float32] < inp + 2 * hidden
    s16 = nb10c.saved_bytes(model_to_half(m), x.half(), y)
    assert s16[torch.float16] < 0.6 * s32[torch.float32]
    sbf = nb10c.saved_bytes(model_to_float(m), x, y, autocast=torch.bfloat16)
    assert sbf[torch.bfloat16] > 0 and 'params' not in sbf   # autocast saves half copies
    assert sum(p.numel() * 4 for p in m.parameters()) == nb10c.param_bytes(m)
