"""The CPA JVP before and after the work on issue 18, timed side by side in one run.

Loads the "before" kernel, ``helpers/jvp.py`` (and ``helpers/sampling.py``, for the per-sample
Jacobians) at commit ``BEFORE`` from the git history, and the "after" kernel from the working
tree, each into temporary modules made the same way, so that only their source differs, and
times both with :func:`helpers.timing.compare` (interleaved rounds in a balanced order, medians
of per-round ratios), on the chapter's zoo (:mod:`helpers.zoo`). With ``--before HEAD`` (the
same code twice) the one-shot rows read 0.98-1.04x; while ``compare`` only rotated the order,
"after", always right after "before", read 1.03-1.06x:

- one JVP at batch 8 and 64: the cost in forward passes (JVP time / ``model(x)`` time) and the
  ratio over the fastest of ``torch.func.jvp``, ``torch.autograd.forward_ad`` and double-backward;
- K = 16 tangents per sample at batch 8: ``vmap(torch.func.linearize)`` time / CPA ``linearize``
  replay time;
- per-sample generator Jacobians as in the magnet chapter's benchmark: ``vmap(jacfwd)`` time /
  ``helpers.sampling.jacobian`` time.

Every ratio of a row comes from the same ``compare`` call, so before and after share each round.
The result goes to a JSON file (``book/fast_jvp/before_after.json`` by default) that the
benchmark page shows as a table; it is measured once, on the machine and commit it names.

    .venv/bin/python tools/jvp_before_after.py                 # full: about 3 minutes, 2 cores
    .venv/bin/python tools/jvp_before_after.py --quick --out /tmp/ba.json --arch MLP

Needs a clone with git history (``git show BEFORE:helpers/jvp.py``).
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import types
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BEFORE = "0f6cad1"   # helpers/jvp.py when issue 18 was filed
ALTERNATIVES = ("torch.func.jvp", "forward_ad", "double-backward")
BATCHES = (8, 64)
DEFAULT_OUT = ROOT / "book" / "fast_jvp" / "before_after.json"


class BeforeUnavailable(RuntimeError):
    """The "before" sources cannot be read from git (no git, no history, or no such commit)."""


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                             check=False)
    except FileNotFoundError as e:
        raise BeforeUnavailable("git is not installed; this script reads the 'before' kernel "
                                f"from the git history (commit {BEFORE})") from e
    if out.returncode != 0:
        raise BeforeUnavailable(f"'git {' '.join(args)}' failed in {ROOT}: {out.stderr.strip()}. "
                                f"Run this script in a clone with the history up to {BEFORE} "
                                "(not a shallow clone or an exported tree).")
    return out.stdout


def load_kernel(commit: str | None = BEFORE, tag: str = "before") -> tuple[types.ModuleType, types.ModuleType]:
    """``(jvp, sampling)`` as they are at ``commit`` (None: the working tree), as modules of their
    own named ``helpers_<tag>_jvp`` and ``helpers_<tag>_sampling``.

    The loaded ``sampling`` imports the loaded ``jvp`` (``helpers.jvp`` is swapped for it while
    that source runs); both share today's ``helpers._checks``.
    """
    modules = []
    saved = sys.modules.get("helpers.jvp")
    import helpers  # noqa: F401  (the package, for helpers._checks)
    try:
        for name in ("jvp", "sampling"):
            if commit is None:
                where = ROOT / "helpers" / f"{name}.py"
                source = where.read_text()
            else:
                where = f"{commit}:helpers/{name}.py"
                source = _git("show", where)
            mod = types.ModuleType(f"helpers_{tag}_{name}")
            mod.__file__ = str(where)
            sys.modules[mod.__name__] = mod
            if name == "sampling":
                sys.modules["helpers.jvp"] = modules[0]
            exec(compile(source, mod.__file__, "exec"), mod.__dict__)
            modules.append(mod)
    finally:
        if saved is not None:
            sys.modules["helpers.jvp"] = saved
        else:
            sys.modules.pop("helpers.jvp", None)
    return modules[0], modules[1]


_LOADED: dict = {}  # (commit, tag) -> the loaded modules, so that repeats share one trace cache


def commit_of(rev: str) -> str:
    return _git("rev-parse", rev).strip()


def _dirty(path: str) -> bool:
    return bool(_git("status", "--porcelain", "--", path).strip())


def measure(args, threads: int) -> dict:
    """Time before and after (see the module docstring); grad mode, warnings and threads are
    restored afterwards."""
    import torch

    with torch.no_grad(), warnings.catch_warnings():
        # torch.func.linearize's constant folding warns about its own graph; not ours.
        warnings.filterwarnings("ignore", message="Attempted to insert a get_attr Node")
        return _measure(args, threads)


def _measure(args, threads: int) -> dict:
    import torch
    import torch.autograd.forward_ad as fwAD

    from helpers.generative import DigitsVAE
    from helpers.runtime import derive_seed, device_name
    from helpers.timing import compare
    from helpers.zoo import ZOO, build, generator

    for key in ((args.before, "before"), (None, "after")):
        if key not in _LOADED:
            _LOADED[key] = load_kernel(*key)
    before_jvp, before_sampling = _LOADED[(args.before, "before")]
    after, after_sampling = _LOADED[(None, "after")]
    after_jvp, after_linearize = after.jvp, after.linearize
    # compare(threads=...) sets the thread count for each timing and restores it
    rounds, warmup = (3, 1) if args.quick else (args.rounds, 2)
    min_batch_s = 1e-3 if args.quick else 2e-3
    K = 4 if args.quick else 16
    names = args.arch or list(ZOO)
    for n in names:
        if n not in ZOO:
            raise SystemExit(f"unknown architecture {n!r}; choose from {list(ZOO)}")

    def gen(*tags):
        return torch.Generator().manual_seed(derive_seed(0, "before_after", *tags) % 2**63)

    def forward_ad_jvp(model, x, v):
        with fwAD.dual_level():
            return fwAD.unpack_dual(model(fwAD.make_dual(x, v)))

    def double_backward_jvp(model, x, v):
        with torch.enable_grad():
            return torch.autograd.functional.jvp(model, x, v)

    def check(a, b, what):  # agreement to rounding in float32 (1000 eps, relative to the max)
        err = ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()
        if not err < 1000 * torch.finfo(torch.float32).eps:
            raise AssertionError(f"{what}: before and after differ by {err:.1e} (relative)")

    one_shot, many = [], []
    t0 = time.perf_counter()
    for name in names:
        model, shape = build(name, seed=derive_seed(0, "zoo", name))
        for B in BATCHES[:1] if args.quick else BATCHES:
            x = torch.randn((B, *shape), generator=gen("x", name, B))
            v = torch.randn((B, *shape), generator=gen("v", name, B))
            y0, j0 = before_jvp.jvp(model, x, v)
            y1, j1 = after_jvp(model, x, v)
            assert torch.equal(y0, y1) and torch.equal(y1, model(x)), name
            check(j1, j0, f"{name}, B={B}")
            methods = {
                "forward": lambda: model(x),
                "before": lambda: before_jvp.jvp(model, x, v),
                "after": lambda: after_jvp(model, x, v),
                "torch.func.jvp": lambda: torch.func.jvp(model, (x,), (v,)),
                "forward_ad": lambda: forward_ad_jvp(model, x, v),
                "double-backward": lambda: double_backward_jvp(model, x, v),
            }
            pilot = compare({"f": methods["forward"]}, rounds=1, number=3, warmup=1,
                            threads=threads)["f"]
            number = min(50, max(1, math.ceil(min_batch_s / pilot)))
            t = compare(methods, rounds=rounds, number=number, warmup=warmup, threads=threads)
            row = {"arch": name, "B": B, "forward_ms": t["forward"] * 1e3, "number": number}
            for which in ("before", "after"):
                row[f"cost_{which}"] = t.ratio(which, "forward")
                row[f"best_{which}"] = min(t.ratio(m, which) for m in ALTERNATIVES)
                for m in ALTERNATIVES:
                    row[f"{m} / {which}"] = t.ratio(m, which)
            row["after_speedup"] = t.ratio("before", "after")
            one_shot.append(row)
        # K tangents per sample at batch 8: the replay of linearize against vmap(func.linearize)
        x = torch.randn((8, *shape), generator=gen("lin x", name))
        V = torch.randn((8, K, *shape), generator=gen("lin V", name))
        _, fn0 = before_jvp.linearize(model, x)
        _, fn1 = after_linearize(model, x)
        _, func_fn = torch.func.linearize(model, x)
        func_many = torch.vmap(func_fn, in_dims=1, out_dims=1)
        check(fn1(V), func_many(V), f"{name}, K={K}")
        check(fn0(V), func_many(V), f"{name}, K={K} (before)")
        t = compare({"before": lambda: fn0(V), "after": lambda: fn1(V),
                     "vmap": lambda: func_many(V)},
                    rounds=rounds, number=2, warmup=warmup, threads=threads)
        many.append({"arch": name, "K": K, "before": t.ratio("vmap", "before"),
                     "after": t.ratio("vmap", "after"),
                     "after_speedup": t.ratio("before", "after")})
        print(f"[{time.perf_counter() - t0:6.0f} s] {name}: " + ", ".join(
            f"B={r['B']} cost {r['cost_before']:.2f} -> {r['cost_after']:.2f}"
            for r in one_shot if r["arch"] == name)
            + f", K={K} {many[-1]['before']:.2f}x -> {many[-1]['after']:.2f}x", flush=True)

    # Per-sample Jacobians: the magnet chapter's generators and batch sizes
    jac = []
    gens = {"MLP decoder": (lambda d: DigitsVAE(latent=d).decoder, 128 if args.quick else 256),
            "conv-T generator": (lambda d: generator(latent=d), 16 if args.quick else 64)}
    for kind, (make, B) in gens.items():
        if args.no_jacobians:
            break
        for d in (8,) if args.quick else (8, 16, 32):
            torch.manual_seed(derive_seed(0, "before_after weights", kind, d))
            G = make(d).eval()
            z = torch.randn(B, d, generator=gen("latents", kind, d))

            def single(zi, G=G):
                return G(zi.unsqueeze(0)).flatten()

            fwd = torch.func.vmap(torch.func.jacfwd(single))
            check(after_sampling.jacobian(G, z), fwd(z), f"{kind}, d={d}")
            check(before_sampling.jacobian(G, z), fwd(z), f"{kind}, d={d} (before)")
            t = compare({"before": lambda: before_sampling.jacobian(G, z),
                         "after": lambda: after_sampling.jacobian(G, z),
                         "vmap(jacfwd)": lambda: fwd(z)},
                        rounds=rounds, number=1 if args.quick else 2, warmup=warmup,
                        threads=threads)
            jac.append({"generator": kind, "d": d, "B": B,
                        "before": t.ratio("vmap(jacfwd)", "before"),
                        "after": t.ratio("vmap(jacfwd)", "after")})
        print(f"[{time.perf_counter() - t0:6.0f} s] Jacobians, {kind}: " + ", ".join(
            f"d={r['d']} {r['before']:.2f}x -> {r['after']:.2f}x"
            for r in jac if r["generator"] == kind), flush=True)

    return {"one_shot": one_shot, "many": many, "jacobians": jac,
            "seconds": round(time.perf_counter() - t0, 1), "rounds": rounds, "K": K}


def merge(runs: list[dict]) -> dict:
    """Repeats of :func:`measure` (the same cases) as one result: each ratio the geometric mean
    over the repeats, each forward time the median; the K-tangent ratios keep every repeat."""
    def combine(rows_per_run):
        out = []
        for rows in zip(*rows_per_run):
            row = dict(rows[0])
            for key, value in rows[0].items():
                if isinstance(value, float):
                    values = [r[key] for r in rows]
                    row[key] = (statistics.median(values) if key.endswith("_ms")
                                else statistics.geometric_mean(values))
            out.append(row)
        return out

    merged = {key: combine([run[key] for run in runs]) for key in ("one_shot", "many", "jacobians")}
    for row, rows in zip(merged["many"], zip(*(run["many"] for run in runs))):
        for which in ("before", "after"):
            row[f"{which}_runs"] = [r[which] for r in rows]
    merged.update(repeats=len(runs), seconds=round(sum(r["seconds"] for r in runs), 1),
                  rounds=runs[0]["rounds"], K=runs[0]["K"])
    merged["summary"] = summary(merged)
    return merged


def summary(data: dict) -> dict:
    """The headline numbers of a result: medians, worst cases and means, before and after."""
    out = {}
    rows = data["one_shot"]
    for which in ("before", "after"):
        costs = [r[f"cost_{which}"] for r in rows]
        out[f"cost_median_{which}"] = statistics.median(costs)
        out[f"cost_worst_{which}"] = max(costs)
        out[f"best_mean_{which}"] = statistics.geometric_mean([r[f"best_{which}"] for r in rows])
        if data["many"]:
            out[f"many_median_{which}"] = statistics.median(r[which] for r in data["many"])
        if data["jacobians"]:
            out[f"jac_median_{which}"] = statistics.median(r[which] for r in data["jacobians"])
    return out


def table_rows(data: dict) -> list[tuple]:  # data: one entry of the JSON's "by_threads"
    """One row per (architecture, batch): forward ms, cost before/after, fastest autodiff /
    CPA before/after, and the K-tangent ratio before/after on the architecture's batch-8 row."""
    many = {r["arch"]: r for r in data.get("many", [])}
    rows = []
    for r in data["one_shot"]:
        m = many.get(r["arch"]) if r["B"] == min(BATCHES) else None
        rows.append((r["arch"], r["B"], r["forward_ms"], r["cost_before"], r["cost_after"],
                     r["best_before"], r["best_after"],
                     m["before"] if m else None, m["after"] if m else None))
    return rows


