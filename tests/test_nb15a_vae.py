"""The variational autoencoder's pieces from nbs/15a_vae.ipynb: the KL term against
torch.distributions in float64, the reparameterization's gradients, the ELBO's two terms, and
saving and loading the trained VAE."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from exp.nb_15a import (VAE_SETTINGS, kl_nats, kl_std_normal, load_vae, recon_nats,
                        reparameterize, save_vae, vae, vae_loss, meta_path, vae_model,
                        vae_samples)


def _mu_logvar(seed, shape=(5, 7)):
    g = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(*shape, dtype=torch.float64, generator=g),
            2 * torch.randn(*shape, dtype=torch.float64, generator=g))


@pytest.mark.parametrize('seed', range(3))
def test_kl_matches_torch_distributions_in_float64(seed):
    mu, logvar = _mu_logvar(seed)
    ref = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0., 1.)).sum(-1)
    torch.testing.assert_close(kl_std_normal(mu, logvar), ref, rtol=1e-12, atol=1e-12)


def test_kl_is_zero_only_at_the_prior_and_positive_elsewhere():
    zeros = torch.zeros(2, 4, dtype=torch.float64)
    assert kl_std_normal(zeros, zeros).abs().max() == 0
    mu, logvar = _mu_logvar(5)
    assert (kl_std_normal(mu, logvar) > 0).all()


def test_kl_and_reparameterize_refuse_mismatched_shapes():
    with pytest.raises(ValueError, match=r'mu \(2, 3\) and logvar \(2, 4\)'):
        kl_std_normal(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match='reparameterize'):
        reparameterize(torch.zeros(2, 3), torch.zeros(3, 2))


def test_reparameterize_gradients_reach_mu_and_logvar():
    mu, logvar = (t.requires_grad_() for t in _mu_logvar(1))
    eps = torch.randn_like(mu)
    z = reparameterize(mu, logvar, eps)
    g = torch.randn_like(z)
    gmu, glv = torch.autograd.grad((z * g).sum(), (mu, logvar))
    torch.testing.assert_close(gmu, g)                                     # dz/dmu = 1
    torch.testing.assert_close(glv, g * 0.5 * (0.5 * logvar).exp() * eps)  # dz/dlogvar
    # and it draws from N(mu, sigma^2): many draws have that mean and spread
    torch.manual_seed(0)
    mu1 = torch.full((200_000,), 1.5, dtype=torch.float64)
    draws = reparameterize(mu1, torch.full_like(mu1, 0.8))
    assert abs(draws.mean() - 1.5) < 0.02 and abs(draws.var() / torch.tensor(0.8).exp() - 1) < 0.02


def test_the_elbo_is_the_sum_of_its_two_terms():
    torch.manual_seed(0)
    x = torch.rand(4, 1, 28, 28)
    logits, mu, logvar = torch.randn(4, 1, 28, 28), torch.randn(4, 3), torch.randn(4, 3)
    pred = (logits, mu, logvar)
    rec = F.binary_cross_entropy(torch.sigmoid(logits), x, reduction='sum') / 4
    torch.testing.assert_close(recon_nats(pred, x), rec, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(kl_nats(pred, x), kl_std_normal(mu, logvar).mean())
    for beta in (0.5, 1., 4.):
        torch.testing.assert_close(vae_loss(pred, x, beta), rec + beta * kl_nats(pred, x),
                                   rtol=1e-5, atol=1e-4)


def test_the_loss_refuses_what_is_not_a_vae_output():
    x = torch.rand(2, 1, 28, 28)
    with pytest.raises(ValueError, match='recon_nats: expects the \\(logits, mu, logvar\\)'):
        recon_nats(torch.rand(2, 1, 28, 28), x)
    with pytest.raises(ValueError, match=r'logits \(2, 1, 14, 14\) and images \(2, 1, 28, 28\)'):
        vae_loss((torch.rand(2, 1, 14, 14), torch.zeros(2, 3), torch.zeros(2, 3)), x)


def test_vae_shapes_and_a_gradient_step_lowers_the_loss():
    torch.manual_seed(0)
    model = vae(n_latent=4)
    x = torch.rand(8, 1, 28, 28)
    logits, mu, logvar = model(x)
    assert logits.shape == x.shape and mu.shape == logvar.shape == (8, 4)
    assert model.encode(x).shape == (8, 4)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    torch.manual_seed(1)
    first = vae_loss(model(x), x)
    for _ in range(20):
        opt.zero_grad()
        vae_loss(model(x), x).backward()
        opt.step()
    torch.manual_seed(1)
    assert vae_loss(model(x), x) < first


SMALL = dict(VAE_SETTINGS, n_latent=3, nfs=[4, 4])


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = vae(SMALL['n_latent'], tuple(SMALL['nfs'])).eval()
    path = save_vae(model, SMALL, tmp_path/'v.pth', results=dict(valid_loss=1.0))
    loaded, meta = load_vae(SMALL, path)
    assert meta['results'] == dict(valid_loss=1.0) and not loaded.training
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(loaded.encode(x), model.encode(x))
    torch.testing.assert_close(vae_samples(loaded, 5, seed=3), vae_samples(model, 5, seed=3))


def test_load_refuses_other_settings_and_missing_weights(tmp_path):
    "Other settings are refused here; the file's checks are 13a's read_checked_meta (tested there)."
    path = save_vae(vae(SMALL['n_latent'], tuple(SMALL['nfs'])), SMALL, tmp_path/'v.pth')
    with pytest.raises(ValueError, match='was made with settings'):
        load_vae(dict(SMALL, epochs=99), path)
    path.unlink()
    with pytest.raises(ValueError, match=r'^load_vae: .* is missing'):
        load_vae(SMALL, path)


def test_vae_model_loads_a_matching_save_without_training(tmp_path, monkeypatch):
    import exp.nb_15a as m
    model = vae(SMALL['n_latent'], tuple(SMALL['nfs']))
    path = save_vae(model, SMALL, tmp_path/'v.pth')
    def no_training(*a, **k): raise AssertionError('trained although a matching save exists')
    monkeypatch.setattr(m, 'train_vae', no_training)
    loaded, meta = vae_model(SMALL, path)
    assert json.loads(meta_path(path).read_text()) == meta


def _tiny_data(seed=0):
    from exp.nb_15 import ae_databunch
    g = torch.Generator().manual_seed(seed)
    return ae_databunch(torch.rand(48, 1, 28, 28, generator=g),
                        torch.rand(16, 1, 28, 28, generator=g), bs=16)


@pytest.mark.parametrize('beta', [1., 2.5])
def test_vae_learner_reports_the_loss_as_reconstruction_plus_beta_kl(beta):
    from exp.nb_15 import fit_ae
    from exp.nb_15a import vae_learner
    torch.manual_seed(0)
    learn = vae_learner(_tiny_data(), vae(3, (4, 4)), beta=beta, progress=False)
    fit_ae(learn, 1, 1e-2)
    for loss, rec, kl in (learn.epoch_history.train[-1], learn.epoch_history.valid[-1]):
        assert loss == pytest.approx(rec + beta * kl, rel=1e-4)
        assert rec > 0 and kl >= 0


def test_vae_model_trains_and_saves_when_the_saved_settings_differ(tmp_path, monkeypatch, capsys):
    import exp.nb_15a as m
    path = save_vae(vae(SMALL['n_latent'], tuple(SMALL['nfs'])), dict(SMALL, seed=1),
                    tmp_path/'v.pth')
    real_train = m.train_vae
    monkeypatch.setattr(m, 'train_vae', lambda settings, progress=True:
                        real_train(settings, _tiny_data(), progress=False))
    small = dict(SMALL, epochs=1)
    model, meta = vae_model(small, path)
    assert 'training it again' in capsys.readouterr().out
    assert meta['settings'] == small and set(meta['results']) == {
        'valid_loss', 'valid_recon_nats', 'valid_kl_nats', 'seconds'}
    assert load_vae(small, path)[1] == meta and not model.training


def test_check_saved_settings_compares_as_json_keeps_them_and_names_the_caller():
    from exp.nb_15a import check_saved_settings
    meta = {'settings': {'nfs': [8, 16], 'lr': 0.01}}
    check_saved_settings(meta, {'nfs': (8, 16), 'lr': 0.01}, 'm.pth', 'load_x')  # tuple == list
    with pytest.raises(ValueError, match=r'load_x: m\.pth was made with settings'):
        check_saved_settings(meta, {'nfs': [8, 32], 'lr': 0.01}, 'm.pth', 'load_x')
