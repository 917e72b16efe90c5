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
7.2, consensus form). Each iteration costs one eigendecomposition (LAPACK's ``syevr`` by
index for the few positive eigenpairs of the first iterations, divide and conquer,
``syevd``, once their number nears the rank of the solution, several times k here) and a few
entrywise passes; the penalty is fixed at a multiple of n / k (residual balancing is an
option). By default (``precision="auto"`` with ``tol >= 1e-4``) the iterations run in
single precision, which halves the eigendecomposition's time; the certificate below is
computed in double precision and is valid whatever the iterates are.

The bound is never the primal objective. A feasible :math:`Z` is symmetric and non-negative
with unit row sums, so :math:`\|Z\|_2 \le \|Z\|_\infty = 1`: it lies in :math:`F = \{Z\mathbf 1 = \mathbf 1,
\operatorname{tr} Z = k, 0 \preceq Z \preceq I\}`. For the ADMM's sign multiplier
:math:`B` (clipped to :math:`B_{ij} \ge 0` off the conflicts; free on them) the solver
certifies

.. math::

    \mathrm{lb}(B) = \min_{Z \in F} \langle \tfrac12 D - B, Z \rangle
        = \tfrac1n \mathbf 1^\top M \mathbf 1 + \sum_{i < k} \lambda_i\big(P M P
        |_{\mathbf 1^\perp}\big), \qquad M = \tfrac12 D - B,\ P = I - \tfrac1n
        \mathbf 1 \mathbf 1^\top,

