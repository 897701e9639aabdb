# Generated from nbs/08_data_block.ipynb by notebook2script.py:
# edit the notebook, not this file.


from exp.nb_07a import *
import collections, concurrent.futures.process, contextlib, math, mimetypes, multiprocessing
import os, random, warnings
from pathlib import Path
import numpy as np
import PIL.Image
import matplotlib.pyplot as plt


Path.ls = lambda self: sorted(self.iterdir())   # the course adds this to Path, for browsing
image_extensions = {ext for ext, kind in mimetypes.types_map.items() if kind.startswith('image/')}

def setify(o):
    "`o` as a set: None -> empty, a set as is, a string as one element, a collection its elements."
    return o if isinstance(o, set) else set(listify(o))

def _extension(e):
    "The extension `e` in lower case with its dot ('png' -> '.png'); refused if no name ends in it."
    ext = '.' + e.lower().removeprefix('.')
    if len(ext) == 1 or os.path.splitext('name' + ext)[1] != ext:
        raise ValueError(f"get_files: extension {e!r} can never match: a file's extension is what "
                         "follows the last dot of its name, like '.png' (the dot may be left out)")
    return ext

def _get_files(folder, names, extensions):
    "Paths of the `names` in `folder` not hidden and (if `extensions`) with one of them, sorted."
    def wanted(n): return not extensions or os.path.splitext(n)[1].lower() in extensions
    return [folder/n for n in sorted(names) if not n.startswith('.') and wanted(n)]


def get_files(path, extensions=None, recurse=False, include=None):
    "Sorted files in `path` with one of `extensions`; `recurse`: sub-folders too (top: `include`)."
    path, extensions = Path(path), {_extension(e) for e in setify(extensions)}
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


def from_palette(img):
    "A palette image (mode P or PA) as the colours it shows (RGBA if it has transparency)."
    if img.mode not in ('P', 'PA'): return img
    return img.convert('RGBA' if img.mode == 'PA' or 'transparency' in img.info else 'RGB')

def open_image(fn):
    "The image in the file `fn`, decoded now (Pillow then closes the file); palettes as colours."
    img = PIL.Image.open(fn)   # Pillow's error names `fn` if it cannot tell what the file holds
    try: img.load()
    except (OSError, SyntaxError) as e:   # a truncated or corrupt file
        img.close()
        raise OSError(f'cannot decode the image file {fn}: {e}') from e
    return from_palette(img)

def image_channels(x):
    "The number of channels of a PIL image or an image tensor (C, H, W); None for anything else."
    if isinstance(x, PIL.Image.Image): return len(x.getbands())
    if torch.is_tensor(x) and x.ndim == 3: return x.shape[0]


class ImageList(ItemList):
    "An ItemList of image files: `get` opens one (`open_image`); all must give as many channels."
    @classmethod
    def from_files(cls, path, extensions=None, recurse=True, include=None, **kwargs):
        if extensions is None: extensions = image_extensions
        return cls(get_files(path, extensions, recurse, include), path, **kwargs)
    def get(self, fn): return open_image(fn)
    def _get(self, fn):
        x = super()._get(fn)
        self._same_channels(fn, image_channels(x))
        return x
    def _same_channels(self, fn, c):
        "Refuse `c` channels from `fn` if the first image this process saw gave another number."
        first, c0 = self.__dict__.setdefault('first_seen', (fn, c))
        if c == c0: return
        c0 = image_channels(super()._get(first))   # again, as `tfms` may have changed since
        if c != c0:
            raise ValueError(f'ImageList: {fn} gives {c} channels, but {first} gave {c0}: the '
                             'images mix kinds (grey and colour, say); add make_rgb to tfms to '
                             'give every one 3 channels')
        self.first_seen = first, c0


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
    a = np.asarray(from_palette(item))
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


_WORKER = None   # in a worker process: (dataset, collate_fn, busy, its slot), set when it starts

