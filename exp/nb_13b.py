# Generated from nbs/13b_ulmfit.ipynb by notebook2script.py:
# edit the notebook, not this file.


from exp.nb_13a import *
import collections, re, time


# a sentence ends at . ! or ? (closing quotes included) before a space, but not after a title
SENT_END_RE = re.compile(r'(?<!\bMr)(?<!\bMrs)(?<!\bDr)(?<!\bSt)(?<!\bCol)[.!?][\'"]*(?=\s|$)')

def passages_of(text, min_chars=150, max_chars=300):
    """Consecutive, non-overlapping passages of a chapter's `text` (its heading dropped): each runs
    from the end of the previous one to the first sentence end at least `min_chars` on, and is
    cut at the last space before `max_chars` when longer (at `max_chars` when it has no space
    there): the text from the cut to the sentence end belongs to no passage."""
    if not 0 < min_chars <= max_chars:
        raise ValueError(f'passages_of: need 0 < min_chars <= max_chars, got {min_chars}, '
                         f'{max_chars}')
    text = CHAPTER_RE.sub('', text).strip()
    out, start = [], 0
    for m in SENT_END_RE.finditer(text):
        if m.end() - start < min_chars: continue
        p = text[start:m.end()].strip()
        if len(p) > max_chars:
            k = p.rfind(' ', 0, max_chars + 1)
            p = p[:k] if k > 0 else p[:max_chars]
        out.append(p)
        start = m.end()
    return out


CAP_WORD_RE = re.compile(r"\b[A-Z][a-z]+\b")

def novel_names(novels, min_count=5, share=0.95, lower_ratio=0.1):
    """{title: capitalised words of that novel}: seen at least `min_count` times in it, at least
    `share` of all their capitalised uses in the novels there, and written in lower case fewer
    than `lower_ratio` times as often; most frequent first."""
    caps = {t: collections.Counter(CAP_WORD_RE.findall(s)) for t, s in novels.items()}
    total = sum(caps.values(), collections.Counter())
    lower = collections.Counter(re.findall(r'\b[a-z]+\b', ' '.join(novels.values())))
    def keep(w, c):
        return c >= min_count and c >= share*total[w] and lower[w.lower()] < lower_ratio*c
    return {t: sorted((w for w, c in cs.items() if keep(w, c)), key=lambda w: (-cs[w], w))
            for t, cs in caps.items()}

# main characters' first names that several novels share, which the counts above miss
SHARED_NAMES = ['Anne', 'Catherine', 'Charles', 'Charlotte', 'Eleanor', 'Elizabeth', 'Fanny',
                'Frederick', 'Henry', 'Isabella', 'James', 'Jane', 'John', 'Louisa', 'Margaret',
                'Maria', 'Mary', 'Robert', 'William']

# ranks that, in these novels, mostly belong to one novel's characters
RANKS = ['Admiral', 'Captain', 'Col', 'Colonel', 'General']

def specific_words(novels, share=0.8, min_count=5):
    "{title: capitalised words seen `min_count` times with `share` of their uses in that novel}"
    return novel_names(novels, min_count, share, lower_ratio=math.inf)

def name_masker(names, placeholder='Xxx'):
    "A function that replaces each whole word of `names` in a text by `placeholder`."
    if not names: raise ValueError('name_masker: no names given')
    rx = re.compile(r'\b(?:' + '|'.join(map(re.escape, sorted(set(names)))) + r')\b')
    return partial(rx.sub, placeholder)


def labelled_passages(split, mask, n_train=50, n_valid=20, n_test=50, seed=0, **kwargs):
    """{'train', 'valid', 'test'}: (texts, labels) of passages from the held-out chapters of
    `split` (a NovelSplit), masked by `mask`; labels index the titles in sorted order. Per novel,
    `n_train`, `n_valid` and `n_test` passages drawn at random (`seed`) without overlap;
    `kwargs` go to `passages_of`."""
    g, want = torch.Generator().manual_seed(seed), n_train + n_valid + n_test
    parts = {p: ([], []) for p in ('train', 'valid', 'test')}
    for label, title in enumerate(sorted(split.held)):
        ps = [mask(p) for ch in split.held[title] for p in passages_of(ch, **kwargs)]
        if len(ps) < want:
            raise ValueError(f'labelled_passages: {title} has {len(ps)} passages, {want} asked')
        idx = torch.randperm(len(ps), generator=g)[:want].tolist()
        for part, a, b in [('train', 0, n_train), ('valid', n_train, n_train + n_valid),
                           ('test', n_train + n_valid, want)]:
            parts[part][0].extend(ps[i] for i in idx[a:b])
            parts[part][1].extend([label]*(b - a))
    return {p: (xs, torch.tensor(ys)) for p, (xs, ys) in parts.items()}


