# Generated from nbs/15c_ddpm.ipynb by notebook2script.py:
# edit the notebook, not this file.


from exp.nb_15b import *
import copy
import math


class NoiseSchedule:
    """A variance schedule beta_1..beta_T (a 1-d tensor, each in (0, 1)) with alpha_t = 1 - beta_t
    and abar_t = alpha_1 ... alpha_t, in float64 on the CPU. Step t of the paper (1..T) is index
    t - 1 here, so the step indices run 0..T-1."""
    def __init__(self, beta):
        beta = torch.as_tensor(beta, dtype=torch.float64)
        if beta.dim() != 1 or len(beta) < 2:
            raise ValueError(f'NoiseSchedule: beta must be 1-d with T >= 2 steps, got shape '
                             f'{tuple(beta.shape)}')
        if not ((beta > 0) & (beta < 1)).all():
            raise ValueError(f'NoiseSchedule: every beta must be in (0, 1), got {beta.min():.3g} '
                             f'to {beta.max():.3g}')
        self.T, self.beta = len(beta), beta
        self.alpha = 1 - beta
        self.abar = self.alpha.cumprod(0)
        self.abar_prev = torch.cat([self.abar.new_ones(1), self.abar[:-1]])   # abar_0 = 1

    @classmethod
    def linear(cls, T=1000, beta_1=1e-4, beta_T=0.02):
        "Ho et al.'s schedule: beta_t linear from `beta_1` to `beta_T` over `T` steps."
        check_num_steps(T, 'NoiseSchedule.linear')
        return cls(torch.linspace(beta_1, beta_T, int(T), dtype=torch.float64))

    @classmethod
    def cosine(cls, T, s=0.008, max_beta=0.999):
        """Nichol & Dhariwal's schedule: abar_t = f(t) / f(0) for t = 1..T, with
        f(t) = cos^2((t/T + s) / (1 + s) pi/2); beta_t = 1 - abar_t / abar_{t-1}, capped at
        `max_beta`."""
        check_num_steps(T, 'NoiseSchedule.cosine')
        f = torch.cos((torch.arange(int(T) + 1, dtype=torch.float64) / T + s) / (1 + s)
                      * math.pi / 2) ** 2
        return cls((1 - f[1:] / f[:-1]).clamp(max=max_beta))

    @classmethod
    def scaled(cls, T):
        "Ho et al.'s 1e-4 to 0.02 over 1000 steps with both ends times 1000/T (the sum unchanged)."
        return cls.linear(T, 1e-4 * 1000 / T, 0.02 * 1000 / T)

    def at(self, name, t, x):
        """The schedule's `name` ('beta', 'alpha', 'abar', 'abar_prev') at step indices `t` (N,),
        shaped (N, 1, ...) to broadcast over a batch like `x`, on x's device and in x's dtype."""
        return getattr(self, name).to(x.device)[t].to(x.dtype).view(-1, *[1] * (x.dim() - 1))

def check_num_steps(T, who):
    "Refuse a number of steps `T` that is not a whole number >= 2."
    if int(T) != T or T < 2:
        raise ValueError(f'{who}: T must be an integer >= 2, got {T}')

def check_same_T(unet, sched, who):
    "Refuse a network and a schedule whose numbers of steps differ."
    if unet.T != sched.T:
        raise ValueError(f'{who}: the U-Net takes T = {unet.T} steps, the schedule has {sched.T}')

def check_steps(t, n, T, who):
    "Refuse `t` unless it is an integer tensor of `n` step indices in 0..T-1."
    if not torch.is_tensor(t) or t.is_floating_point() or t.is_complex() or t.shape != (n,):
        got = f'{t.dtype} {tuple(t.shape)}' if torch.is_tensor(t) else type(t).__name__
        raise ValueError(f'{who}: t must be an integer tensor of shape ({n},), one step per image, '
                         f'got {got}')
    if n and (t.min() < 0 or t.max() >= T):
        raise ValueError(f'{who}: step indices must be in 0..{T - 1} (T = {T}), got '
                         f'{t.min().item()}..{t.max().item()}')


