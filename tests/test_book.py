"""The book's structure: every toc entry has a file, and every notebook's .ipynb twin matches its source."""

from __future__ import annotations

import re

import jupytext
import nbformat
import pytest
import yaml

from book_files import ROOT, is_notebook, notebook_sources, resolve, times_code, toc_entries

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
    first_real = next(c for c in code if "%pip install" not in c)  # after the hidden install cell
    assert re.search(r"\bsetup\(", first_real), f"{source.name}: the first code cell must call helpers.runtime.setup"


def _code(source):
    return [c.source for c in jupytext.read(source).cells if c.cell_type == "code"]


@pytest.mark.parametrize("source", NOTEBOOKS, ids=IDS)
def test_notebook_runs_without_myst_nb(source):
    """Colab and Binder have no myst-nb: glue goes through helpers.glue."""
    offending = [line for cell in _code(source) for line in cell.splitlines() if "myst_nb" in line]
    assert not offending, f"{source.name} imports myst_nb (use `from helpers.glue import glue`): {offending}"


# A literal seed pins a random choice to one draw whatever BOOK_SEED says. Seeds come from
# env.rng / env.torch_gen / env.seed_for; a paper's own instance uses a named UPPER_CASE constant.
LITERAL_SEED = re.compile(
    r"(manual_seed\(\s*\d|default_rng\(\s*[\d\[(]|random_state\s*=\s*\d|\bseed\s*=\s*\d"
    r"|np\.random\.seed\(\s*\d|setup\(\s*seed|\brandom\.seed\(\s*\d|RandomState\(\s*\d)")


@pytest.mark.parametrize("source", NOTEBOOKS, ids=IDS)
def test_every_seed_derives_from_the_base_seed(source):
    found = [line.strip() for cell in _code(source) for line in cell.splitlines()
             if LITERAL_SEED.search(line.split("#")[0]) and not line.lstrip().startswith(("#", ">>>"))]
    assert not found, (f"{source.name}: literal seeds ignore BOOK_SEED; derive them with env.rng/"
                       f"env.torch_gen/env.seed_for, or name a paper's instance as a constant: {found}")


def test_repository_url_is_the_same_everywhere():
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    import repo_url

    assert not repo_url.mismatches(), "links disagree with _config.yml; run `make repo-url`"
    assert not repo_url.install_cells_missing()


def test_readme_points_only_inside_the_repository():
    readme = (ROOT / "README.md").read_text()
    assert "../" not in readme, "README.md names a file outside the repository"


# Import name -> package name where they differ (conda-forge and PyPI agree on these).
PACKAGE = {"sklearn": "scikit-learn", "torch": "pytorch-cpu", "IPython": "ipython"}
# myst_nb: helpers.glue uses it when present; google.colab: only on Colab; torchvision and diffusers:
# optional baselines that a page or test skips, saying so, when they are absent.
OPTIONAL = {"myst_nb", "google", "torchvision", "diffusers"}


def _imports(texts) -> set[str]:
    """Top-level modules imported by these Python sources (IPython magics skipped)."""
    import ast
    import sys

    names = set()
    for text in texts:
        code = re.sub(r"^(\s*)[%!].*$", r"\1pass", text, flags=re.M)
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"helpers"} - OPTIONAL


def test_environment_yml_lists_every_import_of_the_notebooks_and_helpers():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next((d["pip"] for d in env["dependencies"] if isinstance(d, dict)), [])
    listed = {re.split(r"[=<>\s]", d)[0] for d in [*env["dependencies"], *pip] if isinstance(d, str)}
    texts = [c for s in NOTEBOOKS for c in _code(s)] + [p.read_text() for p in (ROOT / "helpers").glob("*.py")]
    missing = {PACKAGE.get(n, n) for n in _imports(texts)} - listed
    assert not missing, f"environment.yml (Binder) lacks {sorted(missing)}"


