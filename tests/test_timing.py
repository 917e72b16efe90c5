"""helpers.timing: interleaved rounds reported by their median, threads and device sync owned by
compare, and run_with_timeout (work in a child process stopped at a time limit)."""

import json
import pickle
import sys
import time
from collections import Counter

import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

import helpers.timing as timing
from helpers.timing import Timings, balanced_orders, compare, run_with_timeout


class FakeClock:
    """A clock that moves only when the timed methods (or a fake sync) say so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def costing(self, costs):
        """A method whose successive calls take ``costs[0]``, ``costs[1]``, ... seconds."""
        it = iter(costs)

        def method():
            self.now += next(it)
        return method


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(timing, "perf_counter", fake)
    return fake


# ----------------------------------------------------------------------------- compare: estimator


def test_compare_reports_the_median_and_the_spread_of_the_rounds(clock):
    # number=2 calls per round; the warm-up call (100 s) must not count anywhere
    a = clock.costing([100] + [c for c in (1, 5, 2, 4, 3) for _ in range(2)])
    b = clock.costing([100] + [2] * 10)
    t = compare({"a": a, "b": b}, rounds=5, number=2, warmup=1)
    assert isinstance(t, Timings) and isinstance(t, dict)
    assert t.rounds == {"a": (1, 5, 2, 4, 3), "b": (2, 2, 2, 2, 2)}
    assert t["a"] == 3.0 and t["b"] == 2.0          # the median; best-of-rounds would give a = 1
    assert t.quartiles("a") == (2.0, 4.0) and t.extremes("a") == (1.0, 5.0)
    assert t.spread("a") == pytest.approx(2 / 3) and t.spread("b") == 0.0
    assert t.ratio("a", "b") == 1.5                 # median of per-round ratios 0.5, 2.5, 1, 2, 1.5
    assert [type(v) for v in t.values()] == [float, float]
    assert "a" in t.summary() and "[2000, 4000] over 5 rounds" in t.summary(unit="ms")


def test_ratio_pairs_rounds_where_a_ratio_of_medians_does_not(clock):
    # load doubles both methods in rounds 1 and 2; b is always twice as slow as a within a round
    a = clock.costing([1, 2, 2, 1, 1])
    b = clock.costing([2, 4, 4, 2, 2])
    t = compare({"a": a, "b": b}, rounds=5, number=1, warmup=0)
    assert t.ratio("b", "a") == 2.0 and t["b"] / t["a"] == 2.0
    c = clock.costing([1, 1, 1, 4, 4])             # a method whose slow rounds are not a's
    d = clock.costing([2, 2, 2, 2, 2])
    t = compare({"c": c, "d": d}, rounds=5, number=1, warmup=0)
    assert t["d"] / t["c"] == 2.0 and t.ratio("d", "c") == 2.0 and t.extremes("c") == (1.0, 4.0)


def test_compare_follows_the_balanced_orders_round_by_round():
    calls = []
    methods = {name: (lambda name=name: calls.append(name)) for name in "abcd"}
    compare(methods, rounds=5, number=2, warmup=1)
    warm, timed = calls[:4], calls[4:]
    assert warm == ["a", "b", "c", "d"]
    assert timed == [*"aabbddcc", *"bbccaadd", *"ccddbbaa", *"ddaaccbb", *"aabbddcc"]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7])
def test_balanced_orders_put_every_method_everywhere_and_after_every_other_equally_often(n):
    orders = balanced_orders(n)
    assert len(orders) == (n if n % 2 == 0 else 2 * n)
    assert all(sorted(o) == list(range(n)) for o in orders)
    per_position = Counter((pos, m) for o in orders for pos, m in enumerate(o))
    assert set(per_position.values()) == {len(orders) // n}  # every method in every position
    after = Counter((a, b) for o in orders for a, b in zip(o, o[1:]))
    if n > 1:  # every ordered pair of distinct methods adjacent, equally often
        assert set(after) == {(a, b) for a in range(n) for b in range(n) if a != b}
        assert len(set(after.values())) == 1


def test_compare_ranks_a_slower_method_slower_with_real_sleeps():
    t = compare({"fast": lambda: None, "slow": lambda: time.sleep(0.002)}, rounds=3, number=2, warmup=0)
    assert t["slow"] >= 0.002 > t["fast"]
    assert all(s >= 0.002 for s in t.rounds["slow"]) and len(t.rounds["fast"]) == 3


def test_timings_stay_a_plain_dict_of_floats():
    t = Timings({"a": [1.0, 3.0], "b": [2.0]})
    assert t == {"a": 2.0, "b": 2.0} and json.loads(json.dumps(t)) == {"a": 2.0, "b": 2.0}
    back = pickle.loads(pickle.dumps(t))
    assert back == t and back.rounds == t.rounds and back.quartiles("a") == (1.5, 2.5)
    with pytest.raises(ValueError, match="at least one round"):
        Timings({"a": []})
    with pytest.raises(ValueError, match="unit must be"):
        t.summary(unit="min")


# ----------------------------------------------------------------------------- compare: threads


def _pools():
    return {(p["internal_api"], p["filepath"]): p["num_threads"] for p in threadpool_info()}


def test_compare_sets_threads_for_the_block_and_restores_them_even_on_an_exception():
    old = torch.get_num_threads()
    with threadpool_limits(limits=3):                # 3, not 1: one-thread test workers must not pass by luck
        torch.set_num_threads(3)
        try:
            before = _pools()
            seen = {}

            def probe():
                seen["torch"] = torch.get_num_threads()
                seen["pools"] = set(_pools().values())
                raise RuntimeError("boom in the timed method")

            with pytest.raises(RuntimeError, match="boom in the timed method"):
                compare({"probe": probe}, threads=1, warmup=1)
            assert seen == {"torch": 1, "pools": {1}}
            assert torch.get_num_threads() == 3 and _pools() == before

            compare({"probe": lambda: seen.update(torch=torch.get_num_threads())}, threads=2, rounds=1, number=1)
            assert seen["torch"] == 2 and torch.get_num_threads() == 3 and _pools() == before
            compare({"probe": lambda: seen.update(torch=torch.get_num_threads())}, rounds=1, number=1)
            assert seen["torch"] == 3                # threads=None leaves the setting alone
        finally:
            torch.set_num_threads(old)


# ----------------------------------------------------------------------------- compare: the Python stack


def _nest(n, fn):
    return fn() if n == 0 else _nest(n - 1, fn)


def _page_faults() -> int:
    import resource
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts page faults per thread (Linux)")
def test_compare_starts_every_method_on_a_fresh_frame_chunk_wherever_it_is_called_from():
    # A method 40 frames deep crosses a 16 KiB chunk of CPython 3.11's frame stack for some
    # depths of its caller; crossing maps a fresh chunk at every call, which shows as at least
    # one page fault per call. Scanned over more than a chunk's worth of caller depths.
    def method():
        _nest(40, lambda: None)

    def timed():
        compare({"m": method}, rounds=2, number=100, warmup=1)  # 201 calls

    timed()  # first-call allocations
    faults = {}
    for depth in range(0, 300, 5):
        before = _page_faults()
        _nest(depth, timed)
        faults[depth] = (_page_faults() - before) / 201
    assert max(faults.values()) < 0.5, {d: f for d, f in faults.items() if f >= 0.5}


# ----------------------------------------------------------------------------- compare: devices


def test_compare_synchronises_cuda_after_warmup_and_inside_each_timed_batch(monkeypatch, clock):
    events = []

    def fake_sync(device=None):
        events.append(f"sync {device}")
        clock.now += 10.0                            # waiting for the queued GPU work

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", fake_sync)
    methods = {name: (lambda name=name: events.append(name)) for name in "ab"}
    t = compare(methods, rounds=2, number=3, warmup=1, device="cuda")
    sync = "sync cuda"
    assert events == ["a", "b", sync, *"aaa", sync, *"bbb", sync, *"bbb", sync, *"aaa", sync]
    # each batch's time is its sync (10 s) over 3 calls: the sync is inside the timed interval,
    # and the warm-up's sync is outside every batch
    assert t.rounds == {"a": (10 / 3, 10 / 3), "b": (10 / 3, 10 / 3)}


def test_compare_synchronises_mps(monkeypatch):
    count = []
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.mps, "synchronize", lambda: count.append(1))
    compare({"a": lambda: None, "b": lambda: None}, rounds=3, number=2, warmup=0, device=torch.device("mps"))
    assert len(count) == 1 + 3 * 2


@pytest.mark.parametrize("device", [None, "cpu", torch.device("cpu")])
def test_compare_does_not_synchronise_on_the_cpu(monkeypatch, device):
    def refuse(*args, **kwargs):
        raise AssertionError("no synchronisation on the CPU")

    monkeypatch.setattr(torch.cuda, "synchronize", refuse)
    monkeypatch.setattr(torch.mps, "synchronize", refuse)
    assert set(compare({"a": lambda: None}, rounds=2, number=1, device=device)) == {"a"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_compare_on_a_real_gpu_times_the_work_not_the_launch():
    x = torch.randn(4096, 4096, device="cuda")
    work = lambda: x @ x  # noqa: E731
    work()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(5):
        work()
    torch.cuda.synchronize()
    manual = (time.perf_counter() - start) / 5
    t = compare({"matmul": work}, rounds=3, number=5, warmup=1, device="cuda")
    assert 0.5 * manual < t["matmul"] < 2 * manual


# ----------------------------------------------------------------------------- compare: bad input


@pytest.mark.parametrize("kwargs, error, match", [
    ({"methods": {}}, ValueError, "at least one method"),
    ({"methods": [lambda: None]}, TypeError, "mapping"),
    ({"methods": {"a": 3}}, TypeError, "'a' is not callable"),
    ({"rounds": 0}, ValueError, "rounds must be at least 1"),
    ({"rounds": True}, TypeError, "rounds must be an int"),
    ({"number": 1.5}, TypeError, "number must be an int"),
    ({"number": 0}, ValueError, "number must be at least 1"),
    ({"warmup": -1}, ValueError, "warmup must be at least 0"),
    ({"threads": 0}, ValueError, "threads must be at least 1"),
    ({"threads": 2.0}, TypeError, "threads must be an int"),
    ({"device": "no-such-device"}, ValueError, "device must be a torch device"),
    ({"device": "meta"}, ValueError, "cpu, cuda and mps"),
])
def test_compare_rejects_bad_arguments(kwargs, error, match):
    kwargs = {"methods": {"a": lambda: None}, **kwargs}
    with pytest.raises(error, match=match):
        compare(**kwargs)


def test_compare_refuses_an_unavailable_device_and_positional_options(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        compare({"a": lambda: None}, device="cuda")
    with pytest.raises(TypeError, match="positional argument"):
        compare({"a": lambda: None}, 3)  # options are keyword-only


# ----------------------------------------------------------------------------- run_with_timeout

NAP = """
import time
def nap(seconds, tag=None):
    print("chatter on stdout must not break the protocol")
    time.sleep(seconds)
    return {"seconds": seconds, "tag": tag}
