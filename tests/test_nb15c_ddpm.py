"""DDPM and DDIM from nbs/15c_ddpm.ipynb: the cosine schedule against its definition,
v-prediction's identities (x0 and eps back from v, its loss weight), the closed-form forward
process against noising step by step, the sampler's update against Ho et al.'s equations and
against the posterior of the joint Gaussian, DDIM's two limits (eta = 1 over every step is DDPM
with the posterior's variance; eta = 0 is deterministic), the U-Net's shapes and time embedding,
the EMA, and clear errors."""
import math
from types import SimpleNamespace

import pytest
import torch

from exp.nb_15c import (DDPM_SETTINGS, EMACallback, EpsFromV, NoisePrediction, NoiseSchedule,
                        UNet, ddim_sample, ddim_step, ddim_steps, ddpm_sample, ddpm_schedule,
                        ddpm_step, ddpm_unet_from, eps_mse, load_ddpm, posterior_mean, q_sample,
                        save_with_meta, to_pm1, to_unit, v_target, x0_from_eps)


def _gen(seed): return torch.Generator().manual_seed(seed)


def _tiny_unet(T=10, seed=0, target='eps'):
    torch.manual_seed(seed)
    unet = UNet((4, 8), n_emb=8, n_heads=2, groups=2, T=T, target=target)
    for p in unet.parameters():   # away from the zero start, so every path carries signal
        p.data.add_(0.1 * torch.randn(p.shape, generator=_gen(seed + 1)))
    return unet


def test_schedule_matches_its_definition():
    s = NoiseSchedule.linear(T=50, beta_1=1e-3, beta_T=0.05)
    assert s.beta.dtype == torch.float64 and len(s.beta) == s.T == 50
    assert s.beta[0].item() == pytest.approx(1e-3) and s.beta[-1].item() == pytest.approx(0.05)
    assert torch.allclose(s.abar[7], torch.prod(1 - s.beta[:8]), rtol=1e-14, atol=0)
    assert s.abar_prev[0] == 1 and torch.equal(s.abar_prev[1:], s.abar[:-1])
    sc = NoiseSchedule.scaled(100)
    assert sc.beta.sum().item() == pytest.approx(NoiseSchedule.linear(1000).beta.sum().item(),
                                                  rel=1e-12)


def test_cosine_schedule_matches_nichol_and_dhariwal():
    # abar_t = f(t) / f(0), f(t) = cos^2((t/T + s) / (1 + s) pi/2); beta_t = 1 - abar_t/abar_{t-1}
    # capped at 0.999, computed here one step at a time with math.cos
    T, s = 40, 0.008
    c = NoiseSchedule.cosine(T)
    f = [math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2 for t in range(T + 1)]
    beta = [min(1 - f[t] / f[t - 1], 0.999) for t in range(1, T + 1)]
    assert torch.allclose(c.beta, torch.tensor(beta, dtype=torch.float64), rtol=1e-12, atol=0)
    assert c.beta[-1].item() == 0.999 and (c.beta[:-1] < 0.999).all()   # only the last is capped
    # below the cap, abar_t is f(t) / f(0) itself
    assert torch.allclose(c.abar[:-1], torch.tensor(f[1:T], dtype=torch.float64) / f[0],
                          rtol=1e-12, atol=0)
    assert (c.beta[1:] > c.beta[:-1]).all()
    assert torch.equal(ddpm_schedule(dict(schedule='cosine', T=T)).beta, c.beta)
    assert torch.equal(ddpm_schedule(dict(schedule='scaled', T=T)).beta,
                       NoiseSchedule.scaled(T).beta)


def test_v_prediction_recovers_x0_and_eps():
    # v = sqrt(abar) eps - sqrt(1 - abar) x0; x0 = sqrt(abar) x_t - sqrt(1 - abar) v,
    # eps = sqrt(1 - abar) x_t + sqrt(abar) v; and |v - v_hat|^2 = (1 + SNR) |x0 - x0_hat|^2
    s, g = NoiseSchedule.cosine(50), _gen(0)
    x0 = torch.rand(4, 1, 6, 6, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 17, 33, 49])
    xt, v = q_sample(s, x0, t, eps), v_target(s, x0, t, eps)
    ab = s.abar[t].view(-1, 1, 1, 1)
    assert torch.allclose(ab.sqrt() * xt - (1 - ab).sqrt() * v, x0, atol=1e-12, rtol=0)

    class Oracle(torch.nn.Module):   # "predicts" the v it is given
        T, c_in, target = 50, 1, 'v'
        def __init__(self, out): super().__init__(); self.out = out
        def forward(self, x, t): return self.out
    assert torch.allclose(EpsFromV(Oracle(v), s)(xt, t), eps, atol=1e-12, rtol=0)
    v_hat = v + 0.1 * torch.randn(v.shape, generator=g, dtype=torch.float64)
    eps_hat = EpsFromV(Oracle(v_hat), s)(xt, t)
    x0_hat = x0_from_eps(s, xt, t, eps_hat)
    err_v = (v_hat - v).square().flatten(1).sum(1)
    err_x0 = (x0_hat - x0).square().flatten(1).sum(1)
    assert torch.allclose(err_v, err_x0 / (1 - s.abar[t]), rtol=1e-9, atol=0)


