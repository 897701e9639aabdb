"""11a: weights saved and loaded exactly (state_dict round trip), refusals; class subsets; the new
head (AdaptiveConcatPool2d, adapt_model); freezing with BatchNorm kept trainable; bn_splitter's
groups and discriminative rates through sched_1cycle; DebugCallback."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from exp.nb_11a import (AdaptiveConcatPool2d, CancelTrainException, DebugCallback, Learner,
                        adam_opt, adapt_model, apply_mod, bn_splitter, body_cut, cb_types,
                        class_subset, freeze, load_model, save_model, sched_1cycle, set_grad,
                        unfreeze)


def tiny_cnn(c_out=3, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, c_out))

@pytest.fixture
def make_data(make_tiny_data):
    """A factory: 48 + 16 random 1x8x8 images with random labels among `c_out` classes (3 training
    batches of 16, 1 validation batch)."""
    return lambda c_out=3, seed=0: make_tiny_data(shape=(1, 8, 8), n_classes=c_out, seed=seed)

def trained(model, data, epochs=1):
    learn = Learner(model, data, F.cross_entropy, opt_func=adam_opt(wd=1e-2), lr=1e-2)
    learn.fit(epochs)
    return learn


# --- saving and loading ---

def test_round_trip_is_exact_weights_buffers_and_predictions(make_data, tmp_path):
    data = make_data()
    # BatchNorm buffers moved away from their init
    model = trained(tiny_cnn(), data).model
    path = save_model(model, tmp_path/'sub'/'w.pth')
    other = load_model(tiny_cnn(seed=1), path)
    a, b = model.state_dict(), other.state_dict()
    assert list(a) == list(b) and any('running_mean' in k for k in a)
    for k in a: assert torch.equal(a[k], b[k]), k
    model.eval(); other.eval()
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad(): assert torch.equal(model(x), other(x))

def test_save_refuses_to_overwrite_unless_told(tmp_path):
    path = tmp_path/'w.pth'
    save_model(tiny_cnn(seed=0), path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match='w.pth'): save_model(tiny_cnn(seed=1), path)
    assert path.read_bytes() == before
    save_model(tiny_cnn(seed=1), path, overwrite=True)
    assert torch.equal(torch.load(path, weights_only=True)['0.weight'], tiny_cnn(seed=1)[0].weight)
    assert [p.name for p in tmp_path.iterdir()] == ['w.pth']        # no temporary file left behind

def test_load_names_the_file_when_weights_do_not_fit(tmp_path):
    path = save_model(tiny_cnn(c_out=3), tmp_path/'w.pth')
    with pytest.raises(RuntimeError, match=r'w\.pth.*Sequential'):
        load_model(tiny_cnn(c_out=5), path)
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        load_model(tiny_cnn(), tmp_path/'missing.pth')


# --- data ---

def test_class_subset_relabels_in_the_given_order_and_draws_per_class():
    y = torch.tensor([0, 1, 2, 3] * 10)
    x = torch.arange(40.)
    xs, ys = class_subset(x, y, [3, 1])
    assert ys.tolist() == [1, 0] * 10 and (y[xs.long()] == torch.tensor([1, 3] * 10)).all()
    xs, ys = class_subset(x, y, [3, 1], n_per_class=4, seed=2)
    assert ys.bincount().tolist() == [4, 4]
    assert torch.equal(xs, class_subset(x, y, [3, 1], n_per_class=4, seed=2)[0])
    assert not torch.equal(xs, class_subset(x, y, [3, 1], n_per_class=4, seed=3)[0])

@pytest.mark.parametrize('classes, n, msg', [
    ([1, 1], None, 'distinct'),
    ([], None, 'distinct'),
    ([7], None, 'class 7 has 0'),
    ([1], 11, 'class 1 has 10 items, 11'),
])
def test_class_subset_refuses_bad_requests(classes, n, msg):
    y = torch.tensor([0, 1, 2, 3] * 10)
    with pytest.raises(ValueError, match=msg):
        class_subset(torch.arange(40.), y, classes, n_per_class=n)


# --- the new head ---

@pytest.mark.parametrize('sz', [1, 2])
def test_adaptive_concat_pool_is_max_then_average(sz):
    x = torch.randn(3, 5, 6, 7)
    out = AdaptiveConcatPool2d(sz)(x)
    assert out.shape == (3, 10, sz, sz)
    assert torch.equal(out[:, :5], F.adaptive_max_pool2d(x, sz))
    torch.testing.assert_close(out[:, 5:], F.adaptive_avg_pool2d(x, sz))

def test_adapt_model_keeps_the_body_and_puts_a_new_head(make_data):
    learn, data = trained(tiny_cnn(c_out=3), make_data(c_out=3)), make_data(c_out=4, seed=1)
    old = learn.model
    assert body_cut(old) == 6
    stats = old[4].running_mean.clone()
    adapt_model(learn, data)
    m = learn.model
    # the same (pretrained) modules
    assert all(a is b for a, b in zip(m[0], list(old.children())[:6]))
    # the probe did not touch the statistics
    assert torch.equal(m[0][4].running_mean, stats)
    assert isinstance(m[1], AdaptiveConcatPool2d) and m[-1].in_features == 16
    assert m[-1].out_features == 4
    assert m(torch.randn(2, 1, 8, 8)).shape == (2, 4)

def test_body_cut_refuses_a_model_without_pooling():
    with pytest.raises(ValueError, match='no adaptive pooling'):
        body_cut(nn.Sequential(nn.Linear(2, 2)))


# --- freezing and param groups ---

@pytest.fixture
def adapted(make_data):
    "A tiny CNN trained one epoch on 3 classes, then given a new head by adapt_model; and its data."
    data = make_data(c_out=3)
    learn = trained(tiny_cnn(3), data)
    adapt_model(learn, data)
    return learn, data

def body_params(m, kind):
    return [p for l in m[0].modules() if isinstance(l, kind) for p in l.parameters()]
def bn_params(m): return body_params(m, nn.BatchNorm2d)
def conv_params(m): return body_params(m, nn.Conv2d)

@pytest.mark.parametrize('train_bn', [True, False])
def test_frozen_body_does_not_move_but_its_batchnorm_trains_if_asked(adapted, train_bn):
    learn, data = adapted
    freeze(learn.model, train_bn)
    assert not any(p.requires_grad for p in conv_params(learn.model))
    assert all(p.requires_grad == train_bn for p in bn_params(learn.model))
    assert all(p.requires_grad for p in learn.model[1:].parameters())
    convs, bns, head = ([p.detach().clone() for p in ps] for ps in
                        (conv_params(learn.model), bn_params(learn.model),
                         list(learn.model[1:].parameters())))
    learn.fit(2, reset_opt=True)
    assert all(torch.equal(a, p) for a, p in zip(convs, conv_params(learn.model)))
    assert any(not torch.equal(a, p) for a, p in zip(bns, bn_params(learn.model))) == train_bn
    assert any(not torch.equal(a, p) for a, p in zip(head, learn.model[1:].parameters()))

def test_freezing_drops_stale_gradients_so_the_optimizer_leaves_frozen_weights_alone(adapted):
    learn, data = adapted
    learn.fit(1, reset_opt=True)          # Adam's momentum and weight decay for every parameter
    # zero gradients left behind, as an optimizer that zeroes instead of dropping them leaves them
    for p in conv_params(learn.model): p.grad = torch.zeros_like(p)
    freeze(learn.model)
    convs = [p.detach().clone() for p in conv_params(learn.model)]
    learn.opt.step()                      # a bare step: no fit drops the gradients before it
    assert all(p.grad is None for p in conv_params(learn.model))
    assert all(torch.equal(a, p) for a, p in zip(convs, conv_params(learn.model)))
    learn.fit(1)
    assert all(torch.equal(a, p) for a, p in zip(convs, conv_params(learn.model)))

def test_unfreeze_lets_everything_train_again(adapted):
    learn, _ = adapted
    freeze(learn.model, train_bn=False)
    unfreeze(learn.model)
    assert all(p.requires_grad for p in learn.model.parameters())

def test_set_grad_through_apply_mod_skips_linear_and_batchnorm():
    m = tiny_cnn()
    apply_mod(m, lambda l: set_grad(l, False))
    frozen = {n for n, p in m.named_parameters() if not p.requires_grad}
    assert frozen == {'0.weight', '0.bias', '3.weight', '3.bias'}

def test_bn_splitter_partitions_the_parameters(adapted):
    learn, _ = adapted
    body, rest = bn_splitter(learn.model)
    ids = lambda ps: {id(p) for p in ps}
    n_params = len(list(learn.model.parameters()))
    assert len(body) + len(rest) == len(ids(body) | ids(rest)) == n_params
    assert ids(body) == ids(conv_params(learn.model))
    assert ids(bn_params(learn.model)) <= ids(rest)


# --- schedules per param group, DebugCallback ---

def test_sched_1cycle_gives_each_param_group_its_own_rate():
    lr_sched, mom_sched = sched_1cycle([1e-3, 1e-2], pct_start=0.3)
    assert [f(0.) for f in lr_sched.sched_funcs] == pytest.approx([1e-4, 1e-3])
    assert [f(0.3) for f in lr_sched.sched_funcs] == pytest.approx([1e-3, 1e-2])
    assert [f(1.) for f in lr_sched.sched_funcs] == pytest.approx([1e-8, 1e-7])
    moms = [mom_sched.sched_funcs(pos) for pos in (0., 0.3, 1.)]
    assert moms == pytest.approx([0.95, 0.85, 0.95])
    single, _ = sched_1cycle(1e-2)
    assert callable(single.sched_funcs) and single.sched_funcs(0.3) == pytest.approx(1e-2)

def test_discriminative_rates_reach_the_optimizer_groups(adapted):
    learn, data = adapted
    learn.splitter, seen = bn_splitter, []
    def record(run):
        seen.append([pg['lr'] for pg in run.opt.param_groups])
        raise CancelTrainException()
    learn.fit(1, cbs=sched_1cycle([1e-3, 1e-2], 0.3) + [DebugCallback(cb_types.after_step, record)],
              reset_opt=True)
    assert seen == [pytest.approx([1e-4, 1e-3])]

def test_debug_callback_fires_only_at_its_event(adapted):
    learn, data = adapted
    calls = []
    record = lambda run: calls.append(run.in_train)
    learn.fit(1, cbs=[DebugCallback(cb_types.begin_validate, record)])
    assert calls == [False]
    assert set(vars(cb_types)) == set(Learner.events)


def test_on_11s_xresnet_round_trip_adapt_freeze_and_split(make_data, tmp_path):
    from exp.nb_11a import xresnet18
    def make(seed):
        torch.manual_seed(seed)
        return xresnet18(c_in=1, c_out=3, width=8, stem_strides=(1, 2, 1), stem_pool=False)
    data = make_data(c_out=3)
    learn = trained(make(0), data)
    path = save_model(learn.model, tmp_path/'x.pth')
    learn2 = Learner(load_model(make(1), path), make_data(c_out=4, seed=1), F.cross_entropy,
                     opt_func=adam_opt(), lr=1e-2)
    for k, v in learn.model.state_dict().items():
        assert torch.equal(v, learn2.model.state_dict()[k]), k
    adapt_model(learn2, learn2.data)
    m = learn2.model
    assert m(torch.randn(2, 1, 8, 8)).shape == (2, 4)
    freeze(m)
    body, rest = bn_splitter(m)
    assert body and not any(p.requires_grad for p in body)
    assert all(p.requires_grad for p in rest) and len(body) + len(rest) == len(list(m.parameters()))


# --- files that are not weights, folders that cannot be written ---

def weights_file_variants(folder):
    "Files load_model must refuse, each with the words its message must contain."
    good = save_model(tiny_cnn(), folder/'good.pth').read_bytes()
    (folder/'empty.pth').write_bytes(b'')
    (folder/'truncated.pth').write_bytes(good[:len(good) // 2])
    (folder/'notes.pth').write_text('these are not weights\n')
    torch.save(tiny_cnn(), folder/'whole_model.pth')                 # pickled objects, not tensors
    torch.save(torch.zeros(3), folder/'tensor.pth')
    torch.save({'model': tiny_cnn().state_dict(), 'epoch': 3}, folder/'checkpoint.pth')
    return {'empty.pth': 'is empty', 'truncated.pth': 'truncated or damaged',
            'notes.pth': 'not a weights file', 'whole_model.pth': 'Python objects',
            'tensor.pth': 'holds a Tensor, not a state_dict',
            'checkpoint.pth': "entries that are not tensors: 'model', 'epoch'"}

def test_load_refuses_files_that_are_not_weights_naming_the_file_and_the_fault(tmp_path):
    for name, words in weights_file_variants(tmp_path).items():
        with pytest.raises(ValueError) as e: load_model(tiny_cnn(), tmp_path/name)
        msg = str(e.value)
        assert msg.startswith(f'load_model: {tmp_path/name}') and words in msg, msg
        # torch's own advice for a file of Python objects is to turn its safety off: never
        # passed on, nor shown beneath as the cause or context; other faults keep torch's error
        # as the cause
        assert 'weights_only' not in msg, msg
        if name == 'whole_model.pth':
            assert e.value.__cause__ is None and e.value.__suppress_context__, msg
        elif name not in ('empty.pth', 'tensor.pth', 'checkpoint.pth'):
            assert 'weights_only' not in str(e.value.__cause__), e.value.__cause__

def test_load_of_a_folder_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=f'load_model: {tmp_path} is a folder'):
        load_model(tiny_cnn(), tmp_path)

@pytest.fixture
def read_only_folder(tmp_path, monkeypatch):
    """A folder holding w.pth that refuses new files. Root may write anywhere, so when the tests
    run as root the temporary file's creation there fails as it would for anyone else."""
    import errno, os, tempfile
    folder = tmp_path/'ro'
    folder.mkdir()
    save_model(tiny_cnn(seed=0), folder/'w.pth')
    folder.chmod(0o555)
    if os.geteuid() == 0:
        mkstemp = tempfile.mkstemp
        def refusing_mkstemp(*args, dir=None, **kwargs):
            if dir is not None and Path(dir) == folder:
                raise PermissionError(errno.EACCES, 'Permission denied', str(folder/'.w.pth.tmp'))
            return mkstemp(*args, dir=dir, **kwargs)
        monkeypatch.setattr(tempfile, 'mkstemp', refusing_mkstemp)
    yield folder
    folder.chmod(0o755)

def test_save_into_a_read_only_folder_names_the_path_and_keeps_the_old_file(read_only_folder):
    path = read_only_folder/'w.pth'
    before = path.read_bytes()
    with pytest.raises(PermissionError) as e: save_model(tiny_cnn(seed=1), path, overwrite=True)
    assert str(e.value).startswith(f'[Errno 13] save_model: cannot write {path} (Permission')
    assert e.value.errno == 13 and isinstance(e.value.__cause__, PermissionError)
    assert 'unchanged' in str(e.value)
    assert path.read_bytes() == before and [p.name for p in read_only_folder.iterdir()] == ['w.pth']
    with pytest.raises(PermissionError, match=f'save_model: cannot write {read_only_folder}/new'):
        save_model(tiny_cnn(seed=1), read_only_folder/'new.pth')
