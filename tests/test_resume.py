"""09b's exact resume: a fit killed with SIGKILL mid-epoch and resumed from its last checkpoint ends
with the weights of the fit that never stopped, bit for bit (Adam, the one-cycle schedule, dropout
and random draws from torch, Python and NumPy in every batch and in every item, where the loader
makes it, included), with 0 and 2 loader workers; and the checkpoint files are written atomically
and read with weights_only=True.

Run as a script, this file is the child process that trains and gets killed (see `child`)."""
import contextlib
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from exp import nb_09b
from exp.nb_09b import (Callback, CheckpointCallback, DataBunch, DataLoader, Learner,
                        ParamScheduler, adam_opt, load_checkpoint, one_cycle, save_checkpoint)

REPO = Path(__file__).resolve().parents[1]
# 96 training examples in batches of 16: 6 batches an epoch; checkpoints after batches 2 and 4 of
# each epoch and at its end; the kill comes after batch 4 of epoch 1 (counted from 0), so the
# last checkpoint goes on at batch 4 of epoch 1 and that batch is done again
EPOCHS, EVERY, KILL_AT = 3, 2, (1, 4)


class Noise(Callback):
    "Scales and jitters each training batch with draws from torch, Python's random and NumPy."
    def begin_batch(self):
        if not self.in_train: return
        scale = 1 + 0.1*random.random() + 0.1*float(np.random.rand())
        self.run.xb = self.xb*scale + 0.1*torch.randn_like(self.xb)

class Jittered:
    """The examples of `ds`, each scaled by draws from torch, Python's random and NumPy made where
    the item is made (in a loader worker, given workers): a random item transform."""
    def __init__(self, ds): self.ds = ds
    def __len__(self): return len(self.ds)
    def __getitem__(self, idxs):
        x, y = self.ds[idxs]
        n = len(x)
        py = torch.tensor([random.random() for _ in range(n)])
        scale = 1 + 0.1*torch.rand(n) + 0.1*py + 0.1*torch.from_numpy(np.random.rand(n)).float()
        return x * scale[:, None, None, None], y

class Kill(Callback):
    "SIGKILL to its own process at KILL_AT: no clean-up, no after_fit, as a crash."
    _order = 99   # after CheckpointCallback has had its turn at this batch
    def after_batch(self):
        if (self.epoch, self.iter) == KILL_AT: os.kill(os.getpid(), signal.SIGKILL)

class Crash(Callback):
    "Raises at KILL_AT: the same stop as Kill, within this process."
    _order = 99
    def after_batch(self):
        if (self.epoch, self.iter) == KILL_AT: raise RuntimeError('crash')


def learner(tiny_data, workers, seed):
    """A dropout MLP on tiny 1x8x8 images, jittered as they are loaded, with Adam, its loader with
    `workers` processes; weights and every random state from `seed`."""
    data = tiny_data(n_train=96, n_valid=32, bs=16, shape=(1, 8, 8))
    data = DataBunch(DataLoader(Jittered(data.train_ds), 16, shuffle=True, num_workers=workers),
                     data.valid_dl, c_in=1, c_out=2)
    torch.manual_seed(seed); random.seed(seed); np.random.seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Dropout(0.2),
                          nn.Linear(16, 2))
    return Learner(model, data, F.cross_entropy, opt_func=adam_opt(wd=1e-2), lr=1e-2,
                   cbs=[Noise()])

def sched(): return ParamScheduler('lr', one_cycle(1e-2))

def child(workers, ref_file, ckpt):
    "The uninterrupted fit (its weights saved to `ref_file`), then the same fit, killed."
    from conftest import tiny_data   # this file's folder is the script's first import path
    ref = learner(tiny_data, workers, seed=0)
    ref.fit(EPOCHS, cbs=sched())
    torch.save(ref.model.state_dict(), ref_file)
    run = learner(tiny_data, workers, seed=0)
    run.fit(EPOCHS, cbs=[sched(), CheckpointCallback(ckpt, every=EVERY), Kill()])
    sys.exit('the fit was not killed')


@contextlib.contextmanager
def one_thread_kept_rng():
    "One torch thread, as in the child; the global random states put back afterwards."
    threads, states = torch.get_num_threads(), nb_09b.get_rng_states()
    torch.set_num_threads(1)
    try: yield
    finally:
        torch.set_num_threads(threads)
        nb_09b.set_rng_states(states)

def same_weights(a, b): return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

def run_child(err_file, *args):
    "Run this file as a script in its own process group; its return code (stderr to err_file)."
    with open(err_file, 'w') as err:
        proc = subprocess.Popen([sys.executable, __file__, *map(str, args)], cwd=REPO,
                                start_new_session=True, stdout=subprocess.DEVNULL, stderr=err)
    try: return proc.wait(timeout=300)
    finally:
        # the loader's worker processes outlive a killed parent: end them with its group
        with contextlib.suppress(ProcessLookupError): os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.parametrize('workers', [0, 2])
