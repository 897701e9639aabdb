"""11: ResBlock against its formula in F.* calls, zero-init identity at start, XResNet sizes and
shapes, the small-image arguments, cnn_learner/sched_1cycle, get_preds with flip TTA, and the data
splits."""
import math
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from exp.nb_11 import (Callback, Flatten, LabelSmoothingCrossEntropy, ResBlock,
                       XResNet, adam_opt, cnn_learner, conv, conv_layer, fashion_splits, get_preds,
                       image_norm, images_databunch, mnist_splits, noop, sched_1cycle,
                       eval_accuracy, xresnet18, xresnet34, xresnet50, fit_xresnet, shifts,
                       with_valid_in_train)


def bn_eval(x, bn):
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, training=False,
                        eps=bn.eps)

def randomize_bns(m, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in m.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.weight.copy_(torch.randn(bn.weight.shape, generator=g))
                bn.bias.copy_(torch.randn(bn.bias.shape, generator=g))
                bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=g))
                bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=g) + 0.5)


def test_conv_pads_to_keep_or_halve_the_size():
    x = torch.randn(2, 3, 9, 9)
    assert conv(3, 5)(x).shape == (2, 5, 9, 9)
    assert conv(3, 5, stride=2)(x).shape == (2, 5, 5, 5)
    assert conv(3, 5).bias is None and conv(3, 5, bias=True).bias is not None
    assert noop(x) is x
    assert Flatten()(torch.randn(4, 7, 1, 1)).shape == (4, 7)

def test_conv_layer_parts():
    assert [type(m) for m in conv_layer(2, 4)] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    last = conv_layer(2, 4, zero_bn=True, act=False)
    assert [type(m) for m in last] == [nn.Conv2d, nn.BatchNorm2d] and (last[1].weight == 0).all()

def test_basic_block_matches_its_formula():
    torch.manual_seed(0)
    b = ResBlock(1, 6, 12, stride=2).eval()
    randomize_bns(b)
    x = torch.randn(3, 6, 9, 9, dtype=torch.float64)
    b = b.double()
    (c1, bn1, _), (c2, bn2) = b.convs
    h = F.relu(bn_eval(F.conv2d(x, c1.weight, stride=2, padding=1), bn1))
    r = bn_eval(F.conv2d(h, c2.weight, padding=1), bn2)
    s = bn_eval(F.conv2d(F.avg_pool2d(x, 2, ceil_mode=True), b.idconv[0].weight), b.idconv[1])
    out = b(x)
    assert out.shape == (3, 12, 5, 5)
    torch.testing.assert_close(out, F.relu(r + s), rtol=0, atol=1e-10)

def test_bottleneck_block_matches_its_formula_and_strides_in_the_3x3():
    torch.manual_seed(1)
    b = ResBlock(4, 4, 8, stride=2).eval().double()   # 16 channels in, 32 out, 8 in the middle
    randomize_bns(b, 1)
    (c1, bn1, _), (c2, bn2, _), (c3, bn3) = b.convs
    assert (c1.kernel_size, c1.stride) == ((1, 1), (1, 1))
    assert (c2.kernel_size, c2.stride) == ((3, 3), (2, 2))
    x = torch.randn(2, 16, 8, 8, dtype=torch.float64)
    r = F.relu(bn_eval(F.conv2d(x, c1.weight), bn1))
    r = F.relu(bn_eval(F.conv2d(r, c2.weight, stride=2, padding=1), bn2))
    r = bn_eval(F.conv2d(r, c3.weight), bn3)
    s = bn_eval(F.conv2d(F.avg_pool2d(x, 2, ceil_mode=True), b.idconv[0].weight), b.idconv[1])
    torch.testing.assert_close(b(x), F.relu(r + s), rtol=0, atol=1e-10)

def test_same_shape_block_has_no_shortcut_layers():
    b = ResBlock(1, 8, 8)
    assert b.idconv is noop and b.pool is noop

@pytest.mark.parametrize('expansion', [1, 4])
def test_fresh_blocks_start_as_the_identity(expansion):
    torch.manual_seed(2)
    b = ResBlock(expansion, 8, 8).eval()
    x = torch.randn(2, 8*expansion, 6, 6)
    torch.testing.assert_close(b(x), F.relu(x), rtol=0, atol=0)

