"""helpers.data: the book's offline data sets and splits (shapes, dtypes, class balance,
determinism per seed, disjoint splits), each equal to the inline code the chapters used."""

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, make_moons
from sklearn.model_selection import train_test_split

import helpers.data as data
from helpers.data import (N_DIGITS, digits_holdout, imbalanced_moons, load_digits_array, permutation_split,
                          stratified_split)


def _rows(X):
    """The rows of X as a sorted multiset (the digits contain duplicate images)."""
    X = np.asarray(X)
    return X[np.lexsort(X.T[::-1])]


def _assert_partition(train_idx, test_idx, n):
    train_idx, test_idx = np.asarray(train_idx), np.asarray(test_idx)
    assert not set(train_idx.tolist()) & set(test_idx.tolist())
    assert np.array_equal(np.sort(np.concatenate([train_idx, test_idx])), np.arange(n))


# ----------------------------------------------------------------------------- digits


@pytest.mark.parametrize("scale, top", [("unit", 1.0), ("raw", 16.0)])
def test_load_digits_array_matches_sklearn(scale, top):
    X, y = load_digits_array(scale=scale)
    ref_X, ref_y = load_digits(return_X_y=True)
    assert X.shape == (N_DIGITS, 64) and X.dtype == np.float64 and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == top
    assert np.array_equal(X * (16.0 / top), ref_X) and np.array_equal(y, ref_y)
    assert np.array_equal(np.bincount(y), np.bincount(ref_y)) and len(np.bincount(y)) == 10


def test_digits_holdout_is_the_extrapolation_pages_split():
    X_all, y_all = load_digits(return_X_y=True)
    ref = train_test_split(X_all / 16.0, y_all, test_size=297, random_state=0, stratify=y_all)
    got = digits_holdout(297, seed=0)
    assert [a.shape for a in got] == [(1500, 64), (297, 64), (1500,), (297,)]
    for a, b in zip(got, ref):
        assert np.array_equal(a, b)


def test_digits_holdout_is_stratified_disjoint_and_seeded():
    y = load_digits_array()[1]
    train_idx, test_idx = stratified_split(y, 297, seed=3)
    _assert_partition(train_idx, test_idx, N_DIGITS)
    expected = 297 * np.bincount(y) / N_DIGITS
    assert np.all(np.abs(np.bincount(y[test_idx], minlength=10) - expected) <= 1)
    X_tr, X_te, y_tr, y_te = digits_holdout(297, seed=3)
    X, _ = load_digits_array()
    assert np.array_equal(X_te, X[test_idx]) and np.array_equal(y_tr, y[train_idx])
    assert np.array_equal(_rows(np.vstack([X_tr, X_te])), _rows(X))
    again = digits_holdout(297, seed=3)
    other = digits_holdout(297, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(again, (X_tr, X_te, y_tr, y_te)))
    assert not np.array_equal(other[1], X_te)
    frac = digits_holdout(0.25, seed=0, scale="raw")
    assert len(frac[1]) == math.ceil(0.25 * N_DIGITS)  # scikit-learn rounds the test part up
    assert frac[0].max() == 16.0


def test_load_digits_tensor_is_reexported_and_its_fixed_split_never_overlaps():
    from helpers.generative import load_digits_tensor

    assert data.load_digits_tensor is load_digits_tensor
    X_tr, y_tr = data.load_digits_tensor(split="train")
    X_te, y_te = data.load_digits_tensor(split="test")
    X_all, _ = data.load_digits_tensor()
    assert (len(X_tr), len(X_te)) == (1258, 539) and X_tr.dtype == torch.float32 and y_te.dtype == torch.int64
    # a multiset partition of the 1797 images: an image in both parts would leave another one out
    assert np.array_equal(_rows(torch.cat([X_tr, X_te]).numpy()), _rows(X_all.numpy()))
    per_class = np.bincount(np.concatenate([y_tr.numpy(), y_te.numpy()]), minlength=10)
    assert np.all(np.abs(np.bincount(y_te.numpy(), minlength=10) - 0.3 * per_class) <= 1)   # 30 % of each class


# ----------------------------------------------------------------------------- permutation_split


def test_permutation_split_is_the_polarity_pages_split():
    split = torch.randperm(N_DIGITS, generator=torch.Generator().manual_seed(0))
    train_idx, test_idx = permutation_split(N_DIGITS, 1400, seed=0)
    assert torch.equal(train_idx, split[:1400]) and torch.equal(test_idx, split[1400:])
    assert train_idx.dtype == torch.int64 and (len(train_idx), len(test_idx)) == (1400, 397)
    _assert_partition(train_idx, test_idx, N_DIGITS)


