# Generated from nbs/11a_transfer_learning.ipynb by notebook2script.py:
# edit the notebook, not this file.


from exp.nb_11 import *
import nbio
from functools import partial
from pathlib import Path
from types import SimpleNamespace


def class_subset(x, y, classes, n_per_class=None, seed=0):
    """The items of (x, y) whose label is one of `classes`, relabelled 0..len(classes)-1 in that
    order, kept in their original order; `n_per_class` of each class drawn at random with `seed`
    (all if None)."""
    classes = listify(classes)
    if not classes or len(set(classes)) != len(classes):
        raise ValueError('class_subset: classes must be distinct labels, at least one; '
                         f'got {classes}')
    g, idxs = torch.Generator().manual_seed(seed), []
    for c in classes:
        idx = (y == c).nonzero().flatten()
        n = len(idx) if n_per_class is None else n_per_class
        if len(idx) == 0 or len(idx) < n:
            asked = n_per_class or "at least one"
            raise ValueError(f'class_subset: class {c} has {len(idx)} items, {asked} asked for')
        if n_per_class is not None: idx = idx[torch.randperm(len(idx), generator=g)[:n]]
        idxs.append(idx)
    idx = torch.cat(idxs).sort().values
    relabel = {c: i for i, c in enumerate(classes)}
    return x[idx], torch.tensor([relabel[int(c)] for c in y[idx]], dtype=torch.long)


def fashion_classes_databunch(classes, n_per_class=None, n_valid=None, bs=64, seed=0):
    """Fashion-MNIST's `classes` only, labels renumbered 0..k-1, images (N, 1, 28, 28) in [0, 1]:
    `n_per_class` training images of each class (drawn with `seed`; all if None); the first
    `n_valid` test images of them to validate."""
    x_train, y_train, x_test, y_test = get_fashion_mnist()
    xt, yt = class_subset(x_train, y_train, classes, n_per_class, seed)
    xv, yv = class_subset(x_test, y_test, classes)
    img = lambda x: to_float_tensor(x[:, None])   # 08's bytes -> [0, 1], with a channel axis
    return images_databunch(img(xt), yt, img(xv[:n_valid]), yv[:n_valid], bs=bs, c_out=len(classes))


