"""12: data parallelism on several processes (gloo on 127.0.0.1). Every launched run has a
process-group timeout and every subprocess a wall-clock limit, so a broken run fails instead of
hanging."""
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data.distributed import DistributedSampler as TorchDistributedSampler

import exp.nb_12 as nb12
from exp.nb_12 import (Callback, CheckpointCallback, DistributedCallback, DistributedError,
                       DistributedSampler, Learner, SyncBatchNorm, check_port, dist_setup,
                       first_failure, fit_toy_learner, free_port, init_distributed, launch,
                       launch_main, load_checkpoint, pick_backend, rank_device, rank_distrib,
                       rank_path, time_dp_steps, toy_databunch, train_toy,
                       under_torchrun)
from exp.nb_12 import _fail_on_rank

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name('torchrun')
TIMEOUT = 30   # seconds a collective may wait for a peer in these tests


def max_diff(a, b): return max((a[k] - b[k]).abs().max().item() for k in b)


# --- which backend, which device ---------------------------------------------------------------

@pytest.mark.parametrize('n_gpus, n_local, local_rank, nccl, expected', [
    (0, 1, 0, True, ('gloo', 'cpu')),
    (0, 2, 1, True, ('gloo', 'cpu')),
    (1, 1, 0, True, ('nccl', 'cuda:0')),
    (1, 2, 1, True, ('gloo', 'cuda:0')),    # NCCL refuses two ranks on one GPU
    (2, 2, 1, True, ('nccl', 'cuda:1')),
    (4, 2, 1, True, ('nccl', 'cuda:1')),
    (2, 3, 2, True, ('gloo', 'cuda:0')),    # GPUs shared in turn
    (2, 2, 1, False, ('gloo', 'cuda:1')),   # a torch built without NCCL
])
def test_backend_and_device_from_the_gpus_each_local_process_can_own(n_gpus, n_local, local_rank,
                                                                     nccl, expected):
    backend, device = pick_backend(n_gpus, n_local, local_rank, nccl)
    assert (backend, device) == (expected[0], torch.device(expected[1]))


def test_pick_backend_refuses_a_rank_outside_the_machine():
    with pytest.raises(ValueError, match=r'local_rank must be in \[0, 1\], got 2'):
        pick_backend(2, 2, 2)
    with pytest.raises(ValueError, match='n_local must be a whole number >= 1'):
        pick_backend(2, 0, 0)


def _torchrun_env(monkeypatch, master, rank, local_world=1):
    """The environment of rank `rank` of 2 under torchrun, one process per node; a machine with
    one GPU and NCCL."""
    env = dict(RANK=rank, WORLD_SIZE=2, LOCAL_RANK=0, LOCAL_WORLD_SIZE=local_world,
               MASTER_ADDR=master, MASTER_PORT=29500)
    for k, v in env.items(): monkeypatch.setenv(k, str(v))
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 1)
    monkeypatch.setattr(dist, 'is_nccl_available', lambda: True)


@pytest.mark.parametrize('master', ['127.0.0.1', '127.0.1.1', '::1', 'localhost'])
def test_two_nodes_on_one_machine_do_not_share_a_gpu_through_nccl(monkeypatch, master):
    # torchrun's two "nodes" meeting on loopback: LOCAL_WORLD_SIZE is 1 in each, yet both run here
    for rank in (0, 1):
        _torchrun_env(monkeypatch, master, rank)
        assert dist_setup() == ('gloo', torch.device('cuda', 0))


def test_two_nodes_on_two_machines_each_take_their_gpu(monkeypatch):
    for rank in (0, 1):
        _torchrun_env(monkeypatch, '10.0.0.1', rank)   # rank 0 on another machine
        assert dist_setup() == ('nccl', torch.device('cuda', 0))


