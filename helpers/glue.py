"""Glue a value into the page, the one way the book does it, with or without myst-nb.

A page's prose quotes its run's numbers with ``{glue:text}`key:.3f```: myst-nb stores the
value's plain-text form in the cell's output, and the build substitutes it. Two things go
wrong without this wrapper:

- ``{glue:text}`` parses the stored text back into a number, and numpy 2 writes a numpy
  scalar as ``np.float64(0.5)``, which does not parse. :func:`glue` turns numpy and torch
  scalars into Python numbers first.
- Colab and Binder's stock stacks have no myst-nb. There :func:`glue` keeps the value in
  :data:`GLUED` (and shows it when ``display=True``) so the notebook runs on.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["glue", "plain", "GLUED"]

#: Every value glued in this process, by key (also where myst-nb is absent).
GLUED: dict[str, object] = {}


def plain(value):
    """``value`` as a Python ``int``/``float``/``bool``/``str`` when it is a scalar.

    numpy scalars, 0-d arrays and one-element torch tensors become Python numbers; strings
    and other objects (a matplotlib figure, say) are returned unchanged.

    Raises
    ------
    TypeError
        If ``value`` is an array or tensor with more than one element: glue one number, or
        format the array into a string first.

    Examples
    --------
    >>> plain(np.float64(0.25)), plain(np.int64(3)), plain(np.bool_(True)), plain("rises")
    (0.25, 3, True, 'rises')
    """
    if isinstance(value, (np.generic, np.ndarray)) or hasattr(value, "numel"):  # numpy, torch (np.float64 is also a float)
        n = value.numel() if hasattr(value, "numel") else value.size
        if n != 1:
            raise TypeError(f"glue one number, got an array of {n} elements; format it into a string first")
        return value.item()
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def glue(key: str, value, *, display: bool = False):
    """Glue ``value`` under ``key`` for ``{glue:text}`` in the prose, and return it as :func:`plain` made it.

    Uses myst-nb where it is installed (the built book). Where it is not (Colab, Binder),
    the value is kept in :data:`GLUED` and shown only if ``display`` is True.

    Parameters
    ----------
    key
        The glue key; it carries the chapter's prefix (``xp_``, ``rk_``, ...), since keys are
        looked up book-wide from the scoreboard.
    value
        A number, a string, or an object myst-nb can display (a figure).
    display
        Also show the value in the cell's output (default False).

    Raises
    ------
    TypeError
        If ``key`` is not a non-empty string, or ``value`` is an array of several numbers.

    Examples
    --------
    >>> glue("doc_example", np.float32(0.5))
    0.5
    >>> GLUED["doc_example"]
    0.5
    """
    if not isinstance(key, str) or not key:
        raise TypeError(f"a glue key is a non-empty string, got {key!r}")
    value = plain(value)
    GLUED[key] = value
    try:
        from myst_nb import glue as myst_glue
    except ImportError:  # Colab, Binder: no build to substitute into
        if display:
            from IPython.display import display as show

            show(value)
        return value
    myst_glue(key, value, display=display)
    return value