def _init_worker(ds, collate_fn, busy, n_started):
    torch.set_num_threads(1)   # the workers share the cores: one thread each
    with n_started.get_lock(): slot, n_started.value = n_started.value, n_started.value + 1
    global _WORKER
    _WORKER = ds, collate_fn, busy, slot

def draw_seed():
    "A seed drawn from torch's random state in this process (so `torch.manual_seed` fixes it)."
    return torch.empty((), dtype=torch.int64).random_().item()

def batch_seed(base, k):
    "The seed of batch `k` in a pass whose base seed is `base`: one per batch, whoever makes it."
    return (base + k) % 2**63

def seed_worker(seed):
    """Seed torch's CPU generator, Python's `random` and NumPy's global one with `seed`. Not CUDA's:
    a forked worker cannot use CUDA, and `torch.manual_seed`, which seeds it too, is much slower."""
    torch.default_generator.manual_seed(seed); random.seed(seed); np.random.seed(seed % 2**32)

def _make_batch(k, idxs, seed):
    """Batch `k` for the indices `idxs`, made in a worker from the random state `seed` and packed
    to travel; `busy` shows which worker makes it."""
    ds, collate_fn, busy, slot = _WORKER
    busy[slot] = k
    seed_worker(seed)
    b = _pack(_batch(ds, collate_fn, k, idxs))
    busy[slot] = -1
    return b

def _pool(n, ds, collate_fn):
    """`n` worker processes holding `ds` and `collate_fn` (started by fork where the system has it),
    and `busy`, shared with them: the batch each one is making (-1: none)."""
    has_fork = 'fork' in multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context('fork' if has_fork else None)
    busy, n_started = ctx.Array('q', [-1] * n, lock=False), ctx.Value('i', 0)
    pool = concurrent.futures.ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_worker,
                                                  initargs=(ds, collate_fn, busy, n_started))
    return pool, busy


def _items(idxs):
    "The item indices `idxs` in a few words: all of them up to 4, else the first 3 and the last."
    return 'items ' + ', '.join(map(str, idxs if len(idxs) <= 4 else [*idxs[:3], '...', idxs[-1]]))

@contextlib.contextmanager
def _noting(where):
    "An error raised inside gets the note `where()` (shown below its message, Python 3.11+)."
    try: yield
    except Exception as e:
        if hasattr(e, 'add_note'): e.add_note(f'in a DataLoader worker: {where()}')
        raise

def _batch(ds, collate_fn, k, idxs):
    "Batch `k` for the list of indices `idxs`; an error is noted with the item, or batch, at fault."
    if collate_fn is None:
        with _noting(lambda: f'indexing the dataset for batch {k} ({_items(idxs)})'):
            return ds[torch.tensor(idxs)]
    items = []
    with _noting(lambda: f'item {idxs[len(items)]} (batch {k})'):   # the one that did not come
        for i in idxs: items.append(ds[i])
    with _noting(lambda: f'collate_fn, batch {k} ({_items(idxs)})'): return collate_fn(items)


def _tree_map(f, b, leaf=torch.is_tensor):
    "`b` with `f` applied to each part that is a `leaf`, also inside tuples, lists and dicts."
    if leaf(b): return f(b)
    if type(b) in (tuple, list): return type(b)(_tree_map(f, o, leaf) for o in b)
    if type(b) is dict: return {k: _tree_map(f, v, leaf) for k, v in b.items()}
    return b

class _AsNumpy:
    "A tensor on its way from a worker, as a NumPy array (pickled as plain bytes)."
    def __init__(self, a): self.a = a

def _pack1(t):
    try: return _AsNumpy(t.detach().cpu().numpy())
    except TypeError: return t   # bfloat16, say

def _pack(b):
    "Tensors in `b` (also in tuples, lists and dicts) as _AsNumpy; dtypes NumPy lacks stay tensors."
    return _tree_map(_pack1, b)

