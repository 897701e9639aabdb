# Generated from nbs/04_callbacks.ipynb by notebook2script.py:
# edit the notebook, not this file.


from exp.nb_03 import *
import difflib, math, re
import torch.optim as optim
from functools import partial
from collections.abc import Iterable   # what typing.Iterable means; works with isinstance
# The course's 04 did `from typing import *`: these names are exported for code written against it.
from typing import Any, Callable, Collection, Dict, Iterator  # noqa: F401
from typing import List, Optional, Sequence, Tuple, Union  # noqa: F401


def normalized_mnist():
    "MNIST's training and validation images, both normalized with the training set's mean and std."
    x_train,y_train,x_valid,y_valid = get_data()
    m,s = x_train.mean(),x_train.std()
    return normalize(x_train, m, s),y_train,normalize(x_valid, m, s),y_valid


def _dataset(dl):
    "The dataset behind a data loader: `.dataset` for PyTorch's `DataLoader`, `.ds` for 03's."
    for attr in ('dataset', 'ds'):
        if hasattr(dl, attr): return getattr(dl, attr)
    raise TypeError(f"{type(dl).__name__} has neither .dataset (PyTorch's DataLoader) "
                    "nor .ds (03's DataLoader): "
                    "DataBunch can't find the data set behind it")

class DataBunch:
    """A training and a validation data loader (03's or PyTorch's), plus `c`: how many outputs
    (classes) a model needs."""
    def __init__(self, train_dl, valid_dl, c=None):
        self.train_dl,self.valid_dl,self.c = train_dl,valid_dl,c
    @property
    def train_ds(self): return _dataset(self.train_dl)
    @property
    def valid_ds(self): return _dataset(self.valid_dl)


def mnist_databunch(bs=64):
    "Normalized MNIST in a DataBunch: shuffled training batches of `bs`, validation ones of `2*bs`."
    x_train,y_train,x_valid,y_valid = normalized_mnist()
    dls = get_dls(Dataset(x_train, y_train), Dataset(x_valid, y_valid), bs)
    return DataBunch(*dls, c=int(y_train.max())+1)


def get_model(data, lr=0.1, nh=50):
    "An MLP with one hidden layer of `nh`, sized from `data`, on `def_device`; plain SGD for it."
    if data.c is None:
        raise ValueError("get_model needs data.c, the number of outputs: pass c= to DataBunch")
    n_in = data.train_ds[0][0].numel()   # features of one example (any data set of (x, y) pairs)
    model = nn.Sequential(nn.Linear(n_in, nh), nn.ReLU(), nn.Linear(nh, data.c)).to(def_device)
    return model, optim.SGD(model.parameters(), lr=lr)


class Learner:
    "Everything a training run needs in one place: the model, its optimizer, the loss and the data."
    def __init__(self, model, opt, loss_func, data):
        self.model,self.opt,self.loss_func,self.data = model,opt,loss_func,data


def listify(o):
    "`o` as a list: None -> [], a list as is, a string or tensor wrapped, other iterables expanded."
    if o is None: return []
    if isinstance(o, list): return o
    if isinstance(o, (str, torch.Tensor)): return [o]
    if isinstance(o, Iterable): return list(o)
    return [o]


_camel_re1 = re.compile('(.)([A-Z][a-z]+)')
_camel_re2 = re.compile('([a-z0-9])([A-Z])')
def camel2snake(name):
    "'AvgStatsCallback' -> 'avg_stats_callback': '_' before each capitalised word, then lower case."
    snake = _camel_re2.sub(r'\1_\2', _camel_re1.sub(r'\1_\2', name)).lower()
    return re.sub('__+', '_', snake)   # 'LR_Find' would otherwise give 'lr__find'


class Callback:
    """Base class: define methods named after events (`begin_fit`, `after_loss`, ...); return True
    to skip what follows."""
    _order = 0
    def set_runner(self, run): self.run = run
    def __getattr__(self, k):
        # Only reached when normal lookup fails: `self.loss`... read the runner's state.
        if k == 'run':
            raise AttributeError(f"{type(self).__name__} is not attached to a Runner yet")
        return getattr(self.run, k)
    @property
    def name(self): return camel2snake(re.sub(r'Callback$', '', type(self).__name__) or 'callback')
    def __call__(self, event_name):
        f = getattr(self, event_name, None)
        return bool(f and f())


