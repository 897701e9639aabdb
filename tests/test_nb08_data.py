"""08_data_block: the data block API on real PNG files, the DataLoader's worker processes (the same
batches as without), and the model helpers. Small stand-in data: 00a's image folder built from a
few random images (conftest.py), never from the real Fashion-MNIST."""
import multiprocessing
import os
import random
import re
import signal
from pathlib import Path

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt
import numpy as np
import PIL.Image
import pytest
import torch
import torch.nn.functional as F

from exp import nb_08
from exp.nb_08 import (CategoryProcessor, DataBunch, DataLoader, Dataset, ImageList, ItemList,
                       LabeledData, Processor, SplitData, ResizeFixed, collate, compose, conv_layer,
                       databunchify, get_cnn_model, get_files, get_learn_run, grandparent_splitter,
                       label_by_func, make_rgb, model_summary, normalize_chan, channel_stats,
                       parent_labeler, prev_pow_2, show_batch, split_by_func, to_byte_tensor,
                       to_float_tensor, uniqueify, AvgStatsCallback, accuracy, FASHION_CLASSES)

def labelled(folder, **kwargs):
    il = ImageList.from_files(folder, tfms=[to_float_tensor, to_byte_tensor], **kwargs)
    split = SplitData.split_by_func(il, grandparent_splitter)
    return label_by_func(split, parent_labeler, proc_y=CategoryProcessor())


# --- listing, items, transforms -------------------------------------------------------------------

def test_get_files_sorted_filtered_hidden_skipped(tmp_path):
    for rel in ['b/2.PNG', 'b/1.png', 'a/x.jpg', 'a/notes.txt', '.hidden/h.png', 'b/.h.png',
                'top.png']:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b'')
    names = lambda fs: [str(f.relative_to(tmp_path)) for f in fs]
    images = get_files(tmp_path, nb_08.image_extensions, recurse=True)
    assert names(images) == ['top.png', 'a/x.jpg', 'b/1.png', 'b/2.PNG']
    assert names(get_files(tmp_path, '.png')) == ['top.png']
    in_b = get_files(tmp_path, ['.PNG'], recurse=True, include=['b'])
    assert names(in_b) == ['top.png', 'b/1.png', 'b/2.PNG']
    assert len(get_files(tmp_path, recurse=True)) == 5
    with pytest.raises(FileNotFoundError, match='is not a folder'):
        get_files(tmp_path / 'missing')


def test_compose_follows_order_not_list_position():
    def add1(x): return x + 1
    def double(x): return x * 2
    double._order = 5
    assert compose(3, [double, add1]) == 8 and compose(3, [add1, double]) == 8
    assert compose(3, None) == 3


def test_item_list_new_and_list_indexing(tmp_path):
    il = ItemList([1, 2, 3], tmp_path, tfms=[lambda x: x * 10])
    assert il[1] == 20 and il[[0, 2]] == [10, 30] and il[1:] == [20, 30]
    new = il.new([5])
    assert type(new) is ItemList and new.path == tmp_path and new[0] == 50
    assert f'Path: {tmp_path}' in repr(il)


def test_transforms_channels_first_and_refusal():
    rgb = PIL.Image.fromarray(np.stack([np.full((2, 3), v, np.uint8) for v in (10, 20, 30)], -1))
    t = to_byte_tensor(rgb)
    assert t.shape == (3, 2, 3) and t[:, 0, 0].tolist() == [10, 20, 30] and t.dtype == torch.uint8
    grey = PIL.Image.fromarray(np.arange(6, dtype=np.uint8).reshape(2, 3))
    assert to_byte_tensor(grey).shape == (1, 2, 3)
    assert to_byte_tensor(make_rgb(grey)).shape == (3, 2, 3)
    assert torch.equal(to_float_tensor(to_byte_tensor(grey)), torch.arange(6.).view(1, 2, 3) / 255)
    assert ResizeFixed(4)(grey).size == (4, 4) and ResizeFixed((5, 2))(grey).size == (5, 2)
    with pytest.raises(ValueError, match='mode I;16'):
        to_byte_tensor(PIL.Image.fromarray(np.zeros((2, 2), np.uint16)))


# --- splitting and labelling ---------------------------------------------------------------------

def test_splitters():
    assert grandparent_splitter(Path('d/valid/coat/1.png')) is True
    assert grandparent_splitter(Path('d/train/coat/1.png')) is False
    assert grandparent_splitter(Path('d/other/coat/1.png')) is None
    assert grandparent_splitter('d/val/coat/1.png', valid_name='val') is True
    assert split_by_func([1, 2, 3, 4], lambda o: None if o == 4 else o % 2 == 0) == ([1, 3], [2])


