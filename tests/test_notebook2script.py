"""Tests for notebook2script.py, each in a scratch repo: tmp/nbs (notebooks), tmp/exp (modules)."""
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

import nbio
import notebook2script as n2s
from notebook2script import ExportError

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / 'notebook2script.py'


@pytest.fixture
def repo(tmp_path, monkeypatch):
    (tmp_path / 'nbs').mkdir()
    (tmp_path / 'exp').mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(n2s, 'ROOT', tmp_path)  # the functions' repo; the CLI gets --root
    return tmp_path


def write_nb(repo, name, *cells):
    """Write nbs/<name>.ipynb; a str is a code cell, anything else is a ready-made cell."""
    cells = [new_code_cell(c) if isinstance(c, str) else c for c in cells]
    path = repo / 'nbs' / f'{name}.ipynb'
    nbformat.write(new_notebook(cells=cells), str(path))
    return path


def header(nb_name):
    return (f'# Generated from nbs/{nb_name}.ipynb by notebook2script.py:\n'
            '# edit the notebook, not this file.')


def code_of(text):
    """A module's text without the generated __all__ block at its end (tested on its own)."""
    head, sep, tail = text.partition('\n\n\n# What `from exp.')
    assert sep and tail.count('__all__ = ') == 2, text  # the list sum, then its clean-up
    return head + '\n'


def run_cli(repo, *args):
    return subprocess.run([sys.executable, str(SCRIPT), *args, '--root', str(repo)], cwd=repo,
                          capture_output=True, text=True, encoding='utf-8')


def snapshot(folder):
    """{name: bytes} of every file in `folder`, to show nothing was written or left behind."""
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir())}


# --- the export marker ------------------------------------------------------------------------

@pytest.mark.parametrize('marker', ['# export', '#export', '# EXPORT', '#Export', '  #   export  ',
                                    '# export\t'])
def test_marker_variants_are_exported(repo, marker):
    write_nb(repo, '01_a', f'{marker}\nx = 1')
    out = n2s.export_notebook(repo / 'nbs' / '01_a.ipynb')
    assert out == repo / 'exp' / 'nb_01.py'
    assert code_of(out.read_text(encoding='utf-8')) == f'{header("01_a")}\n\n\nx = 1\n'


@pytest.mark.parametrize('source', ['#exports\nx = 1', '# export foo\nx = 1', '# exported\nx = 1',
                                    '## export\nx = 1', 'x = 1\n# export', '\n# export\nx = 1',
                                    'export\nx = 1'])
def test_non_markers_are_not_exported(repo, source):
    write_nb(repo, '01_a', source)
    assert n2s.export_notebook(repo / 'nbs' / '01_a.ipynb') is None
    assert not (repo / 'exp' / 'nb_01.py').exists()


def test_markdown_cell_with_marker_is_not_exported(repo):
    write_nb(repo, '01_a', new_markdown_cell('# export\nsome prose'), '# export\ny = 2')
    text = n2s.export_notebook(repo / 'nbs' / '01_a.ipynb').read_text(encoding='utf-8')
    assert 'prose' not in text and code_of(text).endswith('\ny = 2\n')


def test_marker_dropped_order_kept_cells_two_blank_lines_apart(repo):
    write_nb(repo, '02_b', new_markdown_cell('# Title'), '# export\na = 1', 'b = 2  # not exported',
             '#export\ndef f():\n    return a', 'print(f())', '# Export\nc = 3')
    text = n2s.export_notebook(repo / 'nbs' / '02_b.ipynb').read_text(encoding='utf-8')
    assert code_of(text) == f'{header("02_b")}\n\n\na = 1\n\n\ndef f():\n    return a\n\n\nc = 3\n'


