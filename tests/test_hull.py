"""Tests for helpers.hull: decisions against linprog and qhull, certificates, theory, inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog
from scipy.spatial import ConvexHull, Delaunay

import helpers.hull as hull
from helpers.hull import (
    CertificateError,
    HullDecisionError,
    in_hull,
    interpolation_probability,
    interval_probability,
    wendel_probability,
)

FEW = settings(max_examples=25, deadline=None, database=None, derandomize=True)


# ----------------------------------------------------------------------------- oracles


def linprog_inside(X: np.ndarray, q: np.ndarray) -> bool:
    """Per-query primal feasibility LP (lambda >= 0, sum 1, X^T lambda = q), HiGHS.

    The data are scaled to unit magnitude first, because HiGHS' feasibility tolerance (1e-7)
    is absolute while in_hull's is relative to the data's magnitude.
    """
    s = np.abs(X).max() or 1.0
    Xs, qs = X / s, q / s
    A = np.vstack([Xs.T, np.ones(len(X))])
    for method in ("highs", "highs-ipm"):
        r = linprog(np.zeros(len(X)), A_eq=A, b_eq=np.r_[qs, 1.0], bounds=(0, None), method=method)
        if r.status in (0, 2):
            return r.status == 0
    pytest.fail(f"linprog could not decide (status {r.status}: {r.message})")


def make_points(rng: np.random.Generator, n: int, d: int, kind: str) -> np.ndarray:
    """Gaussian points; 'flat': in a random affine subspace of dimension < d; 'dup': repeated."""
    if kind == "flat":
        k = int(rng.integers(0, d))  # affine dimension 0..d-1
        basis = rng.standard_normal((k, d))
        return rng.standard_normal((n, k)) @ basis + rng.standard_normal(d)
    X = rng.standard_normal((n, d))
    if kind == "dup":
        X = X[rng.integers(0, max(1, n // 2), size=n)]
    return X


def make_queries(rng: np.random.Generator, X: np.ndarray, m: int) -> np.ndarray:
    """A mix: Gaussian, convex combinations, and hull vertices pushed 1e-3 out / 0.999 in."""
    n, d = X.shape
    c = X.mean(axis=0)
    lam = rng.dirichlet(np.ones(n), size=m)
    u = rng.standard_normal((m, d))
    vertices = X[(u @ X.T).argmax(axis=1)]  # maximisers of a random linear function
    parts = [
        rng.standard_normal((m, d)) * (X.std(axis=0).mean() or 1.0) + c,
        lam @ X,
        vertices + 1e-3 * (vertices - c),
        c + 0.999 * (vertices - c),
    ]
    return np.vstack(parts)


# ----------------------------------------------------------------------------- agreement


@FEW
@given(
    n=st.integers(1, 60),
    d=st.integers(1, 12),
    kind=st.sampled_from(["gauss", "flat", "dup"]),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
    seed=st.integers(0, 2**32 - 1),
)
def test_matches_linprog(n, d, kind, scale, seed):
    rng = np.random.default_rng(seed)
    X = make_points(rng, n, d, kind)
    Q = make_queries(rng, X, 4)
    X, Q = scale * X, scale * Q
    res = in_hull(X, Q)
    assert res.verify(X, Q)
    expected = [linprog_inside(X, q) for q in Q]
    assert res.inside.tolist() == expected


@pytest.mark.parametrize("n,d", [(4, 30), (1500, 3), (300, 9)])
def test_matches_linprog_extreme_shapes(n, d):
    """d > N (a simplex in a bigger space) and N >> d."""
    rng = np.random.default_rng(n * d)
    X = rng.standard_normal((n, d))
    Q = make_queries(rng, X, 6)
    res = in_hull(X, Q)
    assert res.verify(X, Q)
    assert res.inside.tolist() == [linprog_inside(X, q) for q in Q]


@FEW
@given(n=st.integers(5, 80), d=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_matches_qhull_away_from_boundary(n, d, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) if d > 1 else rng.standard_normal((n, 1))
    Q = 1.3 * rng.standard_normal((40, d))
    if d == 1:
        expected = (Q[:, 0] >= X.min()) & (Q[:, 0] <= X.max())
        far = np.minimum(np.abs(Q[:, 0] - X.min()), np.abs(Q[:, 0] - X.max())) > 1e-6
    else:
        expected = Delaunay(X).find_simplex(Q) >= 0
        eq = ConvexHull(X).equations  # unit normals: the signed distance to each facet plane
        far = np.abs((Q @ eq[:, :-1].T + eq[:, -1]).max(axis=1)) > 1e-6
    res = in_hull(X, Q)
    assert res.verify(X, Q)
    np.testing.assert_array_equal(res.inside[far], expected[far])


@pytest.mark.parametrize("seed", range(3))
def test_invariance(seed):
    """Permuting points, translating, rotating and scaling the data change no decision."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((200, 6))
    Q = make_queries(rng, X, 10)
    base = in_hull(X, Q).inside
    R, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    t = rng.standard_normal(6) * 10
    for Xt, Qt in [(X[rng.permutation(200)], Q), (X + t, Q + t), (X @ R, Q @ R), (7.5 * X, 7.5 * Q)]:
        np.testing.assert_array_equal(in_hull(Xt, Qt).inside, base)


