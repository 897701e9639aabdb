# Generated from nbs/12_distributed.ipynb by notebook2script.py:
# edit the notebook, not this file.


from exp.nb_11a import *
import datetime, ipaddress, os, signal, socket, sys, tempfile, time, traceback
from multiprocessing.connection import wait as wait_any
from pathlib import Path
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel


def num_distrib():
    "How many processes train together: the process group's size, or 1 outside one."
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1

def rank_distrib():
    "This process's rank in the process group (0 outside one): rank 0 logs and saves."
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0

def is_loopback(host):
    """Whether `host` is written as a loopback address: 'localhost', or an IP address in
    127.0.0.0/8 or ::1. A host name is never looked up: torchrun's c10d rendezvous gives rank 0's
    host name, which resolves to 127.0.1.1 on Debian-style machines even when the nodes are
    several machines, and they would then disagree on the backend (and hang)."""
    if host.strip('[]').lower() == 'localhost': return True
    try: return ipaddress.ip_address(host.strip('[]').split('%')[0]).is_loopback
    except ValueError: return False

def local_processes():
    """(how many ranks run on this machine, this one's index among them), from the environment
    `launch` and torchrun set. When MASTER_ADDR is a loopback address (`is_loopback`) every rank is
    on this machine, whatever LOCAL_WORLD_SIZE says (torchrun's two "nodes" on one host: 1 each)."""
    rank,world = int(os.environ['RANK']),int(os.environ['WORLD_SIZE'])
    if is_loopback(os.environ['MASTER_ADDR']): return world,rank
    return (int(os.environ.get('LOCAL_WORLD_SIZE', world)),
            int(os.environ.get('LOCAL_RANK', rank)))

def pick_backend(n_gpus, n_local, local_rank, nccl=True):
    """(backend, device) for local process `local_rank` of `n_local` on a machine with `n_gpus`
    GPUs. NCCL (fast GPU-to-GPU copies) needs a GPU of its own for every process, and refuses two
    ranks on one GPU: so NCCL and GPU `local_rank` when every local process can have one, gloo
    otherwise, on the GPUs taken in turn (gloo lets processes share one) or on the CPU."""
    check_count('pick_backend', n_local=n_local)
    if not 0 <= local_rank < n_local:
        raise ValueError(f"pick_backend: local_rank must be in [0, {n_local - 1}], "
                         f"got {local_rank!r}")
    if nccl and n_gpus >= n_local: return 'nccl', torch.device('cuda', local_rank)
    return 'gloo', torch.device('cuda', local_rank % n_gpus) if n_gpus else torch.device('cpu')

def dist_setup():
    "`pick_backend` for this process, from its environment and this machine's GPUs."
    return pick_backend(torch.cuda.device_count(), *local_processes(),
                        nccl=dist.is_nccl_available())


_ENV = ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')

def init_distributed(timeout=60):
    """Join the process group the environment describes (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT:
    set by `launch` and by torchrun), with the backend `dist_setup` picks, after making this rank's
    GPU (if it has one) the current one. A collective that waits more than `timeout` seconds for a
    peer raises."""
    missing = [k for k in _ENV if k not in os.environ]
    if missing: raise RuntimeError(f"init_distributed: environment variable(s) {missing} not set: "
                                   "start this code with `launch(...)` or torchrun")
    global _rank_device
    backend,device = dist_setup()
    if device.type == 'cuda': torch.cuda.set_device(device)   # 'cuda' now means this rank's GPU
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
    _rank_device = device
    return dist.get_rank(), dist.get_world_size()

_rank_device = None   # the device `init_distributed` chose, kept: choosing again looks things up

def rank_device():
    "The device this rank trains on (`init_distributed` chose it); `def_device` outside a group."
    return _rank_device if dist.is_available() and dist.is_initialized() else def_device


def broadcast_params(model, src=0):
    """Copy rank `src`'s parameters and buffers into every rank's model, so that all ranks start
    from the same weights."""
    if num_distrib() == 1: return model
    for t in list(model.parameters()) + list(model.buffers()): dist.broadcast(t.data, src)
    return model

