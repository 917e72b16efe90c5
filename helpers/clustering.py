r"""Radius-constrained k-means: k-means with a hard bound on every cluster's diameter.

The problem
-----------
Given points :math:`x_1, \dots, x_n \in \mathbb R^d`, a number of clusters :math:`k` and a
radius :math:`r > 0`, find a partition into :math:`k` non-empty clusters :math:`C_1..C_k`
that minimises the k-means cost

.. math::

    J = \sum_a \sum_{i \in C_a} \|x_i - \mu_a\|^2
      = \sum_a \frac{1}{2|C_a|} \sum_{i, j \in C_a} D_{ij},
    \qquad D_{ij} = \|x_i - x_j\|^2,

subject to :math:`\|x_i - x_j\| \le 2r` whenever :math:`i` and :math:`j` share a cluster
(Humayun, Balestriero, Kyrillidis, Baraniuk, "No More Than 6ft Apart", ICASSP 2022,
arXiv:2203.02502). The radius bounds *half the diameter* of each cluster; it does not bound
the distance from a point to its centroid (that can reach :math:`2r(n_a - 1)/n_a`).

Two points farther apart than :math:`2r` *conflict*. Feasibility is therefore a graph
question: the partition exists iff the conflict graph can be coloured with at most
:math:`k` colours (when :math:`n \ge k`, singletons can be split off to make exactly
:math:`k` non-empty clusters).

Methods of :func:`radius_kmeans`
--------------------------------
``"exact"``  (n <= 14)
    Dynamic programming over subsets: the cluster of the lowest-indexed point is some
    conflict-free subset, the rest is split recursively; :math:`O(k\,3^n)` time. Optimal, and
    exhaustive, so it decides feasibility exactly.
``"paper"``  (n <= 60)
    The paper's pipeline: its k-block SDP over :math:`\pm1` indicators (outer products,
    cardinalities fixed to n/k, RLT cuts; :func:`paper_sdp`), then its "linear assignment
    with quadratic constraints" as a MILP in which the quadratic constraint becomes conflict
    cuts :math:`P_{ia} + P_{ja} \le 1`, then centroids, then the same MILP on unsquared
    distances to them. A heuristic: the SDP is invariant under permuting its blocks, and its
    optimum carries no cluster information (:func:`paper_sdp`), so the MILPs do the work.
``"sdp"``
    The label-free Peng-Wei SDP with the radius as a zero pattern (:func:`radius_sdp_bound`):
    a certified lower bound and an infeasibility certificate. Its solution is rounded on the
    rows of Z, then improved by a constrained Lloyd loop and local search. A heuristic with a
    bound.
``"greedy"``
    Multi-start farthest-first seeding, a most-constrained-first (DSatur-like) assignment and
    local search (single-point moves with the exact cost change, and pair swaps). Fast; no
    bound. Distances are held as an n x n matrix, so memory grows as :math:`n^2`.
``"auto"``
    ``"exact"`` for n <= 12, ``"sdp"`` for n <= 80, else ``"greedy"``.

Certificates and fallbacks
--------------------------
Infeasibility (:class:`InfeasibleRadiusError`) is proved by the farthest-first bracket
(:func:`feasible_radius_bracket`), an infeasible Peng-Wei SDP, a conflict clique of k+1
points, exhaustive search, or an infeasible MILP; the error names which. When a heuristic
finds no feasible partition, the bracket's partition is used when r >= hi, and otherwise an
exact MILP colouring of the conflict graph decides; the method name says so (``"sdp+bracket"``,
``"greedy+milp"``, ``"sdp+milp"``). If that MILP hits its time limit,
:class:`RadiusUndecidedError` is raised. Other explicit fallbacks: ``"paper+flat-scores"``
(the paper's SDP is infeasible, which its fixed cluster sizes allow even for a feasible r)
and ``"paper+no-step4"`` (the reassignment MILP timed out).

Types. ``X`` may be a numpy array, nested lists or a torch tensor of any device and float
dtype; the computation is float64 numpy. Tensors in, tensors out (the package's rule): for a
torch ``X``, the labels (int64), centers, conflict graph, ``SDPBound.Z`` and
``PaperSDP.b_hat`` (float64) come back as torch tensors on ``X``'s device (float64 ones on the
CPU for MPS); costs, radii and bounds are Python floats. The scikit-learn estimator
:class:`RadiusKMeans` accepts tensors too but follows scikit-learn's convention (numpy
attributes and predictions) and its ``random_state``.

Randomness. Only the greedy method's extra starts are random; ``seed=None`` (the default)
takes the next draw from numpy's global generator, which :func:`helpers.runtime.setup` seeds
with the notebook's base seed.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.spatial.distance import cdist
from sklearn.base import BaseEstimator, ClusterMixin

from helpers._checks import ParameterError, check_int, check_option, check_real, check_seed, is_torch, like, rng, \
    to_numpy

__all__ = [
    "InfeasibleRadiusError",
    "RadiusUndecidedError",
    "RadiusKMeansResult",
    "SDPBound",
    "PaperSDP",
    "feasible_radius_bracket",
    "conflict_graph",
    "kmeans_cost",
    "max_half_diameter",
    "radius_sdp_bound",
    "monotone_bound",
    "paper_sdp",
    "radius_kmeans",
    "RadiusKMeans",
]

METHODS = ("auto", "exact", "paper", "sdp", "greedy")
EXACT_MAX_N = 14
PAPER_MAX_N = 60
AUTO_EXACT_MAX_N = 12
AUTO_SDP_MAX_N = 80


# --------------------------------------------------------------------------- errors, results


class InfeasibleRadiusError(ValueError):
    """No partition into ``k`` non-empty clusters keeps every cluster within diameter ``2r``.

    Attributes
    ----------
    r, k : the radius and number of clusters asked for.
    bracket : (lo, hi) from :func:`feasible_radius_bracket`; every r >= hi is feasible.
    reason : what proved infeasibility (the bracket, the SDP, a conflict clique, exhaustive
        search, or an exact MILP).
    """

    def __init__(self, r: float, k: int, bracket: tuple[float, float], reason: str):
        self.r, self.k, self.bracket, self.reason = r, k, bracket, reason
        lo, hi = bracket
        super().__init__(
            f"radius r={r:.6g} is infeasible for k={k} clusters: {reason}. "
            f"Feasibility bracket [{lo:.6g}, {hi:.6g}]: every r >= {hi:.6g} is feasible and "
            f"every r < {lo:.6g} is not; raise r or k."
        )


class RadiusUndecidedError(RuntimeError):
    """The method neither found a feasible partition nor proved that none exists."""


@dataclass(frozen=True, eq=False)
class RadiusKMeansResult:
    """Output of :func:`radius_kmeans`.

    Attributes
    ----------
    labels : ndarray or torch.Tensor of int64, shape (n,)
        Cluster of each point, in ``0..k-1``; every cluster is non-empty. Of ``X``'s type.
    centers : ndarray or torch.Tensor, shape (k, d), float64
        Mean of each cluster.
    cost : float
        k-means cost, the sum of squared distances of the points to their cluster's center.
    lower_bound : float or None
        Certified lower bound on the optimal cost from the Peng-Wei SDP when it was solved
        (method ``"sdp"``), else None.
    method : str
        The method that produced the labels; a fallback is named after a ``+``
        (e.g. ``"greedy+milp"``).
    radius : float
        The radius r that the partition satisfies.
    details : dict
        Diagnostics (solver statuses, timings, cost histories); contents vary by method.
    """

    labels: np.ndarray
    centers: np.ndarray
    cost: float
    lower_bound: float | None
    method: str
    radius: float
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class SDPBound:
    """Output of :func:`radius_sdp_bound`.

    Attributes
    ----------
    status : str
        The cvxpy status (``"optimal"``, ``"optimal_inaccurate"``, ``"infeasible"``, ...).
    lower_bound : float or None
        Certified lower bound on the optimal constrained k-means cost (None unless solved).
    primal_value : float or None
        The solver's objective value; not certified (it can exceed the bound by the solver
        tolerance).
    Z : ndarray, shape (n, n), or None
        The relaxed co-membership matrix; exact solutions are ``sum_a z_a z_a^T / n_a``.
    seconds : float
        Solve time (all rounds).
    rounds : int
        Rounds of cutting planes solved after the first relaxation (``cut_rounds``).
    cuts : int
        Triangle inequalities in the last relaxation solved (0 without cuts).
    """

    status: str
    lower_bound: float | None
    primal_value: float | None
    Z: np.ndarray | None
    seconds: float
    rounds: int = 0
    cuts: int = 0


@dataclass(frozen=True, eq=False)
class PaperSDP:
    """Output of :func:`paper_sdp`.

    Attributes
    ----------
    status : str
        The cvxpy status.
    b_hat : ndarray, shape (n, k), or None
        Relaxed :math:`\\pm1` membership indicators (column a is :math:`b_a`).
    objective : float or None
        The SDP objective; with fixed cardinalities it is *not* a bound on the k-means cost.
    seconds : float
        Solve time.
    """

    status: str
    b_hat: np.ndarray | None
    objective: float | None
    seconds: float


# --------------------------------------------------------------------------- input checks


def _check_X(X: Any) -> np.ndarray:
    X = to_numpy(X, "X", hint="")
    if X.ndim != 2:
        raise ParameterError(
            f"X must be 2-D with shape (n_samples, n_features); got shape {X.shape}. "
            "Use X.reshape(-1, 1) for a single feature or X.reshape(1, -1) for a single sample."
        )
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise ParameterError(f"X must have at least one sample and one feature; got shape {X.shape}.")
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)[:5].tolist()
        raise ParameterError(f"X contains NaN or infinite values (rows {rows}...); drop or impute them first.")
    return X


def _check_k(k: Any, n: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ParameterError(f"k (n_clusters) must be an integer; got {k!r}.")
    if k < 1:
        raise ParameterError(f"k (n_clusters) must be >= 1; got {k}.")
    if k > n:
        raise ParameterError(f"n_samples={n} should be >= n_clusters={k}; lower k or add samples.")
    return int(k)


def _check_r(r: Any) -> float:
    try:
        r = float(r)
    except (TypeError, ValueError) as err:
        raise ParameterError(f"r must be a positive number; got {r!r}.") from err
    if not np.isfinite(r) or r <= 0:
        raise ParameterError(
            f"r must be positive and finite; got {r}. Use feasible_radius_bracket(X, k) for a range."
        )
    return r


# --------------------------------------------------------------------------- geometry


def _distances(X: np.ndarray) -> np.ndarray:
    # cdist computes each difference directly; the Gram trick |x|^2+|y|^2-2xy loses digits on
    # near-duplicates, and the radius test must agree with max_half_diameter bit for bit.
    return cdist(X, X)


def conflict_graph(X: Any, r: float) -> np.ndarray:
    """Pairs that cannot share a cluster.

    Parameters
    ----------
    X : array_like, shape (n, d)
    r : float
        Radius; the cluster diameter bound is 2r.

    Returns
    -------
    C : ndarray or torch.Tensor of bool, shape (n, n)
        ``C[i, j]`` is True iff ``||x_i - x_j|| > 2r``; of ``X``'s type (and device).
    """
    return like(_distances(_check_X(X)) > 2 * _check_r(r), X)


def kmeans_cost(X: Any, labels: Any) -> float:
    """k-means cost of a partition: sum of squared distances of the points to their cluster mean.

    Parameters
    ----------
    X : array_like, shape (n, d)
    labels : array_like of int, shape (n,)

    Returns
    -------
    float
    """
    return float(sum(((C - C.mean(0)) ** 2).sum() for C in _clusters(X, labels)))


def max_half_diameter(X: Any, labels: Any) -> float:
    """Largest half-diameter over the clusters: the smallest r the partition satisfies.

    Parameters
    ----------
    X : array_like, shape (n, d)
    labels : array_like of int, shape (n,)

    Returns
    -------
    float
    """
    return float(max(cdist(C, C).max() / 2 for C in _clusters(X, labels)))


def _clusters(X: Any, labels: Any) -> list[np.ndarray]:
    """The points of each non-empty cluster, in label order."""
    X, labels = to_numpy(X, "X"), to_numpy(labels, "labels", dtype=None)
    return [X[labels == a] for a in np.unique(labels)]


def _means(X: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    sums = np.zeros((k, X.shape[1]))
    np.add.at(sums, labels, X)
    return sums / np.bincount(labels, minlength=k)[:, None]


def _is_feasible(C: np.ndarray, labels: np.ndarray, k: int) -> bool:
    same = labels[:, None] == labels[None, :]
    return bool(np.bincount(labels, minlength=k).min() >= 1 and not (C & same).any())


# --------------------------------------------------------------------------- bracket


def _farthest_first(D: np.ndarray, m: int, start: int) -> np.ndarray:
    """Indices of m points picked greedily, each the farthest from those already picked."""
    picked = [start]
    mind = D[start].copy()
    mind[start] = -1.0  # never pick an index twice, even among duplicates
    for _ in range(m - 1):
        j = int(np.argmax(mind))
        picked.append(j)
        np.minimum(mind, D[j], out=mind)
        mind[picked] = -1.0
    return np.asarray(picked)


def _voronoi(D: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    labels = np.argmin(D[:, seeds], axis=1)
    labels[seeds] = np.arange(len(seeds))  # each seed owns its cell, even with duplicate seeds
    return labels


def _default_start(X: np.ndarray) -> int:
    return int(np.argmax(((X - X.mean(0)) ** 2).sum(1)))


def _bracket(D: np.ndarray, k: int, start: int) -> tuple[float, float]:
    n = len(D)
    if k == n:
        return 0.0, 0.0
    pts = _farthest_first(D, k + 1, start)
    sub = D[np.ix_(pts, pts)]
    lo = sub[np.triu_indices(k + 1, 1)].min() / 2
    labels = _voronoi(D, pts[:k])
    hi = max(D[np.ix_(labels == a, labels == a)].max() / 2 for a in range(k))
    return float(lo), float(hi)


def feasible_radius_bracket(X: Any, k: int) -> tuple[float, float]:
    """Radii ``(lo, hi)`` such that every r >= hi is feasible and every r < lo is not.

    Farthest-first traversal (Gonzalez) picks :math:`k+1` points :math:`s_0..s_k`, each the
    farthest from those before it; let :math:`\\delta` be their smallest pairwise distance.

    * Infeasible below ``lo = delta / 2``: the :math:`k+1` points are pairwise at least
      :math:`\\delta > 2r` apart, so no two of them may share a cluster, and :math:`k`
      clusters cannot hold :math:`k+1` of them (pigeonhole).
    * Feasible from ``hi``: assign every point to its nearest seed among :math:`s_0..s_{k-1}`
      (each seed keeps its own cell, so all k clusters are non-empty); ``hi`` is the largest
      half-diameter of these cells, so this partition satisfies every r >= hi. Each point lies
      within :math:`\\delta` of its seed, so ``hi <= delta = 2 lo``: the bracket is within a
      factor 2.

    The same distances decide conflicts in :func:`radius_kmeans`, so r = hi passes its
    ``<= 2r`` test exactly. When ``k == n``, or X has at most k distinct points, the bracket is
    ``(0, 0)``: every r > 0 is feasible.

    Parameters
    ----------
    X : array_like, shape (n, d)
        numpy, lists, or torch on any device.
    k : int, 1 <= k <= n

    Returns
    -------
    (lo, hi) : tuple of float, 0 <= lo <= hi

    Examples
    --------
    Two pairs of points 10 apart: one cluster needs r >= 5.5, two need only r >= 0.5.

    >>> import numpy as np
    >>> X = np.array([[0.0], [1.0], [10.0], [11.0]])
    >>> feasible_radius_bracket(X, 1), feasible_radius_bracket(X, 2)
    ((5.5, 5.5), (0.5, 0.5))
    """
    X = _check_X(X)
    k = _check_k(k, len(X))
    return _bracket(_distances(X), k, _default_start(X))


# --------------------------------------------------------------------------- MILP pieces


def _assignment_milp(
    C: np.ndarray, k: int, cost: np.ndarray, time_limit: float, pins: np.ndarray | None = None
) -> tuple[np.ndarray | None, str]:
    """min sum_ia cost_ia P_ia over binary P with one cluster per point, no empty cluster,
    and conflict cuts P_ia + P_ja <= 1 (the paper's P_ia P_ja D_ij <= 4r^2, linearised).

    Returns (labels or None, status), status in {"optimal", "feasible", "infeasible", "timeout"}.
    ``pins[q]`` (optional) fixes point ``pins[q]`` in cluster q (symmetry breaking, valid when
    the objective does not depend on the cluster index).
    """
    n = len(C)
    var = np.arange(n * k).reshape(n, k)
    one_each = sparse.csr_array((np.ones(n * k), (np.repeat(np.arange(n), k), var.ravel())), shape=(n, n * k))
    non_empty = sparse.csr_array((np.ones(n * k), (np.tile(np.arange(k), n), var.ravel())), shape=(k, n * k))
    i, j = np.nonzero(np.triu(C, 1))
    m = len(i)
    rows = np.repeat(np.arange(m * k), 2)
    cols = np.stack([var[i].ravel(), var[j].ravel()], axis=1).ravel()
    cuts = sparse.csr_array((np.ones(2 * m * k), (rows, cols)), shape=(m * k, n * k))
    cons = [LinearConstraint(one_each, 1, 1), LinearConstraint(non_empty, 1, n)]
    if m:
        cons.append(LinearConstraint(cuts, 0, 1))
    lb = np.zeros(n * k)
    if pins is not None:
        lb[var[pins, np.arange(len(pins))]] = 1
    res = milp(
        cost.ravel(), constraints=cons, integrality=np.ones(n * k), bounds=Bounds(lb, 1),
        options={"time_limit": time_limit},
    )
    return _milp_outcome(res, lambda x: np.argmax(x.reshape(n, k), axis=1))


def _milp_outcome(res: Any, decode: Any) -> tuple[np.ndarray | None, str]:
    if res.status == 2:
        return None, "infeasible"
    if res.x is None:
        return None, "timeout"
    return decode(res.x), "optimal" if res.status == 0 else "feasible"


def _conflict_clique(C: np.ndarray, order: np.ndarray, k: int) -> np.ndarray:
    """Greedy clique of the conflict graph along ``order`` (at most k+1 points)."""
    clique: list[int] = []
    for i in order:
        if all(C[i, j] for j in clique):
            clique.append(int(i))
            if len(clique) > k:
                break
    return np.asarray(clique, dtype=int)


def _fallback_partition(P: "_Problem", why: str) -> tuple[np.ndarray, str]:
    """A feasible partition, or a proof that none exists, for when a heuristic found none.

    Returns (labels, source). For r >= hi the bracket's own partition is feasible (source
    "bracket"). Otherwise a greedy clique of the conflict graph along the farthest-first order
    proves infeasibility when it has k+1 points; if not, it is pinned to clusters 0, 1, ...
    (symmetry breaking) and the zero-objective assignment MILP decides exactly ("milp")."""
    if P.r >= P.bracket[1]:
        return _voronoi(P.D, _farthest_first(P.D, P.k, P.start)), "bracket"
    clique = _conflict_clique(P.C, _farthest_first(P.D, len(P.D), P.start), P.k)
    if len(clique) > P.k:
        raise P.infeasible(f"{why}, and {P.k + 1} points are pairwise more than 2r apart (a conflict clique)")
    labels, status = _assignment_milp(P.C, P.k, np.zeros((len(P.C), P.k)), P.time_limit, pins=clique)
    if status == "infeasible":
        raise P.infeasible(f"{why}, and the colouring MILP (exact) proves that no partition exists")
    if labels is None:
        raise P.undecided(f"{why}, and the colouring MILP hit its time limit ({P.time_limit:g} s)")
    return labels, "milp"


# --------------------------------------------------------------------------- local search


class _State:
    """Cluster sums, sizes and per-point conflict counts, updated in O(n) per move."""

    def __init__(self, X: np.ndarray, C: np.ndarray, labels: np.ndarray, k: int):
        self.X, self.C, self.labels, self.k = X, C, labels.copy(), k
        self.sizes = np.bincount(self.labels, minlength=k).astype(float)
        self.sums = np.zeros((k, X.shape[1]))
        np.add.at(self.sums, self.labels, X)
        onehot = np.zeros((len(X), k))
        onehot[np.arange(len(X)), self.labels] = 1
        self.conf = C.astype(float) @ onehot  # conf[i, a]: members of cluster a in conflict with i

    def means(self) -> np.ndarray:
        return self.sums / self.sizes[:, None]

    def move(self, i: int, b: int) -> None:
        a = self.labels[i]
        self.labels[i] = b
        self.sizes[a] -= 1
        self.sizes[b] += 1
        self.sums[a] -= self.X[i]
        self.sums[b] += self.X[i]
        self.conf[:, a] -= self.C[:, i]
        self.conf[:, b] += self.C[:, i]

    def cost(self) -> float:
        return float(((self.X - self.means()[self.labels]) ** 2).sum())


def _sqdist(X: np.ndarray, M: np.ndarray) -> np.ndarray:
    return cdist(X, M, "sqeuclidean")


def _constrained_lloyd(st: _State, tol: float, max_iter: int = 100) -> list[float]:
    """Lloyd with centers frozen during a sweep: each point moves to the nearest center whose
    cluster it does not conflict with (never emptying a cluster); then the means move.
    Both half-steps lower J, so the returned cost history is non-increasing."""
    history = [st.cost()]
    for _ in range(max_iter):
        E = _sqdist(st.X, st.means())
        moved = False
        for i in range(len(st.X)):
            a = st.labels[i]
            if st.sizes[a] == 1:
                continue
            e = np.where(st.conf[i] > 0, np.inf, E[i])
            b = int(np.argmin(e))
            if e[b] < E[i, a] - tol:
                st.move(i, b)
                moved = True
        history.append(st.cost())
        if not moved:
            break
    return history


def _hartigan_sweep(st: _State, tol: float) -> bool:
    """Single-point moves with the exact change of J (means update with the move)."""
    moved = False
    for i in range(len(st.X)):
        a = st.labels[i]
        if st.sizes[a] == 1:
            continue
        e = ((st.X[i] - st.means()) ** 2).sum(1)
        leave = st.sizes[a] / (st.sizes[a] - 1) * e[a]
        join = np.where(st.conf[i] > 0, np.inf, st.sizes / (st.sizes + 1) * e)
        join[a] = np.inf
        b = int(np.argmin(join))
        if join[b] - leave < -tol:
            st.move(i, b)
            moved = True
    return moved


def _best_swap(st: _State, D2: np.ndarray, tol: float, chunk: int = 512) -> tuple[int, int] | None:
    """The pair exchange (i in a, j in b) that lowers J most, or None.

    Replacing x_i by x_j in cluster a changes its cost by E[j,a] - E[i,a] - D_ij / n_a
    (E: squared distances to the means), which gives every swap's change in one matrix."""
    L, E = st.labels, _sqdist(st.X, st.means())
    own = E[np.arange(len(L)), L]
    best, arg = -tol, None
    for s in range(0, len(L), chunk):
        rows = np.arange(s, min(s + chunk, len(L)))
        G = E.T[L[rows]]             # G[i, j] = E[j, L[i]]: x_j in i's cluster
        H = E[rows][:, L]            # H[i, j] = E[i, L[j]]: x_i in j's cluster
        d = D2[rows]
        delta = (G - own[rows, None] - d / st.sizes[L[rows], None]) + (H - own[None, :] - d / st.sizes[L][None, :])
        K1 = st.conf.T[L[rows]] - st.C[rows]         # conflicts of x_j with i's cluster minus x_i
        K2 = st.conf[rows][:, L] - st.C[rows]        # conflicts of x_i with j's cluster minus x_j
        ok = (K1 == 0) & (K2 == 0) & (L[rows, None] != L[None, :])
        delta = np.where(ok, delta, np.inf)
        p = np.unravel_index(np.argmin(delta), delta.shape)
        if delta[p] < best:
            best, arg = delta[p], (int(rows[p[0]]), int(p[1]))
    return arg


