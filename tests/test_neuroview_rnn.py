"""helpers.neuroview's NeuroView-RNN part against independent oracles: a hand-written
recurrence and concatenation, the cell run on the cropped sequence, exact zeros after
training, a planted event, and a hand-computed deletion curve."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from helpers._checks import ParameterError
from helpers.neuroview import (CELLS, NeuroViewRNN, RNNBaseline, captum_step_scores, load_time_series,
                               make_mnist1d, planted_events, step_curves, train_rnn)

D64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(cell, d=3, H=5, T=7, C=4, seed=0, layers=1):
    torch.manual_seed(seed)
    m = NeuroViewRNN(cell, d, H, T, C, num_layers=layers).double()
    with torch.no_grad():
        m.head.weight.normal_()
        m.head.bias.normal_()
    return m


def _x(B=6, T=7, d=3, seed=1):
    return torch.randn(B, T, d, generator=torch.Generator().manual_seed(seed), dtype=D64)


def _manual_states(m, x):
    """The top-layer hidden states by an explicit loop over time (the oracle), for one layer."""
    r = m.rnn
    Wi, Wh, bi, bh = r.weight_ih_l0, r.weight_hh_l0, r.bias_ih_l0, r.bias_hh_l0
    B, T, _ = x.shape
    H = m.hidden_size
    h = torch.zeros(B, H, dtype=x.dtype)
    c = torch.zeros(B, H, dtype=x.dtype)
    out = []
    for t in range(T):
        gi, gh = x[:, t] @ Wi.T + bi, h @ Wh.T + bh
        if m.cell == "rnn":
            h = torch.tanh(gi + gh)
        elif m.cell == "gru":
            ir, iz, in_ = gi.chunk(3, 1)
            hr, hz, hn = gh.chunk(3, 1)
            rr, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
            n = torch.tanh(in_ + rr * hn)
            h = (1 - z) * n + z * h
        else:
            i, f, g, o = (gi + gh).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
        out.append(h)
    return torch.stack(out, 1)


@pytest.mark.parametrize("cell", CELLS)
def test_logits_are_the_sum_of_the_contributions(cell):
    m = _model(cell)
    x = _x()
    lengths = torch.tensor([7, 1, 3, 7, 5, 2])
    with torch.no_grad():
        a = m.contributions(x, lengths)
        logits = m(x, lengths)
    assert a.shape == (6, 4, 7)
    assert torch.allclose(a.sum(-1) + m.head.bias, logits, atol=1e-6, rtol=0)
    # the oracle: a hand-written recurrence, masked, concatenated, times the head
    h = _manual_states(m, x)
    h = h * (torch.arange(7)[None, :] < lengths[:, None])[..., None]
    assert torch.allclose(h.flatten(1) @ m.head.weight.T + m.head.bias, logits, atol=1e-10)
    W = m.head.weight.view(4, 7, 5)
    assert torch.allclose(torch.einsum("bth,cth->bct", h, W), a, atol=1e-10)
    # padded steps contribute exactly 0
    for b, L in enumerate(lengths.tolist()):
        assert torch.count_nonzero(a[b, :, L:]) == 0


@pytest.mark.parametrize("cell", CELLS)
def test_two_layer_cells_and_short_inputs(cell):
    m = _model(cell, layers=2)
    x = _x(T=4)                      # T < seq_len: blocks 4..6 are never used
    with torch.no_grad():
        a = m.contributions(x)
        assert torch.allclose(a.sum(-1) + m.head.bias, m(x), atol=1e-6, rtol=0)
    assert torch.count_nonzero(a[..., 4:]) == 0


@pytest.mark.parametrize("cell", CELLS)
def test_trailing_padding_does_not_change_a_causal_cells_logits(cell):
    m = _model(cell)
    x = _x()
    lengths = torch.tensor([3, 5, 2, 7, 4, 1])
    junk = x.clone()
    for b, L in enumerate(lengths.tolist()):     # anything after the length: large values
        junk[b, L:] = 100.0 * torch.randn(7 - L, 3, dtype=D64)
    with torch.no_grad():
        base = m(x, lengths)
        assert torch.allclose(m(junk, lengths), base, atol=1e-12)
        for b, L in enumerate(lengths.tolist()):  # each sequence alone, cropped to its length
            assert torch.allclose(m(x[b:b + 1, :L])[0], base[b], atol=1e-12)
    # the baselines too
    for readout in ("last", "mean"):
        torch.manual_seed(0)
        r = RNNBaseline(cell, 3, 5, 4, readout=readout).double()
        with torch.no_grad():
            assert torch.allclose(r(junk, lengths), r(x, lengths), atol=1e-12)
            for b, L in enumerate(lengths.tolist()):
                assert torch.allclose(r(x[b:b + 1, :L])[0], r(x, lengths)[b], atol=1e-12)


def test_blocks_never_reached_stay_exactly_zero_after_training():
    torch.manual_seed(0)
    m = NeuroViewRNN("gru", 2, 6, seq_len=10, n_classes=3)
    g = torch.Generator().manual_seed(3)
    X = torch.randn(80, 10, 2, generator=g)
    lengths = torch.randint(2, 7, (80,), generator=g)        # at most 6 steps
    y = torch.randint(0, 3, (80,), generator=g)
    train_rnn(m, X, y, lengths, epochs=5, lr=1e-2, weight_decay=1e-3, seed=0)
    W = m.blocks()
    assert torch.count_nonzero(W[:, :6]) > 0
    assert torch.count_nonzero(W[:, 6:]) == 0
    assert torch.count_nonzero(m.time_importance()[:, 6:]) == 0


def test_planted_event_contributions_carry_no_class_before_the_event():
    d = planted_events(600, 300, seq_len=12, event_step=8, n_classes=3, noise=0.3, seed=0)
    torch.manual_seed(0)
    m = NeuroViewRNN("gru", 1, 16, d.seq_len, d.n_classes)
    train_rnn(m, d.X_train, d.y_train, epochs=25, lr=1e-2, weight_decay=1e-3, seed=0)
    with torch.no_grad():
        acc = (m(d.X_test).argmax(1) == d.y_test).float().mean().item()
        a = m.contributions(d.X_test)                            # (B, C, T)
    assert acc > 0.9
    # class spread: how much the mean contribution to each logit depends on the true class
    means = torch.stack([a[d.y_test == k].mean(0) for k in range(3)])   # (k, c, t)
    spread = means.std(dim=0).mean(0)                                   # (t,)
    before, after = spread[:8].max().item(), spread[8:].mean().item()
    assert before < 0.05 * after, (before, after)
    # occluding the event step destroys the accuracy
    x = d.X_test.clone()
    x[:, 8] = 0.0
    with torch.no_grad():
        assert (m(x).argmax(1) == d.y_test).float().mean().item() < 0.6


def test_step_curves_reproduce_a_hand_computed_linear_curve():
    w = torch.tensor([[0.5, -1.0, 2.0, 0.25, 1.5]], dtype=D64)

    def lin(x, lengths):                        # logit_1 = sum_t w_t x_t, logit_0 = 0
        z = (x[..., 0] * w).sum(1)
        return torch.stack([torch.zeros_like(z), z], 1)

    x = torch.tensor([[[2.0], [1.0], [1.0], [4.0], [-1.0]],
                      [[1.0], [1.0], [1.0], [1.0], [1.0]]], dtype=D64)
    lengths = torch.tensor([5, 3])
    scores = (x[..., 0] * w)                     # true contributions
    # by hand, sample 0: contributions (1, -1, 2, 1, -1.5), order 2, 0, 3 (ties: earlier), 1, 4
    # sample 1, length 3: contributions (0.5, -1, 2) and steps 3, 4 are padding (kept as is)
    ks = [0, 1, 2, 3, 5]
    del0 = [1.5, -0.5, -1.5, -2.5, 0.0]
    ins0 = [0.0, 2.0, 3.0, 4.0, 1.5]
    pad1 = 0.25 + 1.5                            # padding steps are never deleted or inserted
    del1 = [1.5 + pad1, -0.5 + pad1, -1.0 + pad1, 0.0 + pad1, 0.0 + pad1]
    ins1 = [pad1, 2.0 + pad1, 2.5 + pad1, 1.5 + pad1, 1.5 + pad1]
    c = step_curves(lin, x, scores, ks, target=torch.tensor([1, 1]), lengths=lengths, output="logit")
    assert torch.allclose(c.deletion, torch.tensor([del0, del1], dtype=D64).T)
    assert torch.allclose(c.insertion, torch.tensor([ins0, ins1], dtype=D64).T)
    assert torch.allclose(c.deletion_area, torch.tensor([np.mean(del0), np.mean(del1)], dtype=D64))
    # the true attribution deletes faster than a random order (probability output)
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(200, 5, 1, generator=g, dtype=D64)
    true = step_curves(lin, xs, xs[..., 0] * w, range(6), target=torch.ones(200, dtype=torch.long))
    rand = step_curves(lin, xs, torch.rand(200, 5, generator=g, dtype=D64), range(6),
                       target=torch.ones(200, dtype=torch.long))
    assert true.deletion_area.mean() < rand.deletion_area.mean()


def test_captum_scores_pass_the_lengths_through():
    m = _model("lstm").float()
    x = _x().float()
    lengths = torch.tensor([7, 2, 5, 3, 6, 4])
    c = torch.tensor([0, 1, 2, 3, 0, 1])
    for method in ("ig", "occlusion"):
        s = captum_step_scores(m, x, c, lengths, method=method, n_steps=64)
        assert s.shape == (6, 7)
        for b, L in enumerate(lengths.tolist()):
            assert torch.count_nonzero(s[b, L:]) == 0
    # IG is complete: the scores sum to logit(x) - logit(baseline)
    s = captum_step_scores(m, x, c, lengths, method="ig", n_steps=200)
    with torch.no_grad():
        gap = m(x, lengths)[torch.arange(6), c] - m(torch.zeros_like(x), lengths)[torch.arange(6), c]
    assert torch.allclose(s.sum(1), gap, atol=2e-2)


def test_loaders_are_offline_and_shaped():
    jv = load_time_series("japanese_vowels")
    assert jv.channels == 12 and jv.n_classes == 9 and len(jv.y_train) == 270 and len(jv.y_test) == 370
    assert int(jv.len_test.max()) == jv.seq_len == 29 and int(jv.len_train.max()) < 29
    for X, L in ((jv.X_train, jv.len_train), (jv.X_test, jv.len_test)):
        valid = torch.arange(X.shape[1])[None, :] < L[:, None]
        assert torch.count_nonzero(X[~valid]) == 0
    bm = load_time_series("basic_motions", downsample=2)
    assert tuple(bm.X_train.shape) == (40, 50, 6) and bm.n_classes == 4
    mn = make_mnist1d(200, 100, seed=0)
    assert tuple(mn.X_train.shape) == (200, 40, 1)
    assert torch.equal(torch.bincount(torch.cat([mn.y_train, mn.y_test])), torch.full((10,), 30))
    assert torch.equal(make_mnist1d(20, 10, seed=5).X_train, make_mnist1d(20, 10, seed=5).X_train)


def test_bad_input_raises_named_errors():
    m = _model("gru")
    with pytest.raises(ValueError, match="seq_len"):
        m(_x(T=9))
    with pytest.raises(ValueError, match="lengths"):
        m(_x(), torch.tensor([0, 1, 2, 3, 4, 5]))
    with pytest.raises(ValueError, match="lengths"):
        m(_x(), torch.tensor([8, 1, 2, 3, 4, 5]))
    with pytest.raises(ValueError, match="lengths"):
        m(_x(), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="cell"):
        NeuroViewRNN("transformer", 3, 5, 7, 4)
    with pytest.raises(ValueError, match="channels"):
        m(_x(d=2))
    with pytest.raises(ValueError, match="norm"):
        m.time_importance("l3")
    with pytest.raises(ParameterError, match="readout"):
        RNNBaseline("gru", 3, 5, 4, readout="max")
    with pytest.raises(ValueError, match="name"):
        load_time_series("ucr_all")
    with pytest.raises(ValueError, match="scores"):
        step_curves(m, _x(), torch.zeros(6, 6), [0, 1], target=torch.zeros(6, dtype=torch.long))
    with pytest.raises(ValueError, match="ks"):
        step_curves(m, _x(), torch.zeros(6, 7), [2, 1], target=torch.zeros(6, dtype=torch.long))