def q_sample(sched, x0, t, eps):
    """A draw of q(x_t | x_0) in one step: sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, for images `x0`
    (N, ...), step indices `t` (N,) and standard normal noise `eps` shaped like x0."""
    check_steps(t, len(x0), sched.T, 'q_sample')
    if eps.shape != x0.shape:
        raise ValueError(f'q_sample: eps {tuple(eps.shape)} must have the shape of x0 '
                         f'{tuple(x0.shape)}')
    ab = sched.at('abar', t, x0)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * eps

def to_pm1(x):
    "Images in [0, 1] to [-1, 1], where the model works."
    return 2 * x - 1

def to_unit(x):
    "Images in [-1, 1] back to [0, 1] (clamped), as 15b's ImageEval takes them."
    return ((x + 1) / 2).clamp(0, 1)


def v_target(sched, x0, t, eps):
    "Salimans & Ho's v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0, at step indices `t` (N,)."
    ab = sched.at('abar', t, x0)
    return ab.sqrt() * eps - (1 - ab).sqrt() * x0

class NoisePrediction(nn.Module):
    """What the Learner trains: for a batch of clean images x0 (in [-1, 1]) it draws a step index
    t ~ U{0..T-1} and noise eps ~ N(0, I) per image (on x0's device), makes x_t with `q_sample` and
    returns (unet(x_t, t), target), the target being what the network says it predicts,
    `unet.target`: the noise eps ('eps', Ho et al.) or `v_target` ('v', Salimans & Ho)."""
    def __init__(self, unet, sched):
        super().__init__()
        check_same_T(unet, sched, 'NoisePrediction')
        self.unet, self.sched = unet, sched
    def forward(self, x0):
        t = torch.randint(0, self.sched.T, (len(x0),), device=x0.device)
        eps = torch.randn_like(x0)
        pred = self.unet(q_sample(self.sched, x0, t, eps), t)
        return pred, (eps if self.unet.target == 'eps' else v_target(self.sched, x0, t, eps))

class EpsFromV(nn.Module):
    """A noise predictor (`target` 'eps') made of a U-Net that predicts v: eps = sqrt(1 - abar_t)
    x_t + sqrt(abar_t) v, so the samplers, written for a noise prediction, take it as it is."""
    def __init__(self, unet, sched):
        super().__init__()
        check_same_T(unet, sched, 'EpsFromV')
        if unet.target != 'v':
            raise ValueError(f"EpsFromV: the U-Net must predict v, it predicts {unet.target!r}")
        self.unet, self.sched, self.T, self.c_in = unet, sched, unet.T, unet.c_in
        self.target = 'eps'
    def forward(self, x, t):
        ab = self.sched.at('abar', t, x)
        return (1 - ab).sqrt() * x + ab.sqrt() * self.unet(x, t)

def eps_mse(pred, yb):
    """The mean squared error between a prediction and its target, as `NoisePrediction` returns
    them: Ho et al.'s L_simple for the noise, Salimans & Ho's loss for v."""
    if not (isinstance(pred, (tuple, list)) and len(pred) == 2):
        raise ValueError('eps_mse: expects the (prediction, target) pair NoisePrediction '
                         f'returns, got {type(pred).__name__}')
    return F.mse_loss(*pred)

class EMACallback(Callback):
    """An exponential moving average of the model's weights, updated after each optimizer step:
    w_ema <- decay w_ema + (1 - decay) w. `ema` is the averaged copy (eval mode, no gradients);
    buffers are copied as they are."""
    def __init__(self, decay=0.99):
        if not 0 <= decay < 1:
            raise ValueError(f'EMACallback: decay must be in [0, 1), got {decay}')
        self.decay = decay
    def begin_fit(self):
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
    def after_step(self):
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.model.parameters()):
                e.lerp_(p, 1 - self.decay)
            for e, b in zip(self.ema.buffers(), self.model.buffers()): e.copy_(b)


class TimeEmbedding(nn.Module):
    """The step index as a vector: 14's `sinusoidal_embedding` of t (as a float position) in
    `n_emb` dimensions, then Linear, SiLU, Linear."""
    def __init__(self, n_emb):
        super().__init__()
        self.n_emb = n_emb
        self.mlp = nn.Sequential(nn.Linear(n_emb, n_emb), nn.SiLU(), nn.Linear(n_emb, n_emb))
    def forward(self, t): return self.mlp(sinusoidal_embedding(t.float(), self.n_emb))

