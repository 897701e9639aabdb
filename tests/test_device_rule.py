"""The device rule: the data goes where the model is, read from the model's parameters.

PyTorch's `meta` device makes this testable without a GPU: a model whose parameters live on
`meta` must be handed `meta` batches by every loop, while the data sits on the CPU (and
`def_device` is the CPU here). A probe layer writes down the device of what reaches it and stops
the run there, since a meta tensor has no values to train on.
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from exp.nb_03 import Dataset, DataLoader, def_device, evaluate, model_device, sync, train_epoch
from exp.nb_04 import Callback, DataBunch, Learner
from exp.nb_04 import Runner as Runner04
from exp.nb_05b import Runner as Runner05b
from exp.nb_06 import DeviceCallback, get_runner

META = torch.device('meta')


class Seen(Exception):
    "Raised by the probe once it has seen a batch."


class Probe(nn.Module):
    "A linear layer that records the device of its input, then stops the run."
    def __init__(self, device=None):
        super().__init__()
        self.lin = nn.Linear(4, 3, device=device)
        self.devices = []
    def forward(self, x):
        self.devices.append(x.device)
        raise Seen()


def cpu_data(n=8, bs=4):
    "A DataBunch whose batches are CPU tensors."
    ds = Dataset(torch.randn(n, 4), torch.randint(0, 3, (n,)))
    return DataBunch(DataLoader(ds, bs), DataLoader(ds, bs), c=3)


def test_model_device_reads_parameters_then_buffers_then_the_default():
    assert model_device(nn.Linear(2, 2, device='meta')) == META
    assert model_device(nn.BatchNorm1d(2, affine=False).to('meta')) == META   # buffers only
    assert model_device(nn.ReLU()) == def_device


def test_sync_accepts_a_device_a_string_or_a_tensor_and_waits_only_on_cuda(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, 'synchronize', lambda d=None: calls.append(d))
    for d in (torch.device('cpu'), 'cpu', torch.zeros(1), torch.zeros(1, device='meta')):
        sync(d)
    assert calls == []
    sync('cuda:0')
    sync(torch.device('cuda', 1))
    assert calls == [torch.device('cuda', 0), torch.device('cuda', 1)]


def test_train_epoch_sends_batches_to_the_models_device():
    model = Probe('meta')
    with pytest.raises(Seen):
        train_epoch(model, F.cross_entropy, torch.optim.SGD(model.parameters(), lr=0.1),
                    cpu_data().train_dl)
    assert model.devices == [META]


def test_evaluate_sends_batches_to_the_models_device():
    model = Probe('meta')
    with pytest.raises(Seen): evaluate(model, F.cross_entropy, cpu_data().valid_dl)
    assert model.devices == [META]


class BatchDevices(Callback):
    "Writes down where each batch's inputs and targets are when `begin_batch` sees them."
    def begin_fit(self): self.seen = []
    def begin_batch(self): self.seen.append((self.xb.device, self.yb.device))


@pytest.mark.parametrize('Runner', [Runner04, Runner05b], ids=['04', '05b'])
def test_runner_sends_batches_to_the_models_device(Runner):
    model = Probe('meta')
    learn = Learner(model, torch.optim.SGD(model.parameters(), lr=0.1), F.cross_entropy,
                    cpu_data())
    run = Runner(cbs=BatchDevices())
    with pytest.raises(Seen): run.fit(1, learn)
    assert run.batch_devices.seen == [(META, META)] and model.devices == [META]


def test_device_callback_moves_the_model_before_other_callbacks_start():
    "Every other callback's begin_fit, and every batch, find the model where it will train."
    class FitStartDevice(Callback):
        _order = -1   # as early as 05b's LR_Find and 09c's progress bar
        def begin_fit(self): self.device = model_device(self.model)
    model = Probe()                                    # built on the CPU
    learn, run = get_runner(model, cpu_data(), cbs=[FitStartDevice(), BatchDevices(),
                                                    DeviceCallback('meta')])
    with pytest.raises(Seen): run.fit(1, learn)
    assert run.fit_start_device.device == META
    assert run.batch_devices.seen == [(META, META)] and model.devices == [META]


@pytest.mark.parametrize('pinned', [True, False])
def test_batches_copy_without_waiting_only_from_pinned_memory(monkeypatch, pinned):
    "A pinned batch (as 08's loader makes where CUDA is) asks for non_blocking; others don't."
    copies, to = [], torch.Tensor.to
    def spy(self, *args, **kwargs):
        if args and args[0] == META: copies.append(kwargs.get('non_blocking', False))
        return to(self, *args, **kwargs)
    monkeypatch.setattr(torch.Tensor, 'is_pinned', lambda self: pinned)
    monkeypatch.setattr(torch.Tensor, 'to', spy)
    model = Probe('meta')
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(Seen): train_epoch(model, F.cross_entropy, opt, cpu_data().train_dl)
    with pytest.raises(Seen): evaluate(model, F.cross_entropy, cpu_data().valid_dl)
    for Runner in (Runner04, Runner05b):
        with pytest.raises(Seen):
            Runner().fit(1, Learner(model, opt, F.cross_entropy, cpu_data()))
    assert copies == [pinned] * 8   # inputs and targets, in each of the four loops
