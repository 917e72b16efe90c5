r"""Volume-weighted resampling of generator latents: the kernel of MaGNET and Polarity sampling.

A generator :math:`G:\mathbb R^d \to \mathbb R^D` built from affine layers and continuous
piecewise-affine (CPA) nonlinearities is affine on the region that contains ``z``; its Jacobian
:math:`J(z)` (``D x d``) stretches a latent cell by the local volume factor

.. math::  \mathrm{vol}(z) = \sqrt{\det J^\top J} = \prod_k \sigma_k(J(z)).

Pushing latents :math:`z \sim p` through an injective :math:`G` gives, on the image manifold, the density
:math:`p(z)/\mathrm{vol}(z)` at :math:`x = G(z)`. Two samplers reweight :math:`N` proposals by
this factor and resample them:

* **MaGNET** (Humayun, Balestriero, Baraniuk, ICLR 2022, arXiv:2110.08009): weights
  :math:`\propto \mathrm{vol}(z)/\pi(z)` make the output uniform on the manifold, for proposals
  drawn from any :math:`\pi` (:func:`magnet_weights`). The official code omits :math:`1/\pi`;
  with Gaussian proposals that gives a Gaussian-tilted, not uniform, output.
* **Polarity** (Humayun, Balestriero, Baraniuk, CVPR 2022, arXiv:2203.01993): weights
  :math:`\propto \prod_{k \le K}\sigma_k^\rho` for proposals drawn from the model's prior;
  :math:`\rho < 0` concentrates on modes (precision), :math:`\rho > 0` spreads toward
  anti-modes (recall), :math:`\rho = 0` is the original sampler (:func:`polarity_weights`).

Pipeline: :func:`jacobian` (one CPA tangent pass with the ``d`` basis directions, through
:func:`helpers.jvp.jvp`) -> :func:`singular_values` / :func:`log_volume` (float64) ->
weights (log-sum-exp) -> :func:`resample_indices` / :func:`resample`, with
:func:`effective_sample_size` to report how many proposals the weights really use.

Conventions. Tensors in, tensors out (the package's rule, stated on the API page): Jacobians are
torch tensors of ``z``'s dtype and device; singular values, log-volumes and weights are
float64 on the input's device; indices are int64 on the weights' device. MPS has no float64:
float64 results of an MPS input are computed and returned on the CPU. A numpy input gives
numpy weights and indices. Weights and indices are computed in float64 numpy internally
(small vectors, one host copy each), so a torch and a numpy input give the same numbers.
The effective sample size is a Python float. Log-volumes are in nats.

Randomness. :func:`resample_indices` and :func:`resample` take ``seed``: an int, a
``numpy.random.Generator``, or ``None`` for the next draw from numpy's global generator, which
:func:`helpers.runtime.setup` seeds with the notebook's base seed (``BOOK_SEED``).
"""

from __future__ import annotations

import math
import warnings
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from helpers._checks import ParameterError, check_int, check_option, check_real, like, rng, to_numpy
from helpers.jvp import UnsupportedLayerError, jvp  # noqa: F401  (the error jacobian() propagates)

__all__ = [
    "jacobian",
    "singular_values",
    "singular_values_from_jacobian",
    "log_volume",
    "log_volume_from_jacobian",
    "log_volume_from_singular_values",
    "normalize_log_weights",
    "magnet_weights",
    "polarity_weights",
    "polarity_weights_from_log_volume",
    "effective_sample_size",
    "resample_indices",
    "resample",
]

_METHODS = ("cpa", "autodiff")
_SOLVERS = ("eigh", "svd")
_EPS64 = float(np.finfo(np.float64).eps)

# --------------------------------------------------------------------------------------------
# Jacobians
# --------------------------------------------------------------------------------------------


