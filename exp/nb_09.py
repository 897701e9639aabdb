# Generated from nbs/09_optimizers.ipynb by notebook2script.py:
# edit the notebook, not this file.


from exp.nb_08 import *
import difflib, inspect, numbers
from functools import partial


def get_defaults(d):
    "The default hyper-parameters a stepper or stat declares in `_defaults` (none: {})."
    return getattr(d, '_defaults', {})

def maybe_update(objs, dest, f):
    "Add to dict `dest` each key of `f(o)`, for `o` in `objs`, that `dest` doesn't have yet."
    for o in objs:
        for k,v in f(o).items(): dest.setdefault(k, v)


def _as_groups(params):
    """Param groups as dicts with a list under 'params': from tensors (one group), lists of tensors,
    or dicts."""
    groups = list(params)
    if not groups: raise ValueError("Optimizer: got no parameters")
    if isinstance(groups[0], torch.Tensor): groups = [groups]
    groups = [dict(g) if isinstance(g, dict) else {'params': g} for g in groups]
    for i,g in enumerate(groups):
        g['params'] = listify(g.get('params'))
        if not g['params'] or not all(isinstance(p, torch.Tensor) for p in g['params']):
            raise TypeError(f"Optimizer: param group {i} must hold a non-empty list of tensors")
    _check_once(groups)
    return groups

def _check_once(groups):
    "Each parameter in one group, once: one listed twice would be stepped twice."
    where = {}
    for i,g in enumerate(groups):
        for p in g['params']:
            if id(p) in where:
                j = where[id(p)]
                place = f"twice in param group {i}" if j == i else f"in param groups {j} and {i}"
                raise ValueError(f"Optimizer: a parameter of shape {tuple(p.shape)} is {place}; "
                                 "it would be stepped twice")
            where[id(p)] = i

def _hypers(pg):
    "A param group's hyper-parameters: everything but its parameters."
    return {k:v for k,v in pg.items() if k != 'params'}

def _named_args(f, skip):
    """(required, all) names of `f`'s arguments after the first `skip` (a stepper's `p`; a stat's
    `p, state`)."""
    ps = list(inspect.signature(f).parameters.values())[skip:]
    named = [q for q in ps if q.kind in (q.POSITIONAL_OR_KEYWORD, q.KEYWORD_ONLY)]
    return {q.name for q in named if q.default is q.empty}, {q.name for q in named}


def check_range(who, lo=0, below=None, **args):
    """Raise a ValueError naming the first of `args` that is not a finite number >= `lo` (and
    < `below`, if given)."""
    for k,v in args.items():
        is_number = isinstance(v, numbers.Real) and not isinstance(v, bool)
        if is_number and math.isfinite(v) and lo <= v and (below is None or v < below): continue
        limits = f">= {lo}" if below is None else f"in [{lo}, {below})"
        raise ValueError(f"{who}: {k} must be a finite number {limits}, got {v!r}")

# the hyper-parameters whose meaning is known, each with the check of its value
hyper_checks = {'lr': check_range, 'wd': check_range, 'eps': check_positive,
                'mom': partial(check_range, below=1), 'sqr_mom': partial(check_range, below=1)}

def check_hyper_values(who, param_groups):
    "Check each hyper-parameter that `hyper_checks` knows, in each param group."
    for i,pg in enumerate(param_groups):
        group = f"{who}: param group {i}"
        for k,check in hyper_checks.items():
            if k in pg: check(group, **{k: pg[k]})


class Optimizer:
    """Updates each parameter that has a gradient with `steppers`, given its param group's
    hyper-parameters."""
    def __init__(self, params, steppers, **defaults):
        # steppers that change the gradient (l2_reg) go first: the others must see the new gradient
        self.steppers = sorted(listify(steppers),
                               key=lambda f: not getattr(f, '_before_stats', False))
        maybe_update(self.steppers, defaults, get_defaults)
        self.param_groups = [{**defaults, **g} for g in _as_groups(params)]
        self.state = {}
        self._check_hypers()
        check_hyper_values('Optimizer', self.param_groups)

    @property
    def hypers(self):
        "The course's name for the hyper-parameter dicts: here the param groups themselves."
        return self.param_groups

    def _users(self):
        "(function, number of leading arguments that are not hyper-parameters) for each stepper."
        return [(f, 1) for f in self.steppers]

    def _state_names(self): return set()

    def _check_hypers(self):
        "Every hyper-parameter is used by a stepper or stat, and every one they require is there."
        args = {f: _named_args(f, skip) for f,skip in self._users()}
        known = set().union(*(a for _,a in args.values())) | self._state_names()
        for i,pg in enumerate(self.param_groups):
            for k in _hypers(pg):
                if k in known: continue
                close = difflib.get_close_matches(k, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"Optimizer: no stepper or stat uses hyper-parameter {k!r} "
                                 f"(param group {i}){hint}")
            for f,(req,_) in args.items():
                missing = req - set(pg) - self._state_names()
                if not missing: continue
                name = getattr(f, '__qualname__', f)
                raise ValueError(f"Optimizer: {name} needs hyper-parameter(s) "
                                 f"{sorted(missing)}, which param group {i} lacks: "
                                 "pass them or give defaults")

    def grad_params(self):
        "(parameter, its param group) for every parameter that has a gradient: the others rest."
        return [(p,pg) for pg in self.param_groups for p in pg['params'] if p.grad is not None]

    def zero_grad(self, set_to_none=True):
        """Drop the gradients (torch.optim's default), so that a parameter frozen since has none at
        the next step and rests; or zero them."""
        for p,_ in self.grad_params():
            if set_to_none: p.grad = None
            else: p.grad.detach_().zero_()

    def step(self):
        # a schedule may have changed the values since: a few look-ups per group
        check_hyper_values('Optimizer.step', self.param_groups)
        for p,pg in self.grad_params(): self._step(p, _hypers(pg))

    def _step(self, p, hyper):
        for f in self.steppers: f(p, **hyper)


