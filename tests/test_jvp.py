"""Tests of helpers.jvp (the CPA Jacobian-vector product) against independent oracles.

Oracles: ``torch.func.jvp`` (forward-mode autodiff), ``torch.func.jacfwd`` under ``vmap`` (full
per-sample Jacobians) and central finite differences, all in float64 unless a test is about
float32. The models form a zoo of small factories (module-level, parametrized by width/depth).

Float32: ``helpers.jvp`` and ``torch.func.jvp`` both run the primal in float32 with the same
kernels, so they freeze the *same* activation codes; comparing them in float32 is therefore free
of kink flips and the 1e-5 threshold measures only the rounding of the tangent pass. Comparing a
float32 run against a float64 oracle instead would mix in codes that can legitimately differ
near a kink; that comparison is made only on samples whose pre-activations are all far from a
kink (see ``test_float32_matches_float64_oracle_away_from_kinks``).

Exactly at a kink the reference is reverse mode (``torch.func.jacrev``, what ``.backward()`` uses):
PyTorch's forward-mode PReLU takes slope 1 at 0 while its backward (and leaky-ReLU in both modes)
takes the negative slope, so forward mode is not a consistent oracle there.
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import native_pool
from helpers.jvp import UnsupportedLayerError, jvp, linearize

pytestmark = pytest.mark.filterwarnings(  # raised inside torch.func's forward-AD setup, not by helpers
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning")

F64_TOL = 1e-10
F32_TOL = 1e-5


@pytest.fixture(autouse=True, params=["grad", "no_grad"])
def grad_mode(request):
    """Every test runs twice: with grad enabled the tangent pass keeps autograd intact; under
    no_grad linearize overwrites dead tangent buffers in place (a different code path)."""
    with torch.set_grad_enabled(request.param == "grad"):
        yield request.param


@pytest.fixture(autouse=True, params=["native", "torch"])
def pooling(request, monkeypatch):
    """Every test runs with max-pooling on the compiled kernels (helpers.native_pool) and on
    PyTorch ops, the path of a machine without a C compiler."""
    if request.param == "native" and not native_pool.available():
        pytest.skip(native_pool.status())
    if request.param == "torch":
        monkeypatch.setitem(native_pool._STATE, "lib", None)
    return request.param


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    """max |got - ref| / max |ref|; the reference must be non-trivial."""
    assert got.shape == ref.shape, (got.shape, ref.shape)
    scale = ref.abs().max().item()
    assert scale > 0, "reference tangent is identically zero: the test would be vacuous"
    return (got - ref).abs().max().item() / scale



def assert_matches_func_jvp(model, x, v, K):
    """The primal equals model(x) exactly; the tangent matches torch.func.jvp (one call per tangent when K)."""
    y, jv = jvp(model, x, v)
    with torch.no_grad():
        assert torch.equal(y, model(x))
    if K is None:
        ref = ref_jvp(model, x, v)[1]
    else:
        ref = torch.stack([ref_jvp(model, x, v[:, k])[1] for k in range(K)], 1)
    assert rel_err(jv, ref) <= F64_TOL

def sample_xv(shape, batch, seed, K):
    """An input and a tangent for it: of the input's shape, or with K tangents per sample when K is set."""
    x = sample(shape, batch, seed)
    return x, sample(shape if K is None else (K, *shape), batch, seed + 1)

def ref_jvp(model, x, v):
    """Forward-mode autodiff oracle."""
    with torch.no_grad():
        return torch.func.jvp(model, (x,), (v,))


