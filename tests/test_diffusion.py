"""Tests of helpers.diffusion against independent oracles: the DDPM/DDIM formulas computed
in numpy, exact epsilon-predictors of a point and of a Gaussian (and the exact linear
recursion they give), autodiff, and the on-disk cache's failure modes."""

import math

import numpy as np
import pytest
import torch

from helpers._checks import ParameterError
from helpers.diffusion import (CondUNet, NoiseSchedule, ddim_sample, ddpm_sample, gaussian_eps,
                               load_cached, respaced_timesteps, train_denoiser)

Z = 4.5  # two-sided normal band: false alarm about 7e-6 per comparison


def gen(seed):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------ schedules


def test_linear_schedule_matches_the_ddpm_formula():
    s = NoiseSchedule(1000, "linear")
    betas = np.linspace(1e-4, 0.02, 1000)
    np.testing.assert_allclose(s.betas.numpy(), betas, rtol=1e-12)
    np.testing.assert_allclose(s.alphas_cumprod.numpy(), np.cumprod(1 - betas), rtol=1e-10)
    a = s.alphas_cumprod
    assert ((s.betas > 0) & (s.betas < 1)).all()
    assert (a[1:] < a[:-1]).all()
    assert math.isclose(float(a[0]), 1 - 1e-4, rel_tol=1e-12) and float(a[-1]) < 1e-4
    snr = a / (1 - a)
    assert (snr[1:] < snr[:-1]).all()


def test_linear_schedule_rescales_with_T_as_adm():
    s = NoiseSchedule(100, "linear")
    np.testing.assert_allclose(s.betas.numpy(), np.linspace(1e-3, 0.2, 100), rtol=1e-12)


def test_cosine_schedule_matches_improved_ddpm_formula():
    T, sft = 1000, 0.008
    f = lambda t: math.cos((t / T + sft) / (1 + sft) * math.pi / 2) ** 2  # noqa: E731
    betas = np.array([min(1 - f(i + 1) / f(i), 0.999) for i in range(T)])
    s = NoiseSchedule(T, "cosine")
    np.testing.assert_allclose(s.betas.numpy(), betas, rtol=1e-9)
    np.testing.assert_allclose(s.alphas_cumprod.numpy(), np.cumprod(1 - betas), rtol=1e-9)
    assert (s.alphas_cumprod[1:] < s.alphas_cumprod[:-1]).all()


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_schedule_matches_diffusers(kind):
    diffusers = pytest.importorskip("diffusers")
    name = "linear" if kind == "linear" else "squaredcos_cap_v2"
    for cls in (diffusers.DDPMScheduler, diffusers.DDIMScheduler):
        ref = cls(num_train_timesteps=1000, beta_schedule=name).alphas_cumprod.double().numpy()
        np.testing.assert_allclose(NoiseSchedule(1000, kind).alphas_cumprod.numpy(), ref, rtol=1e-5)


def test_respacing_keeps_both_ends():
    t = respaced_timesteps(1000, 10)
    assert t[0] == 0 and t[-1] == 999 and len(t) == 10 and (t[1:] > t[:-1]).all()
    assert torch.equal(respaced_timesteps(50, None), torch.arange(50))


def test_bad_schedule_arguments():
    with pytest.raises(ParameterError):
        NoiseSchedule(1000, "quadratic")
    with pytest.raises(ParameterError):
        NoiseSchedule(1)
    with pytest.raises(ParameterError):
        respaced_timesteps(100, 101)


# ------------------------------------------------------------------ q_sample


@pytest.mark.parametrize("t", [0, 250, 999])
def test_q_sample_moments(t):
    s = NoiseSchedule()
    n = 20_000
    x0 = torch.full((n, 1), 0.7, dtype=torch.float64)
    xt = s.q_sample(x0, t, torch.randn(n, 1, generator=gen(t), dtype=torch.float64))
    a = float(s.alphas_cumprod[t])
    mean, var = math.sqrt(a) * 0.7, 1 - a
    assert abs(float(xt.mean()) - mean) < Z * math.sqrt(var / n)
    assert abs(float(xt.var()) - var) < Z * var * math.sqrt(2 / (n - 1))


def test_q_sample_errors_and_types():
    s = NoiseSchedule()
    x = torch.zeros(3, 2)
    with pytest.raises(ParameterError):
        s.q_sample(x, 1000, x)
    with pytest.raises(ParameterError):
        s.q_sample(x, torch.tensor([0.5, 1.0, 2.0]), x)
    with pytest.raises(ParameterError):
        s.q_sample(x, 3, torch.zeros(3, 3))
    with pytest.raises(ParameterError):
        s.q_sample(x.numpy(), 3, x)
    out = s.q_sample(x.double(), torch.tensor([1, 2, 3]), x.double())
    assert out.dtype == torch.float64 and out.device == x.device


# ------------------------------------------------------------------ samplers against exact denoisers


