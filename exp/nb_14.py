# Generated from nbs/14_attention.ipynb by notebook2script.py:
# edit the notebook, not this file.


from exp.nb_13b import *
import os, re, subprocess, sys, time
from pathlib import Path


def check_mask(mask, target, device, name):
    """Refuse a mask that is not boolean or floating, on another device than q, or that does not
    broadcast to the scores' shape `target`."""
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise TypeError(f'{name}: mask must be boolean (True: may attend) or floating (added to '
                        f'the scores), got {mask.dtype}')
    if mask.device != device: raise ValueError(f'{name}: mask is on {mask.device}, q on {device}')
    try: fits = torch.broadcast_shapes(mask.shape, target) == target
    except RuntimeError: fits = False
    if not fits:
        raise ValueError(f'{name}: mask of shape {tuple(mask.shape)} does not broadcast to the '
                         f'scores (..., Tq, Tk) = {tuple(target)}')

def check_attention_args(q, k, v, mask=None, name='scaled_dot_product_attention'):
    """Refuse what attention cannot use, naming the shapes: q (..., Tq, D), k (..., Tk, D),
    v (..., Tk, Dv) of one floating dtype, on one device, batch dimensions that broadcast, and a
    mask that `check_mask` accepts. Returns the broadcast batch shape."""
    shapes = f'q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}'
    if min(q.dim(), k.dim(), v.dim()) < 2:
        raise ValueError(f'{name}: q, k and v need (..., time, features), got {shapes}')
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f'{name}: q and k must have the same last dimension, got {shapes}')
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f'{name}: k and v must have the same time length, got {shapes}')
    if not q.is_floating_point() or not q.dtype == k.dtype == v.dtype:
        raise TypeError(f'{name}: q, k and v must share one floating dtype, got '
                        f'{q.dtype}, {k.dtype}, {v.dtype}')
    if not q.device == k.device == v.device:
        raise ValueError(f'{name}: q, k and v must be on one device, got '
                         f'{q.device}, {k.device}, {v.device}')
    try: batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except RuntimeError:
        raise ValueError(f'{name}: the batch dimensions do not broadcast: {shapes}') from None
    if mask is not None: check_mask(mask, (*batch, q.shape[-2], k.shape[-2]), q.device, name)
    return batch


def stable_softmax(x, dim=-1):
    """Softmax along `dim` with each row's max subtracted first, so no exp overflows; a row of
    -inf only (nothing to attend to) gives zeros, as F.scaled_dot_product_attention does."""
    m = x.detach().amax(dim, keepdim=True)
    e = (x - m.masked_fill(m == -math.inf, 0)).exp()
    s = e.sum(dim, keepdim=True)
    return e / s.masked_fill(s == 0, 1)


def causal_mask(tq, tk, device=None, q_start=0, k_start=0):
    """(tq, tk) boolean: True where query q_start+i may attend to key k_start+j, that is
    k_start+j <= q_start+i (the lower triangle from the top-left corner, as is_causal)."""
    qi = torch.arange(q_start, q_start + tq, device=device)
    kj = torch.arange(k_start, k_start + tk, device=device)
    return kj[None, :] <= qi[:, None]

def padding_mask(lengths, t):
    """(bs, 1, 1, t) boolean from the `lengths` (bs,) of padded sequences: True for the first
    lengths[b] positions, so it broadcasts over heads and queries of (bs, heads, tq, t) scores."""
    if lengths.dim() != 1:
        raise ValueError(f'padding_mask: lengths must be 1-d (bs,), got {tuple(lengths.shape)}')
    return (torch.arange(t, device=lengths.device) < lengths[:, None])[:, None, None, :]

def masked_scores(scores, mask=None, is_causal=False):
    "`scores` (..., Tq, Tk) with what `mask` and `is_causal` hide set to -inf (a float mask added)."
    if is_causal:
        scores = scores.masked_fill(~causal_mask(*scores.shape[-2:], scores.device), -math.inf)
    if mask is None: return scores
    return scores.masked_fill(~mask, -math.inf) if mask.dtype == torch.bool else scores + mask

