"""10b: LabelSmoothingCrossEntropy against F.cross_entropy(label_smoothing=...) in float64;
reduce_loss and NoneReduce; MixUp blends training batches and losses, leaves validation alone, and
gives the learner its loss back; the calibration bins and ECE on cases worked by hand."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from exp.nb_10b import (AvgStatsCallback, Callback, LabelSmoothingCrossEntropy, MixUp,
                        NoneReduce, accuracy, calibration_bins, expected_calibration_error,
                        lin_comb, reduce_loss, unsqueeze)

F64 = torch.float64

def logits(n=50, k=7, seed=0, scale=3.):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g, dtype=F64) * scale, torch.randint(0, k, (n,), generator=g)


@pytest.mark.parametrize('eps', [0., 0.1, 0.25, 1.])
@pytest.mark.parametrize('reduction', ['mean', 'sum', 'none'])
def test_label_smoothing_matches_torch_in_float64(eps, reduction):
    out, y = logits()
    ours = LabelSmoothingCrossEntropy(eps, reduction)(out, y)
    theirs = F.cross_entropy(out, y, label_smoothing=eps, reduction=reduction)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)

def test_label_smoothing_gradient_matches_torch():
    out, y = logits(seed=1)
    a, b = out.clone().requires_grad_(), out.clone().requires_grad_()
    LabelSmoothingCrossEntropy(0.2)(a, y).backward()
    F.cross_entropy(b, y, label_smoothing=0.2).backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-12)

def test_label_smoothing_has_a_finite_best_logit_gap():
    # plain cross-entropy keeps falling as the right logit grows; the smoothed one rises again
    y = torch.tensor([0])
    gaps = torch.tensor([2., 4., 8., 16.], dtype=F64)
    out = torch.zeros(4, 5, dtype=F64); out[:, 0] = gaps
    plain = torch.stack([F.cross_entropy(o[None], y) for o in out])
    smooth = torch.stack([LabelSmoothingCrossEntropy(0.1)(o[None], y) for o in out])
    assert (plain.diff() < 0).all() and smooth[-1] > smooth.min()

def test_label_smoothing_refuses_bad_input():
    with pytest.raises(ValueError, match='eps'): LabelSmoothingCrossEntropy(1.5)
    with pytest.raises(ValueError, match=r'\(4, 3\).*\(5,\)'):
        LabelSmoothingCrossEntropy()(torch.zeros(4, 3), torch.zeros(5).long())

def test_reduce_loss():
    loss = torch.tensor([1., 2., 6.])
    assert reduce_loss(loss) == 3 and reduce_loss(loss, 'sum') == 9
    assert torch.equal(reduce_loss(loss, 'none'), loss)
    with pytest.raises(ValueError, match="'avg'"): reduce_loss(loss, 'avg')

def test_none_reduce_with_a_function_and_a_module():
    out, y = logits()
    with NoneReduce(F.cross_entropy) as f: per_item = f(out, y)
    torch.testing.assert_close(per_item, F.cross_entropy(out, y, reduction='none'))
    module = nn.CrossEntropyLoss(reduction='sum')
    with NoneReduce(module) as f:
        assert f(out, y).shape == (50,)
    assert module.reduction == 'sum'
    with pytest.raises(RuntimeError):
        with NoneReduce(module): raise RuntimeError('boom')
    assert module.reduction == 'sum'                 # put back after an error too

def test_lin_comb_and_unsqueeze():
    assert lin_comb(torch.tensor(10.), torch.tensor(2.), 0.25) == 4.
    assert unsqueeze(torch.zeros(5), (1, 2, 3)).shape == (5, 1, 1, 1)
    assert unsqueeze(torch.zeros(5), 0).shape == (1, 5)


def test_mix_blends_each_image_with_its_partner():
    torch.manual_seed(0)
    x, y = torch.randn(64, 2, 5, 5), torch.arange(64)
    mix = MixUp(0.4)
    mixed = mix.mix(x, y)
    lam = mix.lam
    assert lam.shape == (64,) and (lam >= 0.5).all() and (lam <= 1).all() and lam.std() > 0.05
    lam = lam[:, None, None, None]
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x[mix.shuffle])
    assert torch.equal(mix.yb1, y[mix.shuffle]) and sorted(mix.shuffle.tolist()) == list(range(64))

def test_mixup_refuses_a_bad_alpha():
    with pytest.raises(ValueError, match='alpha'): MixUp(0)


class _Spy(Callback):
    "Records, for every batch, whether it trains, its input after MixUp and the loss."
    _order = 95
    def begin_fit(self): self.batches, self.losses = [], []
    def begin_batch(self): self.batches.append((self.in_train, self.xb.clone(), self.yb.clone()))
    def after_loss(self):
        self.losses.append((self.in_train, self.pred.detach().clone(), self.loss.detach().clone()))

@pytest.fixture
def learner(make_tiny_data, make_tiny_learner):
    """A factory: a quiet one-layer learner with `loss_func` and `cbs` (and the averages of
    accuracy) on 24 + 16 random 1x4x4 images: 3 training batches of 8, 1 validation batch."""
    def make(loss_func, cbs):
        data = make_tiny_data(n_train=24, bs=8, shape=(1, 4, 4))
        return make_tiny_learner(data, loss_func=loss_func, cbs=cbs, quiet=True,
                                 cb_funcs=[lambda: AvgStatsCallback([accuracy])])
    return make

@pytest.mark.parametrize('loss_func', [
    F.cross_entropy,
    nn.CrossEntropyLoss(reduction='sum'),
    LabelSmoothingCrossEntropy(),
])
def test_mixup_in_training_and_not_in_validation(learner, loss_func):
    mix, spy = MixUp(0.4), _Spy()
    learn = learner(loss_func, [mix, spy])
    x, (valid_x, valid_y) = learn.data.train_ds.x, (learn.data.valid_ds.x, learn.data.valid_ds.y)
    reduction = getattr(loss_func, 'reduction', None)
    learn.fit(1)
    # all put back
    assert learn.loss_func is loss_func and getattr(loss_func, 'reduction', None) == reduction
    train = [(b, l) for b, l in zip(spy.batches, spy.losses) if b[0]]
    valid = [(b, l) for b, l in zip(spy.batches, spy.losses) if not b[0]]
    assert len(train) == 3 and len(valid) == 1
    assert torch.equal(valid[0][0][1], valid_x)      # validation images as they are
    torch.testing.assert_close(valid[0][1][2], loss_func(valid[0][1][1], valid_y))
    unmixed = [x[i:i+8] for i in range(0, 24, 8)]
    assert not any(any(torch.equal(xb, u) for u in unmixed) for (_, xb, _), _ in train)
    # the last training batch's loss is the lam-weighted blend of the losses against both label sets
    (_, _, yb), (_, pred, loss) = train[-1]
    with NoneReduce(loss_func) as per_item:
        want = mix.lam * per_item(pred, yb) + (1 - mix.lam) * per_item(pred, yb[mix.shuffle])
    torch.testing.assert_close(loss, reduce_loss(want, getattr(loss_func, 'reduction', 'mean')))

def test_mixup_gives_the_loss_back_after_an_error(learner):
    class Boom(Callback):
        def after_loss(self): raise RuntimeError('boom')
    learn = learner(F.cross_entropy, [MixUp(0.4)])
    with pytest.raises(RuntimeError, match='boom'): learn.fit(1, cbs=Boom())
    assert learn.loss_func is F.cross_entropy


def test_the_courses_10b_calls(make_tiny_data):
    # the course's 10b: MixUp as a callback factory in cb_funcs, LabelSmoothingCrossEntropy as
    # get_learner's loss
    from functools import partial
    from exp.nb_10b import BatchTransformXCallback, CudaCallback, conv_layer, get_learner
    data = make_tiny_data(n_train=32, shape=(1, 8, 8))
    norm = lambda xb: (xb - xb.mean()) / xb.std()
    cbfs = [partial(AvgStatsCallback, accuracy), CudaCallback,
            partial(BatchTransformXCallback, norm)]
    for extra, loss_func in [([MixUp], F.cross_entropy), ([], LabelSmoothingCrossEntropy())]:
        torch.manual_seed(0)
        learn = get_learner([8, 16], data, 0.4, conv_layer, cb_funcs=cbfs + extra,
                            loss_func=loss_func)
        learn.logger = lambda *a: None
        learn.fit(1)
        assert learn.loss_func is loss_func
        assert math.isfinite(learn.avg_stats.valid_stats.avg_stats[0])


def _mean_only_loss(pred, yb): return F.cross_entropy(pred, yb)

def _ignores_reduction(pred, yb, reduction='mean'): return F.cross_entropy(pred, yb)

def test_mixup_refuses_a_loss_without_reduction_before_training(learner):
    learn = learner(_mean_only_loss, [MixUp(0.4)])
    before = [p.detach().clone() for p in learn.model.parameters()]
    with pytest.raises(TypeError, match=r"_mean_only_loss.*reduction='none'"): learn.fit(1)
    assert all(torch.equal(a, p) for a, p in zip(before, learn.model.parameters()))
    assert learn.loss_func is _mean_only_loss

def test_mixup_refuses_a_loss_that_ignores_reduction(learner):
    # it takes the argument but gives one number for the batch: mixing it would be silently wrong
    learn = learner(_ignores_reduction, [MixUp(0.4)])
    with pytest.raises(ValueError, match=r"_ignores_reduction.*one loss per item.*\(8,\).*\(\)"):
        learn.fit(1)


# calibration: the reliability diagram's bins and the expected calibration error

def test_a_sure_model_right_half_the_time_is_off_by_one_half():
    probs = torch.zeros(10, 3, dtype=F64); probs[:, 0] = 1
    y = torch.tensor([0] * 5 + [2] * 5)
    count, conf, acc = calibration_bins(probs, y, n_bins=10)
    assert count[-1] == 10 and count[:-1].sum() == 0 and conf[-1] == 1 and acc[-1] == 0.5
    assert expected_calibration_error(probs, y, n_bins=10) == 0.5

def test_ece_is_the_count_weighted_gap_of_the_bins():
    # confidence 0.55 (bin 5 of 10): 2 images, 1 right; 0.95 (bin 9): 3 images, 2 right
    top = torch.tensor([0.55, 0.55, 0.95, 0.95, 0.95], dtype=F64)
    probs = torch.stack([top, 1 - top], 1)
    y = torch.tensor([0, 1, 0, 0, 1])
    count, conf, acc = calibration_bins(probs, y, n_bins=10)
    assert count[5] == 2 and count[9] == 3 and count.sum() == 5 and conf[5].item() == 0.55
    assert acc[5] == 0.5 and abs(acc[9].item() - 2/3) < 1e-12
    expected = 2/5 * abs(0.5 - 0.55) + 3/5 * abs(2/3 - 0.95)
    assert abs(expected_calibration_error(probs, y, n_bins=10) - expected) < 1e-12

def test_a_calibrated_model_has_a_small_ece():
    torch.manual_seed(0)
    conf = torch.rand(100_000, dtype=F64) * 0.5 + 0.5        # top probability in [0.5, 1)
    right = torch.rand(100_000, dtype=F64) < conf            # right as often as it says
    y = torch.where(right, 0, 1)
    assert expected_calibration_error(torch.stack([conf, 1 - conf], 1), y) < 0.01

def test_calibration_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match=r'calibration_bins: .*\(4, 3\) and \(5,\)'):
        calibration_bins(torch.rand(4, 3), torch.zeros(5, dtype=torch.long))
