# Generated from nbs/13_text.ipynb by notebook2script.py:
# edit the notebook, not this file.


from exp.nb_12 import *
import collections, re


CHAPTER_RE = re.compile(r'^(?:CHAPTER|Chapter) (?:[0-9]+|[IVXLC]+)\.?[ \t]*$', re.MULTILINE)

def split_chapters(text, title='the text'):
    """The chapters of a novel, each from its heading line on; whatever precedes the first heading
    goes with the first."""
    starts = [m.start() for m in CHAPTER_RE.finditer(text)]
    if not starts:
        raise ValueError("split_chapters: no chapter heading ('CHAPTER 1', 'Chapter I') "
                         f"in {title}")
    starts[0] = 0
    return [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)])]


SPLIT_CYCLE, VALID_AT, HELD_AT = 20, (10,), (5, 15)
PARTS = ('train', 'valid', 'held')

def chapter_part(i):
    "The part chapter `i` (counting from 0) of a novel goes to: 'valid', 'held' or 'train'."
    r = i % SPLIT_CYCLE
    return 'valid' if r in VALID_AT else 'held' if r in HELD_AT else 'train'

class NovelSplit:
    """The chapters of each novel in three parts: `train[title]`, `valid[title]`, `held[title]` are
    lists of chapter texts; `train_text` and `valid_text` join them, novels in title order."""
    def __init__(self, novels):
        if not novels: raise ValueError('NovelSplit: no novels given')
        for p in PARTS: setattr(self, p, {})
        for title in sorted(novels):
            for i, ch in enumerate(split_chapters(novels[title], title)):
                getattr(self, chapter_part(i)).setdefault(title, []).append(ch)
    def chapters(self, part):
        """The chapters of `part` ('train', 'valid' or 'held'), every novel's in turn, each
        ending in a newline (a novel's last chapter has none of its own)."""
        if part not in PARTS:
            raise ValueError(f'NovelSplit: part must be one of {PARTS}, got {part!r}')
        chapters = [c for chs in getattr(self, part).values() for c in chs]
        return [c if c.endswith('\n') else c + '\n' for c in chapters]
    def text(self, part):
        "The chapters of `part` as one text: `''.join(self.chapters(part))`."
        return ''.join(self.chapters(part))
    train_text = property(lambda self: self.text('train'))
    valid_text = property(lambda self: self.text('valid'))

def split_novels(novels=None):
    """The six novels (00a's `austen_novels()` unless given as {title: text}) split by chapter:
    a `NovelSplit`."""
    return NovelSplit(austen_novels() if novels is None else novels)


UNK, PAD, BOS, EOS = 'xxunk', 'xxpad', 'xxbos', 'xxeos'
TK_REP, TK_WREP, TK_UP, TK_MAJ = 'xxrep', 'xxwrep', 'xxup', 'xxmaj'
default_spec_tok = [UNK, PAD, BOS, EOS, TK_REP, TK_WREP, TK_UP, TK_MAJ]

