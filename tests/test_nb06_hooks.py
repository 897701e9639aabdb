"""Layers, callbacks, hooks, telemetry, GeneralRelu and init_cnn from nbs/06_cnn_hooks_init.ipynb
(tiny models and data)."""
import gc
import math
from functools import partial

import pytest
import torch
from torch import nn
import torch.nn.functional as F

from exp.nb_06 import (AvgStatsCallback, BatchTransformXCallback, Callback, CudaCallback,
                       DeviceCallback, GeneralRelu, Hook, Hooks, Lambda, ListContainer, accuracy,
                       append_hist_stats, append_stats, children, conv_layer, flatten,
                       get_cnn_layers, get_cnn_model, append_inactive, get_hist, get_learn_run,
                       get_min, get_runner, inactive_share, init, init_cnn, init_cnn_,
                       mnist_resize, mnist_view, near_zero_share, normalize_to, view_tfm)


@pytest.fixture
def data(make_tiny_data):
    """Random flat 'images' of 28*28 with 10 classes, 64 for training in batches of 16 and 32 for
    validation: enough for shapes and mechanics, nothing to learn."""
    return make_tiny_data(n_train=64, n_valid=32, shape=(784,), n_classes=10)


# ---------------------------------------------------------------- layers and transforms

def test_lambda_flatten_and_views():
    x = torch.arange(2*784.).view(2, 784)
    assert mnist_resize(x).shape == (2, 1, 28, 28) and mnist_view(x).shape == (2, 1, 28, 28)
    assert torch.equal(mnist_view(x), mnist_resize(x))
    assert view_tfm(4, 196)(x).shape == (2, 4, 196)
    m = nn.Sequential(Lambda(mnist_resize), Lambda(flatten))
    assert torch.equal(m(x), x)
    assert 'flatten' in repr(m)


def test_cnn_layers_shapes(data):
    layers = get_cnn_layers(data, [8, 16, 32, 32], conv_layer)
    assert [l[0].kernel_size for l in layers[:4]] == [(5, 5), (3, 3), (3, 3), (3, 3)]
    assert [l[0].out_channels for l in layers[:4]] == [8, 16, 32, 32]
    model = get_cnn_model(data, [8, 16], conv_layer)
    out = model(mnist_view(data.train_ds.x[:5]))
    assert out.shape == (5, 10)
    sizes = []
    with Hooks(children(model)[:2], lambda h, m, i, o: sizes.append(tuple(o.shape))):
        model(mnist_view(data.train_ds.x[:5]))
    assert sizes == [(5, 8, 14, 14), (5, 16, 7, 7)]   # stride 2 with padding ks//2 halves each map


# ---------------------------------------------------------------- GeneralRelu and init

@pytest.mark.parametrize('leak,sub,maxv', [
    (None, None, None),
    (0.1, 0.4, 6.),
    (0.2, None, None),
    (None, 0.5, 1.),
])
def test_general_relu_formula(leak, sub, maxv):
    x = torch.linspace(-10, 10, 101, dtype=torch.float64, requires_grad=True)
    y = GeneralRelu(leak, sub, maxv)(x)
    want = torch.where(x > 0, x, x * (leak or 0.)) - (sub or 0.)
    if maxv is not None: want = want.clamp(max=maxv)
    torch.testing.assert_close(y, want)
    y.sum().backward()   # no in-place trouble for autograd
    assert torch.isfinite(x.grad).all()


def test_general_relu_default_is_relu():
    x = torch.randn(100)
    assert torch.equal(GeneralRelu()(x), F.relu(x))


@pytest.mark.parametrize('uniform', [False, True])
def test_init_cnn_std_is_kaiming(uniform):
    torch.manual_seed(0)
    m = nn.Sequential(conv_layer(64, 128, 3), nn.Sequential(conv_layer(128, 128, 3)),
                      nn.Linear(128, 10))
    lin_before = m[2].weight.clone()
    init_cnn(m, uniform=uniform)
    for conv in [m[0][0], m[1][0][0]]:
        fan_in = conv.in_channels * 9
        want = math.sqrt(2 / ((1 + 0.1**2) * fan_in))   # He et al. 2015, leaky slope 0.1
        assert abs(conv.weight.std().item() / want - 1) < 0.03
        assert torch.equal(conv.bias, torch.zeros_like(conv.bias))
    assert torch.equal(m[2].weight, lin_before)   # only convolutions are touched


def test_init_cnn_underscore_takes_the_init_function():
    "The course's 07 name: `init_cnn_(m, f)` applies `f` (a=0.1) to every conv, nested too."
    def make(): return nn.Sequential(conv_layer(3, 8), nn.Sequential(conv_layer(8, 8)))
    a, b = make(), make()
    torch.manual_seed(0); init_cnn(a, uniform=True)
    torch.manual_seed(0); init_cnn_(b, init.kaiming_uniform_)
    for pa, pb in zip(a.parameters(), b.parameters()): assert torch.equal(pa, pb)
    assert torch.equal(b[1][0][0].bias, torch.zeros(8))


# ---------------------------------------------------------------- ListContainer and hooks

