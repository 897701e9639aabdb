"""dist_launch.py's command line: every flag is checked against the launcher's and TARGET's
parameters before any process starts. (Runs that train: tests/test_nb12_distributed.py.)"""
import subprocess
import sys
from pathlib import Path

import pytest

import dist_launch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize('args, says', [
    (['train_toy', '--step', '4'], 'unknown flag --step: did you mean --steps?'),
    (['train_toy', '--nproc', '2'], 'unknown flag --nproc: did you mean --nprocs?'),
    (['train_mnist', '--epochs'], '--epochs needs a value'),
    (['fit_toy_learner', '--ddp=no'], "--ddp takes no value (got 'no')"),
    # The launcher's settings are flags only: a second positional argument is not --nprocs.
    (['train_toy', '3'], "unexpected argument '3': main takes 1 positional argument(s)"),
    ([], 'give TARGET first'),
    (['--nprocs', '2', 'train_toy'], 'give TARGET first'),
    (['no_such_fn'], "module exp.nb_12 has no function 'no_such_fn'"),
    (['no_such_module:f'], "TARGET 'no_such_module:f': cannot import its module"),
    # Nothing to train: refused, not a run that ends at once with status 0.
    (['train_toy', '--steps', '-1'], '--steps must be a whole number >= 1, got -1'),
    (['train_mnist', '--epochs=-1'], '--epochs must be a whole number >= 1, got -1'),
    (['fit_toy_learner', '--epochs', '0'], '--epochs must be a whole number >= 1, got 0'),
    # Where the result goes is checked before the run, not after it.
    (['train_toy', '--out', '/no/such/x.pt'], '--out /no/such/x.pt: no folder /no/such'),
])
def test_bad_command_lines_are_one_line_and_exit_2(args, says, capsys, monkeypatch):
    monkeypatch.setattr(dist_launch, 'launch_main', lambda *a, **k: pytest.fail('it launched'))
    with pytest.raises(SystemExit) as info:
        dist_launch.cli(args)
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.startswith('dist_launch: ') and says in err and err.count('\n') == 1, err


def test_target_flags_reach_the_function(monkeypatch):
    calls = []
    monkeypatch.setattr(dist_launch, 'launch_main', lambda *a, **k: calls.append((a, k)))
    dist_launch.cli(['fit_toy_learner', '--noddp', '--epochs', '3', '--nprocs=1'])
    assert calls == [(('fit_toy_learner',), {'nprocs': 1, 'port': None, 'timeout': 60,
                                             'threads': 1, 'out': None, 'overwrite': False,
                                             'ddp': False,
                                             'epochs': 3})]


def test_a_mistyped_flag_starts_nothing(tmp_path):
    out = tmp_path / 'result.pt'
    proc = subprocess.run([sys.executable, 'dist_launch.py', 'train_toy', '--step', '4',
                           '--out', str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert (proc.returncode, proc.stdout) == (2, '')
    assert proc.stderr == 'dist_launch: unknown flag --step: did you mean --steps?\n'
    assert not out.exists()


def test_an_existing_out_file_is_replaced_only_with_overwrite(tmp_path, capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(dist_launch, 'launch_main', lambda *a, **k: calls.append(k['out']))
    out = tmp_path / 'x.pt'
    out.write_text('an earlier result')
    for bad in ([str(out)], [str(tmp_path)]):
        with pytest.raises(SystemExit) as info:
            dist_launch.cli(['train_toy', '--out', *bad])
        assert info.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f'dist_launch: --out {out}: the file exists; pass --overwrite to replace it',
                   f'dist_launch: --out {tmp_path}: it is a folder, not a file name']
    dist_launch.cli(['train_toy', '--out', str(out), '--overwrite'])
    assert calls == [str(out)]


def test_a_bad_out_path_trains_nothing(tmp_path):
    # the process exits 2 at once, having started no process (nothing would be saved)
    proc = subprocess.run([sys.executable, 'dist_launch.py', 'train_toy', '--out',
                           str(tmp_path / 'missing' / 'x.pt')], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert (proc.returncode, proc.stdout) == (2, '')
    assert proc.stderr == (f'dist_launch: --out {tmp_path}/missing/x.pt: '
                           f'no folder {tmp_path}/missing\n')
