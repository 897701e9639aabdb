# Generated from nbs/10_augmentation.ipynb by notebook2script.py:
# edit the notebook, not this file.


from exp.nb_09c import *
import math


def fashion_databunch(n_train=None, n_valid=None, bs=128, seed=0):
    """Fashion-MNIST from its tensors as (N, 1, 28, 28) floats in [0, 1]: `n_train` training images
    drawn at random (with `seed`; all if None) and the first `n_valid` test images (all if None) as
    the validation set."""
    x_train, y_train, x_test, y_test = get_fashion_mnist()
    idx = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(seed))[:n_train]
    img = lambda x: to_float_tensor(x[:, None])   # 08's bytes -> [0, 1], with a channel axis
    train = Dataset(img(x_train[idx]), y_train[idx])
    valid = Dataset(img(x_test[:n_valid]), y_test[:n_valid])
    return DataBunch(*get_dls(train, valid, bs), c_in=1, c_out=len(FASHION_CLASSES))


def _check_images(x, who):
    "A ValueError naming `who` unless `x` is a floating-point batch of images (N, C, H, W)."
    if not torch.is_tensor(x) or x.ndim != 4 or not x.is_floating_point():
        got = f'{tuple(x.shape)} of {x.dtype}' if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f'{who}: expected a float tensor of images (N, C, H, W), got {got}')

def _uniform(n, lo, hi, like):
    "`n` independent draws from U(lo, hi) on the device (and in the dtype) of the tensor `like`."
    return torch.empty(n, device=like.device, dtype=like.dtype).uniform_(lo, hi)


def flip_batch(x, p=0.5):
    """Mirror each image of the batch left-right with probability `p`; every image tosses its own
    coin."""
    _check_images(x, 'flip_batch')
    flip = (torch.rand(len(x), device=x.device) < p)[:, None, None, None]
    return torch.where(flip, x.flip(-1), x)


def _windows(x, top, left, h, w):
    "The (h, w) window of each image `i` of `x` whose top-left corner is (top[i], left[i])."
    rows = top[:, None] + torch.arange(h, device=x.device)    # (N, h): the rows each image keeps
    cols = left[:, None] + torch.arange(w, device=x.device)
    n = torch.arange(len(x), device=x.device)[:, None, None]
    return x.permute(0, 2, 3, 1)[n, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)

def pad_crop_batch(x, pad=4):
    """Pad each image with `pad` zeros on every side, then cut out a window of the original size
    at a random place."""
    _check_images(x, 'pad_crop_batch')
    if not isinstance(pad, int) or pad < 0:
        raise ValueError(f'pad_crop_batch: pad must be an int >= 0, got {pad!r}')
    N, _, H, W = x.shape
    top, left = (torch.randint(0, 2*pad + 1, (N,), device=x.device) for _ in range(2))
    return _windows(F.pad(x, (pad,)*4), top, left, H, W)


def _centres(n, like):
    """Where the centres of `n` pixels lie on the axis from -1 (the first pixel's outer edge) to 1
    (the last one's)."""
    return (torch.arange(n, device=like.device, dtype=like.dtype) * 2 + 1) / n - 1

def affine_grid(theta, size):
    """As F.affine_grid(theta, size, align_corners=False): for each output pixel, the point (x, y)
    to read it from."""
    if theta.ndim != 3 or theta.shape[1:] != (2, 3) or theta.shape[0] != size[0]:
        raise ValueError(f'affine_grid: theta must be (N, 2, 3) with N = size[0] = {size[0]}, '
                         f'got {tuple(theta.shape)}')
    N, _, H, W = size
    ys, xs = torch.meshgrid(_centres(H, theta), _centres(W, theta), indexing='ij')
    # (x, y, 1) of every output pixel
    base = torch.stack([xs, ys, torch.ones_like(xs)], -1).view(1, H*W, 3)
    return torch.bmm(base.expand(N, -1, -1), theta.transpose(1, 2)).view(N, H, W, 2)


