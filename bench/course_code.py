"""How much of the course's own code runs against exp: its notebooks typed along, cell by cell.

    .venv/bin/python bench/course_code.py [--notebooks 06,07,07a] [--course DIR]
                                          [--n-train 2000] [--n-valid 500] [--threads 1]

The course's notebooks (fastai/course-v3, nbs/dl2) are not part of this project and are not in
the repository: get a local copy first, e.g.
    git clone https://github.com/fastai/course-v3 ~/.cache/dl-foundations/course-v3
`--course` names the clone or its nbs/dl2 folder (default: that cache folder).

How a learner types a course notebook `NN` along (one namespace per notebook):
- first `from exp.nb_NN import *`, then every code cell in order;
- a cell whose first line is `#export` (or `# export`) is not typed: exp.nb_NN holds its
  definitions. The names it binds at its top level (def, class, assignment, import) are bound
  again to what `from exp.nb_NN import *` gives, so a later cell sees exp's version and not an
  earlier course cell's draft of the same name. A name exp does not give is listed as missing;
- IPython's Jupyter set-up lines (`%matplotlib`, `%load_ext`, `%autoreload`) and shell lines
  (`!python notebook2script.py ...`) are dropped; `%time` and `%timeit` run their statement once;
- a cell's last expression is shown with `repr`, as Jupyter's display does; figures are drawn
  with matplotlib's Agg backend and closed after each cell.
How cells are counted: a code cell counts when it is not `#export` and some Python is left after
the lines above are dropped (a cell of only set-up or shell lines, and an empty cell, do not
count). It runs when it raises no exception; one that raises counts as failed, whatever the
reason, CUDA included (this machine has none), and so does a later cell that fails only because
of it. Each failure is printed with the cell's first line of code and the error. The namespace
keeps whatever a failing cell bound before it raised, as in Jupyter.
Small data: `get_data` is wrapped to return the first `n_train` training and `n_valid` validation
images (0: all), so the course's training cells (31 epochs in 06, 26 in 07, two of them at batch
size 2, 4 in 07a) take about a minute in all on one thread. Cells' output and warnings are
hidden.
The data size can change the count: on all 50,000 images (`--n-train 0 --n-valid 0`, 16.5 min on
one thread of a busy 2-core machine) the course's LayerNorm run in 07 (code cell 24) diverges, as
its saved output shows it did in the course (loss nan), and 04's NaN guard stops it with an error:
one cell fewer than on the default slices.

The last line gives cells run / cells counted over the notebooks together.
"""
import ast
import contextlib
import io
import re
import warnings
from pathlib import Path

from nbio import UsageError, cell_name, read_notebook, run_cli
from timing import clock, set_threads

# the course's notebook for each chapter, and the exp module a learner imports in its place
COURSE = {'06': '06_cuda_cnn_hooks_init.ipynb', '07': '07_batchnorm.ipynb',
          '07a': '07a_lsuv.ipynb'}
SETUP_MAGICS = ('matplotlib', 'load_ext', 'reload_ext', 'autoreload')
EXPORT = re.compile(r'\s*#\s*export\b')


def default_course_dir():
    from exp.nb_00a import cache_dir
    return cache_dir() / 'course-v3'


def notebooks_dir(course):
    "The folder holding the course's dl2 notebooks: `course` itself or its nbs/dl2."
    course = Path(course).expanduser()
    for d in (course / 'nbs' / 'dl2', course):
        if (d / COURSE['06']).exists(): return d
    raise UsageError(f"no copy of the course's notebooks in {course} (want nbs/dl2/{COURSE['06']} "
                     'there): git clone https://github.com/fastai/course-v3 into it')


def python_of(src):
    """The Python a learner runs for a cell's source: Jupyter set-up and shell lines dropped,
    `%time stmt`/`%timeit stmt` as `stmt`, a `%%time` first line dropped."""
    lines = []
    for line in src.splitlines():
        s = line.strip()
        if s.startswith('!') or s.startswith('%%'): continue
        m = re.match(r'%(time|timeit)\s+(.*)', s)
        if m: line = line[:len(line) - len(line.lstrip())] + m.group(2)
        elif s.startswith('%'):
            if s[1:].split()[0] in SETUP_MAGICS: continue
        lines.append(line)
    return '\n'.join(lines)


