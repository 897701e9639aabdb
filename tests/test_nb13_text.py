"""13: the split by chapter, vocabularies, the word rules, byte-pair encoding's round trip,
LM_PreLoader's streams, bits per character, the classification samplers and padding, and the
Kneser-Ney n-gram baselines (probabilities summing to 1, matched to a counting reference in
float64)."""
import collections
import math

import pytest
import torch
from torch import nn

from exp.nb_13 import (BOS, EOS, PAD, TK_MAJ, TK_REP, TK_UP, TK_WREP, UNK, BPE, DataLoader,
                       Dataset, KneserNey, Learner, LM_PreLoader, NovelSplit,
                       NumericalizeProcessor, SortishSampler, SortSampler, TokenizeProcessor, Vocab,
                       adam_opt, add_bos_eos, bits_per_char, chapter_part, char_data, char_vocab,
                       cross_entropy_flat, deal_caps, default_spec_tok, get_clas_dls, get_lm_dls,
                       learn_bpe, lm_databunchify, lm_nats, ngram_keys, ngram_ladder, pad_collate,
                       pretokenize, print_ladder, replace_all_caps, replace_rep, replace_wrep,
                       sep_punct, split_chapters, split_contractions, tokenize_words)


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


def test_chapters_of_a_part_end_in_newlines_and_join_to_its_text():
    split = NovelSplit({'B': novel(12), 'A': novel(3)})
    chapters = split.chapters('train')
    assert all(c.endswith('\n') for c in chapters) and ''.join(chapters) == split.train_text
    assert split.train_text.count('TITLE') == 2


def test_char_data_numericalizes_train_and_valid_with_the_training_vocabulary():
    split = NovelSplit({'A': novel(25)})
    vocab, train, valid = char_data(split)
    assert vocab.textify(train) == split.train_text and vocab.textify(valid) == split.valid_text
    _, chapters, _ = char_data(split, by_chapter=True)
    assert len(chapters) == len(split.train['A'])
    assert torch.equal(torch.cat(chapters), train)


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


# ---- words ------------------------------------------------------------------------------------

def test_a_character_four_times_or_more_becomes_xxrep_and_three_stays():
    assert replace_rep('Oh!!!!').split() == ['Oh', TK_REP, '4', '!']
    assert replace_rep('a------b').split() == ['a', TK_REP, '6', '-', 'b']
    assert replace_rep('Ooo!!!') == 'Ooo!!!'


def test_a_word_four_times_or_more_becomes_xxwrep_and_a_longer_word_breaks_the_run():
    assert replace_wrep('no, no, no, no, no!').split() == [TK_WREP, '5', 'no', '!']
    assert replace_wrep('no no no nod') == 'no no no nod'
    assert replace_wrep('so so so') == 'so so so'


def test_punctuation_gets_spaces_but_an_apostrophe_inside_a_word_does_not():
    assert sep_punct('Well,"she said;--_Emma_.').split() == [
        'Well', ',', '"', 'she', 'said', ';', '-', '-', '_', 'Emma', '_', '.']
    assert sep_punct("'Tis o'clock, sisters' hats").split() == [
        "'", 'Tis', "o'clock", ',', 'sisters', "'", 'hats']


def test_contractions_split_into_word_and_clitic():
    assert split_contractions("I don't think Darcy's they'll I'm").split() == [
        'I', 'do', "n't", 'think', 'Darcy', "'s", 'they', "'ll", 'I', "'m"]


def test_capitals_become_xxup_and_a_capital_initial_xxmaj_and_mixed_case_stays():
    assert replace_all_caps(['HER', 'I', 'Ok', 'x']) == [TK_UP, 'her', 'I', 'Ok', 'x']
    assert deal_caps(['Emma', 'I', 'McDonald', 'was']) == [TK_MAJ, 'emma', TK_MAJ, 'i',
                                                         'McDonald', 'was']
    assert add_bos_eos(['a']) == [BOS, 'a', EOS]