def test_helpers_declares_what_it_imports_except_torch():
    import tomllib

    declared = {re.split(r"[=<>\s]", d)[0].lower()
                for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    texts = [p.read_text() for p in (ROOT / "helpers").glob("*.py")]
    missing = {PACKAGE.get(n, n).lower() for n in _imports(texts)} - declared - {"pytorch-cpu"}
    assert not missing, f"pyproject.toml's dependencies lack {sorted(missing)} (the Colab install cell relies on them)"


def test_api_page_documents_every_public_helpers_module():
    api = (ROOT / "book" / "api.md").read_text()
    modules = sorted(p.stem for p in (ROOT / "helpers").glob("*.py") if not p.stem.startswith("_"))
    missing = [m for m in modules if f".. automodule:: helpers.{m}\n" not in api]
    assert not missing, f"book/api.md has no automodule block for {missing}"


def _public_helpers() -> set[str]:
    """Names of the public functions and classes of every helpers module, and the modules."""
    import importlib
    import inspect
    import pkgutil

    import helpers

    names = set()
    for info in pkgutil.iter_modules(helpers.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"helpers.{info.name}")
        names.add(f"helpers.{info.name}")
        for name in getattr(module, "__all__", None) or dir(module):
            obj = getattr(module, name, None)
            if not name.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj)):
                names.add(name)
    return names - {"generator"}  # zoo.generator: in prose "generator" is the network, not the factory


PROSE_DIRECTIVES = ("exercise", "solution", "prf:", "note", "warning", "admonition", "dropdown", "tip", "important")


def _prose(source) -> str:
    """A page's Markdown without its code: code cells and fenced code blocks removed.

    Fences are followed line by line: a directive that holds prose (an exercise, a proof, a
    note) keeps its content; any other fenced block (code, eval-rst, a table of contents) is
    dropped up to its own closing fence.
    """
    if is_notebook(source):
        text = "\n".join(c.source for c in jupytext.read(source).cells if c.cell_type == "markdown")
    else:
        text = source.read_text()
    kept, stack = [], []  # stack of (fence, keeps its content)
    for line in text.splitlines():
        m = re.match(r"^\s*(`{3,}|~{3,})(.*)$", line)
        if m:
            fence, info = m.group(1), m.group(2).strip()
            if stack and fence[0] == stack[-1][0][0] and len(fence) >= len(stack[-1][0]) and not info:
                stack.pop()
                continue
            if not stack or stack[-1][1]:
                keeps = info.startswith("{") and info[1:].startswith(PROSE_DIRECTIVES)
                stack.append((fence, keeps))
                continue
        if all(keeps for _, keeps in stack):
            kept.append(line)
    return "\n".join(kept)


def _helper_name(text: str) -> str:
    """`helpers.mod.name` -> name; `helpers.mod` and a bare name stay; other dotted names (torch.func.jvp) stay whole."""
    return text.split(".")[-1] if text.startswith("helpers.") and text.count(".") > 1 else text


ROLE = re.compile(r"\{py:(?:func|class|meth|mod|attr|data|exc)\}`~?(?:[^`<]*<)?([\w.]+)>?`")
PLAIN = re.compile(r"(?<![\w`}])`([\w.]+)(?:\([^`]*\))?`")
PAGES = [resolve(e) for e in toc_entries() if resolve(e).suffix == ".md"]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_first_mention_of_a_helper_links_to_its_api_entry(page):
    """d2l shows its library being built; this book keeps it in a package, one hop from the prose."""
    if page.name == "api.md":
        return
    public = _public_helpers()
    prose = _prose(page)
    mentions = sorted([(m.start(), _helper_name(m.group(1)), "link") for m in ROLE.finditer(prose)] +
                      [(m.start(), _helper_name(m.group(1)), "plain") for m in PLAIN.finditer(prose)])
    seen, unlinked = set(), []
    for _, name, kind in mentions:
        if name in public and name not in seen:
            seen.add(name)
            if kind == "plain":
                unlinked.append(name)
    assert not unlinked, (f"{page.relative_to(ROOT)}: the first mention of {unlinked} should link to the API page, "
                          "e.g. {py:func}`~helpers.sampling.magnet_weights` or {py:mod}`helpers.jvp`")