def fail_if(message):
    if message:
        raise ValueError(message)
    return message
"""


def test_run_with_timeout_stops_at_the_first_call_over_the_limit():
    start = time.perf_counter()
    run = run_with_timeout(NAP, "nap", [(0,), (0.01, "b"), (60,), (0,)], timeout=3)
    assert run.timed_out and run.results == [{"seconds": 0, "tag": None}, {"seconds": 0.01, "tag": "b"}]
    assert time.perf_counter() - start < 30        # the 60 s call was killed, not waited for


def test_run_with_timeout_runs_every_call_in_time():
    run = run_with_timeout(NAP, "nap", [[0, 1], (0, [2, 3])], timeout=20)
    assert not run.timed_out and run.results == [{"seconds": 0, "tag": 1}, {"seconds": 0, "tag": [2, 3]}]
    assert run_with_timeout(NAP, "nap", [], timeout=1).results == []


def test_run_with_timeout_reports_the_childs_failure():
    with pytest.raises(RuntimeError, match=r"(?s)failed in call 1 with arguments \['broken on purpose'\].*"
                                           r"ValueError: broken on purpose"):
        run_with_timeout(NAP, "fail_if", [("",), ("broken on purpose",)], timeout=20)
    with pytest.raises(RuntimeError, match=r"(?s)failed before its first call.*no function 'missing'"):
        run_with_timeout(NAP, "missing", [(0,)], timeout=20)
    with pytest.raises(RuntimeError, match=r"(?s)failed before its first call.*ZeroDivisionError"):
        run_with_timeout("1 / 0", "nap", [(0,)], timeout=20)
    with pytest.raises(RuntimeError, match=r"(?s)failed in call 0.*not JSON serializable"):
        run_with_timeout("def f():\n    return object()\n", "f", [()], timeout=20)


def test_run_with_timeout_limits_the_start_up():
    with pytest.raises(TimeoutError, match="not ready after 1 s"):
        run_with_timeout("import time\ntime.sleep(60)\n", "f", [()], timeout=1, startup_timeout=1)


@pytest.mark.parametrize("args, kwargs, error, match", [
    ((1, "nap", []), {"timeout": 1}, TypeError, "source and func must be strings"),
    ((NAP, "not a name", []), {"timeout": 1}, ValueError, "func must be a function name"),
    ((NAP, "nap", [0, 1]), {"timeout": 1}, TypeError, "sequence of argument lists"),
    ((NAP, "nap", "ab"), {"timeout": 1}, TypeError, "sequence of argument lists"),
    ((NAP, "nap", [(object(),)]), {"timeout": 1}, TypeError, "JSON-serialisable"),
    ((NAP, "nap", [(0,)]), {"timeout": 0}, ValueError, "timeout must be a positive"),
    ((NAP, "nap", [(0,)]), {"timeout": float("inf")}, ValueError, "timeout must be a positive"),
    ((NAP, "nap", [(0,)]), {"timeout": "1"}, TypeError, "timeout must be a number"),
    ((NAP, "nap", [(0,)]), {"timeout": 1, "startup_timeout": -1}, ValueError, "startup_timeout must be"),
])
def test_run_with_timeout_rejects_bad_arguments(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        run_with_timeout(*args, **kwargs)


# ----------------------------------------------------------------------------- qhull_build_times

def test_qhull_build_times_counts_what_scipy_builds_in_process():
    """Oracle: the same point sets (SeedSequence([seed, d])) built by scipy in this process."""
    import numpy as np
    from scipy.spatial import ConvexHull, Delaunay

    for kind, build in (("ConvexHull", ConvexHull), ("Delaunay", Delaunay)):
        rows = timing.qhull_build_times(kind, 40, [2, 3, 4], cap=60, seed=7)
        assert [r["d"] for r in rows] == [2, 3, 4]
        for r in rows:
            X = np.random.default_rng(np.random.SeedSequence([7, r["d"]])).standard_normal((40, r["d"]))
            assert r["count"] == len(build(X).simplices)
            assert 0 <= r["seconds"] < 60
    # In the plane the hull of points in general position is a polygon: as many facets as vertices.
    X2 = np.random.default_rng(np.random.SeedSequence([7, 2])).standard_normal((40, 2))
    assert timing.qhull_build_times("ConvexHull", 40, [2], cap=60, seed=7)[0]["count"] == \
        len(ConvexHull(X2).vertices)


def test_qhull_build_times_stops_at_the_first_dimension_over_the_cap():
    start = time.perf_counter()
    # d = 2 takes a millisecond; the hull of 3000 points in d = 10 takes minutes on any CPU.
    rows = timing.qhull_build_times("ConvexHull", 3000, [2, 10, 3], cap=0.5, seed=0)
    assert [r["d"] for r in rows] == [2, 10]
    assert rows[0]["count"] > 0 and rows[1] == {"d": 10, "count": None, "seconds": None}
    assert time.perf_counter() - start < 60


@pytest.mark.parametrize("args, kwargs, match", [
    (("Voronoi", 40, [2]), {"cap": 1, "seed": 0}, "kind is one of"),
    (("ConvexHull", 40, []), {"cap": 1, "seed": 0}, "non-empty sequence"),
    (("ConvexHull", 40, [1]), {"cap": 1, "seed": 0}, "at least 2"),
    (("ConvexHull", 5, [4]), {"cap": 1, "seed": 0}, "n_points must be at least 6"),
    (("ConvexHull", 40, [2]), {"cap": 0, "seed": 0}, "cap must be a positive"),
    (("ConvexHull", 40, [2]), {"cap": 1, "seed": -1}, "seed must be at least 0"),
    (("ConvexHull", 40, [2.5]), {"cap": 1, "seed": 0}, "must be an int"),
])
def test_qhull_build_times_rejects_bad_arguments(args, kwargs, match):
    from helpers._checks import ParameterError

    with pytest.raises(ParameterError, match=match):
        timing.qhull_build_times(*args, **kwargs)