def test_tokenize_words_applies_every_rule_capitals_before_capitalised_words():
    got = tokenize_words("CHAPTER I\nEmma wasn't HOME!!!!")
    assert got == [BOS, TK_UP, 'chapter', TK_MAJ, 'i', TK_MAJ, 'emma', 'was', "n't", TK_UP, 'home',
                   TK_REP, '4', '!', EOS]
    assert tokenize_words('a b', post_rules=[]) == ['a', 'b']


def test_processors_learn_the_vocabulary_on_the_first_call_and_keep_it():
    tok, num = TokenizeProcessor(), NumericalizeProcessor(max_vocab=60000, min_freq=2)
    train = num(tok(['The cat sat. The cat ran.', 'A cat!']))
    assert num.vocab.itos[:8] == default_spec_tok and 'cat' in num.vocab.stoi
    assert 'ran' not in num.vocab.stoi                            # seen once: min_freq=2
    valid = num(tok(['The dog sat.']))
    assert num.deprocess(valid)[0] == [BOS, TK_MAJ, 'the', UNK, UNK, '.', EOS]
    assert tok.deproc1(num.deproc1(train[1])) == f'{BOS} {TK_MAJ} {UNK} cat {UNK} {EOS}'


# ---- byte-pair encoding -----------------------------------------------------------------------

SAMPLE = ("It is a truth universally acknowledged, that a single man in possession\n\n"
          "of a good fortune, must be in want of a wife.  _Emma_ paid £4,000--'twas\tall!")


def test_chunks_cover_the_text_exactly_with_spaces_going_before_words():
    chunks = pretokenize(SAMPLE)
    assert ''.join(chunks) == SAMPLE
    assert ' truth' in chunks and ' £' in chunks and '  ' not in ''.join(chunks[:3])


def test_the_most_frequent_pair_is_merged_first_and_ties_go_to_the_first_in_order():
    # in 'aaab aaab ab': (a, a) 4 times, (a, b) 3, ( , a) 2 -> merge aa first
    assert learn_bpe('aaab aaab ab', 1) == [('a', 'a')]
    assert learn_bpe('cd\nab', 1) == [('a', 'b')]                # a tie: ('a','b') < ('c','d')
    merges = learn_bpe('low lower lowest low low', 10)
    assert merges[:3] == [('l', 'o'), ('lo', 'w'), (' ', 'low')]


def test_encoding_applies_the_merges_in_the_order_learned():
    bpe = BPE([('l', 'o'), ('lo', 'w'), ('e', 'r')], 'lowerst ')
    assert bpe.tokenize('lower lowest') == ['low', 'er', ' ', 'low', 'e', 's', 't']
    bpe2 = BPE([('e', 'r'), ('w', 'e')], 'lower')        # 'er' before 'we': l o w er
    assert bpe2.tokenize('lower') == ['l', 'o', 'w', 'er']


@pytest.mark.parametrize('n_merges', [1, 20, 200])
def test_decode_of_encode_is_the_identity_on_training_and_unseen_text(n_merges):
    bpe = BPE.train(SAMPLE * 3, n_merges)
    assert len(bpe.merges) <= n_merges and len(bpe) == len(set(SAMPLE)) + len(bpe.merges)
    unseen = 'a fortune of £4 in the wife\'s possession--must!  \n\n_It_'
    for text in (SAMPLE, unseen, ''):
        ids = bpe.encode(text)
        assert bpe.decode(ids) == text
        assert int(bpe.lengths[ids].sum()) == len(text)          # characters spelled by the ids
    # every merge was learned on SAMPLE's pairs, so each one saves at least one token of it
    assert len(bpe.encode(SAMPLE)) <= len(SAMPLE) - len(bpe.merges)


