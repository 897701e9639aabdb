"""The testing helpers of exp.nb_00 and the home-made matmuls of exp.nb_01."""
import pytest
import torch

from exp import nb_01 as lib   # not `from ... import test_eq`: pytest would collect test_* names
from exp.nb_01 import equals, near, matmul_loops, matmul_rowcol, matmul_bcast, matmul_einsum

MATMULS = [matmul_loops, matmul_rowcol, matmul_bcast, matmul_einsum]


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
    with pytest.raises(AssertionError, match='2.5'): lib.test_eq(torch.tensor([2.]), torch.tensor([2.5]))
    with pytest.raises(AssertionError, match='!='): lib.test_ne(1, 1)
    with pytest.raises(AssertionError, match='near'): lib.test_near(torch.tensor([1.]), torch.tensor([1.1]))
    with pytest.raises(AssertionError): lib.test_near_zero(torch.tensor([0., 0.01]))


def test_near_tolerance_shape_and_dtype():
    assert near(torch.tensor([1000.]), torch.tensor([1000.9]))       # within rtol 1e-3
    assert not near(torch.tensor([1000.]), torch.tensor([1002.]))
    assert not near(torch.ones(3), torch.ones(1))                     # allclose would broadcast
    assert near(torch.ones(2, dtype=torch.float64), torch.ones(2))    # mixed dtypes compare
    lib.test_near_zero(torch.tensor([1e-4, -1e-4]))


@pytest.mark.parametrize('f', MATMULS, ids=lambda f: f.__name__)
@pytest.mark.parametrize('shape', [(1, 1, 1), (3, 4, 5), (7, 2, 1)])
def test_matmul_matches_torch_in_float64(f, shape):
    n, k, m = shape
    g = torch.Generator().manual_seed(sum(shape))
    a = torch.randn(n, k, dtype=torch.float64, generator=g)
    b = torch.randn(k, m, dtype=torch.float64, generator=g)
    out = f(a, b)
    assert out.dtype == torch.float64
    assert torch.allclose(out, a @ b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('f', MATMULS, ids=lambda f: f.__name__)
def test_matmul_shape_error_names_both_shapes(f):
    with pytest.raises(ValueError, match=r'\(2, 3\) and \(2, 3\)'):
        f(torch.ones(2, 3), torch.ones(2, 3))
    with pytest.raises(ValueError, match=r'\(3,\) and \(3, 1\)'):
        f(torch.ones(3), torch.ones(3, 1))


@pytest.mark.parametrize('f', MATMULS, ids=lambda f: f.__name__)
def test_matmul_mixed_dtypes_refused_like_torch(f):
    "int @ float: every version raises the same error (torch's @ refuses too), none truncates 2.4 to 2."
    a, b = torch.tensor([[1, 2]]), torch.tensor([[2.4], [1.0]])
    with pytest.raises(RuntimeError): a @ b
    with pytest.raises(TypeError, match=r'matmul: dtypes differ \(torch.int64 and torch.float32\)'):
        f(a, b)
    torch.testing.assert_close(f(a.float(), b), a.float() @ b)


@pytest.mark.parametrize('f', MATMULS, ids=lambda f: f.__name__)
def test_matmul_integers_stay_exact(f):
    a, b = torch.tensor([[1, 2], [3, 4]]), torch.tensor([[5, 6], [7, 8]])
    out = f(a, b)
    assert out.dtype == torch.int64 and out.tolist() == [[19, 22], [43, 50]]


def test_lesson_constant_and_star_import_names():
    assert lib.TEST == 'test'
    ns = {}
    exec('from exp.nb_01 import *', ns)
    assert not [k for k in ns if k.startswith('_') and k != '__builtins__']
    for name in ['get_data', 'datasets', 'MNIST_URL', 'test_eq', 'TEST', 'matmul_loops', 'time_it', 'tensor', 'plt']:
        assert name in ns, name


@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA GPU on this machine')
@pytest.mark.parametrize('f', MATMULS, ids=lambda f: f.__name__)
def test_matmul_on_gpu_stays_there_and_refuses_mixed_devices(f):
    a, b = torch.randn(3, 4, device='cuda'), torch.randn(4, 2, device='cuda')
    out = f(a, b)
    assert out.device == a.device
    torch.testing.assert_close(out, a @ b, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match='different devices'):
        f(a, b.cpu())
