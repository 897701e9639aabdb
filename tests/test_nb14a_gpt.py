"""14a's GPT: the KV cache against full recomputation (float64, greedy), the samplers (top-k keeps
k, nucleus keeps the smallest set with mass >= p, temperature reshapes the distribution drawn
from), weight decay on the matrices only, the model's causality and shapes, and clear errors."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from exp.nb_14 import MultiHeadAttention
from exp.nb_13 import lm_databunchify
from exp.nb_14a import (GPT, GPT_LM, CachedAttention, ClockScheduler, KVCache, curve_at,
                        decay_groups, gpt_generate, gpt_learner, gpt_model, sample_next,
                        timing_differs, top_k_filter, top_p_filter, train_gpt)


def rough_gpt(vocab=13, d=16, layers=2, heads=2, ctx=12, seed=0, **kw):
    "A float64 GPT with large random weights, so that greedy decoding does not repeat one id."
    torch.manual_seed(seed)
    m = GPT(vocab, d, layers, heads, ctx, **kw).double()
    with torch.no_grad():
        for p in m.parameters(): p.normal_(0, 0.5)
    return m


@pytest.mark.parametrize('kw', [{}, dict(norm=nn.LayerNorm,
                                         attn_fn=F.scaled_dot_product_attention)])
def test_cached_greedy_decoding_gives_the_tokens_of_full_recomputation(kw):
    m = rough_gpt(**kw)
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])
    n = 3*m.ctx   # past the context's end: both restart the window from its second half
    cached = gpt_generate(m, prompt, n, temperature=0, cache=True)
    full = gpt_generate(m, prompt, n, temperature=0, cache=False)
    assert cached.shape == (2, 3 + n) and torch.equal(cached, full)
    assert torch.equal(cached[:, :3], prompt)
    assert len(set(cached[0].tolist())) > 3   # a real sequence, not one id again and again


def test_cache_fed_in_pieces_gives_the_scores_of_one_pass():
    m = rough_gpt()
    ids = torch.randint(0, 13, (2, 12))
    caches = m.new_caches()
    pieces = [m(ids[:, a:b], caches) for a, b in [(0, 5), (5, 6), (6, 11), (11, 12)]]
    torch.testing.assert_close(torch.cat(pieces, 1), m(ids), rtol=1e-10, atol=1e-12)
    assert [len(c) for c in caches] == [12, 12]


def test_cached_attention_without_a_cache_is_multi_head_attention():
    torch.manual_seed(0)
    ours, plain = CachedAttention(8, 2).double(), MultiHeadAttention(8, 2).double()
    plain.load_state_dict(ours.state_dict())
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    torch.testing.assert_close(ours(x, is_causal=True), plain(x, is_causal=True))
    with pytest.raises(ValueError, match='causal mask is made here'):
        ours(x, is_causal=True, cache=KVCache())


def test_gpt_is_causal_tied_and_matches_with_torch_pieces():
    ours = rough_gpt()
    theirs = rough_gpt(norm=nn.LayerNorm, attn_fn=F.scaled_dot_product_attention)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randint(0, 13, (3, 12))
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-10, atol=1e-12)
    y = x.clone(); y[:, 7] = (y[:, 7] + 1) % 13
    torch.testing.assert_close(ours(y)[:, :7], ours(x)[:, :7], rtol=0, atol=0)
    assert ours.head.weight is ours.tok.weight and ours(x).shape == (3, 12, 13)
    assert GPT(13, 16, 2, 2, 12, tie=False).head.weight is not None


def test_gpt_refuses_what_it_cannot_read():
    m = GPT(13, 16, 1, 2, ctx=8)
    with pytest.raises(ValueError, match=r'positions 0\.\.8 do not fit the context of 8'):
        m(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match=r'expected ids \(bs, T\), got \(9,\)'):
        m(torch.zeros(9, dtype=torch.long))
    caches = m.new_caches(); m(torch.zeros(1, 6, dtype=torch.long), caches)
    with pytest.raises(ValueError, match=r'positions 6\.\.8'):
        m(torch.zeros(1, 3, dtype=torch.long), caches)
    with pytest.raises(ValueError, match=f"bptt {GPT_LM['ctx'] + 1} is longer than the context"):
        gpt_model(13, {**GPT_LM, 'bptt': GPT_LM['ctx'] + 1})
    with pytest.raises(ValueError, match=r'ids must be \(bs, T0\)'):
        gpt_generate(m, torch.zeros(1, 0, dtype=torch.long), 3)
    with pytest.raises(ValueError, match='n must be a whole number'):
        gpt_generate(m, torch.zeros(1, 2, dtype=torch.long), 0)


def test_generate_is_seeded_never_draws_banned_ids_and_keeps_the_mode():
    m = rough_gpt().train()
    p = torch.tensor([[1, 2]])
    a = gpt_generate(m, p, 40, seed=3, banned=[0, 4])
    assert torch.equal(a, gpt_generate(m, p, 40, seed=3, banned=[0, 4]))
    assert not torch.equal(a, gpt_generate(m, p, 40, seed=4, banned=[0, 4]))
    assert not {0, 4} & set(a[0, 2:].tolist()) and m.training


def test_top_k_keeps_the_k_largest_of_each_row():
    torch.manual_seed(0)
    logits = torch.randn(4, 10)
    for k in (1, 3, 10, 20):
        kept = top_k_filter(logits, k) > -math.inf
        assert (kept.sum(-1) == min(k, 10)).all()
        top = logits.topk(min(k, 10), -1).indices
        assert kept.gather(-1, top).all()
    with pytest.raises(ValueError, match='k must be a whole number'): top_k_filter(logits, 0)


@pytest.mark.parametrize('p', [0.05, 0.3, 0.5, 0.9, 0.999, 1.0])
def test_nucleus_keeps_the_smallest_set_with_mass_at_least_p(p):
    torch.manual_seed(1)
    logits = torch.randn(5, 12, dtype=torch.float64) * 2
    kept = top_p_filter(logits, p) > -math.inf
    probs = F.softmax(logits, -1)
    for row in range(5):
        order = probs[row].argsort(descending=True).tolist()
        n = kept[row].sum().item()
        assert set(order[:n]) == set(kept[row].nonzero().flatten().tolist())   # the most likely
        assert probs[row, order[:n]].sum() >= p - 1e-12                        # mass >= p
        assert n == 1 or probs[row, order[:n - 1]].sum() < p                  # and no fewer
    with pytest.raises(ValueError, match=r'p must be in \(0, 1\]'): top_p_filter(logits, 0)
    with pytest.raises(ValueError, match=r'p must be in \(0, 1\]'): top_p_filter(logits, 1.5)


def test_nucleus_of_half_precision_scores_is_summed_in_float32_and_keeps_their_dtype():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0, -1.0]])
    for dtype in (torch.bfloat16, torch.float16):
        out = top_p_filter(logits.to(dtype), 0.9)
        assert out.dtype == dtype
        assert torch.equal(out > -math.inf, top_p_filter(logits, 0.9) > -math.inf)


def test_temperature_reshapes_the_distribution_drawn_from():
    logits = torch.tensor([1.0, 0.0, -1.0])
    g = torch.Generator().manual_seed(0)
    for t in (0.5, 1.0, 3.0):
        draws = sample_next(logits.expand(40000, 3), temperature=t, generator=g).flatten()
        freq = torch.bincount(draws, minlength=3).double() / len(draws)
        torch.testing.assert_close(freq, F.softmax(logits.double() / t, -1), rtol=0, atol=0.01)
    assert sample_next(torch.tensor([[0.1, 2.0, 0.3]]), temperature=0).item() == 1
    assert sample_next(torch.tensor([[0.1, 2.0, 0.3]]), top_k=1, generator=g).item() == 1
    with pytest.raises(ValueError, match='temperature must be a finite number >= 0'):
        sample_next(logits, temperature=-1)


def test_weight_decay_goes_to_the_matrices_only():
    m = GPT(13, 16, 2, 2, 12)
    decay, rest = decay_groups(m, 0.1)
    assert decay['wd'] == 0.1 and rest['wd'] == 0.
    assert all(p.dim() == 2 for p in decay['params']) and all(p.dim() == 1 for p in rest['params'])
    n_decay = 2 + 2*4   # the (tied) embedding, positions; per block qkv, proj and two mlp layers
    assert len(decay['params']) == n_decay
    assert sum(len(g['params']) for g in (decay, rest)) == len(list(m.parameters()))
    with pytest.raises(ValueError, match='wd must be a finite number >= 0'): decay_groups(m, -1)
    learn = gpt_learner(None, {**GPT_LM, 'wd': 0.3}, progress=False, model=m)
    opt = learn.opt_func(learn.splitter(m), lr=1e-3)
    assert [pg['wd'] for pg in opt.param_groups] == [0.3, 0.]


def test_curve_at_interpolates_between_points_and_never_extrapolates():
    xs, ys = [10., 20., 30.], [3.0, 2.5, 2.1]
    assert curve_at(xs, ys, 20.) == 2.5 and curve_at(xs, ys, 10.) == 3.0
    assert curve_at(xs, ys, 25.) == pytest.approx(2.3) and curve_at(xs, ys, 30.) == 2.1
    assert curve_at(xs, ys, 5.) is None and curve_at(xs, ys, 31.) is None
    assert curve_at([4.], [1.5], 4.) == 1.5 and curve_at([], [], 1.) is None
    with pytest.raises(ValueError, match='3 xs but 2 ys'): curve_at(xs, ys[:2], 15.)


def test_timing_differs_names_what_differs_and_refuses_an_unrecorded_run():
    here = dict(device='cpu', gpu=None, threads=1, cpu='X', torch='2.0')
    assert timing_differs(dict(here), here) == []
    assert timing_differs({**here, 'threads': 2, 'cpu': 'Y'}, here) == ['threads', 'cpu']
    assert timing_differs(None, here) == ['where (not recorded)']


def test_clock_scheduler_follows_the_clock_and_stops_when_the_time_is_up():
    torch.manual_seed(0)
    data = lm_databunchify([torch.randint(0, 10, (2000,))], torch.randint(0, 10, (100,)), 4, 8,
                           10)
    s = {**GPT_LM, 'd_model': 16, 'n_heads': 2, 'ctx': 8, 'bptt': 8, 'bs': 4}
    ticks = iter(range(1000))   # each reading of the clock one second later
    sched = ClockScheduler('lr', lambda pos: pos, seconds=4.5, clock=lambda: float(next(ticks)))
    learn = gpt_learner(data, s, progress=False)
    learn.logger = lambda *a: None
    learn.fit(1, cbs=[sched])
    # read at 1, 2, 3, 4 seconds: four steps at those fractions; at 5 > 4.5 it stops
    assert sched.steps == 4 and len(learn.data.train_dl) > 5
    assert learn.opt.param_groups[0]['lr'] == pytest.approx(4 / 4.5)
    with pytest.raises(ValueError, match='seconds'): ClockScheduler('lr', lambda p: p, 0)
    learn, _ = train_gpt(data, s, progress=False, seconds=30.)   # the data run out first
    assert learn.clock_steps == len(data.train_dl)
