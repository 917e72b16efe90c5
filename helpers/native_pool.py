"""Max-pooling's primal and tangent in one pass each, compiled from C on first use.

The tangent of a max-pool reads, per window, the tangent at the entry the primal picked. PyTorch
has no one-pass op for "pick one entry of each window by a code": every composite costs more
than the pooling itself (measured on the 1-D conv net's first pooling, 65536 outputs, on one
and two threads: the comparison for the code 35-54 us, a NaN check 7-11 us, index_select at flat
positions 73-111 us, a select on strided views 150-290 us, against 24-40 us for
``F.max_pool1d``). So this module writes the two loops in C (about 75 lines, below),
compiles them with the system's C compiler into a per-user cache the first time they are
needed (about a second), and calls them through ``ctypes``:

- :func:`window_max` returns the pooled values and a code per window (which entry won, a byte),
  by PyTorch's rule: the window is read in row-major order and a later entry replaces the best
  so far when it is larger or NaN (ties keep the first). The values are copies of the winners,
  so they equal ``F.max_pool1d`` / ``F.max_pool2d`` bit for bit.
- :func:`window_select` reads a tangent at the coded entries, for ``K`` tangents per sample,
  without branches (bit masks for pairs, an indexed load otherwise): a branch per entry, which
  the predictor cannot learn, cost more than the loads.

Both return ``None`` where they do not apply, and the caller (``helpers.jvp``) then takes its
PyTorch path, which gives the same numbers: no C compiler (e.g. a Windows laptop), a GPU
tensor, a dtype other than float32/float64, a non-contiguous tensor, an autograd graph to
record, or ``BOOK_NATIVE=0`` in the environment (padding and ceil mode never reach them).
:func:`status` says which. Where PyTorch runs its threads on GNU OpenMP (its Linux wheels),
the loops are built with OpenMP and run on PyTorch's own threads from 16384 outputs on (see
``_torch_uses_libgomp``); elsewhere on one thread. For ``K`` tangents per sample of a 2-D
pooling ``helpers.jvp`` keeps PyTorch's gather, which is faster over short rows.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch

from helpers._checks import ParameterError

_SOURCE = r"""
#include <stdint.h>

/* One plane (H x W) after another; out_h x out_w windows of kh x kw entries, strides sh, sw,
   dilations dh, dw, no padding. Codes count the window's entries in row-major order. */
#define PARALLEL_MIN 16384   /* outputs from which a call runs on the OpenMP threads */
#define NEW_BEST(v, best) (((v) > (best)) | ((v) != (v)))

#define KERNELS(T, U, SUF)                                                                     \
void window_max_##SUF(const T *restrict x, int64_t planes, int64_t H, int64_t W,             \
                      int64_t oh, int64_t ow, int64_t kh, int64_t kw, int64_t sh, int64_t sw, \
                      int64_t dh, int64_t dw, T *restrict values, uint8_t *restrict code) {   \
  _Pragma("omp parallel for collapse(2) if (planes * oh * ow >= PARALLEL_MIN)")              \
  for (int64_t p = 0; p < planes; ++p)                                                         \
    for (int64_t i = 0; i < oh; ++i) {                                                         \
      const T *r = x + (p * H + i * sh) * W;                                                   \
      T *v = values + (p * oh + i) * ow;                                                       \
      uint8_t *c = code + (p * oh + i) * ow;                                                   \
      if (kh == 1 && kw == 2 && sw == 2 && dw == 1) {                                          \
        for (int64_t j = 0; j < ow; ++j) {                                                     \
          T a = r[2 * j], b = r[2 * j + 1];                                                    \
          int t = NEW_BEST(b, a);                                                              \
          c[j] = (uint8_t)t; v[j] = t ? b : a;                                                 \
        }                                                                                      \
      } else if (kh == 2 && kw == 2 && sh == 2 && sw == 2 && dh == 1 && dw == 1) {            \
        const T *r1 = r + W;                                                                   \
        for (int64_t j = 0; j < ow; ++j) {                                                     \
          T best = r[2 * j], e;                                                                \
          int k = 0, t;                                                                        \
          e = r[2 * j + 1]; t = NEW_BEST(e, best); best = t ? e : best; k = t ? 1 : k;        \
          e = r1[2 * j];    t = NEW_BEST(e, best); best = t ? e : best; k = t ? 2 : k;        \
          e = r1[2 * j + 1]; t = NEW_BEST(e, best); best = t ? e : best; k = t ? 3 : k;       \
          c[j] = (uint8_t)k; v[j] = best;                                                      \
        }                                                                                      \
      } else {                                                                                 \
        for (int64_t j = 0; j < ow; ++j) {                                                     \
          const T *w0 = r + j * sw;                                                            \
          T best = w0[0];                                                                      \
          int k = 0;                                                                           \
          for (int64_t a = 0; a < kh; ++a)                                                     \
            for (int64_t b = 0; b < kw; ++b) {                                                 \
              T e = w0[a * dh * W + b * dw];                                                   \
              if ((a || b) && NEW_BEST(e, best)) { best = e; k = (int)(a * kw + b); }          \
            }                                                                                  \
          c[j] = (uint8_t)k; v[j] = best;                                                      \
        }                                                                                      \
      }                                                                                        \
    }                                                                                          \
}                                                                                              \
                                                                                               \