def randomize_bn(model: nn.Module, gen: torch.Generator) -> nn.Module:
    """Give every batch-norm non-trivial running stats and affine parameters."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=gen, dtype=torch.float64) * 0.5)
                m.running_var.copy_(torch.rand(c, generator=gen, dtype=torch.float64) * 2.5 + 0.2)
                if m.weight is not None:
                    # signs and magnitudes vary: a scale of 1 would hide a missing per-channel factor
                    m.weight.copy_(torch.randn(c, generator=gen, dtype=torch.float64) * 1.5)
                    m.bias.copy_(torch.randn(c, generator=gen, dtype=torch.float64) * 0.5)
    return model


def finish(model: nn.Module, seed: int, dtype=torch.float64) -> nn.Module:
    gen = torch.Generator().manual_seed(seed + 1000)
    randomize_bn(model, gen)
    return model.to(dtype).eval()


# --------------------------------------------------------------------------------------------
# The zoo. Each factory returns (model, input shape without batch axis).
# --------------------------------------------------------------------------------------------


def make_mlp(width=16, depth=3, d_in=6, d_out=4, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    layers, d = [], d_in
    for _ in range(depth):
        layers += [nn.Linear(d, width), nn.ReLU()]
        d = width
    layers.append(nn.Linear(d, d_out))
    return finish(nn.Sequential(*layers), seed, dtype), (d_in,)


def make_deep_mlp(width=10, depth=8, seed=0, dtype=torch.float64):
    return make_mlp(width=width, depth=depth, d_in=5, d_out=3, seed=seed, dtype=dtype)


def make_lenet(channels=4, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    c = channels
    model = nn.Sequential(
        nn.Conv2d(1, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 12 -> 12 -> 6
        nn.Conv2d(c, 2 * c, 3), nn.ReLU(), nn.MaxPool2d(2),          # 6 -> 4 -> 2
        nn.Flatten(), nn.Linear(2 * c * 4, 16), nn.ReLU(), nn.Linear(16, 5),
    )
    return finish(model, seed, dtype), (1, 12, 12)


def make_cnn(width=4, depth=2, seed=0, dtype=torch.float64):
    """A plain CNN of variable depth (3x3 convs with padding, one max-pool)."""
    torch.manual_seed(seed)
    layers, c = [], 2
    for _ in range(depth):
        layers += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU()]
        c = width
    layers += [nn.MaxPool2d(2), nn.Flatten(), nn.Linear(width * 9, 3)]
    return finish(nn.Sequential(*layers), seed, dtype), (2, 6, 6)


def make_vgg(channels=4, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    c = channels
    model = nn.Sequential(
        nn.Conv2d(3, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU(), nn.Conv2d(2 * c, 2 * c, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(2 * c * 4, 6),
    )
    return finish(model, seed, dtype), (3, 8, 8)


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        identity = self.shortcut(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + identity
        return F.relu(out)


class ResNet(nn.Module):
    def __init__(self, width=4, depth=2, n_out=3):
        super().__init__()
        self.conv1 = nn.Conv2d(2, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        blocks = []
        for i in range(depth):
            stride = 2 if i == depth - 1 else 1  # the last block downsamples through a 1x1 conv shortcut
            c_out = width * 2 if i == depth - 1 else width
            blocks.append(BasicBlock(width, c_out, stride))
            width = c_out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(width, n_out)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.blocks(out)
        out = F.adaptive_avg_pool2d(out, 1)
        out = torch.flatten(out, 1)
        return self.fc(out)


def make_resnet(width=4, depth=2, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return finish(ResNet(width, depth), seed, dtype), (2, 6, 6)


class LeakyNet(nn.Module):
    def __init__(self, width=12):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(5, width), nn.Linear(width, width), nn.Linear(width, 3)
        self.act = nn.LeakyReLU(0.1)

    def forward(self, x):
        h = self.act(self.fc1(x))
        h = F.leaky_relu(self.fc2(h), 0.3)
        return self.fc3(h)


def make_leaky(width=12, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return finish(LeakyNet(width), seed, dtype), (5,)


def make_generator(z_dim=6, channels=4, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    c = channels
    model = nn.Sequential(
        nn.Linear(z_dim, 2 * c * 4 * 4), nn.Unflatten(1, (2 * c, 4, 4)),
        nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1), nn.BatchNorm2d(c), nn.ReLU(),   # 4 -> 8
        nn.ConvTranspose2d(c, 1, 3, stride=2, padding=1, output_padding=1),                   # 8 -> 16
    )
    return finish(model, seed, dtype), (z_dim,)


def make_conv1d(channels=4, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    c = channels
    model = nn.Sequential(
        nn.Conv1d(2, c, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),   # 16 -> 8
        nn.Conv1d(c, c, 3), nn.ReLU(), nn.MaxPool1d(2),              # 8 -> 6 -> 3
        nn.Flatten(), nn.Linear(3 * c, 4),
    )
    return finish(model, seed, dtype), (2, 16)


class MiscNet(nn.Module):
    """PReLU, Hardtanh, ReLU6, AvgPool2d, AdaptiveAvgPool2d, eval Dropout, Flatten, view, BatchNorm1d."""

    def __init__(self, c=4):
        super().__init__()
        self.conv1 = nn.Conv2d(2, c, 3, padding=1)
        self.prelu = nn.PReLU(c, init=0.2)
        self.pool = nn.AvgPool2d(2)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.htanh = nn.Hardtanh(-0.4, 0.4)
        self.apool = nn.AdaptiveAvgPool2d(2)
        self.drop = nn.Dropout(0.5)
        self.flat = nn.Flatten()
        self.fc1 = nn.Linear(4 * c, 10)
        self.bn = nn.BatchNorm1d(10)
        self.relu6 = nn.ReLU6()
        self.fc2 = nn.Linear(10, 3)

    def forward(self, x):
        h = self.pool(self.prelu(self.conv1(x)))
        h = self.apool(self.htanh(self.conv2(h)))
        h = self.drop(h)
        h = h.view(h.size(0), -1)
        h = self.relu6(4.0 * self.bn(self.fc1(h)))  # scaled so that some units saturate at 6
        h = F.hardtanh(h, -1.0, 5.0)
        return self.fc2(self.flat(h.unsqueeze(-1)))


def make_misc(channels=4, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    model = MiscNet(channels)
    with torch.no_grad():  # distinct per-channel PReLU slopes, one of them negative
        model.prelu.weight.copy_(torch.linspace(-0.3, 0.5, channels))
    return finish(model, seed, dtype), (2, 8, 8)


class MaxNet(nn.Module):
    """torch.max over a feature axis, torch.maximum of two branches, max with a constant."""

    def __init__(self, width=12, groups=3):
        super().__init__()
        self.groups = groups
        self.fc1 = nn.Linear(6, width * groups)
        self.fa, self.fb = nn.Linear(width, width), nn.Linear(width, width)
        self.fc2 = nn.Linear(width, 3)
        self.register_buffer("floor", torch.linspace(-0.5, 0.5, width))

    def forward(self, x):
        h = self.fc1(x)
        h = h.view(h.size(0), self.groups, -1)
        h = torch.max(h, dim=1).values               # maxout over groups
        g = torch.max(h.unsqueeze(1).expand(-1, 2, -1), 1)[0]  # values through getitem
        h = torch.maximum(self.fa(g), self.fb(h))    # both operands depend on x
        h = torch.maximum(h, self.floor)             # a constant operand
        return self.fc2(h)


def make_maxnet(width=12, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return finish(MaxNet(width), seed, dtype), (6,)


class BNMLP(nn.Module):
    """Linear -> BatchNorm1d(eval) -> ReLU, with abs and clamp."""

    def __init__(self, width=10):
        super().__init__()
        self.fc1, self.bn1 = nn.Linear(4, width), nn.BatchNorm1d(width)
        self.fc2, self.fc3 = nn.Linear(width, width), nn.Linear(width, 2)

    def forward(self, x):
        h = F.relu(self.bn1(self.fc1(x)))
        h = torch.abs(self.fc2(h)) + torch.clamp(self.fc2(h), min=-0.2, max=0.3)
        return self.fc3(h)


def make_bnmlp(width=10, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return finish(BNMLP(width), seed, dtype), (4,)


ZOO = {
    "mlp": make_mlp,
    "deep_mlp": make_deep_mlp,
    "lenet": make_lenet,
    "vgg": make_vgg,
    "resnet": make_resnet,
    "leaky": make_leaky,
    "generator": make_generator,
    "conv1d": make_conv1d,
    "misc": make_misc,
    "maxnet": make_maxnet,
    "bnmlp": make_bnmlp,
}


def sample(shape, batch, seed, dtype=torch.float64, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, *shape, generator=gen, dtype=torch.float64) * scale).to(dtype)


# --------------------------------------------------------------------------------------------
# 2. Agreement with torch.func.jvp on the zoo
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ZOO)
def test_zoo_float64_matches_func_jvp(name):
    model, shape = ZOO[name]()
    assert_matches_func_jvp(model, sample(shape, 5, 1), sample(shape, 5, 2), None)


@pytest.mark.parametrize("name", ZOO)
def test_zoo_float32_matches_func_jvp_in_float32(name):
    # Same float32 model on both sides: identical primal kernels give identical codes (no kink
    # flip is possible), so only the rounding of the tangent pass is measured.
    model, shape = ZOO[name](dtype=torch.float32)
    x, v = sample(shape, 6, 11, torch.float32), sample(shape, 6, 12, torch.float32)
    y, jv = jvp(model, x, v)
    with torch.no_grad():
        assert torch.equal(y, model(x))
    y_ref, jv_ref = ref_jvp(model, x, v)
    assert torch.equal(y, y_ref)  # the premise above: same primal, hence same codes
    assert rel_err(jv, jv_ref) <= F32_TOL


def _pre_activations(model, x):
    """Inputs of every ReLU module and the argmax margins of every MaxPool2d (the kinks)."""
    margins = []

    def relu_hook(mod, inp, out):
        margins.append(inp[0].detach().abs().flatten(1).min(1).values)

    def pool_hook(mod, inp, out):
        h = inp[0].detach()
        patches = F.unfold(h.flatten(0, 1).unsqueeze(1), mod.kernel_size, stride=mod.stride)  # (N*C, k*k, L)
        top2 = patches.topk(2, dim=1).values
        # A window whose maximum is 0 holds only dead ReLU outputs (the zoo pools after ReLUs):
        # every index there carries a zero tangent, so a tie is harmless and no kink.
        gap = torch.where(top2[:, 0] > 0, top2[:, 0] - top2[:, 1], torch.inf).view(h.shape[0], -1)
        margins.append(gap.min(1).values)

    hooks = [m.register_forward_hook(relu_hook) for m in model.modules() if isinstance(m, nn.ReLU)]
    hooks += [m.register_forward_hook(pool_hook) for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return torch.stack(margins).min(0).values


@pytest.mark.parametrize("name", ["mlp", "deep_mlp", "lenet", "vgg", "generator"])
def test_float32_matches_float64_oracle_away_from_kinks(name):
    # A float32 run may pick a different code than float64 for a pre-activation within rounding
    # of a kink, where the Jacobian legitimately jumps. Only samples whose every kink margin
    # exceeds 1e-4 (in both precisions) are compared; they must agree to float32 accuracy.
    model32, shape = ZOO[name](dtype=torch.float32)
    model64, _ = ZOO[name](dtype=torch.float64)
    x64, v64 = sample(shape, 16, 21), sample(shape, 16, 22)
    x32, v32 = x64.float(), v64.float()
    far = (_pre_activations(model32, x32) > 1e-4) & (_pre_activations(model64, x64) > 1e-4)
    assert far.sum() >= 8, "too few samples away from kinks for a meaningful test"
    _, jv32 = jvp(model32, x32[far], v32[far])
    _, jv64 = ref_jvp(model64, x64[far], v64[far])
    assert rel_err(jv32.double(), jv64) <= F32_TOL


@pytest.mark.parametrize("name", ["mlp", "lenet", "resnet", "generator", "misc"])
def test_zoo_matches_finite_differences(name):
    # An oracle independent of autodiff. Inside a linear region the central difference is exact up
    # to rounding, ~1e-16 * max|y| / (1e-6 * max|Jv|), about 1e-10..1e-9 here; crossing a kink (a
    # pre-activation within ~1e-6 of one) would instead give an O(1) error. 1e-6 separates the two.
    model, shape = ZOO[name]()
    x, v = sample(shape, 4, 31), sample(shape, 4, 32)
    _, jv = jvp(model, x, v)
    eps = 1e-6
    with torch.no_grad():
        fd = (model(x + eps * v) - model(x - eps * v)) / (2 * eps)
    assert rel_err(jv, fd) <= 1e-6


def test_bn_scale_is_per_channel():
    # Guard against a vacuous batch-norm test: the randomized scales really differ per channel.
    model, _ = make_generator()
    bn = model[3]
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    assert scale.abs().max() / scale.abs().min() > 2


def test_codes_are_nontrivial():
    # Every ReLU in the zoo's test batches is active on some units and inactive on others, and
    # the ReLU6/Hardtanh of MiscNet saturate on some units: the masks are really exercised.
    for name in ["mlp", "deep_mlp", "lenet", "vgg", "generator", "conv1d", "misc"]:
        model, shape = ZOO[name]()
        x = sample(shape, 5, 1)
        seen = []
        hooks = [m.register_forward_hook(lambda m, i, o: seen.append((i[0] > 0).float().mean().item()))
                 for m in model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]
        with torch.no_grad():
            model(x)
        for h in hooks:
            h.remove()
        assert seen and all(0 < f < 1 for f in seen), (name, seen)
    model, shape = make_misc()
    pre = {}
    for name in ("relu6", "htanh", "prelu"):
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: pre.__setitem__(name, i[0]))
    with torch.no_grad():
        model(sample(shape, 5, 1))
    h = pre["relu6"]
    assert (h > 6).any() and ((h > 0) & (h < 6)).any() and (h < 0).any()
    h = pre["htanh"]
    assert (h.abs() > 0.4).any() and (h.abs() < 0.4).any()
    assert (pre["prelu"] < 0).any() and (pre["prelu"] > 0).any()


# --------------------------------------------------------------------------------------------
# 3. Property-based
# --------------------------------------------------------------------------------------------

PROP = settings(max_examples=25, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def assert_property_case(make, width, depth, batch, seed):
    """One drawn architecture: exact primal, tangent equal to torch.func.jvp."""
    model, shape = make(width=width, depth=depth, seed=seed)
    x, v = sample(shape, batch, seed + 1), sample(shape, batch, seed + 2)
    y, jv = jvp(model, x, v)
    with torch.no_grad():
        assert torch.equal(y, model(x))
    _, jv_ref = ref_jvp(model, x, v)
    if jv_ref.abs().max() == 0:  # all units dead (possible for width 1): both must be exactly zero
        assert torch.equal(jv, jv_ref)
    else:
        assert rel_err(jv, jv_ref) <= F64_TOL


@PROP
@given(width=st.integers(1, 24), depth=st.integers(1, 6), batch=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_property_mlp(width, depth, batch, seed):
    assert_property_case(make_mlp, width, depth, batch, seed)


@PROP
@given(width=st.integers(1, 6), depth=st.integers(1, 3), batch=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_property_cnn(width, depth, batch, seed):
    assert_property_case(make_cnn, width, depth, batch, seed)


@PROP
@given(width=st.integers(1, 5), depth=st.integers(1, 3), batch=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_property_resnet(width, depth, batch, seed):
    assert_property_case(make_resnet, width, depth, batch, seed)


# --------------------------------------------------------------------------------------------
# 4. K tangents per sample
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("K", [1, 3])
@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("name", ZOO)
def test_k_tangents_equal_stacked_jvps(name, batch, K):
    model, shape = ZOO[name]()
    x = sample(shape, batch, 41)
    V = sample((K, *shape), batch, 42)
    y, jvp_fn = linearize(model, x)
    JV = jvp_fn(V)
    refs = torch.stack([ref_jvp(model, x, V[:, k])[1] for k in range(K)], dim=1)
    assert JV.shape == (batch, K, *y.shape[1:])
    assert rel_err(JV, refs) <= F64_TOL


def _per_sample_jacobian(model, x):
    f = lambda xi: model(xi.unsqueeze(0)).squeeze(0)  # noqa: E731
    with torch.no_grad():
        return torch.vmap(torch.func.jacfwd(f))(x)


@pytest.mark.parametrize("name", ["mlp", "generator", "lenet", "resnet"])
def test_basis_tangents_give_per_sample_jacobian(name):
    model, shape = ZOO[name]()
    B, d = 3, math.prod(shape)
    x = sample(shape, B, 51)
    eye = torch.eye(d, dtype=x.dtype).reshape(d, *shape)
    V = eye.unsqueeze(0).expand(B, *eye.shape)  # (B, d, *shape), a non-contiguous expand as in sampling.py
    y, jvp_fn = linearize(model, x)
    JV = jvp_fn(V)                                          # (B, d, *y.shape[1:])
    J_ours = JV.reshape(B, d, -1).transpose(1, 2)           # (B, out, d)
    J_ref = _per_sample_jacobian(model, x).reshape(B, -1, d)
    assert rel_err(J_ours, J_ref) <= F64_TOL


def test_linearize_reuses_codes_across_calls():
    # The returned function is pure: calling it twice, or in another order, gives the same result.
    model, shape = make_resnet()
    x = sample(shape, 3, 61)
    v1, v2 = sample(shape, 3, 62), sample(shape, 3, 63)
    V = sample((2, *shape), 3, 64)
    inputs = [t.clone() for t in (v1, v2, V)]
    _, f = linearize(model, x)
    a, A = f(v1), f(V)
    f(v2)
    assert torch.equal(f(v1), a) and torch.equal(f(V), A)
    # buffers are reused in place only inside the tangent pass: the caller's tangents stay intact
    assert all(torch.equal(t, t0) for t, t0 in zip((v1, v2, V), inputs))


@pytest.mark.parametrize("K", [None, 1, 3])
@pytest.mark.parametrize("name", ZOO)
def test_one_walk_jvp_matches_linearize_and_oracle(name, K):
    # jvp() runs each tangent step right after its primal step and drops dead values on the way;
    # linearize() runs the whole primal first. Same codes, same tangent operations.
    model, shape = ZOO[name]()
    x, v = sample_xv(shape, 3, 71, K)
    assert_matches_func_jvp(model, x, v, K)
    y, jv = jvp(model, x, v)
    y_lin, jvp_fn = linearize(model, x)
    assert torch.equal(y, y_lin)
    assert rel_err(jv, jvp_fn(v)) <= F64_TOL


@pytest.mark.parametrize("kernel, stride, dilation", [(2, None, 1), (3, 2, 1), (3, 1, 2), (1, 2, 1), (4, 3, 1)])
@pytest.mark.parametrize("values", ["random", "ties", "nan"])
def test_max_pool1d_indices_match_pytorch(kernel, stride, dilation, values):
    # The 1-D pooling's indices come from comparisons, not from PyTorch's kernel with indices:
    # they must be the same indices, ties (first entry) and NaN (last NaN) included.
    from helpers.jvp import _max_pool1d_with_indices
    x = sample((4, 13), 3, 73)
    if values == "ties":
        x = x.round()
    if values == "nan":
        x[x > 0.8] = float("nan")
    ref_values, ref_idx = F.max_pool1d_with_indices(x, kernel, stride, 0, dilation)
    got_values, got_idx = _max_pool1d_with_indices(x, kernel, stride, 0, dilation)
    assert torch.equal(got_idx, ref_idx)
    assert torch.equal(got_values.nan_to_num(), ref_values.nan_to_num())


class Pool1dFunctional(nn.Module):
    def __init__(self, **pool):
        super().__init__()
        self.conv, self.pool = nn.Conv1d(2, 3, 3), pool

    def forward(self, x):
        return F.max_pool1d(F.relu(self.conv(x)), **self.pool)


@pytest.mark.parametrize("K", [None, 3])
@pytest.mark.parametrize("pool", [dict(kernel_size=2), dict(kernel_size=3, stride=2, dilation=2),
                                  dict(kernel_size=2, padding=1), dict(kernel_size=3, ceil_mode=True)])
def test_max_pool1d_fast_and_fallback_paths_match_func_jvp(pool, K):
    torch.manual_seed(74)
    model = finish(Pool1dFunctional(**pool), 74)
    x, v = sample_xv((2, 15), 3, 75, K)
    assert_matches_func_jvp(model, x, v, K)


class Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


@pytest.mark.parametrize("K", [None, 3])
@pytest.mark.parametrize("pool", [dict(kernel_size=2), dict(kernel_size=2, stride=1, dilation=2),
                                  dict(kernel_size=2, stride=3)])
@pytest.mark.parametrize("values", ["ties", "nan", "infs"])
@pytest.mark.parametrize("select_max", [None, 0])
@pytest.mark.parametrize("strided", [False, True])
def test_max_pool1d_pair_select_picks_pytorchs_entry(pool, K, values, select_max, strided, monkeypatch):
    # Windows of two select between the pair's strided views (small outputs), read one tangent per
    # sample at flat positions from which entry won (large outputs), and gather K tangents (or a
    # non-contiguous one) at indices made from it: on ties the first entry, on NaN a NaN second
    # entry, as PyTorch's indices do; the tangents are the same entries.
    if select_max is not None:  # the large-output paths at every size
        monkeypatch.setattr("helpers.jvp._SELECT_MAX", select_max)
    x = sample((3, 12), 4, 79).round()
    if values == "nan":
        x[x > 0.8] = float("nan")
    if values == "infs":  # the values' sum is NaN without a NaN: the full rule runs
        x[x > 0.8], x[x < -0.8] = float("inf"), -float("inf")
    K_ = K or 1
    v = sample((3, 12), 4 * K_, 80).reshape(4, K_, 3, 12) if K else sample((3, 12), 4, 80)
    if strided:  # the same values, laid out channels-inner
        v = v.transpose(-1, -2).contiguous().transpose(-1, -2)
        assert not v.is_contiguous()
    for model in (nn.MaxPool1d(**pool), Lambda(lambda z: F.max_pool1d(z, **pool))):
        y, jv = jvp(model, x, v)
        ref_y, ref_idx = F.max_pool1d_with_indices(x, **pool)
        assert torch.equal(y.nan_to_num(), ref_y.nan_to_num())
        vv = v if K else v.unsqueeze(1)
        ref = vv.gather(3, ref_idx.unsqueeze(1).expand(4, K_, *ref_idx.shape[1:]))
        assert torch.equal(jv if K else jv.unsqueeze(1), ref)


@pytest.mark.parametrize("K", [None, 3])
@pytest.mark.parametrize("conv", [dict(kernel_size=5, padding=2), dict(kernel_size=4, stride=2, padding=1),
                                  dict(kernel_size=3, dilation=2), dict(kernel_size=3, padding="same"),
                                  dict(kernel_size=3, groups=2), dict(kernel_size=3, padding=1, padding_mode="reflect")])
def test_conv1d_tangent_kernels_match_func_jvp(conv, K):
    # Small 1-D tangents take the im2col kernel (numeric padding, zeros mode, no groups or
    # dilation), the others oneDNN through the module; both agree with autodiff, y is model(x).
    torch.manual_seed(81)
    model = finish(nn.Sequential(nn.Conv1d(4, 6, **conv), nn.ReLU(), nn.Conv1d(6, 2, 3)), 81)
    x, v = sample_xv((4, 17), 3, 82, K)
    assert_matches_func_jvp(model, x, v, K)


@pytest.mark.parametrize("K", [None, 3])
@pytest.mark.parametrize("conv", [dict(kernel_size=4, stride=2, padding=1), dict(kernel_size=3, stride=2, output_padding=1),
                                  dict(kernel_size=3, dilation=2), dict(kernel_size=3, groups=3)])
def test_conv_transpose_into_few_channels_matches_func_jvp(conv, K):
    # Into at most 3 channels the 2-D transposed tangent convolution takes the im2col kernel
    # (not with groups or dilation); y stays model(x) and the tangent agrees with autodiff.
    torch.manual_seed(83)
    model = finish(nn.Sequential(nn.ConvTranspose2d(6, 6, 3), nn.ReLU(), nn.ConvTranspose2d(6, 3, **conv)), 83)
    x, v = sample_xv((6, 5, 5), 3, 84, K)
    assert_matches_func_jvp(model, x, v, K)


class DoubledLinear(nn.Linear):
    def forward(self, x):
        return 2 * super().forward(x)


def test_primal_takes_the_module_call_where_hooks_or_subclasses_could_change_it():
    # Plain Linear/ReLU/LeakyReLU layers run their kernels directly in the primal pass; a hook,
    # a global hook or a subclass must still be honoured, so y stays model(x) bit for bit.
    torch.manual_seed(76)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), DoubledLinear(4, 4), nn.LeakyReLU(0.2)).double().eval()
    x, v = sample((3,), 5, 77), sample((3,), 5, 78)
    seen = []
    handle = model[1].register_forward_hook(lambda mod, inp, out: seen.append(mod))
    try:
        y, _ = jvp(model, x, v)
        assert seen == [model[1]]
        with torch.no_grad():
            assert torch.equal(y, model(x))
    finally:
        handle.remove()
    shift = nn.modules.module.register_module_forward_hook(lambda mod, inp, out: out + 1 if mod is model[0] else None)
    try:
        y, _ = jvp(model, x, v)
        with torch.no_grad():
            assert torch.equal(y, model(x))
    finally:
        shift.remove()
    assert_matches_func_jvp(model, x, v, None)


@pytest.mark.parametrize("K", [None, 1, 3])
def test_max_pool2d_on_channels_last_tangents(K):
    # From 32 channels on, a channels-last tangent (K > 1 image batches, or a caller's) is
    # gathered in its own layout, with the index converted once per code.
    torch.manual_seed(79)
    model = nn.Sequential(nn.Conv2d(2, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(32, 3, 3), nn.ReLU(), nn.MaxPool2d(2)).double().eval()
    x, v = sample_xv((2, 10, 10), 3, 80, K)
    assert_matches_func_jvp(model, x, v, K)
    if K is None:  # a channels-last tangent from the caller
        assert_matches_func_jvp(model, x, v.contiguous(memory_format=torch.channels_last), None)
    else:  # two calls of one linearization: the converted index is reused
        _, jvp_fn = linearize(model, x)
        assert torch.equal(jvp_fn(v), jvp_fn(v))


class KwargInput(nn.Module):
    def forward(self, x):
        return torch.add(input=x, other=1.0)


def test_tensor_passed_by_keyword_is_refused_not_dropped():
    # Before, an input-dependent keyword argument made the node look constant: a zero tangent.
    x = sample((3,), 2, 72)
    with pytest.raises(UnsupportedLayerError, match="keyword argument"):
        jvp(KwargInput(), x, x)


@pytest.mark.parametrize("name", ["resnet", "vgg", "generator", "misc", "maxnet"])
def test_buffer_reuse_changes_no_result(name):
    model, shape = ZOO[name]()
    x, V = sample(shape, 3, 67), sample((3, *shape), 3, 68)
    with torch.no_grad():  # where reuse is on
        reused = linearize(model, x)[1](V)
        fresh = linearize(model, x, reuse_buffers=False)[1](V)
    assert rel_err(reused, fresh) <= F64_TOL


@pytest.mark.parametrize("name", ["resnet", "misc"])
def test_frozen_weights_with_an_input_that_requires_grad(name, grad_mode):
    # The codes then carry autograd history through x; in-place kernels would refuse them.
    model, shape = ZOO[name]()
    model.requires_grad_(False)
    x, v = sample(shape, 3, 69).requires_grad_(), sample(shape, 3, 70)
    _, jv = jvp(model, x, v)
    with torch.no_grad():
        assert rel_err(jv, ref_jvp(model, x, v)[1]) <= F64_TOL


@pytest.mark.parametrize("name", ["mlp", "resnet", "generator", "misc"])
def test_tangent_pass_is_differentiable_in_the_weights(name, grad_mode):
    if grad_mode == "no_grad":
        pytest.skip("gradients need autograd enabled")
    model, shape = ZOO[name]()
    x, v = sample(shape, 3, 65), sample(shape, 3, 66)
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    _, jv = jvp(model, x, v)
    ours = torch.autograd.grad(jv.square().sum(), weights)
    _, jv_ref = torch.func.jvp(model, (x,), (v,))
    ref = torch.autograd.grad(jv_ref.square().sum(), weights)
    for g, g_ref in zip(ours, ref):
        assert rel_err(g, g_ref) <= F64_TOL


# --------------------------------------------------------------------------------------------
# 5. Linearity, batch independence, in-place ops, constants
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mlp", "resnet", "generator", "maxnet", "misc"])
def test_linear_in_v(name):
    model, shape = ZOO[name]()
    x = sample(shape, 4, 71)
    v1, v2 = sample(shape, 4, 72), sample(shape, 4, 73)
    a, b = 1.7, -0.6
    _, f = linearize(model, x)
    assert rel_err(f(a * v1 + b * v2), a * f(v1) + b * f(v2)) <= F64_TOL


@pytest.mark.parametrize("name", ["mlp", "lenet", "resnet", "generator", "conv1d", "maxnet"])
def test_batch_independence(name):
    model, shape = ZOO[name]()
    x, v = sample(shape, 5, 81), sample(shape, 5, 82)
    _, jv = jvp(model, x, v)
    x2 = x.clone()
    x2[2] = sample(shape, 1, 83)[0]  # move sample 2 to another linear region
    v2 = v.clone()
    v2[2] = sample(shape, 1, 84)[0]
    _, jv2 = jvp(model, x2, v2)
    others = [0, 1, 3, 4]
    assert torch.equal(jv2[others], jv[others])
    assert not torch.equal(jv2[2], jv[2])


class InplaceNet(nn.Module):
    def __init__(self, width=12):
        super().__init__()
        self.fc1, self.act = nn.Linear(5, width), nn.ReLU(inplace=True)
        self.fc2, self.fc3 = nn.Linear(width, width), nn.Linear(width, 3)

    def forward(self, x):
        h = self.act(self.fc1(x))
        g = self.fc2(h)
        g.relu_()
        k = F.relu(self.fc2(h) - 0.1, inplace=True)
        return self.fc3(g + h + k)


class InplaceAlias(nn.Module):
    """An in-place ReLU whose *input* is used again afterwards: the use must see the new value."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 2)

    def forward(self, x):
        h = self.fc1(x)
        h.relu_()
        return self.fc2(h) + h.sum(1, keepdim=True)


