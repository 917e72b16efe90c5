"""Claims that depend on the run: checked, shown, glued and recorded, never a crash for a reader.

A notebook's bare ``assert`` is kept for what holds on every correct run: an oracle's
agreement within a stated tolerance, an identity, a certificate, a shape, a bound. Anything
whose truth depends on the run (a trained model, a finite sample, a timing) goes through
this module instead:

:func:`check`
    a statement the page's prose makes in fixed words ("removing duplicates lowers recall").
    A failing check shows a visible note; under ``BOOK_STRICT=1`` (``make book``) it raises
    :class:`ClaimError`, so the published book never prints a sentence its own run
    contradicts.
:func:`verdict`
    a paper's claim, judged on this run with the book's vocabulary (:data:`VERDICTS`). A
    negative verdict is a result, not an error: it never raises, and the page glues the
    verdict instead of writing it.
:func:`direction`
    a direction word ("rises" / "falls" / "does not change beyond the noise") chosen from the
    run's effect and interval, for prose whose wording follows the run.

Each records a :class:`Claim` (effect, interval, n, test, verdict) in :data:`RECORDED`, and,
when ``BOOK_CLAIMS_DIR`` is set, as ``<dir>/<key>.json``: ``make sweep`` compares these
records over seeds. :func:`mean_interval` and :func:`decide` are the book's one rule from
repeated runs to a verdict.
"""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from helpers.glue import glue, plain
from helpers import runtime

__all__ = ["VERDICTS", "Claim", "ClaimError", "RECORDED", "check", "verdict", "direction",
           "mean_interval", "decide", "summary"]

#: The book's verdict words; a verdict is one of them, optionally followed by ": <reason>".
VERDICTS = ("reproduced", "partly reproduced", "not reproduced", "inconclusive at this scale",
            "not testable offline")


class ClaimError(AssertionError):
    """A claim check failed in this run while ``BOOK_STRICT=1``."""


@dataclass(frozen=True)
class Claim:
    """One run-dependent statement and the evidence this run gave for it.

    ``kind`` is ``"check"`` (a statement of the prose), ``"verdict"`` (a paper's claim) or
    ``"direction"`` (a direction word). ``holds`` is None for verdicts and directions.
    ``interval`` is a (low, high) confidence interval of ``effect`` at confidence ``level``
    (0.95 unless the caller says otherwise); ``n`` the number of seeds, trials or samples
    behind it; ``test`` names how the interval or decision was made.
    """

    key: str
    kind: str
    statement: str
    verdict: str
    holds: bool | None = None
    effect: float | None = None
    interval: tuple[float, float] | None = None
    level: float | None = None
    n: int | None = None
    test: str | None = None
    paper: str | None = None
    seed: int | None = None
    mode: str | None = None
    device: str | None = None
    where: str | None = None


#: Every claim recorded in this process, in order.
RECORDED: list[Claim] = []


def _interval(interval) -> tuple[float, float] | None:
    if interval is None:
        return None
    lo, hi = (float(plain(v)) for v in interval)
    if not lo <= hi:
        raise ValueError(f"an interval is (low, high) with low <= high, got {interval!r}")
    return (lo, hi)


def _record(claim: Claim) -> Claim:
    RECORDED.append(claim)
    folder = os.environ.get("BOOK_CLAIMS_DIR", "").strip()
    if folder:
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        (path / f"{claim.key}.json").write_text(json.dumps(asdict(claim), indent=1))
    return claim


def _level(level, interval) -> float | None:
    if interval is None:
        return None
    level = 0.95 if level is None else float(plain(level))
    if not 0 < level < 1:
        raise ValueError(f"an interval's confidence level is in (0, 1), got {level!r}")
    return level


def _make(key, kind, statement, verdict_text, holds=None, effect=None, interval=None, n=None,
          test=None, paper=None, level=None) -> Claim:
    if not isinstance(key, str) or not key.isidentifier():
        raise ValueError(f"a claim key is a glue key (letters, digits, underscores), got {key!r}")
    if not isinstance(statement, str) or not statement.strip():
        raise ValueError(f"claim {key!r} needs a statement in words")
    if n is not None and (isinstance(n, bool) or int(n) != n or n < 1):
        raise ValueError(f"n is a positive count, got {n!r}")
    env = runtime.current()
    return Claim(key=key, kind=kind, statement=statement.strip(), verdict=verdict_text,
                 holds=holds, effect=None if effect is None else float(plain(effect)),
                 interval=_interval(interval), level=_level(level, interval), n=None if n is None else int(n), test=test,
                 paper=paper, seed=env.seed if env else None, mode=env.mode if env else None,
                 device=str(env.device) if env else None, where=Path.cwd().name)