WORD_RE = re.compile(r"[a-z]+(?:'[a-z]+)?")

def bow_vocab(texts, min_freq=2):
    "The lower-cased words seen at least `min_freq` times in `texts`, most frequent first."
    return Vocab.create((w for t in texts for w in WORD_RE.findall(t.lower())), max_vocab=None,
                        min_freq=min_freq, special=[UNK])

def word_counts(texts, vocab):
    "(len(texts), len(vocab)) float tensor: how often each word of `vocab` occurs in each text."
    out = torch.zeros(len(texts), len(vocab))
    for i, t in enumerate(texts):
        ids = vocab.numericalize(WORD_RE.findall(t.lower()))
        out[i].index_add_(0, ids, torch.ones(len(ids)))
    return out

def fit_logreg(x, y, n_classes, wd=1e-3, lr=0.5, steps=300):
    """Multinomial logistic regression on features `x`, labels `y`: full-batch gradient descent
    from zeros on the mean cross-entropy plus `wd`/2 ||W||^2; returns (W, b)."""
    W = x.new_zeros(x.shape[1], n_classes, requires_grad=True)
    b = x.new_zeros(n_classes, requires_grad=True)
    for _ in range(steps):
        loss = F.cross_entropy(x @ W + b, y) + wd/2*W.pow(2).sum()
        gW, gb = torch.autograd.grad(loss, (W, b))
        with torch.no_grad(): W -= lr*gW; b -= lr*gb
    return W.detach(), b.detach()

def best_by_valid(res):
    "The key of `res` ({setting: {part: accuracy}}) with the best validation accuracy."
    return max(res, key=lambda k: res[k]['valid'])

def bow_accuracies(parts, wds=(1e-3, 1e-2, 1e-1)):
    """Logistic regression on log(1 + word counts) of `parts`: for each penalty of `wds`, the
    accuracy on each part; returns ({wd: {part: accuracy}}, the vocabulary)."""
    vocab = bow_vocab(parts['train'][0])
    xs = {p: torch.log1p(word_counts(xs, vocab)) for p, (xs, _) in parts.items()}
    res = {}
    for wd in wds:
        W, b = fit_logreg(xs['train'], parts['train'][1], len(set(parts['train'][1].tolist())), wd)
        res[wd] = {p: ((xs[p] @ W + b).argmax(1) == ys).float().mean().item()
                   for p, (_, ys) in parts.items()}
    return res, vocab


def finetune_char_lm(model, chapters, valid_ids, settings=CHAR_LM, epochs=1, lr=2e-3):
    """Go on training the language model `model` on `chapters` (id tensors, reshuffled each pass)
    as 13a trained it (`char_lm_learner`: Adam, AR/TAR, gradient clipping), `epochs` passes of
    one-cycle up to `lr`; validation on `valid_ids`. The learner's model is a copy of `model`, on
    `def_device` (char_lm_learner's DeviceCallback puts it there). Seeded with the `seed` of
    `settings`, so the result does not depend on what drew random numbers before. Returns
    (learner, seconds)."""
    s = settings
    torch.manual_seed(s['seed'])   # the chapters' first order is drawn when the data is made
    data = lm_databunchify(chapters, valid_ids, s['bs'], s['bptt'], model[1].decoder.out_features)
    learn = char_lm_learner(data, settings, progress=False)
    learn.model.load_state_dict(model.state_dict())
    learn.logger = noop
    start = time.perf_counter()
    learn.fit(epochs, cbs=sched_1cycle(lr, pct_start=0.25))
    return learn, time.perf_counter() - start


