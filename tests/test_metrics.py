"""Tests of helpers.metrics against brute force and closed forms.

Oracles: explicit double loops over pairs (squared distances in plain Python) for the k-NN
metrics; a mixture whose modes are far apart for mode dropping; the closed-form Fréchet distance
of Gaussians, and scipy.linalg.sqrtm of the covariance product for the algebra. Monte-Carlo
bounds are derived next to each assertion from the sampling error, not tuned to the seed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.metrics import density_coverage, frechet_distance, knn_radii, manifold_metrics, precision_recall

FAST = settings(max_examples=15, deadline=None, database=None, derandomize=True)


# --------------------------------------------------------------------------------------------
# Brute-force references
# --------------------------------------------------------------------------------------------


def sq(u, v) -> float:
    return sum((a - b) ** 2 for a, b in zip(u, v))


def brute_radii2(X, k: int) -> list[float]:
    """Squared distance to the k-th nearest other point, one point at a time."""
    return [sorted(sq(X[i], X[j]) for j in range(len(X)) if j != i)[k - 1] for i in range(len(X))]


def brute_precision_recall(real, fake, k: int) -> tuple[float, float]:
    real, fake = real.tolist(), fake.tolist()
    r_real, r_fake = brute_radii2(real, k), brute_radii2(fake, k)
    inside_real = [any(sq(f, r) <= r_real[i] for i, r in enumerate(real)) for f in fake]
    inside_fake = [any(sq(r, f) <= r_fake[j] for j, f in enumerate(fake)) for r in real]
    return sum(inside_real) / len(fake), sum(inside_fake) / len(real)


def brute_density_coverage(real, fake, k: int) -> tuple[float, float]:
    real, fake = real.tolist(), fake.tolist()
    r_real = brute_radii2(real, k)
    hits = [[sq(f, r) <= r_real[i] for f in fake] for i, r in enumerate(real)]
    density = sum(sum(row) for row in hits) / (k * len(fake))
    return density, sum(any(row) for row in hits) / len(real)


def two_sets(seed: int, n_real: int, n_fake: int, F: int, shift: float = 1.5):
    """Real ~ N(0, I); fake ~ N(shift, I): they overlap partly, so precision and recall are in (0, 1)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_real, F)), rng.standard_normal((n_fake, F)) + shift


# --------------------------------------------------------------------------------------------
# Precision and recall
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3, 5])
def test_precision_recall_equal_brute_force(k):
    real, fake = two_sets(0, 40, 35, 3)
    expected = brute_precision_recall(real, fake, k)
    assert 0 < expected[0] < 1 and 0 < expected[1] < 1  # neither trivially 0 nor 1
    assert precision_recall(real, fake, k) == expected
    assert precision_recall(real, fake, k, block_size=7) == expected  # blocks cut mid-set
    assert precision_recall(torch.as_tensor(real), torch.as_tensor(fake).float().double(), k) == expected


def test_precision_recall_with_ties_count_the_boundary():
    # Integer grid points: many distances tie exactly, so "<=" versus "<" and the exclusion of
    # the point itself (but not of its duplicates) decide the result.
    rng = np.random.default_rng(1)
    real = rng.integers(0, 4, (40, 2)).astype(float)
    fake = rng.integers(1, 6, (30, 2)).astype(float)
    for k in (1, 2, 4):
        assert precision_recall(real, fake, k) == brute_precision_recall(real, fake, k)
        assert density_coverage(real, fake, k) == pytest.approx(brute_density_coverage(real, fake, k), abs=1e-15)


@given(seed=st.integers(0, 10_000), n_real=st.integers(6, 25), n_fake=st.integers(6, 25),
       F=st.integers(1, 4), k=st.integers(1, 5))
@FAST
def test_property_precision_recall_and_density_coverage_equal_brute_force(seed, n_real, n_fake, F, k):
    real, fake = two_sets(seed, n_real, n_fake, F)
    assert precision_recall(real, fake, k, block_size=4) == brute_precision_recall(real, fake, k)
    density, coverage = density_coverage(real, fake, k, block_size=4)
    ref_density, ref_coverage = brute_density_coverage(real, fake, k)
    assert math.isclose(density, ref_density, rel_tol=1e-12) and coverage == ref_coverage


@given(seed=st.integers(0, 10_000), n_real=st.integers(6, 25), n_fake=st.integers(6, 25),
       F=st.integers(1, 4), k=st.integers(1, 5), grid=st.booleans())