def sgd_step(p, lr, **kwargs):
    "Gradient descent: p <- p - lr * grad."
    p.data.add_(p.grad.data, alpha=-lr)
    return p


def weight_decay(p, lr, wd, **kwargs):
    "Decoupled weight decay (Loshchilov & Hutter 2017): p <- p * (1 - lr*wd)."
    p.data.mul_(1 - lr*wd)
    return p
weight_decay._defaults = dict(wd=0.)

def l2_reg(p, lr, wd, **kwargs):
    "L2 regularisation: grad <- grad + wd*p, the gradient of wd/2 * ||p||^2 added to the loss."
    p.grad.data.add_(p.data, alpha=wd)
    return p
l2_reg._defaults = dict(wd=0.)
l2_reg._before_stats = True   # run before the stats: they must see the L2 gradient

sgd_opt = partial(Optimizer, steppers=[weight_decay, sgd_step])


def fit_steps(model, opt, xb, yb, n=10, loss_func=F.cross_entropy):
    "Take `n` optimizer steps on one batch (xb, yb); the losses, as floats."
    losses = []
    for _ in range(n):
        loss = loss_func(model(xb), yb)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses

def max_param_diff(m1, m2):
    "The largest absolute difference between matching parameters of two models of the same shape."
    return max((p1 - p2).abs().max().item() for p1,p2 in zip(m1.parameters(), m2.parameters()))


class Stat:
    "Per-parameter state that an optimizer updates before each step (a running average, a count)."
    _defaults = {}
    def init_state(self, p): raise NotImplementedError
    def update(self, p, state, **kwargs): raise NotImplementedError


class StatefulOptimizer(Optimizer):
    "An `Optimizer` whose steppers also get per-parameter state, kept by `stats` (each a `Stat`)."
    def __init__(self, params, steppers, stats=None, **defaults):
        self.stats = listify(stats)
        maybe_update(self.stats, defaults, get_defaults)
        super().__init__(params, steppers, **defaults)

    def _users(self): return super()._users() + [(s.update, 2) for s in self.stats]

    def _state_names(self):
        "The names of the state the stats keep (made once on a scalar to find out)."
        p = torch.zeros(1)
        return set().union(*(s.init_state(p) for s in self.stats))

    def _step(self, p, hyper):
        if p not in self.state:
            self.state[p] = {k:v for s in self.stats for k,v in s.init_state(p).items()}
        state = self.state[p]
        before = [f for f in self.steppers if getattr(f, '_before_stats', False)]
        for f in before: f(p, **hyper)
        for s in self.stats: state = s.update(p, state, **hyper)
        for f in self.steppers[len(before):]: f(p, **state, **hyper)
        self.state[p] = state


def _all_params(opt): return [p for pg in opt.param_groups for p in pg['params']]

def _state_dict(self):
    "Hyper-parameters by group and per-parameter state by position (references: deep-copy to keep)."
    pos = {p: i for i,p in enumerate(_all_params(self))}
    return {'state': {pos[p]: s for p,s in self.state.items()},
            'param_groups': [{**_hypers(pg), 'params': [pos[p] for p in pg['params']]}
                             for pg in self.param_groups]}

def _load_state_dict(self, state_dict):
    "Put back what `state_dict` gave: hyper-parameters and state copied to each parameter's device."
    groups = state_dict['param_groups']
    sizes,ours = [len(g['params']) for g in groups],[len(pg['params']) for pg in self.param_groups]
    if sizes != ours:
        raise ValueError(f"load_state_dict: param groups of sizes {sizes} given, "
                         f"this optimizer has {ours}")
    params = _all_params(self)
    for pg,g in zip(self.param_groups, groups): pg.update(_hypers(g))
    def to(v, p): return v.to(p.device, copy=True) if isinstance(v, torch.Tensor) else v
    self.state = {params[i]: {k: to(v, params[i]) for k,v in s.items()}
                  for i,s in state_dict['state'].items()}

# methods of every Optimizer, written here:
Optimizer.state_dict,Optimizer.load_state_dict = _state_dict,_load_state_dict


