"""The course's calls from lessons 02, 02b and 03 (fastai/course-v3, nbs/dl2/), run against exp.

Each test retells, in its own words and on small data, what a course cell does with the names that
`from exp.nb_03 import *` provides, and asserts what the course's cell shows or checks. The one
deliberate difference: the course's `fit` returns the last epoch's (loss, accuracy); ours returns
one pair per epoch, so the course's `loss, acc = fit(...)` is written `loss, acc = fit(...)[-1]`
here.
"""
import math

import pytest

# The point of this file: the names a learner gets. Its checking helpers (test_near ...) come too;
# 00 marks them __test__ = False, so pytest does not collect them as tests.
from exp.nb_03 import *


@pytest.fixture(scope='module')
def mnist():
    "The course's opening: get the data, normalize every split with the training statistics."
    x_train, y_train, x_valid, y_valid = get_data()
    train_mean, train_std = x_train.mean(), x_train.std()
    x_train = normalize(x_train, train_mean, train_std)
    # the training stats, not the validation ones
    x_valid = normalize(x_valid, train_mean, train_std)
    test_near_zero(x_train.mean())
    test_near_zero(1 - x_train.std())
    return x_train, y_train, x_valid, y_valid


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


# ---- 02_fully_connected ------------------------------------------------------------------------

def test_02_kaiming_init_by_its_course_name(mnist):
    x_train, y_train, x_valid, _ = mnist
    n, m = x_train.shape
    c = y_train.max() + 1
    assert (n, m, int(c)) == (50000, 784, 10)
    w1 = torch.zeros(m, 50)
    init.kaiming_normal_(w1, mode='fan_out')   # (n_in, n_out) weights: the fan is dimension 0
    assert abs(w1.std().item() / math.sqrt(2 / m) - 1) < 0.05
    t = x_valid[:1000] @ w1
    t = t.clamp_min(0.)
    assert 0.7 < t.pow(2).mean().item() < 1.4   # He init keeps the mean square near 1 after a ReLU


def course_forward_backward(x, y, w1, b1, w2, b2):
    "The course's lin/relu/mse functions and their gradients, as in its forward_and_backward."
    l1 = x @ w1 + b1
    l2 = l1.clamp_min(0.)
    out = l2 @ w2 + b2
    out.g = 2. * (out.squeeze() - y).unsqueeze(-1) / x.shape[0]   # mse_grad
    l2.g = out.g @ w2.t(); w2.g = l2.t() @ out.g; b2.g = out.g.sum(0)
    l1.g = (l1 > 0).float() * l2.g
    x.g = l1.g @ w1.t(); w1.g = x.t() @ l1.g; b1.g = l1.g.sum(0)
    return mse(out, y)


def test_02_layer_classes_agree_with_functions_and_autograd(mnist):
    x_train, y_train, *_ = mnist
    x, y = x_train[:500].clone(), y_train[:500].float()
    m, nh = x.shape[1], 50
    w1, b1 = torch.randn(m, nh) * math.sqrt(2 / m), torch.zeros(nh)
    w2, b2 = torch.randn(nh, 1) * math.sqrt(2 / nh), torch.zeros(1)

    loss_f = course_forward_backward(x, y, w1, b1, w2, b2)
    expected = [t.g.clone() for t in (x, w1, b1, w2, b2)]

    for t in (x, w1, b1, w2, b2): del t.g
    model = Model(w1, b1, w2, b2)   # the course's Lin, Relu and Mse classes, one list of layers
    loss = model(x, y)
    model.backward()
    test_near(loss, loss_f)
    for t, g in zip((x, w1, b1, w2, b2), expected): test_near(t.g, g)

    xa, w1a, b1a, w2a, b2a = (t.clone().requires_grad_(True) for t in (x, w1, b1, w2, b2))
    mse((xa @ w1a + b1a).clamp_min(0.) @ w2a + b2a, y).backward()
    for t, g in zip((x, w1, b1, w2, b2), (xa, w1a, b1a, w2a, b2a)): test_near(t.g, g.grad)