@pytest.mark.parametrize("steps", [None, 50, 7])
@pytest.mark.parametrize("clip", [None, (-1.0, 1.0)])
def test_ddim_returns_the_point(steps, clip):
    s = NoiseSchedule()
    point = torch.rand(1, 4, 4, generator=gen(3), dtype=torch.float64) * 1.6 - 0.8
    x = ddim_sample(gaussian_eps(s, point), s, (16, 1, 4, 4), steps=steps, clip=clip,
                    generator=gen(0), dtype=torch.float64)
    assert float((x - point).abs().max()) < 1e-4


def _ddpm_exact_moments(s, taus, m, v, variance):
    """Mean and variance of DDPM's output for N(m, v) data and the exact linear eps-model:
    every step is affine in x plus independent noise, so the moments follow exactly."""
    abar = s.alphas_cumprod.numpy()
    mu, var = 0.0, 1.0
    for i in range(len(taus) - 1, -1, -1):
        a = abar[taus[i]]
        a_prev = abar[taus[i - 1]] if i > 0 else 1.0
        # eps = c (x - sqrt(a) m), c = sqrt(1-a)/(a v + 1 - a); x0 = (x - sqrt(1-a) eps)/sqrt(a)
        c = math.sqrt(1 - a) / (a * v + 1 - a)
        gx0, hx0 = (1 - math.sqrt(1 - a) * c) / math.sqrt(a), math.sqrt(1 - a) * c * m
        if i == 0:
            return gx0 * mu + hx0, gx0**2 * var
        beta = 1 - a / a_prev
        c1, c2 = math.sqrt(a_prev) * beta / (1 - a), math.sqrt(1 - beta) * (1 - a_prev) / (1 - a)
        g, h = c1 * gx0 + c2, c1 * hx0
        noise = beta * (1 - a_prev) / (1 - a) if variance == "small" else beta
        mu, var = g * mu + h, g**2 * var + noise


@pytest.mark.parametrize("steps,variance,disc", [(None, "small", 0.02), (100, "large", 0.05)])
def test_ddpm_matches_a_gaussian(steps, variance, disc):
    s = NoiseSchedule()
    m, v = 0.3, 0.25
    n = 3000
    x = ddpm_sample(gaussian_eps(s, torch.full((1, 2, 2), m), var=v), s, (n, 1, 2, 2), steps=steps,
                    clip=None, variance=variance, generator=gen(1), dtype=torch.float64)
    x = x.flatten()  # the 4 pixels are independent: 4n draws
    N = x.numel()
    taus = respaced_timesteps(1000, steps).tolist()
    em, ev = _ddpm_exact_moments(s, taus, m, v, variance)
    # the sampler equals its exact recursion (CLT bands)
    assert abs(float(x.mean()) - em) < Z * math.sqrt(ev / N)
    assert abs(float(x.var()) - ev) < Z * ev * math.sqrt(2 / (N - 1))
    # and the recursion is the data distribution up to the discretisation (exact mean;
    # variance within `disc`: 2 % on 1000 steps, 5 % on 100), so the samples match the
    # Gaussian's mean and variance
    assert abs(em - m) < 1e-4 and abs(ev - v) < disc * v
    assert abs(float(x.mean()) - m) < Z * math.sqrt(v / N)
    assert abs(float(x.var()) - v) < Z * v * math.sqrt(2 / (N - 1)) + disc * v


@pytest.mark.parametrize("sampler,kw", [(ddim_sample, {"eta": 0.0}), (ddim_sample, {"eta": 1.0}),
                                        (ddpm_sample, {})])
def test_seeded_samplers_are_deterministic(sampler, kw):
    s = NoiseSchedule(200)
    f = gaussian_eps(s, torch.zeros(1, 3, 3), var=0.5)
    a = sampler(f, s, (5, 1, 3, 3), steps=20, generator=gen(7), **kw)
    b = sampler(f, s, (5, 1, 3, 3), steps=20, generator=gen(7), **kw)
    c = sampler(f, s, (5, 1, 3, 3), steps=20, generator=gen(8), **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.abs().max()) <= 1.0  # clipped x0 at the last step


def test_sampler_argument_errors():
    s = NoiseSchedule(100)
    f = gaussian_eps(s, torch.zeros(1, 2, 2))
    with pytest.raises(ParameterError):
        ddim_sample(f, s, (2, 1, 2, 2), eta=1.5)
    with pytest.raises(ParameterError):
        ddim_sample("model", s, (2, 1, 2, 2))
    with pytest.raises(ParameterError):
        ddpm_sample(f, s, (2, 1, 2, 2), clip=(1.0, -1.0))
    with pytest.raises(ParameterError):
        ddpm_sample(f, s, (2, 1, 2, 2), cond=torch.zeros(3, 4))


# ------------------------------------------------------------------ the network and training


