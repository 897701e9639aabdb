"""Export the `# export` cells of the notebooks into modules in the repo's exp/.

    python notebook2script.py nbs/01_matmul.ipynb   # writes exp/nb_01.py
    python notebook2script.py --all           # every notebook in nbs/; removes stale modules
    python notebook2script.py --all --check   # write nothing; exit 1 if exp/ is out of sync
    python notebook2script.py --check nbs/01_matmul.ipynb   # check just these notebooks

Cells. A cell is exported when its first line is the marker `# export` (any case, spaces allowed;
`#exports` and `# export foo` are not markers). The marker line and blank lines after it are
dropped; the rest is kept as written (only line ends become '\\n'). Messages name cells as every
tool does ('cell 7 (code cell 4)': see nbio.cell_name); line numbers in them count the marker line.

Where. The repo is the folder holding this script (`--root` changes it); modules always go to the
repo's exp/ (`--dest`), whatever folder the notebook is in, and `--all` reads the repo's nbs/
(`--nbs`). A module is named after the notebook's prefix before the first underscore:
07a_lsuv.ipynb -> exp/nb_07a.py. The prefix must be ASCII letters and digits, so that the module
can be imported; a notebook outside the repo, or two notebooks sharing a module, are refused.

Checks. The whole module is compiled before anything is written (and by --check): a failure names
the notebook, the cell and the line. `from __future__` imports may go only at the top of a
notebook's first export cell. Every notebook is checked before anything is written, so a bad run
leaves exp/ untouched; bad input is a one-line error and exit status 1. A command line that makes
no sense (an unknown flag, paths with --all) is refused before anything is read: exit status 2.

__all__. Every module ends with a generated `__all__`: the `__all__` of each module it
star-imports (`from exp.nb_04 import *`), then the public names (no leading underscore) that its
export cells bind at top level by def, class, assignment or `from m import name`. A plain
`import m` is not exported, except the lesson modules in LESSON_MODULES. So
`from exp.nb_05 import *` gives the teaching names only.

Stale modules. A module this script generated carries a first-line header naming its notebook.
`--all` removes generated modules that no notebook exports any more (notebook deleted or without
export cells) and says so; a file in exp/ without the header is never touched, only reported.
"""
import ast
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from nbio import REPO, NotebookError, ToolError, UsageError, atomic_write, cell_name, notebooks
from nbio import read_notebook, run_cli
from nbio import show_path as show

ROOT = REPO  # the repo whose exp/ is written (tests point it elsewhere)
MARKER = re.compile(r'\s*#\s*export\s*', re.IGNORECASE)
HEADER = '# Generated from {} by notebook2script.py:\n# edit the notebook, not this file.'
# The first line names the notebook. Modules written before the header took two lines had the
# second line's words on the first: they are recognised too, so --all replaces them.
HEADER_RE = re.compile(r'# Generated from (.+) by notebook2script\.py:'
                       r'(?: edit the notebook, not this file\.)?')
PREFIX_RULE = re.compile(r'[A-Za-z0-9]+')
PREV_MODULE = re.compile(r'exp\.(nb_[A-Za-z0-9]+)')
# modules the course uses by name: `import torch` in an export cell exports `torch`
LESSON_MODULES = ('torch', 'math', 'nn', 'F', 'init', 'optim', 'plt', 'mpl', 'PIL')
FUTURE_RULE = ("a `from __future__` import may go only at the top of the notebook's first export "
               'cell, since the export cells become one module')


class ExportError(ToolError):
    """Bad input or a failed write; the CLI prints it as one line and exits with status 1."""


@dataclass(frozen=True)
class Repo:
    """Where things are: the repo root, its folder of notebooks and its folder of modules."""
    root: Path
    nbs: Path
    exp: Path


def repo_layout(root=None, nbs='nbs', dest='exp'):
    """The Repo for `root` (default: this script's folder); relative `nbs`/`dest` are inside it."""
    root = Path(root if root is not None else ROOT).resolve()
    return Repo(root, root / nbs, root / dest)  # an absolute nbs/dest replaces root


