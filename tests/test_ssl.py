"""Tests of helpers.ssl against brute force (loops over pairs and pool items), exact pixel
permutations (flip, 90-degree rotation, one-pixel shift), and the NT-Xent formula written out."""

import itertools
import math

import numpy as np
import pytest
import torch

from helpers._checks import ParameterError
from helpers.ssl import (Encoder, augment, class_agreement, digits_images, diversity, follow_rate,
                         nt_xent, represent, retrieval_rank, train_decoder, train_simclr,
                         train_supervised, transform)


def gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def digits():
    return digits_images("test")


def test_digits_images_range_and_split():
    Xtr, ytr = digits_images("train")
    Xte, yte = digits_images("test")
    assert Xtr.shape[1:] == (1, 8, 8) and len(Xtr) + len(Xte) == 1797
    assert float(Xtr.min()) == -1.0 and float(Xtr.max()) == 1.0
    X16, _ = digits_images("test", size=16)
    assert X16.shape[1:] == (1, 16, 16)
    with pytest.raises(ParameterError):
        digits_images("val")
    with pytest.raises(ParameterError):
        digits_images(size=12)


def test_transforms_are_the_exact_pixel_maps(digits):
    X, _ = digits
    assert torch.equal(transform(X, "hflip", 0), X.flip(-1))
    assert torch.allclose(transform(X, "rotate", 0), X, atol=1e-5)
    assert torch.allclose(transform(X, "zoom", 1.0), X, atol=1e-5)
    r = transform(X, "rotate", 90)
    assert min(float((r - X.rot90(k, (-2, -1))).abs().max()) for k in (1, 3)) < 1e-4
    shifted = torch.full_like(X, -1.0)
    shifted[..., 1:] = X[..., :-1]
    assert torch.allclose(transform(X, "shift", 1), shifted, atol=1e-5)
    assert torch.allclose(transform(X, "contrast", 0.5), (X + 1) * 0.5 - 1)
    with pytest.raises(ParameterError):
        transform(X, "blur", 1.0)


def test_augment_is_seeded_and_in_range(digits):
    X, _ = digits
    a, b = augment(X[:16], generator=gen(0)), augment(X[:16], generator=gen(0))
    c = augment(X[:16], generator=gen(1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= -1 and float(a.max()) <= 1
    # no noise, no contrast change, no motion: the identity
    same = augment(X[:16], generator=gen(0), rotate=0, scale=(1, 1), shift=0, contrast=(1, 1), noise=0)
    assert torch.allclose(same, X[:16], atol=1e-5)


def test_nt_xent_matches_the_written_formula():
    z1, z2 = torch.randn(5, 3, generator=gen(0)).double(), torch.randn(5, 3, generator=gen(1)).double()
    tau = 0.3
    z = torch.cat([z1, z2])
    z = z / z.norm(dim=1, keepdim=True)
    n = 5
    total = 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        num = math.exp(float(z[i] @ z[pos]) / tau)
        den = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(2 * n) if k != i)
        total += -math.log(num / den)
    assert math.isclose(float(nt_xent(z1, z2, tau)), total / (2 * n), rel_tol=1e-9)


def test_retrieval_rank_matches_brute_force():
    q, pool = torch.randn(30, 4, generator=gen(2)), torch.randn(40, 4, generator=gen(3))
    target = torch.randint(0, 40, (30,), generator=gen(4))
    ranks = retrieval_rank(q, pool, target)
    qn, pn = q.numpy().astype(float), pool.numpy().astype(float)
    for i in range(30):
        d = np.linalg.norm(pn - qn[i], axis=1)
        assert ranks[i] == 1 + int((d < d[target[i]]).sum())
    assert ranks.dtype == torch.int64
    assert torch.equal(retrieval_rank(pool, pool, torch.arange(40)), torch.ones(40, dtype=torch.int64))
    with pytest.raises(ParameterError):
        retrieval_rank(q, pool, torch.full((30,), 40))


def test_diversity_and_follow_rate_match_brute_force():
    s = torch.randn(3, 4, 1, 2, 2, generator=gen(5))
    div = diversity(s)
    for i in range(3):
        pairs = [float((s[i, a] - s[i, b]).norm()) for a, b in itertools.combinations(range(4), 2)]
        assert math.isclose(float(div[i]), np.mean(pairs), rel_tol=1e-5)
    x, tx = torch.randn(3, 1, 2, 2, generator=gen(6)), torch.randn(3, 1, 2, 2, generator=gen(7))
    fr = follow_rate(s, x, tx)
    for i in range(3):
        hits = [float((s[i, k] - tx[i]).norm()) < float((s[i, k] - x[i]).norm()) for k in range(4)]
        assert math.isclose(float(fr[i]), np.mean(hits))
    assert class_agreement(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 2])) == pytest.approx(2 / 3)
    with pytest.raises(ParameterError):
        diversity(torch.zeros(3, 1, 4))


def test_encoders_come_back_frozen_and_cached(tmp_path, digits):
    X, y = digits
    enc, info = train_simclr(X[:64], steps=3, batch_size=32, seed=0, cache_dir=tmp_path)
    assert not enc.training and not any(p.requires_grad for p in enc.parameters())
    again, info2 = train_simclr(X[:64], steps=3, batch_size=32, seed=0, cache_dir=tmp_path)
    assert info2["cached"] and not info["cached"]
    assert torch.equal(represent(enc, X[:8]), represent(again, X[:8]))
    sup, _ = train_supervised(X[:64], y[:64], steps=3, batch_size=32, seed=0)
    assert sup.head is not None and not sup.training
    assert represent(sup, X[:5]).shape == (5, 64) and represent(enc, X[:5], "projector").shape == (5, 32)


def test_simclr_loss_decreases(digits):
    X, _ = digits
    _, info = train_simclr(X[:256], steps=40, batch_size=128, seed=0)
    assert np.mean(info["losses"][-5:]) < np.mean(info["losses"][:5])


def test_decoder_fits_an_invertible_code(digits):
    X, _ = digits
    dec = train_decoder(X[:200].flatten(1), X[:200], steps=300, seed=0)
    assert float(((dec(X[:200].flatten(1)) - X[:200]) ** 2).mean()) < 0.1
    with pytest.raises(ParameterError):
        train_decoder(torch.zeros(3, 2), X[:4])


def test_encoder_shapes():
    enc = Encoder(n_classes=10).eval()
    x = torch.zeros(2, 1, 16, 16)
    assert enc(x).shape == (2, 64) and enc.head(enc(x)).shape == (2, 10)