def attention_weights(q, k, mask=None, is_causal=False, scale=None):
    """softmax(q k^T * scale) over the keys, masked: (..., Tq, Tk). `scale` defaults to
    1/sqrt(D), Vaswani et al.'s eq. (1)."""
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    return stable_softmax(masked_scores(q @ k.transpose(-2, -1) * scale, mask, is_causal))

def scaled_dot_product_attention(q, k, v, mask=None, is_causal=False, scale=None):
    """Attention(Q, K, V) = softmax(Q K^T / sqrt(D)) V on q (..., Tq, D), k (..., Tk, D) and
    v (..., Tk, Dv): `F.scaled_dot_product_attention`'s arguments, `mask` in place of attn_mask
    (boolean, True: may attend; or floating, added to the scores). Returns (..., Tq, Dv)."""
    check_attention_args(q, k, v, mask)
    return attention_weights(q, k, mask, is_causal, scale) @ v


def test_near64(a, b, rtol=1e-10, atol=1e-12):
    "Assert float64 tensors `a` and `b` agree to about 12 digits."
    test(a, b, partial(near, rtol=rtol, atol=atol), 'near in float64')
test_near64.__test__ = False   # a check to call, not a test for pytest to collect

def check_against(ours, theirs, *inputs, **kwargs):
    """Run `ours` and `theirs` on copies of the tensors `inputs` (float64, requiring gradients),
    and assert the outputs and the gradients of a random weighting of them agree."""
    xs = [[t.detach().clone().requires_grad_() for t in inputs] for _ in range(2)]
    ya, yb = ours(*xs[0], **kwargs), theirs(*xs[1], **kwargs)
    test_near64(ya, yb)
    g = torch.randn_like(ya)
    (ya * g).sum().backward(); (yb * g).sum().backward()
    for a, b in zip(*xs): test_near64(a.grad, b.grad)


class MultiHeadAttention(nn.Module):
    """Self-attention with `n_heads` heads on (bs, T, d_model). `qkv`: one Linear making q, k, v
    (in that order, as nn.MultiheadAttention's in_proj_weight); `proj`: the output Linear;
    `attn_fn(q, k, v, mask, is_causal=...)`: this chapter's scaled_dot_product_attention unless
    given (F.scaled_dot_product_attention takes the same arguments)."""
    def __init__(self, d_model, n_heads, bias=True, attn_fn=None):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f'MultiHeadAttention: d_model {d_model} is not a multiple of '
                             f'n_heads {n_heads}')
        self.d_model,self.n_heads = d_model,n_heads
        self.qkv = nn.Linear(d_model, 3*d_model, bias=bias)
        self.proj = nn.Linear(d_model, d_model, bias=bias)
        self.attn_fn = scaled_dot_product_attention if attn_fn is None else attn_fn

    def split_heads(self, t):
        "(bs, T, d_model) -> (bs, n_heads, T, d_model/n_heads)"
        bs, T, C = t.shape
        return t.view(bs, T, self.n_heads, C//self.n_heads).transpose(1, 2)

    def merge_heads(self, t):
        "(bs, n_heads, T, head size) -> (bs, T, n_heads*head size): split_heads undone."
        bs, H, T, D = t.shape
        return t.transpose(1, 2).reshape(bs, T, H*D)

    def forward(self, x, mask=None, is_causal=False):
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f'MultiHeadAttention: expected (bs, T, {self.d_model}), got '
                             f'{tuple(x.shape)}')
        q, k, v = map(self.split_heads, self.qkv(x).chunk(3, -1))
        return self.proj(self.merge_heads(self.attn_fn(q, k, v, mask, is_causal=is_causal)))


