"""14's attention: scaled dot-product and multi-head attention against PyTorch's in float64
(outputs and gradients, masks included), the per-token LayerNorm and the transformer block, the
position embeddings (rotary's scores depend only on the offset), the online softmax and the tiled
(FlashAttention) attention against the naive one, and the errors bad input gets."""
import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from exp.nb_07 import LayerNorm
import exp.nb_14 as nb14
from exp.nb_14 import (ENCODER_LAYER_NAMES, MultiHeadAttention, RotaryEmbedding, TokenLayerNorm,
                       TransformerBlock, attention_weights, causal_mask, check_against,
                       check_block_against_torch, forward_peak_bytes, online_softmax,
                       padding_mask, scaled_dot_product_attention, sinusoidal_embedding,
                       stable_softmax, tiled_attention)

F64 = dict(dtype=torch.float64)
META = torch.device('meta')


def close64(a, b):
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def qkv(tq=5, tk=7, d=8, dv=4, batch=(2, 3), seed=0):
    torch.manual_seed(seed)
    return (torch.randn(*batch, tq, d, **F64), torch.randn(*batch, tk, d, **F64),
            torch.randn(*batch, tk, dv, **F64))


def mask_cases(tq=5, tk=7, bs=2):
    "name -> (our keyword arguments, F.scaled_dot_product_attention's) for the same masking."
    pad = padding_mask(torch.tensor([tk, 3]), tk)
    bias = torch.randn(tq, tk, **F64); bias[0, 2] = -math.inf
    row = torch.ones(bs, 1, tq, tk, dtype=torch.bool); row[0, 0, 1] = False
    return {'none': ({}, {}), 'causal': (dict(is_causal=True), dict(is_causal=True)),
            'padding': (dict(mask=pad), dict(attn_mask=pad)),
            'float': (dict(mask=bias), dict(attn_mask=bias)),
            'hidden row': (dict(mask=row), dict(attn_mask=row)),
            'padding+causal': (dict(mask=pad, is_causal=True),
                               dict(attn_mask=pad & causal_mask(tq, tk))),
            'scale': (dict(scale=0.3), dict(scale=0.3))}


@pytest.mark.parametrize('case', list(mask_cases()))
def test_attention_matches_torch_float64_outputs_and_gradients(case):
    ours_kw, theirs_kw = mask_cases()[case]
    check_against(partial(scaled_dot_product_attention, **ours_kw),
                  partial(F.scaled_dot_product_attention, **theirs_kw), *qkv())


def test_a_query_that_may_attend_to_nothing_gets_zeros_and_no_gradient():
    q, k, v = (t.requires_grad_() for t in qkv())
    mask = torch.ones(5, 7, dtype=torch.bool); mask[2] = False
    out = scaled_dot_product_attention(q, k, v, mask)
    out.sum().backward()
    assert (out[..., 2, :] == 0).all() and not out.isnan().any()
    assert (q.grad[..., 2, :] == 0).all() and not k.grad.isnan().any()


def test_stable_softmax_does_not_overflow_and_is_shift_invariant():
    s = torch.tensor([[1., 2., 3.], [1000., 1001., 1002.]])
    assert not (s.exp() / s.exp().sum(-1, keepdim=True)).isfinite().all()   # the naive one
    torch.testing.assert_close(stable_softmax(s)[1], stable_softmax(s)[0])
    torch.testing.assert_close(stable_softmax(s), F.softmax(s, -1))


def test_masks_hide_exactly_what_they_say():
    assert causal_mask(3, 3).tolist() == [[True, False, False], [True, True, False],
                                          [True, True, True]]
    # offsets cut the same triangle's pieces: rows 2..3 against keys 1..3
    assert torch.equal(causal_mask(2, 3, q_start=2, k_start=1), causal_mask(4, 4)[2:4, 1:4])
    pm = padding_mask(torch.tensor([3, 1]), 4)
    assert pm.shape == (2, 1, 1, 4) and pm[:, 0, 0].tolist() == [[True] * 3 + [False],
                                                                [True] + [False] * 3]
    w = attention_weights(*qkv(4, 4, batch=(2, 1))[:2], pm, is_causal=True)
    assert torch.equal(w > 0, (causal_mask(4, 4) & pm).expand(2, 1, 4, 4))


