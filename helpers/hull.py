r"""Exact convex-hull membership, with a certificate for every answer.

A query :math:`q \in \mathbb{R}^d` *interpolates* the points :math:`x_1, \dots, x_N` when it lies
in their convex hull, i.e. when convex weights reproduce it:

.. math::  \lambda_i \ge 0,\quad \textstyle\sum_i \lambda_i = 1,\quad \sum_i \lambda_i x_i = q.

Otherwise (Farkas' lemma) a hyperplane separates it: some :math:`a` has
:math:`a \cdot q > b \ge \max_i a \cdot x_i`. :func:`in_hull` returns one of these two objects
for every query, and :meth:`HullResult.verify` checks them with a few matrix products, so no
solver has to be trusted.

Method. The decision is the nearest-point problem :math:`\min_{p \in \mathrm{hull}} \|q - p\|`:
its optimum is either :math:`q` itself (inside, with the weights of :math:`p`) or a point
:math:`p \ne q` whose direction :math:`a = q - p` separates (outside). The stages run from
cheap to expensive, each on the queries that earlier ones left open:

1. ``box``: the support function along the coordinate axes (``q_k > max_i x_ik`` or
   ``q_k < min_i x_ik``).
2. ``radial`` and ``vertex``: one matrix product of the queries with the points gives the
   support function in the direction ``q - mean(points)``, and the nearest data point (a
   query that coincides with a data point is inside with one weight).
3. ``frank-wolfe``: Gilbert's nearest-point iteration, batched over all open queries. Each
   iterate ``p`` is in the hull, so ``a = q - p`` is tested against every point with one
   matrix product per iteration. Stops once an iteration certifies < 2 % of the open queries.
4. ``nnls``: column generation on the exact nearest-point problem. For a small candidate set
   ``C`` (the nearest points and the Frank-Wolfe atoms), non-negative least squares
   (Lawson-Hanson, :func:`scipy.optimize.nnls`) on the columns ``[x_i - q; 1]`` with target
   ``[0; 1]`` returns the point of ``conv(C)`` nearest to ``q`` (see ``_nearest_in_subset``).
   Distance within tolerance: inside, with those weights. Otherwise ``a = q - p`` separates
   ``C``; one matrix product checks it against all points, and the points that violate it
   join ``C``. Each round shrinks the distance (strictly, in exact arithmetic); after
   ``cg_rounds`` rounds (default 50) the query goes on to the LP. On Gaussian data this
   stage decides every query the cheap tests leave open, at about a millisecond or less
   per query for N = 10^4.
5. ``lp``: what is still open goes to the LP of the l1 distance to the hull,
   ``max a·q - b`` s.t. ``a·x_i <= b``, ``|a|_inf <= 1`` (``scipy.optimize.linprog``, HiGHS).
   Its optimum gives the separator; its dual multipliers give the weights, which are polished
   by NNLS on their support. A status other than optimal (HiGHS can report "unknown" on
   high-dimensional infeasible queries) is never read as an answer: the LP is re-solved with
   ``highs-ipm`` then ``highs-ds``.
6. ``exact``: NNLS over all points, the full nearest-point problem, for anything left.

Every certificate is then checked in the caller's coordinates with the same test as
:meth:`HullResult.verify`. A query for which no certificate verifies raises
:class:`HullDecisionError` naming its index; there are no silent answers.

Tolerance. With ``scale_j = max(max_i,k |x_ik|, max_k |q_jk|)`` and ``tol_j = rtol * scale_j``
(``rtol = 1e-9`` by default), query ``j`` is

* inside when weights reproduce it within ``tol_j`` in the Euclidean norm,
  ``||sum_i lambda_i x_i - q_j||_2 <= tol_j``; points on the boundary are inside;
* outside when a hyperplane clears it by more than ``tol_j`` in distance,
  ``a·q_j - b > tol_j ||a||_2`` with ``b >= max_i a·x_i`` (so its distance to the hull is
  ``> tol_j``).

The scale uses absolute values because floating-point rounding grows with them. A query
whose distance to the hull is within rounding of ``tol_j`` itself (a relative band of about
``1e-6 + 4 d^1.5 eps / rtol``, e.g. 0.4 % of ``tol_j`` at d = 256) fits neither test robustly
fits neither test robustly. Such a query (a point sampled on a curve in convex position can
land there) is decided again with ``rtol`` ten times larger, up to ``retries`` times; the
tolerance each query was decided at is kept in ``HullResult.query_rtol`` and used by
:meth:`HullResult.verify`. A query still undecided after that raises
:class:`HullDecisionError`. Computation happens in centred coordinates scaled to unit size,
so data at scale 1e-3 or 1e3 are handled alike.

Types. Torch tensors are accepted (any device and float dtype, bfloat16 included) and
converted to float64 numpy arrays at the boundary, where the computation happens. Tensors in,
tensors out (the package's rule): when the queries (or, failing that, the points) are a torch
tensor, ``HullResult.inside`` (bool), ``HullResult.normals`` and
``HullResult.offsets`` (float64) are torch tensors on that tensor's device (float64 ones on
the CPU for MPS, which has no float64). The per-query certificate weights and indices (ragged)
and the stage names (strings) stay numpy; :meth:`HullResult.verify` accepts either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from scipy.optimize import linprog, nnls
from helpers._progress import bar as progress_bar

from helpers._checks import ParameterError, check_int, check_real, is_torch, like, to_numpy

#: What the public functions accept as data: a numpy array, a torch tensor or nested lists.
ArrayLike = Any

__all__ = [
    "CertificateError",
    "HullDecisionError",
    "HullResult",
    "STAGES",
    "in_hull",
    "interpolation_probability",
    "interval_probability",
    "wendel_probability",
]

#: Stage names, in the order they run (``HullResult.stage`` holds one per query).
STAGES = ("box", "radial", "vertex", "frank-wolfe", "nnls", "lp", "exact")

DEFAULT_RTOL = 1e-9
# Scaled-space decisions demand this much more than the final test (relative to tol), so a
# certificate accepted in scaled coordinates still passes in the caller's coordinates.
_SAFETY = 1e-6
# HiGHS methods tried in turn when one does not report "optimal".
_LP_METHODS = ("highs", "highs-ipm", "highs-ds")
# Keep one (queries x points) block of products under this many entries (32 MiB).
_BLOCK = 1 << 22
_EPS = np.finfo(np.float64).eps


class CertificateError(ValueError):
    """A certificate failed its check (a ``ValueError``); ``failures`` maps query index to the reason."""

    def __init__(self, failures: dict[int, str], total: int):
        self.failures = dict(failures)
        shown = "; ".join(f"query {j}: {why}" for j, why in list(self.failures.items())[:10])
        more = "" if len(self.failures) <= 10 else f"; ... and {len(self.failures) - 10} more"
        super().__init__(f"{len(self.failures)} of {total} certificates failed: {shown}{more}")


class HullDecisionError(RuntimeError):
    """No certificate could be verified for some queries; ``indices`` lists them."""

    def __init__(self, indices: list[int], detail: str):
        self.indices = list(indices)
        shown = ", ".join(map(str, self.indices[:20])) + (" ..." if len(self.indices) > 20 else "")
        super().__init__(
            f"could not certify query index(es) [{shown}] either inside or outside the hull: "
            f"{detail}. Such a query lies within rounding error of the tolerance boundary "
            f"(distance to the hull close to rtol * scale, at every tolerance tried); retry with "
            f"another rtol or more retries."
        )


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, eq=False)
class HullResult:
    """Decisions of :func:`in_hull` with one certificate per query.

    Attributes
    ----------
    inside : np.ndarray or torch.Tensor, shape (Q,), bool
        True where the query is in the convex hull (within tolerance); a torch tensor on the
        queries' device when the input was torch (module docstring, "Types").
    weight_indices : tuple of Q np.ndarray of int64
        For an inside query ``j``, the indices of the points with non-zero weight (at most a
        few more than ``d + 1``); empty for an outside query.
    weights : tuple of Q np.ndarray of float64
        The matching convex weights: positive and summing to 1; empty when outside.
    normals : np.ndarray or torch.Tensor, shape (Q, d), float64
        For an outside query, the normal ``a`` of a separating hyperplane; NaN rows when inside.
    offsets : np.ndarray or torch.Tensor, shape (Q,), float64
        For an outside query, the offset ``b`` with ``a·q > b >= max_i a·x_i``; NaN when inside.
    stage : np.ndarray, shape (Q,), str
        Which stage certified each query (one of :data:`STAGES`).
    rtol : float
        The relative tolerance asked for (see the module docstring).
    query_rtol : np.ndarray, shape (Q,), float64, or None
        The relative tolerance each query was decided at: ``rtol``, or a multiple of ten of it
        for a query within rounding of the first tolerance (``in_hull``'s ``retries``). None
        means ``rtol`` for every query.
    """

    inside: np.ndarray
    weight_indices: tuple[np.ndarray, ...]
    weights: tuple[np.ndarray, ...]
    normals: np.ndarray
    offsets: np.ndarray
    stage: np.ndarray
    rtol: float
    query_rtol: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.inside)

    @property
    def fraction_inside(self) -> float:
        """Fraction of queries inside the hull (NaN for zero queries)."""
        return float(_np(self.inside).mean()) if len(self.inside) else float("nan")

    def stage_counts(self) -> dict[str, int]:
        """Number of queries certified by each stage, in :data:`STAGES` order."""
        return {s: int(np.sum(self.stage == s)) for s in STAGES}

    def verify(self, points: ArrayLike, queries: ArrayLike) -> bool:
        """Check every certificate against the data, trusting nothing the solvers did.

        Inside: indices are valid, weights are finite, non-negative and sum to 1 (within
        1e-12), and ``||sum_i w_i x_i - q||_2 <= tol``. Outside: ``a`` is finite and non-zero,
        ``b >= max_i a·x_i`` (recomputed here) and ``a·q - b > tol ||a||_2``. ``tol`` is
        recomputed from ``query_rtol`` (or ``rtol``) and the data, as in the module docstring.

        Parameters
        ----------
        points : array-like, shape (N, d)
            The points passed to :func:`in_hull` (numpy or torch).
        queries : array-like, shape (Q, d)
            The queries passed to :func:`in_hull`.

        Returns
        -------
        bool
            True when every certificate holds.

        Raises
        ------
        CertificateError
            When any certificate fails; ``.failures`` maps each failing query index to the
            reason, and the message lists the first ten.
        ValueError
            When the data do not match this result's shapes.
        """
        X, Q = _validate(points, queries)
        if len(Q) != len(self.inside) or tuple(self.normals.shape[1:]) != (X.shape[1],):
            raise ParameterError(
                f"this result is for {len(self.inside)} queries in {self.normals.shape[1]} "
                f"dimensions, but got queries of shape {Q.shape}; pass the same points and "
                "queries that produced it"
            )
        rtol = self.rtol if self.query_rtol is None else np.asarray(self.query_rtol, dtype=float)
        failures = _check_certificates(X, Q, _tolerances(X, Q, rtol), self)
        if failures:
            raise CertificateError(failures, len(Q))
        return True


def _check_certificates(X: np.ndarray, Q: np.ndarray, tol: np.ndarray, res: HullResult) -> dict[int, str]:
    """Reasons keyed by query index for every certificate of ``res`` that fails (see verify)."""
    failures: dict[int, str] = {}
    inside = _np(res.inside).astype(bool)
    for j in np.flatnonzero(inside):
        why = _check_weights(X, Q[j], tol[j], res.weight_indices[j], res.weights[j])
        if why:
            failures[int(j)] = why
    out = np.flatnonzero(~inside)
    if out.size:
        A, b = _np(res.normals)[out].astype(float), _np(res.offsets)[out].astype(float)
        finite = np.isfinite(A).all(1) & np.isfinite(b) & (np.abs(A).sum(1) > 0)
        A0 = np.where(finite[:, None], A, 0.0)
        top = _max_products(X, A0)
        gap = np.einsum("ij,ij->i", A0, Q[out]) - b
        need = tol[out] * np.linalg.norm(A0, axis=1)
        for k in np.flatnonzero(~(finite & (b >= top) & (gap > need))):
            if not finite[k]:
                why = "outside, but the normal or offset is missing, infinite or zero"
            elif not b[k] >= top[k]:
                why = f"offset b={b[k]:.6g} is below max_i a·x_i={top[k]:.6g}"
            else:
                why = f"a·q - b = {gap[k]:.3g} does not exceed tol*||a|| = {need[k]:.3g}"
            failures[int(out[k])] = why
    return dict(sorted(failures.items()))


def _check_weights(X: np.ndarray, q: np.ndarray, tol: float, idx: Any, w: Any) -> str:
    """Why the convex weights ``(idx, w)`` fail to reproduce ``q``, or '' when they do."""
    idx, w = np.asarray(idx), np.asarray(w, dtype=float)
    if idx.ndim != 1 or idx.shape != w.shape or idx.size == 0:
        return "inside, but the weights are missing or their shape does not match the indices"
    if not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0 or idx.max() >= len(X):
        return f"weight indices must be integers in [0, {len(X)})"
    if not np.isfinite(w).all() or w.min() < 0:
        return "weights must be finite and non-negative"
    if abs(w.sum() - 1.0) > 1e-12:
        return f"weights sum to {w.sum():.15g}, not 1"
    resid = float(np.linalg.norm(w @ X[idx] - q))
    if not resid <= tol:
        return f"weights reproduce the query only to {resid:.3g} > tol {tol:.3g}"
    return ""


def _max_products(X: np.ndarray, A: np.ndarray) -> np.ndarray:
    """``max_i a_k·x_i`` for every row ``a_k`` of ``A``, shape (K,), in bounded-memory blocks."""
    out = np.empty(len(A))
    step = max(1, _BLOCK // max(len(X), 1))
    for s in range(0, len(A), step):
        out[s : s + step] = (A[s : s + step] @ X.T).max(axis=1)
    return out


# --------------------------------------------------------------------------- input checks


def _np(a: Any) -> np.ndarray:
    """A result array as numpy (a torch tensor is copied to the host)."""
    return a.detach().cpu().numpy() if is_torch(a) else np.asarray(a)


def _as_array(x: Any, name: str) -> np.ndarray:
    """``x`` as a float64 numpy array (torch tensors of any device and float dtype included)."""
    return to_numpy(x, name)


def _validate(points: ArrayLike, queries: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs as float64 arrays, after checking shapes and values; ValueError otherwise."""
    X, Q = _as_array(points, "points"), _as_array(queries, "queries")
    for name, a, shape in (("points", X, "(N, d)"), ("queries", Q, "(Q, d)")):
        if a.ndim != 2:
            raise ParameterError(
                f"{name} must be a 2-D array of shape {shape}, got ndim={a.ndim} (shape "
                f"{a.shape}); reshape 1-D data with .reshape(-1, 1) (one coordinate) or "
                f"[None, :] (one row)"
            )
    if X.shape[0] == 0:
        raise ParameterError("points is empty (N = 0): the hull of no points is empty; pass at least one point")
    if X.shape[1] == 0:
        raise ParameterError("points have no coordinates (d = 0); pass arrays of shape (N, d) with d >= 1")
    if Q.shape[1] != X.shape[1]:
        raise ParameterError(
            f"dimension mismatch: points have d={X.shape[1]} coordinates but queries have "
            f"{Q.shape[1]}; pass queries of shape (Q, {X.shape[1]})"
        )
    for name, a in (("points", X), ("queries", Q)):
        bad = ~np.isfinite(a)
        if bad.any():
            rows = np.flatnonzero(bad.any(axis=1))
            raise ParameterError(
                f"{name} contain NaN or infinite values (rows {rows[:10].tolist()}"
                f"{' ...' if rows.size > 10 else ''}); drop or impute those rows first"
            )
    return X, Q


def _tolerances(X: np.ndarray, Q: np.ndarray, rtol: float | np.ndarray) -> np.ndarray:
    """Absolute tolerance per query, ``rtol * max(max|X|, max|q_j|)``, shape (Q,); ``rtol`` is
    one number or one per query."""
    if Q.shape[0] == 0:
        return np.zeros(0)
    return rtol * np.maximum(np.abs(X).max(), np.abs(Q).max(axis=1))


# --------------------------------------------------------------------------- working state


class _Work:
    """Open/decided bookkeeping for one block of queries, in centred, unit-scaled coordinates."""

    def __init__(self, Xs: np.ndarray, Qs: np.ndarray, tol: np.ndarray, bar: Any):
        m, d = Qs.shape
        self.Xs, self.Qs, self.tol, self.bar = Xs, Qs, tol, bar
        self.open = np.ones(m, dtype=bool)
        self.inside = np.zeros(m, dtype=bool)
        self.stage = np.full(m, "", dtype="<U12")
        self.normals = np.full((m, d), np.nan)
        self.idx: list[np.ndarray] = [np.zeros(0, np.int64)] * m
        self.lam: list[np.ndarray] = [np.zeros(0)] * m
        self.cand: list[np.ndarray] = [np.zeros(0, np.int64)] * m  # column-generation seeds

    def open_rows(self) -> np.ndarray:
        return np.flatnonzero(self.open)

    def set_outside(self, rows: np.ndarray, A: np.ndarray, stage: str) -> None:
        self.normals[rows] = A
        self.open[rows] = False
        self.stage[rows] = stage
        self.bar.update(len(rows))

    def set_inside(self, j: int, idx: np.ndarray, lam: np.ndarray, stage: str) -> None:
        self.idx[j], self.lam[j] = idx.astype(np.int64), lam
        self.inside[j], self.open[j], self.stage[j] = True, False, stage
        self.bar.update(1)

    def add_candidates(self, j: int, new: np.ndarray) -> None:
        self.cand[j] = np.union1d(self.cand[j], new)


def _separates(W: np.ndarray, Qs: np.ndarray, top: np.ndarray, tol: np.ndarray) -> np.ndarray:
    """Rows where ``w·q - max_i w·x_i`` exceeds the distance tolerance (with the safety margin)."""
    gap = np.einsum("ij,ij->i", W, Qs) - top
    return gap > tol * (1 + _SAFETY) * np.linalg.norm(W, axis=1)


# --------------------------------------------------------------------------- stages 1-3


def _box_stage(st: _Work) -> None:
    """Certify queries beyond the data's range in some coordinate (normal = ±unit vector)."""
    J = st.open_rows()
    lo, hi = st.Xs.min(axis=0), st.Xs.max(axis=0)
    q = st.Qs[J]
    over, under = q - hi, lo - q  # (m, d): how far beyond each face of the bounding box
    gap = np.maximum(over, under)
    k = gap.argmax(axis=1)
    best = gap[np.arange(len(J)), k]
    ok = best > st.tol[J] * (1 + _SAFETY)
    rows = J[ok]
    A = np.zeros((rows.size, st.Xs.shape[1]))
    A[np.arange(rows.size), k[ok]] = np.where(over[ok, k[ok]] >= under[ok, k[ok]], 1.0, -1.0)
    st.set_outside(rows, A, "box")


def _radial_stage(st: _Work, n_neighbours: int) -> np.ndarray:
    """Radial test, vertex test and nearest-neighbour seeds from one product with the points.

    In centred coordinates the centroid is 0, so ``a = q`` is the radial direction and
    ``X @ q`` is both its support function and the cross term of the squared distances.
    Returns the start of the Frank-Wolfe iteration for the open queries, shape (m_open, d).
    """
    Xs, J = st.Xs, st.open_rows()
    if J.size == 0:
        return np.zeros((0, Xs.shape[1]))
    q = st.Qs[J]
    G = q @ Xs.T  # (m, N)
    ok = _separates(q, q, G.max(axis=1), st.tol[J])
    sq = np.einsum("ij,ij->i", Xs, Xs)
    dist2 = sq[None, :] - 2 * G  # ||x - q||^2 - ||q||^2: same order
    k = min(n_neighbours, Xs.shape[0])
    near = np.argpartition(dist2, k - 1, axis=1)[:, :k]
    nn = near[np.arange(len(J)), dist2[np.arange(len(J))[:, None], near].argmin(axis=1)]
    start = Xs[nn].copy()
    for r, j in enumerate(J):
        st.cand[j] = np.unique(near[r])
    st.set_outside(J[ok], q[ok], "radial")
    # A query equal to a data point (within tol) is inside with a single weight.
    hit = ~ok & (np.linalg.norm(q - start, axis=1) <= st.tol[J] * (1 - _SAFETY))
    for r in np.flatnonzero(hit):
        st.set_inside(int(J[r]), nn[r : r + 1], np.ones(1), "vertex")
    return start[st.open[J]]


def _frank_wolfe_stage(st: _Work, P: np.ndarray, max_iter: int, min_rate: float) -> None:
    """Gilbert's nearest-point iteration for all open queries at once.

    ``P`` (m_open, d) holds points of the hull; ``a = q - p`` is tested against every point
    with one product, and the maximiser (the Frank-Wolfe atom) is both the next step's target
    and a column-generation seed. Stops when an iteration certifies fewer than ``min_rate``
    of the open queries: the rest are inside or close to the boundary.
    """
    J = st.open_rows()
    for it in range(max_iter):
        if J.size == 0:
            return
        W = st.Qs[J] - P
        G = W @ st.Xs.T
        s = G.argmax(axis=1)
        ok = _separates(W, st.Qs[J], G[np.arange(len(J)), s], st.tol[J])
        st.set_outside(J[ok], W[ok], "frank-wolfe")
        keep = ~ok
        for r in np.flatnonzero(keep):
            st.add_candidates(int(J[r]), s[r : r + 1])
        D = st.Xs[s] - P  # step toward the atom, exact line search on ||q - p||^2
        denom = np.einsum("ij,ij->i", D, D)
        gamma = np.clip(np.einsum("ij,ij->i", W, D) / np.where(denom > 0, denom, 1.0), 0.0, 1.0)
        P = (P + gamma[:, None] * D)[keep]
        J = J[keep]
        if it >= 2 and ok.sum() < min_rate * len(ok):
            return


# --------------------------------------------------------------------------- stages 4-6


def _nearest_in_subset(XC: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    r"""Point of ``conv(XC)`` nearest to ``q``, as (positions in XC, convex weights).

    NNLS on the columns :math:`b_i = [x_i - q; 1]` with target :math:`t = [0; 1]`: for
    :math:`\mu = s\lambda` the objective is :math:`s^2 D(\lambda)^2 + (1 - s)^2`, minimised
    over :math:`s` at :math:`D^2 / (1 + D^2)`, which is increasing in the distance
    :math:`D(\lambda) = \|X_C^T \lambda - q\|`. So :math:`\lambda = \mu / \sum \mu` is the
    nearest point's weights, and Lawson-Hanson's active set keeps at most ``d + 1`` of them.
    Returns None when NNLS fails (iteration limit).
    """
    k, d = XC.shape
    B = np.empty((d + 1, k))
    B[:d] = (XC - q).T
    B[d] = 1.0
    t = np.zeros(d + 1)
    t[d] = 1.0
    try:
        mu, _ = nnls(B, t, maxiter=max(100, 30 * k))
    except RuntimeError:
        return None
    keep = np.flatnonzero(mu > 0)
    total = mu[keep].sum()
    if keep.size == 0 or not np.isfinite(total) or total <= 0:
        return None
    return keep, mu[keep] / total


def _try_nearest(st: _Work, j: int, C: np.ndarray, stage: str) -> np.ndarray | None:
    """Inside-certify query ``j`` from the nearest point of ``conv(X[C])`` or return ``q - p``."""
    got = _nearest_in_subset(st.Xs[C], st.Qs[j])
    if got is None:
        return None
    pos, lam = got
    w = st.Qs[j] - lam @ st.Xs[C[pos]]
    if np.linalg.norm(w) <= st.tol[j] * (1 - _SAFETY):
        st.set_inside(j, C[pos], lam, stage)
        return None
    return w


def _column_generation_stage(st: _Work, max_rounds: int, n_add: int) -> None:
    """Exact nearest point over growing candidate sets, with one global check per round."""
    J = st.open_rows()
    for _ in range(max_rounds):
        rows, W = [], []
        for j in J:
            w = _try_nearest(st, int(j), st.cand[j], "nnls")
            if w is not None:
                rows.append(int(j))
                W.append(w)
        if not rows:
            return
        rows_a, W_a = np.array(rows), np.array(W)
        G = W_a @ st.Xs.T
        ok = _separates(W_a, st.Qs[rows_a], G.max(axis=1), st.tol[rows_a])
        st.set_outside(rows_a[ok], W_a[ok], "nnls")
        still = []
        for r in np.flatnonzero(~ok):
            j = int(rows_a[r])
            # The points that beat q along a (they block the certificate) join the candidates.
            k = min(n_add, G.shape[1])
            top = np.argpartition(-G[r], k - 1)[:k]
            new = np.setdiff1d(top, st.cand[j])
            if new.size:  # otherwise NNLS is stuck on rounding: leave the query to the LP
                st.add_candidates(j, new)
                still.append(j)
        J = np.array(still, dtype=np.int64)
        if J.size == 0:
            return


def _l1_lp(A_ub: np.ndarray, q: np.ndarray, method: str) -> Any:
    """The l1-distance LP ``max a·q - b`` s.t. ``X a <= b``, ``|a|_inf <= 1`` with one method.

    ``A_ub = [X, -1]``. Its value is the l1 distance from ``q`` to the hull (LP duality);
    unlike the feasibility LP it is always feasible and bounded, so any status other than
    optimal is a numerical failure, not an answer.
    """
    N, d1 = A_ub.shape
    bounds = [(-1.0, 1.0)] * (d1 - 1) + [(None, None)]
    return linprog(np.r_[-q, 1.0], A_ub=A_ub, b_ub=np.zeros(N), bounds=bounds, method=method)


def _lp_stage(st: _Work) -> None:
    """Solve the l1 LP for each open query; read both certificates off its primal and dual."""
    rows = st.open_rows()
    if len(rows) == 0:  # the cheap stages decided everything: skip building the LP matrix
        return
    A_ub = np.hstack([st.Xs, -np.ones((st.Xs.shape[0], 1))])
    for j in rows:
        j = int(j)
        for method in _LP_METHODS:
            res = _l1_lp(A_ub, st.Qs[j], method)
            if res.status != 0 or res.x is None:
                continue  # "unknown"/numerical trouble is never an answer: next method
            a = res.x[:-1]
            top = (st.Xs @ a).max()
            if _separates(a[None], st.Qs[j : j + 1], np.array([top]), st.tol[j : j + 1])[0]:
                st.set_outside(np.array([j]), a[None], "lp")
                break
            lam = -np.asarray(res.ineqlin.marginals)
            support = np.flatnonzero(lam > 1e-9 * max(lam.max(), 0.0))
            if support.size:  # polish the LP's weights to round-off on their support
                _try_nearest(st, j, support, "lp")
            break  # an optimal LP that certifies neither way is a boundary case: stage 6


def _exact_stage(st: _Work) -> None:
    """The full nearest-point problem (NNLS over every point) for what is still open."""
    all_points = np.arange(st.Xs.shape[0])
    for j in st.open_rows():
        j = int(j)
        w = _try_nearest(st, j, all_points, "exact")
        if w is not None:
            top = (st.Xs @ w).max()
            if _separates(w[None], st.Qs[j : j + 1], np.array([top]), st.tol[j : j + 1])[0]:
                st.set_outside(np.array([j]), w[None], "exact")


# --------------------------------------------------------------------------- driver


def _solve_block(X: np.ndarray, Q: np.ndarray, tol: np.ndarray, opts: dict, bar: Any) -> _Work:
    """Run the stages on one block of queries (coordinates: the caller's)."""
    centre = X.mean(axis=0)
    spread = np.abs(X - centre).max()
    unit = spread if spread > 0 else 1.0  # a single (repeated) point has no spread
    st = _Work((X - centre) / unit, (Q - centre) / unit, tol / unit, bar)
    d = X.shape[1]
    _box_stage(st)
    # Candidate-set sizes: enough points to surround a query (a simplex has d + 1).
    P = _radial_stage(st, n_neighbours=max(2 * (d + 1), 16))
    _frank_wolfe_stage(st, P, opts["fw_iter"], min_rate=0.02)
    _column_generation_stage(st, opts["cg_rounds"], n_add=max(2 * (d + 1), 16))
    _lp_stage(st)
    _exact_stage(st)
    return st


def in_hull(
    points: ArrayLike,
    queries: ArrayLike,
    *,
    rtol: float = DEFAULT_RTOL,
    progress: bool = False,
    fw_iter: int = 30,
    cg_rounds: int = 50,
    retries: int = 2,
) -> HullResult:
    """Decide, for each query, whether it lies in the convex hull of the points, with proof.

    Parameters
    ----------
    points : array-like, shape (N, d)
        The points spanning the hull (numpy or torch, any float dtype or device). Duplicates
        and flat sets (in a lower-dimensional affine subspace, a single point) are fine.
    queries : array-like, shape (Q, d)
        The points to test.
    rtol : float, default 1e-9
        Relative tolerance; query ``j`` uses ``tol_j = rtol * max(max|points|, max|q_j|)``
        (module docstring). Points on the boundary are inside.
    progress : bool, default False
        Show a ``tqdm`` bar of decided queries (useful for large Q or N).
    fw_iter : int, default 30
        Most Frank-Wolfe iterations (stage 3); it usually stops earlier by itself.
    cg_rounds : int, default 50
        Most column-generation rounds (stage 4) before a query goes to the LP; 0 sends every
        query the first stages leave open straight to the LP.
    retries : int, default 2
        How many times a query that no certificate decides (its distance to the hull is within
        rounding of its tolerance) is decided again with ``rtol`` ten times larger;
        ``HullResult.query_rtol`` records the tolerance used. 0 raises at once.

    Returns
    -------
    HullResult
        ``inside`` (Q,) and a verified certificate per query; see :class:`HullResult`.
        ``inside``, ``normals`` and ``offsets`` are torch tensors on the queries' device when
        the queries (or the points) are torch, numpy otherwise.

    Raises
    ------
    ValueError
        (a ``ParameterError``, also a TypeError) For NaN/infinite values, wrong ndim, dimension
        mismatch, no points, a bad rtol, fw_iter or cg_rounds.
    HullDecisionError
        When some query can be certified neither inside nor outside, even after ``retries``
        looser tolerances; the message names the indices.

    Examples
    --------
    >>> import numpy as np
    >>> square = np.array([[0, 0], [1, 0], [0, 1], [1, 1]])
    >>> res = in_hull(square, [[0.5, 0.5], [2.0, 0.5], [1.0, 1.0]])
    >>> res.inside.tolist()
    [True, False, True]
    >>> res.verify(square, [[0.5, 0.5], [2.0, 0.5], [1.0, 1.0]])
    True

    Torch in, torch out:

    >>> import torch
    >>> in_hull(torch.tensor([[0.0], [1.0]]), torch.tensor([[0.5], [1.5]])).inside
    tensor([ True, False])
    """
    check_real(rtol, "rtol", low=0, high=1e-2, low_open=True, high_open=True, hint="; the default is 1e-9")
    fw_iter, cg_rounds = check_int(fw_iter, "fw_iter", low=0), check_int(cg_rounds, "cg_rounds", low=0)
    retries = check_int(retries, "retries", low=0)
    X, Q = _validate(points, queries)
    opts = dict(fw_iter=int(fw_iter), cg_rounds=int(cg_rounds))
    rtol_q = np.full(len(Q), float(rtol))
    with progress_bar(total=len(Q), progress=progress, desc="in_hull", unit="query") as bar:
        found = _Decisions.of(_solve_all(X, Q, _tolerances(X, Q, rtol_q), opts, bar), X.shape[1])
    for attempt in range(retries + 1):
        res, failures = _assemble(X, Q, rtol_q, found, float(rtol))
        if not failures:
            break
        if attempt == retries:
            raise HullDecisionError(sorted(failures), "; ".join(list(failures.values())[:3]))
        # Within rounding of its tolerance: decide those queries again at ten times it.
        bad = np.array(sorted(failures))
        rtol_q[bad] *= 10
        with progress_bar(total=len(bad), progress=False) as quiet:
            redo = _solve_all(X, Q[bad], _tolerances(X, Q[bad], rtol_q[bad]), opts, quiet)
        found.replace(bad, _Decisions.of(redo, X.shape[1]))
    ref = queries if is_torch(queries) else points
    if not is_torch(ref):
        return res
    return HullResult(like(res.inside, ref), res.weight_indices, res.weights, like(res.normals, ref),
                      like(res.offsets, ref), res.stage, res.rtol, res.query_rtol)


def _solve_all(X: np.ndarray, Q: np.ndarray, tol: np.ndarray, opts: dict, bar: Any) -> list[_Work]:
    """Run the stages on blocks of queries small enough to keep (queries x points) in memory."""
    step = max(1, min(4096, _BLOCK // len(X)))
    return [_solve_block(X, Q[s : s + step], tol[s : s + step], opts, bar) for s in range(0, len(Q), step)]


@dataclass(eq=False)
class _Decisions:
    """Per-query decisions of all blocks, concatenated (caller's query order)."""

    inside: np.ndarray
    open: np.ndarray
    normals: np.ndarray
    stage: np.ndarray
    idx: list
    lam: list

    @classmethod
    def of(cls, parts: list[_Work], d: int) -> "_Decisions":
        if not parts:
            return cls(np.zeros(0, bool), np.zeros(0, bool), np.zeros((0, d)), np.zeros(0, "<U12"), [], [])
        return cls(np.concatenate([p.inside for p in parts]), np.concatenate([p.open for p in parts]),
                   np.concatenate([p.normals for p in parts]), np.concatenate([p.stage for p in parts]),
                   [i for p in parts for i in p.idx], [w for p in parts for w in p.lam])

    def replace(self, rows: np.ndarray, new: "_Decisions") -> None:
        for name in ("inside", "open", "normals", "stage"):
            getattr(self, name)[rows] = getattr(new, name)
        for k, j in enumerate(rows):
            self.idx[j], self.lam[j] = new.idx[k], new.lam[k]


def _assemble(X: np.ndarray, Q: np.ndarray, rtol_q: np.ndarray, found: _Decisions,
              rtol: float) -> tuple[HullResult, dict[int, str]]:
    """Set offsets in the caller's coordinates and check every certificate; the result and
    the reasons, keyed by query index, of the queries left undecided."""
    d = X.shape[1]
    offsets = np.full(len(Q), np.nan)
    out = np.flatnonzero(~found.inside & ~found.open)
    if out.size:
        A = found.normals[out]
        # b = max_i a·x_i plus a rounding allowance, so that any reasonable recomputation of
        # the maximum (another BLAS, another summation order) stays below b.
        allowance = 4 * (d + 2) * _EPS * np.abs(A).sum(axis=1) * np.abs(X).max()
        offsets[out] = _max_products(X, A) + allowance
    query_rtol = None if np.all(rtol_q == rtol) else rtol_q.copy()
    res = HullResult(found.inside.copy(), tuple(found.idx), tuple(found.lam), found.normals.copy(),
                     offsets, found.stage.copy(), rtol, query_rtol)
    unproven = {int(j): "no stage produced a valid certificate" for j in np.flatnonzero(found.open)}
    decided = ~found.open
    failures = _check_certificates(X, Q, _tolerances(X, Q, rtol_q), res) if decided.any() else {}
    failures = {j: why for j, why in failures.items() if decided[j]}
    return res, dict(sorted({**unproven, **failures}.items()))


# --------------------------------------------------------------------------- summaries & theory


def interpolation_probability(points: ArrayLike, queries: ArrayLike, **kwargs: Any) -> float:
    """Fraction of queries inside the convex hull of the points (the paper's P_in).

    Parameters
    ----------
    points : array-like, shape (N, d)
    queries : array-like, shape (Q, d), Q >= 1
    **kwargs
        Passed to :func:`in_hull` (``rtol``, ``progress``, ...).

    Returns
    -------
    float
        ``in_hull(points, queries).inside.mean()``, in [0, 1].
    """
    res = in_hull(points, queries, **kwargs)
    if len(res) == 0:
        raise ParameterError("queries is empty: the fraction inside is undefined; pass at least one query")
    return res.fraction_inside


def _positive_int(n: Any, name: str) -> int:
    return check_int(n, name, low=1)


def wendel_probability(n: int, d: int) -> float:
    r"""Probability that the origin lies *outside* the convex hull of ``n`` random points in R^d.

    Wendel's theorem (Wendel 1962, "A problem in geometric probabilities", Math. Scand. 11,
    109-111): if :math:`X_1, \dots, X_n` are i.i.d. with a distribution symmetric about the
    origin (:math:`X \overset{d}{=} -X`) and are almost surely in general position (e.g. any
    density: Gaussian, uniform in a ball), then

    .. math:: P(0 \notin \mathrm{conv}\{X_1, \dots, X_n\}) = 2^{-(n-1)} \sum_{k=0}^{d-1} \binom{n-1}{k}.

    It is 1 for ``n <= d`` and exactly 1/2 at ``n = 2d``; the probability that the origin is
    inside is one minus this. Computed exactly in rational arithmetic, then rounded to float.

    Parameters
    ----------
    n : int
        Number of points, >= 1.
    d : int
        Dimension, >= 1.

    Returns
    -------
    float
        :math:`P(0 \notin \mathrm{hull})`, in (0, 1].
    """
    n, d = _positive_int(n, "n"), _positive_int(d, "d")
    total = sum(math.comb(n - 1, k) for k in range(min(d, n)))
    return float(Fraction(total, 2 ** (n - 1)))


def interval_probability(n: int) -> float:
    r"""Probability that a new sample falls inside the hull of ``n`` earlier ones, in d = 1.

    For i.i.d. draws from one continuous distribution on the line, the hull of ``n`` samples
    is ``[min, max]``, and by exchangeability the new point is the smallest or the largest of
    the ``n + 1`` with probability ``2 / (n + 1)``; so

    .. math:: P(x_{n+1} \in [\min_{i \le n} x_i, \max_{i \le n} x_i]) = \frac{n - 1}{n + 1}.

    Parameters
    ----------
    n : int
        Number of earlier samples, >= 1.

    Returns
    -------
    float
        ``(n - 1) / (n + 1)``.
    """
    n = _positive_int(n, "n")
    return (n - 1) / (n + 1)
