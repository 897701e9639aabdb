"""BatchNorm, its hand-written backward, GroupNorm, InstanceNorm, LayerNorm and RunningBatchNorm
from nbs/07_batchnorm.ipynb, in float64 against torch."""
import copy

import pytest
import torch
from torch import nn

from exp.nb_07 import (BatchNorm, BatchNormFunction, GroupNorm, InstanceNorm, LayerNorm,
                       RunningBatchNorm, conv_layer, group_normalize)

# 07 defines BatchNorm twice: first with autograd, then with its own backward
AutogradBatchNorm = BatchNorm.__base__
TOL = dict(rtol=1e-10, atol=1e-10)


def close(a, b): return torch.allclose(a, b, **TOL)

def randomize_affine(ours, ref):
    """Give both layers the same random (non-default) scale and shift, so their gradients are not
    trivial."""
    with torch.no_grad():
        for p, q in zip(ours.parameters(), ref.parameters()):
            q.copy_(torch.rand_like(q) + 0.5)   # scales and shifts in [0.5, 1.5)
            p.copy_(q.view_as(p))

def fwd_bwd(layer, x, g):
    "Output, gradient of x and gradients of the parameters, for upstream gradient g."
    x = x.detach().clone().requires_grad_()
    layer.zero_grad()
    y = layer(x)
    y.backward(g)
    return y.detach(), x.grad, [p.grad.clone() for p in layer.parameters()]


@pytest.mark.parametrize('cls', [
    AutogradBatchNorm,
    BatchNorm,
], ids=['autograd', 'hand-written backward'])
@pytest.mark.parametrize('shape,mom', [
    ((5, 3, 4, 6), 0.1),
    ((2, 4, 3, 3), 0.3),
    ((7, 2, 1, 5), 0.05),
])
def test_batchnorm_matches_torch_over_steps(cls, shape, mom):
    torch.manual_seed(0)
    nf = shape[1]
    ours, ref = cls(nf, mom=mom).double(), nn.BatchNorm2d(nf, momentum=mom).double()
    randomize_affine(ours, ref)
    for step in range(4):
        for train in (True, True, False):
            ours.train(train); ref.train(train)
            # the statistics change every step
            x = torch.randn(*shape, dtype=torch.float64) * (step + 1) + step
            g = torch.randn(*shape, dtype=torch.float64)
            y, gx, (gm, ga) = fwd_bwd(ours, x, g)
            y2, gx2, (gw, gb) = fwd_bwd(ref, x, g)
            assert close(y, y2), (step, train)
            assert close(gx, gx2), (step, train)
            assert close(gm.view(-1), gw) and close(ga.view(-1), gb), (step, train)
            assert close(ours.means.view(-1), ref.running_mean), (step, train)
            # torch keeps the unbiased variance
            assert close(ours.vars.view(-1), ref.running_var), (step, train)


def test_batchnorm_function_gradcheck():
    """The hand-written backward against finite differences, with the statistics recomputed from x
    at each probe."""
    torch.manual_seed(1)
    x = torch.randn(4, 3, 3, 2, dtype=torch.float64, requires_grad=True)
    w = torch.rand(3, 1, 1, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 1, 1, dtype=torch.float64, requires_grad=True)
    def f(x, w, b):
        m = x.detach().mean((0, 2, 3), keepdim=True)
        v = x.detach().var((0, 2, 3), keepdim=True, unbiased=False)
        return BatchNormFunction.apply(x, w, b, m, v, 1e-5, True)
    assert torch.autograd.gradcheck(f, (x, w, b))
    rm = torch.randn(1, 3, 1, 1, dtype=torch.float64)
    rv = torch.rand(1, 3, 1, 1, dtype=torch.float64) + 0.5
    batch_norm = lambda x, w, b: BatchNormFunction.apply(x, w, b, rm, rv, 1e-5, False)
    assert torch.autograd.gradcheck(batch_norm, (x, w, b))


def test_batchnorm_state_dict_round_trip():
    bn = BatchNorm(3).double()
    bn(torch.randn(4, 3, 2, 2, dtype=torch.float64))
    bn2 = BatchNorm(3).double()
    bn2.load_state_dict(copy.deepcopy(bn.state_dict()))
    bn.eval(); bn2.eval()
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    assert torch.equal(bn(x), bn2(x))


