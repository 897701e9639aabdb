"""bench/train.py: its arguments are checked, and a tiny run trains and prints the test accuracies
on its last line."""
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from nbio import UsageError

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
