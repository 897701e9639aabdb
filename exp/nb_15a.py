# Generated from nbs/15a_vae.ipynb by notebook2script.py:
# edit the notebook, not this file.


from exp.nb_15 import *
import json


def reparameterize(mu, logvar, eps=None):
    """z = mu + sigma * eps with sigma = exp(logvar / 2) and eps ~ N(0, I) (drawn on mu's device
    unless given): a sample of N(mu, sigma^2) that is a differentiable function of mu and logvar."""
    if mu.shape != logvar.shape:
        raise ValueError(f'reparameterize: mu {tuple(mu.shape)} and logvar '
                         f'{tuple(logvar.shape)} must have the same shape')
    if eps is None: eps = torch.randn_like(mu)
    return mu + torch.exp(0.5 * logvar) * eps


def kl_std_normal(mu, logvar):
    """KL(N(mu, sigma^2) || N(0, I)) per row, summed over the latent axis (the last):
    (mu^2 + sigma^2 - log sigma^2 - 1) / 2 for each coordinate, in nats."""
    if mu.shape != logvar.shape:
        raise ValueError(f'kl_std_normal: mu {tuple(mu.shape)} and logvar '
                         f'{tuple(logvar.shape)} must have the same shape')
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(-1)


class VAE(AutoEncoder):
    """15's AutoEncoder whose encoder gives 2*n_latent numbers per image: the mean and the
    log-variance of q(z|x). `encode` is the mean (the latent one would keep); `forward` draws one
    z with `reparameterize` and returns (decoder logits, mu, logvar)."""
    def dist(self, x):
        h = self.encoder(x)
        if h.shape[-1] % 2:
            raise ValueError(f'VAE: the encoder must give 2*n_latent outputs, got {h.shape[-1]}')
        return h.chunk(2, dim=-1)
    def encode(self, x): return self.dist(x)[0]
    def forward(self, x):
        mu, logvar = self.dist(x)
        return self.decoder(reparameterize(mu, logvar)), mu, logvar

def vae(n_latent=16, nfs=(8, 16), up='nearest', c=1, size=28):
    "A `VAE` from `ae_encoder(n_latent, nfs, n_out=2*n_latent)` and 15's `ae_decoder`."
    return VAE(ae_encoder(n_latent, nfs, c, size, n_out=2*n_latent),
               ae_decoder(n_latent, tuple(reversed(nfs)), c, size, up))

def vae_samples(model, n, seed=0, bs=1000):
    """`n` images decoded from latents drawn from the prior N(0, I) with a generator seeded by
    `seed` (the same images on any device), as probabilities in [0, 1], on the CPU."""
    z = torch.randn(n, model.decoder[0].in_features, generator=torch.Generator().manual_seed(seed))
    return decode_all(model, z, bs)


def _vae_parts(pred, x, who):
    if not (isinstance(pred, (tuple, list)) and len(pred) == 3):
        raise ValueError(f'{who}: expects the (logits, mu, logvar) a VAE returns, got '
                         f'{type(pred).__name__}')
    logits, mu, logvar = pred
    if logits.shape != x.shape:
        raise ValueError(f'{who}: logits {tuple(logits.shape)} and images {tuple(x.shape)} '
                         'must have the same shape')
    return logits, mu, logvar

def recon_nats(pred, x):
    """The binary cross-entropy of images `x` (pixels in [0, 1]) under the decoder's logits,
    summed over the pixels of each image, averaged over the batch: -log p(x|z) for Bernoulli
    pixels when `x` is binary; on grey pixels a cross-entropy, no normalized likelihood."""
    logits = _vae_parts(pred, x, 'recon_nats')[0]
    nll = F.binary_cross_entropy_with_logits(logits, x, reduction='none')
    return nll.flatten(1).sum(1).mean()

def kl_nats(pred, x):
    "`kl_std_normal` of the batch's q(z|x), averaged over the batch (nats per image)."
    _, mu, logvar = _vae_parts(pred, x, 'kl_nats')
    return kl_std_normal(mu, logvar).mean()

def vae_loss(pred, x, beta=1.):
    """recon_nats + beta * kl_nats, in nats per image: a Bernoulli cross-entropy plus beta times
    the KL. With beta = 1 and binary pixels it is the negative ELBO, an upper bound on -log p(x);
    on grey pixels it bounds no normalized likelihood (only its excess over the pixels' entropy
    depends on the model). beta weighs the pull of q(z|x) towards the prior."""
    return recon_nats(pred, x) + beta * kl_nats(pred, x)


