"""helpers.viz: explorers over precomputed frames that switch in JavaScript, without a kernel."""

import ipywidgets as widgets
import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import base64  # noqa: E402
import itertools  # noqa: E402

from helpers.viz import fig_to_png, frame_grid, frame_slider, render_frames, render_grid  # noqa: E402


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


# ----------------------------------------------------------------------------- several sliders

def _ref(widget):
    return f"IPY_MODEL_{widget.model_id}"


class StaticPage:
    """What the built page's widget manager does, from the embedded state alone: sliders set
    their index, jslinks copy it to their targets, stacks show their selected child."""

    def __init__(self):
        self.state = widgets.Widget.get_manager_state(drop_defaults=False)["state"]

    def links_from(self, slider):
        return [m["state"]["target"] for m in self.state.values() if m["model_name"] == "LinkModel"
                and m["state"]["source"] == [_ref(slider), "index"]]

    def move(self, slider, index):
        for ref, attr in self.links_from(slider):
            assert attr == "selected_index"
            self.state[ref.removeprefix("IPY_MODEL_")]["state"]["selected_index"] = index

    def shown(self, box):
        """The bytes of the image the page shows under ``box``'s outermost stack."""
        model = self.state[box.children[-1].model_id]
        while model["model_name"] == "StackModel":
            child = model["state"]["children"][model["state"]["selected_index"]]
            model = self.state[child.removeprefix("IPY_MODEL_")]
        assert model["model_name"] == "ImageModel"
        (buf,) = [b for b in model["buffers"] if b["path"] == ["value"]]
        return base64.b64decode(buf["data"])


def _png(*key):
    return b"\x89PNG" + repr(key).encode()  # a distinct stand-in per frame


@pytest.mark.parametrize("axes", [((2, 4, 8), (16, 256)), (("a",), (1, 2, 3), (0.5, 1.5)), ((7, 3, 5),)])
def test_frame_grid_switches_every_frame_in_the_static_page(axes):
    box = frame_grid({key: _png(*key) for key in itertools.product(*axes)},
                     descriptions=[f"axis {i}" for i in range(len(axes))], width="300px")
    sliders = box.children[:-1]
    assert [s.description for s in sliders] == [f"axis {i}" for i in range(len(axes))]
    assert [[lbl for lbl, _ in s.options] for s in sliders] == [[str(v) for v in values] for values in axes]
    page = StaticPage()
    # slider i drives every stack at level i, and nothing else
    for i, slider in enumerate(sliders):
        assert len(page.links_from(slider)) == max(1, len(list(itertools.product(*axes[:i]))))
    assert page.shown(box) == _png(*(values[0] for values in axes))
    for index in itertools.product(*(range(len(values)) for values in axes)):
        for slider, j in zip(sliders, index):
            page.move(slider, j)
        assert page.shown(box) == _png(*(values[j] for values, j in zip(axes, index))), index


def test_frame_grid_renders_figures_and_takes_values_in_first_seen_order():
    before = len(plt.get_fignums())
    frames = {(n, d): _fig(d) for n in (256, 16) for d in (4, 2)}
    box = frame_grid(frames, ("N", "d"))
    assert len(plt.get_fignums()) == before
    assert [[lbl for lbl, _ in s.options] for s in box.children[:2]] == [["256", "16"], ["4", "2"]]
    inner = box.children[2].children[0].children
    assert all(bytes(img.value).startswith(b"\x89PNG") for img in inner)


def test_frame_slider_is_a_one_slider_grid_in_the_static_page():
    box = frame_slider({v: _png(v) for v in (3, 1, 2)}, description="k")
    slider, stack = box.children
    page = StaticPage()
    for j, v in enumerate((3, 1, 2)):
        page.move(slider, j)
        assert page.shown(box) == _png(v)


@pytest.mark.parametrize("frames, descriptions, error, match", [
    ({}, ("d",), ValueError, "at least one frame"),
    ({(1,): b"x"}, (), ValueError, "at least one slider description"),
    ({(1,): b"x"}, "d", TypeError, "sequence of strings"),
    ({(1,): b"x"}, ("d", 2), TypeError, "sequence of strings"),
    ({(1, 2): b"x", (1,): b"y"}, ("d", "N"), ValueError, r"tuple of 2 slider values .* got \(1,\)"),
    ({1: b"x"}, ("d",), ValueError, "tuple of 1 slider values"),
    ({(1, 1): b"x", (1, 2): b"x", (2, 1): b"x"}, ("d", "N"), ValueError, r"1 missing, e.g. \[\(2, 2\)\]"),
])
def test_frame_grid_rejects_bad_frames(frames, descriptions, error, match):
    with pytest.raises(error, match=match):
        frame_grid(frames, descriptions)


def test_render_grid_covers_every_combination_in_product_order_and_closes_figures():
    before = len(plt.get_fignums())
    seen = []
    frames = render_grid(lambda d, n: seen.append((d, n)) or _fig(d), (2, 1), ("a", "b"), progress=False)
    assert list(frames) == seen == [(2, "a"), (2, "b"), (1, "a"), (1, "b")]
    assert all(png.startswith(b"\x89PNG") for png in frames.values()) and len(plt.get_fignums()) == before
    with pytest.raises(ValueError, match="at least one axis"):
        render_grid(_fig)


def test_table_shows_numbers_through_their_format_and_missing_values_as_a_dash(capsys):
    from helpers.viz import table

    table([("a", 1.23456, None), ("bb", 10.0, 3)], ("name", "x", "n"), fmt=("s", ".2f", "d"), caption="cap")
    out = capsys.readouterr().out.splitlines()
    assert out == ["cap", "name      x  n", "a      1.23  —", "bb    10.00  3"]


def test_table_refuses_ragged_rows_and_formats():
    from helpers.viz import table

    with pytest.raises(ValueError, match="row 0 has 2 values for 3 columns"):
        table([(1, 2)], ("a", "b", "c"))
    with pytest.raises(ValueError, match="fmt has 2 entries for 3 columns"):
        table([(1, 2, 3)], ("a", "b", "c"), fmt=(".1f", ".2f"))


def test_table_is_html_inside_a_kernel(monkeypatch):
    import IPython
    from IPython.display import HTML

    from helpers import viz

    shown = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: type("Shell", (), {"kernel": object()})())
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    viz.table([("<b>", 0.5)], ("name", "x"))
    assert isinstance(shown[0], HTML) and '<td>&lt;b&gt;</td><td class="num">0.5</td>' in shown[0].data
    # cells padded and numbers right-aligned: neighbouring columns must not run together
    assert '<table class="book-table">' in shown[0].data and "padding" in shown[0].data
    assert '<th>name</th><th class="num">x</th>' in shown[0].data