def test_cell_whitespace_trimmed_and_file_ends_with_one_newline(repo):
    write_nb(repo, '01_a', '# export\n\n\nx = 1   \n\n\n', '# export\r\ny = "  "\r\n\t\n',
             '# export\n  ')
    n2s.export_notebook(repo / 'nbs' / '01_a.ipynb')
    data = (repo / 'exp' / 'nb_01.py').read_bytes()
    expected = f'{header("01_a")}\n\n\nx = 1\n\n\ny = "  "\n'
    assert code_of(data.decode()).encode() == expected.encode()
    assert b'\r' not in data


# --- names and header -------------------------------------------------------------------------

@pytest.mark.parametrize('nb_name, module', [
    ('01_matmul', 'nb_01.py'), ('07a_lsuv', 'nb_07a.py'), ('05b_early_stopping', 'nb_05b.py'),
    ('10', 'nb_10.py')])
def test_module_name_is_prefix_before_first_underscore(repo, nb_name, module):
    write_nb(repo, nb_name, '# export\nx = 1')
    assert n2s.export_notebook(repo / 'nbs' / f'{nb_name}.ipynb') == repo / 'exp' / module
    assert [p.name for p in (repo / 'exp').iterdir()] == [module]


def test_header_names_notebook_relative_to_repo_wherever_we_run(repo, tmp_path_factory,
                                                                 monkeypatch):
    nb = write_nb(repo, '01_matmul', '# export\nx = 1')
    monkeypatch.chdir(tmp_path_factory.mktemp('elsewhere'))
    out = n2s.export_notebook(nb)
    first = out.read_text(encoding='utf-8').splitlines()[0]
    assert first == header('01_matmul').splitlines()[0]
    assert 'nbs/01_matmul.ipynb' in first and str(repo) not in first


def test_dest_can_be_overridden(repo, tmp_path_factory):
    nb = write_nb(repo, '01_a', '# export\nx = 1')
    other = tmp_path_factory.mktemp('other')
    assert n2s.export_notebook(nb, dest=other) == other / 'nb_01.py'
    assert not (repo / 'exp' / 'nb_01.py').exists()


# --- determinism, encoding, file handling -----------------------------------------------------

def test_export_is_deterministic_and_skips_identical_rewrite(repo):
    nb = write_nb(repo, '01_a', '# export\nimport math', '# export\ndef g(x): return math.pi * x')
    out = n2s.export_notebook(nb)
    first = out.read_bytes()
    os.utime(out, ns=(1_000_000_000, 1_000_000_000))  # an old mtime we can recognise
    assert n2s.export_notebook(nb) == out
    assert out.read_bytes() == first
    assert out.stat().st_mtime_ns == 1_000_000_000


def test_utf8_round_trips(repo):
    nb = write_nb(repo, '01_a', '# export\nUNIT = "µs"  # π ≈ 3.14\nπ = 3.14159')
    data = n2s.export_notebook(nb).read_bytes()
    assert 'UNIT = "µs"  # π ≈ 3.14\nπ = 3.14159\n'.encode('utf-8') in data
    namespace = {}
    exec(data.decode('utf-8'), namespace)
    assert namespace['UNIT'] == 'µs' and namespace['π'] == 3.14159


@pytest.mark.skipif(os.name != 'posix', reason='POSIX file modes')
def test_module_is_not_left_private_like_a_temp_file(repo):
    out = n2s.export_notebook(write_nb(repo, '01_a', '# export\nx = 1'))
    mask = nbio._umask()
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask


def test_failed_write_keeps_old_module_and_leaves_no_temp(repo, monkeypatch):
    nb = write_nb(repo, '01_a', '# export\nx = 2')
    (repo / 'exp' / 'nb_01.py').write_bytes(b'x = 1  # old\n')
    before = snapshot(repo / 'exp')

    def failing_replace(src, dst):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(nbio.os, 'replace', failing_replace)
    with pytest.raises(ExportError, match=r'nb_01\.py: cannot write'):
        n2s.export_notebook(nb)
    assert snapshot(repo / 'exp') == before