# --- names ------------------------------------------------------------------------------------

def module_name(nb_path):
    """'nb_07a' for 07a_lsuv.ipynb; ExportError when the prefix would not make a module name."""
    prefix = Path(nb_path).stem.split('_')[0]
    if not PREFIX_RULE.fullmatch(prefix):
        raise ExportError(f'{show(nb_path)}: cannot name its module nb_{prefix}: the part of the '
                          'file name before the first underscore must be ASCII letters and digits '
                          '(like 07a in 07a_lsuv.ipynb), so that exp.nb_<it> can be imported')
    return f'nb_{prefix}'


def module_path(nb_path, repo):
    """Where a notebook's module goes: always the repo's exp/, e.g. exp/nb_07a.py."""
    return repo.exp / f'{module_name(nb_path)}.py'


def label(nb_path, repo):
    """The notebook's path relative to the repo root, as the module header names it."""
    try:
        return Path(nb_path).resolve().relative_to(repo.root).as_posix()
    except ValueError:
        raise ExportError(f'{show(nb_path)}: outside the repo {show(repo.root)}; '
                          'put the notebook in its nbs/ folder') from None


def generated_from(module):
    """The notebook label in a generated module's header line, or None for any other file."""
    try:
        with open(module, encoding='utf-8', errors='replace') as f:
            match = HEADER_RE.fullmatch(f.readline().rstrip('\r\n'))
    except OSError:
        return None
    return match and match.group(1)


# --- cells -> module text ---------------------------------------------------------------------

@dataclass
class Chunk:
    """One export cell's code, with where it came from (for messages)."""
    cell: str        # how messages name the cell: 'cell 7 (code cell 4)'
    first_line: int  # the cell line (from 1, the marker is line 1) that `code` starts at
    code: str


def cell_lines(cell):
    """A cell's source split into lines on line ends only: '\\n', '\\r\\n' or '\\r', as Python reads
    a file. str.splitlines() would also split on U+2028, form feeds ... inside string literals."""
    src = cell.get('source', '')
    src = ''.join(src) if isinstance(src, list) else src
    return src.replace('\r\n', '\n').replace('\r', '\n').split('\n')


def export_chunk(cell, lines):
    """The Chunk to export from a cell's lines, or None when its first line is not the marker."""
    if not MARKER.fullmatch(lines[0]):
        return None
    start = 1
    while start < len(lines) and not lines[start].strip(' \t\f'):  # blank lines after the marker
        start += 1
    return Chunk(cell, start + 1, '\n'.join(lines[start:]).rstrip(' \t\f\n'))


def where(path, cell, line, msg, extra=''):
    return ExportError(f'{show(path)}: {cell}, line {line}: {msg}{extra}')


def compile_error(e):
    """(line, message) of a SyntaxError or ValueError raised by compile()."""
    return getattr(e, 'lineno', None) or '?', getattr(e, 'msg', None) or str(e)


def export_chunks(nb, path):
    """The Chunk of every export cell (empty ones left out), each checked to compile on its own."""
    chunks = []
    for index, cell in enumerate(nb.cells):
        if cell.get('cell_type') != 'code':
            continue
        lines = cell_lines(cell)
        name = cell_name(nb, index)
        chunk = export_chunk(name, lines)
        if chunk is None:
            continue
        try:
            compile('\n'.join(lines), f'{path} {name}', 'exec', dont_inherit=True)
        except (SyntaxError, ValueError) as e:
            raise where(path, name, *compile_error(e)) from None
        if chunk.code:
            chunks.append(chunk)
    return chunks


def render(path, nb, repo):
    """The module text for notebook `nb` read from `path`, or None when nothing is exported.
    The assembled module is compiled here: cells that compile alone may not compile together."""
    chunks = export_chunks(nb, path)
    if not chunks:
        return None
    name = module_name(path)
    header = HEADER.format(label(path, repo))
    parts, starts = [header], []
    line = header.count('\n') + 4  # the first code line: after the header and 2 blank lines
    for chunk in chunks:
        starts.append(line)
        parts.append(chunk.code)
        line += chunk.code.count('\n') + 3
    parts.append(all_block(name, chunks, path))
    text = '\n\n\n'.join(parts) + '\n'
    try:
        compile(text, f'exp/{name}.py', 'exec', dont_inherit=True)
    except (SyntaxError, ValueError) as e:
        raise module_error(path, chunks, starts, e) from None
    return text