class TrainEvalCallback(Callback):
    "Switches the model to train or eval mode; counts training iterations and (fractional) epochs."
    def begin_fit(self): self.run.n_epochs,self.run.n_iter = 0.,0
    def begin_epoch(self):
        self.run.n_epochs = float(self.run.epoch)   # re-sync: adding 1/iters again and again drifts
        self.run.model.train()
    def after_batch(self):
        if not self.run.in_train: return
        self.run.n_epochs += 1/self.run.iters
        self.run.n_iter += 1
    def begin_validate(self): self.run.model.eval()
    def after_fit(self): self.run.model.eval()   # even when fit was cut short mid-epoch


class TerminateOnNaNCallback(Callback):
    """Stops fitting at the first loss that is NaN or infinite, before its backward pass and step,
    naming the epoch and batch. Every loss is read: on a GPU, one wait per batch."""
    name = 'terminate_on_nan'   # camel2snake would split 'NaN' into 'na_n'
    def after_loss(self):
        loss = self.loss.item()   # on a GPU the CPU waits here for this batch's forward pass
        if math.isfinite(loss): return
        kind,then = (('training', 'stopped before its backward pass and step') if self.in_train
                     else ('validation', 'stopped there'))
        raise FloatingPointError(f"loss is {loss} in epoch {self.epoch}, {kind} batch {self.iter} "
                                 f"(0-based; {self.iters} batches per pass): {then}. "
                                 "Is the learning rate too high?")


def _has_own_call(cb): return type(cb).__call__ is not Callback.__call__

def handles(cb, event):
    "Does callback `cb` act on `event`?"
    if _has_own_call(cb): return True                  # its own __call__ may act on any event
    if event in vars(cb): return True                   # a method attached to this one instance
    return getattr(type(cb), event, None) is not None   # its class's method (not the runner's)

def _handler(cb, event):
    """What the runner calls for `cb` at `event`: the method itself (no lookup per call), or
    `cb(event)` for an own __call__."""
    return partial(cb, event) if _has_own_call(cb) else getattr(cb, event)


def _event_prefixes(events):
    "('begin_', 'after_'): how the names of `events` start."
    return tuple({e.split('_')[0] + '_' for e in events})

def _misnamed_events(cb, events):
    "Public methods of `cb` named like an event ('begin_...', 'after_...') but not in `events`."
    names = {n for n in dir(type(cb)) if callable(getattr(type(cb), n))}
    names |= {n for n,v in vars(cb).items() if callable(v)}   # methods attached to the instance
    prefixes = _event_prefixes(events)
    return sorted(n for n in names if n.startswith(prefixes) and n not in events)

def _check_events(cb, events):
    """Raise if `cb` has a method that looks like an event handler but matches no event: it would
    never be called."""
    bad = _misnamed_events(cb, events)
    if not bad: return
    def hint(n):
        close = difflib.get_close_matches(n, events, n=1)
        return f"did you mean {close[0]!r}?" if close else "it is close to no event"
    why = '; '.join(f"{n!r} is not an event, so the Runner would never call it ({hint(n)})"
                    for n in bad)
    raise ValueError(f"{type(cb).__name__}: {why}. The events are: {', '.join(events)}. "
                     "(A helper that is not an event: start its name with '_'.)")