@pytest.mark.parametrize("cls", [InplaceNet, InplaceAlias])
@pytest.mark.parametrize("K", [None, 3])
def test_inplace_relu(cls, K):
    torch.manual_seed(5)
    model = cls().double().eval()
    d = model.fc1.in_features
    x, v = sample_xv((d,), 6, 91, K)
    x_before = x.clone()
    assert_matches_func_jvp(model, x, v, K)
    assert torch.equal(x, x_before)


class ConstNet(nn.Module):
    def __init__(self, width=8):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(3, width), nn.Linear(width, 2)
        self.register_buffer("gain", torch.linspace(-2.0, 3.0, width))
        self.register_buffer("shift", torch.linspace(0.5, -0.5, width))
        self.register_buffer("row_gain", torch.linspace(0.5, 2.0, width).unsqueeze(0))
        self.scale = nn.Parameter(torch.tensor(0.7))

    def forward(self, x):
        h = self.fc1(x)
        h = h * 2.5 + 1.0
        h = 0.5 * h - self.shift
        h = h * self.gain
        h = self.row_gain * h
        h = h * self.scale
        h = 3.0 - h
        h = h / 1.5 + torch.ones_like(h)
        h = torch.add(h, self.shift, alpha=2.0)
        h = torch.add(self.shift, h, alpha=-1.5)   # alpha scales the input-dependent operand
        h = torch.sub(h, 0.3 * h, alpha=0.5)       # both operands depend on x: h - 0.15 h
        h = F.relu(h)
        return self.fc2(h) / self.gain[:2] + 0.25


