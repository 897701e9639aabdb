# Generated from nbs/14a_gpt.ipynb by notebook2script.py:
# edit the notebook, not this file.


from exp.nb_14 import *
import time


class KVCache:
    """The keys and values one attention layer has made so far, each (bs, heads, T, head size):
    `append` adds a step's and gives back all of them."""
    def __init__(self): self.k = self.v = None
    def __len__(self): return 0 if self.k is None else self.k.shape[-2]
    def append(self, k, v):
        self.k = k if self.k is None else torch.cat([self.k, k], -2)
        self.v = v if self.v is None else torch.cat([self.v, v], -2)
        return self.k, self.v

class CachedAttention(MultiHeadAttention):
    """14's MultiHeadAttention that may keep a `KVCache`: given one, the new positions' queries
    attend to every key so far (the cached ones and their own, up to themselves)."""
    def forward(self, x, mask=None, is_causal=False, cache=None):
        if cache is None: return super().forward(x, mask, is_causal=is_causal)
        if mask is not None or is_causal:
            raise ValueError('CachedAttention: with a cache the causal mask is made here; '
                             'give no mask or is_causal')
        q, k, v = map(self.split_heads, self.qkv(x).chunk(3, -1))
        k, v = cache.append(k, v)
        past = k.shape[-2] - q.shape[-2]   # query i sits at position past + i
        mask = causal_mask(q.shape[-2], k.shape[-2], x.device, q_start=past)
        return self.proj(self.merge_heads(self.attn_fn(q, k, v, mask)))


class GPTBlock(TransformerBlock):
    """14's pre-norm TransformerBlock, causal, with CachedAttention and no dropout; `norm` makes
    its two LayerNorms (14's TokenLayerNorm, or nn.LayerNorm, which 14 checked it against)."""
    def __init__(self, d_model, n_heads, d_ff=None, attn_fn=None, norm=TokenLayerNorm):
        super().__init__(d_model, n_heads, d_ff, attn_fn=attn_fn)
        self.attn = CachedAttention(d_model, n_heads, attn_fn=attn_fn)
        self.ln1,self.ln2 = norm(d_model),norm(d_model)

    def forward(self, x, cache=None):
        if cache is None: return super().forward(x, is_causal=True)
        x = x + self.attn(self.ln1(x), cache=cache)
        return x + self.mlp(self.ln2(x))

class GPT(nn.Module):
    """A decoder-only transformer (Radford et al. 2018): token and learned position embeddings,
    `n_layers` GPTBlocks, a final LayerNorm and the output layer, tied to the token embedding
    unless `tie=False`. Reads up to `ctx` positions; (bs, T) ids -> (bs, T, vocab_sz) scores."""
    def __init__(self, vocab_sz, d_model=128, n_layers=2, n_heads=4, ctx=128, d_ff=None,
                 attn_fn=None, norm=TokenLayerNorm, tie=True):
        super().__init__()
        self.ctx,self.n_layers = ctx,n_layers
        self.tok,self.pos = nn.Embedding(vocab_sz, d_model),nn.Embedding(ctx, d_model)
        self.blocks = nn.ModuleList(GPTBlock(d_model, n_heads, d_ff, attn_fn, norm)
                                    for _ in range(n_layers))
        self.ln = norm(d_model)
        self.head = nn.Linear(d_model, vocab_sz, bias=False)
        if tie: self.head.weight = self.tok.weight
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        """GPT-2's start: every matrix N(0, 0.02), the residual branches' last layers scaled by
        1/sqrt(2 n_layers) (two branches a block add up along the stream), biases 0, norms 1."""
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                last = name.endswith(('attn.proj.weight', 'mlp.2.weight'))
                p.normal_(0, 0.02 / (math.sqrt(2*self.n_layers) if last else 1))
            elif name.endswith('weight'): p.fill_(1.)   # a LayerNorm's gain
            else: p.zero_()

    def new_caches(self): return [KVCache() for _ in self.blocks]

    def forward(self, ids, caches=None):
        if ids.dim() != 2: raise ValueError(f'GPT: expected ids (bs, T), got {tuple(ids.shape)}')
        start = 0 if caches is None else len(caches[0])
        if start + ids.shape[1] > self.ctx:
            raise ValueError(f'GPT: positions {start}..{start + ids.shape[1] - 1} do not fit the '
                             f'context of {self.ctx}')
        h = self.tok(ids) + self.pos(torch.arange(start, start + ids.shape[1],
                                                  device=ids.device))
        for i, b in enumerate(self.blocks): h = b(h, None if caches is None else caches[i])
        return self.head(self.ln(h))