def _bilinear(x, ix, iy):
    """Bilinear reads of each image `x[i]` at the points (ix[i], iy[i]) (N, P) in pixel units;
    zeros outside. (N, C, P)"""
    N, C, H, W = x.shape
    # onto the frame: a point further out reads only zeros anyway
    ix, iy = ix.clamp(-1, W), iy.clamp(-1, H)
    x0, y0 = ix.floor(), iy.floor()
    fx, fy = (ix - x0).unsqueeze(1), (iy - y0).unsqueeze(1)
    flat = F.pad(x, (1, 2, 1, 2)).flatten(2)               # the frame of zeros
    row = W + 3                                            # a padded row's length
    top_left = (y0 + 1).mul_(row).add_(x0 + 1).long().unsqueeze(1)
    read = lambda offset: flat.gather(2, (top_left + offset).expand(N, C, -1))
    top = torch.lerp(read(0), read(1), fx)                 # lerp(a, b, f) = a + f (b - a)
    bottom = torch.lerp(read(row), read(row + 1), fx)
    return torch.lerp(top, bottom, fy)

def grid_sample(x, grid):
    """As F.grid_sample(x, grid, mode='bilinear', padding_mode='zeros', align_corners=False),
    written out."""
    _check_images(x, 'grid_sample')
    N, C, H, W = x.shape
    if grid.ndim != 4 or grid.shape[0] != N or grid.shape[-1] != 2:
        raise ValueError(f'grid_sample: grid must be (N, H_out, W_out, 2) with N = {N}, '
                         f'got {tuple(grid.shape)}')
    ix = ((grid[..., 0] + 1) * W - 1) / 2     # to pixel units, where pixel j's centre is at j
    iy = ((grid[..., 1] + 1) * H - 1) / 2
    return _bilinear(x, ix.flatten(1), iy.flatten(1)).view(N, C, *grid.shape[1:3])


def rand_affine(n, degrees=10., scale=(0.9, 1.1), shift=0.1, like=None):
    """`n` random matrices (n, 2, 3) for `affine_grid`: a rotation by up to `degrees` either way, a
    zoom by a factor in `scale`, a shift by up to `shift` (in units of half the image) in x and y.
    Device and dtype from `like`."""
    like = torch.empty(0) if like is None else like
    a = _uniform(n, -degrees, degrees, like) * math.pi / 180
    s = _uniform(n, *scale, like)
    cos, sin = a.cos() / s, a.sin() / s
    tx, ty = _uniform(n, -shift, shift, like), _uniform(n, -shift, shift, like)
    return torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)

def affine_batch(x, theta):
    """Each image `x[i]` moved by its own affine matrix `theta[i]`:
    `grid_sample(x, affine_grid(theta, x.shape))`, fused."""
    N, C, H, W = x.shape
    # x_pix = ((x + 1) W - 1) / 2, and the same for y
    to_pixels = theta.new_tensor([[W/2, 0, (W-1)/2], [0, H/2, (H-1)/2]])
    last_row = theta.new_tensor([0., 0, 1]).expand(N, 1, 3)
    # (N, 2, 3): output point -> input pixel
    theta_pix = to_pixels @ torch.cat([theta, last_row], 1)
    ys, xs = torch.meshgrid(_centres(H, theta), _centres(W, theta), indexing='ij')
    # (N, 2, H*W)
    pts = theta_pix @ torch.stack([xs.flatten(), ys.flatten(), torch.ones_like(xs).flatten()])
    return _bilinear(x, pts[:, 0], pts[:, 1]).view(N, C, H, W)

def rand_affine_batch(x, degrees=10., scale=(0.9, 1.1), shift=0.1):
    "Each image rotated, zoomed and shifted at random (see `rand_affine`)."
    _check_images(x, 'rand_affine_batch')
    return affine_batch(x, rand_affine(len(x), degrees, scale, shift, like=x))


def _box(n_pix, size, like):
    """Masks (N, n_pix) of a run of `size[i]` pixels (a tensor) starting at a random place inside
    `n_pix`."""
    u = torch.rand(len(size), device=like.device, dtype=like.dtype)
    start = (u * (n_pix - size + 1)).floor()
    pos = torch.arange(n_pix, device=like.device)
    return (pos >= start[:, None]) & (pos < (start + size)[:, None])