@pytest.mark.parametrize('cls', [AutogradBatchNorm, BatchNorm])
def test_batchnorm_bad_input(cls):
    bn = cls(3)
    refused = r'BatchNorm\(3\) expects input \(N, 3, H, W\), got \(2, 4, 5, 5\)'
    with pytest.raises(ValueError, match=refused):
        bn(torch.randn(2, 4, 5, 5))
    with pytest.raises(ValueError, match=r'\(2, 3, 5\)'): bn(torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match=r'more than one value per channel.*\(1, 3, 1, 1\)'):
        bn(torch.randn(1, 3, 1, 1))
    bn.eval(); bn(torch.randn(1, 3, 1, 1))   # fine in eval mode: the running statistics are used
    # and nothing was changed by the refused calls
    assert torch.equal(bn.means, torch.zeros(1, 3, 1, 1))


@pytest.mark.parametrize('ours,ref', [
    (lambda: GroupNorm(3, 6), lambda: nn.GroupNorm(3, 6)),
    (lambda: GroupNorm(1, 6), lambda: nn.GroupNorm(1, 6)),
    (lambda: InstanceNorm(6), lambda: nn.InstanceNorm2d(6, affine=True)),
], ids=['group3', 'group1', 'instance'])
def test_group_and_instance_norm_match_torch(ours, ref):
    torch.manual_seed(2)
    ours, ref = ours().double(), ref().double()
    randomize_affine(ours, ref)
    for _ in range(2):
        x = torch.randn(4, 6, 3, 5, dtype=torch.float64) * 3 + 1
        g = torch.randn_like(x)
        y, gx, gp = fwd_bwd(ours, x, g)
        y2, gx2, gq = fwd_bwd(ref, x, g)
        assert close(y, y2) and close(gx, gx2)
        for p, q in zip(gp, gq): assert close(p.view(-1), q)


def test_layernorm_matches_torch_over_chw():
    """The course's LayerNorm has one scalar scale and shift; torch's one per element of (C,H,W):
    compare at equal values."""
    torch.manual_seed(3)
    ours, ref = LayerNorm().double(), nn.LayerNorm((6, 3, 5)).double()
    with torch.no_grad():
        ours.mult.fill_(1.7); ours.add.fill_(-0.4); ref.weight.fill_(1.7); ref.bias.fill_(-0.4)
    x = torch.randn(4, 6, 3, 5, dtype=torch.float64) * 2 - 1
    g = torch.randn_like(x)
    y, gx, (gm, ga) = fwd_bwd(ours, x, g)
    y2, gx2, (gw, gb) = fwd_bwd(ref, x, g)
    assert close(y, y2) and close(gx, gx2)
    # a shared scalar gets the sum of the elementwise gradients
    assert close(gm, gw.sum()) and close(ga, gb.sum())


def test_group_normalize_bad_groups():
    with pytest.raises(ValueError, match='6 channels cannot be split into 4 equal groups'):
        group_normalize(torch.randn(2, 6, 3, 3), 4)


def test_running_batchnorm_first_step_is_batchnorm():
    """With a batch of at least 20, the debiased running statistics after one step are that batch's:
    BatchNorm's output."""
    torch.manual_seed(4)
    x = torch.randn(24, 3, 4, 4, dtype=torch.float64) * 2 + 3
    rbn, bn = RunningBatchNorm(3).double(), nn.BatchNorm2d(3).double()
    assert close(rbn(x), bn(x))


