"""helpers.warps against independent oracles: torch's affine_grid, kornia's thin-plate splines,
a loop-by-loop bilinear interpolation, and exact pixel permutations (shifts, quarter turns)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers._checks import ParameterError
from helpers.warps import (affine_grid, affine_set, bilinear_taps, control_grid, n_params, pixel_grid,
                           sampling_grid, tps_basis, tps_matrix, warp, warp_matrix)

D64 = torch.float64


def _rand(*shape, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape))


@pytest.mark.parametrize("family,grid", [("affine", None), ("tps", 3), ("affine+tps", 3), ("tps", 2)])
def test_identity_theta_returns_the_image(family, grid):
    c = _rand(4, 7, 9)
    theta = torch.zeros(4, n_params(family, 0 if grid is None else grid * grid), dtype=D64)
    out = warp(c, theta, family=family, grid=grid)
    assert torch.allclose(out, c, atol=1e-6, rtol=0)


def test_tps_interpolates_its_control_points():
    p = control_grid(3)
    assert torch.allclose(tps_basis(p, p), torch.eye(9, dtype=D64), atol=1e-10)
    # on a 5x5 image the 3x3 grid sits on pixels (0, 2, 4)^2: the sampling grid moves them by v
    v = 0.1 * _rand(9, 2, seed=1)
    g = sampling_grid(v.reshape(1, -1), (5, 5), family="tps", grid=3)[0]
    at = g[::2, ::2].reshape(-1, 2)
    assert torch.allclose(at, p + v, atol=1e-10)
    # interpolation at arbitrary (off-grid) control points too
    q = torch.tensor([[-0.7, -0.2], [0.3, -0.9], [0.8, 0.6], [-0.1, 0.5], [0.0, 0.0]], dtype=D64)
    assert torch.allclose(tps_basis(q, q), torch.eye(5, dtype=D64), atol=1e-9)


def test_tps_reproduces_affine_displacements():
    """A spline of minimal bending energy reproduces an affine displacement field exactly."""
    p = control_grid(3)
    u = pixel_grid((6, 5))
    A = torch.tensor([[0.1, -0.2], [0.05, 0.15]], dtype=D64)
    t = torch.tensor([0.03, -0.04], dtype=D64)
    B = tps_matrix(p, (6, 5))
    assert torch.allclose(B @ (p @ A.T + t), u @ A.T + t, atol=1e-10)


def test_tps_matches_scipy_thin_plate_rbf():
    from scipy.interpolate import RBFInterpolator

    p = control_grid(3)
    v = 0.15 * _rand(9, 2, seed=2)
    q = pixel_grid((7, 6))
    ref = RBFInterpolator(p.numpy(), v.numpy(), kernel="thin_plate_spline", degree=1)(q.numpy())
    assert np.allclose((tps_matrix(p, (7, 6)) @ v).numpy(), ref, atol=1e-9)


def test_kornia_spline_meets_ours_at_the_control_points():
    """kornia's get_tps_transform centres its kernels on the target points (not the classic TPS),
    so the two splines agree where both interpolate, at the control points, and differ between."""
    kornia_tps = pytest.importorskip("kornia.geometry.transform")
    p = control_grid(3)
    v = 0.15 * _rand(9, 2, seed=2)
    kw, aw = kornia_tps.get_tps_transform(p[None], (p + v)[None])
    theirs = kornia_tps.warp_points_tps(p[None], (p + v)[None], kw, aw)[0]
    ours = p + tps_basis(p, p) @ v
    assert torch.allclose(ours, theirs, atol=1e-8)


def test_affine_grid_matches_torch():
    theta = torch.eye(2, 3, dtype=D64)[None] + 0.2 * _rand(5, 2, 3, seed=3)
    ref = F.affine_grid(theta, (5, 1, 6, 7), align_corners=True)
    assert torch.allclose(affine_grid(theta, (6, 7)), ref, atol=1e-12)
    flat = (theta - torch.eye(2, 3, dtype=D64)).reshape(5, 6)
    assert torch.allclose(sampling_grid(flat, (6, 7)), ref, atol=1e-12)


def _bilinear_loop(c: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Sample c at normalised (x, y) points one by one, zeros outside: the oracle."""
    H, W = c.shape
    out = np.zeros(grid.shape[:-1])
    for idx in np.ndindex(*grid.shape[:-1]):
        x = (grid[idx][0] + 1) * (W - 1) / 2
        y = (grid[idx][1] + 1) * (H - 1) / 2
        x0, y0 = math.floor(x), math.floor(y)
        val = 0.0
        for yy in (y0, y0 + 1):
            for xx in (x0, x0 + 1):
                if 0 <= xx < W and 0 <= yy < H:
                    val += (1 - abs(x - xx)) * (1 - abs(y - yy)) * c[yy, xx]
        out[idx] = val
    return out


