# Generated from nbs/09b_learner.ipynb by notebook2script.py:
# edit the notebook, not this file.


from exp.nb_09 import *
import time


def param_getter(m):
    "The default `splitter`: all of the model's parameters, in one param group."
    return m.parameters()

class Learner(Runner):
    """The model, data, loss and optimizer function, with callbacks, in one object that runs
    training (05b's Runner)."""
    # the Runner's properties read these from a learner: here they are our own
    model = opt = loss_func = data = None
    def __init__(self, model, data, loss_func, opt_func=sgd_opt, lr=1e-2, splitter=param_getter,
                 cbs=None, cb_funcs=None):
        self.model,self.data,self.loss_func = model,data,loss_func
        self.opt_func,self.lr,self.splitter = opt_func,lr,splitter
        self.opt,self.logger = None,print
        super().__init__(cbs=cbs, cb_funcs=cb_funcs)

    def fit(self, epochs, cbs=None, reset_opt=False, resume=None):
        """Train for `epochs` epochs. `cbs`: callbacks for this fit only.
        The optimizer is made on first use, or anew with `reset_opt`. `resume`: a file written by
        `CheckpointCallback` (below) during a fit of `epochs` epochs, to go on from exactly."""
        cbs = listify(cbs) + ([] if resume is None else [ResumeCallback(resume)])
        self.add_cbs(cbs)
        try:
            if reset_opt or self.opt is None:
                self.opt = self.opt_func(self.splitter(self.model), lr=self.lr)
            super().fit(epochs, self)
        finally: self.remove_cbs(cbs)


def format_time(t):
    "Seconds as m:ss (or h:mm:ss)."
    t = int(t); h,m,s = t//3600, (t//60)%60, t%60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"

class AvgStatsCallback(AvgStatsCallback):
    """04's averages of loss and metrics, written through `logger` as a table:
    a header, then one row per epoch."""
    def begin_fit(self):
        names = (['epoch'] + [f"train_{n}" for n in self.train_stats.names]
                 + [f"valid_{n}" for n in self.valid_stats.names] + ['time'])
        self._widths = [max(len(n), 8) for n in names]
        self.logger(self._row(names))
    def begin_epoch(self):
        super().begin_epoch()
        self._start = time.perf_counter()
    def after_epoch(self):
        # None: that pass was skipped
        stats = [s.avg_stats or [None]*len(s.names) for s in (self.train_stats, self.valid_stats)]
        cells = [self.epoch] + [f"{v:.6f}" if v is not None else '-' for v in stats[0] + stats[1]]
        self.logger(self._row(cells + [format_time(time.perf_counter() - self._start)]))
    def _row(self, cells): return '  '.join(f"{c!s:>{w}}" for c,w in zip(cells, self._widths))


def get_learner(nfs, data, lr, layer, loss_func=F.cross_entropy, cb_funcs=None, opt_func=sgd_opt,
                cbs=None, uniform=False, **kwargs):
    """A Learner for a Kaiming-initialised CNN `get_cnn_model(data, nfs, layer, **kwargs)`
    on `def_device`."""
    model = get_cnn_model(data, nfs, layer, **kwargs)
    init_cnn(model, uniform=uniform)
    return Learner(model.to(def_device), data, loss_func, opt_func=opt_func, lr=lr,
                   cbs=cbs, cb_funcs=cb_funcs)


import random, sys

def get_rng_states():
    """Every random state a run draws from, as tensors and numbers: torch's (CPU), each CUDA
    device's where CUDA is in use, Python's `random`, and NumPy's global one if NumPy is loaded."""
    version,mt,gauss = random.getstate()
    states = {'torch': torch.get_rng_state(),
              'python': {'version': version, 'state': torch.tensor(mt), 'gauss': gauss}}
    # only where CUDA is in use already: reading its states would start it, and a process that
    # started CUDA cannot fork loader workers that use it
    if torch.cuda.is_initialized(): states['cuda'] = torch.cuda.get_rng_state_all()
    np = sys.modules.get('numpy')
    if np is not None:
        _,keys,pos,has_gauss,cached = np.random.get_state()
        states['numpy'] = {'keys': torch.from_numpy(keys.astype(np.int64)), 'pos': int(pos),
                           'has_gauss': int(has_gauss), 'gauss': float(cached)}
    return states

