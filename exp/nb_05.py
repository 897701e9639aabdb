# Generated from nbs/05_anneal.ipynb by notebook2script.py: edit the notebook, not this file.


from exp.nb_04 import *
import functools, itertools
from bisect import bisect_right


def _check_optimizer(opt, who, needs=('param_groups',)):
    "Raise a TypeError when `opt` lacks any attribute in `needs` that callback `who` relies on."
    missing = [a for a in needs if not hasattr(opt, a)]
    if missing: raise TypeError(f"{who} needs an optimizer with {', '.join(f'`{a}`' for a in missing)} "
                                f"(like torch.optim's); got {type(opt).__name__}")

class Recorder(Callback):
    "After every training batch, records each param group's learning rate (`lrs[i]`) and the loss."
    def begin_fit(self):
        _check_optimizer(self.opt, 'Recorder')
        self.lrs = [[] for _ in self.opt.param_groups]
        self.losses = []
    def after_batch(self):
        if not self.in_train: return
        for pg,lrs in zip(self.opt.param_groups, self.lrs): lrs.append(pg['lr'])
        self.losses.append(self.loss.detach())
    def plot_lr(self, pgid=-1):
        plt.plot(self.lrs[pgid]); plt.xlabel('training batch'); plt.ylabel('learning rate')
    def plot_loss(self, skip_last=0):
        losses = torch.stack(self.losses).cpu()
        plt.plot(losses[:len(losses)-skip_last]); plt.xlabel('training batch'); plt.ylabel('loss')


def annealer(f):
    "Decorator: `f(start, end, pos)` becomes a maker, `f(start, end)` -> a schedule `pos -> value`."
    @functools.wraps(f)
    def _inner(start, end): return partial(f, start, end)
    return _inner


@annealer
def sched_lin(start, end, pos): return start + pos*(end - start)
@annealer
def sched_no(start, end, pos): return start
@annealer
def sched_exp(start, end, pos):
    if not start*end > 0: raise ValueError(f"sched_exp needs start and end of the same sign, non-zero: got {start}, {end}")
    return start * (end/start)**pos


@annealer
def sched_cos(start, end, pos): return end + (start - end) * (1 + math.cos(math.pi*pos)) / 2


def _check_phases(pcts, scheds):
    if len(pcts) != len(scheds): raise ValueError(f"combine_scheds: {len(pcts)} pcts for {len(scheds)} schedules")
    if any(p < 0 for p in pcts): raise ValueError(f"combine_scheds: pcts must be >= 0, got {pcts}")
    if not math.isclose(sum(pcts), 1): raise ValueError(f"combine_scheds: pcts must add up to 1, got {pcts} (sum {sum(pcts)})")

def combine_scheds(pcts, scheds):
    "One schedule made of `scheds` in turn, `scheds[i]` taking up the fraction `pcts[i]` of training."
    pcts,scheds = [float(p) for p in listify(pcts)],listify(scheds)
    _check_phases(pcts, scheds)
    bounds = [0.] + list(itertools.accumulate(pcts))
    bounds[-1] = 1.                                      # no rounding drift at the end
    def _inner(pos):
        if not 0 <= pos <= 1: raise ValueError(f"combine_scheds: pos must be in [0, 1], got {pos}")
        i = min(bisect_right(bounds, pos), len(scheds)) - 1
        while bounds[i+1] == bounds[i]: i -= 1           # pos=1 with empty last phases: use the last real one
        return scheds[i]((pos - bounds[i]) / (bounds[i+1] - bounds[i]))
    return _inner


def cos_1cycle_anneal(start, high, end):
    "The two halves of a cosine one-cycle: from `start` up to `high`, then from `high` to `end`."
    return [sched_cos(start, high), sched_cos(high, end)]

def create_phases(phases):
    "Fractions of training for a list of phases, plus one last phase for the rest: 0.3 -> [0.3, 0.7]."
    phases = listify(phases)
    return phases + [1 - sum(phases)]

def one_cycle(lr_max, pct_start=0.3, div_start=25., div_end=1e4):
    "One-cycle schedule (Smith & Topin 2017): cosine up from lr_max/div_start to lr_max, then down to lr_max/div_end."
    return combine_scheds(create_phases(pct_start), cos_1cycle_anneal(lr_max/div_start, lr_max, lr_max/div_end))


class ParamScheduler(Callback):
    "Before each training batch, sets hyper-parameter `pname` of each param group from its schedule."
    _order = 1
    def __init__(self, pname, sched_funcs): self.pname,self.sched_funcs = pname,sched_funcs
    def begin_fit(self):
        _check_optimizer(self.opt, 'ParamScheduler')
        pgs = self.opt.param_groups
        fs = self.sched_funcs
        self.funcs = list(fs) if isinstance(fs, (list, tuple)) else [fs]*len(pgs)
        if len(self.funcs) != len(pgs):
            raise ValueError(f"ParamScheduler({self.pname!r}): {len(self.funcs)} schedules for {len(pgs)} param groups")
        if not all(self.pname in pg for pg in pgs):
            raise KeyError(f"ParamScheduler: the optimizer has no hyper-parameter {self.pname!r}; "
                           f"its param groups have {sorted(k for k in pgs[0] if k != 'params')}")
    def begin_batch(self):
        if not self.in_train: return
        pos = self.n_epochs / self.epochs
        for pg,f in zip(self.opt.param_groups, self.funcs): pg[self.pname] = f(pos)
