# Generated from nbs/08_data_block.ipynb by notebook2script.py:
# edit the notebook, not this file.


from exp.nb_07a import *
import collections, concurrent.futures, math, mimetypes, multiprocessing, os
from pathlib import Path
import numpy as np
import PIL.Image
import matplotlib.pyplot as plt


Path.ls = lambda self: sorted(self.iterdir())   # the course adds this to Path, for browsing
image_extensions = {ext for ext, kind in mimetypes.types_map.items() if kind.startswith('image/')}

def setify(o):
    "`o` as a set: None -> empty, a set as is, a string as one element, a collection its elements."
    return o if isinstance(o, set) else set(listify(o))

def _get_files(folder, names, extensions):
    "Paths of the `names` in `folder` not hidden and (if `extensions`) with one of them, sorted."
    def wanted(n): return not extensions or os.path.splitext(n)[1].lower() in extensions
    return [folder/n for n in sorted(names) if not n.startswith('.') and wanted(n)]


def get_files(path, extensions=None, recurse=False, include=None):
    "Sorted files in `path` with one of `extensions`; `recurse`: sub-folders too (top: `include`)."
    path, extensions = Path(path), {e.lower() for e in setify(extensions)}
    if not path.is_dir(): raise FileNotFoundError(f'get_files: {path} is not a folder')
    if not recurse:
        return _get_files(path, [e.name for e in os.scandir(path) if e.is_file()], extensions)
    res = []
    for depth, (folder, dirs, names) in enumerate(os.walk(path)):
        if include is not None and depth == 0: keep = lambda d: d in include
        else: keep = lambda d: not d.startswith('.')
        dirs[:] = sorted(d for d in dirs if keep(d))   # os.walk descends into these, in this order
        res += _get_files(Path(folder), names, extensions)
    return res


def compose(x, funcs, *args, order_key='_order', **kwargs):
    "Apply each of `funcs` to `x` in turn, sorted by their `order_key` attribute (default 0)."
    for f in sorted(listify(funcs), key=lambda f: getattr(f, order_key, 0)):
        x = f(x, *args, **kwargs)
    return x

class ItemList(ListContainer):
    "Items (often file paths) under `path`; `il[i]` is `get(item)` through `tfms` (see `compose`)."
    def __init__(self, items, path='.', tfms=None):
        super().__init__(items)
        self.path, self.tfms = Path(path), tfms
    def __repr__(self): return f'{super().__repr__()}\nPath: {self.path}'
    def new(self, items, cls=None): return (cls or type(self))(items, self.path, tfms=self.tfms)
    def get(self, i): return i
    def _get(self, i): return compose(self.get(i), self.tfms)
    def __getitem__(self, idx):
        res = super().__getitem__(idx)
        return [self._get(o) for o in res] if isinstance(res, list) else self._get(res)


class ImageList(ItemList):
    "An ItemList of image files: `get` opens one as a PIL image."
    @classmethod
    def from_files(cls, path, extensions=None, recurse=True, include=None, **kwargs):
        if extensions is None: extensions = image_extensions
        return cls(get_files(path, extensions, recurse, include), path, **kwargs)
    def get(self, fn):
        img = PIL.Image.open(fn)
        img.load()   # decode now: Pillow then closes the file, not at garbage collection
        return img


class Transform():
    "Base class of the transforms that are classes: an item in, an item out; runs at its `_order`."
    _order = 0

def make_rgb(item):
    "Convert a PIL image to 3-channel RGB (a grey image gets its one channel copied three times)."
    return item.convert('RGB')

class ResizeFixed(Transform):
    "Resize a PIL image to `size` (an int for a square, or (width, height)), bilinear."
    _order = 10
    def __init__(self, size): self.size = (size, size) if isinstance(size, int) else tuple(size)
    def __call__(self, item): return item.resize(self.size, PIL.Image.BILINEAR)


def to_byte_tensor(item):
    "A PIL image with 8 bits per channel as a uint8 tensor (C, H, W), channels first."
    a = np.asarray(item)
    if a.dtype != np.uint8:
        raise ValueError(f'to_byte_tensor: image mode {item.mode} has {a.dtype} pixels, '
                         'not 8-bit ones; convert it first (make_rgb, or .convert("L"))')
    return torch.from_numpy((a[..., None] if a.ndim == 2 else a).transpose(2, 0, 1).copy())
to_byte_tensor._order = 20

def to_float_tensor(item):
    "A uint8 tensor as floats in [0, 1]."
    return item.float().div_(255.)
to_float_tensor._order = 30