@pytest.mark.parametrize("family,grid", [("affine", None), ("affine+tps", 3)])
def test_warp_matches_loop_bilinear_and_warp_matrix(family, grid):
    c = _rand(6, 5, seed=4)
    theta = 0.2 * _rand(3, n_params(family, 0 if grid is None else 9), seed=5)
    out = warp(c, theta, family=family, grid=grid)
    g = sampling_grid(theta, (6, 5), family=family, grid=grid)
    for j in range(3):
        assert np.allclose(out[j].numpy(), _bilinear_loop(c.numpy(), g[j].numpy()), atol=1e-10)
    W = warp_matrix(theta, (6, 5), family=family, grid=grid)
    assert torch.allclose(W @ c.reshape(-1), out.reshape(3, -1), atol=1e-10)
    assert int((W != 0).sum(-1).max()) <= 4
    idx, wts = bilinear_taps(g, (6, 5))
    assert torch.allclose((wts * c.reshape(-1)[idx]).sum(-1), out, atol=1e-10)


def test_one_pixel_shift_and_quarter_turn_are_exact():
    c = _rand(5, 5, seed=6)
    step = 2 / 4                                                        # one pixel, 5 pixels across
    out = warp(c, torch.tensor([0.0, 0.0, step, 0.0, 0.0, 0.0], dtype=D64))[0]
    assert torch.allclose(out[:, :-1], c[:, 1:], atol=1e-12) and torch.all(out[:, -1] == 0)
    turn = warp(c, affine_set(angles=(90,)))[0]                         # g(u) = R u: a permutation
    assert torch.allclose(turn, torch.rot90(c, 1, (0, 1)), atol=1e-12) or \
        torch.allclose(turn, torch.rot90(c, -1, (0, 1)), atol=1e-12)


def test_affine_set_holds_the_identity_and_its_size():
    T = affine_set(angles=(-10, 0, 10), scales=(0.9, 1.0), shifts=(-0.2, 0.0, 0.2))
    assert T.shape == (3 * 2 * 9, 6)
    assert (T.abs().sum(1) == 0).sum() == 1


def test_types_and_devices():
    c = np.random.default_rng(7).random((3, 4, 4))
    out = warp(c, np.zeros((3, 6)))
    assert isinstance(out, np.ndarray) and np.allclose(out, c)
    t = torch.rand(2, 4, 4, dtype=torch.float32)
    out = warp(t, torch.zeros(2, 6))
    assert out.dtype == torch.float32 and out.device == t.device
    assert isinstance(tps_matrix(control_grid(2).numpy(), (4, 4)), np.ndarray)


def test_theta_is_differentiable():
    c = _rand(6, 6, seed=8)
    th = torch.zeros(1, 6, dtype=D64, requires_grad=True)
    x = warp(c, torch.tensor([[0.05, 0.0, 0.1, 0.0, 0.0, -0.1]], dtype=D64))
    loss = ((warp(c, th) - x) ** 2).sum()
    loss.backward()
    assert th.grad is not None and torch.isfinite(th.grad).all() and th.grad.abs().sum() > 0


@pytest.mark.parametrize("call,match", [
    (lambda: warp(torch.zeros(4, 4), torch.zeros(6), family="rigid"), "family"),
    (lambda: warp(torch.zeros(4), torch.zeros(6)), "images"),
    (lambda: warp(torch.zeros(4, 4), torch.zeros(5)), "parameters"),
    (lambda: warp(torch.zeros(4, 4), torch.zeros(18), family="tps"), "grid"),
    (lambda: warp(torch.zeros(2, 4, 4), torch.zeros(3, 6)), "batches"),
    (lambda: tps_basis(torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]), torch.zeros(1, 2)), "collinear"),
    (lambda: warp(torch.full((4, 4), float("nan")), torch.zeros(6)), "NaN"),
    (lambda: control_grid(1), "int"),
])
def test_bad_input_raises_a_parameter_error(call, match):
    with pytest.raises(ParameterError, match=match):
        call()
    with pytest.raises(ValueError):
        call()
