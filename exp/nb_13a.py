# Generated from nbs/13a_rnn_lstm.ipynb by notebook2script.py:
# edit the notebook, not this file.


from exp.nb_13 import *
import hashlib, json, platform, time, warnings
import nbio


class RecurrentCell(nn.Module):
    """The parameters of a recurrent cell with `n_gates` blocks of `nh` units, from `ni` inputs:
    `weight_ih` (n_gates*nh, ni), `weight_hh` (n_gates*nh, nh), `bias_ih`, `bias_hh`, named and
    initialised (uniform in ±1/sqrt(nh)) as in PyTorch's cells."""
    n_gates = 1
    def __init__(self, ni, nh):
        super().__init__()
        self.ni,self.nh = ni,nh
        rows = self.n_gates*nh
        self.weight_ih = nn.Parameter(torch.empty(rows, ni))
        self.weight_hh = nn.Parameter(torch.empty(rows, nh))
        self.bias_ih,self.bias_hh = nn.Parameter(torch.empty(rows)),nn.Parameter(torch.empty(rows))
        bound = 1/math.sqrt(nh)
        for p in self.parameters(): init.uniform_(p, -bound, bound)

    def gates(self, x, h):
        "x W_ih^T + b_ih + h W_hh^T + b_hh: the pre-activations of every block, (bs, n_gates*nh)."
        if x.shape[-1] != self.ni or h.shape[-1] != self.nh:
            raise ValueError(f'{type(self).__name__}({self.ni}, {self.nh}): got an input of shape '
                             f'{tuple(x.shape)} and a state of shape {tuple(h.shape)}')
        return x @ self.weight_ih.t() + self.bias_ih + h @ self.weight_hh.t() + self.bias_hh

class RNNCell(RecurrentCell):
    "The plain (Elman) cell: h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)."
    def forward(self, x, h): return torch.tanh(self.gates(x, h))


class LSTMCell(RecurrentCell):
    "One LSTM step: (x, (h, c)) -> (h', c'), gates in PyTorch's order i, f, g, o."
    n_gates = 4
    def forward(self, x, state):
        h, c = state
        i, f, g, o = self.gates(x, h).chunk(4, 1)
        c = torch.sigmoid(f)*c + torch.sigmoid(i)*torch.tanh(g)
        return torch.sigmoid(o)*torch.tanh(c), c


class LSTMLayer(nn.Module):
    """An LSTM cell run along a sequence: (bs, seq_len, ni) and an optional state (h, c), each
    (bs, nh), -> outputs (bs, seq_len, nh) and the final state."""
    def __init__(self, ni, nh):
        super().__init__()
        self.cell = LSTMCell(ni, nh)

    def forward(self, x, state=None):
        if x.dim() != 3:
            raise ValueError(f'LSTMLayer: expected (bs, seq_len, features), got {tuple(x.shape)}')
        if state is None: state = (x.new_zeros(x.shape[0], self.cell.nh),)*2
        outs = []
        for xt in x.unbind(1):
            state = self.cell(xt, state)
            outs.append(state[0])
        return torch.stack(outs, 1), state

class StackedLSTM(nn.Module):
    """`n_layers` LSTM layers, each reading the outputs of the one below; batch first, states
    (n_layers, bs, nh) as nn.LSTM's."""
    def __init__(self, ni, nh, n_layers=1):
        super().__init__()
        self.layers = nn.ModuleList(LSTMLayer(ni if l == 0 else nh, nh) for l in range(n_layers))

    def forward(self, x, state=None):
        hs, cs = [], []
        for l, layer in enumerate(self.layers):
            x, (h, c) = layer(x, None if state is None else (state[0][l], state[1][l]))
            hs.append(h); cs.append(c)
        return x, (torch.stack(hs), torch.stack(cs))

    @torch.no_grad()
    def load_torch(self, lstm):
        "Copy the weights of `lstm` (an nn.LSTM with the same sizes) into our cells; returns self."
        cell = self.layers[0].cell
        ours = (cell.ni, cell.nh, len(self.layers))
        theirs = (lstm.input_size, lstm.hidden_size, lstm.num_layers)
        if ours != theirs or lstm.bidirectional or lstm.proj_size or not lstm.bias:
            raise ValueError(f'load_torch: (inputs, hidden, layers) {ours} here, {theirs} in the '
                             'nn.LSTM (which must be one-way, with biases and no projection)')
        for l, layer in enumerate(self.layers):
            for name, p in layer.cell.named_parameters(): p.copy_(getattr(lstm, f'{name}_l{l}'))
        return self


