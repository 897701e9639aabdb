# Generated from nbs/11_xresnet.ipynb by notebook2script.py:
# edit the notebook, not this file.


from exp.nb_10c import *
from functools import partial
import time


def noop(x):
    "The identity: what a shortcut with nothing to change does."
    return x

class Flatten(nn.Module):
    "(N, C, 1, 1) -> (N, C): from the pooled feature maps to the input of the final linear layer."
    def forward(self, x): return x.flatten(1)

def conv(ni, nf, ks=3, stride=1, bias=False):
    """A `ks` x `ks` convolution padded by ks//2 (so stride 1 keeps the size and stride 2 halves
    it); no bias by default."""
    return nn.Conv2d(ni, nf, kernel_size=ks, stride=stride, padding=ks//2, bias=bias)

act_fn = nn.ReLU(inplace=True)


def conv_layer(ni, nf, ks=3, stride=1, zero_bn=False, act=True):
    "conv -> BatchNorm (its gamma starting at 0 if `zero_bn`) -> ReLU (if `act`)."
    bn = nn.BatchNorm2d(nf)
    nn.init.constant_(bn.weight, 0. if zero_bn else 1.)
    layers = [conv(ni, nf, ks, stride=stride), bn]
    if act: layers.append(act_fn)
    return nn.Sequential(*layers)

def init_cnn(m):
    "Kaiming normal (for ReLU) on every conv and linear weight in `m`, biases zeroed."
    if getattr(m, 'bias', None) is not None: nn.init.constant_(m.bias, 0)
    if isinstance(m, (nn.Conv2d, nn.Linear)): nn.init.kaiming_normal_(m.weight)
    for l in m.children(): init_cnn(l)


class ResBlock(nn.Module):
    """A residual block: ReLU(convs(x) + shortcut(x)), with the ResNet-D shortcut (average pool,
    then 1x1 conv)."""
    def __init__(self, expansion, ni, nh, stride=1):
        super().__init__()
        nf, ni = nh*expansion, ni*expansion
        layers = [conv_layer(ni, nh, 3, stride=stride),
                  conv_layer(nh, nf, 3, zero_bn=True, act=False)] if expansion == 1 else [
                  conv_layer(ni, nh, 1),
                  conv_layer(nh, nh, 3, stride=stride),
                  conv_layer(nh, nf, 1, zero_bn=True, act=False)]
        self.convs = nn.Sequential(*layers)
        self.idconv = noop if ni == nf else conv_layer(ni, nf, 1, act=False)
        self.pool = noop if stride == 1 else nn.AvgPool2d(2, ceil_mode=True)

    def forward(self, x): return act_fn(self.convs(x) + self.idconv(self.pool(x)))


def _check_create_args(expansion, layers, c_in, c_out, width, stem_strides):
    "Refuse sizes `XResNet.create` cannot build a network from, naming the argument."
    who = 'XResNet.create'
    if len(stem_strides) != 3:
        raise ValueError(f'{who}: stem_strides needs one stride per stem conv (3), '
                         f'got {stem_strides!r}')
    if len(layers) == 0: raise ValueError(f'{who}: layers must give at least one group')
    check_count(who, c_in=c_in, c_out=c_out, width=width,
                **{f'layers[{i}]': n for i, n in enumerate(layers)},
                **{f'stem_strides[{i}]': s for i, s in enumerate(stem_strides)})
    if width % expansion:
        raise ValueError(f'{who}: width must be a multiple of the expansion {expansion}, got '
                         f'{width} (the stem makes width channels; the first group takes '
                         f'{width // expansion * expansion})')

class XResNet(nn.Sequential):
    """The bag of tricks' ResNet: ResNet-C stem (three 3x3 convs), groups of ResBlocks (ResNet-B/D,
    zero-init last BN), pool, linear. One made by `create` refuses images without `c_in` channels,
    and says which images and batch were too small when training's BatchNorm gets one value per
    channel."""
    c_in = None   # set by `create`; a slice such as m[:-3] checks nothing
    @classmethod
    def create(cls, expansion, layers, c_in=3, c_out=1000, width=64, stem_strides=(2, 1, 1),
               stem_pool=True):
        _check_create_args(expansion, layers, c_in, c_out, width, stem_strides)
        stem_nfs = [c_in, (c_in+1)*8, width, width]
        stem = [conv_layer(stem_nfs[i], stem_nfs[i+1], stride=stem_strides[i]) for i in range(3)]
        if stem_pool: stem.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        nfs = [width//expansion] + [width * 2**i for i in range(len(layers))]
        groups = [cls._make_layer(expansion, nfs[i], nfs[i+1], n_blocks=n,
                                  stride=1 if i == 0 else 2)
                  for i, n in enumerate(layers)]
        res = cls(*stem, *groups, nn.AdaptiveAvgPool2d(1), Flatten(),
                  nn.Linear(nfs[-1]*expansion, c_out))
        init_cnn(res)
        res.c_in = c_in
        return res

    @staticmethod
    def _make_layer(expansion, ni, nf, n_blocks, stride):
        "A group of `n_blocks` blocks; only the first changes the shape."
        return nn.Sequential(*[ResBlock(expansion, ni if i == 0 else nf, nf,
                                        stride if i == 0 else 1)
                               for i in range(n_blocks)])

    def forward(self, x):
        if self.c_in is None: return super().forward(x)
        self.check_images(x)
        out = x
        for i,layer in enumerate(self):   # nn.Sequential's loop, knowing the maps' size
            try: out = layer(out)
            except ValueError as e:
                if 'value per channel' not in str(e): raise
                raise self.too_small(x, out, i) from e
        return out

    def too_small(self, x, out, i):
        """The error for images `x` whose maps (`out`, entering layer `i`) shrink to one value per
        channel in training: each stride-2 conv rounds up, so maps never vanish, but BatchNorm in
        training needs more than one value per channel."""
        (h,w),(mh,mw) = x.shape[2:],out.shape[2:]
        return ValueError(f'XResNet: a training batch of {len(x)} image(s) of {h}x{w} reaches '
                          f'layer {i} as {mh}x{mw} maps and leaves BatchNorm one value per channel;'
                          ' train with more images per batch or larger ones (or smaller '
                          'stem_strides, no stem_pool, fewer groups)')

    def check_images(self, x):
        "Raise a ValueError naming the batch's shape if this network cannot take the images `x`."
        if x.dim() != 4:
            raise ValueError(f'XResNet: expected a batch of images (N, {self.c_in}, H, W), '
                             f'got shape {tuple(x.shape)}')
        if x.shape[1] != self.c_in:
            raise ValueError(f'XResNet: the images have {x.shape[1]} channels (batch '
                             f'{tuple(x.shape)}), but this network was made with c_in='
                             f'{self.c_in}; make it with c_in={x.shape[1]} for them')


def _xresnet(name, expansion, layers):
    def make(**kwargs): return XResNet.create(expansion, layers, **kwargs)
    make.__name__ = make.__qualname__ = name
    make.__doc__ = (f"XResNet with expansion {expansion} and blocks {layers}; "
                    "keyword arguments go to `XResNet.create`.")
    return make

xresnet18  = _xresnet('xresnet18',  1, [2, 2,  2, 2])
xresnet34  = _xresnet('xresnet34',  1, [3, 4,  6, 3])
xresnet50  = _xresnet('xresnet50',  4, [3, 4,  6, 3])
xresnet101 = _xresnet('xresnet101', 4, [3, 4, 23, 3])
xresnet152 = _xresnet('xresnet152', 4, [3, 8, 36, 3])


def _as_images(x):
    """A (N, 784) or (N, 28, 28) batch of MNIST-like images (bytes or floats) as (N, 1, 28, 28)
    floats in [0, 1]."""
    x = x.view(-1, 1, 28, 28)
    return to_float_tensor(x) if x.dtype == torch.uint8 else x

def mnist_splits():
    """MNIST as x_train, y_train, x_valid, y_valid, x_test, y_test, the images (N, 1, 28, 28) in
    [0, 1]."""
    x_tr, y_tr, x_va, y_va, x_te, y_te = get_data(test=True)
    return _as_images(x_tr), y_tr, _as_images(x_va), y_va, _as_images(x_te), y_te

def fashion_splits(n_valid=10000):
    """Fashion-MNIST as x_train, y_train, x_valid, y_valid (the last `n_valid` training images),
    x_test, y_test (t10k)."""
    x, y, x_te, y_te = get_fashion_mnist()
    if not 0 < n_valid < len(x):
        raise ValueError(f'fashion_splits: n_valid must be in 1..{len(x)-1}, got {n_valid!r}')
    return (_as_images(x[:-n_valid]), y[:-n_valid], _as_images(x[-n_valid:]), y[-n_valid:],
            _as_images(x_te), y_te)

def images_databunch(x_train, y_train, x_valid, y_valid, bs=256, c_out=10):
    """Loaders over image tensors (N, C, H, W): training shuffled in batches of `bs`, validation in
    batches of `2*bs`."""
    return DataBunch(*get_dls(Dataset(x_train, y_train), Dataset(x_valid, y_valid), bs),
                     c_in=x_train.shape[1], c_out=c_out)

def image_norm(x_train):
    """A per-batch transform normalizing by the mean and std of each channel of `x_train`
    (N, C, H, W). The statistics stay where `x_train` is: `normalize_chan` takes them to each
    batch's device."""
    mean, std = x_train.mean((0, 2, 3)), x_train.std((0, 2, 3))
    return partial(normalize_chan, mean=mean, std=std)


def cnn_learner(arch, data, loss_func, opt_func, c_in=None, c_out=None, lr=1e-2, cuda=True,
                norm=None, progress=False, mixup=0, xtra_cb=None, tfms=None, **kwargs):
    """A Learner for `arch(c_in=..., c_out=..., **kwargs)` on `data`, recording loss and accuracy
    per epoch (EpochHistory). `norm`: a batch transform applied after the augmentations `tfms`;
    `mixup`: MixUp's alpha (0: none). `cuda`: move the model to `def_device` when fitting starts
    (False: leave it where it is); the batches follow the model."""
    model = arch(c_in=c_in or data.c_in, c_out=c_out or data.c_out, **kwargs)
    cbfs = [partial(AvgStatsCallback, accuracy), EpochHistory]
    if cuda: cbfs.append(partial(DeviceCallback, def_device))
    if tfms: cbfs.append(partial(AugmentCallback, tfms))
    if norm: cbfs.append(partial(BatchTransformXCallback, norm))
    if progress: cbfs.append(ProgressCallback)
    if mixup: cbfs.append(partial(MixUp, mixup))
    cbfs += listify(xtra_cb)
    return Learner(model, data, loss_func, opt_func=opt_func, lr=lr, cb_funcs=cbfs)

def sched_1cycle(lrs, pct_start=0.3, mom_start=0.95, mom_mid=0.85, mom_end=0.95):
    """One-cycle: lr from lr/10 up to `lrs` (one per param group, or one for all) and down to
    lr/1e5; momentum the other way."""
    phases = create_phases(pct_start)
    sched_lr = [one_cycle(lr, pct_start, div_start=10., div_end=1e5) for lr in listify(lrs)]
    sched_mom = combine_scheds(phases, cos_1cycle_anneal(mom_start, mom_mid, mom_end))
    return [ParamScheduler('lr', sched_lr if len(sched_lr) > 1 else sched_lr[0]),
            ParamScheduler('mom', sched_mom)]


def get_preds(model, x, norm=noop, bs=1000, tta=False):
    """Softmax probabilities of `model` (in eval mode) on images `x`, normalized by `norm`; with
    `tta`, averaged with the flipped images'. The images go to the model's device, the
    probabilities come back on the CPU."""
    device, was_training, _ = model_device(model), model.training, model.eval()
    try:
        with torch.no_grad():
            out = []
            for i in range(0, len(x), bs):
                xb = norm(x[i:i+bs].to(device))
                p = F.softmax(model(xb), -1)
                if tta: p = (p + F.softmax(model(xb.flip(-1)), -1)) / 2
                out.append(p.cpu())
    finally: model.train(was_training)
    return torch.cat(out)

def eval_accuracy(learn, x, y, norm=noop, tta=False):
    "Accuracy of `learn.model` on images `x` with labels `y` (see `get_preds`)."
    return (get_preds(learn.model, x, norm, tta=tta).argmax(-1) == y).float().mean().item()


shifts = partial(pad_crop_batch, pad=2)


def imgs_per_sec(width, stem_strides=(1, 2, 1), channels_last=False, bs=256, n_steps=3):
    """Training images per second of xresnet18 for 28x28 images at `width` (after one warm-up
    step) on `def_device`; the clock is read once the device has finished (`sync`, 03)."""
    torch.manual_seed(0)
    model = xresnet18(c_in=1, c_out=10, width=width, stem_strides=stem_strides, stem_pool=False)
    model = model.to(def_device)
    if channels_last: model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)   # torch's: only the model's cost is timed
    xb = torch.randn(bs, 1, 28, 28, device=def_device)
    yb = torch.randint(0, 10, (bs,), device=def_device)
    for i in range(n_steps + 1):
        if i == 1: sync(def_device); start = time.perf_counter()
        F.cross_entropy(model(xb), yb).backward(); opt.step(); opt.zero_grad()
    sync(def_device)
    return bs * n_steps / (time.perf_counter() - start)


def xresnet_learner(splits, tfms, arch=xresnet18, width=16, stem_strides=(1, 2, 1), bs=256,
                    lr=1e-2, wd=0.05, ls_eps=0.1, seed=0, channels_last=True):
    """A seeded Learner for `arch` on 28x28 images (no max pool) from the training and validation
    parts of `splits` (as made by `mnist_splits`): AdamW, label smoothing, augmentations `tfms`.
    Returns the learner and its normalization (for `get_preds`)."""
    torch.manual_seed(seed)
    norm = image_norm(splits[0])
    data = images_databunch(*splits[:4], bs=bs)
    learn = cnn_learner(arch, data, LabelSmoothingCrossEntropy(ls_eps), adam_opt(wd=wd), lr=lr,
                        norm=norm, tfms=tfms, width=width, stem_strides=stem_strides,
                        stem_pool=False)
    if channels_last: learn.model.to(memory_format=torch.channels_last)
    return learn, norm

def fit_xresnet(splits, tfms, epochs=5, cbs=None, resume=None, **kwargs):
    """Train `xresnet_learner(splits, tfms, **kwargs)` for `epochs` with one-cycle at its `lr`,
    reporting the validation part each epoch.
    `cbs`: more callbacks for the fit (09b's CheckpointCallback, say); `resume`: a checkpoint file
    to go on from (09b's `fit(..., resume=)`).
    Returns the learner, its normalization and the seconds the training took."""
    learn, norm = xresnet_learner(splits, tfms, **kwargs)
    start = time.perf_counter()
    learn.fit(epochs, cbs=sched_1cycle(learn.lr) + listify(cbs), resume=resume)
    sync(model_device(learn.model))
    return learn, norm, time.perf_counter() - start

def smooth_losses(losses, beta=0.9):
    "`losses` averaged by a moving average with weight `beta`, debiased as Adam's (09)."
    avg, out = 0., []
    for i, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / debias(beta, 1 - beta, i + 1))
    return out