def _local_search(st: _State, D2: np.ndarray, tol: float, max_swaps: int = 200) -> None:
    for _ in range(max_swaps):
        while _hartigan_sweep(st, tol):
            pass
        swap = _best_swap(st, D2, tol)
        if swap is None:
            return
        i, j = swap
        a, b = st.labels[i], st.labels[j]
        st.move(i, b)
        st.move(j, a)


class _Builder:
    """A partial partition grown point by point (labels -1 = not yet placed)."""

    def __init__(self, X: np.ndarray, C: np.ndarray, seeds: np.ndarray, score: np.ndarray | None):
        n, k = len(X), len(seeds)
        self.X, self.C, self.score = X, C, score
        self.labels = np.full(n, -1)
        self.labels[seeds] = np.arange(k)
        self.conf = C[:, seeds].astype(np.int32)  # conf[i, a]: members of a in conflict with i
        self.sums, self.sizes = X[seeds].copy(), np.ones(k)
        # Lower is better: squared distance to the running mean, or minus the score.
        self.pref = _sqdist(X, self.sums) if score is None else -np.asarray(score, dtype=float)

    def _update(self, i: int, a: int, sign: int) -> None:
        self.conf[:, a] += sign * self.C[:, i]
        self.sums[a] += sign * self.X[i]
        self.sizes[a] += sign
        if self.score is None and self.sizes[a] > 0:  # an emptied cluster is refilled at once
            self.pref[:, a] = _sqdist(self.X, self.sums[a : a + 1] / self.sizes[a])[:, 0]

    def place(self, i: int, a: int) -> None:
        self.labels[i] = a
        self._update(i, a, +1)

    def relocate(self, j: int, b: int) -> None:
        self._update(j, self.labels[j], -1)
        self.place(j, b)

    def repair(self, i: int) -> int | None:
        """Free a cluster for the stuck point i: find a cluster where i conflicts with a single
        member j that can move to another cluster without conflict, move j, return the cluster."""
        for a in np.flatnonzero(self.conf[i] == 1):
            j = int(np.flatnonzero((self.labels == a) & self.C[i])[0])
            to = np.where(self.conf[j] == 0, self.pref[j], np.inf)
            to[a] = np.inf
            b = int(np.argmin(to))
            if np.isfinite(to[b]):
                self.relocate(j, b)
                return int(a)
        return None


