"""Device and type tests: tensors in, tensors out, and every kernel on every non-CPU device.

Two parts.

* Types (CPU, always run): each public function of sampling, metrics, hull and clustering gives
  numpy for numpy input and torch for torch input, with the same numbers; scalar summaries are
  Python floats. Also the error policy: a bad argument raises ``ParameterError`` (a ValueError
  and a TypeError), whatever the module, a wrong device included.
* Devices: every available non-CPU device (cuda, mps) is compared with the CPU, kernel by
  kernel (zoo JVPs against the CPU and ``torch.func.jvp``, Jacobians and log-volumes against
  CPU float64, weights and resampling, one VAE epoch, hull, metrics, clustering). Where there
  is no such device, these tests are skipped; on a lent GPU the file takes well under a minute.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import clustering, hull, metrics, sampling
from helpers._checks import ParameterError
from helpers.generative import train_vae
from helpers.jvp import jvp, linearize
from helpers.runtime import exact_float32
from helpers.zoo import ZOO, build

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


def _devices() -> list[str]:
    out = []
    if torch.cuda.is_available():
        out.append("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        out.append("mps")
    return out


DEVICES = _devices()
on_devices = pytest.mark.parametrize("dev", DEVICES or [pytest.param("none", marks=pytest.mark.skip(
    reason="no CUDA or MPS device on this machine"))])


def _np(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _same_type(out, ref, *, dtype=None):
    """``out`` has ``ref``'s kind (numpy for numpy, torch on ref's device for torch)."""
    if isinstance(ref, torch.Tensor):
        assert isinstance(out, torch.Tensor), type(out)
        want = ref.device if not (ref.device.type == "mps" and out.dtype == torch.float64) else torch.device("cpu")
        assert out.device.type == want.type
        if dtype is not None:
            assert out.dtype == dtype
    else:
        assert isinstance(out, np.ndarray), type(out)
        if dtype is not None:
            assert out.dtype == {torch.float64: np.float64, torch.int64: np.int64, torch.bool: np.bool_}[dtype]


# --------------------------------------------------------------------------------------------
# Types on the CPU: numpy in -> numpy out, torch in -> torch out, the same numbers
# --------------------------------------------------------------------------------------------

RNG = np.random.default_rng(0)
LV = RNG.normal(size=40)                       # log-volumes
SIGMA = np.abs(RNG.normal(size=(40, 3))) + 0.1  # singular values
W = RNG.uniform(size=40)                        # weights
Z = RNG.normal(size=(40, 2))                    # proposals
REAL, FAKE = RNG.normal(size=(30, 3)), RNG.normal(size=(25, 3))
PTS, QRS = RNG.normal(size=(20, 2)), 1.5 * RNG.normal(size=(15, 2))
XC = np.vstack([RNG.normal(size=(5, 2)), RNG.normal(4, 0.5, size=(5, 2))])

# name -> (call on the converted inputs, which inputs are converted, dtype of the array result or None for a float)
ARRAY_CASES = {
    "normalize_log_weights": (lambda a: sampling.normalize_log_weights(a[0]), [LV], torch.float64),
    "magnet_weights": (lambda a: sampling.magnet_weights(a[0], a[1]), [LV, 0.5 * LV], torch.float64),
    "polarity_weights": (lambda a: sampling.polarity_weights(a[0], -1.5, top_k=2), [SIGMA], torch.float64),
    "polarity_weights_from_log_volume": (lambda a: sampling.polarity_weights_from_log_volume(a[0], 2.0), [LV],
                                         torch.float64),
    "log_volume_from_singular_values": (lambda a: sampling.log_volume_from_singular_values(a[0], 2), [SIGMA],
                                        torch.float64),
    "resample_indices": (lambda a: sampling.resample_indices(a[0], 7, replace=True, seed=3), [W], torch.int64),
    "resample": (lambda a: sampling.resample(a[0], a[1], 7, replace=False, seed=3), [Z, W], None),  # z's dtype
    "knn_radii": (lambda a: metrics.knn_radii(a[0], 3), [REAL], torch.float64),
    "in_hull.inside": (lambda a: hull.in_hull(a[0], a[1]).inside, [PTS, QRS], torch.bool),
    "in_hull.normals": (lambda a: hull.in_hull(a[0], a[1]).normals, [PTS, QRS], torch.float64),
    "in_hull.offsets": (lambda a: hull.in_hull(a[0], a[1]).offsets, [PTS, QRS], torch.float64),
    "radius_kmeans.labels": (lambda a: clustering.radius_kmeans(a[0], 2, 4.0, method="greedy", seed=0).labels, [XC],
                             torch.int64),
    "radius_kmeans.centers": (lambda a: clustering.radius_kmeans(a[0], 2, 4.0, seed=0).centers, [XC], torch.float64),
    "conflict_graph": (lambda a: clustering.conflict_graph(a[0], 1.0), [XC], torch.bool),
}

SCALAR_CASES = {
    "effective_sample_size": (lambda a: sampling.effective_sample_size(a[0]), [W]),
    "precision_recall": (lambda a: metrics.precision_recall(a[0], a[1], 3), [REAL, FAKE]),
    "density_coverage": (lambda a: metrics.density_coverage(a[0], a[1], 3), [REAL, FAKE]),
    "manifold_metrics": (lambda a: tuple(metrics.manifold_metrics(a[0], a[1], 3).values()), [REAL, FAKE]),
    "frechet_distance": (lambda a: metrics.frechet_distance(a[0], a[1]), [REAL, FAKE]),
    "interpolation_probability": (lambda a: hull.interpolation_probability(a[0], a[1]), [PTS, QRS]),
    "in_hull.fraction_inside": (lambda a: hull.in_hull(a[0], a[1]).fraction_inside, [PTS, QRS]),
    "feasible_radius_bracket": (lambda a: clustering.feasible_radius_bracket(a[0], 2), [XC]),
    "kmeans_cost": (lambda a: clustering.kmeans_cost(a[0], a[1]), [XC, np.arange(10) % 2]),
    "max_half_diameter": (lambda a: clustering.max_half_diameter(a[0], a[1]), [XC, np.arange(10) % 2]),
    "radius_kmeans.cost": (lambda a: clustering.radius_kmeans(a[0], 2, 4.0, seed=0).cost, [XC]),
}


@pytest.mark.parametrize("name", sorted(ARRAY_CASES))
def test_numpy_in_numpy_out_torch_in_torch_out(name):
    call, inputs, dtype = ARRAY_CASES[name]
    out_np = call(inputs)
    _same_type(out_np, inputs[0], dtype=dtype)
    for torch_dtype in (torch.float64, torch.float32):
        t_inputs = [torch.as_tensor(x, dtype=torch_dtype if x.dtype.kind == "f" else None) for x in inputs]
        out_t = call(t_inputs)
        _same_type(out_t, t_inputs[0], dtype=dtype)
        if torch_dtype == torch.float64:
            np.testing.assert_array_equal(_np(out_t), out_np)  # the same numbers, bit for bit


@pytest.mark.parametrize("name", sorted(SCALAR_CASES))
def test_scalar_results_are_python_floats_for_both_types(name):
    call, inputs = SCALAR_CASES[name]
    a = call(inputs)
    b = call([torch.as_tensor(x) for x in inputs])
    for got in (a, b):
        for v in (got if isinstance(got, tuple) else (got,)):
            assert type(v) is float, (name, type(v))
    assert a == b


def test_bfloat16_and_half_are_accepted_where_floats_are():
    for dt in (torch.bfloat16, torch.float16):
        x = torch.as_tensor(PTS).to(dt)
        res = hull.in_hull(x, x[:3])
        assert res.inside.dtype == torch.bool and bool(res.inside.all())
        assert isinstance(metrics.knn_radii(x, 2), torch.Tensor)
        assert isinstance(sampling.normalize_log_weights(torch.as_tensor(LV).to(dt)), torch.Tensor)
        assert clustering.radius_kmeans(torch.as_tensor(XC).to(dt), 2, 4.0, seed=0).labels.dtype == torch.int64


def test_sdp_results_follow_the_input_type():
    X = XC[:6]
    hi = clustering.feasible_radius_bracket(X, 2)[1]
    assert isinstance(clustering.radius_sdp_bound(X, 2, hi).Z, np.ndarray)
    assert isinstance(clustering.radius_sdp_bound(torch.as_tensor(X), 2, hi).Z, torch.Tensor)
    assert isinstance(clustering.paper_sdp(torch.as_tensor(X), 2, hi).b_hat, torch.Tensor)


def test_estimator_accepts_tensors_and_keeps_scikit_learn_types():
    est = clustering.RadiusKMeans(n_clusters=2, method="greedy", random_state=0).fit(torch.as_tensor(XC))
    assert isinstance(est.labels_, np.ndarray)
    np.testing.assert_array_equal(est.labels_, clustering.RadiusKMeans(n_clusters=2, method="greedy",
                                                                       random_state=0).fit(XC).labels_)
    assert isinstance(est.predict(torch.as_tensor(XC)), np.ndarray)


def test_hull_certificates_verify_for_torch_results():
    res = hull.in_hull(torch.as_tensor(PTS), torch.as_tensor(QRS))
    assert res.verify(PTS, QRS) and res.verify(torch.as_tensor(PTS), torch.as_tensor(QRS))
    assert sum(res.stage_counts().values()) == len(QRS)


# --------------------------------------------------------------------------------------------
# One error policy
# --------------------------------------------------------------------------------------------


def test_bad_arguments_raise_parameter_error_in_every_module():
    cases = [
        (lambda: sampling.resample_indices(W, 0, replace=True), "n must be a positive int"),
        (lambda: sampling.polarity_weights_from_log_volume(LV, "1"), "rho must be a finite number"),
        (lambda: metrics.knn_radii(REAL, 2.5), "k must be a positive int"),
        (lambda: hull.in_hull(PTS, QRS, rtol="1e-9"), "rtol must be a finite number"),
        (lambda: clustering.radius_kmeans(XC, 2, 1.0, n_init=True), "n_init must be a positive int"),
        (lambda: clustering.radius_kmeans(XC, 2, 1.0, method="kmeans"), "method must be one of"),
        (lambda: build("transformer"), "unknown zoo model"),
        (lambda: sampling.jacobian(torch.nn.Linear(2, 2), torch.zeros(3, 2), method="fd"), "method must be one of"),
    ]
    for call, match in cases:
        with pytest.raises(ParameterError, match=match) as err:
            call()
        assert isinstance(err.value, ValueError) and isinstance(err.value, TypeError)


def test_a_wrong_device_raises_parameter_error_for_x_and_v():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU())
    with pytest.raises(ParameterError, match="x is on cpu but the model's '0.weight' is on meta"):
        linearize(model.to("meta"), torch.zeros(2, 3))
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU())
    with pytest.raises(ParameterError, match="v must match x's dtype and device"):
        jvp(model, torch.zeros(2, 3), torch.zeros(2, 3, device="meta"))


def test_certificate_error_is_a_value_error():
    assert issubclass(hull.CertificateError, ValueError)
    assert issubclass(clustering.InfeasibleRadiusError, ValueError)


# --------------------------------------------------------------------------------------------
# Every available non-CPU device against the CPU
# --------------------------------------------------------------------------------------------


def _float(dev: str) -> torch.dtype:
    return torch.float32 if dev == "mps" else torch.float64


@on_devices
@pytest.mark.parametrize("name", sorted(ZOO))
@pytest.mark.parametrize("K", [1, 3])
def test_zoo_jvp_on_device_matches_cpu_and_torch_func(dev, name, K):
    exact_float32()  # no TF32 on the GPU: float32 products in full float32, as on the CPU
    model, shape = build(name, seed=0, dtype=torch.float32)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, *shape, generator=g)
    v = torch.randn(4, K, *shape, generator=g) if K > 1 else torch.randn(4, *shape, generator=g)
    y_cpu, jv_cpu = jvp(model, x, v)
    model_d = model.to(dev)
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            y, jv = jvp(model_d, x.to(dev), v.to(dev))
        assert y.device.type == dev and jv.device.type == dev
        scale = jv_cpu.abs().max().item()
        assert (jv.cpu() - jv_cpu).abs().max().item() <= 1e-4 * scale, name
        assert (y.cpu() - y_cpu).abs().max().item() <= 1e-4 * max(y_cpu.abs().max().item(), 1.0), name
    if K == 1:
        _, ref = torch.func.jvp(model_d, (x.to(dev),), (v.to(dev),))
        assert (jv.detach() - ref).abs().max().item() <= 1e-4 * ref.abs().max().item()


@on_devices
def test_jacobian_and_log_volume_on_device_match_cpu_float64(dev):
    exact_float32()
    dt = _float(dev)
    torch.manual_seed(0)
    G = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.LeakyReLU(0.2), torch.nn.Linear(16, 10)).to(dt)
    z = torch.randn(20, 3, dtype=dt)
    J_cpu = sampling.jacobian(G, z)
    lv_cpu = sampling.log_volume(G, z)
    G_d = G.to(dev)
    J = sampling.jacobian(G_d, z.to(dev))
    assert J.device.type == dev
    torch.testing.assert_close(J.cpu(), J_cpu, rtol=1e-5, atol=1e-6)
    lv = sampling.log_volume(G_d, z.to(dev))
    assert lv.dtype == torch.float64 and lv.device.type == (dev if dev != "mps" else "cpu")
    torch.testing.assert_close(lv.cpu(), lv_cpu, rtol=1e-5, atol=1e-6)


@on_devices
def test_weights_and_resampling_stay_on_the_device_with_cpu_numbers(dev):
    lv = torch.as_tensor(LV, dtype=_float(dev))
    w_cpu = sampling.magnet_weights(lv, 0.0)
    w = sampling.magnet_weights(lv.to(dev), 0.0)
    assert w.device.type == (dev if dev != "mps" else "cpu") and w.dtype == torch.float64
    assert torch.equal(w.cpu(), w_cpu)
    p = sampling.polarity_weights_from_log_volume(lv.to(dev), -1.0)
    assert torch.equal(p.cpu(), sampling.polarity_weights_from_log_volume(lv, -1.0))
    idx = sampling.resample_indices(w, 9, replace=True, seed=4)
    assert idx.device == w.device and idx.tolist() == sampling.resample_indices(w_cpu, 9, replace=True, seed=4).tolist()
    z = torch.as_tensor(Z, dtype=_float(dev)).to(dev)
    rows, ridx = sampling.resample(z, w, 9, replace=True, seed=4, return_indices=True)
    assert rows.device.type == dev and ridx.device.type == dev and torch.equal(rows, z[ridx])
    assert sampling.effective_sample_size(w) == sampling.effective_sample_size(w_cpu)


@on_devices
def test_one_vae_epoch_on_device(dev):
    X = torch.rand(64, 64, generator=torch.Generator().manual_seed(0))
    vae = train_vae(X.to(dev), latent=2, epochs=1, seed=0, progress=False, hidden=8)
    assert next(vae.parameters()).device.type == dev
    assert len(vae.loss_history) == 1 and np.isfinite(vae.loss_history[0])
    ref = train_vae(X, latent=2, epochs=1, seed=0, progress=False, hidden=8)
    # the same initial weights; the noise comes from a generator on the device, so losses differ a little
    assert abs(vae.loss_history[0] - ref.loss_history[0]) <= 0.5 * abs(ref.loss_history[0])


@on_devices
def test_hull_metrics_and_clustering_on_device_match_cpu(dev):
    dt = _float(dev)
    P, Q = torch.as_tensor(PTS, dtype=dt), torch.as_tensor(QRS, dtype=dt)
    res_cpu, res = hull.in_hull(P, Q), hull.in_hull(P.to(dev), Q.to(dev))
    assert res.inside.device.type == dev and torch.equal(res.inside.cpu(), res_cpu.inside)
    assert res.verify(P.to(dev), Q.to(dev))
    R, F = torch.as_tensor(REAL, dtype=dt), torch.as_tensor(FAKE, dtype=dt)
    assert metrics.manifold_metrics(R.to(dev), F.to(dev), 3) == metrics.manifold_metrics(R, F, 3)
    radii = metrics.knn_radii(R.to(dev), 3)
    assert radii.device.type == (dev if dev != "mps" else "cpu") and torch.equal(radii.cpu(), metrics.knn_radii(R, 3))
    X = torch.as_tensor(XC, dtype=dt)
    lab = clustering.radius_kmeans(X.to(dev), 2, 4.0, seed=0).labels
    assert lab.device.type == dev and torch.equal(lab.cpu(), clustering.radius_kmeans(X, 2, 4.0, seed=0).labels)
