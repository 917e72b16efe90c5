"""helpers.claims: checks glue, show and record their evidence, and raise only under BOOK_STRICT=1.

Oracles: the Student-t interval against scipy.stats.t.interval; the decision rule against
its definition on hand-made intervals, including the boundaries.
"""

import json

import numpy as np
import pytest
from scipy import stats

from helpers import claims, runtime
from helpers.glue import GLUED


@pytest.fixture
def environ(monkeypatch, tmp_path):
    monkeypatch.delenv("BOOK_STRICT", raising=False)
    monkeypatch.setenv("BOOK_CLAIMS_DIR", str(tmp_path))
    runtime.setup(seed=4, verbose=False)
    return monkeypatch


def test_check_glues_shows_and_records(environ, tmp_path, capsys):
    c = claims.check("t_gain", True, "the gain is positive", effect=0.04, interval=(0.01, 0.07), n=5,
                     test="t interval")
    assert c.holds and c.verdict == "holds" and GLUED["t_gain"] == "holds"
    assert "the gain is positive" in capsys.readouterr().out
    record = json.loads((tmp_path / "t_gain.json").read_text())
    assert record["holds"] and record["interval"] == [0.01, 0.07] and record["n"] == 5
    assert record["seed"] == 4 and record["kind"] == "check"
    assert claims.RECORDED[-1] == c


def test_a_failed_check_is_a_visible_note_without_strict(environ, capsys):
    c = claims.check("t_fail", np.bool_(False), "two is negative", effect=2.0)
    assert not c.holds and GLUED["t_fail"] == "does not hold in this run"
    assert "does not support" in capsys.readouterr().out


def test_a_failed_check_raises_under_strict(environ):
    environ.setenv("BOOK_STRICT", "1")
    with pytest.raises(claims.ClaimError, match="t_strict.*two is negative.*effect \\+2"):
        claims.check("t_strict", False, "two is negative", effect=2.0)
    claims.check("t_strict_ok", True, "one is positive")  # a check that holds never raises


def test_a_negative_verdict_never_raises(environ):
    environ.setenv("BOOK_STRICT", "1")
    c = claims.verdict("t_v", "the paper's gain", "not reproduced: the opposite direction", paper="+4 %")
    assert GLUED["t_v"] == "not reproduced: the opposite direction" and c.paper == "+4 %"


@pytest.mark.parametrize("bad", ["partly", "n/a", "not reproduced (no change)", "reproduced: ", "Reproduced"])
def test_verdicts_outside_the_vocabulary_are_refused(environ, bad):
    with pytest.raises(ValueError, match="one of reproduced"):
        claims.verdict("t_bad", "a claim", bad)


@pytest.mark.parametrize("key, statement, match", [
    ("has space", "s", "glue key"), ("t_ok", "  ", "statement"), (3, "s", "glue key")])
def test_bad_keys_and_statements_are_refused(environ, key, statement, match):
    with pytest.raises(ValueError, match=match):
        claims.check(key, True, statement)


def test_an_interval_shows_and_records_its_level(environ, tmp_path, capsys):
    level = 1 - 0.05 / 6  # a Bonferroni-widened interval
    claims.verdict("t_lvl", "a claim", "reproduced", effect=0.3, interval=(0.1, 0.5), n=8,
                   level=level)
    assert "99.2% interval [+0.1, +0.5]" in capsys.readouterr().out
    assert json.loads((tmp_path / "t_lvl.json").read_text())["level"] == pytest.approx(level)
    claims.check("t_lvl95", True, "s", interval=(0.1, 0.5))
    assert "95% interval" in capsys.readouterr().out
    assert json.loads((tmp_path / "t_lvl95.json").read_text())["level"] == 0.95
    assert json.loads((tmp_path / "t_lvl.json").read_text())["interval"] == [0.1, 0.5]
    claims.check("t_nolvl", True, "s", effect=0.2)  # no interval, no level
    assert json.loads((tmp_path / "t_nolvl.json").read_text())["level"] is None


def test_bad_evidence_is_refused(environ):
    with pytest.raises(ValueError, match="confidence level"):
        claims.check("t_lv", True, "s", interval=(0.0, 1.0), level=95)
    with pytest.raises(ValueError, match="low <= high"):
        claims.check("t_iv", True, "s", interval=(1.0, 0.0))
    with pytest.raises(ValueError, match="positive count"):
        claims.check("t_n", True, "s", n=0)


@pytest.mark.parametrize("interval, word", [((0.01, 0.2), "rises"), ((-0.2, -0.01), "falls"),
                                            ((-0.01, 0.2), "stays"), ((0.0, 0.2), "stays")])
def test_direction_follows_the_interval(environ, interval, word):
    got = claims.direction("t_dir", 0.05, interval, up="rises", down="falls", flat="stays")
    assert got == word and GLUED["t_dir"] == word


def test_direction_without_interval_follows_the_sign(environ):
    assert claims.direction("t_sign", -0.3, up="up", down="down") == "down"


@pytest.mark.parametrize("values", [[1.0, 2.0, 4.0], list(np.random.default_rng(0).normal(size=9))])
def test_mean_interval_matches_scipy(values):
    mean, (lo, hi), n = claims.mean_interval(values)
    ref = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert n == len(values) and mean == pytest.approx(np.mean(values))
    assert (lo, hi) == pytest.approx(ref, rel=1e-12)


def test_mean_interval_of_one_value_is_unbounded_and_bad_input_refused():
    assert claims.mean_interval([0.3])[1] == (-np.inf, np.inf)
    with pytest.raises(ValueError, match="finite"):
        claims.mean_interval([])
    with pytest.raises(ValueError, match="finite"):
        claims.mean_interval([1.0, np.nan])


@pytest.mark.parametrize("interval, sign, size, verdict", [
    ((0.01, 0.05), 1, None, "reproduced"),
    ((0.0, 0.05), 1, None, "inconclusive at this scale"),          # touching 0 is not excluding it
    ((-0.05, -0.01), -1, None, "reproduced"),                       # the paper claims a decrease
    ((0.01, 0.05), -1, None, "not reproduced: the opposite direction"),
    ((0.001, 0.03), 1, 0.04, "partly reproduced: a smaller effect than the paper's"),
    ((0.001, 0.04), 1, 0.04, "reproduced"),                         # reaching the paper's size
    ((0.01, 0.05), -1, -0.04, "not reproduced: the opposite direction"),
    ((-0.05, -0.01), -1, 0.04, "reproduced"),                       # the size is taken unsigned
    ((-0.002, 0.004), 1, 0.04, "not reproduced: no effect of the paper's size"),
    ((-0.002, 0.05), 1, 0.04, "inconclusive at this scale"),
])
def test_decide_is_the_stated_rule(interval, sign, size, verdict):
    assert claims.decide(interval, sign=sign, paper_size=size) == verdict
    word = verdict.partition(": ")[0]
    assert word in claims.VERDICTS


def test_summary_lists_the_recorded_claims(environ, capsys):
    claims.check("t_sum", True, "a listed statement")
    claims.summary(["t_sum"])
    out = capsys.readouterr().out
    assert "t_sum: a listed statement: holds" in out
