"""The checking helpers of exp.nb_00: exact and close comparison, failure messages with the
values, and that pytest never takes them for tests."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from exp.nb_00 import equals, near, test, test_eq, test_ne, test_near, test_near_zero

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize('a, b', [
    (torch.tensor([1, 2]), torch.tensor([1, 2])),
    (torch.tensor([1, 2]), [1, 2]),
    (torch.tensor(3), 3),
    ((torch.ones(2), 'x'), [torch.ones(2), 'x']),
    ({'w': torch.ones(2)}, {'w': torch.ones(2)}),
])
def test_equals_true(a, b):
    assert equals(a, b) and equals(b, a)


@pytest.mark.parametrize('a, b', [
    (torch.tensor([1, 1]), torch.tensor([1])),          # broadcastable, but not the same shape
    (torch.tensor([1, 2]), [1, 3]),
    (torch.tensor([1, 2]), 'ab'),
    ({'w': torch.ones(2)}, {'v': torch.ones(2)}),
    ([1, 2], [1, 2, 3]),
])
def test_equals_false(a, b):
    assert not equals(a, b) and not equals(b, a)


def test_failures_show_values():
    with pytest.raises(AssertionError, match='2.5'):
        test_eq(torch.tensor([2.]), torch.tensor([2.5]))
    with pytest.raises(AssertionError, match='!='): test_ne(1, 1)
    with pytest.raises(AssertionError, match='near'):
        test_near(torch.tensor([1.]), torch.tensor([1.1]))
    with pytest.raises(AssertionError): test_near_zero(torch.tensor([0., 0.01]))


def test_near_tolerance_shape_and_dtype():
    assert near(torch.tensor([1000.]), torch.tensor([1000.9]))       # within rtol 1e-3
    assert not near(torch.tensor([1000.]), torch.tensor([1002.]))
    assert not near(torch.ones(3), torch.ones(1))                     # allclose would broadcast
    assert near(torch.ones(2, dtype=torch.float64), torch.ones(2))    # mixed dtypes compare
    test_near_zero(torch.tensor([1e-4, -1e-4]))


def test_helpers_are_marked_as_no_tests():
    assert all(f.__test__ is False for f in (test, test_eq, test_ne, test_near, test_near_zero))


def test_pytest_collects_none_of_them_from_a_star_import(tmp_path):
    "A test file that star-imports a chapter, as the course does, holds exactly its own tests."
    path = tmp_path / 'test_star.py'
    path.write_text('from exp.nb_01 import *\n\ndef test_only_this(): test_eq(TEST, "test")\n')
    out = subprocess.run([sys.executable, '-m', 'pytest', '--collect-only', '-q',
                          '-p', 'no:cacheprovider', str(path)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    collected = [l for l in out.stdout.splitlines() if '::' in l]
    assert len(collected) == 1 and collected[0].endswith('test_star.py::test_only_this'), collected


class OtherDevice(torch.Tensor):
    """A CPU tensor that acts as if it lived on a GPU: an operation that mixes it with a plain CPU
    tensor of one or more dimensions raises, as PyTorch does across devices; `.cpu()` copies it
    back as a plain tensor."""
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor)]
        if any(type(t) is torch.Tensor and t.ndim > 0 for t in tensors):
            raise RuntimeError('Expected all tensors to be on the same device, but found at least '
                               'two devices, cuda:0 and cpu!')
        with torch._C.DisableTorchFunctionSubclass():
            if func is torch.Tensor.cpu: return args[0].as_subclass(torch.Tensor).clone()
            return func(*args, **kwargs)


def on_other_device(t): return t.clone().as_subclass(OtherDevice)


def test_values_compare_across_devices():
    a = torch.tensor([1., 2.])
    with pytest.raises(RuntimeError, match='same device'): on_other_device(a) == a
    test_eq(on_other_device(a), a); test_eq(a, on_other_device(a))
    test_ne(on_other_device(a), a + 1)
    test_near(on_other_device(a), a + 1e-5); test_near(a, on_other_device(a))
    assert not near(on_other_device(a), a + 1)
    test_eq([on_other_device(a)], (a,))
    with pytest.raises(AssertionError, match='near'): test_near(on_other_device(a), a * 2)


@pytest.mark.parametrize('check', [test_eq, test_near])
def test_a_meta_tensor_is_refused_naming_both_devices(check):
    with pytest.raises(ValueError, match='cannot compare values on devices meta and cpu: a tensor '
                                         'on the meta device has none'):
        check(torch.ones(2, device='meta'), torch.ones(2))