TABLE_HEADER = ("architecture", "B", "forward ms", "cost before", "cost after",
                "best autodiff / CPA before", "after", "K tangents before", "after")
TABLE_FMT = ("s", "d", ".2f", ".2f", ".2f", ".2f", ".2f", ".2f", ".2f")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="few rounds, batch 8, K=4 (for tests)")
    p.add_argument("--arch", action="append", help="only this zoo architecture (repeatable)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                   help="torch thread counts to time with, each a run of its own (1 2)")
    p.add_argument("--repeats", type=int, default=None,
                   help="repeats of the whole grid per thread count (full 3, quick 1)")
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds in full mode (7)")
    p.add_argument("--before", default=BEFORE, help=f"the 'before' commit ({BEFORE})")
    p.add_argument("--no-jacobians", action="store_true", help="skip the Jacobian rows")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON file to write")
    args = p.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    import torch
    from helpers.runtime import device_name

    data = {
        "what": "helpers.jvp before and after issue 18, timed in one run "
                "(tools/jvp_before_after.py)",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": device_name("cpu"), "python": platform.python_version(),
        "torch": torch.__version__, "mode": "quick" if args.quick else "full",
        "by_threads": {},
    }
    try:
        data.update(before_commit=commit_of(args.before), after_commit=commit_of("HEAD"),
                    after_dirty=any(_dirty(f"helpers/{m}.py") for m in ("jvp", "native_pool", "sampling")))
        for threads in args.threads:
            runs = []
            for rep in range(repeats):  # the repeats lie at different moments of the run
                print(f"{threads} thread(s), repeat {rep + 1} of {repeats}", flush=True)
                runs.append(measure(args, threads))
            data["by_threads"][str(threads)] = merge(runs)
    except BeforeUnavailable as e:
        print(f"jvp_before_after: {e}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    for threads, result in data["by_threads"].items():
        s = result["summary"]
        print(f"{threads} thread(s): cost median {s['cost_median_before']:.2f} -> "
              f"{s['cost_median_after']:.2f}, worst {s['cost_worst_before']:.2f} -> "
              f"{s['cost_worst_after']:.2f}; fastest autodiff / CPA {s['best_mean_before']:.2f} "
              f"-> {s['best_mean_after']:.2f}; K={result['K']} median "
              f"{s['many_median_before']:.2f} -> {s['many_median_after']:.2f}")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
