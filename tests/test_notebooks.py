"""Every notebook in nbs/ runs top to bottom in a fresh kernel without an error, and is saved as run.

One kernel run per notebook (named after the file), and no other test runs a notebook: the suite's
time is the notebooks' time once. The notebooks themselves are never written to. The saved-outputs
check reads the files only: the prose-number check (prose_numbers.py) compares prose with these
outputs, so they must be those of one clean run (`run_notebook.py --save`).
With no notebooks in nbs/, no test is collected.
"""
import sys
from pathlib import Path

import nbformat
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

    @pytest.mark.parametrize('path', NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
    def test_notebook_is_saved_from_one_clean_run(path):
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == 'code']
        counts = [c.execution_count for c in code]
        assert counts == list(range(1, len(code) + 1)), (
            f'{path.name}: execution counts {counts} are not 1..{len(code)}: save it from one clean '
            f'run: .venv/bin/python run_notebook.py nbs/{path.name} --save')
        errors = [i for i, c in enumerate(nb.cells) for o in c.get('outputs', []) if o.output_type == 'error']
        assert not errors, f'{path.name}: cells {errors} were saved with an error output'
