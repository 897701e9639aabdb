"""Write the book's Sphinx source (book/_build/src) from the committed notebooks and the README.

    python book/make_pages.py --mathjax .venv/book/npm/node_modules/mathjax/es5

`make book` runs it with the project's .venv (it imports exp/ to tell names built here from names
imported), then sphinx-build with the book's own tools. Nothing tracked is written: everything
goes under book/_build, and a file is rewritten only when its text changes, so Sphinx rebuilds
only the pages whose source changed.

What it writes:
- one copy of each notebook, in the order of the README's path table (notebooks the table does
  not list come after, by name), with an empty markdown cell holding a MyST target, e.g.
  `(cell-06-12)=`, before every `# export` cell: the anchor the name index links to (cell 12 of
  06, counted from 1 over all cells as every tool names cells); inline math that wraps over
  lines is put on one line (see math_on_one_line);
- index.md, the landing page: the README's opening paragraph and its "The path" section, with
  each notebook in the table linked to its page, and the toctrees that make the sidebar;
- names.md, the index of exported names: each name in the last module's `__all__` that an export
  cell builds (by def, class or assignment; modules and names imported from elsewhere left out),
  linked to the cells that build it, with the tests/ files that mention it;
- mathjax/: MathJax's es5 folder, copied from npm's package, which the pages load (no CDN).
"""
import ast
import importlib
import inspect
import json
import re
import shutil
import sys
import types
from pathlib import Path

import nbformat

from nbio import REPO, ToolError, cell_name, notebooks, read_notebook, run_cli
from notebook2script import bindings, cell_lines, export_chunk, module_name

BUILD = REPO / 'book' / '_build'
PATH_ROW = re.compile(r'\|\s*`([^`|]+)`\s*\|(.*)\|\s*$')  # | `06_cnn_hooks_init` | what ... |


def write_if_changed(path, text):
    """Write `text` to `path` unless it already holds it; True when written."""
    path = Path(path)
    if path.exists() and path.read_text(encoding='utf-8') == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding='utf-8')
    return True


# --- the README -------------------------------------------------------------------------------

def readme_parts(readme):
    """(title, opening paragraph, 'The path' section without its heading) of the README text."""
    lines = readme.splitlines()
    if not lines or not lines[0].startswith('# '):
        raise ToolError('README.md: the first line is not a `# title`')
    try:
        start = lines.index('## The path')
    except ValueError:
        raise ToolError('README.md: no "## The path" section for the landing page') from None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith('## ')),
               len(lines))
    first_heading = next(i for i in range(1, len(lines)) if lines[i].startswith('#'))
    opening = '\n'.join(lines[1:first_heading]).strip()
    return lines[0][2:].strip(), opening, lines[start + 1:end]


def road_order(section, nb_paths):
    """The notebooks in the order the path table lists them; those it leaves out after, by name."""
    by_stem = {p.stem: p for p in nb_paths}
    listed = [m.group(1) for m in map(PATH_ROW.match, section) if m and m.group(1) in by_stem]
    if not listed:
        raise ToolError('README.md: the path table names none of the notebooks in nbs/')
    return [by_stem[s] for s in listed] + [p for p in nb_paths if p.stem not in listed]


def landing_page(title, opening, section, order):
    """index.md: the README's opening and path section, each notebook linked to its page."""
    stems = {p.stem for p in order}

    def link(line):
        m = PATH_ROW.match(line)
        if not m or m.group(1) not in stems:
            return line
        return f'| [`{m.group(1)}`]({m.group(1)}.ipynb) |{m.group(2)}|'

    body = '\n'.join(link(line) for line in section).strip()
    in_table = {m.group(1) for m in map(PATH_ROW.match, section) if m}
    left_out = [p.stem for p in order if p.stem not in in_table]
    extra = ''
    if left_out:
        extra = ('\n\nNot in the table yet: ' + ', '.join(f'[`{s}`]({s}.ipynb)' for s in left_out)
                 + '.')
    toc = '\n'.join(p.stem for p in order)
    return (f'# {title}\n\n{opening}\n\n## The path\n\n{body}{extra}\n\n'
            'Every name the notebooks export, with the cell that builds it: '
            '[the index of exported names](names.md).\n\n'
            f'```{{toctree}}\n:hidden:\n:caption: The path\n\n{toc}\n```\n\n'
            '```{toctree}\n:hidden:\n:caption: Reference\n\nnames\n```\n')


# --- where each name is built -----------------------------------------------------------------

def anchor(nb_path, index):
    """The MyST target of cell `index` (from 0) of a notebook: 'cell-06-12' for 06's 12th cell."""
    return f'cell-{module_name(nb_path)[3:].lower()}-{index + 1}'


def export_cells(nb_path, nb):
    """(cell index, names the cell builds) for each export cell: names bound by def, class or
    assignment at module level (imports left out: a name imported is not built here)."""
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != 'code':
            continue
        chunk = export_chunk(cell_name(nb, index), cell_lines(cell))
        if chunk is None:
            continue
        stmts = [s for s in ast.parse(chunk.code).body
                 if not isinstance(s, (ast.Import, ast.ImportFrom))]
        names = [v for kind, v in bindings(stmts) if kind == 'name' and not v.startswith('_')]
        found.append((index, list(dict.fromkeys(names))))
    return found


def built_here(obj):
    """False for a module, or a function or class whose home is not an exp/ module."""
    if isinstance(obj, types.ModuleType):
        return False
    if inspect.isclass(obj) or inspect.isroutine(obj):
        return str(getattr(obj, '__module__', '')).startswith('exp.')
    return True  # a value an export cell assigned (a constant, an instance)


