"""Execute notebooks headless, in their own folder, and say which cell failed.

Used by ``make sweep``, the Colab-stack test and by hand. A notebook is a jupytext ``.md``
source or an ``.ipynb``; environment variables (``BOOK_MODE``, ``BOOK_SEED``,
``BOOK_CLAIMS_DIR``, ...) pass through to the kernel.

Usage::

    python tools/run_notebook.py [--kernel NAME] [--cwd DIR] [--out DIR] [--timeout S] NOTEBOOK...

Exits 1 when a notebook fails, after running all of them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def run(path: Path, kernel: str = "python3", cwd: Path | None = None, timeout: int = 600,
        out: Path | None = None) -> tuple[bool, float, str]:
    """Execute ``path``; return (passed, seconds, error text)."""
    nb = jupytext.read(path) if path.suffix == ".md" else nbformat.read(path, as_version=4)
    folder = cwd or path.parent
    client = NotebookClient(nb, kernel_name=kernel, timeout=timeout, resources={"metadata": {"path": str(folder)}})
    start = time.perf_counter()
    error = ""
    try:
        client.execute()
    except CellExecutionError as err:
        error = str(err)
    seconds = time.perf_counter() - start
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out / (path.stem + ".ipynb"))
    return not error, seconds, error


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel name (default python3)")
    parser.add_argument("--cwd", type=Path, help="run every notebook in this folder (default: its own)")
    parser.add_argument("--copy-to", type=Path, help="copy each notebook here first and run the copy there")
    parser.add_argument("--out", type=Path, help="write the executed notebooks here")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args(argv)
    failed = 0
    for path in args.notebooks:
        cwd = args.cwd
        if args.copy_to is not None:
            args.copy_to.mkdir(parents=True, exist_ok=True)
            path = Path(shutil.copy(path, args.copy_to))
            cwd = args.copy_to
        ok, seconds, error = run(path, args.kernel, cwd, args.timeout, args.out)
        print(f"{'passed' if ok else 'FAILED'} {seconds:6.1f} s  {path}", flush=True)
        if not ok:
            failed += 1
            print(error[-4000:], file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