# ----------------------------------------------------------------------------- special sets


def test_training_points_and_combinations_inside():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 5))
    lam = rng.dirichlet(np.full(300, 0.1), size=20)
    Q = np.vstack([X[:30], lam @ X])
    res = in_hull(X, Q)
    assert res.inside.all() and res.verify(X, Q)
    assert set(res.stage[:30]) == {"vertex"}
    for j in range(len(Q)):  # the weights reproduce the query, with Caratheodory-sized support
        np.testing.assert_allclose(res.weights[j] @ X[res.weight_indices[j]], Q[j], atol=1e-9)
        assert len(res.weights[j]) <= 6


def test_duplicates_flat_and_single_point():
    rng = np.random.default_rng(2)
    base = rng.standard_normal((4, 2))
    X = np.repeat(base, 50, axis=0) @ rng.standard_normal((2, 5))  # 200 points, a 2-D flat in R^5
    inside_flat = rng.dirichlet(np.ones(4), size=5) @ X[::50]
    off_flat = inside_flat + 1e-3 * rng.standard_normal((5, 5))
    Q = np.vstack([X[:3], inside_flat, off_flat])
    res = in_hull(X, Q)
    assert res.verify(X, Q)
    assert res.inside.tolist() == [True] * 8 + [False] * 5

    single = np.array([[1.0, -2.0, 3.0]])
    Q1 = np.array([[1.0, -2.0, 3.0], [1.0, -2.0, 3.001], [0.0, 0.0, 0.0]])
    r1 = in_hull(single, Q1)
    assert r1.inside.tolist() == [True, False, False] and r1.verify(single, Q1)
    zero = np.zeros((3, 2))  # all points at the origin: scale 0 must not break anything
    Qz = np.array([[0.0, 0.0], [1e-12, 0.0]])
    assert in_hull(zero, Qz).inside.tolist() == [True, False]


def test_boundary_points_are_inside():
    square = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    Q = np.array([[0.5, 0.0], [1.0, 0.3], [1.0, 1.0], [0.5, 1.0 + 1e-6], [1.0 + 1e-6, 0.5]])
    res = in_hull(square, Q)
    assert res.inside.tolist() == [True, True, True, False, False]
    assert res.verify(square, Q)


def test_moment_curve_points_are_never_inside():
    """Points of a strictly convex curve are all vertices: a new one is always outside."""
    def curve(t):
        return np.column_stack([f(k * t) for k in (1, 2) for f in (np.cos, np.sin)])

    rng = np.random.default_rng(3)
    X, Q = curve(rng.uniform(0, 2 * np.pi, 200)), curve(rng.uniform(0, 2 * np.pi, 30))
    res = in_hull(X, Q)
    assert not res.inside.any() and res.verify(X, Q)


def test_torch_input_matches_numpy():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    X, Q = rng.standard_normal((100, 4)), rng.standard_normal((20, 4))
    ref = in_hull(X, Q).inside
    got = in_hull(torch.from_numpy(X).float(), torch.from_numpy(Q))
    np.testing.assert_array_equal(got.inside, ref)
    assert got.verify(torch.from_numpy(X).float(), Q)


def test_empty_queries():
    res = in_hull(np.ones((3, 2)), np.zeros((0, 2)))
    assert len(res) == 0 and res.verify(np.ones((3, 2)), np.zeros((0, 2)))


# ----------------------------------------------------------------------------- certificates


