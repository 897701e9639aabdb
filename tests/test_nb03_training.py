"""Tests for exp/nb_03.py: losses vs PyTorch in float64, Sampler, DataLoader, Optimizer, fit."""
import copy

import pytest
import torch
import torch.nn.functional as F

from torch.utils.data import BatchSampler
from torch.utils.data import DataLoader as TorchDL

from exp.nb_03 import (Dataset, DataLoader, Optimizer, RandomSampler, Sampler, SequentialSampler,
                       accuracy, collate, def_device, evaluate, fit, get_dls, log_softmax,
                       logsumexp, nll, nn, optim, train_epoch)


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def logits(n=16, c=10, scale=3.):
    return torch.randn(n, c, dtype=torch.float64) * scale


# ---- losses -----------------------------------------------------------------------

@pytest.mark.parametrize('scale', [1., 30., 1e4, 1e6])
def test_logsumexp_and_log_softmax_match_torch(scale):
    x = logits(scale=scale)
    torch.testing.assert_close(logsumexp(x), torch.logsumexp(x, -1))
    torch.testing.assert_close(log_softmax(x), F.log_softmax(x, -1))


def test_log_softmax_finite_where_naive_overflows():
    x = torch.tensor([[1e4, 1e4 - 1., 0.], [-1e4, 0., 2.]])  # float32, like real logits
    naive = (x.exp() / x.exp().sum(-1, keepdim=True)).log()
    assert not naive.isfinite().all()
    out = log_softmax(x)
    assert out.isfinite().all()
    torch.testing.assert_close(out, F.log_softmax(x, -1))
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(2))


def test_logsumexp_all_minus_inf_row():
    x = torch.full((2, 3), float('-inf'), dtype=torch.float64)
    x[1] = torch.tensor([0., 1., 2.], dtype=torch.float64)
    torch.testing.assert_close(logsumexp(x), torch.logsumexp(x, -1))


def test_log_softmax_batched_leading_dims():
    x = torch.randn(2, 3, 5, dtype=torch.float64)
    torch.testing.assert_close(log_softmax(x), F.log_softmax(x, -1))


@pytest.mark.parametrize('scale', [1., 1e4])
def test_nll_and_cross_entropy_match_torch(scale):
    x, y = logits(scale=scale), torch.randint(0, 10, (16,))
    torch.testing.assert_close(nll(F.log_softmax(x, -1), y), F.nll_loss(F.log_softmax(x, -1), y))
    torch.testing.assert_close(nll(log_softmax(x), y), F.cross_entropy(x, y))


def test_cross_entropy_gradient_matches_torch():
    x, y = logits(), torch.randint(0, 10, (16,))
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    nll(log_softmax(x1), y).backward()
    F.cross_entropy(x2, y).backward()
    torch.testing.assert_close(x1.grad, x2.grad)


@pytest.mark.parametrize('inp_shape,targ_shape', [((8, 10), (8, 1)), ((8, 10), (4,)), ((8,), (8,))])
def test_nll_shape_mismatch_names_both_shapes(inp_shape, targ_shape):
    inp, targ = torch.randn(inp_shape), torch.zeros(targ_shape, dtype=torch.long)
    with pytest.raises(ValueError) as e:
        nll(inp, targ)
    assert str(inp_shape) in str(e.value) and str(targ_shape) in str(e.value)


def test_accuracy():
    out = torch.tensor([[0., 1., 0.], [2., 1., 0.], [0., 0., 3.], [5., 0., 1.]])
    assert accuracy(out, torch.tensor([1, 0, 2, 1])).item() == pytest.approx(0.75)
    x, y = logits(100), torch.randint(0, 10, (100,))
    assert accuracy(x, y).item() == pytest.approx((x.argmax(1) == y).double().mean().item())
    with pytest.raises(ValueError, match=r'\(4, 1\)'):
        accuracy(out, torch.zeros(4, 1, dtype=torch.long))


# ---- Dataset and Sampler ----------------------------------------------------------

def make_ds(n=10, d=3):
    return Dataset(torch.randn(n, d), torch.arange(n))