def test_masks_are_made_on_the_inputs_device():
    # meta tensors stand in for a GPU: a mask made on the CPU would not mix with them
    q, k, v = (torch.empty(2, 3, 6, 8, device=META) for _ in range(3))
    assert scaled_dot_product_attention(q, k, v, is_causal=True).device == META
    assert tiled_attention(q, k, v, is_causal=True, block_size=4).device == META
    assert padding_mask(torch.tensor([6, 2], device=META), 6).device == META
    assert RotaryEmbedding(8).rotate(q).device == META
    assert sinusoidal_embedding(torch.arange(6, device=META), 8).device == META


@pytest.mark.parametrize('args, error, message', [
    (dict(k=(2, 3, 7, 4)), ValueError,
     r'q and k must have the same last dimension, got q \(2, 3, 5, 8\), k \(2, 3, 7, 4\)'),
    (dict(v=(2, 3, 6, 4)), ValueError,
     r'k and v must have the same time length, got .* k \(2, 3, 7, 8\), v \(2, 3, 6, 4\)'),
    (dict(q=(8,)), ValueError, r'q, k and v need \(\.\.\., time, features\), got q \(8,\)'),
    (dict(k=(4, 3, 7, 8), v=(4, 3, 7, 4)), ValueError,
     r'the batch dimensions do not broadcast: q \(2, 3, 5, 8\), k \(4, 3, 7, 8\)'),
    (dict(mask=torch.ones(5, 5, dtype=torch.bool)), ValueError,
     r'mask of shape \(5, 5\) does not broadcast to the scores .* = \(2, 3, 5, 7\)'),
    (dict(mask=torch.ones(5, 7, dtype=torch.long)), TypeError,
     'mask must be boolean .* got torch.int64'),
])
def test_bad_input_is_refused_naming_the_argument_and_shapes(args, error, message):
    shapes = dict(q=(2, 3, 5, 8), k=(2, 3, 7, 8), v=(2, 3, 7, 4))
    shapes.update({n: s for n, s in args.items() if n in shapes})
    t = {n: torch.randn(*s) for n, s in shapes.items()}
    with pytest.raises(error, match='^scaled_dot_product_attention: ' + message):
        scaled_dot_product_attention(t['q'], t['k'], t['v'], args.get('mask'))


def test_mixed_dtypes_and_devices_are_refused():
    q, k, v = qkv()
    with pytest.raises(TypeError, match='one floating dtype, got torch.float64, torch.float32'):
        scaled_dot_product_attention(q, k.float(), v)
    with pytest.raises(ValueError, match='on one device, got cpu, meta'):
        scaled_dot_product_attention(q, k.to(META), v)


def copy_from_torch(ours, theirs):
    with torch.no_grad():
        ours.qkv.weight.copy_(theirs.in_proj_weight); ours.qkv.bias.copy_(theirs.in_proj_bias)
        ours.proj.weight.copy_(theirs.out_proj.weight); ours.proj.bias.copy_(theirs.out_proj.bias)
    return ours


@pytest.mark.parametrize('kind', ['none', 'causal', 'padding'])
def test_multihead_matches_nn_multiheadattention_float64(kind):
    torch.manual_seed(1)
    d, h, bs, T = 12, 3, 2, 6
    theirs = nn.MultiheadAttention(d, h, batch_first=True).double()
    ours = copy_from_torch(MultiHeadAttention(d, h).double(), theirs)
    x = torch.randn(bs, T, d, **F64)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    lengths = torch.tensor([6, 2])
    if kind == 'causal':
        y1 = ours(x1, is_causal=True)
        y2 = theirs(x2, x2, x2, attn_mask=~causal_mask(T, T), need_weights=False)[0]
    elif kind == 'padding':
        y1 = ours(x1, padding_mask(lengths, T))
        y2 = theirs(x2, x2, x2, key_padding_mask=~padding_mask(lengths, T)[:, 0, 0],
                    need_weights=False)[0]
    else: y1, y2 = ours(x1), theirs(x2, x2, x2, need_weights=False)[0]
    close64(y1, y2)
    g = torch.randn_like(y1)
    (y1 * g).sum().backward(); (y2 * g).sum().backward()
    close64(x1.grad, x2.grad)
    close64(ours.qkv.weight.grad, theirs.in_proj_weight.grad)
    close64(ours.qkv.bias.grad, theirs.in_proj_bias.grad)
    close64(ours.proj.weight.grad, theirs.out_proj.weight.grad)
    close64(ours.proj.bias.grad, theirs.out_proj.bias.grad)


