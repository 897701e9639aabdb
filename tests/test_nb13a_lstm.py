"""13a's recurrent networks: the cells and the stacked LSTM against PyTorch's in float64 (outputs,
states, every gradient), the AWD-LSTM's dropouts (what each drops, and that it drops it the same way
where it promises), AR and TAR computed by hand, gradient clipping, the model's carried state, and
the saved language model's checks."""
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from exp.nb_13 import Vocab
from exp.nb_13 import lm_databunchify
from exp.nb_13a import (AWD_LSTM, cpu_model, CHAR_LM, EmbeddingDropout, GradientClipping, LSTMCell,
                        RNNCell, RNNDropout, RNNTrainer, StackedLSTM, ValidCurve, WeightDropout,
                        char_lm_learner, char_lm_model, dropout_mask, generate,
                        get_language_model, load_char_lm, save_char_lm, spread_sample)

F64 = dict(dtype=torch.float64)


def close64(a, b):
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_cells_match_torch_cells_float64():
    torch.manual_seed(0)
    x, h, c = torch.randn(4, 3, **F64), torch.randn(4, 5, **F64), torch.randn(4, 5, **F64)
    ours, theirs = RNNCell(3, 5).double(), nn.RNNCell(3, 5).double()
    ours.load_state_dict(theirs.state_dict())
    close64(ours(x, h), theirs(x, h))
    ours, theirs = LSTMCell(3, 5).double(), nn.LSTMCell(3, 5).double()
    ours.load_state_dict(theirs.state_dict())
    for a, b in zip(ours(x, (h, c)), theirs(x, (h, c))): close64(a, b)


def test_cell_refuses_wrong_sizes_naming_shapes():
    with pytest.raises(ValueError, match=r'LSTMCell\(3, 5\).*\(4, 2\)'):
        LSTMCell(3, 5)(torch.randn(4, 2), (torch.zeros(4, 5), torch.zeros(4, 5)))


@pytest.mark.parametrize('n_layers', [1, 2, 3])
def test_stacked_lstm_matches_nn_lstm_float64(n_layers):
    torch.manual_seed(n_layers)
    theirs = nn.LSTM(4, 6, n_layers, batch_first=True).double()
    ours = StackedLSTM(4, 6, n_layers).double().load_torch(theirs)
    x = torch.randn(3, 9, 4, **F64)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    state = (torch.randn(n_layers, 3, 6, **F64), torch.randn(n_layers, 3, 6, **F64))
    s1, s2 = [tuple(s.clone().requires_grad_() for s in state) for _ in range(2)]
    (y1, (h1, c1)), (y2, (h2, c2)) = ours(x1, s1), theirs(x2, s2)
    for a, b in [(y1, y2), (h1, h2), (c1, c2)]: close64(a, b)
    wy, wh, wc = torch.randn_like(y1), torch.randn_like(h1), torch.randn_like(c1)
    for y, h, c in [(y1, h1, c1), (y2, h2, c2)]:
        ((y*wy).sum() + (h*wh).sum() + (c*wc).sum()).backward()
    close64(x1.grad, x2.grad)
    for a, b in zip(s1, s2): close64(a.grad, b.grad)   # the starting h0 and c0 too
    for l, layer in enumerate(ours.layers):
        for name, p in layer.cell.named_parameters():
            close64(p.grad, getattr(theirs, f'{name}_l{l}').grad)


def test_stacked_lstm_starts_from_zero_state_like_nn_lstm():
    torch.manual_seed(0)
    theirs = nn.LSTM(4, 6, 2, batch_first=True).double()
    ours = StackedLSTM(4, 6, 2).double().load_torch(theirs)
    x = torch.randn(2, 5, 4, **F64)
    close64(ours(x)[0], theirs(x)[0])


def test_load_torch_refuses_other_sizes():
    with pytest.raises(ValueError, match=r'\(4, 6, 2\) here, \(4, 6, 1\)'):
        StackedLSTM(4, 6, 2).load_torch(nn.LSTM(4, 6, 1, batch_first=True))


