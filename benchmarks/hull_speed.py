"""Speed of ``helpers.hull.in_hull`` against per-query ``scipy.optimize.linprog`` (HiGHS).

For each cell (N, d) of the grid, N Gaussian points and Q Gaussian queries are drawn, and
both methods decide every query:

* the baseline solves, per query, the feasibility LP ``lambda >= 0, sum(lambda) = 1,
  X^T lambda = q`` with ``linprog(method="highs")`` (a status other than optimal or
  infeasible is retried with ``highs-ipm``); the constraint matrix is built once per cell,
  outside the timer, which favours the baseline;
* ``in_hull`` decides all queries in one call and its certificates are checked (untimed).

The two are interleaved (in_hull, a slice of the linprog queries, in_hull, ...) so that load
on a shared machine affects both alike. Where the baseline is slow (large N and d), it runs
on the first queries until ``--linprog-budget`` seconds are spent (at least
``--min-linprog`` queries); its per-query time is the mean over the queries it ran, and the
decisions are compared on those queries. The script fails if any decision differs.

Usage::

    python benchmarks/hull_speed.py                 # N in {1000, 10000}, d in 2..256
    python benchmarks/hull_speed.py --quick         # a tiny grid, a few seconds
    python benchmarks/hull_speed.py --csv hull.csv  # also write the table

Set ``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1`` on small shared machines. This is a
standalone script with a command line, for grids larger than a page can afford; no chapter
imports it (a notebook can only rely on ``book/`` and ``helpers``, which travel to Colab).
The book's own measurement is ``book/extrapolation/benchmark.md``.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time

import numpy as np
from scipy.optimize import linprog

from helpers.hull import in_hull

FULL_NS = (1000, 10000)
FULL_DS = (2, 4, 8, 16, 32, 64, 128, 256)
QUICK_NS = (300,)
QUICK_DS = (2, 8, 32)
COLUMNS = ("N", "d", "queries", "frac_inside", "linprog_checked", "t_linprog_ms", "t_in_hull_ms", "ratio")


def linprog_decide(A_eq: np.ndarray, q: np.ndarray) -> tuple[bool, int]:
    """Per-query baseline: is ``q`` a convex combination of the columns of ``A_eq[:-1]``?

    Returns (inside, number of retries after a non-conclusive status).
    """
    n = A_eq.shape[1]
    b_eq = np.r_[q, 1.0]
    for retries, method in enumerate(("highs", "highs-ipm")):
        res = linprog(np.zeros(n), A_eq=A_eq, b_eq=b_eq, bounds=(0, None), method=method)
        if res.status in (0, 2):  # optimal: feasible (inside); 2: infeasible (outside)
            return res.status == 0, retries
    raise RuntimeError(f"linprog could not decide a query (status {res.status}: {res.message})")


def _timed_in_hull(X: np.ndarray, Q: np.ndarray) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    res = in_hull(X, Q)
    elapsed = time.perf_counter() - t0
    res.verify(X, Q)  # untimed: every certificate must hold
    return elapsed, res.inside


def bench_cell(N: int, d: int, n_queries: int, seed: int, budget: float, min_lp: int) -> dict:
    """Time both methods on one (N, d) cell; returns one table row as a dict."""
    rng = np.random.default_rng([seed, N, d])
    X, Q = rng.standard_normal((N, d)), rng.standard_normal((n_queries, d))
    A_eq = np.vstack([X.T, np.ones(N)])
    hull_times, lp_times, lp_inside, retries = [], [], [], 0
    slices = np.array_split(np.arange(n_queries), 3)
    inside = None
    for part in slices:
        t, inside = _timed_in_hull(X, Q)
        hull_times.append(t)
        for j in part:
            if sum(lp_times) > budget and len(lp_times) >= min_lp:
                break
            t0 = time.perf_counter()
            decision, r = linprog_decide(A_eq, Q[j])
            lp_times.append(time.perf_counter() - t0)
            lp_inside.append(decision)
            retries += r
    hull_times.append(_timed_in_hull(X, Q)[0])
    k = len(lp_inside)
    mismatch = np.flatnonzero(inside[:k] != np.array(lp_inside, dtype=bool))
    if mismatch.size:
        raise AssertionError(f"N={N} d={d}: in_hull and linprog disagree on queries {mismatch.tolist()}")
    t_lp = sum(lp_times) / k
    t_hull = statistics.median(hull_times) / n_queries
    return {
        "N": N,
        "d": d,
        "queries": n_queries,
        "frac_inside": float(inside.mean()),
        "linprog_checked": k,
        "linprog_retries": retries,
        "t_linprog_ms": 1e3 * t_lp,
        "t_in_hull_ms": 1e3 * t_hull,
        "ratio": t_lp / t_hull,
    }


def run_grid(
    Ns=FULL_NS,
    ds=FULL_DS,
    n_queries: int = 100,
    seed: int = 0,
    linprog_budget: float = 15.0,
    min_linprog: int = 2,
    progress: bool = True,
) -> list[dict]:
    """Benchmark every (N, d) cell; one dict per cell with the keys of :data:`COLUMNS`.

    Parameters
    ----------
    Ns, ds : sequences of int
        Numbers of points and dimensions of the grid.
    n_queries : int
        Gaussian queries per cell (all decided by in_hull; linprog within its budget).
    seed : int
        Seed for the data of every cell.
    linprog_budget : float
        Seconds of linprog time per cell after which the baseline stops (but it always
        runs on at least ``min_linprog`` queries).
    progress : bool
        Print each row as it is measured.
    """
    rows = []
    for N in Ns:
        for d in ds:
            row = bench_cell(N, d, n_queries, seed, linprog_budget, min_linprog)
            rows.append(row)
            if progress:
                print(format_row(row), flush=True)
    return rows


def format_row(row: dict) -> str:
    return (
        f"{row['N']:>6} {row['d']:>4} {row['queries']:>5} {row['frac_inside']:>7.3f} "
        f"{row['linprog_checked']:>6} {row['t_linprog_ms']:>12.3f} {row['t_in_hull_ms']:>11.4f} "
        f"{row['ratio']:>10.1f}"
    )


HEADER = (
    f"{'N':>6} {'d':>4} {'Q':>5} {'inside':>7} {'lp_n':>6} {'linprog ms/q':>12} "
    f"{'in_hull ms/q':>11} {'ratio':>10}"
)


def summary(rows: list[dict]) -> str:
    ratios = [r["ratio"] for r in rows]
    return f"median ratio {statistics.median(ratios):.1f}x, min ratio {min(ratios):.1f}x over {len(rows)} cells"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny grid (N=300, d in 2, 8, 32; 30 queries)")
    p.add_argument("--N", type=int, nargs="+", help=f"numbers of points (default {FULL_NS})")
    p.add_argument("--d", type=int, nargs="+", help=f"dimensions (default {FULL_DS})")
    p.add_argument("--queries", type=int, help="queries per cell (default 100, quick 30)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--linprog-budget", type=float, default=15.0, help="seconds of linprog per cell")
    p.add_argument("--min-linprog", type=int, default=2, help="linprog queries per cell at least")
    p.add_argument("--csv", metavar="PATH", help="write the table as CSV")
    args = p.parse_args(argv)
    Ns = args.N or (QUICK_NS if args.quick else FULL_NS)
    ds = args.d or (QUICK_DS if args.quick else FULL_DS)
    nq = args.queries or (30 if args.quick else 100)
    print(HEADER, flush=True)
    rows = run_grid(Ns, ds, nq, args.seed, args.linprog_budget, args.min_linprog)
    print(summary(rows))
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