def test_a_fit_killed_mid_epoch_resumes_to_the_same_weights(make_tiny_data, tmp_path, workers):
    ref_file, ckpt = tmp_path / 'ref.pt', tmp_path / 'run.pt'
    code = run_child(tmp_path / 'err.txt', workers, ref_file, ckpt)
    assert code == -signal.SIGKILL, (tmp_path / 'err.txt').read_text()
    saved = load_checkpoint(ckpt)
    assert (saved['epoch'], saved['iter']) == KILL_AT and len(saved['batches']) == 6
    with one_thread_kept_rng():
        run = learner(make_tiny_data, workers, seed=1)   # other weights, other random states
        run.fit(EPOCHS, cbs=[sched(), CheckpointCallback(ckpt, every=EVERY)], resume=ckpt)
    ref = torch.load(ref_file, weights_only=True)
    assert same_weights(ref, run.model.state_dict())
    done = load_checkpoint(ckpt)   # the resumed fit kept saving, up to the end
    assert (done['epoch'], done['iter'], done['n_iter']) == (EPOCHS, 0, 6 * EPOCHS)


def crash_and_resume(tiny_data, ckpt, every=EVERY, cbs=None, workers=(0, 0), crash_cbs=()):
    """The fit crashed at KILL_AT in this process (with `crash_cbs` too), then resumed by a new
    learner (with `cbs` instead of the schedule alone): that learner. `workers`: the loader's,
    crashed and resumed."""
    with one_thread_kept_rng():
        run = learner(tiny_data, workers[0], seed=0)
        with pytest.raises(RuntimeError, match='crash'):
            run.fit(EPOCHS, cbs=[sched(), CheckpointCallback(ckpt, every=every), Crash(),
                                 *crash_cbs])
        run = learner(tiny_data, workers[1], seed=1)
        run.fit(EPOCHS, cbs=cbs or sched(), resume=ckpt)
    return run

def reference(tiny_data, cbs=None, workers=0):
    with one_thread_kept_rng():
        ref = learner(tiny_data, workers, seed=0)
        ref.fit(EPOCHS, cbs=cbs or sched())
    return ref.model.state_dict()

class Position(Callback):
    "Records where the schedule stands at each training batch: (epoch, batch, n_epochs, lr)."
    _order = 2   # after ParamScheduler has set the lr
    def __init__(self): self.seen = []
    def begin_batch(self):
        if self.in_train:
            lr = self.opt.param_groups[0]['lr']
            self.seen.append((self.epoch, self.iter, self.n_epochs, lr))

@pytest.mark.parametrize('every', [EVERY, None])
def test_resuming_mid_epoch_or_from_an_epoch_end_is_exact(make_tiny_data, tmp_path, every):
    ref_pos, pos = Position(), Position()
    run = crash_and_resume(make_tiny_data, tmp_path / 'run.pt', every=every, cbs=[sched(), pos])
    ref = reference(make_tiny_data, cbs=[sched(), ref_pos])
    assert same_weights(ref, run.model.state_dict())
    # the schedule's position is the float the uninterrupted run had, not one recomputed
    start = (1, KILL_AT[1] if every else 0)
    assert pos.seen == [p for p in ref_pos.seen if p[:2] >= start]

@pytest.mark.parametrize('workers', [(0, 2), (2, 0)])
def test_a_mid_epoch_resume_with_or_without_workers_as_saved(make_tiny_data, tmp_path, workers):
    "Items drawn in the main process or in workers: a resume that changes that is refused."
    with pytest.raises(ValueError, match='loader (with|without) worker processes') as info:
        crash_and_resume(make_tiny_data, tmp_path / 'run.pt', workers=workers)
    assert f'num_workers={workers[1]}' in str(info.value) and 'run.pt' in str(info.value)

def test_the_workers_base_seed_is_needed(make_tiny_data, tmp_path, monkeypatch):
    "Without the pass's base seed, the items made by workers after the resume go elsewhere."
    load = nb_09b.load_checkpoint
    def spoiled(path, who='resume'):
        state = load(path, who)
        state['worker_seed'] += 1
        return state
    monkeypatch.setattr(nb_09b, 'load_checkpoint', spoiled)
    run = crash_and_resume(make_tiny_data, tmp_path / 'run.pt', workers=(2, 2))
    assert not same_weights(reference(make_tiny_data, workers=2), run.model.state_dict())