/* The tangent at the coded entries: planes of t are (sample, tangent, channel), those of the \
   code (sample, channel). Bits are moved, not values: m is all ones where the later entry    \
   won. */                                                                                     \
void window_select_##SUF(const U *restrict t, const uint8_t *restrict code, int64_t N,       \
                         int64_t K, int64_t C, int64_t H, int64_t W, int64_t oh, int64_t ow,  \
                         int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t dh,          \
                         int64_t dw, U *restrict out) {                                       \
  _Pragma("omp parallel for collapse(4) if (N * K * C * oh * ow >= PARALLEL_MIN)")            \
  for (int64_t n = 0; n < N; ++n)                                                              \
    for (int64_t k = 0; k < K; ++k)                                                            \
      for (int64_t ch = 0; ch < C; ++ch)                                                       \
        for (int64_t i = 0; i < oh; ++i) {                                                     \
          const U *r = t + (((n * K + k) * C + ch) * H + i * sh) * W;                          \
          const uint8_t *c = code + ((n * C + ch) * oh + i) * ow;                              \
          U *o = out + (((n * K + k) * C + ch) * oh + i) * ow;                                 \
          if (kh == 1 && kw == 2 && sw == 2 && dw == 1) {                                      \
            for (int64_t j = 0; j < ow; ++j) {                                                 \
              U m = (U)0 - (U)c[j];                                                            \
              o[j] = (r[2 * j] & ~m) | (r[2 * j + 1] & m);                                     \
            }                                                                                  \
          } else if (kh == 2 && kw == 2 && sh == 2 && sw == 2 && dh == 1 && dw == 1) {        \
            for (int64_t j = 0; j < ow; ++j)                                                   \
              o[j] = r[2 * j + (c[j] & 1) + (c[j] >> 1) * W];                                  \
          } else {                                                                             \
            for (int64_t j = 0; j < ow; ++j)                                                   \
              o[j] = r[j * sw + (c[j] / kw) * dh * W + (c[j] % kw) * dw];                      \
          }                                                                                    \
        }                                                                                      \
}

KERNELS(float, uint32_t, f32)
KERNELS(double, uint64_t, f64)
"""

_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_LOCK = threading.Lock()
_STATE: dict = {}   # "lib": the loaded library or None, "why": the reason it is None
_FUNCTIONS: dict = {}   # dtype -> (window_max, window_select) of the loaded library


def _cache_dir() -> Path:
    root = os.environ.get("BOOK_NATIVE_CACHE") or os.environ.get("XDG_CACHE_HOME") \
        or Path.home() / ".cache"
    return Path(root) / "cpa-book"


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


_FLAGS = ["-O3", "-std=c99", "-shared", "-fPIC"]


def _torch_uses_libgomp() -> bool:
    """Whether this process has loaded GNU OpenMP as ``libgomp.so.1``, as PyTorch's Linux wheels
    do (``torch/lib/libgomp.so.1``). Only then do the loops use OpenMP: the library's
    ``libgomp.so.1`` resolves to the one already loaded, so the loops share PyTorch's threads and
    follow ``torch.set_num_threads``. A second OpenMP runtime beside another one would compete
    with PyTorch's threads instead."""
    try:
        with open("/proc/self/maps") as maps:
            return any(line.rstrip().endswith("/libgomp.so.1") for line in maps)
    except OSError:
        return False