def test_multihead_takes_torch_attention_and_splits_heads_by_feature_slices():
    torch.manual_seed(0)
    ours = MultiHeadAttention(8, 2).double()
    with_torch = MultiHeadAttention(8, 2, attn_fn=F.scaled_dot_product_attention).double()
    with_torch.load_state_dict(ours.state_dict())
    x = torch.randn(3, 5, 8, **F64)
    close64(ours(x, is_causal=True), with_torch(x, is_causal=True))
    heads = ours.split_heads(x)
    assert heads.shape == (3, 2, 5, 4) and torch.equal(heads[:, 1], x[..., 4:])
    assert torch.equal(ours.merge_heads(heads), x)
    assert MultiHeadAttention(8, 2, bias=False).qkv.bias is None


def test_multihead_refuses_bad_sizes():
    with pytest.raises(ValueError, match='d_model 10 is not a multiple of n_heads 3'):
        MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match=r'expected \(bs, T, 8\), got \(2, 5, 6\)'):
        MultiHeadAttention(8, 2)(torch.randn(2, 5, 6))


def test_token_layernorm_matches_f_layer_norm_float64():
    torch.manual_seed(0)
    ln = TokenLayerNorm(6).double()
    w, b = torch.randn(6, **F64), torch.randn(6, **F64)
    def ours(x, w, b): return torch.func.functional_call(ln, {'weight': w, 'bias': b}, (x,))
    def theirs(x, w, b): return F.layer_norm(x, (6,), w, b, 1e-5)
    check_against(ours, theirs, torch.randn(2, 4, 6, **F64) * 3 + 1, w, b)
    with pytest.raises(ValueError, match=r'expected \(\.\.\., 6\), got \(2, 4, 5\)'):
        ln(torch.randn(2, 4, 5, **F64))


def test_token_layernorm_keeps_time_steps_apart_where_07s_mixes_them():
    x = torch.randn(1, 10, 8)
    later = x.clone(); later[:, -1] += 5.   # only the last token changes
    tln, ln07 = TokenLayerNorm(8), LayerNorm()
    assert torch.equal(tln(later)[:, :-1], tln(x)[:, :-1])
    assert not torch.allclose(ln07(later)[:, 0], ln07(x)[:, 0])   # the future leaks through 07's


@pytest.mark.parametrize('prenorm', [True, False])
def test_block_computes_pre_or_post_norm_residuals(prenorm):
    torch.manual_seed(0)
    blk = TransformerBlock(8, 2, prenorm=prenorm).double()
    assert blk.mlp[0].out_features == 32 and isinstance(blk.mlp[1], nn.GELU)
    x = torch.randn(2, 5, 8, **F64)
    if prenorm:
        h = x + blk.attn(blk.ln1(x), is_causal=True)
        want = h + blk.mlp(blk.ln2(h))
    else:
        h = blk.ln1(x + blk.attn(x, is_causal=True))
        want = blk.ln2(h + blk.mlp(h))
    close64(blk(x, is_causal=True), want)
    later = x.clone(); later[:, 3:] = 0.
    close64(blk(later, is_causal=True)[:, :3], blk(x, is_causal=True)[:, :3])   # causal


@pytest.mark.parametrize('prenorm', [True, False])
def test_block_matches_nn_transformer_encoder_layer_float64(prenorm):
    # outputs and the gradients of the input and all parameters, causal, same random weights
    check_block_against_torch(prenorm, seed=1)


