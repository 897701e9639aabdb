"""bench/lm.py: its arguments are checked before anything runs, naming the flag."""
import importlib
import sys
from pathlib import Path

import pytest

from nbio import UsageError

# As `python bench/lm.py` does: the scripts import the harness as a module beside them.
sys.path.append(str(Path(__file__).resolve().parents[1] / 'bench'))
lm = importlib.import_module('lm')


@pytest.mark.parametrize('kwargs, message', [
    (dict(bs=0), 'bs must be a whole number >= 1'),
    (dict(ctx=2.5), 'ctx must be a whole number >= 1'),
    (dict(probe=True), 'probe must be a whole number >= 1'),
    (dict(minutes=0), 'minutes must be > 0, got 0'),
    (dict(epochs=-1), 'epochs must be a whole number >= 0'),
    (dict(epochs=1.5), 'epochs must be a whole number >= 0'),
    (dict(d_model=30, n_heads=4), 'd_model 30 must be a multiple of n_heads 4'),
    (dict(threads=-1), 'threads must be a whole number >= 0'),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(UsageError, match=rf'^{message}'): lm.main(**kwargs)