def test_noise_prediction_returns_the_target_the_network_predicts():
    s = NoiseSchedule.linear(10, 0.01, 0.3)
    x0 = torch.rand(5, 1, 8, 8, generator=_gen(0)) * 2 - 1
    for target in ('eps', 'v'):
        unet = _tiny_unet(T=10, target=target)
        torch.manual_seed(7)
        pred, got = NoisePrediction(unet, s)(x0)
        torch.manual_seed(7)   # the same draws, made again by hand
        t = torch.randint(0, 10, (5,))
        eps = torch.randn_like(x0)
        want = eps if target == 'eps' else v_target(s, x0, t, eps)
        assert torch.equal(got, want), target
        assert torch.allclose(pred, unet(q_sample(s, x0, t, eps), t), atol=1e-6)
    # the samplers take a v-predicting network once EpsFromV turns it into a noise predictor
    wrapped = EpsFromV(_tiny_unet(T=10, target='v'), s)
    assert ddim_sample(wrapped, s, 3, 2, size=8)[0].shape == (3, 1, 8, 8)


def test_closed_form_forward_process_matches_noising_step_by_step():
    # x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps_t applied t times, against
    # q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I): means and variances of many draws.
    s, n = NoiseSchedule.scaled(30), 200_000
    x0 = torch.tensor([-1., -0.3, 0.5, 1.], dtype=torch.float64)
    g = _gen(0)
    for t in [0, 4, 12, 19]:
        x = x0.expand(n, 4).clone()
        for k in range(t + 1):
            x = s.alpha[k].sqrt() * x + s.beta[k].sqrt() * torch.randn(n, 4, generator=g,
                                                                        dtype=torch.float64)
        direct = q_sample(s, x0.expand(n, 4), torch.full((n,), t),
                          torch.randn(n, 4, generator=g, dtype=torch.float64))
        mean, var = s.abar[t].sqrt() * x0, 1 - s.abar[t]
        for draws in (x, direct):   # within 5 standard errors of a mean of n draws
            assert ((draws.mean(0) - mean).abs() <= 5 * (var / n).sqrt()).all(), t
            assert torch.allclose(draws.var(0), var.expand(4), rtol=0.02, atol=0)


def test_posterior_mean_is_the_joint_gaussians_conditional_mean():
    # With x_0 fixed, (x_{t-1}, x_t) is jointly Gaussian: x_{t-1} = a x_0 + sqrt(1 - abar_{t-1}) e,
    # x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) e'. E[x_{t-1} | x_t] = m1 + c12 / v2 (x_t - m2).
    s = NoiseSchedule.scaled(30)
    x0 = torch.tensor([0.7, -0.2], dtype=torch.float64)
    xt = torch.tensor([0.1, 1.3], dtype=torch.float64)
    for t in [1, 5, 29]:
        ap, al, b = s.abar[t - 1], s.alpha[t], s.beta[t]
        m1, v1 = ap.sqrt() * x0, 1 - ap
        m2, v2, c12 = al.sqrt() * m1, al * v1 + b, al.sqrt() * v1
        want = m1 + c12 / v2 * (xt - m2)
        got = posterior_mean(s, xt[:, None], torch.full((2,), t), x0[:, None])[:, 0]
        assert torch.allclose(got, want, rtol=1e-12, atol=1e-14)
        assert (v1 - c12**2 / v2).item() == pytest.approx(  # the posterior's variance, beta-tilde
            ((1 - s.abar_prev[t]) / (1 - s.abar[t]) * s.beta[t]).item(), rel=1e-12)


def test_ddpm_step_is_algorithm_2():
    # x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t) + sigma_t z, sigma^2 = beta
    s = NoiseSchedule.scaled(40)
    x, eps, z = (torch.randn(3, 1, 4, 4, generator=_gen(i), dtype=torch.float64) for i in range(3))
    for t in [0, 1, 17, 39]:
        got = ddpm_step(s, x, t, eps, z, var='beta')
        want = (x - s.beta[t] / (1 - s.abar[t]).sqrt() * eps) / s.alpha[t].sqrt()
        if t > 0: want = want + s.beta[t].sqrt() * z
        assert torch.allclose(got, want, rtol=1e-12, atol=1e-13)


