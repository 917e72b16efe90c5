"""helpers._progress: bars in a live kernel, none when TQDM_DISABLE is set (the book build)."""

import pytest

from helpers._progress import bar, enabled


@pytest.mark.parametrize("value, on", [("", True), ("0", True), ("false", True), ("1", False), ("True", False)])
def test_tqdm_disable_turns_bars_off(monkeypatch, value, on):
    monkeypatch.setenv("TQDM_DISABLE", value)
    assert enabled() is on
    assert bar(range(3)).disable is (not on)
    assert list(bar(range(3))) == [0, 1, 2]


def test_progress_false_wins(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert enabled(False) is False and bar(range(2), progress=False).disable
