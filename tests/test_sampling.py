"""Tests of helpers.sampling (MaGNET / Polarity kernels) against independent oracles.

Oracles: per-sample ``torch.func.jacfwd`` (a Python loop, no vmap) and reverse-mode
``torch.autograd.functional.jacobian`` for Jacobians; ``torch.linalg.svdvals`` in float64 for
singular values and log-volumes; direct ``exp``-and-normalize for weights at moderate values;
closed forms (uniform, one-hot, arc-length fractions) and a chi-square goodness-of-fit test for
resampling. Statistical tests use fixed seeds and thresholds derived from the sampling error,
stated next to each assertion; none is tuned to the seed.
"""

from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from helpers.sampling import (
    UnsupportedLayerError,
    effective_sample_size,
    jacobian,
    log_volume,
    log_volume_from_jacobian,
    log_volume_from_singular_values,
    magnet_weights,
    normalize_log_weights,
    polarity_weights,
    polarity_weights_from_log_volume,
    resample,
    resample_indices,
    singular_values,
    singular_values_from_jacobian,
)
from helpers.zoo import build, generator

pytestmark = pytest.mark.filterwarnings(  # raised inside torch.func's forward-AD setup, not by helpers
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning")

F64_TOL = 1e-10
FAST = settings(max_examples=12, deadline=None, database=None, derandomize=True)
ACTS = {"relu": nn.ReLU, "leaky": lambda: nn.LeakyReLU(0.2), "hardtanh": lambda: nn.Hardtanh(-2, 2),
        "prelu": lambda: nn.PReLU(init=-0.3)}


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def random_mlp(d: int, D: int, width: int, depth: int, act: str, seed: int) -> nn.Module:
    """A float64 CPA generator R^d -> R^D with random weights."""
    torch.manual_seed(seed)
    layers, w = [], d
    for _ in range(depth):
        layers += [nn.Linear(w, width), ACTS[act]()]
        w = width
    return nn.Sequential(*layers, nn.Linear(w, D)).double().eval()


def ref_jacobian(G: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Per-sample forward-mode Jacobians, one sample at a time, flattened to (B, D, d)."""
    rows = [torch.func.jacfwd(lambda zi: G(zi[None])[0])(zi) for zi in z]
    return torch.stack([r.reshape(-1, z[0].numel()) for r in rows])


def rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    assert got.shape == ref.shape, (got.shape, ref.shape)
    scale = ref.abs().max().item()
    assert scale > 0, "reference is identically zero: the comparison would be vacuous"
    return (got - ref).abs().max().item() / scale


def latents(B: int, d: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(B, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@contextlib.contextmanager
def no_warnings():
    """Turn any RuntimeWarning into an error inside the block."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yield


# --------------------------------------------------------------------------------------------
# Jacobians
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("act", sorted(ACTS))
def test_jacobian_matches_jacfwd_on_random_mlps(act):
    G = random_mlp(d=5, D=12, width=16, depth=3, act=act, seed=1)
    z = latents(6, 5)
    J = jacobian(G, z)
    assert J.shape == (6, 12, 5) and J.dtype == torch.float64
    assert rel_err(J, ref_jacobian(G, z)) <= F64_TOL


def test_jacobian_matches_jacfwd_on_zoo_generator():
    G, (d,) = build("generator (conv-T)", seed=3, dtype=torch.float64)  # eval mode, random BN statistics
    z = latents(4, d, seed=1)
    J = jacobian(G, z)
    assert J.shape == (4, 256, d)
    assert rel_err(J, ref_jacobian(G, z)) <= F64_TOL


def test_jacobian_of_plain_zoo_generator_factory():
    G = generator(latent=6, channels=8).double().eval()  # the factory leaves train mode on: switch it off
    z = latents(3, 6)
    assert rel_err(jacobian(G, z), ref_jacobian(G, z)) <= F64_TOL


def test_jacobian_chunks_agree_and_latent_shape_is_flattened():
    G = random_mlp(d=4, D=9, width=12, depth=2, act="leaky", seed=2)
    z = latents(7, 4)
    J = jacobian(G, z)
    assert torch.equal(jacobian(G, z, chunk_size=3), J)
    G4 = nn.Sequential(nn.Flatten(), G)  # a DCGAN-style latent of shape (B, 4, 1, 1)
    assert torch.equal(jacobian(G4, z.reshape(7, 4, 1, 1)), J)


def test_jacobian_float32_keeps_dtype_and_records_no_graph():
    G = random_mlp(d=3, D=6, width=8, depth=2, act="relu", seed=0).float()
    z = latents(4, 3, dtype=torch.float32).requires_grad_()
    J = jacobian(G, z)
    assert J.dtype == torch.float32 and not J.requires_grad
    assert log_volume(G, z.detach()).dtype == torch.float64


def test_non_cpa_generator_needs_autodiff_explicitly():
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(3, 10), nn.Tanh(), nn.Linear(10, 7)).double()
    z = latents(5, 3)
    with pytest.raises(UnsupportedLayerError, match="not supported by the CPA JVP"):
        jacobian(G, z)
    with pytest.raises(UnsupportedLayerError):
        log_volume(G, z)
    J = jacobian(G, z, method="autodiff")
    assert rel_err(J, ref_jacobian(G, z)) <= F64_TOL
    reverse = torch.stack([torch.autograd.functional.jacobian(lambda zi: G(zi[None])[0], zi) for zi in z])
    assert rel_err(J, reverse) <= F64_TOL
    assert torch.allclose(log_volume(G, z, method="autodiff"),
                          torch.linalg.svdvals(reverse).log().sum(1), rtol=0, atol=1e-10)


# --------------------------------------------------------------------------------------------
# Singular values and log-volumes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("solver", ["eigh", "svd"])
def test_log_volume_equals_log_product_of_svdvals(solver):
    G = random_mlp(d=6, D=20, width=24, depth=3, act="leaky", seed=4)
    z = latents(16, 6, seed=2)
    ref_sigma = torch.linalg.svdvals(ref_jacobian(G, z))
    sigma = singular_values(G, z, solver=solver)
    assert sigma.dtype == torch.float64 and sigma.shape == (16, 6)
    assert torch.allclose(sigma, ref_sigma, rtol=1e-9, atol=0)
    with no_warnings():
        lv = log_volume(G, z, solver=solver)
    assert torch.allclose(lv, ref_sigma.log().sum(1), rtol=0, atol=1e-9)
    assert torch.allclose(log_volume_from_jacobian(jacobian(G, z), solver=solver), lv, rtol=0, atol=1e-12)
    assert torch.allclose(log_volume(G, z, solver=solver, chunk_size=5), lv, rtol=0, atol=1e-12)


def test_log_volume_on_zoo_generator_equals_half_logdet():
    G, (d,) = build("generator (conv-T)", seed=0, dtype=torch.float64)
    z = latents(5, d, seed=3)
    J = ref_jacobian(G, z)
    ref = 0.5 * torch.linalg.slogdet(J.mT @ J).logabsdet
    assert torch.allclose(log_volume(G, z), ref, rtol=0, atol=1e-8)


def test_top_k_is_a_prefix_sum_of_descending_logs():
    G = random_mlp(d=6, D=15, width=20, depth=2, act="leaky", seed=5)
    z = latents(10, 6, seed=4)
    ref_log_sigma = torch.linalg.svdvals(ref_jacobian(G, z)).log()
    lvs = torch.stack([log_volume(G, z, top_k=k) for k in range(1, 7)], dim=1)  # (B, 6)
    assert torch.allclose(lvs, ref_log_sigma.cumsum(1), rtol=0, atol=1e-9)
    increments = lvs.diff(dim=1)  # log sigma_2 .. log sigma_d: non-increasing in k
    assert (increments.diff(dim=1) <= 1e-12).all()
    assert torch.equal(log_volume(G, z, top_k=6), log_volume(G, z))
    assert torch.equal(singular_values(G, z, top_k=3), singular_values(G, z)[:, :3])


def test_rank_deficient_generator_gives_minus_inf_and_one_warning():
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(4, 2), nn.LeakyReLU(0.2), nn.Linear(2, 10)).double()  # rank <= 2 < d = 4
    z = latents(3, 4)
    with pytest.warns(RuntimeWarning, match="3 of 3 samples have a rank-deficient Jacobian"):
        lv = log_volume(G, z)
    assert torch.isneginf(lv).all() and not torch.isnan(lv).any()
    with no_warnings():
        lv2 = log_volume(G, z, top_k=2)
    assert torch.isfinite(lv2).all()
    assert (singular_values(G, z)[:, 2:] == 0).all()


