"""Tests for run_notebook.py, each in a throwaway repo: tmp/nbs/*.ipynb plus tmp/helper_mod.py.

Every kernel start costs a couple of seconds, so each test that runs a notebook checks
several things about that one run.
"""
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

import nbio
import run_notebook as rn
from run_notebook import Result, format_result, run_notebook

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / 'run_notebook.py'

KERNELSPEC = {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}


@pytest.fixture
def repo(tmp_path):
    "A fake repo: a module at its root (to import from a notebook) and an empty nbs/."
    (tmp_path / 'helper_mod.py').write_text('ANSWER = 42\n')
    (tmp_path / 'nbs').mkdir()
    return tmp_path


def write_nb(repo, name, *cells):
    "Write nbs/<name>; a str is a code cell, anything else a ready-made cell."
    cells = [new_code_cell(c) if isinstance(c, str) else c for c in cells]
    path = repo / 'nbs' / name
    nbformat.write(new_notebook(cells=cells, metadata={'kernelspec': KERNELSPEC}), str(path))
    return path


def run_cli(repo, *args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=repo,
                          capture_output=True, text=True, timeout=120)


def no_temp_files(folder):
    notebooks = sorted(p.name for p in folder.glob('*.ipynb'))
    return sorted(p.name for p in folder.iterdir()) == notebooks


# ---- notebooks that run --------------------------------------------------------------

def test_pass_runs_in_notebook_folder_with_repo_root_importable(repo):
    nbs = repo / 'nbs'
    path = write_nb(repo, 'ok.ipynb', new_markdown_cell('# A title'),
                    f'import os\nassert os.getcwd() == {str(nbs.resolve())!r}, os.getcwd()',
                    'import helper_mod\nassert helper_mod.ANSWER == 42',
                    'open("made_here.txt", "w").close()')
    before = path.read_bytes()
    result = run_notebook(path)
    assert result == Result(path, True, result.seconds, '')
    assert result.seconds > 0
    assert (nbs / 'made_here.txt').exists()  # relative paths resolve in the notebook's folder
    assert path.read_bytes() == before       # no --save: the notebook is not touched


def test_save_writes_outputs_atomically(repo):
    path = write_nb(repo, 'ok.ipynb', 'print("hello")', '6 * 7')
    path.chmod(0o644)
    result = run_notebook(path, save=True)
    assert result.ok, result.message
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].outputs[0].text == 'hello\n'
    assert nb.cells[1].outputs[0].data['text/plain'] == '42'
    assert [c.execution_count for c in nb.cells] == [1, 2]
    assert path.stat().st_mode & 0o777 == 0o644
    assert no_temp_files(repo / 'nbs')


# ---- notebooks that fail -------------------------------------------------------------

def test_failing_cell_names_cell_source_and_error(repo):
    path = write_nb(repo, 'bad.ipynb', new_markdown_cell('# Title'), 'x = 1',
                    new_markdown_cell('text'),
                    'def f(a):\n    return a / 0\ny = 2\nLINE_FOUR = 4\nf(y)',
                    'open("never.txt", "w").close()')
    before = path.read_bytes()
    result = run_notebook(path, save=True)
    assert not result.ok
    msg = result.message
    assert 'cell 4 (code cell 2)' in msg
    assert 'def f(a):' in msg and 'return a / 0' in msg and 'y = 2' in msg
    assert 'LINE_FOUR' not in msg.split('ZeroDivisionError')[0]  # only the first 3 source lines
    assert 'ZeroDivisionError: division by zero' in msg
    assert '----> 2' in msg             # the traceback's last lines point into f
    assert '\x1b' not in msg            # ANSI colours stripped
    assert not (repo / 'nbs' / 'never.txt').exists()  # stops at the failing cell
    assert path.read_bytes() == before  # a failed run with --save leaves the file alone
    assert no_temp_files(repo / 'nbs')