with :math:`\lambda_1 \le \lambda_2 \le \dots` (write :math:`Z = \mathbf 1 \mathbf 1^\top / n
+ Z'` with :math:`Z'` on :math:`\mathbf 1^\perp`, eigenvalues in [0, 1] summing to
:math:`k - 1`, and apply Ky Fan's minimum principle). It is a lower bound for *any* such
:math:`B`: for feasible :math:`Z`, :math:`\tfrac12\langle D, Z\rangle = \langle B, Z\rangle +
\langle M, Z\rangle \ge \mathrm{lb}(B)`, since :math:`\langle B, Z \rangle \ge 0`. It is
never below the earlier certificate :math:`\mathbf 1^\top y + k\,\lambda_{\min}(M -
\tfrac12(y\mathbf 1^\top + \mathbf 1 y^\top))` (which minimises over :math:`Z \succeq 0,
\operatorname{tr} Z = k` only), whatever :math:`y`. The eigenvalues come from a full
double-precision ``eigvalsh`` and the bound is lowered by a bound on their rounding error.
So the bound is valid however early the iterations stop; a longer run only makes it
tighter. The best certified value over the checks is returned.

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

# Tuned on two moons (n = 300, k = 16): over-relaxation (alpha = 1.6) and tighter residual
# balancing (mu = 3) took more iterations; a multiplier step of 1.618 (Glowinski's) took
# slightly fewer than 1.
GAMMA = 1.618  # multiplier step length
# Initial penalty, for D scaled to unit mean over compatible pairs: rho * n / k. The entries of
# Z are about k / n and those of the multiplier B about 1, so the penalty that balances them
# grows as n / k. On two moons (n = 300, k = 16) a certified bound within 1 % of the optimum
# took 650 iterations at 10 (the former default), 1200 at 5, 340 at 20, 240 at 40 (2.5 n / k),
# 280 at 80, 510 at 160; steps of 1 and 1.3 instead of 1.618 took 305 and 260.
RHO_PER_SIZE = 2.5
MU = 10.0  # residual balancing (adapt_rho): rescale rho when one residual is MU times the other

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


def _fan_bound(M: np.ndarray, k: int) -> float:
    """A lower bound on min <M, Z> over {Z 1 = 1, tr Z = k, 0 <= Z <= I} (Loewner order),
    rounding errors included.

    Z = J / n + Z' with Z' on the complement of 1, eigenvalues in [0, 1] summing to k - 1, so
    the minimum is <M, J> / n plus the sum of the k - 1 smallest eigenvalues of P M P on that
    complement (Ky Fan). They are those of P M P + c J / n once the shift c moves the
    eigenvalue of 1 above them; a smaller c only lowers the sum, so any c is valid."""
    n = len(M)
    eps = np.finfo(float).eps
    r = M.mean(1)
    tot = float(r.mean())
    c = float(np.linalg.norm(M))  # >= |every eigenvalue of P M P|
    A = M - r[:, None]
    A -= r[None, :]
    A += tot + c / n
    lam = np.linalg.eigvalsh(A)[: k - 1]
    # forming A costs a few eps per entry (|r_i|, n |tot| <= ||M||_2); eigvalsh is backward
    # stable, each eigenvalue off by at most (a modest multiple of) n eps ||A||_F, with
    # ||A||_F <= ||M||_F + c = 2 c; 64 and 5 c leave a wide margin
    err = 64 * (n + 1) * eps * (5 * c)
    mean_err = n * eps * float(np.abs(M).sum())  # of the summation in <M, J> / n
    return n * tot - mean_err + float(lam.sum()) - (k - 1) * err


def _certify(Dh: np.ndarray, C: np.ndarray, k: int, B: np.ndarray) -> float:
    """lb(B) of the module docstring: B clipped where it must be non-negative, the bound of
    :func:`_fan_bound` on Dh - B, minus the rounding of Dh - B itself."""
    M = np.where(C, B, np.maximum(B, 0.0))
    np.subtract(Dh, M, out=M)
    # <M, Z> = <sym M, Z> for symmetric Z, and eigvalsh reads one triangle only: an iterate's
    # B (single precision) is symmetric only up to rounding
    M += M.T
    M *= 0.5
    n = len(M)
    # fl(sym(Dh - B)) = sym(Dh - B) + E with |E| <= 2 eps |M|; <E, Z> <= 2 eps max|M| sum(Z),
    # and sum(Z) = n
    return float(_fan_bound(M, k) - 2 * n * np.finfo(float).eps * float(np.abs(M).max()))


def certify_dual(X: Any, k: int, r: float, y: Any, B: Any) -> float:
    """Certified lower bound of the Peng-Wei radius SDP from any dual point ``(y, B)``.

    ``B`` is clipped to non-negative values on compatible pairs (it is free on conflicts),
    then :math:`\\mathrm{lb}(B)` of the module docstring is returned, lowered by a bound on
    its rounding error. It is a lower bound on every radius-r partition's k-means cost,
    whatever ``B`` is, and at least :math:`\\mathbf 1^\\top y + k\\,\\lambda_{\\min}
    (\\tfrac12 D - \\tfrac12(y\\mathbf 1^\\top + \\mathbf 1 y^\\top) - B)` for every ``y``
    (up to rounding).

    Parameters
    ----------
    X : array_like, shape (n, d)
    k : int
    r : float > 0
    y : array_like, shape (n,)
        Multiplier of :math:`Z\\mathbf 1 = \\mathbf 1`; checked for its shape only, since the
        bound uses those rows exactly (kept for compatibility).
    B : array_like, shape (n, n)

    Returns
    -------
    float

    Examples
    --------
    With ``B = 0`` the bound is the total scatter minus its share in the top k - 1 principal
    directions; with one-dimensional points that is 0 (up to rounding):

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
    return _certify(0.5 * D**2, D > 2 * r, k, B)


def _psd_part(M: np.ndarray, rank: int) -> tuple[np.ndarray, int]:
    """Projection of symmetric M onto the PSD cone. While the positive part is small, ask
    LAPACK for the top ``rank + margin`` pairs only (widening until one is non-positive);
    beyond n / 3 of them divide and conquer on the whole spectrum is faster (measured at
    n = 1000, one thread: 0.19 s against 0.17 s in double, 0.09 s against 0.09 s in single
    precision, and numpy's ``eigh`` 0.15 s there)."""
    n = len(M)
    p = min(n, max(rank + 8, int(1.25 * rank) + 8))
    while p < n // 3:
        w, Q = sla.eigh(M, subset_by_index=(n - p, n - 1), driver="evr", check_finite=False)
        if w[0] <= 0:
            return _from_pairs(M, w, Q, full=False)
        p = min(n, 2 * p)
    w, Q = sla.eigh(M, driver="evd", check_finite=False)
    return _from_pairs(M, w, Q, full=True)


def _from_pairs(M: np.ndarray, w: np.ndarray, Q: np.ndarray, *, full: bool) -> tuple[np.ndarray, int]:
    """M's PSD part from its eigenpairs (all of them when ``full``): from the positive pairs,
    or as M minus the negative part when that has fewer pairs."""
    pos = w > 0
    npos = int(pos.sum())
    if full and 2 * npos > len(w):
        Qn = Q[:, ~pos] * np.sqrt(-w[~pos])
        return M + Qn @ Qn.T, npos
    Qp = Q[:, pos] * np.sqrt(w[pos])
    return Qp @ Qp.T, npos


# --------------------------------------------------------------------------- solver


def _admm_step(Ds: np.ndarray, allowed: np.ndarray, k: int, rho: float, W: np.ndarray, V: np.ndarray,
               U1: np.ndarray, U2: np.ndarray, rank: int) -> tuple:
    """One ADMM iteration on Z = W = V; returns (Z, W, V, U1, U2, rank), in the iterates' dtype."""
    # Z-step: minimise <Ds, Z> + rho/2 (|Z - W + U1|^2 + |Z - V + U2|^2) over
    # {Z 1 = 1, tr Z = k}: project (W - U1 + V - U2)/2 - Ds/(2 rho) onto that set
    G = W - U1
    G += V
    G -= U2
    G -= Ds / rho
    G += G.T  # symmetric up to rounding; kept exactly symmetric so that drift cannot build up
    G *= 0.25
    u, s = _affine_adjoint_solve(G.sum(1) - 1.0, float(np.trace(G)) - k)
    Z = _apply_adjoint(G, u, s)
    # W-step: PSD projection; V-step: sign and zero pattern. Scaled multiplier updates with
    # step GAMMA: U + GAMMA (Z - W), in place (a fifth of an iteration's time went to
    # temporaries at n = 1000)
    W, rank = _psd_part(Z + U1, rank)
    U1 = _multiplier_step(U1, Z, W)
    V = Z + U2
    np.maximum(V, 0.0, out=V)
    V *= allowed
    U2 = _multiplier_step(U2, Z, V)
    return Z, W, V, U1, U2, rank


def _multiplier_step(U: np.ndarray, Z: np.ndarray, W: np.ndarray) -> np.ndarray:
    """U + GAMMA (Z - W), in place on U."""
    R = Z - W
    R *= GAMMA
    U += R
    return U


def _admm(D2: np.ndarray, C: np.ndarray, k: int, *, tol: float, max_iters: int, time_limit: float,
          check_every: int, warm: PWState | None, upper: float | None, dtype: type = np.float64,
          rho0: float | None = None, adapt_rho: bool = False) -> PengWeiBound:
    t0 = time.perf_counter()
    n = len(D2)
    Dh = 0.5 * D2
    scatter = float(D2.sum()) / (2 * n)  # the one-cluster cost: every partition costs at most this
    # Work with D scaled to unit mean over compatible pairs; bounds are scaled back.
    scale = float(Dh[~C].mean()) if (~C).any() else 1.0
    scale = scale if scale > 0 else 1.0
    Ds64 = Dh / scale  # for the certificate, always in double precision
    Ds = Ds64.astype(dtype)
    allowed = ~C
    if warm is not None and warm.Z.shape == (n, n):
        Z, W, V, U1, U2 = (a.astype(dtype) for a in (warm.Z, warm.W, warm.V, warm.U1, warm.U2))
        rho, rank = warm.rho, warm.rank
    else:
        Z = np.full((n, n), (1.0 - k / n) / max(n - 1, 1), dtype=dtype)
        Z[np.diag_indices(n)] = k / n  # rows sum to 1, trace k
        W, V = Z.copy(), np.where(allowed, Z, 0.0).astype(dtype)
        U1, U2 = np.zeros((n, n), dtype), np.zeros((n, n), dtype)
        rho, rank = RHO_PER_SIZE * n / k if rho0 is None else rho0, n
    history: list[tuple[int, float, float]] = []
    best, status, it = -np.inf, "max_iters", 0
    pval = float("nan")
    t_step = t_cert = 0.0  # the last iteration's and the last certification's seconds
    for it in range(1, max_iters + 1):
        W_old, V_old = W, V
        t_it = time.perf_counter()
        Z, W, V, U1, U2, rank = _admm_step(Ds, allowed, k, rho, W, V, U1, U2, rank)
        now = time.perf_counter()
        t_step = now - t_it
        # out of time once another iteration and its certification would not fit: certify this
        # iterate now, so that the certified answer comes within the limit (before the first
        # certification, its cost is taken to be an iteration's: one eigendecomposition each)
        out_of_time = now - t0 + t_step + (t_cert or t_step) > time_limit
        check = it % check_every == 0 or it == max_iters or out_of_time
        if check or adapt_rho:  # residuals (Boyd et al. 2011, sec. 3.3): only when used
            r_pri = np.sqrt(np.linalg.norm(Z - W) ** 2 + np.linalg.norm(Z - V) ** 2)
            zn = max(np.linalg.norm(Z), 1e-300)
        if check:
            # dual point: B = -rho U2 (>= 0 off conflicts once clipped), in double precision
            t_c = time.perf_counter()
            lb = scale * _certify(Ds64, C, k, (-rho) * U2.astype(float))
            t_cert = time.perf_counter() - t_c
            pval = scale * float((Ds64 * V).sum())
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
            if out_of_time or time.perf_counter() - t0 + t_step + t_cert > time_limit:  # see above
                status = "time_limit"
                break
        if not adapt_rho:
            continue
        r_dual = rho * np.linalg.norm((W - W_old) + (V - V_old))
        if r_pri > MU * r_dual:
            rho *= 2.0
            U1 /= 2.0
            U2 /= 2.0
        elif r_dual > MU * r_pri:
            rho /= 2.0
            U1 *= 2.0
            U2 *= 2.0
    state = PWState(Z, W, V, U1, U2, rho, rank)
    return PengWeiBound(status, float(max(best, 0.0)), pval, V.astype(float), it, time.perf_counter() - t0,
                        history, state)


def _iterate_dtype(precision: str, tol: float) -> type:
    """float32 or float64 for the iterations (see ``precision`` in :func:`peng_wei_bound`)."""
    if precision not in ("auto", "single", "double"):
        raise ParameterError(f"precision must be 'auto', 'single' or 'double'; got {precision!r}.")
    single = precision == "single" or (precision == "auto" and tol >= 1e-4)
    return np.float32 if single else np.float64


def peng_wei_bound(X: Any, k: int, r: float, *, tol: float = 1e-3, max_iters: int = 2000,
                   time_limit: float = 600.0, check_every: int = 10, warm_start: PWState | None = None,
                   upper: float | None = None, threads: int | None = None, precision: str = "auto",
                   rho0: float | None = None, adapt_rho: bool = False) -> PengWeiBound:
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
        Seconds; checked after each iteration: when one more iteration and certification
        (timed on the last ones; before the first certification, one iteration's time) would
        pass it, the last iterate is certified and returned.
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
    precision : {"auto", "single", "double"}
        Floating point of the iterations; the certificate is always computed in double
        precision and valid in both. Single precision halves the time of an
        eigendecomposition but cannot resolve relative gaps much below 1e-5: ``"auto"`` picks
        it when ``tol >= 1e-4``, double precision otherwise.
    rho0 : float or None
        Initial penalty for D scaled to unit mean over compatible pairs; None for
        ``2.5 n / k`` (see ``RHO_PER_SIZE``). Ignored with ``warm_start``.
    adapt_rho : bool
        Residual balancing of the penalty (Boyd et al. 2011, sec. 3.4.1). Off by default: on
        two moons (n = 300, k = 16, tol = 1e-2) it lowered the penalty from 2.5 n / k to a
        quarter of it and took 540 iterations against 190 at the fixed penalty.

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
    dtype = _iterate_dtype(precision, tol)
    if rho0 is not None:
        rho0 = check_real(rho0, "rho0", low=0, low_open=True)
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
                    check_every=check_every, warm=warm_start, upper=upper, dtype=dtype, rho0=rho0,
                    adapt_rho=adapt_rho)
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