def test_a_host_name_that_resolves_to_loopback_is_not_one_machine(monkeypatch):
    # torchrun's c10d rendezvous gives rank 0's host name, which resolves to 127.0.1.1 on
    # Debian-style hosts: the nodes may be on other machines, and all of them must pick NCCL
    loop = [(socket.AF_INET, socket.SOCK_STREAM, 6, '', ('127.0.1.1', 0))]
    monkeypatch.setattr(socket, 'getaddrinfo', lambda *args, **kwargs: loop)
    for rank in (0, 1):
        _torchrun_env(monkeypatch, 'node0', rank)
        assert dist_setup() == ('nccl', torch.device('cuda', 0))


def test_the_device_is_chosen_once_when_the_group_starts(monkeypatch):
    env = dict(RANK=0, WORLD_SIZE=1, MASTER_ADDR='127.0.0.1', MASTER_PORT=free_port())
    for k, v in env.items(): monkeypatch.setenv(k, str(v))
    calls, setup = [], nb12.dist_setup
    monkeypatch.setattr(nb12, 'dist_setup', lambda: calls.append(1) or setup())
    init_distributed(TIMEOUT)
    try: devices = [rank_device() for _ in range(3)]
    finally: dist.destroy_process_group()
    assert len(calls) == 1 and devices == [setup()[1]] * 3


def test_a_sharded_loader_keeps_the_workers_and_pinning_of_the_original():
    ds = toy_databunch(32).train_dl.dataset
    dl = nb12.DataLoader(ds, 32, shuffle=True, num_workers=2, pin_memory=True)
    shard = nb12._shard_loader(dl, 2, 1, shuffle=True, pad=True, seed=0)
    assert (shard.batch_size, shard.num_workers, shard.pin_memory) == (16, 2, True)


def test_outside_a_process_group_the_device_is_the_default_one():
    assert not dist.is_initialized() and nb12.rank_device() == nb12.def_device


# --- DistributedSampler ---------------------------------------------------------------------------

@pytest.mark.parametrize('n', [0, 1, 2, 5, 12, 13])
@pytest.mark.parametrize('world', [1, 2, 3, 5])
@pytest.mark.parametrize('shuffle,drop_last', [
    (False, False),
    (True, False),
    (False, True),
    (True, True),
])
def test_sampler_matches_torch(n, world, shuffle, drop_last):
    for rank in range(world):
        for epoch in (0, 2):
            theirs = TorchDistributedSampler(range(n), world, rank, shuffle=shuffle, seed=7,
                                             drop_last=drop_last)
            ours = DistributedSampler(n, world, rank, shuffle=shuffle, seed=7, drop_last=drop_last)
            theirs.set_epoch(epoch); ours.set_epoch(epoch)
            assert list(ours) == list(theirs) and len(ours) == len(theirs)


def test_sampler_same_permutation_on_every_rank_new_each_epoch():
    shards = [list(DistributedSampler(12, 3, r, seed=1)) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(12))   # together: each item once
    s = DistributedSampler(12, 3, 0, seed=1); s.set_epoch(1)
    assert list(s) != shards[0]


def test_sampler_without_padding_covers_each_item_once():
    shards = [list(DistributedSampler(10, 4, r, shuffle=True, pad=False)) for r in range(4)]
    assert sorted(sum(shards, [])) == list(range(10))
    lengths = [len(DistributedSampler(10, 4, r, pad=False)) for r in range(4)]
    assert lengths == [len(s) for s in shards] == [3, 3, 2, 2]


def test_sampler_bad_arguments():
    with pytest.raises(ValueError, match=r'rank must be in \[0, 1\], got 2'):
        DistributedSampler(10, 2, 2)
    with pytest.raises(ValueError, match='num_replicas'): DistributedSampler(10, 0, 0)
    with pytest.raises(ValueError, match='contradict'):
        DistributedSampler(10, 2, 0, drop_last=True, pad=False)


# --- SyncBatchNorm on one process is batch norm ---------------------------------------------------

