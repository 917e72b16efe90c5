"""The book's data sets and splits, all offline, each a deterministic function of its arguments.

Every data set a chapter uses comes from here, so that two chapters that say "the digits" or
"the imbalanced moons" mean the same points, and every random draw names its seed.

- **Digits** (scikit-learn's bundled 8x8 digits, 1797 images, no download):

  - :func:`load_digits_array`: all images as numpy arrays, pixels in [0, 1] or raw 0..16;
  - :func:`digits_holdout`: a stratified train/test split of a chosen size, as numpy arrays
    (extrapolation: ``digits_holdout(297, seed=0)`` is the page's 1500/297 split);
  - ``load_digits_tensor``, re-exported from :func:`helpers.generative.load_digits_tensor`
    (imported on first use): torch tensors with the book's one fixed stratified train/test
    split (``split="train"``/``"test"``, 30 % of each class held out) and class re-weighting.

- **Splits**: :func:`stratified_split` (numpy indices, class proportions kept) and
  :func:`permutation_split` (torch indices from one ``torch.randperm``; polarity's
  ``permutation_split(1797, 1400, seed=0)`` is the page's split of the digits).
- **Moons**: :func:`imbalanced_moons`, scikit-learn's two moons with 85 % of the points on the
  upper moon (radius k-means; ``imbalanced_moons(100, seed=10)`` is the paper's data set).

Seeds are keyword-only and have no default: a page passes its own (``env.seed`` or a literal it
states). Everything returns numpy arrays except ``load_digits_tensor`` and
:func:`permutation_split`, which return torch tensors.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["load_digits_array", "digits_holdout", "stratified_split", "permutation_split", "imbalanced_moons",
           "load_digits_tensor", "N_DIGITS"]

N_DIGITS = 1797
_SCALES = ("unit", "raw")


def __getattr__(name):  # load_digits_tensor lives in helpers.generative; import torch only when asked
    if name == "load_digits_tensor":
        from helpers.generative import load_digits_tensor

        return load_digits_tensor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be at least {low}, got {value}")
    return int(value)


def _check_seed(seed) -> int:
    return _check_int("seed", seed, 0)


def load_digits_array(*, scale: str = "unit") -> tuple[np.ndarray, np.ndarray]:
    """All 1797 bundled digits as numpy arrays, in the order of the bundled data set.

    Parameters
    ----------
    scale
        ``"unit"`` (default): pixels / 16, in [0, 1]; ``"raw"``: scikit-learn's 0..16 values.

    Returns
    -------
    X : numpy.ndarray
        Shape (1797, 64), float64.
    y : numpy.ndarray
        Shape (1797,), int64 labels 0..9.

    Raises
    ------
    ValueError
        If ``scale`` is not ``"unit"`` or ``"raw"``.

    Examples
    --------
    >>> X, y = load_digits_array()
    >>> X.shape, X.dtype, float(X.max()), y[:5].tolist()
    ((1797, 64), dtype('float64'), 1.0, [0, 1, 2, 3, 4])
    """
    from sklearn.datasets import load_digits

    if scale not in _SCALES:
        raise ValueError(f"scale must be one of {_SCALES}, got {scale!r}")
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float64)
    return (X / 16.0 if scale == "unit" else X), y.astype(np.int64)


def stratified_split(y, test_size: int | float, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices of a stratified split of the labels ``y`` (class shares kept).

    The same draw as ``sklearn.model_selection.train_test_split(..., test_size=test_size,
    random_state=seed, stratify=y)``, returned as indices so that any array aligned with ``y``
    can be split alike.

    Parameters
    ----------
    y
        Labels, shape (n,).
    test_size
        Number of test items (an int) or their fraction (a float in (0, 1)).
    seed
        The split's seed.

    Returns
    -------
    train_idx, test_idx : numpy.ndarray
        int64 indices into ``y``; disjoint, and together every index once.

    Raises
    ------
    ValueError
        If the seed is negative or scikit-learn refuses the sizes (e.g. a class with one item).
    TypeError
        If the seed is not an int.
    """
    from sklearn.model_selection import train_test_split

    seed = _check_seed(seed)
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be one-dimensional labels, got shape {y.shape}")
    train_idx, test_idx = train_test_split(np.arange(len(y)), test_size=test_size, random_state=seed, stratify=y)
    return train_idx.astype(np.int64), test_idx.astype(np.int64)


