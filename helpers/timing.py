"""Fair timing of alternatives in one run, and work that must stop at a time limit.

Every timing in the book goes through :func:`compare`. Absolute times on a shared machine are
noise; ratios between methods measured in the same rounds are not (much). Each round runs every
method once (``number`` calls each) in a rotated order, so that a burst of load hits all methods
alike. The reported time of a method is the **median** of its rounds, with the per-round times
kept, so that a page can show the spread next to the median (:class:`Timings`).

``compare`` owns the three settings that silently change a timing:

- the **thread count** of the timed block (``threads=``): torch's intra-op threads and, through
  threadpoolctl, the OpenMP and BLAS pools that numpy and scipy use; both are restored afterwards,
  also when a method raises;
- **device synchronisation** (``device=``): CUDA and MPS run kernels asynchronously, so a clock
  read right after a call measures the launch, not the work. ``compare`` synchronises once before
  the first clock and after each batch of ``number`` calls, inside the timed interval; on the CPU
  it does nothing. The timed callables need no ``sync()`` of their own;
- the **Python stack** the methods start from: on CPython 3.11 a method whose frames cross a
  boundary of the interpreter's frame stack pays a memory map and unmap at every call, and
  whether it crosses depends on how deep the caller is. ``compare`` calls the methods from a
  frame that starts a fresh stack chunk, so they start the same way from any caller.

:func:`run_with_timeout` runs a sequence of calls in a separate Python process and stops at the
first call that exceeds a time limit, for work (such as a qhull build in high dimension) that
cannot be interrupted from inside the process.
:func:`qhull_build_times` uses it to time qhull's hull and Delaunay builds as the dimension
grows, up to the first dimension over a time cap.
"""

from __future__ import annotations

import contextlib
import json
import numbers
import os
import queue
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from time import perf_counter
from typing import Callable, Mapping, Sequence

import numpy as np

__all__ = ["Timings", "balanced_orders", "compare", "TimeoutRun", "run_with_timeout", "qhull_build_times"]


def _is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, (bool, np.bool_))


def _check_int(name: str, value, low: int) -> int:
    if not _is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be at least {low}, got {value}")
    return int(value)


def _check_seconds(name: str, value) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive, finite number of seconds, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------------------------
# compare
# --------------------------------------------------------------------------------------------