def test_dataset_indexing():
    ds = make_ds()
    assert len(ds) == 10
    x, y = ds[3]
    assert torch.equal(x, ds.x[3]) and y.item() == 3
    for idx in (torch.tensor([4, 1, 7]), [4, 1, 7]):
        xb, yb = ds[idx]
        assert torch.equal(xb, ds.x[[4, 1, 7]]) and yb.tolist() == [4, 1, 7]
    for idx in (torch.tensor([4, 1, 7], dtype=torch.int32), slice(4, 7), ds.y % 3 == 0):
        xb, yb = ds[idx]
        assert torch.equal(xb, ds.x[idx]) and torch.equal(yb, ds.y[idx])


def test_dataset_length_mismatch():
    with pytest.raises(ValueError, match='10.*7'):
        Dataset(torch.zeros(10, 2), torch.zeros(7))


@pytest.mark.parametrize('n,bs', [(10, 3), (10, 5), (10, 1), (10, 64), (1, 4)])
def test_sampler_ordered_covers_in_order(n, bs):
    batches = list(Sampler(n, bs))
    assert len(batches) == len(Sampler(n, bs)) == -(-n // bs)
    assert all(len(b) == bs for b in batches[:-1])
    assert len(batches[-1]) == n - bs * (len(batches) - 1)  # the short last batch is kept
    assert torch.cat(batches).tolist() == list(range(n))


def test_sampler_shuffled_each_index_once_and_new_order_per_epoch():
    s = Sampler(make_ds(50), 8, shuffle=True)
    epochs = [torch.cat(list(s)) for _ in range(3)]
    for e in epochs:
        assert sorted(e.tolist()) == list(range(50))
    assert not torch.equal(epochs[0], epochs[1]) and not torch.equal(epochs[1], epochs[2])
    assert epochs[0].tolist() != list(range(50))
    assert [len(b) for b in s] == [8] * 6 + [2]


@pytest.mark.parametrize('shuffle', [False, True])
def test_sampler_drop_last(shuffle):
    s = Sampler(10, 3, shuffle=shuffle, drop_last=True)
    batches = list(s)
    assert len(s) == len(batches) == 3
    assert all(len(b) == 3 for b in batches)
    assert len(set(torch.cat(batches).tolist())) == 9
    assert len(Sampler(9, 3, drop_last=True)) == 3
    assert len(list(Sampler(3, 3, drop_last=True))) == 1  # exactly one full batch is fine


@pytest.mark.parametrize('bs', [0, -1, 2.5, True, False, '4'])
def test_bad_batch_size(bs):
    with pytest.raises(ValueError, match='batch size'):
        Sampler(10, bs)
    with pytest.raises(ValueError, match='batch size'):
        DataLoader(make_ds(), bs)


def test_empty_dataset():
    with pytest.raises(ValueError, match='empty'):
        DataLoader(Dataset(torch.zeros(0, 3), torch.zeros(0)), 4)
    with pytest.raises(ValueError, match='empty'):
        Sampler(0, 4)


# ---- collate and DataLoader -------------------------------------------------------

def test_collate():
    ds = make_ds()
    xb, yb = collate([ds[i] for i in (2, 0, 5)])
    assert torch.equal(xb, ds.x[[2, 0, 5]]) and torch.equal(yb, ds.y[[2, 0, 5]])


@pytest.mark.parametrize('n,bs', [(10, 3), (12, 4), (7, 10)])
def test_dataloader_batches_cover_dataset(n, bs):
    ds = make_ds(n, 4)
    dl = DataLoader(ds, bs)
    batches = list(dl)
    assert dl.ds is ds and len(dl) == len(batches) == -(-n // bs)
    for xb, yb in batches[:-1]:
        assert xb.shape == (bs, 4) and yb.shape == (bs,)
    assert len(batches[-1][0]) == n - bs * (len(batches) - 1)
    assert torch.equal(torch.cat([xb for xb, _ in batches]), ds.x)
    assert torch.equal(torch.cat([yb for _, yb in batches]), ds.y)


def test_dataloader_shuffled_pairs_stay_matched():
    ds = Dataset(torch.arange(20.)[:, None] * 10, torch.arange(20))
    batches = list(DataLoader(ds, 6, shuffle=True))
    ys = torch.cat([yb for _, yb in batches])
    assert sorted(ys.tolist()) == list(range(20)) and ys.tolist() != list(range(20))
    for xb, yb in batches:
        assert torch.equal(xb[:, 0], yb.float() * 10)


@pytest.mark.parametrize('shuffle,drop_last', [(False, False), (True, False), (True, True)])
def test_fast_path_equals_collate_path(shuffle, drop_last):
    ds = make_ds(23, 5)
    torch.manual_seed(1)
    fast = list(DataLoader(ds, 4, shuffle=shuffle, drop_last=drop_last))
    torch.manual_seed(1)
    slow = list(DataLoader(ds, 4, shuffle=shuffle, drop_last=drop_last, collate_fn=collate))
    assert len(fast) == len(slow) == (5 if drop_last else 6)
    for (x1, y1), (x2, y2) in zip(fast, slow):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_custom_collate_fn_gets_items():
    seen = []
    def count(b):
        seen.append(len(b))
        return collate(b)
    list(DataLoader(make_ds(10), 4, collate_fn=count))
    assert seen == [4, 4, 2]


def test_dataloader_with_given_sampler():
    ds = make_ds(10)
    dl = DataLoader(ds, sampler=Sampler(ds, 5))
    assert len(dl) == 2 and [len(yb) for _, yb in dl] == [5, 5]
    assert dl.bs == 5  # from the sampler, not a default
    assert DataLoader(ds, 5, sampler=Sampler(ds, 5)).bs == 5  # a bs that agrees is fine


def test_dataloader_default_batch_size():
    dl = DataLoader(make_ds(100))
    assert dl.bs == 64 and [len(yb) for _, yb in dl] == [64, 36]


class Pairs:
    "A custom batch sampler: any iterable of index batches with a length will do."
    def __iter__(self): return iter(torch.arange(7).split(2))
    def __len__(self): return 4


@pytest.mark.parametrize('collate_fn', [None, collate])
def test_dataloader_custom_batch_sampler(collate_fn):
    ds = make_ds(7)
    # torch's name for a sampler of batches
    dl = DataLoader(ds, batch_sampler=Pairs(), collate_fn=collate_fn)
    assert dl.bs is None and len(dl) == 4
    assert [yb.tolist() for _, yb in dl] == [[0, 1], [2, 3], [4, 5], [6]]


def test_dataloader_item_sampler_that_yields_batches_says_what_to_do():
    with pytest.raises(ValueError, match=r'yielded tensor\(\[0, 1\]\).*batch_sampler='):
        list(DataLoader(make_ds(7), sampler=Pairs()))


@pytest.mark.parametrize('kwargs,match', [({'bs': 4}, r'bs=4.*5'), ({'shuffle': True}, 'shuffle'),
                                          ({'drop_last': True}, 'drop_last')])
def test_dataloader_refuses_args_a_sampler_would_override(kwargs, match):
    ds = make_ds(10)
    with pytest.raises(ValueError, match=match):
        DataLoader(ds, sampler=Sampler(ds, 5), **kwargs)


def test_matches_torch_dataloader_ordered():
    from torch.utils.data import DataLoader as TorchDL
    ds = make_ds(21, 3)
    for (x1, y1), (x2, y2) in zip(DataLoader(ds, 4), TorchDL(ds, batch_size=4), strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_get_dls():
    train_ds, valid_ds = make_ds(20), make_ds(9)
    train_dl, valid_dl = get_dls(train_ds, valid_ds, 4)
    assert train_dl.ds is train_ds and valid_dl.ds is valid_ds
    assert len(train_dl) == 5 and len(valid_dl) == 2
    assert [len(yb) for _, yb in valid_dl] == [8, 1]
    assert torch.cat([yb for _, yb in valid_dl]).tolist() == list(range(9))  # validation in order
    ys = torch.cat([yb for _, yb in train_dl])
    assert sorted(ys.tolist()) == list(range(20)) and ys.tolist() != list(range(20))


# ---- Optimizer and fit ------------------------------------------------------------

@pytest.fixture
def tiny_model(make_tiny_model):
    "A factory: a float64 MLP, 4 features to 5 hidden to 3 classes."
    return lambda: make_tiny_model(4, 3, n_hidden=5, seed=3).double()


def grads_for(model, x, y):
    F.cross_entropy(model(x), y).backward()


def test_optimizer_step_is_manual_sgd(tiny_model):
    model, lr = tiny_model(), 0.3
    x, y = torch.randn(8, 4, dtype=torch.float64), torch.randint(0, 3, (8,))
    grads_for(model, x, y)
    expected = [(p - lr * p.grad).detach() for p in model.parameters()]
    opt = Optimizer(model.parameters(), lr)
    opt.step()
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.detach(), e)
    opt.zero_grad()
    assert all(torch.count_nonzero(p.grad) == 0 for p in model.parameters())


def test_optimizer_matches_torch_sgd_over_steps(tiny_model):
    m1 = tiny_model()
    m2 = copy.deepcopy(m1)
    o1, o2 = Optimizer(m1.parameters(), 0.1), optim.SGD(m2.parameters(), lr=0.1)
    for _ in range(5):
        x, y = torch.randn(8, 4, dtype=torch.float64), torch.randint(0, 3, (8,))
        for model, opt in ((m1, o1), (m2, o2)):
            grads_for(model, x, y)
            opt.step()
            opt.zero_grad()
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(p1, p2)


def test_optimizer_skips_params_without_grad():
    used, unused = nn.Linear(2, 1).double(), nn.Linear(2, 1).double()
    before = [p.detach().clone() for p in unused.parameters()]
    opt = Optimizer(list(used.parameters()) + list(unused.parameters()), 0.1)
    used(torch.randn(3, 2, dtype=torch.float64)).sum().backward()
    opt.step()
    opt.zero_grad()
    for p, b in zip(unused.parameters(), before):
        assert torch.equal(p, b)


def on_device(*ts): return [t.to(def_device) for t in ts]


def test_evaluate_weights_batches_by_size(tiny_model):
    model = tiny_model().to(def_device)
    x_va, y_va = on_device(torch.randn(7, 4, dtype=torch.float64), torch.randint(0, 3, (7,)))
    valid_dl = DataLoader(Dataset(x_va, y_va), 3)  # batches of 3, 3, 1
    model.train()
    loss, acc = evaluate(model, F.cross_entropy, valid_dl)
    assert not model.training
    with torch.no_grad():
        full_loss = F.cross_entropy(model(x_va), y_va).item()
        full_acc = accuracy(model(x_va), y_va).item()
        batch_means = [F.cross_entropy(model(xb), yb).item() for xb, yb in valid_dl]
    assert loss == pytest.approx(full_loss, rel=1e-12)
    assert acc == pytest.approx(full_acc, rel=1e-6)  # accuracy is a float32 mean
    assert sum(batch_means) / len(batch_means) != pytest.approx(full_loss, rel=1e-6)


def test_train_epoch_is_one_step_per_batch(tiny_model):
    m1 = tiny_model().to(def_device)
    m2 = copy.deepcopy(m1)
    x, y = on_device(torch.randn(10, 4, dtype=torch.float64), torch.randint(0, 3, (10,)))
    m1.eval()
    train_epoch(m1, F.cross_entropy, Optimizer(m1.parameters(), 0.1), DataLoader(Dataset(x, y), 4))
    assert m1.training
    opt = optim.SGD(m2.parameters(), lr=0.1)
    for i in range(0, 10, 4):  # the same three batches, by hand
        F.cross_entropy(m2(x[i:i+4]), y[i:i+4]).backward()
        opt.step()
        opt.zero_grad()
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(p1, p2)


def test_fit_weighted_validation_average_is_full_set_loss(tiny_model):
    model = tiny_model().to(def_device)
    x_tr, y_tr = on_device(torch.randn(12, 4, dtype=torch.float64), torch.randint(0, 3, (12,)))
    x_va, y_va = on_device(torch.randn(7, 4, dtype=torch.float64), torch.randint(0, 3, (7,)))
    valid_dl = DataLoader(Dataset(x_va, y_va), 3)  # batches of 3, 3, 1
    hist = fit(2, model, F.cross_entropy, optim.SGD(model.parameters(), lr=0.1),
               DataLoader(Dataset(x_tr, y_tr), 5, shuffle=True), valid_dl)
    assert len(hist) == 2
    model.eval()
    with torch.no_grad():
        full_loss = F.cross_entropy(model(x_va), y_va).item()
        full_acc = accuracy(model(x_va), y_va).item()
        batch_means = [F.cross_entropy(model(xb), yb).item() for xb, yb in valid_dl]
    assert hist[-1][0] == pytest.approx(full_loss, rel=1e-12)
    assert hist[-1][1] == pytest.approx(full_acc, rel=1e-6)  # accuracy is a float32 mean
    # the plain mean of batch means is a different number: the weighting matters here
    assert sum(batch_means) / len(batch_means) != pytest.approx(full_loss, rel=1e-6)


def test_fit_trains_and_sets_modes():
    torch.manual_seed(0)
    x = torch.randn(200, 2, dtype=torch.float64)
    x, y = on_device(x, (x[:, 0] > x[:, 1]).long())  # linearly separable
    model = nn.Linear(2, 2).double().to(def_device)
    with torch.no_grad(): start = F.cross_entropy(model(x[150:]), y[150:]).item()
    modes = []
    def record_mode(mod, inp, out): modes.append((mod.training, torch.is_grad_enabled()))
    model.register_forward_hook(record_mode)
    train_dl, valid_dl = get_dls(Dataset(x[:150], y[:150]), Dataset(x[150:], y[150:]), 16)
    hist = fit(10, model, F.cross_entropy, Optimizer(model.parameters(), 0.5), train_dl, valid_dl)
    assert hist[-1][1] > 0.9 and hist[-1][0] < start
    assert (True, True) in modes and (False, False) in modes
    assert (False, True) not in modes and (True, False) not in modes


# ---- drop_last with fewer items than one batch: refused when the loader is made ---------------

@pytest.mark.parametrize('make', [
    lambda ds: DataLoader(ds, 64, drop_last=True),
    lambda ds: DataLoader(ds, batch_size=11, shuffle=True, drop_last=True),
    lambda ds: DataLoader(ds, 64, sampler=RandomSampler(ds), drop_last=True),
    lambda ds: Sampler(ds, 64, drop_last=True),
    lambda ds: get_dls(ds, ds, 32, drop_last=True),
])
def test_drop_last_with_fewer_items_than_a_batch_is_refused_up_front(make):
    refused = r'drop_last=True with batch size \d+ and only 10 items.*at most 10'
    with pytest.raises(ValueError, match=refused):
        make(make_ds(10))


def test_drop_last_with_exactly_one_batch_and_evaluate_of_no_batches(tiny_model):
    dl = DataLoader(make_ds(10), 10, drop_last=True)
    assert len(dl) == 1 and len(list(dl)) == 1
    class Nothing:
        def __iter__(self): return iter(())
        def __len__(self): return 0
    with pytest.raises(ValueError, match='no batches'):
        evaluate(tiny_model(), F.cross_entropy, DataLoader(make_ds(10), batch_sampler=Nothing()))


# ---- torch's keyword names and samplers, checked against torch's DataLoader -------------------

def seeded():
    return torch.Generator().manual_seed(7)


def assert_same_batches(ours, theirs):
    pairs = list(zip(ours, theirs, strict=True))
    assert pairs and len(ours) == len(theirs) == len(pairs)
    for (x1, y1), (x2, y2) in pairs:
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


# each entry builds the keyword arguments afresh, so the two loaders get separate, identically
# seeded samplers
TORCH_CALLS = {
    'batch_size': lambda ds: dict(batch_size=4),
    'batch_size, drop_last': lambda ds: dict(batch_size=4, drop_last=True),
    'SequentialSampler': lambda ds: dict(batch_size=5, sampler=SequentialSampler(ds)),
    'RandomSampler + collate': lambda ds: dict(
        batch_size=4, sampler=RandomSampler(ds, generator=seeded()), collate_fn=collate),
    'RandomSampler, drop_last': lambda ds: dict(
        batch_size=4, sampler=RandomSampler(ds, generator=seeded()), drop_last=True),
    'BatchSampler as batch_sampler': lambda ds: dict(batch_sampler=BatchSampler(
        RandomSampler(ds, generator=seeded()), 6, drop_last=False)),
    'BatchSampler as batch_sampler + collate': lambda ds: dict(batch_sampler=BatchSampler(
        SequentialSampler(ds), 6, drop_last=True), collate_fn=collate),
}


@pytest.mark.parametrize('name', TORCH_CALLS)
def test_torch_keywords_give_torchs_batches(name):
    ds = make_ds(23, 3)
    ours, theirs = DataLoader(ds, **TORCH_CALLS[name](ds)), TorchDL(ds, **TORCH_CALLS[name](ds))
    assert_same_batches(ours, theirs)
    assert ours.dataset is ds and ours.batch_size == theirs.batch_sampler.batch_size


def test_course_positional_bs_with_random_sampler():
    "The course's call: DataLoader(ds, bs, sampler=RandomSampler(ds), collate_fn=collate)."
    ds = make_ds(23, 3)
    ours = DataLoader(ds, 4, sampler=RandomSampler(ds, generator=seeded()), collate_fn=collate)
    theirs = TorchDL(ds, 4, sampler=RandomSampler(ds, generator=seeded()), collate_fn=collate)
    assert_same_batches(ours, theirs)
    dl = DataLoader(ds, 4, sampler=RandomSampler(ds))   # fresh order each pass, every index once
    epochs = [torch.cat([yb for _, yb in dl]) for _ in range(2)]
    assert all(sorted(e.tolist()) == list(range(23)) for e in epochs) and not torch.equal(*epochs)


def in_fours(ds): return BatchSampler(SequentialSampler(ds), 4, False)

CONFLICTS = {
    'shuffle with sampler': lambda ds: dict(shuffle=True, sampler=SequentialSampler(ds)),
    'batch_size with batch_sampler': lambda ds: dict(batch_size=4, batch_sampler=in_fours(ds)),
    'shuffle with batch_sampler': lambda ds: dict(shuffle=True, batch_sampler=in_fours(ds)),
    'sampler with batch_sampler': lambda ds: dict(sampler=SequentialSampler(ds),
                                                  batch_sampler=in_fours(ds)),
    'drop_last with batch_sampler': lambda ds: dict(drop_last=True, batch_sampler=in_fours(ds)),
}


@pytest.mark.parametrize('name', CONFLICTS)
def test_contradicting_arguments_refused_like_torch(name):
    ds = make_ds(10)
    with pytest.raises(ValueError):
        TorchDL(ds, **CONFLICTS[name](ds))   # torch refuses it ...
    with pytest.raises(ValueError, match=r'^DataLoader: .*(sampler|batch_sampler)='):
        DataLoader(ds, **CONFLICTS[name](ds))   # ... and so do we, naming the arguments


def test_bs_and_batch_size_are_one_argument():
    ds = make_ds(10)
    assert DataLoader(ds, batch_size=3).bs == DataLoader(ds, 3).bs == 3
    assert DataLoader(ds, 3, batch_size=3).bs == 3
    with pytest.raises(ValueError, match=r'bs=3 and batch_size=4'):
        DataLoader(ds, 3, batch_size=4)


def test_torch_batch_sampler_as_sampler_makes_the_batches():
    """torch's own fast-path call, DataLoader(ds, batch_size=None, sampler=BatchSampler(...)), works
    the same."""
    ds = make_ds(23, 3)
    kw = lambda: dict(batch_size=None, sampler=BatchSampler(SequentialSampler(ds), 5, False))
    assert_same_batches(DataLoader(ds, **kw()), TorchDL(ds, **kw()))
    assert DataLoader(ds, **kw()).bs == 5
    with pytest.raises(ValueError, match=r'bs=4 disagrees.*5'):
        DataLoader(ds, 4, sampler=BatchSampler(SequentialSampler(ds), 5, False))


@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA')
@pytest.mark.parametrize('name', [
    'batch_size',
    'RandomSampler + collate',
    'BatchSampler as batch_sampler',
])
def test_loaders_serve_cuda_data_like_cpu_data(name):
    """Index tensors are made on the CPU; a dataset on the GPU must give the same batches, on the
    GPU."""
    cpu_ds = make_ds(23, 3)
    gpu_ds = Dataset(cpu_ds.x.cuda(), cpu_ds.y.cuda())
    for (x1, y1), (x2, y2) in zip(DataLoader(cpu_ds, **TORCH_CALLS[name](cpu_ds)),
                                  DataLoader(gpu_ds, **TORCH_CALLS[name](gpu_ds)), strict=True):
        assert x2.is_cuda and torch.equal(x1, x2.cpu()) and torch.equal(y1, y2.cpu())