def test_dropout_mask_values_and_p_checked():
    torch.manual_seed(0)
    m = dropout_mask(torch.zeros(1, dtype=torch.float64), (1000, 10), 0.25)
    assert m.dtype == torch.float64 and m.shape == (1000, 10)
    assert set(m.unique().tolist()) == {0., 1/0.75}
    assert abs((m == 0).double().mean().item() - 0.25) < 0.02
    with pytest.raises(ValueError, match='p must be in'): dropout_mask(torch.zeros(1), (2,), 1.)


def test_rnn_dropout_same_mask_at_every_step():
    torch.manual_seed(0)
    x = torch.rand(16, 20, 8) + 1.   # never zero by itself
    y = RNNDropout(0.5)(x)
    kept = y != 0
    assert (kept == kept[:, :1]).all()
    assert 0 < kept.float().mean() < 1
    torch.testing.assert_close(y[kept], 2*x[kept])
    assert torch.equal(RNNDropout(0.5).eval()(x), x)
    with pytest.raises(ValueError, match=r'\(16, 8\)'): RNNDropout(0.5)(x[:, 0])


def test_weight_dropout_drops_w_hh_once_per_pass_and_trains_the_raw_weight():
    torch.manual_seed(0)
    lstm, plain = nn.LSTM(3, 4, batch_first=True), nn.LSTM(3, 4, batch_first=True)
    plain.load_state_dict(lstm.state_dict())
    wd = WeightDropout(lstm, 0.5)
    names = [n for n, _ in wd.named_parameters()]
    assert 'weight_hh_l0_raw' in names and 'module.weight_hh_l0' not in names
    x = torch.randn(2, 6, 3)
    y1 = wd(x)[0]
    used = lstm.weight_hh_l0.detach().clone()
    y2 = wd(x)[0]
    assert not torch.equal(y1, y2) and not torch.equal(used, lstm.weight_hh_l0)
    dropped = lstm.weight_hh_l0 == 0
    assert dropped.any() and not dropped.all()
    torch.testing.assert_close(lstm.weight_hh_l0[~dropped], 2*wd.weight_hh_l0_raw[~dropped])
    y2.sum().backward()
    g = wd.weight_hh_l0_raw.grad
    assert (g[dropped] == 0).all() and (g[~dropped] != 0).any()
    wd.eval()
    torch.testing.assert_close(wd(x)[0], plain(x)[0])


def test_weight_dropout_refuses_a_missing_weight():
    with pytest.raises(ValueError, match="no parameter 'weight_hh'"):
        WeightDropout(nn.LSTM(3, 4), 0.5, 'weight_hh')


def test_embedding_dropout_drops_whole_tokens():
    torch.manual_seed(0)
    enc = nn.Embedding(12, 5)
    words = torch.randint(0, 12, (6, 40))
    out = EmbeddingDropout(enc, 0.5)(words)
    zero = (out == 0).all(-1)
    for t in words.unique(): assert zero[words == t].all() or not zero[words == t].any()
    assert zero.any() and not zero.all()
    torch.testing.assert_close(out[~zero], 2*enc(words)[~zero])
    assert torch.equal(EmbeddingDropout(enc, 0.5).eval()(words), enc(words))


def test_rnn_trainer_adds_ar_and_tar_in_training_only():
    h = torch.tensor([[[1., 2.], [3., 0.], [3., 4.]]])
    d = torch.tensor([[[2., 0.], [6., 0.], [6., 0.]]])
    run = SimpleNamespace(pred=('scores', [h], [d]), loss=torch.tensor(1.), in_train=True)
    cb = RNNTrainer(alpha=2., beta=0.5)
    cb.set_runner(run)
    cb.after_pred()
    assert run.pred == 'scores'
    cb.after_loss()
    ar = 2. * (4 + 36 + 36) / 6            # alpha * mean((m * h)^2)
    tar = 0.5 * (4 + 4 + 0 + 16) / 4       # beta * mean((h_{t+1} - h_t)^2)
    torch.testing.assert_close(run.loss, torch.tensor(1. + ar + tar))
    run.pred, run.loss, run.in_train = ('scores', [h], [d]), torch.tensor(1.), False
    cb.after_pred(); cb.after_loss()
    assert run.loss.item() == 1.