def masked_concat_pool(out, mask):
    """Concat pooling of outputs `out` (bs, seq_len, n) over the steps where `mask` (bs, seq_len)
    is False: [last output, max over time, mean over time], (bs, 3n)."""
    keep = ~mask
    lengths = keep.sum(1)
    if (lengths == 0).any(): raise ValueError('masked_concat_pool: a sequence with no tokens')
    last = out[torch.arange(len(out), device=out.device), lengths - 1]
    mx = out.masked_fill(mask[..., None], -math.inf).max(1)[0]
    avg = out.masked_fill(mask[..., None], 0).sum(1) / lengths[:, None]
    return torch.cat([last, mx, avg], 1)

class SentenceEncoder(nn.Module):
    """Reads padded texts (bs, seq_len), padding `pad_idx` after the tokens, through `module` (a
    stateful AWD_LSTM), `bptt` tokens at a time from a zero state; returns the last layer's outputs
    (bs, seq_len, n) and the padding mask. Gradients stop at each `bptt` boundary."""
    def __init__(self, module, bptt, pad_idx):
        super().__init__()
        self.module,self.bptt,self.pad_idx = module,bptt,pad_idx
    def forward(self, x):
        mask = x == self.pad_idx
        x = x.masked_fill(mask, 0)
        self.module.reset(len(x))
        outs = [self.module(x[:, i:i + self.bptt])[1][-1] for i in range(0, x.shape[1], self.bptt)]
        return torch.cat(outs, 1), mask
    def reset(self): pass   # every batch starts from a zero state already

def lin_layers(n_in, n_out, p):
    "BatchNorm, dropout `p` and a linear layer, as a list."
    return [nn.BatchNorm1d(n_in), nn.Dropout(p), nn.Linear(n_in, n_out)]

class PoolingLinearClassifier(nn.Module):
    """Masked concat pooling of (outputs, mask), then BatchNorm-dropout-linear blocks through the
    sizes `layers` (the first: 3 times the encoder's outputs), dropouts `drops`, ReLU between."""
    def __init__(self, layers, drops):
        super().__init__()
        if len(drops) != len(layers) - 1:
            raise ValueError(f'PoolingLinearClassifier: {len(layers)} sizes need '
                             f'{len(layers) - 1} dropouts, got {len(drops)}')
        mods = []
        for i, (a, b, p) in enumerate(zip(layers[:-1], layers[1:], drops)):
            mods += lin_layers(a, b, p) + ([nn.ReLU()] if i < len(drops) - 1 else [])
        self.layers = nn.Sequential(*mods)
    def forward(self, input): return self.layers(masked_concat_pool(*input))

def get_text_classifier(vocab_sz, n_out, settings=CHAR_LM, bptt=64, layers=(50,),
                        drops=(0.2, 0.1)):
    """13a's AWD-LSTM encoder of `settings` (padding id `vocab_sz`) in a SentenceEncoder, then a
    PoolingLinearClassifier to `n_out` classes."""
    enc = char_lm_model(vocab_sz, settings)[0]
    sizes = [3*enc.emb_sz, *layers, n_out]
    return SequentialRNN(SentenceEncoder(enc, bptt, vocab_sz),
                         PoolingLinearClassifier(sizes, list(drops)))


def clas_groups(model):
    "The layer groups of a text classifier, input first: embedding, each LSTM, the head."
    enc = model[0].module
    return [enc.emb, *enc.rnns, model[1]]

def clas_splitter(model): return [list(g.parameters()) for g in clas_groups(model)]

def freeze_to(model, n):
    """Train only the layer groups from `n` on (negative: the last -n), with 11a's `set_grad`
    (linear and BatchNorm layers always train)."""
    groups = clas_groups(model)
    for i, g in enumerate(groups): apply_mod(g, partial(set_grad, b=i >= n % len(groups)))

def discriminative_lrs(lr, n_groups, factor=2.6):
    "One rate per group, input first: lr / factor^k, k counting down to 0 at the last group."
    return [lr / factor**(n_groups - 1 - i) for i in range(n_groups)]


def clas_datasets(parts, vocab):
    "{part: Dataset of (character ids, label)} for each (texts, labels) of `parts`."
    return {p: Dataset([vocab.numericalize(t) for t in xs], ys) for p, (xs, ys) in parts.items()}

def clas_loader(ds, bs, pad_idx, train=False):
    """Padded batches of `ds`: sortish and reshuffled each pass when `train`, else in order (so
    predictions line up with the passages)."""
    collate = partial(pad_collate, pad_idx=pad_idx)
    if not train: return DataLoader(ds, bs, collate_fn=collate)
    return DataLoader(ds, sampler=SortishSampler(ds.x, lambda i: len(ds.x[i]), bs),
                      collate_fn=collate)