class EmbResBlock(nn.Module):
    """GroupNorm, SiLU, 3x3 conv; plus a per-channel shift from the time embedding; GroupNorm,
    SiLU, 3x3 conv (zero at the start, so the block starts as its skip path); plus the input
    (through a 1x1 conv when the channel count changes)."""
    def __init__(self, ni, nf, n_emb, groups=4):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, ni), conv(ni, nf, bias=True)   # 11's conv
        self.emb = nn.Linear(n_emb, nf)
        self.norm2, self.conv2 = nn.GroupNorm(groups, nf), conv(nf, nf, bias=True)
        nn.init.zeros_(self.conv2.weight); nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Identity() if ni == nf else conv(ni, nf, ks=1, bias=True)
    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(F.silu(emb))[:, :, None, None]
        return self.conv2(F.silu(self.norm2(h))) + self.skip(x)

class SelfAttention2d(nn.Module):
    """Self-attention over the H*W positions of a feature map, each a token of C numbers: GroupNorm,
    14's `MultiHeadAttention`, added to the input."""
    def __init__(self, c, n_heads=4, groups=4):
        super().__init__()
        self.norm, self.attn = nn.GroupNorm(groups, c), MultiHeadAttention(c, n_heads)
    def forward(self, x):
        n, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)          # (N, H*W, C)
        return x + self.attn(tokens).transpose(1, 2).reshape(n, c, h, w)


class UNet(nn.Module):
    """A U-Net predicting `target` from (x_t, t), the noise in x_t ('eps') or v: a 3x3 conv to
    nfs[0] channels; going down, one `EmbResBlock` per entry of `nfs` (its output kept for the skip
    connection), halving the side between levels (stride-2 conv); at the lowest side, block,
    `SelfAttention2d`, block; going up, one block per level on the concatenation of the path and its
    skip, doubling the side between levels (nearest, then a conv); GroupNorm, SiLU and a 3x3 conv
    (zero at the start) back to `c_in` channels. `T`: how many steps the t it is given may index;
    `target` is what training (`NoisePrediction`) fits it to, and what the samplers check."""
    def __init__(self, nfs=(8, 16, 32), c_in=1, n_emb=64, n_heads=4, groups=4, T=200,
                 target='eps'):
        super().__init__()
        if target not in ('eps', 'v'):
            raise ValueError(f"UNet: target must be 'eps' or 'v', got {target!r}")
        self.nfs, self.c_in, self.T, self.target = tuple(nfs), c_in, T, target
        self.emb = TimeEmbedding(n_emb)
        self.conv_in = conv(c_in, nfs[0], bias=True)
        block = partial(EmbResBlock, n_emb=n_emb, groups=groups)
        self.downs = nn.ModuleList(block(a, b) for a, b in zip([nfs[0], *nfs[:-1]], nfs))
        self.pools = nn.ModuleList(conv(c, c, stride=2, bias=True) for c in nfs[:-1])
        self.mid1, self.mid2 = block(nfs[-1], nfs[-1]), block(nfs[-1], nfs[-1])
        self.attn = SelfAttention2d(nfs[-1], n_heads, groups)
        self.ups = nn.ModuleList(block(2 * c, c) for c in reversed(nfs))
        up = partial(nn.Upsample, scale_factor=2)   # nearest, as 15's upsample_nearest
        self.unpools = nn.ModuleList(nn.Sequential(up(), conv(a, b, bias=True))
                                     for a, b in zip(nfs[:0:-1], nfs[-2::-1]))
        self.out = nn.Sequential(nn.GroupNorm(groups, nfs[0]), nn.SiLU(),
                                 conv(nfs[0], c_in, bias=True))
        nn.init.zeros_(self.out[-1].weight); nn.init.zeros_(self.out[-1].bias)

    def check(self, x, t):
        k = 2 ** (len(self.nfs) - 1)
        if x.dim() != 4 or x.shape[1] != self.c_in or x.shape[2] % k or x.shape[3] % k:
            raise ValueError(f'UNet: x must be a batch (N, {self.c_in}, H, W) with H and W '
                             f'multiples of {k}, got {tuple(x.shape)}')
        check_steps(t, len(x), self.T, 'UNet')

    def forward(self, x, t):
        self.check(x, t)
        emb, h, skips = self.emb(t), self.conv_in(x), []
        for i, block in enumerate(self.downs):
            h = block(h, emb)
            skips.append(h)
            if i < len(self.pools): h = self.pools[i](h)
        h = self.mid2(self.attn(self.mid1(h, emb)), emb)
        for i, block in enumerate(self.ups):
            h = block(torch.cat([h, skips.pop()], 1), emb)
            if i < len(self.unpools): h = self.unpools[i](h)
        return self.out(h)