def _evidence(claim: Claim) -> str:
    parts = []
    if claim.effect is not None:
        parts.append(f"effect {claim.effect:+.3g}")
    if claim.interval is not None:
        parts.append(f"{100 * (claim.level or 0.95):.3g}% interval"
                     f" [{claim.interval[0]:+.3g}, {claim.interval[1]:+.3g}]")
    if claim.n is not None:
        parts.append(f"n = {claim.n}")
    if claim.test:
        parts.append(claim.test)
    if claim.paper:
        parts.append(f"paper: {claim.paper}")
    return "; ".join(parts)


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (a notebook, nbmake, the book build), where HTML renders."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return getattr(get_ipython(), "kernel", None) is not None


def _show(claim: Claim, failed: bool) -> None:
    mark = "✗" if failed else "✓"
    head = {"check": "claim", "verdict": "paper's claim", "direction": "direction"}[claim.kind]
    outcome = claim.verdict
    evidence = _evidence(claim)
    text = f"{mark} {head} [{claim.key}] {claim.statement}: {outcome}" + (f" ({evidence})" if evidence else "")
    if failed:
        text += ("\n  This run does not support a sentence of this page, which was written from runs"
                 " where it held; trained models and finite samples differ between machines and"
                 " seeds. BOOK_STRICT=1 makes this an error.")
    if not _in_kernel():
        print(text)
        return
    from IPython.display import HTML, display

    colour = "#b00020" if failed else "#1b5e20"
    # The id is the anchor the scoreboard's evidence column links to (tools/scoreboard.py).
    body = (f'<span id="claim-{html.escape(claim.key)}" style="color:{colour}">{mark}</span> '
            f'<b>{html.escape(head)}</b> '
            f'<code>{html.escape(claim.key)}</code>: {html.escape(claim.statement)}: '
            f'<b>{html.escape(outcome)}</b>' + (f" <small>({html.escape(evidence)})</small>" if evidence else ""))
    if failed:
        body = (f'<div style="border-left:4px solid {colour};padding:0.3em 0.6em;background:#fff3f3">'
                f'{body}<br><small>This run does not support this sentence of the page, which was'
                f' written from runs where it held; trained models and finite samples differ between'
                f' machines and seeds.</small></div>')
    display(HTML(body), metadata={"claim": asdict(claim)})


def check(key: str, holds: bool, statement: str, *, effect=None, interval=None, n=None,
          test: str | None = None, level: float | None = None) -> Claim:
    """Check a statement that the page's prose makes in fixed words, on this run.

    Glues ``key`` as ``"holds"`` or ``"does not hold in this run"``, shows the outcome,
    records it, and raises :class:`ClaimError` only under ``BOOK_STRICT=1`` when it fails.

    Parameters
    ----------
    key
        A unique, chapter-prefixed glue key, e.g. ``"pol_dup_recall_falls"``.
    holds
        Whether the statement holds in this run.
    statement
        The statement, as the page makes it.
    effect, interval, n, test
        The evidence: the measured effect, its (low, high) interval, how many seeds/trials,
        and the test or rule used.
    level
        The interval's confidence level; 0.95 when not given.

    Examples
    --------
    >>> c = check("doc_gain_positive", 0.04 > 0, "the gain is positive", effect=0.04)
    ✓ claim [doc_gain_positive] the gain is positive: holds (effect +0.04)
    >>> c.holds
    True
    """
    holds = bool(plain(holds))
    claim = _make(key, "check", statement, "holds" if holds else "does not hold in this run",
                  holds, effect, interval, n, test, level=level)
    glue(key, claim.verdict)
    _record(claim)
    _show(claim, failed=not holds)
    if not holds and runtime.strict():
        raise ClaimError(f"claim {key!r} does not hold in this run: {statement}"
                         + (f" ({_evidence(claim)})" if _evidence(claim) else ""))
    return claim


def _check_verdict(text: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"a verdict is a string, got {text!r}")
    word, _, reason = text.partition(": ")
    if word not in VERDICTS or (": " in text and not reason.strip()):
        raise ValueError(f"a verdict is one of {' / '.join(VERDICTS)}, optionally followed by"
                         f" ': <reason>'; got {text!r}")
    return text


def verdict(key: str, claim: str, verdict: str, *, effect=None, interval=None, n=None,
            test: str | None = None, paper: str | None = None,
            level: float | None = None) -> Claim:
    """Record a paper's claim with this run's verdict, glue the verdict under ``key``, and show it.

    Never raises for a negative verdict: the page glues the verdict, so what it prints
    cannot contradict the run.

    Parameters
    ----------
    key
        A unique, chapter-prefixed glue key.
    claim
        The paper's claim in words.
    verdict
        One of :data:`VERDICTS`, optionally with ``": <reason>"``; :func:`decide` makes one
        from an interval.
    effect, interval, n, test
        The evidence behind the verdict.
    level
        The interval's confidence level; 0.95 when not given.
    paper
        The paper's number, in words (``"+4.1 % precision"``).

    Raises
    ------
    ValueError
        If ``verdict`` is not in the book's vocabulary.
    """
    claim_ = _make(key, "verdict", claim, _check_verdict(verdict), None, effect, interval, n,
                   test, paper, level)
    glue(key, claim_.verdict)
    _record(claim_)
    _show(claim_, failed=False)
    return claim_