def grandparent_splitter(fn, valid_name='valid', train_name='train'):
    "True (validation) if `fn`'s grandparent is `valid_name`, False if `train_name`, else None."
    gp = Path(fn).parent.parent.name
    return True if gp == valid_name else False if gp == train_name else None

def split_by_func(items, f):
    "(items where f is False, items where f is True); items where f gives None are in neither."
    mask = [f(o) for o in items]
    def side(want): return [o for o, m in zip(items, mask) if m is want]
    return side(False), side(True)


class SplitData():
    "A training and a validation list; other attributes are the training list's."
    def __init__(self, train, valid): self.train, self.valid = train, valid
    def __getattr__(self, k): return getattr(self.train, k)
    # unpickling must not call __getattr__ on an object without its attributes yet
    def __setstate__(self, data): self.__dict__.update(data)
    @classmethod
    def split_by_func(cls, il, f):
        train, valid = split_by_func(il.items, f)
        if not train or not valid:
            seen = sorted({Path(o).parent.parent.name for o in il.items})
            raise ValueError(f'split_by_func gave {len(train)} training and {len(valid)} '
                             'validation items; check the folder names the splitter expects '
                             f'(grandparents seen: {seen})')
        return cls(il.new(train), il.new(valid))
    def __repr__(self): return f'{type(self).__name__}\nTrain: {self.train}\nValid: {self.valid}\n'


def uniqueify(x, sort=False):
    "The distinct elements of `x` in order of first appearance (sorted if `sort`)."
    res = list(dict.fromkeys(x))
    if sort: res.sort()
    return res

class Processor():
    "Changes a whole list of items at once (see CategoryProcessor); this one leaves them as is."
    def __call__(self, items): return self.process(items)
    def process(self, items): return items


class CategoryProcessor(Processor):
    "Labels to class numbers: the vocabulary (sorted distinct labels) is learned on the first call."
    def __init__(self): self.vocab = None
    def __call__(self, items):
        if self.vocab is None:
            self.vocab = uniqueify(items, sort=True)
            self.otoi = {v: k for k, v in enumerate(self.vocab)}
        return [self.proc1(o) for o in items]
    def proc1(self, item):
        try: return self.otoi[item]
        except KeyError:
            raise ValueError(f'CategoryProcessor: label {item!r} is not in the vocabulary learned '
                             f'from the training set: {self.vocab}') from None
    def deprocess(self, idxs): return [self.deproc1(i) for i in idxs]
    def deproc1(self, idx):
        if self.vocab is None:
            raise ValueError('CategoryProcessor: call it on the training labels first')
        if not 0 <= idx < len(self.vocab):
            raise IndexError(f'class number {idx} is outside 0..{len(self.vocab)-1}')
        return self.vocab[idx]


def parent_labeler(fn):
    "The label of a file is the name of its folder."
    return Path(fn).parent.name

def _label_by_func(ds, f, cls=ItemList): return cls([f(o) for o in ds.items], path=ds.path)

def _deprocess(items, idx, procs):
    "items[idx] with the processors undone, last one first."
    if torch.is_tensor(idx) and idx.ndim == 0: idx = int(idx)   # a list takes no 0-d tensor index
    item = items[idx]
    one = isinstance(idx, int)
    for proc in reversed(listify(procs)): item = proc.deproc1(item) if one else proc.deprocess(item)
    return item


class LabeledData():
    "Inputs `x` and targets `y` (ItemLists), each processed once; `ld[i]` is (x[i], y[i])."
    def __init__(self, x, y, proc_x=None, proc_y=None):
        if len(x) != len(y): raise ValueError(f'LabeledData: {len(x)} inputs but {len(y)} labels')
        self.x, self.y = self.process(x, proc_x), self.process(y, proc_y)
        self.proc_x, self.proc_y = proc_x, proc_y
    def process(self, il, proc): return il.new(compose(il.items, proc))
    def __repr__(self): return f'{type(self).__name__}\nx: {self.x}\ny: {self.y}\n'
    def __getitem__(self, idx): return self.x[idx], self.y[idx]
    def __len__(self): return len(self.x)
    def x_obj(self, idx): return _deprocess(self.x, idx, self.proc_x)
    def y_obj(self, idx): return _deprocess(self.y, idx, self.proc_y)
    @classmethod
    def label_by_func(cls, il, f, proc_x=None, proc_y=None):
        return cls(il, _label_by_func(il, f), proc_x=proc_x, proc_y=proc_y)

def label_by_func(split, f, proc_x=None, proc_y=None):
    "Label both halves of the SplitData `split` with `f`; processors learn on the training half."
    return SplitData(LabeledData.label_by_func(split.train, f, proc_x=proc_x, proc_y=proc_y),
                     LabeledData.label_by_func(split.valid, f, proc_x=proc_x, proc_y=proc_y))


