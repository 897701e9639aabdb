"""13: the split by chapter, vocabularies, LM_PreLoader's streams, bits per character, and the
Kneser-Ney n-gram baselines (probabilities summing to 1, matched to a counting reference in
float64)."""
import collections
import math

import pytest
import torch
from torch import nn

from exp.nb_13 import (UNK, DataLoader, KneserNey, LM_PreLoader, NovelSplit, Vocab, bits_per_char,
                       chapter_part, char_vocab, cross_entropy_flat, get_lm_dls, lm_nats,
                       ngram_keys, ngram_ladder, split_chapters)


def novel(n_chapters, heading='CHAPTER {}', front='TITLE\n\nBy Someone\n\n'):
    "A fake novel: a title page, then chapters whose text names their number."
    return front + '\n'.join(f'{heading.format(i + 1)}\n\nText of chapter {i + 1}.\n'
                             for i in range(n_chapters))


# ---- the split --------------------------------------------------------------------------------

def test_chapters_join_back_to_the_novel_and_front_matter_goes_with_the_first():
    text = novel(4, heading='Chapter {}')
    chapters = split_chapters(text)
    assert ''.join(chapters) == text and len(chapters) == 4
    assert chapters[0].startswith('TITLE') and chapters[1].startswith('Chapter 2\n')


def test_roman_and_arabic_headings_but_not_a_mention_in_a_sentence():
    text = 'CHAPTER I\nOne.\nCHAPTER XIV\nTwo, as in chapter 3 of it.\nChapter 3\nThree.\n'
    assert len(split_chapters(text)) == 3


def test_a_text_without_headings_is_refused_by_name():
    with pytest.raises(ValueError, match='no chapter heading.*in Letters'):
        split_chapters('Dear Sir,\nno chapters here.', 'Letters')


def test_every_twentieth_chapter_from_the_eleventh_validates_every_tenth_from_the_sixth_is_held():
    parts = [chapter_part(i) for i in range(40)]
    assert [i for i, p in enumerate(parts) if p == 'valid'] == [10, 30]
    assert [i for i, p in enumerate(parts) if p == 'held'] == [5, 15, 25, 35]


def test_split_puts_each_chapter_in_exactly_one_part_in_title_order():
    novels = {'B novel': novel(25), 'A novel': novel(9, heading='Chapter {}')}
    split = NovelSplit(novels)
    assert list(split.train) == ['A novel', 'B novel']          # in title order, as never given
    for t, text in novels.items():
        got = split.train[t] + split.valid.get(t, []) + split.held.get(t, [])
        got = sorted(got, key=text.find)
        assert ''.join(got) == text
    assert split.valid['B novel'] == [split_chapters(novels['B novel'])[10]]
    assert 'A novel' not in split.valid                           # 9 chapters: no 11th
    assert split.held['A novel'] == [split_chapters(novels['A novel'])[5]]
    eleventh = 'Text of chapter 11.'
    assert eleventh in split.valid_text and eleventh not in split.train_text
    assert split.train_text.index('Text of chapter 1.') < split.train_text.index('TITLE', 5)
    with pytest.raises(ValueError, match="part must be one of"): split.text('test')


# ---- vocabularies -----------------------------------------------------------------------------

def test_vocab_order_limits_and_unknown_tokens():
    toks = 'b a b c a b d'.split()
    v = Vocab.create(toks, max_vocab=None, min_freq=1, special=[UNK])
    assert v.itos == [UNK, 'b', 'a', 'c', 'd']                    # by count, ties by string
    assert Vocab.create(toks, min_freq=2, special=[UNK]).itos == [UNK, 'b', 'a']
    assert Vocab.create(toks, max_vocab=3, min_freq=1, special=[UNK]).itos == [UNK, 'b', 'a']
    assert v.numericalize(['a', 'zzz']).tolist() == [2, 0]
    assert v.textify(torch.tensor([1, 2]), sep=' ') == 'b a'


def test_a_vocab_without_unk_names_the_missing_token_and_duplicates_are_refused():
    with pytest.raises(ValueError, match=r"\['z'\] not in the vocabulary"):
        Vocab(['a', 'b']).numericalize('abz')
    with pytest.raises(ValueError, match='listed twice'): Vocab(['a', 'b', 'a'])


def test_character_ids_of_a_string_match_one_lookup_per_character():
    text = 'Mr. Darcy paid £10,000 a year!\n\tÉtonnant.'
    v = char_vocab(text[:20])
    fast = v.numericalize(text)                                   # the code-point table
    slow = v.numericalize(list(text))                             # one dict lookup each
    assert torch.equal(fast, slow) and (fast == v.unk).sum() > 0
    assert char_vocab(text).textify(char_vocab(text).numericalize(text)) == text