class Timings(dict):
    """Name -> median seconds per call, with every round kept; what :func:`compare` returns.

    A ``Timings`` is a ``dict`` of plain floats, so ``t["CPA"]``, ``t["a"] / t["b"]``,
    ``dict(t)`` and ``json.dumps(t)`` work as they did when ``compare`` returned a dict.

    Attributes
    ----------
    rounds : dict
        Name -> tuple of seconds per call, one entry per round, in round order. Round ``r`` of
        every method was measured in the same stretch of time, so rounds pair across methods.

    Examples
    --------
    >>> t = Timings({"a": [1.0, 5.0, 2.0, 4.0, 3.0], "b": [2.0, 2.0, 2.0, 2.0, 2.0]})
    >>> t["a"], t.quartiles("a"), t.extremes("a")
    (3.0, (2.0, 4.0), (1.0, 5.0))
    >>> t.ratio("a", "b")
    1.5
    """

    def __init__(self, rounds: Mapping[str, Sequence[float]]):
        self.rounds = {name: tuple(float(s) for s in per_round) for name, per_round in rounds.items()}
        if any(len(per_round) == 0 for per_round in self.rounds.values()):
            raise ValueError("every method needs at least one round")
        super().__init__({name: float(np.median(per_round)) for name, per_round in self.rounds.items()})

    def quartiles(self, name: str) -> tuple[float, float]:
        """The 25th and 75th percentiles of ``name``'s rounds (linear interpolation).

        Their difference is the interquartile range, the spread a page reports next to the
        median. With one round both equal the median; with two they are a quarter and three
        quarters of the way between the two rounds.
        """
        q1, q3 = np.percentile(self.rounds[name], [25, 75])
        return float(q1), float(q3)

    def extremes(self, name: str) -> tuple[float, float]:
        """The fastest and the slowest round of ``name`` (seconds per call)."""
        return min(self.rounds[name]), max(self.rounds[name])

    def spread(self, name: str) -> float:
        """Interquartile range of ``name``'s rounds relative to its median (0.1: 10 %)."""
        q1, q3 = self.quartiles(name)
        return (q3 - q1) / self[name] if self[name] > 0 else float("nan")

    def ratio(self, num: str, den: str) -> float:
        """Median over rounds of ``num``'s time / ``den``'s time in the same round.

        Pairing the rounds cancels load that hit both methods in that round, so this is the
        estimator to report for a speed-up; ``t[num] / t[den]`` (a ratio of medians) is close
        to it when the machine is quiet.
        """
        return float(np.median(np.divide(self.rounds[num], self.rounds[den])))

    def summary(self, unit: str = "ms") -> str:
        """One line per method: median and interquartile range, in ``unit`` (s, ms or us)."""
        scale = {"s": 1.0, "ms": 1e3, "us": 1e6}.get(unit)
        if scale is None:
            raise ValueError(f"unit must be 's', 'ms' or 'us', got {unit!r}")
        width = max((len(name) for name in self), default=0)
        lines = []
        for name, median in self.items():
            q1, q3 = self.quartiles(name)
            lines.append(f"{name:{width}s}  {median * scale:10.4g} {unit}  "
                         f"[{q1 * scale:.4g}, {q3 * scale:.4g}] over {len(self.rounds[name])} rounds")
        return "\n".join(lines)


def _synchronizer(device) -> Callable[[], None] | None:
    """The synchronisation call for ``device``, or None where none is needed (CPU)."""
    if device is None:
        return None
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device must be a torch device or its name, got {device!r}") from err
    if dev.type == "cpu":
        return None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} was given but CUDA is not available")
        return lambda: torch.cuda.synchronize(dev)
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device={device!r} was given but MPS is not available")
        return torch.mps.synchronize
    raise ValueError(f"compare can synchronise cpu, cuda and mps devices, not {dev.type!r}")


class _Threads:
    """Set torch and OpenMP/BLAS threads for a block; restore both on exit (also on errors)."""

    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        from threadpoolctl import threadpool_limits

        try:
            import torch
        except ImportError:  # numpy-only timings need no torch
            torch = None
        self._torch = torch
        self._limits = threadpool_limits(limits=self.n)
        try:
            if torch is not None:
                self._old = torch.get_num_threads()
                torch.set_num_threads(self.n)
        except BaseException:
            self._limits.restore_original_limits()
            raise
        return self

    def __exit__(self, *exc):
        try:
            if self._torch is not None:
                self._torch.set_num_threads(self._old)
        finally:
            self._limits.restore_original_limits()
        return False


def _in_a_fresh_frame_chunk(work: Callable[[], object]) -> object:
    """``work()``, called from a frame too large for the spare room of a 16 KiB frame chunk.

    Why: CPython 3.11 keeps Python frames in 16 KiB chunks. A call whose frames cross into
    the next chunk maps a new chunk and unmaps it on return, at every call
    (python/cpython#142183; 3.13 keeps a spare chunk). Whether a timed method crosses depends
    on how deep its caller's stack is, and in a notebook that is not the same in every kernel.
    Measured on the 1-D conv net at batch 8, one thread: with the caller 119-132 frames (of
    a small function) deep, and again every 136 frames, the CPA JVP made up to 24 page faults
    per call and ran up to 1.8x slower, the forward pass up to 1.5x, so their ratio moved.
    This frame opens a chunk of its own (32 KiB), so every method starts with about 15 KiB of
    frames to spare before the next boundary, wherever ``compare`` is called from; the
    caller's thread, and with it its allocator arena and OpenMP team, stays the same.
    """
    return work()