def test_no_export_cells_writes_no_module(repo):
    write_nb(repo, '03_c', new_markdown_cell('# export'), 'x = 1')
    assert n2s.export_notebook(repo / 'nbs' / '03_c.ipynb') is None
    assert snapshot(repo / 'exp') == {}
    result = run_cli(repo, 'nbs/03_c.ipynb')
    assert result.returncode == 0 and 'no export cells' in result.stdout
    assert snapshot(repo / 'exp') == {}


def test_export_all_in_sorted_order(repo):
    for name in ['02_b', '00_base', '01_a']:
        write_nb(repo, name, f'# export\nNAME = {name!r}')
    write_nb(repo, '03_none', 'x = 1')
    written = n2s.export_all(repo / 'nbs')
    assert written == [repo / 'exp' / m for m in ['nb_00.py', 'nb_01.py', 'nb_02.py']] + [None]
    assert "NAME = '02_b'" in (repo / 'exp' / 'nb_02.py').read_text(encoding='utf-8')


def test_cli_exports_one_notebook_and_all(repo):
    write_nb(repo, '01_matmul', '# export\nx = 1')
    write_nb(repo, '02_fully', '# export\ny = 2')
    result = run_cli(repo, 'nbs/01_matmul.ipynb')
    assert result.returncode == 0, result.stderr
    assert list(snapshot(repo / 'exp')) == ['nb_01.py']
    result = run_cli(repo, '--all')
    assert result.returncode == 0, result.stderr
    assert list(snapshot(repo / 'exp')) == ['nb_01.py', 'nb_02.py']
    module = snapshot(repo / 'exp')['nb_01.py'].decode()
    assert code_of(module) == f'{header("01_matmul")}\n\n\nx = 1\n'


# --- --check ----------------------------------------------------------------------------------

def test_check_is_clean_after_export(repo):
    write_nb(repo, '00_base', '# export\nx = 1')
    write_nb(repo, '01_a', 'no = "exports"')
    assert n2s.check_all(repo / 'nbs') != []
    n2s.export_all(repo / 'nbs')
    assert n2s.check_all(repo / 'nbs') == []
    result = run_cli(repo, '--all', '--check')
    assert result.returncode == 0, result.stderr
    assert 'in sync' in result.stdout and result.stderr == ''


def test_check_reports_differing_orphan_missing_and_stale_modules(repo):
    for name in ['00_base', '01_a', '02_b']:
        write_nb(repo, name, f'# export\nNAME = {name!r}')
    write_nb(repo, '03_none', 'x = 1')
    n2s.export_all(repo / 'nbs')
    write_nb(repo, '01_a', '# export\nNAME = "edited"')            # module now differs
    (repo / 'exp' / 'nb_02.py').unlink()                            # module missing
    (repo / 'exp' / 'nb_03.py').write_text(f'{header("03_none")}\nold = 1\n')  # exports nothing now
    (repo / 'exp' / 'nb_09.py').write_text(f'{header("09_gone")}\ngone = 1\n')  # notebook deleted
    before = snapshot(repo / 'exp')

    problems = n2s.check_all(repo / 'nbs')
    assert len(problems) == 4
    for module, word in [('nb_01.py', 'differs'), ('nb_02.py', 'missing'),
                         ('nb_03.py', 'stale'), ('nb_09.py', 'orphan')]:
        assert any(module in p and word in p for p in problems), (module, problems)

    result = run_cli(repo, '--all', '--check')
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 5 and all(line.startswith('notebook2script: ') for line in lines)
    for module in ['nb_01.py', 'nb_02.py', 'nb_03.py', 'nb_09.py']:
        assert module in result.stderr
    assert snapshot(repo / 'exp') == before  # --check writes nothing


def test_check_of_one_notebook(repo):
    nb = write_nb(repo, '01_a', '# export\nx = 1')
    assert 'missing' in n2s.check_notebooks([nb])[0]
    assert run_cli(repo, 'nbs/01_a.ipynb', '--check').returncode == 1
    n2s.export_notebook(nb)
    assert n2s.check_notebooks([nb]) == []
    assert run_cli(repo, 'nbs/01_a.ipynb', '--check').returncode == 0


# --- bad input: one-line error, exit 1, nothing written ---------------------------------------