@pytest.mark.parametrize("K", [None, 2])
def test_constants(K):
    torch.manual_seed(6)
    model = ConstNet().double().eval()
    x, v = sample_xv((3,), 5, 101, K)
    assert_matches_func_jvp(model, x, v, K)


class PerSampleConst(nn.Module):
    """Multiplication by a constant with one row per sample (built from the batch size)."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(3, 6), nn.Linear(6, 2)

    def forward(self, x):
        h = F.relu(self.fc1(x))
        w = torch.arange(1, x.size(0) + 1, dtype=x.dtype).unsqueeze(1)  # (B, 1), not input-dependent
        return self.fc2(h * w)


def test_per_sample_constant_with_k_tangents():
    model = PerSampleConst().double().eval()
    x, V = sample((3,), 4, 111), sample((3, 3), 4, 112)
    _, f = linearize(model, x)
    ref = torch.stack([ref_jvp(model, x, V[:, k])[1] for k in range(3)], 1)
    assert rel_err(f(V), ref) <= F64_TOL


class AliasDropout(nn.Module):
    """ReLU(inplace) after an eval dropout, which returns its input tensor itself: the in-place op
    also changes the pre-dropout tensor, which the residual uses."""

    def __init__(self):
        super().__init__()
        self.fc1, self.drop, self.act, self.fc2 = nn.Linear(4, 6), nn.Dropout(0.3), nn.ReLU(inplace=True), nn.Linear(6, 2)

    def forward(self, x):
        h = self.fc1(x)
        r = self.act(self.drop(h))
        return self.fc2(r + h)


class AliasIdentity(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.id = nn.Linear(4, 6), nn.Identity()

    def forward(self, x):
        h = self.fc1(x)
        g = self.id(h)
        g.relu_()
        return h * 2.0


class AliasChain(nn.Module):
    """``g = h.relu_()`` is h itself: the later in-place ops on h change g as well."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 6)

    def forward(self, x):
        h = self.fc1(x)
        g = h.relu_()
        h.mul_(-2.0)
        h.add_(0.5)
        return g


