"""Shared input checks, the package's error policy, and the tensors-in, tensors-out conversions.

Error policy (every public function of ``helpers`` follows it):

* A bad argument raises :class:`ParameterError`, a subclass of both ``ValueError`` and
  ``TypeError`` (scikit-learn's ``InvalidParameterError`` pattern). That covers a value out of
  range, a wrong type (``k=2.5``, ``rho="1"``), a malformed array (shape, NaN, dtype), an
  unknown option or name, and a tensor on the wrong device. ``except ValueError`` and
  ``except TypeError`` both catch it.
* A well-formed problem without an answer raises a domain error named after the outcome,
  e.g. :class:`helpers.clustering.InfeasibleRadiusError` (a ``ValueError``) or
  :class:`helpers.hull.HullDecisionError` (a ``RuntimeError``).
* A failed verification raises :class:`helpers.hull.CertificateError` (a ``ValueError``).

Types: numpy in, numpy out; torch in, torch out on the input's device (float64 values on MPS,
which has no float64, come back on the CPU). See :func:`like`.

Seeds: ``seed=None`` means "the next draw from numpy's global generator", which
:func:`helpers.runtime.setup` seeds with the notebook's base seed (see :func:`resolve_seed`).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = ["ParameterError", "check_int", "check_real", "check_option", "check_seed", "resolve_seed",
           "rng", "is_torch", "to_numpy", "like"]


class ParameterError(ValueError, TypeError):
    """A bad argument: out of range, of the wrong type, malformed, unknown, or on the wrong device."""


def check_int(x: Any, name: str, *, low: int | None = None, high: int | None = None,
              none_ok: bool = False, hint: str = "") -> int | None:
    """``x`` as a Python int in ``[low, high]`` (bools refused); None passes when ``none_ok``."""
    if x is None and none_ok:
        return None
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (numbers.Integral, np.integer)) \
            or (low is not None and x < low) or (high is not None and x > high):
        kind = ("a positive int" if low == 1 and high is None else
                "a non-negative int" if low == 0 and high is None else
                f"an int in [{low}, {high}]" if low is not None and high is not None else
                f"an int >= {low}" if low is not None else f"an int <= {high}" if high is not None else "an int")
        raise ParameterError(f"{name} must be {'None or ' if none_ok else ''}{kind}{hint}, got {x!r}")
    return int(x)


def check_real(x: Any, name: str, *, low: float | None = None, high: float | None = None,
               low_open: bool = False, high_open: bool = False, none_ok: bool = False,
               hint: str = "") -> float | None:
    """``x`` as a finite Python float in the given interval (bools and strings refused)."""
    if x is None and none_ok:
        return None
    ok = not isinstance(x, (bool, np.bool_)) and isinstance(x, (numbers.Real, np.integer, np.floating))
    if ok:
        v = float(x)
        ok = math.isfinite(v) and (low is None or (v > low if low_open else v >= low)) \
            and (high is None or (v < high if high_open else v <= high))
    if not ok:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
        rng_txt = " and ".join(t for t in (lo, hi) if t)
        raise ParameterError(f"{name} must be a finite number{' ' + rng_txt if rng_txt else ''}{hint}, got {x!r}")
    return v


def check_option(x: Any, name: str, options) -> Any:
    """``x`` if it is one of ``options`` (a ParameterError naming them otherwise)."""
    if not isinstance(x, str) or x not in options:
        raise ParameterError(f"{name} must be one of {tuple(options)}, got {x!r}")
    return x


def check_seed(seed: Any, name: str = "seed") -> int | None:
    """None, or a non-negative int (numpy integers allowed, bools refused)."""
    return check_int(seed, name, low=0, none_ok=True)


def resolve_seed(seed: Any, name: str = "seed") -> int:
    """The package's one rule for seeds: an int is used as is; ``None`` takes the next draw
    from numpy's global generator, which :func:`helpers.runtime.setup` seeds with the
    notebook's base seed, so a notebook is reproducible for a given ``BOOK_SEED``."""
    seed = check_seed(seed, name)
    if seed is None:
        return int(np.random.randint(0, 2**63 - 1, dtype=np.int64))
    return seed


def rng(seed: Any) -> np.random.Generator:
    """A numpy Generator: ``seed`` itself if it is one, else ``default_rng(resolve_seed(seed))``."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (numbers.Integral, np.integer))
                             or seed < 0):
        raise ParameterError(f"seed must be None, a non-negative int or a numpy Generator, got {seed!r}")
    return np.random.default_rng(resolve_seed(seed))


def is_torch(x: Any) -> bool:
    """True for a torch tensor (without importing torch)."""
    return type(x).__module__.split(".")[0] == "torch" and hasattr(x, "detach")


def to_numpy(x: Any, name: str, *, ndim: int | None = None, shape_txt: str = "",
             dtype=np.float64, hint: str = "") -> np.ndarray:
    """``x`` (numpy, torch on any device and float dtype, or nested lists) as a numpy array.

    Torch tensors are detached, cast to float64 on their device first (so bfloat16 and half
    work) and copied to the host. Complex and non-numeric data raise :class:`ParameterError`,
    as does the wrong number of dimensions when ``ndim`` is given.
    """
    if is_torch(x):
        x = x.detach()
        if x.is_complex():
            raise ParameterError(f"{name} is complex; pass real coordinates (e.g. stack real and imag)")
        if dtype is not None and np.dtype(dtype) == np.float64 and x.dtype != _torch().float64:
            x = x.to("cpu").to(_torch().float64) if x.device.type == "mps" else x.to(_torch().float64)
        x = x.cpu().numpy()
    arr = np.asarray(x)
    if np.iscomplexobj(arr):
        raise ParameterError(f"{name} is complex; pass real coordinates (e.g. stack real and imag)")
    if dtype is not None:
        try:
            arr = np.asarray(arr, dtype=dtype)
        except (TypeError, ValueError) as err:
            raise ParameterError(f"{name} must be numeric (numpy or torch), got dtype {arr.dtype}") from err
    if ndim is not None and arr.ndim != ndim:
        raise ParameterError(f"{name} must be a {ndim}-D array{' of shape ' + shape_txt if shape_txt else ''}, "
                             f"got shape {arr.shape}{hint}")
    return arr


def _torch():
    import torch

    return torch


def like(out: np.ndarray, ref: Any, *, dtype=None):
    """``out`` in ``ref``'s type: numpy for numpy (or lists), a torch tensor on ``ref``'s device
    for torch. ``dtype`` (a torch dtype) overrides the result's; float64 on MPS stays on the CPU."""
    if not is_torch(ref):
        return out
    torch = _torch()
    t = torch.from_numpy(np.ascontiguousarray(out))
    if dtype is not None:
        t = t.to(dtype)
    device = ref.device
    if device.type == "mps" and t.dtype == torch.float64:
        return t
    return t.to(device)
