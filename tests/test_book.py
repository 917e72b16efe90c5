"""The book's structure: every toc entry has a file, and every notebook's .ipynb twin matches its source."""

from __future__ import annotations

import re

import jupytext
import nbformat
import pytest

from book_files import ROOT, notebook_sources, resolve, toc_entries

NOTEBOOKS = notebook_sources()
IDS = [str(p.relative_to(ROOT)) for p in NOTEBOOKS]


def test_every_toc_entry_has_a_file():
    for entry in toc_entries():
        resolve(entry)  # raises FileNotFoundError naming the entry


def test_resolve_names_a_missing_entry():
    with pytest.raises(FileNotFoundError, match="book/no_such_page"):
        resolve("book/no_such_page")


def test_the_book_has_notebooks():
    assert NOTEBOOKS, "no notebook found in _toc.yml"


def _cells(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


@pytest.mark.parametrize("source", NOTEBOOKS, ids=IDS)
def test_ipynb_twin_matches_its_source(source):
    twin = source.with_suffix(".ipynb")
    assert twin.is_file(), f"{twin.relative_to(ROOT)} is missing: run `make twins`"
    committed = nbformat.read(twin, as_version=4)
    assert _cells(committed) == _cells(jupytext.read(source)), (
        f"{twin.relative_to(ROOT)} has drifted from {source.relative_to(ROOT)}: run `make twins`")
    outputs = [c for c in committed.cells if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not outputs, f"{twin.relative_to(ROOT)} holds outputs: commit it outputs-free (`make twins`)"


@pytest.mark.parametrize("source", NOTEBOOKS, ids=IDS)
def test_notebook_starts_with_runtime_setup(source):
    code = [c.source for c in jupytext.read(source).cells if c.cell_type == "code"]
    first_real = next(c for c in code if "import helpers" not in c or "setup(" in c)
    assert re.search(r"\bsetup\(", first_real), f"{source.name}: the first code cell must call helpers.runtime.setup"
