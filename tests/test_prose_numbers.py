"""Tests for prose_numbers.py: decimal numbers in markdown must come from the notebook's own run."""
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

import nbio
import prose_numbers as pn
from nbio import ToolError

ROOT = Path(__file__).resolve().parents[1]


def printed(source, text):
    "A code cell that printed `text`."
    return new_code_cell(source, outputs=[new_output('stream', name='stdout', text=text)])


def result(source, data):
    "A code cell whose result has the mime bundle `data`."
    output = new_output('execute_result', data=data, execution_count=1)
    return new_code_cell(source, outputs=[output])


def write(tmp_path, *cells, name='05_x.ipynb'):
    path = tmp_path / name
    nbformat.write(new_notebook(cells=list(cells)), str(path))
    return path


def missed(tmp_path, *cells):
    "The quoted tokens the check reports for a notebook made of `cells`."
    return [line.split('): ')[1].split()[0] for line in pn.misses(write(tmp_path, *cells))]


def test_todays_05_anneal_problem_fails(tmp_path):
    "05_anneal quoted 0.9580 for seed 0 while its refreshed output printed 0.9582."
    path = write(tmp_path,
                 printed('print(f"{acc_1cycle:.4f} {acc_const:.4f}")', '0.9582 0.9548\n'),
                 new_markdown_cell('Seed 0 is one where the two ended close (0.9580 and 0.9568).'))
    lines = pn.misses(path)
    assert [line.split(': ', 1)[1] for line in lines] == [
        f"cell 2 (markdown): {n} matches no number in the notebook's code or outputs "
        "(print it from the run, or cut it)" for n in ['0.9580', '0.9568']]
    assert all(line.startswith(f'{path}: ') or line.startswith('05_x.ipynb') for line in lines)
    proc = subprocess.run([sys.executable, str(ROOT / 'prose_numbers.py'), str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[0].endswith(
        "cell 2 (markdown): 0.9580 matches no number in the notebook's code or outputs (print it "
        'from the run, or cut it)')
    assert proc.stderr == \
        'prose_numbers: 2 number(s) quoted in markdown that the run does not show\n'


def test_rounded_truncated_and_percent_forms_match(tmp_path):
    md = new_markdown_cell('It reached 0.9582 (0.958 to three places; 0.95 truncated), '
                           'that is 95.8% or 95.82%, 0.9583 rounded up? no.')
    assert missed(tmp_path, printed('print(acc)', 'accuracy 0.95823\n'), md) == ['0.9583']


def test_rounding_up_and_equal_values_with_trailing_zeros(tmp_path):
    md = new_markdown_cell('0.9586, 0.9585 (truncated), 0.50 and 0.500; not 0.9587')
    assert missed(tmp_path, printed('print(x)', '0.95856 and 0.5\n'), md) == ['0.9587']


def test_points_are_percentage_points_and_sign_is_ignored(tmp_path):
    md = new_markdown_cell('One-cycle was ahead by up to 3.05 points (3.1 percentage points); '
                           'the loss fell by 0.0305, not 3.3 points.')
    assert missed(tmp_path, printed('print(diff)', 'mean gain -0.0305\n'), md) == ['3.3']


def test_numbers_in_code_sources_count(tmp_path):
    assert missed(tmp_path, new_code_cell('learn = fit(lr=0.4, mom=0.9)'),
                  new_markdown_cell('We train at `lr=0.4` with momentum $\\beta = 0.9$, '
                                    'not $\\beta = 0.95$.')) == ['0.95']


@pytest.mark.parametrize('mime', ['text/plain', 'text/markdown', 'text/html', 'text/latex'])
def test_every_text_output_kind_counts(tmp_path, mime):
    assert missed(tmp_path, result('summary()', {mime: '<td>0.1234</td>'}),
                  new_markdown_cell('Loss 0.1234.')) == []


def test_images_and_other_cells_do_not_count(tmp_path):
    cells = [result('plot()', {'image/png': 'iVBORw0.1234', 'text/plain': '<Figure>'}),
             new_markdown_cell('Earlier prose says 0.777.'),
             nbformat.v4.new_raw_cell('raw 0.1234'),
             new_markdown_cell('Loss 0.1234 and 0.777.')]
    assert missed(tmp_path, *cells) == ['0.777', '0.1234', '0.777']


def test_skips_arxiv_ids_versions_urls_and_references(tmp_path):
    md = ('He et al. 2015, arXiv:1502.01852v1 (also 1502.01852 and '
          '[the paper](https://arxiv.org/abs/1502.01852)); see <https://example.com/v1.5/page> '
          'and https://x.org/a/2.5; torch 2.13.0 and numpy 1.26.4; '
          'Python 3.11+, section 3.3, eq. 4.2, Figure 2.1, table 1.2, § 5.1.')
    assert missed(tmp_path, new_code_cell('x = 1'), new_markdown_cell(md)) == []


def test_what_counts_as_a_quoted_number(tmp_path):
    md = ('Integers like 7 of 8 and 2015 are not checked; nb_05.1 and v1.5 are names. '
          'Checked: 12.3s, 3.5ms, 1.5x, 2.5e-4, 1,234.5, 0.25.')
    assert missed(tmp_path, new_code_cell('x = 1'), new_markdown_cell(md)) == \
        ['12.3', '3.5', '1.5', '2.5e-4', '1,234.5', '0.25']
    shown = printed('show()', '12.31 s, 3.49 ms, 1.46x, 0.00025, 1234.5, 1/4=0.25\n')
    assert missed(tmp_path, shown, new_markdown_cell(md)) == []


def test_cells_are_numbered_among_all_cells_from_one(tmp_path):
    path = write(tmp_path, new_markdown_cell('# Title'), new_code_cell('x = 1'),
                 new_markdown_cell('0.5'), new_markdown_cell('fine'),
                 new_markdown_cell('also 0.75'))
    assert [line.split(': ')[1] for line in pn.misses(path)] == \
        ['cell 3 (markdown)', 'cell 5 (markdown)']


def test_main_passes_clean_notebooks_and_reports_bad_files(tmp_path, capsys):
    good = write(tmp_path, printed('print(0.5)', '0.5\n'), new_markdown_cell('Half: 0.5.'),
                 name='a.ipynb')
    bad = tmp_path / 'b.ipynb'
    bad.write_text('{not json')
    pn.main(str(good))
    assert 'every decimal number quoted in 1 notebook(s)' in capsys.readouterr().out
    with pytest.raises(ToolError, match='1 number'):
        pn.main(str(good), str(bad))
    assert capsys.readouterr().out == f'{bad}: not valid JSON (line 1: Expecting property name ' \
        'enclosed in double quotes)\n'


def test_cli_refuses_a_flag_it_does_not_have(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / 'prose_numbers.py'), '--al'],
                          capture_output=True, text=True)
    assert (proc.returncode, proc.stdout) == (2, '')
    assert proc.stderr == 'prose_numbers: unknown flag --al: this command takes no flags\n'


def test_real_notebooks_quote_only_numbers_from_their_runs():
    "Fails while a notebook's prose quotes a figure its outputs do not show."
    notebooks = nbio.notebooks(ROOT / 'nbs')
    start = time.perf_counter()
    problems = pn.problems(notebooks)
    seconds = time.perf_counter() - start
    assert not problems, '\n'.join(problems)
    print(f'checked {len(notebooks)} notebooks in {seconds:.2f} s')