def average_gradients(model):
    """Replace every gradient by its mean over the ranks: `all_reduce` sums it in place on every
    rank, then divide."""
    n = num_distrib()
    if n == 1: return
    for p in model.parameters():
        if p.grad is None: continue
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad /= n


def toy_data(n=512, n_in=10, n_out=3, seed=0):
    """A fixed float64 classification problem, identical on every rank (made from `seed`, not from
    the global RNG)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_in, generator=g, dtype=torch.float64)
    w = torch.randn(n_in, n_out, generator=g, dtype=torch.float64)
    return x, (x@w).argmax(1)

def toy_model(n_in=10, nh=32, n_out=3, norm=None):
    """Linear, optional norm layer `norm(nh)`, ReLU, linear; in float64 so that sums in another
    order agree to ~1e-15."""
    layers = ([nn.Linear(n_in, nh)] + ([norm(nh)] if norm else [])
              + [nn.ReLU(), nn.Linear(nh, n_out)])
    return nn.Sequential(*layers).double()

def _shard(t, step, bs, rank, world):
    "This rank's rows of global batch `step` (size `bs`): a contiguous `bs/world` slice of it."
    b = bs // world
    return t[step*bs + rank*b : step*bs + (rank+1)*b]

def _cpu_state(model):
    "A copy on the CPU of the weights of `model` (09b's `unwrap_model`: without DDP's `module.`)."
    return {k: v.detach().cpu().clone() for k,v in unwrap_model(model).state_dict().items()}


_MODES = ('scratch', 'ddp', 'none')

def train_toy(steps=5, bs=32, lr=0.1, mode='scratch', norm=None, seed=1):
    """`steps` SGD steps on `toy_data`, each on a global batch of `bs` rows split evenly over the
    ranks. `mode`: 'scratch' (broadcast + `average_gradients`), 'ddp' (DistributedDataParallel) or
    'none' (no syncing at all). Every rank starts from different random weights (`seed + rank`) on
    purpose. Returns (losses, state dict)."""
    if mode not in _MODES:
        raise ValueError(f"train_toy: mode must be one of {_MODES}, got {mode!r}")
    rank,world = rank_distrib(),num_distrib()
    if bs % world:
        raise ValueError(f"train_toy: the global batch bs={bs} must split evenly "
                         f"over {world} ranks")
    check_count('train_toy', steps=steps, bs=bs)
    device = rank_device()   # this rank's GPU, or the CPU
    x,y = (t.to(device) for t in toy_data())
    if steps*bs > len(x):
        raise ValueError(f"train_toy: {steps} steps of {bs} rows need {steps*bs}, "
                         f"toy_data has {len(x)}")
    torch.manual_seed(seed + rank)
    model = toy_model(norm=norm).to(device)
    if mode == 'ddp': model = DistributedDataParallel(model)   # broadcasts rank 0's weights itself
    elif mode == 'scratch': broadcast_params(model)
    opt,losses = sgd_opt(model.parameters(), lr=lr),[]
    for i in range(steps):
        loss = F.cross_entropy(model(_shard(x, i, bs, rank, world)), _shard(y, i, bs, rank, world))
        loss.backward()
        if mode == 'scratch': average_gradients(model)
        opt.step(); opt.zero_grad()
        losses.append(loss.item())
    return losses, _cpu_state(model)


def free_port(addr='127.0.0.1'):
    "A TCP port on `addr` that nothing listens on now (the OS picks it)."
    with socket.socket() as s:
        s.bind((addr, 0))
        return s.getsockname()[1]

def check_port(addr, port):
    """Raise a clear error if `port` on `addr` is taken: rank 0 must listen there for the others to
    find it."""
    with socket.socket() as s:
        # as torch's store does: a closing port is fine
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try: s.bind((addr, port))
        except OSError as e:
            raise RuntimeError(f"launch: port {port} on {addr} is already in use ({e.strerror}): "
                               "another run or program is listening there; pass another port, "
                               "or port=None for a free one") from None


class DistributedError(RuntimeError):
    """A rank of a `launch`ed run failed; the message names the rank that failed first and how, and
    the other ranks were stopped."""

def _worker(local_rank, fn, args, kwargs, env, timeout, threads, out_dir):
    """What each spawned process runs: set its rank, join the group, run `fn`, save its result (or
    error) for the parent."""
    os.environ.update(env, RANK=str(local_rank), LOCAL_RANK=str(local_rank))
    torch.set_num_threads(threads)
    try:
        init_distributed(timeout)
        res = fn(*args, **kwargs)
        dist.barrier()   # no rank tears down the group while another still talks to it
    except BaseException as e:   # when it failed, and how: the parent names the first to fail
        (Path(out_dir)/f'error{local_rank}.txt').write_text(
            f"{time.time()!r}\n{type(e).__name__}: {e}\n{traceback.format_exc()}")
        raise
    finally:
        if dist.is_initialized(): dist.destroy_process_group()
    torch.save(res, Path(out_dir)/f'rank{local_rank}.pt')
    exit_without_teardown()

def exit_without_teardown():
    """End a finished rank without the interpreter's teardown. Under load, torch 2.13 has been seen
    to abort a process at the end of a finished run ("terminate called without an active exception":
    a C++ thread of the process group), which would count as a failed rank although its work was
    done and saved."""
    sys.stdout.flush(); sys.stderr.flush()
    os._exit(0)

def recorded_errors(out_dir):
    "{rank: (time, one-line error, traceback)} of the ranks that recorded an error in `out_dir`."
    errs = {}
    for f in Path(out_dir).glob('error*.txt'):
        t,line,tb = f.read_text().split('\n', 2)
        errs[int(f.stem[5:])] = float(t),line,tb
    return errs

def first_failure(exits, errors):
    """The rank that failed first. `exits`: (rank, exit code) of the ranks that ended badly, in the
    order `launch` saw them end; `errors`: `recorded_errors`. A rank that recorded no error was
    killed (a signal, the out-of-memory killer) and the others failed after it, for want of their
    peer ("connection reset by peer"): it came first. Otherwise the earliest recorded error did."""
    silent = [r for r,_ in exits if r not in errors]
    if silent: return silent[0]
    return min(errors, key=lambda r: errors[r][0]) if errors else exits[0][0]

def _how_it_ended(code):
    if code >= 0: return f"exited with status {code}"
    try: return f"killed by signal {signal.Signals(-code).name}"
    except ValueError: return f"killed by signal {-code}"

def rank_error(exits, errors, nprocs):
    "A DistributedError naming the rank that failed first, and how (see `first_failure`)."
    rank = first_failure(exits, errors)
    if rank not in errors:
        return DistributedError(f"launch: rank {rank} of {nprocs} died first, "
                                f"{_how_it_ended(dict(exits)[rank])} without raising an error; "
                                "the other ranks were stopped")
    _,line,tb = errors[rank]
    hint = (" (a timeout: another rank did not reach the same collective in time)"
            if 'Timed out' in line else "")
    return DistributedError(f"launch: rank {rank} of {nprocs} failed first, with {line}{hint}; "
                            f"the other ranks were stopped. Its traceback:\n{tb}")


def _check_launchable(fn):
    if not callable(fn): raise TypeError(f"launch: fn must be a function, got {fn!r}")
    if getattr(fn, '__module__', None) == '__main__':
        raise ValueError(f"launch: {getattr(fn, '__name__', fn)} is defined in __main__ "
                         "(a notebook cell or a script), which new processes cannot import: "
                         "define it in a module and pass that module's copy, e.g. "
                         "`import exp.nb_12 as nb12; launch(nb12.train_toy, 2)`")

def wait_ranks(procs, grace=5):
    """Wait for the processes `procs` (rank r at index r) to end; once one ends badly, stop the
    others. Returns (rank, exit code) of those that ended badly by themselves, in the order seen."""
    alive,bad = dict(enumerate(procs)),[]
    try:
        while alive and not bad:
            ready = wait_any([p.sentinel for p in alive.values()])
            for r,p in list(alive.items()):
                if p.sentinel not in ready: continue
                p.join(); del alive[r]
                if p.exitcode: bad.append((r, p.exitcode))
    finally:
        for p in alive.values(): p.terminate()
        for p in alive.values():
            p.join(grace)
            if p.is_alive(): p.kill(); p.join()
    return bad

def launch(fn, nprocs=2, *args, port=None, addr='127.0.0.1', timeout=60, threads=1, **kwargs):
    """Run `fn(*args, **kwargs)` on `nprocs` new local processes joined in one process group (ranks
    0..nprocs-1, `threads` CPU threads each); returns the list of what each rank returned. `fn` must
    be importable (defined in a module). If a rank fails, the others are stopped and a
    DistributedError names the rank that failed first and its error."""
    _check_launchable(fn); check_count('launch', nprocs=nprocs, threads=threads)
    if not timeout > 0:
        raise ValueError(f"launch: timeout must be a number of seconds > 0, got {timeout!r}")
    if port is None: port = free_port(addr)
    check_port(addr, port)
    env = dict(MASTER_ADDR=addr, MASTER_PORT=str(port), WORLD_SIZE=str(nprocs),
               LOCAL_WORLD_SIZE=str(nprocs))
    with tempfile.TemporaryDirectory() as out_dir:
        procs = mp.start_processes(_worker, nprocs=nprocs, join=False, start_method='spawn',
                                   args=(fn, args, kwargs, env, timeout, threads, out_dir))
        bad = wait_ranks(procs.processes)
        for f in procs.error_files: Path(f).unlink(missing_ok=True)   # torch's copies of errors
        if bad: raise rank_error(bad, recorded_errors(out_dir), nprocs)
        return [torch.load(Path(out_dir)/f'rank{r}.pt', weights_only=False) for r in range(nprocs)]


class _AllReduceSum(torch.autograd.Function):
    """Sum a tensor over the ranks, differentiably: the gradient of a sum seen by every rank is the
    sum of their gradients."""
    @staticmethod
    def forward(ctx, x):
        x = x.clone(); dist.all_reduce(x)
        return x
    @staticmethod
    def backward(ctx, g):
        g = g.clone(); dist.all_reduce(g)
        return g

def all_reduce_sum(x):
    """`x` summed over the ranks (itself outside a process group), with gradients flowing back to
    every rank."""
    return _AllReduceSum.apply(x) if num_distrib() > 1 else x


class SyncBatchNorm(nn.Module):
    """Batch norm over the GLOBAL batch: each rank sums x and x**2 over its rows, `all_reduce_sum`
    adds the ranks' sums, and every rank normalizes with the same mean and variance (ours; torch's
    nn.SyncBatchNorm needs a GPU)."""
    def __init__(self, nf, mom=0.1, eps=1e-5):
        super().__init__()
        self.mom,self.eps = mom,eps
        self.weight,self.bias = nn.Parameter(torch.ones(nf)),nn.Parameter(torch.zeros(nf))
        self.register_buffer('running_mean', torch.zeros(nf))
        self.register_buffer('running_var', torch.ones(nf))

    def _global_stats(self, x):
        dims = [0] + list(range(2, x.dim()))                         # every dim but the channels
        n = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        s = all_reduce_sum(torch.cat([x.sum(dims), (x*x).sum(dims), n]))
        nf,n = x.shape[1],s[-1]
        mean = s[:nf]/n
        return mean, s[nf:2*nf]/n - mean*mean, n

    def forward(self, x):
        if self.training:
            mean,var,n = self._global_stats(x)
            with torch.no_grad():   # torch's convention: the running variance is the unbiased one
                self.running_mean.lerp_(mean, self.mom)
                self.running_var.lerp_(var*n/(n-1), self.mom)
        else: mean,var = self.running_mean,self.running_var
        shape = (1, -1) + (1,)*(x.dim() - 2)
        scale = (self.weight/(var + self.eps).sqrt()).view(shape)
        return (x - mean.view(shape)) * scale + self.bias.view(shape)


class DistributedSampler:
    """Rank `rank`'s share of the indices of `dataset` (or of range(n)), as torch's
    DistributedSampler gives it: one permutation for all ranks (seeded by `seed + epoch`: call
    `set_epoch` every epoch), padded by repeating its start so every rank gets as many (or, with
    `drop_last`, its tail dropped), then every `num_replicas`-th index from `rank`. `pad=False`
    (ours, for validation) neither pads nor drops: the shards then cover each item once."""
    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False,
                 pad=True):
        self.n = dataset if isinstance(dataset, int) else len(dataset)
        self.num_replicas = num_distrib() if num_replicas is None else num_replicas
        self.rank = rank_distrib() if rank is None else rank
        check_count('DistributedSampler', num_replicas=self.num_replicas)
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"DistributedSampler: rank must be in [0, {self.num_replicas - 1}], "
                             f"got {self.rank!r}")
        if drop_last and not pad:
            raise ValueError("DistributedSampler: drop_last=True and pad=False "
                             "contradict each other")
        self.shuffle,self.seed,self.drop_last,self.pad,self.epoch = shuffle,seed,drop_last,pad,0
        # floor or ceiling
        per = self.n // self.num_replicas if drop_last else -(-self.n // self.num_replicas)
        self.total_size = per * self.num_replicas

    def set_epoch(self, epoch): self.epoch = epoch

    def _order(self):
        if not self.shuffle: return torch.arange(self.n)
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.n, generator=g)

    def indices(self):
        idx = self._order()
        if self.pad and self.n:
            # pads with the start, or cuts the tail
            idx = idx.repeat(-(-self.total_size // self.n))[:self.total_size]
        return idx[self.rank::self.num_replicas]

    def __iter__(self): return iter(self.indices().tolist())
    def __len__(self):
        return len(range(self.rank, self.total_size if self.pad else self.n, self.num_replicas))


def _shard_loader(dl, world, rank, shuffle, pad, seed):
    """A DataLoader over `dl`'s dataset with this rank's share of every batch: same global batch
    size, `1/world` each."""
    ds,bs = dl.dataset,dl.batch_size
    if bs is None or bs % world:
        raise ValueError(f"DistributedCallback: the batch size {bs} must split evenly "
                         f"over {world} ranks")
    sampler = DistributedSampler(ds, world, rank, shuffle=shuffle, seed=seed, pad=pad)
    return DataLoader(ds, bs//world, sampler=sampler, collate_fn=getattr(dl, 'collate_fn', None),
                      num_workers=getattr(dl, 'num_workers', 0),
                      pin_memory=getattr(dl, 'pin_memory', False))

def _silent(*args, **kwargs): pass

def _stats_of(run):
    "Every AvgStats the callbacks keep (AvgStatsCallback's train_stats and valid_stats)."
    return [s for cb in run.cbs
            for s in (getattr(cb, 'train_stats', None), getattr(cb, 'valid_stats', None))
            if isinstance(s, AvgStats)]

def reduce_avg_stats(stats):
    """Sum an AvgStats' totals and count over the ranks in place: its averages become those of the
    whole data set."""
    # on this rank's device: NCCL sums GPU tensors only
    t = torch.tensor(stats.all_stats + [stats.count], dtype=torch.float64, device=rank_device())
    dist.all_reduce(t)
    if t[-1] == 0: return
    stats.tot_loss,stats.tot_mets,stats.count = t[0],list(t[1:-1]),int(t[-1])


def rank_path(path):
    """This rank's own file for `path` ('ck.pt' -> 'ck.pt.rank1' on rank 1): each rank's checkpoint
    holds its own random state and order of batches. `path` itself outside a process group."""
    return Path(path) if num_distrib() == 1 else Path(f'{path}.rank{rank_distrib()}')

def check_same_start(run):
    """Raise unless every rank starts the fit at the same epoch and batch: ranks resumed from
    checkpoints of different steps would pair different batches in each all-reduce."""
    starts = [None] * num_distrib()
    here = getattr(run, 'start_epoch', 0),getattr(run, 'start_iter', 0)   # 09b's Learner
    dist.all_gather_object(starts, here)
    if len(set(starts)) > 1:
        raise ValueError("DistributedCallback: the ranks would go on from different points, "
                         f"(epoch, batch) by rank: {starts}; their checkpoints are not of the same "
                         "step (a rank stopped while writing?): resume every rank from one step")

class DistributedCallback(Callback):
    """Data-parallel training for the Learner. For the fit: wraps the model in
    DistributedDataParallel (`ddp=False`: our broadcast + `average_gradients` instead), gives every
    rank its share of each batch through a DistributedSampler (set to the epoch each epoch), logs on
    rank 0 only, averages the AvgStats over the ranks, and, given `path`, saves the model's weights
    on rank 0 after each epoch (atomically: a run killed while writing leaves the last file
    whole). Out of a process group it still swaps the sampler, so one process sees the same global
    batches as N: that is the reference N processes must match."""
    # before everything: the model and the data change in begin_fit,
    # and the stats are summed before they are printed
    _order = -20
    def __init__(self, ddp=True, seed=0, path=None): self.ddp,self.seed,self.path = ddp,seed,path

    def begin_fit(self):
        self.world,self.rank = num_distrib(),rank_distrib()
        self._saved = self.run.model,self.data.train_dl,self.data.valid_dl,self.run.logger
        if self.rank != 0: self.run.logger = _silent
        if self.world > 1:
            check_same_start(self.run)
            if self.ddp: self.run.model = DistributedDataParallel(self.model)
            else: broadcast_params(self.model)
        self.data.train_dl = _shard_loader(self.data.train_dl, self.world, self.rank, True, True,
                                           self.seed)
        self.data.valid_dl = _shard_loader(self.data.valid_dl, self.world, self.rank, False, False,
                                           self.seed)

    def begin_epoch(self): self.data.train_dl.sampler.set_epoch(self.epoch)
    def after_backward(self):
        if self.world > 1 and not self.ddp: average_gradients(self.model)

    def after_epoch(self):
        if self.world > 1:
            for s in _stats_of(self.run): reduce_avg_stats(s)
        if self.path is None: return
        if self.rank == 0: save_checkpoint(_cpu_state(self.model), self.path)
        if self.world > 1: dist.barrier()   # no rank reads the file before it is written

    def after_fit(self):
        # None: begin_fit never ran (an earlier callback raised)
        saved = self.__dict__.pop('_saved', None)
        if saved: self.run.model,self.data.train_dl,self.data.valid_dl,self.run.logger = saved


def toy_databunch(bs=32, n_train=384, n_valid=128):
    """`toy_data` as a DataBunch: `n_train` rows for training (shuffled batches of `bs`), the next
    `n_valid` for validation."""
    x,y = toy_data(n_train + n_valid)
    train,valid = Dataset(x[:n_train], y[:n_train]), Dataset(x[n_train:], y[n_train:])
    return DataBunch(*get_dls(train, valid, bs), c_in=x.shape[1], c_out=3)

def fit_toy_learner(epochs=2, bs=32, lr=0.1, ddp=True, seed=1, path=None):
    """Fit `toy_model` with the Learner and a DistributedCallback on every rank (different start
    weights per rank, on purpose). Returns (state dict, [train averages, valid averages]); every
    rank returns the same."""
    check_count('fit_toy_learner', epochs=epochs, bs=bs)
    torch.manual_seed(seed + rank_distrib())
    learn = Learner(toy_model().to(rank_device()), toy_databunch(bs), F.cross_entropy, lr=lr,
                    cb_funcs=[partial(AvgStatsCallback, accuracy),
                              partial(DistributedCallback, ddp=ddp, path=path)])
    learn.fit(epochs)
    stats = learn.avg_stats
    return _cpu_state(learn.model), [stats.train_stats.avg_stats, stats.valid_stats.avg_stats]


_HOW = ('raise', 'hang', 'kill')

def _fail_on_rank(bad=1, how='raise', seconds=600):
    """For the fault demos: rank `bad` raises (how='raise'), stalls for `seconds` (how='hang') or
    is killed by SIGKILL (how='kill', as the out-of-memory killer does it); then one all_reduce."""
    if how not in _HOW: raise ValueError(f"_fail_on_rank: how must be one of {_HOW}, got {how!r}")
    if rank_distrib() == bad:
        if how == 'raise': raise ValueError(f"rank {bad} was told to fail")
        if how == 'hang': time.sleep(seconds)
        if how == 'kill': os.kill(os.getpid(), signal.SIGKILL)
    t = torch.ones(1, device=rank_device()); dist.all_reduce(t)   # NCCL: on the GPU
    return t.item()


def train_mnist(epochs=1, bs=64, lr=0.4, n_train=8000, nfs=(32,), path=None):
    """A small CNN (08's get_cnn_model with 11's conv_layer: conv, BatchNorm, ReLU) on the first
    `n_train` MNIST images, one DistributedCallback fit."""
    x_train,y_train,x_valid,y_valid = normalized_mnist()
    train,valid = Dataset(x_train[:n_train], y_train[:n_train]), Dataset(x_valid, y_valid)
    data = DataBunch(*get_dls(train, valid, bs), c_in=1, c_out=10)
    check_count('train_mnist', epochs=epochs, bs=bs, n_train=n_train)
    torch.manual_seed(0)
    model = get_cnn_model(data, list(nfs), conv_layer); init_cnn(model)
    learn = Learner(model.to(rank_device()), data, F.cross_entropy, lr=lr, opt_func=sgd_mom_opt,
                    cb_funcs=[partial(AvgStatsCallback, accuracy),
                              partial(BatchTransformXCallback, view_tfm(1, 28, 28)),
                              partial(DistributedCallback, path=path)])
    learn.fit(epochs)
    return learn.avg_stats.valid_stats.avg_stats


def under_torchrun():
    """Whether torchrun (torch.distributed.run) started this process: it sets the process group's
    variables."""
    return all(k in os.environ for k in _ENV) and 'TORCHELASTIC_RUN_ID' in os.environ

def import_target(target):
    "'package.module:function' -> the function (the module defaults to exp.nb_12)."
    import importlib
    mod,_,name = target.rpartition(':')
    m = importlib.import_module(mod or 'exp.nb_12')
    if not hasattr(m, name):
        raise ValueError(f"launch_main: module {m.__name__} has no function {name!r} "
                         f"(target {target!r})")
    return getattr(m, name)

def out_problem(path, overwrite=False, overwrite_flag='overwrite=True'):
    """Why a result could not be saved at `path` (None when it can): its folder must exist and be
    writable, `path` must not be a folder, and an existing file is replaced only with `overwrite`.
    Asked before a run, so that a long run does not end with its result lost."""
    path = Path(path)
    if not path.parent.is_dir(): return f"no folder {path.parent}"
    if not os.access(path.parent, os.W_OK | os.X_OK): return f"folder {path.parent} is not writable"
    if path.is_dir(): return "it is a folder, not a file name"
    if path.exists() and not overwrite:
        return f"the file exists; pass {overwrite_flag} to replace it"

def launch_main(target, nprocs=2, port=None, timeout=60, threads=1, out=None, overwrite=False,
                **kwargs):
    """The command line (dist_launch.py): run function `target` ('module:function') with `kwargs`.
    Under torchrun, in this process (torchrun started one per rank); otherwise on `nprocs` processes
    through `launch`. With `out`, rank 0's result is saved there (atomically; `out` is checked
    first, see `out_problem`). Returns rank 0's result."""
    fn = import_target(target)
    saves = out is not None and int(os.environ.get('RANK', 0)) == 0
    if saves and (problem := out_problem(out, overwrite)):
        raise ValueError(f"launch_main: out={str(out)!r}: {problem}")
    if under_torchrun():
        torch.set_num_threads(threads)
        init_distributed(timeout)
        try:
            res = fn(**kwargs)
            dist.barrier()   # as in `launch`: all ranks done before the group goes
        finally: dist.destroy_process_group()
        if int(os.environ['RANK']) != 0: return None
    else: res = launch(fn, nprocs, port=port, timeout=timeout, threads=threads, **kwargs)[0]
    if saves: save_checkpoint(res, out)
    return res


