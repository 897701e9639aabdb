"""bench/timing.py, the harness every bench script uses, and the scripts' refusal of flags that
make no sense (a count below 1, a negative thread count) before anything runs."""
import importlib
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nbio import UsageError

# As `python bench/x.py` does: the scripts import the harness as a module beside them.
sys.path.append(str(Path(__file__).resolve().parents[1] / 'bench'))
import timing


def test_alternate_takes_turns_after_the_warmup():
    calls = []
    def variant(name): return lambda: calls.append(name) or len(calls)
    res = timing.alternate({'a': variant('a'), 'b': variant('b')}, rounds=3, warmup=1)
    assert calls == ['a', 'b'] * 4
    assert res == {'a': [3, 5, 7], 'b': [4, 6, 8]}


@pytest.mark.parametrize('rounds', [0, -1, 2.0, True])
def test_alternate_refuses_rounds_that_are_not_a_count(rounds):
    with pytest.raises(ValueError, match='rounds must be a whole number >= 1'):
        timing.alternate({'a': lambda: 1.}, rounds)


def test_a_busy_spell_in_one_round_does_not_move_the_median_ratio():
    # The machine's load changes from round to round, and in the last round a spike hits `slow`
    # only: each round's ratio is still 2 in two rounds out of three.
    loads = iter([1., 1., 3., 3., 1., 50.])
    res = timing.alternate({'fast': lambda: next(loads), 'slow': lambda: 2 * next(loads)}, 3)
    assert res == {'fast': [1., 3., 1.], 'slow': [2., 6., 100.]}
    assert timing.median_ratios(res, 'fast') == {'fast': 1., 'slow': 2.}
    assert timing.median_ratio(res['fast'], res['slow']) == 0.5


@pytest.mark.parametrize('xs, ys', [([], []), ([1.], [1., 2.])])
def test_median_ratio_needs_pairs(xs, ys):
    with pytest.raises(ValueError, match='two lists of the same length'):
        timing.median_ratio(xs, ys)


def test_clock_reads_wall_cpu_and_system_time():
    with timing.clock() as t: time.sleep(0.05)
    assert t.wall >= 0.05 and 0 <= t.cpu < t.wall and t.system >= 0


@pytest.mark.parametrize('initialized, syncs', [(True, 2), (False, 0)])
def test_clock_waits_for_the_gpu_when_cuda_is_in_use(monkeypatch, initialized, syncs):
    calls = []
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'is_initialized', lambda: initialized)
    monkeypatch.setattr(torch.cuda, 'synchronize', lambda d: calls.append(f'sync {d}'))
    with timing.clock(): calls.append('work')   # through 03's sync, on the current device
    assert calls == (['sync cuda', 'work', 'sync cuda'] if syncs else ['work'])


def test_time_op_runs_on_the_threads_this_process_uses():
    threads, seen = torch.get_num_threads(), set()
    try:
        torch.set_num_threads(2)   # torch.utils.benchmark.Timer would use 1 unless told
        m = timing.time_op(lambda x: seen.add(torch.get_num_threads()), 1, min_run_time=0.01,
                           label='op', description='ours')
    finally: torch.set_num_threads(threads)
    assert seen == {2} and m.task_spec.num_threads == 2
    assert (m.label, m.description) == ('op', 'ours') and m.median > 0


def test_set_threads_keeps_the_default_for_0_and_refuses_negatives():
    threads = torch.get_num_threads()
    try:
        assert timing.set_threads(0) == threads
        assert timing.set_threads(1) == 1 == torch.get_num_threads()
    finally: torch.set_num_threads(threads)
    for bad in (-1, 1.5, True):
        with pytest.raises(UsageError, match=r'^threads must be a whole number >= 0'):
            timing.set_threads(bad)


@pytest.mark.parametrize('script, kwargs', [
    ('matmul', dict(rows=0)), ('matmul', dict(repeat=0)), ('matmul', dict(big=0)),
    ('conv', dict(repeats=0)), ('batchnorm', dict(repeats=0)), ('augment', dict(rounds=0)),
    ('augment', dict(bs=0)), ('datablock', dict(n_batches=0)), ('datablock', dict(rounds=0)),
    ('dataloader', dict(repeat=0)), ('dataloader', dict(bs=(64, 0))),
    ('distributed', dict(rounds=0)), ('distributed', dict(steps=0)),
    ('mixed_precision', dict(rounds=0)), ('mixed_precision', dict(batches=0)),
    ('runner_overhead', dict(repeats=0)),
])
def test_scripts_refuse_counts_below_1_naming_the_flag(script, kwargs):
    # The message starts at the flag: run_cli's `<tool>: ` prefix already names the script.
    [flag] = kwargs
    main = importlib.import_module(script).main
    with pytest.raises(UsageError, match=rf'^{flag} must be a whole number'):
        main(**kwargs)


@pytest.mark.parametrize('script', ['conv', 'batchnorm', 'mixed_precision', 'runner_overhead'])
def test_scripts_refuse_a_negative_thread_count(script):
    with pytest.raises(UsageError, match=r'^threads must be'):
        importlib.import_module(script).main(threads=-1)


def test_distributed_refuses_an_odd_batch():
    main = importlib.import_module('distributed').main
    with pytest.raises(UsageError, match='^bs must be even'): main(bs=3)


def test_matmul_ends_on_its_ratio(capsys):
    importlib.import_module('matmul').main(rows=1, repeat=1, big=16)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 9 and out[-1].startswith('ratio torch @ / 3 Python loops')


@pytest.mark.parametrize('args, message', [
    (['--rowz', '2'], 'matmul: unknown flag --rowz: did you mean --rows?'),
    (['--rows', '0'], 'matmul: rows must be a whole number >= 1, got 0'),
])
def test_the_command_line_refuses_a_bad_flag_in_one_line(args, message):
    script = Path(__file__).resolve().parents[1] / 'bench' / 'matmul.py'
    res = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True)
    assert (res.returncode, res.stderr, res.stdout) == (2, message + '\n', '')


def test_no_tf32_turns_tf32_off_inside_and_puts_the_settings_back():
    cuda, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = cuda.allow_tf32, cudnn.allow_tf32
    try:
        cuda.allow_tf32, cudnn.allow_tf32 = True, True
        with pytest.raises(KeyError):   # put back after an error too
            with timing.no_tf32():
                assert (cuda.allow_tf32, cudnn.allow_tf32) == (False, False)
                raise KeyError
        assert (cuda.allow_tf32, cudnn.allow_tf32) == (True, True)
        assert timing.tf32_setting() == 'TF32 for matmul True, for cuDNN convolutions True'
    finally: cuda.allow_tf32, cudnn.allow_tf32 = saved


def test_conv_checks_against_f_conv2d_with_tf32_off(monkeypatch):
    # cuDNN's default on a recent NVIDIA card is TF32 convolutions: the 1e-4 check must not see it
    seen = []
    class Checked(Exception): pass
    def assert_close(*args, **kwargs):
        seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
        raise Checked
    monkeypatch.setattr(torch.backends.cudnn, 'allow_tf32', True)
    monkeypatch.setattr(torch.testing, 'assert_close', assert_close)
    conv = importlib.import_module('conv')
    with pytest.raises(Checked): conv.bench_shape('tiny', (2, 1, 5, 5), (2, 1, 3, 3), 1, 1, 1)
    assert seen == [(False, False)] and torch.backends.cudnn.allow_tf32