def save_model(model, path, overwrite=False):
    """Save `model.state_dict()` to `path` (folders made as needed); an existing file is replaced
    only if `overwrite`, and stays as it was if the write fails."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f'save_model: {path} exists; pass overwrite=True to replace it')
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with nbio.atomic_open(path) as f:   # the file at `path` is the old one or the whole new one
            torch.save(model.state_dict(), f)
    except OSError as e:   # a read-only folder, a full disk: its error names the temporary file
        raise os_error_like(e, f'save_model: cannot write {path} ({e.strerror or e}); any '
                            'file already there is unchanged') from e
    return path

def load_model(model, path):
    """Copy the weights `save_model` wrote to `path` into `model` (the same architecture, on any
    device); returns `model`."""
    path = Path(path)
    state = _read_weights(path)
    try: model.load_state_dict(state)
    except RuntimeError as e:
        raise RuntimeError(f"load_model: the weights in {path} don't fit this "
                           f"{type(model).__name__}: {e}") from None
    return model


def _read_weights(path):
    """The state_dict in the file at `path`, read as 09b reads checkpoints. A file that holds
    something else raises an error naming it and saying what it holds."""
    state = load_torch_file(path, 'load_model', 'weights file')   # 09b's
    if not isinstance(state, dict):
        raise ValueError(f'load_model: {path} holds a {type(state).__name__}, not a state_dict '
                         '(a dict of named tensors, as save_model writes)')
    bad = [repr(k) for k, v in state.items() if not torch.is_tensor(v)]
    if bad:
        raise ValueError(f"load_model: {path} holds a dict with entries that are not tensors: "
                         f"{', '.join(bad[:3])}; a checkpoint of more than weights?")
    return state


class AdaptiveConcatPool2d(nn.Module):
    """Adaptive max pooling and adaptive average pooling to `sz`, concatenated on the channels:
    (N, 2C, sz, sz)."""
    def __init__(self, sz=1):
        super().__init__()
        self.output_size = sz
        self.ap, self.mp = nn.AdaptiveAvgPool2d(sz), nn.AdaptiveMaxPool2d(sz)
    def forward(self, x): return torch.cat([self.mp(x), self.ap(x)], 1)


def body_cut(model):
    """The index of `model`'s first adaptive pooling child: the children before it are the body
    that makes the features."""
    pools = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, AdaptiveConcatPool2d)
    for i, o in enumerate(model.children()):
        if isinstance(o, pools): return i
    raise ValueError(f'body_cut: {type(model).__name__} has no adaptive pooling child, '
                     'so where its body ends is unknown')

def adapt_model(learn, data):
    """Give `learn` a model made of its model's body and a new head (concat pooling, linear) for
    `data.c_out` classes."""
    body = nn.Sequential(*list(learn.model.children())[:body_cut(learn.model)])
    device = model_device(body)
    xb = get_batch(data.valid_dl, learn)[0].to(device)
    training = body.training
    body.eval()   # a probe for the shape: BatchNorm's running statistics stay as they are
    with torch.no_grad(): ni = body(xb).shape[1]
    body.train(training)
    head = [AdaptiveConcatPool2d(), Flatten(), nn.Linear(ni*2, data.c_out)]
    learn.model = nn.Sequential(body, *head).to(device)


def apply_mod(m, f):
    """Call `f` on `m`, then on each module inside it, parents first (what `m.apply(f)` does,
    children first)."""
    f(m)
    for l in m.children(): apply_mod(l, f)

def _set_requires_grad(params, b):
    for p in params:
        p.requires_grad_(b)
        if not b: p.grad = None   # else the optimizer would still step it (weight decay, momentum)

def set_grad(m, b):
    """Let the parameters `m` holds itself train (`b`) or not, unless `m` is a linear or
    normalization layer."""
    if isinstance(m, (nn.Linear,) + bn_types): return
    _set_requires_grad(m.parameters(recurse=False), b)

def freeze(model, train_bn=True):
    """Stop the body `model[0]` of an adapted model from training; its normalization layers still
    train if `train_bn`."""
    if train_bn: apply_mod(model[0], partial(set_grad, b=False))
    else: _set_requires_grad(model[0].parameters(), False)

def unfreeze(model):
    "Let every parameter of `model` train."
    _set_requires_grad(model.parameters(), True)


def bn_splitter(m):
    """Two param groups for an adapted model: the body's weights except normalization layers';
    those and the head's."""
    body, rest = [], []
    for l in m[0].modules():
        (rest if isinstance(l, bn_types) else body).extend(l.parameters(recurse=False))
    return body, rest + list(m[1:].parameters())


cb_types = SimpleNamespace(**{o: o for o in Learner.events})

class DebugCallback(Callback):
    "At event `cb_name`, call `f(runner)`, or with no `f` open the debugger there."
    _order = 999
    def __init__(self, cb_name, f=None): self.cb_name, self.f = cb_name, f
    def __call__(self, cb_name):
        if cb_name != self.cb_name: return False
        if self.f: self.f(self.run)
        else: breakpoint()
        return False


# What `from exp.nb_11a import *` gives (generated by notebook2script.py;
# a name bound only in a branch not taken is left out).
from exp.nb_11 import __all__ as _all_nb_11
__all__ = _all_nb_11 + [
    'partial', 'Path', 'SimpleNamespace', 'class_subset', 'fashion_classes_databunch',
    'save_model', 'load_model', 'AdaptiveConcatPool2d', 'body_cut', 'adapt_model', 'apply_mod',
    'set_grad', 'freeze', 'unfreeze', 'bn_splitter', 'cb_types', 'DebugCallback'
]
__all__ = [_name for _name in dict.fromkeys(__all__) if _name in globals()]