def digits_holdout(test_size: int | float, *, seed: int, scale: str = "unit"):
    """The digits split into a training and a held-out part, stratified by class (numpy).

    Equal, array for array, to ``train_test_split(X, y, test_size=test_size, random_state=seed,
    stratify=y)`` on :func:`load_digits_array`. For the book's one fixed split of the digits
    in torch, use ``load_digits_tensor(split="train")`` / ``("test")`` instead.

    Parameters
    ----------
    test_size
        Held-out images (an int) or their fraction (a float in (0, 1)).
    seed
        The split's seed.
    scale
        As in :func:`load_digits_array`.

    Returns
    -------
    X_train, X_test, y_train, y_test : numpy.ndarray
        float64 images (n, 64) and int64 labels; no image index is in both parts.

    Examples
    --------
    >>> X_tr, X_te, y_tr, y_te = digits_holdout(297, seed=0)
    >>> X_tr.shape, X_te.shape, sorted(set(y_te.tolist())) == list(range(10))
    ((1500, 64), (297, 64), True)
    """
    X, y = load_digits_array(scale=scale)
    train_idx, test_idx = stratified_split(y, test_size, seed=seed)
    return X[train_idx], X[test_idx], y[train_idx], y[test_idx]


def permutation_split(n: int, n_train: int, *, seed: int, device=None):
    """Train and test indices from one ``torch.randperm(n)`` drawn with a fresh generator.

    The first ``n_train`` entries of the permutation are the training indices, the rest the
    test indices: ``torch.randperm(n, generator=torch.Generator().manual_seed(seed))`` split
    at ``n_train``, with no effect on torch's global generator. The polarity pages' split of
    the digits is ``permutation_split(1797, 1400, seed=0)``. Classes are not balanced; use
    :func:`stratified_split` for that.

    Parameters
    ----------
    n
        Number of items.
    n_train
        Training items, 1 <= n_train < n.
    seed
        The permutation's seed.
    device
        Where to put the indices (drawn on the CPU, so every device gets the same split).

    Returns
    -------
    train_idx, test_idx : torch.Tensor
        int64, shapes (n_train,) and (n - n_train,); disjoint, together every index once.

    Raises
    ------
    ValueError
        If ``n_train`` is not in [1, n - 1] or the seed is negative.
    TypeError
        If a count or the seed is not an int.
    """
    import torch

    n = _check_int("n", n, 2)
    n_train = _check_int("n_train", n_train, 1)
    if n_train >= n:
        raise ValueError(f"n_train must leave at least one test item: n_train={n_train}, n={n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(_check_seed(seed)))
    if device is not None:
        perm = perm.to(device)
    return perm[:n_train], perm[n_train:]


def imbalanced_moons(n: int, *, seed: int, minority: float = 0.15, noise: float = 0.05):
    """Two interleaved moons with most points on the upper one (scikit-learn's ``make_moons``).

    ``max(1, round(minority * n))`` points lie on the lower moon (label 1) and the rest on the
    upper moon (label 0), with Gaussian noise of standard deviation ``noise``, shuffled.
    ``imbalanced_moons(100, seed=10)`` is the radius k-means paper's data set (85/15 points,
    noise 0.05): the authors' ``np.random.seed(10); make_moons(n_samples=(85, 15), noise=0.05)``
    draws the same points, without touching numpy's global generator here.

    Parameters
    ----------
    n
        Number of points, at least 2.
    seed
        ``random_state`` of ``make_moons``.
    minority
        Share of the points on the lower moon, in (0, 1).
    noise
        Standard deviation of the noise, at least 0.

    Returns
    -------
    X : numpy.ndarray
        Shape (n, 2), float64.
    y : numpy.ndarray
        Shape (n,), int64: 0 upper (majority) moon, 1 lower (minority) moon.

    Raises
    ------
    ValueError
        If ``n < 2``, ``minority`` is not in (0, 1), ``noise`` is negative or not finite, the
        minority leaves no majority point, or the seed is negative.
    TypeError
        If ``n`` or the seed is not an int, or a share is not a number.

    Examples
    --------
    >>> X, y = imbalanced_moons(100, seed=10)
    >>> X.shape, int((y == 1).sum())
    ((100, 2), 15)
    """
    from sklearn.datasets import make_moons

    n = _check_int("n", n, 2)
    seed = _check_seed(seed)
    for name, value in (("minority", minority), ("noise", noise)):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a number, got {value!r}")
    if not 0 < minority < 1:
        raise ValueError(f"minority must be a share in (0, 1), got {minority!r}")
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite standard deviation >= 0, got {noise!r}")
    n_minority = max(1, round(minority * n))
    if n_minority >= n:
        raise ValueError(f"minority={minority} puts all {n} points on the lower moon; lower it or raise n")
    X, y = make_moons(n_samples=(n - n_minority, n_minority), noise=float(noise), random_state=seed)
    return X.astype(np.float64), y.astype(np.int64)