# Sphinx labels and glue keys are book-wide: each chapter's carry its prefix. A new chapter adds
# its folder here.
CHAPTER_PREFIX = {"fast_jvp": "jvp", "magnet": "magnet", "polarity": "pol", "extrapolation": "xp",
                  "radius_kmeans": "rk", "neuroview": "nv", "augmentation_moments": "aug",
                  "st_kmeans": "stk", "rcdm": "rcdm", "neuroview_rnn": "nvr"}
CHAPTERS = sorted({p.parent.name for p in NOTEBOOKS})


def _chapter_pages(chapter):
    return [p for p in PAGES if p.parent.name == chapter]


def test_every_chapter_has_a_prefix():
    missing = [c for c in CHAPTERS if c not in CHAPTER_PREFIX]
    assert not missing, f"add the label/glue prefix of {missing} to CHAPTER_PREFIX in tests/test_book.py"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_labels_carry_the_chapter_prefix(chapter):
    prefix = CHAPTER_PREFIX.get(chapter, "?")
    bad = []
    for page in _chapter_pages(chapter):
        text = page.read_text()
        labels = re.findall(r"^:label:\s*(\S+)", text, re.M) + re.findall(r"^\$\$\s*\((\S+?)\)\s*$", text, re.M)
        bad += [f"{page.name}: {lab}" for lab in labels
                if not re.match(rf"^(eq:|[a-z]+-){prefix}-", lab)]
    assert not bad, f"labels of {chapter} must read eq:{prefix}-..., prop-{prefix}-..., ex-{prefix}-...: {bad}"


GLUE_CALL = re.compile(r"\b(?:glue|claims\.(?:check|verdict|direction))\(\s*f?[\"']([^\"'{]*)")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_glue_keys_carry_the_chapter_prefix(chapter):
    prefix = CHAPTER_PREFIX.get(chapter, "?") + "_"
    bad = sorted({f"{p.name}: {m.group(1)}" for p in _chapter_pages(chapter) if is_notebook(p)
                  for cell in _code(p) for m in GLUE_CALL.finditer(cell)
                  if not m.group(1).startswith(prefix)})
    assert not bad, f"glue keys of {chapter} must start with {prefix!r}: {bad}"


@pytest.mark.parametrize("source", NOTEBOOKS, ids=IDS)
def test_every_notebook_ends_with_a_claims_check_and_exercises(source):
    headings = re.findall(r"^## (.+?)\s*$", "\n".join(
        c.source for c in jupytext.read(source).cells if c.cell_type == "markdown"), re.M)
    assert "Claims check" in headings and "Exercises" in headings, (
        f"{source.name}: every notebook has '## Claims check' and '## Exercises' sections; found {headings}")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_chapter_has_an_explorer(chapter):
    code = "\n".join(c for p in _chapter_pages(chapter) if is_notebook(p) for c in _code(p))
    assert re.search(r"\bframe_(slider|grid)\(", code), f"{chapter} has no explorer (helpers.viz.frame_slider/frame_grid)"


def _scoreboard_rows(chapter):
    path = ROOT / "book" / chapter / "scoreboard.yml"
    return yaml.safe_load(path.read_text()) or [] if path.exists() else []


VERDICT_CALL = re.compile(r"\bclaims\.verdict\(\s*[\"'](\w+)[\"']")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_scoreboard_rows_are_the_chapters_verdicts(chapter):
    """Each scoreboard row is decided by a claims.verdict of the chapter, and each verdict has a row."""
    rows = _scoreboard_rows(chapter)
    assert rows, f"book/{chapter}/scoreboard.yml lists the chapter's claims (tools/scoreboard.py)"
    code = "\n".join(c for p in _chapter_pages(chapter) if is_notebook(p) for c in _code(p))
    row_keys = [r["key"] for r in rows]
    called = set(VERDICT_CALL.findall(code))
    quoted = set(re.findall(r"[\"'](\w+)[\"']", code))
    assert len(row_keys) == len(set(row_keys)), f"{chapter}: a key appears in two rows"
    assert not set(row_keys) - quoted, f"{chapter}: rows whose key no notebook records: {sorted(set(row_keys) - quoted)}"
    assert not called - set(row_keys), f"{chapter}: claims.verdict keys without a row: {sorted(called - set(row_keys))}"


