"""The book's files as `_toc.yml` names them: shared by the tests and tools/quickbook.py."""

from __future__ import annotations

from pathlib import Path

import jupytext
import yaml

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = (".md", ".ipynb")


def toc_entries(node=None) -> list[str]:
    """Every ``root``/``file`` entry of ``_toc.yml``, in book order."""
    if node is None:
        node = yaml.safe_load((ROOT / "_toc.yml").read_text())
    out = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("root", "file") and isinstance(value, str):
                out.append(value)
            else:
                out += toc_entries(value)
    elif isinstance(node, list):
        for item in node:
            out += toc_entries(item)
    return out


def resolve(entry: str) -> Path:
    """The source file of a toc entry (``.md`` first), or FileNotFoundError naming the entry."""
    for suffix in SUFFIXES:
        candidate = ROOT / (entry + suffix)
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"_toc.yml entry {entry!r} has no source file ({' or '.join(SUFFIXES)})")


def is_notebook(path: Path) -> bool:
    """A MyST-markdown page is a notebook when its front matter names a kernel."""
    return path.suffix == ".ipynb" or "kernelspec" in jupytext.read(path).metadata


def notebook_sources() -> list[Path]:
    """The jupytext ``.md`` sources of every notebook in the toc."""
    return [p for p in map(resolve, toc_entries()) if p.suffix == ".md" and is_notebook(p)]


def times_code(path: Path) -> bool:
    """Whether a notebook source times code with :mod:`helpers.timing`.

    Its claims are time ratios, so `make sweep` runs it alone: two notebooks at a time on a
    2-core machine would measure each other's load as much as the code.
    """
    return "helpers.timing" in path.read_text()
