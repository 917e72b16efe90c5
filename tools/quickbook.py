"""Prepare a copy of the book whose pages are the .ipynb twins, for `make test`.

`make test` executes every notebook once, in quick mode, with nbmake (which only reads
.ipynb), writing the outputs into this copy (`--overwrite`); the copy is then built with
execution off, under `-W -n`. That proves the markup, cross-references, citations and glued
values build without warnings, without executing every notebook a second time.

Usage: ``python tools/quickbook.py DEST [--timed]``. With ``--timed`` it prints only the twins of
the notebooks that time code (one path per line), which `make sweep` runs one at a time.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from book_files import notebook_sources, times_code  # noqa: E402  (one definition of "a notebook in the toc")


def prepare(dest: Path) -> list[Path]:
    """Copy the book to ``dest``, swap each notebook's .md for its twin, turn execution off."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copytree(ROOT / "book", dest / "book")
    shutil.copy(ROOT / "_toc.yml", dest / "_toc.yml")
    (dest / "_vendor").symlink_to(ROOT / "_vendor", target_is_directory=True)
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    config["exclude_patterns"] = [p for p in config["exclude_patterns"] if not p.endswith(".ipynb")]
    (dest / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    twins = []
    for source in notebook_sources():
        rel = source.relative_to(ROOT)
        (dest / rel).unlink()               # the toc entry now resolves to the .ipynb twin
        twins.append(dest / rel.with_suffix(".ipynb"))
    return twins


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A copy of the book whose notebooks are the twins.")
    parser.add_argument("dest", type=Path)
    parser.add_argument("--timed", action="store_true",
                        help="print only the twins of the notebooks that time code")
    args = parser.parse_args()
    for twin in prepare(args.dest):
        if not args.timed:
            print(f"quick book: {twin}")
        elif times_code(ROOT / twin.relative_to(args.dest).with_suffix(".md")):
            print(twin)
