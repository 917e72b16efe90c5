"""Write the book's scoreboard from the chapters' rows and the claims a build recorded.

Each chapter lists its scoreboard rows in ``book/<chapter>/scoreboard.yml``: the key of a
``helpers.claims.verdict`` its notebooks record, ``kind`` (``paper``: a paper's claim;
``target``: a speed or size target the book set itself), the paper's ``claim`` and what the
chapter measured (``ours``, MyST with glued numbers). The verdict and the evidence (effect,
interval, n, test, and a link to the cell that decided it) come from the records that the
build wrote to ``BOOK_CLAIMS_DIR``, so the scoreboard cannot say something its run did not.

Writes ``book/_generated/scoreboard.md``, which ``book/reproductions.md`` includes. Without
records (before the notebooks ran), every verdict reads "not run in this build". Under each
verdict it says what the same claim gave at other seeds, from ``book/seed_sweep.json`` (written
by ``make sweep SWEEP_MODE=full``, ``tools/claims_report.py --save``), when that file has it.

Usage::

    python tools/scoreboard.py [--claims DIR] [--strict] [--out FILE]

``--strict`` (``make book``) fails when a row's claim was not recorded, or a recorded verdict
has no row.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
OUT = BOOK / "_generated" / "scoreboard.md"
SWEEP = BOOK / "seed_sweep.json"
sys.path.insert(0, str(ROOT))
from helpers.claims import VERDICTS  # noqa: E402  (the vocabulary the counts are made of)

NOT_RUN = "not run in this build"
KINDS = ("paper", "target")
FIELDS = {"key", "kind", "claim", "ours"}


def chapters() -> list[str]:
    """Chapter folders in the order of _toc.yml."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    found = []
    for part in toc["parts"]:
        for chapter in part["chapters"]:
            folder = Path(chapter["file"]).parent
            if folder.parent.name == "book" and (ROOT / folder / "scoreboard.yml").exists():
                found.append(folder.name)
    return found


def chapter_title(chapter: str) -> str:
    """The chapter's short title: its index page's first heading, up to a colon."""
    for line in (BOOK / chapter / "index.md").read_text().splitlines():
        if line.startswith("# "):
            return line[2:].split(":")[0].strip()
    return chapter


def load_rows(chapter: str) -> list[dict]:
    path = BOOK / chapter / "scoreboard.yml"
    rows = yaml.safe_load(path.read_text()) or []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or set(row) != FIELDS:
            raise SystemExit(f"{path}: row {i + 1} needs exactly the fields {sorted(FIELDS)}, got {row!r}")
        if row["kind"] not in KINDS:
            raise SystemExit(f"{path}: row {i + 1} ({row['key']}): kind is one of {KINDS}, got {row['kind']!r}")
        row["chapter"] = chapter
    return rows


def load_records(folder: Path | None) -> dict[str, dict]:
    if folder is None or not folder.is_dir():
        return {}
    records = (json.loads(f.read_text()) for f in sorted(folder.glob("*.json")))
    return {r["key"]: r for r in records}


def page_of(chapter: str, key: str) -> str | None:
    """The page (relative to book/, without suffix) whose source decides ``key``."""
    call = re.compile(rf"""claims\.verdict\(\s*["']{re.escape(key)}["']""")
    quoted = re.compile(rf"""["']{re.escape(key)}["']""")
    sources = sorted((BOOK / chapter).glob("*.md"))
    for pattern in (call, quoted):  # the page that calls claims.verdict, else one that names the key
        for source in sources:
            if pattern.search(source.read_text()):
                return f"{chapter}/{source.stem}"
    return None


def _num(x: float) -> str:
    return f"{x:+.3g}".replace("inf", "∞")


def evidence(record: dict | None, page: str | None) -> str:
    if record is None:
        return ""
    parts = []
    if record.get("effect") is not None:
        parts.append(f"effect {_num(record['effect'])}")
    if record.get("interval"):
        lo, hi = record["interval"]
        level = record.get("level") or 0.95
        parts.append(f"{100 * level:.3g} % interval [{_num(lo)}, {_num(hi)}]")
    if record.get("n"):
        parts.append(f"n = {record['n']}")
    if record.get("test"):
        parts.append(record["test"])
    if record.get("paper"):
        parts.append(f"paper: {record['paper']}")
    text = "; ".join(parts).replace("|", "\\|")
    if page:
        text += f' (<a href="{page}.html#claim-{record["key"]}">cell</a>)'
    return text


def verdict_word(verdict: str) -> str:
    return verdict.split(": ")[0]


def load_sweep(path: Path = SWEEP) -> dict:
    """The seed sweep's runs (seed, mode, key -> outcome), or {} when there is none."""
    return json.loads(path.read_text()).get("runs", {}) if path.exists() else {}


