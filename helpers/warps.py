"""Spatial-transformer warps of small images: affine maps and thin-plate splines, batched in torch.

A warp resamples an image ``c`` on a deformed grid: ``(T_theta c)(u) = c(g_theta(u))``, with
bilinear interpolation and zeros outside the image. Coordinates are normalised to [-1, 1] with
``align_corners=True`` everywhere (the centre of the first pixel is -1, of the last +1), in
``(x, y)`` order, as :func:`torch.nn.functional.grid_sample` reads them.

The parameters ``theta`` of a warp are a flat vector whose zero is the identity:

``"affine"`` (6 numbers)
    ``A - [[1, 0, 0], [0, 1, 0]]`` row by row; the grid is ``g(u) = A [u; 1]``.
``"tps"`` (``2 m`` numbers)
    the displacements ``v`` (m, 2) of ``m`` control points; the grid is ``g(u) = u + (B v)(u)``,
    where ``B = tps_matrix(control_points, size)`` is the thin-plate-spline interpolation
    operator. The spline's weights solve a linear system whose right-hand side is ``v``, so the
    dense displacement field is linear in ``v`` and ``B`` (``H W`` x ``m``) is computed once.
``"affine+tps"`` (``6 + 2 m`` numbers)
    both: ``g(u) = A [u; 1] + (B v)(u)``.

A warp is linear in the image: ``T_theta c = W_theta c`` with a sparse matrix ``W_theta``
(four bilinear taps per output pixel), which :func:`warp_matrix` returns densely and the
centroid step of :mod:`helpers.st_kmeans` uses. Torch tensors in, torch tensors out on the
input's device; numpy in, numpy out.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from helpers._checks import ParameterError, check_int, check_option, is_torch

__all__ = ["FAMILIES", "n_params", "pixel_grid", "control_grid", "tps_basis", "tps_matrix",
           "affine_grid", "sampling_grid", "warp", "warp_matrix", "bilinear_taps", "affine_set", "random_warps"]

#: The continuous warp families; :mod:`helpers.st_kmeans` adds ``"finite"`` (a given set).
FAMILIES = ("affine", "tps", "affine+tps")

_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _size(size) -> tuple[int, int]:
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise ParameterError(f"size must be (H, W), got {size!r}")
    h = check_int(size[0], "size[0] (H)", low=2, hint="; images need at least 2x2 pixels")
    w = check_int(size[1], "size[1] (W)", low=2, hint="; images need at least 2x2 pixels")
    return h, w


def _tensor(x, name: str, dtype=None, device=None) -> torch.Tensor:
    if is_torch(x):
        t = x
    else:
        try:
            t = torch.as_tensor(np.asarray(x, dtype=np.float64))
        except (TypeError, ValueError) as err:
            raise ParameterError(f"{name} must be a numeric array or tensor") from err
    if t.is_complex() or not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
        raise ParameterError(f"{name} must hold real numbers, got dtype {t.dtype}")
    if dtype is not None or not t.is_floating_point():
        t = t.to(dtype or torch.float64)
    if device is not None:
        t = t.to(device)
    if not torch.isfinite(t).all():
        raise ParameterError(f"{name} holds NaN or infinite values")
    return t


def n_params(family: str, m: int = 0) -> int:
    """Number of parameters of a warp of ``family`` with ``m`` TPS control points.

    Examples
    --------
    >>> n_params("affine"), n_params("tps", 9), n_params("affine+tps", 9)
    (6, 18, 24)
    """
    check_option(family, "family", FAMILIES)
    m = check_int(m, "m", low=0)
    if family != "affine" and m < 3:
        raise ParameterError(f"family {family!r} needs at least 3 control points, got m={m}; use grid >= 2")
    return {"affine": 6, "tps": 2 * m, "affine+tps": 6 + 2 * m}[family]


def pixel_grid(size, *, dtype=torch.float64, device=None) -> torch.Tensor:
    """The pixel centres of an ``H x W`` image in normalised ``(x, y)`` coordinates, row by row.

    Returns
    -------
    torch.Tensor
        Shape (H W, 2); pixel ``(r, s)`` sits at row ``r W + s``, with ``x = -1 + 2 s / (W - 1)``
        and ``y = -1 + 2 r / (H - 1)`` (``align_corners=True``).

    Examples
    --------
    >>> pixel_grid((2, 3)).tolist()
    [[-1.0, -1.0], [0.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [0.0, 1.0], [1.0, 1.0]]
    """
    h, w = _size(size)
    ys = torch.linspace(-1.0, 1.0, h, dtype=dtype, device=device)
    xs = torch.linspace(-1.0, 1.0, w, dtype=dtype, device=device)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)


def control_grid(n: int, *, dtype=torch.float64, device=None) -> torch.Tensor:
    """A regular ``n x n`` grid of control points over [-1, 1]^2, shape (n^2, 2), ``(x, y)`` order.

    Examples
    --------
    >>> control_grid(2).tolist()
    [[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]]
    """
    n = check_int(n, "n", low=2, hint="; a thin-plate spline needs at least 3 points, a 2x2 grid has 4")
    return pixel_grid((n, n), dtype=dtype, device=device)


def _U(r2: torch.Tensor) -> torch.Tensor:
    """The thin-plate kernel U(rho) = rho^2 log rho^2, written in rho^2 (0 at 0)."""
    return torch.where(r2 > 0, r2 * torch.log(torch.clamp(r2, min=1e-300)), torch.zeros_like(r2))


def tps_basis(control_points, query_points) -> torch.Tensor:
    """The thin-plate-spline interpolation operator from control points to query points.

    For displacements ``v`` (m, 2) at the control points ``p``, the spline
    ``f(q) = a_0 + a_1 q_x + a_2 q_y + sum_l w_l U(|q - p_l|)``, ``U(rho) = rho^2 log rho^2``,
    that interpolates them (``f(p_l) = v_l``) with the least bending energy is ``f(q) = B v``.
    ``(w, a)`` solve the ``(m + 3)``-square system ``[[K, P], [P^T, 0]] [w; a] = [v; 0]``, so ``B``
    is the first ``m`` columns of its inverse, mapped through ``[U(|q - p|), 1, q]``.

    Parameters
    ----------
    control_points
        (m, 2) points, not all on a line (m >= 3).
    query_points
        (Q, 2) points.

    Returns
    -------
    torch.Tensor
        (Q, m), float64 on the control points' device (numpy in, numpy out).

    Raises
    ------
    ValueError
        (a ``ParameterError``, also a TypeError) On malformed shapes, or control points that are collinear or repeated.

    Examples
    --------
    >>> p = control_grid(3)
    >>> B = tps_basis(p, p)                  # interpolation: the identity at the control points
    >>> bool(torch.allclose(B, torch.eye(9, dtype=B.dtype), atol=1e-10))
    True
    """
    p = _tensor(control_points, "control_points", torch.float64)
    q = _tensor(query_points, "query_points", torch.float64, device=p.device)
    if p.ndim != 2 or p.shape[1] != 2 or p.shape[0] < 3:
        raise ParameterError(f"control_points must be (m, 2) with m >= 3, got shape {tuple(p.shape)}")
    if q.ndim != 2 or q.shape[1] != 2:
        raise ParameterError(f"query_points must be (Q, 2), got shape {tuple(q.shape)}")
    m = p.shape[0]
    K = _U(torch.cdist(p, p) ** 2)
    P = torch.cat([torch.ones(m, 1, dtype=p.dtype, device=p.device), p], dim=1)
    L = torch.zeros(m + 3, m + 3, dtype=p.dtype, device=p.device)
    L[:m, :m], L[:m, m:], L[m:, :m] = K, P, P.T
    if torch.linalg.matrix_rank(L).item() < m + 3:
        raise ParameterError("control_points are collinear or repeated; the spline is not defined")
    Linv = torch.linalg.inv(L)[:, :m]                               # (m + 3, m)
    Q = torch.cat([_U(torch.cdist(q, p) ** 2),
                   torch.ones(q.shape[0], 1, dtype=q.dtype, device=q.device), q], dim=1)
    B = Q @ Linv
    return B.numpy() if not is_torch(control_points) else B


_TPS_CACHE: dict = {}


def tps_matrix(control_points, size) -> torch.Tensor:
    """The dense TPS displacement operator of an ``H x W`` image, precomputed once.

    ``tps_matrix(p, (H, W)) @ v`` is the (H W, 2) displacement field, at every pixel centre
    (:func:`pixel_grid`), of the thin-plate spline that moves control point ``p_l`` by ``v_l``.

    Parameters
    ----------
    control_points
        (m, 2) in normalised ``(x, y)`` coordinates, e.g. :func:`control_grid`.
    size
        ``(H, W)``.

    Returns
    -------
    torch.Tensor
        (H W, m), float64 on the control points' device (numpy in, numpy out).

    Examples
    --------
    >>> B = tps_matrix(control_grid(3), (5, 5))   # the 3x3 grid sits on pixels 0, 2, 4
    >>> B.shape, round(float(B[12, 4]), 6)         # the centre pixel is control point 4
    (torch.Size([25, 9]), 1.0)
    """
    h, w = _size(size)
    if is_torch(control_points):
        dev = control_points.device
        return tps_basis(control_points, pixel_grid((h, w), device=dev))
    return tps_basis(control_points, pixel_grid((h, w)).numpy())


def _basis_for(family: str, m_or_basis, size, dtype, device):
    """The TPS operator (HW, m) in ``dtype`` on ``device`` for a grid size or a given basis."""
    if family == "affine":
        return None
    if m_or_basis is None:
        raise ParameterError(f"family {family!r} needs grid=<n> (an n x n control grid) or basis=")
    if isinstance(m_or_basis, (int, np.integer)) and not isinstance(m_or_basis, bool):
        n = check_int(m_or_basis, "grid", low=2)
        key = (n, size, str(device), dtype)
        if key not in _TPS_CACHE:
            _TPS_CACHE[key] = tps_matrix(control_grid(n, device=device), size).to(dtype)
        return _TPS_CACHE[key]
    B = _tensor(m_or_basis, "basis", dtype, device)
    if B.ndim != 2 or B.shape[0] != size[0] * size[1]:
        raise ParameterError(f"basis must be (H W, m) = ({size[0] * size[1]}, m), got {tuple(B.shape)}")
    return B


def affine_grid(theta, size) -> torch.Tensor:
    """The sampling grid ``A [u; 1]`` of affine matrices ``theta`` over an ``H x W`` image.

    Parameters
    ----------
    theta
        (P, 2, 3) affine matrices (the identity is ``[[1, 0, 0], [0, 1, 0]]``).
    size
        ``(H, W)``.

    Returns
    -------
    torch.Tensor
        (P, H, W, 2), ``(x, y)`` coordinates, ``align_corners=True``; the same as
        ``torch.nn.functional.affine_grid(theta, (P, 1, H, W), align_corners=True)``.

    Examples
    --------
    >>> eye = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    >>> bool(torch.equal(affine_grid(eye, (3, 4))[0].reshape(-1, 2), pixel_grid((3, 4), dtype=torch.float32)))
    True
    """
    h, w = _size(size)
    t = _tensor(theta, "theta")
    if t.ndim != 3 or t.shape[1:] != (2, 3):
        raise ParameterError(f"theta must be (P, 2, 3) affine matrices, got shape {tuple(t.shape)}")
    u = pixel_grid((h, w), dtype=t.dtype, device=t.device)
    uh = torch.cat([u, torch.ones(h * w, 1, dtype=t.dtype, device=t.device)], dim=1)
    return torch.einsum("qj,pij->pqi", uh, t).reshape(t.shape[0], h, w, 2)


def _param_matrix(family: str, B, size, dtype, device) -> torch.Tensor:
    """The constant (p, H W 2) matrix M with ``g(u) = u + theta M``: the grid is linear in theta."""
    u = pixel_grid(size, dtype=dtype, device=device)                 # (HW, 2)
    hw = u.shape[0]
    blocks = []
    if family in ("affine", "affine+tps"):
        uh = torch.cat([u, torch.ones(hw, 1, dtype=dtype, device=device)], dim=1)   # (HW, 3)
        A = torch.zeros(6, hw, 2, dtype=dtype, device=device)
        A[0:3, :, 0] = uh.T                                          # x' = x + d0 x + d1 y + d2
        A[3:6, :, 1] = uh.T                                          # y' = y + d3 x + d4 y + d5
        blocks.append(A.reshape(6, 2 * hw))
    if family in ("tps", "affine+tps"):
        m = B.shape[1]
        V = torch.zeros(m, 2, hw, 2, dtype=dtype, device=device)     # v_l = (v_lx, v_ly)
        V[:, 0, :, 0] = B.T
        V[:, 1, :, 1] = B.T
        blocks.append(V.reshape(2 * m, 2 * hw))
    return torch.cat(blocks, dim=0)


def _grid(theta: torch.Tensor, size, family: str, B, M=None) -> torch.Tensor:
    """(P, HW, 2) sampling coordinates for flat parameters (P, p); differentiable in theta."""
    if M is None:
        M = _param_matrix(family, B, size, theta.dtype, theta.device)
    u = pixel_grid(size, dtype=theta.dtype, device=theta.device).reshape(1, -1)
    return (u + theta @ M).reshape(theta.shape[0], -1, 2)


def _prepare(theta, size, family, grid, basis, dtype=None, device=None):
    check_option(family, "family", FAMILIES)
    t = _tensor(theta, "theta", dtype, device)
    if t.ndim == 1:
        t = t[None]
    if t.ndim != 2:
        raise ParameterError(f"theta must be (P, p) flat warp parameters, got shape {tuple(t.shape)}")
    B = _basis_for(family, basis if basis is not None else grid, size, t.dtype, t.device)
    p = 6 + (0 if B is None else 2 * B.shape[1]) - (6 if family == "tps" else 0)
    if t.shape[1] != p:
        raise ParameterError(f"family {family!r} with {0 if B is None else B.shape[1]} control points has"
                             f" {p} parameters per warp; theta has {t.shape[1]}")
    return t, B


def sampling_grid(theta, size, *, family: str = "affine", grid: int | None = None, basis=None) -> torch.Tensor:
    """The sampling grid ``g_theta`` of flat warp parameters, shape (P, H, W, 2).

    Parameters
    ----------
    theta
        (P, p) or (p,) flat parameters (zero is the identity; see the module's docstring).
    size
        ``(H, W)``.
    family
        ``"affine"``, ``"tps"`` or ``"affine+tps"``.
    grid
        For the TPS families: an ``n x n`` control grid (:func:`control_grid`).
    basis
        Instead of ``grid``: a precomputed (H W, m) :func:`tps_matrix`.

    Examples
    --------
    >>> g = sampling_grid(torch.zeros(1, 18, dtype=torch.float64), (4, 4), family="tps", grid=3)
    >>> bool(torch.allclose(g.reshape(-1, 2), pixel_grid((4, 4))))
    True
    """
    size = _size(size)
    t, B = _prepare(theta, size, family, grid, basis)
    g = _grid(t, size, family, B).reshape(t.shape[0], size[0], size[1], 2)
    return g if is_torch(theta) else g.numpy()


def warp(images, theta, *, family: str = "affine", grid: int | None = None, basis=None) -> torch.Tensor:
    """Warp images: ``(T_theta c)(u) = c(g_theta(u))``, bilinear, zeros outside, batched.

    Parameters
    ----------
    images
        (H, W) or (P, H, W) images; one image is warped by every ``theta``.
    theta
        (p,) or (P, p) flat parameters (see the module's docstring); one ``theta`` warps every
        image. Differentiable in ``theta`` and in ``images``.
    family, grid, basis
        As in :func:`sampling_grid`.

    Returns
    -------
    torch.Tensor
        (P, H, W) warped images (P = the larger batch), in the images' dtype and device;
        numpy in, numpy out.

    Raises
    ------
    ValueError
        (a ``ParameterError``, also a TypeError) On malformed images or parameters, an unknown family, or mismatched batch sizes.

    Examples
    --------
    >>> c = torch.arange(16.0).reshape(4, 4)
    >>> bool(torch.allclose(warp(c, torch.zeros(6))[0], c, atol=1e-6))     # the identity
    True
    >>> shift = torch.tensor([0.0, 0.0, 2 / 3, 0.0, 0.0, 0.0])              # one pixel in x
    >>> warp(c, shift)[0, 0].tolist()
    [1.0, 2.0, 3.0, 0.0]
    """
    torch_in = is_torch(images)
    x = _tensor(images, "images")
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ParameterError(f"images must be (H, W) or (P, H, W), got shape {tuple(x.shape)}")
    size = _size(tuple(x.shape[1:]))
    t, B = _prepare(theta, size, family, grid, basis, dtype=x.dtype, device=x.device)
    P = max(x.shape[0], t.shape[0])
    if x.shape[0] not in (1, P) or t.shape[0] not in (1, P):
        raise ParameterError(f"{x.shape[0]} images and {t.shape[0]} warps: pass equal batches or one of either")
    g = _grid(t, size, family, B).reshape(t.shape[0], size[0], size[1], 2).expand(P, -1, -1, -1)
    out = F.grid_sample(x[:, None].expand(P, -1, -1, -1), g, mode="bilinear", padding_mode="zeros",
                        align_corners=True)[:, 0]
    return out if torch_in else out.numpy()


def bilinear_taps(grid, size) -> tuple[torch.Tensor, torch.Tensor]:
    """The four bilinear taps of each sampling location: flat pixel indices and weights.

    A tap outside the image has weight 0 (zeros padding) and index 0. So
    ``(weights * c.reshape(-1)[index]).sum(-1)`` is ``grid_sample(c, grid, align_corners=True)``.

    Parameters
    ----------
    grid
        (..., 2) normalised ``(x, y)`` sampling locations.
    size
        ``(H, W)`` of the sampled image.

    Returns
    -------
    index, weights
        (..., 4) int64 and (..., 4) in the grid's dtype.

    Examples
    --------
    >>> idx, w = bilinear_taps(torch.tensor([[0.0, -1.0]]), (3, 3))   # top row, middle pixel
    >>> idx.tolist(), w.tolist()
    ([[1, 2, 4, 5]], [[1.0, 0.0, 0.0, 0.0]])
    """
    h, w = _size(size)
    g = _tensor(grid, "grid")
    ix = (g[..., 0] + 1) * (w - 1) / 2
    iy = (g[..., 1] + 1) * (h - 1) / 2
    x0, y0 = torch.floor(ix), torch.floor(iy)
    fx, fy = ix - x0, iy - y0
    idx, wts = [], []
    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        xx, yy = x0 + dx, y0 + dy
        wt = (fx if dx else 1 - fx) * (fy if dy else 1 - fy)
        inside = (xx >= 0) & (xx <= w - 1) & (yy >= 0) & (yy <= h - 1)
        idx.append(torch.where(inside, yy * w + xx, torch.zeros_like(xx)).long())
        wts.append(torch.where(inside, wt, torch.zeros_like(wt)))
    return torch.stack(idx, -1), torch.stack(wts, -1)


def warp_matrix(theta, size, *, family: str = "affine", grid: int | None = None, basis=None) -> torch.Tensor:
    """The dense (P, H W, H W) matrices ``W_theta`` with ``warp(c, theta) = W_theta c`` (flattened).

    Each row has at most four nonzeros (the bilinear taps of :func:`bilinear_taps`), so the
    matrices are meant for small images and for checking; the centroid step uses the taps.

    Examples
    --------
    >>> W = warp_matrix(torch.zeros(1, 6), (3, 3))
    >>> bool(torch.equal(W[0], torch.eye(9, dtype=W.dtype)))
    True
    """
    size = _size(size)
    t, B = _prepare(theta, size, family, grid, basis)
    idx, wts = bilinear_taps(_grid(t, size, family, B), size)      # (P, HW, 4)
    hw = size[0] * size[1]
    W = torch.zeros(t.shape[0], hw, hw, dtype=t.dtype, device=t.device)
    W.scatter_add_(2, idx, wts)
    return W if is_torch(theta) else W.numpy()


def affine_set(angles=(0.0,), scales=(1.0,), shifts=(0.0,)) -> torch.Tensor:
    """A finite set of affine warps: every rotation x isotropic scale x (x, y) shift.

    Parameters
    ----------
    angles
        Rotations in degrees.
    scales
        Scale factors of the sampling grid (above 1 samples a wider region: the image shrinks).
    shifts
        Shifts in normalised units (2 / (W - 1) is one pixel), used for both x and y.

    Returns
    -------
    torch.Tensor
        (T, 6) flat ``"affine"`` parameters, float64, T = len(angles) len(scales) len(shifts)^2;
        the identity is among them when 0, 1 and 0 are.

    Examples
    --------
    >>> affine_set(angles=(-15, 0, 15), scales=(0.9, 1.0, 1.1), shifts=(-0.3, 0.0, 0.3)).shape
    torch.Size([81, 6])
    """
    rows = []
    for a in angles:
        r = math.radians(float(a))
        for s in scales:
            s = float(s)
            if not s > 0:
                raise ParameterError(f"scales must be positive, got {s}")
            for tx in shifts:
                for ty in shifts:
                    A = (s * math.cos(r), -s * math.sin(r), float(tx), s * math.sin(r), s * math.cos(r), float(ty))
                    rows.append([A[i] - _IDENTITY[i] for i in range(6)])
    if not rows:
        raise ParameterError("affine_set needs at least one angle, scale and shift")
    return torch.tensor(rows, dtype=torch.float64)


def random_warps(n: int, strength: float, *, family: str = "affine", grid: int | None = None, seed=None) -> torch.Tensor:
    """``n`` random warps whose size grows with ``strength`` (0: the identity; 1: strong).

    ``"affine"``: a rotation of up to ``30 strength`` degrees, a scale within
    ``exp(+-0.15 strength)``, a shear of up to ``0.15 strength`` and a shift of up to ``0.3
    strength`` normalised units in x and y, each uniform. ``"tps"``: control-point displacements
    uniform in ``+-0.15 strength``. ``"affine+tps"``: both.

    Returns
    -------
    torch.Tensor
        (n, p) float64 flat parameters (see the module's docstring).

    Examples
    --------
    >>> random_warps(4, 0.5, seed=0).shape, bool(random_warps(3, 0.0, seed=0).abs().max() == 0)
    (torch.Size([4, 6]), True)
    """
    from helpers._checks import check_real, rng

    n = check_int(n, "n", low=1)
    s = check_real(strength, "strength", low=0)
    check_option(family, "family", FAMILIES)
    g = rng(seed)
    parts = []
    if family in ("affine", "affine+tps"):
        ang = np.radians(30 * s * g.uniform(-1, 1, n))
        sc = np.exp(0.15 * s * g.uniform(-1, 1, n))
        sh = 0.15 * s * g.uniform(-1, 1, n)
        t = 0.3 * s * g.uniform(-1, 1, (n, 2))
        c, si = np.cos(ang), np.sin(ang)
        A = np.stack([sc * c, sc * (-si + sh * c), t[:, 0], sc * si, sc * (c + sh * si), t[:, 1]], 1)
        parts.append(A - np.array(_IDENTITY))
    if family in ("tps", "affine+tps"):
        m = check_int(grid, "grid", low=2) ** 2
        parts.append(0.15 * s * g.uniform(-1, 1, (n, 2 * m)))
    return torch.from_numpy(np.concatenate(parts, 1))