def random_erase_batch(x, p=0.5, area=(0.02, 0.4), ratio=0.3, fill=(0., 1.)):
    """Random erasing (Zhong et al. 2017, arXiv 1708.04896): with probability `p`, a rectangle
    covering a fraction `area` of the image, with aspect ratio (height/width) in
    (`ratio`, 1/`ratio`), gets uniform noise in `fill`."""
    _check_images(x, 'random_erase_batch')
    N, C, H, W = x.shape
    s = _uniform(N, *area, x) * H * W                 # S_e, the erased area
    r = _uniform(N, ratio, 1/ratio, x)                # r_e, its aspect ratio
    h = (s * r).sqrt().round().clamp(1, H)            # clipped to the image (the paper draws again)
    w = (s / r).sqrt().round().clamp(1, W)
    erase = (torch.rand(N, device=x.device) < p)[:, None, None]
    mask = (_box(H, h, x)[:, :, None] & _box(W, w, x)[:, None, :] & erase)[:, None]
    return torch.where(mask, torch.empty_like(x).uniform_(*fill), x)


def _crop_theta(cx, cy, sw, sh):
    """(N, 2, 3) matrices that read each output image from the box centred at (`cx`, `cy`) with
    half-sides `sw`, `sh`, all in the [-1, 1] coordinates of the input."""
    zero = torch.zeros_like(cx)
    return torch.stack([torch.stack([sw, zero, cx], 1), torch.stack([zero, sh, cy], 1)], 1)

def crop_theta(top, left, h, w, size):
    """Matrices for `affine_grid` reading the pixel boxes rows `top`..`top+h-1`, columns
    `left`..`left+w-1` (float tensors (N,)) of images of `size` (H, W): box edge to output edge."""
    H, W = size
    return _crop_theta((2*left + w)/W - 1, (2*top + h)/H - 1, w/W, h/H)

def _out_size(size, H, W):
    "The output (h, w): the input's for None, (size, size) for an int."
    if size is None: return H, W
    return (size, size) if isinstance(size, int) else tuple(size)

class RandomResizedCrop():
    """A box of a random share `scale` of the image's area and a random aspect ratio (width over
    height, log-uniform in `ratio`) at a random place, resized to `size` (None: the input's);
    one box per image, read with `affine_grid` and `grid_sample`."""
    def __init__(self, size=None, scale=(0.08, 1.0), ratio=(3/4, 4/3)):
        if not (0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= ratio[1]):
            raise ValueError(f'RandomResizedCrop: need 0 < scale[0] <= scale[1] <= 1 and '
                             f'0 < ratio[0] <= ratio[1], got scale={scale}, ratio={ratio}')
        self.size,self.scale,self.ratio = size,scale,ratio
    def theta(self, n, like):
        "`n` random crop matrices, on the device and in the dtype of `like`."
        area = _uniform(n, *self.scale, like)
        r = _uniform(n, math.log(self.ratio[0]), math.log(self.ratio[1]), like).exp()
        # half-sides in units of the image's half-sides; clipped so that the box fits
        sw, sh = (area * r).sqrt().clamp(max=1), (area / r).sqrt().clamp(max=1)
        cx, cy = _uniform(n, -1, 1, like) * (1 - sw), _uniform(n, -1, 1, like) * (1 - sh)
        return _crop_theta(cx, cy, sw, sh)
    def __call__(self, x):
        _check_images(x, 'RandomResizedCrop')
        N, C, H, W = x.shape
        return grid_sample(x, affine_grid(self.theta(N, x), (N, C, *_out_size(self.size, H, W))))


CORNERS = ((-1., -1.), (1., -1.), (1., 1.), (-1., 1.))   # the output's corners, clockwise

