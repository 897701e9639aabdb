# Generated from nbs/10b_mixup_label_smoothing.ipynb by notebook2script.py:
# edit the notebook, not this file.


from exp.nb_10 import *
from functools import partial
from torch.distributions.beta import Beta
import inspect


def reduce_loss(loss, reduction='mean'):
    """The per-item `loss` averaged ('mean'), added up ('sum') or left as it is ('none'),
    as PyTorch's losses do."""
    if reduction == 'mean': return loss.mean()
    if reduction == 'sum': return loss.sum()
    if reduction == 'none': return loss
    raise ValueError(f"reduce_loss: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")

class NoneReduce():
    """`with NoneReduce(loss_func) as f`: `f` gives one loss per item; a loss module's own
    `reduction` is put back after."""
    def __init__(self, loss_func): self.loss_func,self.old_red = loss_func,None
    def __enter__(self):
        if hasattr(self.loss_func, 'reduction'):
            self.old_red = self.loss_func.reduction
            self.loss_func.reduction = 'none'
            return self.loss_func
        return partial(self.loss_func, reduction='none')
    def __exit__(self, *exc):
        if self.old_red is not None: self.loss_func.reduction = self.old_red


def lin_comb(v1, v2, beta):
    "beta * v1 + (1 - beta) * v2."
    return beta*v1 + (1-beta)*v2

def unsqueeze(x, dims):
    """`x` with a new axis of size 1 at each of `dims`, in turn (e.g. (1, 2, 3)
    makes one number per image broadcast)."""
    for dim in listify(dims): x = torch.unsqueeze(x, dim)
    return x

def _loss_name(f): return getattr(f, '__name__', None) or type(f).__name__

def check_per_item_loss(loss_func, who):
    """A TypeError naming `loss_func` unless it can give one loss per item: a `reduction`
    attribute (a loss module) or a `reduction=` keyword (a loss function)."""
    if hasattr(loss_func, 'reduction'): return
    try: params = inspect.signature(loss_func).parameters
    except (TypeError, ValueError): return   # no signature to read: its first call will tell
    if 'reduction' in params or any(p.kind == p.VAR_KEYWORD for p in params.values()): return
    raise TypeError(f"{who}: the loss {_loss_name(loss_func)} takes no reduction= argument; "
                    f"{who} needs one loss per item, from reduction='none' (as F.cross_entropy "
                    "gives), or a loss module with a reduction attribute (as nn.CrossEntropyLoss)")

class MixUp(Callback):
    """MixUp (Zhang et al. 2017, arXiv 1710.09412): training batches blended with a shuffled copy,
    and their losses too."""
    _order = 90   # after every other change to the inputs
    def __init__(self, alpha=0.4):
        if not alpha > 0: raise ValueError(f'MixUp: alpha must be > 0, got {alpha!r}')
        self.distrib = Beta(tensor([float(alpha)]), tensor([float(alpha)]))
    def mix(self, xb, yb):
        """`xb` blended with a shuffled copy, one lambda per image (kept in `lam`, the partners'
        labels in `yb1`)."""
        lam = self.distrib.sample((len(yb),)).flatten().to(xb.device, xb.dtype)
        self.lam = torch.max(lam, 1 - lam)
        self.shuffle = torch.randperm(len(yb), device=yb.device)
        self.yb1 = yb[self.shuffle]
        return lin_comb(xb, xb[self.shuffle], unsqueeze(self.lam, range(1, xb.ndim)))
    def begin_fit(self):
        check_per_item_loss(self.run.loss_func, 'MixUp')
        self.old_loss_func,self.run.loss_func = self.run.loss_func,self.loss_func
    def begin_batch(self):
        if self.in_train: self.run.xb = self.mix(self.xb, self.yb)
    def after_fit(self):   # also after an error: the learner gets its loss back
        old = self.__dict__.pop('old_loss_func', None)   # None: begin_fit refused the loss
        if old is not None: self.run.loss_func = old
    def loss_func(self, pred, yb):
        if not self.in_train: return self.old_loss_func(pred, yb)
        with NoneReduce(self.old_loss_func) as per_item:
            a,b = per_item(pred, yb),per_item(pred, self.yb1)
        if a.shape != (len(yb),):
            raise ValueError(f"MixUp: the loss {_loss_name(self.old_loss_func)} must give one loss "
                             f"per item with reduction='none', shape {(len(yb),)}, but gave "
                             f"shape {tuple(a.shape)}")
        loss = lin_comb(a, b, self.lam)
        return reduce_loss(loss, getattr(self.old_loss_func, 'reduction', 'mean'))


class LabelSmoothingCrossEntropy(nn.Module):
    """Cross-entropy against targets smoothed by `eps` (Szegedy et al. 2016, arXiv 1512.00567):
    (1-eps) one-hot + eps/K."""
    def __init__(self, eps=0.1, reduction='mean'):
        super().__init__()
        if not 0 <= eps <= 1:
            raise ValueError(f'LabelSmoothingCrossEntropy: eps must be in [0, 1], got {eps!r}')
        self.eps,self.reduction = eps,reduction
    def forward(self, output, target):
        if output.ndim != 2 or target.shape != output.shape[:1]:
            raise ValueError(f'LabelSmoothingCrossEntropy: expected output (N, K) and target (N,), '
                             f'got {tuple(output.shape)} and {tuple(target.shape)}')
        log_preds = F.log_softmax(output, dim=-1)
        uniform = reduce_loss(-log_preds.sum(dim=-1), self.reduction) / output.shape[-1]
        nll = F.nll_loss(log_preds, target, reduction=self.reduction)
        return lin_comb(uniform, nll, self.eps)


def calibration_bins(probs, y, n_bins=15):
    """Sort the images by their top probability into `n_bins` equal-width bins over (0, 1]; for
    each bin: the number of images, their mean confidence and their accuracy (NaN when empty)."""
    if probs.ndim != 2 or y.shape != probs.shape[:1]:
        raise ValueError(f'calibration_bins: expected probs (N, K) and targets (N,), '
                         f'got {tuple(probs.shape)} and {tuple(y.shape)}')
    conf, pred = probs.max(1)
    right = (pred == y.to(pred.device)).to(probs.dtype)
    b = (conf * n_bins).ceil().long().clamp(1, n_bins) - 1   # bin m holds (m/M, (m+1)/M]
    zeros = torch.zeros(n_bins, dtype=probs.dtype, device=probs.device)
    per_bin = lambda v: zeros.clone().index_add_(0, b, v)   # the sum of `v` in each bin
    count = per_bin(torch.ones_like(conf))
    return count, per_bin(conf) / count, per_bin(right) / count

def expected_calibration_error(probs, y, n_bins=15):
    """ECE (Guo et al. 2017, arXiv 1706.04599): |accuracy - confidence| of each bin, weighted by
    the share of the images in it."""
    count, conf, acc = calibration_bins(probs, y, n_bins)
    full = count > 0
    return (count[full] / count.sum() * (acc[full] - conf[full]).abs()).sum().item()


# What `from exp.nb_10b import *` gives (generated by notebook2script.py;
# a name bound only in a branch not taken is left out).
from exp.nb_10 import __all__ as _all_nb_10
__all__ = _all_nb_10 + [
    'partial', 'Beta', 'reduce_loss', 'NoneReduce', 'lin_comb', 'unsqueeze',
    'check_per_item_loss', 'MixUp', 'LabelSmoothingCrossEntropy', 'calibration_bins',
    'expected_calibration_error'
]
__all__ = [_name for _name in dict.fromkeys(__all__) if _name in globals()]