def test_gradient_clipping_bounds_the_norm_and_keeps_the_direction():
    torch.manual_seed(0)
    lin = nn.Linear(4, 3)
    lin(torch.randn(8, 4)).pow(2).sum().backward()
    before = torch.cat([p.grad.flatten() for p in lin.parameters()])
    cb = GradientClipping(0.5)
    cb.set_runner(SimpleNamespace(model=lin))
    cb.after_backward()
    after = torch.cat([p.grad.flatten() for p in lin.parameters()])
    assert before.norm() > 0.5
    torch.testing.assert_close(after.norm(), torch.tensor(0.5))
    torch.testing.assert_close(after, before * 0.5 / before.norm())
    assert cb.norms == pytest.approx([before.norm().item()])


def test_awd_lstm_carries_a_detached_state_and_resets_it():
    torch.manual_seed(0)
    model = get_language_model(20, 6, 10, 2).eval()
    x = torch.randint(0, 20, (3, 12))
    model.reset()
    whole = model(x)[0]
    assert not any(h.requires_grad for hc in model[0].hidden for h in hc)
    model.reset()
    parts = torch.cat([model(x[:, :5])[0], model(x[:, 5:])[0]], 1)
    torch.testing.assert_close(parts, whole)
    model.reset()   # from a zero state the second part reads differently: the state mattered
    assert not torch.allclose(model(x[:, 5:])[0], whole[:, 5:])


def test_awd_lstm_new_batch_size_starts_from_zero_state():
    torch.manual_seed(0)
    enc = AWD_LSTM(20, 6, 10, 2).eval()
    enc(torch.randint(0, 20, (3, 4)))
    out = enc(torch.randint(0, 20, (5, 4)))[0]
    assert out[-1].shape == (5, 4, 6) and enc.hidden[0][0].shape == (1, 5, 10)


def test_decoder_is_tied_and_its_dropped_output_goes_to_ar():
    torch.manual_seed(0)
    model = get_language_model(20, 6, 10, 2, output_p=0.5)
    assert model[1].decoder.weight is model[0].emb.weight
    scores, raw, out = model(torch.randint(0, 20, (3, 7)))
    assert scores.shape == (3, 7, 20)
    zeros = out[-1] == 0
    assert zeros.any() and not (raw[-1][zeros] == 0).all()


def test_generate_is_seeded_and_refuses_temperature_zero():
    vocab = Vocab(['xxunk'] + list('abc '))
    torch.manual_seed(0)
    model = get_language_model(len(vocab), 4, 8, 1)
    a = generate(model, vocab, 'ab', 20, 1.0, seed=3)
    assert a == generate(model, vocab, 'ab', 20, 1.0, seed=3)
    assert a.startswith('ab') and len(a) == 22
    with pytest.raises(ValueError, match='temperature'): generate(model, vocab, 'a', 5, 0.)


def test_generate_refuses_an_empty_prompt_and_keeps_the_mode():
    vocab = Vocab(['xxunk'] + list('abc '))
    torch.manual_seed(0)
    model = get_language_model(len(vocab), 4, 8, 1)
    with pytest.raises(ValueError, match='prompt is empty'): generate(model, vocab, '', 5)
    model.train(); generate(model, vocab, 'ab', 5)
    assert model.training
    model.eval(); generate(model, vocab, 'ab', 5)
    assert not model.training