DDPM_SETTINGS = dict(nfs=[8, 16, 32], n_emb=64, n_heads=4, groups=4, T=200, schedule='cosine',
                     target='v', epochs=3, lr=5e-3, bs=64, ema=0.99, seed=0)

def ddpm_schedule(settings):
    "The `NoiseSchedule` `settings` names: 'cosine' or 'scaled' (linear), over T steps."
    kinds = {'cosine': NoiseSchedule.cosine, 'scaled': NoiseSchedule.scaled}
    if settings['schedule'] not in kinds:
        raise ValueError(f"ddpm_schedule: schedule must be 'cosine' or 'scaled', got "
                         f"{settings['schedule']!r}")
    return kinds[settings['schedule']](settings['T'])

def ddpm_unet_from(settings):
    "An untrained `UNet` with the architecture and the target `settings` name."
    return UNet(settings['nfs'], n_emb=settings['n_emb'], n_heads=settings['n_heads'],
                groups=settings['groups'], T=settings['T'], target=settings['target'])

def train_ddpm(settings=DDPM_SETTINGS, progress=True):
    """(learner, EMACallback, seconds): `ddpm_unet_from(settings)` (after manual_seed(seed)) trained
    as `NoisePrediction` (with the settings' schedule) on Fashion-MNIST's 50,000
    training images in [-1, 1] (15's `ae_learner` and `fit_ae`: 09's Adam, 11's one-cycle to
    `lr`), its weights averaged by an `EMACallback`."""
    x_tr, _, x_va, _, _, _ = fashion_splits()
    data = ae_databunch(to_pm1(x_tr), to_pm1(x_va), bs=settings['bs'])
    torch.manual_seed(settings['seed'])
    model = NoisePrediction(ddpm_unet_from(settings), ddpm_schedule(settings))
    ema = EMACallback(settings['ema'])
    learn = ae_learner(data, model, lr=settings['lr'], progress=progress, cbs=[ema])
    learn.loss_func = eps_mse
    return learn, ema, fit_ae(learn, settings['epochs'], settings['lr'])


def ddpm_path():
    "Where 15c's U-Net is saved: the data cache (00a's `cache_dir`), beside 15a's VAE."
    return cache_dir()/'models'/'15c_ddpm_unet.pth'

def load_ddpm(settings=DDPM_SETTINGS, path=None):
    """(unet, meta): the U-Net saved at `path` (default `ddpm_path()`), on the CPU, in eval mode;
    the weights must match their checksum and the JSON's settings those asked for."""
    path = Path(ddpm_path() if path is None else path)
    meta = read_checked_meta(path, 'load_ddpm')   # 13a's: the JSON, the weights' checksum
    check_saved_settings(meta, settings, path, 'load_ddpm')   # 15a's
    return load_model(ddpm_unet_from(settings), path).eval(), meta

def ddpm_unet(settings=DDPM_SETTINGS, path=None, progress=True):
    """(unet, meta): the U-Net from `path` (default `ddpm_path()`) if it was saved with `settings`,
    else one trained by `train_ddpm`, whose weight average is saved there (13a's `save_with_meta`,
    with the seconds, device, threads and validation losses) and loaded back. The U-Net predicts
    what `settings['target']` names: the samplers refuse one that predicts v until it is wrapped
    in `EpsFromV`."""
    path = Path(ddpm_path() if path is None else path)
    if path.exists() and meta_path(path).exists():
        try: return load_ddpm(settings, path)
        except ValueError as e: print(f'ddpm_unet: {e}; training it again')
    learn, ema, secs = train_ddpm(settings, progress)
    results = dict(seconds=secs, device=str(model_device(learn.model)),
                   threads=torch.get_num_threads(), train_loss=learn.epoch_history.column('train'),
                   valid_loss=learn.epoch_history.column('valid'))
    save_with_meta(ema.ema.unet, path, dict(settings=settings, results=results))
    return load_ddpm(settings, path)