class _RunningAverage(Stat):
    """Keeps an average `avg` = beta*avg + damp*x, with damp = 1-beta (dampening) or 1, itself kept
    too: see `names`."""
    names = ('avg', 'damp')
    def __init__(self, dampening): self.dampening = dampening
    def init_state(self, p): return {self.names[0]: torch.zeros_like(p.data), self.names[1]: 1.}
    def _update(self, state, beta, x):
        avg,damp = self.names
        state[damp] = 1 - beta if self.dampening else 1.
        state[avg].mul_(beta).add_(x, alpha=state[damp])
        return state

class AverageGrad(_RunningAverage):
    "Running average of the gradient: `grad_avg` = mom*grad_avg + mom_damp*grad."
    _defaults,names = dict(mom=0.9),('grad_avg', 'mom_damp')
    def __init__(self, dampening=False): super().__init__(dampening)
    def update(self, p, state, mom, **kwargs): return self._update(state, mom, p.grad.data)

def momentum_step(p, lr, grad_avg, **kwargs):
    "Step along the running average of the gradients: p <- p - lr * grad_avg."
    p.data.add_(grad_avg, alpha=-lr)
    return p


sgd_mom_opt = partial(StatefulOptimizer, steppers=[momentum_step, weight_decay],
                      stats=AverageGrad(), wd=0.01)


class AverageSqrGrad(_RunningAverage):
    "Running average of the squared gradient: `sqr_avg` = sqr_mom*sqr_avg + sqr_damp*grad**2."
    _defaults,names = dict(sqr_mom=0.99),('sqr_avg', 'sqr_damp')
    def __init__(self, dampening=True): super().__init__(dampening)
    def update(self, p, state, sqr_mom, **kwargs):
        return self._update(state, sqr_mom, p.grad.data**2)

class StepCount(Stat):
    "How many steps this parameter has taken, `step` (1 at the first)."
    def init_state(self, p): return {'step': 0}
    def update(self, p, state, **kwargs):
        state['step'] += 1
        return state

def debias(mom, damp, step):
    """The sum of the weights of an average `mom`, dampening `damp`, after `step` steps:
    damp*(1-mom**step)/(1-mom)."""
    return damp * (1 - mom**step) / (1 - mom)


def adam_step(p, lr, mom, mom_damp, step, sqr_mom, sqr_damp, grad_avg, sqr_avg, eps, **kwargs):
    """Adam's update: the debiased average gradient over the square root of the debiased average
    squared gradient."""
    debias1,debias2 = debias(mom, mom_damp, step),debias(sqr_mom, sqr_damp, step)
    p.data.addcdiv_(grad_avg, (sqr_avg/debias2).sqrt() + eps, value=-lr/debias1)
    return p
adam_step._defaults = dict(eps=1e-5)

def _adam_stats(): return [AverageGrad(dampening=True), AverageSqrGrad(), StepCount()]

def adam_opt(xtra_step=None, **kwargs):
    "Adam with decoupled weight decay (AdamW when wd > 0); `xtra_step`: more steppers to run after."
    return partial(StatefulOptimizer, steppers=[weight_decay, adam_step] + listify(xtra_step),
                   stats=_adam_stats(), **kwargs)


def lamb_step(p, lr, mom, mom_damp, step, sqr_mom, sqr_damp, grad_avg, sqr_avg, eps, wd, **kwargs):
    """LAMB (You et al. 2019): Adam's direction plus weight decay, scaled per tensor by the trust
    ratio ||p||/||u||."""
    debias1,debias2 = debias(mom, mom_damp, step),debias(sqr_mom, sqr_damp, step)
    u = (grad_avg/debias1) / ((sqr_avg/debias2).sqrt() + eps) + wd*p.data
    r1,r2 = p.data.norm(),u.norm()
    trust = torch.where((r1 > 0) & (r2 > 0), r1/r2, torch.ones_like(r1)).clamp(max=10)
    p.data.sub_(lr * trust * u)
    return p
lamb_step._defaults = dict(eps=1e-6, wd=0.)

def lamb(**kwargs):
    "An optimizer function for LAMB, with any default hyper-parameters given as `kwargs`."
    return partial(StatefulOptimizer, steppers=lamb_step, stats=_adam_stats(), **kwargs)


# What `from exp.nb_09 import *` gives (generated by notebook2script.py;
# a name bound only in a branch not taken is left out).
from exp.nb_08 import __all__ as _all_nb_08
__all__ = _all_nb_08 + [
    'partial', 'get_defaults', 'maybe_update', 'check_range', 'hyper_checks',
    'check_hyper_values', 'Optimizer', 'sgd_step', 'weight_decay', 'l2_reg', 'sgd_opt',
    'fit_steps', 'max_param_diff', 'Stat', 'StatefulOptimizer', 'AverageGrad', 'momentum_step',
    'sgd_mom_opt', 'AverageSqrGrad', 'StepCount', 'debias', 'adam_step', 'adam_opt',
    'lamb_step', 'lamb'
]
__all__ = [_name for _name in dict.fromkeys(__all__) if _name in globals()]