def mlp(nh=512, n_in=784, n_out=10):
    "n_in -> nh -> nh -> n_out with ReLUs (float32): its steps are mostly matrix products."
    return nn.Sequential(nn.Linear(n_in, nh), nn.ReLU(), nn.Linear(nh, nh), nn.ReLU(),
                         nn.Linear(nh, n_out))

_TIMED = ('scratch', 'ddp')

def time_dp_steps(steps=20, bs=256, nh=512, mode='scratch', warmup=3):
    """Run on every rank: SGD steps of `mlp(nh)` on this rank's share of a fixed random global batch
    of `bs` rows (no data loading: compute and communication only). Returns, for each of `steps`
    steps after `warmup` untimed ones, (seconds of the step, seconds of it in `average_gradients`).
    Each clock is read after `sync`, so queued GPU work is counted where it belongs. With
    mode='ddp' the all-reduce runs inside backward and is not timed apart (0)."""
    if mode not in _TIMED:
        raise ValueError(f"time_dp_steps: mode must be one of {_TIMED}, got {mode!r}")
    check_count('time_dp_steps', steps=steps, bs=bs, nh=nh)
    world,device = num_distrib(),rank_device()
    if bs % world:
        raise ValueError(f"time_dp_steps: the global batch bs={bs} must split evenly "
                         f"over {world} ranks")
    torch.manual_seed(0)
    model = mlp(nh).to(device)
    model = DistributedDataParallel(model) if mode == 'ddp' else broadcast_params(model)
    g = torch.Generator().manual_seed(rank_distrib())
    x = torch.randn(bs // world, 784, generator=g).to(device)
    y = torch.randint(0, 10, (bs // world,), generator=g).to(device)
    opt = sgd_opt(model.parameters(), lr=0.01)
    def now(): sync(device); return time.perf_counter()
    times = []
    for i in range(warmup + steps):
        t0 = now()
        F.cross_entropy(model(x), y).backward()
        t1 = t2 = now()
        if mode == 'scratch': average_gradients(model); t2 = now()
        opt.step(); opt.zero_grad()
        t3 = now()
        if i >= warmup: times.append((t3 - t0, t2 - t1))
    return times


# What `from exp.nb_12 import *` gives (generated by notebook2script.py;
# a name bound only in a branch not taken is left out).
from exp.nb_11a import __all__ as _all_nb_11a
__all__ = _all_nb_11a + [
    'wait_any', 'Path', 'DistributedDataParallel', 'num_distrib', 'rank_distrib', 'is_loopback',
    'local_processes', 'pick_backend', 'dist_setup', 'init_distributed', 'rank_device',
    'broadcast_params', 'average_gradients', 'toy_data', 'toy_model', 'train_toy', 'free_port',
    'check_port', 'DistributedError', 'exit_without_teardown', 'recorded_errors',
    'first_failure', 'rank_error', 'wait_ranks', 'launch', 'all_reduce_sum', 'SyncBatchNorm',
    'DistributedSampler', 'reduce_avg_stats', 'rank_path', 'check_same_start',
    'DistributedCallback', 'toy_databunch', 'fit_toy_learner', 'train_mnist', 'under_torchrun',
    'import_target', 'out_problem', 'launch_main', 'mlp', 'time_dp_steps'
]
__all__ = [_name for _name in dict.fromkeys(__all__) if _name in globals()]
