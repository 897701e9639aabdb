# Generated from nbs/10c_mixed_precision.ipynb by notebook2script.py:
# edit the notebook, not this file.


from exp.nb_10b import *
from functools import partial
import collections, contextlib, math


# torch's and 07's:
bn_types = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, BatchNorm, RunningBatchNorm)

def _inputs_to_float(m, args):
    return tuple(a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)

def _output_to(dtype, m, args, out): return out.to(dtype)

def _hook_norms(model, out_dtype=None):
    """Normalization layers compute in float32 (their inputs cast up); with `out_dtype`, their
    outputs are cast to it."""
    for m in model.modules():
        if not isinstance(m, bn_types): continue
        hooks = [m.register_forward_pre_hook(_inputs_to_float)]
        if out_dtype is not None:
            hooks.append(m.register_forward_hook(partial(_output_to, out_dtype)))
        m._mp_hooks = hooks

def _unhook_norms(model):
    for m in model.modules():
        for h in m.__dict__.pop('_mp_hooks', ()): h.remove()

def model_to_half(model, dtype=torch.float16):
    """`model` in `dtype`, except its normalization layers: they stay float32 and compute in
    float32, handing `dtype` on."""
    model.to(dtype)
    for m in model.modules():
        if isinstance(m, bn_types): m.float()
    _hook_norms(model, dtype)
    return model

def model_to_float(model):
    "Undo `model_to_half`: everything back in float32, the casting hooks removed."
    _unhook_norms(model)
    return model.float()


def _no_flat(flat_master):
    if flat_master:
        raise NotImplementedError("flat_master=True (one flat float32 vector per param group) "
                                  "is not implemented here")

def get_master(opt, flat_master=False):
    """For each of `opt`'s param groups: the model's trainable parameters, and float32 copies of
    them (the master weights)."""
    _no_flat(flat_master)
    model_pgs = [[p for p in pg['params'] if p.requires_grad] for pg in opt.param_groups]
    master_pgs = [[p.detach().clone().float().requires_grad_() for p in pg] for pg in model_pgs]
    return model_pgs, master_pgs

def to_master_grads(model_pgs, master_pgs, flat_master=False, loss_scale=1.):
    "Copy each model gradient into its master parameter's `.grad`, in float32, over `loss_scale`."
    _no_flat(flat_master)
    for model_ps,master_ps in zip(model_pgs, master_pgs):
        for p,mp in zip(model_ps, master_ps):
            mp.grad = None if p.grad is None else p.grad.detach().float() / loss_scale

def to_model_params(model_pgs, master_pgs, flat_master=False):
    "Copy the master weights into the model's parameters (rounding them to the model's dtype)."
    _no_flat(flat_master)
    with torch.no_grad():
        for model_ps,master_ps in zip(model_pgs, master_pgs):
            for p,mp in zip(model_ps, master_ps): p.copy_(mp)


def _swap_params(opt, old_pgs, new_pgs):
    """Make `opt` update `new_pgs` in place of `old_pgs` (same param group dicts, so schedulers
    keep working); state follows."""
    for pg,old,new in zip(opt.param_groups, old_pgs, new_pgs):
        frozen = [p for p in pg['params'] if not p.requires_grad]
        pg['params'] = list(new) + frozen
        for o,n in zip(old, new):
            if o in opt.state: opt.state[n] = opt.state.pop(o)


def has_overflow(x):
    "Is any element of `x` infinite or NaN? Then so is its sum (in float32): one number to read."
    return not math.isfinite(x.float().sum().item())

def grad_overflow(param_groups):
    """Is any gradient in these lists of parameters infinite or NaN? One sum per tensor, read once
    (one wait on a GPU)."""
    sums = [p.grad.float().sum() for pg in param_groups for p in pg if p.grad is not None]
    return bool(sums) and has_overflow(torch.stack(sums))