def test_only_the_last_bn_of_each_block_starts_at_zero():
    m = xresnet18(c_in=1, c_out=10, width=8, stem_strides=(1, 2, 1), stem_pool=False)
    blocks = [b for b in m.modules() if isinstance(b, ResBlock)]
    assert len(blocks) == 8
    last = {id(b.convs[-1][1]) for b in blocks}
    for bn in (x for x in m.modules() if isinstance(x, nn.BatchNorm2d)):
        assert (bn.weight == (0. if id(bn) in last else 1.)).all()

@pytest.mark.parametrize('arch, torchvision_count', [
    (xresnet18, 11_689_512),
    (xresnet50, 25_557_032),
])
def test_paper_sizes_are_close_to_torchvisions_resnets(arch, torchvision_count):
    n = sum(p.numel() for p in arch().parameters())
    assert abs(n - torchvision_count) / torchvision_count < 0.02, n

def test_xresnet_default_is_for_imagenet_sized_pictures():
    m = xresnet34(c_out=7).eval()
    with torch.no_grad(): assert m(torch.randn(1, 3, 64, 64)).shape == (1, 7)
    assert isinstance(m[3], nn.MaxPool2d) and m[0][0].stride == (2, 2)

def test_small_image_arguments_change_the_stem_and_width():
    m = XResNet.create(1, [1, 1], c_in=1, c_out=3, width=8, stem_strides=(1, 1, 1), stem_pool=False)
    assert not any(isinstance(l, nn.MaxPool2d) for l in m) and m[0][0].stride == (1, 1)
    feats = m[:-3](torch.randn(2, 1, 28, 28))
    # width 8, doubled once; one halving in the second group
    assert feats.shape == (2, 16, 14, 14)
    assert m[-1].in_features == 16 and m[-1].out_features == 3



def test_images_databunch_batches_and_sizes():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g)
    data = images_databunch(x, y, x[:32], y[:32], bs=16)
    xb, yb = next(iter(data.train_dl))
    assert xb.shape == (16, 1, 28, 28) and data.c_in == 1 and data.c_out == 10
    assert next(iter(data.valid_dl))[0].shape == (32, 1, 28, 28)

def test_image_norm_gives_zero_mean_unit_std():
    x = torch.rand(50, 2, 5, 5) * 3 + 1
    z = image_norm(x)(x)
    torch.testing.assert_close(z.mean((0, 2, 3)), torch.zeros(2), rtol=0, atol=1e-5)
    torch.testing.assert_close(z.std((0, 2, 3)), torch.ones(2), rtol=0, atol=1e-5)

def test_cnn_learner_sizes_the_model_and_schedules_lr_and_mom(make_tiny_data):
    torch.manual_seed(0)
    data = make_tiny_data(n_train=64, n_valid=32, shape=(1, 28, 28), n_classes=10, uniform=True)
    learn = cnn_learner(xresnet18, data, LabelSmoothingCrossEntropy(), adam_opt(wd=0.1), lr=1e-3,
                        width=8, stem_strides=(1, 2, 1), stem_pool=False)
    learn.logger = lambda line: None
    assert learn.model[-1].out_features == 10 and learn.model[0][0].in_channels == 1
    seen = []
    class Spy(Callback):
        _order = 50
        def begin_batch(self):
            if self.in_train:
                seen.append((self.opt.param_groups[0]['lr'], self.opt.param_groups[0]['mom']))
    learn.fit(2, cbs=sched_1cycle(1e-3, pct_start=0.5) + [Spy()])
    lrs, moms = zip(*seen)
    assert len(lrs) == 8 and lrs[0] == pytest.approx(1e-4) and max(lrs) <= 1e-3 and lrs[-1] < lrs[3]
    assert moms[0] == pytest.approx(0.95) and min(moms) >= 0.85 and min(moms) < 0.9
    assert len(learn.epoch_history.train) == 2

def test_sched_1cycle_one_schedule_per_group():
    scheds = sched_1cycle([1e-3, 1e-2])
    assert len(scheds[0].sched_funcs) == 2
    assert scheds[0].sched_funcs[1](0.3) == pytest.approx(1e-2)
    assert scheds[0].sched_funcs[0](0.) == pytest.approx(1e-4)

def test_get_preds_tta_averages_with_flipped_images_and_restores_mode():
    torch.manual_seed(3)
    model = nn.Sequential(Flatten(), nn.Linear(4*5, 3)).train()
    x = torch.randn(7, 1, 4, 5)
    plain = get_preds(model, x, bs=3)
    assert model.training
    torch.testing.assert_close(plain, F.softmax(model(x), -1))
    tta = get_preds(model.eval(), x, bs=3, tta=True)
    flipped = F.softmax(model(x.flip(-1)), -1)
    torch.testing.assert_close(tta, (F.softmax(model(x), -1) + flipped) / 2)

