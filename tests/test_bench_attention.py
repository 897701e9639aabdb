"""bench/attention.py: its flags are refused before anything runs, the three functions are checked
against each other before timing, and the run ends on the line of ratios."""
import importlib
import sys
from pathlib import Path

import pytest
import torch

from nbio import UsageError

# As `python bench/attention.py` does: the scripts import the harness as a module beside them.
sys.path.append(str(Path(__file__).resolve().parents[1] / 'bench'))
attention = importlib.import_module('attention')


@pytest.mark.parametrize('kwargs, message', [
    (dict(rounds=0), 'rounds must be a whole number >= 1, got 0'),
    (dict(heads=0), 'heads must be a whole number >= 1, got 0'),
    (dict(block_size=0), 'block_size must be a whole number >= 1, got 0'),
    (dict(lengths=0), 'lengths must be a whole number >= 1, got 0'),
    (dict(lengths=(512, -1)), 'lengths must be a whole number >= 1, got -1'),
    (dict(lengths=()), 'lengths must name at least one length'),
    (dict(threads=-1), 'threads must be a whole number >= 0'),
])
def test_bad_flags_are_refused_before_anything_runs(monkeypatch, kwargs, message):
    monkeypatch.setattr(attention, 'bench_length', lambda *a: pytest.fail('it ran'))
    with pytest.raises(UsageError, match='^' + message):
        attention.main(**kwargs)


def test_a_function_that_disagrees_is_caught_before_timing(monkeypatch):
    fns = attention.attention_forwards()
    fns['tiled'] = lambda q, k, v, is_causal: fns['naive'](q, k, v, is_causal=False)
    monkeypatch.setattr(attention, 'attention_forwards', lambda block_size=128: fns)
    with pytest.raises(AssertionError, match='tiled against torch'):
        attention.bench_length(16, 1, 1, 4)


def test_the_run_ends_on_the_ratios(monkeypatch, capsys):
    # the memory children are replaced by fixed figures: naive 10x PyTorch's, tiled 2x
    fake = {'naive': 10 * 2**20, 'tiled': 2 * 2**20, 'torch': 2**20}
    monkeypatch.setattr(attention, 'forward_peak_bytes', lambda n, *a: (fake[n], 0.))
    monkeypatch.setattr(attention, 'MIN_RUN_TIME', 0.01)
    threads = torch.get_num_threads()
    try: attention.main(lengths=(16, 32), rounds=1, heads=1, block_size=8)
    finally: torch.set_num_threads(threads)
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith('ratios at T=32 (x torch): time naive ')
    assert out[-1].endswith('peak memory naive 10.0x, tiled 2.0x')
    assert out[-5].split() == ['T', '|', 'naive', 'MiB', '|', 'tiled', 'MiB', '|', 'torch', 'MiB']
