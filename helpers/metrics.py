r"""Sample-quality metrics on feature vectors: k-NN precision/recall, density/coverage, Fréchet distance.

The book has no Inception network offline, so chapters embed samples with a small locally
trained classifier and compare feature sets with these functions.

* :func:`precision_recall`: the k-nearest-neighbour manifold estimate of Kynkäänniemi et al.,
  "Improved Precision and Recall Metric for Assessing Generative Models", NeurIPS 2019. Each
  set is approximated by the union of balls around its points, the radius of a point's ball
  being the distance to its k-th nearest neighbour in its own set (itself excluded). Precision
  is the fraction of fake samples inside the real manifold (quality); recall is the fraction
  of real samples inside the fake manifold (diversity). Membership counts the boundary (``<=``),
  as in the authors' code.
* :func:`density_coverage`: Naeem et al., "Reliable Fidelity and Diversity Metrics for
  Generative Models", ICML 2020, which use only the real balls and so are less sensitive to
  fake outliers: density counts how many real balls hold each fake sample (divided by k),
  coverage is the fraction of real balls that hold at least one fake sample.
* :func:`manifold_metrics`: all four from one pass over the fake-real distances, optionally
  with the real set's radii computed once (a sweep that scores many fake sets against the same
  real set pays for the real k-NN search once instead of four times per set).
* :func:`frechet_distance`: the distance between Gaussian fits of two feature sets (the "F" of
  FID when the features are Inception's).

Features may be numpy arrays or torch tensors (any device and float dtype) of shape (N, F);
everything is computed in float64 numpy. Scalar metrics are Python floats; the one array
result, :func:`knn_radii`, follows the package's rule (tensors in, tensors out): float64 on the
input's device for a torch input (on the CPU for MPS, which has no float64), numpy otherwise.

Distances are exact pairwise differences (``scipy.spatial.distance.cdist``, not
the ``|a|² + |b|² - 2ab`` expansion, whose cancellation can move a point across a ball's
boundary), in row blocks so memory stays at ``block_size * N`` numbers.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

from helpers._checks import ParameterError, check_int, like, to_numpy

__all__ = ["precision_recall", "density_coverage", "manifold_metrics", "frechet_distance", "knn_radii"]


def _features(x, name: str) -> np.ndarray:
    """A finite float64 (N, F) numpy array from a torch tensor (any device) or array-like."""
    arr = to_numpy(x, name)
    if arr.ndim != 2 or 0 in arr.shape:
        raise ParameterError(f"{name} must have shape (N, F) with N, F >= 1, got {arr.shape}; "
                         "flatten each sample's features into one row")
    if not np.isfinite(arr).all():
        raise ParameterError(f"{name} has {int((~np.isfinite(arr)).sum())} NaN or inf entries; "
                         "check the feature extractor's inputs")
    return arr


def _pair(a, b, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    a, b = _features(a, names[0]), _features(b, names[1])
    if a.shape[1] != b.shape[1]:
        raise ParameterError(f"{names[0]} has {a.shape[1]} features per sample but {names[1]} has {b.shape[1]}; "
                         "embed both sets with the same feature extractor")
    return a, b


def _check_k(k, sizes: dict[str, int]) -> int:
    k = check_int(k, "k", low=1)
    for name, n in sizes.items():
        if k >= n:
            raise ParameterError(f"k={k} needs at least k + 1 = {k + 1} samples in {name} (a point's k-th "
                             f"neighbour excludes itself), got {n}; lower k or add samples")
    return int(k)


def _check_block(block_size) -> int:
    return check_int(block_size, "block_size", low=1)


def _blocks(n: int, size: int):
    return (slice(i, min(i + size, n)) for i in range(0, n, size))


def _knn_radii(x: np.ndarray, k: int, block_size: int) -> np.ndarray:
    radii = np.empty(len(x))
    for rows in _blocks(len(x), block_size):
        dist = cdist(x[rows], x)
        dist[np.arange(dist.shape[0]), np.arange(rows.start, rows.stop)] = np.inf  # exclude the point itself
        radii[rows] = np.partition(dist, k - 1, axis=1)[:, k - 1]
    return radii


def knn_radii(features, k: int = 5, *, block_size: int = 1024):
    """Distance from each point to its k-th nearest neighbour in the same set, itself excluded.

    Parameters
    ----------
    features
        Shape (N, F), finite; numpy or torch.
    k
        Neighbour rank, ``1 <= k < N``. A duplicate of a point counts as a neighbour at
        distance 0; only the point itself (by index) is excluded.
    block_size
        Rows of the distance matrix held at a time.

    Returns
    -------
    torch.Tensor or numpy.ndarray
        Shape (N,), float64 (exact ball membership needs it); torch on ``features``' device for
        a torch input, numpy otherwise.

    Examples
    --------
    >>> import torch
    >>> knn_radii(torch.tensor([[0.0], [1.0], [3.0]]), k=1)
    tensor([1., 1., 2.], dtype=torch.float64)
    """
    x = _features(features, "features")
    k, block_size = _check_k(k, {"features": len(x)}), _check_block(block_size)
    return like(_knn_radii(x, k, block_size), features)


def _ball_counts(probes: np.ndarray, centers: np.ndarray, radii: np.ndarray, block_size: int) -> np.ndarray:
    """For each probe, how many balls B(center_i, radius_i) contain it (boundary included)."""
    counts = np.empty(len(probes), dtype=np.int64)
    for rows in _blocks(len(probes), block_size):
        counts[rows] = (cdist(probes[rows], centers) <= radii[None, :]).sum(axis=1)
    return counts


def precision_recall(real_features, fake_features, k: int = 5, *, block_size: int = 1024) -> tuple[float, float]:
    """k-NN manifold precision and recall (Kynkäänniemi et al. 2019).

    Parameters
    ----------
    real_features
        Shape (N_real, F), finite; numpy or torch.
    fake_features
        Shape (N_fake, F), same F.
    k
        Neighbourhood size for the ball radii (the paper uses 3; 5 is common), with
        ``k < N_real`` and ``k < N_fake``.
    block_size
        Rows of each distance matrix held at a time (memory ``block_size * max(N_real, N_fake)``
        float64 numbers).

    Returns
    -------
    precision : float
        Fraction of fake samples within the k-NN radius of at least one real sample.
    recall : float
        Fraction of real samples within the k-NN radius of at least one fake sample.

    Raises
    ------
    ValueError
        (a ``ParameterError``, also a TypeError) On NaN or inf features, mismatched feature
        dimensions, non-2-D input, or ``k`` too large.

    Examples
    --------
    Fakes that sit on half of the real points: full precision, half the recall.

    >>> import numpy as np
    >>> real = np.array([[0.0], [1.0], [10.0], [11.0]])
    >>> precision_recall(real, real[:2] + 0.1, k=1)
    (1.0, 0.5)
    """
    real, fake = _pair(real_features, fake_features, ("real_features", "fake_features"))
    k = _check_k(k, {"real_features": len(real), "fake_features": len(fake)})
    block_size = _check_block(block_size)
    precision = np.mean(_ball_counts(fake, real, _knn_radii(real, k, block_size), block_size) > 0)
    recall = np.mean(_ball_counts(real, fake, _knn_radii(fake, k, block_size), block_size) > 0)
    return float(precision), float(recall)


def density_coverage(real_features, fake_features, k: int = 5, *, block_size: int = 1024) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020), from the real k-NN balls only.

    Parameters
    ----------
    real_features, fake_features, k, block_size
        As in :func:`precision_recall` (only ``k < N_real`` is needed).

    Returns
    -------
    density : float
        ``(1 / (k N_fake)) * sum_j #{i : fake_j in B(real_i, r_i)}``; about 1 when the two sets
        come from the same distribution, above 1 when fakes crowd into dense real regions.
    coverage : float
        Fraction of real balls containing at least one fake sample, in [0, 1].

    Raises
    ------
    ValueError
        As :func:`precision_recall`.
    """
    real, fake = _pair(real_features, fake_features, ("real_features", "fake_features"))
    k, block_size = _check_k(k, {"real_features": len(real)}), _check_block(block_size)
    radii = _knn_radii(real, k, block_size)
    density = _ball_counts(fake, real, radii, block_size).sum() / (k * len(fake))
    # coverage asks, per real ball, whether its nearest fake sample is inside
    nearest_fake = np.concatenate([cdist(real[rows], fake).min(axis=1) for rows in _blocks(len(real), block_size)])
    return float(density), float(np.mean(nearest_fake <= radii))