def homography(src):
    """(N, 3, 3) homographies H (last entry 1) mapping the output's `CORNERS` onto the points
    `src` (N, 4, 2) of the input: solves the 8 linear equations the 4 pairs of points give."""
    N = len(src)
    xy = src.new_tensor(CORNERS).expand(N, 4, 2)
    x, y, u, v = xy[..., 0], xy[..., 1], src[..., 0], src[..., 1]
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    # u (g x + h y + 1) = a x + b y + c, and the same for v with d, e, f
    rows_u = torch.stack([x, y, one, zero, zero, zero, -x*u, -y*u], -1)
    rows_v = torch.stack([zero, zero, zero, x, y, one, -x*v, -y*v], -1)
    coeffs = torch.linalg.solve(torch.cat([rows_u, rows_v], 1), torch.cat([u, v], 1))
    return torch.cat([coeffs, torch.ones_like(coeffs[:, :1])], 1).view(N, 3, 3)

def homography_grid(hom, size):
    """As `affine_grid`, for homographies `hom` (N, 3, 3): each output pixel's (x, y, 1) times
    `hom`, divided by the third coordinate."""
    N, _, H, W = size
    ys, xs = torch.meshgrid(_centres(H, hom), _centres(W, hom), indexing='ij')
    pts = hom @ torch.stack([xs.flatten(), ys.flatten(), torch.ones_like(xs).flatten()])
    return (pts[:, :2] / pts[:, 2:]).transpose(1, 2).reshape(N, H, W, 2)

class PerspectiveWarp():
    """Each image seen from a random viewpoint: the input's four corners each moved by up to
    `magnitude` (in units of half the image) in x and y, and the output read through the
    homography that maps its corners onto them."""
    def __init__(self, magnitude=0.2):
        if not 0 <= magnitude < 0.5:   # beyond, the moved corners can fold the image over
            raise ValueError(f'PerspectiveWarp: magnitude must be in [0, 0.5), got {magnitude!r}')
        self.magnitude = magnitude
    def corners(self, n, like):
        "Where each image's corners are read from: `CORNERS` moved at random, (n, 4, 2)."
        moves = _uniform(n * 8, -self.magnitude, self.magnitude, like).view(n, 4, 2)
        return like.new_tensor(CORNERS) + moves
    def __call__(self, x):
        _check_images(x, 'PerspectiveWarp')
        return grid_sample(x, homography_grid(homography(self.corners(len(x), x)), x.shape))


class AugmentCallback(Callback):
    """Passes each training batch through the batch transforms `tfms` (see `compose`); validation
    batches stay as they are."""
    # the Runner has put the batch on the model's device already; before
    # BatchTransformXCallback's normalizing (2)
    _order = 1
    def __init__(self, tfms): self.tfms = listify(tfms)
    def begin_batch(self):
        if self.in_train: self.run.xb = compose(self.xb, self.tfms)


class EpochHistory(Callback):
    """Keeps AvgStatsCallback's averages after each epoch: `train[e]` and `valid[e]` are
    [loss, *metrics] of epoch e."""
    _order = 1
    def begin_fit(self):
        if not hasattr(self.run, 'avg_stats'):
            raise ValueError('EpochHistory needs an AvgStatsCallback on the learner')
        self.train, self.valid = [], []
    def after_epoch(self):
        self.train.append(self.avg_stats.train_stats.avg_stats)
        self.valid.append(self.avg_stats.valid_stats.avg_stats)
    def column(self, split, i=0):
        "Metric `i` (0: the loss) of `split` ('train' or 'valid') at each epoch."
        return [row[i] for row in getattr(self, split)]


# What `from exp.nb_10 import *` gives (generated by notebook2script.py;
# a name bound only in a branch not taken is left out).
from exp.nb_09c import __all__ as _all_nb_09c
__all__ = _all_nb_09c + [
    'math', 'fashion_databunch', 'flip_batch', 'pad_crop_batch', 'affine_grid', 'grid_sample',
    'rand_affine', 'affine_batch', 'rand_affine_batch', 'random_erase_batch', 'crop_theta',
    'RandomResizedCrop', 'CORNERS', 'homography', 'homography_grid', 'PerspectiveWarp',
    'AugmentCallback', 'EpochHistory'
]
__all__ = [_name for _name in dict.fromkeys(__all__) if _name in globals()]
