r"""A first-order solver for the Peng-Wei k-means SDP with a radius zero pattern.

The relaxation (Peng and Wei, SIAM J. Optim. 2007) of radius-constrained k-means
(:mod:`helpers.clustering`) is

.. math::

    \min_Z \tfrac12 \langle D, Z \rangle \quad\text{s.t.}\quad Z \succeq 0,\ Z \ge 0,\
    Z \mathbf 1 = \mathbf 1,\ \operatorname{tr} Z = k,\ Z_{ij} = 0
    \text{ if } \|x_i - x_j\| > 2r,

with :math:`D_{ij} = \|x_i - x_j\|^2`. Every feasible partition gives a feasible
:math:`Z = \sum_a z_a z_a^\top / n_a` whose objective is its k-means cost, so the optimum is
a lower bound on the constrained optimum.

Why a hand-written solver
-------------------------
Through cvxpy, SCS and Clarabel see :math:`n^2/2` scalar variables, one PSD cone of order n
and about :math:`n^2/2` entrywise rows; SCS needs minutes at n = 1000 and Clarabel's KKT
system is dense in those rows (it stops being usable near n = 100). No library we know of
solves this structured SDP at n ~ 1000 in seconds: the structure used here (the affine rows
:math:`Z\mathbf 1 = \mathbf 1`, :math:`\operatorname{tr} Z = k` have a closed-form projection,
and the sign and zero pattern an entrywise one) is not something a generic conic interface
can be told about.

The method
----------
ADMM on the split :math:`Z = W = V`, with :math:`Z` in the affine set, :math:`W \succeq 0`
and :math:`V` non-negative off the conflict pattern and zero on it (Boyd et al. 2011, sec.
7.2, consensus form). Each iteration costs one partial eigendecomposition (only the positive
eigenpairs, found with LAPACK's ``syevr`` by index; their number is close to the rank of
the solution) and a few entrywise passes; the penalty is adapted by residual balancing.

The bound is never the primal objective. From the ADMM dual variables (the PSD multiplier
:math:`S` and the sign multiplier :math:`B`) the solver fits the affine multipliers
:math:`y` by least squares and certifies

.. math::

    \mathrm{lb}(y, B) = \mathbf 1^\top y + k\,\lambda_{\min}\!\Big(\tfrac12 D
        - \tfrac12 (y \mathbf 1^\top + \mathbf 1 y^\top) - B\Big)
        \quad (B_{ij} \ge 0 \text{ off the conflicts}),

which is a lower bound for *any* such :math:`(y, B)`: for feasible :math:`Z`,
:math:`\tfrac12\langle D, Z\rangle = \mathbf 1^\top y + \langle B, Z\rangle + \langle M, Z
\rangle \ge \mathbf 1^\top y + k \lambda_{\min}(M)`, since :math:`\langle B, Z \rangle \ge 0`
and :math:`\langle M, Z \rangle \ge \lambda_{\min}(M) \operatorname{tr} Z` for
:math:`Z \succeq 0` (the eigenvalue shift :math:`t = \lambda_{\min}(M)` makes the dual
point feasible). :math:`B` is clipped to be non-negative where it must be, the eigenvalue
comes from a full ``eigvalsh`` and is lowered by a bound on its rounding error. So the
bound is valid however early the iterations stop; a longer run only makes it tighter.
The best certified value over the checks is returned.

A certified bound above the one-cluster cost (the total scatter, which every partition's
cost is at most) proves that no partition satisfies the radius: status ``"infeasible"``.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg as sla

from helpers._checks import ParameterError, check_int, check_real, is_torch, like

# Tuned on two moons (n = 300, k = 16): over-relaxation (alpha = 1.6), tighter residual
# balancing (mu = 3) and a larger initial penalty (30, 100) all took more iterations; a
# multiplier step of 1.618 (Glowinski's) took slightly fewer than 1.
GAMMA = 1.618  # multiplier step length
RHO0 = 10.0  # initial penalty, for D scaled to unit mean over compatible pairs
MU = 10.0  # residual balancing: rescale rho when one residual is MU times the other

__all__ = ["PWState", "PengWeiBound", "peng_wei_bound", "certify_dual", "bound_path"]


@dataclass(eq=False)
class PWState:
    """ADMM iterates, to warm-start a solve at a nearby radius (same points, same k).

    Attributes
    ----------
    Z, W, V : ndarray, shape (n, n)
        Affine, PSD and sign-pattern copies of the relaxed co-membership matrix.
    U1, U2 : ndarray, shape (n, n)
        Scaled multipliers of ``Z = W`` and ``Z = V``.
    rho : float
        Penalty.
    rank : int
        Number of positive eigenvalues at the last PSD projection.
    """

    Z: np.ndarray
    W: np.ndarray
    V: np.ndarray
    U1: np.ndarray
    U2: np.ndarray
    rho: float
    rank: int


@dataclass(frozen=True, eq=False)
class PengWeiBound:
    """Output of :func:`peng_wei_bound`.

    Attributes
    ----------
    status : str
        ``"converged"`` (relative gap between the primal value and the certified bound, and
        the residuals, below ``tol``), ``"max_iters"``, ``"time_limit"``, or
        ``"infeasible"`` (the certified bound exceeds every partition's possible cost).
    lower_bound : float
        Certified lower bound on the optimal constrained k-means cost (valid in every status).
    primal_value : float
        :math:`\\tfrac12\\langle D, Z\\rangle` at the last iterate; not certified.
    Z : ndarray or torch.Tensor, shape (n, n)
        The last iterate's non-negative, pattern-respecting copy (approximately PSD, rows
        summing to about 1); of ``X``'s type.
    iterations : int
    seconds : float
        Wall time of the solve.
    history : list of (iteration, certified bound, primal value)
        One entry per certification.
    state : PWState
        For ``warm_start`` at a nearby radius.
    """

    status: str
    lower_bound: float
    primal_value: float
    Z: Any
    iterations: int
    seconds: float
    history: list = field(default_factory=list)
    state: PWState | None = None


# --------------------------------------------------------------------------- pieces


def _affine_adjoint_solve(a: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    """(u, s) with A A*(u, s) = (a, c), where A(Z) = (Z 1, tr Z) on symmetric Z and
    A*(u, s) = (u 1^T + 1 u^T) / 2 + s I."""
    n = len(a)
    sa = a.sum()
    sigma = (sa - c) / (n - 1)
    s = sa / n - sigma
    u = (2.0 / n) * (a - (sigma / 2 + s))
    return u, s


def _apply_adjoint(G: np.ndarray, u: np.ndarray, s: float) -> np.ndarray:
    """G - A*(u, s), in place on G."""
    h = 0.5 * u
    G -= h[:, None]
    G -= h[None, :]
    G[np.diag_indices_from(G)] -= s
    return G


def _fit_y(G: np.ndarray) -> np.ndarray:
    """y of the least-squares fit G ~ A*(y, t)."""
    y, _ = _affine_adjoint_solve(G.sum(1), float(np.trace(G)))
    return y


def _certify(Dh: np.ndarray, C: np.ndarray, k: int, y: np.ndarray, B: np.ndarray) -> float:
    """lb(y, B) of the module docstring, B clipped where it must be non-negative, minus a
    bound on the rounding error of the eigenvalue."""
    M = np.where(C, B, np.maximum(B, 0.0))
    np.subtract(Dh, M, out=M)
    M -= 0.5 * y[:, None]
    M -= 0.5 * y[None, :]
    lam = np.linalg.eigvalsh(M)[0]
    n = len(M)
    # eigvalsh is backward stable: |error| <= c n eps ||M||_2 <= c n eps ||M||_F
    err = 64 * n * np.finfo(float).eps * float(np.linalg.norm(M))
    ysum = float(y.sum())
    return float(ysum - 16 * n * np.finfo(float).eps * float(np.abs(y).sum()) + k * (lam - err))


def certify_dual(X: Any, k: int, r: float, y: Any, B: Any) -> float:
    """Certified lower bound of the Peng-Wei radius SDP from any dual point ``(y, B)``.

    ``B`` is clipped to non-negative values on compatible pairs (it is free on conflicts),
    then :math:`\\mathbf 1^\\top y + k\\,\\lambda_{\\min}(\\tfrac12 D - \\tfrac12(y\\mathbf
    1^\\top + \\mathbf 1 y^\\top) - B)` is returned, lowered by a bound on the eigenvalue's
    rounding error. It is a lower bound on every radius-r partition's k-means cost, whatever
    ``y`` and ``B`` are.

    Parameters
    ----------
    X : array_like, shape (n, d)
    k : int
    r : float > 0
    y : array_like, shape (n,)
    B : array_like, shape (n, n)

    Returns
    -------
    float

    Examples
    --------
    With ``y = 0`` and ``B = 0`` the bound is :math:`k\\,\\lambda_{\\min}(D/2) \\le 0`:

    >>> import numpy as np
    >>> X = np.array([[0.0], [1.0], [5.0]])
    >>> certify_dual(X, 2, 10.0, np.zeros(3), np.zeros((3, 3))) <= 0
    True
    """
    from helpers.clustering import _check_k, _check_r, _check_X, _distances

    X = _check_X(X)
    n = len(X)
    k, r = _check_k(k, n), _check_r(r)
    y = np.asarray(y, dtype=float).ravel()
    B = np.asarray(B, dtype=float)
    if y.shape != (n,) or B.shape != (n, n):
        raise ParameterError(f"y must have shape ({n},) and B ({n}, {n}); got {y.shape} and {B.shape}.")
    D = _distances(X)
    return _certify(0.5 * D**2, D > 2 * r, k, y, B)


def _psd_part(M: np.ndarray, rank: int) -> tuple[np.ndarray, int]:
    """Projection of symmetric M onto the PSD cone, from its positive eigenpairs only:
    ask LAPACK for the top ``rank + margin`` pairs, and widen until one is non-positive."""
    n = len(M)
    p = min(n, max(rank + 8, int(1.25 * rank) + 8))
    while True:
        if p >= n // 3:
            w, Q = np.linalg.eigh(M)
        else:
            w, Q = sla.eigh(M, subset_by_index=(n - p, n - 1), driver="evr", check_finite=False)
        if w[0] <= 0 or p >= n // 3:
            break
        p = min(n, 2 * p)
    keep = w > 0
    Q = Q[:, keep] * np.sqrt(w[keep])
    return Q @ Q.T, int(keep.sum())


# --------------------------------------------------------------------------- solver


def _admm(D2: np.ndarray, C: np.ndarray, k: int, *, tol: float, max_iters: int, time_limit: float,
          check_every: int, warm: PWState | None, upper: float | None) -> PengWeiBound:
    t0 = time.perf_counter()
    n = len(D2)
    Dh = 0.5 * D2
    scatter = float(D2.sum()) / (2 * n)  # the one-cluster cost: every partition costs at most this
    # Work with D scaled to unit mean over compatible pairs; bounds are scaled back.
    scale = float(Dh[~C].mean()) if (~C).any() else 1.0
    scale = scale if scale > 0 else 1.0
    Ds = Dh / scale
    allowed = ~C
    if warm is not None and warm.Z.shape == (n, n):
        Z, W, V, U1, U2 = (a.copy() for a in (warm.Z, warm.W, warm.V, warm.U1, warm.U2))
        rho, rank = warm.rho, warm.rank
    else:
        Z = np.full((n, n), 0.0)
        Z[np.diag_indices(n)] = k / n
        Z += (1.0 - k / n) / max(n - 1, 1) * (1 - np.eye(n))  # rows sum to 1, trace k
        W, V = Z.copy(), np.where(allowed, Z, 0.0)
        U1, U2 = np.zeros((n, n)), np.zeros((n, n))
        rho, rank = RHO0, n
    history: list[tuple[int, float, float]] = []
    best, status, it = -np.inf, "max_iters", 0
    pval = float("nan")
    ones_k = (1.0, float(k))
    for it in range(1, max_iters + 1):
        # Z-step: minimise <Ds, Z> + rho/2 (|Z - W + U1|^2 + |Z - V + U2|^2) over
        # {Z 1 = 1, tr Z = k}: project (W - U1 + V - U2)/2 - Ds/(2 rho) onto that set
        G = W - U1
        G += V
        G -= U2
        G *= 0.5
        G -= Ds / (2 * rho)
        G = 0.5 * (G + G.T)
        u, s = _affine_adjoint_solve(G.sum(1) - ones_k[0], float(np.trace(G)) - ones_k[1])
        Z = _apply_adjoint(G, u, s)
        # W-step: PSD projection; V-step: sign and zero pattern
        W_old, V_old = W, V
        M = Z + U1
        W, rank = _psd_part(M, rank)
        U1 = M - W + (GAMMA - 1) * (Z - W)  # scaled multiplier update, step GAMMA
        M = Z + U2
        V = np.where(allowed, np.maximum(M, 0.0), 0.0)
        U2 = M - V + (GAMMA - 1) * (Z - V)
        # residuals (Boyd et al. 2011, sec. 3.3) and residual balancing of rho
        r_pri = np.sqrt(np.linalg.norm(Z - W) ** 2 + np.linalg.norm(Z - V) ** 2)
        r_dual = rho * np.linalg.norm((W - W_old) + (V - V_old))
        zn = max(np.linalg.norm(Z), 1e-300)
        if it % check_every == 0 or it == max_iters:
            # dual point: S = -rho U1 (PSD), B = -rho U2 (>= 0 off conflicts), y fitted
            S, B = -rho * U1, -rho * U2
            y = _fit_y(Ds - B - S)
            lb = scale * _certify(Ds, C, k, y, B)
            pval = scale * float((Ds * V).sum())
            best = max(best, lb)
            history.append((it, best, pval))
            if best > scatter * (1 + 1e-9) + 1e-12:
                status = "infeasible"
                break
            target = upper if upper is not None else pval
            gap = (target - best) / max(abs(target), 1e-300)
            if gap <= tol and (upper is not None or r_pri <= tol * zn):
                status = "converged"
                break
            if time.perf_counter() - t0 > time_limit:
                status = "time_limit"
                break
        if r_pri > MU * r_dual:
            rho *= 2.0
            U1 /= 2.0
            U2 /= 2.0
        elif r_dual > MU * r_pri:
            rho /= 2.0
            U1 *= 2.0
            U2 *= 2.0
    state = PWState(Z, W, V, U1, U2, rho, rank)
    return PengWeiBound(status, float(max(best, 0.0)), pval, V, it, time.perf_counter() - t0, history, state)


def peng_wei_bound(X: Any, k: int, r: float, *, tol: float = 1e-3, max_iters: int = 2000,
                   time_limit: float = 600.0, check_every: int = 10, warm_start: PWState | None = None,
                   upper: float | None = None, threads: int | None = None) -> PengWeiBound:
    """Certified lower bound on radius-constrained k-means by ADMM on the Peng-Wei SDP.

    Parameters
    ----------
    X : array_like, shape (n, d), n >= 2
    k : int, 1 <= k <= n
    r : float > 0
        Radius: points more than 2r apart may not share a cluster.
    tol : float
        Stop when the certified bound is within relative ``tol`` of the primal value (or of
        ``upper``) and the primal residual is below ``tol`` relative to ``||Z||``.
    max_iters : int
    time_limit : float
        Seconds; checked at each certification.
    check_every : int
        Iterations between certifications (each costs one full ``eigvalsh``).
    warm_start : PWState or None
        The ``state`` of a solve on the same points and k at another radius.
    upper : float or None
        A known feasible cost (e.g. a heuristic's); stop once the certified gap to it is below
        ``tol``.
    threads : int or None
        BLAS/LAPACK threads during the solve (restored after); None leaves them as they are.
        On a loaded machine one thread can be several times faster than two.

    Returns
    -------
    PengWeiBound
        ``lower_bound`` is valid in every status.

    Examples
    --------
    Two tight pairs far apart, k = 2: the optimum is 0.5 + 0.5 = 1, and the bound is
    certified below it and close to it.

    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [5.0, 0.0], [5.0, 1.0]])
    >>> out = peng_wei_bound(X, 2, r=1.0, tol=1e-6)
    >>> 0.999 < out.lower_bound <= 1.0
    True
    """
    from helpers.clustering import _check_k, _check_r, _check_X, _distances

    X0, X = X, _check_X(X)
    n = len(X)
    k, r = _check_k(k, n), _check_r(r)
    tol = check_real(tol, "tol", low=0, low_open=True)
    max_iters = check_int(max_iters, "max_iters", low=1)
    check_every = check_int(check_every, "check_every", low=1)
    time_limit = check_real(time_limit, "time_limit", low=0, low_open=True, hint=" (seconds)")
    if n == 1:
        Z = np.ones((1, 1))
        return PengWeiBound("converged", 0.0, 0.0, like(Z, X0) if is_torch(X0) else Z, 0, 0.0)
    D = _distances(X)
    limit: Any = nullcontext()
    if threads is not None:
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(check_int(threads, "threads", low=1))
    with limit:
        out = _admm(D**2, D > 2 * r, k, tol=tol, max_iters=max_iters, time_limit=time_limit,
                    check_every=check_every, warm=warm_start, upper=upper)
    if is_torch(X0):
        out = PengWeiBound(out.status, out.lower_bound, out.primal_value, like(out.Z, X0), out.iterations,
                           out.seconds, out.history, out.state)
    return out


def bound_path(X: Any, k: int, radii: Any, **kwargs: Any) -> dict[float, PengWeiBound]:
    """:func:`peng_wei_bound` at several radii, largest first, each warm-started from the
    previous one; see :func:`helpers.clustering.monotone_bound` to make the bounds monotone.

    Parameters
    ----------
    X : array_like, shape (n, d)
    k : int
    radii : iterable of float
    **kwargs
        Passed to :func:`peng_wei_bound` (not ``warm_start``).

    Returns
    -------
    dict
        Radius -> PengWeiBound.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [5.0, 0.0], [5.0, 1.0]])
    >>> path = bound_path(X, 2, [1.0, 3.0], tol=1e-4)
    >>> path[1.0].lower_bound >= path[3.0].lower_bound - 1e-3
    True
    """
    out: dict[float, PengWeiBound] = {}
    state = None
    for r in sorted({float(r) for r in np.asarray(radii, dtype=float).ravel()}, reverse=True):
        res = peng_wei_bound(X, k, r, warm_start=state, **kwargs)
        out[r] = res
        state = res.state
    return out