def _unpack(b):
    "`_pack` undone: each _AsNumpy back to a tensor sharing its memory."
    return _tree_map(lambda o: torch.from_numpy(o.a), b, leaf=lambda o: isinstance(o, _AsNumpy))


def _result(pending, busy):
    "The first of the `pending` (k, idxs, future) batches; if a worker died, which batch it made."
    k, idxs, future = pending.popleft()
    try: return _unpack(future.result())
    except concurrent.futures.process.BrokenProcessPool as e:
        asked = {k: idxs, **{j: ix for j, ix, _ in pending}}
        made = [f'batch {j} ({_items(asked[j])})' for j in sorted(busy) if j in asked]
        raise concurrent.futures.process.BrokenProcessPool(
            'DataLoader: a worker process died (killed, out of memory, or crashed outside Python) '
            f"while making {' or '.join(made) or 'no batch'} of this pass") from e

def _parallel_batches(ds, collate_fn, seeded, n_workers):
    """Yield the batches for the (number, index list, seed) triples of `seeded`, in order, made by
    `n_workers` processes."""
    (pool, busy), pending = _pool(n_workers, ds, collate_fn), collections.deque()
    try:
        for k, idxs, seed in seeded:
            idxs = torch.as_tensor(idxs).tolist()
            pending.append((k, idxs, pool.submit(_make_batch, k, idxs, seed)))
            if len(pending) > 2 * n_workers: yield _result(pending, busy)
        while pending: yield _result(pending, busy)
    finally: pool.shutdown(wait=True, cancel_futures=True)


WORKERS_PER_CPU = 4

def usable_cpus():
    "How many CPUs this process may run on (its affinity mask where the system has one)."
    if hasattr(os, 'sched_getaffinity'): return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1

def check_num_workers(n):
    "Refuse an `n` that is no whole number from 0 to WORKERS_PER_CPU per CPU; warn above 1 per CPU."
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f'DataLoader: num_workers must be an integer >= 0, got {n!r}')
    cpus = usable_cpus()
    cap = WORKERS_PER_CPU * cpus
    if n > cap:
        raise ValueError(f'DataLoader: num_workers={n} is too many for the {cpus} CPUs this '
                         f'process can use (at most {cap}, {WORKERS_PER_CPU} per CPU): each '
                         'worker is a whole process')
    if n > cpus:
        warnings.warn(f'DataLoader: num_workers={n} is more than the {cpus} CPUs this process can '
                      'use; the workers will take turns on them', stacklevel=3)


def _pinned(batches):
    "`batches`, each with its tensors in page-locked memory."
    with contextlib.closing(batches):
        for b in batches: yield _tree_map(lambda t: t.pin_memory(), b)

class DataLoader(DataLoader):
    """03's DataLoader plus `num_workers`: that many processes make the batches, in the same order,
    each from its own seed (the pass's `pass_seed` and the batch's number); and `pin_memory`:
    batches in page-locked memory when CUDA is there."""
    pass_seed = None   # the base seed of the latest pass made by workers
    _resume = None     # (base seed, first batch's number) for the next pass, from `resume_pass`
    def __init__(self, ds, bs=None, shuffle=False, sampler=None, collate_fn=None, drop_last=False,
                 *, num_workers=0, pin_memory=False, **kwargs):
        check_num_workers(num_workers)
        if not isinstance(pin_memory, bool):
            raise ValueError(f'DataLoader: pin_memory must be True or False, got {pin_memory!r}')
        super().__init__(ds, bs, shuffle, sampler, collate_fn, drop_last, **kwargs)
        self.num_workers, self.pin_memory = num_workers, pin_memory
    def resume_pass(self, seed, first):
        """Make the next pass go on from batch number `first` of a pass whose base seed was `seed`
        (its batch sampler then yields the batches from there on: 09b's resume)."""
        if self.num_workers == 0:
            raise ValueError('DataLoader.resume_pass: this DataLoader has no workers; its items '
                             "draw from the main process's random state, which a checkpoint keeps")
        self._resume = seed, first
    def _seeded(self, seed, first):
        "This pass's (number, index list, seed) triples, numbered from `first`."
        for k, idxs in enumerate(self.batch_sampler, first):
            if seed is None: seed = draw_seed()   # after the order: the order of 0 workers
            self.pass_seed = seed
            yield k, idxs, batch_seed(seed, k)
    def __iter__(self):
        if self.num_workers == 0: batches = super().__iter__()
        else:
            (seed, first), self._resume = self._resume or (None, 0), None
            batches = _parallel_batches(self.ds, self.collate_fn, self._seeded(seed, first),
                                        self.num_workers)
        return _pinned(batches) if self.pin_memory and torch.cuda.is_available() else batches


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
    mean, std = mean.to(x.device), std.to(x.device)   # no copy when they are there already
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