def module_error(path, chunks, starts, e):
    """An ExportError naming the cell and cell line of a compile error in the assembled module."""
    line, msg = compile_error(e)
    extra = f' ({FUTURE_RULE})' if '__future__' in msg else ''
    for chunk, start in reversed(list(zip(chunks, starts))):
        if isinstance(line, int) and line >= start:
            return where(path, chunk.cell, line - start + chunk.first_line, msg, extra)
    return ExportError(f'{show(path)}: the exported module does not compile (line {line}): '
                       f'{msg}{extra}')


# --- __all__ ----------------------------------------------------------------------------------

def target_names(target):
    """Names bound by an assignment target: x, (a, b), [a, *rest]; not attributes or subscripts."""
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, (ast.Tuple, ast.List)):
        for elt in target.elts:
            yield from target_names(elt)
    elif isinstance(target, ast.Starred):
        yield from target_names(target.value)


def nested_bodies(stmt):
    """The statement lists inside a top-level if/try/with/for/while (still module level)."""
    for field in ('body', 'orelse', 'finalbody'):
        yield getattr(stmt, field, [])
    for handler in getattr(stmt, 'handlers', []):
        yield handler.body


# top-level statements whose bodies still run at module level (try/except* is TryStar, 3.11+)
BLOCKS = (ast.If, ast.Try, ast.With, ast.AsyncWith, ast.For, ast.AsyncFor, ast.While)


def bindings(stmts):
    """('name', x) for each name the module-level statements `stmts` bind that may be exported,
    ('del', x) for each `del x`, and ('star', module) for each `from exp.nb_X import *`."""
    for s in stmts:
        if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield 'name', s.name
        elif isinstance(s, ast.Assign):
            for target in s.targets:
                yield from (('name', n) for n in target_names(target))
        elif isinstance(s, ast.AnnAssign) and s.value is not None:  # `x: int` alone binds nothing
            yield from (('name', n) for n in target_names(s.target))
        elif isinstance(s, ast.ImportFrom):
            yield from import_from_bindings(s)
        elif isinstance(s, ast.Import):
            for alias in s.names:
                bound = alias.asname or alias.name.split('.')[0]
                if bound in LESSON_MODULES:
                    yield 'name', bound
        elif isinstance(s, ast.Delete):
            for target in s.targets:
                yield from (('del', n) for n in target_names(target))
        elif isinstance(s, BLOCKS) or type(s).__name__ == 'TryStar':
            for body in nested_bodies(s):
                yield from bindings(body)


def import_from_bindings(s):
    if [a.name for a in s.names] == ['*']:
        match = PREV_MODULE.fullmatch(s.module or '') if s.level == 0 else None
        if match:
            yield 'star', match.group(1)
    else:
        yield from (('name', a.asname or a.name) for a in s.names)


def exported_names(chunks, own_name, path):
    """(star-imported exp modules, public names bound) of the export cells, each in order, once."""
    stars, names = {}, {}
    for chunk in chunks:
        for kind, value in bindings(ast.parse(chunk.code).body):
            if kind == 'name' and value == '__all__':
                raise ExportError(f'{show(path)}: {chunk.cell} assigns __all__; leave it out, '
                                  'notebook2script.py generates it (see its docstring)')
            if kind == 'star' and value != own_name:
                stars[value] = None
            elif kind == 'name' and not value.startswith('_'):
                names[value] = None
            elif kind == 'del':
                names.pop(value, None)
    return list(stars), list(names)