@pytest.mark.parametrize('dropped', ['torch', 'python', 'numpy', 'batches'])
def test_each_saved_piece_is_needed(make_tiny_data, tmp_path, monkeypatch, dropped):
    "Without any one random state, or the epoch's order, the resumed run goes elsewhere."
    ckpt = tmp_path / 'run.pt'
    load = nb_09b.load_checkpoint
    def spoiled(path, who='resume'):
        state = load(path, who)
        if dropped == 'batches': state['batches'] = state['batches'][::-1]
        else: state['rng'][dropped] = fresh[dropped]
        return state
    fresh = nb_09b.get_rng_states()
    monkeypatch.setattr(nb_09b, 'load_checkpoint', spoiled)
    run = crash_and_resume(make_tiny_data, ckpt)
    assert not same_weights(reference(make_tiny_data), run.model.state_dict())

class Drift(Callback):
    """Training state of a callback's own, made at begin_fit (as 10c's master weights are): the
    sum of the training losses so far, which scales each loss. Saved as torch's objects are."""
    def begin_fit(self): self.total = torch.zeros(())
    def after_loss(self):
        if not self.in_train: return
        self.total += self.loss.detach()
        self.run.loss = self.loss * (1 + 0.01 * self.total)
    def state_dict(self): return {'total': self.total.clone()}
    def load_state_dict(self, sd): self.total = sd['total'].clone()

def test_a_callbacks_own_state_is_saved_and_put_back_after_its_begin_fit(make_tiny_data,
                                                                         tmp_path):
    ckpt = tmp_path / 'run.pt'
    run = crash_and_resume(make_tiny_data, ckpt, cbs=[sched(), Drift()], crash_cbs=[Drift()])
    assert same_weights(reference(make_tiny_data, cbs=[sched(), Drift()]), run.model.state_dict())
    assert torch.is_tensor(torch.load(ckpt, weights_only=True)['cbs']['drift']['total'])
    # the saved run's callbacks with a state, and no others
    with pytest.raises(ValueError, match=r"state of the callbacks \['drift'\].*are \[\]"):
        crash_and_resume(make_tiny_data, ckpt, crash_cbs=[Drift()])

@pytest.mark.parametrize('half', ['bfloat16 masters', 'float16 autocast'])
def test_mixed_precision_resumes_exactly(make_tiny_data, tmp_path, half):
    # 10c's callbacks keep state the model's weights do not show: MixedPrecision its float32
    # masters and loss scale, AutocastCallback its GradScaler (its scale doubles after every clean
    # step here, so float16 overflows now and then and steps are skipped: a scaler started afresh
    # would skip others); both go into the checkpoint
    from exp.nb_10c import AutocastCallback, MixedPrecision
    make = ((lambda: MixedPrecision(dtype=torch.bfloat16)) if half == 'bfloat16 masters' else
            (lambda: AutocastCallback(dtype=torch.float16, init_scale=2.**16, growth_interval=1)))
    ckpt = tmp_path / 'run.pt'
    run = crash_and_resume(make_tiny_data, ckpt, cbs=[sched(), make()], crash_cbs=[make()])
    assert same_weights(reference(make_tiny_data, cbs=[sched(), make()]), run.model.state_dict())

def test_a_callback_whose_state_cannot_be_saved_is_refused_by_name(make_tiny_learner, tmp_path):
    class Hidden(Callback): resumable = False
    learn = make_tiny_learner(quiet=True)
    with pytest.raises(ValueError, match='CheckpointCallback: Hidden keeps training state'):
        learn.fit(1, cbs=[CheckpointCallback(tmp_path / 'c.pt'), Hidden()])
    assert not (tmp_path / 'c.pt').exists()

def test_cuda_states_are_saved_only_where_cuda_is_in_use(monkeypatch):
    "Reading CUDA's random states would start CUDA in a CPU run (its loader workers then fork)."
    read = []
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'get_rng_state_all', lambda: read.append(1) or [])
    monkeypatch.setattr(torch.cuda, 'is_initialized', lambda: False)
    assert 'cuda' not in nb_09b.get_rng_states() and not read
    monkeypatch.setattr(torch.cuda, 'is_initialized', lambda: True)
    assert nb_09b.get_rng_states()['cuda'] == [] and read == [1]

def test_an_unreadable_checkpoint_is_named_as_refused_not_as_damaged(make_tiny_learner, tmp_path,
                                                                     monkeypatch):
    learn = make_tiny_learner(quiet=True)
    ckpt = tmp_path / 'c.pt'
    learn.fit(1, cbs=CheckpointCallback(ckpt))
    def refused(path, **kwargs): raise PermissionError(13, 'Permission denied', str(path))
    monkeypatch.setattr(torch, 'load', refused)
    with pytest.raises(PermissionError, match=f'resume: cannot read {ckpt} .Permission denied.'
                       ) as info:
        learn.fit(1, resume=ckpt)
    assert info.value.errno == 13 and info.value.__cause__.filename == str(ckpt)