def _compile(cc: str, flags: list) -> tuple[Path | None, str]:
    """The cached library for these flags, compiled if missing: (path, "") or (None, why)."""
    key = hashlib.sha256("\n".join([_SOURCE, cc, *flags, platform.platform()]).encode()).hexdigest()[:16]
    lib_path = _cache_dir() / f"native_pool-{key}.so"
    if lib_path.exists():
        return lib_path, ""
    try:
        lib_path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=lib_path.parent) as tmp:
            src, tmp_lib = Path(tmp) / "native_pool.c", Path(tmp) / "native_pool.so"
            src.write_text(_SOURCE)
            done = subprocess.run([cc, *flags, "-o", str(tmp_lib), str(src)], capture_output=True,
                                  text=True, timeout=120)
            if done.returncode != 0:
                return None, f"the C compiler failed: {done.stderr.strip()[:300]}"
            os.replace(tmp_lib, lib_path)   # atomic: a concurrent build leaves one whole file
    except (OSError, subprocess.SubprocessError) as err:
        return None, f"could not build the kernel: {err}"
    return lib_path, ""


def _build() -> tuple[ctypes.CDLL | None, str]:
    """Compile (once per source, compiler and platform; cached on disk) and load the library."""
    if os.environ.get("BOOK_NATIVE", "1") == "0":
        return None, "BOOK_NATIVE=0 in the environment"
    if sys.platform == "win32":
        return None, "not built on Windows"
    cc = _compiler()
    if cc is None:
        return None, "no C compiler found (cc, gcc, clang or $CC)"
    lib_path, why = None, ""
    for flags in ([*_FLAGS, "-fopenmp"], _FLAGS) if _torch_uses_libgomp() else (_FLAGS,):
        lib_path, why = _compile(cc, flags)
        if lib_path is not None:
            break
    if lib_path is None:
        return None, why
    try:
        lib = ctypes.CDLL(str(lib_path))
    except OSError as err:
        return None, f"could not load {lib_path}: {err}"
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    for dtype, suffix in _SUFFIX.items():
        pool, select = getattr(lib, f"window_max_{suffix}"), getattr(lib, f"window_select_{suffix}")
        pool.argtypes = [ptr] + [i64] * 11 + [ptr, ptr]
        select.argtypes = [ptr, ptr] + [i64] * 13 + [ptr]
        _FUNCTIONS[dtype] = pool, select
    threads = "on PyTorch's OpenMP threads" if "-fopenmp" in flags else "on one thread"
    return lib, f"compiled with {cc}, running {threads}; library {lib_path}"


def _library() -> ctypes.CDLL | None:
    if "lib" not in _STATE:
        with _LOCK:
            if "lib" not in _STATE:
                _STATE["lib"], _STATE["why"] = _build()
    return _STATE["lib"]


def status() -> str:
    """How max-pool tangents run here: the compiled kernels (and where the library lives), or
    why not (then ``helpers.jvp`` uses PyTorch ops, with the same results, more slowly).

    >>> from helpers import native_pool
    >>> native_pool.status().startswith("compiled with") == native_pool.available()
    True
    """
    _library()
    return _STATE["why"]


def available() -> bool:
    """Whether the compiled kernels can run in this process (see :func:`status` for why not)."""
    return _library() is not None


def _plain(t: torch.Tensor) -> bool:
    """A tensor the loops can read: contiguous float32/float64 on the CPU, outside autograd."""
    return (t.device.type == "cpu" and t.dtype in _SUFFIX and t.is_contiguous()
            and type(t) is torch.Tensor and not (t.requires_grad and torch.is_grad_enabled()))


@functools.lru_cache(maxsize=64)
def _window(kernel: tuple, stride: tuple, dilation: tuple) -> tuple:
    """(kh, kw, sh, sw, dh, dw), 1-D pooling as rows of height 1; checked once per window."""
    sizes = (kernel, stride, dilation)
    if len(kernel) not in (1, 2) or any(len(v) != len(kernel) or not all(
            isinstance(i, int) and i >= 1 for i in v) for v in sizes):
        raise ParameterError("kernel, stride and dilation must be tuples of one or two positive "
                             f"ints each, one per pooled axis; got {kernel}, {stride}, {dilation}")
    return tuple(i for v in sizes for i in ((1, *v) if len(kernel) == 1 else v))


