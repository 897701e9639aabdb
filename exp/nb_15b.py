# Generated from nbs/15b_fid.ipynb by notebook2script.py:
# edit the notebook, not this file.


from exp.nb_15a import *
import time


FID_CLASSIFIER = dict(nfs=[16, 32, 64], epochs=4, lr=1e-2, bs=256, seed=0)

def fid_cnn(c_in=1, c_out=10, nfs=(16, 32, 64)):
    """A small CNN for 28x28 images in [0, 1]: one stride-2 `conv_layer` (11's) per entry of `nfs`,
    average pooling to a vector of nfs[-1] features, then the linear classifier. `fid_features`
    reads the vector before that last layer."""
    chans = [c_in, *nfs]
    convs = [conv_layer(a, b, stride=2) for a, b in zip(chans[:-1], chans[1:])]
    model = nn.Sequential(*convs, nn.AdaptiveAvgPool2d(1), Flatten(), nn.Linear(nfs[-1], c_out))
    init_cnn(model)
    return model

def fid_features(model, x, bs=1000):
    """The penultimate features (N, nfs[-1]) of `fid_cnn` `model` on images `x` (N, 1, 28, 28) in
    [0, 1]: every layer but the last, in eval mode, batches on the model's device (15's
    `eval_batches`); returned on the CPU."""
    return eval_batches(model, lambda m, xb: m[:-1](xb), x, bs)


def fid_classifier_path():
    "Where 15b's classifier is saved: the data cache (00a's `cache_dir`)."
    return cache_dir()/'models'/'15b_fid_classifier.pth'

def fid_cnn_from(settings):
    "An untrained `fid_cnn` with the architecture `settings` names."
    return fid_cnn(nfs=settings['nfs'])

def save_fid_classifier(model, settings=FID_CLASSIFIER, path=None, results=None):
    """Save `model`'s weights (11a's `save_model`, replacing any) and a JSON beside them with
    `settings`, the weights' sha256 and `results`; returns the weights' path."""
    meta = dict(settings=settings, results=results or {})
    return save_with_meta(model, fid_classifier_path() if path is None else path, meta)   # 13a's

def load_fid_classifier(settings=FID_CLASSIFIER, path=None):
    """(model, meta): the classifier saved at `path` (default `fid_classifier_path()`), in eval
    mode on the CPU. The weights must match their checksum and the settings those asked for."""
    path = Path(fid_classifier_path() if path is None else path)
    meta = read_checked_meta(path, 'load_fid_classifier')   # 13a's: the JSON, the checksum
    check_saved_settings(meta, settings, path, 'load_fid_classifier')   # 15a's
    return load_model(fid_cnn_from(settings), path).eval(), meta


def train_fid_classifier(settings=FID_CLASSIFIER, progress=True):
    """(model, results): `fid_cnn` trained on Fashion-MNIST's 50,000 training images with 09's
    Adam and 11's one-cycle, scored on the validation and test images (`eval_accuracy`). The
    results also record the seconds it took, on which device and with how many CPU threads."""
    x_tr, y_tr, x_va, y_va, x_te, y_te = fashion_splits()
    torch.manual_seed(settings['seed'])
    data = images_databunch(x_tr, y_tr, x_va, y_va, bs=settings['bs'])
    learn = cnn_learner(partial(fid_cnn, nfs=settings['nfs']), data, F.cross_entropy,
                        adam_opt(), lr=settings['lr'], progress=progress)
    start = time.perf_counter()
    learn.fit(settings['epochs'], cbs=sched_1cycle(settings['lr']))
    sync(model_device(learn.model))
    secs = time.perf_counter() - start
    results = dict(seconds=secs, device=str(model_device(learn.model)),
                   threads=torch.get_num_threads(), valid_accuracy=eval_accuracy(learn, x_va, y_va),
                   test_accuracy=eval_accuracy(learn, x_te, y_te))
    return learn.model, results

def fid_classifier(settings=FID_CLASSIFIER, path=None, progress=True):
    """(model, meta): the classifier 15b saved at `path` (default `fid_classifier_path()`) if it
    was made with `settings`, else one trained as 15b does (`train_fid_classifier`) and saved
    there. The model comes back in eval mode on the CPU, as a later call would load it."""
    path = Path(fid_classifier_path() if path is None else path)
    if path.exists() and meta_path(path).exists():
        try: return load_fid_classifier(settings, path)
        except ValueError as e: print(f'fid_classifier: {e}; training it again')
    model, results = train_fid_classifier(settings, progress)
    save_fid_classifier(model, settings, path, results)
    return load_fid_classifier(settings, path)


def check_features(f, who, name='features'):
    "`f` as float64, refused unless it is (N, d) with at least two rows."
    if not torch.is_tensor(f) or f.dim() != 2:
        shape = tuple(f.shape) if torch.is_tensor(f) else type(f).__name__
        raise ValueError(f'{who}: {name} must be a matrix (N samples, d features), got {shape}')
    if len(f) < 2:
        raise ValueError(f'{who}: {name} has {len(f)} row(s); a covariance needs at least 2')
    return f.double()