def all_block(own_name, chunks, path):
    """The module's closing lines: the generated __all__ (earlier modules' names first)."""
    stars, names = exported_names(chunks, own_name, path)
    listed = textwrap.fill(', '.join(repr(n) for n in names), width=96, initial_indent='    ',
                           subsequent_indent='    ', break_long_words=False, break_on_hyphens=False)
    own = f'[\n{listed}\n]' if names else '[]'
    lines = [f'# What `from exp.{own_name} import *` gives (generated by notebook2script.py;',
             '# a name bound only in a branch not taken is left out).']
    lines += [f'from exp.{m} import __all__ as _all_{m}' for m in stars]
    listed = ' + '.join([f'_all_{m}' for m in stars] + [own])
    # Two steps: the first is a list sum that linters read as the module's exports (so a name
    # imported only to be exported is not "unused"); the second drops repeats and unbound names.
    lines.append(f'__all__ = {listed}')
    lines.append('__all__ = [_name for _name in dict.fromkeys(__all__) if _name in globals()]')
    return '\n'.join(lines)


# --- planning: every check before any write ----------------------------------------------------

@dataclass
class Export:
    notebook: Path
    module: Path
    text: str = None  # None: the notebook has no export cells


def load(path):
    try:
        return read_notebook(path)
    except NotebookError as e:
        raise ExportError(str(e)) from None


def clash(a, b, target):
    return ExportError(f'{show(a)} and {show(b)} both export to {show(target)}: rename one of them')


def check_no_clash(path, target, repo, chosen):
    """Refuse when another notebook (a sibling with the same prefix, or the one named in the
    existing module's header) exports to `target` too: exporting one must not overwrite
    another's."""
    siblings = [p for p in sorted(path.parent.glob('*.ipynb')) if p.resolve() not in chosen]
    for other in siblings:
        if other.stem.split('_')[0] == path.stem.split('_')[0]:
            raise clash(*sorted([path, other.resolve()]), target)
    owner = generated_from(target)
    owner = owner and (repo.root / owner).resolve()
    if owner and owner not in chosen and owner.is_file():
        raise clash(*sorted([path, owner]), target)


def plan_exports(paths, repo):
    """[Export] for `paths`, after checking all of them: raises ExportError on the first bad
    notebook, on a name that cannot be imported, or on two notebooks sharing a module."""
    chosen = list(dict.fromkeys(Path(p).resolve() for p in paths))  # each notebook once
    owners = {}
    for path in chosen:
        nb = load(path)
        target = module_path(path, repo)
        if target in owners:
            raise clash(owners[target][0], path, target)
        owners[target] = path, nb
    for target, (path, _) in owners.items():
        check_no_clash(path, target, repo, set(chosen))
    return [Export(path, target, render(path, nb, repo)) for target, (path, nb) in owners.items()]


def leftovers(plan, repo):
    """([generated modules no notebook in `plan` exports], [other .py files in exp/]), sorted;
    exp/__init__.py is neither."""
    live = {e.module for e in plan if e.text is not None}
    generated, other = [], []
    for module in sorted(repo.exp.glob('*.py')) if repo.exp.is_dir() else []:
        if module.name == '__init__.py' or module in live:
            continue
        (generated if generated_from(module) else other).append(module)
    return generated, other


def not_ours(module):
    return f'{show(module)}: not generated by notebook2script.py (no header line), left alone'


# --- writing ----------------------------------------------------------------------------------

def write_module(target, text):
    """Write `text` to `target` atomically; leave it alone when its bytes already match.
    Returns True when the file was (re)written."""
    data = text.encode('utf-8')
    if target.is_file() and target.read_bytes() == data:
        return False
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, data)
    except OSError as e:
        raise ExportError(f'{show(target)}: cannot write: {e}') from None
    return True


def write_plan(plan, log=print):
    """Write every module in `plan`; returns the module paths (None for nothing exported)."""
    written = []
    for e in plan:
        if e.text is None:
            stale = ' (its old module is stale: run notebook2script.py --all to remove it)' \
                if generated_from(e.module) else ''
            log(f'{show(e.notebook)}: no export cells, no module written{stale}')
        else:
            changed = write_module(e.module, e.text)
            same = '' if changed else ' (already up to date)'
            log(f'{show(e.notebook)} -> {show(e.module)}{same}')
        written.append(None if e.text is None else e.module)
    return written