class ViewUnusedBase(nn.Module):
    """In-place ReLU on a view whose base is not used afterwards: fine."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 6)

    def forward(self, x):
        h = self.fc1(x)
        g = h.view(h.size(0), 2, 3)
        g.relu_()
        return g


@pytest.mark.parametrize("cls", [AliasDropout, AliasIdentity, AliasChain, ViewUnusedBase])
@pytest.mark.parametrize("K", [None, 2])
def test_inplace_through_aliases(cls, K):
    torch.manual_seed(7)
    model = cls().double().eval()
    x, v = sample_xv((4,), 5, 93, K)
    assert_matches_func_jvp(model, x, v, K)


class AmaxNet(nn.Module):
    """torch.amax / .amin over feature axes; ReLU zeros make exact ties, where autograd averages."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 12), nn.Linear(7, 2)

    def forward(self, x):
        h = F.relu(self.fc1(x)).view(x.size(0), 3, 4)
        g = torch.cat([torch.amax(h, dim=1), h.amin(-1, keepdim=True).flatten(1)], 1)   # ties among zeros
        return self.fc2(g)


class WhereNet(nn.Module):
    """torch.where with a comparison mask: a leaky unit written by hand, and a constant branch."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(4, 6), nn.Linear(4, 6), nn.Linear(6, 2)

    def forward(self, x):
        h = self.fc1(x)
        g = torch.where(h > 0, h, 0.1 * h) + torch.where(h > 0.5, self.fc2(x), 0.0)
        return self.fc3(g)


class ClampInplace(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 6), nn.Linear(6, 2)

    def forward(self, x):
        h = self.fc1(x)
        h.clamp_(-0.3, 0.4)
        return self.fc2(h)


@pytest.mark.parametrize("cls", [AmaxNet, WhereNet, ClampInplace])
@pytest.mark.parametrize("K", [None, 3])
def test_amax_where_and_inplace_clamp(cls, K):
    torch.manual_seed(8)
    model = cls().double().eval()
    x, v = sample_xv((4,), 7, 95, K)
    if cls is AmaxNet:  # the premise of the tie check: some rows of h are all zero
        with torch.no_grad():
            assert (F.relu(model.fc1(x)).view(7, 3, 4).amax(1) == 0).any()
    assert_matches_func_jvp(model, x, v, K)


@pytest.mark.parametrize("K", [None, 2])
def test_amax_ties_average_the_tangents(K):
    # Integer weights and inputs make exact ties whose tangents differ: autograd averages them.
    model = nn.Sequential(nn.Linear(2, 3, bias=False), nn.Flatten()).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]]))

    class Top(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = model

        def forward(self, x):
            return self.body(x).amax(1, keepdim=True)

    x = torch.tensor([[3.0, 3.0], [2.0, 5.0]], dtype=torch.float64)   # row 0 ties (3, 3, 0); row 1 does not
    v = sample((2,), 2, 97) if K is None else sample((K, 2), 2, 97)
    assert_matches_func_jvp(Top(), x, v, K)
    _, jv = jvp(Top(), x, v)
    first = v[0] if K is None else v[0, 0]
    assert torch.allclose((jv[0] if K is None else jv[0, 0]).squeeze(), first.mean())   # (v0 + v1) / 2


def test_amax_over_the_batch_axis_is_refused():
    with pytest.raises(UnsupportedLayerError, match="'amax' over the batch axis"):
        jvp(Batchwise(), torch.randn(5, 4), torch.randn(5, 4))


class Batchwise(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return torch.amax(self.fc(x), dim=0, keepdim=True)


class InplaceOnSlice(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 6)

    def forward(self, x):
        h = self.fc1(x)
        h[:, :3].relu_()
        return h


class InplaceOnBaseOfView(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 6)

    def forward(self, x):
        h = self.fc1(x)
        g = h.view(h.size(0), 2, 3)
        h.relu_()
        return g


@pytest.mark.parametrize("cls", [InplaceOnSlice, InplaceOnBaseOfView])
def test_inplace_through_a_view_is_refused(cls):
    # Writing through one view changes another view used later; the tangent cannot follow that,
    # so it must raise rather than return a silently wrong J v.
    model = cls().double().eval()
    x = sample((4,), 3, 95)
    pattern = r"in-place 'relu_' at graph node 'relu_' .*" + _line(cls, "relu_") + ".*memory shared with the view"
    with pytest.raises(UnsupportedLayerError, match=pattern):
        jvp(model, x, x)


class TwoOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 6)
        self.register_buffer("c", torch.linspace(0, 1, 6).unsqueeze(0))

    def forward(self, x):
        h = F.relu(self.fc1(x))
        return h, torch.zeros_like(h) + self.c  # the second output does not depend on x


@pytest.mark.parametrize("K", [None, 1, 2])
def test_tuple_output_with_constant_member(K):
    model = TwoOutputs().double().eval()
    x, v = sample_xv((4,), 3, 96, K)
    (y1, y2), (t1, t2) = jvp(model, x, v)
    with torch.no_grad():
        r1, r2 = model(x)
    assert torch.equal(y1, r1) and torch.equal(y2, r2)
    if K is None:
        ref = ref_jvp(model, x, v)[1][0]
        assert torch.equal(t2, torch.zeros_like(r2))
    else:
        ref = torch.stack([ref_jvp(model, x, v[:, k])[1][0] for k in range(K)], 1)
        assert t2.shape == (3, K, 6) and not t2.any()
    assert rel_err(t1, ref) <= F64_TOL


class Kinks(nn.Module):
    """Every CPA unit fed exactly at its kinks (inputs 0, +-0.5, +-1, 6 and ties)."""

    def __init__(self):
        super().__init__()
        self.prelu = nn.PReLU(init=0.3)

    def forward(self, x):
        parts = [F.relu(x), F.leaky_relu(x, 0.1), F.leaky_relu(x, -0.2), F.hardtanh(x, -0.5, 0.5),
                 F.relu6(6.0 * x), torch.clamp(x, -0.5, 0.5), torch.abs(x), self.prelu(x),
                 torch.maximum(x, x.flip(1)), torch.maximum(x, torch.zeros_like(x)),
                 torch.max(x.abs().view(x.size(0), 4, 2), dim=1).values,
                 F.max_pool1d(x.abs().unsqueeze(1), 2).squeeze(1)]
        return torch.cat(parts, dim=1)


def test_kink_conventions_match_autograd():
    # At a kink the CPA JVP must pick autograd's one-sided slope. Compared with reverse mode
    # (torch.func.jacrev, i.e. what .backward() uses): forward-mode PReLU takes slope 1 at 0,
    # unlike PReLU's backward and unlike leaky-ReLU in both modes, so jacfwd is not the oracle here.
    model = Kinks().double().eval()
    x = torch.tensor([[-1.0, 0.0, 1.0, -0.5, 0.5, 1.0, -1.0, 0.0],
                      [0.0, 0.0, 0.5, 0.5, -0.5, 2.0, 2.0, 0.0]], dtype=torch.float64)
    d = x.shape[1]
    V = torch.eye(d, dtype=x.dtype).expand(x.shape[0], d, d).contiguous()
    y, f = linearize(model, x)
    J_ours = f(V).transpose(1, 2)                               # (B, out, d)
    with torch.no_grad():
        J_ref = torch.stack([torch.func.jacrev(lambda xi: model(xi.unsqueeze(0)).squeeze(0))(xi) for xi in x])
        assert torch.equal(y, model(x))
    assert torch.equal(J_ours, J_ref)


class ScaledMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 6), nn.Linear(6, 2)
        self.register_buffer("gain", torch.ones(6))

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)) * self.gain)


def test_trace_cache_follows_replaced_modules_and_buffers():
    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)).double().eval()
    x = sample((4,), 3, 98)
    jvp(model, x, x)
    model[1] = nn.LeakyReLU(0.2).eval()  # same train/eval flags as before
    y, jv = jvp(model, x, x)
    with torch.no_grad():
        assert torch.equal(y, model(x))
    assert rel_err(jv, ref_jvp(model, x, x)[1]) <= F64_TOL
    model[1] = nn.GELU().eval()
    with pytest.raises(UnsupportedLayerError, match="GELU at module '1'"):
        jvp(model, x, x)

    model = ScaledMLP().double().eval()
    x = sample((4,), 3, 99)
    jvp(model, x, x)
    model.gain = torch.linspace(2.0, -1.0, 6, dtype=torch.float64)  # a new buffer tensor
    y, jv = jvp(model, x, x)
    with torch.no_grad():
        assert torch.equal(y, model(x))
    assert rel_err(jv, ref_jvp(model, x, x)[1]) <= F64_TOL


def test_trace_cache_follows_nested_changes_and_lets_the_model_go():
    """_prepare's fast path (the fingerprint of the cached submodules' dicts) sees a grandchild
    replaced, a parameter replaced, a nested train/eval flip and a dtype change in place, and the
    cache holds no strong reference to the model."""
    import gc
    import weakref

    torch.manual_seed(9)
    inner = nn.Sequential(nn.Linear(6, 6), nn.ReLU())
    model = nn.Sequential(nn.Linear(4, 6), inner, nn.Linear(6, 2)).double().eval()
    x = sample((4,), 3, 97)
    jvp(model, x, x)
    inner[1] = nn.LeakyReLU(0.3).eval()  # a grandchild
    y, jv = jvp(model, x, x)
    with torch.no_grad():
        assert torch.equal(y, model(x))
    assert rel_err(jv, ref_jvp(model, x, x)[1]) <= F64_TOL
    inner[0].weight = nn.Parameter(torch.randn(6, 6, dtype=torch.float64))  # a grandchild's parameter
    y, jv = jvp(model, x, x)
    with torch.no_grad():
        assert torch.equal(y, model(x))
    assert rel_err(jv, ref_jvp(model, x, x)[1]) <= F64_TOL
    inner.append(nn.Dropout(0.5))
    inner[2].train()  # a nested flag: train-mode dropout is not CPA
    with pytest.raises(UnsupportedLayerError, match="ropout"):
        jvp(model, x, x)
    inner[2].eval()
    jvp(model, x, x)
    model.float()  # the same parameter objects, a new dtype: the check still runs
    with pytest.raises(ValueError, match="float"):
        jvp(model, x, x)

    ref = weakref.ref(model)
    del model, inner
    gc.collect()
    assert ref() is None


# --------------------------------------------------------------------------------------------
# 6. Unsupported operations
# --------------------------------------------------------------------------------------------


class FnGelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return F.gelu(self.fc(x))


class FnSoftmax(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return torch.softmax(self.fc(x), dim=-1)


class FnSigmoid(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return torch.sigmoid(self.fc(x))


class FnTanh(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return torch.tanh(self.fc(x))


class Product(nn.Module):
    def __init__(self):
        super().__init__()
        self.fa, self.fb = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        h = F.relu(self.fa(x))
        g = F.relu(self.fb(x))
        return h * g


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(4, 2, batch_first=True)

    def forward(self, x):
        return self.attn(x, x, x)[0]


def _line(cls, text):
    """The file line number of the statement containing ``text`` in ``cls.forward``."""
    lines, start = inspect.getsourcelines(cls.forward)
    (offset,) = [i for i, line in enumerate(lines) if text in line]
    return rf"line {start + offset}, in forward"


def _seq(*mods):
    return nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), *mods)


# (factory, input shape, pattern the message must contain: the operation and where it sits)
UNSUPPORTED = {
    "nn.GELU": (lambda: _seq(nn.GELU()), (4,), r"GELU at module '3'"),
    "F.gelu": (FnGelu, (4,), r"'gelu' at graph node 'gelu' .*" + _line(FnGelu, "F.gelu")),
    "nn.Softmax": (lambda: _seq(nn.Softmax(-1)), (4,), r"Softmax at module '3'"),
    "torch.softmax": (FnSoftmax, (4,), r"'softmax' at graph node 'softmax' .*" + _line(FnSoftmax, "softmax")),
    "nn.MultiheadAttention": (Attention, (3, 4), r"MultiheadAttention at module 'attn'"),
    "nn.LayerNorm": (lambda: nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)), (4,), r"LayerNorm at module '1'"),
    "BatchNorm2d train": (lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)), (1, 5, 5),
                          r"BatchNorm2d in training mode at module '1'"),
    "Dropout train": (lambda: _seq(nn.Dropout(0.5)), (4,), r"Dropout in training mode at module '3'"),
    "product": (Product, (4,), r"product at graph node 'mul' .*" + _line(Product, "h * g") + ".*both operands depend on the input"),
    "torch.sigmoid": (FnSigmoid, (4,), r"'sigmoid' at graph node 'sigmoid' .*" + _line(FnSigmoid, "sigmoid")),
    "torch.tanh": (FnTanh, (4,), r"'tanh' at graph node 'tanh' .*" + _line(FnTanh, "tanh")),
    "nn.SiLU": (lambda: _seq(nn.SiLU()), (4,), r"SiLU at module '3'"),
}
TRAIN_MODE = {"BatchNorm2d train", "Dropout train"}


@pytest.mark.parametrize("case", UNSUPPORTED)
def test_unsupported_raises(case):
    factory, shape, pattern = UNSUPPORTED[case]
    torch.manual_seed(0)
    model = factory().double()
    model.train(case in TRAIN_MODE)
    x = sample(shape, 3, 121)
    with pytest.raises(UnsupportedLayerError, match=pattern):
        jvp(model, x, torch.ones_like(x))
    with pytest.raises(UnsupportedLayerError, match=pattern):
        linearize(model, x)


class Wrap(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.Tanh())

    def forward(self, x):
        return self.layers(x)


def test_unsupported_names_nested_module_path():
    x = sample((4,), 2, 1)
    with pytest.raises(UnsupportedLayerError, match=r"Tanh at module 'layers\.3'"):
        jvp(Wrap().double().eval(), x, x)


class SigmoidBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return torch.sigmoid(self.fc(x)) + x


class Stack(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.Sequential(SigmoidBlock(), SigmoidBlock())

    def forward(self, x):
        return self.blocks(x)


def test_unsupported_function_names_enclosing_module_and_line():
    x = sample((4,), 2, 1)
    pattern = r"'sigmoid' at graph node 'sigmoid' inside module 'blocks\.0' .*" + _line(SigmoidBlock, "sigmoid")
    with pytest.raises(UnsupportedLayerError, match=pattern):
        jvp(Stack().double().eval(), x, x)


def test_unsupported_is_valueerror_subclass():
    assert issubclass(UnsupportedLayerError, ValueError)


def test_eval_after_train_is_supported():
    # The trace cache must notice the train/eval switch in both directions.
    model, shape = make_generator()
    x = sample(shape, 3, 131)
    model.train()
    with pytest.raises(UnsupportedLayerError, match="training mode"):
        jvp(model, x, x)
    model.eval()
    _, jv = jvp(model, x, x)
    assert rel_err(jv, ref_jvp(model, x, x)[1]) <= F64_TOL
    model.train()
    with pytest.raises(UnsupportedLayerError, match="training mode"):
        jvp(model, x, x)


# --------------------------------------------------------------------------------------------
# 7. Bad input
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlp64():
    return make_mlp()


def test_wrong_v_shape(mlp64):
    model, shape = mlp64
    x = sample(shape, 3, 1)
    with pytest.raises(ValueError, match=r"v must have x's shape \(3, 6\).*got \(3, 5\)"):
        jvp(model, x, torch.zeros(3, 5, dtype=x.dtype))
    with pytest.raises(ValueError, match=r"v must have x's shape.*got \(6, 3\)"):
        jvp(model, x, torch.zeros(6, 3, dtype=x.dtype))  # same number of elements, wrong shape
    with pytest.raises(ValueError, match=r"v must have x's shape.*got \(2, 6\)"):
        jvp(model, x, torch.zeros(2, 6, dtype=x.dtype))
    with pytest.raises(ValueError, match=r"v must have x's shape.*got \(3, 2, 5\)"):
        linearize(model, x)[1](torch.zeros(3, 2, 5, dtype=x.dtype))


def test_v_dtype_mismatch(mlp64):
    model, shape = mlp64
    x = sample(shape, 3, 1)
    with pytest.raises(TypeError, match=r"v must match x's dtype.*torch\.float32"):
        jvp(model, x, x.float())


def test_v_device_mismatch(mlp64):
    model, shape = mlp64
    x = sample(shape, 3, 1)
    with pytest.raises(TypeError, match=r"v must match x's dtype and device.*meta"):
        jvp(model, x, torch.empty(x.shape, dtype=x.dtype, device="meta"))


def test_v_not_a_tensor(mlp64):
    model, shape = mlp64
    x = sample(shape, 3, 1)
    with pytest.raises(TypeError, match=r"v must be a torch\.Tensor, got ndarray"):
        jvp(model, x, x.numpy())


def test_x_dtype_differs_from_parameters(mlp64):
    model, shape = mlp64  # float64
    x = sample(shape, 3, 1, torch.float32)
    with pytest.raises(TypeError, match=r"x is torch\.float32 but the model's '0\.weight' is torch\.float64"):
        jvp(model, x, x)


def test_x_not_a_tensor(mlp64):
    model, _ = mlp64
    with pytest.raises(TypeError, match=r"x must be a torch\.Tensor, got list"):
        jvp(model, [[0.0] * 6], torch.zeros(1, 6, dtype=torch.float64))


def test_x_integer(mlp64):
    model, _ = mlp64
    x = torch.ones(2, 6, dtype=torch.int64)
    with pytest.raises(TypeError, match=r"x must be a floating-point tensor, got dtype torch\.int64"):
        jvp(model, x, x)


def test_x_zero_dim(mlp64):
    model, _ = mlp64
    x = torch.tensor(1.0, dtype=torch.float64)
    with pytest.raises(ValueError, match="leading batch axis"):
        jvp(model, x, x)


def test_model_not_a_module():
    x = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module, got function"):
        jvp(lambda t: t, x, x)