def manifold_metrics(real_features, fake_features, k: int = 5, *, real_radii=None,
                     block_size: int = 1024) -> dict[str, float]:
    """Precision, recall, density and coverage in one pass over the fake-real distances.

    The same numbers as :func:`precision_recall` and :func:`density_coverage` (the same
    distances, bit for bit), for a quarter of the distance computations.

    Parameters
    ----------
    real_features, fake_features, k, block_size
        As in :func:`precision_recall`.
    real_radii
        Optional ``knn_radii(real_features, k)``, computed once by the caller when the same real
        set is compared with many fake sets; shape (N_real,), finite and non-negative.

    Returns
    -------
    dict
        ``{"precision", "recall", "density", "coverage"}`` -> float.

    Raises
    ------
    ValueError
        (a ``ParameterError``, also a TypeError) As :func:`precision_recall`, or when ``real_radii``
        has the wrong shape or invalid values.

    Examples
    --------
    >>> import torch
    >>> real = torch.tensor([[0.0], [1.0], [10.0], [11.0]])
    >>> manifold_metrics(real, real[:2] + 0.1, k=1)
    {'precision': 1.0, 'recall': 0.5, 'density': 1.5, 'coverage': 0.5}
    """
    real, fake = _pair(real_features, fake_features, ("real_features", "fake_features"))
    k = _check_k(k, {"real_features": len(real), "fake_features": len(fake)})
    block_size = _check_block(block_size)
    if real_radii is None:
        real_radii = _knn_radii(real, k, block_size)
    else:
        real_radii = to_numpy(real_radii, "real_radii")
        if real_radii.shape != (len(real),) or not np.all(np.isfinite(real_radii)) or np.any(real_radii < 0):
            raise ParameterError(f"real_radii must be knn_radii(real_features, k): shape ({len(real)},), finite, "
                             f">= 0; got shape {real_radii.shape}")
    fake_radii = _knn_radii(fake, k, block_size)
    real_balls_holding = np.empty(len(fake), dtype=np.int64)   # per fake sample: real balls that contain it
    covered = np.zeros(len(real), dtype=bool)                  # per real ball: holds a fake sample
    recalled = np.zeros(len(real), dtype=bool)                 # per real sample: inside a fake ball
    for rows in _blocks(len(fake), block_size):
        dist = cdist(fake[rows], real)
        inside = dist <= real_radii[None, :]
        real_balls_holding[rows] = inside.sum(axis=1)
        covered |= inside.any(axis=0)
        recalled |= (dist <= fake_radii[rows, None]).any(axis=0)
    return {"precision": float(np.mean(real_balls_holding > 0)), "recall": float(recalled.mean()),
            "density": float(real_balls_holding.sum() / (k * len(fake))), "coverage": float(covered.mean())}


