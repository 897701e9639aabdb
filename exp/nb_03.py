# Generated from nbs/03_minibatch_training.ipynb by notebook2script.py:
# edit the notebook, not this file.


from exp.nb_02 import *
from torch import optim
from torch.utils.data import BatchSampler as _TorchBatchSampler
import operator


def_device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')

def model_device(model):
    "The device of `model`'s first parameter (or buffer); `def_device` if it has neither."
    for t in model.parameters(): return t.device
    for t in model.buffers(): return t.device
    return def_device

def to_device(t, device):
    """`t` copied to `device`. Without waiting for the copy (`non_blocking`) only from pinned
    (page-locked) memory, which 08's loader gives where there is CUDA: the one source a GPU copies
    from while the CPU goes on; from ordinary memory it would gain nothing."""
    return t.to(device, non_blocking=t.is_pinned())

def sync(device):
    """Wait until the work queued on `device` (a torch.device, a string or a tensor) is done:
    `torch.cuda.synchronize` on a CUDA device, nothing on any other."""
    if torch.is_tensor(device): device = device.device
    device = torch.device(device)
    if device.type == 'cuda': torch.cuda.synchronize(device)


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


def _check_batching(n, bs, drop_last=False):
    """A batch size of at least 1 and, when the number of items `n` is known, items enough for
    one batch."""
    # bool is an int: True would mean 1
    if isinstance(bs, bool) or not isinstance(bs, int) or bs < 1:
        raise ValueError(f"batch size must be a positive integer, got {bs!r}")
    if n is None: return
    if n == 0: raise ValueError("cannot make batches from an empty dataset (0 items)")
    if drop_last and n < bs:
        raise ValueError(f"drop_last=True with batch size {bs} and only {n} items would leave "
                         f"no batch at all; use a batch size of at most {n}, or drop_last=False")

def _n_batches(n, bs, drop_last):
    "How many batches of `bs` the `n` items make: the short last one counts unless `drop_last`."
    return n // bs if drop_last else -(-n // bs)

class Sampler:
    "Yields tensors of indices, `bs` at a time, in order or freshly shuffled on every iteration."
    def __init__(self, ds_or_n, bs, shuffle=False, drop_last=False):
        self.n = ds_or_n if isinstance(ds_or_n, int) else len(ds_or_n)
        _check_batching(self.n, bs, drop_last)
        self.bs, self.shuffle, self.drop_last = bs, shuffle, drop_last

    def __len__(self): return _n_batches(self.n, self.bs, self.drop_last)

    def __iter__(self):
        idxs = torch.randperm(self.n) if self.shuffle else torch.arange(self.n)
        for i in range(0, len(self) * self.bs, self.bs): yield idxs[i:i+self.bs]


def collate(b):
    "Stack a list of (x, y) pairs into one batch (xb, yb)."
    xs, ys = zip(*b)
    return torch.stack(xs), torch.stack(ys)

def _batch_size_of(sampler):
    """The batch size a batch-making sampler carries: `.bs` (ours, the course's) or
    `.batch_size` (torch's BatchSampler)."""
    return getattr(sampler, 'bs', getattr(sampler, 'batch_size', None))

def _yields_batches(sampler):
    """Whether `sampler` yields whole batches of indices (ours, torch's BatchSampler) rather than
    one index at a time."""
    return hasattr(sampler, 'bs') or isinstance(sampler, _TorchBatchSampler)

def _one_batch_size(bs, batch_size):
    "`bs` and torch's `batch_size` name one argument: two different values are a mistake."
    if bs is not None and batch_size is not None and bs != batch_size:
        raise ValueError(f"DataLoader: bs={bs!r} and batch_size={batch_size!r} "
                         "are the same argument; pass one")
    return batch_size if bs is None else bs


def _check_loader_args(bs, shuffle, sampler, batch_sampler, drop_last):
    """Refuse arguments that another argument would silently override (torch refuses the same
    combinations)."""
    if batch_sampler is not None:
        passed = {'bs': bs is not None, 'shuffle': shuffle, 'sampler': sampler is not None,
                  'drop_last': drop_last}
        given = [name for name, v in passed.items() if v]
        if given: raise ValueError(f"DataLoader: batch_sampler= decides the batches, "
                                   f"so {', '.join(given)} cannot be given with it")
    elif sampler is not None:
        if shuffle: raise ValueError(f"DataLoader: shuffle={shuffle!r} cannot be combined "
                                     f"with sampler=: the sampler decides the order")
        if _yields_batches(sampler) and drop_last:
            raise ValueError("DataLoader: drop_last=True would be ignored because the sampler "
                             "makes the batches; set it on the sampler")
        sampler_bs = _batch_size_of(sampler)
        if _yields_batches(sampler) and bs is not None and sampler_bs not in (None, bs):
            raise ValueError(f"DataLoader: bs={bs!r} disagrees with the sampler's batch size "
                             f"{sampler_bs!r}")