def test_block_comparison_catches_a_different_block(monkeypatch):
    class TanhGeluBlock(TransformerBlock):   # GELU's tanh approximation: close, not equal
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.mlp[1] = nn.GELU(approximate='tanh')
    monkeypatch.setattr(nb14, 'TransformerBlock', TanhGeluBlock)
    with pytest.raises(AssertionError):
        check_block_against_torch(True)


def test_block_comparison_refuses_names_that_do_not_pair(monkeypatch):
    names = dict(ENCODER_LAYER_NAMES); del names['ln2.bias']
    monkeypatch.setattr(nb14, 'ENCODER_LAYER_NAMES', names)
    with pytest.raises(ValueError, match='TransformerBlock has parameters .* ENCODER_LAYER_NAMES'):
        check_block_against_torch(False)


def test_torch_attention_matches_ours_in_float32_on_a_longer_input():
    # the stand-in used from 14a on: float32, causal, a few hundred tokens
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 512, 32) for _ in range(3))
    torch.testing.assert_close(F.scaled_dot_product_attention(q, k, v, is_causal=True),
                               scaled_dot_product_attention(q, k, v, is_causal=True),
                               rtol=1e-4, atol=1e-5)


def test_sinusoidal_embedding_follows_the_formula():
    pe = sinusoidal_embedding(torch.arange(50), 16)
    assert pe.shape == (50, 16)
    assert pe[9, 6].item() == pytest.approx(math.sin(9 / 10000 ** (6 / 16)), abs=1e-6)
    assert pe[9, 7].item() == pytest.approx(math.cos(9 / 10000 ** (6 / 16)), abs=1e-6)
    t = sinusoidal_embedding(torch.tensor([0.5, 2.25], **F64), 4, base=100)
    assert t.dtype == torch.float64
    assert t[1, 2].item() == pytest.approx(math.sin(2.25 / 100 ** 0.5))
    with pytest.raises(ValueError, match=r'positions must be 1-d, got shape \(2, 3\)'):
        sinusoidal_embedding(torch.zeros(2, 3), 4)
    with pytest.raises(ValueError, match='d must be even'): sinusoidal_embedding(torch.arange(3), 5)


def test_rotary_scores_depend_only_on_the_offset():
    torch.manual_seed(0)
    rope, T = RotaryEmbedding(16), 20
    q, k = torch.randn(16, **F64), torch.randn(16, **F64)
    scores = rope.rotate(q.expand(T, 16)) @ rope.rotate(k.expand(T, 16)).T
    for off in range(-T + 1, T):
        d = scores.diagonal(off)
        close64(d, d[0].expand_as(d))
    # and for whole (B, H, T, D) heads: shifting every position by 7 changes no score
    qh, kh = torch.randn(2, 3, T, 16, **F64), torch.randn(2, 3, T, 16, **F64)
    pos = torch.arange(T)
    s0 = rope.rotate(qh, pos) @ rope.rotate(kh, pos).transpose(-2, -1)
    s7 = rope.rotate(qh, pos + 7) @ rope.rotate(kh, pos + 7).transpose(-2, -1)
    close64(s0, s7)
    assert not torch.allclose(s0, qh @ kh.transpose(-2, -1))   # it does change the scores


def test_rotary_rotates_pairs_by_position_times_frequency():
    rope = RotaryEmbedding(4, base=100)
    t = torch.zeros(1, 3, 4, **F64); t[..., 0] = 1.; t[..., 2] = 1.   # (1, 0) in each pair
    out = rope.rotate(t)
    for p in range(3):
        for i, theta in enumerate([1., 100 ** -0.5]):
            close64(out[0, p, 2*i:2*i+2], torch.tensor([math.cos(p*theta), math.sin(p*theta)],
                                                      **F64))
    x = torch.randn(2, 9, 4, **F64)
    close64(rope.rotate(x[:, 5:], torch.arange(5, 9)), rope.rotate(x)[:, 5:])   # generation
    close64(rope.rotate(x).norm(dim=-1), x.norm(dim=-1))
    with pytest.raises(ValueError, match=r'expected \(\.\.\., T, 4\), got \(2, 9, 6\)'):
        rope.rotate(torch.randn(2, 9, 6))
    with pytest.raises(ValueError, match=r'1-d of length T = 9, got shape \(8,\)'):
        rope.rotate(x, torch.arange(8))
    with pytest.raises(ValueError, match='head_dim must be even'): RotaryEmbedding(5)


