# Generated from nbs/10c_mixed_precision.ipynb by notebook2script.py:
# edit the notebook, not this file.


from exp.nb_10b import *
from functools import partial
import math


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
        if scale <= 0 or div_factor <= 1 or scale_wait < 1:
            raise ValueError("LossScaler: need scale > 0, div_factor > 1, scale_wait >= 1 "
                             f"(got {scale}, {div_factor}, {scale_wait})")
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


class MixedPrecision(Callback):
    """Mixed precision from scratch: a `dtype` model, float32 master weights stepped by the
    optimizer, dynamic loss scaling."""
    _order = 99   # after the callbacks that prepare the batch or read the unscaled loss
    def __init__(self, loss_scale=512, flat_master=False, dynamic=True, max_loss_scale=2.**24,
                 div_factor=2., scale_wait=500, dtype=torch.float16):
        _no_flat(flat_master)
        if dtype not in (torch.float16, torch.bfloat16):
            raise ValueError(f"MixedPrecision(dtype={dtype}): the model's dtype must be "
                             "torch.float16 or torch.bfloat16")
        start = max_loss_scale if dynamic else loss_scale
        self.scaler = LossScaler(start, div_factor, scale_wait, dynamic)
        self.dtype,self.model_pgs = dtype,None
    @property
    def loss_scale(self): return self.scaler.scale

    def begin_fit(self):
        # first: the masters get the exact float32 values
        self.model_pgs,self.master_pgs = get_master(self.opt)
        model_to_half(self.model, self.dtype)
        _swap_params(self.opt, self.model_pgs, self.master_pgs)   # the optimizer steps the masters
        self.scales,self.skipped = [],[]   # per training batch: its scale, and if it was skipped
    def after_fit(self):   # also after an error: the learner is left as it was found
        if self.model_pgs is None: return   # begin_fit never ran
        model_to_float(self.model)
        to_model_params(self.model_pgs, self.master_pgs)   # exact float32 weights back, not rounded
        _swap_params(self.opt, self.master_pgs, self.model_pgs)
        self.model_pgs = self.master_pgs = None

    def begin_batch(self): self.run.xb = self.xb.to(self.dtype)
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
        return overflow   # True: the runner skips this step (and its zero_grad)
    def after_step(self): to_model_params(self.model_pgs, self.master_pgs)


def autocast_dtype(device_type):
    "The half dtype autocast uses by default here: float16 on CUDA (tensor cores), bfloat16 on CPU."
    return torch.float16 if device_type == 'cuda' else torch.bfloat16

class AutocastCallback(Callback):
    """Forward pass and loss under `torch.autocast`; with float16, a `torch.amp.GradScaler` scales
    the loss and steps."""
    _order = 99
    def __init__(self, dtype=None, device_type=None, **scaler_kwargs):
        self.dtype,self.device_type = dtype,device_type
        self.scaler_kwargs,self._ctx = scaler_kwargs,None
    def begin_fit(self):
        self.dev = self.device_type or next(self.model.parameters()).device.type
        self.half = self.dtype or autocast_dtype(self.dev)
        # float16's range needs loss scaling; bfloat16 has float32's exponent: no scaler
        on = self.half == torch.float16
        self.scaler = torch.amp.GradScaler(self.dev, enabled=on, **self.scaler_kwargs)
        _hook_norms(self.model)   # 07's BatchNorm keeps float32 statistics: float32 inputs
    def begin_batch(self):
        self._ctx = torch.autocast(self.dev, dtype=self.half)
        self._ctx.__enter__()
    def _leave(self):
        if self._ctx is not None: self._ctx.__exit__(None, None, None); self._ctx = None
    def after_loss(self):
        self._leave()   # backward runs outside autocast, as torch recommends
        if self.in_train and self.scaler.is_enabled(): self.run.loss = self.scaler.scale(self.loss)
    def after_backward(self):
        if not self.scaler.is_enabled(): return
        self.scaler.step(self.opt)   # unscales; skips the step if a gradient is inf/NaN
        self.scaler.update()
        self.opt.zero_grad()
        return True   # the step is done (or skipped) here
    def after_cancel_batch(self): self._leave()
    def after_fit(self):
        self._leave()   # never left on after an error
        _unhook_norms(self.model)


# What `from exp.nb_10c import *` gives (generated by notebook2script.py;
# a name bound only in a branch not taken is left out).
from exp.nb_10b import __all__ as _all_nb_10b
__all__ = _all_nb_10b + [
    'partial', 'math', 'bn_types', 'model_to_half', 'model_to_float', 'get_master',
    'to_master_grads', 'to_model_params', 'has_overflow', 'grad_overflow', 'LossScaler',
    'MixedPrecision', 'autocast_dtype', 'AutocastCallback'
]
__all__ = [_name for _name in dict.fromkeys(__all__) if _name in globals()]