def test_ddim_with_eta_1_over_every_step_is_ddpm_with_the_posterior_variance():
    s = NoiseSchedule.scaled(25)
    x, eps, z = (torch.randn(5, 1, 4, 4, generator=_gen(i), dtype=torch.float64) for i in range(3))
    for t in [0, 3, 24]:
        for clip in (False, True):
            a = ddim_step(s, 3 * x, t, t - 1, eps, eta=1., z=z, clip=clip)
            b = ddpm_step(s, 3 * x, t, eps, z, var='tilde', clip=clip)
            assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_ddim_with_eta_0_is_deterministic_and_inverts_q_sample():
    # eta = 0: x_T and the network fix the result whatever the generator draws
    unet, s = _tiny_unet(T=10), NoiseSchedule.linear(10, 0.01, 0.3)
    x_t = torch.randn(4, 1, 4, 4, generator=_gen(0))
    eps = unet(x_t, torch.full((4,), 9))
    a = ddim_step(s, x_t, 9, 4, eps, eta=0., z=torch.randn(x_t.shape, generator=_gen(1)))
    b = ddim_step(s, x_t, 9, 4, eps, eta=0., z=torch.randn(x_t.shape, generator=_gen(2)))
    assert torch.equal(a, b)
    # with the true noise, one DDIM step to t_prev lands on q_sample(x_0, t_prev, the same noise)
    s64 = NoiseSchedule.scaled(50)
    x0, e = (torch.randn(3, 1, 4, 4, generator=_gen(i), dtype=torch.float64) for i in (3, 4))
    xt = q_sample(s64, x0, torch.full((3,), 40), e)
    want = q_sample(s64, x0, torch.full((3,), 12), e)
    assert torch.allclose(ddim_step(s64, xt, 40, 12, e), want, rtol=1e-12, atol=1e-12)
    assert torch.allclose(ddim_step(s64, xt, 40, -1, e), x0, rtol=1e-12, atol=1e-12)
    assert torch.allclose(x0_from_eps(s64, xt, torch.full((3,), 40), e), x0, atol=1e-12)


def test_samplers_shapes_seeds_and_calls():
    unet, s = _tiny_unet(T=10), NoiseSchedule.linear(10, 0.01, 0.3)
    calls = []
    unet.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    x, kept = ddim_sample(unet.eval(), s, 6, 5, seed=3, bs=4, keep=(9, 0), size=8)
    assert x.shape == (6, 1, 8, 8) and set(kept) == {9, 0} and kept[9][0].shape[0] == 4
    assert calls == [4] * 5 + [2] * 5   # one call per step and batch
    assert torch.equal(x, ddim_sample(unet, s, 6, 5, seed=3, bs=4, size=8)[0])
    assert not torch.equal(x, ddim_sample(unet, s, 6, 5, seed=4, bs=4, size=8)[0])
    calls.clear()
    y, _ = ddpm_sample(unet, s, 3, seed=0, size=12)
    assert len(calls) == 10 and y.shape == (3, 1, 12, 12)
    assert ddim_steps(10, 5) == [9, 7, 4, 2, 0] and ddim_steps(100, 100) == list(range(99, -1, -1))


def test_unet_output_shape_and_time_embedding():
    unet = _tiny_unet(T=10)
    x = torch.randn(3, 1, 8, 12, generator=_gen(0))
    t = torch.tensor([0, 4, 9])
    out = unet(x, t)
    assert out.shape == x.shape
    # each image is denoised with its own step: a batch equals its images one by one
    for i in range(3): assert torch.allclose(unet(x[i:i+1], t[i:i+1]), out[i:i+1], atol=1e-5)
    # the output depends on t, and only through the embedding: equal embeddings, equal outputs
    assert not torch.allclose(unet(x, torch.tensor([5, 5, 5])), unet(x, torch.tensor([6, 6, 6])))
    with torch.no_grad(): unet.emb.mlp[-1].weight.zero_()
    assert torch.allclose(unet(x, torch.tensor([5, 5, 5])), unet(x, torch.tensor([6, 6, 6])))
    # a fresh U-Net predicts zero noise: its last convolution starts at zero
    assert torch.equal(UNet((4, 8), n_emb=8, groups=2, T=10)(x, t), torch.zeros_like(x))