def test_eval_accuracy_counts_correct_predictions():
    class Fixed(nn.Module):
        def forward(self, x): return x.flatten(1)[:, :3]
    learn = type('L', (), {'model': Fixed()})()
    x = torch.zeros(4, 1, 1, 3); x[0, 0, 0, 0] = x[1, 0, 0, 1] = x[2, 0, 0, 2] = x[3, 0, 0, 0] = 1
    assert eval_accuracy(learn, x, torch.tensor([0, 1, 2, 2])) == pytest.approx(0.75)

def test_splits_shapes_and_held_out_validation():
    x_tr, y_tr, x_va, y_va, x_te, y_te = fashion_splits(n_valid=5000)
    assert (len(x_tr), len(x_va), len(x_te)) == (55000, 5000, 10000)
    assert x_tr.shape[1:] == (1, 28, 28)
    assert x_tr.dtype == torch.float32 and 0 <= x_tr.min() and x_tr.max() <= 1
    m = mnist_splits()
    assert [len(t) for t in m] == [50000, 50000, 10000, 10000, 10000, 10000]
    assert m[0].shape[1:] == (1, 28, 28)

@pytest.mark.parametrize('n_valid', [0, 60000, -3])
def test_fashion_splits_refuses_a_bad_n_valid(n_valid):
    with pytest.raises(ValueError, match='n_valid'): fashion_splits(n_valid=n_valid)

def test_stem_strides_need_three_values():
    with pytest.raises(ValueError, match='stem_strides'):
        XResNet.create(1, [1], stem_strides=(2, 1))


def tiny_splits(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 28, 28, generator=g); y = torch.randint(0, 10, (n,), generator=g)
    return x, y, x[:16], y[:16], x[16:32], y[16:32]

def test_shifts_moves_by_at_most_two_pixels():
    torch.manual_seed(0)
    x = torch.zeros(200, 1, 28, 28); x[:, :, 13, 13] = 1
    out = shifts(x)
    rows, cols = [(out[:, 0] == 1).nonzero()[:, k] for k in (1, 2)]
    assert out.shape == x.shape and len(rows) == 200   # every image keeps its one lit pixel
    assert set((rows - 13).tolist()) == set((cols - 13).tolist()) == {-2, -1, 0, 1, 2}

@pytest.mark.parametrize('channels_last', [True, False])
def test_fit_xresnet_trains_with_either_memory_layout_and_gives_the_same_losses(channels_last):
    # the layout changes how the convolutions are computed, not what they compute
    runs = {}
    for cl in (channels_last, not channels_last):
        learn, norm, secs = fit_xresnet(tiny_splits(), [shifts], width=8, bs=16, epochs=2, seed=5,
                                        channels_last=cl)
        runs[cl] = learn.epoch_history.column('train')
        # the stem's second conv: 16 input channels, so the two layouts differ
        conv_w = learn.model[1][0].weight
        assert conv_w.is_contiguous(memory_format=torch.channels_last) == cl
        assert conv_w.is_contiguous() != cl
        assert secs > 0 and len(runs[cl]) == 2
    torch.testing.assert_close(torch.tensor(runs[True]), torch.tensor(runs[False]),
                               rtol=1e-4, atol=1e-5)

@pytest.fixture
def deterministic():
    """Deterministic kernels for the test, the settings put back after. On a GPU cuDNN may pick
    convolution backward algorithms that add in a different order from run to run, so two runs
    from one seed differ in the last bits; on the CPU this changes nothing."""
    cudnn = torch.backends.cudnn
    saved = (cudnn.deterministic, cudnn.benchmark, torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled())
    cudnn.deterministic, cudnn.benchmark = True, False
    # warn_only: an op with no deterministic version warns instead of failing the test
    torch.use_deterministic_algorithms(True, warn_only=True)
    try: yield
    finally:
        cudnn.deterministic, cudnn.benchmark = saved[:2]
        torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])

def test_fit_xresnet_is_seeded(deterministic):
    a, _, _ = fit_xresnet(tiny_splits(), [shifts], width=8, bs=16, epochs=1, seed=3)
    b, _, _ = fit_xresnet(tiny_splits(), [shifts], width=8, bs=16, epochs=1, seed=3)
    assert a.epoch_history.train == b.epoch_history.train

