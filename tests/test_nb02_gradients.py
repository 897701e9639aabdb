"""The hand-written layers of notebook 02 (exp.nb_02) against PyTorch, in float64.

Every gradient the layers write into `.g` is compared with torch.autograd applied to PyTorch's own
functions (F.linear, F.relu, F.mse_loss), so the reference shares no code with the layers under
test. The whole model is also checked against central finite differences, which do not use
autograd at all.
"""
import re

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from exp.nb_02 import Lin, Model, Mse, Relu, mse, normalize

# (batch, n_in, n_hidden, n_out): a single row and unit widths, small odd sizes, several outputs,
# MNIST-like
SHAPES = [(1, 1, 1, 1), (5, 3, 4, 1), (17, 10, 7, 3), (64, 784, 50, 1)]
no_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA')
DEVICES = ['cpu', pytest.param('cuda', marks=no_cuda)]


def rand(*shape, device='cpu'):
    return torch.randn(*shape, dtype=torch.float64, device=device)


def leaves(*ts):
    "Independent copies that autograd tracks."
    return [t.detach().clone().requires_grad_(True) for t in ts]


def targets(n, n_out, device='cpu'):
    "Targets shaped the way `mse` expects for a model with `n_out` outputs."
    return rand(n, device=device) if n_out == 1 else rand(n, n_out, device=device)


def ref_loss(x, w1, b1, w2, b2, y):
    "The notebook's model written with PyTorch's functions (nn.Linear layout wants weight.T)."
    out = F.linear(F.relu(F.linear(x, w1.t(), b1)), w2.t(), b2)
    return F.mse_loss(out.reshape(y.shape), y)


@pytest.mark.parametrize('n,n_in,nh,n_out', SHAPES)
def test_lin_gradients(n, n_in, nh, n_out):
    torch.manual_seed(0)
    x, w, b = rand(n, n_in), rand(n_in, nh), rand(nh)
    lin = Lin(w, b)
    out = lin(x)
    out.g = rand(*out.shape)  # an arbitrary upstream gradient dL/d(out)
    lin.backward()

    xa, wa, ba = leaves(x, w, b)
    ref = F.linear(xa, wa.t(), ba)
    ref.backward(out.g)
    assert_close(out, ref.detach())
    assert_close(x.g, xa.grad)
    assert_close(w.g, wa.grad)
    assert_close(b.g, ba.grad)


@pytest.mark.parametrize('shape', [(1,), (6, 5), (64, 50)])
def test_relu_gradient(shape):
    torch.manual_seed(1)
    x = rand(*shape)
    relu = Relu()
    out = relu(x)
    out.g = rand(*shape)
    relu.backward()

    (xa,) = leaves(x)
    ref = F.relu(xa)
    ref.backward(out.g)
    assert_close(out, ref.detach())
    assert_close(x.g, xa.grad)


def test_relu_gradient_at_zero_matches_torch_relu():
    x = torch.tensor([-1., 0., 2.], dtype=torch.float64)
    relu = Relu()
    out = relu(x)
    out.g = torch.ones(3, dtype=torch.float64)
    relu.backward()
    (xa,) = leaves(x)
    F.relu(xa).sum().backward()
    assert_close(x.g, xa.grad)  # 0 at x == 0, as torch.relu picks


@pytest.mark.parametrize('n,n_out', [(1, 1), (7, 1), (64, 1), (9, 4)])
def test_mse_gradient(n, n_out):
    torch.manual_seed(2)
    inp, targ = rand(n, n_out), targets(n, n_out)
    loss_fn = Mse()
    loss = loss_fn(inp, targ)
    loss_fn.backward()

    (ia,) = leaves(inp)
    ref = F.mse_loss(ia.reshape(targ.shape), targ)
    ref.backward()
    assert_close(loss, ref.detach())
    assert_close(inp.g, ia.grad)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('n,n_in,nh,n_out', SHAPES)
def test_model_gradients(n, n_in, nh, n_out, device):
    torch.manual_seed(3)
    x, y = rand(n, n_in, device=device), targets(n, n_out, device)
    params = [rand(n_in, nh, device=device), rand(nh, device=device),
              rand(nh, n_out, device=device), rand(n_out, device=device)]
    model = Model(*params)
    loss = model(x, y)
    model.backward()

    refs = leaves(x, *params)
    ref = ref_loss(*refs, y)
    ref.backward()
    assert_close(loss, ref.detach())
    for ours, r in zip([x, *params], refs):
        assert ours.g.shape == ours.shape
        assert_close(ours.g, r.grad)


def test_model_gradients_match_finite_differences():
    "A check that does not rely on autograd: central differences of the loss, entry by entry."
    torch.manual_seed(4)
    n, n_in, nh, n_out = 6, 4, 5, 2
    x, y = rand(n, n_in), targets(n, n_out)
    params = [rand(n_in, nh), rand(nh), rand(nh, n_out), rand(n_out)]
    model = Model(*params)
    model(x, y)
    model.backward()
    eps = 1e-6
    for t in [x, *params]:
        numeric = torch.zeros_like(t)
        for i in range(t.numel()):
            old = t.view(-1)[i].item()
            t.view(-1)[i] = old + eps; up = Model(*params)(x, y).item()
            t.view(-1)[i] = old - eps; down = Model(*params)(x, y).item()
            t.view(-1)[i] = old
            numeric.view(-1)[i] = (up - down) / (2 * eps)
        assert_close(t.g, numeric, rtol=1e-5, atol=1e-7)


def shapes_pattern(*shapes):
    "A regex matching the shapes, in order, as the error messages print them."
    return '.*'.join(re.escape(str(tuple(s))) for s in shapes)