def mentioned_in_tests(names, tests):
    """{name: [tests/ files that mention the name]}: as a word, not as an attribute (`learn.fit`
    is not the function `fit`), in code, comments or strings alike."""
    texts = {p.name: p.read_text(encoding='utf-8') for p in sorted(tests.glob('*.py'))}
    return {n: [f for f, t in texts.items() if re.search(rf'(?<![\w.]){re.escape(n)}(?!\w)', t)]
            for n in names}


def names_page(module, names, left_out, built, mentions):
    """names.md: one row per name, grouped by first letter."""
    rows = {}
    for name in sorted(names, key=lambda n: (n.lower(), n)):
        where = ' · '.join(f'{{ref}}`{nb.stem}, cell {i + 1} <{anchor(nb, i)}>`'
                           for nb, i in built[name])
        tests = ', '.join(f'`{f}`' for f in mentions[name]) or '–'
        rows.setdefault(name[0].upper(), []).append(f'| `{name}` | {where} | {tests} |')
    shown = ', '.join(f'`{n}`' for n in left_out)
    head = (f'# Exported names\n\n'
            f'The {len(names)} names `from exp.{module} import *` gives that an export cell of a '
            'notebook builds, each linked to that cell. Where several cells build a name, each is '
            'listed in the order of the road, and the last is the one `exp` holds. The tests that '
            'mention a name are the files in `tests/` that use it.\n\n'
            f'Left out, as modules or names a notebook imports and does not build: {shown}.\n')
    parts = [head]
    for letter, lines in rows.items():
        parts.append(f'## {letter}\n\n| name | built in | tests that mention it |\n'
                     '| --- | --- | --- |\n' + '\n'.join(lines) + '\n')
    return '\n'.join(parts)


# --- writing the source -----------------------------------------------------------------------

# Code (fenced blocks and inline spans) is left alone; inline math is a single $ on each side.
CODE = re.compile(r'(```.*?```|~~~.*?~~~|`[^`\n]*`)', re.S)
INLINE_MATH = re.compile(r'(?<![$\\])\$(?!\$)([^$]+?)(?<![$\\])\$(?!\$)')


def math_on_one_line(text):
    """Markdown with the line breaks inside each inline `$...$` made spaces. Jupyter takes the
    math out before it reads the markdown; MyST reads the markdown first, so a wrapped formula
    whose next line starts with `+ ` (or `- `, `1. `) would become a list item and the math text.
    A space is what TeX makes of a line break anyway."""
    def join(part):
        return INLINE_MATH.sub(lambda m: m.group(0) if '\n\n' in m.group(1)
                               else m.group(0).replace('\n', ' '), part)
    pieces = CODE.split(text)
    return ''.join(p if i % 2 else join(p) for i, p in enumerate(pieces))


def book_copy(nb_path, nb, cells):
    """The notebook's text for the book (a copy: nbs/ untouched): an anchor cell before each
    export cell, and each markdown cell's inline math on one line."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    for cell in nb.cells:
        if cell.cell_type == 'markdown':
            cell.source = math_on_one_line(cell.source)
    for index, _ in reversed(cells):
        target = nbformat.from_dict({'cell_type': 'markdown', 'id': f'book-anchor-{index + 1}',
                                     'metadata': {}, 'source': f'({anchor(nb_path, index)})='})
        nb.cells.insert(index, target)
    return nbformat.writes(nb) + '\n'


def copy_mathjax(es5, dest):
    """Copy MathJax's es5 folder to dest/mathjax, unless the same version is already there."""
    es5 = Path(es5)
    if not (es5 / 'tex-chtml.js').is_file():
        raise ToolError(f'{es5}: no tex-chtml.js here; is npm\'s mathjax package installed '
                        '(make book installs it)?')
    version = json.loads((es5.parent / 'package.json').read_text())['version']
    stamp = dest / 'mathjax' / '.version'
    if stamp.is_file() and stamp.read_text() == version:
        return
    shutil.rmtree(dest / 'mathjax', ignore_errors=True)
    shutil.copytree(es5, dest / 'mathjax')
    stamp.write_text(version)


def main(mathjax, out=str(BUILD)):
    """Write the book's source into OUT/src and MathJax into OUT/static/mathjax."""
    out = Path(out)
    src = out / 'src'
    title, opening, section = readme_parts((REPO / 'README.md').read_text(encoding='utf-8'))
    order = road_order(section, notebooks())
    wanted = {'index.md', 'names.md'}
    built = {}
    for path in order:
        nb = read_notebook(path)
        cells = export_cells(path, nb)
        for index, names in cells:
            for name in names:
                built.setdefault(name, []).append((path, index))
        write_if_changed(src / path.name, book_copy(path, nb, cells))
        wanted.add(path.name)
    last = next(module_name(p) for p in reversed(order) if (REPO / 'exp' /
                                                            f'{module_name(p)}.py').is_file())
    sys.dont_write_bytecode = True
    exp = importlib.import_module(f'exp.{last}')
    names = [n for n in exp.__all__ if n in built and built_here(getattr(exp, n))]
    left_out = [n for n in exp.__all__ if n not in names]
    mentions = mentioned_in_tests(names, REPO / 'tests')
    write_if_changed(src / 'index.md', landing_page(title, opening, section, order))
    write_if_changed(src / 'names.md',
                     names_page(last, names, left_out, built, mentions))
    for stale in src.glob('*'):  # a notebook renamed or removed since the last build
        if stale.is_file() and stale.name not in wanted:
            stale.unlink()
    copy_mathjax(mathjax, out / 'static')
    print(f'make_pages: {len(order)} notebooks, {len(names)} exported names '
          f'({len(left_out)} left out), source in {src.relative_to(REPO)}')


if __name__ == '__main__':
    run_cli(main)
