"""One place for the repository URL: ``_config.yml``'s ``repository.url`` and ``branch``.

The launch buttons read ``_config.yml``; the README's Colab and Binder links and every
notebook's hidden install cell hold the URL as text. This rewrites them all from
``_config.yml`` (``make repo-url``; then ``make twins`` refreshes the notebooks' twins), or,
with ``--check``, lists every place that disagrees (a test runs that).

Usage::

    python tools/repo_url.py [--check]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from book_files import notebook_sources  # noqa: E402

# owner/name and branch, as they appear in each kind of link (links to other repositories, such
# as a cited project's issue, are none of these kinds and are left alone)
PATTERNS = {
    "install": re.compile(r"git\+https://github\.com/(?P<repo>[\w.-]+/[\w.-]+?)(?:\.git)?@(?P<branch>[\w./-]+?)(?=[\"'\s])"),
    "colab": re.compile(r"colab\.research\.google\.com/github/(?P<repo>[\w.-]+/[\w.-]+)/blob/(?P<branch>[\w.-]+)/"),
    "binder": re.compile(r"mybinder\.org/v2/gh/(?P<repo>[\w.-]+/[\w.-]+)/(?P<branch>[\w.-]+)"),
}
LINK = {
    "install": "git+https://github.com/{repo}@{branch}",
    "colab": "colab.research.google.com/github/{repo}/blob/{branch}/",
    "binder": "mybinder.org/v2/gh/{repo}/{branch}",
}


def configured() -> tuple[str, str]:
    """(owner/name, branch) from ``_config.yml``."""
    repo = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    match = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+?)(?:\.git)?/?", repo["url"])
    if not match:
        raise ValueError(f"_config.yml repository.url must be https://github.com/OWNER/NAME, got {repo['url']!r}")
    return match.group(1), repo.get("branch", "main")


def files() -> list[Path]:
    """Every file that holds the URL as text: the README and the notebooks with their twins."""
    sources = notebook_sources()
    return [ROOT / "README.md"] + sources + [p.with_suffix(".ipynb") for p in sources]


def mismatches() -> list[str]:
    """'file: found ... (kind)' for every link that disagrees with ``_config.yml``."""
    repo, branch = configured()
    out = []
    for path in files():
        text = path.read_text()
        for kind, pattern in PATTERNS.items():
            for m in pattern.finditer(text):
                found = m.groupdict()
                if found["repo"] != repo or found.get("branch", branch) != branch:
                    out.append(f"{path.relative_to(ROOT)}: {m.group(0)!r} ({kind})")
    return out


def install_cells_missing() -> list[str]:
    """Notebook sources whose install cell has no git URL to rewrite."""
    return [str(p.relative_to(ROOT)) for p in notebook_sources() if not PATTERNS["install"].search(p.read_text())]


def rewrite() -> list[Path]:
    """Rewrite every link from ``_config.yml``; return the files that changed."""
    repo, branch = configured()
    changed = []
    for path in files():
        text = new = path.read_text()
        for kind, pattern in PATTERNS.items():
            new = pattern.sub(lambda m, k=kind: LINK[k].format(repo=repo, branch=branch), new)
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        bad = mismatches() + [f"{p}: no install cell with a git URL" for p in install_cells_missing()]
        print("\n".join(bad) or "every link agrees with _config.yml")
        sys.exit(1 if bad else 0)
    if sys.argv[1:]:
        sys.exit(__doc__)
    for path in rewrite():
        print(f"rewrote {path.relative_to(ROOT)}")
