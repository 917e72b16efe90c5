"""Scaling of radius-constrained k-means: run time and cost against n, next to the SDP lower bound.

Compares the three methods of :func:`helpers.clustering.radius_kmeans` on imbalanced two moons
(85% / 15% of the points, noise 0.05, as in the paper's figure):

* ``paper``: the paper's k-block SDP (SCS) + assignment MILP + unsquared reassignment (HiGHS);
* ``sdp``: the Peng-Wei SDP with the radius as a zero pattern (SCS), rounded, then constrained
  Lloyd and local search; its certified lower bound is reported for every method at that n;
* ``greedy``: multi-start farthest-first + DSatur-like assignment + local search.

n doubles until a method has taken longer than ``budget_s`` once (the paper method also stops
at its size limit, n <= 60). The radius sits at a fixed fraction of the feasibility bracket
``[lo, hi]`` of each data set, so every size poses a comparably tight problem.

Run ``python benchmarks/clustering_scaling.py [--quick]`` for a table. This is a standalone
script with a command line, for sizes larger than a page can afford; no chapter imports it (a
notebook can only rely on ``book/`` and ``helpers``, which travel to Colab). The book's own
measurement is ``book/radius_kmeans/scaling.md``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.datasets import make_moons

from helpers.clustering import (
    PAPER_MAX_N,
    InfeasibleRadiusError,
    RadiusUndecidedError,
    feasible_radius_bracket,
    max_half_diameter,
    radius_kmeans,
)

METHODS = ("sdp", "paper", "greedy")  # sdp first: its bound is shared by the rows at that n
FULL_NS = (20, 40, 80, 160, 320, 640, 1280, 2560)
QUICK_NS = (20, 40)


def moons(n: int, seed: int = 0) -> np.ndarray:
    """Imbalanced two moons: about 85% of the n points on one moon, shape (n, 2)."""
    minority = max(1, round(0.15 * n))
    X, _ = make_moons(n_samples=(n - minority, minority), noise=0.05, random_state=seed)
    return X


def _run_one(X: np.ndarray, k: int, r: float, method: str, seed: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        res = radius_kmeans(X, k, r, method=method, seed=seed)
    except (InfeasibleRadiusError, RadiusUndecidedError) as err:
        kind = "infeasible" if isinstance(err, InfeasibleRadiusError) else "undecided"
        return {"status": kind, "seconds": time.perf_counter() - t0, "message": str(err)}
    return {
        "status": "ok",
        "seconds": time.perf_counter() - t0,
        "method_used": res.method,
        "cost": res.cost,
        "sdp_lower_bound": res.lower_bound,
        "max_half_diameter": max_half_diameter(X, res.labels),
    }


def run_scaling(
    ns: Sequence[int],
    *,
    k: int = 8,
    r_frac: float = 0.85,
    methods: Sequence[str] = METHODS,
    budget_s: float = 20.0,
    seed: int = 0,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Time each method on moons of growing size.

    Parameters
    ----------
    ns : sequence of int
        Sizes, increasing.
    k : int
        Number of clusters.
    r_frac : float in [0, 1]
        The radius is ``lo + r_frac * (hi - lo)`` in each data set's feasibility bracket.
    methods : sequence of str
        Among "sdp", "paper", "greedy"; "sdp" first supplies the lower bound to later rows.
    budget_s : float
        A method that took longer than this is not run at larger n.
    seed : int
        Data and greedy seed.
    on_row : callable, optional
        Called with each row as soon as it is measured (progress printing).

    Returns
    -------
    list of dict
        One row per (n, method) with keys n, k, r, lo, hi, method, status ("ok",
        "infeasible", "undecided", "skipped"), seconds, cost, lower_bound (the sdp method's
        certified bound at that n, when it ran), gap (cost / lower_bound - 1),
        max_half_diameter, method_used (fallbacks named), sdp_lower_bound (the sdp row's own
        bound), message (the error, for infeasible / undecided), note (why skipped).
    """
    over_budget: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    for n in ns:
        X = moons(n, seed)
        lo, hi = feasible_radius_bracket(X, k)
        r = lo + r_frac * (hi - lo)
        bound = None
        for method in methods:
            row: dict[str, Any] = {"n": n, "k": k, "r": r, "lo": lo, "hi": hi, "method": method}
            if method == "paper" and n > PAPER_MAX_N:
                over_budget.setdefault(method, f"n > {PAPER_MAX_N} (size limit)")
            if method in over_budget:
                row.update(status="skipped", note=over_budget[method])
            else:
                row.update(_run_one(X, k, r, method, seed))
                if row["seconds"] > budget_s:
                    over_budget[method] = f"took {row['seconds']:.0f} s at n={n}"
            if method == "sdp" and row.get("sdp_lower_bound") is not None:
                bound = row["sdp_lower_bound"]
            row["lower_bound"] = bound
            cost = row.get("cost")
            row["gap"] = cost / bound - 1 if cost is not None and bound else None
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


HEADER = f"{'n':>6} {'method':>8} {'status':>10} {'seconds':>8} {'cost':>10} {'SDP bound':>10} {'gap':>7} {'½diam/r':>8}"


def format_row(row: dict[str, Any]) -> str:
    """One table line: n, method, status, time, cost, bound, gap, max half-diameter over r."""

    def num(key: str, fmt: str) -> str:
        return format(row[key], fmt) if row.get(key) is not None else "-"

    half = format(row["max_half_diameter"] / row["r"], ".3f") if row.get("max_half_diameter") is not None else "-"
    gap = format(100 * row["gap"], ".1f") + "%" if row.get("gap") is not None else "-"
    status = row["status"] if row.get("method_used", row["method"]) == row["method"] else row["method_used"]
    return (
        f"{row['n']:>6} {row['method']:>8} {status:>10} {num('seconds', '.2f'):>8} {num('cost', '.4f'):>10} "
        f"{num('lower_bound', '.4f'):>10} {gap:>7} {half:>8}"
    )


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny grid (n = 20, 40), for smoke tests")
    parser.add_argument("--k", type=int, default=8, help="number of clusters (default 8)")
    parser.add_argument("--r-frac", type=float, default=0.85, help="radius position in the bracket (default 0.85)")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds after which a method stops growing")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    ns = QUICK_NS if args.quick else FULL_NS
    print(f"two moons 85/15, k={args.k}, r = lo + {args.r_frac} (hi - lo) of each bracket; budget {args.budget:g} s")
    print(HEADER)
    rows = run_scaling(
        ns, k=args.k, r_frac=args.r_frac, budget_s=args.budget, seed=args.seed,
        on_row=lambda row: print(format_row(row), flush=True),
    )
    reported = set()
    for row in rows:
        if row["status"] == "skipped" and row["method"] not in reported:
            reported.add(row["method"])
            print(f"{row['method']} not run from n={row['n']}: {row['note']}")
    return rows


if __name__ == "__main__":
    main()
