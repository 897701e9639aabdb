"""Every notebook in nbs/ runs top to bottom in a fresh kernel without an error.

One test per notebook (named after the file); the notebooks themselves are never written to.
With no notebooks in nbs/, no test is collected.
"""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from run_notebook import all_notebooks, run_notebook  # noqa: E402

NOTEBOOKS = all_notebooks(ROOT / 'nbs')

if NOTEBOOKS:  # an empty parametrize would still collect one skipped test
    @pytest.mark.parametrize('path', NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
    def test_notebook_runs_clean(path):
        before = path.read_bytes()
        result = run_notebook(path, save=False)
        assert path.read_bytes() == before, f'{path.name} was modified by its run'
        assert result.ok, f'{path.name} failed:\n{result.message}'