def has_code(py):
    "Whether `py` holds a statement (not only blank and comment lines)."
    return any(line.strip() and not line.strip().startswith('#') for line in py.splitlines())


def bound_names(src):
    "The names a cell binds at its top level: def, class, plain assignment, import ... as."
    names = []
    for node in ast.parse(python_of(src)).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)): names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                names += [n.id for n in ast.walk(t) if isinstance(n, ast.Name)]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names += [(a.asname or a.name).split('.')[0] for a in node.names if a.name != '*']
    return names


def run_cell(py, ns):
    "Run `py` in `ns` as Jupyter does: the last expression, if any, shown with repr."
    tree = ast.parse(py)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, '<cell>', 'exec'), ns)
    if last is not None: repr(eval(compile(ast.Expression(last.value), '<cell>', 'eval'), ns))


def first_line(py):
    "The first line of `py` that is code (not blank, not a comment)."
    return next(line.strip() for line in py.splitlines()
                if line.strip() and not line.strip().startswith('#'))


def error_line(e, width=90):
    msg = f'{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ""}'
    return msg if len(msg) <= width else msg[:width - 3] + '...'


def small_get_data(get_data, n_train, n_valid):
    "`get_data` returning the first n_train training and n_valid validation images (0: all)."
    def get_small(*args, **kwargs):
        x_train, y_train, x_valid, y_valid, *rest = get_data(*args, **kwargs)
        tr, va = slice(n_train or None), slice(n_valid or None)
        return (x_train[tr], y_train[tr], x_valid[va], y_valid[va], *rest)
    return get_small


def type_along(path, chapter, n_train, n_valid):
    """Type the course's notebook at `path` along against exp.nb_`chapter`.
    Returns (cells counted, failures as (cell name, first line, error), exp names missing)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    nb = read_notebook(path)
    star = {}
    exec(f'from exp.nb_{chapter} import *', star)
    star.pop('__builtins__')
    ns = {'__name__': '__main__', **star}
    ns['get_data'] = small_get_data(star['get_data'], n_train, n_valid)
    counted, failed, missing = 0, [], []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != 'code': continue
        if EXPORT.match(cell.source):
            for name in bound_names(cell.source):
                if name in star: ns[name] = star[name]
                else: missing.append(name)
            continue
        py = python_of(cell.source)
        if not has_code(py): continue
        counted += 1
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), \
                 warnings.catch_warnings():
                warnings.simplefilter('ignore')
                run_cell(py, ns)
        except Exception as e:
            failed.append((cell_name(nb, i), first_line(py), error_line(e)))
        finally:
            plt.close('all')
    return counted, failed, missing


def main(notebooks='06,07,07a', course=None, n_train=2000, n_valid=500, threads=1):
    """Type the course's notebooks `notebooks` (comma-separated chapters) along against exp and
    print, for each, the cells that ran out of those counted, and each failing cell."""
    chapters = notebooks.split(',') if isinstance(notebooks, str) else [str(n) for n in notebooks]
    unknown = [c for c in chapters if c not in COURSE]
    if unknown: raise UsageError(f'notebooks must be among {", ".join(COURSE)}, got {unknown}')
    for flag, n in (('n_train', n_train), ('n_valid', n_valid)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise UsageError(f'{flag} must be a whole number >= 0 (0: all), got {n!r}')
    folder = notebooks_dir(default_course_dir() if course is None else course)
    n_threads = set_threads(threads)
    print(f'course notebooks from {folder}; {n_threads} torch thread(s); '
          f'{n_train or "all"} training and {n_valid or "all"} validation images')
    total_run = total = 0
    for ch in chapters:
        with clock() as t:
            counted, failed, missing = type_along(folder / COURSE[ch], ch, n_train, n_valid)
        ran = counted - len(failed)
        total_run, total = total_run + ran, total + counted
        print(f'{COURSE[ch]} against exp.nb_{ch}: {ran}/{counted} cells run '
              f'({ran / counted:.0%}, {t.wall:.0f} s)', flush=True)
        for name, line, err in failed: print(f'  {name}: {line[:60]}\n      {err}')
        if missing: print(f'  #export names exp.nb_{ch} does not give: {", ".join(missing)}')
    print(f'together: {total_run}/{total} cells run ({total_run / total:.1%})')


if __name__ == '__main__':
    run_cli(main)
