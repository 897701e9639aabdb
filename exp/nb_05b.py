# Generated from nbs/05b_early_stopping.ipynb by notebook2script.py:
# edit the notebook, not this file.


from exp.nb_05 import *
import copy, numbers


class CancelTrainException(Exception):
    "Raised by a callback: end `fit` now (`after_cancel_train` and `after_fit` still run)."
class CancelEpochException(Exception):
    "Raised by a callback: skip the rest of this epoch, training and validation."
class CancelBatchException(Exception):
    "Raised by a callback: skip the rest of this batch."


class Runner(Runner):
    """04's Runner, plus: callbacks may raise CancelBatchException, CancelEpochException or
    CancelTrainException."""
    # 04's events, plus ours
    events = Runner.events + ('after_cancel_batch', 'after_cancel_epoch', 'after_cancel_train')

    def one_batch(self, xb, yb):
        try: super().one_batch(xb, yb)
        except CancelBatchException: self('after_cancel_batch')
        except (CancelEpochException, CancelTrainException):
            # the batch ends even when cut short: counters and recorders see it
            self('after_batch')
            raise

    def do_epoch(self):
        try: super().do_epoch()
        except CancelEpochException:
            self.in_train = False   # as after a complete epoch
            self('after_cancel_epoch')

    def do_fit(self):
        try: super().do_fit()
        except CancelTrainException: self('after_cancel_train')


def _snapshot(model, opt):
    "Deep copies of the model's and the optimizer's state dicts, safe from later training."
    return copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())

def _restore(model, opt, snap):
    "Load a `_snapshot` back into `model` and `opt`."
    model.load_state_dict(snap[0]); opt.load_state_dict(snap[1])

def check_count(who, **args):
    "Raise a ValueError naming the first of `args` that is not a whole number >= 1."
    for k,v in args.items():
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{who}: {k} must be a whole number >= 1, got {v!r}")


class LR_Find(Callback):
    """LR range test (Smith 2015): raise the lr exponentially from min_lr to max_lr, batch by
    batch, until the loss explodes."""
    _order = -1   # before TerminateOnNaNCallback: an infinite loss ends the search, not the program
    def __init__(self, max_iter=100, min_lr=1e-6, max_lr=10, explode=10.):
        check_count('LR_Find', max_iter=max_iter)
        check_positive('LR_Find', min_lr=min_lr, max_lr=max_lr, explode=explode)
        if not min_lr < max_lr:
            raise ValueError(f"LR_Find: min_lr must be below max_lr, got {min_lr!r} and {max_lr!r}")
        if not explode > 1:
            raise ValueError(f"LR_Find: explode must be > 1 (a multiple of the best loss), "
                             f"got {explode!r}")
        self.max_iter,self.min_lr,self.max_lr,self.explode = max_iter,min_lr,max_lr,explode
        self.sched,self.snap = sched_exp(min_lr, max_lr),None
    def begin_fit(self):
        needs = ('param_groups', 'state_dict', 'load_state_dict')
        check_optimizer(self.opt, 'LR_Find', needs=needs)
        self.lrs,self.losses,self.best_loss = [],[],math.inf
        self.snap = _snapshot(self.model, self.opt)
    def begin_batch(self):
        if not self.in_train: return
        lr = self.sched(self.n_iter / self.max_iter)
        for pg in self.opt.param_groups: pg['lr'] = lr
    def after_loss(self):
        if not self.in_train: return
        loss = self.loss.item()
        self.lrs.append(self.opt.param_groups[-1]['lr']); self.losses.append(loss)
        if not math.isfinite(loss) or loss > self.explode*self.best_loss:
            raise CancelTrainException()
        self.best_loss = min(self.best_loss, loss)
    def after_step(self):
        # n_iter counts this batch only at after_batch
        if self.n_iter + 1 >= self.max_iter: raise CancelTrainException()
    def begin_validate(self): return True
    def after_fit(self):
        # no snapshot: begin_fit never got to take one (an earlier begin_fit raised)
        if self.snap is None: return
        _restore(self.model, self.opt, self.snap)
        self.opt.zero_grad()
        self.snap = None
    def plot(self, skip_last=0):
        "Loss against learning rate, on a log axis; `skip_last` drops the last (exploded) points."
        plot_loss_vs_lr(self.lrs, self.losses, skip_last)


class EarlyStoppingCallback(Callback):
    "Ends fit once the validation loss hasn't improved by over `min_delta` for `patience` epochs."
    _order = 100
    def __init__(self, patience=3, min_delta=0.):
        check_count('EarlyStoppingCallback', patience=patience)
        is_number = isinstance(min_delta, numbers.Real) and not isinstance(min_delta, bool)
        if not (is_number and min_delta >= 0):
            raise ValueError(f"EarlyStoppingCallback: min_delta must be a number >= 0, "
                             f"got {min_delta!r}")
        self.patience,self.min_delta = patience,min_delta
    def begin_fit(self):
        self.valid_losses,self.best,self.best_epoch = [],math.inf,None
        self.wait,self.stopped_epoch = 0,None
    def begin_epoch(self): self.tot,self.count = None,0
    def after_loss(self):
        if self.in_train: return
        self.tot = add_weighted(self.tot, self.loss, len(self.yb)); self.count += len(self.yb)
    def after_epoch(self):
        if self.count < len(self.data.valid_ds): return   # validation skipped or cut short: no loss
        loss = self.tot.item() / self.count
        self.valid_losses.append(loss)
        if loss < self.best - self.min_delta:
            self.best,self.best_epoch,self.wait = loss,self.epoch,0
        else: self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = self.epoch
            raise CancelTrainException()


# What `from exp.nb_05b import *` gives (generated by notebook2script.py;
# a name bound only in a branch not taken is left out).
from exp.nb_05 import __all__ as _all_nb_05
__all__ = _all_nb_05 + [
    'CancelTrainException', 'CancelEpochException', 'CancelBatchException', 'Runner',
    'check_count', 'LR_Find', 'EarlyStoppingCallback'
]
__all__ = [_name for _name in dict.fromkeys(__all__) if _name in globals()]