def _greedy_assign(X: np.ndarray, C: np.ndarray, seeds: np.ndarray, score: np.ndarray | None = None) -> np.ndarray | None:
    """Seeds open the k clusters; then the unplaced point with the fewest compatible clusters
    (DSatur's rule: the hardest point first) joins its best compatible cluster: the nearest
    running mean, or the highest ``score`` when given. A point with no compatible cluster
    left triggers one repair move (:meth:`_Builder.repair`). Returns None if that fails too."""
    g = _Builder(X, C, seeds, score)
    for _ in range(len(X) - len(seeds)):
        idx = np.flatnonzero(g.labels < 0)
        p = np.where(g.conf[idx] == 0, g.pref[idx], np.inf)
        nfree = np.isfinite(p).sum(1)
        q = np.lexsort((p.min(1), nfree))[0]
        i = int(idx[q])
        a = int(np.argmin(p[q])) if nfree[q] else g.repair(i)
        if a is None:
            return None
        g.place(i, a)
    return g.labels


# --------------------------------------------------------------------------- SDPs


def _sdp_solve(prob: Any, solver: str, eps: float, max_iters: int) -> tuple[str, float]:
    """Solve with SCS or Clarabel at tolerance eps; returns (cvxpy status, seconds)."""
    import cvxpy as cp

    opts: dict[str, Any]
    if solver.upper() == "SCS":
        opts = {"eps_abs": eps, "eps_rel": eps, "max_iters": max_iters}
    elif solver.upper() == "CLARABEL":
        opts = {"tol_gap_abs": eps, "tol_gap_rel": eps, "tol_feas": eps, "max_iter": max_iters}
    else:
        raise ParameterError(f"solver must be 'SCS' or 'CLARABEL'; got {solver!r}.")
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # cvxpy warns on "optimal_inaccurate"; callers get the status, and the bound that
        # radius_sdp_bound reports is certified whatever the accuracy.
        warnings.filterwarnings("ignore", message="Solution may be inaccurate")
        try:
            prob.solve(solver=solver.upper(), **opts)
            status = prob.status
        except cp.error.SolverError:
            status = "solver_error"
    return status, time.perf_counter() - t0