def test_kernel_death_is_a_failure_naming_the_cell(repo):
    path = write_nb(repo, 'dies.ipynb', 'x = 1', 'import os; os._exit(1)')
    result = run_notebook(path)
    assert not result.ok
    assert 'cell 2 (code cell 2)' in result.message
    assert 'import os; os._exit(1)' in result.message
    assert 'kernel died' in result.message


def test_cell_timeout_is_a_failure_naming_the_cell(repo):
    path = write_nb(repo, 'slow.ipynb', 'x = 1', 'import time\ntime.sleep(30)')
    result = run_notebook(path, timeout=2)  # 'timed out' below proves the limit cut it short
    assert not result.ok
    assert 'cell 2 (code cell 2)' in result.message
    assert 'time.sleep(30)' in result.message
    assert 'timed out' in result.message and '2 s' in result.message


def test_missing_file(repo):
    result = run_notebook(repo / 'nbs' / 'nope.ipynb')
    assert not result.ok
    assert result.message == f"{repo / 'nbs' / 'nope.ipynb'}: no such notebook"


@pytest.mark.parametrize('text', ['{not json', '{"cells": 3}'], ids=['bad-json', 'not-a-notebook'])
def test_invalid_notebook(repo, text):
    path = repo / 'nbs' / 'junk.ipynb'
    path.write_text(text)
    result = run_notebook(path, save=True)
    assert not result.ok
    assert result.message.startswith(f'{path}: not ')  # not valid JSON, not a notebook
    assert len(result.message.splitlines()) == 1
    assert path.read_text() == text


# ---- output format and command line --------------------------------------------------

def test_format_result_aligns_names_and_indents_details():
    ok = format_result(Result(Path('nbs/01_a.ipynb'), True, 12.34), width=13)
    bad = format_result(Result(Path('nbs/02_long.ipynb'), False, 3.0, 'cell 1\nboom'), width=13)
    assert ok == 'pass  01_a.ipynb' + ' ' * 3 + '    12.3s'
    assert bad.splitlines() == ['FAIL  02_long.ipynb     3.0s', '      cell 1', '      boom']


def test_main_all_with_no_notebooks(repo, monkeypatch, capsys):
    monkeypatch.setattr(rn, 'NBS', repo / 'nbs')
    rn.main(all=True)  # no SystemExit: nothing failed
    assert 'no notebooks' in capsys.readouterr().out


def test_cli_keeps_going_past_failures_and_exits_1(repo):
    write_nb(repo, '01_ok.ipynb', 'x = 1')
    write_nb(repo, '02_bad.ipynb', 'raise ValueError("nope")')
    proc = run_cli(repo, 'nbs/01_ok.ipynb', 'nbs/02_bad.ipynb', 'nbs/03_missing.ipynb')
    assert proc.returncode == 1, proc.stderr
    status = [l for l in proc.stdout.splitlines() if not l.startswith(' ')]
    assert [l.split()[:2] for l in status] == [
        ['pass', '01_ok.ipynb'], ['FAIL', '02_bad.ipynb'], ['FAIL', '03_missing.ipynb']]
    assert len({l.index(l.split()[2]) for l in status}) == 1  # times line up
    assert all(l.endswith('s') for l in status)
    assert 'ValueError: nope' in proc.stdout
    assert 'nbs/03_missing.ipynb: no such notebook' in proc.stdout


def test_cli_save_passes_and_exits_0(repo):
    path = write_nb(repo, '01_ok.ipynb', 'print(1 + 1)')
    proc = run_cli(repo, 'nbs/01_ok.ipynb', '--save', '--timeout', '60')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0].split()[:2] == ['pass', '01_ok.ipynb']
    assert len(proc.stdout.splitlines()) == 1
    assert nbformat.read(path, as_version=4).cells[0].outputs[0].text == '2\n'