def check_pair(f1, f2, who):
    "Both feature matrices checked (`check_features`) and refused unless equally wide."
    f1, f2 = check_features(f1, who, 'f1'), check_features(f2, who, 'f2')
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f'{who}: f1 {tuple(f1.shape)} and f2 {tuple(f2.shape)} have different '
                         'numbers of features (columns); both must come from the same network')
    return f1, f2

def feature_stats(f):
    "(mean, covariance) of the rows of `f` (N, d), in float64; the covariance divides by N - 1."
    f = check_features(f, 'feature_stats')
    mu = f.mean(0)
    c = f - mu
    return mu, c.T @ c / (len(f) - 1)


def sqrtm_psd(a):
    """The symmetric square root of a symmetric positive semi-definite matrix: A = Q diag(l) Q^T,
    sqrt(A) = Q diag(sqrt(l)) Q^T, eigenvalues below 0 (rounding) taken as 0."""
    l, q = torch.linalg.eigh(a)
    return (q * l.clamp(min=0).sqrt()) @ q.T

def trace_sqrt_product(s1, s2):
    """Tr((S1 S2)^(1/2)) for symmetric PSD S1, S2, through the symmetric sqrt(S1) S2 sqrt(S1),
    which has the same eigenvalues as S1 S2 (both real and >= 0)."""
    r = sqrtm_psd(s1)
    return torch.linalg.eigvalsh(r @ s2 @ r).clamp(min=0).sqrt().sum()

def fid_terms(mu1, s1, mu2, s2):
    "The FID's two terms as floats: ||mu1 - mu2||^2 (the means) and Tr(S1 + S2 - 2 (S1 S2)^(1/2))."
    spread = s1.trace() + s2.trace() - 2*trace_sqrt_product(s1, s2)
    return ((mu1 - mu2)**2).sum().item(), spread.item()

def fid_from_stats(mu1, s1, mu2, s2):
    "The FID from the two Gaussians' means and covariances: the sum of `fid_terms`."
    return sum(fid_terms(mu1, s1, mu2, s2))

def fid(f1, f2):
    """The Fréchet distance between Gaussians fitted to the rows of `f1` and of `f2` (samples x
    features): Heusel et al. 2017's FID, on whatever features they are."""
    f1, f2 = check_pair(f1, f2, 'fid')
    return fid_from_stats(*feature_stats(f1), *feature_stats(f2))


def poly_kernel(a, b):
    "k(x, y) = (x.y/d + 1)^3 for every row x of `a` and y of `b`: the kernel KID uses."
    return (a @ b.T / a.shape[1] + 1) ** 3

def mmd2_unbiased(x, y):
    """The unbiased estimate of the squared MMD between the rows of `x` (m) and `y` (n) under
    `poly_kernel`: the means of k over pairs i != j within each set, less twice the mean across."""
    x, y = check_pair(x, y, 'mmd2_unbiased')
    m, n = len(x), len(y)
    kxx, kyy = poly_kernel(x, x), poly_kernel(y, y)
    within = ((kxx.sum() - kxx.diagonal().sum()) / (m*(m - 1))
              + (kyy.sum() - kyy.diagonal().sum()) / (n*(n - 1)))
    return (within - 2*poly_kernel(x, y).mean()).item()

def kid(f1, f2):
    "Bińkowski et al. 2018's KID: `mmd2_unbiased` of the two feature matrices, all rows at once."
    return mmd2_unbiased(f1, f2)


FID_N = 1000

def fid_split(x, n=FID_N, seed=0):
    "Two disjoint random sets of `n` rows of `x` (a seeded permutation): the reference and another."
    if 2*n > len(x):
        raise ValueError(f'fid_split: two disjoint sets of {n} need {2*n} rows, x has {len(x)}')
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    return x[idx[:n]], x[idx[n:2*n]]

class ImageEval:
    """FID and KID of images against a reference set, on `model`'s penultimate features
    (`fid_features`); the reference's features and statistics computed once."""
    def __init__(self, model, ref):
        self.model = model
        self.feats = self.features(ref)
        self.stats = feature_stats(self.feats)
    def features(self, x):
        "The features of images `x`, refused unless they are in [0, 1] as the classifier's were."
        lo, hi = x.min().item(), x.max().item()
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(f'ImageEval: images must be in [0, 1], as the classifier was trained '
                             f'on, got values from {lo:.3g} to {hi:.3g}; map them to [0, 1] first')
        return fid_features(self.model, x)
    def fid(self, x): return fid_from_stats(*self.stats, *feature_stats(self.features(x)))
    def kid(self, x): return kid(self.feats, self.features(x))


# What `from exp.nb_15b import *` gives (generated by notebook2script.py;
# a name bound only in a branch not taken is left out).
from exp.nb_15a import __all__ as _all_nb_15a
__all__ = _all_nb_15a + [
    'FID_CLASSIFIER', 'fid_cnn', 'fid_features', 'fid_classifier_path', 'fid_cnn_from',
    'save_fid_classifier', 'load_fid_classifier', 'train_fid_classifier', 'fid_classifier',
    'check_features', 'check_pair', 'feature_stats', 'sqrtm_psd', 'trace_sqrt_product',
    'fid_terms', 'fid_from_stats', 'fid', 'poly_kernel', 'mmd2_unbiased', 'kid', 'FID_N',
    'fid_split', 'ImageEval'
]
__all__ = [_name for _name in dict.fromkeys(__all__) if _name in globals()]