def test_verify_rejects_tampered_certificates():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((100, 3))
    Q = np.vstack([X[:5].mean(axis=0), 10 * np.ones(3)])
    res = in_hull(X, Q)
    assert res.inside.tolist() == [True, False] and res.verify(X, Q)

    w = [x.copy() for x in res.weights]
    w[0][0] += 0.05
    w[0] /= w[0].sum()  # still convex weights, but they no longer reproduce the query
    bad_weights = hull.HullResult(res.inside, res.weight_indices, tuple(w), res.normals, res.offsets, res.stage, res.rtol)
    with pytest.raises(CertificateError, match="query 0") as err:
        bad_weights.verify(X, Q)
    assert list(err.value.failures) == [0]

    off = res.offsets.copy()
    off[1] = (X @ res.normals[1]).max() - 1.0  # b below max_i a.x_i: not a separating hyperplane
    bad_plane = hull.HullResult(res.inside, res.weight_indices, res.weights, res.normals, off, res.stage, res.rtol)
    with pytest.raises(CertificateError, match="query 1"):
        bad_plane.verify(X, Q)

    flipped = hull.HullResult(~res.inside, res.weight_indices, res.weights, res.normals, res.offsets, res.stage, res.rtol)
    with pytest.raises(CertificateError) as err:
        flipped.verify(X, Q)
    assert sorted(err.value.failures) == [0, 1]


def test_lp_path_and_unknown_status_fallback(monkeypatch):
    """With the cheap stages off, the LP decides; a non-optimal status is retried, never read."""
    rng = np.random.default_rng(6)
    X = rng.standard_normal((150, 6))
    Q = make_queries(rng, X, 5)
    ref = in_hull(X, Q)
    lp_only = in_hull(X, Q, fw_iter=0, cg_rounds=0)
    np.testing.assert_array_equal(lp_only.inside, ref.inside)
    assert lp_only.verify(X, Q) and lp_only.stage_counts()["lp"] > 0

    real = hull.linprog
    calls = []

    def flaky(*args, method, **kw):  # the first method reports "unknown" (status 4)
        calls.append(method)
        res = real(*args, method=method, **kw)
        if method == "highs":
            res.status, res.x = 4, None
        return res

    monkeypatch.setattr(hull, "linprog", flaky)
    fallback = in_hull(X, Q, fw_iter=0, cg_rounds=0)
    np.testing.assert_array_equal(fallback.inside, ref.inside)
    assert fallback.verify(X, Q) and "highs-ipm" in calls

    def broken(*args, **kw):  # every method fails: the exact nearest-point stage takes over
        res = real(*args, **kw)
        res.status, res.x = 4, None
        return res

    monkeypatch.setattr(hull, "linprog", broken)
    exact = in_hull(X, Q, fw_iter=0, cg_rounds=0)
    np.testing.assert_array_equal(exact.inside, ref.inside)
    assert exact.verify(X, Q) and exact.stage_counts()["exact"] > 0


def test_undecidable_query_raises_with_its_index():
    """A query at distance ~tol from the hull fits neither test: an error, not a guess."""
    X = np.array([[0.0], [1.0]])
    Q = np.array([[0.5], [1.0 + 1e-9], [3.0]])
    with pytest.raises(HullDecisionError, match=r"\[1\]") as err:
        in_hull(X, Q, rtol=1e-9, retries=0)
    assert err.value.indices == [1]
    assert in_hull(X, Q, rtol=1e-7).inside.tolist() == [True, True, False]


def test_undecided_query_is_retried_at_a_looser_tolerance_only():
    """The boundary query is decided again at 10 * rtol, the others keep rtol; the recorded
    tolerances are the ones verify checks against."""
    X = np.array([[0.0], [1.0]])
    Q = np.array([[0.5], [1.0 + 1e-9], [3.0]])
    res = in_hull(X, Q, rtol=1e-9)
    assert res.inside.tolist() == [True, True, False]
    np.testing.assert_allclose(res.query_rtol, [1e-9, 1e-8, 1e-9])
    assert res.rtol == 1e-9 and res.verify(X, Q)
    # the same certificates judged at the first tolerance: the boundary query fails
    strict = hull.HullResult(res.inside, res.weight_indices, res.weights, res.normals, res.offsets,
                             res.stage, res.rtol)
    with pytest.raises(hull.CertificateError, match="query 1"):
        strict.verify(X, Q)
    # a query decided at the first tolerance records none
    assert in_hull(X, Q[[0, 2]]).query_rtol is None


