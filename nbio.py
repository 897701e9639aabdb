"""What the tools (notebook2script.py, run_notebook.py, prose_numbers.py, dist_launch.py, the
bench/ scripts) and the exported modules (00a's data fetcher, 11a's save_model) share: files,
notebooks, command lines.

    atomic_open(dest, mode='wb', check=None)  # write a temp file beside dest, rename it over dest
    atomic_write(dest, data)                  # the same for a str or bytes in one go
    read_notebook(path)                       # an nbformat v4 node, or one clear NotebookError
    cell_name(nb, index)                      # 'cell 7 (code cell 4)', as every tool says it
    notebooks()                               # the repo's nbs/*.ipynb in the course's order
    run_cli(main)                             # fire.Fire(main), the command line checked first

Why atomic: a reader (another tool, a kernel importing exp/, a test) must see either the old file or
the whole new one, never half of it; and a failure (full disk, bad checksum, Ctrl-C) must leave the
old file exactly as it was.

How a tool fails: one line on stderr, '<tool>: <message>' (the script's name without .py), then
exit status 2 for a command line that makes no sense (an unknown flag, a missing argument: nothing
has run) and 1 for a failure (bad input, a failed check). run_cli does this for UsageError,
ToolError and NotebookError raised by the tool's main.
"""
import contextlib
import difflib
import inspect
import json
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path

import nbformat

__all__ = ['atomic_open', 'atomic_write', 'read_bytes', 'read_notebook', 'parse_notebook',
           'NotebookError', 'cell_name', 'show_path', 'REPO', 'NBS', 'notebooks', 'run_cli',
           'check_command_line', 'fail', 'tool_name', 'UsageError', 'ToolError']


class NotebookError(ValueError):
    """A file that cannot be read as a notebook. str(e) is one line: '<path>: <reason>'."""

    def __init__(self, path, reason):
        self.path, self.reason = path, ' '.join(str(reason).split())  # always one line
        super().__init__(f'{show_path(path)}: {self.reason}')


def show_path(path):
    """`path` relative to the working directory when inside it (shorter messages), else absolute."""
    path = Path(path).absolute()
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(path)


def _umask():
    """The process's file-creation mask (reading it means setting it, so it is set back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _new_mode(dest):
    """Permission bits for the file replacing `dest`: dest's own if it exists, else what a plain
    open() would give (0o666 less the umask). mkstemp's temp files are private (0o600) otherwise."""
    try:
        return os.stat(dest).st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_open(dest, mode='wb', check=None, encoding=None):
    """Yield a temp file opened in `mode` ('w', 'wt' or 'wb') in dest's folder. On a clean exit:
    close it, call check(temp_path) if given (it may raise), then os.replace it onto dest (keeping
    an existing file's permission bits; the umask default for a new one). On any exception (Ctrl-C
    too): delete the temp file, leave dest untouched, re-raise. Text mode is UTF-8 unless told
    otherwise, and writes '\\n' line ends as given on every platform."""
    if mode not in ('w', 'wt', 'wb'):
        raise ValueError(f"atomic_open: mode must be 'w', 'wt' or 'wb' (got {mode!r})")
    if 'b' in mode and encoding is not None:
        raise ValueError('atomic_open: binary mode takes no encoding')
    dest = Path(dest)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f'.{dest.name}.', suffix='.tmp')
    try:
        text = {} if 'b' in mode else {'encoding': encoding or 'utf-8', 'newline': ''}
        with os.fdopen(fd, mode, **text) as f:
            yield f
            # on the disk before the rename: a machine that goes down just after it must not
            # leave an empty or partial file under dest's name
            f.flush()
            os.fsync(f.fileno())
        if check is not None:
            check(tmp)
        os.chmod(tmp, _new_mode(dest))
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def temp_files(dest):
    """The temporary files atomic_open made for `dest` and a killed write left behind: only dest's
    own (`.ck.pt.<random>.tmp`), not another file's whose name starts the same
    (`.ck.pt.rank1.<random>.tmp`, which may be in the middle of its write)."""
    dest = Path(dest)
    own = re.compile(rf'\.{re.escape(dest.name)}\.[a-z0-9_]+\.tmp')   # mkstemp's random part
    return sorted(p for p in dest.parent.iterdir() if own.fullmatch(p.name))


def atomic_write(dest, data, encoding='utf-8'):
    """Write `data` (str, encoded with `encoding`, or bytes) to `dest` through atomic_open."""
    if isinstance(data, str):
        data = data.encode(encoding)
    elif not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f'atomic_write: data must be str or bytes (got {type(data).__name__})')
    with atomic_open(dest, 'wb') as f:
        f.write(data)