@pytest.mark.parametrize("solver", ["eigh", "svd"])
def test_rank_deficient_jacobian_counts_samples(solver):
    J = latents(4 * 8 * 3, 1, seed=5).reshape(4, 8, 3)
    J[2, :, 1] = 0.0  # sample 2 loses a direction
    with pytest.warns(RuntimeWarning, match="1 of 4 samples"):
        lv = log_volume_from_jacobian(J, solver=solver)
    assert torch.isneginf(lv[2]) and torch.isfinite(lv[[0, 1, 3]]).all()
    ref = torch.linalg.svdvals(J[[0, 1, 3]]).log().sum(1)
    assert torch.allclose(lv[[0, 1, 3]], ref, rtol=0, atol=1e-12)
    with pytest.warns(RuntimeWarning, match="1 of 4 samples"):
        lv_sigma = log_volume_from_singular_values(singular_values_from_jacobian(J, solver=solver))
    assert torch.equal(lv_sigma, lv)


def test_wide_jacobian_has_zero_volume_with_both_solvers():
    J = latents(2 * 3 * 5, 1, seed=8).reshape(2, 3, 5)  # D = 3 < d = 5: rank <= 3
    eigh, svd = (singular_values_from_jacobian(J, solver=s) for s in ("eigh", "svd"))
    assert eigh.shape == svd.shape == (2, 5) and (svd[:, 3:] == 0).all() and (eigh[:, 3:] == 0).all()
    assert torch.allclose(eigh[:, :3], torch.linalg.svdvals(J), rtol=1e-9, atol=0)
    with pytest.warns(RuntimeWarning, match="2 of 2"):
        assert torch.isneginf(log_volume_from_jacobian(J)).all()