class _RunnerCallbacks:
    "The Runner's callbacks: added (each checked and named) and removed."
    events = ('begin_fit', 'begin_epoch', 'begin_batch', 'after_pred', 'after_loss',
              'after_backward', 'after_step', 'after_batch', 'begin_validate', 'after_epoch',
              'after_fit')   # in firing order
    # added unless one of the same class is passed:
    default_cb_funcs = (TrainEvalCallback, TerminateOnNaNCallback)

    def __init__(self, cbs=None, cb_funcs=None):
        self.learn,self.in_train,self.stop,self.cbs,self._handlers = None,False,False,[],{}
        self.epochs = self.epoch = self.iters = self.iter = self.n_iter = 0
        self.n_epochs = 0.
        self.xb = self.yb = self.pred = self.loss = None
        cbs = listify(cbs) + [f() for f in listify(cb_funcs)]
        defaults = [f() for f in self.default_cb_funcs if not any(isinstance(cb, f) for cb in cbs)]
        self.add_cbs(defaults + cbs)

    def add_cbs(self, cbs):
        """Attach callbacks; each becomes reachable as `run.<its name>`. All are checked before any
        is attached."""
        cbs = listify(cbs)
        for cb in cbs:
            if not isinstance(cb, Callback):
                raise TypeError(f"{cb!r} is not a Callback instance "
                                "(classes and factories go in cb_funcs)")
            if self._name_taken(cb.name):
                raise ValueError(f"{type(cb).__name__} is named {cb.name!r}, "
                                 "which is already a Runner attribute")
            _check_events(cb, self.events)
        for cb in cbs:
            cb.set_runner(self)
            setattr(self, cb.name, cb)
            self.cbs.append(cb)
        self._handlers = {}

    def _name_taken(self, name):
        """Is `name` the runner's own: a method, a property or state (`fit`, `model`, `loss`...)?
        A callback's name may be reused."""
        if hasattr(type(self), name): return True    # methods and properties
        # state, even while it is None:
        return name in vars(self) and not isinstance(vars(self)[name], Callback)

    def remove_cbs(self, cbs):
        """Detach callbacks (the same objects that were added): the runner stops calling them and
        forgets their names."""
        for cb in listify(cbs):
            if cb not in self.cbs:
                raise ValueError(f"{type(cb).__name__} ({cb.name!r}) is not one of this runner's "
                                 "callbacks")
            self.cbs.remove(cb)
            if vars(self).get(cb.name) is cb: delattr(self, cb.name)
        self._handlers = {}


class _RunnerShortcuts:
    "The Runner's shortcuts to the learner's parts: `run.model` is `run.learn.model`, and so on."
    @property
    def opt(self): return self.learn.opt
    @property
    def model(self): return self.learn.model
    @property
    def loss_func(self): return self.learn.loss_func
    @property
    def data(self): return self.learn.data


class _RunnerEvents:
    "The Runner's events: firing one calls the callbacks that handle it, in `_order`."
    def _handlers_for(self, event):
        "(callback, function to call) for each callback acting on `event`, sorted by `_order`."
        cbs = [cb for cb in self.cbs if handles(cb, event)]
        cbs.sort(key=lambda cb: cb._order)   # stable: ties keep the order they were added in
        return [(cb, _handler(cb, event)) for cb in cbs]

    def __call__(self, event):
        """Call each callback acting on `event`, in order; True if any returned something truthy, or
        `stop` is set."""
        hs = self._handlers.get(event)   # worked out once per event and cached: ~7 times a batch
        if hs is None: hs = self._handlers[event] = self._handlers_for(event)
        res = False
        for cb,f in hs:
            try:
                if f(): res = True
            except BaseException as e:
                e.add_note(f"raised in {type(cb).__name__}.{event}")
                raise
        return res or self.stop


