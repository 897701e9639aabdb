"""The calls a learner copies from the course's 04_callbacks notebook (fastai course-v3, nbs/dl2),
run against exp.nb_04. Written anew here, one test per idea of the lesson, on a small easy data set
(4 well-separated classes in 20 dimensions) instead of MNIST, so the whole file takes about a
second.

Where this project deliberately differs from the course (get_model's default lr is 0.1, not 0.5;
AvgStats returns plain floats), the test uses the course's call and checks what both promise.
"""
import contextlib
import io
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader as TorchDataLoader

# The course's own import, so the calls below use the names a learner gets (its checking helpers,
# test_eq ..., come too: 00 marks them __test__ = False, so pytest does not collect them).
from exp.nb_04 import *

# The names the course's 04 cells use, some only in type annotations: the star import gives them.
COURSE_NAMES = ['Any', 'AvgStatsCallback', 'Callable', 'Callback', 'Collection', 'DataBunch',
                'Dataset', 'Iterable', 'Learner', 'List', 'Optional', 'Runner', 'Sequence',
                'TrainEvalCallback', 'Tuple', 'Union', 'accuracy', 'camel2snake', 'get_dls',
                'get_model', 'listify', 'partial', 'F', 'torch', 'nn']


def test_star_import_gives_the_course_names():
    ns = {}
    exec('from exp.nb_04 import *', ns)
    assert [n for n in COURSE_NAMES if n not in ns] == []


def blobs(n, seed):
    "`n` points around 4 far-apart centres in 20 dimensions, with their class."
    g = torch.Generator().manual_seed(seed)
    centres = torch.eye(4, 20) * 6
    y = torch.randint(0, 4, (n,), generator=g)
    return centres[y] + torch.randn(n, 20, generator=g), y


@pytest.fixture
def course_data():
    "The course's set-up cell: data sets, sizes, loss, and a DataBunch built from get_dls."
    torch.manual_seed(0)
    (x_train, y_train), (x_valid, y_valid) = blobs(640, 1), blobs(256, 2)
    train_ds, valid_ds = Dataset(x_train, y_train), Dataset(x_valid, y_valid)
    bs = 64   # the course's cell also sets nh = 50: get_model's default hidden size
    c = y_train.max().item() + 1
    loss_func = F.cross_entropy
    data = DataBunch(*get_dls(train_ds, valid_ds, bs), c)
    return data, loss_func


def quiet(f, *args):
    "Run f(*args) with its printing captured; return what it printed."
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf): f(*args)
    return buf.getvalue()


def test_learner_and_a_hand_written_fit(course_data):
    data, loss_func = course_data
    learn = Learner(*get_model(data), loss_func, data)
    assert data.train_ds.x.shape == (640, 20) and data.c == 4
    # the course's first loop, over the Learner's parts
    for epoch in range(1):
        learn.model.train()
        for xb, yb in learn.data.train_dl:
            loss = learn.loss_func(learn.model(xb), yb)
            loss.backward()
            learn.opt.step()
            learn.opt.zero_grad()
        learn.model.eval()
        with torch.no_grad():
            tot_loss, tot_acc = 0., 0.
            for xb, yb in learn.data.valid_dl:
                pred = learn.model(xb)
                tot_loss += learn.loss_func(pred, yb)
                tot_acc += accuracy(pred, yb)
        nv = len(learn.data.valid_dl)
    assert tot_acc / nv > 0.9 and tot_loss / nv < 0.5


def test_callback_names():
    assert camel2snake('TrainEvalCallback') == 'train_eval_callback'
    assert TrainEvalCallback().name == 'train_eval'
    assert listify(None) == [] and listify('abc') == ['abc'] and listify((1, 2)) == [1, 2]
    assert listify(5) == [5]


def test_runner_with_stats_instance_then_factory(course_data):
    data, loss_func = course_data
    learn = Learner(*get_model(data), loss_func, data)
    stats = AvgStatsCallback([accuracy])
    run = Runner(cbs=stats)
    printed = quiet(run.fit, 2, learn)
    # one line per epoch, both sets
    assert printed.count('train') == 2 and printed.count('valid') == 2
    loss, acc = stats.valid_stats.avg_stats
    assert acc > 0.9 and loss < 0.5
    assert run.avg_stats is stats

    acc_cbf = partial(AvgStatsCallback, accuracy)
    run = Runner(cb_funcs=acc_cbf)
    quiet(run.fit, 1, learn)
    loss2, acc2 = run.avg_stats.valid_stats.avg_stats
    assert acc2 >= acc - 0.02 and run.train_eval.n_iter == 10   # 640/64 training batches


def test_a_callback_setting_stop_ends_training(course_data):
    data, loss_func = course_data
    learn = Learner(*get_model(data), loss_func, data)

    class TestCallback(Callback):   # the course's: count steps, stop at 10
        def begin_fit(self): self.n_iters = 0
        def after_step(self):
            self.n_iters += 1
            if self.n_iters >= 10: self.run.stop = True

    run = Runner(cb_funcs=TestCallback)
    run.fit(3, learn)   # 3 epochs of 10 batches asked for; 10 steps taken
    assert run.test.n_iters == 10 and run.n_iter == 10 and run.stop


def test_callbacks_read_runner_state_through_getattr(course_data):
    data, loss_func = course_data
    seen = []

    class Peek(Callback):
        _order = 1
        def begin_batch(self):
            if self.iter == 0:
                seen.append((self.epoch, self.in_train, self.model.training, self.iters))
        def after_loss(self):
            assert self.loss is self.run.loss and self.pred.shape == (len(self.xb), self.data.c)

    run = Runner(cbs=Peek())
    run.fit(2, Learner(*get_model(data), loss_func, data))
    assert seen == [(0, True, True, 10), (0, False, False, 2),
                    (1, True, True, 10), (1, False, False, 2)]


def test_databunch_from_torch_dataloaders(course_data):
    data, loss_func = course_data
    train_ds, valid_ds = data.train_ds, data.valid_ds
    tdata = DataBunch(TorchDataLoader(train_ds, batch_size=64, shuffle=True),
                      TorchDataLoader(valid_ds, batch_size=128), c=4)
    assert tdata.train_ds is train_ds and tdata.valid_ds is valid_ds
    learn = Learner(*get_model(tdata), loss_func, tdata)
    run = Runner(cb_funcs=partial(AvgStatsCallback, accuracy))
    quiet(run.fit, 2, learn)
    assert run.avg_stats.valid_stats.avg_stats[1] > 0.9 and run.avg_stats.valid_stats.count == 256


def test_typing_names_in_annotations():
    # course code annotates with the typing names that `from typing import *` gave it
    def pick(xs: Collection[int],
             f: Optional[Callable[[int], Any]] = None) -> List[Tuple[int, Any]]:
        return [(x, f(x) if f else x) for x in xs]
    assert pick([1, 2], lambda x: x * 10) == [(1, 10), (2, 20)]
    assert isinstance([1], Iterable) and isinstance((1,), Sequence) and Union[int, str] is not None