def test_list_container_indexing():
    c = ListContainer(list('abcdefghijkl'))
    assert c[0] == 'a' and c[1:3] == ['b', 'c'] and c[[0, 2]] == ['a', 'c']
    assert c[[True, False] * 6] == list('acegik') == c[torch.tensor([True, False] * 6)]
    assert c[torch.tensor([1, 2])] == ['b', 'c']
    with pytest.raises(IndexError, match='mask of length 2 for 12'): c[[True, False]]
    c[0] = 'z'; del c[1]
    assert list(c)[:2] == ['z', 'c'] and len(c) == 11
    assert repr(c).startswith('ListContainer (11 items)') and repr(c).endswith('...]')
    assert ListContainer('one').items == ['one']


def _n_hooks(m): return len(m._forward_hooks)


def test_hook_records_and_removes_itself():
    lin = nn.Linear(3, 4)
    with Hook(lin, append_hist_stats) as h:
        lin(torch.randn(8, 3)); lin(torch.randn(8, 3))
        assert _n_hooks(lin) == 1
    assert _n_hooks(lin) == 0
    means, stds, hists = h.stats
    assert len(means) == len(stds) == len(hists) == 2
    lin(torch.randn(8, 3))                   # removed: nothing more recorded
    assert len(h.stats[0]) == 2


def test_hook_removed_on_deletion():
    lin = nn.Linear(3, 4)
    h = Hook(lin, append_stats)
    assert _n_hooks(lin) == 1
    del h; gc.collect()
    assert _n_hooks(lin) == 0
    hs = Hooks([lin, lin], append_stats)
    assert _n_hooks(lin) == 2
    del hs[0]
    assert _n_hooks(lin) == 1 and len(hs) == 1
    del hs; gc.collect()
    assert _n_hooks(lin) == 0


def test_hooks_on_something_that_is_not_a_module():
    lin = nn.Linear(3, 4)
    with pytest.raises(TypeError, match='Hook needs an nn.Module to watch, got function'):
        Hooks([lin, flatten], append_stats)
    gc.collect()
    assert _n_hooks(lin) == 0   # the Hook made for `lin` before the error removed itself


def test_append_stats_keeps_the_courses_two_lists():
    "The course's exported hook: `ms, ss = h.stats`, one mean and std per training batch."
    m = nn.Identity()
    x = torch.tensor([[-1., 0., 2., 5.]])
    with Hook(m, append_stats) as h:
        m(x); m(2 * x); m.eval(); m(x)
    ms, ss = h.stats
    torch.testing.assert_close(torch.stack(ms), torch.stack([x.mean(), 2 * x.mean()]))
    torch.testing.assert_close(torch.stack(ss), torch.stack([x.std(), 2 * x.std()]))
    with pytest.raises(ValueError, match='no histograms.*append_hist_stats'): get_hist(h)
    with pytest.raises(ValueError, match='no histograms.*append_hist_stats'): near_zero_share(h)


def test_append_hist_stats_values_and_eval_mode_ignored():
    m = nn.Identity()
    x = torch.tensor([[-10., -0.2, 0., 0.2, 1., 3.]])
    with Hook(m, append_hist_stats) as h:
        m(x); m.eval(); m(x * 100)
    means, stds, hists = h.stats
    assert len(means) == 1                  # the eval-mode call is not recorded
    torch.testing.assert_close(means[0], x.mean()); torch.testing.assert_close(stds[0], x.std())
    assert hists[0].sum() == 5              # -10 is outside the histogram's range [-7, 7]
    assert get_hist(h).shape == (40, 1)
    torch.testing.assert_close(get_hist(h)[:, 0], hists[0].log1p())
    # -0.2, 0 and 0.2 are within 0.35 of zero
    torch.testing.assert_close(near_zero_share(h), torch.tensor([3 / 5]))
    assert get_min is near_zero_share   # the course's name


def test_inactive_share_counts_the_floor_whatever_its_value():
    """A shifted leaky ReLU puts its inactive units at about -sub, outside |a| < 0.35: the
    inactive share still counts them, the near-zero window does not."""
    act = GeneralRelu(leak=0.1, sub=0.4)
    x = torch.tensor([[-3., -1., -0.1, 0., 0.05, 2.]])      # four inputs <= 0
    with Hook(act, append_inactive) as h, Hook(act, append_hist_stats) as hs:
        act(x); act.eval(); act(-x)                          # the eval-mode call is not recorded
    torch.testing.assert_close(inactive_share(h), torch.tensor([4 / 6]))
    # outputs: -0.7, -0.5, -0.41, -0.4, -0.35, 1.6: none strictly inside (-0.35, 0.35)
    assert near_zero_share(hs).item() < 1 / 6 + 1e-6


def test_inactive_share_of_relu_is_its_share_of_zeros():
    act = nn.ReLU()
    x = torch.randn(1000)
    with Hook(act, append_inactive) as h: act(x)
    torch.testing.assert_close(inactive_share(h), (act(x) == 0).float().mean()[None])


