"""FID and KID from nbs/15b_fid.ipynb, checked against the formula computed with scipy's general
matrix square root and against the MMD estimator written out pair by pair, in float64; and the
classifier's cache (load or train, checksum, settings)."""
import json

import pytest
import torch

from exp import nb_15b
from exp.nb_15b import (FID_CLASSIFIER, ImageEval, feature_stats, fid, fid_classifier, fid_cnn,
                        fid_features, fid_from_stats, meta_path, fid_split, fid_terms,
                        load_fid_classifier, mmd2_unbiased, save_fid_classifier, sqrtm_psd,
                        trace_sqrt_product)

scipy_linalg = pytest.importorskip('scipy.linalg')


def _feats(n, d, seed, shift=0., scale=1.):
    "n rows of d correlated features (a random linear map of Gaussian noise), in float64."
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, dtype=torch.float64, generator=g) / d**0.5
    return (torch.randn(n, d, dtype=torch.float64, generator=g) @ mix) * scale + shift


def _fid_scipy(f1, f2):
    "The FID formula with scipy's sqrtm of the (non-symmetric) product, in float64."
    mu1, mu2 = f1.mean(0).numpy(), f2.mean(0).numpy()
    s1, s2 = f1.T.cov().numpy(), f2.T.cov().numpy()   # torch's cov: N - 1
    root = scipy_linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2)**2).sum() + (s1 + s2 - 2*root).trace())


@pytest.mark.parametrize('n, d, shift, scale', [(200, 8, 0., 1.), (300, 16, 0.5, 2.),
                                                (50, 10, -1., 0.3), (40, 30, 0.1, 1.)])
def test_fid_matches_the_formula_with_scipy_sqrtm(n, d, shift, scale):
    f1, f2 = _feats(n, d, 0), _feats(n + 7, d, 1, shift, scale)
    assert fid(f1, f2) == pytest.approx(_fid_scipy(f1, f2), rel=1e-8, abs=1e-9)


def test_fid_is_symmetric_and_grows_with_a_shift_of_the_mean():
    f1, f2 = _feats(300, 6, 0), _feats(300, 6, 1)
    assert fid(f1, f2) == pytest.approx(fid(f2, f1), rel=1e-9)
    # with equal means, moving every row of one set by a vector adds its squared length exactly
    g = f2 - f2.mean(0) + f1.mean(0)
    assert fid(f1, g + 0.5) == pytest.approx(fid(f1, g) + 6 * 0.25, rel=1e-9)


def test_fid_terms_are_the_means_distance_and_the_spread_and_sum_to_fid():
    f1, f2 = _feats(150, 5, 0), _feats(160, 5, 1, shift=0.7, scale=0.5)
    means, spread = fid_terms(*feature_stats(f1), *feature_stats(f2))
    assert means == pytest.approx(((f1.mean(0) - f2.mean(0))**2).sum().item(), rel=1e-12)
    assert means + spread == pytest.approx(fid(f1, f2), rel=1e-12)
    # a set moved by a constant keeps its spread: the trace term is unchanged
    assert fid_terms(*feature_stats(f1), *feature_stats(f2 + 3.))[1] == pytest.approx(spread)


def test_fid_of_a_set_with_itself_is_zero():
    f = _feats(100, 12, 3)
    assert abs(fid(f, f)) < 1e-9
    assert abs(fid(f.float(), f.float())) < 1e-6   # float32 features are computed in float64


def test_covariance_divides_by_n_minus_one():
    f = _feats(25, 4, 2)
    mu, s = feature_stats(f)
    torch.testing.assert_close(mu, f.mean(0))
    torch.testing.assert_close(s, torch.cov(f.T))


def test_symmetric_form_has_the_eigenvalues_of_the_product():
    s1, s2 = feature_stats(_feats(80, 10, 4))[1], feature_stats(_feats(80, 10, 5, scale=3.))[1]
    prod = s1 @ s2
    assert (prod - prod.T).abs().max() > 1e-3   # the product is not symmetric
    r = sqrtm_psd(s1)
    torch.testing.assert_close(r @ r, s1)
    torch.testing.assert_close(r, r.T)
    ev = torch.linalg.eigvals(prod)
    assert ev.imag.abs().max() < 1e-9
    torch.testing.assert_close(ev.real.sort().values, torch.linalg.eigvalsh(r @ s2 @ r))
    want = float(scipy_linalg.sqrtm(prod.numpy()).real.trace())
    assert trace_sqrt_product(s1, s2).item() == pytest.approx(want, rel=1e-9)


def test_a_singular_covariance_still_gives_the_scipy_figure():
    # fewer rows than features: both covariances are singular, with eigenvalues at (about) zero
    f1, f2 = _feats(6, 10, 6), _feats(6, 10, 7)
    assert fid(f1, f2) == pytest.approx(_fid_scipy(f1, f2), rel=1e-6)


def _mmd2_loops(x, y):
    k = lambda a, b: (float(a @ b) / len(a) + 1) ** 3
    m, n = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return kxx + kyy - 2 * kxy


@pytest.mark.parametrize('m, n, d', [(5, 5, 3), (9, 6, 4), (2, 3, 7)])
def test_kid_matches_the_pairwise_loops(m, n, d):
    x, y = _feats(m, d, 8), _feats(n, d, 9, shift=0.3)
    assert mmd2_unbiased(x, y) == pytest.approx(_mmd2_loops(x, y), rel=1e-10, abs=1e-12)