class LossScaler:
    """A dynamic loss scale: halved (and the step skipped) on overflow, doubled after `scale_wait`
    clean steps in a row."""
    def __init__(self, scale=2.**24, div_factor=2., scale_wait=500, dynamic=True):
        check_positive('LossScaler', scale=scale, div_factor=div_factor)   # finite, > 0
        check_count('LossScaler', scale_wait=scale_wait)
        if not div_factor > 1:
            raise ValueError(f"LossScaler: div_factor must be > 1, got {div_factor!r}")
        self.scale,self.div_factor,self.scale_wait = float(scale),div_factor,scale_wait
        self.dynamic,self.count = dynamic,0
    def update(self, overflow):
        "After a backward pass: True if its step may be taken. Moves the scale for the next one."
        if not self.dynamic: return not overflow
        if overflow: self.scale,self.count = self.scale/self.div_factor,0
        else:
            self.count += 1
            if self.count == self.scale_wait: self.scale,self.count = self.scale*self.div_factor,0
        return not overflow


class GatedOptimizer:
    """Stands in for `opt` during a fit: `step()` calls `step_fn(opt)`, which may skip the step;
    everything else is `opt`'s own. The Runner then goes on as after any step."""
    def __init__(self, opt, step_fn): self.opt,self.step_fn = opt,step_fn
    def step(self): self.step_fn(self.opt)
    def __getattr__(self, k):
        if k == 'opt': raise AttributeError(k)   # not set yet (as in a copy): no endless recursion
        return getattr(self.opt, k)

def _gate(cb, step_fn): cb.learn.opt = GatedOptimizer(cb.learn.opt, step_fn)
def _ungate(cb):
    if isinstance(cb.learn.opt, GatedOptimizer): cb.learn.opt = cb.learn.opt.opt


MAX_SKIPS = 50   # steps skipped in a row before a fit stops (why 50: after the first runs)

class SkipLimit:
    "Counts the training steps skipped in a row; the `limit`-th stops the fit with an error."
    def __init__(self, who, limit): self.who,self.limit,self.n = who,limit,0
    def __call__(self, skipped, epoch, batch, scale):
        self.n = self.n + 1 if skipped else 0
        if self.n < self.limit: return
        raise RuntimeError(
            f"{self.who}: {self.n} training steps in a row skipped for inf or NaN gradients, the "
            f"last at epoch {epoch}, batch {batch}, loss scale {scale:g}: the weights are not "
            "moving, and a smaller scale has not helped. Look for inf or NaN in the inputs, the "
            "model or the loss, or lower the learning rate (max_skips sets the limit)")

def check_half_dtype(dtype, device, who):
    """Refuse bfloat16 on a CUDA device without native support for it (compute capability below
    8.0), where PyTorch emulates it slowly or fails."""
    if dtype != torch.bfloat16 or torch.device(device).type != 'cuda': return
    if torch.cuda.get_device_capability(device) < (8, 0):   # this GPU's, not the current one's
        raise ValueError(f"{who}: dtype=torch.bfloat16, but the model's GPU ({device}) has no "
                         "native bfloat16; use dtype=torch.float16 (with its loss scaling)")