def _as_index(i):
    """One index from a sampler of single indices; anything else (a whole batch, say) is refused,
    showing what came."""
    try: return operator.index(i)
    except TypeError:
        msg = (f"DataLoader: the sampler yielded {i!r} where one index was expected; "
               "a sampler that yields whole batches of indices goes in batch_sampler=")
        raise ValueError(msg) from None

class _ItemBatches:
    """Groups the single indices an item sampler yields (torch's RandomSampler, say) into index
    tensors of `bs`."""
    def __init__(self, sampler, bs, drop_last):
        _check_batching(len(sampler) if hasattr(sampler, '__len__') else None, bs, drop_last)
        self.sampler, self.bs, self.drop_last = sampler, bs, drop_last

    def __len__(self): return _n_batches(len(self.sampler), self.bs, self.drop_last)

    def __iter__(self):
        batch = []
        for i in self.sampler:
            batch.append(_as_index(i))
            if len(batch) == self.bs: yield torch.tensor(batch); batch = []
        if batch and not self.drop_last: yield torch.tensor(batch)


class DataLoader:
    """Iterates (xb, yb) batches of `ds`. The batches of indices come from `batch_sampler` if
    given; else from `sampler` (ours yields whole batches; torch's yield single indices, grouped
    here by `bs`); else from a `Sampler` built from `bs` (default 64), `shuffle` and `drop_last`.
    `batch_size` is torch's name for `bs`. Without `collate_fn` each batch is one `ds[idxs]`
    lookup, so `ds` must accept a tensor of indices; with `collate_fn` items are fetched one by
    one and passed to it as a list."""
    def __init__(self, ds, bs=None, shuffle=False, sampler=None, collate_fn=None, drop_last=False,
                 *, batch_size=None, batch_sampler=None):
        bs = _one_batch_size(bs, batch_size)
        _check_loader_args(bs, shuffle, sampler, batch_sampler, drop_last)
        size = 64 if bs is None else bs
        if batch_sampler is None:
            if sampler is None: batch_sampler = Sampler(ds, size, shuffle, drop_last)
            elif _yields_batches(sampler): batch_sampler = sampler
            else: batch_sampler = _ItemBatches(sampler, size, drop_last)
        self.ds, self.collate_fn, self.batch_sampler = ds, collate_fn, batch_sampler
        self.sampler = batch_sampler if sampler is None else sampler
        self.bs = _batch_size_of(batch_sampler)  # None when a custom batch sampler does not say

    dataset = property(lambda self: self.ds, doc="torch's name for `ds`")
    batch_size = property(lambda self: self.bs, doc="torch's name for `bs`")
    def __len__(self): return len(self.batch_sampler)

    def __iter__(self):
        for idxs in self.batch_sampler:
            if self.collate_fn is None: yield self.ds[idxs]
            else: yield self.collate_fn([self.ds[i] for i in torch.as_tensor(idxs).tolist()])


from torch.utils.data import SequentialSampler, RandomSampler


def train_epoch(model, loss_func, opt, dl):
    "One pass over `dl` in training mode: forward, backward, optimizer step, zero the gradients."
    model.train()
    device = model_device(model)   # the data goes where the model is
    for xb, yb in dl:
        xb, yb = to_device(xb, device), to_device(yb, device)
        loss_func(model(xb), yb).backward()
        opt.step()
        opt.zero_grad()

def evaluate(model, loss_func, dl):
    "(loss, accuracy) over all of `dl` in eval mode without gradients, averaged over examples."
    model.eval()
    tot_loss, tot_acc, count = 0., 0., 0
    device = model_device(model)
    with torch.no_grad():
        for xb, yb in dl:
            xb, yb = to_device(xb, device), to_device(yb, device)
            pred, nb = model(xb), len(xb)   # weight each batch's means by its size
            tot_loss += loss_func(pred, yb).item() * nb
            tot_acc += accuracy(pred, yb).item() * nb
            count += nb
    if count == 0:
        raise ValueError("evaluate: the DataLoader gave no batches, so there is nothing to average")
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


# What `from exp.nb_03 import *` gives (generated by notebook2script.py;
# a name bound only in a branch not taken is left out).
from exp.nb_02 import __all__ as _all_nb_02
__all__ = _all_nb_02 + [
    'optim', 'def_device', 'model_device', 'to_device', 'sync', 'logsumexp', 'log_softmax',
    'nll', 'accuracy', 'Optimizer', 'Dataset', 'Sampler', 'collate', 'DataLoader',
    'SequentialSampler', 'RandomSampler', 'train_epoch', 'evaluate', 'fit', 'get_dls'
]
__all__ = [_name for _name in dict.fromkeys(__all__) if _name in globals()]