def _pw_sdp(D2: np.ndarray, C: np.ndarray, k: int, eps: float, solver: str, max_iters: int) -> SDPBound:
    import cvxpy as cp  # imported here: the greedy and exact methods do not need it

    n = len(D2)
    iu, ju = np.triu_indices(n)
    conf = C[iu, ju]
    Z = cp.Variable((n, n), symmetric=True)
    cons = [Z >> 0, cp.sum(Z, axis=1) == 1, cp.trace(Z) == k, Z[iu[~conf], ju[~conf]] >= 0]
    if conf.any():
        cons.append(Z[iu[conf], ju[conf]] == 0)  # the radius: conflicting pairs never co-occur
    prob = cp.Problem(cp.Minimize(0.5 * cp.sum(cp.multiply(D2, Z))), cons)
    status, seconds = _sdp_solve(prob, solver, eps, max_iters)
    if status not in ("optimal", "optimal_inaccurate"):
        return SDPBound(status, None, None, None, seconds)
    lb = _certified_bound(D2, C, k, cons[0].dual_value, cons[1].dual_value, float(cons[2].dual_value))
    return SDPBound(status, lb, float(prob.value), np.asarray(Z.value), seconds)


def _certified_bound(D2: np.ndarray, C: np.ndarray, k: int, S: np.ndarray, nu: np.ndarray, tau: float,
                     G: np.ndarray | None = None) -> float:
    """A lower bound valid whatever the solver's accuracy (weak duality, repaired).

    For any y, t and B with B >= 0 off the conflict pattern, let S' = D/2 - sym(y 1^T) - t I - B.
    Every feasible Z (Z >= 0 where allowed, 0 on conflicts, Z 1 = 1, tr Z = k, Z PSD) has
    <D, Z>/2 = sum(y) + k t + <B, Z> + <S', Z> >= sum(y) + k t + k min(0, lambda_min(S')).
    y, t come from the solver's duals (both sign conventions are tried; each is valid) and B
    from its PSD dual, clipped to >= 0 where required. Valid inequalities <G_c, Z> >= 0 with
    multipliers mu_c >= 0 enter as G = sum_c mu_c G_c, subtracted from S' (then <G, Z> >= 0
    joins <B, Z> >= 0 in the sum).
    """
    n = len(D2)
    best = 0.0  # J >= 0 always
    for sign in (-1.0, 1.0):
        y, t = sign * np.asarray(nu, dtype=float), sign * tau
        M = 0.5 * D2 - 0.5 * (y[:, None] + y[None, :]) - t * np.eye(n)
        if G is not None:
            M = M - G
        B = M - S
        B = np.where(C, B, np.maximum(B, 0.0))
        Sp = M - B
        lam = np.linalg.eigvalsh(0.5 * (Sp + Sp.T))[0]
        slack = 1e-12 * n * max(1.0, np.abs(Sp).max())  # eigvalsh rounding error
        best = max(best, y.sum() + k * t + k * min(0.0, lam - slack))
    return float(best)


def _triangle_violations(Z: np.ndarray, m: int, tol: float = 0.0, chunk: int = 32) -> np.ndarray:
    """The m most violated triangle inequalities Z_ij + Z_il <= Z_ii + Z_jl, with j < l and
    i distinct from both, as rows (i, j, l); only those violated by more than tol. O(n^3)
    time in chunks of i, O(chunk n^2) memory."""
    n = len(Z)
    d, lower = np.diag(Z), np.tril_indices(n)
    found, worst = [], []
    for s in range(0, n, chunk):
        ii = np.arange(s, min(s + chunk, n))
        V = Z[ii, :, None] + Z[ii, None, :] - d[ii, None, None] - Z[None]
        V[:, lower[0], lower[1]] = -np.inf  # j < l only
        V[np.arange(len(ii)), ii, :] = -np.inf
        V[np.arange(len(ii)), :, ii] = -np.inf
        flat = V.reshape(-1)
        top = np.argpartition(flat, -min(m, flat.size))[-m:]
        top = top[flat[top] > tol]
        a, j, l = np.unravel_index(top, V.shape)
        found.append(np.stack([ii[a], j, l], 1))
        worst.append(flat[top])
    rows, viol = np.concatenate(found), np.concatenate(worst)
    return rows[np.argsort(-viol)[:m]]


