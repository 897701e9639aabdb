"""Tests for nbio.py: atomic writes, notebook reading, cell names and command lines, shared by the
tools."""
import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_raw_cell

import nbio
from nbio import NotebookError, atomic_open, atomic_write, read_notebook

ROOT = Path(__file__).resolve().parents[1]


def files(folder):
    return sorted(p.name for p in Path(folder).iterdir())


# --- atomic_open / atomic_write ---------------------------------------------------------------

def test_atomic_write_bytes_and_str(tmp_path):
    atomic_write(tmp_path / 'a.bin', b'\x00\x01')
    atomic_write(tmp_path / 'b.txt', 'π\nline\r\n')
    assert (tmp_path / 'a.bin').read_bytes() == b'\x00\x01'
    # no newline translation
    assert (tmp_path / 'b.txt').read_bytes() == 'π\nline\r\n'.encode('utf-8')
    assert files(tmp_path) == ['a.bin', 'b.txt']


def test_atomic_write_refuses_other_types(tmp_path):
    with pytest.raises(TypeError, match='str or bytes'):
        atomic_write(tmp_path / 'a', 42)
    assert files(tmp_path) == []


def test_text_mode_is_utf8_by_default(tmp_path):
    with atomic_open(tmp_path / 't.txt', 'w') as f:
        f.write('µs\n')
    assert (tmp_path / 't.txt').read_bytes() == 'µs\n'.encode('utf-8')


@pytest.mark.parametrize('mode', ['r', 'a', 'w+', 'rb', 'xb'])
def test_bad_mode_is_refused(tmp_path, mode):
    with pytest.raises(ValueError, match='mode'):
        with atomic_open(tmp_path / 'x', mode):
            pass
    assert files(tmp_path) == []


def test_exception_inside_keeps_old_file_and_removes_temp(tmp_path):
    dest = tmp_path / 'd.txt'
    dest.write_text('old')
    with pytest.raises(RuntimeError, match='boom'):
        with atomic_open(dest, 'w') as f:
            f.write('new, half written')
            raise RuntimeError('boom')
    assert dest.read_text() == 'old' and files(tmp_path) == ['d.txt']


def test_keyboard_interrupt_also_cleans_up(tmp_path):
    dest = tmp_path / 'd.bin'
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(dest) as f:
            f.write(b'partial')
            raise KeyboardInterrupt
    assert files(tmp_path) == []


def test_check_sees_complete_temp_file_and_can_veto(tmp_path):
    dest = tmp_path / 'd.bin'
    dest.write_bytes(b'old')
    seen = []

    def check(tmp):
        seen.append(Path(tmp).read_bytes())  # closed and flushed by now
        assert Path(tmp).parent == tmp_path  # same folder: the rename is atomic
        raise ValueError('checksum mismatch')

    with pytest.raises(ValueError, match='checksum'):
        with atomic_open(dest, check=check) as f:
            f.write(b'new bytes')
    assert seen == [b'new bytes']
    assert dest.read_bytes() == b'old' and files(tmp_path) == ['d.bin']


def test_check_passing_lets_the_file_through(tmp_path):
    with atomic_open(tmp_path / 'd.bin', check=lambda tmp: None) as f:
        f.write(b'ok')
    assert (tmp_path / 'd.bin').read_bytes() == b'ok'


def test_failed_replace_keeps_old_file(tmp_path, monkeypatch):
    dest = tmp_path / 'd.txt'
    dest.write_text('old')

    def no_space(src, dst):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(nbio.os, 'replace', no_space)
    with pytest.raises(OSError, match='No space'):
        atomic_write(dest, 'new')
    assert dest.read_text() == 'old' and files(tmp_path) == ['d.txt']


@pytest.mark.skipif(os.name != 'posix', reason='POSIX file modes')
def test_permissions_kept_for_existing_and_umask_for_new(tmp_path):
    old = tmp_path / 'old.txt'
    old.write_text('x')
    old.chmod(0o640)
    atomic_write(old, 'y')
    assert old.stat().st_mode & 0o777 == 0o640
    new = tmp_path / 'new.txt'
    atomic_write(new, 'z')
    assert new.stat().st_mode & 0o777 == 0o666 & ~nbio._umask()  # not mkstemp's private 0o600


def test_missing_folder_is_an_os_error_and_nothing_created(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / 'no' / 'such' / 'file', 'x')
    assert files(tmp_path) == []


