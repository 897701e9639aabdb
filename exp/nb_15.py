# Generated from nbs/15_autoencoder.ipynb by notebook2script.py:
# edit the notebook, not this file.


from exp.nb_14a import *
import time


def conv_transpose_out_size(n, ks, stride=1, padding=0, output_padding=0):
    """The length a transposed convolution gives along an axis of length `n`:
    (n - 1)s - 2p + k + output_padding, the largest input a convolution of the same geometry maps
    to n positions when output_padding = s - 1."""
    return (n - 1)*stride - 2*padding + ks + output_padding


class Col2Im(torch.autograd.Function):
    """06's col2im as an autograd function: its backward is im2col, since each is the other's
    adjoint (06's Im2Col is the same pair the other way round)."""
    @staticmethod
    def forward(ctx, cols, x_shape, ks, stride, padding):
        ctx.geom = ks, stride, padding
        return col2im(cols, x_shape, ks, stride, padding)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        ks, stride, padding = ctx.geom
        return Im2Col.apply(g, ks, stride, padding), None, None, None, None


def _check_transpose(x, weight, bias, stride, padding, output_padding):
    who = 'conv_transpose2d'
    if x.ndim != 4: raise ValueError(f'{who} expects a batch (N, C_in, H, W), got {tuple(x.shape)}')
    check_conv_weight(x, weight, bias, who, transposed=True)   # 06's, for the other layout
    if min(stride) < 1 or min(padding) < 0 or min(output_padding) < 0:
        raise ValueError(f'{who}: stride must be >= 1, padding and output_padding >= 0; got '
                         f'stride={stride}, padding={padding}, output_padding={output_padding}')
    if any(o >= s for o, s in zip(output_padding, stride)):
        raise ValueError(f'{who}: output_padding must be smaller than stride on each axis, got '
                         f'output_padding={output_padding}, stride={stride}')

def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0):
    """Transposed convolution with `F.conv_transpose2d`'s arguments and weight layout
    (C_in, C_out, kh, kw): the input-gradient of `conv2d(., weight)`, as one matrix product
    (weight^T @ x) and col2im."""
    if x.ndim == 3:   # one unbatched image, as F.conv_transpose2d allows
        return conv_transpose2d(x[None], weight, bias, stride, padding, output_padding)[0]
    stride, padding = as_pair(stride, 'stride'), as_pair(padding, 'padding')
    output_padding = as_pair(output_padding, 'output_padding')
    _check_transpose(x, weight, bias, stride, padding, output_padding)
    (n, ci, h, w), (co, kh, kw) = x.shape, weight.shape[1:]
    out = [conv_transpose_out_size(*a) for a in zip((h, w), (kh, kw), stride, padding,
                                                    output_padding)]
    if min(out) < 1:
        raise ValueError(f'conv_transpose2d: input {tuple(x.shape)} with a {kh}x{kw} kernel, '
                         f'stride {stride}, padding {padding} gives an empty output {tuple(out)}')
    xs = x.transpose(0, 1).reshape(ci, n*h*w)          # columns in Im2Col's (N, oh, ow) order
    cols = weight.reshape(ci, co*kh*kw).t() @ xs       # (C_out*kh*kw, N*H*W)
    y = Col2Im.apply(cols, (n, co, *out), (kh, kw), stride, padding)
    return y if bias is None else y + bias[:, None, None]


def upsample_nearest(x, scale_factor=2):
    """Nearest-neighbour upsampling of a batch (N, C, H, W) by whole factors (an int or a pair):
    output pixel (i, j) copies input pixel (i // s_h, j // s_w), as
    F.interpolate(mode='nearest')."""
    if x.ndim != 4:
        raise ValueError(f'upsample_nearest expects a batch (N, C, H, W), got {tuple(x.shape)}')
    sh, sw = as_pair(scale_factor, 'scale_factor')
    if min(sh, sw) < 1:
        raise ValueError(f'upsample_nearest: scale_factor must be >= 1, got {scale_factor!r}')
    rows = torch.arange(x.shape[2]*sh, device=x.device) // sh
    cols = torch.arange(x.shape[3]*sw, device=x.device) // sw
    return x[:, :, rows[:, None], cols[None, :]]

