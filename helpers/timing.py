"""Fair timing of alternatives in one run: interleaved rounds, best of rounds.

Absolute times on a shared machine are noise; ratios between methods measured in the same
rounds are not (much). Each round runs every method once (``number`` calls each) in a rotated
order, so that a burst of load hits all methods alike; the reported time of a method is its
best round, the usual estimator of the undisturbed cost (as in ``timeit``).
"""

from __future__ import annotations

import time
from typing import Callable, Mapping


def compare(methods: Mapping[str, Callable[[], object]], rounds: int = 5, number: int = 10,
            warmup: int = 2) -> dict[str, float]:
    """Seconds per call of each method: the best of ``rounds`` interleaved rounds.

    Parameters
    ----------
    methods
        Name -> a callable with no arguments.
    rounds
        Rounds; each runs every method ``number`` times, in a rotated order.
    number
        Calls per method per round.
    warmup
        Untimed calls per method first (allocator, caches, lazy initialisation).

    Returns
    -------
    dict
        Name -> seconds per call.

    Raises
    ------
    ValueError
        If ``methods`` is empty or ``rounds``/``number`` are not positive.
    """
    if not methods:
        raise ValueError("compare needs at least one method")
    if rounds < 1 or number < 1:
        raise ValueError(f"rounds and number must be positive, got rounds={rounds}, number={number}")
    names = list(methods)
    for name in names:
        for _ in range(warmup):
            methods[name]()
    best = {name: float("inf") for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            fn = methods[name]
            start = time.perf_counter()
            for _ in range(number):
                fn()
            best[name] = min(best[name], (time.perf_counter() - start) / number)
    return best