def test_scoreboard_renders_from_records(tmp_path):
    """Without records every row reads 'not run'; with a record its verdict, evidence and cell link appear."""
    import json
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    import scoreboard

    text, problems = scoreboard.render({})
    assert "not run in this build" in text and problems
    rows = [r for c in CHAPTERS for r in _scoreboard_rows(c)]
    key = rows[0]["key"]
    record = {"key": key, "kind": "verdict", "verdict": "reproduced", "effect": 0.5, "interval": [0.1, 0.9],
              "n": 8, "test": "t-test", "paper": None, "where": "x"}
    (tmp_path / f"{key}.json").write_text(json.dumps(record))
    text, _ = scoreboard.render(scoreboard.load_records(tmp_path), sweep_file=tmp_path / "no_sweep.json")
    line = next(line for line in text.splitlines() if rows[0]["claim"].strip() in line)
    assert "| reproduced |" in line and "95 % interval [+0.1, +0.9]" in line and "n = 8" in line
    assert f"#claim-{key}" in line


def test_scoreboard_shows_what_other_seeds_gave(tmp_path):
    """claims_report --save writes the sweep; the scoreboard prints 'same at seeds 1, 2' under a
    verdict the other seeds share, and each seed's word under one they do not."""
    import json
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    import claims_report
    import scoreboard

    rows = [r for c in CHAPTERS for r in _scoreboard_rows(c)]
    stable, flipping = rows[0], rows[1]

    def record(key, verdict, seed):
        return {"key": key, "kind": "verdict", "verdict": verdict, "effect": 1.0, "interval": None,
                "n": 3, "test": "t", "paper": None, "where": "x", "seed": seed, "mode": "full"}

    sweep_runs = tmp_path / "sweep"
    for seed, word in ((1, "reproduced"), (2, "inconclusive at this scale: too few runs")):
        run = sweep_runs / f"seed{seed}"
        run.mkdir(parents=True)
        (run / "a.json").write_text(json.dumps(record(stable["key"], "reproduced: yes", seed)))
        (run / "b.json").write_text(json.dumps(record(flipping["key"], word, seed)))
    assert claims_report.main([str(sweep_runs), "--save", str(tmp_path / "seed_sweep.json")]) == 0
    built = tmp_path / "build"
    built.mkdir()
    for r in (record(stable["key"], "reproduced", 0), record(flipping["key"], "reproduced", 0)):
        (built / f"{r['key']}.json").write_text(json.dumps(r))
    text, _ = scoreboard.render(scoreboard.load_records(built), sweep_file=tmp_path / "seed_sweep.json")
    line = {k: next(x for x in text.splitlines() if row["claim"].strip() in x)
            for k, row in (("stable", stable), ("flipping", flipping))}
    assert "reproduced<br><em>same at seeds 1, 2</em>" in line["stable"]
    assert "<em>seed 1: reproduced; seed 2: inconclusive at this scale</em>" in line["flipping"]
    assert "`BOOK_SEED` = 1, 2 (full mode" in text
    # without a sweep file, nothing is added
    text, _ = scoreboard.render(scoreboard.load_records(built), sweep_file=tmp_path / "none.json")
    assert "<em>" not in text and "BOOK_SEED" not in text


def test_every_chapter_has_a_section_on_the_unchecked_page():
    page = (ROOT / "book" / "unchecked.md").read_text()
    missing = [c for c in CHAPTERS if f"{{include}} {c}/_unchecked.md" not in page
               or not (ROOT / "book" / c / "_unchecked.md").exists()]
    assert not missing, f"book/unchecked.md must include book/<chapter>/_unchecked.md for {missing}"