def test_training_pieces_loss_and_ema():
    unet, s = _tiny_unet(T=10), NoiseSchedule.linear(10, 0.01, 0.3)
    pred, eps = NoisePrediction(unet, s)(torch.rand(5, 1, 8, 8) * 2 - 1)
    assert pred.shape == eps.shape == (5, 1, 8, 8)
    assert eps_mse((pred, eps), None).item() == pytest.approx(((pred - eps)**2).mean().item())
    cb = EMACallback(0.75)
    model = torch.nn.Linear(2, 1)
    cb.set_runner(SimpleNamespace(model=model))   # a runner holding only the model
    cb.begin_fit()
    old = model.weight.detach().clone()
    with torch.no_grad(): model.weight.add_(1.)
    cb.after_step()
    assert torch.allclose(cb.ema.weight, 0.75 * old + 0.25 * (old + 1))
    x = torch.rand(2, 1, 4, 4)
    assert torch.allclose(to_unit(to_pm1(x)), x)
    assert to_unit(torch.tensor([-3., 3.])).tolist() == [0, 1]


def test_bad_input_gets_clear_errors():
    unet, s = _tiny_unet(T=10), NoiseSchedule.linear(10, 0.01, 0.3)
    v_unet = _tiny_unet(T=10, target='v')
    x, ts = torch.randn(2, 1, 8, 8), torch.tensor([1, 2])
    cases = [
        (lambda: unet(x, torch.tensor([3, 10])), r'UNet: step indices must be in 0\.\.9'),
        (lambda: unet(x, torch.tensor([-1, 0])), r'UNet: step indices must be in 0\.\.9'),
        (lambda: unet(x, torch.tensor([1., 2.])), r'integer tensor of shape \(2,\)'),
        (lambda: unet(x, torch.tensor([1])), r'integer tensor of shape \(2,\)'),
        (lambda: unet(x[0], torch.tensor([1])), r'UNet: x must be a batch \(N, 1, H, W\)'),
        (lambda: unet(torch.randn(2, 1, 7, 8), ts), 'multiples of 2, got \\(2, 1, 7, 8\\)'),
        (lambda: q_sample(s, x, ts, x[..., :4]), r'q_sample: eps \(2, 1, 8, 4\)'),
        (lambda: q_sample(s, x, torch.tensor([1, 12]), x), 'q_sample: step indices'),
        (lambda: ddpm_step(s, x, 10, x, x), r'ddpm_step: t must be an int step index in 0\.\.9'),
        (lambda: ddpm_step(s, x, 3, x, x, var='x'), "var must be 'beta' or 'tilde'"),
        (lambda: ddim_step(s, x, 4, 4, x), r'ddim_step: t_prev must be an int in -1\.\.3'),
        (lambda: ddim_steps(10, 11), r'n_steps must be an int in 1\.\.T = 10'),
        (lambda: NoisePrediction(unet, NoiseSchedule.linear(20)), 'T = 10 steps, the schedule'),
        (lambda: ddim_sample(unet, NoiseSchedule.linear(20), 2, 2), 'the schedule has 20'),
        (lambda: NoiseSchedule.linear(1), 'T must be an integer >= 2'),
        (lambda: NoiseSchedule.linear(2.5), 'T must be an integer >= 2'),
        (lambda: NoiseSchedule.cosine(1), r'cosine: T must be an integer >= 2'),
        (lambda: UNet((4, 8), groups=2, target='x0'), "UNet: target must be 'eps' or 'v', got"),
        (lambda: EpsFromV(unet, s), "EpsFromV: the U-Net must predict v, it predicts 'eps'"),
        (lambda: ddpm_sample(v_unet, s, 2), r"sample_loop: the network predicts 'v'.*EpsFromV"),
        (lambda: ddim_sample(v_unet, s, 2, 2), r"sample_loop: the network predicts 'v'"),
        (lambda: EpsFromV(v_unet, NoiseSchedule.linear(20)), 'EpsFromV: the U-Net takes T = 10'),
        (lambda: ddpm_schedule(dict(schedule='sigmoid', T=10)), "schedule must be 'cosine' or"),
        (lambda: NoiseSchedule([0.1]), r'1-d with T >= 2 steps, got shape \(1,\)'),
        (lambda: NoiseSchedule.linear(10, 0.1, 1.5), r'every beta must be in \(0, 1\)'),
        (lambda: EMACallback(1.), r'decay must be in \[0, 1\)'),
        (lambda: eps_mse(x, x), 'eps_mse: expects'),
    ]
    for f, pattern in cases:
        with pytest.raises(ValueError, match=pattern): f()


def test_saved_unet_round_trip_and_settings_check(tmp_path):
    unet = ddpm_unet_from(DDPM_SETTINGS)
    path = save_with_meta(unet, tmp_path/'u.pth', dict(settings=DDPM_SETTINGS, results={}))
    loaded, meta = load_ddpm(DDPM_SETTINGS, path)
    for a, b in zip(unet.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match='load_ddpm: .* was made with settings'):
        load_ddpm(dict(DDPM_SETTINGS, T=50), path)