def test_split_data_refuses_an_empty_side(fake_fashion_mnist, fashion_folder):
    (x_train, _, x_test, _), _ = fake_fashion_mnist
    il = ImageList.from_files(fashion_folder)
    split = SplitData.split_by_func(il, grandparent_splitter)
    assert (len(split.train), len(split.valid)) == (len(x_train), len(x_test))
    assert split.path == fashion_folder   # attributes from train
    empty = r"0 validation items.*grandparents seen: \['train', 'valid'\]"
    with pytest.raises(ValueError, match=empty):
        SplitData.split_by_func(il, lambda fn: grandparent_splitter(fn, valid_name='val'))


def test_category_processor_inverse_and_unseen_label():
    proc = CategoryProcessor()
    assert proc(['dog', 'cat', 'dog', 'emu']) == [1, 0, 1, 2]
    assert proc.vocab == ['cat', 'dog', 'emu']
    assert proc(['emu', 'cat']) == [2, 0]   # the vocabulary is kept after the first call
    assert proc.deprocess([2, 0, 1]) == ['emu', 'cat', 'dog'] and proc.deproc1(1) == 'dog'
    unseen = r"label 'yak' is not in the vocabulary .*\['cat', 'dog', 'emu'\]"
    with pytest.raises(ValueError, match=unseen):
        proc(['cat', 'yak'])
    with pytest.raises(IndexError, match='class number 3 is outside 0..2'):
        proc.deproc1(3)
    with pytest.raises(ValueError, match='call it on the training labels first'):
        CategoryProcessor().deproc1(0)
    assert Processor()([3, 1]) == [3, 1] and uniqueify([3, 1, 3, 2]) == [3, 1, 2]
    assert uniqueify([3, 1, 3, 2], sort=True) == [1, 2, 3]


def test_labelled_data_matches_the_source_labels(fake_fashion_mnist, fashion_folder):
    (_, y_train, _, y_test), _ = fake_fashion_mnist
    ll = labelled(fashion_folder)
    assert ll.train.proc_y is ll.valid.proc_y and ll.train.proc_y.vocab == sorted(FASHION_CLASSES)
    for half, ys in ((ll.train, y_train), (ll.valid, y_test)):
        for i, fn in enumerate(half.x.items):
            assert half.y_obj(i) == FASHION_CLASSES[ys[int(fn.stem)]]
        x, y = half[0]
        assert x.shape == (1, 28, 28) and isinstance(y, int)
    assert ll.valid.y_obj(slice(0, 2)) == [ll.valid.y_obj(0), ll.valid.y_obj(1)]
    assert ll.valid.y_obj(torch.tensor(1)) == ll.valid.y_obj(1)
    with pytest.raises(ValueError, match='3 inputs but 2 labels'):
        LabeledData(ItemList([1, 2, 3]), ItemList([1, 2]))


# --- parallel loading ----------------------------------------------------------------------------

class Squares:
    "Items i -> (tensor [i, i*i], i); an index in `bad` raises."
    def __init__(self, n, bad=()): self.n, self.bad = n, set(bad)
    def __len__(self): return self.n
    def __getitem__(self, i):
        if i in self.bad: raise KeyError(f'item {i} is broken')
        return torch.tensor([i, i * i]), i


def all_batches(dl, seed=3):
    torch.manual_seed(seed)
    return list(dl)


@pytest.mark.parametrize('workers', [1, 2, 3])
def test_workers_give_the_same_batches_shuffled(workers, monkeypatch):
    monkeypatch.setattr(nb_08, 'usable_cpus', lambda: 3)   # no warning about 3 workers on 2 CPUs
    ds = Squares(103)
    serial = all_batches(DataLoader(ds, 8, shuffle=True, collate_fn=collate))
    par = all_batches(DataLoader(ds, 8, shuffle=True, collate_fn=collate, num_workers=workers))
    assert len(par) == len(serial) == 13
    for (xa, ya), (xb, yb) in zip(serial, par): assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert sorted(torch.cat([y for _, y in par]).tolist()) == list(range(103))


