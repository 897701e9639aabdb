"""Export the `# export` cells of the notebooks in nbs/ into modules in exp/.

    python notebook2script.py nbs/01_matmul.ipynb   # writes exp/nb_01.py
    python notebook2script.py --all                 # every notebook in nbs/, sorted
    python notebook2script.py --all --check         # write nothing; exit 1 if exp/ is stale

A cell is exported when its first line is the marker `# export` (any case, spaces allowed;
`#exports` and `# export foo` are not markers). The marker line is dropped. The module is named
after the notebook's prefix before the first underscore: 07a_lsuv.ipynb -> exp/nb_07a.py, where
exp/ sits beside the notebook's folder (nbs/../exp).

A notebook without export cells gets no module; `--check` reports a module left over for it.
Bad input (missing file, bad JSON, not a notebook, an export cell that is not valid Python, two
notebooks sharing a module name) is a one-line error and exit status 1. Every notebook is
checked before anything is written, so a bad run leaves exp/ untouched.
"""
import contextlib
import json
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path

import fire
import nbformat

MARKER = re.compile(r'\s*#\s*export\s*', re.IGNORECASE)


class ExportError(Exception):
    """Bad input or a failed write; the CLI prints it as one line and exits with status 1."""


def show(path):
    """`path` relative to the working directory when it is inside it, for messages."""
    path = Path(path).absolute()
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(path)


def dest_dir(nbs='nbs', dest='exp'):
    """The module folder for notebooks in folder `nbs`: a relative `dest` is taken from the
    repo, the parent of `nbs` (so nbs/../exp by default)."""
    return Path(nbs).resolve().parent / dest


def module_path(nb_path, dest='exp'):
    """Where a notebook's module goes: nbs/07a_lsuv.ipynb -> exp/nb_07a.py."""
    nb_path = Path(nb_path)
    return dest_dir(nb_path.parent, dest) / f"nb_{nb_path.stem.split('_')[0]}.py"


def read_notebook(path):
    """The notebook at `path`, validated; ExportError (naming the file) when it is not one."""
    try:
        text = Path(path).read_text(encoding='utf-8')
    except FileNotFoundError:
        raise ExportError(f'{show(path)}: no such notebook') from None
    except (OSError, UnicodeDecodeError) as e:
        raise ExportError(f'{show(path)}: cannot read: {e}') from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ExportError(f'{show(path)}: not valid JSON (line {e.lineno}: {e.msg})') from None
    if not isinstance(data, dict) or not isinstance(data.get('cells'), list):
        raise ExportError(f'{show(path)}: not a notebook (no list of cells)')
    nb = nbformat.from_dict(data)
    try:
        with warnings.catch_warnings():  # e.g. missing cell ids: not our concern here
            warnings.simplefilter('ignore')
            nbformat.validate(nb)
    except nbformat.ValidationError as e:
        first_line = str(e).strip().splitlines()[0]
        raise ExportError(f'{show(path)}: not a valid notebook: {first_line}') from None
    return nb


def cell_source(cell):
    """A cell's source as one string (raw notebook JSON may store a list of lines)."""
    src = cell.get('source', '')
    return ''.join(src) if isinstance(src, list) else src


def exported_source(src):
    """The code to export from a cell's source, or None when its first line is not the marker."""
    lines = src.splitlines()
    if not lines or not MARKER.fullmatch(lines[0]):
        return None
    body = lines[1:]
    while body and not body[0].strip():  # blank lines right after the marker
        body.pop(0)
    return '\n'.join(body).rstrip()


def export_cells(nb, path):
    """The exported code of every export cell, in notebook order, each checked to compile.
    Cells are numbered from 1 counting every cell (markdown too); lines count the marker."""
    cells = []
    for number, cell in enumerate(nb.cells, start=1):
        src = cell_source(cell)
        code = exported_source(src) if cell.get('cell_type') == 'code' else None
        if code is None:
            continue
        try:
            compile(src, f'{path} cell {number}', 'exec')
        except (SyntaxError, ValueError) as e:
            line = getattr(e, 'lineno', None) or '?'
            msg = getattr(e, 'msg', None) or str(e)
            raise ExportError(f'{show(path)}: cell {number}, line {line}: {msg}') from None
        if code:
            cells.append(code)
    return cells


def render(path, nb):
    """The module text for notebook `nb` read from `path`, or None when nothing is exported."""
    cells = export_cells(nb, path)
    if not cells:
        return None
    path = Path(path).resolve()
    name = f'{path.parent.name}/{path.name}'  # relative to the repo, nbs/..
    header = f'# Generated from {name} by notebook2script.py: edit the notebook, not this file.'
    return '\n\n\n'.join([header] + cells) + '\n'


def module_source(path):
    """The text exporting notebook `path` would write (None when it has no export cells)."""
    return render(path, read_notebook(path))