# ---- LM_PreLoader -----------------------------------------------------------------------------

def passes(pre, bs):
    return list(DataLoader(pre, bs))


@pytest.mark.parametrize('n,bs,bptt', [(101, 4, 5), (100, 3, 7), (64, 8, 8), (20, 19, 3)])
def test_consecutive_batches_continue_each_stream_and_every_token_but_the_first_is_predicted_once(
        n, bs, bptt):
    ids = torch.arange(n)
    batches = passes(LM_PreLoader(ids, bs, bptt), bs)
    x = torch.cat([xb for xb, _ in batches], 1)
    y = torch.cat([yb for _, yb in batches], 1)
    L = (n - 1) // bs
    assert x.shape == (bs, L) and all(xb.shape[1] == bptt for xb, _ in batches[:-1])
    assert torch.equal(x, ids[:bs * L].view(bs, L))               # row r is stream r, in order
    assert torch.equal(y, x + 1)                                  # targets: one token on
    assert torch.equal(y.flatten(), torch.arange(1, bs * L + 1))  # each predicted once
    assert n - 1 - bs * L < bs                                    # fewer than bs left at the end


def test_items_one_at_a_time_are_the_rows_of_the_batches():
    pre = LM_PreLoader(torch.arange(50), bs=3, bptt=4)
    xb, yb = pre[torch.arange(3, 6)]
    for r in range(3):
        assert torch.equal(pre[3 + r][0], xb[r]) and torch.equal(pre[3 + r][1], yb[r])
    assert torch.equal(pre.predicted(), torch.cat([y for _, y in passes(pre, 3)], 1).flatten())


def test_a_batch_that_mixes_the_short_last_piece_or_an_index_out_of_range_is_refused():
    pre = LM_PreLoader(torch.arange(30), bs=2, bptt=4)            # rows of 14: pieces 4,4,4,2
    with pytest.raises(ValueError, match='short last piece'): pre[torch.tensor([4, 6])]
    with pytest.raises(IndexError, match='from 0 to 7'): pre[8]


def test_bad_arguments_are_refused_naming_them():
    with pytest.raises(ValueError, match='bptt must be a positive'):
        LM_PreLoader(torch.arange(9), 2, 0)
    with pytest.raises(ValueError, match='too few'): LM_PreLoader(torch.arange(3), 4, 2)
    with pytest.raises(ValueError, match='list of tensors'):
        LM_PreLoader(torch.arange(9), 2, 2, True)
    with pytest.raises(ValueError, match='piece 1 must be a 1-d tensor'):
        LM_PreLoader([torch.arange(9), torch.ones(3)], 2, 2)


def test_shuffling_reorders_the_pieces_each_pass_and_keeps_every_token():
    torch.manual_seed(0)
    pieces = [torch.full((10,), i) for i in range(8)]            # piece i is ten i's
    pre = LM_PreLoader(pieces, bs=2, bptt=5, shuffle=True)
    orders = set()
    for _ in range(4):
        x = torch.cat([xb for xb, _ in passes(pre, 2)], 1)
        order = torch.unique_consecutive(x.flatten()).tolist()    # the pieces as the pass read them
        assert sorted(order) == list(range(8))
        orders.add(tuple(order))
    assert len(orders) > 1                                        # a new order in some pass


def test_get_lm_dls_shuffles_training_chapters_but_reads_validation_in_order():
    train, valid = get_lm_dls([torch.arange(20), torch.arange(20, 40)], torch.arange(40), 2, 4)
    assert train.ds.shuffle and not valid.ds.shuffle and valid.bs == 2
    x = torch.cat([xb for xb, _ in valid], 1)
    assert torch.equal(x.flatten(), torch.arange(38))


# ---- bits per character -----------------------------------------------------------------------

def test_bits_per_char_is_total_nats_over_ln2_and_characters():
    assert bits_per_char(math.log(2)) == pytest.approx(1, abs=1e-15)
    # 3 tokens spelling 12 characters at 2 nats each: 6 nats = 6/ln 2 bits over 12 characters
    want = 6 / math.log(2) / 12
    assert bits_per_char(2.0, n_tokens=3, n_chars=12) == pytest.approx(want, rel=1e-15)
    with pytest.raises(ValueError, match='both n_tokens and n_chars'): bits_per_char(1.0, 3)
    with pytest.raises(ValueError, match='n_chars must be a positive'): bits_per_char(1.0, 3, 0)


class TableModel(nn.Module):
    "Next-token log-probabilities from a fixed table indexed by the current token."
    def __init__(self, table):
        super().__init__()
        self.w = nn.Parameter(table.log())
    def forward(self, x): return self.w[x]