def bad_missing(repo):
    return ['nbs/01_a.ipynb'], ['01_a.ipynb', 'no such notebook']


def bad_json(repo):
    (repo / 'nbs' / '01_a.ipynb').write_text('{"cells": [', encoding='utf-8')
    return ['nbs/01_a.ipynb'], ['01_a.ipynb', 'not valid JSON']


def bad_not_a_notebook(repo):
    (repo / 'nbs' / '01_a.ipynb').write_text('{"name": "a settings file"}', encoding='utf-8')
    return ['nbs/01_a.ipynb'], ['01_a.ipynb', 'not a notebook']


def bad_json_list(repo):
    (repo / 'nbs' / '01_a.ipynb').write_text('[1, 2, 3]', encoding='utf-8')
    return ['nbs/01_a.ipynb'], ['01_a.ipynb', 'not a notebook']


def bad_invalid_notebook(repo):
    (repo / 'nbs' / '01_a.ipynb').write_text(
        '{"cells": [{"cell_type": "code"}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}',
        encoding='utf-8')
    return ['nbs/01_a.ipynb'], ['01_a.ipynb', 'not a valid notebook']


def bad_syntax(repo):
    write_nb(repo, '01_a', new_markdown_cell('intro'), '# export\nx = 1',
             '# export\ny = 2\ndef f(:\n    pass')
    return ['nbs/01_a.ipynb'], ['01_a.ipynb', 'cell 3 (code cell 2), line 3']


def bad_magic(repo):
    write_nb(repo, '01_a', '# export\n%time x = 1')
    return ['nbs/01_a.ipynb'], ['01_a.ipynb', 'cell 1 (code cell 1), line 2']


def bad_one_of_all(repo):
    write_nb(repo, '00_base', '# export\nfine = True')
    write_nb(repo, '01_a', '# export\nx = = 1')
    return ['--all'], ['01_a.ipynb', 'cell 1 (code cell 1), line 2']


def bad_duplicate_modules(repo):
    write_nb(repo, '00_base', '# export\nfine = True')
    write_nb(repo, '01_a', '# export\nx = 1')
    write_nb(repo, '01_b', '# export\nx = 2')
    return ['--all'], ['01_a.ipynb', '01_b.ipynb', 'nb_01.py']


BAD_INPUTS = [bad_missing, bad_json, bad_not_a_notebook, bad_json_list, bad_invalid_notebook,
              bad_syntax, bad_magic, bad_one_of_all, bad_duplicate_modules]


@pytest.mark.parametrize('make_bad', BAD_INPUTS, ids=lambda f: f.__name__)
def test_bad_input_is_one_line_exit_1_and_leaves_modules_untouched(repo, make_bad):
    (repo / 'exp' / 'nb_01.py').write_bytes('OLD = "µ"  # hand-kept\n'.encode('utf-8'))
    args, words = make_bad(repo)
    before = snapshot(repo / 'exp')
    for extra in [[], ['--check']]:
        result = run_cli(repo, *args, *extra)
        assert result.returncode == 1, result
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith('notebook2script: '), result.stderr
        for word in words:
            assert word in lines[0]
        assert 'Traceback' not in result.stderr and 'Usage' not in result.stdout
        assert snapshot(repo / 'exp') == before


@pytest.mark.parametrize('make_bad', BAD_INPUTS, ids=lambda f: f.__name__)
def test_bad_input_raises_export_error_from_functions(repo, make_bad):
    args, words = make_bad(repo)
    export = (lambda: n2s.export_all('nbs')) if args == ['--all'] else \
        (lambda: n2s.export_notebook(args[0]))
    with pytest.raises(ExportError) as info:
        export()
    assert all(word in str(info.value) for word in words)
    assert snapshot(repo / 'exp') == {}


def test_cli_without_notebooks_is_a_usage_error(repo):
    result = run_cli(repo)
    assert result.returncode == 2
    assert result.stderr.startswith('notebook2script: ') and len(result.stderr.splitlines()) == 1