def test_spread_sample_takes_alike_from_every_group_in_whole_pieces():
    groups = [[torch.full((10,), 10*g + i) for i in range(5)] for g in range(3)]
    out = spread_sample(groups, 31)
    assert [len(o) for o in out] == [11, 10, 10]
    assert out[0][:10].eq(0).all() and out[0][10] == 2   # pieces 0 and 2 of 5, the second cut
    assert out[1].eq(10).all() and out[2].eq(20).all()
    with pytest.raises(ValueError, match='group 0 has fewer than 51'): spread_sample(groups, 151)


def _tiny_fit(valid_curve):
    "Train a tiny character LM for a few steps, with or without a ValidCurve; its weights."
    torch.manual_seed(0)
    ids = [torch.randint(0, 6, (n,)) for n in (300, 250, 280)]
    settings = {**CHAR_LM, 'emb_sz': 4, 'n_hid': 8, 'bs': 4, 'bptt': 8}
    data = lm_databunchify(ids, torch.randint(0, 6, (200,)), 4, 8, 6)
    curve = ValidCurve(char_lm_model(6, settings), data.valid_dl, 5) if valid_curve else None
    learn = char_lm_learner(data, settings, cbs=[curve] if curve else None, progress=False)
    learn.fit(1)
    return learn.model.state_dict(), curve


def test_valid_curve_scores_along_the_way_without_changing_training():
    plain, _ = _tiny_fit(False)
    watched, curve = _tiny_fit(True)
    for k in plain: assert torch.equal(plain[k], watched[k]), k
    assert curve.steps == [5, 10, 15, 20, 25] and len(curve.nats) == 5
    assert all(0 < n < 10 for n in curve.nats)


def test_valid_curve_times_training_without_its_own_scoring(monkeypatch):
    import exp.nb_13a as m
    clock = [0.]
    def tick():   # a clock that moves one second each time it is read
        clock[0] += 1
        return clock[0] - 1
    real = m.lm_nats
    def slow_nats(model, dl):   # scoring that takes 100 seconds: none may count as training
        clock[0] += 100
        return real(model, dl)
    monkeypatch.setattr(m, 'time', SimpleNamespace(perf_counter=tick))
    monkeypatch.setattr(m, 'lm_nats', slow_nats)
    _, curve = _tiny_fit(True)
    # the clock is read at the start of the fit, then before and after each scoring
    assert curve.seconds == [1., 2., 3., 4., 5.]
    res = curve.results()
    assert res['steps'] == curve.steps == [5, 10, 15, 20, 25] and res['seconds'] == curve.seconds
    assert res['bpc'] == pytest.approx([n/math.log(2) for n in curve.nats])
    json.dumps(res)   # plain numbers, for the saved JSON


def test_saved_language_model_is_checked_before_loading(tmp_path):
    vocab = Vocab(['xxunk'] + list('abc '))
    torch.manual_seed(0)
    model = char_lm_model(len(vocab), CHAR_LM)
    path = save_char_lm(model, vocab, CHAR_LM, tmp_path/'lm.pth', results={'valid_bpc': 2.0},
                        train_text='abc ab')
    meta = json.loads((tmp_path/'lm.json').read_text())
    assert meta['settings'] == CHAR_LM and meta['vocab'] == vocab.itos
    # where its seconds were measured: the model's device, the thread count, processor, torch
    assert meta['where'] == dict(device='cpu', gpu=None, threads=torch.get_num_threads(),
                                 cpu=cpu_model(), torch=torch.__version__)
    assert cpu_model() and cpu_model() != 'unknown' or not Path('/proc/cpuinfo').exists()
    loaded, meta = load_char_lm(vocab, CHAR_LM, path, train_text='abc ab')
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(ValueError, match='other settings'):
        load_char_lm(vocab, {**CHAR_LM, 'n_hid': 128}, path, train_text='abc ab')
    with pytest.raises(ValueError, match='other vocabulary'):
        load_char_lm(Vocab(['xxunk'] + list('abd ')), CHAR_LM, path, train_text='abc ab')
    # trained on other chapters: refused, naming the file
    with pytest.raises(ValueError, match=r'lm\.pth was made with other training text'):
        load_char_lm(vocab, CHAR_LM, path, train_text='abc a')
    data = bytearray(path.read_bytes()); data[-100] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match='sha256'):
        load_char_lm(vocab, CHAR_LM, path, train_text='abc ab')