def test_with_valid_in_train_adds_the_validation_images_and_keeps_the_test_images_out():
    s = tiny_splits()
    a = with_valid_in_train(s)
    assert len(a) == 6 and torch.equal(a[0], torch.cat([s[0], s[2]]))
    assert torch.equal(a[1], torch.cat([s[1], s[3]]))
    assert all(x is y for x, y in zip(a[2:], s[2:]))


# --- the device rule: the data goes where the model is ---

class Stop(Exception):
    "Raised by a spy in a model's forward: the device has been seen, nothing more to compute."

def spy_on_input_device(model, seen):
    "Record the device of each input `model` receives, then stop before any output is made."
    def hook(module, args):
        seen.append(args[0].device)
        raise Stop()
    return model.register_forward_pre_hook(hook)

def test_get_preds_feeds_a_meta_model_meta_images_normalized_there():
    model = nn.Sequential(Flatten(), nn.Linear(4*5, 3)).to('meta').train()
    seen = []
    spy_on_input_device(model, seen)
    norm = image_norm(torch.rand(10, 1, 4, 5))          # statistics computed on the CPU
    with pytest.raises(Stop): get_preds(model, torch.rand(7, 1, 4, 5), norm)
    assert seen == [torch.device('meta')] and model.training

def test_get_preds_reads_the_device_from_the_model_not_def_device(monkeypatch):
    # as on a GPU machine whose model was left on the CPU: def_device names another device
    import exp.nb_11 as nb_11
    monkeypatch.setattr(nb_11, 'def_device', torch.device('meta'))
    torch.manual_seed(4)
    model, x = nn.Sequential(Flatten(), nn.Linear(4*5, 3)), torch.randn(5, 1, 4, 5)
    torch.testing.assert_close(get_preds(model, x), F.softmax(model(x), -1))

def test_image_norm_statistics_follow_the_batch(monkeypatch):
    import exp.nb_11 as nb_11
    x = torch.rand(20, 2, 4, 4)
    out = image_norm(x)(torch.empty(3, 2, 4, 4, device='meta'))
    assert out.device == torch.device('meta') and out.shape == (3, 2, 4, 4)
    # with def_device elsewhere (a GPU machine), a CPU batch is still normalized on the CPU
    monkeypatch.setattr(nb_11, 'def_device', torch.device('meta'))
    z = image_norm(x)(x)
    assert z.device == torch.device('cpu')
    torch.testing.assert_close(z.mean((0, 2, 3)), torch.zeros(2), rtol=0, atol=1e-5)

@pytest.mark.parametrize('cuda, expected', [(False, 'cpu'), (True, 'meta')])
def test_cnn_learner_cuda_moves_the_model_to_def_device_or_leaves_it(make_tiny_data, monkeypatch,
                                                                     cuda, expected):
    # def_device stands for a GPU: cuda=True moves the model (and so the batches) there; with
    # cuda=False the model stays on the CPU and its batches must come to it there
    import exp.nb_04 as nb_04, exp.nb_11 as nb_11
    for module in (nb_04, nb_11): monkeypatch.setattr(module, 'def_device', torch.device('meta'))
    data = make_tiny_data(n_train=16, n_valid=16, shape=(1, 16, 16), n_classes=3)
    learn = cnn_learner(xresnet18, data, F.cross_entropy, adam_opt(), cuda=cuda, width=8,
                        stem_strides=(1, 2, 1), stem_pool=False, norm=image_norm(data.train_ds.x))
    learn.logger, seen = (lambda line: None), []
    spy_on_input_device(learn.model, seen)
    with pytest.raises(Stop): learn.fit(1)
    assert seen == [torch.device(expected)]


# --- refusals: what XResNet cannot be built with, or cannot be fed ---

@pytest.mark.parametrize('width, expansion, msg', [
    (0, 1, 'width must be a whole number >= 1, got 0'),
    (-8, 1, 'width must be a whole number >= 1, got -8'),
    (18, 4, 'width must be a multiple of the expansion 4, got 18'),
])
def test_xresnet_refuses_a_bad_width(width, expansion, msg):
    with pytest.raises(ValueError, match=msg): XResNet.create(expansion, [1, 1], width=width)

