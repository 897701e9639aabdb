"""09b: the Learner that is its own Runner keeps 05b's guarantees; tiny data, tiny models."""
import math

import pytest
import torch

from exp.nb_09b import (AvgStatsCallback, Callback, CancelTrainException, CheckpointCallback,
                        LR_Find, ParamScheduler, Recorder, TerminateOnNaNCallback, accuracy,
                        adam_opt, conv_layer, format_time, get_cnn_model, get_learner, init_cnn,
                        sgd_opt)


@pytest.fixture
def learner(make_tiny_data, make_tiny_model, make_tiny_learner):
    """A factory: the Learner of a 64-8-2 MLP on 48 + 16 random 1x8x8 images (3 training batches of
    16); its arguments go to the Learner, with lr 0.1 and SGD unless given."""
    def make(**kwargs):
        model = make_tiny_model(64, 2, n_hidden=8)
        return make_tiny_learner(make_tiny_data(shape=(1, 8, 8)), model, **kwargs)
    return make

def test_fit_trains_and_makes_the_optimizer_once(learner):
    learn = learner(cb_funcs=[Recorder], quiet=True)
    assert learn.opt is None
    learn.fit(3)
    opt = learn.opt
    losses = torch.stack(learn.recorder.losses)
    assert losses[-3:].mean() < losses[:3].mean()
    learn.fit(1); assert learn.opt is opt
    learn.fit(1, reset_opt=True); assert learn.opt is not opt
    assert learn.n_iter == 3 and learn.epoch == 0   # counters of the last fit: 3 batches of 16

def test_callbacks_given_to_fit_are_removed_even_after_an_error(learner):
    class Boom(Callback):
        def after_loss(self): raise RuntimeError('boom')
    learn = learner(quiet=True)
    with pytest.raises(RuntimeError) as info: learn.fit(1, cbs=Boom())
    assert 'raised in Boom.after_loss' in info.value.__notes__
    assert not hasattr(learn, 'boom') and not any(type(c).__name__ == 'Boom' for c in learn.cbs)
    sched = ParamScheduler('lr', lambda pos: 0.05)
    learn.fit(1, cbs=sched)
    assert learn.opt.param_groups[0]['lr'] == 0.05 and sched not in learn.cbs

def test_nan_guard_stops_training(learner):
    class Spoil(Callback):
        def after_pred(self):
            if self.in_train and self.iter == 1: self.run.pred = self.pred * math.nan
    learn = learner(quiet=True)
    assert any(isinstance(c, TerminateOnNaNCallback) for c in learn.cbs)
    before = [p.clone() for p in learn.model.parameters()]
    with pytest.raises(FloatingPointError, match='training batch 1'): learn.fit(1, cbs=Spoil())
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())
    # batch 0 did step
    assert any(not torch.equal(a, b) for a,b in zip(before, learn.model.parameters()))

def test_misspelled_event_methods_are_refused(learner):
    class Typo(Callback):
        def begin_epcoh(self): pass
    with pytest.raises(ValueError, match="did you mean 'begin_epoch'"): learner(cbs=Typo())
    learn = learner(quiet=True)
    with pytest.raises(ValueError, match='begin_epcoh'): learn.fit(1, cbs=Typo())
    with pytest.raises(TypeError, match='not a Callback instance'): learn.fit(1, cbs=[Recorder])

@pytest.mark.parametrize('opt_func', [sgd_opt, adam_opt()])
def test_lr_find_puts_weights_and_optimizer_back(learner, opt_func):
    learn = learner(opt_func=opt_func, lr=0.01, quiet=True)
    learn.fit(1)
    weights = {k: v.clone() for k,v in learn.model.state_dict().items()}
    state = {id(p): {k: v.clone() if torch.is_tensor(v) else v for k,v in s.items()}
             for p,s in learn.opt.state.items()}
    finder = LR_Find(max_iter=20, max_lr=100)
    learn.fit(10, cbs=finder)
    assert len(finder.lrs) > 3 and finder.lrs[-1] > finder.lrs[0]
    for k,v in learn.model.state_dict().items(): assert torch.equal(v, weights[k])
    assert learn.opt.param_groups[0]['lr'] == 0.01
    for p,s in learn.opt.state.items():
        for k,v in s.items():
            assert (torch.equal(v, state[id(p)][k]) if torch.is_tensor(v) else v == state[id(p)][k])