# --- read_notebook ----------------------------------------------------------------------------

def test_reads_v4_notebook(tmp_path):
    path = tmp_path / 'a.ipynb'
    nbformat.write(new_notebook(cells=[new_code_cell('x = 1')]), str(path))
    nb = read_notebook(path)
    assert nb.nbformat == 4 and nb.cells[0].source == 'x = 1'


def test_nbformat_3_is_converted(tmp_path):
    from nbformat import v3
    cell = v3.new_code_cell(input='# export\nx = 1')
    old = v3.new_notebook(worksheets=[v3.new_worksheet(cells=[cell])])
    path = tmp_path / 'old.ipynb'
    path.write_text(nbformat.writes(old, version=3), encoding='utf-8')
    assert json.loads(path.read_text())['nbformat'] == 3
    nb = read_notebook(path)
    assert nb.nbformat == 4
    assert [c.cell_type for c in nb.cells] == ['code']
    assert ''.join(nb.cells[0].source) == '# export\nx = 1'


@pytest.mark.parametrize('content, says', [
    (None, 'no such notebook'),
    (b'{"cells": [', 'not valid JSON (line 1'),
    (b'[1, 2]', 'not a notebook (the JSON is a list'),
    (b'{"nbformat": 4}', 'not a notebook (no list of cells)'),
    (b'{"nbformat": 2, "cells": []}', 'nbformat 2 is not supported'),
    (b'{"nbformat": 3, "worksheets": 7}', 'nbformat 3'),
    (b'{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "nope"}]}',
     'not a valid notebook'),
    (b'\xff\xfe{}', 'not UTF-8'),
])
def test_bad_files_give_one_line_naming_the_file(tmp_path, monkeypatch, content, says):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / 'bad.ipynb'
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(NotebookError) as info:
        read_notebook(path)
    message = str(info.value)
    assert message.startswith('bad.ipynb: ') and says in message, message
    assert '\n' not in message
    assert info.value.path == path


def test_folder_and_who_in_message(tmp_path):
    with pytest.raises(NotebookError, match='is a folder, not a lesson'):
        read_notebook(tmp_path, who='lesson')


@pytest.mark.skipif(os.name != 'posix' or os.geteuid() == 0, reason='root reads anything')
def test_unreadable_file(tmp_path):
    path = tmp_path / 'a.ipynb'
    path.write_text('{}')
    path.chmod(0)
    with pytest.raises(NotebookError, match='cannot read'):
        read_notebook(path)


# --- cell names, the repo's notebooks -----------------------------------------------------------

def test_cell_name_counts_all_cells_and_code_cells_from_one():
    nb = new_notebook(cells=[new_markdown_cell('# t'), new_code_cell('x'), new_raw_cell('r'),
                             new_code_cell('y')])
    assert [nbio.cell_name(nb, i) for i in range(4)] == \
        ['cell 1 (markdown)', 'cell 2 (code cell 1)', 'cell 3 (raw)', 'cell 4 (code cell 2)']


def test_notebooks_sorted_in_course_order(tmp_path):
    for name in ['10_b.ipynb', '02_a.ipynb', '02b_c.ipynb', 'notes.txt']:
        (tmp_path / name).write_text('')
    assert [p.name for p in nbio.notebooks(tmp_path)] == ['02_a.ipynb', '02b_c.ipynb', '10_b.ipynb']
    assert nbio.notebooks() == sorted((ROOT / 'nbs').glob('*.ipynb'))
    with pytest.raises(nbio.ToolError, match='nope: no such folder of notebooks'):
        nbio.notebooks(tmp_path / 'nope')


# --- run_cli / check_command_line ---------------------------------------------------------------

def tool(*paths, all=False, check=False, nbs='nbs', timeout=60):
    return paths, all, check, nbs, timeout


def launcher(target, nprocs=2, **kwargs):
    return target, nprocs, kwargs


def target_fn(epochs=1, bs=64, tta=False):
    return epochs, bs, tta


def refused(argv, main=tool, also=()):
    with pytest.raises(nbio.UsageError) as info:
        nbio.check_command_line(main, argv, also)
    return str(info.value)