@pytest.mark.parametrize('kwargs, msg', [
    (dict(c_in=0), 'c_in must be a whole number >= 1, got 0'),
    (dict(c_out=0), 'c_out must be a whole number >= 1, got 0'),
    (dict(layers=[2, 0]), r'layers\[1\] must be a whole number >= 1, got 0'),
    (dict(stem_strides=(1, 0, 1)), r'stem_strides\[1\] must be a whole number >= 1, got 0'),
])
def test_xresnet_refuses_other_bad_sizes(kwargs, msg):
    kwargs = dict(dict(expansion=1, layers=[1, 1]), **kwargs)
    with pytest.raises(ValueError, match=msg): XResNet.create(**kwargs)

def test_xresnet_names_c_in_when_the_images_have_other_channels():
    m = xresnet18(c_in=1, c_out=10, width=8, stem_strides=(1, 2, 1), stem_pool=False)
    with pytest.raises(ValueError, match=r'3 channels .*\(2, 3, 28, 28\).*c_in=1'):
        m(torch.randn(2, 3, 28, 28))
    with pytest.raises(ValueError, match=r'\(N, 1, H, W\).*\(2, 784\)'):
        m(torch.randn(2, 784))

@pytest.mark.parametrize('kwargs', [
    dict(),                                    # stem strides (2, 1, 1), the max pool, 3 groups
    dict(stem_strides=(1, 2, 1), stem_pool=False),
])
def test_xresnet_takes_small_images_and_names_a_batch_too_small_to_train_on(kwargs):
    "Stride-2 convs round up: maps never vanish. BatchNorm in training needs 2 values a channel."
    m = xresnet18(c_in=1, c_out=3, width=8, **kwargs)
    for side in (28, 8, 3, 1):
        with torch.no_grad(): assert m.eval()(torch.randn(1, 1, side, side)).shape == (1, 3)
        assert m.train()(torch.randn(2, 1, side, side)).shape == (2, 3)
    with pytest.raises(ValueError, match=r'batch of 1 image\(s\) of 8x5 reaches layer \d+ as '
                       r'\dx\d maps and leaves BatchNorm one value per channel') as info:
        m.train()(torch.randn(1, 1, 8, 5))
    assert 'value per channel' in str(info.value.__cause__)   # torch's error, chained


# --- timings read after the device has finished ---

def clock_log(monkeypatch, module):
    "Replace `module`'s sync and clock by recorders writing, in order, into the list returned."
    log = []
    monkeypatch.setattr(module, 'sync', lambda device: log.append(('sync', str(device))))
    fake_time = type('T', (), {'perf_counter': staticmethod(lambda: log.append('clock') or
                                                            float(len(log)))})
    monkeypatch.setattr(module, 'time', fake_time)
    return log

def test_imgs_per_sec_syncs_before_each_clock_read(monkeypatch):
    import exp.nb_11 as nb_11
    log = clock_log(monkeypatch, nb_11)
    assert nb_11.imgs_per_sec(4, bs=2, n_steps=1) > 0
    assert log == [('sync', 'cpu'), 'clock', ('sync', 'cpu'), 'clock']

def test_fit_xresnet_syncs_before_reading_the_clock(monkeypatch):
    import exp.nb_11 as nb_11
    log = clock_log(monkeypatch, nb_11)
    *_, secs = fit_xresnet(tiny_splits(), [shifts], width=8, bs=16, epochs=1)
    assert log[-2:] == [('sync', 'cpu'), 'clock'] and secs > 0


def test_smooth_losses_debiases_so_a_constant_loss_stays_constant():
    from exp.nb_11 import smooth_losses
    assert smooth_losses([2.0] * 5) == pytest.approx([2.0] * 5)
    # without the debiasing the first value would be 0.1 * 3.0
    assert smooth_losses([3.0, 1.0], beta=0.9)[0] == pytest.approx(3.0)
    assert smooth_losses([3.0, 1.0], beta=0.9)[1] == pytest.approx((0.09 * 3 + 0.1) / 0.19)


def test_suggest_lr_is_a_tenth_of_the_lowest_smoothed_loss_rounded_to_a_power_of_ten():
    from exp.nb_11 import suggest_lr
    lrs = [10 ** (-4 + i / 10) for i in range(41)]            # 1e-4 .. 1
    losses = [(math.log10(lr) + 0.7) ** 2 for lr in lrs]       # lowest at 0.2
    assert suggest_lr(lrs, losses, beta=0.) == pytest.approx(1e-2)   # 0.02 rounds to 1e-2
    assert suggest_lr(lrs, losses, div=1, beta=0.) == pytest.approx(1e-1)
    with pytest.raises(ValueError, match='one loss per rate, got 41 rates and 3 losses'):
        suggest_lr(lrs, losses[:3])
