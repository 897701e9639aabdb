"""From-scratch convolution (unfold, conv2d) from nbs/06_cnn_hooks_init.ipynb, checked against
PyTorch in float64."""
import random

import pytest
import torch
import torch.nn.functional as F

from exp.nb_06 import Im2Col, col2im, conv2d, conv_out_size, unfold


def _random_case(seed):
    """A random conv problem: shapes, kernel, stride and padding (ints or pairs) that give at least
    one output."""
    rng = random.Random(seed)
    n, ci, co = rng.randint(1, 3), rng.randint(1, 4), rng.randint(1, 5)
    kh, kw = rng.randint(1, 4), rng.randint(1, 4)
    stride = rng.choice([1, 2, 3, (1, 2), (2, 1), (3, 2)])
    padding = rng.choice([0, 1, 2, (0, 1), (2, 0)])
    h, w = rng.randint(kh, 11), rng.randint(kw, 11)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, ci, h, w, dtype=torch.float64, generator=g)
    weight = torch.randn(co, ci, kh, kw, dtype=torch.float64, generator=g)
    bias = torch.randn(co, dtype=torch.float64, generator=g)
    return x, weight, bias, stride, padding


def _grads(f, x, weight, bias, out_grad):
    """Gradients of sum(f(...) * out_grad) with respect to input, weight and bias (None when bias is
    None)."""
    leaves = [t.detach().requires_grad_() if t is not None else None for t in (x, weight, bias)]
    out = f(*leaves)
    out.backward(out_grad)
    return out.detach(), [t.grad if t is not None else None for t in leaves]


@pytest.mark.parametrize('seed', range(40))
@pytest.mark.parametrize('with_bias', [True, False])
def test_conv2d_forward_and_gradients_match_torch(seed, with_bias):
    x, weight, bias, stride, padding = _random_case(seed)
    if not with_bias: bias = None
    ref_out = F.conv2d(x, weight, bias, stride, padding)
    g = torch.Generator().manual_seed(seed + 1000)
    out_grad = torch.randn(ref_out.shape, dtype=torch.float64, generator=g)
    ours = lambda *a: conv2d(*a, stride=stride, padding=padding)
    theirs = lambda *a: F.conv2d(*a, stride=stride, padding=padding)
    out, grads = _grads(ours, x, weight, bias, out_grad)
    ref, ref_grads = _grads(theirs, x, weight, bias, out_grad)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    for name, g, rg in zip(['input', 'weight', 'bias'], grads, ref_grads):
        if rg is None: assert g is None; continue
        torch.testing.assert_close(g, rg, rtol=1e-10, atol=1e-10,
                                   msg=lambda m: f'{name} gradient: {m}')


@pytest.mark.parametrize('seed', range(20))
def test_unfold_matches_F_unfold(seed):
    x, weight, _, stride, padding = _random_case(seed)
    ks = tuple(weight.shape[2:])
    ours = unfold(x, ks, stride=stride, padding=padding)
    theirs = F.unfold(x, ks, padding=padding, stride=stride)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_unfold_gradient_matches_F_unfold():
    x, _, _, _, _ = _random_case(3)
    g = torch.randn(F.unfold(x, (3, 2), padding=1, stride=2).shape, dtype=torch.float64)
    _, (gx, _, _) = _grads(lambda x, *_: unfold(x, (3, 2), stride=2, padding=1), x, None, None, g)
    _, (rx, _, _) = _grads(lambda x, *_: F.unfold(x, (3, 2), padding=1, stride=2), x, None, None, g)
    torch.testing.assert_close(gx, rx, rtol=1e-12, atol=1e-12)


def test_gradcheck_against_finite_differences():
    "Independent of PyTorch's conv: numerical derivatives of our own conv2d, with our own backward."
    g = torch.Generator().manual_seed(5)
    args = [torch.randn(*s, dtype=torch.float64, generator=g).requires_grad_()
            for s in [(2, 2, 6, 5), (3, 2, 3, 2), (3,)]]
    assert torch.autograd.gradcheck(lambda a, w, b: conv2d(a, w, b, stride=(2, 1), padding=1), args)


