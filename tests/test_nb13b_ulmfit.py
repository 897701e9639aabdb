"""13b's ULMFiT pieces: passages cut at sentence ends, the name lists and their masking, the
labelled split, the bag-of-words baseline (counts; the descent against the closed-form gradient),
masked concat pooling against a loop, the sentence encoder's padding and chunking, the layer groups
that gradual unfreezing trains, discriminative rates, and a tiny classifier trained end to end."""
import pytest
import torch
import torch.nn.functional as F

from exp.nb_13 import NovelSplit, Vocab, char_vocab
from exp.nb_13a import char_lm_model
from exp.nb_13b import (CLAS, RANKS, SHARED_NAMES, PoolingLinearClassifier, best_by_valid,
                        bow_accuracies, clas_datasets, clas_groups, clas_loader, clas_probs,
                        discriminative_lrs, finetune_char_lm, fit_classifier, fit_logreg,
                        freeze_to, get_text_classifier, labelled_passages, masked_concat_pool,
                        name_masker, novel_names, passages_of, pooled_features, specific_words,
                        word_counts)

TINY = dict(emb_sz=4, n_hid=6, n_layers=2, bs=4, bptt=8, epochs=1, lr=1e-2, drop_mult=0.,
            alpha=0., beta=0., clip=None, seed=0)


def test_passages_end_at_sentences_and_do_not_overlap():
    text = 'CHAPTER 1\n\nOne two. Three four five! "Six," said he. Seven? Eight nine ten eleven.'
    ps = passages_of(text, min_chars=10, max_chars=30)
    assert ps == ['One two. Three four five!', '"Six," said he.',
                  'Seven? Eight nine ten eleven.']
    # joined back, the passages are the chapter's text without its heading (spaces aside)
    assert ' '.join(ps).split() == text.split()[2:]


def test_long_passage_is_cut_at_a_space_before_max_chars():
    ps = passages_of('aaaa bbbb cccc dddd eeee.', min_chars=5, max_chars=12)
    assert ps == ['aaaa bbbb']
    with pytest.raises(ValueError, match='min_chars'): passages_of('x.', 10, 5)


def test_passage_without_a_space_is_cut_at_max_chars():
    # no space before max_chars: the first max_chars characters, not all but the last one
    assert passages_of('a' * 20 + '.', min_chars=5, max_chars=12) == ['a' * 12]


def test_titles_do_not_end_a_passage():
    text = 'He met Mr. Knightley and Mrs. Weston. Then Col. Brandon, Dr. Grant. The end is here.'
    assert passages_of(text, min_chars=5, max_chars=100) == [
        'He met Mr. Knightley and Mrs. Weston.', 'Then Col. Brandon, Dr. Grant.',
        'The end is here.']


def test_names_are_capitalised_words_of_one_novel_only():
    novels = {'A': 'Emma met Bath. Emma and Emma. Emma, Emma! Bath. Bath. Bath. Bath. The end.',
              'B': 'Bath. Bath. Bath. Bath. Bath. The the the the the. Zed Zed Zed Zed Zed.'}
    names = novel_names(novels, min_count=5)
    # Emma: only in A; Bath: in both; The: common in lower case; Zed: only in B
    assert names == {'A': ['Emma'], 'B': ['Zed']}


def test_masker_replaces_whole_words_and_possessives_only():
    mask = name_masker(['Emma', 'Anne'])
    masked = mask("Emma's Anne, Annette and Emmanuel. EMMA")
    assert masked == "Xxx's Xxx, Annette and Emmanuel. EMMA"
    assert 'Elizabeth' in SHARED_NAMES
    assert {'Captain', 'Admiral', 'Colonel', 'Col', 'General'} <= set(RANKS)


def test_specific_words_ignore_lower_case_uses():
    novels = {'A': 'Hall Hall Hall Hall Hall. hall hall hall hall hall hall. Bath Bath.',
              'B': 'Hall. Bath Bath Bath Bath Bath Bath Bath Bath.'}
    # Hall: 5 of 6 capitalised uses in A, its lower case uses do not matter; Bath: 8 of 10 in B
    assert specific_words(novels) == {'A': ['Hall'], 'B': ['Bath']}
    assert specific_words(novels, share=0.9) == {'A': [], 'B': []}
    with pytest.raises(ValueError, match='no names'): name_masker([])


def tiny_split(n_chapters=10):
    def chapter(t, c): return ''.join(f'Sentence {i} of {t} {c} with Emma. ' for i in range(40))
    novels = {t: ''.join(f'CHAPTER {c}\n{chapter(t, c)}\n' for c in range(1, n_chapters + 1))
              for t in ('Beta', 'Alpha')}
    return NovelSplit(novels)


