"""Tests for helpers.peng_wei_sdp: the certified bound against exhaustive search, feasible
costs, monotonicity in r, and SCS / Clarabel on the same relaxation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_moons

from helpers._checks import ParameterError
from helpers.clustering import (
    InfeasibleRadiusError,
    feasible_radius_bracket,
    monotone_bound,
    radius_kmeans,
    radius_sdp_bound,
)
from helpers.peng_wei_sdp import bound_path, certify_dual, peng_wei_bound


def exact_cost(X, k, r):
    """Optimal radius-constrained cost by exhaustive dynamic programming (tested against
    enumeration of all partitions in test_clustering.py), or None when infeasible."""
    try:
        return radius_kmeans(X, k, r, method="exact").cost
    except InfeasibleRadiusError:
        return None


def tiny(seed, n, d=2):
    return np.random.default_rng(seed).normal(size=(n, d))


@pytest.mark.parametrize("seed", range(12))
def test_bound_never_exceeds_the_exact_optimum_on_tiny_instances(seed):
    g = np.random.default_rng(100 + seed)
    n, k = int(g.integers(5, 10)), int(g.integers(2, 4))
    X = tiny(seed, n)
    lo, hi = feasible_radius_bracket(X, k)
    r = lo + g.uniform(0.0, 1.2) * (hi - lo) if hi > 0 else 1.0
    opt = exact_cost(X, k, r)
    # a short run and a long run: both certified, whatever the accuracy
    for iters in (5, 40, 2000):
        out = peng_wei_bound(X, k, r, tol=1e-6, max_iters=iters, check_every=5)
        if opt is None:
            continue
        assert out.status != "infeasible"  # a certificate of infeasibility is never wrong
        assert out.lower_bound <= opt + 1e-9, (iters, out.lower_bound, opt)
    if opt is not None:
        # the long run is tight up to the relaxation's own gap: never far below SCS
        scs = radius_sdp_bound(X, k, r, eps=1e-6)
        assert out.lower_bound >= scs.primal_value - 2e-3 * max(1.0, abs(scs.primal_value))


@pytest.mark.parametrize("seed", range(6))
def test_any_dual_point_gives_a_valid_bound(seed):
    """certify_dual is weak duality: random (y, B), even absurd ones, never beat the optimum."""
    g = np.random.default_rng(seed)
    X = tiny(200 + seed, 7)
    k = 3
    lo, hi = feasible_radius_bracket(X, k)
    r = hi
    opt = exact_cost(X, k, r)
    assert opt is not None  # r = hi is always feasible
    D2 = ((X[:, None] - X[None]) ** 2).sum(-1)
    for scale in (0.01, 1.0, 100.0):
        y = g.normal(scale=scale, size=7)
        B = g.normal(scale=scale, size=(7, 7))
        assert certify_dual(X, k, r, y, B) <= opt + 1e-9
        # a dual point near the optimum's: y from the row means of D / 2
        y2 = D2.mean(1) / 2 - D2.mean() / 4
        assert certify_dual(X, k, r, y2 + 0 * y, np.maximum(B, 0)) <= opt + 1e-9


@pytest.mark.parametrize("n", [60, 150])
def test_bound_is_below_feasible_costs_on_larger_instances(n):
    X = make_moons(n, noise=0.05, random_state=n)[0]
    k = 8
    lo, hi = feasible_radius_bracket(X, k)
    for r in (hi, 0.5 * (lo + hi) + 0.25 * (hi - lo)):
        try:
            res = radius_kmeans(X, k, r, method="greedy", seed=0)
        except InfeasibleRadiusError:
            continue
        for iters in (20, 300):
            out = peng_wei_bound(X, k, r, max_iters=iters)
            assert out.lower_bound <= res.cost + 1e-9
            assert out.status != "infeasible"


def test_agreement_with_scs_and_clarabel_on_small_instances():
    """All three certify bounds on the same SDP. Stated tolerance: at tol=1e-4 the ADMM
    bound is within 0.5 % of Clarabel's (eps 1e-8) optimum, and never above it."""
    for seed in range(3):
        X = make_moons(30, noise=0.05, random_state=seed)[0]
        lo, hi = feasible_radius_bracket(X, 4)
        r = 0.5 * (lo + hi) + 0.25 * (hi - lo)
        admm = peng_wei_bound(X, 4, r, tol=1e-4, max_iters=5000)
        scs = radius_sdp_bound(X, 4, r, eps=1e-6)
        ref = radius_sdp_bound(X, 4, r, solver="CLARABEL", eps=1e-8)
        if ref.status != "optimal":
            continue
        opt = ref.primal_value
        assert admm.lower_bound <= opt + 1e-6 * max(1.0, opt)
        assert admm.lower_bound >= opt * (1 - 5e-3), (admm.lower_bound, opt)
        assert abs(admm.lower_bound - scs.lower_bound) <= 5e-3 * opt