def test_avg_stats_writes_a_table_through_the_logger(learner):
    lines = []
    learn = learner(cb_funcs=lambda: AvgStatsCallback(accuracy))
    learn.logger = lines.append
    learn.fit(2)
    assert lines[0].split() == ['epoch', 'train_loss', 'train_accuracy', 'valid_loss',
                                'valid_accuracy', 'time']
    assert [l.split()[0] for l in lines[1:]] == ['0', '1']
    assert all(len(l) == len(lines[0]) for l in lines)
    row = lines[-1].split()
    assert float(row[3]) == pytest.approx(learn.avg_stats.valid_stats.avg_stats[0], abs=1e-6)
    assert format_time(3725) == '1:02:05' and format_time(65.9) == '1:05'

def test_get_learner_course_call(make_tiny_data):
    data = make_tiny_data(shape=(1, 8, 8))
    torch.manual_seed(3)
    learn = get_learner([4, 8], data, 0.1, conv_layer, cb_funcs=[Recorder])
    learn.logger = lambda *args: None
    torch.manual_seed(3)
    # Kaiming, not PyTorch's default init
    model = get_cnn_model(data, [4, 8], conv_layer); init_cnn(model)
    assert all(torch.equal(a.cpu(), b) for a,b in zip(learn.model.parameters(), model.parameters()))
    learn.fit(1)
    assert len(learn.recorder.losses) == 3

def test_cancel_train_still_runs_after_fit(learner):
    class Halt(Callback):
        def after_batch(self):
            if self.n_iter == 2: raise CancelTrainException()
        def after_fit(self): self.ended = True
    learn = learner(quiet=True)
    stop = Halt()
    learn.fit(5, cbs=stop)
    assert stop.ended and learn.n_iter == 2

def test_any_optimizer_function_and_scheduled_hypers(learner):
    # torch's optimizers are optimizer functions too
    learn = learner(opt_func=torch.optim.SGD, lr=0.1, quiet=True)
    learn.fit(1)
    assert isinstance(learn.opt, torch.optim.SGD)
    learn = learner(opt_func=adam_opt(), lr=0.01, cb_funcs=[Recorder], quiet=True)
    learn.fit(2, cbs=[ParamScheduler('mom', lambda pos: 0.95 - 0.1*pos),
                      ParamScheduler('lr', lambda pos: 0.01*(1-pos))])
    # set before the last of 6 batches
    assert learn.opt.param_groups[0]['mom'] == pytest.approx(0.95 - 0.1*5/6)
    assert learn.recorder.lrs[0][0] == 0.01 and learn.recorder.lrs[0][-1] == pytest.approx(0.01/6)

def test_splitter_makes_the_param_groups(learner):
    def splitter(m): return [{'params': list(m[:2].parameters()), 'lr': 0.01},
                             {'params': list(m[2:].parameters())}]
    learn = learner(splitter=splitter, quiet=True)
    learn.fit(1)
    assert [pg['lr'] for pg in learn.opt.param_groups] == [0.01, 0.1]

def test_resumed_loops_start_where_the_checkpoint_left_and_then_at_zero(learner, tmp_path):
    path, seen = tmp_path / 'c.pt', []
    class Where(Callback):
        def begin_batch(self): seen.append((self.epoch, self.in_train, self.iter))
    learn = learner(opt_func=torch.optim.SGD, quiet=True)   # torch's optimizers save too
    learn.fit(2, cbs=[CheckpointCallback(path, every=1), CancelAt(1, 0)])
    weights = {k: v.clone() for k,v in learn.model.state_dict().items()}
    learn.fit(2, cbs=Where(), resume=path)   # saved after batch 0 of epoch 1: 1 and 2 to go
    assert seen == [(1, True, 1), (1, True, 2), (1, False, 0)]
    assert learn.start_epoch == learn.start_iter == 0 and learn.n_iter == 6
    assert not all(torch.equal(v, weights[k]) for k,v in learn.model.state_dict().items())
    seen.clear(); learn.fit(1, cbs=Where())
    assert seen == [(0, True, 0), (0, True, 1), (0, True, 2), (0, False, 0)]
    with pytest.raises(ValueError, match=r'resume: .*c\.pt was saved by a fit of 2 epochs, not 1'):
        learn.fit(1, resume=path)
    assert learn.start_epoch == learn.start_iter == 0 and not hasattr(learn, 'resume')

class CancelAt(Callback):
    "Ends the fit after training batch `iter` of epoch `epoch`, its checkpoint saved first."
    _order = 99
    def __init__(self, epoch, iter): self.at = epoch,iter
    def after_batch(self):
        if self.in_train and (self.epoch, self.iter) == self.at: raise CancelTrainException()