def test_a_character_outside_the_alphabet_is_refused_by_name():
    with pytest.raises(ValueError, match=r"characters \['z'\] are not in the alphabet"):
        BPE.train('abab', 2).encode('abz')


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
    with pytest.raises(ValueError, match='bptt must be a whole number >= 1'):
        LM_PreLoader(torch.arange(9), 2, 0)
    with pytest.raises(ValueError, match='too few'): LM_PreLoader(torch.arange(3), 4, 2)
    with pytest.raises(ValueError, match='list of tensors'):
        LM_PreLoader(torch.arange(9), 2, 2, True)
    with pytest.raises(ValueError, match='piece 1 must be a 1-d tensor'):
        LM_PreLoader([torch.arange(9), torch.ones(3)], 2, 2)


def test_new_pass_reorders_the_pieces_after_the_first_pass_and_keeps_every_token():
    torch.manual_seed(0)
    pieces = [torch.full((10,), i) for i in range(8)]            # piece i is ten i's
    pre = LM_PreLoader(pieces, bs=2, bptt=5, shuffle=True)
    made, orders = pre.rows.clone(), set()
    pre.new_pass()
    assert torch.equal(pre.rows, made)                           # the first pass: the order made
    for _ in range(4):
        pre.new_pass()
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


def test_a_learner_trains_a_language_model_on_lm_databunchify():
    torch.manual_seed(0)
    v = char_vocab(TEXT)
    ids = v.numericalize(TEXT * 20)
    chapters = [ids[k:k + 300] for k in range(0, len(ids), 300)]
    data = lm_databunchify(chapters, v.numericalize(TEXT), bs=8, bptt=16, vocab_size=len(v))
    assert data.c_out == len(v) and data.train_ds.shuffle
    model = nn.Embedding(len(v), len(v))
    before, _ = lm_nats(model, data.valid_dl)
    learn = Learner(model, data, cross_entropy_flat, opt_func=adam_opt(), lr=0.1)
    learn.logger = lambda *a: None
    learn.fit(2)
    after, _ = lm_nats(model, data.valid_dl)
    assert after < before - 1                                     # nats per character


# ---- bits per character -----------------------------------------------------------------------

def test_bits_per_char_is_total_nats_over_ln2_and_characters():
    assert bits_per_char(math.log(2)) == pytest.approx(1, abs=1e-15)
    # 3 tokens spelling 12 characters at 2 nats each: 6 nats = 6/ln 2 bits over 12 characters
    want = 6 / math.log(2) / 12
    assert bits_per_char(2.0, n_tokens=3, n_chars=12) == pytest.approx(want, rel=1e-15)
    with pytest.raises(ValueError, match='both n_tokens and n_chars'): bits_per_char(1.0, 3)
    with pytest.raises(ValueError, match='n_chars must be a whole number >= 1'):
        bits_per_char(1.0, 3, 0)


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


# ---- classification batches -----------------------------------------------------------------

def test_pad_collate_pads_after_the_tokens_or_before_them():
    samples = [(torch.tensor([5, 6, 7]), 0), (torch.tensor([8]), 2), (torch.tensor([9, 4]), 1)]
    x, y = pad_collate(samples)
    assert x.tolist() == [[5, 6, 7], [8, 1, 1], [9, 4, 1]] and y.tolist() == [0, 2, 1]
    x, _ = pad_collate(samples, pad_idx=0, pad_first=True)
    assert x.tolist() == [[5, 6, 7], [0, 0, 8], [0, 9, 4]]
    assert Vocab.create([]).stoi[PAD] == 1                       # the id pad_collate pads with


def test_sort_sampler_gives_every_index_once_longest_first():
    lens = [3, 9, 1, 9, 4]
    assert list(SortSampler(lens, key=lambda i: lens[i])) == [1, 3, 4, 0, 2]


@pytest.mark.parametrize('n,bs,mega', [(1, 4, 50), (4, 4, 50), (5, 4, 50), (103, 8, 2),
                                       (64, 8, 1), (200, 7, 3)])