_WORKER = None   # in a worker process: (dataset, collate_fn), set once when it starts

def _init_worker(ds, collate_fn):
    torch.set_num_threads(1)   # the workers share the cores: one thread each
    global _WORKER
    _WORKER = ds, collate_fn

def _make_batch(idxs):
    "The batch for the indices `idxs`, made in a worker from its dataset; packed to travel."
    ds, collate_fn = _WORKER
    if collate_fn is None: return _pack(ds[torch.tensor(idxs)])
    return _pack(collate_fn([ds[i] for i in idxs]))

def _pool(n, ds, collate_fn):
    "`n` worker processes holding `ds` and `collate_fn` (started by fork where the system has it)."
    has_fork = 'fork' in multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context('fork' if has_fork else None)
    return concurrent.futures.ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_worker,
                                                  initargs=(ds, collate_fn))


class _AsNumpy:
    "A tensor on its way from a worker, as a NumPy array (pickled as plain bytes)."
    def __init__(self, a): self.a = a

def _pack(b):
    "Tensors in `b` (also in tuples, lists and dicts) as _AsNumpy; dtypes NumPy lacks stay tensors."
    if torch.is_tensor(b):
        try: return _AsNumpy(b.detach().cpu().numpy())
        except TypeError: return b   # bfloat16, say
    if type(b) in (tuple, list): return type(b)(_pack(o) for o in b)
    if type(b) is dict: return {k: _pack(v) for k, v in b.items()}
    return b

def _unpack(b):
    "`_pack` undone: each _AsNumpy back to a tensor sharing its memory."
    if isinstance(b, _AsNumpy): return torch.from_numpy(b.a)
    if type(b) in (tuple, list): return type(b)(_unpack(o) for o in b)
    if type(b) is dict: return {k: _unpack(v) for k, v in b.items()}
    return b


def _parallel_batches(ds, collate_fn, batch_sampler, n_workers):
    "Yield the batches for `batch_sampler`'s index lists, in order, made by `n_workers` processes."
    pool, pending = _pool(n_workers, ds, collate_fn), collections.deque()
    try:
        for idxs in batch_sampler:
            pending.append(pool.submit(_make_batch, torch.as_tensor(idxs).tolist()))
            if len(pending) > 2 * n_workers: yield _unpack(pending.popleft().result())
        while pending: yield _unpack(pending.popleft().result())
    finally: pool.shutdown(wait=True, cancel_futures=True)

class DataLoader(DataLoader):
    "03's DataLoader plus `num_workers`: that many processes make the batches, in the same order."
    def __init__(self, ds, bs=None, shuffle=False, sampler=None, collate_fn=None, drop_last=False,
                 *, num_workers=0, **kwargs):
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError('DataLoader: num_workers must be an integer >= 0, '
                             f'got {num_workers!r}')
        super().__init__(ds, bs, shuffle, sampler, collate_fn, drop_last, **kwargs)
        self.num_workers = num_workers
    def __iter__(self):
        if self.num_workers == 0: return super().__iter__()
        return _parallel_batches(self.ds, self.collate_fn, self.batch_sampler, self.num_workers)


def collate(b):
    "Stack a list of (x, y) pairs into (xb, yb); numbers rather than tensors become one tensor."
    xs, ys = zip(*b)
    stack = lambda v: torch.stack(v) if torch.is_tensor(v[0]) else torch.tensor(v)
    return stack(xs), stack(ys)


class DataBunch(DataBunch):
    "04's DataBunch, also told the number of input channels `c_in`; `c_out` is 04's `c`."
    def __init__(self, train_dl, valid_dl, c_in=None, c_out=None):
        super().__init__(train_dl, valid_dl, c=c_out)
        self.c_in = c_in
    c_out = property(lambda self: self.c)

def databunchify(split, bs, c_in=None, c_out=None, **kwargs):
    "Loaders for the labelled SplitData `split`: shuffled training batches of `bs`, valid `2*bs`."
    return DataBunch(DataLoader(split.train, bs, shuffle=True, collate_fn=collate, **kwargs),
                     DataLoader(split.valid, bs*2, collate_fn=collate, **kwargs),
                     c_in=c_in, c_out=c_out)

SplitData.to_databunch = databunchify


def show_image(im, ax=None, figsize=(3, 3), title=None):
    "Draw the image tensor `im` (C, H, W), channels last for matplotlib; one channel in grey."
    if ax is None: _, ax = plt.subplots(figsize=figsize)
    im = im.detach().cpu().permute(1, 2, 0).numpy()
    ax.imshow(im[..., 0] if im.shape[-1] == 1 else im, cmap='gray_r' if im.shape[-1] == 1 else None)
    ax.set_axis_off()
    if title is not None: ax.set_title(title, fontsize=9)