def set_rng_states(states):
    "Put back the random states `get_rng_states` returned (the GPUs' where there are GPUs)."
    torch.set_rng_state(states['torch'])
    py = states['python']
    random.setstate((py['version'], tuple(py['state'].tolist()), py['gauss']))
    if 'cuda' in states and torch.cuda.is_available():   # set when CUDA starts, not before
        for i,s in enumerate(states['cuda'][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s, i)
    if 'numpy' in states:
        import numpy as np
        n = states['numpy']
        keys = n['keys'].numpy().astype(np.uint32)
        np.random.set_state(('MT19937', keys, n['pos'], n['has_gauss'], n['gauss']))


class BatchOrder:
    """Stands in for a DataLoader's `batch_sampler`: passes its batches of indices through and
    keeps them (`batches`, the current pass's), or replays a saved pass from batch `start` on."""
    def __init__(self, inner): self.inner,self.batches,self._replay = inner,[],None
    def __len__(self): return len(self.inner)
    def replay(self, batches, start):
        "Make the next pass yield `batches[start:]` instead of drawing a new order."
        if len(batches) != len(self):
            raise ValueError(f"resume: the saved epoch has {len(batches)} batches, the training "
                             f"loader makes {len(self)}: resume with the same data and batch size")
        self._replay = batches,start
    def __iter__(self):
        if self._replay is None: self.batches,start = [torch.as_tensor(b) for b in self.inner],0
        else: (self.batches,start),self._replay = self._replay,None
        yield from self.batches[start:]

def track_batch_order(dl, who):
    "The `BatchOrder` standing in for `dl.batch_sampler`, put there if it isn't yet."
    inner = getattr(dl, 'batch_sampler', None)
    if isinstance(inner, BatchOrder): return inner
    try:
        if inner is None: raise AttributeError('batch_sampler')
        dl.batch_sampler = BatchOrder(inner)
    except (AttributeError, ValueError):   # PyTorch's DataLoader refuses the change
        raise TypeError(f"{who}: the training loader must be 03's or 08's DataLoader (the order "
                        f"of its batches is kept through its batch_sampler); got "
                        f"{type(dl).__module__}.{type(dl).__name__}") from None
    return dl.batch_sampler

def untrack_batch_order(dl):
    "Give `dl` back its own batch sampler."
    order = getattr(dl, 'batch_sampler', None)
    if isinstance(order, BatchOrder): dl.batch_sampler = order.inner


import nbio, pickle
from pathlib import Path

def remove_stale_temps(path):
    """Delete the temporary files of writes to `path` that were killed before their end (only
    `path`'s own: another file's, such as 12's `ck.pt.rank1` beside `ck.pt`, may be in use)."""
    for tmp in nbio.temp_files(path): tmp.unlink(missing_ok=True)

def save_checkpoint(state, path):
    """`torch.save(state)` to `path`, atomically: the file is the old one or the whole new one.
    One writer per path: a second one writing at the same time could lose its temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    with nbio.atomic_open(path) as f: torch.save(state, f)
    return path

CHECKPOINT_KEYS = ('model', 'opt', 'epochs', 'epoch', 'iter', 'n_iter', 'n_epochs', 'batches',
                   'worker_seed', 'rng', 'cbs')

def os_error_like(e, msg):
    """An error of the OSError `e`'s type and errno that says `msg` (raise it `from e`, which
    names the file the system refused)."""
    return type(e)(msg) if e.errno is None else type(e)(e.errno, msg)

def unreadable_reason(path, e, kind):
    "What is wrong, in words, with the file at `path`, whose torch.load raised `e`."
    if isinstance(e, pickle.UnpicklingError) and 'weights only' in str(e).lower():
        return ('holds Python objects, not only tensors and numbers (a whole model saved with '
                'torch.save(model)?)')
    with open(path, 'rb') as f: zipped = f.read(4) == b'PK\x03\x04'   # how torch.save starts
    if zipped: return "is truncated or damaged: torch.save's zip archive in it cannot be read"
    return f'is not a {kind}: torch.load cannot read it'

def load_torch_file(path, who, kind):
    """`torch.load(path)` onto the CPU with `weights_only=True` (tensors, numbers and containers:
    nothing in the file can run code), or an error starting with `who` that names `path` and what
    is wrong: missing, a folder, empty, refused by the system (its OSError, errno kept), or not
    readable as the `kind` of file wanted."""
    path = Path(path)
    if path.is_dir(): raise FileNotFoundError(f'{who}: {path} is a folder, not a {kind}')
    if not path.is_file(): raise FileNotFoundError(f'{who}: no {kind} {path}')
    size = path.stat().st_size
    if size == 0: raise ValueError(f'{who}: {path} is empty (0 bytes), not a {kind}')
    try: return torch.load(path, map_location='cpu', weights_only=True)
    except OSError as e:   # no permission, a disk error: the file may be fine
        raise os_error_like(e, f'{who}: cannot read {path} ({e.strerror or e})') from e
    except Exception as e:
        # torch's message for a file of Python objects advises weights_only=False, which would
        # let the file run code: that error is not chained, so its advice is never shown
        cause = None if 'weights_only' in str(e) else e
        raise ValueError(f'{who}: {path} ({size:,} bytes) {unreadable_reason(path, e, kind)}'
                         ) from cause

def load_checkpoint(path, who='resume'):
    "What `CheckpointCallback` saved at `path` (read by `load_torch_file`)."
    state = load_torch_file(path, who, 'checkpoint file')
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(f"{who}: {path} is not a CheckpointCallback checkpoint: "
                         f"no {', '.join(missing)}")
    return state


def unwrap_model(model):
    "The model inside a data-parallel wrapper, so that its weights are saved without `module.`."
    wrappers = (nn.DataParallel, nn.parallel.DistributedDataParallel)
    return model.module if isinstance(model, wrappers) else model

def checkpoint_state(run, epoch, iter, batches, worker_seed=None):
    """All an exact resume needs, as tensors and numbers: the weights, the optimizer's state and
    hyper-parameters, where to go on (batch `iter` of epoch `epoch`), the schedule's position
    (`n_epochs`, `n_iter`), the epoch's `batches` of indices (empty at an epoch's end), the base
    seed of the loader workers' pass (`worker_seed`; None at an epoch's end or without workers)
    and every random state."""
    return {'model': unwrap_model(run.model).state_dict(), 'opt': run.opt.state_dict(),
            'epochs': run.epochs, 'epoch': epoch, 'iter': iter, 'n_iter': run.n_iter,
            'n_epochs': run.n_epochs, 'batches': batches, 'worker_seed': worker_seed,
            'rng': get_rng_states(), 'cbs': callback_states(run)}

def callback_states(run):
    """name -> `state_dict()` of each of `run`'s callbacks that keeps training state of its own
    and offers it as torch's objects do (`state_dict()`/`load_state_dict(sd)`), so that a resume
    puts it back: 10c's float32 master weights and loss scale, for instance."""
    return {cb.name: cb.state_dict() for cb in run.cbs if hasattr(cb, 'load_state_dict')}