def test_labelled_passages_are_disjoint_balanced_and_masked():
    parts = labelled_passages(tiny_split(), name_masker(['Emma']), n_train=3, n_valid=2,
                              n_test=4, min_chars=40, max_chars=80)
    for part, n in [('train', 3), ('valid', 2), ('test', 4)]:
        xs, ys = parts[part]
        assert ys.tolist() == [0]*n + [1]*n   # labels: titles in sorted order
        assert all('Emma' not in x and 'Xxx' in x for x in xs)
    texts = [x for xs, _ in parts.values() for x in xs]
    assert len(set(texts)) == len(texts)
    with pytest.raises(ValueError, match='Alpha has .* passages, 900 asked'):
        labelled_passages(tiny_split(), name_masker(['Emma']), 300, 300, 300)


def test_word_counts_count_lower_cased_words():
    vocab = Vocab(['xxunk', 'the', "don't", 'cat'])
    c = word_counts(["The cat, the CAT; don't!", 'dog'], vocab)
    assert c.tolist() == [[0, 2, 1, 2], [1, 0, 0, 0]]


def test_logreg_step_is_the_closed_form_gradient_float64():
    torch.manual_seed(0)
    x, y, wd, lr = torch.randn(20, 5, dtype=torch.float64), torch.randint(0, 3, (20,)), 0.1, 0.5
    W, b = fit_logreg(x, y, 3, wd=wd, lr=lr, steps=1)
    # from zeros: softmax is uniform, the gradient is x^T (1/3 - onehot) / n (the penalty's is 0)
    g = torch.full((20, 3), 1/3, dtype=torch.float64) - F.one_hot(y, 3)
    torch.testing.assert_close(W, -lr * x.t() @ g / 20)
    torch.testing.assert_close(b, -lr * g.mean(0))
    W, b = fit_logreg(x, (x[:, 0] > 0).long(), 2, wd=1e-4, steps=500)
    assert ((x @ W + b).argmax(1) == (x[:, 0] > 0).long()).all()


def test_masked_concat_pool_matches_a_loop():
    torch.manual_seed(0)
    out, lengths = torch.randn(3, 5, 2), [5, 2, 1]
    mask = torch.arange(5)[None] >= torch.tensor(lengths)[:, None]
    pooled = masked_concat_pool(out, mask)
    for i, n in enumerate(lengths):
        o = out[i, :n]
        torch.testing.assert_close(pooled[i], torch.cat([o[-1], o.max(0)[0], o.mean(0)]))
    with pytest.raises(ValueError, match='no tokens'):
        masked_concat_pool(out, torch.ones(3, 5, dtype=torch.bool))


def test_encoder_ignores_padding_and_bptt_only_cuts_gradients():
    torch.manual_seed(0)
    model = get_text_classifier(7, 3, TINY, bptt=3).eval()
    x = torch.tensor([[1, 2, 3, 4, 5, 6, 1], [2, 2, 7, 7, 7, 7, 7]])   # 7: padding
    with torch.no_grad():
        out, mask = model[0](x)
        alone, _ = model[0](x[1:, :2])
        whole = get_text_classifier(7, 3, TINY, bptt=100).eval()
        whole.load_state_dict(model.state_dict())
        out_whole, _ = whole[0](x)
    assert mask.tolist() == [[False]*7, [False]*2 + [True]*5]
    torch.testing.assert_close(out[1, :2], alone[0])
    torch.testing.assert_close(out, out_whole)   # in chunks or at once, the same outputs
    assert model(x).shape == (2, 3)


def test_head_sizes_and_dropouts_must_agree():
    with pytest.raises(ValueError, match='3 sizes need 2 dropouts, got 1'):
        PoolingLinearClassifier([12, 5, 2], [0.1])


def test_freeze_to_trains_the_last_groups_only():
    model = get_text_classifier(7, 3, TINY)
    groups = clas_groups(model)
    assert len(groups) == 4   # embedding, two LSTMs, head
    for n, want in [(-1, [0, 0, 0, 1]), (-2, [0, 0, 1, 1]), (0, [1, 1, 1, 1])]:
        freeze_to(model, n)
        assert [all(p.requires_grad for p in g.parameters()) for g in groups] == \
            [bool(w) for w in want]
        frozen = [p for g in groups[:4 - sum(want)] for p in g.parameters()]
        assert not any(p.requires_grad for p in frozen)


def test_discriminative_lrs_divide_by_the_factor_per_group():
    torch.testing.assert_close(torch.tensor(discriminative_lrs(1., 3, 2.)),
                               torch.tensor([0.25, 0.5, 1.]))