@torch.no_grad()
def eval_outputs(model, dl, f):
    """(f(model, xb) for every batch, labels) over `dl`: `model` in eval mode (then back in the mode
    it was in), each batch on its device, the outputs gathered on the CPU."""
    was_training, _ = model.training, model.eval()
    device, outs, ys = model_device(model), [], []
    try:
        for xb, yb in dl:
            outs.append(f(model, xb.to(device)).cpu()); ys.append(yb)
    finally: model.train(was_training)
    return torch.cat(outs), torch.cat(ys)

def pooled_features(model, dl):
    "(features, labels) of `dl`: a text classifier's encoder, in eval mode, and concat pooling."
    return eval_outputs(model, dl, lambda m, xb: masked_concat_pool(*m[0](xb)))

def clas_probs(model, dl):
    "(softmax probabilities, labels) of a classifier over `dl`, in eval mode, on the CPU."
    return eval_outputs(model, dl, lambda m, xb: F.softmax(m(xb).float(), -1))


CLAS = dict(bs=25, head_epochs=20, head_lr=1e-2, stages=((-2, 2, 5e-3), (0, 2, 2e-3)))

def quiet_learner(model, data, lr, splitter=param_getter):
    "A Learner with Adam, cross-entropy, accuracy averaged per epoch (EpochHistory), no printing."
    learn = Learner(model, data, F.cross_entropy, opt_func=adam_opt(), lr=lr, splitter=splitter,
                    cb_funcs=[partial(AvgStatsCallback, [accuracy]), EpochHistory])
    learn.logger = noop
    return learn

def fit_classifier(model, dls, seed, recipe=CLAS):
    """ULMFiT's classifier training with `recipe`: the head alone for `head_epochs` on the frozen
    encoder's pooled features, then each stage (n, epochs, lr): the groups from n on, one-cycle up
    to discriminative rates. `dls`: training batches (sortish), the training set in order (for the
    features), validation. Returns the validation accuracy after the head and after each stage."""
    train_dl, feat_dl, valid_dl = dls
    torch.manual_seed(seed)
    n_out = model[1].layers[-1].out_features
    feats = [Dataset(*pooled_features(model, dl)) for dl in (feat_dl, valid_dl)]
    data = DataBunch(DataLoader(feats[0], recipe['bs'], shuffle=True),
                     DataLoader(feats[1], 2*recipe['bs']), c_out=n_out)
    learn = quiet_learner(model[1].layers, data, recipe['head_lr'])
    learn.fit(recipe['head_epochs'], cbs=sched_1cycle(recipe['head_lr']))
    accs = [learn.epoch_history.valid[-1][1]]
    learn = quiet_learner(model, DataBunch(train_dl, valid_dl, c_out=n_out), 0.,
                          splitter=clas_splitter)
    for n, epochs, lr in recipe['stages']:
        freeze_to(model, n)
        learn.fit(epochs, cbs=sched_1cycle(discriminative_lrs(lr, len(clas_groups(model)))),
                  reset_opt=True)
        accs.append(learn.epoch_history.valid[-1][1])
    return accs


# What `from exp.nb_13b import *` gives (generated by notebook2script.py;
# a name bound only in a branch not taken is left out).
from exp.nb_13a import __all__ as _all_nb_13a
__all__ = _all_nb_13a + [
    'SENT_END_RE', 'passages_of', 'CAP_WORD_RE', 'novel_names', 'SHARED_NAMES', 'RANKS',
    'specific_words', 'name_masker', 'labelled_passages', 'WORD_RE', 'bow_vocab', 'word_counts',
    'fit_logreg', 'best_by_valid', 'bow_accuracies', 'finetune_char_lm', 'masked_concat_pool',
    'SentenceEncoder', 'lin_layers', 'PoolingLinearClassifier', 'get_text_classifier',
    'clas_groups', 'clas_splitter', 'freeze_to', 'discriminative_lrs', 'clas_datasets',
    'clas_loader', 'eval_outputs', 'pooled_features', 'clas_probs', 'CLAS', 'quiet_learner',
    'fit_classifier'
]
__all__ = [_name for _name in dict.fromkeys(__all__) if _name in globals()]
