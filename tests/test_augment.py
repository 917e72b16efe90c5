"""Tests for helpers.augment against independent oracles: np.roll enumeration, dense matrices,
Gauss-Hermite quadrature, brute-force weighted least squares, and Monte-Carlo within CLT bands."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers._checks import ParameterError
from helpers.augment import (Brightness, Compose, Flip, GaussianShift, Maybe, Shift, augmented_ridge,
                             expected_mse, loss_moments, moments, output_moments, sample, sample_moments,
                             samples_needed, support)

FEW = settings(max_examples=20, deadline=None, database=None, derandomize=True)
TOL = 1e-12
Z_MAX = 4.5          # two-sided false alarm about 7e-6 per CLT check


# ----------------------------------------------------------------------------- oracles


def shifted(x: np.ndarray, dy: int, dx: int, mode: str) -> np.ndarray:
    """y[i, j] = x[i - dy, j - dx], by np.roll (circular) or by explicit slicing (zero fill)."""
    if mode == "circular":
        return np.roll(x, (dy, dx), axis=(0, 1))
    H, W = x.shape
    y = np.zeros_like(x)
    for i in range(H):
        for j in range(W):
            if 0 <= i - dy < H and 0 <= j - dx < W:
                y[i, j] = x[i - dy, j - dx]
    return y


def weighted_moments(p, copies):
    C = np.asarray(copies).reshape(len(p), -1)
    p = np.asarray(p)
    mu = p @ C
    return mu, (C - mu).T @ ((C - mu) * p[:, None])


def enumerate_shift(pmf, x, mode):
    return list(pmf.values()), [shifted(x, dy, dx, mode) for dy, dx in pmf]


def random_pmf(gen, r, k):
    keys = list(itertools.product(range(-r, r + 1), repeat=2))
    chosen = gen.choice(len(keys), size=min(k, len(keys)), replace=False)
    w = gen.random(len(chosen)) + 0.05
    return {keys[i]: float(v) for i, v in zip(chosen, w / w.sum())}


def band_limited_shift(x, ty, tx):
    """Trigonometric interpolation of x at (i - ty, j - tx) on an odd canvas, by the dense DFT matrices."""
    H, W = x.shape

    def kernel(n, t):  # (1/n) sum over centred frequencies k of exp(i 2 pi k (i - t - m) / n)
        k = np.arange(n) - n // 2
        u = np.arange(n)[:, None, None] - t - np.arange(n)[None, :, None]
        return np.exp(2j * np.pi * k * u / n).sum(-1) / n

    return (kernel(H, ty) @ x @ kernel(W, tx).T).real


def gauss_hermite_copies(x, sigma, n=40):
    nodes, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / w.sum()
    p, copies = [], []
    for ty, py in zip(nodes * sigma, w):
        for tx, px in zip(nodes * sigma, w):
            p.append(py * px)
            copies.append(band_limited_shift(x, ty, tx))
    return np.array(p), np.array(copies)


@pytest.fixture(scope="module")
def digit():
    from helpers.data import load_digits_array

    X, _ = load_digits_array()
    return X[0].reshape(8, 8)


# ----------------------------------------------------------------------------- closed forms


@FEW
@given(seed=st.integers(0, 10**6), r=st.integers(0, 3), k=st.integers(1, 20), mode=st.sampled_from(["circular", "zero"]))
def test_enumeration_and_fourier_equal_the_roll_oracle(seed, r, k, mode):
    gen = np.random.default_rng(seed)
    x = gen.random((7, 6))
    pmf = random_pmf(gen, r, k)
    mu_o, S_o = weighted_moments(*enumerate_shift(pmf, x, mode))
    for method in ("enumerate", "fourier", "auto"):
        mu, S = moments(Shift(pmf, mode), x, method=method)
        assert np.abs(mu.ravel() - mu_o).max() < TOL and np.abs(S - S_o).max() < TOL, method


def test_fourier_form_handles_many_shifts_and_wrapping(digit):
    pmf = {(dy, dx): 1 / 81 for dy in range(-4, 5) for dx in range(-4, 5)}   # > 64 points: auto uses Fourier
    big = {(9, -11): 0.5, (0, 0): 0.5}                                           # shifts longer than the image
    for p in (pmf, big):
        mu_o, S_o = weighted_moments(*enumerate_shift(p, digit, "circular"))
        mu, S = moments(Shift(p), digit)
        assert np.abs(mu.ravel() - mu_o).max() < TOL and np.abs(S - S_o).max() < TOL


@FEW
@given(seed=st.integers(0, 10**6), r=st.integers(1, 3))
def test_zero_fill_equals_the_crop_of_a_padded_circular_shift(seed, r):
    gen = np.random.default_rng(seed)
    x = gen.random((6, 5))
    pmf = random_pmf(gen, r, 9)
    mu_z, S_z = moments(Shift(pmf, "zero"), x)
    padded = np.pad(x, r)
    mu_c, S_c = moments(Shift(pmf, "circular"), padded, method="fourier")
    inner = np.zeros(padded.shape, bool)
    inner[r:-r, r:-r] = True
    keep = inner.ravel()
    assert np.abs(mu_z - mu_c[r:-r, r:-r]).max() < TOL
    assert np.abs(S_z - S_c[np.ix_(keep, keep)]).max() < TOL


@FEW
@given(seed=st.integers(0, 10**6), k=st.integers(1, 12), mode=st.sampled_from(["circular", "zero"]))
def test_covariance_is_symmetric_psd_with_rank_at_most_support_minus_one(seed, k, mode):
    gen = np.random.default_rng(seed)
    x = gen.random((6, 6))
    pmf = random_pmf(gen, 2, k)
    _, S = moments(Shift(pmf, mode), x)
    assert np.array_equal(S, S.T) or np.abs(S - S.T).max() < TOL
    ev = np.linalg.eigvalsh(S)
    assert ev.min() > -1e-12
    assert (ev > 1e-10 * max(ev.max(), 1e-300)).sum() <= len(pmf) - 1


@FEW
@given(seed=st.integers(0, 10**6))
def test_circular_shifts_conserve_the_pixel_sum(seed):
    gen = np.random.default_rng(seed)
    x = gen.random((5, 7))
    one = np.ones(x.size)
    for aug in (Shift(random_pmf(gen, 3, 10)), GaussianShift(gen.uniform(0.1, 2.0)),
                Compose(Shift.uniform(1), Flip(0.3), Maybe(GaussianShift(0.5), 0.4))):
        mu, S = moments(aug, x)
        assert abs(mu.sum() - x.sum()) < 1e-12 * x.size
        assert abs(one @ S @ one) < 1e-12 * x.size


def test_uniform_over_the_whole_torus_is_diagonal_in_fourier(digit):
    H, W = digit.shape
    pmf = {(dy, dx): 1 / (H * W) for dy in range(H) for dx in range(W)}
    mu, S = moments(Shift(pmf), digit)
    assert np.allclose(mu, digit.mean(), atol=TOL)
    F = np.kron(np.fft.fft(np.eye(H)), np.fft.fft(np.eye(W))) / math.sqrt(H * W)
    C = F @ S @ F.conj().T
    assert np.abs(C - np.diag(np.diag(C))).max() < 1e-12
    spectrum = np.abs(np.fft.fft2(digit).ravel()) ** 2 / (H * W)
    spectrum[0] = 0.0                                                     # no variance at DC
    assert np.allclose(np.diag(C).real, spectrum, atol=1e-12)


@pytest.mark.parametrize("axis", [0, 1])
def test_flips(digit, axis):
    for p in (0.0, 1.0):
        mu, S = moments(Flip(p, axis=axis), digit)
        assert np.abs(S).max() == 0.0
        assert np.array_equal(mu, np.flip(digit, axis) if p == 1 else digit)
    p = 0.3
    mu, S = moments(Flip(p, axis=axis), digit)
    d = (digit - np.flip(digit, axis)).ravel()
    assert np.abs(S - p * (1 - p) * np.outer(d, d)).max() < TOL
    assert np.linalg.matrix_rank(S) == 1


def test_mixture_formula_equals_enumeration(digit):
    pmf = {(0, 1): 0.3, (1, -1): 0.5, (-2, 0): 0.2}
    for mode in ("circular", "zero"):
        for p in (0.0, 0.35, 1.0):
            p_in, c_in = enumerate_shift(pmf, digit, mode)
            probs = [1 - p] + [p * q for q in p_in]
            mu_o, S_o = weighted_moments(probs, [digit] + c_in)
            # "fourier" goes stage by stage: the mixture through the law of total covariance
            mu, S = moments(Maybe(Shift(pmf, mode), p), digit, method="fourier")
            assert np.abs(mu.ravel() - mu_o).max() < TOL and np.abs(S - S_o).max() < TOL
            mu, S = moments(Maybe(Shift(pmf, mode), p), digit, method="enumerate")
            assert np.abs(mu.ravel() - mu_o).max() < TOL and np.abs(S - S_o).max() < TOL


def test_compositions_apply_left_to_right_and_propagate_covariances(digit):
    pmf = {(0, 2): 0.5, (1, 0): 0.25, (0, 0): 0.25}
    cases = {
        "shift then flip": (Compose(Shift(pmf, "zero"), Flip(0.4)),
                            [(p * q, np.flip(c, 1) if f else c)
                             for p, c in zip(*enumerate_shift(pmf, digit, "zero")) for f, q in ((0, 0.6), (1, 0.4))]),
        "flip then shift": (Compose(Flip(0.4), Shift(pmf, "zero")),
                            [(q * p, shifted(np.flip(digit, 1) if f else digit, dy, dx, "zero"))
                             for f, q in ((0, 0.6), (1, 0.4)) for (dy, dx), p in pmf.items()]),
    }
    results = {}
    for name, (aug, pairs) in cases.items():
        mu_o, S_o = weighted_moments([a for a, _ in pairs], [b for _, b in pairs])
        for method in ("enumerate", "fourier"):
            mu, S = moments(aug, digit, method=method)
            assert np.abs(mu.ravel() - mu_o).max() < TOL and np.abs(S - S_o).max() < TOL, (name, method)
        results[name] = mu_o
    assert np.abs(results["shift then flip"] - results["flip then shift"]).max() > 0.1


def test_brightness_moments_need_only_means_and_variances(digit):
    # Oracle: two-point a and b with the same means and variances, enumerated with the shifts.
    am, av, bm, bv = 1.1, 0.04, -0.2, 0.01
    a_pts = [(0.5, am - math.sqrt(av)), (0.5, am + math.sqrt(av))]
    b_pts = [(0.5, bm - math.sqrt(bv)), (0.5, bm + math.sqrt(bv))]
    pmf = {(0, 1): 0.5, (1, 0): 0.5}
    for aug, order in ((Compose(Shift(pmf), Brightness(am, av, bm, bv)), "shift first"),
                       (Compose(Brightness(am, av, bm, bv), Shift(pmf, "zero")), "brightness first")):
        probs, copies = [], []
        for (pa, a), (pb, b), ((dy, dx), ps) in itertools.product(a_pts, b_pts, pmf.items()):
            probs.append(pa * pb * ps)
            copies.append(a * shifted(digit, dy, dx, "circular") + b if order == "shift first"
                          else shifted(a * digit + b, dy, dx, "zero"))
        mu_o, S_o = weighted_moments(probs, copies)
        mu, S = moments(aug, digit)
        assert np.abs(mu.ravel() - mu_o).max() < TOL and np.abs(S - S_o).max() < TOL, order
    mu, S = moments(Brightness(2.0, 0.0, 0.5, 0.0), digit)
    assert np.abs(mu - (2 * digit + 0.5)).max() < TOL and np.abs(S).max() == 0.0
    p, copies = support(Compose(Brightness(2.0, 0.0, 0.5), Shift(pmf, "zero")), digit)
    assert np.abs(copies[0] - shifted(2 * digit + 0.5, 0, 1, "zero")).max() < TOL


def test_gaussian_shift_equals_gauss_hermite_quadrature():
    gen = np.random.default_rng(3)
    x = gen.random((7, 9))
    for sigma in (0.4, 1.0):
        mu_o, S_o = weighted_moments(*gauss_hermite_copies(x, sigma))
        mu, S = moments(GaussianShift(sigma), x)
        assert np.abs(mu.ravel() - mu_o).max() < 1e-11 and np.abs(S - S_o).max() < 1e-11, sigma


def test_gaussian_shift_vanishes_as_sigma_goes_to_zero(digit):
    x = np.pad(digit, ((0, 1), (0, 1)))
    mu, S = moments(GaussianShift(0.0), x)
    assert np.abs(mu - x).max() < TOL and np.abs(S).max() < TOL
    prev = np.inf
    for sigma in (1e-2, 1e-3, 1e-4):
        mu, S = moments(GaussianShift(sigma), x)
        size = np.abs(S).max()
        assert size < prev / 50 and np.abs(mu - x).max() < 10 * sigma ** 2
        prev = size
    assert prev < 1e-7


def test_gaussian_samples_are_band_limited_shifts():
    gen = np.random.default_rng(5)
    x = gen.random((5, 7))
    draws = sample(GaussianShift(0.8), x, 3, seed=11)
    t = np.random.default_rng(11).normal(0.0, 0.8, size=(3, 2))
    for d, (ty, tx) in zip(draws, t):
        assert np.abs(d - band_limited_shift(x, ty, tx)).max() < 1e-12


# ----------------------------------------------------------------------------- torchvision's pmf


@pytest.mark.parametrize("m", [0.7, 2.8, 3.5, 1.0])
def test_torchvision_pmf_matches_a_million_draws_of_rounded_uniforms(m):
    n = 10**6
    gen = np.random.default_rng(int(m * 10))
    draws = np.round(gen.uniform(-m, m, n)).astype(int)     # ties have probability zero
    pmf = Shift.rounded_uniform_pmf(m)
    values, counts = np.unique(draws, return_counts=True)
    assert set(values.tolist()) <= set(pmf)
    for k, p in pmf.items():
        observed = counts[values == k].sum()
        z = (observed - n * p) / math.sqrt(n * p * (1 - p))
        assert abs(z) < Z_MAX, (k, p, observed / n)
    s = Shift.torchvision((m / 20, m / 10), (10, 20))           # a W = m horizontally, b H = m vertically
    for (dy, dx), p in s.pmf.items():
        assert abs(p - pmf[dy] * pmf[dx]) < 1e-15
    assert s.mode == "zero" and abs(sum(s.pmf.values()) - 1) < 1e-12


def test_torchvision_pmf_hits_half_weight_ends_on_integers():
    assert Shift.rounded_uniform_pmf(2.0) == {-2: 0.125, -1: 0.25, 0: 0.25, 1: 0.25, 2: 0.125}
    assert Shift.rounded_uniform_pmf(0.0) == {0: 1.0}


# ----------------------------------------------------------------------------- Monte-Carlo


def test_sample_draws_the_support(digit):
    pmf = {(0, 1): 0.2, (2, 0): 0.5, (-1, -1): 0.3}
    n = 20000
    draws = sample(Shift(pmf, "zero"), digit, n, seed=4)
    copies = {k: shifted(digit, *k, "zero") for k in pmf}
    which = [next(k for k, c in copies.items() if np.array_equal(d, c)) for d in draws]
    for k, p in pmf.items():
        z = (which.count(k) - n * p) / math.sqrt(n * p * (1 - p))
        assert abs(z) < Z_MAX
    assert np.array_equal(sample(Shift(pmf), digit, 5, seed=4), sample(Shift(pmf), digit, 5, seed=4))


@pytest.mark.parametrize("aug_name", ["shift", "gauss+flip+brightness"])
def test_monte_carlo_error_shrinks_as_k_to_the_minus_half(digit, aug_name):
    """E||mean_K - mu||² = tr S / K exactly, and E||S_K - S||²_F = (E||z||⁴ - ||S||²_F) / K for the
    known-mean estimator: the scaled errors of R repeats average to 1, within CLT bands."""
    x = np.pad(digit, ((0, 1), (0, 1)))
    aug = (Shift.uniform(1) if aug_name == "shift"
           else Compose(GaussianShift(0.6), Flip(0.3), Brightness(1.0, 0.01, 0.0, 0.002)))
    mu, S = moments(aug, x)
    mu = mu.ravel()
    tr, frob2 = np.trace(S), (S * S).sum()
    R = 300
    gen = np.random.default_rng(7)
    for K in (16, 128):
        draws = sample(aug, x, K * R, seed=gen).reshape(R, K, -1)
        mean_err = ((draws.mean(1) - mu) ** 2).sum(1) * K / tr
        z = draws - mu
        cov_err = np.array([((zr.T @ zr / K - S) ** 2).sum() for zr in z])
        fourth = ((z ** 2).sum(-1) ** 2).mean()
        for errs, scale in ((mean_err, 1.0), (cov_err * K, fourth - frob2)):
            ratio = errs / scale
            zscore = (ratio.mean() - 1) / (ratio.std(ddof=1) / math.sqrt(R))
            assert abs(zscore) < Z_MAX, (K, ratio.mean())


def test_samples_needed_formulas(digit):
    aug = Shift.uniform(2)
    mu, S = moments(aug, digit)
    mu = mu.ravel()
    p, copies = support(aug, digit)
    z = copies.reshape(len(p), -1) - mu
    fourth = p @ ((z * z).sum(1) ** 2)
    frob2 = (S * S).sum()
    assert abs(samples_needed(aug, digit, 0.05) - np.trace(S) / (0.05 ** 2 * mu @ mu)) < 1e-9
    assert abs(samples_needed(aug, digit, 0.05, "cov") / ((fourth - frob2) / (0.05 ** 2 * frob2)) - 1) < 1e-12
    # norm-preserving, continuous: E||z||^4 = (tr S)^2 + 4 mu^T S mu, against quadrature
    x = np.random.default_rng(2).random((5, 5))
    pq, cq = gauss_hermite_copies(x, 0.7, n=30)
    mu_q, S_q = weighted_moments(pq, cq)
    zq = cq.reshape(len(pq), -1) - mu_q
    want = ((pq @ ((zq * zq).sum(1) ** 2)) - (S_q ** 2).sum()) / (0.01 ** 2 * (S_q ** 2).sum())
    assert abs(samples_needed(GaussianShift(0.7), x, 0.01, "cov") / want - 1) < 1e-9
    # loss: the variance by enumeration
    gen = np.random.default_rng(1)
    W, c, y = gen.standard_normal((3, 64)), gen.standard_normal(3), gen.standard_normal(3)
    loss = ((y - copies.reshape(len(p), -1) @ W.T - c) ** 2).sum(1)
    E, V = p @ loss, p @ (loss - p @ loss) ** 2
    assert np.allclose(loss_moments(aug, digit, y, W, c), (E, V), rtol=1e-12)
    assert abs(samples_needed(aug, digit, 0.01, "loss", W=W, c=c, y=y) - V / (1e-4 * E * E)) < 1e-6 * V / (1e-4 * E * E)


# ----------------------------------------------------------------------------- linear models


def test_output_moments_and_expected_mse_equal_enumeration(digit):
    gen = np.random.default_rng(8)
    aug = Compose(Shift.uniform(1, "zero"), Flip(0.25))
    W, c = gen.standard_normal((4, 64)), gen.standard_normal(4)
    p, copies = support(aug, digit)
    out = copies.reshape(len(p), -1) @ W.T + c
    m_o, C_o = weighted_moments(p, out)
    m, C = output_moments(aug, digit, W, c)
    assert np.abs(m - m_o).max() < 1e-11 and np.abs(C - C_o).max() < 1e-11
    X = np.stack([digit, digit.T, np.roll(digit, 1, 0)])
    Y = gen.standard_normal((3, 4))
    want = np.mean([p @ ((Y[n] - support(aug, X[n])[1].reshape(len(p), -1) @ W.T - c) ** 2).sum(1)
                    for n in range(3)])
    assert abs(expected_mse(aug, X, Y, W, c) - want) < 1e-11
    assert abs(expected_mse(GaussianShift(0.5), X[:, :7, :7], Y, W[:, :49], c)
               - np.mean([loss_moments(GaussianShift(0.5), X[n, :7, :7], Y[n], W[:, :49], c, seed=0)[0]
                          for n in range(3)])) < 1e-11


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_augmented_ridge_equals_weighted_ridge_on_every_copy(fit_intercept):
    from helpers.data import load_digits_array

    X, y = load_digits_array()
    X = X[:60].reshape(-1, 8, 8)
    Y = np.eye(10)[y[:60]]
    aug = Compose(Shift.uniform(1, "zero"), Maybe(Flip(1.0), 0.2))
    lam = 0.3
    rows, targets, weights = [], [], []
    for n in range(len(X)):
        p, copies = support(aug, X[n])
        rows.append(copies.reshape(len(p), -1))
        targets.append(np.repeat(Y[n][None], len(p), 0))
        weights.append(p)
    A, T, w = np.concatenate(rows), np.concatenate(targets), np.concatenate(weights)
    if fit_intercept:
        A = np.c_[A, np.ones(len(A))]
    pen = lam * np.eye(A.shape[1])
    if fit_intercept:
        pen[-1, -1] = 0.0
    theta = np.linalg.solve(A.T @ (A * w[:, None]) + pen, A.T @ (T * w[:, None]))
    W, c = augmented_ridge(aug, X, Y, lam, fit_intercept=fit_intercept)
    assert np.abs(W - theta[:64].T).max() < 1e-9 * max(1.0, np.abs(theta).max())
    assert np.abs(c - (theta[64] if fit_intercept else 0.0)).max() < 1e-9 * max(1.0, np.abs(theta).max())


# ----------------------------------------------------------------------------- types and errors


def test_torch_in_torch_out(digit):
    x = torch.tensor(digit, dtype=torch.float32)
    mu, S = moments(Shift.uniform(1), x)
    assert isinstance(mu, torch.Tensor) and mu.dtype == torch.float64 and mu.device == x.device
    assert mu.shape == (8, 8) and S.shape == (64, 64)
    ref_mu, ref_S = moments(Shift.uniform(1), digit.astype(np.float32).astype(np.float64))
    assert np.abs(mu.numpy() - ref_mu).max() < TOL
    assert isinstance(sample(Flip(0.5), x, 3, seed=0), torch.Tensor)
    W, c = augmented_ridge(Flip(0.5), x[None], torch.ones(1, 2), 1.0)
    assert isinstance(W, torch.Tensor) and W.shape == (2, 64) and c.shape == (2,)
    p, copies = support(Flip(0.5), x)
    assert isinstance(copies, torch.Tensor) and copies.shape == (2, 8, 8)


@pytest.mark.parametrize("call, match", [
    (lambda: moments(GaussianShift(0.5), np.zeros((8, 9))), "odd height and width.*pad"),
    (lambda: sample(GaussianShift(0.5), np.zeros((9, 8)), 3), "odd height and width"),
    (lambda: Shift({(0, 0): 0.5, (0, 1): 0.6}), "sum to 1.*divide"),
    (lambda: Shift({(0, 0): 1.5, (0, 1): -0.5}), r"in \[0, 1\]|>= 0 and <= 1"),
    (lambda: Shift({(0, 0.5): 1.0}), "integer shifts"),
    (lambda: Shift({(0, 0): 1.0}, mode="reflect"), "mode must be one of"),
    (lambda: Flip(1.2), r"p must be a finite number >= 0 and <= 1"),
    (lambda: Maybe(Flip(0.5), -0.1), r"p must be a finite number >= 0 and <= 1"),
    (lambda: Brightness(a_var=-1.0), "a_var must be"),
    (lambda: moments(Flip(0.5), np.zeros((2, 3, 4))), "2-D image of shape \\(H, W\\)"),
    (lambda: moments(Flip(0.5), np.zeros(5)), "2-D image"),
    (lambda: moments("flip", np.zeros((2, 2))), "augmentation of helpers.augment"),
    (lambda: moments(Flip(0.5), np.zeros((2, 2)), method="exact"), "method must be one of"),
    (lambda: moments(GaussianShift(0.5), np.zeros((3, 3)), method="enumerate"), "finite support"),
    (lambda: support(Brightness(b_var=0.1), np.zeros((2, 2))), "continuous stage"),
    (lambda: samples_needed(Flip(0.5), np.ones((2, 2)), 0.0), "eps must be"),
    (lambda: samples_needed(Flip(0.5), np.ones((2, 2)), 0.1, "loss"), "needs the model W"),
    (lambda: augmented_ridge(Flip(0.5), np.zeros((2, 2)), np.zeros(2), 1.0), r"\(N, H, W\)"),
    (lambda: augmented_ridge(Flip(0.5), np.zeros((3, 2, 2)), np.zeros(2), 1.0), "Y must have shape"),
    (lambda: Compose(), "at least one"),
])
def test_bad_input_says_what_to_change(call, match):
    with pytest.raises(ParameterError, match=match):
        call()
    with pytest.raises(ValueError):
        call()