@FAST
def test_property_manifold_metrics_equal_brute_force(seed, n_real, n_fake, F, k, grid):
    real, fake = two_sets(seed, n_real, n_fake, F)
    if grid:  # integer points: exact ties on the balls' boundaries, and duplicates
        real, fake = np.round(real), np.round(fake)
    ref_precision, ref_recall = brute_precision_recall(real, fake, k)
    ref_density, ref_coverage = brute_density_coverage(real, fake, k)
    for radii in (None, knn_radii(real, k), torch.as_tensor(knn_radii(real, k))):
        got = manifold_metrics(real, fake, k, real_radii=radii, block_size=4)
        assert (got["precision"], got["recall"], got["coverage"]) == (ref_precision, ref_recall, ref_coverage)
        assert math.isclose(got["density"], ref_density, rel_tol=1e-12)


def test_manifold_metrics_rejects_radii_of_another_set():
    real, fake = two_sets(9, 20, 15, 3)
    for bad in (knn_radii(fake, 3), -knn_radii(real, 3), np.full(20, np.nan)):
        with pytest.raises(ValueError, match=r"real_radii must be knn_radii\(real_features, k\)"):
            manifold_metrics(real, fake, 3, real_radii=bad)


def test_identical_sets_have_precision_and_recall_one():
    real, _ = two_sets(2, 60, 2, 5)
    assert precision_recall(real, real.copy(), k=5) == (1.0, 1.0)
    density, coverage = density_coverage(real, real.copy(), k=5)
    # every real ball holds its own point and its k nearest neighbours (no ties in continuous data)
    assert coverage == 1.0 and math.isclose(density, 6 / 5, rel_tol=1e-12)


def test_knn_radii_excludes_only_the_point_itself():
    x = np.array([[0.0], [0.0], [1.0], [3.0]])  # a duplicate pair
    assert np.array_equal(knn_radii(x, 1), [0.0, 0.0, 1.0, 2.0])
    assert np.array_equal(knn_radii(x, 2), [1.0, 1.0, 1.0, 3.0])


def test_dropped_modes_halve_recall_and_keep_precision():
    # Real: 4 unit Gaussians at (±10, ±10), each point's mode drawn uniformly. Fake: 1000 points
    # from modes 0 and 1 only. Modes are 20 apart, far beyond any k-NN radius (about 0.2 here),
    # so no real point of modes 2 and 3 can be covered: recall <= q, the fraction of real points
    # in modes 0 and 1. Within a covered mode almost every real point falls in a fake ball
    # (measured 0.99-0.998 over seeds), so recall >= 0.97 q. And q ~ Binomial(2000, 1/2) / 2000
    # has sd 0.0112: |q - 1/2| < 0.045 (4 sd). Together |recall - 1/2| < 0.065.
    rng = np.random.default_rng(3)
    centers = np.array([[10.0, 10.0], [-10.0, 10.0], [10.0, -10.0], [-10.0, -10.0]])
    labels = rng.integers(0, 4, 2000)
    real = centers[labels] + rng.standard_normal((2000, 2))
    fake = centers[rng.integers(0, 2, 1000)] + rng.standard_normal((1000, 2))
    precision, recall = precision_recall(real, fake, k=5)
    q = np.mean(labels < 2)
    assert 0.97 * q <= recall <= q
    assert abs(recall - 0.5) < 0.065
    # Precision: fakes come from real modes; only their extreme tails leave the real balls.
    assert precision >= 0.97
    _, coverage = density_coverage(real, fake, k=5)
    assert 0.97 * q <= coverage <= q  # coverage drops the same modes


# --------------------------------------------------------------------------------------------
# Fréchet distance
# --------------------------------------------------------------------------------------------


