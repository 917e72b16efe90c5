"""Tests of helpers.generative: the digits loader, the CPA-decoder VAE and the feature classifier.

Oracles: the bundled data set's own class counts (for the class mix), ``torch.func.jvp`` and a
per-sample ``torch.func.jacfwd`` loop (for the decoder's CPA Jacobian), a held-out split (for
the classifier's accuracy). Training runs are short (a few epochs on a few hundred images)
so that the file takes a few seconds on one thread.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from helpers.generative import DigitsClassifier, DigitsVAE, load_digits_tensor, train_classifier, train_vae
from helpers.jvp import jvp
from helpers.sampling import jacobian, log_volume

pytestmark = pytest.mark.filterwarnings(  # raised inside torch.func's forward-AD setup, not by helpers
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning")

COUNTS = np.bincount(load_digits().target, minlength=10)


@pytest.fixture(scope="module")
def digits():
    return load_digits_tensor()


@pytest.fixture(scope="module")
def small_vae(digits):
    X, _ = digits
    return train_vae(X[:400], latent=4, epochs=4, seed=0, progress=False, hidden=32)


# --------------------------------------------------------------------------------------------
# load_digits_tensor
# --------------------------------------------------------------------------------------------


def test_load_shapes_dtypes_and_range(digits):
    X, y = digits
    assert X.shape == (1797, 64) and X.dtype == torch.float32
    assert y.shape == (1797,) and y.dtype == torch.int64
    assert X.min() == 0 and X.max() == 1  # pixels / 16, and some pixels are 16
    np.testing.assert_array_equal(np.bincount(y.numpy(), minlength=10), COUNTS)
    np.testing.assert_allclose(X.numpy(), load_digits().data / 16, rtol=0, atol=1e-7)


def test_class_mix_is_exact_and_deterministic():
    weights = {0: 0.1, 3: 0.25, 7: 0.0}
    X, y = load_digits_tensor(class_weights=weights, seed=3)
    counts = np.bincount(y.numpy(), minlength=10)
    expected = [round(weights.get(c, 1.0) * COUNTS[c]) for c in range(10)]
    np.testing.assert_array_equal(counts, expected)
    X2, y2 = load_digits_tensor(class_weights=weights, seed=3)
    assert torch.equal(X, X2) and torch.equal(y, y2)
    X3, _ = load_digits_tensor(class_weights=weights, seed=4)  # another seed keeps other zeros
    assert X3.shape == X.shape and not torch.equal(X3, X)


def test_classes_filter_and_subset_independence():
    X, y = load_digits_tensor(classes=[1, 8], class_weights={8: 0.5}, seed=1)
    assert set(y.tolist()) == {1, 8}
    assert (y == 1).sum() == COUNTS[1] and (y == 8).sum() == round(0.5 * COUNTS[8])
    # the kept eights are the same as in the ten-class set with the same weights and seed
    Xa, ya = load_digits_tensor(class_weights={8: 0.5}, seed=1)
    assert torch.equal(X[y == 8], Xa[ya == 8])


def test_split_is_fixed_disjoint_stratified_and_weighted_within():
    Xtr, ytr = load_digits_tensor(split="train")
    Xte, yte = load_digits_tensor(split="test", seed=7)  # the split does not depend on the seed
    assert len(Xtr) + len(Xte) == 1797
    test_counts = np.bincount(yte.numpy(), minlength=10)
    np.testing.assert_array_equal(test_counts, np.round(0.3 * COUNTS).astype(int))  # stratified, balanced
    full = load_digits().data / 16
    rows = {r.tobytes(): i for i, r in enumerate(full.astype(np.float32))}
    idx_tr = {rows[r.tobytes()] for r in Xtr.numpy()}
    idx_te = {rows[r.tobytes()] for r in Xte.numpy()}
    assert not idx_tr & idx_te  # no held-out image is in the training part
    assert torch.equal(load_digits_tensor(split="test", seed=0)[0], Xte)
    _, yw = load_digits_tensor(split="train", class_weights={0: 0.2}, seed=2)
    train_counts = np.bincount(ytr.numpy(), minlength=10)
    assert (yw == 0).sum() == round(0.2 * train_counts[0]) and (yw == 5).sum() == train_counts[5]


@pytest.mark.parametrize("kwargs, match", [
    ({"split": "val"}, "split must be one of"),
    ({"classes": [10]}, "classes must be distinct ints in 0..9"),
    ({"classes": [1, 1]}, "classes must be distinct ints in 0..9"),
    ({"classes": []}, "classes must be distinct ints in 0..9"),
    ({"classes": [1.0]}, "classes must be distinct ints in 0..9"),
    ({"class_weights": {0: 1.5}}, r"class_weights\[0\] must be a fraction in \[0, 1\]"),
    ({"class_weights": {0: -0.1}}, r"class_weights\[0\] must be a fraction in \[0, 1\]"),
    ({"class_weights": {0: True}}, r"class_weights\[0\] must be a fraction in \[0, 1\]"),
    ({"classes": [1, 2], "class_weights": {3: 0.5}}, "names class 3, which is not among the kept classes"),
    ({"seed": -1}, "seed must be None or a non-negative int"),
    ({"seed": 1.5}, "seed must be None or a non-negative int"),
    ({"classes": [0], "class_weights": {0: 0.0}}, "the selection keeps no image"),
])
def test_load_bad_inputs_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_digits_tensor(**kwargs)


def test_seed_is_keyword_only_and_none_follows_the_global_generator():
    with pytest.raises(TypeError, match="positional"):
        load_digits_tensor(None, {0: 0.5}, 1)
    np.random.seed(5)
    a = load_digits_tensor(class_weights={0: 0.5})[0]
    np.random.seed(5)
    assert torch.equal(load_digits_tensor(class_weights={0: 0.5})[0], a)
    np.random.seed(5)
    load_digits_tensor()  # nothing random to choose: the global generator is not consumed
    assert np.random.randint(1000) == np.random.RandomState(5).randint(1000)


# --------------------------------------------------------------------------------------------
# DigitsVAE and train_vae
# --------------------------------------------------------------------------------------------


def test_vae_shapes_and_cpa_decoder(small_vae, digits):
    X, _ = digits
    vae = small_vae
    mu, logvar = vae.encode(X[:5])
    assert mu.shape == logvar.shape == (5, 4)
    assert vae.decode(mu).shape == (5, 64)
    x_hat, mu2, _ = vae(X[:5])
    assert x_hat.shape == (5, 64) and torch.equal(mu, mu2)
    assert torch.equal(x_hat, vae.decode(mu))  # eval mode decodes the posterior mean
    assert not vae.training
    assert isinstance(vae.decoder, nn.Sequential) and isinstance(vae.decoder[-1], nn.Linear)
    assert all(isinstance(m, (nn.Linear, nn.LeakyReLU, nn.ReLU)) for m in vae.decoder)
    assert DigitsVAE().latent == 8  # the default latent size


def test_decoder_accepted_by_cpa_jvp_and_jacobian_matches_jacfwd(small_vae):
    dec = DigitsVAE(latent=4, hidden=32).decoder  # structure only; weights from the trained model
    dec.load_state_dict(small_vae.decoder.state_dict())
    dec = dec.double().eval()
    z = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    v = torch.randn_like(z)
    y, jv = jvp(dec, z, v)
    y_ref, jv_ref = torch.func.jvp(dec, (z,), (v,))
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(jv, jv_ref, rtol=0, atol=1e-12)
    J = jacobian(dec, z)
    J_ref = torch.stack([torch.func.jacfwd(dec)(zi) for zi in z])  # per-sample loop, no vmap
    assert J.shape == (6, 64, 4)
    torch.testing.assert_close(J, J_ref, rtol=0, atol=1e-12)
    assert torch.isfinite(log_volume(dec, z)).all()


def test_train_vae_deterministic_for_a_seed_and_reduces_loss(digits):
    X, _ = digits
    kw = dict(latent=3, epochs=6, progress=False, hidden=32)
    a, b = train_vae(X[:300], seed=5, **kw), train_vae(X[:300], seed=5, **kw)
    c = train_vae(X[:300], seed=6, **kw)
    for (k, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), k
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.state_dict().values(), c.state_dict().values()))
    assert a.loss_history == b.loss_history and len(a.loss_history) == 6
    # six epochs take the negative ELBO well below its starting value (about 1/3 of it here)
    assert a.loss_history[-1] < 0.6 * a.loss_history[0]


def test_training_restores_the_thread_setting(digits):
    X, y = digits
    saved = torch.get_num_threads()
    torch.set_num_threads(3)  # not 1, which is what training sets: the restore must be visible
    try:
        train_vae(X[:50], latent=2, epochs=1, seed=0, progress=False, hidden=8, threads=1)
        assert torch.get_num_threads() == 3
        train_classifier(X[:50], y[:50], epochs=1, seed=0, progress=False, hidden=8, n_features=4, threads=1)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(saved)


def test_train_vae_device_and_numpy_input(digits):
    X, _ = digits
    vae = train_vae(X[:100].numpy(), latent=2, epochs=1, progress=False, hidden=8, device="cpu")
    assert next(vae.parameters()).device.type == "cpu" and vae.latent == 2


@pytest.mark.parametrize("X, kwargs, err, match", [
    (torch.zeros(10, 63), {}, ValueError, r"X must have shape \(N, 64\) with N >= 2"),
    (torch.zeros(1, 64), {}, ValueError, r"X must have shape \(N, 64\) with N >= 2"),
    (torch.zeros(10, 64, dtype=torch.int64), {}, TypeError, "floating-point .* of dtype torch.int64"),
    ([[0.0] * 64] * 4, {}, TypeError, "X must be a floating-point torch tensor or numpy array.*got list"),
    (torch.full((10, 64), float("nan")), {}, ValueError, "X has NaN or inf entries"),
    (torch.zeros(10, 64), {"epochs": 0}, ValueError, "epochs must be a positive int"),
    (torch.zeros(10, 64), {"latent": 0}, ValueError, "latent must be a positive int"),
    (torch.zeros(10, 64), {"seed": -1}, ValueError, "seed must be None or a non-negative int"),
    (torch.zeros(10, 64), {"lr": 0.0}, ValueError, "lr must be a finite number > 0"),
    (torch.zeros(10, 64), {"sigma": -1.0}, ValueError, "sigma must be a finite number > 0"),
    (torch.zeros(10, 64), {"batch_size": 0}, ValueError, "batch_size must be a positive int"),
    (torch.zeros(10, 64), {"threads": 0}, ValueError, "threads must be None or a positive int"),
])
def test_train_vae_bad_inputs_raise(X, kwargs, err, match):
    with pytest.raises(err, match=match):
        train_vae(X, progress=False, **{"epochs": 1, **kwargs})


# --------------------------------------------------------------------------------------------
# DigitsClassifier and train_classifier
# --------------------------------------------------------------------------------------------


def test_classifier_beats_90_percent_on_held_out_digits(digits):
    X, y = digits
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    clf = train_classifier(Xtr, ytr, epochs=25, seed=0, progress=False)
    acc = (clf.predict(Xte) == yte).float().mean().item()
    assert acc > 0.90, acc
    assert clf.loss_history[-1] < 0.2 * clf.loss_history[0]
    feats = clf.features(Xte)
    assert feats.shape == (len(Xte), 64) and not feats.requires_grad
    assert clf.predict(Xte).dtype == torch.int64 and clf.predict(Xte).shape == (len(Xte),)
    assert isinstance(clf, DigitsClassifier) and not clf.training


def test_train_classifier_deterministic(digits):
    X, y = digits
    a = train_classifier(X[:300], y[:300], epochs=2, seed=1, progress=False, hidden=16, n_features=8)
    b = train_classifier(X[:300].numpy(), y[:300].numpy(), epochs=2, seed=1, progress=False, hidden=16,
                         n_features=8)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)
    assert a.features(X[:3]).shape == (3, 8)


@pytest.mark.parametrize("X, y, kwargs, err, match", [
    (torch.zeros(10, 64), torch.zeros(9, dtype=torch.int64), {}, ValueError, r"y must have shape \(10,\) to match X"),
    (torch.zeros(10, 64), torch.full((10,), 10), {}, ValueError, r"labels must be in 0..9, got values in \[10, 10\]"),
    (torch.zeros(10, 64), torch.full((10,), -1), {}, ValueError, r"labels must be in 0..9, got values in \[-1, -1\]"),
    (torch.zeros(10, 64), torch.zeros(10), {}, TypeError, "y must be an integer torch tensor.*of dtype torch.float32"),
    (torch.zeros(10, 64), [0] * 10, {}, TypeError, "y must be an integer torch tensor.*got list"),
    (torch.zeros(10, 32), torch.zeros(10, dtype=torch.int64), {}, ValueError, r"X must have shape \(N, 64\)"),
    (torch.zeros(10, 64), torch.zeros(10, dtype=torch.int64), {"epochs": -2}, ValueError,
     "epochs must be a positive int"),
    (torch.zeros(10, 64), torch.zeros(10, dtype=torch.int64), {"n_features": 0}, ValueError,
     "n_features must be a positive int"),
    (torch.zeros(10, 64), torch.zeros(10, dtype=torch.int64), {"weight_decay": -1.0}, ValueError,
     "weight_decay must be a finite number >= 0"),
    (torch.zeros(10, 64), torch.zeros(10, dtype=torch.int64), {"threads": 1.5}, ValueError,
     "threads must be None or a positive int"),
])
def test_train_classifier_bad_inputs_raise(X, y, kwargs, err, match):
    with pytest.raises(err, match=match):
        train_classifier(X, y, progress=False, **{"epochs": 1, **kwargs})


def test_training_seed_is_keyword_only_and_none_follows_the_global_generator(digits):
    X, y = digits
    with pytest.raises(TypeError, match="positional"):
        train_vae(X[:50], 2, 1)
    with pytest.raises(TypeError, match="positional"):
        train_classifier(X[:50], y[:50], 1)
    kw = dict(epochs=1, progress=False, hidden=8, n_features=4)
    np.random.seed(3)
    a = train_classifier(X[:50], y[:50], **kw)
    np.random.seed(3)
    b = train_classifier(X[:50], y[:50], **kw)
    assert all(torch.equal(pa, pb) for pa, pb in zip(a.state_dict().values(), b.state_dict().values()))
