"""Tests of helpers.native_pool (compiled max-pool kernels) against PyTorch's pooling with indices.

Oracle: ``F.max_pool1d_with_indices`` / ``F.max_pool2d_with_indices``, whose values must come out
bit for bit (compared as integers, so NaN payloads and the sign of zero count) and whose indices,
gathered from a tangent, must give the kernel's tangent exactly. The inputs are small integers
(many ties) with NaN, +-inf and -0.0 mixed in, in float32 and float64.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from helpers import native_pool

needs_kernel = pytest.mark.skipif(not native_pool.available(), reason=native_pool.status())
BITS = {torch.float32: torch.int32, torch.float64: torch.int64}


def awkward(shape, dtype, gen):
    x = torch.randint(-3, 4, shape, generator=gen).to(dtype)
    u = torch.rand(shape, generator=gen)
    x[u < 0.05] = float("nan")
    x[(u >= 0.05) & (u < 0.08)] = float("inf")
    x[(u >= 0.08) & (u < 0.11)] = -float("inf")
    x[(u >= 0.11) & (u < 0.14)] = -0.0
    return x


def check_against_pytorch(x, kernel, stride, dilation, K, gen):
    pooled = native_pool.window_max(x, kernel, stride, dilation)
    assert pooled is not None
    values, code = pooled
    pool = F.max_pool1d_with_indices if len(kernel) == 1 else F.max_pool2d_with_indices
    ref_values, ref_idx = pool(x, kernel, stride, 0, dilation)
    assert torch.equal(values.view(BITS[x.dtype]), ref_values.view(BITS[x.dtype]))
    N, C = x.shape[:2]
    t = torch.randn(N * K, *x.shape[1:], dtype=x.dtype, generator=gen)
    got = native_pool.window_select(t, code, K, kernel, stride, dilation)
    idx = ref_idx.flatten(2).unsqueeze(1).expand(N, K, C, -1)
    ref = t.view(N, K, C, -1).gather(3, idx).reshape(N * K, *ref_idx.shape[1:])
    assert torch.equal(got, ref)


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("K", [1, 3])
def test_1d_windows_match_pytorch(dtype, K):
    gen = torch.Generator().manual_seed(0)
    for k, s, d, L in itertools.product((1, 2, 3), (1, 2, 3), (1, 2), (7, 8, 9)):
        check_against_pytorch(awkward((3, 4, L), dtype, gen), (k,), (s,), (d,), K, gen)


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("K", [1, 3])
def test_2d_windows_match_pytorch(dtype, K):
    gen = torch.Generator().manual_seed(1)
    for kernel, stride, dilation, (H, W) in itertools.product(
            ((2, 2), (3, 2), (1, 3)), ((2, 2), (1, 2), (3, 1)), ((1, 1), (2, 1)), ((6, 6), (7, 9))):
        check_against_pytorch(awkward((2, 3, H, W), dtype, gen), kernel, stride, dilation, K, gen)


@needs_kernel
def test_cases_the_kernel_leaves_to_pytorch():
    x = torch.randn(2, 3, 8)
    assert native_pool.window_max(x.transpose(1, 2), (2,), (2,), (1,)) is None       # not contiguous
    assert native_pool.window_max(x.half(), (2,), (2,), (1,)) is None                 # dtype
    assert native_pool.window_max(x[0], (2,), (2,), (1,)) is None                     # unbatched
    assert native_pool.window_max(x, (9,), (1,), (1,)) is None                        # empty output
    with torch.enable_grad():
        assert native_pool.window_max(x.requires_grad_(), (2,), (2,), (1,)) is None   # autograd
    values, code = native_pool.window_max(x.detach(), (2,), (2,), (1,))
    t = torch.randn(2, 3, 8)
    strided = torch.randn(2, 8, 3).transpose(1, 2)
    assert native_pool.window_select(strided, code, 1, (2,), (2,), (1,)) is None      # not contiguous
    assert native_pool.window_select(t, code, 2, (2,), (2,), (1,)) is None             # wrong K
    assert native_pool.window_select(t[:, :, :6].contiguous(), code, 1, (2,), (2,), (1,)) is None


def test_kernel_builds_where_a_compiler_exists(monkeypatch):
    # On a machine with a C compiler the kernels must build: a silent fallback would hide a
    # broken build behind the (slower) PyTorch path.
    if native_pool._compiler() is None or native_pool.sys.platform == "win32":
        pytest.skip("no C compiler here")
    assert native_pool.available(), native_pool.status()
    assert "compiled with" in native_pool.status()
    # PyTorch's Linux wheels run on GNU OpenMP: the loops must then share its threads.
    if (Path(torch.__file__).parent / "lib" / "libgomp.so.1").exists():
        assert native_pool._torch_uses_libgomp()
        assert "running on PyTorch's OpenMP threads" in native_pool.status()


def test_switch_and_failed_compiler_give_reasons(monkeypatch, tmp_path):
    monkeypatch.setenv("BOOK_NATIVE", "0")
    assert native_pool._build() == (None, "BOOK_NATIVE=0 in the environment")
    monkeypatch.delenv("BOOK_NATIVE")
    if shutil.which("false") is None:
        pytest.skip("no `false` program to stand in for a broken compiler")
    monkeypatch.setenv("BOOK_NATIVE_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "false")
    lib, why = native_pool._build()
    assert lib is None and why.startswith("the C compiler failed")
    assert not list(tmp_path.rglob("*.so"))   # nothing half-built is left for the next run


@needs_kernel
@pytest.mark.parametrize("K", [None, 3])
@pytest.mark.parametrize("name", ["LeNet (max-pool)", "1-D conv net"])
def test_the_jvp_pools_on_the_kernels(name, K, monkeypatch):
    # The zoo's poolings (2x2 and pairs, no padding) take the compiled path in the JVP, and the
    # results equal the PyTorch path's: y bit for bit, the tangent exactly (the same entries).
    # K tangents per sample take the compiled select for 1-D pooling only (PyTorch's gather
    # for 2-D).
    from helpers import jvp as cpa, zoo
    calls = []
    select = native_pool.window_select
    monkeypatch.setattr(native_pool, "window_select", lambda *a: calls.append(a[2]) or select(*a))
    model, shape = zoo.build(name, seed=0, dtype=torch.float64)
    x = torch.randn(4, *shape, dtype=torch.float64)
    v = torch.randn(4, *(() if K is None else (K,)), *shape, dtype=torch.float64)
    with torch.no_grad():
        y, t = cpa.jvp(model, x, v)
        assert calls == ([] if K and name.startswith("LeNet") else [K or 1] * 2)
        monkeypatch.setitem(native_pool._STATE, "lib", None)
        y_torch, t_torch = cpa.jvp(model, x, v)
    assert torch.equal(y, model(x)) and torch.equal(y, y_torch)
    assert torch.equal(t, t_torch)


def test_bad_arguments_raise_parameter_error():
    from helpers._checks import ParameterError
    x = torch.randn(2, 3, 8)
    for bad in [((2,), (2,), (0,)), ((2,), 2, (1,)), ((2, 2, 2),) * 3, ((2,), (2, 2), (1,))]:
        with pytest.raises(ParameterError):
            native_pool.window_max(x, *bad)
    with pytest.raises(ParameterError):
        native_pool.window_max(x.numpy(), (2,), (2,), (1,))
    with pytest.raises(ParameterError):
        native_pool.window_select(x, torch.zeros(2, 3, 4), 1, (2,), (2,), (1,))


@needs_kernel
@pytest.mark.parametrize("nd", [1, 2])
def test_codes_give_pytorchs_indices(nd):
    # helpers.jvp gathers K tangents per sample at indices made from the codes.
    from helpers.jvp import _window_indices
    gen = torch.Generator().manual_seed(2)
    windows = [((2,), (2,), (1,)), ((3,), (2,), (2,)), ((1,), (3,), (1,))] if nd == 1 else \
        [((2, 2), (2, 2), (1, 1)), ((3, 2), (2, 1), (1, 2)), ((1, 3), (3, 1), (2, 1))]
    pool = F.max_pool1d_with_indices if nd == 1 else F.max_pool2d_with_indices
    for kernel, stride, dilation in windows:
        x = awkward((2, 3, 9) if nd == 1 else (2, 3, 7, 9), torch.float64, gen)
        _, code = native_pool.window_max(x, kernel, stride, dilation)
        _, ref_idx = pool(x, kernel, stride, 0, dilation)
        assert torch.equal(_window_indices(code, x.shape, kernel, stride, dilation), ref_idx)
