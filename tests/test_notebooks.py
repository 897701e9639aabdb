"""Every notebook in nbs/ runs top to bottom in a fresh kernel without an error, and was saved so.

The notebooks run once per session, in a session fixture, as `run_notebook.py --all --jobs 2` runs
them: two at a time, the longest chain first, those in run_notebook.RUN_ALONE with nothing
beside them (the timings that run_notebook.TIMES_THINGS print are not kept here, so those share a
core).

Each notebook still has its own test and its own failure message, and only the notebooks selected
for the session run (`-k 05b` runs one). No other test runs a notebook: the suite's time is the
notebooks' time once. The notebooks themselves are never written to. The saved-outputs check reads
the files only: the prose-number check (prose_numbers.py) compares prose with these outputs, so
they must be those of one clean run (`run_notebook.py --save`).
With no notebooks in nbs/, no test is collected.
"""
import os
import time

import nbformat
import pytest

from nbio import notebooks
from run_notebook import run_notebooks

NOTEBOOKS = notebooks()


def notebook_jobs():
    """How many notebooks run at once: NOTEBOOK_JOBS if it is set (1 runs them one at a time, the
    baseline that the schedule's gain is measured against), else 2 where there are 2 cores."""
    value = os.environ.get('NOTEBOOK_JOBS')
    if value is None: return min(2, os.cpu_count() or 1)
    if not value.strip().isdigit() or int(value) < 1:
        raise ValueError(f'NOTEBOOK_JOBS must be a whole number >= 1, got {value!r}')
    return int(value)


JOBS = notebook_jobs()


@pytest.fixture(scope='session')
def notebook_runs(request):
    """{path: (Result, the file's bytes before the run)} of each notebook this session selected."""
    chosen = [item.callspec.params['path'] for item in request.session.items
              if getattr(item, 'originalname', None) == 'test_notebook_runs_clean']
    before = {path: path.read_bytes() for path in chosen}
    start = time.perf_counter()
    results = run_notebooks(chosen, save=False, echo=False, jobs=JOBS)
    report_times(request.config, results, time.perf_counter() - start)
    return {path: (result, before[path]) for path, result in zip(chosen, results)}


def report_times(config, results, wall):
    """One line in pytest's output: each notebook's seconds, their sum, and the wall time they took
    together (what run_notebook.SECONDS, the scheduler's estimates, should be refreshed from)."""
    terminal = config.pluginmanager.get_plugin('terminalreporter')
    if terminal is None or not results: return
    each = ', '.join(f'{r.path.stem} {r.seconds:.0f}' for r in results)
    total = sum(r.seconds for r in results)
    capture = config.pluginmanager.get_plugin('capturemanager')  # fixtures' output is captured
    with capture.global_and_fixture_disabled():
        terminal.write_line(f'\nnotebook seconds: {each}; {total:.0f} s in all, '
                            f'{wall:.0f} s of wall time ({JOBS} at a time)')


if NOTEBOOKS:  # an empty parametrize would still collect one skipped test
    @pytest.mark.parametrize('path', NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
    def test_notebook_runs_clean(path, notebook_runs):
        result, before = notebook_runs[path]
        assert path.read_bytes() == before, f'{path.name} was modified by its run'
        assert result.ok, f'{path.name} failed:\n{result.message}'

    @pytest.mark.parametrize('path', NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
    def test_notebook_is_saved_from_one_clean_run(path):
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == 'code']
        counts = [c.execution_count for c in code]
        assert counts == list(range(1, len(code) + 1)), (
            f'{path.name}: execution counts {counts} are not 1..{len(code)}: save it from one '
            f'clean run: .venv/bin/python run_notebook.py nbs/{path.name} --save')

        errors = [i for i, c in enumerate(nb.cells) for o in c.get('outputs', [])
                  if o.output_type == 'error']
        assert not errors, f'{path.name}: cells {errors} were saved with an error output'


def test_notebook_jobs_reads_notebook_jobs_and_refuses_nonsense(monkeypatch):
    monkeypatch.delenv('NOTEBOOK_JOBS', raising=False)
    assert notebook_jobs() == min(2, os.cpu_count() or 1)
    monkeypatch.setenv('NOTEBOOK_JOBS', '1')
    assert notebook_jobs() == 1
    for bad in ['0', 'two', '-1', '']:
        monkeypatch.setenv('NOTEBOOK_JOBS', bad)
        with pytest.raises(ValueError, match='NOTEBOOK_JOBS must be a whole number'):
            notebook_jobs()
