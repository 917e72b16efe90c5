"""tools/jvp_before_after.py: the "before" kernel loads from the git history, the quick run
writes a JSON with the rows the benchmark page reads, and a missing commit fails clearly."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import jvp_before_after as ba  # noqa: E402


def _have_before() -> bool:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{ba.BEFORE}^{{commit}}"],
                             capture_output=True)
    except FileNotFoundError:
        return False
    return out.returncode == 0


needs_history = pytest.mark.skipif(not _have_before(),
                                   reason=f"no git history with commit {ba.BEFORE} (shallow clone?)")


@needs_history
def test_quick_run_writes_the_table(tmp_path, one_torch_thread):
    out = tmp_path / "ba.json"
    assert ba.main(["--quick", "--threads", "1", "--arch", "MLP", "--arch", "1-D conv net",
                    "--out", str(out)]) == 0
    top = json.loads(out.read_text())
    assert top["before_commit"].startswith(ba.BEFORE) and len(top["after_commit"]) == 40
    data = top["by_threads"]["1"]
    assert data["repeats"] == 1 and len(data["many"][0]["after_runs"]) == 1
    assert [r["arch"] for r in data["one_shot"]] == ["MLP", "1-D conv net"]
    assert {r["generator"] for r in data["jacobians"]} == {"MLP decoder", "conv-T generator"}
    for r in data["one_shot"]:
        assert r["cost_before"] > 0 and r["cost_after"] > 0 and r["best_after"] > 0
    rows = ba.table_rows(data)
    assert len(rows) == 2 and len(rows[0]) == len(ba.TABLE_HEADER) == len(ba.TABLE_FMT)
    s = data["summary"]
    assert s["cost_worst_after"] >= s["cost_median_after"]


@needs_history
def test_before_is_the_old_kernel():
    old, old_sampling = ba.load_kernel()  # BEFORE, from the git history
    import helpers.jvp
    assert old.jvp is not helpers.jvp.jvp and old_sampling.linearize is old.linearize
    assert sys.modules["helpers.jvp"] is helpers.jvp  # restored after loading the old sampling


def test_unknown_commit_fails_clearly(tmp_path, capsys):
    out = tmp_path / "ba.json"
    assert ba.main(["--quick", "--before", "0" * 40, "--arch", "MLP", "--out", str(out)]) == 2
    assert "git" in capsys.readouterr().err and not out.exists()


def test_after_is_the_working_tree_loaded_like_before():
    new, new_sampling = ba.load_kernel(None, "after")
    import helpers.jvp
    assert new.__name__ == "helpers_after_jvp" and new.jvp is not helpers.jvp.jvp
    assert new_sampling.jvp is new.jvp  # the loaded sampling runs the loaded kernel
    assert Path(new.__file__) == ROOT / "helpers" / "jvp.py"
    assert sys.modules["helpers.jvp"] is helpers.jvp