@pytest.mark.parametrize('block_size', [1, 3, 16, 40, 64])
def test_online_softmax_equals_softmax_float64(block_size):
    torch.manual_seed(0)
    x = torch.randn(3, 4, 40, **F64) * 20
    x[0, 0, :30] = -math.inf; x[1, 1] = -math.inf; x[2, 2, -1] = 500.
    close64(online_softmax(x, block_size), stable_softmax(x))
    assert (online_softmax(x, block_size)[1, 1] == 0).all()


def test_online_softmax_refuses_a_block_size_below_1():
    with pytest.raises(ValueError, match='online_softmax: block_size must be a whole number >= 1'):
        online_softmax(torch.randn(3, 4), 0)


@pytest.mark.parametrize('shapes', [
    ((2, 3, 33, 8), (2, 3, 33, 8), (2, 3, 33, 4)),
    ((3, 20, 8), (1, 29, 8), (29, 8)),         # batch dimensions that broadcast, Tq < Tk
    ((1, 30, 8), (1, 12, 8), (1, 12, 8)),      # Tq > Tk
    ((1, 2, 64, 8),) * 3,                      # blocks of 16 and 64 divide T: only full blocks
])
@pytest.mark.parametrize('is_causal', [False, True])
@pytest.mark.parametrize('block_size', [1, 5, 16, 64])
def test_tiled_attention_equals_naive_float64(shapes, is_causal, block_size):
    torch.manual_seed(0)
    q, k, v = (torch.randn(*s, **F64) for s in shapes)
    check_against(partial(tiled_attention, is_causal=is_causal, block_size=block_size),
                  partial(scaled_dot_product_attention, is_causal=is_causal), q, k, v)


def test_tiled_attention_keeps_no_score_matrix_for_backward():
    q, k, v = (torch.randn(1, 1, 512, 16, requires_grad=True) for _ in range(3))
    saved = {}
    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        tiled_attention(q, k, v, is_causal=True, block_size=32)
    # q, k, v, the output and one log-sum-exp per query; a 512 x 512 matrix would be 1 MiB
    assert sum(saved.values()) == 4 * 512 * 16 * 4 + 512 * 4


def test_tiled_attention_refuses_bad_input():
    q = torch.randn(2, 5, 8)
    with pytest.raises(ValueError, match='tiled_attention: block_size must be a whole number'):
        tiled_attention(q, q, q, block_size=0)
    with pytest.raises(ValueError, match=r'^tiled_attention: q and k must have the same last'):
        tiled_attention(q, q[..., :4], q)


def test_forward_peak_grows_with_the_square_for_naive_only():
    # fresh processes: the naive pass holds T x T matrices, the tiled one a few tiles
    T = 1024
    naive, _ = forward_peak_bytes('naive', T)
    tiled, _ = forward_peak_bytes('tiled', T)
    assert naive > T * T * 4 > 4 * tiled


def test_forward_peak_names_the_child_that_failed():
    with pytest.raises(RuntimeError, match="the child measuring nope at T=8 failed: KeyError"):
        forward_peak_bytes('nope', 8)


def test_forward_peak_measures_in_a_child_on_the_device_asked(monkeypatch):
    # the child gets the device, one thread and glibc's fixed mapping threshold
    import subprocess
    from types import SimpleNamespace
    seen = {}
    def run(cmd, capture_output, text, env):
        seen.update(code=cmd[-1], env=env)
        return SimpleNamespace(returncode=0, stdout='123 0.5\n', stderr='')
    monkeypatch.setattr(subprocess, 'run', run)
    assert forward_peak_bytes('tiled', 64, device=torch.device('cuda', 1)) == (123, 0.5)
    assert "measure_forward_peak('tiled', 64, 64, 'cuda:1', 128, 1)" in seen['code']
    assert seen['env']['OMP_NUM_THREADS'] == '1'
    assert seen['env']['MALLOC_MMAP_THRESHOLD_'] == str(64 * 1024)
