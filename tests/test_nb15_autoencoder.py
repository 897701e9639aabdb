"""The transposed convolution, nearest upsampling and the autoencoder's builders from
nbs/15_autoencoder.ipynb, checked against PyTorch in float64."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from exp.nb_06 import conv2d, conv_out_size
from exp.nb_15 import (ConvTranspose, ae_decoder, ae_encoder, auto_encoder, checkerboard_share,
                       conv_transpose2d, conv_transpose_out_size, decode_all, deconv, encode_all,
                       nearest_distance, upsample_nearest)

GEOMETRIES = [  # (input h, w), kernel (kh, kw), stride, padding, output_padding
    ((5, 6), (3, 3), 1, 0, 0), ((5, 6), (3, 3), 2, 1, 1), ((4, 4), (4, 4), 2, 1, 0),
    ((3, 5), (3, 2), 3, 1, 2), ((5, 4), (2, 3), (2, 1), (1, 0), (1, 0)),
    ((1, 1), (1, 1), 1, 0, 0), ((6, 3), (5, 5), (3, 2), (2, 1), (2, 1)),
]


def _case(hw, ks, seed, n=2, ci=3, co=4):
    g = torch.Generator().manual_seed(seed)
    def rand(*shape): return torch.randn(*shape, dtype=torch.float64, generator=g)
    return rand(n, ci, *hw), rand(ci, co, *ks), rand(co)


@pytest.mark.parametrize('i', range(len(GEOMETRIES)))
def test_conv_transpose2d_matches_pytorch_outputs_and_gradients(i):
    hw, ks, s, p, op = GEOMETRIES[i]
    x, w, b = (t.requires_grad_() for t in _case(hw, ks, i))
    ours = conv_transpose2d(x, w, b, s, p, op)
    ref = F.conv_transpose2d(x, w, b, s, p, op)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref)
    g = torch.randn_like(ref)
    for a, r in zip(torch.autograd.grad((ours * g).sum(), (x, w, b)),
                    torch.autograd.grad((ref * g).sum(), (x, w, b))):
        torch.testing.assert_close(a, r)


def test_conv_transpose2d_without_bias_and_unbatched():
    x, w, _ = _case((4, 5), (3, 3), 0)
    torch.testing.assert_close(conv_transpose2d(x, w, stride=2), F.conv_transpose2d(x, w, stride=2))
    torch.testing.assert_close(conv_transpose2d(x[0], w, padding=1),
                               F.conv_transpose2d(x[0], w, padding=1))


def test_conv_transpose2d_is_the_input_gradient_of_conv2d():
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    y = conv2d(x, w, stride=2, padding=1)
    g = torch.randn_like(y)
    grad_x, = torch.autograd.grad((y * g).sum(), x)
    # 9 -> 5 and 8 -> 4 with stride 2: output_padding 0 gives 9 back, 1 gives 8
    torch.testing.assert_close(grad_x, conv_transpose2d(g, w, None, 2, 1, (0, 1)))


@pytest.mark.parametrize('n,ks,s,p,op', [(7, 3, 2, 1, 1), (5, 4, 2, 1, 0), (3, 5, 3, 2, 2),
                                          (1, 1, 1, 0, 0), (6, 2, 1, 0, 0)])
def test_output_size_formula(n, ks, s, p, op):
    x = torch.zeros(1, 1, n, n)
    out = F.conv_transpose2d(x, torch.zeros(1, 1, ks, ks), stride=s, padding=p, output_padding=op)
    assert conv_transpose_out_size(n, ks, s, p, op) == out.shape[-1]
    # a convolution of the same geometry maps the transposed output back to n positions
    assert conv_out_size(out.shape[-1], ks, s, p) == n


@pytest.mark.parametrize('scale', [1, 2, 3, (2, 3), (1, 2)])
def test_upsample_nearest_matches_interpolate(scale):
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    torch.testing.assert_close(upsample_nearest(x, scale),
                               F.interpolate(x, scale_factor=scale, mode='nearest'))


def test_upsample_nearest_gradient_sums_each_block():
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    upsample_nearest(x, 2).sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 4.))


def test_conv_transpose_layer_equals_nn_conv_transpose2d():
    ref = nn.ConvTranspose2d(4, 3, 3, 2, 1, 1).double()
    ours = ConvTranspose(4, 3).double()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 4, 7, 7, dtype=torch.float64)
    torch.testing.assert_close(ours(x), ref(x))


@pytest.mark.parametrize('up', ['nearest', 'transpose'])
def test_autoencoder_shapes_and_vae_sized_encoder(up):
    model = auto_encoder(8, nfs=(4, 8), up=up)
    x = torch.rand(3, 1, 28, 28)
    assert model.encode(x).shape == (3, 8)
    out = model(x)
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1
    assert ae_encoder(8, n_out=16)(x).shape == (3, 16)
    assert ae_decoder(8, (8, 4, 2), c_out=3, size=32)(torch.randn(3, 8)).shape == (3, 3, 32, 32)
    assert deconv(4, 2, up=up)(torch.randn(1, 4, 5, 5)).shape == (1, 2, 10, 10)


def test_nearest_distance():
    a = torch.tensor([[0., 0.], [3., 4.]])
    b = torch.tensor([[0., 1.], [3., 0.], [10., 10.]])
    torch.testing.assert_close(nearest_distance(a, b, bs=1), torch.tensor([1., 4.]))


def test_checkerboard_share_sees_a_period_two_pattern_and_not_a_smooth_one():
    i = torch.arange(28)
    board = ((i[:, None] + i[None, :]) % 2).float()          # (-1)^(i+j) around its mean
    stripes = (i[:, None] % 2).float().expand(28, 28)        # every other row
    smooth = torch.sin(i / 28 * 2 * torch.pi)[:, None] * torch.ones(28)
    assert checkerboard_share(board[None, None] + 3) == pytest.approx(1)
    assert checkerboard_share(stripes[None, None]) == pytest.approx(1)
    assert checkerboard_share(smooth[None, None]) < 1e-12
    assert checkerboard_share(torch.stack([board, smooth])[:, None]) == pytest.approx(0.5)



def test_checkerboard_share_period2_keeps_only_the_three_period_two_bins():
    i = torch.arange(28)
    board = ((i[:, None] + i[None, :]) % 2).float()          # exactly period 2: all its power kept
    # a stripe at half a cycle per pixel, modulated slowly along the other axis: its power is on
    # row 14 of the spectrum but off the three period-2 bins
    beat = ((-1.) ** i)[:, None] * torch.cos(i / 28 * 2 * torch.pi)[None, :]
    assert checkerboard_share(board[None, None], period2=True) == pytest.approx(1)
    assert checkerboard_share(beat[None, None]) == pytest.approx(1)
    assert checkerboard_share(beat[None, None], period2=True) < 1e-12

@pytest.mark.parametrize('call,words', [
    (lambda: conv_transpose2d(torch.randn(1, 3, 4, 4), torch.randn(4, 3, 3, 3)),
     ['(C_in, C_out, kh, kw)', '(1, 3, 4, 4)', '(4, 3, 3, 3)']),
    (lambda: conv_transpose2d(torch.randn(1, 3, 4, 4), torch.randn(3, 2, 3, 3), torch.randn(3)),
     ['bias', '(2,)', '(3,)']),
    (lambda: conv_transpose2d(torch.randn(1, 3, 4, 4), torch.randn(3, 2, 3, 3), stride=2,
                              output_padding=2), ['output_padding', 'stride']),
    (lambda: conv_transpose2d(torch.randn(1, 3, 4, 4), torch.randn(3, 2, 3, 3), stride=0),
     ['stride', '>= 1']),
    (lambda: conv_transpose2d(torch.randn(3, 4), torch.randn(3, 2, 3, 3)), ['(N, C_in, H, W)']),
    (lambda: conv_transpose2d(torch.randn(1, 3, 1, 1), torch.randn(3, 2, 1, 1), padding=1),
     ['empty output', '(1, 3, 1, 1)']),
    (lambda: conv_transpose2d(torch.randn(1, 3, 4, 4), torch.randn(3, 2, 3, 3), stride=(1, 2, 3)),
     ['stride', 'pair']),
    (lambda: upsample_nearest(torch.randn(3, 4, 4)), ['(N, C, H, W)', '(3, 4, 4)']),
    (lambda: upsample_nearest(torch.randn(1, 1, 4, 4), 0), ['scale_factor', '>= 1']),
    (lambda: deconv(4, 2, up='bilinear'), ["'nearest'", "'bilinear'"]),
    (lambda: ae_encoder(8, nfs=(4, 8, 16)), ['28', 'nfs']),
])
def test_bad_input_is_refused_naming_what_is_wrong(call, words):
    with pytest.raises(ValueError) as e: call()
    for word in words: assert word in str(e.value)


def test_encode_and_decode_all_run_in_eval_mode_in_batches_and_restore_the_mode():
    torch.manual_seed(0)
    model = auto_encoder(n_latent=6)
    x = torch.rand(7, 1, 28, 28)
    model.train()
    z = encode_all(model, x, bs=3)   # three batches: 3, 3, 1
    assert model.training and z.shape == (7, 6) and not z.requires_grad
    model.eval()
    with torch.no_grad(): want = model.encode(x)
    torch.testing.assert_close(z, want)
    model.train()
    torch.testing.assert_close(decode_all(model, z, bs=4), model.eval().decode(z).detach())
