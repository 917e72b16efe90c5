"""helpers.neuroview against independent oracles: hand-set networks, manual forward passes,
autograd, enumeration, and scikit-learn's logistic regression."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from helpers._checks import ParameterError
from helpers.jvp import UnsupportedLayerError
from helpers.neuroview import NeuroViewClassifier, unit_codes, unit_layout

D64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _mlp(widths=(3, 6, 5), slope=None, inplace=False, seed=0):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.LeakyReLU(slope, inplace=inplace) if slope else nn.ReLU(inplace=inplace)]
    return nn.Sequential(*layers, nn.Linear(widths[-1], 2)).double()


def _manual_pre(net, x):
    """Pre-activations of every hidden layer of a Sequential MLP, by hand (the oracle)."""
    zs, h = [], x
    mods = list(net)
    for i in range(0, len(mods) - 1, 2):
        z = h @ mods[i].weight.T + mods[i].bias
        zs.append(z)
        act = mods[i + 1]
        h = torch.where(z > 0, z, z * (act.negative_slope if isinstance(act, nn.LeakyReLU) else 0.0))
    return zs


# ---------------------------------------------------------------------------------------------
# Codes
# ---------------------------------------------------------------------------------------------

def test_codes_of_a_hand_set_network():
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
        net[0].bias.copy_(torch.tensor([0.0, 0.0, 0.5]))
        net[2].weight.copy_(torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, -1.0]]))
        net[2].bias.copy_(torch.tensor([-1.5, 0.0]))
    x = torch.tensor([[1.0, 1.0], [2.0, -3.0], [-1.0, -1.0], [0.0, 0.0]], dtype=D64)
    # layer 1: z = (x1, x2, 0.5 - x1 - x2); layer 2 from h = relu(z)
    expected = torch.tensor([[1, 1, 0, 1, 0],      # h=(1,1,0): z2=(0.5, 0)
                             [1, 0, 1, 1, 0],      # h=(2,0,1.5): z2=(0.5, -1.5)
                             [0, 0, 1, 0, 0],      # h=(0,0,2.5): z2=(-1.5, -2.5)
                             [0, 0, 1, 0, 0]],     # z = 0 gives 0 (strict); h=(0,0,.5): z2=(-1.5,-.5)
                            dtype=D64)
    assert torch.equal(unit_codes(net, x), expected)


@pytest.mark.parametrize("slope", [None, 0.1])
def test_codes_equal_the_bits_of_a_manual_forward_pass(slope):
    net = _mlp((4, 7, 6, 5), slope=slope)
    x = torch.randn(50, 4, generator=_gen(), dtype=D64)
    zs = _manual_pre(net, x)
    assert torch.equal(unit_codes(net, x), torch.cat([(z > 0).double() for z in zs], 1))
    act = torch.cat([torch.where(z > 0, z, z * (slope or 0.0)) for z in zs], 1)
    assert torch.allclose(unit_codes(net, x, mode="act"), act, atol=1e-12)
    soft = torch.cat([torch.sigmoid(z / 0.3) for z in zs], 1)
    assert torch.allclose(unit_codes(net, x, mode="soft", tau=0.3), soft, atol=1e-12)


def test_soft_codes_tend_to_hard_codes():
    net = _mlp()
    x = torch.randn(40, 3, generator=_gen(1), dtype=D64)
    hard = unit_codes(net, x)
    gaps = [float((unit_codes(net, x, mode="soft", tau=t).detach() - hard).abs().max()) for t in (1.0, 1e-2, 1e-4, 1e-8)]
    assert gaps[-1] < 1e-6 and gaps == sorted(gaps, reverse=True)


class _Functional(nn.Module):
    """ReLUs written as functions and methods, and a leaky ReLU, in one forward."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c, self.d = nn.Linear(3, 4), nn.Linear(4, 4), nn.Linear(4, 3), nn.Linear(3, 2)

    def forward(self, x):
        h = F.relu(self.a(x))
        h = torch.relu(self.b(h)) + 0.0
        h = self.c(h).relu()
        return self.d(F.leaky_relu(h, 0.2))


def test_functional_units_are_read_in_forward_order():
    torch.manual_seed(0)
    net = _Functional().double()
    x = torch.randn(20, 3, generator=_gen(), dtype=D64)
    z1 = net.a(x)
    z2 = net.b(F.relu(z1))
    z3 = net.c(torch.relu(z2))
    z4 = torch.relu(z3)                       # the leaky ReLU's input
    expected = torch.cat([(z > 0).double() for z in (z1, z2, z3, z4)], 1)
    assert torch.equal(unit_codes(net, x), expected)
    assert [lay.stop - lay.start for lay in unit_layout(net, x)] == [4, 4, 3, 3]