def test_every_exercise_has_its_index_entry():
    """The line above each exercise says its kind, difficulty and minutes (tools/exercise_index.py)."""
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    import exercise_index

    exercises, problems = exercise_index.collect()
    assert exercises and not problems, "\n".join(problems)


# What a reader cannot check: editors' markers, our private notes, solutions that were never run.
EDITORS_MARKS = re.compile(r"\[verify|\bour notes\b|the book's notes|\bthe prototype\b|have not run"
                           r"|when we tried|what to expect, then", re.I)


@pytest.mark.parametrize("page", sorted(ROOT.glob("book/**/*.md")), ids=lambda p: str(p.relative_to(ROOT / "book")))
def test_no_editors_marks_on_a_page(page):
    bad = [f"{page.name}:{i}: {line.strip()[:90]}" for i, line in enumerate(page.read_text().splitlines(), 1)
           if EDITORS_MARKS.search(line)]
    assert not bad, "resolve these, or say them in reader's words on book/unchecked.md:\n" + "\n".join(bad)


CODE_WIDTH = 88


@pytest.mark.parametrize("source", NOTEBOOKS, ids=IDS)
def test_code_lines_fit_the_page(source):
    """The rendered code column shows about 88 characters; longer lines scroll sideways."""
    long = [f"{line.strip()[:60]}... ({len(line)})" for cell in _code(source)
            if "%pip install" not in cell  # the install cell is removed from the page
            for line in cell.splitlines() if len(line) > CODE_WIDTH]
    assert not long, f"{source.name}: code lines over {CODE_WIDTH} characters:\n" + "\n".join(long)


def test_the_sweep_runs_every_timing_page_alone():
    """`make sweep` runs one at a time the notebooks that time code (book_files.times_code):
    every page that measures with helpers.timing's compare or Timings, and no other."""
    timed = {p for p in NOTEBOOKS if times_code(p)}
    measures = {p for p in NOTEBOOKS if re.search(r"\b(compare|Timings)\(", p.read_text())}
    assert timed == measures, sorted(str(p.relative_to(ROOT)) for p in timed ^ measures)
    assert ROOT / "book/fast_jvp/benchmark.md" in timed
    assert ROOT / "book/fast_jvp/derivation.md" not in timed


def test_every_phony_make_target_has_a_rule():
    """make runs a .PHONY target without a rule as a silent no-op: `make test` would skip it."""
    makefile = (ROOT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", makefile, re.M).group(1).split()
    missing = [t for t in phony if not re.search(rf"^{re.escape(t)}:", makefile, re.M)]
    assert not missing, f"Makefile targets without a rule: {missing}"


@pytest.mark.parametrize("source", NOTEBOOKS, ids=IDS)
def test_glue_keys_are_glued_once(source):
    """A claim check glues its own key: a number glued under the same key is a duplicate (a build warning)."""
    from collections import Counter

    keys = Counter(m.group(1) for cell in _code(source)
                   for m in re.finditer(r"\b(?:glue|claims\.(?:check|verdict|direction))\(\s*[\"']([\w]+)[\"']", cell))
    twice = sorted(k for k, n in keys.items() if n > 1)
    assert not twice, f"{source.name}: keys glued more than once: {twice}"


@pytest.mark.parametrize("source", NOTEBOOKS, ids=IDS)
def test_figure_cells_show_only_their_figure(source):
    """A cell with a numbered figure gives every rich output the figure's name: a value the cell
    ends on (``glue(...)`` returns its value) is a second output with that label, and the build
    fails under -W. End the cell with ``plt.show()``, or assign the last value to ``_``."""
    import ast

    bad = []
    for cell in jupytext.read(source).cells:
        if cell.cell_type != "code" or "figure" not in (cell.metadata.get("mystnb") or {}):
            continue
        last = ast.parse(cell.source).body[-1]
        if isinstance(last, ast.Expr) and not (
                isinstance(last.value, ast.Call) and isinstance(last.value.func, ast.Attribute)
                and last.value.func.attr == "show"):
            bad.append(ast.unparse(last)[:60])
    assert not bad, f"{source.name}: figure cells ending on a value: {bad}"