def sinusoidal_embedding(positions, d, base=10000):
    """Vaswani et al.'s position encoding: (len(positions), d), sin(p / base^(2i/d)) in column
    2i and cos in column 2i+1, for a 1-d tensor of `positions` (integers or floats)."""
    if positions.dim() != 1:
        raise ValueError(f'sinusoidal_embedding: positions must be 1-d, got shape '
                         f'{tuple(positions.shape)}')
    if d % 2: raise ValueError(f'sinusoidal_embedding: d must be even (sin, cos pairs), got {d}')
    dtype = positions.dtype if positions.is_floating_point() else torch.get_default_dtype()
    freqs = base ** (-torch.arange(0, d, 2, device=positions.device, dtype=dtype) / d)
    angles = positions.to(dtype)[:, None] * freqs
    return torch.stack([angles.sin(), angles.cos()], -1).flatten(1)


class RotaryEmbedding(nn.Module):
    """Su et al.'s rotary position embedding for heads of size `head_dim`: `rotate(t, positions)`
    turns feature pair (2i, 2i+1) of t (..., T, head_dim) at position p by the angle
    p * base^(-2i/head_dim). No parameters."""
    def __init__(self, head_dim, base=10000):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f'RotaryEmbedding: head_dim must be even (pairs), got {head_dim}')
        self.head_dim,self.base = head_dim,base

    def cos_sin(self, positions, dtype):
        "cos and sin of every position's angles, (T, head_dim/2) each, in `dtype`."
        i = torch.arange(0, self.head_dim, 2, device=positions.device, dtype=torch.float64)
        angles = positions.to(torch.float64)[:, None] * self.base ** (-i / self.head_dim)
        return angles.cos().to(dtype), angles.sin().to(dtype)

    def rotate(self, t, positions=None):
        T, D = t.shape[-2:]
        if D != self.head_dim:
            raise ValueError(f'RotaryEmbedding: expected (..., T, {self.head_dim}), got '
                             f'{tuple(t.shape)}')
        if positions is None: positions = torch.arange(T, device=t.device)
        if positions.shape != (T,):
            raise ValueError(f'RotaryEmbedding: positions must be 1-d of length T = {T}, got '
                             f'shape {tuple(positions.shape)}')
        cos, sin = self.cos_sin(positions.to(t.device), t.dtype)
        x1, x2 = t[..., 0::2], t[..., 1::2]
        return torch.stack([x1*cos - x2*sin, x1*sin + x2*cos], -1).flatten(-2)

    forward = rotate


class TokenLayerNorm(nn.Module):
    """LayerNorm over the last dimension (each token's `d` features) with a scale and shift per
    feature. 07's LayerNorm pools over every dimension after the batch, which on (bs, T, C) mixes
    the time steps, later ones included; this one never does."""
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.d,self.eps = d,eps
        self.weight,self.bias = nn.Parameter(torch.ones(d)),nn.Parameter(torch.zeros(d))

    def forward(self, x):
        if x.shape[-1] != self.d:
            raise ValueError(f'TokenLayerNorm: expected (..., {self.d}), got {tuple(x.shape)}')
        mu = x.mean(-1, keepdim=True)
        var = (x - mu).pow(2).mean(-1, keepdim=True)   # biased, as F.layer_norm
        return (x - mu) * (var + self.eps).rsqrt() * self.weight + self.bias


class TransformerBlock(nn.Module):
    """x + attn(ln1(x)), then x + mlp(ln2(x)) (pre-norm); with prenorm=False, ln1(x + attn(x)),
    then ln2(x + mlp(x)) (post-norm, Vaswani et al.). mlp: Linear(d_model, d_ff), GELU,
    Linear(d_ff, d_model), d_ff = 4 d_model unless given; dropout on each branch's output."""
    def __init__(self, d_model, n_heads, d_ff=None, dropout=0., prenorm=True, attn_fn=None):
        super().__init__()
        d_ff = 4*d_model if d_ff is None else d_ff
        self.prenorm = prenorm
        self.ln1,self.ln2 = TokenLayerNorm(d_model),TokenLayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads, attn_fn=attn_fn)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mask=None, is_causal=False):
        def attn(h): return self.drop(self.attn(h, mask, is_causal=is_causal))
        def mlp(h): return self.drop(self.mlp(h))
        if self.prenorm:
            x = x + attn(self.ln1(x))
            return x + mlp(self.ln2(x))
        x = self.ln1(x + attn(x))
        return self.ln2(x + mlp(x))


