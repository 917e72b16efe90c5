"""Tests for helpers.clustering: brute force as the oracle on tiny instances, properties on random ones."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from helpers.clustering import (
    InfeasibleRadiusError,
    RadiusKMeans,
    RadiusKMeansResult,
    feasible_radius_bracket,
    kmeans_cost,
    max_half_diameter,
    monotone_bound,
    paper_sdp,
    radius_kmeans,
    radius_sdp_bound,
)

METHODS = ["exact", "paper", "sdp", "greedy"]
FAST = settings(max_examples=25, deadline=None, database=None, derandomize=True)


# --------------------------------------------------------------------------- oracle


def _growth_strings(n: int, k: int):
    """Every partition of range(n) into exactly k non-empty blocks, as a restricted growth string."""

    def rec(i: int, lab: list[int], used: int):
        if k - used > n - i:
            return
        if i == n:
            yield np.array(lab)
            return
        for a in range(min(used + 1, k)):
            lab.append(a)
            yield from rec(i + 1, lab, max(used, a + 1))
            lab.pop()

    yield from rec(0, [], 0)


def oracle_cost(X: np.ndarray, labels) -> float:
    """k-means cost written independently of the module: for each cluster,
    sum_i ||x_i - mean||^2 = (1 / (2 n_a)) sum_{i, j in a} ||x_i - x_j||^2 (pairwise form), by loops."""
    labels = np.asarray(labels)
    total = 0.0
    for a in set(labels.tolist()):
        members = [X[i] for i in range(len(X)) if labels[i] == a]
        total += sum(float(np.dot(p - q, p - q)) for p in members for q in members) / (2 * len(members))
    return total


def oracle_half_diameter(X: np.ndarray, labels) -> float:
    """Largest half-distance between two points of one cluster, by loops over pairs."""
    labels = np.asarray(labels)
    return max((float(np.linalg.norm(X[i] - X[j])) / 2 for i in range(len(X)) for j in range(len(X))
                if labels[i] == labels[j]), default=0.0)


def test_oracles_and_module_costs_on_hand_computed_values():
    X = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [10.0, 3.0], [10.0, 6.0]])
    labels = [0, 0, 1, 1, 1]
    # cluster 0: mean (1, 0), cost 1 + 1 = 2; cluster 1: mean (10, 3), cost 9 + 0 + 9 = 18
    assert oracle_cost(X, labels) == pytest.approx(20.0, rel=1e-15)
    assert kmeans_cost(X, labels) == pytest.approx(20.0, rel=1e-15)
    # half-diameters: 2 / 2 = 1 and 6 / 2 = 3
    assert oracle_half_diameter(X, labels) == 3.0 == max_half_diameter(X, labels)
    assert kmeans_cost(X, np.zeros(5, int)) == pytest.approx(oracle_cost(X, np.zeros(5, int)), rel=1e-12)


def brute_force(X: np.ndarray, k: int, r: float) -> float | None:
    """Optimal radius-constrained k-means cost by enumeration, or None when no partition fits."""
    dist = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    best = None
    for lab in _growth_strings(len(X), k):
        if (dist[lab[:, None] == lab[None, :]] > 2 * r).any():
            continue
        cost = oracle_cost(X, lab)
        best = cost if best is None else min(best, cost)
    return best


def tiny_instance(i: int) -> tuple[np.ndarray, int, float]:
    """Instance i: 6-8 points, k in {2, 3}, r half-way between two consecutive pair distances
    at or above the bracket's lower end, so that most radii need the method's own decision."""
    rng = np.random.default_rng(100 + i)
    n, k = int(rng.integers(6, 9)), int(rng.integers(2, 4))
    X = rng.normal(size=(n, 2))
    if i % 4 == 3:
        X[1] = X[0]  # a duplicate
    lo, hi = feasible_radius_bracket(X, k)
    half = np.unique(np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))) / 2
    mids = (half[:-1] + half[1:]) / 2
    mids = mids[(mids >= lo) & (mids <= hi)]
    return X, k, float(mids[rng.integers(len(mids))]) if len(mids) else hi


def assert_valid(X: np.ndarray, k: int, r: float, res: RadiusKMeansResult) -> None:
    assert res.labels.shape == (len(X),) and res.centers.shape == (k, X.shape[1])
    assert np.bincount(res.labels, minlength=k).min() >= 1 and res.labels.max() < k
    assert oracle_half_diameter(X, res.labels) <= r + 1e-9
    assert res.cost == pytest.approx(oracle_cost(X, res.labels), rel=1e-9, abs=1e-12)


# --------------------------------------------------------------------------- brute force agreement


@pytest.mark.parametrize("i", range(20))
def test_methods_against_brute_force(i):
    X, k, r = tiny_instance(i)
    opt = brute_force(X, k, r)
    costs = {}
    for method in METHODS:
        if opt is None:
            with pytest.raises(InfeasibleRadiusError):
                radius_kmeans(X, k, r, method=method)
            continue
        res = radius_kmeans(X, k, r, method=method)
        assert_valid(X, k, r, res)
        assert res.method.split("+")[0] == method
        assert res.cost >= opt - 1e-9 * max(1.0, opt)
        if res.lower_bound is not None:
            assert res.lower_bound <= opt + 1e-9
        costs[method] = res.cost
    if opt is not None:
        assert costs["exact"] == pytest.approx(opt, rel=1e-9, abs=1e-12)
        assert min(costs.values()) == pytest.approx(opt, rel=1e-9, abs=1e-12)


def test_tiny_instances_exercise_both_outcomes_inside_the_bracket():
    # Guards the test above: it must see feasible and infeasible radii that the bracket
    # alone does not decide.
    outcomes = set()
    for i in range(20):
        X, k, r = tiny_instance(i)
        lo, hi = feasible_radius_bracket(X, k)
        if lo <= r < hi:
            outcomes.add(brute_force(X, k, r) is None)
    assert outcomes == {True, False}


@FAST
@given(seed=st.integers(0, 10**6), n=st.integers(3, 7), k=st.integers(1, 3))
def test_bracket_claims_hold_both_ways(seed, n, k):
    k = min(k, n)
    X = np.random.default_rng(seed).normal(size=(n, 2))
    lo, hi = feasible_radius_bracket(X, k)
    assert 0 <= lo <= hi <= 2 * lo + 1e-12
    assert brute_force(X, k, max(hi, 1e-12)) is not None
    if lo > 0:
        below = lo * (1 - 1e-9)
        assert brute_force(X, k, below) is None
        with pytest.raises(InfeasibleRadiusError, match=r"bracket \["):
            radius_kmeans(X, k, below, method="greedy")


@FAST
@given(seed=st.integers(0, 10**6), n=st.integers(4, 9), k=st.integers(1, 3), frac=st.floats(0.0, 1.0))
def test_exact_matches_brute_force_and_the_bound_stays_below(seed, n, k, frac):
    X = np.random.default_rng(seed).normal(size=(n, 2))
    lo, hi = feasible_radius_bracket(X, k)
    r = max(lo + frac * (hi - lo), 1e-6)
    opt = brute_force(X, k, r)
    if opt is None:
        with pytest.raises(InfeasibleRadiusError):
            radius_kmeans(X, k, r, method="exact")
        return
    assert radius_kmeans(X, k, r, method="exact").cost == pytest.approx(opt, rel=1e-9, abs=1e-12)
    bound = radius_sdp_bound(X, k, r)
    assert bound.lower_bound is not None and bound.lower_bound <= opt + 1e-9


# --------------------------------------------------------------------------- properties on random data


@st.composite
def instances(draw, max_n: int):
    n = draw(st.integers(2, max_n))
    k = draw(st.integers(1, min(n, 6)))
    X = np.random.default_rng(draw(st.integers(0, 10**6))).normal(size=(n, draw(st.integers(1, 3))))
    n_dup = draw(st.integers(0, n - 1))
    X[:n_dup] = X[n - 1]  # copies of one point
    return X, k, draw(st.floats(0.0, 1.5))


def solve_in_bracket(inst, method):
    """Solve at a radius drawn across the feasibility bracket: infeasible only below its top end,
    valid whenever it returns. Returns the result, or None when infeasible."""
    X, k, frac = inst
    lo, hi = feasible_radius_bracket(X, k)
    r = max(lo + frac * (hi - lo), 1e-9)
    try:
        res = radius_kmeans(X, k, r, method=method)
    except InfeasibleRadiusError:
        assert r < hi
        return None
    assert_valid(X, k, r, res)
    return res


@FAST
@given(inst=instances(max_n=40))
def test_greedy_keeps_the_radius_and_never_fails_above_the_bracket(inst):
    solve_in_bracket(inst, "greedy")


@settings(max_examples=10, deadline=None, database=None, derandomize=True)
@given(inst=instances(max_n=18))
def test_sdp_keeps_the_radius_and_its_bound_is_below_its_cost(inst):
    res = solve_in_bracket(inst, "sdp")
    if res is not None:
        assert res.lower_bound is not None and res.lower_bound <= res.cost + 1e-9


# --------------------------------------------------------------------------- specific behaviour


def test_auto_picks_by_size():
    rng = np.random.default_rng(0)
    for n, expected in [(8, "exact"), (30, "sdp"), (120, "greedy")]:
        X = rng.normal(size=(n, 2))
        r = feasible_radius_bracket(X, 3)[1]
        assert radius_kmeans(X, 3, r).method == expected


def test_planted_blobs_are_recovered_and_the_sdp_is_tight():
    rng = np.random.default_rng(1)
    centers = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    truth = np.repeat(np.arange(3), [5, 8, 11])
    X = centers[truth] + rng.uniform(-0.5, 0.5, size=(len(truth), 2))
    r = 2.0  # cluster diameters < 2r < separation
    for method in METHODS[1:]:
        res = radius_kmeans(X, 3, r, method=method)
        assert adjusted_rand_score(truth, res.labels) == 1.0
    bound = radius_sdp_bound(X, 3, r)
    z = np.eye(3)[truth]
    assert np.abs(bound.Z - z @ np.diag(1 / z.sum(0)) @ z.T).max() < 1e-3
    assert np.linalg.matrix_rank(bound.Z, tol=1e-3) == 3
    assert bound.lower_bound == pytest.approx(kmeans_cost(X, truth), rel=1e-3)


def test_constrained_lloyd_never_increases_the_cost():
    rng = np.random.default_rng(2)
    X = np.vstack([rng.normal(size=(25, 2)), rng.normal(3, 0.5, size=(10, 2))])
    r = np.mean(feasible_radius_bracket(X, 5))
    res = radius_kmeans(X, 5, r, method="sdp")
    costs = res.details["lloyd_costs"]
    assert all(b <= a * (1 + 1e-12) for a, b in zip(costs, costs[1:]))
    assert res.cost <= costs[-1] * (1 + 1e-12)  # local search only improves on Lloyd


def test_paper_reassignment_is_nearest_centroid_without_conflicts():
    X = np.random.default_rng(3).normal(size=(12, 2))
    r = 10 * np.abs(X).max()  # no pair conflicts
    res = radius_kmeans(X, 3, r, method="paper")
    mu = res.details["step3_centroids"]
    nearest = np.argmin(((X[:, None] - mu[None]) ** 2).sum(-1), axis=1)
    # this instance keeps every nearest-centroid cell non-empty, so the reassignment is exercised
    assert np.bincount(nearest, minlength=3).min() >= 1
    assert np.array_equal(res.labels, nearest)


def test_paper_sdp_is_block_symmetric():
    # The k-block relaxation is invariant under permuting blocks, so its optimum is the
    # block average b_hat = (2 - k) / k everywhere, which tells the rounding nothing.
    X = np.random.default_rng(4).normal(size=(12, 2))
    k = 3
    sdp = paper_sdp(X, k, feasible_radius_bracket(X, k)[1])
    assert sdp.status.startswith("optimal")
    assert np.abs(sdp.b_hat - (2 - k) / k).max() < 1e-3


def test_paper_encoding_gives_the_kmeans_cost():
    # The paper's lifted objective sum_a <D, Q_a> / (8 n_a) with Q_a = (b_a + 1)(b_a + 1)^T.
    rng = np.random.default_rng(5)
    X, labels = rng.normal(size=(10, 2)), np.r_[0, 1, 2, rng.integers(0, 3, size=7)]
    D = ((X[:, None] - X[None]) ** 2).sum(-1)
    total = 0.0
    for a in range(3):
        b = np.where(labels == a, 1.0, -1.0)
        Q = np.outer(b, b) + 1 + b[:, None] + b[None, :]
        assert np.array_equal(Q, 4 * np.outer(labels == a, labels == a))
        total += (D * Q).sum() / (8 * (labels == a).sum())
    assert total == pytest.approx(kmeans_cost(X, labels))


def test_certified_bound_agrees_across_solvers():
    X = np.random.default_rng(6).normal(size=(15, 2))
    r = np.mean(feasible_radius_bracket(X, 3))
    scs, clarabel = radius_sdp_bound(X, 3, r), radius_sdp_bound(X, 3, r, solver="CLARABEL", eps=1e-8)
    assert scs.lower_bound <= clarabel.primal_value + 1e-6
    assert scs.lower_bound == pytest.approx(clarabel.lower_bound, rel=1e-2)


def test_certified_bound_stays_valid_when_the_solver_stops_early():
    for seed in range(3):
        X = np.random.default_rng(20 + seed).normal(size=(10, 2))
        r = 1.2 * feasible_radius_bracket(X, 3)[1]
        opt = radius_kmeans(X, 3, r, method="exact").cost
        rough = radius_sdp_bound(X, 3, r, eps=1e-2, max_iters=30)
        assert rough.lower_bound is not None and rough.lower_bound <= opt + 1e-9


def test_monotone_bound_is_a_valid_non_increasing_bound():
    """max over r' >= r of the certified bounds stays below the exact optimum at r (the
    optimum is non-increasing in r), is non-increasing, and never lowers a bound."""
    rng = np.random.default_rng(7)
    for _ in range(3):
        X = rng.normal(size=(10, 2))
        lo, hi = feasible_radius_bracket(X, 3)
        radii = np.linspace(lo, 1.3 * hi, 6)[::-1]  # any order
        bounds = [radius_sdp_bound(X, 3, r, eps=1e-2, max_iters=200).lower_bound for r in radii]
        tight = monotone_bound(radii, bounds)
        order = np.argsort(radii)
        assert np.all(np.diff(tight[order][~np.isnan(tight[order])]) <= 1e-12)
        for r, b, t in zip(radii, bounds, tight):
            if b is not None:
                assert t >= b
            try:
                opt = radius_kmeans(X, 3, r, method="exact").cost
            except InfeasibleRadiusError:
                continue
            assert np.isnan(t) or t <= opt + 1e-9
    assert np.isnan(monotone_bound([0.1, 0.2], [None, float("nan")])).all()
    with pytest.raises(ValueError):
        monotone_bound([0.1, 0.2], [1.0])


def test_greedy_falls_back_to_the_colouring_milp_and_says_so():
    rng = np.random.default_rng(115)  # found by search: one start's greedy candidates fail here
    n, k = int(rng.integers(10, 25)), int(rng.integers(3, 6))
    X = rng.normal(size=(n, 2))
    lo, hi = feasible_radius_bracket(X, k)
    r = lo + 0.3 * (hi - lo)
    res = radius_kmeans(X, k, r, method="greedy", n_init=1)
    assert res.method == "greedy+milp"
    assert_valid(X, k, r, res)


def test_below_the_bracket_the_sdp_is_infeasible_and_the_error_gives_the_bracket():
    X = np.random.default_rng(7).normal(size=(20, 2))
    lo, hi = feasible_radius_bracket(X, 4)
    assert radius_sdp_bound(X, 4, lo * 0.99).status == "infeasible"
    with pytest.raises(InfeasibleRadiusError, match=f"{lo:.6g}, {hi:.6g}") as err:
        radius_kmeans(X, 4, lo * 0.99, method="sdp")
    assert err.value.bracket == (lo, hi)


def test_duplicates_and_few_distinct_points():
    X = np.vstack([np.zeros((30, 2)), np.ones((3, 2)), [[5.0, 5.0]]])
    assert feasible_radius_bracket(X, 3) == (0.0, 0.0)
    for method in ["greedy", "sdp"]:
        res = radius_kmeans(X, 4, 0.1, method=method)  # more clusters than distinct points
        assert_valid(X, 4, 0.1, res)
        assert res.cost == pytest.approx(0.0, abs=1e-12)
    res = radius_kmeans(np.zeros((9, 3)), 3, 1.0, method="exact")
    assert_valid(np.zeros((9, 3)), 3, 1.0, res)


def test_duplicates_do_not_steal_centers():
    # The abstract's robustness claim: 400 copies piled on one blob make KMeans split that blob
    # and merge the two others; the radius forbids the merge, so every blob keeps its center.
    rng = np.random.default_rng(8)
    X = np.vstack([rng.normal(c, 0.3, size=(15, 2)) for c in ([0, 0], [4, 0], [2, 3])])
    truth = np.repeat(np.arange(3), 15)
    Xdup = np.vstack([X, np.repeat([[-0.6, 0.0], [0.6, 0.0]], 200, axis=0)])
    kmeans = KMeans(3, n_init=10, random_state=0).fit(Xdup)
    assert adjusted_rand_score(truth, kmeans.labels_[:45]) < 0.9
    res = radius_kmeans(Xdup, 3, 1.5, method="greedy")
    assert adjusted_rand_score(truth, res.labels[:45]) == 1.0


def test_edge_sizes():
    X = np.random.default_rng(9).normal(size=(5, 2))
    for method in METHODS:
        res = radius_kmeans(X, 5, 0.01, method=method)  # k = n: singletons
        assert res.cost == 0.0 and sorted(res.labels) == list(range(5))
    half_diam = max_half_diameter(X, np.zeros(5, int))
    assert radius_kmeans(X, 1, half_diam, method="greedy").cost == pytest.approx(kmeans_cost(X, np.zeros(5, int)))
    with pytest.raises(InfeasibleRadiusError):
        radius_kmeans(X, 1, half_diam * (1 - 1e-9), method="exact")


def test_same_seed_same_result():
    X = np.random.default_rng(10).normal(size=(60, 2))
    r = np.mean(feasible_radius_bracket(X, 6))
    a, b = (radius_kmeans(X, 6, r, method="greedy", seed=3) for _ in range(2))
    assert np.array_equal(a.labels, b.labels)


# --------------------------------------------------------------------------- bad input


X_OK = np.random.default_rng(11).normal(size=(10, 2))


@pytest.mark.parametrize(
    ("X", "k", "r", "kwargs", "match"),
    [
        (X_OK, 0, 1.0, {}, "k .* must be >= 1"),
        (X_OK, 11, 1.0, {}, "n_samples=10 should be >= n_clusters=11"),
        (X_OK, 2.5, 1.0, {}, "must be an integer"),
        (X_OK, True, 1.0, {}, "must be an integer"),
        (X_OK, 2, 0.0, {}, "r must be positive"),
        (X_OK, 2, -1.0, {}, "r must be positive"),
        (X_OK, 2, np.nan, {}, "r must be positive and finite"),
        (X_OK, 2, np.inf, {}, "r must be positive and finite"),
        (X_OK, 2, "big", {}, "r must be a positive number"),
        (np.r_[X_OK, [[np.nan, 0]]], 2, 1.0, {}, r"NaN or infinite values \(rows \[10\]"),
        (np.r_[X_OK, [[np.inf, 0]]], 2, 1.0, {}, "NaN or infinite"),
        (X_OK[:, 0], 2, 1.0, {}, r"2-D .*reshape\(-1, 1\)"),
        (X_OK[None], 2, 1.0, {}, "2-D"),
        (np.zeros((0, 2)), 1, 1.0, {}, "at least one sample"),
        (X_OK + 1j, 2, 1.0, {}, "complex"),
        ([["a", "b"]], 1, 1.0, {}, "numeric"),
        (X_OK, 2, 1.0, {"method": "kmeans"}, "method must be one of"),
        (X_OK, 2, 1.0, {"n_init": 0}, "n_init must be a positive int"),
        (X_OK, 2, 1.0, {"seed": -1}, "seed must be None or a non-negative int"),
        (X_OK, 2, 1.0, {"seed": 1.5}, "seed must be None or a non-negative int"),
        (X_OK, 2, 1.0, {"time_limit": 0}, r"time_limit must be a finite number > 0 \(seconds\)"),
        (np.zeros((15, 2)), 2, 1.0, {"method": "exact"}, "n <= 14"),
        (np.zeros((61, 2)), 2, 1.0, {"method": "paper"}, "n <= 60.*'sdp' or 'greedy'"),
    ],
)
def test_bad_input_raises_a_clear_error(X, k, r, kwargs, match):
    with pytest.raises(ValueError, match=match):
        radius_kmeans(X, k, r, **kwargs)


def test_bracket_checks_its_input():
    with pytest.raises(ValueError, match="n_clusters"):
        feasible_radius_bracket(X_OK, 0)


# --------------------------------------------------------------------------- scikit-learn


@parametrize_with_checks([RadiusKMeans(method="greedy"), RadiusKMeans()])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_estimator_attributes_and_default_radius():
    X = np.random.default_rng(12).normal(size=(40, 2))
    est = RadiusKMeans(n_clusters=4).fit(X)
    assert est.radius_ == feasible_radius_bracket(X, 4)[1]
    assert est.method_ == "sdp" and est.lower_bound_ <= est.inertia_
    assert max_half_diameter(X, est.labels_) <= est.radius_ + 1e-9
    assert est.predict(X).shape == (40,)
    with pytest.raises(InfeasibleRadiusError):
        RadiusKMeans(n_clusters=4, radius=feasible_radius_bracket(X, 4)[0] / 2).fit(X)


def test_estimator_default_radius_with_identical_points():
    est = RadiusKMeans(n_clusters=3).fit(np.ones((10, 2)))
    assert est.radius_ > 0 and est.inertia_ == 0.0 and len(set(est.labels_)) == 3


# --------------------------------------------------------------------------- triangle cuts


def _all_triangles(n: int) -> np.ndarray:
    return np.array([(i, j, l) for i in range(n) for j in range(n) for l in range(j + 1, n) if i not in (j, l)])


def test_triangle_separation_matches_enumeration():
    from helpers.clustering import _triangle_violations

    A = np.random.default_rng(0).random((9, 9))
    Z = A + A.T
    tri = _all_triangles(9)
    i, j, l = tri.T
    v = Z[i, j] + Z[i, l] - Z[i, i] - Z[j, l]
    top = _triangle_violations(Z, 25, chunk=4)  # chunks smaller than n
    assert sorted(map(tuple, top)) == sorted(map(tuple, tri[np.argsort(-v)[:25]]))
    assert len(_triangle_violations(Z, 10**6, tol=0.5)) == int((v > 0.5).sum())


def test_cut_operator_is_the_cuts_inner_product():
    from helpers.clustering import _cut_operator

    rng = np.random.default_rng(1)
    n = 7
    A = rng.normal(size=(n, n))
    Z = A + A.T
    P = rng.random((n, n))
    tri = _all_triangles(n)[rng.choice(len(_all_triangles(n)), 20, replace=False)]
    mu = rng.random(20)
    by_loops = sum(P[a, b] * (Z[a, a] - Z[a, b]) for a in range(n) for b in range(n))
    by_loops += sum(m * (Z[i, i] + Z[j, l] - Z[i, j] - Z[i, l]) for m, (i, j, l) in zip(mu, tri))
    G = _cut_operator(n, P, tri, mu)
    assert np.allclose(G, G.T) and np.sum(G * Z) == pytest.approx(by_loops, rel=1e-12)


def _partition_matrix(labels: np.ndarray) -> np.ndarray:
    same = labels[:, None] == labels[None, :]
    return same / np.bincount(labels)[labels][:, None]


def test_partition_matrices_satisfy_the_cuts():
    # the cuts are valid: no partition matrix violates a pair or triangle inequality
    for labels in _growth_strings(7, 3):
        Z = _partition_matrix(labels)
        i, j, l = _all_triangles(7).T
        assert (Z - np.diag(Z)[:, None] <= 1e-15).all()
        assert (Z[i, j] + Z[i, l] - Z[i, i] - Z[j, l] <= 1e-15).all()


def test_cut_bound_valid_and_tighter_than_the_plain_relaxation():
    # brute force (exact method) on tiny instances: cut_rounds never certifies above the optimum,
    # and gets at least as close to it as the plain relaxation
    closer = 0
    for seed in range(4):
        X = np.random.default_rng(40 + seed).normal(size=(10, 2))
        r = 1.2 * feasible_radius_bracket(X, 3)[1]
        opt = radius_kmeans(X, 3, r, method="exact").cost
        plain = radius_sdp_bound(X, 3, r, eps=1e-6)
        cut = radius_sdp_bound(X, 3, r, eps=1e-6, cut_rounds=5)
        assert cut.lower_bound <= opt + 1e-9
        assert cut.lower_bound >= plain.lower_bound - 1e-4 * opt
        closer += opt - cut.lower_bound < 0.5 * (opt - plain.lower_bound)
        rough = radius_sdp_bound(X, 3, r, eps=1e-2, max_iters=30, cut_rounds=2)  # stopped early
        assert rough.lower_bound is None or rough.lower_bound <= opt + 1e-9
    assert closer >= 2


def test_cut_rounds_reach_the_full_triangle_relaxation():
    # oracle: Clarabel with every pair and triangle inequality written out (n = 9)
    import cvxpy as cp

    X = np.random.default_rng(7).normal(size=(9, 2))
    r = 1.5 * feasible_radius_bracket(X, 3)[1]
    D2 = ((X[:, None] - X[None]) ** 2).sum(-1)
    C = np.sqrt(D2) > 2 * r
    Z = cp.Variable((9, 9), symmetric=True)
    i, j, l = _all_triangles(9).T
    cons = [Z >> 0, cp.sum(Z, axis=1) == 1, cp.trace(Z) == 3, Z >= 0, Z[C] == 0,
            cp.reshape(cp.diag(Z), (9, 1), order="C") @ np.ones((1, 9)) - Z >= 0,
            cp.diag(Z)[i] + Z[j, l] - Z[i, j] - Z[i, l] >= 0]
    full = cp.Problem(cp.Minimize(0.5 * cp.sum(cp.multiply(D2, Z))), cons)
    full.solve(solver="CLARABEL")
    cut = radius_sdp_bound(X, 3, r, solver="CLARABEL", eps=1e-8, cut_rounds=20, cuts_per_round=30)
    assert cut.lower_bound <= full.value + 1e-6
    assert cut.lower_bound == pytest.approx(full.value, rel=1e-5)
    assert cut.cuts < len(i)  # separation needed only part of the triangles


def test_cut_rounds_bad_input():
    X = np.random.default_rng(0).normal(size=(8, 2))
    for kw in ({"cut_rounds": -1}, {"cut_rounds": 1.5}, {"cut_rounds": 1, "cuts_per_round": 0}):
        with pytest.raises(ValueError):
            radius_sdp_bound(X, 2, 5.0, **kw)


def test_cut_rounds_keep_the_last_solved_round_when_a_round_fails(monkeypatch):
    import helpers.clustering as hc

    X = np.random.default_rng(3).normal(size=(10, 2))
    r = 1.2 * feasible_radius_bracket(X, 3)[1]
    solve, calls = hc._sdp_solve, []

    def failing_second(prob, *args):
        calls.append(1)
        return ("solver_error", 0.0) if len(calls) == 2 else solve(prob, *args)

    monkeypatch.setattr(hc, "_sdp_solve", failing_second)
    out = radius_sdp_bound(X, 3, r, cut_rounds=3, progress=False)
    assert len(calls) == 2
    first = radius_sdp_bound(X, 3, r, cut_rounds=0)
    assert out.status in ("optimal", "optimal_inaccurate")
    assert out.rounds == 0 and out.cuts == 0 and out.lower_bound is not None
    assert out.lower_bound >= first.lower_bound - 1e-3 * abs(first.lower_bound)  # pair rows only