def test_conv_codes_are_ordered_channel_then_position_and_pool_by_channel():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 2, 3, stride=2), nn.ReLU(),
                        nn.Flatten(), nn.Linear(2 * 3 * 3, 4), nn.ReLU()).double()
    x = torch.randn(5, 1, 8, 8, generator=_gen(), dtype=D64)
    z1 = net[0](x)
    z2 = net[2](F.relu(z1))
    z3 = net[5](F.relu(z2).flatten(1))
    full = torch.cat([(z > 0).double().reshape(5, -1) for z in (z1, z2, z3)], 1)
    assert torch.equal(unit_codes(net, x), full)
    pooled = torch.cat([(z1 > 0).double().mean((2, 3)), (z2 > 0).double().mean((2, 3)), (z3 > 0).double()], 1)
    assert torch.allclose(unit_codes(net, x, pool="channel"), pooled, atol=1e-15)
    layout = unit_layout(net, x)
    assert [(lay.start, lay.stop, lay.shape) for lay in layout] == [
        (0, 192, (3, 8, 8)), (192, 210, (2, 3, 3)), (210, 214, (4,))]


def test_codes_follow_the_input_dtype_and_device():
    net = _mlp().float()
    q = unit_codes(net, torch.zeros(3, 3))
    assert q.dtype == torch.float32 and q.device.type == "cpu" and q.shape == (3, 11)


# ---------------------------------------------------------------------------------------------
# Straight-through estimator
# ---------------------------------------------------------------------------------------------

def test_ste_forward_is_hard_and_its_gradient_is_the_soft_one():
    net = _mlp((3, 6, 5))
    x = torch.randn(30, 3, generator=_gen(2), dtype=D64)
    w = torch.randn(11, generator=_gen(3), dtype=D64)
    tau = 0.7
    x1 = x.clone().requires_grad_(True)
    ste = unit_codes(net, x1, mode="ste", tau=tau)
    assert torch.equal(ste.detach(), unit_codes(net, x))
    (g_ste,) = torch.autograd.grad((ste * w).sum(), x1)
    x2 = x.clone().requires_grad_(True)
    (g_soft,) = torch.autograd.grad((unit_codes(net, x2, mode="soft", tau=tau) * w).sum(), x2)
    assert torch.allclose(g_ste, g_soft, atol=1e-12)


def test_ste_gradient_on_a_scalar_toy_is_the_sigmoid_derivative():
    net = nn.Sequential(nn.Linear(1, 1), nn.ReLU()).double()
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.zero_()
    for z0, tau in ((0.3, 1.0), (-0.2, 0.5), (1.5, 2.0)):
        x = torch.tensor([[z0]], dtype=D64, requires_grad=True)
        q = unit_codes(net, x, mode="ste", tau=tau)
        q.sum().backward()
        s = 1 / (1 + np.exp(-z0 / tau))
        assert float(q.detach()) == float(z0 > 0)
        assert abs(float(x.grad) - s * (1 - s) / tau) < 1e-12


# ---------------------------------------------------------------------------------------------
# The classifier: decomposition, flip identity, switch-off, post hoc fit
# ---------------------------------------------------------------------------------------------

def _clf(mode="ste", pool=None, seed=0):
    body = _mlp((3, 6, 5), seed=seed)[:-1]
    return NeuroViewClassifier(body, 4, mode=mode, pool=pool, example=torch.zeros(1, 3, dtype=D64))


@pytest.mark.parametrize("mode", ["hard", "ste", "soft", "act"])
def test_contributions_sum_to_the_logits(mode):
    clf = _clf(mode)
    x = torch.randn(25, 3, generator=_gen(), dtype=D64)
    for train in (True, False):
        clf.train(train)
        r = clf.contributions(x)
        assert r.shape == (25, 4, 11)
        assert torch.allclose(r.sum(-1) + clf.head.bias, clf(x), atol=1e-6, rtol=0)


def test_flipping_one_code_changes_each_logit_by_its_weight():
    clf = _clf().eval()
    x = torch.randn(10, 3, generator=_gen(), dtype=D64)
    q = clf.codes(x)
    V = clf.head.weight.detach()
    for k in range(q.shape[1]):
        q2 = q.clone()
        q2[:, k] = 1 - q2[:, k]
        delta = clf.head(q2) - clf.head(q)
        sign = (1 - 2 * q[:, k])[:, None]                       # +1 when the unit turns on
        assert torch.allclose(delta, sign * V[:, k], atol=1e-12, rtol=0)