def _check_generator_call(generator, z, method: str, chunk_size) -> None:
    if not isinstance(generator, nn.Module):
        raise ParameterError(f"generator must be a torch.nn.Module, got {type(generator).__name__}")
    if not isinstance(z, torch.Tensor) or not z.is_floating_point():
        raise ParameterError(f"z must be a floating-point torch.Tensor, got {type(z).__name__}"
                        + (f" of dtype {z.dtype}" if isinstance(z, torch.Tensor) else ""))
    if z.dim() < 2 or z.shape[0] == 0 or z[0].numel() == 0:
        raise ParameterError(f"z must have shape (B, d) (or (B, *latent_shape)) with B >= 1 and d >= 1, "
                         f"got {tuple(z.shape)}; add a batch axis with z[None] for a single latent")
    check_option(method, "method", _METHODS)
    check_int(chunk_size, "chunk_size", low=1, none_ok=True)


def _as_jacobian(cols, B: int, d: int) -> torch.Tensor:
    if not isinstance(cols, torch.Tensor):
        raise ParameterError(f"the generator must return one tensor, got {type(cols).__name__}")
    return cols.reshape(B, d, -1).transpose(1, 2)  # (B, d, D) -> (B, D, d)


def _cpa_jacobian(generator: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """All d columns in one tangent pass: the basis is fed as K = d tangents per sample."""
    B, latent = z.shape[0], z.shape[1:]
    d = math.prod(latent)
    basis = torch.eye(d, dtype=z.dtype, device=z.device).reshape(d, *latent).expand(B, d, *latent)
    return _as_jacobian(jvp(generator, z, basis)[1], B, d)  # jvp: one walk, each tangent step right after its primal


def _autodiff_jacobian(generator: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Forward-mode autodiff per sample (vmap of jacfwd), for generators that are not CPA."""
    B, d = z.shape[0], z[0].numel()
    single = lambda zi: generator(zi.unsqueeze(0)).squeeze(0)  # noqa: E731
    jac = torch.func.vmap(torch.func.jacfwd(single))(z)  # (B, *out, *latent)
    return jac.reshape(B, -1, d)


_JACOBIANS: dict[str, Callable[[nn.Module, torch.Tensor], torch.Tensor]] = {
    "cpa": _cpa_jacobian, "autodiff": _autodiff_jacobian}


def jacobian(generator: nn.Module, z: torch.Tensor, *, method: str = "cpa",
             chunk_size: int | None = None) -> torch.Tensor:
    """Per-sample Jacobians of a generator, output flattened.

    With ``method="cpa"`` the activation codes are computed once by :func:`helpers.jvp.jvp` and the
    ``d`` latent basis directions go through the network as ``K = d`` tangents per sample in a
    single tangent pass. No gradient is recorded.

    Parameters
    ----------
    generator
        A network mapping latents of shape (B, d) (or ``(B, *latent_shape)``) to outputs of
        shape (B, ...). For ``method="cpa"`` it must be CPA, with batch-norm and dropout in eval mode.
    z
        Latents, shape (B, d) or ``(B, *latent_shape)``, on the generator's device and dtype.
    method
        ``"cpa"`` (default) or ``"autodiff"`` (``torch.func.vmap(torch.func.jacfwd)``). The
        autodiff path is never taken silently: ask for it for a generator that is not CPA.
    chunk_size
        Process at most this many latents at a time, bounding the tangent memory to about
        ``chunk_size * d * D`` numbers; ``None`` processes all B at once.

    Returns
    -------
    torch.Tensor
        Shape (B, D, d), D the number of output entries per sample, d = prod(latent_shape);
        dtype and device of ``z``.

    Raises
    ------
    helpers.jvp.UnsupportedLayerError
        With ``method="cpa"``, if the generator has a non-CPA operation (the message names it).
    ValueError
        (a ``ParameterError``, also a TypeError) On a wrong generator, latent type or shape, method
        or chunk size.

    Examples
    --------
    For an affine generator every Jacobian is its weight matrix:

    >>> import torch
    >>> G = torch.nn.Linear(2, 4)
    >>> J = jacobian(G, torch.randn(3, 2))
    >>> J.shape, bool((J == G.weight).all())
    (torch.Size([3, 4, 2]), True)
    """
    _check_generator_call(generator, z, method, chunk_size)
    with torch.no_grad():  # sampling never back-propagates through J; skip the autograd graph
        blocks = [_JACOBIANS[method](generator, zc) for zc in z.split(int(chunk_size or z.shape[0]))]
    return torch.cat(blocks)


# --------------------------------------------------------------------------------------------
# Singular values and log-volumes
# --------------------------------------------------------------------------------------------


def _check_top_k(top_k, d: int) -> int:
    if top_k is None:
        return d
    return check_int(top_k, "top_k", low=1, high=d, none_ok=True, hint=" (the latent dimension)")


def _check_jacobian(J) -> torch.Tensor:
    if not isinstance(J, torch.Tensor) or not J.is_floating_point():
        raise ParameterError(f"J must be a floating-point torch.Tensor of shape (B, D, d), got {type(J).__name__}")
    if J.dim() != 3 or 0 in J.shape:
        raise ParameterError(f"J must have shape (B, D, d) with no empty axis, got {tuple(J.shape)}; "
                         "jacobian() returns this layout")
    if not torch.isfinite(J).all():
        raise ParameterError("J contains NaN or inf entries; check the generator's weights and latents")
    return J.cpu() if J.device.type == "mps" else J  # MPS has no float64


def _default_rtol(J: torch.Tensor) -> float:
    """torch.linalg.matrix_rank's default: max(D, d) * eps of J's dtype, relative to sigma_1."""
    return max(J.shape[1:]) * torch.finfo(J.dtype).eps


def singular_values_from_jacobian(J: torch.Tensor, top_k: int | None = None, *, solver: str = "eigh",
                                  rtol: float | None = None) -> torch.Tensor:
    """Singular values of each Jacobian, descending, in float64; numerically zero ones set to 0.

    ``solver="eigh"`` takes the square roots of the eigenvalues of the d x d Gram matrix JᵀJ,
    formed in float64 (about 2x faster than an SVD of the D x d matrix on one CPU thread, and
    10-100x on two, in the book's measurements for d <= 32). Squaring the matrix halves the
    relative resolution: a singular value below ``sqrt(max(D, d) * eps64) * sigma_1`` (about
    4e-7 sigma_1 for D = 784) cannot be told from zero. ``solver="svd"`` (``torch.linalg.svdvals`` in float64) resolves down to about
    ``max(D, d) * eps64 * sigma_1``; use it for ill-conditioned Jacobians.

    Parameters
    ----------
    J
        Jacobians, shape (B, D, d), finite.
    top_k
        Keep the ``top_k`` largest singular values; ``None`` keeps all d.
    solver
        ``"eigh"`` (default) or ``"svd"``.
    rtol
        A singular value ``sigma_k <= rtol * sigma_1`` is numerically zero and returned as 0.
        Default: ``max(D, d) * eps`` of J's dtype (the convention of ``torch.linalg.matrix_rank``),
        so a float32 Jacobian is judged at float32 resolution. With ``solver="eigh"`` it may
        not be below the Gram resolution above.

    Returns
    -------
    torch.Tensor
        Shape (B, top_k), float64, descending along the last axis, on J's device.

    Raises
    ------
    ValueError
        On a malformed or non-finite J, a bad ``top_k``, ``solver`` or ``rtol``.
    """
    J = _check_jacobian(J)
    k = _check_top_k(top_k, J.shape[2])
    check_option(solver, "solver", _SOLVERS)
    rtol = _check_rtol(rtol, J, solver)
    J64 = J.to(torch.float64)
    if solver == "svd":
        sigma = torch.linalg.svdvals(J64)  # min(D, d) values: a wide J (D < d) has d - D more zeros
        sigma = torch.nn.functional.pad(sigma, (0, J.shape[2] - sigma.shape[1]))
    else:
        # eigvalsh returns ascending eigenvalues; rounding can make the zero ones slightly negative
        sigma = torch.linalg.eigvalsh(J64.mT @ J64).flip(-1).clamp_min(0).sqrt()
    sigma = torch.where(sigma <= rtol * sigma[:, :1], torch.zeros_like(sigma), sigma)
    return sigma[:, :k]


def _check_rtol(rtol, J: torch.Tensor, solver: str) -> float:
    floor = math.sqrt(max(J.shape[1:]) * _EPS64) if solver == "eigh" else 0.0
    if rtol is None:
        return max(_default_rtol(J), floor)
    rtol = check_real(rtol, "rtol", low=0)
    if rtol < floor:
        raise ParameterError(f"rtol={rtol:.3g} is below what solver='eigh' resolves (sqrt(max(D, d) * eps64) = "
                         f"{floor:.3g}); pass solver='svd' or rtol >= {floor:.3g}")
    return float(rtol)


def _top_singular_values(singular_values, top_k) -> torch.Tensor:
    """The ``top_k`` largest of each row, descending, float64, after checking the input."""
    if not isinstance(singular_values, torch.Tensor):  # copy numpy views (e.g. reversed) torch cannot wrap
        singular_values = np.ascontiguousarray(singular_values, dtype=np.float64)
    sigma = torch.as_tensor(singular_values)
    if sigma.device.type == "mps":  # MPS has no float64
        sigma = sigma.cpu()
    if sigma.dim() != 2 or 0 in sigma.shape:
        raise ParameterError(f"singular_values must have shape (B, d), got {tuple(sigma.shape)}")
    sigma = sigma.to(torch.float64)
    if not torch.isfinite(sigma).all() or (sigma < 0).any():
        raise ParameterError("singular_values must be finite and non-negative")
    k = _check_top_k(top_k, sigma.shape[1])
    return sigma.sort(dim=1, descending=True).values[:, :k]


def _log_volume(top: torch.Tensor, warn: bool = True) -> torch.Tensor:
    """``sum_k log sigma_k`` per row, with one warning counting the rows that are -inf
    (a zero among their top singular values)."""
    degenerate = int((top[:, -1] == 0).sum())
    if warn and degenerate:
        # stacklevel 3: past this helper and the public function, at the caller's line
        warnings.warn(f"{degenerate} of {top.shape[0]} samples have a rank-deficient Jacobian (a zero among "
                      f"their top {top.shape[1]} singular values): their log-volume is -inf, i.e. weight 0. "
                      "Lower top_k to the rank, or look for dead units in the generator.",
                      RuntimeWarning, stacklevel=3)
    return top.log().sum(dim=1)


def log_volume_from_singular_values(singular_values: torch.Tensor | np.ndarray,
                                    top_k: int | None = None) -> torch.Tensor:
    r"""Log of the local volume factor, :math:`\sum_{k \le K} \log \sigma_k`, in float64.

    A sample with a zero among its ``top_k`` largest singular values (a rank-deficient Jacobian,
    e.g. from dead units) gets ``-inf``, and one ``RuntimeWarning`` says how many samples
    did; MaGNET and Polarity with ``rho > 0`` then give it weight 0.

    Parameters
    ----------
    singular_values
        Shape (B, d), non-negative and finite, in any order: the ``top_k`` largest are used.
    top_k
        Number of largest singular values in the product; ``None`` uses all d.

    Returns
    -------
    torch.Tensor or numpy.ndarray
        Shape (B,), float64: torch on the input's device for a torch input, numpy for a numpy
        input (or a list).

    Raises
    ------
    ValueError
        If the input is not 2-D, has negative, NaN or inf entries, or ``top_k`` is out of range.
    """
    top = _top_singular_values(singular_values, top_k)
    lv = _log_volume(top)
    return lv if isinstance(singular_values, torch.Tensor) else lv.numpy()


def log_volume_from_jacobian(J: torch.Tensor, top_k: int | None = None, *, solver: str = "eigh",
                             rtol: float | None = None) -> torch.Tensor:
    r"""``½ log det(JᵀJ)`` (or its top-k part) per sample from precomputed Jacobians, float64.

    See :func:`singular_values_from_jacobian` for ``solver`` and ``rtol`` and
    :func:`log_volume_from_singular_values` for the ``-inf`` of rank-deficient Jacobians.

    Parameters
    ----------
    J
        Shape (B, D, d).
    top_k, solver, rtol
        As in :func:`singular_values_from_jacobian`.

    Returns
    -------
    torch.Tensor
        Shape (B,), float64.
    """
    top = singular_values_from_jacobian(J, top_k, solver=solver, rtol=rtol)
    return _log_volume(top)


def singular_values(generator: nn.Module, z: torch.Tensor, top_k: int | None = None, *,
                    method: str = "cpa", chunk_size: int | None = None, solver: str = "eigh",
                    rtol: float | None = None) -> torch.Tensor:
    """Singular values of the generator's Jacobian at each latent, descending, float64.

    Jacobians are built and reduced ``chunk_size`` latents at a time, so only one chunk of
    Jacobians is held in memory.

    Parameters
    ----------
    generator, z, method, chunk_size
        As in :func:`jacobian`.
    top_k, solver, rtol
        As in :func:`singular_values_from_jacobian`.

    Returns
    -------
    torch.Tensor
        Shape (B, top_k) (``top_k = d`` by default), float64.
    """
    _check_generator_call(generator, z, method, chunk_size)
    return torch.cat([
        singular_values_from_jacobian(jacobian(generator, zc, method=method), top_k, solver=solver, rtol=rtol)
        for zc in z.split(int(chunk_size or z.shape[0]))])


def log_volume(generator: nn.Module, z: torch.Tensor, top_k: int | None = None, *, method: str = "cpa",
               chunk_size: int | None = None, solver: str = "eigh", rtol: float | None = None) -> torch.Tensor:
    r"""Log volume factor :math:`\tfrac12 \log\det(J^\top J) = \sum_{k \le K} \log\sigma_k` per latent.

    Parameters
    ----------
    generator, z, method, chunk_size
        As in :func:`jacobian`.
    top_k, solver, rtol
        As in :func:`singular_values_from_jacobian`.

    Returns
    -------
    torch.Tensor
        Shape (B,), float64; ``-inf`` (with a ``RuntimeWarning``) where the Jacobian is
        rank-deficient within the top ``top_k`` singular values.

    Examples
    --------
    A linear map that doubles one coordinate and triples the other has volume factor 6
    everywhere; a ReLU network's factor changes from region to region.

    >>> import math, torch
    >>> G = torch.nn.Linear(2, 3, bias=False)
    >>> with torch.no_grad():
    ...     _ = G.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 3.0], [0.0, 0.0]]))
    >>> lv = log_volume(G, torch.randn(4, 2))
    >>> lv.dtype, torch.allclose(lv, torch.full((4,), math.log(6.0), dtype=torch.float64))
    (torch.float64, True)
    """
    top = singular_values(generator, z, top_k, method=method, chunk_size=chunk_size, solver=solver, rtol=rtol)
    return _log_volume(top)


# --------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------


def _vector(x, name: str) -> np.ndarray:
    """A float64 numpy vector from a torch tensor (any device), numpy array or sequence."""
    arr = to_numpy(x, name)
    if arr.ndim != 1 or arr.size == 0:
        raise ParameterError(f"{name} must be a non-empty 1-D array of shape (B,), got shape {arr.shape}")
    return arr


def _check_log(lw: np.ndarray, name: str) -> None:
    if np.isnan(lw).any():
        raise ParameterError(f"{name} has {int(np.isnan(lw).sum())} NaN entries; find where they come from "
                         "(a NaN Jacobian, log of a negative number) instead of masking them")
    if np.isposinf(lw).any():
        raise ParameterError(f"{name} has +inf entries; an infinite weight cannot be normalized")


def _normalize(lw: np.ndarray) -> np.ndarray:
    _check_log(lw, "log_weights")
    if np.isneginf(lw).all():
        raise ParameterError("every log-weight is -inf, so no sample can be drawn; with log-volumes this means "
                             "every Jacobian is rank-deficient: lower top_k")
    w = np.exp(lw - lw.max())
    return w / w.sum()


def normalize_log_weights(log_weights):
    r"""Normalized weights :math:`p_i = e^{w_i} / \sum_j e^{w_j}` by log-sum-exp.

    Subtracting the maximum first means log-weights spanning thousands of nats neither overflow
    nor turn into NaN; ``-inf`` entries get weight exactly 0.

    Parameters
    ----------
    log_weights
        Shape (B,), torch or numpy; finite or ``-inf``.

    Returns
    -------
    torch.Tensor or numpy.ndarray
        Shape (B,), float64, non-negative, summing to 1; torch on ``log_weights``' device for a
        torch input, numpy otherwise.

    Raises
    ------
    ValueError
        (a ``ParameterError``, also a TypeError) On NaN or ``+inf`` entries, or when every entry is
        ``-inf``.

    Examples
    --------
    >>> import numpy as np
    >>> normalize_log_weights(np.array([0.0, np.log(3.0), -np.inf])).round(3).tolist()
    [0.25, 0.75, 0.0]
    """
    return like(_normalize(_vector(log_weights, "log_weights")), log_weights)


def magnet_weights(log_volume, log_prior):
    r"""MaGNET importance weights :math:`\propto \mathrm{vol}(z_i) / \pi(z_i)`, normalized.

    For proposals :math:`z_i \sim \pi` these are the exact weights that make the resampled
    outputs :math:`G(z)` uniform on the generator's manifold as the number of proposals grows.
    Dropping :math:`1/\pi` (as the official code does) is not uniform unless :math:`\pi` is flat.

    Parameters
    ----------
    log_volume
        Shape (B,): :func:`log_volume` of the proposals; ``-inf`` (zero volume) gets weight 0.
    log_prior
        Shape (B,), or a number for a constant density (a uniform proposal on a box): the log
        proposal density :math:`\log\pi(z_i)`, finite (a proposal was drawn where
        :math:`\pi > 0`). Normalizing constants cancel.

    Returns
    -------
    torch.Tensor or numpy.ndarray
        Shape (B,), float64, summing to 1; torch on ``log_volume``'s device for a torch
        ``log_volume``, numpy otherwise.

    Raises
    ------
    ValueError
        (a ``ParameterError``, also a TypeError) On shape mismatch, NaN or ``+inf`` log-volumes,
        non-finite log-prior, or when every log-volume is ``-inf``.

    Examples
    --------
    Volumes 1, 2 and 1 under a flat proposal (a constant log-prior cancels):

    >>> import torch
    >>> w = magnet_weights(torch.log(torch.tensor([1.0, 2.0, 1.0])), 0.0)
    >>> w
    tensor([0.2500, 0.5000, 0.2500], dtype=torch.float64)
    """
    lv = _vector(log_volume, "log_volume")
    _check_log(lv, "log_volume")
    lp = to_numpy(log_prior, "log_prior")
    if lp.ndim > 1 or (lp.ndim == 1 and lp.shape != lv.shape):
        raise ParameterError(f"log_prior must be a number or have log_volume's shape {lv.shape}, got {lp.shape}")
    if not np.isfinite(lp).all():
        raise ParameterError("log_prior must be finite: a proposal with log pi(z) = -inf could not have been drawn "
                         "from pi, and NaN has no meaning; check the prior's support and formula")
    return like(_normalize(lv - lp), log_volume)


def _check_rho(rho) -> float:
    return check_real(rho, "rho")


def _polarity(lv: np.ndarray, rho: float) -> np.ndarray:
    _check_log(lv, "log_volume")
    if rho == 0:
        return np.full(lv.shape, 1.0 / lv.size)
    if rho < 0 and np.isneginf(lv).any():
        raise ParameterError(f"{int(np.isneginf(lv).sum())} samples have zero volume (log-volume -inf), so their "
                             f"weight vol^rho is infinite for rho={rho:g} < 0; lower top_k to the Jacobian rank or "
                             "drop them")
    return _normalize(rho * lv)


def polarity_weights_from_log_volume(log_volume, rho: float):
    r"""Polarity weights :math:`\propto \mathrm{vol}(z_i)^\rho`, normalized, from log-volumes.

    For latents drawn from the generator's prior :math:`p`, resampling with these weights draws
    from :math:`p_\rho(z) \propto p(z)\,\mathrm{vol}(z)^\rho`. Computed as
    ``softmax(rho * log_volume)``, so ``|rho| = 50`` over log-volumes spanning ``±1e4`` stays finite.
    A sweep over ``rho`` reuses one set of log-volumes.

    Parameters
    ----------
    log_volume
        Shape (B,), from :func:`log_volume` (with the ``top_k`` you want).
    rho
        Finite. ``0`` gives uniform weights (the original sampler), even for zero-volume
        samples (``0^0 = 1``); for ``rho > 0`` zero-volume samples get weight 0.

    Returns
    -------
    torch.Tensor or numpy.ndarray
        Shape (B,), float64, summing to 1; torch on ``log_volume``'s device for a torch input,
        numpy otherwise.

    Raises
    ------
    ValueError
        (a ``ParameterError``, also a TypeError) If ``rho`` is not finite, on NaN or ``+inf``
        log-volumes, or for ``rho < 0`` when a sample has zero volume (its weight ``0^rho`` would be
        infinite: lower ``top_k``).

    Examples
    --------
    >>> import numpy as np
    >>> lv = np.log([1.0, 2.0, 4.0])
    >>> polarity_weights_from_log_volume(lv, 1.0).round(4).tolist()
    [0.1429, 0.2857, 0.5714]
    >>> polarity_weights_from_log_volume(lv, 0.0).round(4).tolist()
    [0.3333, 0.3333, 0.3333]
    """
    rho = _check_rho(rho)
    return like(_polarity(_vector(log_volume, "log_volume"), rho), log_volume)


def polarity_weights(singular_values, rho: float, top_k: int | None = None):
    r"""Polarity weights :math:`\propto \prod_{k \le K} \sigma_k^\rho`, normalized.

    Equivalent to ``polarity_weights_from_log_volume(log_volume_from_singular_values(σ, top_k), rho)``;
    see :func:`polarity_weights_from_log_volume` for the meaning of ``rho`` and the edge cases.

    Parameters
    ----------
    singular_values
        Shape (B, d), non-negative, e.g. from :func:`singular_values`; any order.
    rho
        Finite polarity.
    top_k
        Use the ``top_k`` largest singular values of each row; ``None`` uses all d.

    Returns
    -------
    torch.Tensor or numpy.ndarray
        Shape (B,), float64, summing to 1; torch on ``singular_values``' device for a torch
        input, numpy otherwise.

    Examples
    --------
    Rows with volume factors 1 and 3; ``rho = -1`` favours the smaller volume (a mode):

    >>> import torch
    >>> polarity_weights(torch.tensor([[1.0, 1.0], [3.0, 1.0]]), rho=-1.0)
    tensor([0.7500, 0.2500], dtype=torch.float64)
    """
    rho = _check_rho(rho)
    top = _top_singular_values(singular_values, top_k)
    lv = _log_volume(top, warn=rho != 0)  # at rho = 0 a zero volume changes nothing: no warning
    return like(_polarity(_vector(lv, "log_volume"), rho), singular_values)


# --------------------------------------------------------------------------------------------
# Resampling
# --------------------------------------------------------------------------------------------


def _probabilities(weights) -> np.ndarray:
    w = _vector(weights, "weights")
    if not np.isfinite(w).all():
        raise ParameterError("weights must be finite (no NaN or inf); build them with normalize_log_weights "
                         "or the *_weights functions, which work in log space")
    if (w < 0).any():
        raise ParameterError(f"weights must be non-negative, got a minimum of {w.min():.3g}")
    if w.sum() == 0:
        raise ParameterError("weights are all zero, so no sample can be drawn")
    return w / w.sum()


def effective_sample_size(weights) -> float:
    r"""Kish's effective sample size :math:`1/\sum_i p_i^2` of the normalized weights.

    It equals B for uniform weights and 1 when one weight holds all the mass: roughly how many
    independent proposals the weighted set is worth.

    Parameters
    ----------
    weights
        Shape (B,), non-negative, not all zero; normalized here. Torch (any device) or numpy.

    Returns
    -------
    float
        In [1, B], a Python float whatever the input's type.

    Examples
    --------
    >>> effective_sample_size([1.0, 1.0, 1.0, 1.0]), effective_sample_size([1.0, 0.0, 0.0, 0.0])
    (4.0, 1.0)
    >>> round(effective_sample_size([0.5, 0.25, 0.25]), 3)
    2.667
    """
    p = _probabilities(weights)
    return float(1.0 / np.sum(p * p))


def _check_replace(replace) -> bool:
    if not isinstance(replace, (bool, np.bool_)):
        raise ParameterError(f"replace must be True (i.i.d. importance resampling) or False (distinct indices), "
                             f"got {replace!r}")
    return bool(replace)


def _indices(p: np.ndarray, n, replace, seed) -> np.ndarray:
    n, replace = check_int(n, "n", low=1), _check_replace(replace)
    if not replace and np.count_nonzero(p) < n:
        raise ParameterError(f"cannot draw n={n} distinct samples: only {np.count_nonzero(p)} of {p.size} weights "
                             "are non-zero; pass replace=True, a smaller n, or more proposals")
    return rng(seed).choice(p.size, size=n, replace=replace, p=p).astype(np.int64)


def resample_indices(weights, n: int, *, replace: bool, seed=None):
    """Draw ``n`` indices with probabilities proportional to ``weights``.

    ``replace`` has no default; the caller chooses:

    * ``replace=True`` draws i.i.d. indices from the weighted proposals: the textbook importance
      resampling, which converges to the target as the number of proposals grows (the book's
      chapters use it, and say so).
    * ``replace=False`` (the official MaGNET/Polarity code) returns distinct indices by
      successive sampling; it is pulled back toward the proposal distribution unless ``n`` is a
      small fraction of the effective sample size, and needs ``n`` non-zero weights.

    Parameters
    ----------
    weights
        Shape (B,), non-negative, finite, not all zero; normalized here. Torch (any device) or
        numpy.
    n
        Number of indices, >= 1.
    replace
        Keyword-only, required: draw with replacement (True) or without (False).
    seed
        Keyword-only: an int, a ``numpy.random.Generator``, or ``None`` (the default) for the
        next draw from numpy's global generator, which :func:`helpers.runtime.setup` seeds with
        the notebook's base seed (so a notebook is reproducible for a given ``BOOK_SEED``).

    Returns
    -------
    torch.Tensor or numpy.ndarray
        Shape (n,), int64 indices into ``weights``: a torch tensor on ``weights``' device for a
        torch input (ready to index a tensor there), numpy otherwise. The indices are the same
        for both types.

    Raises
    ------
    ValueError
        (a ``ParameterError``, also a TypeError) On bad weights, ``n < 1``, a non-bool ``replace``,
        a bad seed, or ``replace=False`` with fewer than ``n`` non-zero weights.

    Examples
    --------
    >>> import torch
    >>> w = torch.tensor([0.0, 0.5, 0.5])
    >>> idx = resample_indices(w, 4, replace=True, seed=0)
    >>> idx.dtype, bool((idx > 0).all())
    (torch.int64, True)
    >>> resample_indices([0.2, 0.8], 2, replace=False, seed=0).tolist() in ([0, 1], [1, 0])
    True
    """
    return like(_indices(_probabilities(weights), n, replace, seed), weights)


def resample(z, weights, n: int, *, replace: bool, seed=None, return_indices: bool = False):
    """Rows of ``z`` drawn with probabilities proportional to ``weights``.

    Parameters
    ----------
    z
        Proposals, shape (B, d) or (B, ...), a torch tensor or numpy array.
    weights, n, replace, seed
        As in :func:`resample_indices` (``replace`` and ``seed`` keyword-only, ``replace``
        required).
    return_indices
        Also return the indices, int64, of ``z``'s type and device (to index paired arrays).

    Returns
    -------
    torch.Tensor or numpy.ndarray, or a (rows, indices) tuple
        Rows of shape (n, ...), of ``z``'s type (and device); with ``return_indices=True`` also
        the indices (the same numbers :func:`resample_indices` draws for that seed).

    Raises
    ------
    ValueError
        (a ``ParameterError``, also a TypeError) When ``z`` and ``weights`` disagree on B, and as
        :func:`resample_indices`.

    Examples
    --------
    >>> import torch
    >>> z = torch.arange(6.0).reshape(3, 2)
    >>> rows, idx = resample(z, [0.0, 0.0, 1.0], 2, replace=True, seed=0, return_indices=True)
    >>> rows, idx
    (tensor([[4., 5.],
            [4., 5.]]), tensor([2, 2]))
    """
    p = _probabilities(weights)
    B = p.size
    if not hasattr(z, "shape") or len(z.shape) == 0 or z.shape[0] != B:
        raise ParameterError(f"z must have one row per weight, i.e. shape ({B}, ...), "
                             f"got {tuple(getattr(z, 'shape', ())) or type(z).__name__}")
    idx = like(_indices(p, n, replace, seed), z)
    return (z[idx], idx) if return_indices else z[idx]