def test_tiny_classifier_trains_and_predicts_in_order():
    torch.manual_seed(0)
    texts = ['ab' * (5 + i % 3) for i in range(12)] + ['cd' * (5 + i % 3) for i in range(12)]
    ys = torch.tensor([0]*12 + [1]*12)
    vocab = char_vocab(''.join(texts))
    ds = clas_datasets({'train': (texts, ys), 'valid': (texts, ys)}, vocab)
    pad = len(vocab)
    dls = (clas_loader(ds['train'], 8, pad, train=True), clas_loader(ds['train'], 8, pad),
           clas_loader(ds['valid'], 8, pad))
    model = get_text_classifier(len(vocab), 2, TINY, bptt=4, layers=(6,))
    recipe = dict(CLAS, bs=8, head_epochs=30, head_lr=3e-2)
    accs = fit_classifier(model, dls, seed=0, recipe=recipe)
    assert len(accs) == 1 + len(recipe['stages'])
    p, y = clas_probs(model, dls[2])
    assert y.tolist() == ys.tolist()
    assert (p.argmax(1) == y).float().mean() == accs[-1] == 1.


def test_bow_penalty_is_chosen_on_validation_only():
    res = {1e-3: dict(train=1., valid=.3, test=.9), 1e-1: dict(train=.8, valid=.4, test=.1)}
    assert best_by_valid(res) == 1e-1
    texts = ['the cat sat', 'a cat ran', 'the dog sat', 'a dog ran'] * 3
    ys = torch.tensor([0, 0, 1, 1] * 3)
    parts = {'train': (texts, ys), 'valid': (texts[:4], ys[:4]), 'test': (texts[:4], ys[:4])}
    chosen = best_by_valid(bow_accuracies(parts, wds=(1e-3, 10.))[0])
    # other test labels change the test accuracies but not the choice
    parts['test'] = (texts[:4], 1 - ys[:4])
    res = bow_accuracies(parts, wds=(1e-3, 10.))[0]
    assert best_by_valid(res) == chosen == 1e-3 and res[chosen]['test'] == 0.


def test_finetune_char_lm_changes_a_copy_and_keeps_the_vocabulary():
    torch.manual_seed(0)
    vocab_sz, settings = 9, dict(TINY, bs=2, bptt=4)
    model = char_lm_model(vocab_sz, settings)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    chapters = [torch.randint(0, vocab_sz, (40,)) for _ in range(2)]
    learn, secs = finetune_char_lm(model, chapters, torch.randint(0, vocab_sz, (20,)), settings,
                                   epochs=1, lr=1e-2)
    after = learn.model.state_dict()
    assert learn.model is not model and secs >= 0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert any(not torch.equal(v.cpu(), after[k].cpu()) for k, v in before.items())
    assert learn.model[1].decoder.out_features == vocab_sz
    assert learn.model[0].emb.weight.shape == model[0].emb.weight.shape


def test_head_on_features_computed_once_matches_the_whole_model_in_eval_mode():
    torch.manual_seed(0)
    texts = ['abcab', 'cabbage', 'ab', 'baccab']
    vocab = char_vocab(''.join(texts))
    ds = clas_datasets({'train': (texts, torch.tensor([0, 1, 0, 1]))}, vocab)['train']
    dl = clas_loader(ds, 3, len(vocab))
    model = get_text_classifier(len(vocab), 2, TINY, bptt=3, layers=(6,))
    model.train()
    feats, ys = pooled_features(model, dl)
    assert model.training and ys.tolist() == [0, 1, 0, 1]   # back in the mode it was in
    model.eval()
    with torch.no_grad():
        whole = torch.cat([model(xb) for xb, _ in dl])
        torch.testing.assert_close(model[1].layers(feats), whole)


def test_finetune_char_lm_does_not_depend_on_the_random_state_before_it():
    # the order of the chapters is drawn from the seed of `settings`, whatever ran before
    vocab_sz, settings = 9, dict(TINY, bs=2, bptt=4)
    torch.manual_seed(0)
    model = char_lm_model(vocab_sz, settings)
    chapters = [torch.randint(0, vocab_sz, (20 + 7*i,)) for i in range(4)]
    valid = torch.randint(0, vocab_sz, (20,))
    weights = []
    for state in (1, 2):
        torch.manual_seed(state)
        learn, _ = finetune_char_lm(model, chapters, valid, settings, epochs=1, lr=1e-2)
        weights.append(learn.model[0].emb.weight.detach().cpu().clone())
    torch.testing.assert_close(weights[0], weights[1], rtol=0, atol=0)


def test_eval_outputs_puts_the_model_back_in_the_mode_it_was_in():
    from exp.nb_13b import eval_outputs
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Dropout(0.5)).train()
    dl = [(torch.randn(4, 3), torch.zeros(4)), (torch.randn(2, 3), torch.ones(2))]
    seen = []
    out, ys = eval_outputs(model, dl, lambda m, xb: (seen.append(m.training), m(xb))[1])
    assert seen == [False, False] and model.training      # eval inside, training again after
    assert out.shape == (6, 2) and ys.tolist() == [0] * 4 + [1] * 2
    with pytest.raises(RuntimeError):
        eval_outputs(model, dl, lambda m, xb: (_ for _ in ()).throw(RuntimeError('bad batch')))
    assert model.training                                   # even when a batch fails
