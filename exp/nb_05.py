# Generated from nbs/05_anneal.ipynb by notebook2script.py:
# edit the notebook, not this file.


from exp.nb_04 import *
import bisect, functools, itertools, numbers


def create_learner(model_func, loss_func, data):
    "A `Learner` for `data`, with the model and optimizer that `model_func(data)` returns."
    return Learner(*model_func(data), loss_func, data)

def get_model_func(lr=0.1):
    """A `model_func` for `create_learner`: 04's `get_model` at learning rate `lr` (by default
    get_model's own)."""
    return functools.partial(get_model, lr=lr)


def check_optimizer(opt, who, needs=('param_groups',)):
    "Raise a TypeError when `opt` lacks any attribute in `needs` that callback `who` relies on."
    missing = [a for a in needs if not hasattr(opt, a)]
    if missing: raise TypeError(f"{who} needs an optimizer with "
                                f"{', '.join(f'`{a}`' for a in missing)} "
                                f"(like torch.optim's); got {type(opt).__name__}")

def plot_loss_vs_lr(lrs, losses, skip_last=0):
    """Loss against learning rate on a log axis, without the last `skip_last` points (where the
    loss blew up)."""
    n = len(losses) - skip_last
    plt.plot(lrs[:n], losses[:n]); plt.xscale('log')
    plt.xlabel('learning rate (log scale)'); plt.ylabel('loss')

class Recorder(Callback):
    "After every training batch, records each param group's learning rate (`lrs[i]`) and the loss."
    def begin_fit(self):
        check_optimizer(self.opt, 'Recorder')
        self.lrs = [[] for _ in self.opt.param_groups]
        self.losses = []
    def after_batch(self):
        if not self.in_train: return
        for pg,lrs in zip(self.opt.param_groups, self.lrs): lrs.append(pg['lr'])
        self.losses.append(self.loss.detach())
    def _loss_values(self): return torch.stack(self.losses).cpu() if self.losses else torch.zeros(0)
    def plot_lr(self, pgid=-1):
        "The learning rate of param group `pgid` at each training batch."
        plt.plot(self.lrs[pgid]); plt.xlabel('training batch'); plt.ylabel('learning rate')
    def plot_loss(self, skip_last=0):
        "The loss of each training batch, without the last `skip_last`."
        losses = self._loss_values()
        plt.plot(losses[:len(losses)-skip_last]); plt.xlabel('training batch'); plt.ylabel('loss')
    def plot(self, skip_last=0, pgid=-1):
        """Loss against the learning rate of param group `pgid`, on a log axis, without the last
        `skip_last` batches."""
        plot_loss_vs_lr(self.lrs[pgid], self._loss_values(), skip_last)


def annealer(f):
    "Decorator: `f(start, end, pos)` becomes a maker, `f(start, end)` -> a schedule `pos -> value`."
    @functools.wraps(f)
    def _inner(start, end):
        sched = functools.partial(f, start, end)
        # try both ends: a bad start or end fails here, not in the middle of training
        sched(0); sched(1)
        return sched
    return _inner


@annealer
def sched_lin(start, end, pos): return start + pos*(end - start)
@annealer
def sched_no(start, end, pos): return start
@annealer
def sched_exp(start, end, pos):
    if not start*end > 0:
        raise ValueError(f"sched_exp needs start and end of the same sign, non-zero: "
                         f"got {start}, {end}")
    return start * (end/start)**pos


@annealer
def sched_cos(start, end, pos): return end + (start - end) * (1 + math.cos(math.pi*pos)) / 2


def _check_phases(pcts, scheds):
    if len(pcts) != len(scheds):
        raise ValueError(f"combine_scheds: {len(pcts)} pcts for {len(scheds)} schedules")
    if any(p < 0 for p in pcts): raise ValueError(f"combine_scheds: pcts must be >= 0, got {pcts}")
    if not math.isclose(sum(pcts), 1):
        raise ValueError(f"combine_scheds: pcts must add up to 1, got {pcts} (sum {sum(pcts)})")