def test_monotone_in_r_over_a_warm_started_path():
    X = make_moons(80, noise=0.05, random_state=3)[0]
    k = 8
    lo, hi = feasible_radius_bracket(X, k)
    radii = np.linspace(hi, 2 * hi, 5)
    path = bound_path(X, k, radii, tol=1e-3, max_iters=400)
    raw = [path[float(r)].lower_bound for r in radii]
    tight = monotone_bound(radii, raw)
    for i, r in enumerate(radii):
        # the bound at r is the maximum over the computed r' >= r ...
        assert tight[i] == max(raw[j] for j in range(len(radii)) if radii[j] >= r)
        # ... and still valid there
        res = radius_kmeans(X, k, float(r), method="greedy", seed=0)
        assert tight[i] <= res.cost + 1e-9
    assert np.all(np.diff(tight) <= 0)  # non-increasing in r


def test_warm_start_reuses_the_previous_solve():
    X = make_moons(60, noise=0.05, random_state=1)[0]
    lo, hi = feasible_radius_bracket(X, 6)
    cold = peng_wei_bound(X, 6, 1.05 * hi, tol=1e-3)
    warm = peng_wei_bound(X, 6, 1.05 * hi, tol=1e-3, warm_start=cold.state)
    assert warm.iterations < cold.iterations
    assert warm.lower_bound >= cold.lower_bound * (1 - 2e-3)


def test_infeasible_radius_is_certified_below_the_bracket():
    X = make_moons(40, noise=0.05, random_state=0)[0]
    lo, hi = feasible_radius_bracket(X, 4)
    out = peng_wei_bound(X, 4, 0.5 * lo, max_iters=3000)
    assert out.status == "infeasible"
    # the certificate: a bound above the one-cluster cost, which no partition exceeds
    assert out.lower_bound > ((X - X.mean(0)) ** 2).sum()


def test_planted_blobs_give_a_tight_bound():
    g = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    X = np.concatenate([c + 0.3 * g.normal(size=(8, 2)) for c in centers])
    res = radius_kmeans(X, 3, 3.0, method="greedy", seed=0)
    out = peng_wei_bound(X, 3, 3.0, tol=1e-6, max_iters=5000)
    assert res.cost * (1 - 1e-3) <= out.lower_bound <= res.cost + 1e-9


def test_small_edge_cases_and_bad_input():
    assert peng_wei_bound(np.zeros((1, 2)), 1, 1.0).lower_bound == 0.0
    X = np.array([[0.0], [1.0], [3.0]])
    assert peng_wei_bound(X, 3, 1.0).lower_bound <= 1e-9  # k = n: the optimum is 0
    with pytest.raises(ParameterError):
        peng_wei_bound(X, 2, -1.0)
    with pytest.raises(ParameterError):
        peng_wei_bound(X, 2, 1.0, tol=0)
    with pytest.raises(ParameterError):
        certify_dual(X, 2, 1.0, np.zeros(2), np.zeros((3, 3)))


def test_torch_in_torch_out():
    torch = pytest.importorskip("torch")
    X = torch.tensor([[0.0, 0.0], [0.0, 1.0], [5.0, 0.0], [5.0, 1.0]], dtype=torch.float64)
    out = peng_wei_bound(X, 2, 1.0)
    assert isinstance(out.Z, torch.Tensor) and out.Z.shape == (4, 4)