# --- cell text kept byte for byte, whole module compiled ------------------------------------------

@pytest.mark.parametrize('char', ['\u2028', '\u2029', '\x85', '\x0c', '\x1c', '\x0b'])
def test_line_break_like_characters_inside_strings_survive(repo, char):
    nb = write_nb(repo, '01_a', f'# export\nS = "a{char}b"\nT = 1')
    text = n2s.export_notebook(nb).read_text(encoding='utf-8')
    namespace = {}
    exec(compile(text, 'nb_01.py', 'exec'), namespace)
    assert namespace['S'] == f'a{char}b' and namespace['T'] == 1
    assert run_cli(repo, 'nbs/01_a.ipynb', '--check').returncode == 0


def test_future_import_in_first_export_cell_is_fine(repo):
    nb = write_nb(repo, '01_a', '# export\nfrom __future__ import annotations\n'
                                'def f(x: Undefined): return x',
                  '# export\ny = f(2)')
    namespace = {}
    exec(n2s.export_notebook(nb).read_text(encoding='utf-8'), namespace)
    assert namespace['y'] == 2


def test_future_import_in_later_cell_names_cell_line_and_rule(repo):
    (repo / 'exp' / 'nb_01.py').write_text('OLD = 1\n')
    before = snapshot(repo / 'exp')
    write_nb(repo, '01_a', new_markdown_cell('intro'), '# export\nx = 1',
             '# export\n\n"""A docstring may come first."""\nfrom __future__ import annotations')
    with pytest.raises(ExportError) as info:
        n2s.export_notebook(repo / 'nbs' / '01_a.ipynb')
    message = str(info.value)
    # the cell named as every tool names it, and the line counted within the cell
    assert message.startswith('nbs/01_a.ipynb: cell 3 (code cell 2), line 4: ')
    assert '__future__' in message and "first export cell" in message
    for args in [['nbs/01_a.ipynb'], ['nbs/01_a.ipynb', '--check'], ['--all', '--check']]:
        result = run_cli(repo, *args)
        assert result.returncode == 1 and 'cell 3 (code cell 2), line 4' in result.stderr, result
        assert len(result.stderr.splitlines()) == 1
    assert snapshot(repo / 'exp') == before


def test_check_compiles_the_module_it_compares(repo, monkeypatch):
    nb = write_nb(repo, '01_a', '# export\nx = 1', '# export\nfrom __future__ import annotations')
    # a module that already holds exactly this (broken) text must not be called "in sync"
    text = f'{header("01_a")}\n\n\nx = 1\n\n\nfrom __future__ import annotations\n'
    (repo / 'exp' / 'nb_01.py').write_text(text)
    with pytest.raises(ExportError, match=r'cell 2 \(code cell 2\), line 2'):
        n2s.check_notebooks([nb])


# --- the command line: --all takes no value, --check takes paths, a typo runs nothing ----------

def test_all_with_a_path_is_refused(repo):
    write_nb(repo, '00_base', '# export\nx = 1')
    write_nb(repo, '01_a', '# export\ny = 1')
    for args in [['--all', 'nbs/00_base.ipynb'], ['nbs/00_base.ipynb', '--all'],
                 ['--all', 'nbs/00_base.ipynb', '--check']]:
        result = run_cli(repo, *args)
        assert result.returncode == 2, (args, result)
        assert 'not both' in result.stderr and len(result.stderr.splitlines()) == 1
        assert snapshot(repo / 'exp') == {}


def test_mistyped_flag_stops_before_anything_is_written(repo):
    write_nb(repo, '01_a', '# export\ny = 1')
    stale = repo / 'exp' / 'nb_02.py'
    stale.write_text(header('02_gone') + '\nz = 1\n', encoding='utf-8')
    before = snapshot(repo / 'exp')
    for args in [['--all', '--chekc'], ['--all=yes'], ['nbs/01_a.ipynb', '--dset', 'x']]:
        result = run_cli(repo, *args)
        assert result.returncode == 2, (args, result)
        assert len(result.stderr.splitlines()) == 1 and result.stdout == ''
        assert snapshot(repo / 'exp') == before  # no module written, the stale one kept
    assert 'unknown flag --chekc: did you mean --check?' in run_cli(repo, '--all', '--chekc').stderr