def test_lin_input_mismatch_names_both_shapes():
    lin = Lin(torch.randn(784, 50), torch.zeros(50))
    with pytest.raises(ValueError, match=r'^Lin: input .*' + shapes_pattern((64, 700), (784, 50))):
        lin(torch.randn(64, 700))


def test_lin_rejects_input_that_is_not_2d():
    lin = Lin(torch.randn(784, 50), torch.zeros(50))
    with pytest.raises(ValueError, match=shapes_pattern((784,), (784, 50))):
        lin(torch.randn(784))


def test_lin_bias_mismatch_names_both_shapes():
    lin = Lin(torch.randn(784, 50), torch.zeros(49))
    with pytest.raises(ValueError, match=r'bias .*' + shapes_pattern((49,), (784, 50))):
        lin(torch.randn(3, 784))


def test_model_reports_the_layer_shapes():
    model = Model(torch.randn(784, 50), torch.zeros(50), torch.randn(50, 1), torch.zeros(1))
    with pytest.raises(ValueError, match=shapes_pattern((64, 700), (784, 50))):
        model(torch.randn(64, 700), torch.randn(64))


@pytest.mark.parametrize('out_shape,targ_shape', [
    ((10, 1), (9,)),
    ((10, 2), (10,)),
    ((10,), (10, 1)),
    ((3, 4), (4, 3)),
])
def test_mse_mismatch_names_both_shapes(out_shape, targ_shape):
    with pytest.raises(ValueError, match=r'^mse: .*' + shapes_pattern(out_shape, targ_shape)):
        mse(torch.randn(*out_shape), torch.randn(*targ_shape))
    with pytest.raises(ValueError, match=shapes_pattern(out_shape, targ_shape)):
        Mse()(torch.randn(*out_shape), torch.randn(*targ_shape))


def test_mse_squeezes_a_trailing_1_instead_of_broadcasting():
    torch.manual_seed(5)
    out, targ = rand(8, 1), rand(8)
    expected = F.mse_loss(out.squeeze(-1), targ)
    assert_close(mse(out, targ), expected)
    # what silent broadcasting would give
    assert not torch.allclose(((out - targ) ** 2).mean(), expected)
    assert_close(mse(out.squeeze(-1), targ), expected)
    ones, zeros = torch.ones(3, 4, dtype=torch.float64), torch.zeros(3, 4, dtype=torch.float64)
    # same shapes: no squeezing
    assert_close(mse(ones, zeros), torch.tensor(1., dtype=torch.float64))


def test_normalize_uses_the_given_stats():
    torch.manual_seed(6)
    train = torch.rand(200, 8, dtype=torch.float64) * 3 + 2
    valid = torch.rand(100, 8, dtype=torch.float64) * 5 - 1
    m, s = train.mean(), train.std()
    assert_close(normalize(valid, m, s), (valid - m) / s)
    nt = normalize(train, m, s)
    assert_close(nt.mean(), torch.tensor(0., dtype=torch.float64), atol=1e-12, rtol=0)
    assert_close(nt.std(), torch.tensor(1., dtype=torch.float64))
    # the validation set keeps its offset relative to the training set: it is not re-centred on its
    # own mean
    nv = normalize(valid, m, s)
    assert_close(nv.mean(), (valid.mean() - m) / s)
    assert abs(nv.mean().item()) > 0.1


def test_normalize_per_feature_stats_broadcast():
    torch.manual_seed(7)
    x = torch.rand(50, 6, dtype=torch.float64) * torch.arange(1, 7) + torch.arange(6)
    nx = normalize(x, x.mean(0), x.std(0))
    assert_close(nx.mean(0), torch.zeros(6, dtype=torch.float64), atol=1e-12, rtol=0)
    assert_close(nx.std(0), torch.ones(6, dtype=torch.float64))


# ---- the backward passes refuse a gradient of the wrong shape, before writing anything -------

@pytest.mark.parametrize('g_shape', [(5,), (1, 5), (6, 1), (5, 6), (6, 5, 1)])
def test_relu_backward_refuses_a_wrongly_shaped_gradient(g_shape):
    relu = Relu()
    relu(torch.randn(6, 5))
    relu.out.g = torch.ones(g_shape)  # (5,), (1, 5), (6, 1) would broadcast without a word
    with pytest.raises(ValueError, match=r'^Relu\.backward: .*' + shapes_pattern(g_shape, (6, 5))):
        relu.backward()


@pytest.mark.parametrize('g_shape', [(5, 3), (4,), (1, 4), (5, 4, 1), (4, 5)])
def test_lin_backward_refuses_a_wrongly_shaped_gradient(g_shape):
    lin = Lin(torch.randn(7, 4), torch.zeros(4))
    lin(torch.randn(5, 7))
    lin.out.g = torch.ones(g_shape)   # (1, 4) would give inp.g the shape (1, 7) silently
    with pytest.raises(ValueError, match=r'^Lin\.backward: .*' + shapes_pattern(g_shape, (5, 4))):
        lin.backward()
    assert not hasattr(lin.inp, 'g') and not hasattr(lin.w, 'g')  # nothing half-written


@pytest.mark.parametrize('layer', [
    Relu(),
    Lin(torch.randn(3, 2), torch.zeros(2)),
], ids=['Relu', 'Lin'])
def test_backward_without_forward_or_gradient_says_which(layer):
    name = type(layer).__name__
    with pytest.raises(ValueError, match=rf'^{name}\.backward: no forward pass yet'):
        layer.backward()
    layer(torch.randn(4, 3) if name == 'Lin' else torch.randn(4, 2))
    with pytest.raises(ValueError, match=rf'^{name}\.backward: its output has no gradient'):
        layer.backward()