def test_a_save_leaves_another_files_temp_alone(tmp_path):
    "12's per-rank checkpoints sit beside each other: ck.pt's save must not take ck.pt.rank1's."
    other = tmp_path / '.ck.pt.rank1.abcd1234.tmp'
    stale = tmp_path / '.ck.pt.abcd1234.tmp'
    other.write_bytes(b'in flight'); stale.write_bytes(b'stale')
    save_checkpoint({'x': torch.zeros(1)}, tmp_path / 'ck.pt')
    assert other.exists() and not stale.exists()

def test_the_resumed_epoch_loads_only_the_batches_not_done(make_tiny_data, tmp_path):
    seen = []
    class Where(Callback):
        def begin_batch(self):
            if self.in_train: seen.append((self.epoch, self.iter, len(self.xb)))
    ckpt = tmp_path / 'run.pt'
    crash_and_resume(make_tiny_data, ckpt, cbs=[sched(), Where()])
    assert seen == [(e, i, 16) for e in (1, 2) for i in range(6) if (e, i) >= KILL_AT]


def test_the_checkpoint_is_plain_tensors_and_numbers(make_tiny_learner, tmp_path):
    learn = make_tiny_learner(quiet=True)
    learn.fit(2, cbs=CheckpointCallback(tmp_path / 'c.pt', every=1))
    state = torch.load(tmp_path / 'c.pt', weights_only=True)
    assert set(state) == set(nb_09b.CHECKPOINT_KEYS)
    assert (state['epochs'], state['epoch'], state['iter'], state['batches']) == (2, 2, 0, [])
    assert isinstance(state['n_epochs'], float) and isinstance(state['rng']['torch'], torch.Tensor)
    # the loader has its own batch sampler back
    assert type(learn.data.train_dl.batch_sampler).__name__ == 'Sampler'

def test_bad_checkpoints_and_arguments_are_named(make_tiny_learner, tmp_path):
    learn = make_tiny_learner(quiet=True)
    missing, empty, short, weights = (tmp_path / n for n in ('no.pt', 'e.pt', 's.pt', 'w.pt'))
    with pytest.raises(FileNotFoundError, match=f'resume: no checkpoint file {missing}'):
        learn.fit(1, resume=missing)
    learn.fit(1, cbs=CheckpointCallback(short))
    short.write_bytes(short.read_bytes()[:200]); empty.write_bytes(b'')
    torch.save(learn.model.state_dict(), weights)
    for path, words in ((empty, 'is empty'), (short, 'is truncated or damaged')):
        with pytest.raises(ValueError, match=words) as info:
            learn.fit(1, resume=path)
        assert str(path) in str(info.value) and 'weights_only' not in str(info.value)
    with pytest.raises(ValueError, match='not a CheckpointCallback checkpoint: no model, opt'):
        learn.fit(1, resume=weights)
    learn.fit(2, cbs=CheckpointCallback(short))
    with pytest.raises(ValueError, match='saved by a fit of 2 epochs, not 3'):
        learn.fit(3, resume=short)
    with pytest.raises(ValueError, match='every must be a whole number >= 1, got 0'):
        CheckpointCallback(short, every=0)
    learn.data.train_dl = torch.utils.data.DataLoader(learn.data.train_ds, 16)
    with pytest.raises(TypeError, match="must be 03's or 08's DataLoader.*torch.utils.data"):
        learn.fit(1, cbs=CheckpointCallback(short))


def test_a_write_killed_midway_leaves_a_whole_checkpoint_and_no_temp_for_long(tmp_path):
    dest = tmp_path / 'big.pt'
    save_checkpoint({'x': torch.zeros(3)}, dest)
    # the child's torch.save writes half of the new file's bytes, then the child kills itself
    proc = subprocess.run([sys.executable, __file__, 'write', str(dest)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    temps = list(tmp_path.glob('.big.pt.*.tmp'))
    assert len(temps) == 1 and temps[0].stat().st_size > 0, 'no write was under way when killed'
    assert torch.equal(torch.load(dest, weights_only=True)['x'], torch.zeros(3))   # the old file
    save_checkpoint({'x': torch.ones(3)}, dest)
    assert [p.name for p in tmp_path.iterdir()] == ['big.pt']
    assert torch.equal(torch.load(dest, weights_only=True)['x'], torch.ones(3))

def write_half_then_die(dest):
    "save_checkpoint, its torch.save cut short: half of the bytes reach the file, then a kill -9."
    import io
    def dying_save(obj, f):
        buf = io.BytesIO()
        torch_save(obj, buf)
        f.write(buf.getvalue()[:len(buf.getvalue()) // 2]); f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    torch_save, torch.save = torch.save, dying_save
    save_checkpoint({'x': torch.randn(1000)}, dest)


if __name__ == '__main__':
    torch.set_num_threads(1)
    if sys.argv[1] == 'write': write_half_then_die(sys.argv[2])
    child(int(sys.argv[1]), *sys.argv[2:])
