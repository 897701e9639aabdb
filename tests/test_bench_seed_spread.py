"""bench/seed_spread.py: its runs keep the notebooks' own settings, and its flags are checked before
anything trains."""
import ast
import importlib
import json
import sys
from pathlib import Path

import pytest
import torch

from nbio import UsageError

REPO = Path(__file__).resolve().parents[1]
# As `python bench/seed_spread.py` does: the scripts import the harness as a module beside them.
sys.path.append(str(REPO / 'bench'))
spread = importlib.import_module('seed_spread')


def code_of(notebook, keep_spaces=False):
    """The code cells of `notebook` joined, without IPython's magics; spaces removed unless
    `keep_spaces` (the settings' layout may change)."""
    nb = json.loads((REPO / 'nbs' / notebook).read_text(encoding='utf-8'))
    src = '\n'.join(line for c in nb['cells'] if c['cell_type'] == 'code'
                    for line in ''.join(c['source']).splitlines() if not line.startswith('%'))
    return src if keep_spaces else src.replace(' ', '')


def test_the_nb07_run_has_the_notebooks_settings():
    code, s = code_of('07_batchnorm.ipynb'), spread.NB07
    assert f"nfs_big,lr_big,epochs_big={s['nfs']},{s['lr']},{s['epochs']}".replace(' ', '') in code
    assert f"optim.SGD,momentum={s['momentum']},weight_decay=5e-4)" in code
    assert s['weight_decay'] == 5e-4 and f"mnist_databunch(bs={s['bs']})" in code


def dict_in(notebook, name):
    "The keywords of the `name = dict(...)` assignment in `notebook`'s code, as values."
    for node in ast.walk(ast.parse(code_of(notebook, keep_spaces=True))):
        targets = [getattr(t, 'id', None) for t in getattr(node, 'targets', [])]
        if isinstance(node, ast.Assign) and targets == [name]:
            return {k.arg: ast.literal_eval(k.value) for k in node.value.keywords}
    raise AssertionError(f'no {name} = dict(...) in {notebook}')


@pytest.mark.parametrize('run, name, data', [('nb11_mnist', 'MNIST_RUN', 'mnist_all'),
                                             ('nb11_fashion', 'FASHION_RUN', 'fashion_all')])
def test_the_nb11_runs_have_the_notebooks_settings(run, name, data):
    assert dict_in('11_xresnet.ipynb', name) == spread.NB11[run]
    call = f'fit_xresnet({data},[{spread.NB11_TFMS[run]}],**{name})'
    assert call in code_of('11_xresnet.ipynb')


@pytest.mark.parametrize('kwargs, message', [
    (dict(run='nb7'), "run must be one of nb07, nb11_mnist, nb11_fashion, got 'nb7'"),
    (dict(seeds=0), 'seeds must be a whole number >= 1, got 0'),
    (dict(seeds=1), 'seeds must be at least 2 for a spread, got 1'),
    (dict(first=-1), 'first must be a whole number >= 0, got -1'),
    (dict(threads=-1), 'threads must be a whole number >= 0'),
])
def test_bad_flags_are_refused_before_anything_trains(monkeypatch, kwargs, message):
    monkeypatch.setattr(spread, 'trainer', lambda run: pytest.fail('trained'))
    with pytest.raises(UsageError, match=f'^{message}'): spread.main(**kwargs)


def test_it_prints_each_seed_then_the_spread(monkeypatch, capsys):
    monkeypatch.setattr(spread, 'trainer', lambda run: lambda seed: 0.99 + seed / 1e4)
    spread.main(seeds=3, first=1, threads=0)
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[:4] for line in out[1:4]] == [
        ['seed', f'{s}:', 'accuracy', f'{0.99 + s / 1e4:.4f}'] for s in (1, 2, 3)]
    assert out[-1] == ('nb07: mean 0.9902, standard deviation 0.0001, min 0.9901, max 0.9903 '
                       'over 3 seeds; mean - 3 sd = 0.9899')


@pytest.mark.parametrize('run', ['nb11_mnist', 'nb11_fashion'])
def test_an_nb11_run_trains_with_the_notebooks_settings_and_scores_the_test_images(run):
    # the real runs take about 10 minutes per seed each: a few random images stand in here
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(24, 1, 28, 28, generator=g), torch.randint(0, 10, (24,), generator=g)
    acc = spread.nb11_run(run, (x, y, x[:8], y[:8], x[8:16], y[8:16]), seed=1)
    assert 0 <= acc <= 1 and acc * 8 == round(acc * 8)   # a share of the 8 test images