def test_switching_off_a_last_layer_unit_removes_exactly_its_direct_term():
    clf = _clf().eval()
    x = torch.randn(40, 3, generator=_gen(4), dtype=D64)
    base = clf(x).detach()
    q = clf.codes(x)
    for k in range(6, 11):                                      # the last hidden layer: no unit downstream
        with clf.switch_off([k]):
            after = clf(x).detach()
        assert torch.allclose(base - after, q[:, k:k + 1] * clf.head.weight[:, k].detach(), atol=1e-12)


def test_switch_off_recomputes_the_downstream_codes():
    clf = _clf().eval()
    body = clf.model
    x = torch.randn(60, 3, generator=_gen(5), dtype=D64)
    off = [1, 4]
    with clf.switch_off(off):
        inside = clf.codes(x)
        out = body(x)                                           # the network itself is untouched
    z1 = body[0](x)
    h1 = F.relu(z1)
    h1[:, off] = 0.0                                            # the oracle: zero the units by hand
    z2 = body[2](h1)
    expected = torch.cat([(z1 > 0).double(), (z2 > 0).double()], 1)
    expected[:, off] = 0.0
    assert torch.equal(inside, expected)
    assert torch.equal(out, body(x))
    changed = (inside[:, 6:] != clf.codes(x)[:, 6:]).any()
    assert changed                                              # downstream codes did move
    assert torch.equal(clf.codes(x), unit_codes(body, x))       # and the block restored them


def test_switch_off_per_input_mask_and_channel_pooling():
    clf = _clf().eval()
    x = torch.randn(8, 3, generator=_gen(6), dtype=D64)
    mask = torch.zeros(8, 11, dtype=torch.bool)
    mask[0, 2] = mask[3, 7] = True
    with clf.switch_off(mask):
        rows = clf(x).detach()
    for b in range(8):
        units = mask[b].nonzero().flatten().tolist()
        with clf.switch_off(units):
            assert torch.allclose(rows[b], clf(x[b:b + 1]).detach()[0], atol=1e-12)
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 2, 3), nn.ReLU()).double()
    cclf = NeuroViewClassifier(conv, 3, pool="channel", example=torch.zeros(1, 1, 6, 6, dtype=D64)).eval()
    xi = torch.randn(4, 1, 6, 6, generator=_gen(), dtype=D64)
    with cclf.switch_off([1]):
        q = cclf.codes(xi)
        h = F.relu(conv[0](xi))
        h[:, 1] = 0
    assert torch.equal(q[:, 1], torch.zeros(4, dtype=D64))
    assert torch.allclose(q[:, 3:], (conv[2](h) > 0).double().mean((2, 3)), atol=1e-15)


def test_a_planted_unit_gets_the_largest_weight_after_the_posthoc_fit():
    g = _gen(7)
    X = torch.randn(600, 5, generator=g, dtype=D64)
    y = (X[:, 0] > 0).long()
    body = nn.Sequential(nn.Linear(5, 12), nn.ReLU()).double()
    with torch.no_grad():
        body[0].weight.copy_(torch.randn(12, 5, generator=g, dtype=D64))
        body[0].weight[:, 0] = 0.0                              # no other unit sees x_0
        body[0].bias.copy_(torch.randn(12, generator=g, dtype=D64))
        body[0].weight[7] = torch.tensor([1.0, 0, 0, 0, 0])      # the planted unit: 1[x_0 > 0]
        body[0].bias[7] = 0.0
    for l1 in (False, True):
        clf = NeuroViewClassifier(body, 2).double().fit_posthoc(X, y, C=1.0, l1=l1)
        norms = clf.head.weight.detach().norm(dim=0)
        assert int(norms.argmax()) == 7
        assert float((clf(X).argmax(1) == y).double().mean()) == 1.0


def test_posthoc_head_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    g = _gen(8)
    X = torch.randn(300, 3, generator=g, dtype=D64)
    y = (X[:, 0] + X[:, 1] > 0).long() + (X[:, 2] > 0.5).long()
    clf = _clf(seed=1)
    clf.n_classes = 3
    clf.head = nn.Linear(11, 3).double()
    clf.fit_posthoc(X, y, C=0.5)
    Q = unit_codes(clf.model, X).numpy()
    ref = LogisticRegression(C=0.5, max_iter=3000).fit(Q, y.numpy())
    assert np.allclose(clf(X).detach().numpy(), ref.decision_function(Q), atol=1e-6)