def remove_stale(plan, repo, log=print):
    """Delete generated modules that no notebook in `plan` exports; report other files."""
    generated, other = leftovers(plan, repo)
    for module in generated:
        source = generated_from(module)
        try:
            module.unlink()
        except OSError as e:
            raise ExportError(f'{show(module)}: cannot remove stale module: {e}') from None
        log(f'removed {show(module)}: generated from {source}, which no longer exports it')
    for module in other:
        print(f'notebook2script: {not_ours(module)}', file=sys.stderr)
    return generated


def export_notebook(path, dest='exp', root=None):
    """Export one notebook; returns its module's path, or None when it has no export cells."""
    return write_plan(plan_exports([path], repo_layout(root, dest=dest)))[0]


def export_all(nbs='nbs', dest='exp', root=None):
    """Export every notebook in `nbs`, then remove stale generated modules; writes nothing unless
    every notebook is good. Returns the module paths (None for a notebook without exports)."""
    repo = repo_layout(root, nbs, dest)
    plan = plan_exports(notebooks(repo.nbs), repo)
    written = write_plan(plan)
    remove_stale(plan, repo)
    return written


# --- checking ---------------------------------------------------------------------------------

def plan_problems(plan):
    """One line for each module in `plan` that differs from what exporting would write."""
    problems = []
    for e in plan:
        if e.text is None:
            if generated_from(e.module):
                problems.append(f'{show(e.module)}: stale, {show(e.notebook)} has no export cells')
        elif not e.module.is_file():
            problems.append(f'{show(e.module)}: missing, export {show(e.notebook)}')
        elif e.module.read_bytes() != e.text.encode('utf-8'):
            problems.append(f'{show(e.module)}: differs from {show(e.notebook)}, re-export it')
    return problems


def check_notebooks(paths, dest='exp', root=None):
    """Problems (one line each) where exp/ differs from what exporting `paths` would write."""
    return plan_problems(plan_exports(paths, repo_layout(root, dest=dest)))


def check_all(nbs='nbs', dest='exp', root=None, notes=None):
    """`check_notebooks` for every notebook in `nbs`, plus every generated module in exp/ that no
    notebook exports (an orphan). Files in exp/ without the header are listed in `notes` (if given),
    not as problems: --all would not touch them, so they cannot be out of sync."""
    repo = repo_layout(root, nbs, dest)
    plan = plan_exports(notebooks(repo.nbs), repo)
    problems = plan_problems(plan)
    generated, other = leftovers(plan, repo)
    planned = {e.module for e in plan}
    problems += [f'{show(m)}: orphan, generated from {generated_from(m)} but no notebook in '
                 f'{show(repo.nbs)} exports it' for m in generated if m not in planned]
    if notes is not None:
        notes.extend(not_ours(m) for m in other)
    return problems


# --- command line -----------------------------------------------------------------------------

def main(*paths, all=False, check=False, nbs='nbs', dest='exp', root=None):
    """Export the notebooks `paths` (or all of `nbs` with --all). With --check, write nothing:
    print each problem to stderr and raise ExportError when exp/ is out of sync."""
    if bool(paths) == all:
        raise UsageError('give notebook paths or --all (not both)')
    paths = [Path(str(p)) for p in paths]  # fire may turn a path into a number
    if not check:
        if all:
            export_all(nbs, dest, root)
        else:
            write_plan(plan_exports(paths, repo_layout(root, nbs, dest)))
        return
    notes = []
    problems = check_all(nbs, dest, root, notes) if all else check_notebooks(paths, dest, root)
    for line in notes + problems:
        print(f'notebook2script: {line}', file=sys.stderr)
    if problems:
        raise ExportError(f'{len(problems)} problem(s): modules out of sync with notebooks; '
                          'run notebook2script.py --all')
    print('in sync: every module matches its notebook')


if __name__ == '__main__':
    run_cli(main)