def read_bytes(path, who='notebook'):
    """The bytes of the file at `path`, or NotebookError naming it ('no such notebook')."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise NotebookError(path, f'no such {who}') from None
    except IsADirectoryError:
        raise NotebookError(path, f'is a folder, not a {who}') from None
    except OSError as e:
        raise NotebookError(path, f'cannot read: {e.strerror or e}') from None


def read_notebook(path, who='notebook'):
    """The notebook at `path` as an nbformat v4 node (an nbformat 3 file is converted).
    Anything else raises NotebookError with one line naming the file; `who` is the word used for
    the file in those messages ('no such notebook')."""
    return parse_notebook(read_bytes(path, who), path, who)


def parse_notebook(data, path='<notebook>', who='notebook'):
    """`read_notebook` for bytes (or str) already read from `path` (named in errors)."""
    try:
        text = data.decode('utf-8') if isinstance(data, (bytes, bytearray)) else data
        raw = json.loads(text)
    except UnicodeDecodeError as e:
        reason = f'cannot read: not UTF-8 text ({e.reason} at byte {e.start})'
        raise NotebookError(path, reason) from None
    except json.JSONDecodeError as e:
        raise NotebookError(path, f'not valid JSON (line {e.lineno}: {e.msg})') from None
    if not isinstance(raw, dict):
        kind = type(raw).__name__
        raise NotebookError(path, f'not a {who} (the JSON is a {kind}, not an object)')
    nb = _to_v4(raw, text, path, who)
    try:
        with warnings.catch_warnings():  # e.g. missing cell ids: nbformat fills them in, fine
            warnings.simplefilter('ignore')
            nbformat.validate(nb)
    except nbformat.ValidationError as e:
        lines = str(e).strip().splitlines()
        first = lines[0] if lines else 'schema error'
        raise NotebookError(path, f'not a valid {who}: {first}') from None
    return nb


def _to_v4(raw, text, path, who):
    """The notebook dict `raw` as a v4 node with each source one string (nbformat stores lists of
    lines on disk); an nbformat 3 one is converted by nbformat."""
    version = raw.get('nbformat')
    if version is not None and version not in (3, 4):
        raise NotebookError(path, f'nbformat {version} is not supported (only 3, converted, and 4)')
    if version != 3 and not isinstance(raw.get('cells'), list):
        raise NotebookError(path, f'not a {who} (no list of cells)')
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            return nbformat.reads(text, as_version=4)
    except Exception as e:
        if version == 3:
            raise NotebookError(path, f'an nbformat 3 {who} that nbformat cannot convert to '
                                      f'version 4 ({type(e).__name__}: {e}); open and save it in '
                                      'Jupyter to upgrade it') from None
        raise NotebookError(path, f'not a valid {who}: {type(e).__name__}: {e}') from None


def cell_name(nb, index):
    """How every tool names cell `index` (from 0) of `nb` in its messages: 'cell 7 (code cell 4)',
    'cell 2 (markdown)'. Cells count from 1 over all cells, as Jupyter lists them; code cells also
    among themselves, which after a clean run is the execution count [4] shown beside the cell."""
    cell = nb.cells[index]
    if cell.cell_type != 'code':
        return f'cell {index + 1} ({cell.cell_type})'
    code_no = sum(c.cell_type == 'code' for c in nb.cells[:index + 1])
    return f'cell {index + 1} (code cell {code_no})'


# --- the repo and its notebooks ------------------------------------------------------------------

REPO = Path(__file__).resolve().parent  # the tools sit at the repo root (installed editable)
NBS = REPO / 'nbs'


def notebooks(folder=None):
    """Every notebook in `folder` (default: the repo's nbs/), sorted by name, which is the course's
    order; ToolError when the folder does not exist."""
    folder = Path(folder) if folder is not None else NBS
    if not folder.is_dir():
        raise ToolError(f'{show_path(folder)}: no such folder of notebooks')
    return sorted(folder.glob('*.ipynb'))


# --- command lines ------------------------------------------------------------------------------

class UsageError(Exception):
    """A command line that makes no sense; run_cli prints '<tool>: <message>' and exits 2."""


class ToolError(Exception):
    """A failure the tool reports in one line (bad input, a failed check); run_cli exits 1."""


FLAG = re.compile(r'--?[A-Za-z]')  # as fire tells a flag from a value: '-0.5' is a value
HELP = ('-h', '--help', '--')      # left to fire: its help, and its own flags after '--'
BOOL_WORDS = ('True', 'False', 'true', 'false')


def _keywords(functions):
    """{name: default} of the parameters a flag may set, over `functions` (later ones add names)."""
    names = {}
    for fn in functions:
        for p in inspect.signature(fn).parameters.values():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                names.setdefault(p.name, p.default)
    return names


def _unknown(flag, names):
    near = difflib.get_close_matches(flag, list(names), n=1, cutoff=0.5)
    if near: hint = f'did you mean --{near[0]}?'
    elif names: hint = 'the flags are ' + ', '.join(f'--{n}' for n in sorted(names))
    else: hint = 'this command takes no flags'
    return UsageError(f'unknown flag --{flag}: {hint}')


def _flag_name(arg, names):
    """(name, value or None) of a flag argument: '--num-workers=2' -> ('num_workers', '2');
    a one-letter flag stands for the only name starting with it, as fire reads it."""
    key, eq, value = arg.lstrip('-').partition('=')
    key = key.replace('-', '_')
    if len(key) == 1 and not arg.startswith('--'):
        starts = [n for n in names if n[0] == key]
        if len(starts) == 1:
            key = starts[0]
    return key, (value if eq else None)


def _takes_no_value(name, value):
    return UsageError(f'--{name} takes no value (got {value!r}): write --{name} to switch it on, '
                      f'--no{name} to switch it off')


def _is_bool_flag(key, names):
    """(name, True/False) when `key` switches a boolean flag on (--save) or off (--nosave)."""
    if isinstance(names.get(key), bool):
        return key, True
    if key.startswith('no') and isinstance(names.get(key[2:]), bool):
        return key[2:], False
    return None


def check_command_line(main, argv, also=()):
    """The command line `argv` for fire.Fire(main), checked and spelled out, or UsageError.

    Flags are main's parameters (and those of the functions in `also`, for a main that passes
    **kwargs on). A boolean flag (its default is True or False) is written --name or --noname and
    never takes the next argument as its value; any other flag needs one (--name value or
    --name=value). Arguments without a leading '-' are main's positional ones."""
    names = _keywords([main, *also])
    params = inspect.signature(main).parameters.values()
    room = sum(p.kind == p.POSITIONAL_OR_KEYWORD for p in params)
    room = None if any(p.kind == p.VAR_POSITIONAL for p in params) else room
    out, positional, args = [], [], list(argv)
    while args:
        arg = args.pop(0)
        if arg in HELP:
            return out + positional + [arg] + args  # fire's help, or fire's own flags after '--'
        if not FLAG.match(arg):
            positional.append(arg)
            continue
        key, value = _flag_name(arg, names)
        switch = _is_bool_flag(key, names)
        if switch:
            if value is None and args and args[0] in BOOL_WORDS:
                value = args[0]  # `--save False`: fire would take it, we would not: refuse it
            if value is not None:
                raise _takes_no_value(switch[0], value)
            out.append(f'--{switch[0]}={switch[1]}')
            continue
        if key not in names:
            raise _unknown(key, names)
        if value is None:
            if not args or FLAG.match(args[0]):
                raise UsageError(f'--{key} needs a value (--{key} VALUE or --{key}=VALUE)')
            value = args.pop(0)
        out.append(f'--{key}={value}')
    if room is not None and len(positional) > room:
        raise UsageError(f'unexpected argument {positional[room]!r}: '
                         + (f'{main.__name__} takes {room} positional argument(s)' if room
                            else 'this command takes only flags'))
    return positional + out


