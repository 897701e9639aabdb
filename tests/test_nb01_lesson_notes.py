"""The code a learner types from the lesson notes runs against exp.

The notes live beside the clone, in `../shared/seed/*.txt` (markdown with the lesson's code in
``` fences). Each fence is one cell; the cells run in order, in one namespace, after
`from exp.nb_01 import *`, as they would in a notebook. Lines that only make sense in Colab or
Jupyter are left out: shell (`!`), magics (`%`), `from google.colab ...`, `drive.mount(...)`, and
`from fastai import datasets` (exp provides the `datasets` stand-in). The timing magics
`%time stmt` and `%timeit [-n N] stmt` run their statement once, since later cells use what it
binds.
"""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT.parent / 'shared' / 'seed'
SKIP = ('!', '%', 'from google.colab', 'drive.mount', 'from fastai import datasets')
TIMING = re.compile(r'%%?time(?:it)?\s+(?:-[nr]\s*\d+\s+|-[qo]\s+)*(?P<stmt>.+)')


def fenced_cells(text):
    "The contents of every ``` fence in `text`, in order."
    cells, current = [], None
    for line in text.splitlines():
        if line.strip().startswith('```'):
            if current is None: current = []
            else: cells.append('\n'.join(current)); current = None
        elif current is not None:
            current.append(line)
    return cells


def runnable(cell):
    "The cell without notebook-only lines; a timing magic becomes its statement."
    kept = []
    for line in cell.splitlines():
        timing = TIMING.fullmatch(line.strip())
        if timing: kept.append(timing['stmt'])
        elif not line.strip().startswith(SKIP): kept.append(line)
    return '\n'.join(kept)


def test_cell_rules():
    cells = fenced_cells('x\n```\n!ls\n%time t = f(1)\n%timeit -n 10 _ = f(2)\ny = 3\n```\n'
                         'text\n```\nfrom fastai import datasets\n```\n')
    assert [runnable(c) for c in cells] == ['t = f(1)\n_ = f(2)\ny = 3', '']


def seed_cells():
    cells = []
    for f in sorted(SEED.glob('*.txt')):
        codes = [runnable(c) for c in fenced_cells(f.read_text(encoding='utf-8'))]
        cells += [(f'{f.name} cell {i}', code) for i, code in enumerate(codes) if code.strip()]
    return cells


@pytest.mark.skipif(not SEED.is_dir(),
                    reason=f'no lesson notes at {SEED} (CI puts shared/ beside the clone)')
def test_every_seed_cell_runs_against_exp(monkeypatch, capsys):
    monkeypatch.setenv('MPLBACKEND', 'Agg')
    monkeypatch.syspath_prepend(str(ROOT))
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    cells = seed_cells()
    assert cells, f'no code cells found in {SEED}/*.txt'
    ns, failures = {}, []
    exec('from exp.nb_01 import *', ns)
    for where, code in cells:
        try: exec(compile(code, where, 'exec'), ns)
        except Exception as e:
            first = code.splitlines()[0]
            failures.append(f'{where}: {type(e).__name__}: {e} (first line: {first!r})')
    plt.close('all')
    with capsys.disabled():
        print(f'\nseed cells run against exp: {len(cells) - len(failures)} of {len(cells)}')
    assert not failures, 'seed cells that fail:\n' + '\n'.join(failures)
