"""gpu_check.py: on a machine without a GPU it skips in one line; the check's steps pick the right
tests and notebooks; the bundle holds the right files, stays under its size limit and installs its
data without touching what is there. Nothing is downloaded."""
import io
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
import torch

import gpu_check
from nbio import ToolError

REPO = Path(__file__).resolve().parents[1]
no_gpu_here = pytest.mark.skipif(torch.cuda.is_available(), reason='this machine has a GPU')


def run_script(*args, code=None):
    cmd = [sys.executable] + (['-c', code] if code else [str(REPO / 'gpu_check.py'), *args])
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120)


@no_gpu_here
def test_without_a_gpu_it_says_it_skipped_in_one_line_and_exits_0():
    res = run_script()
    assert (res.returncode, res.stderr) == (0, '')
    assert res.stdout.startswith('gpu_check: skipped: no CUDA GPU here (torch ')
    assert len(res.stdout.splitlines()) == 1


@no_gpu_here
def test_it_skips_the_same_before_the_bundle_is_installed():
    # nbformat (so nbio and fire's run_cli) missing, as on a GPU machine before `install`
    code = ("import sys, runpy; sys.modules['nbformat'] = None; sys.argv = ['gpu_check.py']; "
            "runpy.run_path('gpu_check.py', run_name='__main__')")
    res = run_script(code=code)
    assert res.returncode == 0 and res.stdout.startswith('gpu_check: skipped: no CUDA GPU here')
    code = code.replace("['gpu_check.py']", "['gpu_check.py', 'bundle']")
    res = run_script(code=code)
    assert res.returncode == 1 and res.stderr == (
        f'gpu_check: {sys.executable} lacks nbformat: install the bundle first '
        '(python gpu_check.py install gpu-bundle.tar.xz)\n')


@pytest.mark.parametrize('args, message', [
    (['chek'], "command must be check, bundle or install, got 'chek'"),
    (['--budget', '3'], 'unknown flag --budget: the flags are --command, --path'),
    (['check', 'x'], 'check takes no path'),
])
def test_a_bad_command_line_is_refused_in_one_line(args, message):
    res = run_script(*args)
    assert (res.returncode, res.stdout, res.stderr) == (2, '', f'gpu_check: {message}\n')


def test_the_check_runs_the_gpu_tests_and_three_notebooks_without_saving():
    full, cuda = gpu_check.chosen_tests()
    for name in ['test_device_rule.py', 'test_nb04_callbacks.py', 'test_nb05b_early_stopping.py',
                 'test_nb06_conv.py', 'test_nb07_norm.py', 'test_nb09b_learner.py',
                 'test_nb10c_mixed_precision.py', 'test_nb11_xresnet.py',
                 'test_nb12_distributed.py']:
        assert f'tests/{name}' in full
    assert 'tests/test_nb11a_transfer.py' not in full and 'tests/test_nb07a_lsuv.py' not in full
    assert {'tests/test_nb01_matmul.py', 'tests/test_nb02_gradients.py',
            'tests/test_nb09_optimizers.py'} <= set(cuda) and not set(full) & set(cuda)
    assert 'tests/test_gpu_check.py' not in cuda   # -k would select all of it by its file name
    steps = gpu_check.steps('py')
    nbs = steps['notebooks']
    assert nbs[:2] == ['py', 'run_notebook.py'] and '--save' not in nbs
    assert [a for a in steps['notebooks'] if a.startswith('nbs/')] == [
        'nbs/04_callbacks.ipynb', 'nbs/05b_early_stopping.ipynb', 'nbs/10c_mixed_precision.ipynb']
    assert steps['CUDA tests'][-len(cuda) - 2:] == ['-k', 'cuda or gpu'] + cuda


def test_the_keyword_selects_the_tests_that_skip_without_a_gpu():
    _, cuda = gpu_check.chosen_tests()
    cmd = gpu_check.steps()['CUDA tests'] + ['--collect-only']
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300).stdout
    for name in ['test_matmul_on_gpu_stays_there_and_refuses_mixed_devices[matmul_loops]',
                 'test_model_gradients[1-1-1-1-cuda]', 'test_loaders_serve_cuda_data_like_cpu_data',
                 'test_transforms_run_on_cuda_like_on_cpu']:
        assert name in out, name


def test_the_bundle_leaves_out_torch_and_the_big_binaries_and_keeps_the_rest(tmp_path):
    reqs = tmp_path / 'requirements.txt'
    reqs.write_text('# a comment\ntorch==2.13.0\nnumpy\nnbformat\n\nPillow\nnumba==0.68.1\n'
                    'ruff==0.17.6\nfire\nmatplotlib\n')
    assert gpu_check.bundled_requirements(reqs) == ['nbformat', 'fire']
    assert [gpu_check.requirement_name(r) for r in ['a==1', 'b>=2', 'c[x]', 'd ; python_version']
            ] == ['a', 'b', 'c', 'd']
    cmd = gpu_check.download_command('3.12', tmp_path)
    assert cmd[cmd.index('--python-version') + 1] == '3.12' and '--only-binary=:all:' in cmd
    assert cmd[-len(gpu_check.bundled_requirements()):] == gpu_check.bundled_requirements()
    assert not {'torch==2.13.0', 'numpy'} & set(cmd)


def fake_wheel(path):
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as z:
        z.writestr('pkg/__init__.py', 'x = 1\n' * 1000)
    return path


