"""helpers.glue: scalars become plain Python values; myst-nb is used when present, not required."""

import builtins

import numpy as np
import pytest
import torch

from helpers import glue as glue_module
from helpers.glue import GLUED, glue, plain


@pytest.mark.parametrize("value, expected, kind", [
    (np.float64(0.25), 0.25, float), (np.float32(0.5), 0.5, float), (np.int64(3), 3, int),
    (np.bool_(True), True, bool), (np.array(2.5), 2.5, float), (torch.tensor(4), 4, int),
    (torch.tensor([1.5]), 1.5, float), (7, 7, int), ("rises", "rises", str), (np.str_("x"), "x", str),
])
def test_plain_gives_python_scalars(value, expected, kind):
    out = plain(value)
    assert out == expected and type(out) is kind
    assert repr(out) == repr(expected)  # what {glue:text} parses: never "np.float64(...)"


def test_arrays_are_refused_with_the_fix():
    with pytest.raises(TypeError, match="format it into a string"):
        plain(np.ones(3))
    with pytest.raises(TypeError, match="2 elements"):
        glue("t_arr", torch.ones(2))


def test_bad_keys_are_refused():
    with pytest.raises(TypeError, match="non-empty string"):
        glue("", 1.0)


def test_glue_without_myst_nb_keeps_the_value(monkeypatch, capsys):
    real_import = builtins.__import__

    def no_myst(name, *args, **kwargs):
        if name.startswith("myst_nb"):
            raise ImportError("no myst_nb here (as on Colab)")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_myst)
    assert glue("t_colab", np.float64(0.125)) == 0.125
    assert GLUED["t_colab"] == 0.125 and type(GLUED["t_colab"]) is float
    assert capsys.readouterr().out == ""  # display=False shows nothing


def test_glue_with_myst_nb_passes_the_plain_value(monkeypatch):
    seen = {}
    import myst_nb

    monkeypatch.setattr(myst_nb, "glue", lambda key, value, display: seen.update({key: (value, display)}))
    glue("t_myst", np.int64(9))
    assert seen == {"t_myst": (9, False)} and type(seen["t_myst"][0]) is int
    assert glue_module.GLUED["t_myst"] == 9