def test_inactive_share_without_records_says_what_to_do():
    act = nn.ReLU().eval()
    with Hook(act, append_inactive) as h: act(torch.randn(3))
    with pytest.raises(ValueError, match='append_inactive to an activation module and train'):
        inactive_share(h)


def test_normalize_to_uses_the_training_statistics():
    torch.manual_seed(0)
    train, valid = torch.randn(500, 7) * 3 + 2, torch.randn(200, 7) * 5 - 1
    nt, nv = normalize_to(train, valid)
    torch.testing.assert_close(nt.mean(), torch.tensor(0.), atol=1e-5, rtol=0)
    torch.testing.assert_close(nt.std(), torch.tensor(1.))
    torch.testing.assert_close(nv, (valid - train.mean()) / train.std())   # not valid's own stats


# ---------------------------------------------------------------- callbacks and runners

def test_get_runner_trains_a_cnn_with_callbacks(data):
    torch.manual_seed(0)
    model = get_cnn_model(data, [4, 8], conv_layer)
    learn, run = get_runner(model, data, lr=0.1,
                            cbs=[partial(AvgStatsCallback, accuracy), DeviceCallback(),
                                 partial(BatchTransformXCallback, mnist_view)])
    with Hooks(children(model)[:2], append_stats) as hooks:
        run.fit(1, learn)
    assert [len(h.stats[0]) for h in hooks] == [len(data.train_dl)] * 2   # training batches only
    assert run.avg_stats.valid_stats.count == 32
    assert CudaCallback is DeviceCallback


def test_batch_transform_runs_after_device_callback(make_tiny_data):
    seen = []
    class Spy(Callback):
        _order = 3
        def begin_batch(self): seen.append((tuple(self.xb.shape), self.xb.device))
    data = make_tiny_data(n_train=16, n_valid=16, bs=8, shape=(784,), n_classes=10)
    learn, run = get_runner(nn.Sequential(Lambda(flatten), nn.Linear(784, 10)), data,
                            cbs=[BatchTransformXCallback(mnist_view), DeviceCallback('cpu'), Spy()])
    run.fit(1, learn)
    assert seen[0] == ((8, 1, 28, 28), torch.device('cpu'))


def test_get_learn_run_initialises_and_passes_kwargs(data):
    torch.manual_seed(0)
    learn, run = get_learn_run([8, 16], data, 0.3, conv_layer, leak=0.1, sub=0.4, maxv=6.)
    act = learn.model[0][1]
    assert (act.leak, act.sub, act.maxv) == (0.1, 0.4, 6.)
    assert torch.equal(learn.model[0][0].bias, torch.zeros(8))
    assert learn.opt.param_groups[0]['lr'] == 0.3


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
def test_device_callback_moves_model_and_batches_to_cuda(data):
    model = get_cnn_model(data, [4], conv_layer)
    cbs = [DeviceCallback('cuda'), partial(BatchTransformXCallback, mnist_view)]
    learn, run = get_runner(model, data, cbs=cbs)
    run.fit(1, learn)
    assert next(model.parameters()).device.type == 'cuda'


# ---------------------------------------------------------------- the course's 06 calls

def test_course_06_calls_run_against_exp(data):
    """The course's 06 set-up and telemetry loop, in its own call shapes: callback factories, Hooks
    on the whole model."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from exp.nb_06 import ParamScheduler, Recorder, combine_scheds, sched_cos
    torch.manual_seed(0)
    cbfs = [Recorder, partial(AvgStatsCallback, accuracy), CudaCallback,
            partial(BatchTransformXCallback, mnist_view)]
    model = get_cnn_model(data, [8, 16], conv_layer, leak=0.1, sub=0.4, maxv=6.)
    init_cnn(model)
    learn, run = get_runner(model, data, lr=0.9, cbs=cbfs)
    # the course types a histogram version of append_stats here; exp calls it append_hist_stats
    with Hooks(model, append_hist_stats) as hooks:
        run.fit(1, learn)
        fig, (ax0, ax1) = plt.subplots(1, 2)
        for h in hooks:
            ms, ss, hi = h.stats
            ax0.plot(ms[:10]); ax1.plot(ss[:10])
    assert len(hooks) == len(model) and all(len(h.stats[0]) == len(data.train_dl) for h in hooks)
    fig, axes = plt.subplots(2, 2)
    for ax, h in zip(axes.flatten(), hooks[:4]):
        ax.imshow(get_hist(h), origin='lower'); ax.plot(get_min(h))
    plt.close('all')
    sched = combine_scheds([0.5, 0.5], [sched_cos(0.2, 1.), sched_cos(1., 0.1)])
    learn, run = get_learn_run([8, 16], data, 1., conv_layer,
                               cbs=cbfs + [partial(ParamScheduler, 'lr', sched)])
    run.fit(1, learn)
    assert len(run.recorder.lrs[0]) == len(data.train_dl)
    hooks = [Hook(l, append_stats) for l in children(learn.model[:2])]
    learn.model.train()   # fit leaves the model in eval mode, where append_stats records nothing
    learn.model(mnist_view(data.train_ds.x[:4]))
    for h in hooks: h.remove()
    assert all(len(h.stats[0]) == 1 for h in hooks)
