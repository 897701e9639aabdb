"""bench/train.py: its arguments are checked, a tiny run trains and prints the test accuracies on
its last line, and --resume goes on from a --checkpoint file to the weights of a run that never
stopped."""
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from exp.nb_09b import Callback, CheckpointCallback, listify
from nbio import ToolError, UsageError

# As `python bench/train.py` does: the scripts import the harness as a module beside them.
sys.path.append(str(Path(__file__).resolve().parents[1] / 'bench'))
train = importlib.import_module('train')


@pytest.mark.parametrize('kwargs, message', [
    (dict(epochs=0), 'epochs must be a whole number >= 1'),
    (dict(width=2.5), 'width must be a whole number >= 1'),
    (dict(n_train=True), 'n_train must be a whole number >= 1'),
    (dict(stem='131'), 'stem must be three strides of 1 or 2'),
    (dict(stem=12), 'stem must be three strides'),
    (dict(tfms='flip'), "tfms must be one of flips, shifts, flips\\+shifts, got 'flip'"),
    (dict(dataset='cifar'), 'dataset must be one of fashion, mnist'),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(UsageError, match=rf'^{message}'): train.main(**kwargs)

def test_a_tiny_run_reports_validation_and_test_accuracy(capsys):
    train.main(dataset='mnist', epochs=1, width=8, stem='121', tfms='shifts', n_train=64,
               valid_in_train=False)
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith('mnist: 64 training images (without the validation split), '
                             '10000 test images')
    assert any(line.startswith('validation accuracy 0.') for line in out)
    assert out[-1].startswith('test accuracy 0.') and 'with flip TTA 0.' in out[-1]
    assert 'after 1 epochs in' in out[-1] and out[-1].endswith('min of training')


def test_a_mistyped_flag_stops_the_script_before_it_trains():
    # fire would have started the default 20-epoch run and complained only at its end
    script = Path(__file__).resolve().parents[1] / 'bench' / 'train.py'
    res = subprocess.run([sys.executable, str(script), '--epoch', '5'], capture_output=True,
                         text=True, timeout=120)
    assert (res.returncode, res.stdout) == (2, '')
    assert res.stderr == 'train: unknown flag --epoch: did you mean --epochs?\n'


def tiny_splits():
    "Random 28x28 images: 16 for training (2 batches of 8), 8 for validation and 8 for the test."
    g = torch.Generator().manual_seed(0)
    return tuple(t for n in (16, 8, 8)
                 for t in (torch.rand(n, 1, 28, 28, generator=g), torch.arange(n) % 10))

class Crash(Callback):
    _order = 99   # after CheckpointCallback
    def after_batch(self):
        if (self.epoch, self.iter) == (1, 1): raise RuntimeError('crash')

def test_resume_goes_on_from_the_checkpoint_to_the_same_weights(monkeypatch, tmp_path, capsys):
    learners, crash, fit_xresnet = [], [], train.fit_xresnet
    def fit(*args, cbs=None, **kwargs):
        learn, *rest = fit_xresnet(*args, cbs=listify(cbs) + crash, **kwargs)
        learners.append(learn)
        return (learn, *rest)
    monkeypatch.setattr(train, 'fit_xresnet', fit)
    monkeypatch.setitem(train.DATASETS, 'fashion', tiny_splits)
    args = dict(epochs=2, width=8, stem='121', bs=8, valid_in_train=False)
    ckpt = tmp_path / 'run.pt'
    train.main(**args)
    crash.append(Crash())
    with pytest.raises(RuntimeError, match='crash'): train.main(**args, checkpoint=ckpt, every=1)
    crash.clear(); capsys.readouterr()
    train.main(**args, checkpoint=ckpt, every=1, resume=True)
    assert capsys.readouterr().out.startswith(f'resuming from {ckpt}: epoch 1, batch 1\n')
    ref, resumed = (learners[i].model.state_dict() for i in (0, -1))
    assert all(torch.equal(ref[k], resumed[k]) for k in ref)

@pytest.mark.parametrize('kwargs, error, message', [
    (dict(resume=True), UsageError, '^resume needs --checkpoint PATH'),
    (dict(every=5), UsageError, '^every needs --checkpoint PATH'),
    (dict(checkpoint='x.pt', every=0), UsageError, '^every must be a whole number >= 1, got 0'),
    (dict(checkpoint='no/such.pt', resume=True), ToolError,
     '^--resume: no checkpoint file no/such.pt'),
])
def test_bad_checkpoint_options_are_named_before_any_data_is_read(monkeypatch, kwargs, error,
                                                                 message):
    monkeypatch.setitem(train.DATASETS, 'fashion', lambda: pytest.fail('the data was read'))
    with pytest.raises(error, match=message): train.main(**kwargs)

def test_resuming_with_other_epochs_is_refused(tmp_path, make_tiny_learner):
    learn = make_tiny_learner(quiet=True)
    learn.fit(2, cbs=CheckpointCallback(tmp_path / 'c.pt'))
    with pytest.raises(UsageError, match=f'^epochs is 3, but {tmp_path}/c.pt was saved by a run '
                                         'of 2 epochs'):
        train.main(epochs=3, checkpoint=tmp_path / 'c.pt', resume=True)


def test_resuming_with_other_options_is_refused_naming_them(monkeypatch, tmp_path):
    "Only --epochs was compared: a resume with another lr or data went on as if the same run."
    monkeypatch.setitem(train.DATASETS, 'fashion', tiny_splits)
    args = dict(epochs=1, width=8, stem='121', bs=8, valid_in_train=False)
    ckpt = tmp_path / 'run.pt'
    train.main(**args, checkpoint=ckpt)
    monkeypatch.setitem(train.DATASETS, 'fashion', lambda: pytest.fail('the data was read'))
    with pytest.raises(UsageError, match=r"^bs is 4, the saved run's 8; lr is 0.02, the saved "
                                         r"run's 0.01 \(.*run.pt.options.json\)"):
        train.main(**dict(args, bs=4), lr=0.02, checkpoint=ckpt, resume=True)
    options_file = train.options_file(ckpt)
    options_file.unlink()
    with pytest.raises(ToolError, match='cannot read the options of the run saved in'):
        train.main(**args, checkpoint=ckpt, resume=True)