def dropout_mask(x, sz, p):
    """A mask of shape `sz`, with `x`'s dtype and device: 0 with probability `p`, else 1/(1-p), so
    `x * mask` keeps the expectation of `x`."""
    if not 0 <= p < 1: raise ValueError(f'dropout_mask: p must be in [0, 1), got {p}')
    return x.new_empty(sz).bernoulli_(1 - p).div_(1 - p)

class RNNDropout(nn.Module):
    """Variational dropout on (bs, seq_len, features): in training, each sequence drops the same
    features at every time step; identity in eval mode."""
    def __init__(self, p=0.5):
        super().__init__()
        self.p = p
    def forward(self, x):
        if not self.training or self.p == 0: return x
        if x.dim() != 3:
            raise ValueError(f'RNNDropout: expected (bs, seq_len, features), got {tuple(x.shape)}')
        return x * dropout_mask(x.detach(), (x.shape[0], 1, x.shape[2]), self.p)


def _keep_weights_apart(*args, **kwargs):
    "Stands in for nn.RNNBase.flatten_parameters, which would copy the weights out of autograd."

class WeightDropout(nn.Module):
    """Wraps `module` so that in training each forward pass uses its weights `layer_names` with
    dropout `weight_p` (DropConnect); the raw weights are the wrapper's parameters `<name>_raw`."""
    def __init__(self, module, weight_p=0., layer_names=('weight_hh_l0',)):
        super().__init__()
        self.module,self.weight_p,self.layer_names = module,weight_p,tuple(listify(layer_names))
        for name in self.layer_names:
            w = getattr(module, name, None)
            if not isinstance(w, nn.Parameter):
                raise ValueError(f'WeightDropout: {type(module).__name__} has no parameter '
                                 f'{name!r}')
            delattr(module, name)
            self.register_parameter(f'{name}_raw', nn.Parameter(w.detach()))
            setattr(module, name, w.detach().clone())   # a plain tensor from now on
        if isinstance(module, nn.RNNBase): module.flatten_parameters = _keep_weights_apart

    def _set_weights(self):
        for name in self.layer_names:
            raw = getattr(self, f'{name}_raw')
            dropping = self.training and self.weight_p > 0
            setattr(self.module, name, F.dropout(raw, self.weight_p) if dropping else raw.clone())

    def forward(self, *args):
        self._set_weights()
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='RNN module weights are not part')
            return self.module(*args)


class EmbeddingDropout(nn.Module):
    """`emb` (an nn.Embedding) whose rows are dropped with probability `embed_p` in training: a
    dropped token embeds as zeros wherever it appears in the batch."""
    def __init__(self, emb, embed_p):
        super().__init__()
        self.emb,self.embed_p = emb,embed_p
    def forward(self, words):
        w = self.emb.weight
        if self.training and self.embed_p > 0:
            w = w * dropout_mask(w.detach(), (w.shape[0], 1), self.embed_p)
        return F.embedding(words, w, self.emb.padding_idx)


def to_detach(h):
    "`h` (a tensor, or tuples and lists of them) detached from its history."
    return h.detach() if torch.is_tensor(h) else type(h)(to_detach(v) for v in h)