# About 16.4 KiB of value-stack slots: more than any 16 KiB chunk has to spare.
_in_a_fresh_frame_chunk.__code__ = _in_a_fresh_frame_chunk.__code__.replace(co_stacksize=2100)


def balanced_orders(n: int) -> list[list[int]]:
    """Orders of ``range(n)`` in which every item takes every position and follows every other
    item equally often: a Williams design (Williams 1949, for carry-over effects in crossover
    trials). ``n`` orders for even ``n``, ``2 n`` for odd ``n`` (each order then next to its
    reverse, so that a short run of rounds is balanced too).

    >>> balanced_orders(4)
    [[0, 1, 3, 2], [1, 2, 0, 3], [2, 3, 1, 0], [3, 0, 2, 1]]
    """
    first, lo, hi = [0], 1, n - 1
    while len(first) < n:  # 0, 1, n-1, 2, n-2, ...: the steps between neighbours all differ
        first.append(lo)
        lo += 1
        if len(first) < n:
            first.append(hi)
            hi -= 1
    rows = [[(i + r) % n for i in first] for r in range(n)]
    if n % 2 == 0:
        return rows
    return [order for row in rows for order in (row, row[::-1])]


def compare(methods: Mapping[str, Callable[[], object]], *, rounds: int = 5, number: int = 10,
            warmup: int = 2, threads: int | None = None, device=None) -> Timings:
    """Seconds per call of each method: the median of ``rounds`` interleaved rounds.

    Round ``r`` runs every method ``number`` times in a row, the methods in the ``r``-th order
    of a balanced design (:func:`balanced_orders`): over a cycle of rounds every method runs in
    every position and right after every other method equally often, and a burst of load on a
    shared machine hits all methods alike. The neighbour matters: a method run right after a
    similar one (a copy of the same kernel) measured 2-6 % faster than when it ran after the
    model's forward pass, which a plain rotation of the order, where each method keeps its
    predecessor, turns into a bias of every ratio.

    The estimator is the median of the rounds. Until this version ``compare`` reported the
    best (smallest) round, as ``timeit`` does. On a shared machine the minimum of a few rounds is
    an extreme value: one lucky round moves it, so ratios between methods jumped from run to run,
    and it hides how much the rounds varied. The median is robust to a disturbed round either way,
    and the kept rounds (:attr:`Timings.rounds`) give the spread a page reports with it.
    Medians are slightly larger than best-of-rounds times of the same runs.

    Parameters
    ----------
    methods
        Name -> a callable with no arguments. Pass work on a GPU as it is: ``compare``
        synchronises the device itself (see ``device``).
    rounds
        Rounds; each runs every method ``number`` times, in the order of the round (above).
    number
        Calls per method per round, timed together (one clock reading per batch).
    warmup
        Untimed calls per method first (allocator, caches, lazy initialisation, autotuning).
    threads
        Threads for the warm-up and the timed rounds: torch's intra-op threads and, through
        threadpoolctl, every OpenMP and BLAS pool loaded in the process (numpy's and scipy's
        BLAS included). Both are restored afterwards, also when a method raises. ``None``
        (default) leaves the current settings alone.
    device
        The device the methods run on (a ``torch.device`` or its name, e.g. ``env.device``).
        For ``cuda`` and ``mps``, ``compare`` synchronises once before the first clock reading
        and after each batch of ``number`` calls, before the clock is read, so a batch's time is
        the time of its work, not of its kernel launches. ``None`` or ``cpu``: no
        synchronisation.

    Returns
    -------
    Timings
        A dict, name -> median seconds per call (a float), with the per-round times in
        ``.rounds`` and the spread in ``.quartiles(name)``, ``.extremes(name)`` and
        ``.spread(name)``; ``.ratio(a, b)`` is the median over rounds of ``a``'s time / ``b``'s.

    Raises
    ------
    ValueError
        If ``methods`` is empty, ``rounds``/``number``/``threads`` are below 1, ``warmup`` is
        negative, or ``device`` is unknown, unsupported or not available.
    TypeError
        If a method is not callable, or a count is not an int.

    Examples
    --------
    >>> t = compare({"sum": lambda: sum(range(100)), "sorted": lambda: sorted(range(100))},
    ...             rounds=3, number=5, threads=1)
    >>> sorted(t), len(t.rounds["sum"])
    (['sorted', 'sum'], 3)
    """
    if not isinstance(methods, Mapping):
        raise TypeError(f"methods must be a mapping from names to callables, got {type(methods).__name__}")
    if not methods:
        raise ValueError("compare needs at least one method")
    for name, fn in methods.items():
        if not callable(fn):
            raise TypeError(f"method {name!r} is not callable: {fn!r}")
    rounds = _check_int("rounds", rounds, 1)
    number = _check_int("number", number, 1)
    warmup = _check_int("warmup", warmup, 0)
    if threads is not None:
        threads = _check_int("threads", threads, 1)
    sync = _synchronizer(device)

    names = list(methods)
    per_round = {name: [] for name in names}

    def timed_rounds():
        for name in names:
            for _ in range(warmup):
                methods[name]()
        if sync is not None:
            sync()  # the warm-up's queued work must not land in the first batch
        orders = balanced_orders(len(names))
        for r in range(rounds):
            for name in (names[i] for i in orders[r % len(orders)]):
                fn = methods[name]
                start = perf_counter()
                for _ in range(number):
                    fn()
                if sync is not None:
                    sync()
                per_round[name].append((perf_counter() - start) / number)

    with _Threads(threads) if threads is not None else contextlib.nullcontext():
        _in_a_fresh_frame_chunk(timed_rounds)
    return Timings(per_round)