@pytest.mark.parametrize('shape,ref', [((12, 4), nn.BatchNorm1d), ((6, 4, 3, 5), nn.BatchNorm2d)])
def test_sync_batchnorm_alone_is_batchnorm(shape, ref):
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    ours, theirs = SyncBatchNorm(4).double(), ref(4).double()
    y1, y2 = ours(x), theirs(x)
    g1, = torch.autograd.grad((y1**3).sum(), x); g2, = torch.autograd.grad((y2**3).sum(), x)
    assert torch.allclose(y1, y2, atol=1e-12) and torch.allclose(g1, g2, atol=1e-12)
    assert torch.allclose(ours.running_mean, theirs.running_mean)
    assert torch.allclose(ours.running_var, theirs.running_var)
    ours.eval(); theirs.eval()
    assert torch.allclose(ours(x), theirs(x), atol=1e-12)


# --- two processes equal one ----------------------------------------------------------------------

def test_two_processes_give_the_weights_of_one():
    # DDP's run is the SyncBatchNorm test's below and the command line's plain run
    ref_losses, ref = train_toy(6, 32)
    res = launch(train_toy, 2, 6, 32, mode='scratch', timeout=TIMEOUT)
    # float64: only the order of the sums differs
    for _, state in res: assert max_diff(state, ref) < 1e-12
    for i, l in enumerate(ref_losses): assert abs((res[0][0][i] + res[1][0][i])/2 - l) < 1e-12


def test_sync_batchnorm_two_processes_equal_one_and_plain_batchnorm_does_not():
    ref_losses, ref = train_toy(6, 32, norm=SyncBatchNorm)
    res = launch(train_toy, 2, 6, 32, mode='ddp', norm=SyncBatchNorm, timeout=TIMEOUT)
    assert max_diff(res[0][1], ref) < 1e-12 and max_diff(res[1][1], ref) < 1e-12
    # each rank's loss is the mean over its half of the global batch
    for i, l in enumerate(ref_losses): assert abs((res[0][0][i] + res[1][0][i])/2 - l) < 1e-12
    ref_bn = train_toy(6, 32, norm=nn.BatchNorm1d)[1]
    res_bn = launch(train_toy, 2, 6, 32, mode='ddp', norm=nn.BatchNorm1d, timeout=TIMEOUT)
    assert max_diff(res_bn[0][1], ref_bn) > 1e-3   # per-process statistics: the known difference


def test_learner_callback_two_processes_equal_one_with_metrics_and_checkpoint(tmp_path):
    ref_state, ref_stats = fit_toy_learner(epochs=2)
    res = launch(fit_toy_learner, 2, epochs=2, path=tmp_path/'ck.pt', timeout=TIMEOUT)
    for state, stats in res:
        assert max_diff(state, ref_state) < 1e-12
        # whole-set averages
        assert torch.allclose(torch.tensor(stats), torch.tensor(ref_stats), atol=1e-12)
    # written by rank 0 after the last epoch
    assert max_diff(torch.load(tmp_path/'ck.pt'), ref_state) < 1e-12
    res = launch(fit_toy_learner, 2, epochs=1, ddp=False, timeout=TIMEOUT)
    assert max_diff(res[0][0], fit_toy_learner(epochs=1)[0]) < 1e-12


DIE_IN_SECOND_SAVE = textwrap.dedent("""
    import os, signal, sys, torch
    import exp.nb_12 as nb12
    save, calls = torch.save, []
    def dying_save(obj, f, *args, **kwargs):
        # the second checkpoint: half of its bytes reach the file, then a kill -9
        calls.append(f)
        if len(calls) < 2: return save(obj, f, *args, **kwargs)
        import io
        buf = io.BytesIO(); save(obj, buf)
        half = buf.getvalue()[:len(buf.getvalue()) // 2]
        if hasattr(f, 'write'): f.write(half); f.flush()
        else: open(f, 'wb').write(half)
        os.kill(os.getpid(), signal.SIGKILL)
    torch.save = dying_save
    nb12.fit_toy_learner(epochs=2, path=sys.argv[1])
""")


