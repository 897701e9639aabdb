# Generated from nbs/07_batchnorm.ipynb by notebook2script.py:
# edit the notebook, not this file.


from exp.nb_06 import *
import math


_bn_dims = (0,2,3)   # a channel's statistics come from every image and every pixel of the batch

def _n_per_channel(x): return x.numel() // x.shape[1]

def _check_bn_input(layer, x, nf, batch_stats=True):
    """A clear error for input that is not (N, nf, H, W), or (with `batch_stats`) that has one
    value per channel in training."""
    name = type(layer).__name__
    if x.ndim != 4 or x.shape[1] != nf:
        raise ValueError(f"{name}({nf}) expects input (N, {nf}, H, W), got {tuple(x.shape)}")
    if batch_stats and layer.training and _n_per_channel(x) < 2:
        raise ValueError(f"{name} needs more than one value per channel in training, "
                         f"got input {tuple(x.shape)}")


class BatchNorm(nn.Module):
    """Batch normalization (Ioffe & Szegedy 2015) per channel of (N,C,H,W) input; running
    statistics for eval mode."""
    def __init__(self, nf, mom=0.1, eps=1e-5):
        super().__init__()
        self.mom,self.eps = mom,eps   # mom: the weight of each new batch, like torch's `momentum`
        self.mults = nn.Parameter(torch.ones (nf,1,1))
        self.adds  = nn.Parameter(torch.zeros(nf,1,1))
        self.register_buffer('vars',  torch.ones (1,nf,1,1))
        self.register_buffer('means', torch.zeros(1,nf,1,1))

    def update_stats(self, x):
        "This batch's per-channel mean and biased variance; moves the running statistics to them."
        m = x.mean(_bn_dims, keepdim=True)
        v = ((x-m)**2).mean(_bn_dims, keepdim=True)
        n = _n_per_channel(x)
        with torch.no_grad():
            self.means.lerp_(m, self.mom)
            self.vars.lerp_(v * n/(n-1), self.mom)   # like torch, keep the unbiased variance
        return m,v

    def normalize(self, x, m, v): return (x-m) * (self.mults * (v+self.eps).rsqrt()) + self.adds

    def forward(self, x):
        _check_bn_input(self, x, self.means.shape[1])
        m,v = self.update_stats(x) if self.training else (self.means,self.vars)
        return self.normalize(x, m, v)


class BatchNormFunction(torch.autograd.Function):
    """y = mults*(x-m)/sqrt(v+eps) + adds; backward from Ioffe & Szegedy 2015, section 3.
    `batch_stats`: m, v come from x."""
    @staticmethod
    def forward(ctx, x, mults, adds, m, v, eps, batch_stats):
        rstd = (v+eps).rsqrt()
        scale = mults*rstd
        ctx.save_for_backward(x, mults, m, rstd)
        ctx.batch_stats = batch_stats
        return (x*scale).add_(adds - m*scale)

    @staticmethod
    def backward(ctx, g):
        x, mults, m, rstd = ctx.saved_tensors
        g_sum = g.sum(_bn_dims, keepdim=True)                             # dL/d(adds)
        g_xhat = ((g*x).sum(_bn_dims, keepdim=True) - m*g_sum) * rstd     # sum g*xhat = dL/d(mults)
        a = mults*rstd
        if ctx.batch_stats:   # dx = a*g + b*x + c: the statistics' share, per channel
            n = _n_per_channel(x)
            b = -a*rstd*g_xhat/n
            dx = (x*b).add_(-a*g_sum/n - b*m).add_(g*a)
        else: dx = g*a
        return dx, g_xhat.view_as(mults), g_sum.view_as(mults), None, None, None, None


class BatchNorm(BatchNorm):
    """07's BatchNorm with the hand-written backward of `BatchNormFunction`: fewer passes over the
    activations."""
    def update_stats(self, x):
        with torch.no_grad(): return super().update_stats(x)
    def normalize(self, x, m, v):
        return BatchNormFunction.apply(x, self.mults, self.adds, m, v, self.eps, self.training)