def scipy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    """The usual FID formula: scipy.linalg.sqrtm of the covariance product, real part."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * root))


def test_frechet_distance_of_identical_sets_is_zero():
    a, _ = two_sets(4, 500, 2, 6)
    assert frechet_distance(a, a.copy()) < 1e-10
    assert frechet_distance(torch.as_tensor(a), a) < 1e-10


def test_frechet_distance_of_a_translate_is_the_squared_shift():
    a, _ = two_sets(5, 300, 2, 4)
    c = np.array([1.0, -2.0, 0.5, 0.0])
    assert math.isclose(frechet_distance(a, a + c), float(c @ c), rel_tol=1e-9)


def test_frechet_distance_matches_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(6)
    N = 40_000
    mu_a, mu_b = np.array([0.0, 1.0, 2.0, -1.0]), np.array([1.0, 1.0, 0.0, 0.0])
    s_a, s_b = np.array([1.0, 2.0, 0.5, 1.0]), np.array([2.0, 1.0, 0.5, 3.0])
    a = mu_a + s_a * rng.standard_normal((N, 4))
    b = mu_b + s_b * rng.standard_normal((N, 4))
    exact = np.sum((mu_a - mu_b) ** 2) + np.sum((s_a - s_b) ** 2)  # = 12
    # First-order Monte-Carlo sd: the mean term 2 Δμ·e with e ~ N(0, (s_a² + s_b²)/N) per axis,
    # and the per-axis (ŝ_a - ŝ_b)² with ŝ ~ N(s, s²/(2N)). Second-order terms (|e|², noise in the
    # off-diagonal covariances) bias it upward by at most about 2 F Σ(s_a² + s_b²)/N.
    var2 = s_a**2 + s_b**2
    sd = math.sqrt(4 * np.sum((mu_a - mu_b) ** 2 * var2) / N + 4 * np.sum((s_a - s_b) ** 2 * var2) / (2 * N))
    bias = 2 * 4 * np.sum(var2) / N
    got = frechet_distance(a, b)
    assert abs(got - exact) < 5 * sd + bias, (got, exact, sd)
    assert math.isclose(got, scipy_frechet(a, b), rel_tol=1e-9)


def test_frechet_distance_matches_sqrtm_formula_for_correlated_gaussians():
    rng = np.random.default_rng(7)
    A, B = rng.standard_normal((5, 5)), rng.standard_normal((5, 5))
    a = rng.standard_normal((3000, 5)) @ A.T
    b = rng.standard_normal((2000, 5)) @ B.T + 0.3
    assert math.isclose(frechet_distance(a, b), scipy_frechet(a, b), rel_tol=1e-8)
    # and the population closed form, with sqrtm of the exact covariances, within Monte-Carlo error
    cov_a, cov_b = A @ A.T, B @ B.T
    exact = 5 * 0.09 + np.trace(cov_a + cov_b - 2 * scipy.linalg.sqrtm(cov_a @ cov_b).real)
    assert abs(frechet_distance(a, b) - exact) < 0.1 * exact


@given(seed=st.integers(0, 10_000), n=st.integers(2, 30), F=st.integers(1, 5),
       noise=st.sampled_from([0.0, 1e-9, 1e-3, 1.0]), scale=st.sampled_from([1e-3, 1.0, 1e3]))
@FAST
def test_property_frechet_is_symmetric_and_non_negative(seed, n, F, noise, scale):
    rng = np.random.default_rng(seed)
    a = scale * rng.standard_normal((n, F))
    b = a + scale * noise * rng.standard_normal((n, F))  # near-identical sets included
    ab, ba = frechet_distance(a, b), frechet_distance(b, a)
    assert ab >= 0 and ba >= 0
    # With n <= F the covariances are singular, and the square root of a rounding-level
    # eigenvalue (about eps * scale^4) is sqrt(eps) * scale^2: the two orders agree to
    # sqrt(eps) relative to the scale of the traces, not to eps.
    assert abs(ab - ba) <= 10 * math.sqrt(np.finfo(float).eps) * scale**2 * (1 + F)


# --------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------


def test_bad_inputs_raise():
    real, fake = two_sets(8, 10, 8, 3)
    bad = real.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        precision_recall(bad, fake)
    bad_fake = fake.copy()
    bad_fake[1, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        frechet_distance(real, bad_fake)
    with pytest.raises(ValueError, match="has 3 features per sample but fake_features has 2"):
        precision_recall(real, fake[:, :2])
    with pytest.raises(ValueError, match="same feature extractor"):
        frechet_distance(real, fake[:, :2])
    with pytest.raises(ValueError, match=r"k=8 needs at least k \+ 1 = 9 samples in fake_features"):
        precision_recall(real, fake, k=8)
    with pytest.raises(ValueError, match=r"k=10 needs at least k \+ 1 = 11 samples in real_features"):
        density_coverage(real, fake, k=10)
    with pytest.raises(ValueError, match="k must be a positive int"):
        precision_recall(real, fake, k=0)
    with pytest.raises(ValueError, match=r"shape \(N, F\)"):
        precision_recall(real[0], fake)
    with pytest.raises(ValueError, match="at least 2 samples"):
        frechet_distance(real[:1], fake)
    with pytest.raises(ValueError, match="block_size must be a positive int"):
        precision_recall(real, fake, block_size=0)
