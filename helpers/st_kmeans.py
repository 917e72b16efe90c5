"""Spatial transformer k-means: k-means in pixel space with a deformation-invariant dissimilarity.

The dissimilarity of an image ``x`` to a centroid ``c`` is the best fit of a warped centroid,

``d(x, c) = min over theta of ||x - T_theta c||^2 + lam ||theta||^2``,

where ``T_theta`` is a warp of :mod:`helpers.warps` (affine, thin-plate spline, or both) whose
parameters ``theta`` are zero at the identity, so ``||theta||^2`` is the squared distance of the
warp to the identity. The clustering objective is

``J(labels, Theta, C) = sum_i ||x_i - T_{theta_i} c_{l_i}||^2 + lam ||theta_i||^2 + ridge sum_a ||c_a||^2``,

minimised by block-coordinate descent: warps (every pair, warm-started, a new ``theta`` accepted
only where it lowers the pair's loss), assignment (exact, ties keep the current label), and
centroids (exact ridge least squares, since a warp is linear in the image). No block can raise
``J``, so ``J`` never increases (:class:`STKMeans`'s ``objective_``). ``family="finite"``
replaces the continuous search by an exact minimum over a given set of affine warps.

Torch tensors in, torch tensors out on the input's device; numpy in, numpy out.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin

from helpers._checks import ParameterError, check_int, check_option, check_real, is_torch
from helpers.warps import FAMILIES as WARP_FAMILIES
from helpers.warps import _basis_for, _grid, _param_matrix, bilinear_taps, pixel_grid, warp

__all__ = ["FAMILIES", "images_of", "pair_loss", "invariant_distance", "centroid_step", "objective",
           "STKMeans", "cluster_accuracy"]

#: The dissimilarity families: the continuous warps of :mod:`helpers.warps`, and ``"finite"``.
FAMILIES = WARP_FAMILIES + ("finite",)


def images_of(X, name: str = "X", image_shape=None) -> torch.Tensor:
    """``X`` as a (N, H, W) float tensor: (N, H, W) as is, (N, H W) reshaped.

    A 2-D ``X`` is reshaped with ``image_shape=(H, W)``, or to square images when ``H W`` is a
    perfect square. Numpy becomes float64 on the CPU; a torch tensor keeps its device and
    floating dtype.

    Raises
    ------
    ValueError
        (a ``ParameterError``, also a TypeError) If ``X`` is not a batch of images (wrong number of dimensions, a non-square feature
        count without ``image_shape``, images smaller than 2 x 2), or holds NaN or infinity.

    Examples
    --------
    >>> images_of(np.zeros((5, 64))).shape
    torch.Size([5, 8, 8])
    """
    if is_torch(X):
        t = X.detach()
        if not t.is_floating_point():
            t = t.to(torch.float64)
    else:
        try:
            t = torch.tensor(np.asarray(X, dtype=np.float64))
        except (TypeError, ValueError) as err:
            raise ParameterError(f"{name} must be a numeric array of images, (N, H, W) or (N, H*W)") from err
    if t.ndim == 2:
        d = t.shape[1]
        if image_shape is not None:
            h, w = (check_int(v, "image_shape", low=2) for v in image_shape)
            if h * w != d:
                raise ParameterError(f"image_shape={tuple(image_shape)} has {h * w} pixels, {name} has {d} features")
        else:
            s = int(round(d ** 0.5))
            if s * s != d or s < 2:
                raise ParameterError(f"{name} of shape {tuple(t.shape)} (n_features = {d}) is not a batch of images:"
                                     " pass (N, H, W),"
                                     " or (N, H*W) with image_shape=(H, W)")
            h = w = s
        t = t.reshape(t.shape[0], h, w)
    if t.ndim != 3 or t.shape[1] < 2 or t.shape[2] < 2:
        raise ParameterError(f"{name} must be images (N, H, W) with H, W >= 2, got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ParameterError(f"{name} holds no images")
    if not torch.isfinite(t).all():
        raise ParameterError(f"{name} holds NaN or infinite values; clean or impute them first")
    return t


def _check_family(family, grid, transforms):
    check_option(family, "family", FAMILIES)
    if family in ("tps", "affine+tps"):
        check_int(grid, "grid", low=2, hint=" (the TPS control grid is grid x grid)")
    if family == "finite":
        if transforms is None:
            raise ParameterError('family="finite" needs transforms=(T, 6) affine parameters, e.g. warps.affine_set(...)')
    elif transforms is not None:
        raise ParameterError(f'transforms= is for family="finite", not {family!r}')


def _warp_family(family):
    return "affine" if family == "finite" else family


def _n_params(family, grid):
    m = grid * grid if family in ("tps", "affine+tps") else 0
    return {"affine": 6, "finite": 6, "tps": 2 * m, "affine+tps": 6 + 2 * m}[family]


class _PairLoss:
    """Loss of fixed pairs (ii, aa) as a function of their warps theta (P, p)."""

    def __init__(self, X, C, ii, aa, family, B, lam):
        self.size = tuple(X.shape[1:])
        self.X = X[ii]
        self.C = C[aa][:, None]
        self.lam = lam
        self.M = _param_matrix(family, B, self.size, X.dtype, X.device)
        self.u = pixel_grid(self.size, dtype=X.dtype, device=X.device).reshape(1, -1)

    def __call__(self, theta):
        h, w = self.size
        g = (self.u + theta @ self.M).reshape(-1, h, w, 2)
        wc = F.grid_sample(self.C, g, mode="bilinear", padding_mode="zeros", align_corners=True)[:, 0]
        return ((self.X - wc) ** 2).sum((1, 2)) + self.lam * (theta ** 2).sum(1)


def _losses(X, C, theta, ii, aa, family, B, lam):
    """Loss of the pairs (ii, aa) at parameters theta (P, p): ||x - T c||^2 + lam ||theta||^2."""
    return _PairLoss(X, C, ii, aa, family, B, lam)(theta)


def pair_loss(X, C, theta, *, family: str = "affine", lam: float = 1.0, grid: int = 3):
    """The loss ``||x_i - T_theta c_a||^2 + lam ||theta||^2`` of every pair at given warps.

    Parameters
    ----------
    X, C
        (N, H, W) images and (k, H, W) centroids.
    theta
        (N, k, p) flat warp parameters of each pair (see :mod:`helpers.warps`; ``"finite"``
        warps are ``"affine"`` parameters).
    family, lam, grid
        As in :func:`invariant_distance`.

    Returns
    -------
    torch.Tensor
        (N, k) losses (numpy in, numpy out).

    Examples
    --------
    >>> X, C = torch.rand(3, 4, 4, dtype=torch.float64), torch.rand(2, 4, 4, dtype=torch.float64)
    >>> plain = ((X[:, None] - C[None]) ** 2).sum((2, 3))
    >>> bool(torch.allclose(pair_loss(X, C, torch.zeros(3, 2, 6, dtype=torch.float64)), plain))
    True
    """
    Xt, Ct = images_of(X), images_of(C, "C")
    lam = check_real(lam, "lam", low=0)
    Ct = Ct.to(Xt.dtype).to(Xt.device)
    th = torch.as_tensor(theta).to(Xt.dtype).to(Xt.device)
    N, k = Xt.shape[0], Ct.shape[0]
    p = _n_params(family, grid) if family in FAMILIES else None
    if th.shape != (N, k, p):
        raise ParameterError(f"theta must be (N, k, p) = ({N}, {k}, {p}), got {tuple(th.shape)}")
    B = _basis_for(_warp_family(family), grid, tuple(Xt.shape[1:]), Xt.dtype, Xt.device)
    ii = torch.arange(N, device=Xt.device).repeat_interleave(k)
    aa = torch.arange(k, device=Xt.device).repeat(N)
    L = _losses(Xt, Ct, th.reshape(N * k, -1), ii, aa, _warp_family(family), B, lam).reshape(N, k)
    return L if is_torch(X) else L.numpy()


def invariant_distance(X, C, *, family: str = "affine", lam: float = 1.0, steps: int = 30, lr: float = 0.05,
                       grid: int = 3, bound: float = 0.5, theta0=None, active=None, transforms=None,
                       chunk: int = 256):
    """The deformation-invariant dissimilarity of every image to every centroid, and its warps.

    ``D[i, a] = min over theta of ||x_i - T_theta c_a||^2 + lam ||theta||^2``, approximately
    for the continuous families (projected Adam on all pairs at once, ``theta`` kept in the
    box ``[-bound, bound]``), exactly for ``"finite"`` (every warp of ``transforms`` tried).

    Every entry is at most the loss at ``theta0`` (identity when None), because the search
    keeps, per pair, the best parameters it has evaluated and starts from ``theta0``: with the
    identity, ``D <= ||x_i - c_a||^2`` entrywise (the identity is zero).

    Parameters
    ----------
    X
        (N, H, W) images (or (N, H W) square ones).
    C
        (k, H, W) centroids.
    family
        ``"affine"``, ``"tps"``, ``"affine+tps"`` (continuous) or ``"finite"``.
    lam
        Weight of the regulariser ``||theta||^2`` (the squared distance of the warp to the
        identity), >= 0.
    steps, lr
        Adam steps and learning rate (continuous families).
    grid
        TPS control grid, ``grid x grid`` points (TPS families).
    bound
        Box on every parameter (continuous families).
    theta0
        (N, k, p) warm start; the result never does worse than it.
    active
        (N, k) bool mask of the pairs to optimise; the others keep ``theta0`` and its loss.
    transforms
        (T, 6) affine parameters for ``"finite"`` (e.g. :func:`helpers.warps.affine_set`).
    chunk
        Images per block in the ``"finite"`` search (memory N x k x T x H W otherwise).

    Returns
    -------
    D : torch.Tensor
        (N, k) dissimilarities, the loss of the returned warps.
    theta : torch.Tensor
        (N, k, p) the warps attaining them. Numpy in, numpy out.

    Raises
    ------
    ValueError
        (a ``ParameterError``, also a TypeError) On malformed images, an unknown family, or bad sizes.

    Examples
    --------
    >>> from helpers.warps import warp
    >>> c = torch.zeros(8, 8, dtype=torch.float64); c[2:6, 3:5] = 1.0
    >>> x = warp(c, torch.tensor([0.1, 0.0, 0.15, 0.0, -0.1, 0.0], dtype=torch.float64))
    >>> D, theta = invariant_distance(x, c[None], lam=0.01, steps=60)
    >>> bool(D[0, 0] < 0.2 * ((x - c) ** 2).sum())        # far below the plain distance
    True
    """
    Xt = images_of(X)
    Ct = images_of(C, "C").to(Xt.dtype).to(Xt.device)
    if Ct.shape[1:] != Xt.shape[1:]:
        raise ParameterError(f"C's images are {tuple(Ct.shape[1:])}, X's {tuple(Xt.shape[1:])}: use one size")
    _check_family(family, grid, transforms)
    lam = check_real(lam, "lam", low=0)
    steps = check_int(steps, "steps", low=0)
    lr = check_real(lr, "lr", low=0, low_open=True)
    bound = check_real(bound, "bound", low=0, low_open=True)
    chunk = check_int(chunk, "chunk", low=1)
    N, k = Xt.shape[0], Ct.shape[0]
    size = tuple(Xt.shape[1:])
    p = _n_params(family, grid)
    dev, dt = Xt.device, Xt.dtype
    if family == "finite":
        D, theta = _finite(Xt, Ct, transforms, lam, chunk)
    else:
        if theta0 is None:
            th0 = torch.zeros(N, k, p, dtype=dt, device=dev)
        else:
            th0 = torch.as_tensor(theta0).to(dt).to(dev)
            if th0.shape != (N, k, p):
                raise ParameterError(f"theta0 must be (N, k, p) = ({N}, {k}, {p}), got {tuple(th0.shape)}")
        B = _basis_for(family, grid, size, dt, dev)
        mask = torch.ones(N, k, dtype=torch.bool, device=dev) if active is None else torch.as_tensor(active).to(dev)
        if mask.shape != (N, k):
            raise ParameterError(f"active must be an (N, k) = ({N}, {k}) mask, got {tuple(mask.shape)}")
        ii = torch.arange(N, device=dev).repeat_interleave(k)
        aa = torch.arange(k, device=dev).repeat(N)
        flat0 = th0.reshape(N * k, p)
        with torch.no_grad():
            best_loss = _losses(Xt, Ct, flat0, ii, aa, family, B, lam)
        best = flat0.clone()
        sel = mask.reshape(-1).nonzero().squeeze(1)
        if steps > 0 and sel.numel() > 0:
            best_loss[sel], best[sel] = _adam(Xt, Ct, flat0[sel], best_loss[sel], ii[sel], aa[sel], family, B,
                                               lam, steps, lr, bound)
        D, theta = best_loss.reshape(N, k), best.reshape(N, k, p)
    if not is_torch(X):
        return D.numpy(), theta.numpy()
    return D, theta


def _adam(X, C, th0, loss0, ii, aa, family, B, lam, steps, lr, bound):
    """Projected Adam from th0 on the selected pairs; returns the best loss and theta seen."""
    f = _PairLoss(X, C, ii, aa, family, B, lam)
    best_loss, best = loss0.clone(), th0.clone()
    th = th0.clamp(-bound, bound).clone().requires_grad_(True)
    opt = torch.optim.Adam([th], lr=lr)
    with torch.enable_grad():
        for step in range(steps + 1):
            opt.zero_grad(set_to_none=True)
            L = f(th)
            with torch.no_grad():
                better = L < best_loss                       # accept only what lowers the pair's loss
                best_loss = torch.where(better, L, best_loss)
                best = torch.where(better[:, None], th, best)
            if step == steps:
                break
            L.sum().backward()
            opt.step()
            with torch.no_grad():
                th.clamp_(-bound, bound)
    return best_loss.detach(), best.detach()


def _finite(X, C, transforms, lam, chunk):
    """Exact minimum over a finite set of affine warps, in blocks of images."""
    T = torch.as_tensor(transforms).to(X.dtype).to(X.device)
    if T.ndim != 2 or T.shape[1] != 6 or T.shape[0] < 1:
        raise ParameterError(f"transforms must be (T, 6) affine parameters, got shape {tuple(T.shape)}")
    k, nT = C.shape[0], T.shape[0]
    WC = warp(C.repeat_interleave(nT, 0), T.repeat(k, 1)).reshape(k, nT, -1)      # (k, T, HW)
    pen = lam * (T ** 2).sum(1)                                                    # (T,)
    Xf = X.reshape(X.shape[0], -1)
    D, idx = [], []
    for s in range(0, X.shape[0], chunk):
        r = ((Xf[s:s + chunk, None, None, :] - WC[None]) ** 2).sum(-1) + pen      # (n, k, T)
        d, j = r.min(-1)
        D.append(d)
        idx.append(j)
    D, idx = torch.cat(D), torch.cat(idx)
    return D, T[idx]


def _taps(theta, size, family, B):
    return bilinear_taps(_grid(theta, size, family, B), size)


def centroid_step(X, labels, theta, k: int, *, family: str = "affine", grid: int = 3, ridge: float = 1e-3):
    """The exact centroids for fixed labels and warps: ridge least squares per cluster.

    ``c_a = argmin_c sum_{i: l_i = a} ||x_i - W_{theta_i} c||^2 + ridge ||c||^2``, i.e.
    ``(sum_i W_i^T W_i + ridge I) c_a = sum_i W_i^T x_i``. The normal matrix is accumulated
    from the four bilinear taps of each output pixel (no dense ``W_i``) and solved by Cholesky.
    A cluster without members gets the zero image.

    Parameters
    ----------
    X
        (N, H, W) images.
    labels
        (N,) cluster of each image, in ``0..k-1``.
    theta
        (N, p) warp of each image's own pair.
    k
        Number of clusters.
    family, grid
        As in :func:`invariant_distance` (``"finite"`` warps are affine).
    ridge
        The ridge weight, > 0 (it keeps pixels that no warp reads well defined).

    Returns
    -------
    torch.Tensor
        (k, H, W) centroids (numpy in, numpy out).

    Examples
    --------
    >>> X = torch.rand(5, 4, 4, dtype=torch.float64)
    >>> C = centroid_step(X, torch.zeros(5, dtype=torch.long), torch.zeros(5, 6, dtype=torch.float64), 1,
    ...                   ridge=1e-12)
    >>> bool(torch.allclose(C[0], X.mean(0)))             # identity warps: the mean
    True
    """
    Xt = images_of(X)
    k = check_int(k, "k", low=1)
    check_option(family, "family", FAMILIES)
    ridge = check_real(ridge, "ridge", low=0, low_open=True)
    lab = torch.as_tensor(labels).to(Xt.device).long()
    th = torch.as_tensor(theta).to(Xt.dtype).to(Xt.device)
    N, H, W = Xt.shape
    if lab.shape != (N,) or (lab.numel() and (lab.min() < 0 or lab.max() >= k)):
        raise ParameterError(f"labels must be (N,) = ({N},) ints in 0..{k - 1}")
    if th.shape != (N, _n_params(family, grid)):
        raise ParameterError(f"theta must be (N, p) = ({N}, {_n_params(family, grid)}), got {tuple(th.shape)}")
    C = _centroids(Xt, lab, th, k, _warp_family(family), _basis_for(_warp_family(family), grid, (H, W),
                                                                      Xt.dtype, Xt.device), ridge)
    return C if is_torch(X) else C.numpy()


def _centroids(X, lab, th, k, family, B, ridge):
    N, H, W = X.shape
    hw = H * W
    idx, wts = _taps(th, (H, W), family, B)                                # (N, HW, 4)
    acc = torch.float64
    base = (lab * hw * hw)[:, None, None, None]
    flat = base + idx[..., :, None] * hw + idx[..., None, :]               # (N, HW, 4, 4)
    G = torch.zeros(k * hw * hw, dtype=acc, device=X.device)
    G.index_add_(0, flat.reshape(-1), (wts[..., :, None] * wts[..., None, :]).reshape(-1).to(acc))
    b = torch.zeros(k * hw, dtype=acc, device=X.device)
    b.index_add_(0, ((lab * hw)[:, None, None] + idx).reshape(-1),
                 (wts * X.reshape(N, hw, 1)).reshape(-1).to(acc))
    G = G.reshape(k, hw, hw) + ridge * torch.eye(hw, dtype=acc, device=X.device)
    dev = X.device
    if dev.type == "mps":                                                  # no float64 there
        G, b = G.cpu(), b.cpu()
    c = torch.cholesky_solve(b.reshape(k, hw, 1), torch.linalg.cholesky(G))
    return c.reshape(k, H, W).to(X.dtype).to(dev)


def objective(X, C, labels, theta, *, family: str = "affine", lam: float = 1.0, grid: int = 3,
              ridge: float = 1e-3) -> float:
    """``J = sum_i ||x_i - T_{theta_i} c_{l_i}||^2 + lam ||theta_i||^2 + ridge sum_a ||c_a||^2``.

    Examples
    --------
    >>> X = torch.ones(2, 3, 3, dtype=torch.float64)
    >>> objective(X, torch.zeros(1, 3, 3, dtype=torch.float64), [0, 0], torch.zeros(2, 6), ridge=0.5)
    18.0
    """
    Xt = images_of(X)
    Ct = images_of(C, "C").to(Xt.dtype).to(Xt.device)
    lam = check_real(lam, "lam", low=0)
    ridge = check_real(ridge, "ridge", low=0)
    check_option(family, "family", FAMILIES)
    lab = torch.as_tensor(labels).to(Xt.device).long()
    th = torch.as_tensor(theta).to(Xt.dtype).to(Xt.device)
    B = _basis_for(_warp_family(family), grid, tuple(Xt.shape[1:]), Xt.dtype, Xt.device)
    return _objective(Xt, Ct, lab, th, _warp_family(family), B, lam, ridge)


def _objective(X, C, lab, th, family, B, lam, ridge):
    ii = torch.arange(X.shape[0], device=X.device)
    with torch.no_grad():
        L = _losses(X, C, th, ii, lab, family, B, lam)
    return float(L.double().sum() + ridge * (C.double() ** 2).sum())


class STKMeans(TransformerMixin, ClusterMixin, BaseEstimator):
    """Spatial transformer k-means: clusters of images whose centroids are images.

    Block-coordinate descent on ``J`` (see the module's docstring): warps of every pair
    (warm-started, accepted only where they lower the pair's loss), assignment, exact ridge
    least-squares centroids. ``J`` never increases; ``objective_`` records it.

    Parameters
    ----------
    n_clusters
        Number of clusters ``k`` (at most the number of images).
    family
        ``"affine"``, ``"tps"``, ``"affine+tps"`` or ``"finite"`` (with ``transforms``).
    lam
        Weight of ``||theta||^2``, the warp's squared distance to the identity.
    max_iter
        Outer iterations (each: warps, assignment, centroids).
    steps, lr, bound, grid
        The warp search of :func:`invariant_distance`.
    transforms
        (T, 6) affine parameters for ``family="finite"``.
    candidates
        Optimise warps only for each image's ``candidates`` nearest centroids in the invariant
        dissimilarity of the previous iteration (the others keep their warps); None: all.
    ridge
        Ridge weight of the centroid step.
    tol
        Stop when the labels did not change and ``J`` fell by less than ``tol`` (relative).
    init
        ``"k-means"`` (pixel k-means, ``n_init`` starts) or a (k, H, W) array of centroids.
    n_init
        Starts of the pixel k-means initialisation.
    image_shape
        ``(H, W)`` for 2-D input whose feature count is not a perfect square.
    random_state
        Seed of the initialisation (None: the next draw of numpy's global generator).

    Attributes
    ----------
    cluster_centers_
        (k, H, W) centroid images, in the input's type and device.
    labels_
        (N,) cluster of each training image.
    theta_
        (N, p) warp of each training image's centroid.
    objective_
        ``J`` after the initialisation (identity warps) and after each iteration: a list of
        floats that never increases.
    n_iter_
        Iterations run.
    n_reseeded_
        Empty clusters reseeded (with the worst-fitted image of a cluster of two or more).
    inertia_
        The final ``J``.

    Examples
    --------
    >>> X = torch.zeros(6, 6, 6, dtype=torch.float64)
    >>> X[:3, 1:5, 2] = 1.0; X[3:, 2, 1:5] = 1.0                # three "|" and three "-"
    >>> X[1] = torch.roll(X[1], 1, 1); X[4] = torch.roll(X[4], 1, 0)
    >>> km = STKMeans(2, lam=0.1, steps=20, max_iter=3, random_state=0).fit(X)
    >>> sorted(km.labels_.tolist()) == [0, 0, 0, 1, 1, 1], km.labels_[0] != km.labels_[3]
    (True, tensor(True))
    """

    def __init__(self, n_clusters: int = 8, *, family: str = "affine", lam: float = 1.0, max_iter: int = 10,
                 steps: int = 30, lr: float = 0.05, bound: float = 0.5, grid: int = 3, transforms=None,
                 candidates=None, ridge: float = 1e-3, tol: float = 1e-4, init="k-means", n_init: int = 4,
                 image_shape=None, random_state=None):
        self.n_clusters = n_clusters
        self.family = family
        self.lam = lam
        self.max_iter = max_iter
        self.steps = steps
        self.lr = lr
        self.bound = bound
        self.grid = grid
        self.transforms = transforms
        self.candidates = candidates
        self.ridge = ridge
        self.tol = tol
        self.init = init
        self.n_init = n_init
        self.image_shape = image_shape
        self.random_state = random_state

    def _validate(self, X):
        torch_in = is_torch(X)
        if not torch_in:
            from sklearn.utils.validation import check_array

            X = check_array(X, allow_nd=True, dtype=np.float64, ensure_min_samples=1)
        Xt = images_of(X, image_shape=self.image_shape)
        return Xt, torch_in

    def _distance_kwargs(self):
        return dict(family=self.family, lam=self.lam, steps=self.steps, lr=self.lr, grid=self.grid,
                    bound=self.bound, transforms=self.transforms)

    def fit(self, X, y=None):
        """Cluster ``X`` ((N, H, W) images, or (N, H W)); ``y`` is ignored."""
        from sklearn.cluster import KMeans

        Xt, torch_in = self._validate(X)
        N, H, W = Xt.shape
        k = check_int(self.n_clusters, "n_clusters", low=1)
        if k > N:
            raise ParameterError(f"n_clusters={k} is more than the {N} images; lower n_clusters or pass more images")
        _check_family(self.family, self.grid, self.transforms)
        lam = check_real(self.lam, "lam", low=0)
        ridge = check_real(self.ridge, "ridge", low=0, low_open=True)
        max_iter = check_int(self.max_iter, "max_iter", low=1)
        tol = check_real(self.tol, "tol", low=0)
        cand = check_int(self.candidates, "candidates", low=1, none_ok=True)
        check_real(self.lr, "lr", low=0, low_open=True)
        check_int(self.steps, "steps", low=0)
        check_real(self.bound, "bound", low=0, low_open=True)
        dev, dt = Xt.device, Xt.dtype
        flat = Xt.reshape(N, -1)
        if isinstance(self.init, str):
            check_option(self.init, "init", ("k-means",))
            from helpers._checks import resolve_seed

            seed = self.random_state if isinstance(self.random_state, np.random.RandomState) else \
                resolve_seed(self.random_state, "random_state") % 2**32
            km = KMeans(k, n_init=check_int(self.n_init, "n_init", low=1), random_state=seed)
            lab = torch.as_tensor(km.fit_predict(flat.cpu().double().numpy()), device=dev)
            C = torch.as_tensor(km.cluster_centers_).to(dt).to(dev).reshape(k, H, W)
        else:
            C = images_of(self.init, "init").to(dt).to(dev)
            if C.shape != (k, H, W):
                raise ParameterError(f"init must be (k, H, W) = ({k}, {H}, {W}) centroids, got {tuple(C.shape)}")
            lab = None
        fam = _warp_family(self.family)
        B = _basis_for(fam, self.grid, (H, W), dt, dev)
        p = _n_params(self.family, self.grid)
        ii = torch.arange(N, device=dev)
        if self.family == "finite":     # the warps of the set (the identity need not be in it)
            D, theta = invariant_distance(Xt, C, **self._distance_kwargs())
        else:                           # identity warps: J starts at the pixel k-means cost
            theta = torch.zeros(N, k, p, dtype=dt, device=dev)
            with torch.no_grad():
                D = _losses(Xt, C, theta.reshape(N * k, p), ii.repeat_interleave(k),
                            torch.arange(k, device=dev).repeat(N), fam, B, lam).reshape(N, k)
        if lab is None:
            lab = D.argmin(1)
        J = [_objective(Xt, C, lab, theta[ii, lab], fam, B, lam, ridge)]
        self.n_reseeded_ = 0
        n_iter = 0
        for it in range(max_iter):
            n_iter += 1
            # 1. warps: every (or every candidate) pair, warm-started, accept-if-better
            active = None
            if cand is not None and cand < k:
                active = torch.zeros(N, k, dtype=torch.bool, device=dev)
                active.scatter_(1, D.topk(cand, dim=1, largest=False).indices, True)
                active[ii, lab] = True
            D, theta = invariant_distance(Xt, C, theta0=theta, active=active, **self._distance_kwargs())
            # 2. assignment (ties keep the current label)
            new = D.argmin(1)
            new = torch.where(D[ii, new] < D[ii, lab], new, lab)
            # empty clusters: reseed with the worst-fitted image of a cluster of two or more
            counts = torch.bincount(new, minlength=k)
            for a in (counts == 0).nonzero().flatten().tolist():
                own = D[ii, new].clone()
                own[counts[new] < 2] = -np.inf
                j = int(own.argmax())
                counts[new[j]] -= 1
                new[j] = a
                counts[a] = 1
                C[a] = Xt[j]
                theta[j, a] = 0
                D[j, a] = 0.0
                self.n_reseeded_ += 1
            changed = bool((new != lab).any())
            lab = new
            # 3. centroids: exact ridge least squares
            C = _centroids(Xt, lab, theta[ii, lab], k, fam, B, ridge)
            J.append(_objective(Xt, C, lab, theta[ii, lab], fam, B, lam, ridge))
            if not changed and J[-2] - J[-1] <= tol * abs(J[-2]):
                break
        self.objective_ = J
        self.n_iter_ = n_iter
        self.inertia_ = J[-1]
        self.cluster_centers_ = C if torch_in else C.numpy()
        self.labels_ = lab if torch_in else lab.cpu().numpy()
        th = theta[ii, lab]
        self.theta_ = th if torch_in else th.numpy()
        self.n_features_in_ = H * W
        self.image_shape_ = (H, W)
        return self

    def transform(self, X):
        """The (N, k) invariant dissimilarities of ``X`` to the centroids (identity warm start)."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "cluster_centers_")
        d = int(np.prod(np.shape(X)[1:])) if np.ndim(X) >= 2 else None
        if d is not None and d != self.n_features_in_:
            raise ParameterError(f"X has {d} features, but STKMeans is expecting {self.n_features_in_} features"
                                 f" as input ({self.image_shape_[0]} x {self.image_shape_[1]} images)")
        Xt, torch_in = self._validate(X)
        if tuple(Xt.shape[1:]) != self.image_shape_:
            raise ParameterError(f"X has images of {tuple(Xt.shape[1:])}, the model {self.image_shape_}")
        C = torch.as_tensor(self.cluster_centers_).to(Xt.dtype).to(Xt.device)
        D, _ = invariant_distance(Xt, C, **self._distance_kwargs())
        return D if torch_in else D.numpy()

    def predict(self, X):
        """The cluster of each image of ``X``: the centroid with the least invariant dissimilarity."""
        return self.transform(X).argmin(1)


def cluster_accuracy(y_true, y_pred) -> float:
    """Clustering accuracy (ACC): the share of labels right under the best one-to-one matching
    of clusters to classes (Hungarian algorithm on the contingency table).

    Examples
    --------
    >>> cluster_accuracy([0, 0, 1, 1, 2], [2, 2, 0, 0, 0])
    0.8
    """
    from scipy.optimize import linear_sum_assignment

    yt = np.asarray(y_true.cpu() if is_torch(y_true) else y_true).ravel()
    yp = np.asarray(y_pred.cpu() if is_torch(y_pred) else y_pred).ravel()
    if yt.shape != yp.shape or yt.size == 0:
        raise ParameterError(f"y_true and y_pred must be equal-length label vectors, got {yt.shape} and {yp.shape}")
    _, ti = np.unique(yt, return_inverse=True)
    _, pi = np.unique(yp, return_inverse=True)
    M = np.zeros((pi.max() + 1, ti.max() + 1), dtype=np.int64)
    np.add.at(M, (pi, ti), 1)
    r, c = linear_sum_assignment(-M)
    return float(M[r, c].sum() / yt.size)