class AWD_LSTM(nn.Module):
    """The AWD-LSTM encoder (Merity et al. 2017): embedding, `n_layers` LSTMs with weight dropout,
    variational dropout between them; the last layer has `emb_sz` units. Keeps its state between
    calls; `reset()` zeroes it."""
    initrange = 0.1
    def __init__(self, vocab_sz, emb_sz, n_hid, n_layers, pad_token=None,
                 hidden_p=0.2, input_p=0.6, embed_p=0.1, weight_p=0.5):
        super().__init__()
        self.emb_sz,self.n_hid,self.n_layers = emb_sz,n_hid,n_layers
        self.emb = nn.Embedding(vocab_sz, emb_sz, padding_idx=pad_token)
        self.emb.weight.data.uniform_(-self.initrange, self.initrange)
        self.emb_dp = EmbeddingDropout(self.emb, embed_p)
        sizes = [emb_sz] + [n_hid]*(n_layers - 1) + [emb_sz]
        self.rnns = nn.ModuleList(WeightDropout(nn.LSTM(sizes[l], sizes[l+1], batch_first=True),
                                                weight_p) for l in range(n_layers))
        self.input_dp = RNNDropout(input_p)
        self.hidden_dps = nn.ModuleList(RNNDropout(hidden_p) for _ in range(n_layers))
        self.hidden = None

    def forward(self, x):
        if self.hidden is None or self.hidden[0][0].shape[1] != x.shape[0]: self.reset(x.shape[0])
        out = self.input_dp(self.emb_dp(x))
        new_hidden, raw_outputs, outputs = [], [], []
        for l, (rnn, hid_dp) in enumerate(zip(self.rnns, self.hidden_dps)):
            out, h = rnn(out, self.hidden[l])
            new_hidden.append(h); raw_outputs.append(out)
            if l != self.n_layers - 1: out = hid_dp(out)
            outputs.append(out)
        self.hidden = to_detach(new_hidden)
        return raw_outputs, outputs

    def reset(self, bs=1):
        "Zero the state, for batches of `bs` sequences, on the model's device."
        w = self.emb.weight
        self.hidden = [(w.new_zeros(1, bs, r.module.hidden_size),)*2 for r in self.rnns]


class LinearDecoder(nn.Module):
    """Variational dropout `output_p`, then a linear map from `n_hid` features to `n_out` scores,
    sharing `tie_encoder`'s weight if given; returns (scores, raw_outputs, outputs), the last of
    `outputs` replaced by its dropped version."""
    def __init__(self, n_out, n_hid, output_p, tie_encoder=None, bias=True):
        super().__init__()
        self.output_dp = RNNDropout(output_p)
        self.decoder = nn.Linear(n_hid, n_out, bias=bias)
        if bias: self.decoder.bias.data.zero_()
        if tie_encoder is not None: self.decoder.weight = tie_encoder.weight
        else: init.kaiming_uniform_(self.decoder.weight)
    def forward(self, input):
        raw_outputs, outputs = input
        dropped = self.output_dp(outputs[-1])   # AR's m * h_t: the outputs the scores come from
        return self.decoder(dropped), raw_outputs, outputs[:-1] + [dropped]

class SequentialRNN(nn.Sequential):
    "A Sequential whose `reset()` resets every child that has one."
    def reset(self):
        for c in self.children():
            if hasattr(c, 'reset'): c.reset()

def get_language_model(vocab_sz, emb_sz, n_hid, n_layers, pad_token=None, output_p=0.4,
                       hidden_p=0.2, input_p=0.6, embed_p=0.1, weight_p=0.5, tie_weights=True,
                       bias=True):
    "An AWD_LSTM encoder, then a LinearDecoder (tied to its embedding by default): a SequentialRNN."
    enc = AWD_LSTM(vocab_sz, emb_sz, n_hid, n_layers, pad_token, hidden_p=hidden_p,
                   input_p=input_p, embed_p=embed_p, weight_p=weight_p)
    dec = LinearDecoder(vocab_sz, emb_sz, output_p, tie_encoder=enc.emb if tie_weights else None,
                        bias=bias)
    return SequentialRNN(enc, dec)


class RNNTrainer(Callback):
    """Splits an RNN's (scores, raw_outputs, outputs) after the forward pass; in training adds AR
    (`alpha`) and TAR (`beta`) to the loss; resets the model's state at the start of each pass."""
    _order = 1   # after AvgStatsCallback (0) has averaged the cross-entropy alone
    def __init__(self, alpha=2., beta=1.): self.alpha,self.beta = alpha,beta
    def _reset(self):
        if hasattr(self.run.model, 'reset'): self.run.model.reset()
    def begin_epoch(self): self._reset()
    def begin_validate(self): self._reset()
    def after_pred(self):
        self.raw_out,self.out = self.pred[1],self.pred[2]
        self.run.pred = self.pred[0]
    def after_loss(self):
        if not self.in_train: return
        if self.alpha: self.run.loss = self.loss + self.alpha*self.out[-1].float().pow(2).mean()
        h = self.raw_out[-1]
        if self.beta and h.shape[1] > 1:
            self.run.loss = self.loss + self.beta*(h[:, 1:] - h[:, :-1]).float().pow(2).mean()