# TransformerBlock's parameter names -> nn.TransformerEncoderLayer's for the same weights
ENCODER_LAYER_NAMES = {
    'attn.qkv.weight': 'self_attn.in_proj_weight', 'attn.qkv.bias': 'self_attn.in_proj_bias',
    'attn.proj.weight': 'self_attn.out_proj.weight', 'attn.proj.bias': 'self_attn.out_proj.bias',
    'mlp.0.weight': 'linear1.weight', 'mlp.0.bias': 'linear1.bias',
    'mlp.2.weight': 'linear2.weight', 'mlp.2.bias': 'linear2.bias',
    'ln1.weight': 'norm1.weight', 'ln1.bias': 'norm1.bias',
    'ln2.weight': 'norm2.weight', 'ln2.bias': 'norm2.bias'}

def check_block_against_torch(prenorm, d_model=16, n_heads=4, bs=2, T=7, seed=0):
    """Assert TransformerBlock equals nn.TransformerEncoderLayer (GELU, dropout 0, norm_first =
    prenorm, train mode: no fast path) with the same random weights, causal, in float64: outputs
    and the gradients of the input and of every parameter."""
    torch.manual_seed(seed)
    ours = TransformerBlock(d_model, n_heads, prenorm=prenorm).double()
    theirs = nn.TransformerEncoderLayer(d_model, n_heads, 4*d_model, dropout=0.,
                                        activation='gelu', batch_first=True,
                                        norm_first=prenorm).double().train()
    names = list(ENCODER_LAYER_NAMES)
    for mod, want in [(ours, names), (theirs, ENCODER_LAYER_NAMES.values())]:
        have = sorted(n for n, _ in mod.named_parameters())
        if have != sorted(want):
            raise ValueError(f'check_block_against_torch: {type(mod).__name__} has parameters '
                             f'{have}, ENCODER_LAYER_NAMES pairs {sorted(want)}')
    weights = [p.detach() + 0.1 * torch.randn_like(p) for p in map(ours.get_parameter, names)]
    mask = ~causal_mask(T, T)
    def run_ours(x, *ws):
        return torch.func.functional_call(ours, dict(zip(names, ws)), (x,), {'is_causal': True})
    def run_theirs(x, *ws):
        return torch.func.functional_call(theirs, dict(zip(ENCODER_LAYER_NAMES.values(), ws)),
                                          (x,), {'src_mask': mask, 'is_causal': True})
    check_against(run_ours, run_theirs, torch.randn(bs, T, d_model, dtype=torch.float64), *weights)


def finite_or_zero(m):
    "`m` with -inf (a row that saw nothing yet) replaced by 0, so `x - m` is never -inf - -inf."
    return m.masked_fill(m == -math.inf, 0)

def online_softmax(x, block_size=16):
    """Softmax over the last dimension of `x`, reading it in blocks of `block_size`: one pass
    keeps the running max m and the running sum l of exp(x - m), rescaling l whenever m grows
    (Milakov & Gimelshein 2018), a second writes exp(x - m) / l. A row of -inf gives zeros."""
    check_count('online_softmax', block_size=block_size)
    m = x.new_full((*x.shape[:-1], 1), -math.inf)
    l = x.new_zeros((*x.shape[:-1], 1))
    for j in range(0, x.shape[-1], block_size):
        block = x[..., j:j+block_size]
        m_new = torch.maximum(m, block.amax(-1, keepdim=True))
        shift = finite_or_zero(m_new)
        l = l * (m - shift).exp() + (block - shift).exp().sum(-1, keepdim=True)
        m = m_new
    return (x - finite_or_zero(m)).exp() / l.masked_fill(l == 0, 1)


