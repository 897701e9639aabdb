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