def test_02_nn_model_with_mse_loss(mnist):
    """The course's closing cell: nn.Linear layers in a plain list, mse as the loss, autograd
    backward."""
    x_train, y_train, *_ = mnist
    class CourseModel(nn.Module):
        def __init__(self, n_in, nh, n_out):
            super().__init__()
            self.layers = [nn.Linear(n_in, nh), nn.ReLU(), nn.Linear(nh, n_out)]
            self.loss = mse
        def __call__(self, x, targ):
            for l in self.layers: x = l(x)
            return self.loss(x.squeeze(), targ)
    model = CourseModel(784, 50, 1)
    x, y = x_train[:256], y_train[:256].float()
    loss = model(x, y)
    loss.backward()
    lin = model.layers[0]
    assert lin.weight.grad.shape == (50, 784) and torch.isfinite(lin.weight.grad).all()
    test_near(loss, F.mse_loss(model.layers[2](F.relu(lin(x))).squeeze(), y))


# ---- 02b_initializing --------------------------------------------------------------------------

def test_02b_deep_matmul_explodes_or_holds_with_the_scale():
    x, a = torch.randn(512), torch.randn(512, 512)
    for i in range(100):
        x = a @ x
        if x.std() != x.std(): break   # NaN: the course's way of spotting it
    assert i < 99 and x.std().isnan()

    x, a = torch.randn(512), torch.randn(512, 512) / math.sqrt(512)
    for _ in range(100): x = a @ x
    assert 1e-3 < x.std().item() < 1e3   # a hundred layers later, still a usable scale


def test_02b_relu_needs_the_factor_2():
    def mean_square(scale):
        sqr = 0.
        for _ in range(100):
            y = (torch.randn(512, 512) * scale) @ torch.randn(512)
            sqr += y.clamp(min=0).pow(2).mean().item()
        return sqr / 100
    assert 0.85 < mean_square(math.sqrt(2 / 512)) < 1.15   # He: the mean square stays at 1
    assert 0.4 < mean_square(1 / math.sqrt(512)) < 0.6     # without the 2, a ReLU halves it


# ---- 03_minibatch_training ---------------------------------------------------------------------

def test_03_losses_match_torch(mnist):
    x_train, y_train, *_ = mnist
    model = nn.Sequential(nn.Linear(784, 50), nn.ReLU(), nn.Linear(50, 10))
    pred = model(x_train[:1000])
    y = y_train[:1000]
    sm_pred = log_softmax(pred)
    loss = nll(sm_pred, y)
    test_near(sm_pred[[0, 1, 2], y[:3]], sm_pred[range(3), y[:3]])
    test_near(logsumexp(pred), pred.logsumexp(-1))
    test_near(F.nll_loss(F.log_softmax(pred, -1), y), loss)
    test_near(F.cross_entropy(pred, y), loss)
    assert 0. <= accuracy(pred, y).item() <= 1.


def course_fit(model, opt, loss_func, train_dl, epochs=1):
    "The course's training loop once the data loader exists."
    for _ in range(epochs):
        for xb, yb in train_dl:
            loss_func(model(xb), yb).backward()
            opt.step()
            opt.zero_grad()


def get_model(lr=0.1, nh=50):   # the course uses 0.5; a smaller step keeps these short runs steady
    model = nn.Sequential(nn.Linear(784, nh), nn.ReLU(), nn.Linear(nh, 10))
    return model, optim.SGD(model.parameters(), lr=lr)


