"""What several test files share: tiny random data, a tiny model and a learner built on them, an
empty data cache, a small stand-in for Fashion-MNIST with its PNG folder, and .deb files built by
hand. Pytest hands these fixtures to any test in tests/ that names them as arguments.

The data, model and learner fixtures are factories: a test calls `make_tiny_data(n_train=44)`,
`make_tiny_model(5, 2, n_hidden=6)` or `make_tiny_learner(cbs=[...])` with the sizes it needs.
"""
import io
import tarfile

import pytest
import torch
import torch.nn.functional as F
from torch import nn


def tiny_data(n_train=48, n_valid=16, bs=16, shape=(8,), n_classes=2, seed=0, uniform=False):
    """A DataBunch of random examples of `shape`: `n_train` for training (shuffled, in batches of
    `bs`), `n_valid` more for validation (in order, batches of `2*bs`), from 03's `get_dls`.

    Values are standard normal, or uniform in [0, 1) with `uniform`. With 2 classes the label says
    whether an example's mean is above the middle of that range (learnable by one linear layer);
    with more, labels are random (shapes and mechanics only, nothing to learn). Flat examples give
    04's DataBunch (`c`); images (C, H, W) give 08's, which also knows `c_in`."""
    from exp.nb_03 import Dataset, get_dls
    g = torch.Generator().manual_seed(seed)
    n = n_train + n_valid
    x = torch.rand(n, *shape, generator=g) if uniform else torch.randn(n, *shape, generator=g)
    if n_classes == 2: y = (x.flatten(1).mean(1) > (0.5 if uniform else 0.)).long()
    else: y = torch.randint(0, n_classes, (n,), generator=g)
    dls = get_dls(Dataset(x[:n_train], y[:n_train]), Dataset(x[n_train:], y[n_train:]), bs)
    if len(shape) == 1:
        from exp.nb_04 import DataBunch
        return DataBunch(*dls, c=n_classes)
    from exp.nb_08 import DataBunch
    return DataBunch(*dls, c_in=shape[0], c_out=n_classes)


def tiny_model(n_in, n_out, n_hidden=None, seed=0):
    """Flatten, then one linear layer from `n_in` features to `n_out`, or two with a ReLU between
    when `n_hidden` is given; initialised after `torch.manual_seed(seed)`."""
    torch.manual_seed(seed)
    if n_hidden is None: return nn.Sequential(nn.Flatten(), nn.Linear(n_in, n_out))
    return nn.Sequential(nn.Flatten(), nn.Linear(n_in, n_hidden), nn.ReLU(),
                         nn.Linear(n_hidden, n_out))


def tiny_learner(data=None, model=None, loss_func=F.cross_entropy, lr=0.1, quiet=False, **kwargs):
    """09b's Learner on `data` (default `tiny_data()`) with `model` (default `tiny_model` sized from
    the data, one layer). `kwargs` go to the Learner (opt_func, splitter, cbs, cb_funcs); `quiet`
    gives it a logger that prints nothing."""
    from exp.nb_09b import Learner
    if data is None: data = tiny_data()
    if model is None: model = tiny_model(data.train_ds.x[0].numel(), data.c)
    learn = Learner(model, data, loss_func, lr=lr, **kwargs)
    if quiet: learn.logger = lambda *args: None
    return learn


@pytest.fixture
def make_tiny_data():
    "The factory `tiny_data` above."
    return tiny_data


@pytest.fixture
def make_tiny_model():
    "The factory `tiny_model` above."
    return tiny_model


@pytest.fixture
def make_tiny_learner():
    "The factory `tiny_learner` above."
    return tiny_learner


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """An empty data cache of the test's own ($XDG_CACHE_HOME under tmp_path), no $DLF_DATA, and
    00a's memory of .deb files already downloaded emptied, so each test fetches its own."""
    from exp import nb_00a
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
    monkeypatch.delenv('DLF_DATA', raising=False)
    monkeypatch.setattr(nb_00a, '_DEBS', {})


@pytest.fixture
def fake_fashion_mnist(monkeypatch):
    """00a's get_fashion_mnist replaced by 40 training and 20 test random 28x28 images (labels 0-9
    in turn): never the real data set. Returns the four tensors and the list of calls made."""
    from exp import nb_00a
    g = torch.Generator().manual_seed(0)
    n_train, n_test = 40, 20
    data = (torch.randint(0, 256, (n_train, 28, 28), generator=g, dtype=torch.uint8),
            torch.arange(n_train) % 10,
            torch.randint(0, 256, (n_test, 28, 28), generator=g, dtype=torch.uint8),
            torch.arange(n_test) % 10)
    calls = []
    monkeypatch.setattr(nb_00a, 'get_fashion_mnist', lambda: calls.append(1) or data)
    return data, calls


@pytest.fixture
def fashion_folder(fake_fashion_mnist, tmp_path):
    "00a's PNG folder built from the stand-in images, at tmp_path/png."
    from exp.nb_00a import fashion_image_folder
    return fashion_image_folder(tmp_path / 'png')


def tar_bytes(entries, mode='w:xz'):
    "A tar archive in memory; `entries` maps names to bytes, or to ('symlink', target)."
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            if isinstance(data, tuple):
                info.type, info.linkname = tarfile.SYMTYPE, data[1]; data = b''
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def ar_entry(name, data):
    header = f'{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}'.encode() + b'`\n'
    return header + data + (b'\n' if len(data) % 2 else b'')


def build_deb(path, files, data_name='data.tar.xz', marker=None, extra=()):
    """A .deb built by hand: debian-binary, control.tar.gz (with a postinst that would create
    `marker`), then the data archive holding `files`; `extra` are more (name, bytes) ar members."""
    postinst = f'#!/bin/sh\ntouch {marker}\n'.encode() if marker else b'#!/bin/sh\n'
    control = tar_bytes({'./control': b'Package: x\n', './postinst': postinst}, 'w:gz')
    modes = {'data.tar': 'w', 'data.tar.gz': 'w:gz', 'data.tar.xz': 'w:xz', 'data.tar.bz2': 'w:bz2'}
    data = (data_name, tar_bytes(files, modes.get(data_name, 'w')))
    members = [('debian-binary', b'2.0\n'), ('control.tar.gz', control), *extra, data]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'!<arch>\n' + b''.join(ar_entry(n, d) for n, d in members))
    return path


@pytest.fixture
def make_deb():
    "The factory `build_deb` above: a .deb written by hand, for the fetcher's Debian source."
    return build_deb


@pytest.fixture
def answer_apt(monkeypatch):
    """answer_apt(deb) makes 00a's `apt-get download` hand back the file `deb` for any package,
    and returns the list of the packages asked for (so a test can count the downloads)."""
    from pathlib import Path
    from exp import nb_00a
    def install(deb):
        downloads = []
        def apt_download(package, folder, timeout=300):
            downloads.append(package)
            return Path(deb)
        monkeypatch.setattr(nb_00a, '_apt_download', apt_download)
        return downloads
    return install
