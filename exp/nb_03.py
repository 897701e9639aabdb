# Generated from nbs/03_minibatch_training.ipynb by notebook2script.py: edit the notebook, not this file.


from exp.nb_02 import *
import torch.nn as nn, torch.nn.functional as F, torch.optim as optim


def_device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')


def logsumexp(x):
    "log(sum(exp(x))) over the last axis, computed without overflow by factoring out the max."
    a = x.max(-1)[0]
    a = a.masked_fill(~a.isfinite(), 0)  # a row of all -inf (or an inf) must not give inf - inf
    return a + (x - a[..., None]).exp().sum(-1).log()

def log_softmax(x):
    "log(softmax(x)) over the last axis: x - logsumexp(x), shifting by the max first."
    z = x - x.max(-1, keepdim=True)[0]
    return z - logsumexp(z)[..., None]


def _check_class_shapes(fname, inp, target):
    "Raise a ValueError naming both shapes unless inp is (N, C) and target is (N,)."
    if inp.ndim != 2 or target.ndim != 1 or inp.shape[0] != target.shape[0]:
        raise ValueError(f"{fname} expects input (N, C) and target (N,), "
                         f"got input {tuple(inp.shape)} and target {tuple(target.shape)}")

def nll(input, target):
    "Negative log likelihood: the mean of -input[i, target[i]]."
    _check_class_shapes('nll', input, target)
    return -input[torch.arange(len(target), device=input.device), target].mean()


def accuracy(out, yb):
    "Fraction of rows of `out` whose largest score is at the target class `yb`."
    _check_class_shapes('accuracy', out, yb)
    return (out.argmax(dim=1) == yb).float().mean()


class Optimizer:
    "Plain SGD: `step` moves each parameter by -lr * gradient; `zero_grad` resets the gradients."
    def __init__(self, params, lr=0.5): self.params, self.lr = list(params), lr

    def step(self):
        with torch.no_grad():
            for p in self.params:
                if p.grad is not None: p -= p.grad * self.lr

    def zero_grad(self):
        for p in self.params:
            if p.grad is not None: p.grad.zero_()


def _index_rows(t, i):
    "`t[i]`, via `index_select` for a 1-d int64 index tensor: the same rows, copied faster on CPU."
    if torch.is_tensor(t) and torch.is_tensor(i) and i.ndim == 1 and i.dtype == torch.long:
        return t.index_select(0, i.to(t.device))
    return t[i]

class Dataset:
    "Inputs `x` paired with targets `y`; index with an int, a slice, or a tensor/list of indices."
    def __init__(self, x, y):
        if len(x) != len(y):
            raise ValueError(f"Dataset: x and y must have the same length, got len(x)={len(x)} "
                             f"and len(y)={len(y)}")
        self.x, self.y = x, y
    def __len__(self): return len(self.x)
    def __getitem__(self, i): return _index_rows(self.x, i), _index_rows(self.y, i)


def _check_batching(n, bs):
    "Batching needs at least one item and a batch size of at least 1; anything else is a mistake."
    if isinstance(bs, bool) or not isinstance(bs, int) or bs < 1:  # bool is an int: True would mean 1
        raise ValueError(f"batch size must be a positive integer, got {bs!r}")
    if n == 0: raise ValueError("cannot make batches from an empty dataset (0 items)")

class Sampler:
    "Yields tensors of indices, `bs` at a time, in order or freshly shuffled on every iteration."
    def __init__(self, ds_or_n, bs, shuffle=False, drop_last=False):
        self.n = ds_or_n if isinstance(ds_or_n, int) else len(ds_or_n)
        _check_batching(self.n, bs)
        self.bs, self.shuffle, self.drop_last = bs, shuffle, drop_last

    def __len__(self): return self.n // self.bs if self.drop_last else -(-self.n // self.bs)

    def __iter__(self):
        idxs = torch.randperm(self.n) if self.shuffle else torch.arange(self.n)
        for i in range(0, len(self) * self.bs, self.bs): yield idxs[i:i+self.bs]


def collate(b):
    "Stack a list of (x, y) pairs into one batch (xb, yb)."
    xs, ys = zip(*b)
    return torch.stack(xs), torch.stack(ys)

def _check_sampler_args(sampler, bs, shuffle, drop_last):
    "A given sampler decides the batches: refuse loader arguments it would silently override."
    for name, value in (('shuffle', shuffle), ('drop_last', drop_last)):
        if value: raise ValueError(f"DataLoader: {name}={value!r} would be ignored because a sampler "
                                   f"is given; set it on the sampler")
    if bs is not None and getattr(sampler, 'bs', bs) != bs:
        raise ValueError(f"DataLoader: bs={bs!r} disagrees with the sampler's batch size {sampler.bs!r}")

class DataLoader:
    """Iterates (xb, yb) batches of `ds` in the order given by `sampler`. Without one it builds a
    `Sampler` from `bs` (default 64), `shuffle` and `drop_last`; a given sampler decides those itself.
    Without `collate_fn` each batch is one `ds[idxs]` lookup, so `ds` must accept a tensor of
    indices; with `collate_fn` items are fetched one by one and passed to it as a list."""
    def __init__(self, ds, bs=None, shuffle=False, sampler=None, collate_fn=None, drop_last=False):
        if sampler is None: sampler = Sampler(ds, 64 if bs is None else bs, shuffle, drop_last)
        else: _check_sampler_args(sampler, bs, shuffle, drop_last)
        self.ds, self.sampler, self.collate_fn = ds, sampler, collate_fn
        self.bs = getattr(sampler, 'bs', bs)  # None when a custom sampler does not say

    def __len__(self): return len(self.sampler)

    def __iter__(self):
        for idxs in self.sampler:
            if self.collate_fn is None: yield self.ds[idxs]
            else: yield self.collate_fn([self.ds[i] for i in idxs.tolist()])


def train_epoch(model, loss_func, opt, dl):
    "One pass over `dl` in training mode: forward, backward, optimizer step, zero the gradients."
    model.train()
    for xb, yb in dl:
        xb, yb = xb.to(def_device), yb.to(def_device)
        loss_func(model(xb), yb).backward()
        opt.step()
        opt.zero_grad()

def evaluate(model, loss_func, dl):
    "(loss, accuracy) over all of `dl` in eval mode without gradients, averaged over examples."
    model.eval()
    tot_loss, tot_acc, count = 0., 0., 0
    with torch.no_grad():
        for xb, yb in dl:
            xb, yb = xb.to(def_device), yb.to(def_device)
            pred, nb = model(xb), len(xb)   # weight each batch's means by its size
            tot_loss += loss_func(pred, yb).item() * nb
            tot_acc += accuracy(pred, yb).item() * nb
            count += nb
    return tot_loss / count, tot_acc / count


def fit(epochs, model, loss_func, opt, train_dl, valid_dl):
    "Train for `epochs`; return [(valid_loss, valid_acc)] per epoch, averaged over all examples."
    hist = []
    for epoch in range(epochs):
        train_epoch(model, loss_func, opt, train_dl)
        hist.append(evaluate(model, loss_func, valid_dl))
        print(f'epoch {epoch}: valid loss {hist[-1][0]:.4f}, valid accuracy {hist[-1][1]:.4f}')
    return hist


def get_dls(train_ds, valid_ds, bs, **kwargs):
    "Training DataLoader (shuffled, batch size `bs`) and validation DataLoader (in order, 2*bs)."
    return (DataLoader(train_ds, bs, shuffle=True, **kwargs),
            DataLoader(valid_ds, bs * 2, **kwargs))