def check_resumable(run, who):
    """Refuse a fit with a callback that declares (`resumable = False`) training state it cannot
    save: resumed, that fit would go on from elsewhere."""
    bad = [type(cb).__name__ for cb in run.cbs if getattr(cb, 'resumable', True) is False]
    if bad:
        raise ValueError(f"{who}: {', '.join(bad)} keeps training state that a checkpoint cannot "
                         "hold (resumable = False), so a resumed fit would not go on as this "
                         "one: fit without it, or without checkpoints")

def load_callback_states(run, states, path):
    """Give each stateful callback of `run` its saved state from `states`; refuse a fit whose
    stateful callbacks are not those of the saved one."""
    cbs = {cb.name: cb for cb in run.cbs if hasattr(cb, 'load_state_dict')}
    if set(cbs) != set(states):
        raise ValueError(f"resume: {path} holds the state of the callbacks {sorted(states)}, and "
                         f"this fit's callbacks with a state are {sorted(cbs)}: resume with the "
                         "same callbacks")
    for name,cb in cbs.items(): cb.load_state_dict(states[name])

def resume_worker_seed(dl, seed, first, path):
    """Give the loader `dl` the saved base `seed` of the pass resumed at batch `first`, or refuse
    a loader with workers where the saved one had none (`seed` None), and the other way round."""
    workers = getattr(dl, 'num_workers', 0)
    if (seed is None) != (workers == 0):
        saved,want = ('without','no workers') if seed is None else ('with','workers')
        raise ValueError(f"resume: {path} was saved mid-epoch by a loader {saved} worker "
                         f"processes, and this one has num_workers={workers}: the items' random "
                         f"draws would differ; resume with {want}")
    if seed is not None: dl.resume_pass(seed, first)