def test_float32_jacobian_is_judged_at_float32_resolution():
    J = latents(2 * 6 * 3, 1, seed=6).reshape(2, 6, 3)
    r = latents(2 * 6, 1, seed=7).reshape(2, 6)
    J[:, :, 2] = J[:, :, 0] + 1e-6 * r  # sigma_3 / sigma_1 about 1e-6: resolved in float64, noise in float32
    with no_warnings():
        assert torch.isfinite(log_volume_from_jacobian(J, solver="svd")).all()
    with pytest.warns(RuntimeWarning, match="2 of 2"):
        assert torch.isneginf(log_volume_from_jacobian(J.float(), solver="svd")).all()


def test_linear_generator_has_uniform_magnet_weights():
    torch.manual_seed(1)
    G = nn.Linear(3, 8).double()
    z = latents(50, 3, seed=7)
    lv = log_volume(G, z)
    W = G.weight.detach()
    assert torch.allclose(lv, 0.5 * torch.logdet(W.T @ W).expand(50), rtol=0, atol=1e-12)
    w = magnet_weights(lv, 0.0)
    assert np.allclose(w, 1 / 50, rtol=1e-12, atol=0)


@given(act=st.sampled_from(sorted(ACTS)), d=st.integers(1, 5), extra=st.integers(0, 8),
       width=st.integers(2, 12), depth=st.integers(1, 3), seed=st.integers(0, 10_000))