@pytest.mark.parametrize("seed", range(4))
def test_single_and_double_precision_iterates_both_certify_below_the_optimum(seed):
    """The iterates' precision changes the dual point, never the certificate's validity."""
    g = np.random.default_rng(300 + seed)
    n, k = int(g.integers(6, 10)), int(g.integers(2, 4))
    X = tiny(400 + seed, n)
    lo, hi = feasible_radius_bracket(X, k)
    r = hi * g.uniform(1.0, 1.3)
    opt = exact_cost(X, k, r)
    assert opt is not None  # r = hi is feasible, and so is any larger radius
    for precision in ("single", "double"):
        for adapt_rho in (False, True):
            for iters in (3, 30, 1000):
                out = peng_wei_bound(X, k, r, tol=1e-4, max_iters=iters, check_every=3,
                                     precision=precision, adapt_rho=adapt_rho)
                assert out.status != "infeasible"
                assert out.lower_bound <= opt + 1e-9, (precision, adapt_rho, iters, out.lower_bound, opt)
    # a long single-precision run is still tight: within 0.5 % of the double-precision one
    single = peng_wei_bound(X, k, r, tol=1e-4, max_iters=3000, precision="single")
    double = peng_wei_bound(X, k, r, tol=1e-6, max_iters=3000, precision="double")
    assert single.lower_bound >= double.lower_bound - 5e-3 * max(1.0, abs(double.lower_bound))


def _fan_minimum_by_cvxpy(M, k):
    """min <M, Z> over {Z 1 = 1, tr Z = k, 0 <= Z <= I} by Clarabel: the certificate's oracle."""
    cp = pytest.importorskip("cvxpy")
    n = len(M)
    Z = cp.Variable((n, n), symmetric=True)
    cons = [Z @ np.ones(n) == 1, cp.trace(Z) == k, Z >> 0, np.eye(n) - Z >> 0]
    prob = cp.Problem(cp.Minimize(cp.trace(M @ Z)), cons)
    prob.solve(solver="CLARABEL")
    return prob.value


@pytest.mark.parametrize("seed", range(4))
def test_certificate_is_the_exact_minimum_over_the_spectral_set(seed):
    """certify_dual = min over {Z 1 = 1, tr Z = k, 0 <= Z <= I} of <D/2 - B, Z> (up to the rounding
    allowance), and never below the older 1'y + k lambda_min bound, whatever y."""
    g = np.random.default_rng(500 + seed)
    n, k = 7, int(g.integers(1, 5))
    X = tiny(600 + seed, n)
    r = 0.6 * np.ptp(X, 0).max()
    B = np.abs(g.normal(size=(n, n)))
    B = B + B.T
    D2 = ((X[:, None] - X[None]) ** 2).sum(-1)
    conflicts = np.sqrt(D2) > 2 * r
    lb = certify_dual(X, k, r, np.zeros(n), B)
    ref = _fan_minimum_by_cvxpy(D2 / 2 - B, k)
    assert abs(lb - ref) <= 1e-5 * max(1.0, abs(ref)), (lb, ref)
    for _ in range(5):
        y = g.normal(size=n)
        M = D2 / 2 - np.where(conflicts, B, np.maximum(B, 0)) - (y[:, None] + y[None, :]) / 2
        older = y.sum() + k * np.linalg.eigvalsh(M)[0]
        assert lb >= older - 1e-9 * max(1.0, abs(older))


def test_bad_precision_and_penalty_are_rejected():
    X = np.array([[0.0], [1.0], [3.0]])
    with pytest.raises(ParameterError):
        peng_wei_bound(X, 2, 1.0, precision="half")
    with pytest.raises(ParameterError):
        peng_wei_bound(X, 2, 1.0, rho0=0.0)


def test_time_limit_leaves_room_for_the_last_certification(monkeypatch):
    """With a certification that takes 0.2 s, the answer still comes within the limit: the
    solver stops while one more iteration and certification would not fit."""
    import time

    import helpers.peng_wei_sdp as pw

    real = pw._certify

    def slow(*args):
        time.sleep(0.2)
        return real(*args)

    monkeypatch.setattr(pw, "_certify", slow)
    X = make_moons(120, noise=0.05, random_state=0)[0]
    # a check at every iteration, so that the certification's time is known from the first
    out = pw.peng_wei_bound(X, 8, 0.5, tol=1e-12, time_limit=1.0, check_every=1)
    assert out.status == "time_limit" and out.seconds <= 1.0 + 0.1, out.seconds


def test_time_limit_certifies_the_last_iterate_at_once():
    X = make_moons(120, noise=0.05, random_state=0)[0]
    k, r = 8, 0.5
    res = radius_kmeans(X, k, r, method="greedy", seed=0)
    out = peng_wei_bound(X, k, r, time_limit=1e-6, check_every=50)
    assert out.status == "time_limit"
    assert out.iterations == 1 and len(out.history) == 1  # not 50 iterations later
    assert out.lower_bound <= res.cost + 1e-9