def _gaussian_fit(x: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    if len(x) < 2:
        raise ParameterError(f"{name} needs at least 2 samples to estimate a covariance, got {len(x)}")
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def _psd_sqrt(m: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix; rounding-negative eigenvalues become 0."""
    vals, vecs = np.linalg.eigh(m)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def frechet_distance(a, b) -> float:
    r"""Fréchet (2-Wasserstein) distance squared between Gaussian fits of two feature sets.

    .. math::  d^2 = \|\mu_a - \mu_b\|^2 + \operatorname{tr}\big(\Sigma_a + \Sigma_b
               - 2 (\Sigma_a \Sigma_b)^{1/2}\big)

    with sample means and unbiased covariances. The trace of the square root uses the symmetric
    form :math:`\operatorname{tr}(\Sigma_a\Sigma_b)^{1/2} = \operatorname{tr}(\Sigma_a^{1/2}
    \Sigma_b \Sigma_a^{1/2})^{1/2}` (the two products are similar), whose square root comes from
    a symmetric eigen-decomposition with real, non-negative eigenvalues. This avoids
    ``scipy.linalg.sqrtm`` of the non-symmetric product, whose rounding produces the small
    imaginary parts that FID code discards. A result that rounding makes slightly negative
    (identical sets) is returned as 0. When a covariance is singular (e.g. N <= F), the square
    root of its rounding-level eigenvalues limits the accuracy to about sqrt(eps) relative to
    the traces, for this and for the sqrtm formula alike.

    Parameters
    ----------
    a, b
        Shapes (N_a, F) and (N_b, F), finite, N >= 2; numpy or torch.

    Returns
    -------
    float
        Non-negative; 0 for identical sets; symmetric in ``a`` and ``b``. Like FID it is biased
        upward for finite samples (the sampling noise of the covariances adds to it).

    Raises
    ------
    ValueError
        On NaN or inf entries, mismatched feature dimensions, non-2-D input or N < 2.
    """
    a, b = _pair(a, b, ("a", "b"))
    (mu_a, cov_a), (mu_b, cov_b) = _gaussian_fit(a, "a"), _gaussian_fit(b, "b")
    root_a = _psd_sqrt(cov_a)
    middle = root_a @ cov_b @ root_a
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    d2 = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * tr_sqrt
    return float(max(d2, 0.0))