def test_check_with_paths_checks_just_those(repo):
    write_nb(repo, '00_base', '# export\nx = 1')
    write_nb(repo, '01_a', '# export\ny = 1')
    run_cli(repo, 'nbs/00_base.ipynb')
    result = run_cli(repo, '--check', 'nbs/00_base.ipynb')  # the path is not --check's value
    assert result.returncode == 0 and 'in sync' in result.stdout, result
    result = run_cli(repo, '--check', 'nbs/01_a.ipynb')
    assert result.returncode == 1 and 'nb_01.py: missing' in result.stderr
    result = run_cli(repo, '--check', 'nbs/00_base.ipynb', 'nbs/01_a.ipynb')
    assert result.returncode == 1
    assert 'nb_01.py' in result.stderr and 'nb_00.py' not in result.stderr
    assert list(snapshot(repo / 'exp')) == ['nb_00.py']


# --- stale modules --------------------------------------------------------------------------------

def test_all_removes_stale_generated_modules_and_leaves_others(repo):
    write_nb(repo, '00_base', '# export\nx = 1')
    gone = write_nb(repo, '01_gone', '# export\ny = 1')
    emptied = write_nb(repo, '02_emptied', '# export\nz = 1')
    n2s.export_all()
    gone.unlink()
    write_nb(repo, '02_emptied', 'z = 1  # no longer exported')
    (repo / 'exp' / '__init__.py').write_text('')
    (repo / 'exp' / 'helpers.py').write_text('HAND = 1\n')
    (repo / 'exp' / 'nb_07.py').write_text('# hand-written, no header\n')

    result = run_cli(repo, '--all', '--check')
    assert result.returncode == 1
    assert 'nb_01.py: orphan' in result.stderr and 'nb_02.py: stale' in result.stderr
    assert '2 problem(s)' in result.stderr and 'run notebook2script.py --all' in result.stderr

    result = run_cli(repo, '--all')
    assert result.returncode == 0, result.stderr
    assert 'removed exp/nb_01.py: generated from nbs/01_gone.ipynb' in result.stdout
    assert 'removed exp/nb_02.py: generated from nbs/02_emptied.ipynb' in result.stdout
    for name in ['helpers.py', 'nb_07.py']:
        assert f'exp/{name}: not generated by notebook2script.py' in result.stderr
    assert '__init__' not in result.stdout + result.stderr
    assert sorted(snapshot(repo / 'exp')) == ['__init__.py', 'helpers.py', 'nb_00.py', 'nb_07.py']
    assert (repo / 'exp' / 'helpers.py').read_text() == 'HAND = 1\n'

    result = run_cli(repo, '--all', '--check')  # the advice no longer loops
    assert result.returncode == 0 and 'in sync' in result.stdout, result
    assert 'nb_07.py: not generated' in result.stderr  # reported, not a failure
    assert emptied.exists()


def test_single_export_never_removes_but_says_stale(repo):
    nb = write_nb(repo, '01_a', '# export\nx = 1')
    n2s.export_notebook(nb)
    write_nb(repo, '01_a', 'x = 1')
    result = run_cli(repo, 'nbs/01_a.ipynb')
    assert result.returncode == 0 and 'stale' in result.stdout and '--all' in result.stdout
    assert (repo / 'exp' / 'nb_01.py').exists()


# --- importable names, the repo's exp/ always -----------------------------------------------------