def direction(key: str, effect, interval=None, *, up: str, down: str,
              flat: str = "does not change beyond the noise", statement: str | None = None,
              n=None, test: str | None = None, level: float | None = None) -> str:
    """Glue under ``key`` the word the prose needs for this run's effect, and return it.

    ``up`` when the effect (or its whole interval) is above 0, ``down`` when below; with an
    interval that contains 0, ``flat``. Without an interval the sign decides.

    Examples
    --------
    >>> direction("doc_dir", -0.02, (-0.05, 0.01), up="rises", down="falls")
    ✓ direction [doc_dir] effect: does not change beyond the noise (effect -0.02; 95% interval [-0.05, +0.01])
    'does not change beyond the noise'
    """
    effect = float(plain(effect))
    iv = _interval(interval)
    lo, hi = iv if iv is not None else (effect, effect)
    word = up if lo > 0 else down if hi < 0 else flat
    claim = _make(key, "direction", statement or "effect", word, None, effect, iv, n, test,
                  level=level)
    glue(key, word)
    _record(claim)
    _show(claim, failed=False)
    return word


def mean_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, tuple[float, float], int]:
    """The mean of ``values`` with its Student-t confidence interval: ``(mean, (low, high), n)``.

    The values are independent repeats (seeds, generators, trials). With one value the
    interval is infinite: one run says nothing about the spread.

    Raises
    ------
    ValueError
        If ``values`` is empty or holds a non-finite number, or ``level`` is not in (0, 1).

    Examples
    --------
    >>> m, (lo, hi), n = mean_interval([1.0, 2.0, 3.0])
    >>> m, round(lo, 3), round(hi, 3), n
    (2.0, -0.484, 4.484, 3)
    """
    from scipy import stats

    x = np.asarray([plain(v) for v in values], dtype=float)
    if x.size == 0 or not np.isfinite(x).all():
        raise ValueError(f"mean_interval needs finite values, got {values!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    mean = float(x.mean())
    if x.size == 1:
        return mean, (-math.inf, math.inf), 1
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return mean, (mean - half, mean + half), int(x.size)


def decide(interval: tuple[float, float], *, sign: int = 1, paper_size: float | None = None) -> str:
    """The book's rule from an effect's confidence interval to a verdict.

    ``sign`` is the direction the paper claims (+1: the effect is positive); ``paper_size`` is
    the size of the paper's effect in the same units, when the two are comparable. With the
    interval expressed in the paper's direction:

    - entirely above 0: ``"reproduced"``; but ``"partly reproduced: a smaller effect than the
      paper's"`` when ``paper_size`` is given and the whole interval lies below it;
    - entirely below 0: ``"not reproduced: the opposite direction"``;
    - containing 0: ``"not reproduced: no effect of the paper's size"`` when ``paper_size`` is
      given and the whole interval lies below it (the paper's effect is excluded), else
      ``"inconclusive at this scale"`` (neither zero nor the paper's effect is excluded).

    An interval that only touches 0 does not exclude it.

    Examples
    --------
    >>> decide((0.01, 0.05)), decide((-0.01, 0.05)), decide((-0.05, -0.01))
    ('reproduced', 'inconclusive at this scale', 'not reproduced: the opposite direction')
    >>> decide((0.01, 0.03), paper_size=0.04), decide((0.01, 0.05), paper_size=0.04)
    ("partly reproduced: a smaller effect than the paper's", 'reproduced')
    >>> decide((-0.002, 0.004), paper_size=0.04)
    "not reproduced: no effect of the paper's size"
    """
    if sign not in (1, -1):
        raise ValueError(f"sign is +1 or -1, got {sign!r}")
    lo, hi = _interval(interval)
    lo, hi = (lo, hi) if sign == 1 else (-hi, -lo)
    below_paper = paper_size is not None and hi < abs(float(plain(paper_size)))
    if lo > 0:
        return "partly reproduced: a smaller effect than the paper's" if below_paper else "reproduced"
    if hi < 0:
        return "not reproduced: the opposite direction"
    return "not reproduced: no effect of the paper's size" if below_paper else "inconclusive at this scale"


def summary(keys: Sequence[str] | None = None):
    """Show the claims recorded so far (or those named in ``keys``) as one table."""
    rows = [c for c in RECORDED if keys is None or c.key in keys]
    if not _in_kernel():
        for c in rows:
            print(f"{c.key}: {c.statement}: {c.verdict}" + (f" ({_evidence(c)})" if _evidence(c) else ""))
        return
    from IPython.display import HTML, display

    esc = html.escape
    body = "".join(f"<tr><td>{esc(c.statement)} <code>{esc(c.key)}</code></td><td><b>{esc(c.verdict)}</b></td>"
                   f"<td>{esc(_evidence(c)) or '—'}</td></tr>" for c in rows)
    display(HTML("<table><thead><tr><th>claim</th><th>this run</th><th>evidence</th></tr></thead>"
                 f"<tbody>{body}</tbody></table>"))