def test_permutation_split_is_seeded_and_leaves_the_global_generator_alone():
    state = torch.get_rng_state()
    a = permutation_split(50, 40, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    b = permutation_split(50, 40, seed=1)
    c = permutation_split(50, 40, seed=2)
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    on_cpu = permutation_split(50, 40, seed=1, device="cpu")
    assert on_cpu[0].device.type == "cpu" and torch.equal(on_cpu[1], a[1])


# ----------------------------------------------------------------------------- moons


@pytest.mark.parametrize("n", [2, 7, 12, 24, 100, 333])
def test_imbalanced_moons_matches_the_radius_kmeans_pages_generator(n):
    minority = max(1, round(0.15 * n))
    ref_X, ref_y = make_moons(n_samples=(n - minority, minority), noise=0.05, random_state=5)
    X, y = imbalanced_moons(n, seed=5)
    assert X.shape == (n, 2) and X.dtype == np.float64 and y.dtype == np.int64
    assert np.array_equal(X, ref_X) and np.array_equal(y, ref_y)
    assert (y == 1).sum() == minority and (y == 0).sum() == n - minority


def test_imbalanced_moons_seed_10_is_the_papers_data_without_global_state():
    state = np.random.get_state()
    X, y = imbalanced_moons(100, seed=10)
    assert np.random.get_state()[1].tolist() == state[1].tolist()
    np.random.seed(10)
    ref_X, ref_y = make_moons(n_samples=(85, 15), noise=0.05)
    np.random.set_state(state)
    assert np.array_equal(X, ref_X) and np.array_equal(y, ref_y) and (y == 1).sum() == 15


def test_imbalanced_moons_is_deterministic_per_seed_and_has_its_shape():
    a, b, c = imbalanced_moons(60, seed=0), imbalanced_moons(60, seed=0), imbalanced_moons(60, seed=1)
    assert np.array_equal(a[0], b[0]) and not np.array_equal(a[0], c[0])
    X, y = imbalanced_moons(200, seed=0, minority=0.3, noise=0.0)
    assert (y == 1).sum() == 60
    # noise 0: the upper moon is the unit upper half-circle, the lower one its shifted mirror
    assert np.allclose(np.hypot(*X[y == 0].T), 1) and np.all(X[y == 0, 1] >= -1e-12)
    assert np.allclose(np.hypot(X[y == 1, 0] - 1, X[y == 1, 1] - 0.5), 1) and np.all(X[y == 1, 1] <= 0.5 + 1e-12)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("call, error, match", [
    (lambda: load_digits_array(scale="pixels"), ValueError, "scale must be one of"),
    (lambda: digits_holdout(297, seed=-1), ValueError, "seed must be at least 0"),
    (lambda: digits_holdout(297, seed=1.0), TypeError, "seed must be an int"),
    (lambda: digits_holdout(297), TypeError, "seed"),
    (lambda: stratified_split(np.zeros((3, 2)), 1, seed=0), ValueError, "one-dimensional"),
    (lambda: permutation_split(10, 10, seed=0), ValueError, "at least one test item"),
    (lambda: permutation_split(10, 0, seed=0), ValueError, "n_train must be at least 1"),
    (lambda: permutation_split(10, 5, seed=True), TypeError, "seed must be an int"),
    (lambda: permutation_split(10, 5), TypeError, "seed"),
    (lambda: imbalanced_moons(1, seed=0), ValueError, "n must be at least 2"),
    (lambda: imbalanced_moons(10.0, seed=0), TypeError, "n must be an int"),
    (lambda: imbalanced_moons(10), TypeError, "seed"),
    (lambda: imbalanced_moons(10, seed=0, minority=1.0), ValueError, r"minority must be a share in \(0, 1\)"),
    (lambda: imbalanced_moons(10, seed=0, minority="0.1"), TypeError, "minority must be a number"),
    (lambda: imbalanced_moons(10, seed=0, noise=-0.1), ValueError, "noise must be a finite"),
    (lambda: imbalanced_moons(2, seed=0, minority=0.9), ValueError, "puts all 2 points on the lower moon"),
    (lambda: data.no_such_thing, AttributeError, "no attribute 'no_such_thing'"),
])
def test_bad_arguments_are_refused(call, error, match):
    with pytest.raises(error, match=match):
        call()