def suggest_lr(lrs, losses, div=10, beta=0.9):
    """The lesson's rule of thumb for LR_Find's curve: `div` times below the rate where the
    smoothed loss is lowest (where it still falls fast), rounded to a power of ten."""
    if len(lrs) != len(losses) or not lrs:
        raise ValueError(f'suggest_lr: needs one loss per rate, got {len(lrs)} rates and '
                         f'{len(losses)} losses')
    smooth = smooth_losses(losses, beta)
    best = min(range(len(smooth)), key=smooth.__getitem__)
    return 10 ** round(math.log10(lrs[best] / div))


def with_valid_in_train(splits):
    """`splits` (x_train, y_train, x_valid, y_valid, x_test, y_test) with the validation images
    added to the training set."""
    x_tr, y_tr, x_va, y_va, *rest = splits
    return (torch.cat([x_tr, x_va]), torch.cat([y_tr, y_va]), x_va, y_va, *rest)


# What `from exp.nb_11 import *` gives (generated by notebook2script.py;
# a name bound only in a branch not taken is left out).
from exp.nb_10c import __all__ as _all_nb_10c
__all__ = _all_nb_10c + [
    'partial', 'noop', 'Flatten', 'conv', 'act_fn', 'conv_layer', 'init_cnn', 'ResBlock',
    'XResNet', 'xresnet18', 'xresnet34', 'xresnet50', 'xresnet101', 'xresnet152',
    'mnist_splits', 'fashion_splits', 'images_databunch', 'image_norm', 'cnn_learner',
    'sched_1cycle', 'get_preds', 'eval_accuracy', 'shifts', 'imgs_per_sec', 'xresnet_learner',
    'fit_xresnet', 'smooth_losses', 'suggest_lr', 'with_valid_in_train'
]
__all__ = [_name for _name in dict.fromkeys(__all__) if _name in globals()]