def visible_key_blocks(i, rows, tk, block_size, is_causal):
    "Starts of the key blocks that queries i..i+rows-1 may see (all, or up to the diagonal)."
    return range(0, min(tk, i + rows) if is_causal else tk, block_size)

def tile_scores(qi, kj, i, j, scale, is_causal):
    "Scores of the query block starting at row i against the key block starting at row j."
    s = qi @ kj.transpose(-2, -1) * scale
    if is_causal and j + kj.shape[-2] - 1 > i:   # the diagonal crosses this block
        s = s.masked_fill(~causal_mask(qi.shape[-2], kj.shape[-2], s.device, i, j), -math.inf)
    return s


class TiledAttention(torch.autograd.Function):
    """FlashAttention on tensors: forward by blocks with the online softmax, saving only q, k, v,
    the output and each query's log-sum-exp; backward recomputing each block's weights."""
    @staticmethod
    def forward(ctx, q, k, v, is_causal, block_size, scale):
        Tq, Tk = q.shape[-2], k.shape[-2]
        out, lse = q.new_empty(*q.shape[:-1], v.shape[-1]), q.new_empty(*q.shape[:-1], 1)
        for i in range(0, Tq, block_size):
            qi = q[..., i:i+block_size, :]
            m = q.new_full((*qi.shape[:-1], 1), -math.inf)
            l, acc = torch.zeros_like(m), q.new_zeros(*qi.shape[:-1], v.shape[-1])
            for j in visible_key_blocks(i, qi.shape[-2], Tk, block_size, is_causal):
                s = tile_scores(qi, k[..., j:j+block_size, :], i, j, scale, is_causal)
                m_new = torch.maximum(m, s.amax(-1, keepdim=True))
                p, rescale = (s - m_new).exp(), (m - m_new).exp()
                l = l * rescale + p.sum(-1, keepdim=True)
                acc = acc * rescale + p @ v[..., j:j+block_size, :]
                m = m_new
            out[..., i:i+block_size, :] = acc / l
            lse[..., i:i+block_size, :] = m + l.log()
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.settings = is_causal, block_size, scale
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse = ctx.saved_tensors
        is_causal, bsz, scale = ctx.settings
        dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
        delta = (dout * out).sum(-1, keepdim=True)
        for i in range(0, q.shape[-2], bsz):
            qs = slice(i, i + bsz)
            qi, doi = q[..., qs, :], dout[..., qs, :]
            for j in visible_key_blocks(i, qi.shape[-2], k.shape[-2], bsz, is_causal):
                ks = slice(j, j + bsz)
                p = (tile_scores(qi, k[..., ks, :], i, j, scale, is_causal) - lse[..., qs, :]).exp()
                dv[..., ks, :] += p.transpose(-2, -1) @ doi
                ds = p * (doi @ v[..., ks, :].transpose(-2, -1) - delta[..., qs, :])
                dq[..., qs, :] += ds @ k[..., ks, :] * scale
                dk[..., ks, :] += ds.transpose(-2, -1) @ qi * scale
        return dq, dk, dv, None, None, None


def tiled_attention(q, k, v, is_causal=False, block_size=64, scale=None):
    """scaled_dot_product_attention computed by FlashAttention's tiling (`TiledAttention`): the
    same result, without ever holding more than a block_size x block_size tile of scores."""
    batch = check_attention_args(q, k, v, name='tiled_attention')
    check_count('tiled_attention', block_size=block_size)
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    q, k, v = (t.expand(*batch, *t.shape[-2:]) for t in (q, k, v))
    return TiledAttention.apply(q, k, v, is_causal, block_size, scale)


def process_memory(key='VmRSS'):
    """Bytes of this process's resident memory (`VmRSS`), or of its peak since the last
    `reset_peak_memory` (`VmHWM`), from /proc/self/status (Linux)."""
    with open('/proc/self/status') as f: kb = re.search(rf'^{key}:\s+(\d+) kB', f.read(), re.M)
    return int(kb.group(1)) * 1024