def x0_from_eps(sched, x, t, eps_hat):
    "The x_0 that x_t and a noise prediction imply: (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)."
    ab = sched.at('abar', t, x)
    return (x - (1 - ab).sqrt() * eps_hat) / ab.sqrt()

def posterior_mean(sched, x, t, x0):
    """The mean of q(x_{t-1} | x_t, x_0) (Ho et al. eq. 7): sqrt(abar_{t-1}) beta_t / (1 - abar_t)
    x_0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t, at step indices `t` (N,)."""
    ab, ab_prev = sched.at('abar', t, x), sched.at('abar_prev', t, x)
    beta, alpha = sched.at('beta', t, x), sched.at('alpha', t, x)
    return (ab_prev.sqrt() * beta * x0 + alpha.sqrt() * (1 - ab_prev) * x) / (1 - ab)

def check_step(t, T, who, name='t'):
    "Refuse a step index that is not an int in 0..T-1."
    if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < T:
        raise ValueError(f'{who}: {name} must be an int step index in 0..{T - 1}, got {t!r}')

def ddpm_step(sched, x, t, eps_hat, z=None, var='beta', clip=False):
    """Algorithm 2's update from x_t to x_{t-1} at step index `t` (an int, the same for the
    batch): the posterior mean at the x_0 implied by `eps_hat` (clamped to [-1, 1] with `clip`),
    plus sigma_t z, sigma_t^2 = beta_t (`var`='beta') or the posterior's variance ('tilde'); no
    noise at the last step (t = 0)."""
    check_step(t, sched.T, 'ddpm_step')
    if var not in ('beta', 'tilde'):
        raise ValueError(f"ddpm_step: var must be 'beta' or 'tilde', got {var!r}")
    tt = torch.full((len(x),), t, device=x.device)
    x0 = x0_from_eps(sched, x, tt, eps_hat)
    mean = posterior_mean(sched, x, tt, x0.clamp(-1, 1) if clip else x0)
    if t == 0: return mean
    s2 = sched.at('beta', tt, x)
    if var == 'tilde': s2 = s2 * (1 - sched.at('abar_prev', tt, x)) / (1 - sched.at('abar', tt, x))
    return mean + s2.sqrt() * z


def sample_loop(unet, sched, steps, update, n, seed=0, bs=1000, keep=(), n_keep=8, size=28):
    """`n` images (c_in, size, size) made from x_T ~ N(0, I) by `update(x, t, t_prev, eps_hat,
    g)` along the step indices `steps` (decreasing; after the last comes x_0), one network call per
    step and image, in batches of `bs` on the U-Net's device, the noise from one generator there
    seeded with `seed`. Returns (the images in [-1, 1] on the CPU, {t: (x_t, the x_0 it implies)}
    for the first `n_keep` images at the step indices in `keep`). `unet` must predict the noise
    (`target` 'eps'): wrap one that predicts v in `EpsFromV`."""
    check_same_T(unet, sched, 'sample_loop')
    if unet.target != 'eps':
        raise ValueError(f'sample_loop: the network predicts {unet.target!r}, the samplers need '
                         f'the noise: sample from EpsFromV(unet, sched)')
    dev, was_training = model_device(unet), unet.training
    g, out, kept = torch.Generator(device=dev).manual_seed(seed), [], {}
    unet.eval()
    try:
        with torch.no_grad():
            for b in range(0, n, bs):
                x = torch.randn(min(bs, n - b), unet.c_in, size, size, generator=g, device=dev)
                for t, t_prev in zip(steps, [*steps[1:], -1]):
                    tt = torch.full((len(x),), t, device=dev)
                    eps_hat = unet(x, tt)
                    if b == 0 and t in keep:
                        x0 = x0_from_eps(sched, x, tt, eps_hat)
                        kept[t] = x[:n_keep].cpu(), x0[:n_keep].cpu()
                    x = update(x, t, t_prev, eps_hat, g)
                out.append(x.cpu())
    finally: unet.train(was_training)
    return torch.cat(out), kept