@functools.lru_cache(maxsize=64)
def _geometry(shape: torch.Size, window: tuple):
    """(planes, H, W, out_h, out_w) of a pooling without padding, or None if a window is empty
    or has more entries than a byte can name."""
    kh, kw, sh, sw, dh, dw = window
    H, W = (1, shape[-1]) if len(shape) == 3 else shape[-2:]
    oh, ow = (H - dh * (kh - 1) - 1) // sh + 1, (W - dw * (kw - 1) - 1) // sw + 1
    if oh < 1 or ow < 1 or kh * kw > 255:
        return None
    return shape[0] * shape[1], H, W, oh, ow


def _resolve(t, kernel, stride, dilation) -> tuple:
    if not isinstance(t, torch.Tensor):
        raise ParameterError(f"expected a tensor, got {type(t).__name__}")
    if not (type(kernel) is type(stride) is type(dilation) is tuple):
        raise ParameterError("kernel, stride and dilation must be tuples, one int per pooled axis; "
                             f"got {kernel!r}, {stride!r}, {dilation!r}")
    return _window(kernel, stride, dilation)


def window_max(x: torch.Tensor, kernel: tuple, stride: tuple, dilation: tuple):
    """Max-pool without padding or ceil mode of a batched 3-D (1-D pooling) or 4-D (2-D) input,
    with the code of each window's winner: ``(values, code)`` or ``None`` where the compiled
    kernel does not apply. ``kernel``, ``stride`` and ``dilation`` are tuples of one positive
    int per pooled axis (else ``ParameterError``). ``code`` (uint8) is the winner's position in
    its window, counted in row-major order.

    >>> import torch
    >>> from helpers import native_pool
    >>> x = torch.tensor([[[1.0, 3.0, 2.0, 2.0, float("nan"), 0.0]]])   # (N, C, L)
    >>> pooled = native_pool.window_max(x, (2,), (2,), (1,))
    >>> pooled is None or pooled[1].tolist() == [[[1, 0, 0]]]   # a tie keeps the first, NaN wins
    True
    """
    window = _resolve(x, kernel, stride, dilation)
    if _library() is None or x.dim() != len(kernel) + 2 or not _plain(x):
        return None
    geometry = _geometry(x.shape, window)
    if geometry is None:
        return None
    planes, H, W, oh, ow = geometry
    out_shape = (*x.shape[:2], ow) if len(kernel) == 1 else (*x.shape[:2], oh, ow)
    values = torch.empty(out_shape, dtype=x.dtype)
    code = torch.empty(out_shape, dtype=torch.uint8)
    _FUNCTIONS[x.dtype][0](x.data_ptr(), *geometry, *window, values.data_ptr(), code.data_ptr())
    return values, code


def window_select(t: torch.Tensor, code: torch.Tensor, K: int, kernel: tuple, stride: tuple,
                  dilation: tuple):
    """The tangent of :func:`window_max`'s pooling: ``t`` (``K`` tangents per sample, stacked as
    ``(N * K, C, ...)``) read at the coded entries, or ``None`` where the kernel does not apply.

    >>> import torch
    >>> from helpers import native_pool
    >>> x = torch.tensor([[[1.0, 3.0, 2.0, 2.0, float("nan"), 0.0]]])
    >>> t = torch.tensor([[[10.0, 11.0, 12.0, 13.0, 14.0, 15.0]]])   # a tangent at x
    >>> pooled = native_pool.window_max(x, (2,), (2,), (1,))
    >>> out = pooled and native_pool.window_select(t, pooled[1], 1, (2,), (2,), (1,))
    >>> out is None or out.tolist() == [[[11.0, 12.0, 14.0]]]   # None: no compiler here
    True
    """
    window = _resolve(t, kernel, stride, dilation)
    if not isinstance(code, torch.Tensor) or code.dtype != torch.uint8:
        raise ParameterError("code must be the uint8 tensor window_max returned")
    if _library() is None or not _plain(t) or t.dim() != code.dim() \
            or t.shape[0] != code.shape[0] * K or t.shape[1] != code.shape[1]:
        return None
    geometry = _geometry(t.shape, window)
    if geometry is None or geometry[3:] != ((1,) if len(kernel) == 1 else code.shape[-2:-1]) \
            + code.shape[-1:]:
        return None
    _, H, W, oh, ow = geometry
    out = torch.empty((t.shape[0], *code.shape[1:]), dtype=t.dtype)
    _FUNCTIONS[t.dtype][1](t.data_ptr(), code.data_ptr(), code.shape[0], K, code.shape[1], H, W, oh,
                           ow, *window, out.data_ptr())
    return out