def test_lm_nats_is_the_exact_mean_over_every_predicted_token_short_last_batch_included():
    torch.manual_seed(0)
    V, ids = 5, torch.randint(0, 5, (203,))
    table = torch.rand(V, V, dtype=torch.float64).softmax(1)
    pre = LM_PreLoader(ids, bs=4, bptt=7)                         # rows of 50: 7 pieces + 1 of 1
    nats, n = lm_nats(TableModel(table), DataLoader(pre, 4))
    L = (len(ids) - 1) // 4
    want = -table[ids[:4 * L], ids[1:4 * L + 1]].log().mean().item()
    assert n == 4 * L and nats == pytest.approx(want, abs=1e-12)
    xb, yb = next(iter(DataLoader(pre, 4)))
    flat = cross_entropy_flat(TableModel(table)(xb), yb).item()
    assert flat == pytest.approx(-table[xb, yb].log().mean().item(), abs=1e-12)


# ---- n-gram baselines -------------------------------------------------------------------------

def test_ngram_keys_number_each_window_in_base_v():
    assert ngram_keys(torch.tensor([1, 2, 0, 3]), 2, 4).tolist() == [6, 8, 3]
    assert ngram_keys(torch.tensor([1]), 2, 4).numel() == 0
    with pytest.raises(ValueError, match='does not fit'): ngram_keys(torch.arange(3), 11, 100)


TEXT = ('the cat sat on the mat. the dog sat on the log. a cat and a dog met on a mat; '
        'the end of the tale of the cat.')


@pytest.mark.parametrize('n', [1, 2, 3, 4, 5])
def test_kneser_ney_probabilities_sum_to_one_after_seen_unseen_and_short_contexts(n):
    v = char_vocab(TEXT + 'zqx')                                 # z, q, x never in training
    m = KneserNey(v.numericalize(TEXT), n, len(v))
    for ctx in ['', 't', 'the', ' the c', 'zqx', 'qxa', 'ca']:
        p = m.probs(v.numericalize(ctx).tolist())
        assert p.dtype == torch.float64 and (p > 0).all()
        assert p.sum().item() == pytest.approx(1, abs=1e-12), ctx


def reference_kn(text, n, V):
    "Interpolated Kneser-Ney with dicts, one probability at a time, as the formula reads."
    levels = {}
    for k in range(1, n + 1):
        if k == n: a = collections.Counter(text[i:i + k] for i in range(len(text) - k + 1))
        else:
            longer = {text[i:i + k + 1] for i in range(len(text) - k)}
            a = collections.Counter(g[1:] for g in longer)
        n1 = sum(c == 1 for c in a.values()); n2 = sum(c == 2 for c in a.values())
        D = n1 / (n1 + 2 * n2) if n1 else 0.5
        S, T = collections.Counter(), collections.Counter()
        for g, c in a.items(): S[g[:-1]] += c; T[g[:-1]] += 1
        levels[k] = a, D, S, T

    def p(w, h):   # h: up to n-1 characters
        prob = 1 / V
        for k in range(1, len(h) + 2):
            a, D, S, T = levels[k]
            ctx = h[len(h) - k + 1:] if k > 1 else ''
            if S[ctx] > 0: prob = (max(a[ctx + w] - D, 0) + D * T[ctx] * prob) / S[ctx]
        return prob
    return p


@pytest.mark.parametrize('n', [1, 2, 3, 5])
def test_kneser_ney_log_probs_match_a_dictionary_reference_in_float64(n):
    v = char_vocab(TEXT + 'zq')
    m = KneserNey(v.numericalize(TEXT), n, len(v))
    test = 'the rat sat on a log; zq the cat.'
    ref = reference_kn(TEXT, n, len(v))
    want = [math.log(ref(w, test[max(0, t - n + 1):t])) for t, w in enumerate(test)]
    got = m.log_probs(v.numericalize(test))
    assert got.dtype == torch.float64
    assert torch.allclose(got, torch.tensor(want, dtype=torch.float64), rtol=0, atol=1e-12)


def test_the_ladder_goes_down_with_the_order_on_text_like_its_training_text():
    v = char_vocab(TEXT)
    ids = v.numericalize(TEXT * 3)
    ladder = ngram_ladder(ids, v.numericalize(TEXT), len(v), orders=(1, 2, 3))
    assert list(ladder) == [1, 2, 3] and ladder[1] > ladder[2] > ladder[3]
    uniform = -math.log(1 / len(v)) / math.log(2)
    assert ladder[1] < uniform


def test_ids_outside_the_vocabulary_are_refused():
    with pytest.raises(ValueError, match=r'ids must lie in \[0, 3\)'):
        KneserNey(torch.tensor([0, 1, 3]), 2, 3)
