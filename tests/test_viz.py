"""helpers.viz: explorers over precomputed frames that switch in JavaScript, without a kernel."""

import ipywidgets as widgets
import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from helpers.viz import fig_to_png, frame_slider, render_frames  # noqa: E402


def _fig(k):
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, k])
    return fig


def test_frame_slider_links_slider_index_to_stack_in_javascript():
    box = frame_slider({1: _fig(1), "two": fig_to_png(_fig(2))}, description="k")
    slider, stack = box.children
    assert isinstance(stack, widgets.Stack) and len(stack.children) == 2
    assert all(bytes(img.value).startswith(b"\x89PNG") for img in stack.children)
    state = widgets.Widget.get_manager_state(drop_defaults=False)["state"]  # what the page embeds
    links = [m for m in state.values() if m["model_name"] == "LinkModel"
             and m["state"]["source"] == [f"IPY_MODEL_{slider.model_id}", "index"]
             and m["state"]["target"] == [f"IPY_MODEL_{stack.model_id}", "selected_index"]]
    assert links, "the slider must be jslinked by its index, so the static page switches frames"
    slider.index = 1  # in a kernel the link is kept by the front end; the model values stay consistent
    assert slider.label == "two"


def test_frame_slider_needs_frames():
    with pytest.raises(ValueError, match="at least one frame"):
        frame_slider({})


def test_render_frames_keeps_order_and_closes_figures():
    before = len(plt.get_fignums())
    frames = render_frames(_fig, [3, 1, 2], progress=False)
    assert list(frames) == [3, 1, 2] and len(plt.get_fignums()) == before