def test_a_checkpoint_killed_while_written_leaves_the_previous_one_whole(tmp_path):
    ck = tmp_path / 'ck.pt'
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT)}
    proc = subprocess.run([sys.executable, '-c', DIE_IN_SECOND_SAVE, str(ck)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    # the file is still the first epoch's checkpoint, whole
    assert max_diff(torch.load(ck, weights_only=True), fit_toy_learner(epochs=1)[0]) < 1e-12
    # the next save leaves the checkpoint alone in its folder, no temporary file
    fit_toy_learner(epochs=1, path=ck)
    assert [p.name for p in tmp_path.iterdir()] == ['ck.pt']


def test_learner_callback_alone_restores_the_learner():
    from exp.nb_12 import (AvgStatsCallback, DistributedCallback, Learner, accuracy, partial,
                           toy_databunch, toy_model)
    import torch.nn.functional as F
    data = toy_databunch(32)
    learn = Learner(toy_model(), data, F.cross_entropy,
                    cb_funcs=[partial(AvgStatsCallback, accuracy), DistributedCallback])
    model, dls = learn.model, (data.train_dl, data.valid_dl)
    learn.logger = lambda *a: None
    learn.fit(1)
    assert learn.model is model and (data.train_dl, data.valid_dl) == dls


# --- what a step costs: time_dp_steps (notebook 12's chart and bench/distributed.py) -------------

def _median(xs): return sorted(xs)[len(xs)//2]


def test_time_dp_steps_times_the_all_reduce_apart_from_the_step():
    alone = time_dp_steps(steps=4, bs=8, nh=16, warmup=1)   # no process group: no all-reduce
    two = launch(time_dp_steps, 2, 4, 8, 16, 'scratch', timeout=TIMEOUT)
    ddp = launch(time_dp_steps, 2, 4, 8, 16, 'ddp', timeout=TIMEOUT)
    for res in [alone], two, ddp:
        for rank in res:
            assert len(rank) == 4 and all(s > 0 and 0 <= c < s for s, c in rank)
    assert all(c == 0 for rank in ddp for _, c in rank)   # DDP's all-reduce is inside backward
    # six gradients sent over loopback take far longer than the no-op of one process
    comm_alone = _median([c for _, c in alone])
    assert all(_median([c for _, c in rank]) > 10 * comm_alone for rank in two)


def test_time_dp_steps_refuses_bad_arguments():
    with pytest.raises(ValueError, match=r"mode must be one of \('scratch', 'ddp'\), got 'none'"):
        time_dp_steps(mode='none')
    with pytest.raises(ValueError, match='steps must be a whole number >= 1, got 0'):
        time_dp_steps(steps=0)
    with pytest.raises(DistributedError, match='the global batch bs=7 must split evenly over 2'):
        launch(time_dp_steps, 2, 2, 7, 16, timeout=TIMEOUT)


# --- faults ---------------------------------------------------------------------------------------

def test_a_rank_that_raises_stops_the_others_and_is_named():
    first = r'rank 1 of 2 failed first, with ValueError: rank 1 was told to fail'
    with pytest.raises(DistributedError, match=first):
        launch(_fail_on_rank, 2, bad=1, how='raise', timeout=TIMEOUT)


def test_a_killed_rank_is_named_not_the_survivor_that_lost_it():
    # The survivor records "connection reset by peer" after the kill; launch waits for the ranks
    # before it names one, and first_failure's test covers both orders of the exits: one run
    with pytest.raises(DistributedError) as info:
        launch(_fail_on_rank, 2, bad=1, how='kill', timeout=TIMEOUT)
    assert str(info.value) == ('launch: rank 1 of 2 died first, killed by signal SIGKILL '
                               'without raising an error; the other ranks were stopped')


@pytest.mark.parametrize('exits', [[(1, -9), (0, 1)], [(0, 1), (1, -9)], [(0, 1)]])
def test_first_failure_a_rank_without_a_recorded_error_died_first(exits):
    survivor = {0: (10.0, 'RuntimeError: Connection reset by peer', '')}
    assert first_failure(exits, survivor) == (1 if (1, -9) in exits else 0)
    errors = {0: (12.0, 'RuntimeError: Connection reset', ''), 1: (11.0, 'ValueError: bad', '')}
    assert first_failure([(0, 1), (1, 1)], errors) == 1   # otherwise the earliest error


def test_a_stuck_rank_ends_the_run_by_the_timeout():
    with pytest.raises(DistributedError, match=r'rank 0 of 2 failed first.*Timed out.*a timeout'):
        launch(_fail_on_rank, 2, bad=1, how='hang', seconds=120, timeout=2)


def test_port_in_use_is_a_clear_error():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); s.listen()
        port = s.getsockname()[1]
        with pytest.raises(RuntimeError, match=f'port {port} on 127.0.0.1 is already in use'):
            check_port('127.0.0.1', port)
        with pytest.raises(RuntimeError, match='already in use'):
            launch(_fail_on_rank, 2, port=port)
    check_port('127.0.0.1', free_port())


def test_launch_refuses_what_it_cannot_run():
    def local(): pass
    local.__module__ = '__main__'
    with pytest.raises(ValueError, match='defined in __main__'): launch(local, 2)
    with pytest.raises(ValueError, match='nprocs'): launch(train_toy, 0)
    with pytest.raises(ValueError, match='timeout'): launch(train_toy, 2, timeout=0)
    with pytest.raises(ValueError, match="mode must be one of"): train_toy(mode='mean')
    with pytest.raises(ValueError, match='no function'): launch_main('exp.nb_12:no_such_function')


def test_init_distributed_without_environment(monkeypatch):
    for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT', 'TORCHELASTIC_RUN_ID'):
        monkeypatch.delenv(k, raising=False)
    assert not under_torchrun()
    not_set = r"\['RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'\] not set"
    with pytest.raises(RuntimeError, match=not_set):
        init_distributed()


# --- the command line: plain, torchrun on one node, torchrun on two "nodes" -----------------------

def _run(cmd, out):
    """Start the command line on the toy problem; its output goes to a log file next to `out` (a
    pipe could fill up)."""
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT)}
    log = open(f'{out}.log', 'w')
    args = ['train_toy', '--mode', 'ddp', '--steps', '4', '--timeout', str(TIMEOUT),
            '--out', str(out)]
    p = subprocess.Popen(cmd + args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    p.log = log
    return p

def _check(procs, out):
    for p in procs:
        try: p.wait(timeout=150)
        finally: p.kill(); p.log.close()
        assert p.returncode == 0, Path(p.log.name).read_text()[-3000:]
    assert max_diff(torch.load(out)[1], train_toy(4)[1]) < 1e-12


def test_dist_launch_plain_and_under_torchrun(tmp_path):
    plain = _run([sys.executable, 'dist_launch.py'], tmp_path/'plain.pt')
    _check([plain], tmp_path/'plain.pt')
    one = _run([str(TORCHRUN), '--nproc_per_node=2', '--master-addr=127.0.0.1',
                f'--master-port={free_port()}', 'dist_launch.py'], tmp_path/'one.pt')
    _check([one], tmp_path/'one.pt')


def test_torchrun_two_nodes_on_loopback(tmp_path):
    port = free_port()
    node = lambda r, out: _run([str(TORCHRUN), '--nnodes=2', '--nproc_per_node=1',
                                f'--node_rank={r}', '--rdzv-backend=c10d',
                                f'--rdzv-endpoint=127.0.0.1:{port}', '--rdzv-id=test12',
                                '--local-addr=127.0.0.1', 'dist_launch.py'], out)
    _check([node(0, tmp_path/'n.pt'), node(1, tmp_path/'n1.pt')], tmp_path/'n.pt')


# --- GPUs -----------------------------------------------------------------------------------------

@pytest.mark.skipif(torch.cuda.device_count() < 2,
                    reason="NCCL needs a GPU per process: runs where there are 2 or more")
def test_nccl_two_gpus_give_the_weights_of_one():
    assert pick_backend(torch.cuda.device_count(), 2, 1, dist.is_nccl_available())[0] == 'nccl'
    ref = train_toy(6, 32)[1]
    res = launch(train_toy, 2, 6, 32, mode='ddp', timeout=TIMEOUT)
    assert max_diff(res[0][1], ref) < 1e-12


# --- a run of 2 processes killed and resumed ------------------------------------------------------
# toy_databunch: 12 global batches of 32 an epoch, 6 of 16 on each rank; checkpoints after the 2nd
# and 4th batch of each epoch and at its end. Rank 1 is killed as the 6th batch (iter 5) of epoch 1
# begins: the 5th batch's all-reduce is done, so rank 0 has finished writing its checkpoint after
# the 4th, and without rank 1 it cannot reach the next: both ranks go on from the same point.
EVERY, KILL_AT = 2, (1, 5)


class KillRank1(Callback):
    "SIGKILL to rank 1's process as batch KILL_AT begins: the crash of one machine."
    def begin_batch(self):
        if self.in_train and rank_distrib() == 1 and (self.epoch, self.iter) == KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)


