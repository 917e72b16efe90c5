"""Run-time settings shared by every notebook: mode, seed, threads and device.

Every chapter starts with ``env = setup()``, which reads these environment variables,
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
``BOOK_SEED``
    the notebook's one base seed (default 0). Every random choice of a page derives from it
    through :meth:`Runtime.rng`, :meth:`Runtime.torch_gen` or :meth:`Runtime.seed_for`, so
    ``BOOK_SEED=1`` reruns the whole page on other data splits, weights, latents and trials.
    Data that reproduce a paper's own instance keep a named constant seed instead.

    The package's one rule for seeds: every ``helpers`` function that draws random numbers
    takes a keyword ``seed`` (only the scikit-learn estimator says ``random_state``), and
    ``seed=None``, the default, means the next draw from numpy's global generator, which
    :func:`setup` seeds with the base seed; so a page that calls helpers without seeds is
    still reproducible for a given ``BOOK_SEED``, while a seed from :meth:`Runtime.seed_for`
    makes one result independent of the draws before it. (``DigitsVAE.loss(generator=...)``
    takes a ``torch.Generator``, torch's own meaning of the word; ``None`` is torch's global
    generator, also seeded by :func:`setup`.)
``BOOK_STRICT``
    ``1`` makes a claim check that fails in this run raise (``make book``); unset or ``0``
    shows it as a visible note (readers, ``make test``, ``make sweep``). See
    :mod:`helpers.claims`.
"""

from __future__ import annotations

import hashlib
import os
import platform
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

    @property
    def exact_dtype(self) -> "torch.dtype":  # noqa: F821
        """float64 for exact checks, or float32 on MPS, which has no float64."""
        import torch

        return torch.float32 if self.device.type == "mps" else torch.float64

    @property
    def device_name(self) -> str:
        """The hardware the page ran on, in words for the prose: a GPU's name, or the CPU's."""
        return device_name(self.device, self.threads)

    def seed_for(self, *tags: str | int) -> int:
        """A 63-bit seed derived from the base seed and ``tags``, e.g. ``seed_for("vae", s)``.

        The same tags give the same seed in every run with the same base seed; different
        tags give independent streams. Strings are hashed (not Python's salted ``hash``).
        """
        return derive_seed(self.seed, *tags)

    def random_state(self, *tags: str | int) -> int:
        """:meth:`seed_for` reduced to the 32 bits scikit-learn's ``random_state`` accepts."""
        return self.seed_for(*tags) % 2**32

    def rng(self, *tags: str | int) -> np.random.Generator:
        """A numpy generator for the stream named by ``tags`` (see :meth:`seed_for`)."""
        return np.random.default_rng(self.seed_for(*tags))

    def torch_gen(self, *tags: str | int, device=None) -> "torch.Generator":  # noqa: F821
        """A torch generator for the stream named by ``tags``, on ``device`` (default CPU).

        Draw on the CPU and move the result (``torch.randn(..., generator=g).to(dev)``) when
        the numbers must not depend on the device: a CUDA generator gives other numbers.
        """
        import torch

        return torch.Generator(device=device or "cpu").manual_seed(self.seed_for(*tags))

    def __str__(self) -> str:
        return f"mode={self.mode} seed={self.seed} threads={self.threads} device={self.device}"


def provenance() -> str:
    """``commit=<short hash> date=<UTC date>`` of this run, for the page that shows it.

    The commit is read with git from the working directory (the notebook's folder); it is left
    out where there is no repository (Colab, a copied notebook), and marked ``+changes`` when
    the working tree differs from it.
    """
    import datetime
    import subprocess

    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    try:
        run = lambda *args: subprocess.run(["git", *args], capture_output=True, text=True, timeout=5)  # noqa: E731
        head = run("rev-parse", "--short", "HEAD")
        if head.returncode != 0:
            return f"date={date}"
        dirty = run("status", "--porcelain", "--untracked-files=no").stdout.strip()
        return f"commit={head.stdout.strip()}{'+changes' if dirty else ''} date={date}"
    except (OSError, subprocess.SubprocessError):
        return f"date={date}"