class Vocab:
    """Tokens `itos` and their ids `stoi`; tokens not in it map to `xxunk` (an error when the
    vocabulary has none)."""
    def __init__(self, itos):
        self.itos = list(itos)
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            dup = [s for s, c in collections.Counter(self.itos).items() if c > 1]
            raise ValueError(f'Vocab: tokens listed twice: {dup[:5]}')
        self.unk = self.stoi.get(UNK)
    @classmethod
    def create(cls, tokens, max_vocab=60000, min_freq=2, special=default_spec_tok):
        """From an iterable of tokens (a string gives its characters) or a Counter of them:
        `special` first, then the tokens seen at least `min_freq` times, most frequent first
        (ties in string order), `max_vocab` in all (None: no limit; fewer than `special`:
        refused)."""
        freq = tokens if isinstance(tokens, collections.Counter) else collections.Counter(tokens)
        kept = sorted((t for t, c in freq.items() if c >= min_freq and t not in special),
                      key=lambda t: (-freq[t], t))
        if max_vocab is not None and max_vocab < len(special):
            raise ValueError(f'Vocab.create: max_vocab={max_vocab} is fewer than the '
                             f'{len(special)} special tokens, which it counts')
        n = None if max_vocab is None else max_vocab - len(special)
        return cls(list(special) + kept[:n])
    def __len__(self): return len(self.itos)
    def __repr__(self): return f'Vocab({len(self)} tokens: {self.itos[:10]}...)'
    def numericalize(self, tokens):
        "The ids of `tokens` (a string gives its characters) as an int64 tensor."
        if self.unk is None:
            missing = sorted(set(tokens) - self.stoi.keys())
            if missing: raise ValueError(f'Vocab.numericalize: {missing[:5]} not in the '
                                         f'vocabulary, which has no {UNK}')
        if isinstance(tokens, str): return self._char_ids(tokens)
        get = self.stoi.get
        return torch.tensor([get(t, self.unk) for t in tokens], dtype=torch.long)
    def _char_ids(self, text):
        "A string's character ids through a table indexed by code point: one tensor lookup."
        if not text: return torch.zeros(0, dtype=torch.long)
        codes = torch.frombuffer(bytearray(text.encode('utf-32-le')), dtype=torch.int32).long()
        chars = [s for s in self.stoi if len(s) == 1]
        top = max([int(codes.max())] + [ord(s) for s in chars])
        table = torch.full((top + 1,), -1 if self.unk is None else self.unk, dtype=torch.long)
        for s, i in self.stoi.items():
            if len(s) == 1: table[ord(s)] = i
        return table[codes]
    def textify(self, ids, sep=''):
        "The tokens of `ids` joined by `sep` ('' for characters, ' ' for words)."
        ids = ids.tolist() if torch.is_tensor(ids) else ids
        return sep.join(self.itos[i] for i in ids)

def char_vocab(text):
    "Every character of `text`, most frequent first, after `xxunk`."
    return Vocab.create(text, max_vocab=None, min_freq=1, special=[UNK])

def char_data(split, by_chapter=False):
    """(vocabulary, training ids, validation ids) of a `NovelSplit` as characters, the vocabulary
    made on the training text. `by_chapter`: the training ids as one tensor per chapter, which
    `LM_PreLoader(shuffle=True)` reorders each pass."""
    vocab = char_vocab(split.train_text)
    train = ([vocab.numericalize(c) for c in split.chapters('train')] if by_chapter
             else vocab.numericalize(split.train_text))
    return vocab, train, vocab.numericalize(split.valid_text)


def _as_pieces(ids, where):
    "`ids` (a 1-d integer tensor or a list of them) as a list of 1-d int64 tensors."
    pieces = [ids] if torch.is_tensor(ids) else list(ids)
    for i, p in enumerate(pieces):
        if not torch.is_tensor(p) or p.ndim != 1 or p.is_floating_point():
            what = (f'{p.dtype} tensor of shape {tuple(p.shape)}' if torch.is_tensor(p)
                    else type(p).__name__)
            raise ValueError(f'{where}: piece {i} must be a 1-d tensor of token ids, got a {what}')
    return [p.long() for p in pieces]

