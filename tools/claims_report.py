"""Compare the claims that runs recorded (``BOOK_CLAIMS_DIR``) across seeds: what flipped?

Each run writes one JSON file per claim key into its own folder (``make sweep`` uses
``<root>/seed<N>/``). This prints one row per key: its kind, the outcome in each run, and
whether the outcome differs between runs. A failed ``check`` is marked ``FAILED``.

Usage::

    python tools/claims_report.py ROOT [--markdown] [--save FILE]

``--save`` writes the outcomes as JSON (run -> key -> outcome, with the commit and the mode
the records name), for ``tools/scoreboard.py`` to show what other seeds gave; the book keeps
one such file, ``book/seed_sweep.json``, from a full-mode sweep.

Exits 1 when a ``check`` failed in some run (the sweep's asserts passed, but the page states
something a run contradicted).
"""

from __future__ import annotations

import argparse
import json
import sys
import subprocess
from pathlib import Path


def load(root: Path) -> tuple[list[str], dict[str, dict[str, dict]]]:
    """Runs (folder names, sorted) and key -> run -> record."""
    runs = sorted(p.name for p in root.iterdir() if p.is_dir())
    table: dict[str, dict[str, dict]] = {}
    for run in runs:
        for f in sorted((root / run).glob("*.json")):
            record = json.loads(f.read_text())
            table.setdefault(record["key"], {})[run] = record
    return runs, table


def outcome(record: dict | None) -> str:
    if record is None:
        return "-"
    if record["kind"] == "check":
        return "holds" if record["holds"] else "FAILED"
    return record["verdict"]


def save(path: Path, runs: list[str], table: dict[str, dict[str, dict]]) -> None:
    """Each run's seed, mode and outcomes (key -> outcome) as JSON, with the commit measured."""
    here = Path(__file__).resolve().parent
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=here).stdout.strip()
    data: dict = {"commit": commit or None, "runs": {}}
    for run in runs:
        records = sorted((per_run[run] for per_run in table.values() if run in per_run), key=lambda r: r["key"])
        data["runs"][run] = {"seed": records[0].get("seed"), "mode": records[0].get("mode"),
                             "outcomes": {r["key"]: outcome(r) for r in records}}
    path.write_text(json.dumps(data, indent=1) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--save", type=Path, help="also write the outcomes as JSON (for the scoreboard)")
    args = parser.parse_args(argv)
    runs, table = load(args.root)
    if not table:
        print(f"no claim records under {args.root}")
        return 1
    failed = flipped = 0
    if args.markdown:
        print("| where | key | kind | " + " | ".join(runs) + " | flips |")
        print("|---|---|---|" + "---|" * len(runs) + "---|")
    for key in sorted(table, key=lambda k: (next(iter(table[k].values()))["where"] or "", k)):
        per_run = [outcome(table[key].get(run)) for run in runs]
        seen = {o for o in per_run if o != "-"}
        flips = len(seen) > 1
        flipped += flips
        failed += "FAILED" in seen
        first = next(iter(table[key].values()))
        if args.markdown:
            print(f"| {first['where']} | `{key}` | {first['kind']} | " + " | ".join(per_run)
                  + f" | {'yes' if flips else 'no'} |")
        else:
            print(f"{first['where']:>14} {key:<36} {first['kind']:<9} {'FLIPS' if flips else '     '} "
                  + " | ".join(per_run))
    if args.save:
        save(args.save, runs, table)
    print(f"\n{len(table)} claims over {len(runs)} runs ({', '.join(runs)}): {flipped} change outcome, "
          f"{failed} checks failed in some run")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
