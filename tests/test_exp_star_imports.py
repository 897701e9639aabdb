"""`from exp.nb_X import *` gives the teaching names only: no helper, no stray module.

notebook2script.py generates each module's `__all__`: the previous module's `__all__` plus the
public names the notebook's export cells bind. So a star import brings no helper (a name starting
with '_') and no module object other than the lesson modules (torch, math, nn, F, init, optim, plt,
mpl, PIL); os, sys, gzip ... are imported by each cell that uses them.
"""
import importlib
import types
from pathlib import Path

import pytest

from notebook2script import LESSON_MODULES

ROOT = Path(__file__).resolve().parents[1]

MODULES = sorted(p.stem for p in (ROOT / 'exp').glob('nb_*.py'))


def star_import(name):
    """The names `from exp.<name> import *` binds, as a dict (what a notebook would get)."""
    namespace = {}
    exec(f'from exp.{name} import *', namespace)
    namespace.pop('__builtins__')
    return namespace


@pytest.mark.parametrize('name', MODULES)
def test_star_import_gives_teaching_names_only(name):
    module = importlib.import_module(f'exp.{name}')
    assert isinstance(getattr(module, '__all__', None), list), \
        f'exp/{name}.py has no generated __all__: re-export it with notebook2script.py'
    names = star_import(name)
    private = sorted(n for n in names if n.startswith('_'))
    modules = sorted(n for n, v in names.items()
                     if isinstance(v, types.ModuleType) and n not in LESSON_MODULES)
    assert not private, f'from exp.{name} import * gives private names {private}'
    assert not modules, (f'from exp.{name} import * gives modules {modules}: import them in the '
                         'cells that use them, under a leading underscore in export cells if need '
                         'be')
    assert len(names) == len(module.__all__) == len(set(module.__all__))


@pytest.mark.parametrize('name', MODULES)
def test_earlier_names_flow_forward(name):
    "Each module's __all__ starts with (or contains) the __all__ of every module it star-imports."
    module = importlib.import_module(f'exp.{name}')
    source = (ROOT / 'exp' / f'{name}.py').read_text(encoding='utf-8')
    for line in source.splitlines():
        if line.startswith('from exp.nb_') and line.endswith('import *'):
            earlier = importlib.import_module(line.split()[1])
            missing = [n for n in earlier.__all__ if n not in module.__all__]
            assert not missing, f'exp/{name}.py drops {missing} from {line.split()[1]}'
