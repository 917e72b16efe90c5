"""Run-time settings shared by every notebook: mode, seed, threads and device.

Every chapter starts with ``env = setup(seed=0)``, which reads three environment variables,
applies them once and prints them in one line:

``BOOK_MODE``
    ``full`` (default: readers, Colab, Binder, ``make book``) or ``quick`` (tests and CI).
    Sizes come from :func:`pick`.
``BOOK_DEVICE``
    ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; unset picks cuda, then mps, then cpu.
``BOOK_THREADS``
    a positive integer; unset means one thread per parallel test worker and otherwise
    all cores. On a 2-core machine, oversubscribed BLAS and torch threads slowed work
    10-30 times, which is why the thread count is set once, here, for torch, OpenMP and BLAS.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np

MODES = ("quick", "full")


@dataclass(frozen=True)
class Runtime:
    """What :func:`setup` fixed: mode, seed, thread count and device."""

    mode: str
    seed: int
    threads: int
    device: "torch.device"  # noqa: F821 (torch is imported lazily)

    @property
    def quick(self) -> bool:
        """True in quick mode (tests, CI)."""
        return self.mode == "quick"

    def __str__(self) -> str:
        return f"mode={self.mode} seed={self.seed} threads={self.threads} device={self.device}"


def get_mode() -> str:
    """The book mode from ``BOOK_MODE``: ``"full"`` (default) or ``"quick"``.

    Raises
    ------
    ValueError
        If ``BOOK_MODE`` holds anything else; the message names the allowed values.
    """
    mode = os.environ.get("BOOK_MODE", "full").strip().lower() or "full"
    if mode not in MODES:
        raise ValueError(f"BOOK_MODE must be one of {'|'.join(MODES)}, got {mode!r}")
    return mode


def pick(full, quick):
    """Return ``full`` in full mode and ``quick`` in quick mode.

    Chapters size their experiments with it, e.g. ``n = pick(full=10_000, quick=500)``.
    """
    return quick if get_mode() == "quick" else full


def get_threads() -> int:
    """The thread count from ``BOOK_THREADS``, else 1 under a parallel test worker, else all cores.

    Raises
    ------
    ValueError
        If ``BOOK_THREADS`` is not a positive integer.
    """
    raw = os.environ.get("BOOK_THREADS", "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"BOOK_THREADS must be a positive integer, got {raw!r}")
        return int(raw)
    if os.environ.get("PYTEST_XDIST_WORKER"):  # set by pytest-xdist, inherited by kernels
        return 1
    return os.cpu_count() or 1


def get_device(prefer: str | None = None) -> "torch.device":  # noqa: F821
    """The torch device: ``prefer``, else ``BOOK_DEVICE``, else cuda, then mps, then cpu.

    Raises
    ------
    ValueError
        If the requested device is malformed or not available on this machine; the message
        names ``BOOK_DEVICE`` and the allowed values.
    """
    import torch

    want = (prefer or os.environ.get("BOOK_DEVICE", "")).strip().lower()
    allowed = "cpu|cuda|cuda:N|mps"
    if not want:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(want)
    except RuntimeError as err:
        raise ValueError(f"BOOK_DEVICE must be one of {allowed}, got {want!r}") from err
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"BOOK_DEVICE must be one of {allowed}, got {want!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"BOOK_DEVICE={want!r} but no CUDA device is available; use BOOK_DEVICE=cpu")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"BOOK_DEVICE={want!r} but MPS is not available; use BOOK_DEVICE=cpu")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators (all devices) with ``seed``."""
    import torch

    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_threads(n: int) -> None:
    """Use ``n`` threads in torch, OpenMP and BLAS (numpy/scipy) from now on."""
    import torch
    from threadpoolctl import threadpool_limits

    os.environ["OMP_NUM_THREADS"] = str(n)  # for subprocesses started later
    torch.set_num_threads(n)
    threadpool_limits(limits=n)  # OpenMP and BLAS pools already loaded in this process


def setup(seed: int = 0, verbose: bool = True) -> Runtime:
    """Fix mode, seed, threads and device once, and print them in one line.

    Parameters
    ----------
    seed
        Seed for Python, numpy and torch.
    verbose
        Print the one-line summary (default True).

    Returns
    -------
    Runtime
        The settings, e.g. ``env.device`` to place models and ``env.quick`` to branch.
    """
    mode = get_mode()
    threads = get_threads()
    device = get_device()
    set_threads(threads)
    seed_everything(seed)
    env = Runtime(mode=mode, seed=seed, threads=threads, device=device)
    if verbose:
        print(env)
    return env