def test_char_lm_loads_a_matching_model_and_retrains_otherwise(tmp_path, monkeypatch, capsys):
    import exp.nb_13a as m
    vocab = Vocab(['xxunk'] + list('abc '))
    split = SimpleNamespace(train_text='abc ab')
    monkeypatch.setattr(m, 'split_novels', lambda: split)
    monkeypatch.setattr(m, 'char_lm_data',
                        lambda settings, split: (SimpleNamespace(valid_dl=None), vocab))
    torch.manual_seed(0)
    saved = char_lm_model(len(vocab), CHAR_LM)
    path = save_char_lm(saved, vocab, CHAR_LM, tmp_path/'lm.pth', train_text='abc ab')
    trained = []
    def fake_train(data, settings, cbs=None, progress=True):
        trained.append(settings)
        return SimpleNamespace(model=char_lm_model(len(vocab), settings)), 1.
    monkeypatch.setattr(m, 'train_char_lm', fake_train)
    monkeypatch.setattr(m, 'lm_nats', lambda model, dl: (1.0, 10))
    model, v, meta = m.char_lm(CHAR_LM, path)
    assert trained == [] and v is vocab and meta['sha256'] == m.sha256_of(path)
    assert torch.equal(model[0].emb.weight, saved[0].emb.weight)
    other = {**CHAR_LM, 'seed': 1}
    model, v, meta = m.char_lm(other, path)
    assert trained == [other] and 'other settings' in capsys.readouterr().out
    assert meta['settings'] == other and meta['results']['valid_bpc'] == 1/math.log(2)
    # a model trained here saves its validation curve (none in this fake training)
    assert meta['results']['curve'] == dict(steps=[], bpc=[], seconds=[])
    assert meta['where']['device'] == 'cpu' and meta['where']['threads'] == torch.get_num_threads()
    split.train_text = 'abc a'   # 13's split changed: the saved model read other chapters
    model, v, meta = m.char_lm(other, path)
    assert trained == [other, other] and 'other training text' in capsys.readouterr().out


def test_gradient_clipping_keeps_each_fits_norms_as_tensors():
    from exp.nb_13a import GradientClipping
    clipper = GradientClipping(clip=0.1)
    model = torch.nn.Linear(3, 1)
    model(torch.randn(5, 3)).pow(2).sum().mul(100).backward()
    clipper.run = type('Run', (), {'model': model})()
    clipper.after_backward()
    assert torch.is_tensor(clipper.norms[0]) and clipper.norms[0] > 0.1   # not read with .item()
    assert model.weight.grad.norm() <= 0.1 + 1e-6 or torch.cat(
        [p.grad.flatten() for p in model.parameters()]).norm() <= 0.1 + 1e-6
    clipper.begin_fit()
    assert clipper.norms == []


def test_read_checked_meta_refuses_an_unreadable_json_and_changed_or_missing_weights(tmp_path):
    from exp.nb_13a import meta_path, read_checked_meta, save_with_meta
    path = save_with_meta(nn.Linear(2, 3), tmp_path / 'm.pth', dict(settings=dict(a=1)))
    meta = read_checked_meta(path, 'who')
    assert meta['settings'] == dict(a=1) and len(meta['sha256']) == 64
    assert json.loads(meta_path(path).read_text()) == meta
    path.write_bytes(path.read_bytes() + b'x')
    with pytest.raises(ValueError, match=r'^who: .* does not match the sha256 in .*m\.json'):
        read_checked_meta(path, 'who')
    path.unlink()
    with pytest.raises(ValueError, match=r'^who: .* is missing'):
        read_checked_meta(path, 'who')
    meta_path(path).write_text('{not json')
    with pytest.raises(ValueError, match=r'^who: cannot read .*m\.json'):
        read_checked_meta(path, 'who')