@pytest.mark.parametrize('args, says', [
    ([], 'no notebooks given'),
    (['--save=yes', 'nbs/01_ok.ipynb'], '--save takes no value'),
    (['--all', 'nbs/01_ok.ipynb'], 'not both'),
    (['nbs/01_ok.ipynb', '--timeout', 'soon'], '--timeout must be a positive number'),
    (['nbs/01_ok.ipynb', '--jobs', '0'], '--jobs must be a whole number'),
    (['nbs/01_ok.ipynb', '--sav'], 'unknown flag --sav: did you mean --save?'),
])
def test_cli_bad_arguments_stop_before_anything_runs(repo, args, says):
    write_nb(repo, '01_ok.ipynb', 'open("ran.txt", "w").close()')
    proc = run_cli(repo, *args)
    assert proc.returncode == 2 and proc.stdout == ''
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith('run_notebook: ') and says in lines[0]
    assert not (repo / 'nbs' / 'ran.txt').exists()


# ---- --save never overwrites edits made during the run -------------------------------------------

def test_save_refuses_when_the_file_changed_while_it_ran(repo):
    path = write_nb(repo, 'ok.ipynb', 'x = 1')
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(new_code_cell(f'with open({str(path)!r}, "a") as f: f.write("\\n")  # an edit'))
    nbformat.write(nb, str(path))
    result = run_notebook(path, save=True)
    assert not result.ok
    assert 'changed on disk while it ran: not saved' in result.message
    assert len(result.message.splitlines()) == 1
    edited = path.read_text()
    assert edited.endswith('\n\n')  # the edit is still there
    assert all(not c.get('outputs') and c.execution_count is None
               for c in nbformat.reads(edited, as_version=4).cells)
    assert no_temp_files(repo / 'nbs')


def test_save_checks_content_not_mtime(repo):
    "Touching the file (same bytes, new mtime) is not an edit: the outputs are saved."
    path = write_nb(repo, 'ok.ipynb', 'y = 2')
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, new_code_cell(f'import os\nos.utime({str(path)!r})'))
    nbformat.write(nb, str(path))
    result = run_notebook(path, save=True)
    assert result.ok, result.message
    assert nbformat.read(path, as_version=4).cells[1].execution_count == 2


# ---- one Ctrl-C stops everything; output never fails on encoding ---------------------------------