def plan_exports(paths, dest='exp'):
    """[(notebook, module path, text or None)] for `paths`, after checking all of them:
    raises ExportError on the first bad notebook or on two notebooks sharing a module."""
    owners = {}
    for path in dict.fromkeys(Path(p).resolve() for p in paths):  # each notebook once
        target = module_path(path, dest)
        if target in owners:
            raise ExportError(f'{show(owners[target])} and {show(path)} both export to '
                              f'{show(target)}: rename one of them')
        owners[target] = path
    return [(path, target, render(path, read_notebook(path))) for target, path in owners.items()]


def umask():
    """The process's file-creation mask (reading it means setting it, so set it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_module(target, text):
    """Write `text` to `target` atomically; leave it alone when its bytes already match.
    Returns True when the file was (re)written."""
    data = text.encode('utf-8')
    if target.is_file() and target.read_bytes() == data:
        return False
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.NamedTemporaryFile(delete=False, dir=target.parent,
                                          prefix=f'.{target.name}.', suffix='.tmp')
    except OSError as e:
        raise ExportError(f'{show(target)}: cannot write: {e}') from None
    try:
        with tmp:
            tmp.write(data)  # bytes: UTF-8 with '\n' line ends on every platform
        os.chmod(tmp.name, 0o666 & ~umask())  # temp files are private (0600) by default
        os.replace(tmp.name, target)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp.name)
        if isinstance(e, OSError):
            raise ExportError(f'{show(target)}: cannot write: {e}') from None
        raise
    return True


def write_plan(plan, log=print):
    """Write every module in `plan`; returns the module paths (None for nothing exported)."""
    written = []
    for path, target, text in plan:
        if text is None:
            log(f'{show(path)}: no export cells, no module written')
        else:
            changed = write_module(target, text)
            log(f'{show(path)} -> {show(target)}' + ('' if changed else ' (already up to date)'))
        written.append(None if text is None else target)
    return written


def notebooks(nbs='nbs'):
    """Every notebook in folder `nbs`, sorted by name."""
    folder = Path(nbs)
    if not folder.is_dir():
        raise ExportError(f'{show(folder)}: no such folder of notebooks')
    return sorted(folder.glob('*.ipynb'))


def export_notebook(path, dest='exp'):
    """Export one notebook; returns its module's path, or None when it has no export cells."""
    return write_plan(plan_exports([path], dest))[0]


def export_all(nbs='nbs', dest='exp'):
    """Export every notebook in `nbs`; writes nothing unless every notebook is good."""
    return write_plan(plan_exports(notebooks(nbs), dest))


def check_notebooks(paths, dest='exp'):
    """Problems (one line each) where exp/ differs from what exporting `paths` would write."""
    problems = []
    for path, target, text in plan_exports(paths, dest):
        if text is None:
            if target.exists():
                problems.append(f'{show(target)}: stale, {show(path)} has no export cells')
        elif not target.is_file():
            problems.append(f'{show(target)}: missing, export {show(path)}')
        elif target.read_bytes() != text.encode('utf-8'):
            problems.append(f'{show(target)}: differs from {show(path)}, re-export it')
    return problems


def check_all(nbs='nbs', dest='exp'):
    """`check_notebooks` for every notebook in `nbs`, plus every nb_*.py module in the
    destination that no notebook exports (an orphan)."""
    paths = notebooks(nbs)
    problems = check_notebooks(paths, dest)
    folder = dest_dir(nbs, dest)
    expected = {module_path(p, dest).name for p in paths}
    for orphan in sorted(folder.glob('nb_*.py')):
        if orphan.name not in expected:
            problems.append(f'{show(orphan)}: orphan, no notebook in {show(nbs)} exports it')
    return problems


def main(*paths, all=False, check=False, nbs='nbs', dest='exp'):
    """Export the notebooks `paths` (or all of `nbs` with --all). With --check, write nothing:
    print each problem to stderr and raise ExportError when exp/ is out of sync."""
    if bool(paths) == bool(all):
        raise ExportError('give notebook paths or --all (not both)')
    paths = [Path(str(p)) for p in paths]
    if check:
        problems = check_all(nbs, dest) if all else check_notebooks(paths, dest)
        for problem in problems:
            print(f'notebook2script: {problem}', file=sys.stderr)
        if problems:
            raise ExportError(f'{len(problems)} problem(s): modules out of sync with notebooks; '
                              'run notebook2script.py --all')
        print('in sync: every module matches its notebook')
    elif all:
        export_all(nbs, dest)
    else:
        write_plan(plan_exports(paths, dest))


def cli():
    try:
        fire.Fire(main)
    except ExportError as e:
        print(f'notebook2script: ' + str(e).replace('\n', ' '), file=sys.stderr)  # one line
        sys.exit(1)


if __name__ == '__main__':
    cli()