def decay_groups(model, wd):
    """Two param groups for 09's optimizers: the matrices (embeddings and Linear weights, dim >= 2)
    with weight decay `wd`, the vectors (biases, LayerNorm gains and shifts) with none."""
    check_range('decay_groups', wd=wd)
    params = list(model.parameters())   # a tied weight once
    groups = [dict(params=[p for p in params if p.dim() >= 2], wd=wd),
              dict(params=[p for p in params if p.dim() < 2], wd=0.)]
    return [g for g in groups if g['params']]


GPT_LM = dict(d_model=128, n_layers=2, n_heads=4, ctx=64, bs=16, bptt=64, epochs=1, lr=7e-3,
              wd=0.1, clip=1., pct_start=0.25, seed=0)
GPT_EVERY = 240   # training steps between the points of the validation curve (ValidCurve)
GPT_STEPS = 2400  # the main run's steps, a multiple of GPT_EVERY: the last point is the end

def gpt_model(vocab_sz, settings=GPT_LM, attn_fn=F.scaled_dot_product_attention,
              norm=nn.LayerNorm):
    """The GPT of `settings` (seeded with `seed`); PyTorch's attention and LayerNorm by default,
    which 14 checked ours against and which are faster (timed above)."""
    s = settings
    if s['bptt'] > s['ctx']:
        raise ValueError(f"gpt_model: bptt {s['bptt']} is longer than the context {s['ctx']}")
    torch.manual_seed(s['seed'])
    return GPT(vocab_sz, s['d_model'], s['n_layers'], s['n_heads'], s['ctx'], attn_fn=attn_fn,
               norm=norm)

def gpt_learner(data, settings=GPT_LM, cbs=None, progress=True, model=None):
    """A Learner for `gpt_model` (or `model`) on `data`, on `def_device`: AdamW (09's Adam, weight
    decay `wd` on the matrices only), GradientClipping (`clip`), the loss per epoch and batch."""
    model = gpt_model(data.c_out, settings) if model is None else model
    cbfs = [partial(DeviceCallback, def_device), partial(AvgStatsCallback, []), EpochHistory,
            Recorder, partial(GradientClipping, settings['clip'])]
    if progress: cbfs.append(ProgressCallback)
    return Learner(model, data, cross_entropy_flat, opt_func=adam_opt(), lr=settings['lr'],
                   splitter=partial(decay_groups, wd=settings['wd']), cbs=cbs, cb_funcs=cbfs)

class ClockScheduler(ParamScheduler):
    """05's ParamScheduler with the schedule's position read from the clock: the fraction of
    `seconds` the fit has run (read once the device has finished). Once `seconds` have passed it
    stops the fit before the next step, so runs scheduled this way get equal training time, to
    within a step, each with its whole schedule. `steps` counts the steps it let run."""
    def __init__(self, pname, sched_funcs, seconds, clock=time.perf_counter):
        super().__init__(pname, sched_funcs)
        check_positive('ClockScheduler', seconds=seconds)
        self.seconds,self.clock = seconds,clock
    def begin_fit(self):
        super().begin_fit()
        self.start,self.steps = self.clock(),0
    def begin_batch(self):
        if not self.in_train: return
        sync(model_device(self.run.model))
        pos = (self.clock() - self.start) / self.seconds
        if pos >= 1: raise CancelTrainException()
        self.steps += 1
        for pg,f in zip(self.opt.param_groups, self.funcs): pg[self.pname] = f(pos)

def train_gpt(data, settings=GPT_LM, cbs=None, progress=True, model=None, seconds=None):
    """Train `gpt_learner` with one-cycle, over `epochs` passes or, given `seconds`, by the clock
    (ClockScheduler: until `seconds` have passed or the data run out); returns (learner, seconds).
    By the clock, `learner.clock_steps` is the number of steps trained."""
    learn = gpt_learner(data, settings, cbs, progress, model)
    scheds = sched_1cycle(settings['lr'], settings['pct_start'])
    if seconds is not None:
        scheds = [ClockScheduler(s.pname, s.sched_funcs, seconds) for s in scheds]
    start = time.perf_counter()
    learn.fit(settings['epochs'], cbs=scheds)
    if seconds is not None: learn.clock_steps = scheds[0].steps
    sync(model_device(learn.model))
    return learn, time.perf_counter() - start


def lstm_curve():
    """13a's validation curve (steps, bpc, seconds) and where it was timed (`run_where`, or None
    if its JSON predates that), saved beside its language model (`char_lm` loads it, or trains and
    saves it as 13a does when the cache has none)."""
    _, _, meta = char_lm(progress=False)
    curve = meta['results'].get('curve')
    if not curve:
        raise ValueError(f"lstm_curve: {char_lm_path().with_suffix('.json')} has no validation "
                         'curve (saved before 13a kept one): run 13a again')
    return curve, meta.get('where')