def test_workers_without_collate_fn_index_the_dataset():
    ds = Dataset(torch.arange(50.).view(25, 2), torch.arange(25))
    serial = all_batches(DataLoader(ds, 4, shuffle=True, drop_last=True))
    par = all_batches(DataLoader(ds, 4, shuffle=True, drop_last=True, num_workers=2))
    assert len(par) == 6
    assert all(torch.equal(a, b) for s, p in zip(serial, par) for a, b in zip(s, p))


def test_workers_on_image_files(fashion_folder):
    ll = labelled(fashion_folder)
    serial = all_batches(DataLoader(ll.train, 16, shuffle=True, collate_fn=collate))
    par = all_batches(DataLoader(ll.train, 16, shuffle=True, collate_fn=collate, num_workers=2))
    assert all(torch.equal(a, b) for s, p in zip(serial, par) for a, b in zip(s, p))


def test_a_worker_error_surfaces_and_workers_stop():
    dl = DataLoader(Squares(64, bad=[37]), 8, collate_fn=collate, num_workers=2)
    with pytest.raises(KeyError, match='item 37 is broken'):
        for _ in dl: pass
    assert multiprocessing.active_children() == []


def test_leaving_the_loop_early_stops_the_workers():
    it = iter(DataLoader(Squares(10_000), 8, collate_fn=collate, num_workers=2))
    first = next(it)
    it.close()
    assert first[1].tolist() == list(range(8)) and multiprocessing.active_children() == []


@pytest.mark.parametrize('bad', [-1, 1.5, True, '2'])
def test_num_workers_checked(bad):
    with pytest.raises(ValueError, match='num_workers must be an integer >= 0'):
        DataLoader(Squares(4), 2, num_workers=bad)


def test_collate_stacks_tensors_and_numbers():
    xb, yb = collate([(torch.zeros(2), 1), (torch.ones(2), 4)])
    assert xb.shape == (2, 2) and yb.tolist() == [1, 4] and yb.dtype == torch.int64
    # 03's case
    xb, yb = collate([(torch.zeros(2), torch.tensor(1)), (torch.ones(2), torch.tensor(4))])
    assert yb.tolist() == [1, 4]


# --- DataBunch, normalization, model -------------------------------------------------------------

def test_databunchify(fashion_folder):
    ll = labelled(fashion_folder)
    data = ll.to_databunch(8, c_in=1, c_out=10, num_workers=2)
    assert isinstance(data, DataBunch) and (data.c_in, data.c_out, data.c) == (1, 10, 10)
    assert data.train_dl.bs == 8 and data.valid_dl.bs == 16 and data.train_dl.num_workers == 2
    assert data.train_ds is ll.train and len(list(data.valid_dl)) == 2
    assert databunchify(ll, 4).c_out is None


def test_normalize_chan_matches_batch_norm():
    x = torch.rand(6, 3, 5, 5, dtype=torch.float64)
    m, s = x.mean((0, 2, 3)), x.std((0, 2, 3))
    assert torch.allclose(normalize_chan(x, m, s), F.batch_norm(x, m, s**2, training=False, eps=0))
    dl = DataLoader(Dataset(x, torch.zeros(6)), 2)
    cm, cs = channel_stats(dl, n_batches=3)
    assert torch.allclose(cm, m) and torch.allclose(cs, s)


def test_cnn_sized_from_c_in_and_c_out():
    assert [prev_pow_2(x) for x in (1, 9, 27, 64)] == [1, 8, 16, 64]
    data = DataBunch(None, None, c_in=3, c_out=7)
    model = get_cnn_model(data, [32, 64], conv_layer)
    first = model[0][0]
    assert (first.in_channels, first.out_channels) == (3, 16)
    assert model(torch.randn(2, 3, 28, 28)).shape == (2, 7)


def test_model_summary_prints_each_layer(fashion_folder, capsys):
    ll = labelled(fashion_folder)
    data = ll.to_databunch(8, c_in=1, c_out=10)
    learn, run = get_learn_run([16], data, 0.1, conv_layer, cbs=[AvgStatsCallback([accuracy])])
    before = [b.clone() for b in learn.model.buffers()]   # BatchNorm's running statistics
    model_summary(run, learn, data)
    assert before and all(torch.equal(a, b) for a, b in zip(before, learn.model.buffers()))
    assert learn.model.training
    out = capsys.readouterr().out
    assert '-> (16, 8, 28, 28)' in out and '-> (16, 10) ' in out
    assert out.count('->') == len(learn.model)
    model_summary(run, learn, data, find_all=True)
    assert 'Conv2d(1, 8' in capsys.readouterr().out