class LM_PreLoader:
    """A language model's items from token `ids`: `bs` streams read `bptt` tokens at a time.
    Item i is (x, y), piece i // bs of stream i % bs, y the tokens one on from x's.
    Read them in order, bs at a time; with `shuffle`, call `new_pass()` before each pass
    (`LM_DataLoader` does)."""
    def __init__(self, ids, bs=64, bptt=70, shuffle=False):
        check_count('LM_PreLoader', bs=bs, bptt=bptt)
        self.pieces = _as_pieces(ids, 'LM_PreLoader')
        if shuffle and len(self.pieces) < 2:
            raise ValueError('LM_PreLoader: shuffle=True reorders a list of texts; '
                             'pass ids as a list of tensors (chapters, say)')
        self.bs, self.bptt, self.shuffle = bs, bptt, shuffle
        n = sum(len(p) for p in self.pieces)
        self.row_len = (n - 1) // bs   # tokens predicted in each stream
        if self.row_len < 1:
            raise ValueError(f'LM_PreLoader: {n} tokens are too few for {bs} streams')
        self.n_steps = -(-self.row_len // bptt)   # batches in one pass, the last maybe shorter
        self.batchify()

    def __len__(self): return self.n_steps * self.bs

    def batchify(self):
        "Join the pieces (in a new order when shuffling); cut them into `bs` rows of row_len + 1."
        pieces = self.pieces
        if self.shuffle: pieces = [pieces[i] for i in torch.randperm(len(pieces)).tolist()]
        stream, L = torch.cat(pieces), self.row_len
        self.rows = stream[torch.arange(self.bs)[:, None] * L + torch.arange(L + 1)]
        self._fresh = True   # no pass has read this order yet

    def new_pass(self):
        """Called by the loader before each pass: a new order of the pieces when shuffling, except
        for the first pass, which reads the order drawn when this was made."""
        if self.shuffle and not self._fresh: self.batchify()
        self._fresh = False

    def __getitem__(self, idx):
        idx = torch.as_tensor(idx)
        if ((idx < 0) | (idx >= len(self))).any():
            raise IndexError(f'LM_PreLoader: items go from 0 to {len(self) - 1}, '
                             f'got {idx.tolist()}')
        row, start = idx % self.bs, (idx // self.bs) * self.bptt
        lens = (self.row_len - start).clamp(max=self.bptt)
        if (lens != lens.reshape(-1)[0]).any():
            raise ValueError('LM_PreLoader: a batch mixes the short last piece with full ones; '
                             f'read the items in order with a batch size of bs={self.bs}')
        pos = start[..., None] + torch.arange(int(lens.reshape(-1)[0]))
        return self.rows[row[..., None], pos], self.rows[row[..., None], pos + 1]

    def predicted(self):
        "Every target token of one pass, stream after stream (to count the characters they spell)."
        return self.rows[:, 1:].reshape(-1)


class LM_DataLoader(DataLoader):
    """08's DataLoader that starts each pass with `ds.new_pass()` in the main process, so that a
    shuffling LM_PreLoader's new order reaches the worker processes, which copy `ds` each pass."""
    def __iter__(self):
        self.ds.new_pass()
        return super().__iter__()

def get_lm_dls(train_ids, valid_ids, bs, bptt, **kwargs):
    """LM_DataLoaders of LM_PreLoader batches: the training pieces in a new order each pass when
    `train_ids` is a list of two or more tensors (chapters), validation read in order."""
    if not torch.is_tensor(train_ids): train_ids = list(train_ids)
    shuffle = not torch.is_tensor(train_ids) and len(train_ids) > 1
    return (LM_DataLoader(LM_PreLoader(train_ids, bs, bptt, shuffle=shuffle), bs, **kwargs),
            LM_DataLoader(LM_PreLoader(valid_ids, bs, bptt), bs, **kwargs))

def lm_databunchify(train_ids, valid_ids, bs, bptt, vocab_size=None, **kwargs):
    "A DataBunch for a language model; `c_out` is the vocabulary's size."
    return DataBunch(*get_lm_dls(train_ids, valid_ids, bs, bptt, **kwargs), c_out=vocab_size)


def bits_per_char(nats, n_tokens=None, n_chars=None):
    """Bits per character of a text from the mean cross-entropy `nats` per token over `n_tokens`
    tokens that spell `n_chars` characters (both None: one token per character)."""
    if (n_tokens is None) != (n_chars is None):
        raise ValueError('bits_per_char: give both n_tokens and n_chars, '
                         'or neither (character tokens)')
    if n_tokens is None: return float(nats) / math.log(2)
    check_count('bits_per_char', n_tokens=n_tokens, n_chars=n_chars)
    return float(nats) * n_tokens / n_chars / math.log(2)

def cross_entropy_flat(input, target):
    "Cross-entropy of (bs, seq_len, vocab) scores against (bs, seq_len) token ids, as one batch."
    return F.cross_entropy(input.reshape(-1, input.shape[-1]), target.reshape(-1))


def lm_nats(model, dl):
    """(mean cross-entropy in nats per predicted token, number of tokens) of `model` over `dl`, read
    in eval mode; the model is left in the mode it was in."""
    was_training, device, total, n = model.training, model_device(model), 0., 0
    model.eval()
    try:
        if hasattr(model, 'reset'): model.reset()
        with torch.no_grad():
            for xb, yb in dl:
                out = model(to_device(xb, device))
                out = out[0] if isinstance(out, (tuple, list)) else out
                total += F.cross_entropy(out.reshape(-1, out.shape[-1]).double(),
                                         to_device(yb, device).reshape(-1), reduction='sum').item()
                n += yb.numel()
    finally: model.train(was_training)
    if n == 0: raise ValueError('lm_nats: the DataLoader gave no batches')
    return total / n, n


_REP_RE = re.compile(r'(\S)\1{3,}')
_WREP_RE = re.compile(r'\b(\w+)(?:\W+\1\b){3,}')
_PUNCT_RE = re.compile(r"([^\w\s']|_|(?<!\w)'|'(?!\w))")
_CLITIC_RE = re.compile(r"(?<=\w)(n't|'s|'ll|'re|'ve|'m|'d)\b", re.IGNORECASE)

def replace_rep(t):
    "A non-space character 4 or more times in a row, cccc, becomes ' xxrep 4 c '."
    return _REP_RE.sub(lambda m: f' {TK_REP} {len(m.group(0))} {m.group(1)} ', t)

def replace_wrep(t):
    """A word 4 or more times in a row (anything but letters between), w, w, w, w, becomes
    ' xxwrep 4 w '."""
    def sub(m):
        n = len(re.findall(rf'\b{re.escape(m.group(1))}\b', m.group(0)))
        return f' {TK_WREP} {n} {m.group(1)} '
    return _WREP_RE.sub(sub, t)

def sep_punct(t):
    "Spaces around every character but letters, digits and an apostrophe inside a word."
    return _PUNCT_RE.sub(r' \1 ', t)

def split_contractions(t):
    "n't, 's, 'll, 're, 've, 'm and 'd after a word become tokens of their own: do n't, Darcy 's."
    return _CLITIC_RE.sub(r' \1', t)

def replace_all_caps(toks):
    "A token of two or more letters all in capitals, WORD, becomes xxup word."
    res = []
    for t in toks:
        if len(t) > 1 and t.isupper(): res += [TK_UP, t.lower()]
        else: res.append(t)
    return res

def deal_caps(toks):
    """A capitalised token (a capital, then lower case or nothing: Emma, I) becomes xxmaj emma,
    xxmaj i."""
    res = []
    for t in toks:
        if not t: continue   # an empty token is no token (the course skips it too)
        if t[0].isupper() and (len(t) == 1 or t[1:].islower()): res += [TK_MAJ, t.lower()]
        else: res.append(t)
    return res

def add_bos_eos(toks): return [BOS] + toks + [EOS]

default_pre_rules = [replace_rep, replace_wrep, sep_punct, split_contractions]
default_post_rules = [replace_all_caps, deal_caps, add_bos_eos]

def tokenize_words(text, pre_rules=None, post_rules=None):
    "The word tokens of `text`: the text rules, a split at whitespace, then the token rules."
    text = compose(text, default_pre_rules if pre_rules is None else pre_rules)
    return compose(text.split(), default_post_rules if post_rules is None else post_rules)


class TokenizeProcessor(Processor):
    "Texts to lists of word tokens by `tokenize_words` with these rules."
    def __init__(self, pre_rules=None, post_rules=None):
        self.pre_rules, self.post_rules = pre_rules, post_rules
    def __call__(self, items): return [self.proc1(t) for t in items]
    def proc1(self, item): return tokenize_words(item, self.pre_rules, self.post_rules)
    def deprocess(self, toks): return [self.deproc1(t) for t in toks]
    def deproc1(self, tok): return ' '.join(tok)

class NumericalizeProcessor(Processor):
    """Lists of tokens to id tensors; the `Vocab` (`max_vocab`, `min_freq`, special tokens first) is
    made on the first call unless given."""
    def __init__(self, vocab=None, max_vocab=60000, min_freq=2):
        self.vocab, self.max_vocab, self.min_freq = vocab, max_vocab, min_freq
    def __call__(self, items):
        if self.vocab is None:
            self.vocab = Vocab.create((t for o in items for t in o), self.max_vocab, self.min_freq)
        return [self.proc1(o) for o in items]
    def proc1(self, item): return self.vocab.numericalize(item)
    def deprocess(self, idxs): return [self.deproc1(i) for i in idxs]
    def deproc1(self, idx): return [self.vocab.itos[i] for i in idx.tolist()]


import heapq
PRETOK_RE = re.compile(r" ?[^\W\d_]+| ?\d+| ?_+| ?[^\s\w]+|\s+(?!\S)|\s+")

def pretokenize(text):
    """The chunks that merges stay inside: runs of letters, digits, underscores or other symbols,
    each with the space before it, and runs of whitespace."""
    return PRETOK_RE.findall(text)

def _pairs(seq): return zip(seq, seq[1:])

def _merge_seq(seq, pair, new):
    "`seq` with each occurrence of `pair`, left to right, replaced by `new`."
    out, i = [], 0
    while i < len(seq):
        if i + 1 < len(seq) and (seq[i], seq[i + 1]) == pair: out.append(new); i += 2
        else: out.append(seq[i]); i += 1
    return tuple(out)

def learn_bpe(text, n_merges):
    "The first `n_merges` merges (pairs of strings) of byte-pair encoding learned on `text`."
    check_count('learn_bpe', n_merges=n_merges)
    chunks = collections.Counter(pretokenize(text))
    seqs, freqs = [tuple(c) for c in chunks], list(chunks.values())
    counts, where = collections.Counter(), collections.defaultdict(set)
    for i, (s, f) in enumerate(zip(seqs, freqs)):
        for p in _pairs(s): counts[p] += f; where[p].add(i)
    heap = [(-c, p) for p, c in counts.items()]
    heapq.heapify(heap)
    merges = []
    while heap and len(merges) < n_merges:
        c, pair = heapq.heappop(heap)
        if -c != counts.get(pair, 0) or c == 0: continue          # a stale entry
        merges.append(pair)
        new, touched = pair[0] + pair[1], set()
        for i in where.pop(pair):
            old = seqs[i]
            if pair not in set(_pairs(old)): continue
            for p in _pairs(old): counts[p] -= freqs[i]; touched.add(p)
            seqs[i] = _merge_seq(old, pair, new)
            for p in _pairs(seqs[i]): counts[p] += freqs[i]; where[p].add(i); touched.add(p)
        del counts[pair]
        for p in touched - {pair}:
            if counts[p] > 0: heapq.heappush(heap, (-counts[p], p))
    return merges


class BPE:
    """Byte-pair encoding from `merges` (pairs of strings, in the order learned) over the characters
    of `alphabet`. Its tokens: the alphabet's characters, then one per merge (`vocab`: ids)."""
    def __init__(self, merges, alphabet):
        self.merges = [tuple(m) for m in merges]
        self.rank = {m: i for i, m in enumerate(self.merges)}
        chars = sorted(set(alphabet))
        self.vocab = Vocab(chars + [a + b for a, b in self.merges])
        self.lengths = torch.tensor([len(s) for s in self.vocab.itos])   # characters per token
        self._cache = {}
    @classmethod
    def train(cls, text, n_merges):
        "Learn `n_merges` merges on `text`; the alphabet is its characters."
        return cls(learn_bpe(text, n_merges), text)
    def __len__(self): return len(self.vocab)

    def encode_chunk(self, chunk):
        "One chunk's tokens: its characters, merged pair by pair in the order merges were learned."
        if chunk in self._cache: return self._cache[chunk]
        seq = tuple(chunk)
        while len(seq) > 1:
            best = min(_pairs(seq), key=lambda p: self.rank.get(p, math.inf))
            if best not in self.rank: break
            seq = _merge_seq(seq, best, best[0] + best[1])
        self._cache[chunk] = seq
        return seq

    def tokenize(self, text):
        "The BPE tokens (strings) of `text`; joined, they are the text."
        return [t for c in pretokenize(text) for t in self.encode_chunk(c)]
    def encode(self, text):
        "The token ids of `text`; a character outside the alphabet is refused, naming it."
        missing = sorted(set(text) - self.vocab.stoi.keys())
        if missing:
            raise ValueError(f'BPE.encode: characters {missing[:10]} are not in the alphabet')
        stoi = self.vocab.stoi
        return torch.tensor([stoi[t] for t in self.tokenize(text)], dtype=torch.long)
    def decode(self, ids): return self.vocab.textify(ids)


def pad_collate(samples, pad_idx=1, pad_first=False):
    """(x, y) samples with 1-d token tensors x of any length as one batch: x padded with `pad_idx`
    after the tokens (before them with `pad_first`) to the longest, and the labels y, both on the
    first x's device."""
    xs, ys = zip(*samples)
    device = xs[0].device if torch.is_tensor(xs[0]) else None   # the batch goes where the items are
    res = torch.full((len(xs), max(len(x) for x in xs)), pad_idx, dtype=torch.long, device=device)
    for i, x in enumerate(xs):
        if len(x) == 0: continue
        if pad_first: res[i, -len(x):] = torch.as_tensor(x)
        else: res[i, :len(x)] = torch.as_tensor(x)
    ys = torch.stack(ys) if torch.is_tensor(ys[0]) else torch.tensor(ys)
    return res, ys.to(res.device)

class SortSampler:
    "The indices of `data_source` by decreasing `key(i)` (a length): one at a time, for validation."
    def __init__(self, data_source, key): self.data_source, self.key = data_source, key
    def __len__(self): return len(self.data_source)
    def __iter__(self):
        return iter(sorted(range(len(self.data_source)), key=self.key, reverse=True))

class SortishSampler:
    """Batches of `bs` indices of items of similar `key(i)` (a length), drawn anew each pass:
    megabatches of `mega` batches sorted by key; the batch with the largest item first, the last
    (short) batch last unless it holds the largest item, the others shuffled."""
    def __init__(self, data_source, key, bs, mega=50):
        check_count('SortishSampler', bs=bs, mega=mega)
        self.data_source, self.key, self.bs, self.mega = data_source, key, bs, mega
    def __len__(self): return -(-len(self.data_source) // self.bs)
    def __iter__(self):
        n, bs, size = len(self.data_source), self.bs, self.bs * self.mega
        if n == 0: return   # an empty data source: no batches
        idxs = torch.randperm(n).tolist()
        ordered = [i for m in range(0, n, size)
                   for i in sorted(idxs[m:m + size], key=self.key, reverse=True)]
        batches = [ordered[b:b + bs] for b in range(0, n, bs)]
        top = max(range(len(batches)), key=lambda b: self.key(batches[b][0]))
        batches[0], batches[top] = batches[top], batches[0]
        if len(batches) > 2:
            middle = [batches[1 + j] for j in torch.randperm(len(batches) - 2).tolist()]
            batches = [batches[0]] + middle + [batches[-1]]
        for b in batches: yield torch.tensor(b)

def get_clas_dls(train_ds, valid_ds, bs, **kwargs):
    "Padded batches: sortish training batches of `bs`; validation by length, batches of 2*bs."
    train_sampler = SortishSampler(train_ds.x, key=lambda i: len(train_ds.x[i]), bs=bs)
    valid_sampler = SortSampler(valid_ds.x, key=lambda i: len(valid_ds.x[i]))
    return (DataLoader(train_ds, bs, sampler=train_sampler, collate_fn=pad_collate, **kwargs),
            DataLoader(valid_ds, bs * 2, sampler=valid_sampler, collate_fn=pad_collate, **kwargs))

def clas_databunchify(train_ds, valid_ds, bs, c_out=None, **kwargs):
    "A DataBunch of `get_clas_dls`'s loaders; `c_out`: the number of classes."
    return DataBunch(*get_clas_dls(train_ds, valid_ds, bs, **kwargs), c_out=c_out)


def cpu_ids(ids, where):
    """`ids` (a 1-d tensor of token ids or a list of them) joined as one int64 tensor on the CPU,
    where the counting runs."""
    pieces = [p.cpu() for p in _as_pieces(ids, where)]
    return torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.long)

def ngram_keys(ids, k, vocab_size):
    """The k-gram starting at each position of the 1-d `ids` as one int64,
    x_1 V^(k-1) + ... + x_k."""
    if vocab_size ** k >= 2 ** 63:
        raise ValueError(f'ngram_keys: {vocab_size}^{k} does not fit in int64')
    n = len(ids) - k + 1
    if n < 1: return torch.zeros(0, dtype=torch.long, device=ids.device)
    keys = torch.zeros(n, dtype=torch.long, device=ids.device)
    for i in range(k): keys = keys * vocab_size + ids[i:i + n]
    return keys

class _Level:
    """One order of the Kneser-Ney model: sorted gram keys with their counts a_k, and the contexts
    with their sums and numbers of types."""
    def __init__(self, keys, counts, vocab_size):
        self.keys, self.counts, self.V = keys, counts.double(), vocab_size
        n1, n2 = int((counts == 1).sum()), int((counts == 2).sum())
        self.D = n1 / (n1 + 2 * n2) if n1 else 0.5
        self.ctx, inv = torch.unique_consecutive(keys // vocab_size, return_inverse=True)
        self.ctx_sum = torch.zeros(len(self.ctx), dtype=torch.float64)
        self.ctx_sum.index_add_(0, inv, self.counts)
        self.ctx_types = torch.bincount(inv, minlength=len(self.ctx)).double()
    def prob(self, grams, lower):
        "p_k for the gram keys `grams`, given the next lower order's probabilities `lower` of them."
        ctx = grams // self.V
        a = _lookup(self.keys, self.counts, grams)
        S, T = _lookup(self.ctx, self.ctx_sum, ctx), _lookup(self.ctx, self.ctx_types, ctx)
        seen = S > 0
        S1 = torch.where(seen, S, torch.ones_like(S))
        return torch.where(seen, ((a - self.D).clamp(min=0) + self.D * T * lower) / S1, lower)

def _lookup(keys, values, query):
    "values[keys == q] for each q of `query` (0 where a key is missing); `keys` sorted."
    if len(keys) == 0: return torch.zeros(query.shape, dtype=values.dtype, device=query.device)
    i = torch.searchsorted(keys, query).clamp(max=len(keys) - 1)
    return torch.where(keys[i] == query, values[i], torch.zeros((), dtype=values.dtype,
                                                                device=values.device))


class KneserNey:
    """Interpolated Kneser-Ney n-gram model of order `n` over token ids < `vocab_size`, counted on
    `ids` (a 1-d tensor, or a list of them joined as one text). `log_probs(ids)`: ln p of each
    token of a text given up to n-1 before it; `probs(context)`: p over the vocabulary after a
    context."""
    def __init__(self, ids, n, vocab_size):
        check_count('KneserNey', n=n, vocab_size=vocab_size)
        ids = cpu_ids(ids, 'KneserNey')
        if len(ids) and (ids.min() < 0 or ids.max() >= vocab_size):
            raise ValueError(f'KneserNey: ids must lie in [0, {vocab_size}), '
                             f'got [{ids.min()}, {ids.max()}]')
        self.n, self.V = n, vocab_size
        self.levels = [self._level(ids, k, k == n) for k in range(1, n + 1)]

    def _level(self, ids, k, top):
        "Order k's counts: raw counts at the top order, numbers of distinct left neighbours below."
        if top: keys, counts = torch.unique(ngram_keys(ids, k, self.V), return_counts=True)
        else:
            longer = torch.unique(ngram_keys(ids, k + 1, self.V))
            keys, counts = torch.unique(longer % self.V ** k, return_counts=True)
        return _Level(keys, counts, self.V)

    def _probs(self, windows):
        """p of the last column of each row of `windows` (n ids; -1: before the text's start)
        given the others."""
        p = torch.full((len(windows),), 1 / self.V, dtype=torch.float64, device=windows.device)
        for k, level in enumerate(self.levels, 1):
            w = windows[:, self.n - k:]
            known = (w >= 0).all(1)
            keys = torch.zeros(len(w), dtype=torch.long, device=w.device)
            for i in range(k): keys = keys * self.V + w[:, i].clamp(min=0)
            p = torch.where(known, level.prob(keys, p), p)
        return p

    def log_probs(self, ids):
        """ln p(x_t | up to n-1 tokens before it in `ids`) for every t, float64, on the device of
        `ids` (an empty text: an empty tensor)."""
        pieces = _as_pieces(ids, 'KneserNey.log_probs')
        device = pieces[0].device if pieces else torch.device('cpu')
        ids = cpu_ids(pieces, 'KneserNey.log_probs')
        if len(ids) == 0: return torch.zeros(0, dtype=torch.float64, device=device)
        padded = torch.cat([torch.full((self.n - 1,), -1, dtype=torch.long), ids])
        return self._probs(padded.unfold(0, self.n, 1)).log().to(device)

    def probs(self, context):
        """p(w | context) for every token w, float64, on the CPU; the last n-1 ids of `context`
        (a list or a tensor) count."""
        context = context.tolist() if torch.is_tensor(context) else list(context)
        ctx = torch.as_tensor(context[len(context) - self.n + 1:] if self.n > 1 else [],
                              dtype=torch.long)
        ctx = torch.cat([torch.full((self.n - 1 - len(ctx),), -1, dtype=torch.long), ctx])
        return self._probs(torch.cat([ctx.expand(self.V, -1), torch.arange(self.V)[:, None]], 1))

def ngram_ladder(train_ids, valid_ids, vocab_size, orders=(1, 2, 3, 4, 5), n_chars=None):
    """{n: validation bits per character} of a Kneser-Ney model of each order n counted on
    `train_ids`, scoring `valid_ids`, which spell `n_chars` characters (None: one token per
    character, as for character ids; for other tokens the figures are then bits per token)."""
    valid = cpu_ids(valid_ids, 'ngram_ladder')
    if len(valid) == 0: raise ValueError('ngram_ladder: no validation tokens to score')
    n_tokens = None if n_chars is None else len(valid)
    return {n: bits_per_char(-KneserNey(train_ids, n, vocab_size).log_probs(valid).mean().item(),
                             n_tokens, n_chars) for n in orders}

def print_ladder(ladder, unit='bits per character', **marks):
    """The ladder, one line per order, worst first, with other models' bits per character (`marks`,
    name=bits) in their places; `unit` names what the figures are."""
    rows = [(f'{n}-gram', b) for n, b in ladder.items()] + list(marks.items())
    for name, b in sorted(rows, key=lambda r: -r[1]):
        print(f'{name:>14s}  {b:.3f} {unit}')


# What `from exp.nb_13 import *` gives (generated by notebook2script.py;
# a name bound only in a branch not taken is left out).
from exp.nb_12 import __all__ as _all_nb_12
__all__ = _all_nb_12 + [
    'CHAPTER_RE', 'split_chapters', 'SPLIT_CYCLE', 'VALID_AT', 'HELD_AT', 'PARTS',
    'chapter_part', 'NovelSplit', 'split_novels', 'UNK', 'PAD', 'BOS', 'EOS', 'TK_REP',
    'TK_WREP', 'TK_UP', 'TK_MAJ', 'default_spec_tok', 'Vocab', 'char_vocab', 'char_data',
    'LM_PreLoader', 'LM_DataLoader', 'get_lm_dls', 'lm_databunchify', 'bits_per_char',
    'cross_entropy_flat', 'lm_nats', 'replace_rep', 'replace_wrep', 'sep_punct',
    'split_contractions', 'replace_all_caps', 'deal_caps', 'add_bos_eos', 'default_pre_rules',
    'default_post_rules', 'tokenize_words', 'TokenizeProcessor', 'NumericalizeProcessor',
    'PRETOK_RE', 'pretokenize', 'learn_bpe', 'BPE', 'pad_collate', 'SortSampler',
    'SortishSampler', 'get_clas_dls', 'clas_databunchify', 'cpu_ids', 'ngram_keys', 'KneserNey',
    'ngram_ladder', 'print_ladder'
]
__all__ = [_name for _name in dict.fromkeys(__all__) if _name in globals()]
