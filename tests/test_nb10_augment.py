"""10: batch augmentation from scratch: affine grid and bilinear sampling checked against PyTorch
in float64; flips, padded crops and random erasing do what they say per image; RandomResizedCrop
and PerspectiveWarp against slicing + F.interpolate, the identity and affine maps; AugmentCallback
touches training batches only."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from exp.nb_10 import (CORNERS, AugmentCallback, AvgStatsCallback, Callback, EpochHistory, Learner,
                       PerspectiveWarp, RandomResizedCrop, accuracy, affine_batch, affine_grid,
                       crop_theta, fashion_databunch, flip_batch, grid_sample, homography,
                       homography_grid, pad_crop_batch, rand_affine, rand_affine_batch,
                       random_erase_batch)

F64 = torch.float64

def images(n=6, c=2, h=9, w=13, seed=0, dtype=F64):
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize('size', [(5, 1, 28, 28), (3, 2, 9, 13), (2, 3, 1, 7)])
def test_affine_grid_matches_torch_in_float64(size):
    torch.manual_seed(0)
    theta = torch.randn(size[0], 2, 3, dtype=F64)
    torch.testing.assert_close(affine_grid(theta, size),
                               F.affine_grid(theta, size, align_corners=False), rtol=0, atol=1e-12)

@pytest.mark.parametrize('spread', [0.5, 1.0, 3.0])   # 3: most points far outside the image
def test_grid_sample_matches_torch_in_float64(spread):
    x = images()
    torch.manual_seed(1)
    for out_hw in [(9, 13), (4, 17)]:
        grid = torch.randn(len(x), *out_hw, 2, dtype=F64) * spread
        torch.testing.assert_close(grid_sample(x, grid),
                                   F.grid_sample(x, grid, align_corners=False), rtol=0, atol=1e-12)

def test_grid_sample_on_pixel_centres_and_edges():
    x = images(n=1, c=1, h=4, w=5)
    ys, xs = torch.meshgrid((torch.arange(4, dtype=F64)*2+1)/4 - 1,
                            (torch.arange(5, dtype=F64)*2+1)/5 - 1, indexing='ij')
    test_grid = torch.stack([xs, ys], -1)[None]
    # centres read the pixels exactly
    torch.testing.assert_close(grid_sample(x, test_grid), x, rtol=0, atol=1e-12)
    edges = torch.tensor([[[[-1., -1.], [1., 1.], [-1 - 1/5, 0.], [5., 5.]]]], dtype=F64)
    torch.testing.assert_close(grid_sample(x, edges),
                               F.grid_sample(x, edges, align_corners=False), rtol=0, atol=1e-12)

def test_rand_affine_batch_matches_torch_with_the_same_matrices():
    x = images(dtype=F64)
    torch.manual_seed(2); ours = rand_affine_batch(x, degrees=40, scale=(0.6, 1.4), shift=0.4)
    torch.manual_seed(2)
    theta = rand_affine(len(x), degrees=40, scale=(0.6, 1.4), shift=0.4, like=x)
    grid = F.affine_grid(theta, x.shape, align_corners=False)
    theirs = F.grid_sample(x, grid, align_corners=False)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)

def test_rand_affine_is_a_rotation_zoom_and_shift_within_bounds():
    torch.manual_seed(0)
    theta = rand_affine(2000, degrees=20, scale=(0.8, 1.25), shift=0.1,
                        like=torch.empty(0, dtype=F64))
    m = theta[:, :, :2]
    s = 1 / m[:, 0].norm(dim=1)                                     # columns of a rotation over s
    torch.testing.assert_close(m[:, 1].norm(dim=1), 1 / s)
    # orthogonal
    torch.testing.assert_close((m[:, 0] * m[:, 1]).sum(1), torch.zeros(2000, dtype=F64))
    angle = torch.atan2(m[:, 1, 0], m[:, 0, 0]) * 180 / math.pi
    assert angle.abs().max() <= 20 + 1e-9 and angle.abs().max() > 19       # spread over the range
    assert s.min() >= 0.8 - 1e-9 and s.max() <= 1.25 + 1e-9
    assert theta[:, :, 2].abs().max() <= 0.1
    assert theta.dtype == F64

def test_identity_matrix_gives_the_image_back():
    x = images()
    ident = torch.tensor([[1., 0, 0], [0, 1, 0]], dtype=F64).expand(len(x), 2, 3)
    torch.testing.assert_close(affine_batch(x, ident), x, rtol=0, atol=1e-12)

def test_flip_batch_flips_each_image_or_not():
    x = images(n=200, c=1, h=3, w=4, dtype=torch.float32)
    test_none, test_all = flip_batch(x, p=0.), flip_batch(x, p=1.)
    assert torch.equal(test_none, x) and torch.equal(test_all, x.flip(-1))
    torch.manual_seed(0)
    y = flip_batch(x)
    flipped = torch.tensor([torch.equal(a, b.flip(-1)) for a, b in zip(y, x)])
    kept = torch.tensor([torch.equal(a, b) for a, b in zip(y, x)])
    assert (flipped ^ kept).all()                     # every image is one or the other, whole
    assert 60 < flipped.sum() < 140                   # and each tossed its own coin

def test_pad_crop_batch_gives_windows_of_the_padded_images():
    x = images(n=50, c=2, h=6, w=7, dtype=torch.float32)
    assert torch.equal(pad_crop_batch(x, pad=0), x)
    torch.manual_seed(0)
    y, pad = pad_crop_batch(x, pad=2), 2
    padded = F.pad(x, (pad,)*4)
    offsets = []
    for a, p in zip(y, padded):
        found = [(t, l) for t in range(2*pad+1) for l in range(2*pad+1)
                 if torch.equal(a, p[:, t:t+6, l:l+7])]
        assert found, 'an output is not a window of its padded image'
        offsets.append(found[0])
    assert len(set(offsets)) > 10                     # windows drawn per image

def test_random_erase_batch_fills_one_rectangle_per_image():
    x = torch.full((300, 2, 20, 30), -1.)
    torch.manual_seed(0)
    y = random_erase_batch(x, p=1., area=(0.02, 0.4), ratio=0.3)
    changed = y != -1
    assert torch.equal(changed[:, 0], changed[:, 1])  # the same rectangle in every channel
    m = changed[:, 0]
    for mask in m:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert mask.sum() == len(rows) * len(cols)    # a filled rectangle ...
        assert rows.diff().eq(1).all() and cols.diff().eq(1).all()   # ... in one piece
    frac = m.float().mean((1, 2))
    # S_e in (0.02, 0.4) of the image, rounded to whole pixels
    assert frac.min() > 0 and frac.max() <= 0.5
    noise = y[changed]
    assert noise.min() >= 0 and noise.max() <= 1
    assert torch.equal(random_erase_batch(x, p=0.), x)
    torch.manual_seed(1)
    some = (random_erase_batch(x, p=0.5) != -1).flatten(1).any(1).float().mean()
    assert 0.35 < some < 0.65

@pytest.mark.parametrize('f', [flip_batch, pad_crop_batch, rand_affine_batch, random_erase_batch])
def test_bad_input_is_refused_by_name(f):
    with pytest.raises(ValueError, match=f.__name__):
        f(torch.zeros(3, 28, 28))                     # no channel axis
    with pytest.raises(ValueError, match=f.__name__):
        f(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))

def test_bad_shapes_for_grid_and_sample():
    with pytest.raises(ValueError, match='theta'): affine_grid(torch.zeros(2, 3, 3), (2, 1, 5, 5))
    with pytest.raises(ValueError, match=r'size\[0\] = 3'):
        affine_grid(torch.zeros(2, 2, 3), (3, 1, 5, 5))
    with pytest.raises(ValueError, match='grid'):
        grid_sample(torch.zeros(2, 1, 5, 5), torch.zeros(2, 5, 5, 3))
    with pytest.raises(ValueError, match='pad'): pad_crop_batch(torch.zeros(2, 1, 5, 5), pad=-1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='no GPU here')
def test_transforms_run_on_cuda_like_on_cpu():
    x = images(dtype=torch.float32)
    for f in [flip_batch, pad_crop_batch, rand_affine_batch, random_erase_batch]:
        y = f(x.cuda())
        assert y.is_cuda and y.shape == x.shape
    theta = rand_affine(len(x), like=x)
    torch.testing.assert_close(affine_batch(x.cuda(), theta.cuda()).cpu(), affine_batch(x, theta),
                               rtol=1e-5, atol=1e-5)


class _Spy(Callback):
    _order = 5   # after AugmentCallback
    def begin_fit(self): self.seen = []
    def begin_batch(self): self.seen.append((self.in_train, self.xb.clone()))

@pytest.fixture
def learner(make_tiny_data, make_tiny_learner):
    """A factory: a quiet one-layer learner on 24 + 16 random 1x4x4 images in [0, 1) (3 training
    batches of 8, 1 validation batch), with `cbs`, the averages of accuracy and EpochHistory."""
    def make(cbs):
        data = make_tiny_data(n_train=24, bs=8, shape=(1, 4, 4), uniform=True)
        cb_funcs = [lambda: AvgStatsCallback([accuracy]), EpochHistory]
        return make_tiny_learner(data, cbs=cbs, cb_funcs=cb_funcs, quiet=True)
    return make

def test_augment_callback_changes_training_batches_only(learner):
    spy = _Spy()
    learn = learner([AugmentCallback([lambda x: x + 100.]), spy])
    learn.fit(2)
    train = [xb for t, xb in spy.seen if t]
    valid = [xb for t, xb in spy.seen if not t]
    assert len(train) == 2 * 3 and len(valid) == 2 * 1   # 16 validation images in batches of 16
    assert all(xb.min() >= 100 for xb in train) and all(xb.max() <= 1 for xb in valid)

def test_epoch_history_keeps_each_epochs_averages(learner):
    learn = learner([])
    learn.fit(3)
    h = learn.epoch_history
    assert len(h.train) == len(h.valid) == 3
    assert h.column('valid', 1)[-1] == learn.avg_stats.valid_stats.avg_stats[1]
    assert h.column('train') == [row[0] for row in h.train]

def test_epoch_history_needs_avg_stats(learner):
    learn = Learner(nn.Linear(16, 2), learner([]).data, F.cross_entropy, cbs=[EpochHistory()])
    with pytest.raises(ValueError, match='AvgStatsCallback'): learn.fit(1)

def test_fashion_databunch_subsets():
    data = fashion_databunch(n_train=100, n_valid=50, bs=32)
    xb, yb = next(iter(data.train_dl))
    assert len(data.train_ds) == 100 and len(data.valid_ds) == 50
    assert xb.shape == (32, 1, 28, 28) and xb.dtype == torch.float32 and 0 <= xb.min()
    assert xb.max() <= 1
    assert data.c_in == 1 and data.c_out == 10
    again = fashion_databunch(n_train=100, n_valid=50, bs=32)
    # the same images, whatever the global seed
    assert torch.equal(again.train_ds.y, data.train_ds.y)


@pytest.mark.parametrize('f', [flip_batch, pad_crop_batch, rand_affine_batch, random_erase_batch])
def test_an_empty_batch_comes_back_empty(f):
    # an empty batch has nothing to move: the same empty batch back, as from every other transform
    x = torch.zeros(0, 2, 9, 13)
    out = f(x)
    assert out.shape == x.shape and out.dtype == x.dtype


# RandomResizedCrop and PerspectiveWarp, the course's per-image transforms as batch transforms

def test_a_whole_image_crop_and_an_unmoved_warp_give_the_images_back():
    x = images()
    torch.testing.assert_close(RandomResizedCrop(scale=(1, 1), ratio=(1, 1))(x), x,
                               rtol=0, atol=1e-12)
    torch.testing.assert_close(PerspectiveWarp(0.)(x), x, rtol=0, atol=1e-12)

@pytest.mark.parametrize('top,left,h,w', [(0, 0, 5, 6), (2, 3, 7, 10), (4, 7, 5, 6)])
def test_a_known_crop_is_slicing_and_bilinear_resizing(top, left, h, w):
    x = images(h=9, w=13)
    box = lambda v: torch.full((len(x),), float(v), dtype=F64)
    out = grid_sample(x, affine_grid(crop_theta(box(top), box(left), box(h), box(w), (9, 13)),
                                     (len(x), 2, 2*h, 2*w)))
    sliced = F.interpolate(x[:, :, top:top+h, left:left+w], size=(2*h, 2*w), mode='bilinear',
                           align_corners=False)
    # F.interpolate repeats the slice's edge; the grid reads the pixels beyond it: the inside agrees
    torch.testing.assert_close(out[..., 1:-1, 1:-1], sliced[..., 1:-1, 1:-1], rtol=0, atol=1e-12)

def test_random_resized_crop_boxes_fit_and_follow_scale_and_ratio():
    torch.manual_seed(0)
    like = torch.empty(0, dtype=F64)
    theta = RandomResizedCrop(scale=(0.2, 0.6), ratio=(0.5, 2.)).theta(2000, like)
    sw, sh, cx, cy = theta[:, 0, 0], theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2]
    assert (theta[:, 0, 1] == 0).all() and (theta[:, 1, 0] == 0).all()     # no rotation
    assert (cx.abs() + sw <= 1 + 1e-12).all() and (cy.abs() + sh <= 1 + 1e-12).all()
    # a side longer than the image is clipped (sqrt(0.6 * 2) > 1): the others keep area and ratio
    kept = (sw < 1) & (sh < 1)
    area, ratio = (sw * sh)[kept], (sw / sh)[kept]
    assert area.min() >= 0.2 - 1e-9 and area.max() <= 0.6 + 1e-9
    assert ratio.min() >= 0.5 - 1e-9 and ratio.max() <= 2 + 1e-9
    assert 0.9 < (ratio > 1).float().mean() / (ratio < 1).float().mean() < 1.1   # log-uniform

def test_random_resized_crop_output_size():
    x = images()
    assert RandomResizedCrop(size=5)(x).shape == (len(x), 2, 5, 5)
    assert RandomResizedCrop(size=(4, 11))(x).shape == (len(x), 2, 4, 11)

def test_homography_sends_the_corners_onto_the_drawn_points():
    torch.manual_seed(1)
    like = torch.empty(0, dtype=F64)
    src = PerspectiveWarp(0.4).corners(50, like)
    assert (src - torch.tensor(CORNERS, dtype=F64)).abs().max() <= 0.4
    hom = homography(src)
    corners = torch.cat([torch.tensor(CORNERS, dtype=F64), torch.ones(4, 1, dtype=F64)], 1)
    mapped = hom @ corners.T
    torch.testing.assert_close((mapped[:, :2] / mapped[:, 2:]).transpose(1, 2), src,
                               rtol=0, atol=1e-12)

def test_an_affine_homography_is_the_affine_map():
    x = images()
    torch.manual_seed(2)
    theta = rand_affine(len(x), degrees=25, scale=(0.7, 1.3), shift=0.2, like=x)
    corners = torch.tensor(CORNERS, dtype=F64)
    hom = homography((theta[:, :, :2] @ corners.T + theta[:, :, 2:]).transpose(1, 2))
    torch.testing.assert_close(hom[:, :2], theta, rtol=0, atol=1e-12)
    torch.testing.assert_close(homography_grid(hom, x.shape), affine_grid(theta, x.shape),
                               rtol=0, atol=1e-12)
    torch.testing.assert_close(grid_sample(x, homography_grid(hom, x.shape)),
                               affine_batch(x, theta), rtol=0, atol=1e-12)

def test_bad_crop_and_warp_settings_are_refused_by_name():
    with pytest.raises(ValueError, match='RandomResizedCrop: .*scale'):
        RandomResizedCrop(scale=(0, 1))
    with pytest.raises(ValueError, match='RandomResizedCrop: .*ratio'):
        RandomResizedCrop(ratio=(2, 1))
    with pytest.raises(ValueError, match='PerspectiveWarp: magnitude'): PerspectiveWarp(0.5)
    for f in [RandomResizedCrop(), PerspectiveWarp()]:
        name = type(f).__name__
        with pytest.raises(ValueError, match=name): f(torch.zeros(3, 28, 28))
        assert f(torch.zeros(0, 2, 9, 13)).shape == (0, 2, 9, 13)   # an empty batch comes back

@pytest.mark.skipif(not torch.cuda.is_available(), reason='no GPU here')
def test_crop_and_warp_run_on_cuda():
    x = images(dtype=torch.float32).cuda()
    for f in [RandomResizedCrop(), PerspectiveWarp()]:
        y = f(x)
        assert y.is_cuda and y.shape == x.shape