class UpsampleNearest(nn.Module):
    "`upsample_nearest` as a layer."
    def __init__(self, scale_factor=2):
        super().__init__()
        self.scale_factor = scale_factor
    def forward(self, x): return upsample_nearest(x, self.scale_factor)


class ConvTranspose(nn.Module):
    """A layer on `conv_transpose2d`, with nn.ConvTranspose2d's parameters (same shapes, same
    start), so either can stand in for the other."""
    def __init__(self, ni, nf, ks=3, stride=2, padding=1, output_padding=1, bias=True):
        super().__init__()
        ref = nn.ConvTranspose2d(ni, nf, ks, stride, padding, output_padding, bias=bias)
        self.weight = ref.weight
        self.bias = ref.bias
        self.geom = stride, padding, output_padding
    def forward(self, x): return conv_transpose2d(x, self.weight, self.bias, *self.geom)

def deconv(ni, nf, ks=3, act=True, up='nearest'):
    """Doubles the height and width: nearest upsampling then a `ks` x `ks` convolution (`up` =
    'nearest'), or a stride-2 transposed convolution ('transpose'); then BatchNorm and ReLU if
    `act`, else a plain layer with a bias."""
    if up == 'nearest': layers = [UpsampleNearest(2), conv(ni, nf, ks, bias=not act)]
    elif up == 'transpose': layers = [ConvTranspose(ni, nf, ks, 2, ks//2, 1, bias=not act)]
    else: raise ValueError(f"deconv: up must be 'nearest' or 'transpose', got {up!r}")
    if act: layers += [nn.BatchNorm2d(nf), act_fn]
    return nn.Sequential(*layers)


def _side(size, nfs, who):
    side = size // 2**len(nfs)
    if side * 2**len(nfs) != size:
        raise ValueError(f'{who}: an image of side {size} cannot be halved {len(nfs)} times '
                         f'(one per entry of nfs={tuple(nfs)})')
    return side

def ae_encoder(n_latent, nfs=(8, 16), c_in=1, size=28, n_out=None):
    """Images (N, c_in, size, size) -> (N, n_out) (n_out defaults to n_latent; a VAE asks for
    2*n_latent): one stride-2 conv_layer per entry of `nfs`, then a linear layer."""
    side = _side(size, nfs, 'ae_encoder')
    chans = [c_in, *nfs]
    layers = [conv_layer(a, b, stride=2) for a, b in zip(chans[:-1], chans[1:])]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(nfs[-1]*side*side, n_out or n_latent))

def ae_decoder(n_latent, nfs=(16, 8), c_out=1, size=28, up='nearest'):
    """Latents (N, n_latent) -> logits (N, c_out, size, size): a linear layer to nfs[0] maps of
    side size/2^len(nfs), then one `deconv` (doubling the side) per entry of `nfs`, the last to
    `c_out` channels without BatchNorm or ReLU."""
    side = _side(size, nfs, 'ae_decoder')
    chans = [*nfs, c_out]
    ups = [deconv(a, b, up=up, act=i < len(nfs) - 1)
           for i, (a, b) in enumerate(zip(chans[:-1], chans[1:]))]
    return nn.Sequential(nn.Linear(n_latent, nfs[0]*side*side), act_fn,
                         nn.Unflatten(1, (nfs[0], side, side)), *ups)

class AutoEncoder(nn.Module):
    "encoder -> latent -> decoder -> sigmoid: images in [0, 1] back as images in [0, 1]."
    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
    def encode(self, x): return self.encoder(x)
    def decode(self, z): return torch.sigmoid(self.decoder(z))
    def forward(self, x): return self.decode(self.encode(x))

def auto_encoder(n_latent=32, nfs=(8, 16), up='nearest', c=1, size=28):
    "An `AutoEncoder` from `ae_encoder(n_latent, nfs)` and `ae_decoder(n_latent, nfs reversed)`."
    return AutoEncoder(ae_encoder(n_latent, nfs, c, size),
                       ae_decoder(n_latent, tuple(reversed(nfs)), c, size, up))


def eval_batches(model, f, x, bs=1000):
    """f(model, batch) for batches of `bs` rows of `x`, without gradients: 13b's `eval_outputs`
    (eval mode, then back; each batch on the model's device; the outputs joined on the CPU)."""
    batches = [(x[i:i+bs], x.new_empty(0)) for i in range(0, len(x), bs)]   # no labels here
    with torch.no_grad(): return eval_outputs(model, batches, f)[0]

def encode_all(model, x, bs=1000):
    "The latents of images `x`, in batches of `bs` (`eval_batches`); returned on the CPU."
    return eval_batches(model, lambda m, xb: m.encode(xb), x, bs)

def decode_all(model, z, bs=1000):
    "Images decoded from latents `z`, in batches of `bs` (`eval_batches`); returned on the CPU."
    return eval_batches(model, lambda m, zb: m.decode(zb), z, bs)


def checkerboard_share(x, period2=False):
    """The mean over images (N, 1, H, W) of the share of each image's power, its mean (the zero
    frequency) left out, at half a cycle per pixel along either axis: the frequencies of a pattern
    that repeats every 2 pixels, where a stride-2 upsampling's unevenness shows. With `period2`,
    only the three bins (0, W/2), (H/2, 0), (H/2, W/2), where a pattern that repeats exactly every
    2 pixels in both directions (a fixed value per parity class) puts all its power; blur alone
    hardly changes them."""
    p = torch.fft.fft2(x[:, 0].double()).abs() ** 2
    p[:, 0, 0] = 0
    h, w = x.shape[-2:]
    at = torch.zeros(h, w, dtype=torch.bool, device=x.device)
    if period2: at[0, w // 2] = at[h // 2, 0] = at[h // 2, w // 2] = True
    else: at[h // 2] = True; at[:, w // 2] = True
    return (p[:, at].sum(1) / p.sum((1, 2))).mean().item()


def ae_databunch(x_train, x_valid, bs=128):
    "Loaders whose targets are the inputs: (x, x) pairs for reconstruction."
    return images_databunch(x_train, x_train, x_valid, x_valid, bs=bs, c_out=x_train.shape[1])

def ae_learner(data, model, lr=1e-2, progress=True, cbs=None):
    """A Learner on `def_device` for `model` (an AutoEncoder) on `data`: 09's Adam, mean squared
    error between reconstruction and input, the loss per epoch (EpochHistory) and per batch
    (Recorder)."""
    cbfs = [partial(DeviceCallback, def_device), partial(AvgStatsCallback, []), EpochHistory,
            Recorder]
    if progress: cbfs.append(ProgressCallback)
    return Learner(model, data, F.mse_loss, opt_func=adam_opt(), lr=lr, cbs=cbs, cb_funcs=cbfs)

def fit_ae(learn, epochs, lr):
    "Fit `learn` for `epochs` with 11's one-cycle schedule peaking at `lr`; returns the seconds."
    start = time.perf_counter()
    learn.fit(epochs, cbs=sched_1cycle(lr))
    sync(model_device(learn.model))
    return time.perf_counter() - start

def nearest_distance(a, b, bs=500):
    "For each row of `a`, the Euclidean distance to its nearest row of `b`."
    return torch.cat([torch.cdist(a[i:i+bs], b).min(1).values for i in range(0, len(a), bs)])


# What `from exp.nb_15 import *` gives (generated by notebook2script.py;
# a name bound only in a branch not taken is left out).
from exp.nb_14a import __all__ as _all_nb_14a
__all__ = _all_nb_14a + [
    'conv_transpose_out_size', 'Col2Im', 'conv_transpose2d', 'upsample_nearest',
    'UpsampleNearest', 'ConvTranspose', 'deconv', 'ae_encoder', 'ae_decoder', 'AutoEncoder',
    'auto_encoder', 'eval_batches', 'encode_all', 'decode_all', 'checkerboard_share',
    'ae_databunch', 'ae_learner', 'fit_ae', 'nearest_distance'
]
__all__ = [_name for _name in dict.fromkeys(__all__) if _name in globals()]
