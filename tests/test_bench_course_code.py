"""bench/course_code.py: how it types a course notebook along against exp, and how it counts."""
import importlib
import sys
from pathlib import Path

import nbformat
import pytest

from nbio import UsageError

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO / 'bench'))   # as `python bench/course_code.py` finds its harness
course_code = importlib.import_module('course_code')


def test_python_of_drops_jupyter_set_up_and_shell_lines():
    src = ('%load_ext autoreload\n%autoreload 2\n\n%matplotlib inline\n'
           '!python notebook2script.py 06.ipynb\n%time run.fit(1, learn)\n    %timeit f(x)')
    py = course_code.python_of(src)
    assert py.split('\n') == ['', 'run.fit(1, learn)', '    f(x)']
    assert not course_code.has_code(course_code.python_of('%matplotlib inline\n# a comment\n'))


def test_bound_names_of_an_export_cell():
    src = ('#export\nfrom exp.nb_05b import *\nfrom torch.nn import init\nimport os.path\n'
           'def f(): pass\nclass C: pass\na, (b, c) = 1, (2, 3)\nx: int = 0\nf()')
    assert course_code.bound_names(src) == ['init', 'os', 'f', 'C', 'a', 'b', 'c', 'x']


def course_like(tmp_path, sources):
    "A notebook of code cells `sources` (plus a markdown cell first), written to tmp_path."
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell('# a course notebook')]
    nb.cells += [nbformat.v4.new_code_cell(s) for s in sources]
    path = tmp_path / 'course.ipynb'
    nbformat.write(nb, str(path))
    return path


def test_type_along_counts_and_rebinds_export_cells(tmp_path):
    path = course_like(tmp_path, [
        '%matplotlib inline',                                   # set-up only: not counted
        '#export\nfrom exp.nb_05b import *',                    # export: not counted
        'def normalize_to(a, b): return "draft"',               # a course draft: runs
        '#export\ndef normalize_to(t, v): pass\ndef not_in_exp(): pass',
        'assert normalize_to.__module__ == "exp.nb_06"',        # exp's version, not the draft
        'not_in_exp()',                                         # exp does not give it: fails
        '# the cause\n1/0',
        'class Bad:\n    def __repr__(self): raise RuntimeError("no repr")\nBad()',
        '',                                                     # empty: not counted
    ])
    counted, failed, missing = course_code.type_along(path, '06', 10, 10)
    assert counted == 5 and missing == ['not_in_exp']
    assert [(name, line) for name, line, _ in failed] == [
        ('cell 7 (code cell 6)', 'not_in_exp()'), ('cell 8 (code cell 7)', '1/0'),
        ('cell 9 (code cell 8)', 'class Bad:')]
    assert [err.split(':')[0] for *_, err in failed] == [
        'NameError', 'ZeroDivisionError', 'RuntimeError']   # the last expression's repr, shown


def test_small_get_data_keeps_the_first_images():
    import torch
    def get_data(): return torch.arange(10), torch.arange(10), torch.arange(5), torch.arange(5)
    assert [len(t) for t in course_code.small_get_data(get_data, 3, 2)()] == [3, 3, 2, 2]
    assert [len(t) for t in course_code.small_get_data(get_data, 0, 0)()] == [10, 10, 5, 5]


def test_main_refuses_what_it_cannot_run(tmp_path):
    with pytest.raises(UsageError, match="notebooks must be among 06, 07, 07a, got.*'08'"):
        course_code.main(notebooks='06,08', course=tmp_path)
    with pytest.raises(UsageError, match='n_train must be a whole number >= 0'):
        course_code.main(n_train=-1, course=tmp_path)
    with pytest.raises(UsageError, match="no copy of the course's notebooks in .*git clone"):
        course_code.main(course=tmp_path)


COURSE_DIR = course_code.default_course_dir()
HAVE_COURSE = (COURSE_DIR / 'nbs' / 'dl2' / course_code.COURSE['06']).exists()


@pytest.mark.skipif(not HAVE_COURSE, reason=f"no local copy of the course's notebooks in "
                    f"{COURSE_DIR} (git clone https://github.com/fastai/course-v3 there)")
def test_the_courses_06_07_07a_run_at_least_90_percent(capsys):
    "The goal: the course's own 06, 07 and 07a code, typed along against exp, runs >= 90%."
    course_code.main(n_train=512, n_valid=256)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    ran, total = map(int, last.split()[1].split('/'))
    assert ran / total >= 0.9, last
