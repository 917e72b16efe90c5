"""helpers.st_kmeans against oracles: the plain distance (a feasible warp), planted warps, brute-force
enumeration of a finite warp set, a dense least-squares solve, and scikit-learn's estimator checks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

from helpers._checks import ParameterError
from helpers.data import load_digits_array
from helpers.st_kmeans import (STKMeans, centroid_step, cluster_accuracy, images_of, invariant_distance,
                               objective, pair_loss)
from helpers.warps import affine_set, random_warps, warp, warp_matrix

D64 = torch.float64


def _blob(size=8):
    """A smooth asymmetric image, so that a warp is identifiable from it."""
    u = torch.linspace(-1, 1, size, dtype=D64)
    yy, xx = torch.meshgrid(u, u, indexing="ij")
    return torch.exp(-((xx - 0.15) ** 2 / 0.12 + (yy + 0.1) ** 2 / 0.25)) + \
        0.6 * torch.exp(-((xx + 0.35) ** 2 + (yy - 0.4) ** 2) / 0.05)


def _templates():
    X, y = load_digits_array()
    return torch.tensor(np.stack([X[y == c].mean(0) for c in (0, 1, 7)]).reshape(3, 8, 8))


@pytest.mark.parametrize("family,kw", [("affine", {}), ("tps", {"grid": 3}), ("affine+tps", {"grid": 2}),
                                       ("finite", {"transforms": affine_set(angles=(-10, 0, 10),
                                                                            shifts=(-0.2, 0, 0.2))})])
def test_distance_never_exceeds_the_plain_squared_distance(family, kw):
    g = torch.Generator().manual_seed(0)
    X = torch.rand(7, 6, 6, generator=g, dtype=D64)
    C = torch.rand(3, 6, 6, generator=g, dtype=D64)
    D, theta = invariant_distance(X, C, family=family, lam=0.5, steps=15, **kw)
    plain = ((X[:, None] - C[None]) ** 2).sum((2, 3))
    assert D.shape == (7, 3) and torch.all(D <= plain + 1e-12)
    # D is the loss of the returned warps
    assert torch.allclose(pair_loss(X, C, theta, family=family, lam=0.5, grid=kw.get("grid", 3)), D, atol=1e-10)


def test_warm_start_never_does_worse_and_inactive_pairs_keep_it():
    g = torch.Generator().manual_seed(1)
    X, C = torch.rand(5, 6, 6, generator=g, dtype=D64), torch.rand(2, 6, 6, generator=g, dtype=D64)
    th0 = 0.2 * torch.rand(5, 2, 6, generator=g, dtype=D64)
    L0 = pair_loss(X, C, th0, lam=0.3)
    active = torch.zeros(5, 2, dtype=torch.bool)
    active[:, 0] = True
    D, th = invariant_distance(X, C, lam=0.3, steps=10, theta0=th0, active=active)
    assert torch.all(D <= L0 + 1e-12)
    assert torch.equal(th[:, 1], th0[:, 1]) and torch.equal(D[:, 1], L0[:, 1])


@pytest.mark.parametrize("family,grid", [("affine", 3), ("tps", 3)])
def test_recovers_a_known_small_warp(family, grid):
    c = _blob()
    true = 0.6 * random_warps(1, 0.3, family=family, grid=grid, seed=2)
    x = warp(c, true, family=family, grid=grid)
    D, theta = invariant_distance(x, c[None], family=family, grid=grid, lam=1e-4, steps=200, lr=0.02)
    plain = float(((x - c) ** 2).sum())
    assert float(D[0, 0]) < 0.02 * plain
    assert float(((warp(c, theta[:, 0], family=family, grid=grid) - x) ** 2).sum()) < 0.02 * plain


def test_warped_templates_are_clustered_where_pixel_kmeans_fails():
    temps = _templates()
    lab = np.repeat(np.arange(3), 10)
    X = warp(temps[lab], random_warps(30, 1.0, seed=1))
    km = KMeans(3, n_init=10, random_state=0).fit(X.reshape(30, -1).numpy())
    assert cluster_accuracy(lab, km.labels_) < 0.8                   # pixel k-means mixes them
    st = STKMeans(3, lam=0.01, steps=40, max_iter=4, random_state=0).fit(X)
    assert cluster_accuracy(lab, st.labels_) == 1.0


def test_finite_variant_equals_brute_force():
    g = torch.Generator().manual_seed(3)
    X, C = torch.rand(4, 5, 5, generator=g, dtype=D64), torch.rand(3, 5, 5, generator=g, dtype=D64)
    T = affine_set(angles=(-20, 0, 20), scales=(0.9, 1.1), shifts=(-0.25, 0.25))
    D, theta = invariant_distance(X, C, family="finite", transforms=T, lam=0.7, chunk=3)
    for i, a in itertools.product(range(4), range(3)):
        losses = [float(((X[i] - warp(C[a], t)[0]) ** 2).sum() + 0.7 * (t ** 2).sum()) for t in T]
        assert abs(float(D[i, a]) - min(losses)) < 1e-10
        assert abs(float(pair_loss(X[i:i + 1], C[a:a + 1], theta[i:i + 1, a:a + 1], lam=0.7)) - min(losses)) < 1e-10


@pytest.mark.parametrize("family,grid", [("affine", 3), ("affine+tps", 2)])
def test_centroid_step_matches_a_dense_least_squares_solve(family, grid):
    g = torch.Generator().manual_seed(4)
    X = torch.rand(9, 4, 4, generator=g, dtype=D64)
    lab = torch.tensor([0, 1, 0, 1, 1, 0, 1, 0, 1])
    p = 6 + (2 * grid * grid if family == "affine+tps" else 0)
    theta = 0.3 * (torch.rand(9, p, generator=g, dtype=D64) - 0.5)
    ridge = 1e-3
    C = centroid_step(X, lab, theta, 2, family=family, grid=grid, ridge=ridge)
    W = warp_matrix(theta, (4, 4), family=family, grid=grid).numpy()
    for a in range(2):
        idx = np.flatnonzero(lab.numpy() == a)
        A = np.vstack([W[i] for i in idx] + [np.sqrt(ridge) * np.eye(16)])
        b = np.concatenate([X[i].reshape(-1).numpy() for i in idx] + [np.zeros(16)])
        ref = np.linalg.lstsq(A, b, rcond=None)[0]
        assert np.allclose(C[a].reshape(-1).numpy(), ref, atol=1e-9)


@pytest.mark.parametrize("kw", [dict(family="affine"), dict(family="affine+tps", grid=2),
                                dict(family="affine", candidates=2),
                                dict(family="finite", transforms=affine_set(angles=(-15, 0, 15),
                                                                            shifts=(-0.3, 0, 0.3)))])
def test_objective_never_increases(kw):
    X, y = load_digits_array()
    Xs = torch.tensor(X[:120].reshape(-1, 8, 8))
    km = STKMeans(5, lam=0.3, steps=10, max_iter=5, tol=0.0, random_state=0, **kw).fit(Xs)
    J = np.asarray(km.objective_)
    assert len(J) == km.n_iter_ + 1
    assert np.all(np.diff(J) <= 1e-9 * J[:-1]), J
    lab, th = km.labels_, km.theta_
    assert abs(objective(Xs, km.cluster_centers_, lab, th, family=kw["family"], lam=0.3,
                         grid=kw.get("grid", 3)) - J[-1]) < 1e-8 * J[-1]


def test_empty_clusters_are_reseeded():
    X = torch.zeros(6, 4, 4, dtype=D64)
    X[3:] = 1.0
    init = torch.stack([torch.zeros(4, 4), torch.ones(4, 4), 5 * torch.ones(4, 4)]).to(D64)
    km = STKMeans(3, init=init, steps=2, max_iter=3).fit(X)
    assert km.n_reseeded_ >= 1 and len(np.unique(km.labels_)) == 3
    assert np.all(np.diff(km.objective_) <= 1e-9 * np.asarray(km.objective_[:-1]))


def test_types_devices_and_predict():
    X, _ = load_digits_array()
    Xn = X[:40]
    km = STKMeans(3, steps=5, max_iter=2, random_state=0).fit(Xn)
    assert isinstance(km.cluster_centers_, np.ndarray) and km.cluster_centers_.shape == (3, 8, 8)
    assert isinstance(km.labels_, np.ndarray)
    assert np.array_equal(km.predict(Xn[:5]).shape, (5,))
    kt = STKMeans(3, steps=5, max_iter=2, random_state=0).fit(torch.tensor(Xn, dtype=torch.float32))
    assert torch.is_tensor(kt.cluster_centers_) and kt.cluster_centers_.dtype == torch.float32
    assert torch.is_tensor(kt.predict(torch.tensor(Xn[:5], dtype=torch.float32)))


def test_cluster_accuracy_is_the_best_matching():
    rng = np.random.default_rng(5)
    yt, yp = rng.integers(0, 3, 30), rng.integers(0, 3, 30)
    best = max(np.mean(np.array(perm)[yp] == yt) for perm in itertools.permutations(range(3)))
    assert abs(cluster_accuracy(yt, yp) - best) < 1e-12


@pytest.mark.parametrize("call,match", [
    (lambda: STKMeans(2).fit(np.zeros((5, 10))), "not a batch of images"),
    (lambda: STKMeans(7).fit(np.zeros((5, 16))), "more than the 5 images"),
    (lambda: STKMeans(2, family="rigid").fit(np.zeros((5, 16))), "family"),
    (lambda: STKMeans(2, family="finite").fit(np.zeros((5, 16))), "transforms"),
    (lambda: invariant_distance(np.zeros((5, 4, 4)), np.zeros((2, 3, 3))), "one size"),
    (lambda: invariant_distance(np.zeros((5, 4, 4)), np.zeros((2, 4, 4)), lam=-1.0), "lam"),
    (lambda: images_of(np.zeros((2, 3, 4, 4))), "images"),
])
def test_bad_input_raises_a_value_error_that_says_what_to_change(call, match):
    with pytest.raises(ParameterError, match=match):
        call()


def test_sklearn_check_estimator_where_it_applies():
    from sklearn.utils.estimator_checks import check_estimator

    # Checks that feed arrays that are not images (2 or 3 features, 1-D rows) cannot apply.
    not_images = "STKMeans clusters images; this check feeds a non-image feature count"
    est = STKMeans(3, steps=2, max_iter=2, n_init=1, random_state=0)
    results = check_estimator(est, on_fail=None)
    failed = {r["check_name"]: r for r in results if r["status"] == "failed"}
    for name, r in failed.items():
        assert "is not a batch of images" in str(r["exception"]), (name, not_images, r["exception"])
    passed = [r["check_name"] for r in results if r["status"] == "passed"]
    assert len(passed) >= 20 and "check_n_features_in_after_fitting" in passed, passed