def test_kid_of_two_samples_of_one_distribution_is_near_zero_and_of_two_apart_is_not():
    same = mmd2_unbiased(_feats(400, 8, 11), _feats(400, 8, 12))
    apart = mmd2_unbiased(_feats(400, 8, 11), _feats(400, 8, 12) + 1.)
    assert abs(same) < 0.1 * apart


@pytest.mark.parametrize('f', [fid, mmd2_unbiased])
def test_features_of_different_widths_are_refused(f):
    with pytest.raises(ValueError, match=r'f1 \(10, 4\) and f2 \(10, 5\)'):
        f(torch.randn(10, 4), torch.randn(10, 5))


@pytest.mark.parametrize('f', [fid, mmd2_unbiased])
def test_too_few_rows_or_not_a_matrix_is_refused(f):
    with pytest.raises(ValueError, match='f2 has 1 row'):
        f(torch.randn(10, 4), torch.randn(1, 4))
    with pytest.raises(ValueError, match=r'f1 must be a matrix.*\(10, 1, 4\)'):
        f(torch.randn(10, 1, 4), torch.randn(10, 4))


def test_fid_split_gives_disjoint_seeded_sets_and_refuses_too_few():
    x = torch.arange(30.)[:, None]
    a, b = fid_split(x, 10)
    assert len(a) == len(b) == 10 and not set(a[:, 0].tolist()) & set(b[:, 0].tolist())
    torch.testing.assert_close(fid_split(x, 10)[0], a)
    with pytest.raises(ValueError, match='need 40 rows, x has 30'):
        fid_split(x, 20)


def test_image_eval_scores_images_as_fid_and_kid_on_their_features():
    torch.manual_seed(0)
    model = fid_cnn(nfs=(4, 8, 8)).eval()
    ref, x = torch.rand(20, 1, 28, 28), torch.rand(15, 1, 28, 28)
    ev = ImageEval(model, ref)
    assert fid_features(model, x).shape == (15, 8)
    f_ref, f_x = fid_features(model, ref), fid_features(model, x)
    assert ev.fid(x) == pytest.approx(fid(f_ref, f_x), rel=1e-9)
    assert ev.kid(x) == pytest.approx(mmd2_unbiased(f_ref, f_x), rel=1e-9)
    assert ev.fid(x) == pytest.approx(fid_from_stats(*ev.stats, *feature_stats(f_x)), rel=1e-12)


def test_image_eval_refuses_images_outside_0_1():
    torch.manual_seed(0)
    model = fid_cnn(nfs=(4, 8, 8)).eval()
    ev = ImageEval(model, torch.rand(10, 1, 28, 28))
    with pytest.raises(ValueError, match=r'must be in \[0, 1\].*from -0?\.?\d+ to'):
        ev.fid(torch.rand(10, 1, 28, 28) * 2 - 1)
    with pytest.raises(ValueError, match='must be in'):
        ImageEval(model, torch.rand(10, 1, 28, 28) * 255)


SMALL = dict(FID_CLASSIFIER, nfs=[4, 8, 8])


def _small_model(seed=0):
    torch.manual_seed(seed)
    return fid_cnn(nfs=SMALL['nfs'])


def test_save_and_load_round_trip_the_weights_exactly(tmp_path):
    model = _small_model()
    path = save_fid_classifier(model, SMALL, tmp_path / 'clf.pth', results={'test_accuracy': 0.5})
    loaded, meta = load_fid_classifier(SMALL, path)
    assert not loaded.training
    assert meta['results'] == {'test_accuracy': 0.5} and meta['settings'] == SMALL
    for (k, v), w in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(v, w), k


def test_load_refuses_other_settings_and_a_damaged_file(tmp_path):
    "Other settings are refused here; the file's checks are 13a's read_checked_meta (tested there)."
    path = save_fid_classifier(_small_model(), SMALL, tmp_path / 'clf.pth')
    with pytest.raises(ValueError, match='was made with settings'):
        load_fid_classifier(dict(SMALL, epochs=9), path)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match=r'^load_fid_classifier: .* does not match the sha256'):
        load_fid_classifier(SMALL, path)


def test_fid_classifier_trains_once_then_loads(tmp_path, monkeypatch):
    calls = []
    def fake_train(settings, progress=True):
        calls.append(settings)
        return _small_model(len(calls)), {'test_accuracy': 0.1 * len(calls)}
    monkeypatch.setattr(nb_15b, 'train_fid_classifier', fake_train)
    path = tmp_path / 'models' / 'clf.pth'
    first, meta1 = fid_classifier(SMALL, path)
    again, meta2 = fid_classifier(SMALL, path)
    assert len(calls) == 1 and meta2 == meta1 == json.loads(meta_path(path).read_text())
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(),
                                                 again.state_dict().values()))
    fid_classifier(dict(SMALL, epochs=9), path)   # other settings: trained again, saved over
    assert len(calls) == 2
    assert json.loads(meta_path(path).read_text())['settings']['epochs'] == 9


def test_the_default_path_is_in_the_data_cache(isolated):
    assert nb_15b.fid_classifier_path() == \
        nb_15b.cache_dir() / 'models' / '15b_fid_classifier.pth'


def test_a_cache_saved_before_device_and_threads_were_recorded_still_loads(tmp_path, monkeypatch):
    def refuse(settings, progress=True): raise AssertionError('the cached classifier was retrained')
    monkeypatch.setattr(nb_15b, 'train_fid_classifier', refuse)
    old = {'seconds': 26.0, 'valid_accuracy': 0.9, 'test_accuracy': 0.89}
    path = save_fid_classifier(_small_model(), SMALL, tmp_path / 'clf.pth', results=old)
    _, meta = fid_classifier(SMALL, path)
    assert meta['results'] == old
