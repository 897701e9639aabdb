# Generated from nbs/06_cnn_hooks_init.ipynb by notebook2script.py:
# edit the notebook, not this file.


from exp.nb_05b import *
import torch.optim as optim
import weakref


def as_pair(v, name):
    "`v` as an (along height, along width) pair of ints: 2 -> (2, 2); (1, 2) stays."
    pair = (v, v) if isinstance(v, int) else tuple(v)
    if len(pair) != 2 or not all(isinstance(i, int) for i in pair):
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
    return pair

def conv_out_size(n, ks, stride=1, padding=0):
    """How many positions a kernel of size `ks` takes along an axis of length `n`:
    floor((n + 2p - ks)/s) + 1."""
    return (n + 2*padding - ks) // stride + 1


def _offsets(ks, out, stride):
    "For each kernel offset (i, j): the rows and columns of the padded input it meets, as slices."
    def span(start, ax): return slice(start, start + stride[ax]*(out[ax]-1) + 1, stride[ax])
    return [(i, j, span(i, 0), span(j, 1)) for i in range(ks[0]) for j in range(ks[1])]


class Im2Col(torch.autograd.Function):
    """x (N, C, H, W) -> columns (C*kh*kw, N*oh*ow): row (c, i, j) holds, for every output
    position, the input pixel that kernel weight (c, i, j) multiplies there. Built from one slice
    per offset."""
    @staticmethod
    def forward(ctx, x, ks, stride, padding):
        (n, c, h, w), (ph, pw) = x.shape, padding
        out = conv_out_size(h, ks[0], stride[0], ph), conv_out_size(w, ks[1], stride[1], pw)
        xp = x.new_zeros(c, n, h + 2*ph, w + 2*pw)        # channels first: each slice below is a
        xp[:, :, ph:ph+h, pw:pw+w] = x.transpose(0, 1)   # block of whole images, read in order
        cols = x.new_empty(c, *ks, n, *out)
        for i,j,rows,cs in _offsets(ks, out, stride): cols[:, i, j] = xp[:, :, rows, cs]
        ctx.geom = x.shape, ks, stride, padding, out
        return cols.view(c * ks[0] * ks[1], n * out[0] * out[1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        "col2im: each input pixel's gradient is the sum over every column it was copied to."
        x_shape, ks, stride, padding, _ = ctx.geom
        return col2im(g, x_shape, ks, stride, padding), None, None, None


def col2im(cols, x_shape, kernel_size, stride=1, padding=0):
    """im2col's adjoint: columns (C*kh*kw, N*oh*ow) in `Im2Col`'s layout -> a batch of `x_shape`
    (N, C, H, W) in which each pixel is the sum of every column entry im2col copied from it
    (PyTorch's `F.fold`, in `Im2Col`'s layout). `Im2Col`'s backward; a transposed convolution
    is built on it."""
    (n, c, h, w), ks = x_shape, as_pair(kernel_size, 'kernel_size')
    (sh, sw), (ph, pw) = as_pair(stride, 'stride'), as_pair(padding, 'padding')
    out = conv_out_size(h, ks[0], sh, ph), conv_out_size(w, ks[1], sw, pw)
    want = (c * ks[0] * ks[1], n * out[0] * out[1])
    if tuple(cols.shape) != want:
        raise ValueError(f'col2im: columns for {tuple(x_shape)} with a {ks[0]}x{ks[1]} kernel, '
                         f'stride {(sh, sw)}, padding {(ph, pw)} must be {want}, got '
                         f'{tuple(cols.shape)}')
    x = cols.new_zeros(c, n, h + 2*ph, w + 2*pw)
    g = cols.reshape(c, *ks, n, *out)
    for i,j,rows,cs in _offsets(ks, out, (sh, sw)): x[:, :, rows, cs] += g[:, i, j]
    return x[:, :, ph:ph+h, pw:pw+w].transpose(0, 1)


def _check_image_batch(x, who):
    if x.ndim != 4:
        raise ValueError(f"{who} expects a batch of images (N, C, H, W), "
                         f"got shape {tuple(x.shape)}")

def _check_geometry(x, ks, stride, padding, who):
    "Strides >= 1, paddings >= 0, and a kernel that fits in the padded image at least once."
    if min(stride) < 1 or min(padding) < 0:
        raise ValueError(f"{who}: stride must be >= 1 and padding >= 0, "
                         f"got stride={stride}, padding={padding}")
    if any(conv_out_size(n, k, s, p) < 1 for n,k,s,p in zip(x.shape[2:], ks, stride, padding)):
        raise ValueError(f"{who}: a {ks[0]}x{ks[1]} kernel does not fit in input {tuple(x.shape)} "
                         f"with padding={padding}")

def unfold(x, kernel_size, stride=1, padding=0):
    """im2col, like `F.unfold` (no dilation; stride before padding, as in `conv2d`):
    x (N, C, H, W) -> (N, C*kh*kw, L), one column per output position holding the patch the
    kernel sees there."""
    ks = as_pair(kernel_size, 'kernel_size')
    stride,padding = as_pair(stride, 'stride'),as_pair(padding, 'padding')
    _check_image_batch(x, 'unfold'); _check_geometry(x, ks, stride, padding, 'unfold')
    cols = Im2Col.apply(x, ks, stride, padding)
    return cols.view(cols.shape[0], x.shape[0], -1).transpose(0, 1).contiguous()


def check_conv_weight(x, weight, bias, who='conv2d', transposed=False):
    """Refuse a weight whose input channels are not `x`'s, or a bias that is not one number per
    output channel: weight (C_out, C_in, kh, kw), or (C_in, C_out, kh, kw) when `transposed`."""
    c_in, c_out = (0, 1) if transposed else (1, 0)
    layout = '(C_in, C_out, kh, kw)' if transposed else '(C_out, C_in, kh, kw)'
    if weight.ndim != 4 or x.shape[1] != weight.shape[c_in]:
        raise ValueError(f"{who}: weight must be {layout} with C_in = the input's "
                         f"{x.shape[1]} channels; "
                         f"got input {tuple(x.shape)} and weight {tuple(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (weight.shape[c_out],):
        raise ValueError(f"{who}: bias must be ({weight.shape[c_out]},), one per output channel; "
                         f"got {tuple(bias.shape)}")

def conv2d(x, weight, bias=None, stride=1, padding=0):
    """2d convolution (cross-correlation, as in PyTorch) as im2col + one matrix product; same
    arguments and output as `F.conv2d`."""
    if x.ndim == 3:   # one unbatched image, as F.conv2d allows
        return conv2d(x[None], weight, bias, stride, padding)[0]
    _check_image_batch(x, 'conv2d'); check_conv_weight(x, weight, bias)
    ks = tuple(weight.shape[2:])
    stride,padding = as_pair(stride, 'stride'),as_pair(padding, 'padding')
    _check_geometry(x, ks, stride, padding, 'conv2d')
    cols = Im2Col.apply(x, ks, stride, padding)                  # (C_in*kh*kw, N*oh*ow)
    w = weight.reshape(weight.shape[0], -1)                       # (C_out, C_in*kh*kw)
    out = w @ cols if bias is None else torch.addmm(bias[:, None], w, cols)
    oh,ow = (conv_out_size(n, k, s, p) for n,k,s,p in zip(x.shape[2:], ks, stride, padding))
    return out.view(-1, x.shape[0], oh, ow).transpose(0, 1).contiguous()


class Lambda(nn.Module):
    """A layer that applies `func`: lets a plain function sit in `nn.Sequential`. Name the function
    (no lambda) so the model pickles."""
    def __init__(self, func):
        super().__init__()
        self.func = func
    def forward(self, x): return self.func(x)
    def extra_repr(self): return getattr(self.func, '__name__', repr(self.func))

def flatten(x):
    "(N, ...) -> (N, the rest): the pooled (N, C, 1, 1) maps become (N, C) for the linear layer."
    return x.view(x.shape[0], -1)

def mnist_resize(x):
    "Flat MNIST rows (N, 784) back to images (N, 1, 28, 28)."
    return x.view(-1, 1, 28, 28)


class DeviceCallback(Callback):
    """Moves the model to `device` (default `def_device`) when fitting starts; the Runner then
    sends every batch where the model is."""
    _order = -100   # first, so every other callback's begin_fit sees the model where it will train
    def __init__(self, device=None):
        self.device = torch.device(def_device if device is None else device)
    def begin_fit(self): self.model.to(self.device)

CudaCallback = DeviceCallback   # the course's name; here it moves to whichever device was picked


class BatchTransformXCallback(Callback):
    "Applies `tfm` to each batch's inputs, on the model's device, before the model sees them."
    _order = 2
    def __init__(self, tfm): self.tfm = tfm
    def begin_batch(self): self.run.xb = self.tfm(self.xb)

def view_tfm(*size):
    "A transform that views each batch as (-1, *size), e.g. view_tfm(1, 28, 28) for flat MNIST."
    def _inner(x): return x.view(-1, *size)
    _inner.__name__ = f"view_{'x'.join(map(str, size))}"
    return _inner

mnist_view = mnist_resize   # the course's name for it as a batch transform: view_tfm(1, 28, 28)


def get_runner(model, data, lr=0.6, cbs=None, opt_func=None, loss_func=F.cross_entropy):
    """A Learner for `model` and `data` with optimizer `opt_func` (default plain SGD) at rate `lr`,
    and a Runner. `cbs` may mix callback instances and callback factories (classes, partials)."""
    if opt_func is None: opt_func = optim.SGD
    learn = Learner(model, opt_func(model.parameters(), lr=lr), loss_func, data)
    cbs = listify(cbs)
    return learn, Runner(cbs=[c for c in cbs if isinstance(c, Callback)],
                         cb_funcs=[c for c in cbs if not isinstance(c, Callback)])


def get_cnn_layers(data, nfs, layer, **kwargs):
    """Convolutions `layer(n_in, n_out, ks, **kwargs)` with `nfs` filters (5x5 first, then 3x3),
    pooled to a linear head of `data.c`."""
    nfs = [1] + listify(nfs)
    return [layer(nfs[i], nfs[i+1], 5 if i == 0 else 3, **kwargs) for i in range(len(nfs)-1)] + [
        nn.AdaptiveAvgPool2d(1), Lambda(flatten), nn.Linear(nfs[-1], data.c)]

def get_cnn_model(data, nfs, layer, **kwargs):
    return nn.Sequential(*get_cnn_layers(data, nfs, layer, **kwargs))


class ListContainer():
    "A list that can also be indexed with a list of indices or a boolean mask, and prints briefly."
    def __init__(self, items): self.items = listify(items)
    def __getitem__(self, idx):
        if isinstance(idx, (int, slice)): return self.items[idx]
        idx = idx.tolist() if isinstance(idx, torch.Tensor) else list(idx)   # bool tensor: a mask
        if idx and isinstance(idx[0], bool):
            if len(idx) != len(self):
                raise IndexError(f"boolean mask of length {len(idx)} for {len(self)} items")
            return [o for m,o in zip(idx, self.items) if m]
        return [self.items[i] for i in idx]
    def __len__(self): return len(self.items)
    def __iter__(self): return iter(self.items)
    def __setitem__(self, i, o): self.items[i] = o
    def __delitem__(self, i): del self.items[i]
    def __repr__(self):
        res = f'{type(self).__name__} ({len(self)} items)\n{self.items[:10]}'
        return res[:-1] + '...]' if len(self) > 10 else res


class Hook():
    """Calls `f(hook, module, input, output)` after every forward pass of `m`, until removed: by
    `remove`, a `with` block's end, or deletion."""
    def __init__(self, m, f):
        if not isinstance(m, nn.Module):
            raise TypeError(f"Hook needs an nn.Module to watch, got {type(m).__name__}")
        ref = weakref.ref(self)   # _call, which the module keeps, must not keep the Hook alive
        def _call(mod, inp, outp):
            if (hook := ref()) is not None: f(hook, mod, inp, outp)
        self.hook = m.register_forward_hook(_call)
    def remove(self): self.hook.remove()          # removing twice is harmless
    def __enter__(self): return self
    def __exit__(self, *args): self.remove()
    def __del__(self):
        if hasattr(self, 'hook'): self.remove()

class Hooks(ListContainer):
    "One `Hook` with `f` per module in `ms`; all removed at a `with` block's end or on deletion."
    def __init__(self, ms, f): super().__init__([Hook(m, f) for m in ms])
    def __enter__(self): return self
    def __exit__(self, *args): self.remove()
    def __del__(self):
        if hasattr(self, 'items'): self.remove()   # not if __init__ failed before the list existed
    def __delitem__(self, i):
        self[i].remove()
        super().__delitem__(i)
    def remove(self):
        for h in self: h.remove()

def children(m):
    "The direct sub-modules of `m`, as a list."
    return list(m.children())


_HIST_BINS, _HIST_LO, _HIST_HI = 40, -7, 7   # activation histograms: 40 bins from -7 to 7

def _record_mean_std(hook, mod, outp, n_lists):
    "Start `hook.stats` as `n_lists` lists; in training, append the output's mean and std."
    if not hasattr(hook, 'stats'): hook.stats = tuple([] for _ in range(n_lists))
    if not mod.training: return None
    a = outp.detach()
    hook.stats[0].append(a.mean().cpu()); hook.stats[1].append(a.std().cpu())
    return a

def append_stats(hook, mod, inp, outp):
    "Forward hook: in training, append the output's mean and std to `hook.stats` = (means, stds)."
    _record_mean_std(hook, mod, outp, 2)

def append_hist_stats(hook, mod, inp, outp):
    """`append_stats` plus the output's histogram: `hook.stats` = (means, stds, hists)."""
    a = _record_mean_std(hook, mod, outp, 3)
    if a is not None: hook.stats[2].append(a.float().histc(_HIST_BINS, _HIST_LO, _HIST_HI).cpu())

def _hists(h, who):
    "The histogram counts recorded on `h`: bins x batches."
    if len(getattr(h, 'stats', ())) < 3:
        raise ValueError(f"{who}: the hook keeps no histograms; hook the module with "
                         "append_hist_stats instead of append_stats")
    return torch.stack(h.stats[2]).t().float()

def get_hist(h):
    "The hook's histograms as an image: bins x batches, log(1 + count) so sparse bins still show."
    return _hists(h, 'get_hist').log1p()

def near_zero_share(h):
    """Per batch, the share of activations in the two histogram bins next to 0 (|a| < 0.35):
    those that carry almost nothing."""
    counts = _hists(h, 'near_zero_share')
    mid = _HIST_BINS // 2
    return counts[mid-1:mid+1].sum(0) / counts.sum(0)

get_min = near_zero_share   # the course's name

def append_inactive(hook, mod, inp, outp):
    """Forward hook for an activation module (ReLU, GeneralRelu): in training, append to
    `hook.inactive` the share of its inputs that are <= 0, the units at the activation's floor."""
    if not hasattr(hook, 'inactive'): hook.inactive = []
    if mod.training: hook.inactive.append((inp[0].detach() <= 0).float().mean().cpu())

def inactive_share(h):
    "Per training batch, the share of inactive units recorded on `h` by `append_inactive`."
    if not getattr(h, 'inactive', None):
        raise ValueError("inactive_share: the hook recorded no training batch; attach "
                         "append_inactive to an activation module and train")
    return torch.stack(h.inactive)


class GeneralRelu(nn.Module):
    """ReLU with options: a `leak` slope for negative inputs, a shift down by `sub`, a ceiling
    `maxv`. No options: plain ReLU."""
    def __init__(self, leak=None, sub=None, maxv=None):
        super().__init__()
        self.leak,self.sub,self.maxv = leak,sub,maxv
    def forward(self, x):
        x = F.leaky_relu(x, self.leak) if self.leak is not None else F.relu(x)
        if self.sub is not None: x = x - self.sub
        if self.maxv is not None: x = x.clamp_max(self.maxv)
        return x

def conv_layer(ni, nf, ks=3, stride=2, **kwargs):
    "Conv (padding ks//2: with stride 2 the map halves) then GeneralRelu(**kwargs)."
    return nn.Sequential(nn.Conv2d(ni, nf, ks, padding=ks//2, stride=stride), GeneralRelu(**kwargs))


def init_cnn_(m, f):
    "Initialise every conv weight in `m`, however deep, with `f(weight, a=0.1)`; zero its bias."
    if isinstance(m, nn.Conv2d):
        f(m.weight, a=0.1)
        if m.bias is not None: m.bias.data.zero_()
    for l in m.children(): init_cnn_(l, f)

def init_cnn(m, uniform=False):
    "Kaiming init (He et al. 2015) of every conv in `m`, a=0.1 for GeneralRelu's leak; zero biases."
    init_cnn_(m, init.kaiming_uniform_ if uniform else init.kaiming_normal_)

def get_learn_run(nfs, data, lr, layer, cbs=None, opt_func=None, uniform=False, model_func=None,
                  **kwargs):
    """A CNN from `model_func(data, nfs, layer, **kwargs)` (default `get_cnn_model`),
    Kaiming-initialised, with its Learner and Runner. A later notebook with its own model builder
    passes it as `model_func`."""
    model = (model_func or get_cnn_model)(data, nfs, layer, **kwargs)
    init_cnn(model, uniform=uniform)
    return get_runner(model, data, lr=lr, cbs=cbs, opt_func=opt_func)


def normalize_to(train, valid):
    "`train` and `valid` both normalized with `train`'s mean and std (the course's 06 name)."
    m,s = train.mean(),train.std()
    return normalize(train, m, s),normalize(valid, m, s)

def nb_auto_export():
    "The course's Jupyter helper that exported a notebook on save; notebook2script.py does it here."
    print("nb_auto_export does nothing here: export a notebook with "
          "`python notebook2script.py nbs/NN_name.ipynb`")


# What `from exp.nb_06 import *` gives (generated by notebook2script.py;
# a name bound only in a branch not taken is left out).
from exp.nb_05b import __all__ as _all_nb_05b
__all__ = _all_nb_05b + [
    'optim', 'as_pair', 'conv_out_size', 'Im2Col', 'col2im', 'unfold', 'check_conv_weight',
    'conv2d', 'Lambda', 'flatten', 'mnist_resize', 'DeviceCallback', 'CudaCallback',
    'BatchTransformXCallback', 'view_tfm', 'mnist_view', 'get_runner', 'get_cnn_layers',
    'get_cnn_model', 'ListContainer', 'Hook', 'Hooks', 'children', 'append_stats',
    'append_hist_stats', 'get_hist', 'near_zero_share', 'get_min', 'append_inactive',
    'inactive_share', 'GeneralRelu', 'conv_layer', 'init_cnn_', 'init_cnn', 'get_learn_run',
    'normalize_to', 'nb_auto_export'
]
__all__ = [_name for _name in dict.fromkeys(__all__) if _name in globals()]