class CheckpointCallback(Callback):
    """Saves to `path`, after every epoch and (given `every`) every `every` training batches, all
    that `fit(epochs, resume=path)` needs to go on as if the run had never stopped."""
    _order = 60   # after the batch is counted (TrainEvalCallback) and its loss checked
    def __init__(self, path, every=None):
        if every is not None: check_count('CheckpointCallback', every=every)
        self.path,self.every = Path(path),every
    def begin_fit(self):
        check_resumable(self.run, 'CheckpointCallback')
        self._dl = self.data.train_dl   # 12's DistributedCallback may swap it back at the end
        self.batch_order = track_batch_order(self._dl, 'CheckpointCallback')
    def after_batch(self):
        if not self.in_train or self.every is None: return
        done = self.iter + 1
        if done % self.every == 0 and done < self.iters: self.save(self.epoch, done)
    def after_epoch(self): self.save(self.epoch + 1, 0)
    def after_fit(self):
        if '_dl' in vars(self): untrack_batch_order(vars(self).pop('_dl'))
    def save(self, epoch, iter):
        "Save the checkpoint of a run whose next batch is batch `iter` of epoch `epoch`."
        batches = self.batch_order.batches if iter else []
        seed = getattr(self._dl, 'pass_seed', None) if iter else None
        save_checkpoint(checkpoint_state(self.run, epoch, iter, batches, seed), self.path)

class ResumeCallback(Callback):
    """Added by `fit(epochs, resume=path)`: puts back what `CheckpointCallback` saved at `path`,
    each piece when the fit reaches the point where it was saved."""
    _order = -30   # the weights go in before anything wraps the model (12's DistributedCallback)
    def __init__(self, path): self.path,self.state = Path(path),None
    def begin_fit(self):
        s = self.state = load_checkpoint(self.path)
        if s['epochs'] != self.epochs:
            raise ValueError(f"resume: {self.path} was saved by a fit of {s['epochs']} epochs, "
                             f"not {self.epochs}: the schedule would change")
        try: unwrap_model(self.model).load_state_dict(s['model'])
        except RuntimeError as e:
            raise RuntimeError(f"resume: the weights in {self.path} don't fit this "
                               f"{type(self.model).__name__}: {e}") from None
        self.opt.load_state_dict(s['opt'])
        self.run.start_epoch,self.run.start_iter = s['epoch'],s['iter']
    def begin_epoch(self):
        s = self.state
        if s is None: return
        # here, not at begin_fit: every callback has set itself up (10c's masters are made then)
        load_callback_states(self.run, s['cbs'], self.path)
        self.run.n_iter = s['n_iter']
        if s['iter']:
            self._dl = self.data.train_dl
            track_batch_order(self._dl, 'resume').replay(s['batches'], s['iter'])
            resume_worker_seed(self._dl, s['worker_seed'], s['iter'], self.path)
        else: self.state = None   # at an epoch's start: TrainEvalCallback sets n_epochs to it
        set_rng_states(s['rng'])   # last: the epoch's first batch draws from here on
    def begin_batch(self):
        if self.state is None or not self.in_train: return
        # mid-epoch: TrainEvalCallback's begin_epoch set n_epochs to the epoch; it was past that
        self.run.n_epochs,self.state = self.state['n_epochs'],None
    def after_fit(self):
        if '_dl' in vars(self): untrack_batch_order(vars(self).pop('_dl'))


# What `from exp.nb_09b import *` gives (generated by notebook2script.py;
# a name bound only in a branch not taken is left out).
from exp.nb_09 import __all__ as _all_nb_09
__all__ = _all_nb_09 + [
    'param_getter', 'Learner', 'format_time', 'AvgStatsCallback', 'get_learner',
    'get_rng_states', 'set_rng_states', 'BatchOrder', 'track_batch_order',
    'untrack_batch_order', 'Path', 'remove_stale_temps', 'save_checkpoint', 'CHECKPOINT_KEYS',
    'os_error_like', 'unreadable_reason', 'load_torch_file', 'load_checkpoint', 'unwrap_model',
    'checkpoint_state', 'callback_states', 'check_resumable', 'load_callback_states',
    'resume_worker_seed', 'CheckpointCallback', 'ResumeCallback'
]
__all__ = [_name for _name in dict.fromkeys(__all__) if _name in globals()]