@pytest.mark.parametrize('name', ['foo bar', '01-matmul', '_hidden', 'é1_x', '01.2_x'])
def test_module_name_must_be_importable(repo, name):
    write_nb(repo, name, '# export\nx = 1')
    with pytest.raises(ExportError) as info:
        n2s.export_notebook(repo / 'nbs' / f'{name}.ipynb')
    assert f'{name}.ipynb' in str(info.value) and 'ASCII letters and digits' in str(info.value)
    for args in [[f'nbs/{name}.ipynb'], ['--all'], ['--all', '--check']]:
        result = run_cli(repo, *args)
        assert result.returncode == 1 and 'ASCII letters and digits' in result.stderr, result
    assert snapshot(repo / 'exp') == {}


def test_notebook_outside_nbs_goes_to_the_repos_exp(repo):
    nb = write_nb(repo, '01_a', '# export\nx = 1')
    moved = nb.rename(repo / '01_a.ipynb')  # at the repo root: once wrote ../exp/
    result = run_cli(repo, '01_a.ipynb')
    assert result.returncode == 0, result.stderr
    assert list(snapshot(repo / 'exp')) == ['nb_01.py']
    assert not (repo.parent / 'exp').exists()
    text = (repo / 'exp' / 'nb_01.py').read_text()
    assert text.startswith('# Generated from 01_a.ipynb by')
    (repo / 'sub' / 'deeper').mkdir(parents=True)
    moved.rename(repo / 'sub' / 'deeper' / '02_b.ipynb')
    assert n2s.export_notebook(repo / 'sub' / 'deeper' / '02_b.ipynb') == repo / 'exp' / 'nb_02.py'


def test_notebook_outside_the_repo_is_refused(repo, tmp_path_factory):
    outside = tmp_path_factory.mktemp('elsewhere') / '01_a.ipynb'
    nbformat.write(new_notebook(cells=[new_code_cell('# export\nx = 1')]), str(outside))
    with pytest.raises(ExportError, match='outside the repo'):
        n2s.export_notebook(outside)
    assert snapshot(repo / 'exp') == {}


# --- one notebook must not overwrite another's module ---------------------------------------------

def test_single_export_refuses_a_sibling_with_the_same_module(repo):
    write_nb(repo, '01_a', '# export\nx = 1')
    write_nb(repo, '01_b', '# export\nx = 2')
    for nb in ['nbs/01_a.ipynb', 'nbs/01_b.ipynb']:
        with pytest.raises(ExportError) as info:
            n2s.export_notebook(nb)
        assert all(w in str(info.value) for w in ['01_a.ipynb', '01_b.ipynb', 'nb_01.py', 'rename'])
        result = run_cli(repo, nb)
        assert result.returncode == 1 and 'both export to' in result.stderr
    assert snapshot(repo / 'exp') == {}


def test_single_export_refuses_to_overwrite_a_module_another_notebook_owns(repo):
    n2s.export_notebook(write_nb(repo, '01_a', '# export\nx = 1'))
    before = snapshot(repo / 'exp')
    other = repo / '01_z.ipynb'  # elsewhere in the repo, same module name
    nbformat.write(new_notebook(cells=[new_code_cell('# export\nx = 2')]), str(other))
    with pytest.raises(ExportError, match='both export to'):
        n2s.export_notebook(other)
    assert snapshot(repo / 'exp') == before
    (repo / 'nbs' / '01_a.ipynb').unlink()  # the owner is gone: taking over is fine
    assert n2s.export_notebook(other) == repo / 'exp' / 'nb_01.py'


# --- nbformat 3 -----------------------------------------------------------------------------------

def test_nbformat_3_notebook_is_exported(repo):
    from nbformat import v3
    cells = [v3.new_text_cell('markdown', source='# Title'),
             v3.new_code_cell(input='# export\nx = 3')]
    old = v3.new_notebook(worksheets=[v3.new_worksheet(cells=cells)])
    (repo / 'nbs' / '01_old.ipynb').write_text(nbformat.writes(old, version=3), encoding='utf-8')
    result = run_cli(repo, 'nbs/01_old.ipynb')
    assert result.returncode == 0, result.stderr
    assert code_of((repo / 'exp' / 'nb_01.py').read_text()) == f'{header("01_old")}\n\n\nx = 3\n'


# --- the generated __all__ -----------------------------------------------------------------------