@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='reads /proc, POSIX signals')
def test_ctrl_c_stops_the_whole_run_and_the_kernel(repo):
    import os
    import signal
    started = repo / 'started.txt'
    first = write_nb(repo, '01_a.ipynb', 'x = 1',
                     'import os, subprocess, time\n'
                     'child = subprocess.Popen(["sleep", "60"])\n'
                     f'open({str(started)!r}, "w").write(f"{{os.getpid()}} {{child.pid}}")\n'
                     'time.sleep(60)')
    write_nb(repo, '02_b.ipynb', f'open({str(repo / "second_ran.txt")!r}, "w").close()')
    before = first.read_bytes()
    proc = start_cli(repo, 'nbs/01_a.ipynb', 'nbs/02_b.ipynb', '--save')
    deadline = time.monotonic() + 60
    while not (started.exists() and started.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert started.exists(), 'the notebook never reached its long cell'
    os.kill(proc.pid, signal.SIGINT)  # to the runner alone: the kernel has its own session
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert out == ''  # no FAIL line for 01, nothing for 02
    assert err.splitlines() == [err.strip()]
    assert 'nbs/01_a.ipynb' in err and 'cell 2 (code cell 2)' in err
    assert 'Traceback' not in err and 'never retrieved' not in err
    assert not (repo / 'second_ran.txt').exists()
    assert first.read_bytes() == before and no_temp_files(repo / 'nbs')
    all_gone(map(int, started.read_text().split()))  # the kernel and its child


def start_cli(repo, *args):
    return subprocess.Popen([sys.executable, str(SCRIPT), *args], cwd=repo,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def all_gone(pids):
    for pid in pids:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.1)
        assert not pid_alive(pid), pid


def pid_alive(pid):
    "True while `pid` runs (a zombie waiting to be reaped counts as gone)."
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except FileNotFoundError:
        return False


def test_ascii_terminal_never_crashes_the_report(repo):
    write_nb(repo, '01_µ.ipynb', 'raise ValueError("µ π ≈ 3")')
    env = {**__import__('os').environ, 'PYTHONIOENCODING': 'ascii'}
    proc = subprocess.run([sys.executable, str(SCRIPT), 'nbs/01_µ.ipynb', 'nbs/02_é.ipynb'],
                          cwd=repo, capture_output=True, timeout=120, env=env)
    out, err = proc.stdout.decode('ascii'), proc.stderr.decode('ascii')  # pure ASCII came out
    assert proc.returncode == 1, out + err
    assert 'UnicodeEncodeError' not in out + err and 'Traceback' not in err
    assert 'FAIL  01_\\xb5.ipynb' in out and 'ValueError: \\xb5 \\u03c0 \\u2248 3' in out
    assert 'nbs/02_\\xe9.ipynb: no such notebook' in out


def test_kernel_runs_single_threaded_unless_told(repo, monkeypatch):
    """Thread count changes float rounding, so the kernel gets one thread by default; an explicit
    setting wins."""
    for var in rn.THREAD_VARS: monkeypatch.delenv(var, raising=False)
    path = write_nb(repo, 'threads.ipynb',
                    'import torch\nassert torch.get_num_threads() == 1, torch.get_num_threads()')
    assert run_notebook(path).ok
    monkeypatch.setenv('OMP_NUM_THREADS', '2')
    path = write_nb(repo, 'threads2.ipynb',
                    'import os\nassert os.environ["OMP_NUM_THREADS"] == "2"')
    assert run_notebook(path).ok


# ---- --jobs: several notebooks at a time, some alone -------------------------------------------

def test_schedule_starts_alone_notebooks_first_then_longest_first(monkeypatch):
    monkeypatch.setattr(rn, 'SECONDS', {'01_a': 10, '02_b': 50, '03_c': 30, '04_d': 5, '05_e': 20})
    paths = [Path(f'nbs/{n}.ipynb') for n in ['01_a', '02_b', '03_c', '04_d', '05_e', '06_new']]
    order = [paths[i].stem for i in rn.schedule(paths, alone={'04_d', '05_e'})]
    assert order == ['05_e', '04_d', '06_new', '02_b', '03_c', '01_a']  # unmeasured: longest


def test_schedule_starts_the_longest_chain_of_needs_first(monkeypatch):
    # 02_b is short, but 03_c (the longest) waits for it: 02_b starts before 01_a
    monkeypatch.setattr(rn, 'SECONDS', {'01_a': 40, '02_b': 10, '03_c': 50, '04_d': 20})
    monkeypatch.setattr(rn, 'NEEDS', {'03_c': '02_b'})
    paths = [Path(f'nbs/{n}.ipynb') for n in ['01_a', '02_b', '03_c', '04_d']]
    order = [paths[i].stem for i in rn.schedule(paths, alone=set())]
    assert order == ['02_b', '03_c', '01_a', '04_d']
    # a chain counts only the notebooks in this run: without 03_c, 02_b is just short
    some = paths[:2] + paths[3:]
    assert [some[i].stem for i in rn.schedule(some, alone=set())] == ['01_a', '04_d', '02_b']


def test_timing_notebooks_run_alone_only_when_saved():
    assert rn.runs_alone(save=False) == set(rn.RUN_ALONE) == {'11_xresnet', '12_distributed',
                                                           '15c_ddpm'}
    assert rn.runs_alone(save=True) == set(rn.RUN_ALONE) | set(rn.TIMES_THINGS)
    assert {'01_matmul', '10c_mixed_precision'} <= set(rn.TIMES_THINGS)
    assert set(rn.SECONDS) == {p.stem for p in nbio.notebooks()}  # every notebook measured


def test_run_scheduled_keeps_to_jobs_and_runs_alone_notebooks_alone(monkeypatch):
    import threading
    monkeypatch.setattr(rn, 'SECONDS', {})
    paths = [Path(f'nbs/{n}.ipynb') for n in ['01_a', '02_b', '03_alone', '04_c', '05_d']]
    lock, running, seen = threading.Lock(), set(), []
    def run(path):
        with lock:
            running.add(path.stem)
            seen.append(sorted(running))
        time.sleep(0.05)
        with lock: running.discard(path.stem)
        return Result(path, path.stem != '04_c', 0.05)
    reported = []
    results = rn.run_scheduled(paths, 2, run, reported.append, alone={'03_alone'})
    assert [r.path for r in results] == paths and [r.ok for r in results] == [1, 1, 1, 0, 1]
    assert sorted(r.path.stem for r in reported) == sorted(p.stem for p in paths)
    assert seen[0] == ['03_alone']                    # alone ones first, with nothing beside
    assert max(len(s) for s in seen) == 2             # two at a time, never more
    assert all(s == ['03_alone'] for s in seen if '03_alone' in s)


def test_cli_jobs_2_runs_two_notebooks_at_once(repo):
    # each notebook waits for the other's file: both pass only if they run at the same time
    for me, other in [('01_a', '02_b'), ('02_b', '01_a')]:
        write_nb(repo, f'{me}.ipynb', f'open("{me}.started", "w").close()',
                 'import os, time\ndeadline = time.time() + 60\n'
                 f'while not os.path.exists("{other}.started") and time.time() < deadline:\n'
                 '    time.sleep(0.05)\n'
                 f'assert os.path.exists("{other}.started")')
    proc = run_cli(repo, 'nbs/01_a.ipynb', 'nbs/02_b.ipynb', '--jobs', '2')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(line.split()[:2][1] for line in proc.stdout.splitlines()) == \
        ['01_a.ipynb', '02_b.ipynb']


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='reads /proc, POSIX signals')
def test_ctrl_c_under_jobs_stops_every_kernel(repo):
    import os
    import signal
    for name in ['01_a', '02_b']:
        write_nb(repo, f'{name}.ipynb', 'x = 1',
                 f'import os, time\nopen("{name}.pid", "w").write(str(os.getpid()))\n'
                 'time.sleep(60)')
    pids = [repo / 'nbs' / f'{name}.pid' for name in ['01_a', '02_b']]
    proc = start_cli(repo, 'nbs/01_a.ipynb', 'nbs/02_b.ipynb', '--jobs', '2', '--save')
    deadline = time.monotonic() + 60
    while not all(p.exists() and p.read_text() for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert out == '' and err.splitlines() == [err.strip()], err
    assert 'nbs/01_a.ipynb, cell 2 (code cell 2)' in err and 'nbs/02_b.ipynb, cell 2' in err
    assert 'Traceback' not in err
    all_gone(int(p.read_text()) for p in pids)


def test_a_notebook_starts_only_after_the_one_whose_saved_model_it_loads(monkeypatch):
    # 13b loads the language model 13a saves to the cache: with two slots free, it still waits
    import threading
    monkeypatch.setattr(rn, 'SECONDS', {'13a_lm': 1, '13b_clf': 0.5, '01_a': 0.1, '02_b': 0.1})
    monkeypatch.setattr(rn, 'NEEDS', {'13b_clf': '13a_lm'})
    paths = [Path(f'nbs/{n}.ipynb') for n in ['01_a', '02_b', '13a_lm', '13b_clf']]
    lock, events = threading.Lock(), []
    def run(path):
        with lock: events.append(('start', path.stem))
        time.sleep(0.2 if path.stem == '13a_lm' else 0.02)
        with lock: events.append(('end', path.stem))
        return Result(path, True, 0.1)
    results = rn.run_scheduled(paths, 2, run, lambda r: None, alone=set())
    assert all(r.ok for r in results)
    assert events.index(('end', '13a_lm')) < events.index(('start', '13b_clf'))
    # the slot 13b could not use went to the short ones meanwhile
    assert events.index(('start', '02_b')) < events.index(('end', '13a_lm'))


def test_needs_names_only_notebooks_that_exist_and_no_cycle():
    stems = {p.stem for p in nbio.notebooks()}
    for later, earlier in rn.NEEDS.items():
        assert later in stems and earlier in stems and earlier < later