def tool_name(fn):
    """How messages name the tool whose function `fn` is: its file's name without '.py'
    ('notebook2script'), whether the file runs as a script or was imported."""
    return Path(inspect.getfile(fn)).stem


def fail(message, status, tool):
    """Print '<tool>: <message>' (one line) on stderr and exit with `status`."""
    print(f'{tool}: ' + ' '.join(str(message).split()), file=sys.stderr, flush=True)
    sys.exit(status)


def run_cli(main, argv=None, also=(), tool=None):
    """Run `main` as a command line through fire, checking the whole command line first.

    Use it in place of fire.Fire(main) at the bottom of a script:

        if __name__ == '__main__':
            run_cli(main)

    Before anything runs, an unknown flag is refused with the nearest valid one named
    (`--chekc` -> 'did you mean --check?'), a value given to a boolean flag (--save=x) and a
    missing value (--epochs at the end) are refused, and so is a positional argument main has no
    room for. Each is one line on stderr, '<tool>: <message>', and exit status 2. `also` lists
    more functions whose parameters are valid flags, for a main that hands **kwargs on (see
    dist_launch.py). While main runs, UsageError exits 2 and ToolError or NotebookError exits 1,
    each printed the same way; any other exception is a bug and keeps its traceback."""
    import fire  # here, so that the file helpers above do not need fire installed
    tool = tool or tool_name(main)

    try:
        command = check_command_line(main, sys.argv[1:] if argv is None else argv, also)
        return fire.Fire(main, command=command, name=tool)
    except UsageError as e:
        fail(e, 2, tool)
    except (ToolError, NotebookError) as e:
        fail(e, 1, tool)