def curve_at(xs, ys, x):
    """The curve through the points (xs, ys), xs increasing, read at `x` (linear interpolation);
    None outside the points: nothing is extrapolated."""
    if len(xs) != len(ys): raise ValueError(f'curve_at: {len(xs)} xs but {len(ys)} ys')
    if not xs or not xs[0] <= x <= xs[-1]: return None
    for x0, y0, x1, y1 in zip(xs, ys, xs[1:], ys[1:]):
        if x <= x1: return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return ys[0]   # a single point

def timing_differs(saved, here):
    """The fields of `run_where` on which a saved run and this one differ (saved None: it was not
    recorded). Their seconds are comparable only when there are none."""
    if not saved: return ['where (not recorded)']
    return [k for k in here if saved.get(k) != here[k]]


def top_k_filter(logits, k):
    """`logits` (..., vocab) with all but the `k` largest of each row set to -inf (a value tied
    with the k-th is kept too)."""
    check_count('top_k_filter', k=k)
    kth = logits.topk(min(k, logits.shape[-1]), -1).values[..., -1:]
    return logits.masked_fill(logits < kth, -math.inf)

def top_p_filter(logits, p):
    """Nucleus filtering (Holtzman et al. 2019): `logits` (..., vocab) keeping, in each row, the
    smallest set of most likely tokens whose probabilities sum to at least `p`; the rest -inf."""
    if not 0 < p <= 1: raise ValueError(f'top_p_filter: p must be in (0, 1], got {p!r}')
    half = logits.dtype in (torch.float16, torch.bfloat16)   # summed in float32 at least
    probs, order = F.softmax(logits.float() if half else logits, -1).sort(-1, descending=True)
    before = probs.cumsum(-1) - probs   # the mass of the tokens more likely than each
    drop = (before >= p).scatter(-1, order, before >= p)   # back in the vocabulary's order
    return logits.masked_fill(drop, -math.inf)

def sample_next(logits, temperature=1., top_k=None, top_p=None, generator=None):
    """One id per row of `logits` (..., vocab), drawn from softmax(logits / temperature) after
    `top_k_filter` and `top_p_filter` (where given); temperature 0: the most likely (greedy)."""
    check_range('sample_next', temperature=temperature)
    if temperature == 0: return logits.argmax(-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None: logits = top_k_filter(logits, top_k)
    if top_p is not None: logits = top_p_filter(logits, top_p)
    probs = F.softmax(logits.float(), -1)
    flat = torch.multinomial(probs.reshape(-1, probs.shape[-1]).cpu(), 1, generator=generator)
    return flat.reshape(*probs.shape[:-1], 1).to(logits.device)


@torch.no_grad()
def gpt_generate(model, ids, n, temperature=1., top_k=None, top_p=None, seed=0, cache=True,
                 banned=()):
    """`ids` (bs, T0) followed by `n` ids `model` writes, each from `sample_next` with a
    generator seeded by `seed`; never one of `banned`. Once the window read would exceed the
    context, it restarts from its last ctx/2 ids. With `cache`, each step feeds the new id only
    (KVCache keeps the window's keys and values); without, the whole window each step. The model
    is left in the mode it was in."""
    check_count('gpt_generate', n=n)
    if ids.dim() != 2 or ids.shape[1] == 0:
        raise ValueError(f'gpt_generate: ids must be (bs, T0) with T0 >= 1, got {tuple(ids.shape)}')
    was_training, g = model.training, torch.Generator().manual_seed(seed)
    out, start, caches = ids.to(model_device(model)), 0, None
    model.eval()
    try:
        for _ in range(n):
            if out.shape[1] - start > model.ctx:   # the window is full: its second half goes on
                start, caches = out.shape[1] - model.ctx//2, None
            if not cache: logits = model(out[:, start:])
            elif caches is None: caches = model.new_caches(); logits = model(out[:, start:], caches)
            else: logits = model(out[:, -1:], caches)
            logits = logits[:, -1].clone()
            if banned: logits[:, list(banned)] = -math.inf
            out = torch.cat([out, sample_next(logits, temperature, top_k, top_p, g)], 1)
    finally: model.train(was_training)
    return out


# What `from exp.nb_14a import *` gives (generated by notebook2script.py;
# a name bound only in a branch not taken is left out).
from exp.nb_14 import __all__ as _all_nb_14
__all__ = _all_nb_14 + [
    'KVCache', 'CachedAttention', 'GPTBlock', 'GPT', 'decay_groups', 'GPT_LM', 'GPT_EVERY',
    'GPT_STEPS', 'gpt_model', 'gpt_learner', 'ClockScheduler', 'train_gpt', 'lstm_curve',
    'curve_at', 'timing_differs', 'top_k_filter', 'top_p_filter', 'sample_next', 'gpt_generate'
]
__all__ = [_name for _name in dict.fromkeys(__all__) if _name in globals()]