def other_seeds(key: str, record: dict | None, sweep: dict) -> str:
    """What runs at other seeds gave for ``key``: 'same at seeds 1, 2', or each seed's word."""
    if record is None:
        return ""
    mine = verdict_word(record["verdict"])
    seen = sorted((run["seed"], verdict_word(run["outcomes"][key])) for run in sweep.values()
                  if key in run["outcomes"] and run["seed"] != record.get("seed"))
    if not seen:
        return ""
    if all(word == mine for _, word in seen):
        return f"same at seed{'s' * (len(seen) > 1)} {', '.join(str(s) for s, _ in seen)}"
    return "; ".join(f"seed {s}: {word}" for s, word in seen)


def seeds_note(sweep: dict, commit: str | None) -> str:
    """One sentence on where the other seeds' verdicts come from."""
    if not sweep:
        return ""
    seeds = ", ".join(str(r["seed"]) for r in sorted(sweep.values(), key=lambda r: r["seed"]))
    modes = " and ".join(sorted({r["mode"] for r in sweep.values()}))
    at = f" at commit `{commit}`" if commit else ""
    return (f"Under each verdict, in italics: the verdict the same pages gave with `BOOK_SEED` = {seeds}"
            f" ({modes} mode, `make sweep`{at}); a verdict that changes with the seed is one draw, "
            "not a settled result.")


def table(rows: list[dict], records: dict[str, dict], sweep: dict) -> list[str]:
    # At the page's width, so the evidence column wraps instead of scrolling out of sight.
    lines = ["```{table}", ":width: 100%", "",
             "| the paper's claim | ours | verdict | evidence |", "|---|---|---|---|"]
    for row in rows:
        record = records.get(row["key"])
        verdict = record["verdict"] if record else NOT_RUN
        other = other_seeds(row["key"], record, sweep)
        verdict += f"<br><em>{other}</em>" if other else ""
        cells = [row["claim"], row["ours"], verdict, evidence(record, page_of(row["chapter"], row["key"]))]
        lines.append("| " + " | ".join(str(c).strip().replace("\n", " ") for c in cells) + " |")
    return lines + ["```"]


def tables(rows: list[dict], records: dict[str, dict], sweep: dict, headings: bool) -> list[str]:
    """One table per chapter, in the book's order, under the chapter's linked title: five
    columns with the chapter repeated on every row did not fit the page's width."""
    out: list[str] = []
    for chapter in dict.fromkeys(r["chapter"] for r in rows):
        mine = [r for r in rows if r["chapter"] == chapter]
        link = f"{{doc}}`{mine[0]['chapter_title']} <{chapter}/index>`"
        # headings only once per chapter on the page: a second would repeat the anchor
        title = f"### {link}" if headings else f"**{link}**"
        out += [title, "", *table(mine, records, sweep), ""]
    return out


def counts(rows: list[dict], records: dict[str, dict], noun: str = "claims") -> str:
    if not rows:
        return f"No {noun} yet."
    words = [verdict_word(records[r["key"]]["verdict"]) if r["key"] in records else NOT_RUN for r in rows]
    parts = [f"{words.count(w)} {w}" for w in (*VERDICTS, NOT_RUN) if words.count(w)]
    return f"**{len(rows)} {noun}**: " + ", ".join(parts) + "."


def render(records: dict[str, dict], sweep_file: Path = SWEEP) -> tuple[str, list[str]]:
    """The scoreboard's Markdown, and the problems found (unrecorded rows, rowless verdicts)."""
    sweep = load_sweep(sweep_file)
    commit = json.loads(sweep_file.read_text()).get("commit") if sweep else None
    rows = []
    for chapter in chapters():
        for row in load_rows(chapter):
            row["chapter_title"] = chapter_title(chapter)
            rows.append(row)
    problems = [f"row {r['key']} ({r['chapter']}): no claim recorded" for r in rows if r["key"] not in records]
    keys = {r["key"] for r in rows}
    problems += [f"verdict {k} ({r['where']}) has no row in book/{r['where']}/scoreboard.yml"
                 for k, r in records.items() if r["kind"] == "verdict" and k not in keys]
    paper = [r for r in rows if r["kind"] == "paper"]
    target = [r for r in rows if r["kind"] == "target"]
    out = ["<!-- Generated by tools/scoreboard.py from book/*/scoreboard.yml and the build's claim records. -->",
           "", seeds_note(sweep, commit), "",
           "## The papers' claims", "", counts(paper, records), "", *tables(paper, records, sweep, headings=True),
           "## The book's own targets", "",
           "Speed and size targets that this book set itself, not claims of a paper.", "",
           counts(target, records, noun="targets"), "", *tables(target, records, sweep, headings=False)]
    return "\n".join(out), problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=Path, help="the folder of claim records (BOOK_CLAIMS_DIR)")
    parser.add_argument("--strict", action="store_true", help="fail on rows without a record and verdicts without a row")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    text, problems = render(load_records(args.claims))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    for p in problems:
        print(f"scoreboard: {p}", file=sys.stderr)
    return 1 if args.strict and problems else 0


if __name__ == "__main__":
    sys.exit(main())