def test_unet_is_zero_at_init_and_learns_to_use_the_condition():
    torch.manual_seed(0)
    net = CondUNet(image_size=8, width=8, cond_dim=3)
    x, t, h = torch.randn(6, 1, 8, 8), torch.randint(0, 1000, (6,)), torch.randn(6, 3)
    assert torch.equal(net(x, t, h), torch.zeros_like(x))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    grads = []
    for _ in range(3):  # zero-initialised outputs: the condition's map gets gradient from step 3
        opt.zero_grad()
        loss = ((net(x, t, h) - x) ** 2).mean()
        loss.backward()
        grads.append(float(net.cond.weight.grad.abs().sum()))
        opt.step()
    assert grads[0] == 0 and grads[2] > 0
    with torch.no_grad():
        assert not torch.allclose(net(x, t, h), net(x, t, torch.randn(6, 3)))


def test_unet_matches_autodiff_gradient_of_its_loss_by_finite_differences():
    torch.manual_seed(1)
    net = CondUNet(image_size=8, width=8, cond_dim=2).double()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x, t, h = torch.randn(2, 1, 8, 8, dtype=torch.float64), torch.tensor([3, 500]), torch.randn(2, 2).double()
    assert torch.autograd.gradcheck(lambda c: net(x, t, c).sum(), (h.requires_grad_(),))


def test_unet_shapes_and_errors():
    net = CondUNet(image_size=16, width=8, ch_mult=(1, 2, 2), cond_dim=None)
    assert net(torch.zeros(2, 1, 16, 16), 5).shape == (2, 1, 16, 16)
    with pytest.raises(ParameterError):
        CondUNet(image_size=6, ch_mult=(1, 2, 2))
    with pytest.raises(ParameterError):
        CondUNet(width=12, groups=8)
    with pytest.raises(ParameterError):
        CondUNet(cond_dim=3, width=8)(torch.zeros(2, 1, 8, 8), 1)


def _data(n=64):
    g = gen(5)
    X = (torch.rand(n, 1, 8, 8, generator=g) < 0.3).float() * 2 - 1
    return X, X.flatten(1)[:, :6] + 0.1 * torch.randn(n, 6, generator=g)


def test_loss_decreases_within_a_few_steps():
    X, H = _data()
    _, info = train_denoiser(X, H, steps=150, batch_size=32, width=8, seed=0)
    loss = info["losses"]
    assert np.mean(loss[-20:]) < 0.7 * np.mean(loss[:20])


def test_encoder_stays_frozen_while_the_denoiser_trains():
    from helpers.ssl import Encoder, represent

    enc = Encoder(width=8, backbone_dim=16).eval().requires_grad_(False)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    X, _ = _data(32)
    H = represent(enc, X)
    assert H.grad_fn is None and not H.requires_grad
    train_denoiser(X, H, steps=5, batch_size=16, width=8, seed=0)
    assert not enc.training and not any(p.requires_grad for p in enc.parameters())
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())


def test_training_is_seeded_and_cached(tmp_path):
    X, H = _data(32)
    kw = dict(steps=4, batch_size=8, width=8, seed=3, cache_dir=tmp_path)
    a, ia = train_denoiser(X, H, **kw)
    b, ib = train_denoiser(X, H, **kw)
    assert not ia["cached"] and ib["cached"] and ia["losses"] == ib["losses"]
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    c, _ = train_denoiser(X, H, **{**kw, "cache_dir": None})
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), c.state_dict().values()))
    # another configuration is another key
    _, idd = train_denoiser(X, H, **{**kw, "steps": 5})
    assert not idd["cached"] and idd["key"] != ia["key"]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip"])
def test_a_corrupt_cache_file_is_retrained(tmp_path, damage):
    X, H = _data(32)
    kw = dict(steps=3, batch_size=8, width=8, seed=4, cache_dir=tmp_path)
    a, info = train_denoiser(X, H, **kw)
    file = tmp_path / f"{info['key']}.pt"
    raw = file.read_bytes()
    if damage == "truncate":
        file.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        file.write_bytes(b"not a checkpoint")
    else:
        file.write_bytes(raw[:-10] + bytes(10))
    assert load_cached(tmp_path, info["key"]) is None
    b, ib = train_denoiser(X, H, **kw)
    assert not ib["cached"]
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert load_cached(tmp_path, info["key"]) is not None


def test_sampling_a_trained_model_stays_on_its_device():
    X, H = _data(16)
    net, _ = train_denoiser(X, H, steps=2, batch_size=8, width=8, seed=0)
    s = NoiseSchedule()
    x = ddim_sample(net, s, (4, 1, 8, 8), cond=H[:4], steps=5, generator=gen(0))
    assert x.device == H.device and x.shape == (4, 1, 8, 8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_in_cuda_out():
    s = NoiseSchedule(100)
    f = gaussian_eps(s, torch.zeros(1, 2, 2, device="cuda"))
    x = ddim_sample(f, s, (3, 1, 2, 2), device="cuda", generator=gen(0))
    assert x.device.type == "cuda"
    cpu = ddim_sample(gaussian_eps(s, torch.zeros(1, 2, 2)), s, (3, 1, 2, 2), generator=gen(0))
    assert torch.allclose(x.cpu(), cpu, atol=1e-5)
