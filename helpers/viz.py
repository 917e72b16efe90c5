"""One plotting style for the book, and explorers that also work in the static HTML page.

A built page has no kernel, so a slider whose callback runs Python does nothing there.
:func:`frame_slider` renders every state up front as a PNG, stacks the images in an
``ipywidgets.Stack`` and links the slider to the stack in JavaScript (``jslink``), so the
page switches frames with no kernel; in a live kernel the same widget works as usual.
:func:`frame_grid` does the same for several sliders over a grid of precomputed frames
(nested stacks, one level per slider), and :func:`render_grid` renders such a grid.
"""

from __future__ import annotations

import io
import itertools
from typing import Callable, Iterable, Mapping, Sequence

import matplotlib

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "savefig.bbox": "tight",
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "image.cmap": "viridis",
}


def use_style() -> None:
    """Apply the book's matplotlib style (called by every chapter after ``setup``)."""
    matplotlib.rcParams.update(STYLE)


def fig_to_png(fig: "matplotlib.figure.Figure") -> bytes:
    """Render ``fig`` to PNG bytes and close it (so it is not also shown inline)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _image(frame, width: str):
    import ipywidgets as widgets

    return widgets.Image(value=frame if isinstance(frame, bytes) else fig_to_png(frame), format="png",
                         layout=widgets.Layout(width=width))


def frame_slider(frames: Mapping[object, "matplotlib.figure.Figure | bytes"], description: str = "value",
                 width: str = "auto"):
    """A slider over precomputed frames that works in a live kernel and in the static page.

    Parameters
    ----------
    frames
        Ordered mapping from the slider's labels (numbers or strings) to a matplotlib figure
        or PNG bytes. Figures are rendered and closed.
    description
        The slider's label.
    width
        CSS width of each image, e.g. ``"480px"``; ``"auto"`` keeps the PNG's size.

    Returns
    -------
    ipywidgets.VBox
        The slider above the stack of images.

    Raises
    ------
    ValueError
        If ``frames`` is empty.

    See Also
    --------
    frame_grid : the same for several sliders.
    """
    if not frames:
        raise ValueError("frame_slider needs at least one frame")
    return frame_grid({(label,): frame for label, frame in frames.items()}, (description,), width=width)


def frame_grid(frames: Mapping[tuple, "matplotlib.figure.Figure | bytes"], descriptions: Sequence[str],
               width: str = "auto"):
    """Several sliders over a grid of precomputed frames, switched in JavaScript (no kernel).

    One slider per position of the keys: ``frames[(d, N)]`` with ``descriptions=("d", "N")``
    gives a ``d`` slider and an ``N`` slider, and each pair of positions shows its frame. The
    frames sit in nested ``ipywidgets.Stack`` s, one level per slider; slider ``i`` is jslinked
    by its ``index`` to the ``selected_index`` of every stack at level ``i``, so the static page
    switches frames with no kernel, and a live kernel shows the same widget.

    The page embeds every frame: a grid of ``n1 * n2 * ...`` PNGs. Keep it to a few dozen
    frames, at a modest dpi.

    Parameters
    ----------
    frames
        Mapping from tuples of slider values, one value per slider, to a matplotlib figure or
        PNG bytes (figures are rendered and closed). Each slider's values are taken in the
        order they first appear in the keys, so a mapping built by :func:`render_grid` or by
        nested loops orders every slider as its loop did. Every combination must be present.
    descriptions
        The sliders' labels, top to bottom; their number is the length of every key.
    width
        CSS width of each image, e.g. ``"480px"``; ``"auto"`` keeps the PNG's size.

    Returns
    -------
    ipywidgets.VBox
        The sliders, top to bottom, above the outermost stack.

    Raises
    ------
    ValueError
        If ``frames`` or ``descriptions`` is empty, a key is not a tuple of one value per
        description, or a combination of slider values has no frame.
    TypeError
        If ``descriptions`` is a string or holds a non-string.

    Examples
    --------
    >>> png = lambda d, n: b"\\x89PNG" + bytes([d, n])   # stand-ins for rendered figures
    >>> box = frame_grid({(d, n): png(d, n) for d in (2, 4) for n in (16, 64)}, ("d", "N"))
    >>> [s.description for s in box.children[:2]], len(box.children[2].children)
    (['d', 'N'], 2)
    """
    import ipywidgets as widgets

    if isinstance(descriptions, str) or not all(isinstance(d, str) for d in descriptions):
        raise TypeError(f"descriptions must be a sequence of strings, one per slider, got {descriptions!r}")
    descriptions = tuple(descriptions)
    if not descriptions:
        raise ValueError("frame_grid needs at least one slider description")
    if not frames:
        raise ValueError("frame_grid needs at least one frame")
    k = len(descriptions)
    for key in frames:
        if not isinstance(key, tuple) or len(key) != k:
            raise ValueError(f"every key of frames must be a tuple of {k} slider values (one per description "
                             f"{descriptions}), got {key!r}")
    axes = [list(dict.fromkeys(key[i] for key in frames)) for i in range(k)]
    missing = [key for key in itertools.product(*axes) if key not in frames]
    if missing:
        raise ValueError(f"frame_grid needs a frame for every combination of slider values; {len(missing)} "
                         f"missing, e.g. {missing[:3]}")
    sliders = [widgets.SelectionSlider(options=[(str(v), j) for j, v in enumerate(values)], description=desc,
                                       continuous_update=True, layout=widgets.Layout(width="420px"))
               for desc, values in zip(descriptions, axes)]

    def level(prefix: tuple):
        depth = len(prefix)
        if depth == k:
            return _image(frames[prefix], width)
        stack = widgets.Stack([level(prefix + (v,)) for v in axes[depth]], selected_index=0)
        # A SelectionSlider's `value` cannot be linked in JavaScript; its integer `index` can.
        widgets.jslink((sliders[depth], "index"), (stack, "selected_index"))
        return stack

    return widgets.VBox([*sliders, level(())])


def render_frames(make_fig: Callable[[object], "matplotlib.figure.Figure"], values: Iterable,
                  progress: bool = True) -> dict:
    """``{v: make_fig(v)}`` rendered to PNG, with a progress bar, for :func:`frame_slider`."""
    from helpers._progress import bar

    values = list(values)
    return {v: fig_to_png(make_fig(v)) for v in bar(values, progress=progress, desc="frames")}


def render_grid(make_fig: Callable[..., "matplotlib.figure.Figure"], *axes: Iterable,
                progress: bool = True) -> dict:
    """``{(a, b, ...): make_fig(a, b, ...)}`` over every combination of the axes' values,
    rendered to PNG with a progress bar, for :func:`frame_grid`.

    The keys come in ``itertools.product`` order, so each slider of :func:`frame_grid` lists
    its values in the order given here.
    """
    from helpers._progress import bar

    if not axes:
        raise ValueError("render_grid needs at least one axis of values")
    keys = list(itertools.product(*(list(values) for values in axes)))
    return {key: fig_to_png(make_fig(*key)) for key in bar(keys, progress=progress, desc="frames")}


def _cell(value, fmt: str) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return "—"  # a missing value is shown, never a blank cell
    try:
        return format(value, fmt)
    except (TypeError, ValueError):
        return str(value)


def table(rows: Sequence[Sequence[object]], header: Sequence[str], *, fmt: str | Sequence[str] = ".3g",
          caption: str | None = None) -> None:
    """Show a table of results: HTML in a notebook and in the built page, plain text elsewhere.

    The book's one form for tables printed by code (no ``print`` layouts, no Markdown that
    needs ``render_markdown_format``).

    Parameters
    ----------
    rows
        The rows, each a sequence of values (strings as they are, numbers through ``fmt``,
        None as a dash).
    header
        One name per column.
    fmt
        A format spec for the numbers, or one per column.
    caption
        A short caption shown above the table.

    Raises
    ------
    ValueError
        If a row's length differs from the header's, or ``fmt`` has the wrong length.

    Examples
    --------
    >>> table([("MaGNET", 0.5123, None)], ("sampler", "precision", "recall"), fmt=".2f")
    sampler  precision  recall
    MaGNET        0.51       —
    """
    import html

    header = [str(h) for h in header]
    fmts = [fmt] * len(header) if isinstance(fmt, str) else list(fmt)
    if len(fmts) != len(header):
        raise ValueError(f"fmt has {len(fmts)} entries for {len(header)} columns")
    cells = []
    for i, row in enumerate(rows):
        row = list(row)
        if len(row) != len(header):
            raise ValueError(f"row {i} has {len(row)} values for {len(header)} columns: {row!r}")
        cells.append([_cell(v, f) for v, f in zip(row, fmts)])
    try:
        from IPython import get_ipython
        in_kernel = getattr(get_ipython(), "kernel", None) is not None
    except ImportError:
        in_kernel = False
    if not in_kernel:
        widths = [max(len(c) for c in col) for col in zip(header, *cells)]
        numeric = [all(not isinstance(r[j], str) for r in rows) for j in range(len(header))]
        line = lambda cs: "  ".join(c.rjust(w) if num else c.ljust(w)  # noqa: E731
                                    for c, w, num in zip(cs, widths, numeric)).rstrip()
        print("\n".join(([caption] if caption else []) + [line(header)] + [line(c) for c in cells]))
        return
    from IPython.display import HTML, display

    esc = html.escape
    numeric = [all(not isinstance(r[j], str) for r in rows) for j in range(len(header))]
    align = [' class="num"' if num else "" for num in numeric]  # right-aligned (the style below)
    head = "".join(f"<th{a}>{esc(h)}</th>" for h, a in zip(header, align))
    body = "".join("<tr>" + "".join(f"<td{a}>{esc(c)}</td>" for c, a in zip(row, align)) + "</tr>"
                   for row in cells)
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    # The book's theme pads Markdown tables but not a notebook's HTML output: without this,
    # neighbouring numbers run together ("1001.2097" for n = 100 next to 1.2097).
    display(HTML(f"{_TABLE_STYLE}<table class=\"book-table\">{cap}<thead><tr>{head}</tr></thead>"
                 f"<tbody>{body}</tbody></table>"))


_TABLE_STYLE = ("<style>.book-table th, .book-table td {padding: 0.15em 0.45em; vertical-align: top}"
                " .book-table .num {text-align: right; font-variant-numeric: tabular-nums}</style>")
