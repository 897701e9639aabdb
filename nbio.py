"""File helpers shared by the tools (notebook2script.py, run_notebook.py) and notebook 01.

    atomic_open(dest, mode='wb', check=None)  # write a temp file beside dest, rename it over dest
    atomic_write(dest, data)                  # the same for a str or bytes in one go
    read_notebook(path)                       # an nbformat v4 node, or one clear NotebookError

Why atomic: a reader (another tool, a kernel importing exp/, a test) must see either the old file or
the whole new one, never half of it; and a failure (full disk, bad checksum, Ctrl-C) must leave the
old file exactly as it was.
"""
import contextlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import nbformat

__all__ = ['atomic_open', 'atomic_write', 'read_notebook', 'parse_notebook', 'NotebookError', 'show_path']


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
    close it, call check(temp_path) if given (it may raise), then os.replace it onto dest (keeping an
    existing file's permission bits; the umask default for a new one). On any exception (Ctrl-C
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
        if check is not None:
            check(tmp)
        os.chmod(tmp, _new_mode(dest))
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(dest, data, encoding='utf-8'):
    """Write `data` (str, encoded with `encoding`, or bytes) to `dest` through atomic_open."""
    if isinstance(data, str):
        data = data.encode(encoding)
    elif not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f'atomic_write: data must be str or bytes (got {type(data).__name__})')
    with atomic_open(dest, 'wb') as f:
        f.write(data)


def read_notebook(path, who='notebook'):
    """The notebook at `path` as an nbformat v4 node (an nbformat 3 file is converted).
    Anything else raises NotebookError with one line naming the file; `who` is the word used for
    the file in those messages ('no such notebook')."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise NotebookError(path, f'no such {who}') from None
    except IsADirectoryError:
        raise NotebookError(path, f'is a folder, not a {who}') from None
    except OSError as e:
        raise NotebookError(path, f'cannot read: {e.strerror or e}') from None
    return parse_notebook(data, path, who)


def parse_notebook(data, path='<notebook>', who='notebook'):
    """`read_notebook` for bytes (or str) already read from `path` (named in errors)."""
    try:
        text = data.decode('utf-8') if isinstance(data, (bytes, bytearray)) else data
        raw = json.loads(text)
    except UnicodeDecodeError as e:
        raise NotebookError(path, f'cannot read: not UTF-8 text ({e.reason} at byte {e.start})') from None
    except json.JSONDecodeError as e:
        raise NotebookError(path, f'not valid JSON (line {e.lineno}: {e.msg})') from None
    if not isinstance(raw, dict):
        raise NotebookError(path, f'not a {who} (the JSON is a {type(raw).__name__}, not an object)')
    nb = _to_v4(raw, text, path, who)
    try:
        with warnings.catch_warnings():  # e.g. missing cell ids: nbformat fills them in, fine
            warnings.simplefilter('ignore')
            nbformat.validate(nb)
    except nbformat.ValidationError as e:
        lines = str(e).strip().splitlines()
        raise NotebookError(path, f'not a valid {who}: {lines[0] if lines else "schema error"}') from None
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