class MixedPrecision(Callback):
    """Mixed precision from scratch: a `dtype` model, float32 master weights stepped by the
    optimizer, dynamic loss scaling; `max_skips` overflowing steps in a row stop the fit."""
    _order = 99   # after the callbacks that prepare the batch or read the unscaled loss
    def __init__(self, loss_scale=512, flat_master=False, dynamic=True, max_loss_scale=2.**24,
                 div_factor=2., scale_wait=500, dtype=torch.float16, max_skips=MAX_SKIPS):
        _no_flat(flat_master)
        if dtype not in (torch.float16, torch.bfloat16):
            raise ValueError(f"MixedPrecision(dtype={dtype}): the model's dtype must be "
                             "torch.float16 or torch.bfloat16")
        check_positive('MixedPrecision', loss_scale=loss_scale, max_loss_scale=max_loss_scale)
        check_count('MixedPrecision', max_skips=max_skips)
        start = max_loss_scale if dynamic else loss_scale
        self.scaler = LossScaler(start, div_factor, scale_wait, dynamic)
        self.dtype,self.max_skips,self.model_pgs = dtype,max_skips,None
    @property
    def loss_scale(self): return self.scaler.scale

    def begin_fit(self):
        check_half_dtype(self.dtype, model_device(self.model), 'MixedPrecision')
        # first: the masters get the exact float32 values
        self.model_pgs,self.master_pgs = get_master(self.opt)
        model_to_half(self.model, self.dtype)
        _swap_params(self.opt, self.model_pgs, self.master_pgs)   # the optimizer steps the masters
        _gate(self, self._step)
        self.scales,self.skipped = [],[]   # per training batch: its scale, and if it was skipped
        self.skip_limit = SkipLimit('MixedPrecision', self.max_skips)
    def after_fit(self):   # also after an error: the learner is left as it was found
        _ungate(self)
        if self.model_pgs is None: return   # begin_fit never got this far
        model_to_float(self.model)
        to_model_params(self.model_pgs, self.master_pgs)   # exact float32 weights back, not rounded
        _swap_params(self.opt, self.master_pgs, self.model_pgs)
        self.model_pgs = self.master_pgs = None

    def begin_batch(self):
        if not self.xb.is_floating_point():   # bytes cast to float16 would train on 0-255
            raise TypeError(f"MixedPrecision: the batch is {self.xb.dtype}; it takes floating-point"
                            " inputs, as the float32 model does (convert images to floats first)")
        self.run.xb = self.xb.to(self.dtype)
    def after_pred(self): self.run.pred = self.pred.float()   # the loss in float32
    def after_loss(self):
        # not in place: other callbacks may hold the loss
        if self.in_train: self.run.loss = self.loss * self.loss_scale

    def after_backward(self):
        scale,overflow = self.loss_scale,grad_overflow(self.model_pgs)
        self.scales.append(scale); self.skipped.append(overflow)
        if not overflow: to_master_grads(self.model_pgs, self.master_pgs, loss_scale=scale)
        self.scaler.update(overflow)
        self.model.zero_grad()
        self.skip_limit(overflow, self.epoch, self.iter, scale)
    def _step(self, opt):   # the Runner's opt.step(), through GatedOptimizer
        if not self.skipped[-1]: opt.step()
    def after_step(self): to_model_params(self.model_pgs, self.master_pgs)

    def state_dict(self):
        "What a checkpoint needs (09b): the float32 masters, the loss scale, its clean-step count."
        return {'masters': [[mp.detach().clone() for mp in pg] for pg in self.master_pgs],
                'scale': self.scaler.scale, 'count': self.scaler.count, 'skips': self.skip_limit.n}
    def load_state_dict(self, sd):
        "Put back what `state_dict` saved (after begin_fit has made the masters)."
        with torch.no_grad():
            for pg,saved in zip(self.master_pgs, sd['masters']):
                for mp,s in zip(pg, saved): mp.copy_(s)
        to_model_params(self.model_pgs, self.master_pgs)
        self.scaler.scale,self.scaler.count,self.skip_limit.n = sd['scale'],sd['count'],sd['skips']


def autocast_dtype(device_type):
    "The half dtype autocast uses by default here: float16 on CUDA (tensor cores), bfloat16 on CPU."
    return torch.float16 if device_type == 'cuda' else torch.bfloat16