def test_command_line_is_spelled_out_for_fire():
    check = nbio.check_command_line
    assert check(tool, ['a', '--check', 'b']) == ['a', 'b', '--check=True']  # never takes `b`
    assert check(tool, ['--noall', '--timeout', '5', '--nbs=x']) == \
        ['--all=False', '--timeout=5', '--nbs=x']
    assert check(tool, ['-c', '--nbs', 'y']) == \
        ['--check=True', '--nbs=y']
    assert check(tool, ['--timeout', '-0.5']) == ['--timeout=-0.5']  # a negative number is a value
    assert check(tool, ['x', '--help']) == ['x', '--help']          # fire's help is left to fire


def test_unknown_flag_names_the_nearest():
    assert refused(['--all', '--chekc']) == 'unknown flag --chekc: did you mean --check?'
    assert 'the flags are --all, --check, --nbs, --timeout' in refused(['--zzz'])


def test_boolean_flag_takes_no_value_and_others_need_one():
    assert refused(['--all=x.ipynb']).startswith("--all takes no value (got 'x.ipynb')")
    assert refused(['--save', 'False'], main=lambda save=True: save).startswith('--save takes no')
    assert refused(['--timeout']) == '--timeout needs a value (--timeout VALUE or --timeout=VALUE)'
    assert refused(['--nbs', '--all']).startswith('--nbs needs a value')


def test_positional_arguments_beyond_mains_room_are_refused():
    assert refused(['a', '3', 'b'], main=launcher).startswith("unexpected argument 'b'")
    assert refused(['a'], main=lambda *, epochs=1: 0) == \
        "unexpected argument 'a': this command takes only flags"


def test_kwargs_are_checked_against_the_functions_in_also():
    check = nbio.check_command_line
    assert check(launcher, ['t', '--epochs', '2', '--tta'], also=[target_fn]) == \
        ['t', '--epochs=2', '--tta=True']
    assert refused(['t', '--epoch', '2'], main=launcher, also=[target_fn]) == \
        'unknown flag --epoch: did you mean --epochs?'


def run_script(tmp_path, body, *args):
    script = tmp_path / 'mytool.py'
    script.write_text(f'from nbio import *\n{body}\nrun_cli(main)\n')
    import subprocess
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True)


def test_run_cli_refuses_before_main_runs_and_reports_errors_in_one_line(tmp_path):
    body = ("def main(*paths, check=False):\n"
            "    print('ran', paths, check)\n"
            "    if 'bad' in paths: raise ToolError('bad\\ninput')\n"
            "    if 'usage' in paths: raise UsageError('no sense')\n")
    result = run_script(tmp_path, body, 'x', '--chekc')
    assert (result.returncode, result.stdout) == (2, '')  # main never ran
    assert result.stderr == 'mytool: unknown flag --chekc: did you mean --check?\n'
    result = run_script(tmp_path, body, 'bad', '--check')
    assert (result.returncode, result.stderr) == (1, 'mytool: bad input\n')
    assert result.stdout == "ran ('bad',) True\n"
    assert run_script(tmp_path, body, 'usage').returncode == 2
    assert run_script(tmp_path, body, 'a', 'b').stdout == "ran ('a', 'b') False\n"


def test_the_temp_file_reaches_the_disk_before_it_is_renamed(tmp_path, monkeypatch):
    "A machine crash after the rename must not leave an empty or partial file under the name."
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    def fsync(fd):
        calls.append(('fsync', os.fstat(fd).st_size))
        real_fsync(fd)
    def replace(src, dst):
        calls.append(('replace', Path(dst).name))
        real_replace(src, dst)
    monkeypatch.setattr(nbio.os, 'fsync', fsync)
    monkeypatch.setattr(nbio.os, 'replace', replace)
    with atomic_open(tmp_path / 'f.bin') as f:
        f.write(b'12345')   # still in Python's buffer: flushed before the fsync
    assert calls == [('fsync', 5), ('replace', 'f.bin')]


def test_temp_files_are_only_this_names_own(tmp_path):
    "Another file's in-flight temp (a longer name with the same start) is not this file's."
    own = tmp_path / '.ck.pt.ab_c1234.tmp'
    other = tmp_path / '.ck.pt.rank1.ab_c1234.tmp'
    odd = tmp_path / '.c[k].pt.x1y2z3w4.tmp'   # glob's special characters in the name
    for p in (own, other, odd, tmp_path / 'ck.pt'):
        p.write_bytes(b'')
    assert nbio.temp_files(tmp_path / 'ck.pt') == [own]
    assert nbio.temp_files(tmp_path / 'c[k].pt') == [odd]
    assert nbio.temp_files(tmp_path / 'ck.pt.rank1') == [other]