class Runner(_RunnerCallbacks, _RunnerShortcuts, _RunnerEvents):
    """The training loop. At each event it calls the callbacks, in `_order`; see the table above for
    what True does."""
    # where the loops start: past 0 only in a fit that resumes an interrupted one (09b)
    start_epoch = start_iter = 0
    def one_batch(self, xb, yb):
        device = model_device(self.model)   # the data goes where the model is, now
        self.xb,self.yb = to_device(xb, device),to_device(yb, device)   # the one place batches move
        if self('begin_batch'): return
        self.pred = self.model(self.xb)
        if self('after_pred'): return
        self.loss = self.loss_func(self.pred, self.yb)
        if self('after_loss') or not self.in_train: return
        self.loss.backward()
        if self('after_backward'): return
        self.opt.step()
        if self('after_step'): return
        self.opt.zero_grad()

    def all_batches(self, dl):
        self.iters,first = len(dl),(self.start_iter if self.in_train else 0)
        if self.in_train: self.start_iter = 0   # only the resumed epoch starts past batch 0
        for self.iter,(xb,yb) in enumerate(dl, first):
            self.one_batch(xb, yb)
            if self('after_batch'): break

    def do_epoch(self):
        self.in_train = True
        if not self('begin_epoch'): self.all_batches(self.data.train_dl)
        self.in_train = False
        with torch.no_grad():
            if not self('begin_validate'): self.all_batches(self.data.valid_dl)

    def do_fit(self):
        if self('begin_fit'): return
        for self.epoch in range(self.start_epoch, self.epochs):
            self.do_epoch()
            if self('after_epoch'): break

    def fit(self, epochs, learn):
        """Train `learn` for `epochs` epochs. `after_fit` runs however fitting ends: done, stopped,
        error or Ctrl-C."""
        self.epochs,self.learn,self.epoch,self.iter = epochs,learn,0,0
        self.loss,self.stop = tensor(0.),False
        for cb in self.cbs: cb.set_runner(self)
        self._handlers = {}
        learn.opt.zero_grad()   # no stale gradients left by an earlier, interrupted fit
        try: self.do_fit()
        finally:
            self('after_fit')
            self.start_epoch = self.start_iter = 0


def add_weighted(total, x, n):
    "`total + x*n`, detached from autograd; in place after the first batch. A tensor: no GPU sync."
    x = x.detach() if isinstance(x, torch.Tensor) else torch.tensor(x)
    return x*n if total is None else total.add_(x, alpha=n)

class AvgStats:
    """The loss and `metrics` averaged over one pass through a data loader, weighting each batch by
    its size."""
    def __init__(self, metrics, in_train):
        self.metrics,self.in_train = listify(metrics),in_train
        self.reset()
    def reset(self): self.tot_loss,self.tot_mets,self.count = None,[None]*len(self.metrics),0
    @property
    def names(self):
        return ['loss'] + [getattr(m, '__name__', type(m).__name__) for m in self.metrics]
    @property
    def all_stats(self):
        return [0. if t is None else t.item() for t in [self.tot_loss, *self.tot_mets]]
    @property
    def avg_stats(self): return [t/self.count for t in self.all_stats] if self.count else []
    def accumulate(self, run):
        bn = run.xb.shape[0]
        self.tot_loss = add_weighted(self.tot_loss, run.loss, bn)
        for i,m in enumerate(self.metrics):
            self.tot_mets[i] = add_weighted(self.tot_mets[i], m(run.pred, run.yb), bn)
        self.count += bn
    def __repr__(self):
        if not self.count: return f"{'train' if self.in_train else 'valid'}: -"
        stats = ', '.join(f"{n} {v:.4f}" for n,v in zip(self.names, self.avg_stats))
        return f"{'train' if self.in_train else 'valid'}: {stats}"


class AvgStatsCallback(Callback):
    "Averages the loss and `metrics` over each epoch, for training and validation, and prints them."
    def __init__(self, metrics):
        self.train_stats,self.valid_stats = AvgStats(metrics, True),AvgStats(metrics, False)
    def begin_epoch(self):
        self.train_stats.reset()
        self.valid_stats.reset()
    def after_loss(self):
        (self.train_stats if self.run.in_train else self.valid_stats).accumulate(self.run)
    def after_epoch(self):
        print(f"epoch {self.run.epoch} | {self.train_stats} | {self.valid_stats}")


# What `from exp.nb_04 import *` gives (generated by notebook2script.py;
# a name bound only in a branch not taken is left out).
from exp.nb_03 import __all__ as _all_nb_03
__all__ = _all_nb_03 + [
    'math', 'optim', 'partial', 'Iterable', 'Any', 'Callable', 'Collection', 'Dict', 'Iterator',
    'List', 'Optional', 'Sequence', 'Tuple', 'Union', 'normalized_mnist', 'DataBunch',
    'mnist_databunch', 'get_model', 'Learner', 'listify', 'camel2snake', 'Callback',
    'TrainEvalCallback', 'TerminateOnNaNCallback', 'handles', 'Runner', 'add_weighted',
    'AvgStats', 'AvgStatsCallback'
]
__all__ = [_name for _name in dict.fromkeys(__all__) if _name in globals()]