class GradientClipping(Callback):
    "After the backward pass, rescale the gradients so their global norm is at most `clip`."
    def __init__(self, clip=None): self.clip,self.norms = clip,[]
    def begin_fit(self): self.norms = []      # the norms before clipping, this fit's only
    def after_backward(self):
        # kept as tensors: reading each one (.item()) would make the CPU wait for a GPU every step
        if self.clip: self.norms.append(nn.utils.clip_grad_norm_(self.run.model.parameters(),
                                                                 self.clip).detach())


CHAR_LM = dict(emb_sz=64, n_hid=256, n_layers=2, bs=64, bptt=64, epochs=1, lr=5e-3,
               drop_mult=0.2, alpha=2., beta=1., clip=1., seed=0)
VALID_EVERY = 120   # training steps between the points of the validation curve (ValidCurve)

def char_lm_data(settings=CHAR_LM, split=None):
    """(DataBunch, vocab) for a character language model: 13's training chapters (shuffled each
    pass) and validation chapters, `bs` streams of `bptt` characters."""
    split = split_novels() if split is None else split
    vocab, train, valid = char_data(split, by_chapter=True)
    torch.manual_seed(settings['seed'])   # the chapters' first shuffle
    return lm_databunchify(train, valid, settings['bs'], settings['bptt'], len(vocab)), vocab


def char_lm_model(vocab_sz, settings=CHAR_LM):
    "The AWD-LSTM language model of `settings`, its dropouts scaled by `drop_mult`."
    s, d = settings, settings['drop_mult']
    return get_language_model(vocab_sz, s['emb_sz'], s['n_hid'], s['n_layers'], output_p=0.4*d,
                              hidden_p=0.2*d, input_p=0.6*d, embed_p=0.1*d, weight_p=0.5*d)

def char_lm_learner(data, settings=CHAR_LM, cbs=None, progress=True):
    """A Learner for `char_lm_model` on `data` (seeded with `seed`), trained on `def_device`: Adam,
    RNNTrainer (AR `alpha`, TAR `beta`), GradientClipping (`clip`), the loss per epoch
    (EpochHistory) and per batch (Recorder)."""
    torch.manual_seed(settings['seed'])
    model = char_lm_model(data.c_out, settings)
    cbfs = [partial(DeviceCallback, def_device), partial(AvgStatsCallback, []), EpochHistory,
            Recorder, partial(RNNTrainer, settings['alpha'], settings['beta']),
            partial(GradientClipping, settings['clip'])]
    if progress: cbfs.append(ProgressCallback)
    return Learner(model, data, cross_entropy_flat, opt_func=adam_opt(), lr=settings['lr'],
                   cbs=cbs, cb_funcs=cbfs)

def train_char_lm(data, settings=CHAR_LM, cbs=None, progress=True):
    "Train `char_lm_learner` for `epochs` passes with one-cycle; returns (learner, seconds)."
    learn = char_lm_learner(data, settings, cbs, progress)
    start = time.perf_counter()
    learn.fit(settings['epochs'], cbs=sched_1cycle(settings['lr'], pct_start=0.25))
    return learn, time.perf_counter() - start


class ValidCurve(Callback):
    """Validation loss (nats per character) every `every` training steps, scored by `lm_nats` on
    `eval_model` (a model of the same shape, loaded with the training model's weights each time):
    training's model, its state and the random number generators are left untouched (in eval mode
    no dropout draws a number). `steps`, `nats` and `seconds` hold the points: `seconds` is the
    time the fit has run, less the time spent here scoring, so models are timed alike whatever
    they score on (the clock read once the device has finished, 03's `sync`)."""
    def __init__(self, eval_model, dl, every):
        self.eval_model,self.dl,self.every = eval_model,dl,every
        self.steps,self.nats,self.seconds,self.n = [],[],[],0
    def begin_fit(self):
        self.steps,self.nats,self.seconds,self.n = [],[],[],0
        self.scoring,self.start = 0.,time.perf_counter()
    def after_batch(self):
        if not self.in_train: return
        self.n += 1
        if self.n % self.every: return
        sync(model_device(self.run.model)); now = time.perf_counter()
        m = self.eval_model.to(model_device(self.run.model))
        m.load_state_dict(self.run.model.state_dict())
        self.steps.append(self.n); self.nats.append(lm_nats(m, self.dl)[0])
        self.seconds.append(now - self.start - self.scoring)
        self.scoring += time.perf_counter() - now
    def results(self):
        "The points as a dict for a JSON file: steps, bits per character, seconds of training."
        return dict(steps=list(self.steps), bpc=[bits_per_char(n) for n in self.nats],
                    seconds=list(self.seconds))