def test_show_batch_grid_with_labels():
    x = torch.rand(6, 1, 4, 4)
    show_batch(x, c=4, labels=list('abcdef'))
    axes = plt.gcf().axes
    assert len(axes) == 8 and [a.get_title() for a in axes[:6]] == list('abcdef')
    assert axes[6].get_title() == ''
    plt.close('all')
    show_batch(torch.rand(10, 3, 4, 4), c=3, r=2)
    assert len(plt.gcf().axes) == 6
    plt.close('all')


def test_batches_cross_processes_unchanged():
    """What a worker returns is packed as NumPy arrays and unpacked to equal tensors (dicts, lists,
    odd dtypes too)."""
    import pickle, warnings
    b = {'x': torch.randn(3, 2, requires_grad=True), 'y': [torch.arange(3), 7],
         'half': torch.ones(2, dtype=torch.bfloat16), 'flag': torch.tensor([True, False])}
    with warnings.catch_warnings():
        warnings.simplefilter('error')   # e.g. torch's warning about a read-only NumPy array
        got = nb_08._unpack(pickle.loads(pickle.dumps(nb_08._pack(b))))
    assert set(got) == set(b) and got['y'][1] == 7 and type(got['y']) is list
    for k in ('x', 'half', 'flag'):
        assert got[k].dtype == b[k].dtype and torch.equal(got[k], b[k].detach())
    assert torch.equal(got['y'][0], b['y'][0])
    # NumPy has no bfloat16: sent as a tensor
    assert isinstance(nb_08._pack(b)['half'], torch.Tensor)


def dict_collate(items):
    return {'x': torch.stack([x for x, _ in items]), 'y': torch.tensor([y for _, y in items])}


def test_workers_with_a_custom_collate():
    dl = lambda w: DataLoader(Squares(30), 4, shuffle=True, collate_fn=dict_collate, num_workers=w)
    serial, par = all_batches(dl(0)), all_batches(dl(2))
    assert all(torch.equal(s['x'], p['x']) and torch.equal(s['y'], p['y'])
               for s, p in zip(serial, par))


class Draws:
    """Item i -> (one draw each from torch, Python's random and NumPy, i): what a random item
    transform sees where the item is made."""
    def __len__(self): return 64
    def __getitem__(self, i):
        return torch.tensor([torch.rand(()).item(), random.random(), np.random.rand()]), i


def draws(workers, seed=3, bs=8):
    return all_batches(DataLoader(Draws(), bs, shuffle=True, collate_fn=collate,
                                  num_workers=workers), seed)


def test_workers_draw_differently_for_every_batch():
    x = torch.cat([xb for xb, _ in draws(2)])
    # forked copies of one random state would repeat draws across workers
    for source in range(3): assert len(set(x[:, source].tolist())) == 64


def test_workers_draws_repeat_with_the_seed_whichever_worker_makes_a_batch(monkeypatch):
    monkeypatch.setattr(nb_08, 'usable_cpus', lambda: 3)   # no warning about 3 workers on 2 CPUs
    first, again, three = draws(2), draws(2), draws(3)
    for a, b, c in zip(first, again, three):
        assert torch.equal(a[0], b[0]) and torch.equal(a[0], c[0]) and torch.equal(a[1], c[1])
    other = draws(2, seed=4)
    assert not torch.equal(first[0][0], other[0][0])


def test_a_pass_resumed_with_its_seed_makes_the_same_batches():
    dl = DataLoader(Draws(), 8, collate_fn=collate, num_workers=2)
    torch.manual_seed(5)
    whole, seed = list(dl), dl.pass_seed
    torch.manual_seed(6)   # another main-process state: the resumed pass must not draw from it
    state = torch.get_rng_state()
    dl.batch_sampler = [list(range(8 * k, 8 * k + 8)) for k in range(3, 8)]   # batches 3 on
    dl.resume_pass(seed, 3)
    rest = list(dl)
    assert torch.equal(torch.get_rng_state(), state) and dl.pass_seed == seed
    assert len(rest) == 5 and all(torch.equal(a[0], b[0]) for a, b in zip(whole[3:], rest))


def test_zero_workers_draw_in_the_main_process_as_before():
    "No base seed is drawn: the items draw from the main process's state, in order."
    torch.manual_seed(3); random.seed(3); np.random.seed(3)
    serial = torch.cat([xb for xb, _ in DataLoader(Draws(), 8, collate_fn=collate)])
    torch.manual_seed(3); random.seed(3); np.random.seed(3)
    assert torch.equal(serial, torch.stack([Draws()[i][0] for i in range(64)]))
    with pytest.raises(ValueError, match='resume_pass: this DataLoader has no workers'):
        DataLoader(Draws(), 8).resume_pass(1, 0)