def test_lazy_head_and_end_to_end_training_on_xor():
    g = _gen(9)
    X = torch.rand(400, 2, generator=g) * 2 - 1
    y = ((X[:, 0] > 0) ^ (X[:, 1] > 0)).long()
    torch.manual_seed(9)
    clf = NeuroViewClassifier(nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU()), 2)
    clf(X[:1])                                                   # sizes the lazy head
    assert isinstance(clf.head, nn.Linear) and clf.head.in_features == 32
    opt = torch.optim.Adam(clf.parameters(), lr=2e-2)
    for _ in range(300):
        opt.zero_grad()
        F.cross_entropy(clf(X), y).backward()
        opt.step()
    assert float((clf.eval()(X).argmax(1) == y).float().mean()) > 0.9


# ---------------------------------------------------------------------------------------------
# In-place ReLU, unsupported layers, bad input
# ---------------------------------------------------------------------------------------------

def test_inplace_relu_gives_the_same_codes_outputs_gradients_and_switch_off():
    a, b = _mlp(inplace=False), _mlp(inplace=True)
    x = torch.randn(20, 3, generator=_gen(), dtype=D64)
    assert torch.equal(unit_codes(a, x), unit_codes(b, x))
    assert torch.equal(unit_codes(a, x, mode="act"), unit_codes(b, x, mode="act"))
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ga, = torch.autograd.grad(unit_codes(a, xa, mode="ste").sum(), xa)
    gb, = torch.autograd.grad(unit_codes(b, xb, mode="ste").sum(), xb)
    assert torch.allclose(ga, gb, atol=1e-12)
    ca = NeuroViewClassifier(a[:-1], 2, example=x[:1]).double().eval()
    cb = NeuroViewClassifier(b[:-1], 2, example=x[:1]).double().eval()
    cb.head.load_state_dict(ca.head.state_dict())
    with ca.switch_off([0, 3]), cb.switch_off([0, 3]):
        assert torch.equal(ca.codes(x), cb.codes(x))
        assert torch.allclose(ca(x), cb(x), atol=1e-12)

    class Fn(nn.Module):
        def __init__(self):
            super().__init__()
            self.l = nn.Linear(3, 4)

        def forward(self, x):
            return F.relu(self.l(x), inplace=True)

    torch.manual_seed(0)
    f = Fn().double()
    assert torch.equal(unit_codes(f, x), (f.l(x) > 0).double())


@pytest.mark.parametrize("layer, match", [
    (nn.Sigmoid(), "Sigmoid"), (nn.GELU(), "GELU"), (nn.Tanh(), "Tanh"), (nn.Hardtanh(), "Hardtanh"),
    (nn.LayerNorm(4), "LayerNorm")])
def test_a_non_cpa_or_multi_piece_layer_raises_naming_it(layer, match):
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), layer)
    with pytest.raises(UnsupportedLayerError, match=match):
        unit_codes(net, torch.zeros(2, 3))


def test_functional_non_cpa_and_max_pool_raise():
    class Sig(nn.Module):
        def forward(self, x):
            return torch.sigmoid(F.relu(x))

    with pytest.raises(UnsupportedLayerError, match="sigmoid"):
        unit_codes(Sig(), torch.zeros(2, 3))
    pool = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2))
    with pytest.raises(UnsupportedLayerError, match="one-hot"):
        unit_codes(pool, torch.zeros(1, 1, 8, 8))
    with pytest.raises(UnsupportedLayerError, match="no ReLU"):
        unit_codes(nn.Linear(3, 2), torch.zeros(2, 3))


def test_bad_input_raises_a_named_error():
    net = _mlp()
    x = torch.zeros(2, 3, dtype=D64)
    for kwargs in ({"mode": "bits"}, {"pool": "space"}, {"tau": 0.0}, {"tau": -1.0}, {"tau": "1"}):
        with pytest.raises(ParameterError):
            unit_codes(net, x, **kwargs)
    for bad in (x.numpy(), torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, dtype=D64),
                torch.zeros(2, 3, dtype=torch.float32)):
        with pytest.raises(ParameterError):
            unit_codes(net, bad)
    with pytest.raises(ParameterError):
        unit_codes("not a model", x)
    with pytest.raises(ParameterError):
        NeuroViewClassifier(net, 1)
    clf = _clf()
    for units in ([11], [-1], [0.5], torch.zeros(3, dtype=torch.bool)):
        with pytest.raises(ParameterError):
            with clf.switch_off(units):
                pass
    with pytest.raises(ParameterError, match="every class"):
        clf.fit_posthoc(torch.zeros(4, 3, dtype=D64), np.array([0, 1, 1, 0]))
    with pytest.raises(ParameterError):
        clf.fit_posthoc(torch.zeros(4, 3, dtype=D64), np.array([0.0, 1, 2, 3]))