def _cut_operator(n: int, pair: np.ndarray, tri: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """G with <G, Z> = sum_ij P_ij (Z_ii - Z_ij) + sum_c mu_c (Z_ii + Z_jl - Z_ij - Z_il) for
    symmetric Z: the cuts' multipliers folded into one symmetric matrix."""
    G = np.diag(pair.sum(1)) - 0.5 * (pair + pair.T)
    if len(tri):
        i, j, l = tri.T
        np.add.at(G, (i, i), mu)
        for a, b, s in ((j, l, 0.5), (l, j, 0.5), (i, j, -0.5), (j, i, -0.5), (i, l, -0.5), (l, i, -0.5)):
            np.add.at(G, (a, b), s * mu)
    return G


def _pw_sdp_cuts(D2: np.ndarray, C: np.ndarray, k: int, eps: float, solver: str, max_iters: int,
                 rounds: int, per_round: int, progress: bool) -> SDPBound:
    """Peng-Wei's relaxation tightened by cutting planes, each round certified.

    Every partition matrix (Z_ij = 1/n_a when i, j share cluster a, else 0) satisfies the pair
    inequalities Z_ij <= Z_ii and the triangle inequalities Z_ij + Z_il <= Z_ii + Z_jl; the
    plain relaxation's optimum violates many. All n^2 pair rows go in at once; triangles (n^3/2
    of them) are separated: each round adds the ``per_round`` most violated at the last
    solution and drops those whose multiplier vanished. Each round's bound is certified from
    its own duals (:func:`_certified_bound` with the cuts' multipliers), so the best of them is
    valid whatever the solver's accuracy. A round the solver fails ends the rounds; the result
    is then the last solved round's."""
    import cvxpy as cp

    from helpers._progress import bar

    n = len(D2)
    iu, ju = np.triu_indices(n)
    conf = C[iu, ju]
    tri = np.zeros((0, 3), dtype=np.int64)
    best: float | None = None
    seconds, status, value, Zv, done = 0.0, "not_run", None, None, 0
    solved = status
    steps = bar(range(rounds + 1), progress=progress, desc="cut rounds", leave=False)
    for rnd in steps:
        Z = cp.Variable((n, n), symmetric=True)
        d = cp.diag(Z)
        psd, rows, trace = Z >> 0, cp.sum(Z, axis=1) == 1, cp.trace(Z) == k
        pair = cp.reshape(d, (n, 1), order="C") @ np.ones((1, n)) - Z >= 0
        cons = [psd, rows, trace, pair, Z[iu[~conf], ju[~conf]] >= 0]
        if conf.any():
            cons.append(Z[iu[conf], ju[conf]] == 0)
        if len(tri):
            i, j, l = tri.T
            triangle = d[i] + Z[j, l] - Z[i, j] - Z[i, l] >= 0
            cons.append(triangle)
        prob = cp.Problem(cp.Minimize(0.5 * cp.sum(cp.multiply(D2, Z))), cons)
        status, sec = _sdp_solve(prob, solver, eps, max_iters)
        seconds += sec
        if status not in ("optimal", "optimal_inaccurate"):
            break
        mu = np.maximum(triangle.dual_value, 0.0) if len(tri) else np.zeros(0)
        G = _cut_operator(n, np.maximum(pair.dual_value, 0.0), tri, mu)
        lb = _certified_bound(D2, C, k, psd.dual_value, rows.dual_value, float(trace.dual_value), G)
        best = lb if best is None else max(best, lb)
        value, Zv, done, solved, n_cuts = float(prob.value), np.asarray(Z.value), rnd, status, len(tri)
        steps.set_postfix(bound=f"{best:.6g}", triangles=n_cuts)
        if rnd == rounds:
            break
        new = _triangle_violations(Zv, per_round, tol=eps)
        if not len(new):
            break
        keep = tri[mu > 1e-9 * max(1.0, mu.max(initial=0.0))]
        tri = np.unique(np.concatenate([keep, new]), axis=0)
    steps.close()
    if best is None:
        return SDPBound(status, None, None, None, seconds, done, len(tri))
    return SDPBound(solved, best, value, Zv, seconds, done, n_cuts)


def radius_sdp_bound(X: Any, k: int, r: float, *, eps: float = 1e-4, solver: str = "SCS",
                     max_iters: int = 20000, cut_rounds: int = 0, cuts_per_round: int | None = None,
                     progress: bool = True) -> SDPBound:
    """Peng-Wei k-means SDP with the radius as a zero pattern: a lower bound and a certificate.

    .. math::

        \\min_Z \\tfrac12 \\langle D, Z \\rangle \\ \\text{s.t.}\\ Z \\succeq 0,\\ Z \\ge 0,\\
        Z \\mathbf 1 = \\mathbf 1,\\ \\operatorname{tr} Z = k,\\ Z_{ij} = 0 \\text{ if }
        \\|x_i - x_j\\| > 2r.

    Every feasible partition gives the feasible point :math:`Z = \\sum_a z_a z_a^\\top / n_a`
    with objective equal to its k-means cost, so the optimum is a lower bound on the
    constrained optimum, and an infeasible SDP proves the radius infeasible (up to the
    solver's infeasibility tolerance). Unlike the paper's k-block SDP it has no label symmetry
    and needs no fixed cluster sizes. The reported bound is certified from the dual (see
    ``_certified_bound``), so it stays valid when the solver stops early.

    With ``cut_rounds > 0`` the relaxation is tightened by inequalities every partition
    matrix satisfies: :math:`Z_{ij} \\le Z_{ii}` (all pairs) and the triangle inequalities
    :math:`Z_{ij} + Z_{il} \\le Z_{ii} + Z_{jl}`, the most violated ones added round by
    round (the cuts of exact k-means solvers; Peng and Wei 2007, Piccialli, Sudoso and Wiegele
    2022). Each round is a larger SDP, so this is for a few hundred points; the bound can rise
    from the plain relaxation's to the optimum itself.

    Parameters
    ----------
    X : array_like, shape (n, d)
    k : int, 1 <= k <= n
    r : float > 0
    eps : float
        Solver tolerance (SCS eps_abs and eps_rel; Clarabel gap and feasibility tolerances).
    solver : {"SCS", "CLARABEL"}
        SCS (first order) scales to a few hundred points; Clarabel (interior point) is precise
        but slow beyond n ~ 50.
    max_iters : int
    cut_rounds : int >= 0
        Rounds of triangle cuts after the first solve (0: the plain relaxation, without the
        pair inequalities either). Stops early when no triangle is violated by more than eps.
    cuts_per_round : int or None
        Triangles added per round; None: 10 n.
    progress : bool
        A bar over the cut rounds, with the best bound so far (off under ``TQDM_DISABLE``).

    Returns
    -------
    SDPBound
        ``Z`` of ``X``'s type (and device); with cuts, the bound is the best round's and ``Z``
        the last round's.
    """
    X0, X = X, _check_X(X)
    k, r = _check_k(k, len(X)), _check_r(r)
    cut_rounds = check_int(cut_rounds, "cut_rounds", low=0)
    per_round = 10 * len(X) if cuts_per_round is None else check_int(cuts_per_round, "cuts_per_round", low=1)
    D = _distances(X)
    if cut_rounds:
        out = _pw_sdp_cuts(D**2, D > 2 * r, k, eps, solver, max_iters, cut_rounds, per_round, progress)
    else:
        out = _pw_sdp(D**2, D > 2 * r, k, eps, solver, max_iters)
    return out if out.Z is None or not is_torch(X0) else SDPBound(out.status, out.lower_bound, out.primal_value,
                                                                   like(out.Z, X0), out.seconds, out.rounds,
                                                                   out.cuts)


def monotone_bound(radii: Any, bounds: Any) -> np.ndarray:
    """Tighten lower bounds computed at several radii with the monotonicity of the optimum.

    A smaller radius adds zero constraints to :func:`radius_sdp_bound`'s relaxation (and
    removes partitions), so its optimum cannot decrease as ``r`` decreases: for
    :math:`r \\le r'`, :math:`J^\\star(r) \\ge \\mathrm{SDP}(r) \\ge \\mathrm{SDP}(r') \\ge
    \\mathrm{lb}(r')`, since a Z feasible at r is feasible at r'. Hence
    :math:`\\max_{r' \\ge r} \\mathrm{lb}(r')` is still a valid lower bound at ``r``, and it is
    non-increasing in ``r``. Certified bounds from a solver stopped at a tolerance need not
    be monotone themselves; this repairs that.

    Parameters
    ----------
    radii : array_like, shape (m,)
        The radii, in any order.
    bounds : array_like, shape (m,)
        A valid lower bound at each radius (e.g. ``radius_sdp_bound(...).lower_bound``);
        ``None`` or NaN where there is none (an infeasible or unsolved radius).

    Returns
    -------
    ndarray, shape (m,)
        For each radius, the largest bound over the radii at least as large (NaN where there
        is none), in the input order.

    Examples
    --------
    >>> monotone_bound([0.15, 0.16, 0.18, 0.2], [1.065, 1.087, 1.049, None]).tolist()
    [1.087, 1.087, 1.049, nan]
    """
    r = np.asarray(radii, dtype=float).ravel()
    b = np.array([np.nan if v is None else float(v) for v in np.asarray(bounds, dtype=object).ravel()])
    if r.shape != b.shape:
        raise ParameterError(f"radii and bounds must have the same length; got {r.size} and {b.size}.")
    order = np.argsort(-r, kind="stable")  # largest radius first
    out = np.empty_like(b)
    best = np.nan
    for i in order:
        if not np.isnan(b[i]):
            best = b[i] if np.isnan(best) else max(best, b[i])
        out[i] = best
    return out


def paper_sdp(X: Any, k: int, r: float, *, cardinality: bool = True, rlt: bool = True,
              eps: float = 1e-4, solver: str = "SCS", max_iters: int = 20000) -> PaperSDP:
    """The paper's k-block SDP over relaxed :math:`\\pm1` indicators (step 1 of its pipeline).

    For each cluster a, :math:`b_a \\in \\{\\pm1\\}^n` (+1 on members) is relaxed through
    :math:`\\begin{bmatrix} M_a & b_a \\\\ b_a^\\top & 1 \\end{bmatrix} \\succeq 0`,
    :math:`\\operatorname{diag} M_a = 1`, with :math:`\\sum_a b_a = (2 - k) \\mathbf 1`. With
    :math:`Q_a = M_a + \\mathbf 1 \\mathbf 1^\\top + b_a \\mathbf 1^\\top + \\mathbf 1 b_a^\\top`
    (outer products; :math:`Q_a = 4 z_a z_a^\\top` on integral points) and sizes fixed to
    :math:`n_a = n / k`, it minimises :math:`\\sum_a \\langle D, Q_a \\rangle / (8 n_a)` subject to
    :math:`D_{ij} (Q_a)_{ij} \\le 16 r^2` (imposed on conflicting pairs; elsewhere it is
    implied by :math:`(Q_a)_{ij} \\le 4`), optionally the cardinality rows
    :math:`\\mathbf 1^\\top b_a = 2 n_a - n`, :math:`M_a \\mathbf 1 = (2 n_a - n) b_a`, and
    the RLT cuts :math:`(1 \\pm b_i)(1 \\pm b_j) \\ge 0` lifted with :math:`M_{ij} = b_i b_j`.

    The relaxation is convex and invariant under permuting the k blocks, so averaging an
    optimum over permutations is an optimum: solvers return :math:`\\hat b_{ia} \\approx
    (2 - k) / k` for every a, which carries no cluster information. Because the sizes are
    fixed, the objective is not a lower bound on the k-means cost, and infeasibility here
    does not prove the radius infeasible.

    Parameters
    ----------
    X : array_like, shape (n, d), n <= 60
    k : int
    r : float > 0
    cardinality, rlt : bool
        Include the cardinality rows and the RLT cuts.
    eps, solver, max_iters
        As in :func:`radius_sdp_bound`.

    Returns
    -------
    PaperSDP
        ``b_hat`` of ``X``'s type (and device).
    """
    X0, X = X, _check_X(X)
    n = len(X)
    k, r = _check_k(k, n), _check_r(r)
    _check_size("paper", n)
    D = _distances(X)
    # The same conflict test as conflict_graph and radius_kmeans (D > 2r, not D² > 4r²), so that
    # pairs at the boundary are classed alike by every entry point.
    out = _paper_sdp(D ** 2, D > 2 * r, k, r, cardinality, rlt, eps, solver, max_iters)
    return out if out.b_hat is None or not is_torch(X0) else PaperSDP(out.status, like(out.b_hat, X0), out.objective,
                                                                       out.seconds)


def _check_size(method: str, n: int) -> None:
    if method == "paper" and n > PAPER_MAX_N:
        raise ParameterError(
            f"method 'paper' builds k PSD blocks of order n+1 and about 4 k n^2 RLT rows, and its "
            f"assignment MILP has one conflict cut per pair and cluster; it is limited to "
            f"n <= {PAPER_MAX_N} (got n={n}). Use method='sdp' or 'greedy'."
        )
    if method == "exact" and n > EXACT_MAX_N:
        raise ParameterError(
            f"method 'exact' runs a dynamic program over all 3^n pairs of disjoint subsets; it is "
            f"limited to n <= {EXACT_MAX_N} (got n={n}). Use method='sdp' or 'greedy'."
        )


def _paper_sdp(D2: np.ndarray, C: np.ndarray, k: int, r: float, cardinality: bool, rlt: bool,
               eps: float, solver: str, max_iters: int) -> PaperSDP:
    import cvxpy as cp

    n = len(D2)
    na = n / k
    one = np.ones(n)
    iu, ju = np.triu_indices(n, 1)
    ci, cj = np.nonzero(np.triu(C, 1))
    blocks, bs, obj, cons = [], [], 0, []
    for _ in range(k):
        W = cp.Variable((n + 1, n + 1), symmetric=True)
        M, b = W[:n, :n], W[:n, n]
        cons += [W >> 0, W[n, n] == 1, cp.diag(M) == 1]
        # <D, Q_a> = <D, M_a> + 1^T D 1 + 2 (D 1)^T b_a, since D is symmetric
        obj += (cp.sum(cp.multiply(D2, M)) + D2.sum() + 2 * (D2 @ one) @ b) / (8 * na)
        if len(ci):
            q = M[ci, cj] + 1 + b[ci] + b[cj]
            cons.append(cp.multiply(D2[ci, cj], q) <= 16 * r * r)
        if cardinality:
            cons += [cp.sum(b) == 2 * na - n, M @ one == (2 * na - n) * b]
        if rlt:
            m, bi, bj = M[iu, ju], b[iu], b[ju]
            cons += [1 + bi + bj + m >= 0, 1 - bi - bj + m >= 0, 1 + bi - bj - m >= 0, 1 - bi + bj - m >= 0]
        blocks.append(W)
        bs.append(b)
    cons.append(sum(bs) == (2 - k) * one)
    prob = cp.Problem(cp.Minimize(obj), cons)
    status, seconds = _sdp_solve(prob, solver, eps, max_iters)
    if status not in ("optimal", "optimal_inaccurate"):
        return PaperSDP(status, None, None, seconds)
    b_hat = np.stack([np.asarray(b.value) for b in bs], axis=1)
    return PaperSDP(status, b_hat, float(prob.value), seconds)


# --------------------------------------------------------------------------- methods


@dataclass
class _Problem:
    X: np.ndarray
    k: int
    r: float
    D: np.ndarray
    D2: np.ndarray
    C: np.ndarray
    start: int
    bracket: tuple[float, float]
    tol: float
    time_limit: float
    kmeans_starts: int = 0

    def infeasible(self, reason: str) -> InfeasibleRadiusError:
        return InfeasibleRadiusError(self.r, self.k, self.bracket, reason)

    def undecided(self, what: str) -> RadiusUndecidedError:
        lo, hi = self.bracket
        return RadiusUndecidedError(
            f"r={self.r:.6g}, k={self.k}: {what}, so feasibility is undecided. r lies inside the "
            f"bracket [{lo:.6g}, {hi:.6g}], where only search decides; use r >= {hi:.6g} (always "
            "feasible), a larger time_limit, or another method."
        )


def _method_exact(P: _Problem, seed: int, n_init: int) -> tuple[np.ndarray, str, dict]:
    """Dynamic programming over subsets: optimal, and an exhaustive proof when infeasible."""
    n = len(P.X)
    cost = _subset_costs(P.D2, P.C)
    f = _partition_tables(cost, n, P.k)
    if not np.isfinite(f[P.k, -1]):
        raise P.infeasible("exhaustive search over all partitions (dynamic programming) finds none")
    return _backtrack(cost, f, n, P.k), "exact", {"feasible_subsets": int(np.isfinite(cost).sum())}


def _subset_costs(D2: np.ndarray, C: np.ndarray) -> np.ndarray:
    """k-means cost of every subset of the n points, as a table over bit masks (inf where two
    members conflict, and for the empty set).

    Masks with bit b are built from masks below 2^b (doubling), so every table costs O(n 2^n):
    T[i, m] = sum_{j in m} D_ij, pair[m] = sum_{i<j in m} D_ij, and cost = pair / |m|."""
    n = len(D2)
    N = 1 << n
    T = np.zeros((n, N))
    hit = np.zeros((n, N), dtype=bool)  # hit[i, m]: i conflicts with some member of m
    pair, size, ok = np.zeros(N), np.zeros(N), np.ones(N, dtype=bool)
    for b in range(n):
        lo, hi = slice(0, 1 << b), slice(1 << b, 2 << b)
        pair[hi] = pair[lo] + T[b, lo]
        ok[hi] = ok[lo] & ~hit[b, lo]
        size[hi] = size[lo] + 1
        T[:, hi] = T[:, lo] + D2[:, b : b + 1]
        hit[:, hi] = hit[:, lo] | C[:, b : b + 1]
    ok[0] = False
    return np.where(ok, pair / np.maximum(size, 1), np.inf)


def _disjoint_pairs(b: int) -> tuple[np.ndarray, np.ndarray]:
    """All 3^b pairs (s, m) of disjoint subsets of b bits (base-3 digit q: 1 -> s, 2 -> m)."""
    t = np.arange(3**b, dtype=np.int64)
    s, m = np.zeros_like(t), np.zeros_like(t)
    for q in range(b):
        t, d = np.divmod(t, 3)
        s |= (d == 1).astype(np.int64) << q
        m |= (d == 2).astype(np.int64) << q
    return s, m


def _partition_tables(cost: np.ndarray, n: int, k: int) -> np.ndarray:
    """f[j, mask]: least cost of splitting ``mask`` into j feasible clusters.

    The cluster holding the lowest point l of ``mask`` is some s = {l} + s' with s' above l,
    so f[j, mask] = min over s of cost[s] + f[j-1, mask - s], where mask - s lies above l.
    Sweeping l from the top down makes every f[j-1, .] needed already final. O(k 3^n)."""
    f = np.full((k + 1, len(cost)), np.inf)
    f[1] = cost
    for low in reversed(range(n)):
        sp, rest = _disjoint_pairs(n - low - 1)
        s = (1 << low) | (sp << (low + 1))
        keep = np.isfinite(cost[s])  # skip clusters that break the radius
        s, rest = s[keep], rest[keep] << (low + 1)
        for j in range(2, k + 1):
            np.minimum.at(f[j], s | rest, cost[s] + f[j - 1, rest])
    return f


def _backtrack(cost: np.ndarray, f: np.ndarray, n: int, k: int) -> np.ndarray:
    """Labels of an optimal partition from the tables of :func:`_partition_tables`."""
    labels = np.empty(n, dtype=np.int64)
    mask = (1 << n) - 1
    for j in range(k, 0, -1):
        if j == 1:
            s = mask
        else:
            low = mask & -mask
            bits = np.flatnonzero((mask ^ low) >> np.arange(n) & 1)
            t = np.arange(1 << len(bits), dtype=np.int64)
            subs = low | ((t[:, None] >> np.arange(len(bits)) & 1) << bits).sum(1)
            # the same sums as in the table, so the optimum is matched exactly
            s = int(subs[np.argmin(cost[subs] + f[j - 1, mask ^ subs])])
        labels[np.flatnonzero(s >> np.arange(n) & 1)] = k - j
        mask ^= s
    return labels


def _method_paper(P: _Problem, seed: int, n_init: int) -> tuple[np.ndarray, str, dict]:
    """SDP -> assignment MILP on b_hat -> centroids -> reassignment MILP on unsquared distances."""
    n, k = len(P.X), P.k
    sdp = _paper_sdp(P.D2, P.C, k, P.r, True, True, 1e-4, "SCS", 20000)
    details: dict[str, Any] = {"sdp_status": sdp.status, "sdp_objective": sdp.objective, "sdp_seconds": sdp.seconds}
    method = "paper"
    if sdp.b_hat is None:
        # The fixed sizes n/k can make the relaxation infeasible although the radius is
        # feasible; step 2 then has no scores, and the run says so in its method name.
        b_hat, method = np.zeros((n, k)), "paper+flat-scores"
    else:
        b_hat = sdp.b_hat
        details["b_hat"] = b_hat
        details["b_hat_spread"] = float(np.ptp(b_hat, axis=1).max())
    labels2, status2 = _assignment_milp(P.C, k, -b_hat, P.time_limit)
    details["step2_status"] = status2
    if status2 == "infeasible":
        raise P.infeasible("the assignment MILP (exact conflict-graph k-colouring) is infeasible")
    if labels2 is None:
        raise P.undecided(f"the assignment MILP found no partition within {P.time_limit:g} s")
    mu = _means(P.X, labels2, k)
    details["step3_centroids"] = mu
    labels4, status4 = _assignment_milp(P.C, k, np.sqrt(_sqdist(P.X, mu)), P.time_limit)
    details["step4_status"] = status4
    if labels4 is None:  # step 2's partition is feasible for step 4, so only a timeout gets here
        return labels2, method + "+no-step4", details
    return labels4, method, details


def _method_sdp(P: _Problem, seed: int, n_init: int) -> tuple[np.ndarray, str, dict]:
    """Peng-Wei SDP -> rounding on rows of Z -> constrained Lloyd -> local search."""
    sdp = _pw_sdp(P.D2, P.C, P.k, 1e-4, "SCS", 20000)
    details: dict[str, Any] = {"sdp_status": sdp.status, "sdp_seconds": sdp.seconds, "sdp": sdp}
    if sdp.status == "infeasible":
        raise P.infeasible("the Peng-Wei SDP relaxation is infeasible (SCS certificate)")
    labels, details["rounding"] = _round_z(P, sdp.Z)
    method = "sdp"
    if labels is None:
        why = "the SDP rounding placed no feasible partition" if sdp.Z is not None else f"SCS returned {sdp.status}"
        labels, source = _fallback_partition(P, why)
        details["rounding"], method = source, "sdp+" + source
    st = _State(P.X, P.C, labels, P.k)
    details["rounded_cost"] = st.cost()
    details["lloyd_costs"] = _constrained_lloyd(st, P.tol)
    _local_search(st, P.D2, P.tol)
    return st.labels, method, details


def _round_z(P: _Problem, Z: np.ndarray | None) -> tuple[np.ndarray | None, str]:
    """Rows of Z are (near) cluster indicators scaled by 1/n_a: seeds far apart in Z-space lie
    in different clusters, and Z[i, seed] scores how much i belongs with that seed. Assign by
    those scores; if a point gets stuck, retry from the same seeds by distance."""
    if Z is None:
        return None, "none"
    seeds = _farthest_first(cdist(Z, Z), P.k, P.start)
    labels = _greedy_assign(P.X, P.C, seeds, score=Z[:, seeds])
    if labels is not None:
        return labels, "z-scores"
    return _greedy_assign(P.X, P.C, seeds), "z-seeds+distances"


def _method_greedy(P: _Problem, seed: int, n_init: int) -> tuple[np.ndarray, str, dict]:
    """Best of n_init farthest-first starts, each seeding a Voronoi and a DSatur-like
    assignment polished by local search. The first start is the bracket's, so r >= hi never
    fails; when every start fails, an exact colouring MILP decides, named in the method."""
    n, k = len(P.X), P.k
    # seed=None draws from numpy's global generator only when there are random starts to make
    starts = [P.start] + (rng(seed).integers(0, n, size=n_init - 1).tolist() if n_init > 1 else [])
    best, n_feasible = None, 0
    for s in starts:
        seeds = _farthest_first(P.D, k, s)
        for labels in (_voronoi(P.D, seeds), _greedy_assign(P.X, P.C, seeds)):
            if labels is None or not _is_feasible(P.C, labels, k):
                continue
            n_feasible += 1
            st = _State(P.X, P.C, labels, k)
            _local_search(st, P.D2, P.tol)
            if best is None or st.cost() < best.cost():
                best = st
    for labels in _kmeans_candidates(P, seed):
        n_feasible += 1
        st = _State(P.X, P.C, labels, k)
        _local_search(st, P.D2, P.tol)
        if best is None or st.cost() < best.cost():
            best = st
    details: dict[str, Any] = {"n_starts": len(starts), "feasible_candidates": n_feasible}
    if best is not None:
        return best.labels, "greedy", details
    labels, source = _fallback_partition(P, f"none of the {2 * len(starts)} greedy candidates was feasible")
    st = _State(P.X, P.C, labels, k)
    _local_search(st, P.D2, P.tol)
    return st.labels, "greedy+" + source, details


def _kmeans_candidates(P: _Problem, seed: int | None) -> list[np.ndarray]:
    """Feasible starts from plain k-means (``P.kmeans_starts`` k-means++ runs, none when 0).

    Where the radius does not bind, the k-means partition itself is feasible and is a start;
    where it binds, the points nearest to the k-means centers seed the most-constrained-first
    assignment (and their Voronoi cells, when feasible)."""
    if P.kmeans_starts == 0:
        return []
    from sklearn.cluster import KMeans

    state = int(rng(seed).integers(0, 2**31 - 1))
    km = KMeans(n_clusters=P.k, n_init=P.kmeans_starts, random_state=state).fit(P.X)
    labels = km.labels_.astype(np.int64)
    if _is_feasible(P.C, labels, P.k):
        return [labels]
    E = _sqdist(P.X, km.cluster_centers_)
    seeds: list[int] = []
    for a in range(P.k):  # the nearest point to each center, distinct
        order = np.argsort(E[:, a])
        seeds.append(int(next(i for i in order if i not in seeds)))
    out = []
    for cand in (_voronoi(P.D, np.asarray(seeds)), _greedy_assign(P.X, P.C, np.asarray(seeds))):
        if cand is not None and _is_feasible(P.C, cand, P.k):
            out.append(cand)
    return out


_METHODS = {"exact": _method_exact, "paper": _method_paper, "sdp": _method_sdp, "greedy": _method_greedy}


def _pick_method(method: str, n: int) -> str:
    check_option(method, "method", METHODS)
    if method != "auto":
        return method
    return "exact" if n <= AUTO_EXACT_MAX_N else "sdp" if n <= AUTO_SDP_MAX_N else "greedy"


def radius_kmeans(X: Any, k: int, r: float, *, method: str = "auto", seed: int | None = None,
                  n_init: int = 10, time_limit: float = 60.0, kmeans_starts: int = 0) -> RadiusKMeansResult:
    """k-means in which no cluster is wider than 2r.

    Parameters
    ----------
    X : array_like, shape (n, d)
        Points; finite values. Duplicates are allowed.
    k : int, 1 <= k <= n
        Number of clusters; all k are non-empty.
    r : float > 0
        Radius: any two points of a cluster are at most 2r apart.
    method : {"auto", "exact", "paper", "sdp", "greedy"}
        See the module docstring. ``"auto"`` picks exact (n <= 12), sdp (n <= 80) or greedy.
    seed : int or None, default None
        Seeds the random farthest-first starts of the greedy method (the other methods draw
        nothing). ``None`` takes the next draw from numpy's global generator, which
        :func:`helpers.runtime.setup` seeds with the notebook's base seed; pass an int (e.g.
        ``env.seed_for("kmeans")``) for a result that does not depend on earlier draws.
    n_init : int
        Number of greedy starts.
    time_limit : float
        Seconds allowed to each MILP solve.
    kmeans_starts : int, default 0
        Greedy method only: also start the local search from plain k-means (``KMeans`` with
        this many k-means++ starts): from its partition where the radius does not bind it,
        else from the points nearest to its centers as seeds. 0 leaves it out.

    Returns
    -------
    RadiusKMeansResult
        Labels (n,), centers (k, d), cost, lower bound (sdp only), method used. Labels and
        centers are torch tensors on ``X``'s device for a torch ``X``, numpy otherwise.

    Raises
    ------
    ValueError
        (a ``ParameterError``, also a TypeError) Bad input (shape, NaN/inf, k outside 1..n, r <= 0,
        unknown method, n too large, a bad n_init, time_limit or seed).
    InfeasibleRadiusError
        No partition satisfies r (proved by the bracket, the SDP, a conflict clique,
        exhaustive search or an exact MILP; the message says which and gives the bracket).
    RadiusUndecidedError
        Neither a partition nor a proof was found within the time limits.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [5.0, 0.0], [5.0, 1.0]])
    >>> res = radius_kmeans(X, 2, r=1.0)
    >>> res.labels.tolist(), res.cost, res.method
    ([0, 0, 1, 1], 1.0, 'exact')
    """
    X0, X = X, _check_X(X)
    n = len(X)
    k, r = _check_k(k, n), _check_r(r)
    name = _pick_method(method, n)
    _check_size(name, n)
    n_init = check_int(n_init, "n_init", low=1)
    time_limit = check_real(time_limit, "time_limit", low=0, low_open=True, hint=" (seconds)")
    seed = check_seed(seed)
    P = _problem(X, k, r, time_limit)
    P.kmeans_starts = check_int(kmeans_starts, "kmeans_starts", low=0)
    if r < P.bracket[0]:
        raise P.infeasible(
            f"the {k + 1} farthest-first points are pairwise more than 2r apart, so no two can share a cluster"
        )
    t0 = time.perf_counter()
    labels, used, details = _METHODS[name](P, seed, n_init)
    details["seconds"] = time.perf_counter() - t0
    res = _result(P, np.asarray(labels, dtype=np.int64), used, details)
    if not is_torch(X0):
        return res
    return RadiusKMeansResult(like(res.labels, X0), like(res.centers, X0), res.cost, res.lower_bound, res.method,
                              res.radius, res.details)


def _problem(X: np.ndarray, k: int, r: float, time_limit: float) -> _Problem:
    D = _distances(X)
    D2 = D**2
    start = _default_start(X)
    # Moves must improve J by more than rounding noise, or ties could cycle.
    tol = 1e-12 * max(float(((X - X.mean(0)) ** 2).sum()), 1e-300)
    return _Problem(X, k, r, D, D2, D > 2 * r, start, _bracket(D, k, start), tol, time_limit)


def _result(P: _Problem, labels: np.ndarray, method: str, details: dict) -> RadiusKMeansResult:
    # The guarantee is checked, not assumed: a violation here is a bug, never a result.
    if not _is_feasible(P.C, labels, P.k):
        raise RuntimeError(f"internal error: method {method!r} returned a partition violating r or emptying a cluster")
    centers = _means(P.X, labels, P.k)
    cost = float(((P.X - centers[labels]) ** 2).sum())
    sdp = details.get("sdp")
    lb = sdp.lower_bound if isinstance(sdp, SDPBound) else None
    return RadiusKMeansResult(labels, centers, cost, lb, method, P.r, details)


# --------------------------------------------------------------------------- estimator


class RadiusKMeans(ClusterMixin, BaseEstimator):
    """scikit-learn estimator for radius-constrained k-means (:func:`radius_kmeans`).

    Parameters
    ----------
    n_clusters : int, default 8
    radius : float or None, default None
        Radius r (clusters at most 2r wide). None uses the upper end ``hi`` of
        :func:`feasible_radius_bracket` on the training data, which is always feasible (the
        smallest positive float when hi = 0, i.e. at most k distinct points).
    method : {"auto", "exact", "paper", "sdp", "greedy"}, default "auto"
    n_init : int, default 10
        Greedy starts.
    random_state : int, RandomState or None, default 0

    Attributes
    ----------
    labels_ : ndarray of int, shape (n,)
    cluster_centers_ : ndarray, shape (n_clusters, d)
    inertia_ : float
        k-means cost of the training partition.
    radius_ : float
        Radius used.
    lower_bound_ : float or None
        SDP lower bound on the optimal cost (method "sdp").
    method_ : str
        Method used (fallbacks included).
    n_features_in_ : int

    Notes
    -----
    :meth:`predict` assigns new points to the nearest center, as KMeans does; the radius
    guarantee covers the training labels only, since a nearest-center cell can be wider than 2r.
    For the same reason ``predict(X_train)`` can differ from ``labels_`` when the radius binds:
    a radius-constrained partition need not be the Voronoi partition of its own centers.
    """

    def __init__(self, n_clusters: int = 8, radius: float | None = None, method: str = "auto",
                 n_init: int = 10, random_state: Any = 0):
        self.n_clusters = n_clusters
        self.radius = radius
        self.method = method
        self.n_init = n_init
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None) -> "RadiusKMeans":
        """Cluster X of shape (n, d); y is ignored."""
        from sklearn.utils import check_random_state
        from sklearn.utils.validation import validate_data

        X = validate_data(self, to_numpy(X, "X") if is_torch(X) else X, dtype=np.float64)
        k = _check_k(self.n_clusters, len(X))
        r = self.radius
        if r is None:
            r = feasible_radius_bracket(X, k)[1] or np.finfo(float).tiny
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        res = radius_kmeans(X, k, r, method=self.method, seed=seed, n_init=self.n_init)
        self.labels_, self.cluster_centers_, self.inertia_ = res.labels, res.centers, res.cost
        self.radius_, self.lower_bound_, self.method_ = res.radius, res.lower_bound, res.method
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Index of the nearest center for each row of X, shape (n,)."""
        from sklearn.utils.validation import check_is_fitted, validate_data

        check_is_fitted(self)
        X = validate_data(self, to_numpy(X, "X") if is_torch(X) else X, dtype=np.float64, reset=False)
        return np.argmin(_sqdist(X, self.cluster_centers_), axis=1)