def show_batch(x, c=4, r=None, figsize=None, labels=None):
    "The first `c*r` images of the batch `x` in `r` rows of `c`, titled by `labels` if given."
    n = min(len(x), c * (r or math.ceil(len(x) / c)))
    r = math.ceil(n / c)
    _, axes = plt.subplots(r, c, figsize=figsize or (1.6*c, 1.8*r), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < n: show_image(x[i], ax, title=None if labels is None else labels[i])
        else: ax.set_axis_off()


def normalize_chan(x, mean, std):
    "(x - mean) / std per channel of the image batch `x` (N, C, H, W); `mean`, `std` have C values."
    return (x - mean[..., None, None]) / std[..., None, None]

def channel_stats(dl, n_batches=10):
    "Mean and standard deviation of each channel over the first `n_batches` batches of `dl`."
    xs = torch.cat([xb for (xb, _), _ in zip(dl, range(n_batches))])
    return xs.mean((0, 2, 3)), xs.std((0, 2, 3))


def prev_pow_2(x):
    "The largest power of 2 that is at most `x`."
    return 2**math.floor(math.log2(x))

def get_cnn_layers(data, nfs, layer, **kwargs):
    "3x3 `layer`s sized from `data.c_in`, then `nfs` (stride 2), pooled, linear to `data.c_out`."
    def f(ni, nf, stride=2): return layer(ni, nf, 3, stride=stride, **kwargs)
    l1 = data.c_in
    l2 = prev_pow_2(l1*3*3)
    layers = [f(l1, l2, stride=1), f(l2, l2*2), f(l2*2, l2*4)]
    nfs = [l2*4] + listify(nfs)
    layers += [f(nfs[i], nfs[i+1]) for i in range(len(nfs)-1)]
    return layers + [nn.AdaptiveAvgPool2d(1), Lambda(flatten), nn.Linear(nfs[-1], data.c_out)]


def get_cnn_model(data, nfs, layer, **kwargs):
    return nn.Sequential(*get_cnn_layers(data, nfs, layer, **kwargs))

_get_learn_run_06 = get_learn_run

def get_learn_run(nfs, data, lr, layer, **kwargs):
    "06's `get_learn_run`, with this notebook's `get_cnn_model` (sized from `data.c_in`)."
    return _get_learn_run_06(nfs, data, lr, layer, model_func=get_cnn_model, **kwargs)


def get_batch(dl, run):
    "One batch of `dl`, after the runner's callbacks' `begin_batch` (on the device, transformed)."
    run.xb, run.yb = next(iter(dl))
    for cb in run.cbs: cb.set_runner(run)
    run('begin_batch')
    return run.xb, run.yb

def model_summary(run, learn, data, find_all=False):
    "Print each layer of `learn.model` (all linear/conv ones if `find_all`) and its output's shape."
    xb, _ = get_batch(data.valid_dl, run)
    xb = xb.to(next(learn.model.parameters()).device)   # the model may not be on the device yet
    mods = find_modules(learn.model, is_lin_layer) if find_all else learn.model.children()
    training, _ = learn.model.training, learn.model.eval()   # eval: BatchNorm's statistics stay
    def show(hook, mod, inp, out): print(f'{mod}\n  -> {tuple(out.shape)}\n')
    try:
        with Hooks(mods, show), torch.no_grad(): learn.model(xb)
    finally: learn.model.train(training)


# What `from exp.nb_08 import *` gives (generated by notebook2script.py;
# a name bound only in a branch not taken is left out).
from exp.nb_07a import __all__ as _all_nb_07a
__all__ = _all_nb_07a + [
    'math', 'Path', 'plt', 'image_extensions', 'setify', 'get_files', 'compose', 'ItemList',
    'ImageList', 'Transform', 'make_rgb', 'ResizeFixed', 'to_byte_tensor', 'to_float_tensor',
    'grandparent_splitter', 'split_by_func', 'SplitData', 'uniqueify', 'Processor',
    'CategoryProcessor', 'parent_labeler', 'LabeledData', 'label_by_func', 'DataLoader',
    'collate', 'DataBunch', 'databunchify', 'show_image', 'show_batch', 'normalize_chan',
    'channel_stats', 'prev_pow_2', 'get_cnn_layers', 'get_cnn_model', 'get_learn_run',
    'get_batch', 'model_summary'
]
__all__ = [_name for _name in dict.fromkeys(__all__) if _name in globals()]