@pytest.fixture
def parts(tmp_path):
    wheels = tmp_path / 'wheels'
    wheels.mkdir()
    for name in ['b-1-py3-none-any.whl', 'a-1-cp312-abi3-manylinux_2_17_x86_64.whl']:
        fake_wheel(wheels / name)
    (wheels / 'notes.txt').write_text('not a wheel')
    data = tmp_path / 'mnist.pkl.gz'
    data.write_bytes(b'mnist bytes')
    return gpu_check.members(wheels, [('mnist.pkl.gz', data), ('t10k', data)])


def test_the_bundle_holds_requirements_wheels_and_data(parts, tmp_path):
    assert [name for name, _ in parts] == [
        'requirements-gpu.txt', 'wheels/a-1-cp312-abi3-manylinux_2_17_x86_64.whl',
        'wheels/b-1-py3-none-any.whl', 'data/mnist.pkl.gz', 'data/t10k']
    dest = tmp_path / 'b.tar.xz'
    assert gpu_check.write_bundle(dest, parts) < 1
    with tarfile.open(dest) as tar:
        assert tar.getnames() == [name for name, _ in parts]
        reqs = tar.extractfile('requirements-gpu.txt').read().decode().split()
        assert reqs == gpu_check.bundled_requirements() + ['numpy', 'matplotlib', 'Pillow']
        whl = zipfile.ZipFile(io.BytesIO(tar.extractfile('wheels/b-1-py3-none-any.whl').read()))
        # the same files, stored: the tar's xz compresses them
        assert [i.compress_type for i in whl.infolist()] == [zipfile.ZIP_STORED]
        assert whl.read('pkg/__init__.py') == b'x = 1\n' * 1000
        cache = tmp_path / 'cache'
        cache.mkdir()
        (cache / 't10k').write_bytes(b'already here')
        assert gpu_check.unpack_data(tar, cache) == ['mnist.pkl.gz']
    assert (cache / 'mnist.pkl.gz').read_bytes() == b'mnist bytes'
    assert (cache / 't10k').read_bytes() == b'already here'   # left alone
    assert sorted(p.name for p in cache.iterdir()) == ['mnist.pkl.gz', 't10k']


def test_a_bundle_over_the_limit_is_refused_and_nothing_is_left(parts, tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, 'MAX_BUNDLE_MB', 1e-4)
    with pytest.raises(ToolError, match=r'over the 0.0001 MB allowed; nothing written'):
        gpu_check.write_bundle(tmp_path / 'b.tar.xz', parts)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(('b.tar', '.b.tar'))]


def test_members_needs_wheels(tmp_path):
    with pytest.raises(ToolError, match='no wheels in'): gpu_check.members(tmp_path, [])


def test_the_steps_run_side_by_side_and_one_past_the_budget_is_stopped(monkeypatch, capsys):
    # the check's own machinery, on the CPU: a GPU and its steps simulated
    monkeypatch.setattr(gpu_check, 'gpu_or_skip', lambda: 'torch')
    monkeypatch.setattr(gpu_check, 'describe', lambda torch: ['device: a simulated GPU'])
    monkeypatch.setattr(gpu_check, 'missing_packages', lambda: [])
    monkeypatch.setattr(gpu_check, 'missing_data', lambda: [])
    py = sys.executable
    monkeypatch.setattr(gpu_check, 'steps', lambda: {
        'passes': [py, '-c', 'print("all good")'],
        'fails': [py, '-c', 'import sys; print("1 failed"); sys.exit(1)'],
        'hangs': [py, '-c', 'import time; print("started", flush=True); time.sleep(60)']})
    start = time.monotonic()
    assert gpu_check.check(budget=3) is False
    assert time.monotonic() - start < 20
    out = capsys.readouterr().out.splitlines()
    assert out[:7] == ['device: a simulated GPU', '--- passes: passed', 'all good',
                       '--- fails: FAILED', '1 failed',
                       '--- hangs: stopped: still running after 3 s', 'started']
    assert out[7].startswith('gpu_check: FAILED in ') and len(out) == 8


def test_a_missing_package_or_data_file_stops_the_check_before_it_runs(monkeypatch):
    monkeypatch.setattr(gpu_check, 'gpu_or_skip', lambda: 'torch')
    monkeypatch.setattr(gpu_check, 'describe', lambda torch: [])
    monkeypatch.setattr(gpu_check, 'steps', lambda: pytest.fail('ran'))
    monkeypatch.setattr(gpu_check, 'missing_packages', lambda: ['fire', 'nbclient'])
    with pytest.raises(ToolError, match='lacks fire, nbclient: install the bundle first'):
        gpu_check.check()
    monkeypatch.setattr(gpu_check, 'missing_packages', lambda: [])
    monkeypatch.setattr(gpu_check, 'missing_data', lambda: ['/c/mnist.pkl.gz'])
    with pytest.raises(ToolError, match='no data file /c/mnist.pkl.gz: install the bundle'):
        gpu_check.check()


def test_describe_says_whether_bfloat16_is_native_not_emulated():
    "PyTorch's plain is_bf16_supported() also says True where bfloat16 is only emulated (slow)."
    from types import SimpleNamespace as NS
    asked = []
    def is_bf16_supported(including_emulation=True):
        asked.append(including_emulation)
        return including_emulation
    props = NS(name='a simulated GPU', total_memory=2**34, major=7, minor=5)
    cuda = NS(current_device=lambda: 0, get_device_properties=lambda d: props,
              is_bf16_supported=is_bf16_supported)
    fake = NS(cuda=cuda, __version__='2.11', version=NS(cuda='12.8'),
              backends=NS(cudnn=NS(version=lambda: 90000, allow_tf32=True),
                          cuda=NS(matmul=NS(allow_tf32=False))),
              get_float32_matmul_precision=lambda: 'highest')
    lines = gpu_check.describe(fake)
    assert asked == [False] and 'bfloat16 native (not emulated): False' in lines[2]