def test_running_batchnorm_sums_are_debiased_emas():
    """The buffers follow the exponential moving averages of the batch sums, with the course's
    batch-size momentum."""
    torch.manual_seed(5)
    rbn = RunningBatchNorm(2, mom=0.2).double()
    sums = sqrs = count = dbias = 0.
    for bs in (2, 5, 3, 8):
        x = torch.randn(bs, 2, 3, 3, dtype=torch.float64) + 1
        rbn(x)
        m1 = 1 - 0.8 / (bs - 1) ** 0.5
        sums = sums * (1 - m1) + m1 * x.sum((0, 2, 3))
        sqrs = sqrs * (1 - m1) + m1 * (x * x).sum((0, 2, 3))
        count = count * (1 - m1) + m1 * bs * 9
        dbias = dbias * (1 - m1) + m1
    assert close(rbn.sums.view(-1), sums) and close(rbn.sqrs.view(-1), sqrs)
    assert abs(rbn.count.item() - count) < 1e-9 and abs(rbn.dbias.item() - dbias) < 1e-12
    assert rbn.step.item() == 4 and rbn.batch.item() == 18
    rbn.eval()
    x = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    means = (sums / dbias) / (count / dbias)
    vars = (sqrs / dbias) / (count / dbias) - means ** 2   # batch = 18 < 20: clamped below at 0.01
    want = (x - means.view(1, 2, 1, 1)) / (vars.clamp_min(0.01).view(1, 2, 1, 1) + 1e-5).sqrt()
    before = copy.deepcopy(rbn.state_dict())
    assert close(rbn(x), want)
    # eval mode leaves the statistics alone
    for k, v in rbn.state_dict().items(): assert torch.equal(v, before[k]), k


def test_running_batchnorm_gradient_through_this_batch():
    """In training, the output depends on x through this batch's share of the running sums too:
    finite differences agree."""
    torch.manual_seed(6)
    rbn0 = RunningBatchNorm(2).double()
    rbn0(torch.randn(4, 2, 3, 3, dtype=torch.float64))   # some history in the sums
    x = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: copy.deepcopy(rbn0)(x), (x,))
    assert all(b.grad_fn is None for b in rbn0.buffers())   # the buffers never keep a graph alive


def test_running_batchnorm_batch_of_one():
    """Where BatchNorm must refuse (one value per channel), the running sums still give finite
    outputs."""
    torch.manual_seed(7)
    rbn = RunningBatchNorm(3)
    assert torch.isfinite(rbn(torch.randn(1, 3, 4, 4))).all()
    for _ in range(5): assert torch.isfinite(rbn(torch.randn(1, 3, 1, 1))).all()
    refused = r'RunningBatchNorm\(3\) expects input \(N, 3, H, W\), got \(2, 5, 4, 4\)'
    with pytest.raises(ValueError, match=refused):
        rbn(torch.randn(2, 5, 4, 4))


def test_conv_layer_bn():
    with_bn, without = conv_layer(3, 8), conv_layer(3, 8, bn=False)
    conv = with_bn[0]
    assert isinstance(conv, nn.Conv2d) and conv.bias is None and isinstance(with_bn[-1], BatchNorm)
    assert without[0].bias is not None and not any(isinstance(l, BatchNorm) for l in without)
    assert with_bn(torch.randn(2, 3, 8, 8)).shape == (2, 8, 4, 4)


def test_instance_norm_of_a_1x1_map_is_its_shift():
    "On a 1x1 map each value is its own mean: InstanceNorm returns `adds` whatever the input."
    norm = InstanceNorm(3)
    with torch.no_grad(): norm.adds.copy_(torch.tensor([1., -2., 3.]).view(3, 1, 1))
    x = torch.randn(5, 3, 1, 1) * 100
    assert torch.equal(norm(x), norm.adds.expand(5, 3, 1, 1))
    y = norm(torch.randn(5, 3, 2, 2))   # a larger map keeps each image's pattern
    assert y.std(0).min() > 0.1


def test_course_07_hook_loop_unpacks_two_lists(make_tiny_data):
    """The course's 07 hooks its whole BatchNorm model with 06's `append_stats` and unpacks each
    hook's record as `ms, ss = h.stats`, one mean and std per training batch."""
    from functools import partial

    from exp.nb_07 import (AvgStatsCallback, BatchTransformXCallback, CudaCallback, Hooks,
                           Recorder, accuracy, append_stats, get_learn_run, mnist_view)
    torch.manual_seed(0)
    data = make_tiny_data(n_train=32, n_valid=16, bs=16, shape=(784,), n_classes=10)
    cbfs = [Recorder, partial(AvgStatsCallback, accuracy), CudaCallback,
            partial(BatchTransformXCallback, mnist_view)]
    learn, run = get_learn_run([8, 16], data, 0.9, conv_layer, cbs=cbfs)
    with Hooks(learn.model, append_stats) as hooks:
        run.fit(1, learn)
        for h in hooks[:-1]:
            ms, ss = h.stats
            assert len(ms) == len(ss) == len(data.train_dl)