# --- devices, pinned memory, worker limits -------------------------------------------------------

def test_normalize_chan_statistics_follow_the_batch_device():
    "CPU statistics applied to a batch elsewhere (here PyTorch's data-less `meta` device)."
    x = torch.empty(4, 3, 5, 5, device='meta')
    out = normalize_chan(x, torch.rand(3), torch.rand(3) + 1)
    assert out.device.type == 'meta' and out.shape == x.shape


def fake_cuda(monkeypatch):
    "Pretend CUDA is there: pinning only records which tensors it was asked to pin."
    pinned = []
    def pin_memory(t):
        pinned.append(t)
        return t
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.Tensor, 'pin_memory', pin_memory)
    return pinned


@pytest.mark.parametrize('workers', [0, 2])
def test_pin_memory_pins_every_tensor_when_cuda_is_there(monkeypatch, workers):
    dl = DataLoader(Squares(20), 8, collate_fn=dict_collate, num_workers=workers, pin_memory=True)
    pinned = fake_cuda(monkeypatch)
    batches = list(dl)
    assert len(batches) == 3 and len(pinned) == 6
    assert all(any(p is b[k] for p in pinned) for b in batches for k in 'xy')


def test_pin_memory_without_cuda_changes_nothing(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    dl = DataLoader(Squares(20), 8, collate_fn=collate, pin_memory=True)
    assert [y.tolist() for _, y in dl] == [list(range(8)), list(range(8, 16)), list(range(16, 20))]
    with pytest.raises(ValueError, match='pin_memory must be True or False'):
        DataLoader(Squares(4), 2, pin_memory='yes')


def test_num_workers_bounded_by_the_cpus(monkeypatch):
    monkeypatch.setattr(nb_08, 'usable_cpus', lambda: 2)
    with pytest.raises(ValueError, match=r'num_workers=1000000 .* 2 CPUs .*at most 8'):
        DataLoader(Squares(4), 2, num_workers=10**6)
    with pytest.warns(UserWarning, match='num_workers=3 is more than the 2 CPUs'):
        DataLoader(Squares(4), 2, num_workers=3)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        DataLoader(Squares(4), 2, num_workers=2)


# --- image files that are unusual or broken ------------------------------------------------------

def save_png(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def test_palette_pngs_give_their_colours(tmp_path):
    img = PIL.Image.new('P', (3, 2))
    img.putpalette([250, 0, 0, 0, 0, 240] + [0] * 762)
    img.putpixel((1, 0), 1)
    save_png(tmp_path / 'p.png', img)
    il = ImageList.from_files(tmp_path, tfms=[to_byte_tensor])
    x = il[0]
    assert x.shape == (3, 2, 3)
    assert x[:, 0, 0].tolist() == [250, 0, 0] and x[:, 0, 1].tolist() == [0, 0, 240]
    assert torch.equal(to_byte_tensor(img), x)   # a palette image given directly, too


def test_extensions_without_a_dot_and_impossible_ones(tmp_path):
    for n in ('a.png', 'b.PNG', 'c.jpg', 'd.tar.gz'): (tmp_path / n).write_bytes(b'')
    names = lambda fs: [f.name for f in fs]
    assert names(get_files(tmp_path, 'png')) == ['a.png', 'b.PNG']
    assert names(get_files(tmp_path, ['PNG', '.jpg'])) == ['a.png', 'b.PNG', 'c.jpg']
    for bad in ('.tar.gz', '*.png', ''):
        with pytest.raises(ValueError, match=re.escape(f"extension {bad!r} can never match")):
            get_files(tmp_path, bad)


def grey_png(path, seed=0):
    "A PNG of random grey pixels (random, so that its compressed data is long enough to cut)."
    pixels = np.random.default_rng(seed).integers(0, 256, (16, 16), dtype=np.uint8)
    return save_png(path, PIL.Image.fromarray(pixels))


def rgb_png(path):
    return save_png(path, PIL.Image.fromarray(np.zeros((16, 16, 3), np.uint8)))


def test_a_truncated_png_is_named(tmp_path):
    for i in range(8): grey_png(tmp_path / f'{i}.png', i)
    bad = tmp_path / '5.png'
    bad.write_bytes(bad.read_bytes()[:120])
    il = ImageList.from_files(tmp_path, tfms=[to_byte_tensor])
    with pytest.raises(OSError, match=r'5\.png.*truncated'):
        il[5]
    ds = LabeledData(il, ItemList(list(range(8))))
    with pytest.raises(OSError, match=r'5\.png.*truncated') as e:
        list(DataLoader(ds, 2, collate_fn=collate, num_workers=2))
    assert 'item 5 (batch 2)' in ' '.join(getattr(e.value, '__notes__', []))


def test_grey_and_rgb_mixed_are_named(tmp_path):
    grey_png(tmp_path / 'a.png'), rgb_png(tmp_path / 'b.png')
    il = ImageList.from_files(tmp_path, tfms=[to_byte_tensor])
    il[0]
    with pytest.raises(ValueError, match=r'b\.png .*3 channels.*a\.png .*1.*make_rgb'):
        il[1]
    il.tfms = [make_rgb, to_byte_tensor]   # the fix, on the list that refused
    assert il[1].shape == il[0].shape == (3, 16, 16)
    il = ImageList.from_files(tmp_path, tfms=[to_byte_tensor])
    ds = LabeledData(il, ItemList([0, 1]))
    with pytest.raises(ValueError, match=r'(a|b)\.png .*channels.*(a|b)\.png'):
        list(DataLoader(ds, 2, collate_fn=collate, num_workers=1))


# --- errors inside worker processes --------------------------------------------------------------

def test_a_worker_error_names_the_item_and_batch():
    with pytest.raises(KeyError) as e:
        list(DataLoader(Squares(64, bad=[37]), 8, collate_fn=collate, num_workers=2))
    assert 'item 37 (batch 4)' in ' '.join(e.value.__notes__)
    def bad_collate(items): raise TypeError('cannot collate these')
    with pytest.raises(TypeError, match='cannot collate') as e:
        list(DataLoader(Squares(64), 8, collate_fn=bad_collate, num_workers=2))
    assert 'collate_fn, batch 0 (items 0, 1, 2, ..., 7)' in ' '.join(e.value.__notes__)
    assert multiprocessing.active_children() == []


class DiesAt(Squares):
    "Squares whose item `die` kills the worker process that fetches it (never the main process)."
    def __init__(self, n, die):
        super().__init__(n)
        self.die, self.main = die, os.getpid()
    def __getitem__(self, i):
        if i == self.die and os.getpid() != self.main: os.kill(os.getpid(), signal.SIGKILL)
        return super().__getitem__(i)


@pytest.mark.parametrize('workers', [1, 2])
def test_a_worker_that_dies_is_named_with_its_batch(workers):
    from concurrent.futures.process import BrokenProcessPool
    with pytest.raises(BrokenProcessPool, match=r'worker process died.*batch 4\b'):
        list(DataLoader(DiesAt(64, 37), 8, collate_fn=collate, num_workers=workers))
    assert multiprocessing.active_children() == []


def test_model_summary_lists_a_shared_module_once(capsys):
    # notebook 11's XResNet reuses one ReLU object after every convolution: the summary must name
    # it once (with how often it ran), not once per place per run, and stay within a screen
    from exp.nb_11 import act_fn, adam_opt, cnn_learner, images_databunch, xresnet18
    torch.manual_seed(0)
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    data = images_databunch(x, y, x, y, bs=4)
    learn = cnn_learner(xresnet18, data, F.cross_entropy, adam_opt(), width=16,
                        stem_strides=(1, 2, 1), stem_pool=False, cuda=False)
    model_summary(learn, learn, data, find_all=True)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) <= 60
    relu = [ln for ln in lines if 'ReLU' in ln]
    places = [n for n, m in learn.model.named_modules(remove_duplicate=False) if m is act_fn]
    assert len(places) > 10 and len(relu) == 1 and re.search(r'ran \d+ times', relu[0])
    n_convs = sum(isinstance(m, torch.nn.Conv2d) for m in learn.model.modules())
    assert sum('Conv2d(' in ln for ln in lines) == n_convs
    assert lines[-1].endswith('input (8, 1, 28, 28)')


def test_star_import_gives_pil_as_the_course_uses_it():
    # the course's 08 (and later chapters) write PIL.Image.open after `from exp.nb_08 import *`
    names = {}
    exec('from exp.nb_08 import *', names)
    assert names['PIL'].Image.open is PIL.Image.open