# --------------------------------------------------------------------------------------------
# run_with_timeout
# --------------------------------------------------------------------------------------------

# The child: stdout (fd 1) is moved to stderr so that prints, warnings and C libraries cannot
# corrupt the protocol; results go one JSON line each to a private copy of the original fd 1.
_CHILD = r"""
import json, os, sys
out = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
spec = json.load(sys.stdin)
namespace = {"__name__": "__run_with_timeout__"}
exec(compile(spec["source"], "<run_with_timeout source>", "exec"), namespace)
fn = namespace.get(spec["func"])
if not callable(fn):
    raise SystemExit(f"run_with_timeout: the source defines no function {spec['func']!r}")
out.write("ready\n"); out.flush()
for args in spec["calls"]:
    out.write(json.dumps(fn(*args)) + "\n"); out.flush()
"""

_EOF = object()


@dataclass(frozen=True)
class TimeoutRun:
    """What :func:`run_with_timeout` returns.

    Attributes
    ----------
    results : list
        The JSON-decoded return value of each call that finished within the limit, in order.
    timed_out : bool
        True when call number ``len(results)`` exceeded the limit; it and the calls after it
        were not run to the end (the process was killed).
    """

    results: list
    timed_out: bool


def run_with_timeout(source: str, func: str, calls: Sequence[Sequence], *, timeout: float,
                     startup_timeout: float = 120.0) -> TimeoutRun:
    """Run ``func(*args)`` for each ``args`` in ``calls`` in a fresh Python process, each call
    with ``timeout`` seconds; stop at the first call over the limit.

    Some work cannot be interrupted from inside the process: a qhull build or a C solver
    ignores signals and threads. This runs it in a child process (``sys.executable``, the
    parent's environment and working directory) that executes ``source`` once (imports and
    definitions, limited by ``startup_timeout``), then makes the calls in order, each returning
    one JSON value. The parent kills the child at the first call that takes longer than
    ``timeout`` seconds, so the caller's page cannot hang. The calls run one after another in
    the same process, so a later call can reuse what an earlier one imported or cached.

    To time the work, measure inside ``func`` (``time.perf_counter`` around the part that
    matters) and return the seconds in the result; the parent's limit includes the JSON output.

    Parameters
    ----------
    source
        Python source that defines ``func`` at top level (and imports what it needs).
    func
        Name of the function to call.
    calls
        Positional arguments of each call: a list or tuple per call, JSON-serialisable.
    timeout
        Seconds allowed for each call, counted from the end of the previous one.
    startup_timeout
        Seconds allowed for the interpreter to start and run ``source``.

    Returns
    -------
    TimeoutRun
        ``results`` (one decoded JSON value per call finished in time) and ``timed_out``.

    Raises
    ------
    TimeoutError
        If starting the interpreter and running ``source`` takes longer than ``startup_timeout``.
    RuntimeError
        If the child fails (an exception in ``source`` or in a call, no ``func``, a result
        that is not JSON-serialisable); the message ends with the child's stderr.
    TypeError
        If ``source``/``func`` are not strings or ``calls`` is not a sequence of argument
        lists that JSON can encode.
    ValueError
        If a time limit is not positive and finite.

    Examples
    --------
    >>> src = "import time\\ndef nap(s):\\n    time.sleep(s)\\n    return s\\n"
    >>> run = run_with_timeout(src, "nap", [(0,), (0.01,), (60,), (0,)], timeout=2)
    >>> run.results, run.timed_out
    ([0, 0.01], True)
    """
    if not isinstance(source, str) or not isinstance(func, str):
        raise TypeError("source and func must be strings")
    if not func.isidentifier():
        raise ValueError(f"func must be a function name, got {func!r}")
    if isinstance(calls, (str, bytes)) or not isinstance(calls, Sequence) \
            or not all(isinstance(args, (list, tuple)) for args in calls):
        raise TypeError("calls must be a sequence of argument lists or tuples, e.g. [(1,), (2,)]")
    timeout = _check_seconds("timeout", timeout)
    startup_timeout = _check_seconds("startup_timeout", startup_timeout)
    try:
        spec = json.dumps({"source": source, "func": func, "calls": [list(args) for args in calls]})
    except (TypeError, ValueError) as err:
        raise TypeError(f"the arguments in calls must be JSON-serialisable: {err}") from err

    with tempfile.TemporaryDirectory(prefix="run_with_timeout_") as tmp:
        spec_path, err_path = os.path.join(tmp, "spec.json"), os.path.join(tmp, "stderr.txt")
        with open(spec_path, "w") as f:
            f.write(spec)
        with open(spec_path) as spec_in, open(err_path, "w") as err_out:
            proc = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=spec_in, stdout=subprocess.PIPE,
                                    stderr=err_out, text=True)
        lines: queue.Queue = queue.Queue()

        def pump():
            for line in proc.stdout:
                lines.put(line)
            lines.put(_EOF)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()

        def failure(what: str) -> RuntimeError:
            proc.wait()
            with open(err_path) as f:
                stderr = f.read().strip()
            return RuntimeError(f"run_with_timeout: the child process {what} (exit code {proc.returncode})"
                                + (f"; its stderr ends with:\n{stderr[-2000:]}" if stderr else ""))

        results, timed_out = [], False
        try:
            try:
                line = lines.get(timeout=startup_timeout)
            except queue.Empty:
                raise TimeoutError(f"run_with_timeout: the child process was not ready after "
                                   f"{startup_timeout:g} s (interpreter start-up and source)") from None
            if line is _EOF:
                raise failure("failed before its first call")
            for i in range(len(calls)):
                try:
                    line = lines.get(timeout=timeout)
                except queue.Empty:
                    timed_out = True
                    break
                if line is _EOF:
                    raise failure(f"failed in call {i} with arguments {list(calls[i])!r}")
                results.append(json.loads(line))
        finally:
            proc.kill()
            proc.wait()
            reader.join(timeout=5)  # EOF follows the kill, unless a grandchild still holds the pipe
            if not reader.is_alive():
                proc.stdout.close()
    return TimeoutRun(results=results, timed_out=timed_out)