def spread_sample(groups, n):
    """`n` tokens taken alike from each group (a list of tensors: a novel's chapters): whole pieces,
    evenly spaced through the group, the last one cut. Training text in the form of validation."""
    k, extra = divmod(n, len(groups))
    out = []
    for g, pieces in enumerate(groups):
        want = k + (g < extra)
        if sum(len(p) for p in pieces) < want:
            raise ValueError(f'spread_sample: group {g} has fewer than {want} tokens')
        for j in range(1, len(pieces) + 1):   # the fewest evenly spaced pieces that hold `want`
            picked = [pieces[i*len(pieces)//j] for i in range(j)]
            if sum(len(p) for p in picked) >= want: break
        out.append(torch.cat(picked)[:want])
    return out


def generate(model, vocab, prompt, n_chars=300, temperature=1., seed=0):
    """`prompt` (not empty) and `n_chars` characters that `model` (a reset-able language model)
    writes after it, each drawn from softmax(scores / temperature), with a generator seeded by
    `seed`; never `xxunk`, which stands for no character in particular. `model` is left in the
    mode it was in."""
    check_positive('generate', temperature=temperature)
    if not prompt: raise ValueError('generate: the prompt is empty; give at least one character')
    was_training = model.training
    model.eval(); model.reset()
    g, device, out = torch.Generator().manual_seed(seed), model_device(model), []
    x = vocab.numericalize(prompt)[None]
    try:
        with torch.no_grad():
            for _ in range(n_chars):
                scores = model(x.to(device))[0][0, -1].float().cpu()
                if vocab.unk is not None: scores[vocab.unk] = -math.inf
                x = torch.multinomial(F.softmax(scores/temperature, -1), 1, generator=g)[None]
                out.append(x.item())
    finally: model.train(was_training)   # the mode it came in
    return prompt + vocab.textify(out)


def char_lm_path():
    "Where this chapter's language model is saved: the data cache (00a's `cache_dir`)."
    return cache_dir()/'models'/'13a_char_lm.pth'

def meta_path(path):
    "The JSON saved beside the weights at `path`: what made them, and their sha256."
    return Path(path).with_suffix('.json')

def save_with_meta(model, path, meta):
    """Save `model`'s weights at `path` (11a's save_model, replacing any) and, beside them
    (`meta_path`), the dict `meta` and the weights' sha256 as JSON; returns the weights' path."""
    path = save_model(model, path, overwrite=True)
    nbio.atomic_write(meta_path(path), json.dumps({**meta, 'sha256': sha256_of(path)}, indent=1))
    return path

def read_checked_meta(path, who):
    """The JSON `save_with_meta` wrote beside the weights at `path`, once the weights are checked
    against its sha256; a ValueError naming `who` if the JSON cannot be read or the weights are
    missing, damaged or replaced."""
    path, json_path = Path(path), meta_path(path)
    try: meta = json.loads(json_path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f'{who}: cannot read {json_path} ({e})') from None
    if not path.exists() or sha256_of(path) != meta.get('sha256'):
        raise ValueError(f'{who}: {path} is missing or does not match the sha256 in {json_path}: '
                         'a damaged or replaced file; delete both to train anew')
    return meta

def text_sha256(text):
    "Hex SHA-256 of `text` in UTF-8: which training text a saved model was trained on."
    return hashlib.sha256(text.encode('utf-8')).hexdigest()

def cpu_model():
    "The processor's name: 01's `read_cpuinfo`'s model name where there is one, else platform's."
    try: name = read_cpuinfo().get('model name')
    except OSError: name = None
    return name or platform.processor() or 'unknown'

def run_where(device):
    """Where a run on `device` is timed: device type (and GPU name), torch threads, CPU, torch
    version. Seconds are comparable only between runs that agree on all of it."""
    device = torch.device(device)
    return dict(device=device.type, gpu=torch.cuda.get_device_name(device)
                if device.type == 'cuda' else None, threads=torch.get_num_threads(),
                cpu=cpu_model(), torch=torch.__version__)

def save_char_lm(model, vocab, settings=CHAR_LM, path=None, results=None, *, train_text):
    """Save `model`'s weights (11a's save_model, replacing any) and a JSON beside them: settings,
    vocabulary, the sha256 of `train_text` and of the weights, `results`, and `where` the model
    (just trained) sits: `run_where`, so that its curve's seconds are compared only with runs made
    alike; returns the weights' path."""
    meta = dict(settings=settings, vocab=vocab.itos, train_sha256=text_sha256(train_text),
                results=results or {}, where=run_where(model_device(model)))
    return save_with_meta(model, char_lm_path() if path is None else path, meta)

def load_char_lm(vocab, settings=CHAR_LM, path=None, *, train_text):
    """The model saved at `path` (default `char_lm_path()`), with its JSON: (model, meta). The
    weights must match their checksum, and the settings, vocabulary and training text those asked
    for."""
    path = Path(char_lm_path() if path is None else path)
    meta = read_checked_meta(path, 'load_char_lm')
    for what, want, got in [('settings', settings, meta.get('settings')),
                            ('vocabulary', vocab.itos, meta.get('vocab')),
                            ('training text', text_sha256(train_text), meta.get('train_sha256'))]:
        if want != got: raise ValueError(f'load_char_lm: {path} was made with other {what}')
    return load_model(char_lm_model(len(vocab), settings), path), meta

def char_lm(settings=CHAR_LM, path=None, progress=True):
    """(model, vocab, meta): the language model 13a saved at `path` (default `char_lm_path()`) if it
    was made with `settings`, 13's character vocabulary and training chapters, else one trained as
    13a does, then saved there."""
    split = split_novels()
    data, vocab = char_lm_data(settings, split)
    path = Path(char_lm_path() if path is None else path)
    if path.exists() and meta_path(path).exists():
        try:
            model, meta = load_char_lm(vocab, settings, path, train_text=split.train_text)
            return model, vocab, meta
        except ValueError as e: print(f'char_lm: {e}; training it again')
    # the same curve as 13a's run (it draws no random numbers: the same weights), for 14a
    curve = ValidCurve(char_lm_model(len(vocab), settings), data.valid_dl, VALID_EVERY)
    learn, secs = train_char_lm(data, settings, cbs=[curve], progress=progress)
    nats, _ = lm_nats(learn.model, data.valid_dl)
    results = dict(valid_bpc=bits_per_char(nats), steps=curve.n, seconds=secs,
                   curve=curve.results())
    save_char_lm(learn.model, vocab, settings, path, results, train_text=split.train_text)
    # as a later call will load it: checked, on the CPU
    model, meta = load_char_lm(vocab, settings, path, train_text=split.train_text)
    return model, vocab, meta


# What `from exp.nb_13a import *` gives (generated by notebook2script.py;
# a name bound only in a branch not taken is left out).
from exp.nb_13 import __all__ as _all_nb_13
__all__ = _all_nb_13 + [
    'RecurrentCell', 'RNNCell', 'LSTMCell', 'LSTMLayer', 'StackedLSTM', 'dropout_mask',
    'RNNDropout', 'WeightDropout', 'EmbeddingDropout', 'to_detach', 'AWD_LSTM', 'LinearDecoder',
    'SequentialRNN', 'get_language_model', 'RNNTrainer', 'GradientClipping', 'CHAR_LM',
    'VALID_EVERY', 'char_lm_data', 'char_lm_model', 'char_lm_learner', 'train_char_lm',
    'ValidCurve', 'spread_sample', 'generate', 'char_lm_path', 'meta_path', 'save_with_meta',
    'read_checked_meta', 'text_sha256', 'cpu_model', 'run_where', 'save_char_lm',
    'load_char_lm', 'char_lm'
]
__all__ = [_name for _name in dict.fromkeys(__all__) if _name in globals()]