BINDINGS = '''# export
import os, sys as system, torch
import torch.nn.functional as F
import matplotlib.pyplot as plt
from pathlib import Path
from functools import partial as _partial, reduce as fold
from typing import *
x = 1
a, (b, *rest) = 1, (2, 3)
p = q = 4
obj = type('O', (), {})()
obj.attr = 5
_private = 6
n: int = 7
declared_only: int
def f(): pass
async def g(): pass
class K: pass
if True:
    taken = 1
else:
    not_taken = 2
try:
    import math
except ImportError:
    fallback = None
for loop_var in range(2):
    pass
x = 8
temp = 9
del temp'''


def test_all_lists_public_bindings_in_order_once(repo):
    text = n2s.export_notebook(write_nb(repo, '01_a', BINDINGS)).read_text()
    namespace = {}
    exec(text, namespace)
    assert namespace['__all__'] == ['torch', 'F', 'plt', 'Path', 'fold', 'x', 'a', 'b', 'rest', 'p',
                                    'q', 'obj', 'n', 'f', 'g', 'K', 'taken', 'math']
    # a name bound only in a branch not taken is listed but filtered out when the module runs
    assert "'not_taken'" in text and "'fallback'" in text


def test_assigning_all_by_hand_is_refused(repo):
    write_nb(repo, '01_a', '# export\n__all__ = ["x"]\nx = 1')
    with pytest.raises(ExportError, match=r'cell 1 \(code cell 1\) assigns __all__'):
        n2s.export_notebook(repo / 'nbs' / '01_a.ipynb')


def test_star_import_chain_gives_teaching_names_only(repo):
    (repo / 'exp' / '__init__.py').write_text('')
    write_nb(repo, '00_base', '# export\nimport os, math\nfrom functools import partial\n'
                              'def _helper(): return os.sep\ndef base(): return _helper()')
    write_nb(repo, '01_a', '# export\nfrom exp.nb_00 import *\nimport re\nimport torch.nn as nn\n'
                           'def base(): return "redefined on purpose"\ndef more(): return partial',
             '# export\nfrom exp.nb_01 import *  # a self-import, not a previous module\nLAST = 1')
    n2s.export_all()
    probe = ('import types\nfrom exp.nb_01 import *\n'
             'print(sorted(k for k in dir() if not k.startswith("__")))\n'
             'print(base(), more().__name__)')
    result = subprocess.run([sys.executable, '-c', probe], cwd=repo, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    names, call = result.stdout.splitlines()
    assert eval(names) == sorted(['types', 'math', 'partial', 'base', 'nn', 'more', 'LAST'])
    assert call == 'redefined on purpose partial'
    text = (repo / 'exp' / 'nb_01.py').read_text()
    assert 'from exp.nb_00 import __all__ as _all_nb_00' in text


def test_generated_all_is_deterministic(repo, tmp_path_factory):
    write_nb(repo, '01_a', BINDINGS)
    first = n2s.export_notebook(repo / 'nbs' / '01_a.ipynb').read_bytes()
    (repo / 'exp' / 'nb_01.py').unlink()
    assert n2s.export_notebook(repo / 'nbs' / '01_a.ipynb').read_bytes() == first


def test_a_module_with_the_old_one_line_header_is_still_ours(repo):
    """Modules written before the header took two lines are replaced by --all, not left alone."""
    write_nb(repo, '01_a', '# export\nx = 2')
    old = ('# Generated from nbs/01_a.ipynb by notebook2script.py: '
           'edit the notebook, not this file.\n\n\nx = 1\n')
    (repo / 'exp' / 'nb_01.py').write_text(old, encoding='utf-8')
    assert n2s.generated_from(repo / 'exp' / 'nb_01.py') == 'nbs/01_a.ipynb'
    result = run_cli(repo, '--all')
    assert result.returncode == 0, result.stderr
    assert code_of((repo / 'exp' / 'nb_01.py').read_text()) == f'{header("01_a")}\n\n\nx = 2\n'
