"""One plotting style for the book, and a slider that also works in the static HTML page.

A built page has no kernel, so a slider whose callback runs Python does nothing there.
:func:`frame_slider` renders every state up front as a PNG, stacks the images in an
``ipywidgets.Stack`` and links the slider to the stack in JavaScript (``jslink``), so the
page switches frames with no kernel; in a live kernel the same widget works as usual.
"""

from __future__ import annotations

import io
from typing import Callable, Iterable, Mapping

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
    """
    import ipywidgets as widgets

    if not frames:
        raise ValueError("frame_slider needs at least one frame")
    labels = list(frames)
    images = [
        widgets.Image(value=f if isinstance(f, bytes) else fig_to_png(f), format="png",
                      layout=widgets.Layout(width=width))
        for f in frames.values()
    ]
    stack = widgets.Stack(images, selected_index=0)
    slider = widgets.SelectionSlider(options=[(str(lbl), i) for i, lbl in enumerate(labels)],
                                     description=description, continuous_update=True,
                                     layout=widgets.Layout(width="420px"))
    # A SelectionSlider's `value` cannot be linked in JavaScript; its integer `index` can.
    widgets.jslink((slider, "index"), (stack, "selected_index"))
    return widgets.VBox([slider, stack])


def render_frames(make_fig: Callable[[object], "matplotlib.figure.Figure"], values: Iterable,
                  progress: bool = True) -> dict:
    """``{v: make_fig(v)}`` rendered to PNG, with a progress bar, for :func:`frame_slider`."""
    from tqdm.auto import tqdm

    values = list(values)
    return {v: fig_to_png(make_fig(v)) for v in tqdm(values, disable=not progress, desc="frames")}
