"""Sphinx extension: every page's footer names the build that made it.

Notebook pages also print their own run's provenance in their set-up cell; this footer covers
every page, including those without code: the commit, the mode (``BOOK_MODE``), the device
(``BOOK_DEVICE``, else the one torch would pick) and the date of the build.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path


def _commit(root: Path) -> str:
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return "no git repository"
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return head.stdout.strip() + (" with uncommitted changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _device(root: Path) -> str:
    sys.path.insert(0, str(root))
    try:
        from helpers.runtime import get_device  # the rule the notebooks use
        return str(get_device())
    except Exception:  # a footer must not fail the build; the pages' set-up cells are the authority
        return os.environ.get("BOOK_DEVICE", "cpu")
    finally:
        sys.path.remove(str(root))


def provenance(root: Path) -> str:
    mode = os.environ.get("BOOK_MODE", "full").strip() or "full"
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    return f"Built from commit {_commit(root)}, {mode} mode, on {_device(root)}, {date}."


def _add_footer(app, config):
    options = dict(config.html_theme_options or {})
    line = f'<p class="book-provenance">{provenance(Path(app.confdir))}</p>'
    options["extra_footer"] = (options.get("extra_footer") or "") + line
    config.html_theme_options = options


def setup(app):
    app.connect("config-inited", _add_footer)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