def reset_peak_memory():
    "Make VmHWM start again from the current resident size (Linux's /proc/self/clear_refs)."
    with open('/proc/self/clear_refs', 'w') as f: f.write('5')


def attention_forwards(block_size=128):
    "name -> attention function (q, k, v, is_causal=...) compared in this chapter and its bench."
    return {'naive': scaled_dot_product_attention,
            'tiled': partial(tiled_attention, block_size=block_size),
            'torch': F.scaled_dot_product_attention}

def measure_forward_peak(method, T, d=64, device='cpu', block_size=128, n_heads=1, seed=0):
    """(peak bytes beyond what was held before, seconds) of one causal forward pass of
    `attention_forwards()[method]` on `n_heads` heads of T x d float32 q, k, v, without
    gradients, in this process. Meant for a fresh process: see forward_peak_bytes."""
    f, device = attention_forwards(block_size)[method], torch.device(device)
    torch.manual_seed(seed)
    q, k, v = (torch.randn(1, n_heads, T, d, device=device) for _ in range(3))
    cuda = device.type == 'cuda'
    with torch.no_grad():
        w = max(1, T // 8)   # a short pass first loads the code, freeing less than T will use
        f(q[..., :w, :], k[..., :w, :], v[..., :w, :], is_causal=True)
        sync(device)
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        else: reset_peak_memory(); base = process_memory('VmRSS')
        start = time.perf_counter()
        out = f(q, k, v, is_causal=True)
        sync(device)
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated(device) if cuda else process_memory('VmHWM')
    del out
    return peak - base, seconds


# glibc's malloc gives every block of this many bytes or more its own pages, returned when freed
MMAP_THRESHOLD = 64 * 1024

def forward_peak_bytes(method, T, d=64, device='cpu', block_size=128, n_heads=1):
    """`measure_forward_peak` in a fresh Python process on one thread, so that no memory freed by
    an earlier pass is reused, with glibc's malloc told to map each block of MMAP_THRESHOLD bytes
    or more on its own (resident memory then follows the tensors alive): (peak bytes, seconds)."""
    import exp
    root = str(Path(exp.__file__).resolve().parents[1])
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MALLOC_MMAP_THRESHOLD_': str(MMAP_THRESHOLD),
           'PYTHONPATH': os.pathsep.join([root, os.environ.get('PYTHONPATH', '')])}
    code = ('import torch; torch.set_num_threads(1)\nfrom exp.nb_14 import measure_forward_peak\n'
            f'print(*measure_forward_peak({method!r}, {T}, {d}, {str(device)!r}, {block_size}, '
            f'{n_heads}))')
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env)
    if res.returncode:
        last = (res.stderr.strip().splitlines() or ['no output'])[-1]
        raise RuntimeError(f'forward_peak_bytes: the child measuring {method} at T={T} failed: '
                           f'{last}')
    peak, seconds = res.stdout.split()[-2:]
    return int(peak), float(seconds)


# What `from exp.nb_14 import *` gives (generated by notebook2script.py;
# a name bound only in a branch not taken is left out).
from exp.nb_13b import __all__ as _all_nb_13b
__all__ = _all_nb_13b + [
    'Path', 'check_mask', 'check_attention_args', 'stable_softmax', 'causal_mask',
    'padding_mask', 'masked_scores', 'attention_weights', 'scaled_dot_product_attention',
    'test_near64', 'check_against', 'MultiHeadAttention', 'sinusoidal_embedding',
    'RotaryEmbedding', 'TokenLayerNorm', 'TransformerBlock', 'ENCODER_LAYER_NAMES',
    'check_block_against_torch', 'finite_or_zero', 'online_softmax', 'visible_key_blocks',
    'tile_scores', 'TiledAttention', 'tiled_attention', 'process_memory', 'reset_peak_memory',
    'attention_forwards', 'measure_forward_peak', 'MMAP_THRESHOLD', 'forward_peak_bytes'
]
__all__ = [_name for _name in dict.fromkeys(__all__) if _name in globals()]