def test_03_optimizer_and_dataset(mnist):
    x_train, y_train, *_ = mnist
    model = nn.Sequential(nn.Linear(784, 50), nn.ReLU(), nn.Linear(50, 10))
    opt = Optimizer(model.parameters())      # the course's default learning rate, 0.5
    assert opt.lr == 0.5
    train_ds = Dataset(x_train, y_train)   # one epoch over all of it, as the course does
    assert len(train_ds) == len(x_train)
    xb, yb = train_ds[0:5]
    assert xb.shape == (5, 28 * 28) and yb.shape == (5,)
    bs = 64
    for i in range((len(train_ds) - 1) // bs + 1):
        xb, yb = train_ds[i * bs: i * bs + bs]
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
        opt.zero_grad()
    xb, yb = train_ds[0:bs]
    assert accuracy(model(xb), yb) > 0.7   # the course's check


def test_03_samplers_and_loaders_as_the_course_builds_them(mnist):
    x_train, y_train, x_valid, y_valid = mnist
    train_ds = Dataset(x_train[:10000], y_train[:10000])
    valid_ds = Dataset(x_valid[:1000], y_valid[:1000])
    bs = 64
    small_ds = Dataset(*train_ds[:10])
    batches = [o.tolist() for o in Sampler(small_ds, 3, False)]
    assert batches == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    shuffled = torch.cat([o for o in Sampler(small_ds, 3, True)])
    assert sorted(shuffled.tolist()) == list(range(10))

    xb, yb = next(iter(DataLoader(valid_ds, bs)))
    assert xb.shape == (bs, 28 * 28) and yb.shape == (bs,)

    train_samp = Sampler(train_ds, bs, shuffle=True)
    valid_samp = Sampler(valid_ds, bs, shuffle=False)
    train_dl = DataLoader(train_ds, sampler=train_samp, collate_fn=collate)
    valid_dl = DataLoader(valid_ds, sampler=valid_samp, collate_fn=collate)
    xb, yb = next(iter(valid_dl))
    assert torch.equal(yb, y_valid[:bs])          # validation in order
    first = [next(iter(train_dl))[1] for _ in range(2)]
    assert not torch.equal(*first)                # training reshuffled on each pass

    loaders = {  # the course's PyTorch-style calls
        'RandomSampler': (
            DataLoader(train_ds, bs, sampler=RandomSampler(train_ds), collate_fn=collate),
            DataLoader(valid_ds, bs, sampler=SequentialSampler(valid_ds), collate_fn=collate)),
        'shuffle, drop_last': (DataLoader(train_ds, bs, shuffle=True, drop_last=True),
                               DataLoader(valid_ds, bs, shuffle=False)),
    }
    for name, (train_dl, valid_dl) in loaders.items():
        model, opt = get_model()
        course_fit(model, opt, F.cross_entropy, train_dl)
        # all of it, in order
        assert torch.equal(torch.cat([yb for _, yb in valid_dl]), valid_ds.y), name
        with torch.no_grad(): assert accuracy(model(valid_ds.x), valid_ds.y) > 0.75, name
    assert all(len(yb) == bs for _, yb in loaders['shuffle, drop_last'][0])


def test_03_get_dls_and_fit(mnist):
    x_train, y_train, x_valid, y_valid = mnist
    train_ds = Dataset(x_train[:20000], y_train[:20000])
    valid_ds = Dataset(x_valid[:2000], y_valid[:2000])
    train_dl, valid_dl = get_dls(train_ds, valid_ds, 64)
    assert train_dl.batch_size == 64 and valid_dl.batch_size == 128
    assert train_dl.dataset is train_ds and valid_dl.dataset is valid_ds
    model, opt = get_model()
    loss, acc = fit(3, model, F.cross_entropy, opt, train_dl, valid_dl)[-1]
    assert acc > 0.85 and loss < 0.6


def test_03_get_dls_passes_loader_options_on(mnist):
    x_train, y_train, *_ = mnist
    ds = Dataset(x_train[:200], y_train[:200])
    train_dl, valid_dl = get_dls(ds, ds, 16, collate_fn=collate)
    assert train_dl.collate_fn is collate and valid_dl.collate_fn is collate
    assert [len(yb) for _, yb in valid_dl][-1] == 200 - 32 * 6