def conv_layer(ni, nf, ks=3, stride=2, bn=True, **kwargs):
    "Conv (no bias when followed by BatchNorm), GeneralRelu(**kwargs), then BatchNorm(nf) if `bn`."
    layers = [nn.Conv2d(ni, nf, ks, padding=ks//2, stride=stride, bias=not bn),
              GeneralRelu(**kwargs)]
    if bn: layers.append(BatchNorm(nf))
    return nn.Sequential(*layers)


def group_normalize(x, groups, eps=1e-5):
    """Normalize each image's channels in `groups` groups: over (C/groups, H, W), with the biased
    variance."""
    n,c = x.shape[:2]
    if c % groups: raise ValueError(f"{c} channels cannot be split into {groups} equal groups")
    xg = x.reshape(n, groups, -1)
    m = xg.mean(-1, keepdim=True)
    v = ((xg-m)**2).mean(-1, keepdim=True)
    return ((xg-m) * (v+eps).rsqrt()).view_as(x)

class GroupNorm(nn.Module):
    """Group normalization (Wu & He 2018): statistics per image and group of channels; scale and
    shift per channel."""
    def __init__(self, num_groups, num_channels, eps=1e-5):
        super().__init__()
        self.groups,self.eps = num_groups,eps
        self.mults = nn.Parameter(torch.ones (num_channels,1,1))
        self.adds  = nn.Parameter(torch.zeros(num_channels,1,1))
    def forward(self, x): return group_normalize(x, self.groups, self.eps)*self.mults + self.adds

class InstanceNorm(GroupNorm):
    """Instance normalization (Ulyanov et al. 2016): each channel of each image on its own, a
    GroupNorm of one channel per group."""
    def __init__(self, nf, eps=1e-5): super().__init__(nf, nf, eps)

class LayerNorm(nn.Module):
    """Layer normalization (Ba et al. 2016) over (C,H,W) of each image; one scalar scale and shift,
    as the course."""
    def __init__(self, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.mult = nn.Parameter(tensor(1.))
        self.add  = nn.Parameter(tensor(0.))
    def forward(self, x): return group_normalize(x, 1, self.eps)*self.mult + self.add


def conv_norm_layer(ni, nf, ks=3, stride=2, norm=BatchNorm, **kwargs):
    """Conv, GeneralRelu(**kwargs), then `norm(nf)` (none if `norm` is None): `conv_layer` with any
    normalization."""
    layers = [nn.Conv2d(ni, nf, ks, padding=ks//2, stride=stride, bias=norm is None),
              GeneralRelu(**kwargs)]
    if norm is not None: layers.append(norm(nf))
    return nn.Sequential(*layers)


class RunningBatchNorm(nn.Module):
    """BatchNorm that normalizes with debiased running sums in training too (the course's): usable
    at tiny batch sizes."""
    def __init__(self, nf, mom=0.1, eps=1e-5):
        super().__init__()
        self.mom,self.eps = mom,eps
        self.mults = nn.Parameter(torch.ones (nf,1,1))
        self.adds  = nn.Parameter(torch.zeros(nf,1,1))
        for name,v in [('sums', torch.zeros(1,nf,1,1)), ('sqrs', torch.zeros(1,nf,1,1)),
                       ('count', tensor(0.)), ('batch', tensor(0.)), ('step', tensor(0.)),
                       ('dbias', tensor(0.))]:
            self.register_buffer(name, v)

    def update_stats(self, x):
        "The running sums with this batch folded in: returned with their graph, stored detached."
        bs,nc = x.shape[:2]
        # bigger batches count more (a batch of 1 as one of 2)
        mom1 = 1 - (1-self.mom)/math.sqrt(max(bs-1, 1))
        sums = self.sums.lerp(x.sum(_bn_dims, keepdim=True), mom1)
        sqrs = self.sqrs.lerp((x*x).sum(_bn_dims, keepdim=True), mom1)
        with torch.no_grad():
            self.sums.copy_(sums); self.sqrs.copy_(sqrs)
            self.count.lerp_(self.count.new_tensor(x.numel()/nc), mom1)
            self.dbias.mul_(1-mom1).add_(mom1)
            self.batch += bs; self.step += 1
        return sums,sqrs

    def forward(self, x):
        # running sums work even for one value per channel
        _check_bn_input(self, x, self.mults.shape[0], batch_stats=False)
        sums,sqrs = self.update_stats(x) if self.training else (self.sums,self.sqrs)
        c = self.count
        # later on, dbias ~ 1
        if self.step < 100: sums,sqrs,c = sums/self.dbias,sqrs/self.dbias,c/self.dbias
        means = sums/c
        vars = sqrs/c - means*means
        if self.batch < 20: vars = vars.clamp_min(0.01)
        return (x-means) * (self.mults*(vars+self.eps).rsqrt()) + self.adds


# What `from exp.nb_07 import *` gives (generated by notebook2script.py;
# a name bound only in a branch not taken is left out).
from exp.nb_06 import __all__ as _all_nb_06
__all__ = _all_nb_06 + [
    'math', 'BatchNorm', 'BatchNormFunction', 'conv_layer', 'group_normalize', 'GroupNorm',
    'InstanceNorm', 'LayerNorm', 'conv_norm_layer', 'RunningBatchNorm'
]
__all__ = [_name for _name in dict.fromkeys(__all__) if _name in globals()]