def fit_dropout_learner(epochs=2, ckpt=None, resume=None, kill=False):
    """A toy fit through DistributedCallback whose batches draw random numbers (dropout, from a
    different seed on each rank), checkpointed to one file per rank; returns the weights."""
    torch.manual_seed(1 + rank_distrib())
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 3))
    model = model.double().to(rank_device())
    cbs = ([CheckpointCallback(rank_path(ckpt), every=EVERY)] if ckpt else []) + (
        [KillRank1()] if kill else [])
    learn = Learner(model, toy_databunch(32), F.cross_entropy, lr=0.1, cbs=cbs,
                    cb_funcs=[DistributedCallback])
    learn.logger = lambda *a: None
    learn.fit(epochs, resume=None if resume is None else rank_path(resume))
    return {k: v.detach().clone() for k, v in learn.model.state_dict().items()}


def test_two_processes_killed_mid_epoch_and_resumed_end_bit_identical(tmp_path):
    ref = launch(fit_dropout_learner, 2, epochs=2, timeout=TIMEOUT)
    ck = tmp_path / 'ck.pt'
    with pytest.raises(DistributedError, match='rank 1 of 2 died first, killed by signal SIGKILL'):
        launch(fit_dropout_learner, 2, epochs=2, ckpt=ck, kill=True, timeout=TIMEOUT)
    assert [load_checkpoint(f'{ck}.rank{r}')['iter'] for r in (0, 1)] == [4, 4]
    before = (tmp_path / 'ck.pt.rank0').read_bytes()
    res = launch(fit_dropout_learner, 2, epochs=2, ckpt=ck, resume=ck, timeout=TIMEOUT)
    (tmp_path / 'ck.pt.rank0').write_bytes(before)   # rank 0's file from the killed run again
    for r in (0, 1): assert max_diff(res[r], ref[r]) == 0, f'rank {r}'
    assert max_diff(res[0], res[1]) == 0   # DDP: the ranks step together
    # checkpoints of two different steps (rank 1's from the end of the run) are refused
    with pytest.raises(DistributedError, match=r'different points, \(epoch, batch\) by rank: '
                                               r'\[\(1, 4\), \(2, 0\)\]'):
        launch(fit_dropout_learner, 2, epochs=2, resume=ck, timeout=TIMEOUT)