@FAST
def test_property_jacobian_and_log_volume_match_oracles(act, d, extra, width, depth, seed):
    G = random_mlp(d, d + extra, width, depth, act, seed)
    z = latents(4, d, seed=seed)
    ref = ref_jacobian(G, z)
    J = jacobian(G, z)
    if ref.abs().max() == 0:  # every unit dead: the generator is constant, J = 0
        assert (J == 0).all()
        return
    assert rel_err(J, ref) <= F64_TOL
    ref_sigma = torch.linalg.svdvals(ref)
    ratio = ref_sigma[:, -1] / ref_sigma[:, 0].clamp_min(1e-300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rank-deficient draws are expected here
        lv = log_volume(G, z)
    clear = ratio > 1e-5  # well inside what eigh resolves (about 1e-7 relative here)
    assert torch.allclose(lv[clear], ref_sigma[clear].log().sum(1), rtol=0, atol=1e-8)
    assert torch.isneginf(lv[ratio < 1e-14]).all()  # exactly rank-deficient up to rounding


# --------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------


def test_magnet_weights_with_gaussian_prior_equal_direct_computation():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((40, 3))
    lv = rng.uniform(-3, 3, 40)
    lp = -0.5 * (z**2).sum(1) - 1.5 * math.log(2 * math.pi)
    direct = np.exp(lv - lp) / np.exp(lv - lp).sum()
    assert np.allclose(magnet_weights(lv, lp), direct, rtol=1e-12, atol=0)
    assert np.allclose(magnet_weights(torch.as_tensor(lv), torch.as_tensor(lp)), direct, rtol=1e-12, atol=0)


def test_magnet_gives_zero_weight_to_zero_volume():
    w = magnet_weights(np.array([0.0, -np.inf, 1.0]), 0.0)
    assert w[1] == 0 and np.isclose(w.sum(), 1) and np.isclose(w[2] / w[0], math.e)


@pytest.mark.parametrize("rho", [-2.0, -0.5, 0.7, 3.0])
@pytest.mark.parametrize("top_k", [None, 2])
def test_polarity_weights_equal_direct_computation(rho, top_k):
    sigma = np.sort(np.random.default_rng(1).uniform(0.3, 3.0, (30, 4)), axis=1)[:, ::-1]
    k = 4 if top_k is None else top_k
    direct = np.prod(sigma[:, :k] ** rho, axis=1)
    direct /= direct.sum()
    assert np.allclose(polarity_weights(sigma, rho, top_k), direct, rtol=1e-12, atol=0)
    assert np.allclose(polarity_weights(torch.as_tensor(sigma[:, ::-1].copy()), rho, top_k), direct,
                       rtol=1e-12, atol=0)  # any column order: the top_k largest are used


@pytest.mark.parametrize("rho", [-50.0, 50.0])
def test_polarity_extreme_rho_and_log_volumes_stay_finite(rho):
    lv = np.random.default_rng(2).uniform(-1e4, 1e4, 200)
    lv[:2] = [-1e4, 1e4]
    w = polarity_weights_from_log_volume(lv, rho)
    assert np.isfinite(w).all() and (w >= 0).all() and math.isclose(w.sum(), 1.0, rel_tol=1e-12)
    assert w[np.argmax(rho * lv)] == 1.0  # every other weight is below e^-745 relative
    d = 200  # the same spread from singular values: sigma = e^{lv/d}, d equal columns
    sigma = np.repeat(np.exp(lv / d)[:, None], d, axis=1)
    w_sigma = polarity_weights(sigma, rho)
    assert np.isfinite(w_sigma).all() and math.isclose(w_sigma.sum(), 1.0, rel_tol=1e-12)
    assert np.argmax(w_sigma) == np.argmax(w)


def test_rho_zero_is_uniform_even_with_zero_volumes():
    lv = np.array([1e4, -3.0, -np.inf, 0.0])
    assert np.array_equal(polarity_weights_from_log_volume(lv, 0), np.full(4, 0.25))
    sigma = np.array([[2.0, 0.0], [1.0, 1.0]])
    with no_warnings():  # at rho = 0 a zero volume is not worth a warning
        assert np.array_equal(polarity_weights(sigma, 0.0), [0.5, 0.5])
    with pytest.warns(RuntimeWarning, match="1 of 2"):
        assert np.array_equal(polarity_weights(sigma, 1.0), [0.0, 1.0])


@given(lv=st.lists(st.floats(-500, 500), min_size=1, max_size=30), shift=st.floats(-1e3, 1e3),
       rho=st.floats(-5, 5))
@FAST
def test_property_shifting_log_volumes_changes_nothing(lv, shift, rho):
    lv = np.array(lv)
    w = polarity_weights_from_log_volume(lv, rho)
    assert np.allclose(polarity_weights_from_log_volume(lv + shift, rho), w, rtol=0, atol=1e-9)
    assert np.allclose(magnet_weights(lv + shift, 0.0), magnet_weights(lv, 0.0), rtol=0, atol=1e-9)
    assert np.allclose(magnet_weights(lv, shift), magnet_weights(lv, 0.0), rtol=0, atol=1e-9)
    assert math.isclose(w.sum(), 1.0, rel_tol=1e-12)


def test_normalize_log_weights_is_softmax():
    lw = np.array([0.5, -1.0, 2.0, -np.inf])
    expected = np.exp(lw) / np.exp(lw).sum()
    assert np.allclose(normalize_log_weights(lw), expected, rtol=1e-14, atol=0)


# --------------------------------------------------------------------------------------------
# Effective sample size and resampling
# --------------------------------------------------------------------------------------------


def test_effective_sample_size():
    assert math.isclose(effective_sample_size(np.ones(37)), 37.0, rel_tol=1e-12)
    assert effective_sample_size(np.eye(9)[4]) == 1.0
    assert math.isclose(effective_sample_size([1.0, 1.0, 2.0]), 1 / 0.375, rel_tol=1e-12)
    assert math.isclose(effective_sample_size(torch.tensor([3.0, 3.0, 6.0])), 1 / 0.375, rel_tol=1e-6)


def test_resample_without_replacement_is_distinct_and_honours_zero_weights():
    w = np.array([0.0, 1.0, 5.0, 0.0, 2.0, 0.5, 0.0, 3.0])
    nonzero = set(np.flatnonzero(w))
    for seed in range(20):
        idx = resample_indices(w, 3, replace=False, seed=seed)
        assert len(set(idx)) == 3 and set(idx) <= nonzero
    assert set(resample_indices(w, 5, replace=False, seed=0)) == nonzero  # n = every non-zero weight
    idx = resample_indices(w, 2000, replace=True, seed=0)
    assert set(idx) <= nonzero


@pytest.mark.parametrize("kind", ["weights", "rho=0"])
def test_resample_with_replacement_matches_weights_chi_square(kind):
    if kind == "weights":
        p = np.array([0.05, 0.1, 0.2, 0.3, 0.15, 0.1, 0.05, 0.05])
    else:  # polarity at rho = 0 must reproduce the proposals (uniform over indices)
        p = polarity_weights_from_log_volume(np.random.default_rng(3).normal(size=8), 0.0)
    n = 20_000
    counts = np.bincount(resample_indices(p, n, replace=True, seed=12345), minlength=p.size)
    # p > 1e-3 under H0 fails 1 time in 1000 by chance; the seed is fixed, not searched
    assert chisquare(counts, n * p).pvalue > 1e-3


def test_resample_returns_rows_of_z_in_its_type_and_is_reproducible():
    w = np.random.default_rng(4).uniform(size=30)
    z_np = np.arange(60.0).reshape(30, 2)
    for replace in (False, True):
        idx = resample_indices(w, 10, replace=replace, seed=7)
        assert isinstance(idx, np.ndarray) and idx.dtype == np.int64
        assert np.array_equal(resample(z_np, w, 10, replace=replace, seed=7), z_np[idx])
        z_t = torch.as_tensor(z_np)
        out, out_idx = resample(z_t, torch.as_tensor(w), 10, replace=replace, seed=7, return_indices=True)
        assert isinstance(out, torch.Tensor) and torch.equal(out, z_t[idx])
        assert isinstance(out_idx, torch.Tensor) and out_idx.tolist() == idx.tolist()
        idx_t = resample_indices(torch.as_tensor(w, dtype=torch.float32), 10, replace=replace, seed=7)
        assert isinstance(idx_t, torch.Tensor) and idx_t.dtype == torch.int64 and idx_t.tolist() == idx.tolist()
        assert np.array_equal(resample_indices(w, 10, replace=replace, seed=np.random.default_rng(7)), idx)
        np.random.seed(0)
        a = resample_indices(w, 10, replace=replace)
        np.random.seed(0)
        assert np.array_equal(resample_indices(w, 10, replace=replace), a)  # seed=None: numpy's global state
        np.random.seed(0)
        assert np.array_equal(resample(z_np, w, 10, replace=replace), z_np[a])


# --------------------------------------------------------------------------------------------
# End to end: MaGNET makes a two-piece curve uniform in arc length
# --------------------------------------------------------------------------------------------


def two_piece_curve() -> nn.Module:
    """G(z) = (3, 4) * leaky(z) with slope 1/4 for z < 0: speed 5 on z > 0 and 1.25 on z < 0."""
    G = nn.Sequential(nn.Linear(1, 1), nn.LeakyReLU(0.25), nn.Linear(1, 2)).double()
    with torch.no_grad():
        G[0].weight.fill_(1.0), G[0].bias.zero_()
        G[2].weight.copy_(torch.tensor([[3.0], [4.0]])), G[2].bias.fill_(0.7)
    return G


def arc_fractions(z: np.ndarray) -> np.ndarray:
    """Fractions of latents in the bins [-1, -.5), [-.5, 0), [0, .5), [.5, 1]."""
    return np.histogram(z, bins=[-1.0, -0.5, 0.0, 0.5, 1.0])[0] / z.size


@pytest.mark.parametrize("proposal", ["uniform", "gaussian"])
def test_magnet_is_uniform_in_arc_length_on_a_two_piece_curve(proposal):
    # Over z in [-1, 1] the arc z > 0 has length 5 and the arc z < 0 has length 1.25, so a
    # uniform sample of the curve puts (0.1, 0.1, 0.4, 0.4) of its points in the four bins.
    target = np.array([0.1, 0.1, 0.4, 0.4])
    rng = np.random.default_rng(8)
    N, M = 40_000, 20_000
    if proposal == "uniform":
        z, lp = rng.uniform(-1, 1, N), 0.0
    else:  # standard normal truncated to [-1, 1]: the constant cancels in the weights
        z = rng.standard_normal(4 * N)
        z = z[np.abs(z) <= 1][:N]
        lp = -0.5 * z**2
    lv = log_volume(two_piece_curve(), torch.as_tensor(z)[:, None])
    assert np.allclose(lv.numpy(), np.where(z > 0, math.log(5.0), math.log(1.25)), rtol=0, atol=1e-12)
    got = arc_fractions(z[resample_indices(magnet_weights(lv, lp), M, replace=True, seed=9)])
    # Per bin: sd <= sqrt(.24 / 20000) = 0.0035 from the draw and below 0.003 from the proposals'
    # weight mass (N = 40000), 0.0046 combined; 0.02 is more than 4 combined sd.
    assert np.abs(got - target).max() < 0.02, got
    if proposal == "gaussian":
        # The official code's weights (vol only, no 1/pi) tilt the output toward z = 0: the bin
        # [0, .5) gets 0.8 * P(0 < z < .5) / P(0 < z < 1) = 0.449 under N(0, 1), 7 sd off 0.4.
        tilted = arc_fractions(z[resample_indices(magnet_weights(lv, 0.0), M, replace=True, seed=9)])
        assert abs(tilted[2] - 0.449) < 0.02 and abs(tilted[2] - 0.4) > 0.03, tilted


# --------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------


def test_bad_generator_calls_raise():
    G = random_mlp(2, 4, 4, 1, "relu", 0)
    z = latents(3, 2)
    with pytest.raises(ValueError, match="method must be one of"):
        jacobian(G, z, method="jacrev")
    with pytest.raises(ValueError, match="chunk_size must be None or a positive int"):
        jacobian(G, z, chunk_size=0)
    with pytest.raises(ValueError, match=r"z must have shape \(B, d\)"):
        jacobian(G, z[0])
    with pytest.raises(TypeError, match="floating-point"):
        jacobian(G, z.long())
    with pytest.raises(TypeError, match="torch.nn.Module"):
        jacobian(lambda x: x, z)
    with pytest.raises(ValueError, match=r"top_k must be None or an int in \[1, 2\]"):
        log_volume(G, z, top_k=3)
    with pytest.raises(ValueError, match="solver must be one of"):
        singular_values(G, z, solver="qr")


def test_bad_jacobians_and_singular_values_raise():
    J = latents(24, 1).reshape(2, 4, 3)
    with pytest.raises(ValueError, match=r"J must have shape \(B, D, d\)"):
        log_volume_from_jacobian(J[0])
    bad = J.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        log_volume_from_jacobian(bad)
    with pytest.raises(ValueError, match=r"top_k must be None or an int in \[1, 3\]"):
        log_volume_from_jacobian(J, top_k=0)
    with pytest.raises(ValueError, match="pass solver='svd'"):
        singular_values_from_jacobian(J, rtol=1e-12)
    assert singular_values_from_jacobian(J, solver="svd", rtol=1e-12).shape == (2, 3)
    with pytest.raises(ValueError, match="finite and non-negative"):
        log_volume_from_singular_values(np.array([[1.0, -0.5]]))
    with pytest.raises(ValueError, match=r"shape \(B, d\)"):
        log_volume_from_singular_values(np.ones(3))


def test_bad_weights_raise():
    with pytest.raises(ValueError, match="NaN"):
        normalize_log_weights([0.0, float("nan")])
    with pytest.raises(ValueError, match=r"\+inf"):
        normalize_log_weights([0.0, float("inf")])
    with pytest.raises(ValueError, match="every log-weight is -inf"):
        magnet_weights([-np.inf, -np.inf], 0.0)
    with pytest.raises(ValueError, match="log_prior must be a number or have log_volume's shape"):
        magnet_weights(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="log_prior must be finite"):
        magnet_weights(np.zeros(2), [0.0, -np.inf])
    with pytest.raises(ValueError, match="1-D array"):
        magnet_weights(np.zeros((2, 2)), 0.0)
    for rho in (float("nan"), float("inf"), None, "1"):
        with pytest.raises(ValueError, match="rho must be a finite number"):
            polarity_weights_from_log_volume(np.zeros(3), rho)
    with pytest.raises(ValueError, match="weight vol\\^rho is infinite"):
        polarity_weights_from_log_volume([0.0, -np.inf], -1.0)


def test_bad_resampling_raises():
    with pytest.raises(ValueError, match="non-negative"):
        resample_indices([1.0, -0.1], 1, replace=True)
    with pytest.raises(ValueError, match="finite"):
        resample_indices([1.0, float("nan")], 1, replace=True)
    with pytest.raises(ValueError, match="all zero"):
        resample_indices([0.0, 0.0], 1, replace=True)
    with pytest.raises(ValueError, match="all zero"):
        effective_sample_size(np.zeros(4))
    with pytest.raises(ValueError, match="cannot draw n=3 distinct samples: only 2 of 4"):
        resample_indices([1.0, 0.0, 2.0, 0.0], 3, replace=False)
    assert len(resample_indices([1.0, 0.0, 2.0, 0.0], 3, replace=True, seed=0)) == 3
    with pytest.raises(ValueError, match="n must be a positive int"):
        resample_indices([1.0], 0, replace=True)
    with pytest.raises(ValueError, match="seed must be None"):
        resample_indices([1.0], 1, replace=True, seed=-1)
    with pytest.raises(ValueError, match="one row per weight"):
        resample(np.zeros((3, 2)), np.ones(4), 2, replace=True)
    with pytest.raises(ValueError, match="replace must be True"):
        resample_indices([1.0], 1, replace=None)


def test_resample_needs_an_explicit_keyword_replace():
    w = np.ones(12)
    with pytest.raises(TypeError, match="replace"):
        resample_indices(w, 12, seed=0)
    with pytest.raises(TypeError, match="positional"):
        resample_indices(w, 12, False, 0)
    with pytest.raises(TypeError, match="replace"):
        resample(np.arange(12.0), w, 3)
    idx = resample_indices(w, 12, replace=False, seed=0)
    assert sorted(idx.tolist()) == list(range(12))  # every index once without replacement