# --------------------------------------------------------------------------------------------
# qhull_build_times
# --------------------------------------------------------------------------------------------

QHULL_KINDS = ("ConvexHull", "Delaunay")

# Runs in the child process of run_with_timeout: the points are drawn there, so that only
# small JSON values cross the pipe, and only the qhull build is inside the clock.
_QHULL_SOURCE = """
import time
import numpy as np
from scipy.spatial import ConvexHull, Delaunay

def build(kind, n_points, seed, d):
    X = np.random.default_rng(np.random.SeedSequence([seed, d])).standard_normal((n_points, d))
    t0 = time.perf_counter()
    count = len((ConvexHull if kind == "ConvexHull" else Delaunay)(X).simplices)
    return {"d": d, "count": count, "seconds": time.perf_counter() - t0}
"""


def qhull_build_times(kind: str, n_points: int, dims: Sequence[int], *, cap: float,
                      seed: int) -> list[dict]:
    """Build qhull's convex hull (or Delaunay triangulation) of Gaussian points in each of
    ``dims`` dimensions in turn, in a child process; stop at the first dimension over ``cap`` s.

    For dimension ``d`` the points are ``n_points`` draws of :math:`\\mathcal{N}(0, I_d)` from
    ``np.random.default_rng(np.random.SeedSequence([seed, d]))``, so a caller can rebuild the
    same point set. The child (:func:`run_with_timeout`) builds
    ``scipy.spatial.ConvexHull`` (``count`` = its facets, ``len(hull.simplices)``) or
    ``scipy.spatial.Delaunay`` (``count`` = its simplices) and times the build alone with
    ``time.perf_counter``. A qhull build ignores signals, so the parent kills the child at the
    first dimension whose build (plus its JSON reply) takes longer than ``cap`` seconds; the
    dimensions after it are not tried, since the output only grows with ``d``.

    Parameters
    ----------
    kind
        ``"ConvexHull"`` or ``"Delaunay"``.
    n_points
        Number of points per dimension, at least ``max(dims) + 2``.
    dims
        Dimensions to try, in order (each at least 2).
    cap
        Seconds allowed for each dimension's build.
    seed
        A non-negative int; with ``d`` it names the point set.

    Returns
    -------
    list of dict
        One ``{"d": d, "count": int, "seconds": float}`` per dimension built within the cap,
        in order, followed, when a dimension exceeded the cap, by ``{"d": d, "count": None,
        "seconds": None}`` for that dimension.

    Raises
    ------
    ValueError
        (a ``ParameterError``, also a TypeError) If ``kind`` is not one of ``QHULL_KINDS``, or a count, dimension, seed or cap is
        not valid.

    Examples
    --------
    >>> rows = qhull_build_times("ConvexHull", 50, [2, 3], cap=60, seed=0)
    >>> [(r["d"], r["count"] > 0, r["seconds"] >= 0) for r in rows]
    [(2, True, True), (3, True, True)]
    """
    from helpers._checks import ParameterError

    if kind not in QHULL_KINDS:
        raise ParameterError(f"kind is one of {QHULL_KINDS}, got {kind!r}")
    if isinstance(dims, (str, bytes)) or not isinstance(dims, Sequence) or not dims:
        raise ParameterError(f"dims must be a non-empty sequence of ints, got {dims!r}")
    try:
        dims = [_check_int("each dimension", d, 2) for d in dims]
        n_points = _check_int("n_points", n_points, max(dims) + 2)
        seed = _check_int("seed", seed, 0)
        cap = _check_seconds("cap", cap)
    except (TypeError, ValueError) as err:
        raise ParameterError(str(err)) from err
    run = run_with_timeout(_QHULL_SOURCE, "build", [(kind, n_points, seed, d) for d in dims],
                           timeout=cap)
    rows = list(run.results)
    if run.timed_out:                              # over the cap: the series stops here
        rows.append({"d": dims[len(rows)], "count": None, "seconds": None})
    return rows