def ddpm_sample(unet, sched, n, seed=0, var='beta', clip=True, bs=1000, keep=(), size=28):
    "Algorithm 2 (`ddpm_step`) through all T steps: `sample_loop`'s (images, kept)."
    def update(x, t, t_prev, eps_hat, g):
        z = torch.randn(x.shape, generator=g, device=x.device) if t > 0 else None
        return ddpm_step(sched, x, t, eps_hat, z, var, clip)
    steps = list(range(sched.T - 1, -1, -1))
    return sample_loop(unet, sched, steps, update, n, seed, bs, keep, size=size)


def ddim_step(sched, x, t, t_prev, eps_hat, eta=0., z=None, clip=False):
    """Song et al.'s update (eq. 12) from step index `t` to `t_prev` < t (-1: to x_0 itself):
    sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps + sigma z, x0 implied by `eps_hat`
    (clamped to [-1, 1] with `clip`, eps then recomputed from it), sigma = eta times the posterior's
    standard deviation (eq. 16). eta = 0: deterministic, no `z` needed."""
    check_step(t, sched.T, 'ddim_step')
    if isinstance(t_prev, bool) or not isinstance(t_prev, int) or not -1 <= t_prev < t:
        raise ValueError(f'ddim_step: t_prev must be an int in -1..{t - 1} (below t = {t}), '
                         f'got {t_prev!r}')
    tt = torch.full((len(x),), t, device=x.device)
    ab = sched.at('abar', tt, x)
    ab_prev = (sched.at('abar', torch.full_like(tt, t_prev), x) if t_prev >= 0
               else torch.ones_like(ab))
    x0 = x0_from_eps(sched, x, tt, eps_hat)
    if clip:
        x0 = x0.clamp(-1, 1)
        eps_hat = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
    sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).sqrt()
    x = ab_prev.sqrt() * x0 + (1 - ab_prev - sigma ** 2).sqrt() * eps_hat
    return x if eta == 0 else x + sigma * z


def ddim_steps(T, n_steps):
    "`n_steps` step indices evenly spread from T-1 down to 0 (rounded), all different."
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or not 1 <= n_steps <= T:
        raise ValueError(f'ddim_steps: n_steps must be an int in 1..T = {T}, got {n_steps!r}')
    return torch.linspace(T - 1, 0, n_steps, dtype=torch.float64).round().long().tolist()

def ddim_sample(unet, sched, n, n_steps, eta=0., seed=0, clip=True, bs=1000, keep=(), size=28):
    "DDIM (`ddim_step`) along `ddim_steps(T, n_steps)`: `sample_loop`'s (images, kept)."
    def update(x, t, t_prev, eps_hat, g):
        z = torch.randn(x.shape, generator=g, device=x.device) if eta else None
        return ddim_step(sched, x, t, t_prev, eps_hat, eta, z, clip)
    steps = ddim_steps(sched.T, n_steps)
    return sample_loop(unet, sched, steps, update, n, seed, bs, keep, size=size)


# What `from exp.nb_15c import *` gives (generated by notebook2script.py;
# a name bound only in a branch not taken is left out).
from exp.nb_15b import __all__ as _all_nb_15b
__all__ = _all_nb_15b + [
    'math', 'NoiseSchedule', 'check_num_steps', 'check_same_T', 'check_steps', 'q_sample',
    'to_pm1', 'to_unit', 'v_target', 'NoisePrediction', 'EpsFromV', 'eps_mse', 'EMACallback',
    'TimeEmbedding', 'EmbResBlock', 'SelfAttention2d', 'UNet', 'DDPM_SETTINGS', 'ddpm_schedule',
    'ddpm_unet_from', 'train_ddpm', 'ddpm_path', 'load_ddpm', 'ddpm_unet', 'x0_from_eps',
    'posterior_mean', 'check_step', 'ddpm_step', 'sample_loop', 'ddpm_sample', 'ddim_step',
    'ddim_steps', 'ddim_sample'
]
__all__ = [_name for _name in dict.fromkeys(__all__) if _name in globals()]