def test_unbatched_input_like_F_conv2d():
    x, weight, bias, stride, padding = _random_case(7)
    torch.testing.assert_close(conv2d(x[0], weight, bias, stride, padding),
                               F.conv2d(x[0], weight, bias, stride, padding))


@pytest.mark.parametrize('n,ks,stride,padding', [
    (28, 3, 1, 1),
    (28, 5, 2, 2),
    (28, 3, 2, 1),
    (7, 3, 2, 1),
    (10, 4, 3, 0),
    (5, 5, 1, 0),
])
def test_output_size_formula(n, ks, stride, padding):
    x = torch.zeros(1, 1, n, n)
    out = F.conv2d(x, torch.zeros(1, 1, ks, ks), stride=stride, padding=padding)
    assert out.shape[-1] == conv_out_size(n, ks, stride, padding)


def test_float32_output_is_contiguous_and_keeps_dtype():
    x, w = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3)
    out = conv2d(x, w, stride=2, padding=1)
    assert out.dtype == torch.float32 and out.is_contiguous()
    torch.testing.assert_close(out, F.conv2d(x, w, stride=2, padding=1), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('call,words', [
    (lambda: conv2d(torch.randn(2, 3, 8, 8), torch.randn(4, 2, 3, 3)),
     ['(2, 3, 8, 8)', '(4, 2, 3, 3)']),
    (lambda: conv2d(torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3), torch.randn(3)),
     ['bias', '(3,)', '(4,)']),
    (lambda: conv2d(torch.randn(8, 8), torch.randn(4, 3, 3, 3)), ['(N, C, H, W)', '(8, 8)']),
    (lambda: conv2d(torch.randn(1, 1, 2, 2), torch.randn(1, 1, 3, 3)),
     ['3x3', 'does not fit', '(1, 1, 2, 2)']),
    (lambda: conv2d(torch.randn(1, 1, 5, 5), torch.randn(1, 1, 3, 3), stride=0),
     ['stride', '>= 1']),
    (lambda: conv2d(torch.randn(1, 1, 5, 5), torch.randn(1, 1, 3, 3), padding=-1),
     ['padding', '>= 0']),
    (lambda: conv2d(torch.randn(1, 1, 5, 5), torch.randn(1, 1, 3, 3), stride=(1, 2, 3)),
     ['stride', '(1, 2, 3)']),
    (lambda: unfold(torch.randn(1, 5, 5), 3), ['unfold', '(1, 5, 5)']),
])
def test_bad_input_names_the_problem(call, words):
    with pytest.raises(ValueError) as e: call()
    for w in words: assert w in str(e.value), (w, str(e.value))


def _as_fold_layout(cols, n):
    "Im2Col's columns (C*kh*kw, N*L) in F.fold's layout (N, C*kh*kw, L)."
    return cols.view(cols.shape[0], n, -1).transpose(0, 1)


@pytest.mark.parametrize('seed', range(20))
def test_col2im_matches_F_fold(seed):
    x, weight, _, stride, padding = _random_case(seed)
    ks = tuple(weight.shape[2:])
    g = torch.Generator().manual_seed(seed + 500)
    n, ckk, n_pos = unfold(x, ks, stride, padding).shape
    cols = torch.randn(ckk, n * n_pos, dtype=torch.float64, generator=g)
    ours = col2im(cols, x.shape, ks, stride, padding)
    theirs = F.fold(_as_fold_layout(cols, x.shape[0]), x.shape[2:], ks, padding=padding,
                    stride=stride)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def test_col2im_is_the_adjoint_of_im2col():
    "<im2col(x), c> = <x, col2im(c)>: what makes col2im im2col's backward."
    x, _, _, _, _ = _random_case(7)
    ks, stride, padding = (3, 2), (2, 1), (1, 0)
    cols = Im2Col.apply(x, ks, stride, padding)
    c = torch.randn(cols.shape, dtype=torch.float64)
    lhs, rhs = (cols * c).sum(), (x * col2im(c, x.shape, ks, stride, padding)).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)


def test_col2im_names_the_shapes_it_needs():
    with pytest.raises(ValueError, match=r'must be \(18, 50\), got \(18, 49\)'):
        col2im(torch.zeros(18, 49), (2, 2, 5, 5), 3, padding=1)