def _tag_int(tag: str | int) -> int:
    if isinstance(tag, (bool, np.bool_)) or not isinstance(tag, (str, int, np.integer)):
        raise TypeError(f"seed tags are strings or integers, got {tag!r}")
    if isinstance(tag, str):  # a stable hash: Python's hash() of a str changes per process
        return int.from_bytes(hashlib.blake2b(tag.encode(), digest_size=8).digest(), "little")
    if tag < 0:
        raise ValueError(f"integer seed tags must be non-negative, got {tag}")
    return int(tag)


def derive_seed(base: int, *tags: str | int) -> int:
    """A seed for the stream ``tags`` of base seed ``base``, through numpy's ``SeedSequence``.

    Examples
    --------
    >>> derive_seed(0, "vae", 1) == derive_seed(0, "vae", 1)
    True
    >>> derive_seed(0, "vae", 1) != derive_seed(1, "vae", 1) != derive_seed(0, "vae", 2)
    True
    """
    entropy = [_check_seed(base)] + [_tag_int(t) for t in tags]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> np.uint64(1))


def device_name(device, threads: int | None = None) -> str:
    """A short name of ``device`` for prose: the GPU's model, or the CPU's with the thread count."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "an Apple GPU (MPS)"
    cpu = _cpu_model() or platform.machine() or "CPU"
    return f"{cpu}, {threads} thread{'s' if threads != 1 else ''}" if threads else cpu


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor()


def get_seed() -> int:
    """The base seed from ``BOOK_SEED`` (default 0).

    Raises
    ------
    ValueError
        If ``BOOK_SEED`` is not a non-negative integer.
    """
    raw = os.environ.get("BOOK_SEED", "").strip()
    if not raw:
        return 0
    if not raw.isdigit():
        raise ValueError(f"BOOK_SEED must be a non-negative integer, got {raw!r}")
    return int(raw)


def strict() -> bool:
    """True when ``BOOK_STRICT=1``: a claim check that fails in this run raises.

    Raises
    ------
    ValueError
        If ``BOOK_STRICT`` holds anything but ``0``/``1`` (or nothing).
    """
    raw = os.environ.get("BOOK_STRICT", "").strip()
    if raw not in ("", "0", "1"):
        raise ValueError(f"BOOK_STRICT must be 0 or 1, got {raw!r}")
    return raw == "1"


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


def _check_seed(seed) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators (all devices) with ``seed``."""
    import torch

    seed = _check_seed(seed)
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


def exact_float32() -> None:
    """Make float32 convolutions and matrix products full float32 on GPUs (no TF32).

    torch lets cuDNN convolve float32 in TF32 (10-bit mantissa) by default, which breaks
    float32 agreement checks at 1e-4 on Ampere and newer GPUs. No effect on a CPU.
    """
    import torch

    torch.backends.cudnn.conv.fp32_precision = "ieee"
    torch.backends.cuda.matmul.fp32_precision = "ieee"


_CURRENT: Runtime | None = None


def current() -> Runtime | None:
    """The settings of the last :func:`setup` in this process, or None before it."""
    return _CURRENT


def setup(seed: int | None = None, verbose: bool = True) -> Runtime:
    """Fix mode, seed, threads and device once, and print them in one line.

    Parameters
    ----------
    seed
        The base seed; None (the default, and what chapters use) reads ``BOOK_SEED``,
        which defaults to 0. Python's, numpy's and torch's global generators are seeded
        with it; a page draws its random numbers from streams derived from it
        (:meth:`Runtime.rng`, :meth:`Runtime.torch_gen`, :meth:`Runtime.seed_for`).
    verbose
        Print the one-line summary (default True): the settings, then the commit and date of
        the run (:func:`provenance`), so a built page says which build made it.

    Returns
    -------
    Runtime
        The settings, e.g. ``env.device`` to place models and ``env.quick`` to branch.

    Examples
    --------
    >>> env = setup(seed=3, verbose=False)
    >>> a = env.rng("split").integers(1000)
    >>> env.seed, a == setup(seed=3, verbose=False).rng("split").integers(1000)
    (3, np.True_)
    """
    global _CURRENT
    mode = get_mode()
    threads = get_threads()
    device = get_device()
    seed = get_seed() if seed is None else _check_seed(seed)
    strict()  # validate BOOK_STRICT now rather than at the first claim
    set_threads(threads)
    seed_everything(seed)
    exact_float32()
    env = Runtime(mode=mode, seed=seed, threads=threads, device=device)
    _CURRENT = env
    if verbose:
        print(f"{env} {provenance()}")
    return env