def n_params(m):
    "The number of parameters of the module `m`, its sub-modules' included."
    return sum(p.numel() for p in m.parameters())

def layer_line(name, mod, shape, calls=1):
    "One line of `model_summary`: `mod`'s name, output shape, parameters, kind (and runs if > 1)."
    kind = type(mod).__name__ + (f'({mod.extra_repr()})' if mod.extra_repr() else '')
    runs = f'  (one module, ran {calls} times)' if calls > 1 else ''
    return f'{name:<14} -> {str(shape):<18} {n_params(mod):>9,}  {kind}{runs}'

def model_summary(run, learn, data, find_all=False):
    """Print each layer of `learn.model` once (its linear, conv and ReLU layers if `find_all`), in
    the order they first run, with its parameters and its output's shape for one batch."""
    model = learn.model
    xb, _ = get_batch(data.valid_dl, run)
    xb = xb.to(model_device(model))   # the model may not be on the device yet
    mods = find_modules(model, is_lin_layer) if find_all else model.children()
    mods = {id(m): m for m in mods}.values()   # a module used in several places: hooked once
    names = {id(m): n for n, m in model.named_modules()}
    runs = {}   # id(module) -> [module, output shape, runs], in the order of first run
    def record(hook, mod, inp, out):
        shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        runs.setdefault(id(mod), [mod, shape, 0])[2] += 1
    training, _ = model.training, model.eval()   # eval: BatchNorm's statistics stay
    try:
        with Hooks(mods, record), torch.no_grad(): model(xb)
    finally: model.train(training)
    for mod, shape, calls in runs.values(): print(layer_line(names[id(mod)], mod, shape, calls))
    print(f'{n_params(model):,} parameters in all; input {tuple(xb.shape)}')


# What `from exp.nb_08 import *` gives (generated by notebook2script.py;
# a name bound only in a branch not taken is left out).
from exp.nb_07a import __all__ as _all_nb_07a
__all__ = _all_nb_07a + [
    'math', 'Path', 'PIL', 'plt', 'image_extensions', 'setify', 'get_files', 'compose',
    'ItemList', 'from_palette', 'open_image', 'image_channels', 'ImageList', 'Transform',
    'make_rgb', 'ResizeFixed', 'to_byte_tensor', 'to_float_tensor', 'grandparent_splitter',
    'split_by_func', 'SplitData', 'uniqueify', 'Processor', 'CategoryProcessor',
    'parent_labeler', 'LabeledData', 'label_by_func', 'draw_seed', 'batch_seed', 'seed_worker',
    'WORKERS_PER_CPU', 'usable_cpus', 'check_num_workers', 'DataLoader', 'collate', 'DataBunch',
    'databunchify', 'show_image', 'show_batch', 'normalize_chan', 'channel_stats', 'prev_pow_2',
    'get_cnn_layers', 'get_cnn_model', 'get_learn_run', 'n_params', 'layer_line',
    'model_summary'
]
__all__ = [_name for _name in dict.fromkeys(__all__) if _name in globals()]
