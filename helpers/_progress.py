"""Progress bars for long work in a live kernel, never in the static page.

``tqdm.auto`` picks the notebook widget inside a kernel, and that widget does not read
``TQDM_DISABLE``; the book build sets the variable so that no bar (with this build's it/s)
is published. :func:`bar` honours it everywhere.
"""

from __future__ import annotations

import os


def enabled(progress: bool = True) -> bool:
    """``progress``, unless ``TQDM_DISABLE`` is set to anything but ``""``, ``0`` or ``false``."""
    off = os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false")
    return bool(progress) and not off


def bar(iterable=None, *, progress: bool = True, **kwargs):
    """A ``tqdm.auto`` bar over ``iterable``, disabled by ``progress=False`` or ``TQDM_DISABLE``."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not enabled(progress), **kwargs)