def vae_learner(data, model, beta=1., lr=1e-2, progress=True, cbs=None):
    """15's `ae_learner` set-up for a VAE: the loss `vae_loss` with weight `beta`, and its two
    terms, `recon_nats` and `kl_nats`, as metrics (averaged by AvgStatsCallback)."""
    learn = ae_learner(data, model, lr=lr, progress=progress, cbs=cbs)
    learn.loss_func = partial(vae_loss, beta=beta)
    learn.avg_stats.train_stats.metrics = [recon_nats, kl_nats]
    learn.avg_stats.valid_stats.metrics = [recon_nats, kl_nats]
    return learn


VAE_SETTINGS = dict(n_latent=16, nfs=[8, 16], beta=1.0, epochs=3, lr=1e-2, bs=128, seed=0)

def train_vae(settings=VAE_SETTINGS, data=None, progress=True):
    """A VAE built and trained as 15a does: `vae(n_latent, nfs)` after torch.manual_seed(seed),
    `fit_ae` with one-cycle for `epochs` at peak `lr`, on 11's `fashion_splits` in batches of `bs`
    (or on `data`). Returns (learner, seconds)."""
    if data is None:
        x_tr, _, x_va, _, _, _ = fashion_splits()
        data = ae_databunch(x_tr, x_va, bs=settings['bs'])
    torch.manual_seed(settings['seed'])
    model = vae(settings['n_latent'], tuple(settings['nfs']))
    learn = vae_learner(data, model, settings['beta'], settings['lr'], progress)
    return learn, fit_ae(learn, settings['epochs'], settings['lr'])


def vae_path():
    "Where 15a's VAE is saved: the data cache (00a's `cache_dir`), beside 13a's language model."
    return cache_dir()/'models'/'15a_vae.pth'

def save_vae(model, settings=VAE_SETTINGS, path=None, results=None):
    """Save `model`'s weights (11a's save_model, replacing any) and a JSON beside them with
    `settings`, the weights' sha256 and `results`; returns the weights' path."""
    meta = dict(settings=settings, results=results or {})
    return save_with_meta(model, vae_path() if path is None else path, meta)   # 13a's

def check_saved_settings(meta, settings, path, who):
    """Refuse, naming `who` and `path`, a saved model whose JSON `meta` holds other settings than
    `settings`, compared as JSON keeps them (tuples become lists)."""
    want = json.loads(json.dumps(settings))
    if meta.get('settings') != want:
        raise ValueError(f'{who}: {path} was made with settings {meta.get("settings")}, '
                         f'not {want}')

def load_vae(settings=VAE_SETTINGS, path=None):
    """(model, meta): the VAE saved at `path` (default `vae_path()`), on the CPU, in eval mode.
    The weights must match their checksum and the JSON's settings those asked for."""
    path = Path(vae_path() if path is None else path)
    meta = read_checked_meta(path, 'load_vae')   # 13a's: the JSON, the weights' checksum
    check_saved_settings(meta, settings, path, 'load_vae')
    model = vae(settings['n_latent'], tuple(settings['nfs']))
    return load_model(model, path).eval(), meta


def vae_model(settings=VAE_SETTINGS, path=None, progress=True):
    """(model, meta): 15a's VAE from `path` (default `vae_path()`) if it was saved with `settings`,
    else one trained as 15a does (`train_vae`), saved there with its validation figures, and
    loaded back as a later call will load it (on the CPU, eval mode)."""
    path = Path(vae_path() if path is None else path)
    if path.exists() and meta_path(path).exists():
        try: return load_vae(settings, path)
        except ValueError as e: print(f'vae_model: {e}; training it again')
    learn, secs = train_vae(settings, progress=progress)
    names = ['loss', 'recon_nats', 'kl_nats']
    results = dict(zip(['valid_' + n for n in names], learn.epoch_history.valid[-1]), seconds=secs)
    save_vae(learn.model, settings, path, results)
    return load_vae(settings, path)


# What `from exp.nb_15a import *` gives (generated by notebook2script.py;
# a name bound only in a branch not taken is left out).
from exp.nb_15 import __all__ as _all_nb_15
__all__ = _all_nb_15 + [
    'reparameterize', 'kl_std_normal', 'VAE', 'vae', 'vae_samples', 'recon_nats', 'kl_nats',
    'vae_loss', 'vae_learner', 'VAE_SETTINGS', 'train_vae', 'vae_path', 'save_vae',
    'check_saved_settings', 'load_vae', 'vae_model'
]
__all__ = [_name for _name in dict.fromkeys(__all__) if _name in globals()]