def test_point_on_a_facet_of_a_simplex_is_inside():
    """A query on a facet (distance 0) is inside at the first tolerance, in several dimensions."""
    for d in (2, 5, 8):
        gen = np.random.default_rng(d)
        X = gen.standard_normal((d + 1, d))
        w = gen.dirichlet(np.ones(d))  # weights on the facet opposite the last vertex
        q = w @ X[:d]
        res = in_hull(X, q[None], retries=0)
        assert res.inside.tolist() == [True] and res.verify(X, q[None])


# ----------------------------------------------------------------------------- theory


def test_theory_values():
    assert interval_probability(1) == 0.0 and interval_probability(9) == 0.8
    assert wendel_probability(3, 3) == 1.0  # n <= d: never inside
    for d in (1, 2, 5, 10):
        assert wendel_probability(2 * d, d) == 0.5
    assert wendel_probability(12, 4) == pytest.approx(232 / 2048)


def binomial_ok(hits: int, reps: int, p: float) -> bool:
    """Within 4 binomial standard errors of p."""
    return abs(hits / reps - p) <= 4 * math.sqrt(p * (1 - p) / reps)


@pytest.mark.parametrize("n,d", [(4, 2), (5, 3), (8, 2)])
def test_wendel_monte_carlo(n, d):
    rng = np.random.default_rng(100 * n + d)
    reps = 600
    origin = np.zeros((1, d))
    outside = sum(not in_hull(rng.standard_normal((n, d)), origin).inside[0] for _ in range(reps))
    assert binomial_ok(outside, reps, wendel_probability(n, d))


def test_interval_probability_monte_carlo():
    rng = np.random.default_rng(7)
    n, reps = 5, 1500
    hits = sum(in_hull(x[:n, None], x[n:, None]).inside[0] for x in rng.exponential(size=(reps, n + 1)))
    assert binomial_ok(hits, reps, interval_probability(n))
    # The helper agrees with the interval test on one batch.
    X, Q = rng.standard_normal((n, 1)), rng.standard_normal((200, 1))
    frac = np.mean((Q[:, 0] >= X.min()) & (Q[:, 0] <= X.max()))
    assert interpolation_probability(X, Q) == frac


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "points,queries,match",
    [
        (np.array([[0.0, np.nan]]), np.zeros((1, 2)), "points contain NaN"),
        (np.zeros((2, 2)), np.array([[np.inf, 0.0]]), "queries contain NaN or infinite"),
        (np.zeros((3, 2)), np.zeros((1, 3)), "dimension mismatch"),
        (np.zeros((0, 2)), np.zeros((1, 2)), "points is empty"),
        (np.zeros(3), np.zeros((1, 1)), r"reshape\(-1, 1\)"),
        (np.zeros((2, 2)), np.zeros(2), "queries must be a 2-D array"),
        (np.zeros((2, 2, 2)), np.zeros((1, 2)), "ndim=3"),
        (np.zeros((2, 0)), np.zeros((1, 0)), "no coordinates"),
        (np.zeros((2, 2), complex), np.zeros((1, 2)), "complex"),
        (np.array([["a", "b"]]), np.zeros((1, 2)), "numeric"),
    ],
)
def test_bad_input_raises(points, queries, match):
    with pytest.raises(ValueError, match=match):
        in_hull(points, queries)


def test_bad_arguments_raise():
    for rtol in (-1, 0.0, 0.5, True, "1e-9", float("nan")):
        with pytest.raises(ValueError, match=r"rtol must be a finite number > 0 and < 0\.01; the default is 1e-9"):
            in_hull(np.zeros((2, 2)), np.zeros((1, 2)), rtol=rtol)
    with pytest.raises(ValueError, match="fw_iter must be a non-negative int"):
        in_hull(np.zeros((2, 2)), np.zeros((1, 2)), fw_iter=-1)
    with pytest.raises(ValueError, match="cg_rounds must be a non-negative int"):
        in_hull(np.zeros((2, 2)), np.zeros((1, 2)), cg_rounds=2.5)
    with pytest.raises(ValueError, match="must be a positive int"):
        wendel_probability(0, 2)
    with pytest.raises(ValueError, match="must be a positive int"):
        interval_probability(2.5)
    with pytest.raises(ValueError, match="queries is empty"):
        interpolation_probability(np.zeros((2, 2)), np.zeros((0, 2)))
    res = in_hull(np.zeros((2, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="same points and queries"):
        res.verify(np.zeros((2, 2)), np.zeros((3, 2)))