class AutocastCallback(Callback):
    """Forward pass and loss under `torch.autocast` on the model's device; with float16, a
    `torch.amp.GradScaler` scales the loss and steps (through `GatedOptimizer`)."""
    _order = 99
    def __init__(self, dtype=None, max_skips=MAX_SKIPS, **scaler_kwargs):
        check_count('AutocastCallback', max_skips=max_skips)
        if 'device_type' in scaler_kwargs:
            raise TypeError("AutocastCallback: no device_type: autocast runs on the model's "
                            "device, read from its parameters (move the model to choose it)")
        torch.amp.GradScaler('cpu', enabled=False, **scaler_kwargs)   # a bad keyword fails now
        if 'init_scale' in scaler_kwargs:
            check_positive('AutocastCallback', init_scale=scaler_kwargs['init_scale'])
        self.dtype,self.max_skips,self.scaler_kwargs,self._ctx = dtype,max_skips,scaler_kwargs,None
    def begin_fit(self):
        self.dev = model_device(self.model).type   # autocast where the model computes
        self.half = self.dtype or autocast_dtype(self.dev)
        check_half_dtype(self.half, model_device(self.model), 'AutocastCallback')
        # float16's range needs loss scaling; bfloat16 has float32's exponent: no scaler
        on = self.half == torch.float16
        self.scaler = torch.amp.GradScaler(self.dev, enabled=on, **self.scaler_kwargs)
        if on:
            self.last_scale = self.scaler.get_scale()
            self.skip_limit = SkipLimit('AutocastCallback', self.max_skips)
            _gate(self, self._step)
        _hook_norms(self.model)   # 07's BatchNorm keeps float32 statistics: float32 inputs
    def begin_batch(self):
        self._ctx = torch.autocast(self.dev, dtype=self.half)
        self._ctx.__enter__()
    def _leave(self):
        if self._ctx is not None: self._ctx.__exit__(None, None, None); self._ctx = None
    def after_loss(self):
        self._leave()   # backward runs outside autocast, as torch recommends
        if self.in_train and self.scaler.is_enabled(): self.run.loss = self.scaler.scale(self.loss)
    def _step(self, opt):
        "The Runner's opt.step(): GradScaler unscales, steps unless a gradient is inf or NaN."
        self.scaler.step(opt); self.scaler.update()   # step() has read the overflow already
        scale,self.last_scale = self.last_scale,self.scaler.get_scale()
        self.skip_limit(self.last_scale < scale, self.epoch, self.iter, scale)   # halved: skipped
    def after_cancel_batch(self): self._leave()
    def after_fit(self):
        self._leave()   # never left on after an error
        _ungate(self)
        _unhook_norms(self.model)

    def state_dict(self):
        "GradScaler's scale and growth count and the skips in a row (nothing without a scaler)."
        if not self.scaler.is_enabled(): return {}
        return {'scaler': self.scaler.state_dict(), 'skips': self.skip_limit.n}
    def load_state_dict(self, sd):
        "Put back what `state_dict` saved (after begin_fit has made the scaler)."
        if not self.scaler.is_enabled(): return
        self.scaler.load_state_dict(sd['scaler'])
        self.last_scale,self.skip_limit.n = self.scaler.get_scale(),sd['skips']


def saved_bytes(model, xb, yb, autocast=None):
    """Bytes autograd saves for the backward pass of one batch's loss (each tensor once): the
    model's own parameters under 'params', the rest by dtype; `autocast`: a half dtype to run in."""
    params = {p.data_ptr() for p in model.parameters()}
    seen, total = set(), collections.Counter()
    def pack(t):
        key = (t.data_ptr(), t.dtype, tuple(t.shape))
        if key not in seen:
            seen.add(key)
            total['params' if t.data_ptr() in params else t.dtype] += t.numel() * t.element_size()
        return t
    dev = model_device(model)
    ctx = torch.autocast(dev.type, dtype=autocast) if autocast else contextlib.nullcontext()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), ctx:
        F.cross_entropy(model(xb.to(dev)).float(), yb.to(dev))
    return total

def param_bytes(model): return sum(p.numel() * p.element_size() for p in model.parameters())


# What `from exp.nb_10c import *` gives (generated by notebook2script.py;
# a name bound only in a branch not taken is left out).
from exp.nb_10b import __all__ as _all_nb_10b
__all__ = _all_nb_10b + [
    'partial', 'math', 'bn_types', 'model_to_half', 'model_to_float', 'get_master',
    'to_master_grads', 'to_model_params', 'has_overflow', 'grad_overflow', 'LossScaler',
    'GatedOptimizer', 'MAX_SKIPS', 'SkipLimit', 'check_half_dtype', 'MixedPrecision',
    'autocast_dtype', 'AutocastCallback', 'saved_bytes', 'param_bytes'
]
__all__ = [_name for _name in dict.fromkeys(__all__) if _name in globals()]