def combine_scheds(pcts, scheds):
    "One schedule made of `scheds` in turn, `scheds[i]` taking the fraction `pcts[i]` of training."
    pcts,scheds = [float(p) for p in listify(pcts)],listify(scheds)
    _check_phases(pcts, scheds)
    bounds = [0.] + list(itertools.accumulate(pcts))
    bounds[-1] = 1.                                      # no rounding drift at the end
    def _inner(pos):
        if not 0 <= pos <= 1: raise ValueError(f"combine_scheds: pos must be in [0, 1], got {pos}")
        i = min(bisect.bisect_right(bounds, pos), len(scheds)) - 1
        # pos=1 with empty last phases: use the last real one
        while bounds[i+1] == bounds[i]: i -= 1
        return scheds[i]((pos - bounds[i]) / (bounds[i+1] - bounds[i]))
    return _inner


def cos_1cycle_anneal(start, high, end):
    "The two halves of a cosine one-cycle: from `start` up to `high`, then from `high` to `end`."
    return [sched_cos(start, high), sched_cos(high, end)]

def create_phases(phases):
    "Fractions of training for a list of phases, plus a last phase for the rest: 0.3 -> [0.3, 0.7]."
    phases = listify(phases)
    return phases + [1 - sum(phases)]

def check_positive(who, **args):
    "Raise a ValueError naming the first of `args` that is not a finite number > 0."
    for k,v in args.items():
        is_number = isinstance(v, numbers.Real) and not isinstance(v, bool)
        if not (is_number and math.isfinite(v) and v > 0):
            raise ValueError(f"{who}: {k} must be a number > 0, got {v!r}")

def one_cycle(lr_max, pct_start=0.3, div_start=25., div_end=1e4):
    """One-cycle (Smith & Topin 2017): cosine from lr_max/div_start up to lr_max over pct_start of
    training, then down to lr_max/div_end."""
    check_positive('one_cycle', lr_max=lr_max, div_start=div_start, div_end=div_end)
    if not 0 <= pct_start <= 1:
        raise ValueError(f"one_cycle: pct_start must be in [0, 1], got {pct_start!r}")
    phases = cos_1cycle_anneal(lr_max/div_start, lr_max, lr_max/div_end)
    return combine_scheds(create_phases(pct_start), phases)


def pg_dicts(pgs):
    """One torch.optim param group per item of `pgs` (each an iterable of parameters):
    `[{'params': ...}, ...]`."""
    return [{'params': p} for p in pgs]


class ParamScheduler(Callback):
    "Before each training batch, sets hyper-parameter `pname` of each param group by its schedule."
    _order = 1
    def __init__(self, pname, sched_funcs): self.pname,self.sched_funcs = pname,sched_funcs
    def begin_fit(self):
        check_optimizer(self.opt, 'ParamScheduler')
        pgs = self.opt.param_groups
        fs = self.sched_funcs
        self.funcs = list(fs) if isinstance(fs, (list, tuple)) else [fs]*len(pgs)
        if len(self.funcs) != len(pgs):
            raise ValueError(f"ParamScheduler({self.pname!r}): {len(self.funcs)} schedules "
                             f"for {len(pgs)} param groups")
        if not all(self.pname in pg for pg in pgs):
            raise KeyError(f"ParamScheduler: the optimizer has no hyper-parameter {self.pname!r}; "
                           f"its param groups have {sorted(k for k in pgs[0] if k != 'params')}")
    def begin_batch(self):
        if not self.in_train: return
        pos = self.n_epochs / self.epochs
        for pg,f in zip(self.opt.param_groups, self.funcs): pg[self.pname] = f(pos)


# What `from exp.nb_05 import *` gives (generated by notebook2script.py;
# a name bound only in a branch not taken is left out).
from exp.nb_04 import __all__ as _all_nb_04
__all__ = _all_nb_04 + [
    'create_learner', 'get_model_func', 'check_optimizer', 'plot_loss_vs_lr', 'Recorder',
    'annealer', 'sched_lin', 'sched_no', 'sched_exp', 'sched_cos', 'combine_scheds',
    'cos_1cycle_anneal', 'create_phases', 'check_positive', 'one_cycle', 'pg_dicts',
    'ParamScheduler'
]
__all__ = [_name for _name in dict.fromkeys(__all__) if _name in globals()]
