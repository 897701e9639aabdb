"""The home-made matmuls of exp.nb_01, and what its star import gives."""
import pytest
import torch

from exp.nb_01 import TEST, matmul_bcast, matmul_einsum, matmul_loops, matmul_rowcol

MATMULS = [matmul_loops, matmul_rowcol, matmul_bcast, matmul_einsum]


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
    """int @ float: every version raises the same error (torch's @ refuses too), none truncates 2.4
    to 2."""
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
    assert TEST == 'test'
    ns = {}
    exec('from exp.nb_01 import *', ns)
    assert not [k for k in ns if k.startswith('_') and k != '__builtins__']
    for name in ['get_data', 'datasets', 'MNIST_URL', 'test_eq', 'TEST', 'matmul_loops', 'time_it',
                 'tensor', 'plt']:
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