def test_sortish_sampler_gives_every_item_once_a_pass_largest_first_short_batch_last(
        n, bs, mega):
    torch.manual_seed(n)
    lens = torch.randint(1, 50, (n,)).tolist()
    sampler = SortishSampler(lens, key=lambda i: lens[i], bs=bs, mega=mega)
    for _ in range(3):
        batches = list(sampler)
        assert len(batches) == len(sampler) == -(-n // bs)
        order = torch.cat(batches)
        assert sorted(order.tolist()) == list(range(n))
        assert lens[batches[0][0]] == max(lens)
        short = [k for k, b in enumerate(batches) if len(b) < bs]
        assert len(short) == (n % bs > 0)
        # the short batch goes last, unless it holds the largest item and so goes first
        assert all(k == len(batches) - 1 or k == 0 for k in short)


def test_sortish_batches_are_sorted_within_megabatches_so_padding_drops():
    torch.manual_seed(0)
    lens = torch.randint(1, 100, (400,)).tolist()
    sampler = SortishSampler(lens, key=lambda i: lens[i], bs=10, mega=40)   # one megabatch
    spans = [max(lens[i] for i in b) - min(lens[i] for i in b) for b in sampler]
    assert sum(spans) / len(spans) < 10                          # random batches: about 90


def test_class_loaders_pad_sortish_training_batches_and_sorted_validation():
    torch.manual_seed(0)
    xs = [torch.randint(2, 20, (int(k),)) for k in torch.randint(1, 30, (50,))]
    ds = Dataset(xs, torch.randint(0, 3, (50,)))
    train, valid = get_clas_dls(ds, ds, bs=8)
    seen = []
    for xb, yb in train:
        for row, y in zip(xb, yb):
            n = int((row != 1).sum())
            assert (row[n:] == 1).all()
            seen.append((tuple(row[:n].tolist()), int(y)))
    assert sorted(seen) == sorted((tuple(x.tolist()), int(y)) for x, y in zip(ds.x, ds.y))
    widths = [xb.shape[1] for xb, _ in valid]
    assert widths == sorted(widths, reverse=True) and valid.bs == 16


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


def test_kneser_ney_counts_every_chapter_of_a_list_as_one_text():
    v = char_vocab(TEXT)
    ids = v.numericalize(TEXT)
    whole, parts = KneserNey(ids, 3, len(v)), KneserNey([ids[:40], ids[40:]], 3, len(v))
    assert torch.equal(whole.log_probs(ids), parts.log_probs([ids[:40], ids[40:]]))
    pieces = [ids[:40], ids[40:]]
    assert ngram_ladder(pieces, ids, len(v), (2,)) == ngram_ladder(ids, ids, len(v), (2,))


# ---- passes, devices, units and edge cases ----------------------------------------------------

def pass_orders(dl, n_passes):
    "The order in which each pass of `dl` read the pieces (piece i is a run of the id i)."
    orders = []
    for _ in range(n_passes):
        x = torch.cat([xb for xb, _ in dl], 1)
        orders.append(tuple(torch.unique_consecutive(x.flatten()).tolist()))
    return orders


@pytest.mark.parametrize('num_workers', [0, 2])
def test_training_chapters_get_a_new_order_each_pass_with_worker_processes_too(num_workers):
    torch.manual_seed(0)
    pieces = [torch.full((10,), i) for i in range(8)]
    train, _ = get_lm_dls(pieces, torch.arange(40), 2, 5, num_workers=num_workers)
    orders = pass_orders(train, 4)
    assert all(sorted(o) == list(range(8)) for o in orders)
    assert len(set(orders)) > 1                                   # the passes differ


def test_the_first_pass_reads_the_order_drawn_when_the_loader_was_made():
    torch.manual_seed(3)
    pieces = [torch.full((10,), i) for i in range(8)]
    train, _ = get_lm_dls(pieces, torch.arange(40), 2, 5)
    made = tuple(torch.unique_consecutive(train.ds.rows.flatten()).tolist())
    assert pass_orders(train, 1)[0] == made                      # seeded before the loader: kept


def test_one_training_chapter_is_read_in_order_not_refused():
    train, _ = get_lm_dls([torch.arange(40)], torch.arange(40), 2, 5)
    assert not train.ds.shuffle
    assert torch.equal(torch.cat([xb for xb, _ in train], 1).flatten(), torch.arange(38))


def test_lm_nats_leaves_the_model_in_the_mode_it_found_it():
    pre = LM_PreLoader(torch.randint(0, 5, (50,)), bs=2, bptt=5)
    model = TableModel(torch.rand(5, 5, dtype=torch.float64).softmax(1))
    for training in (True, False):
        model.train(training)
        lm_nats(model, DataLoader(pre, 2))
        assert model.training == training
    model.train()
    with pytest.raises(IndexError): lm_nats(model, [(torch.tensor([[7]]), torch.tensor([[0]]))])
    assert model.training                                        # restored after an error too


def test_a_ladder_on_bpe_tokens_is_converted_to_bits_per_character():
    bpe = BPE.train(TEXT * 2, 20)
    train, valid = bpe.encode(TEXT * 2), bpe.encode(TEXT)
    per_token = ngram_ladder(train, valid, len(bpe), orders=(2,))[2]
    per_char = ngram_ladder(train, valid, len(bpe), orders=(2,), n_chars=len(TEXT))[2]
    assert per_char == pytest.approx(per_token * len(valid) / len(TEXT), rel=1e-12)


def test_print_ladder_names_the_unit_it_is_given(capsys):
    print_ladder({2: 3.0}, unit='bits per token')
    print_ladder({2: 1.0}, other=2.0)
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith('3.000 bits per token') and out[1].startswith('         other')
    assert out[2].endswith('1.000 bits per character')


def test_an_empty_text_scores_no_tokens_and_an_empty_ladder_is_refused():
    m = KneserNey(torch.tensor([0, 1, 2, 1]), 3, 3)
    lp = m.log_probs(torch.zeros(0, dtype=torch.long))
    assert lp.shape == (0,) and lp.dtype == torch.float64
    with pytest.raises(ValueError, match='no validation tokens'):
        ngram_ladder(torch.tensor([0, 1, 2]), torch.zeros(0, dtype=torch.long), 3)


def test_edge_cases_empty_sampler_empty_token_and_a_vocab_smaller_than_its_special_tokens():
    assert list(SortishSampler([], key=len, bs=4)) == []
    assert deal_caps(['', 'Emma', '']) == [TK_MAJ, 'emma']       # an empty token is no token
    with pytest.raises(ValueError, match='max_vocab=3 .* 8 special tokens'):
        Vocab.create('abc', max_vocab=3)
    assert len(Vocab.create('aabbc', max_vocab=9)) == 9


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')


@cuda
def test_kneser_ney_counts_and_scores_ids_on_a_gpu():
    v = char_vocab(TEXT)
    ids = v.numericalize(TEXT)
    m = KneserNey(ids.cuda(), 3, len(v))
    got = m.log_probs(ids.cuda())
    assert got.device.type == 'cuda'
    assert torch.equal(got.cpu(), KneserNey(ids, 3, len(v)).log_probs(ids))
    assert m.probs(ids[:5].cuda()).sum().item() == pytest.approx(1, abs=1e-12)


@cuda
def test_pad_collate_makes_the_batch_and_labels_on_the_inputs_device():
    samples = [(torch.tensor([5, 6]).cuda(), torch.tensor(0).cuda()),
               (torch.tensor([7]).cuda(), torch.tensor(1).cuda())]
    x, y = pad_collate(samples)
    assert x.device.type == y.device.type == 'cuda' and x.tolist() == [[5, 6], [7, 1]]
