"""NeuroView: the codes of a ReLU network's units feed one global linear classifier.

A network with ReLU or leaky-ReLU units is a continuous piecewise-affine (CPA) spline: each
unit picks one of its two affine pieces for each input, and the bit ``q_k(x) = 1[z_k(x) > 0]``
of its pre-activation ``z_k`` is the unit's *code* (the vector-quantization code of the spline
view). NeuroView (Barberan, Balestriero and Baraniuk, arXiv:2110.07778) stacks the codes of
every unit into ``phi(x)`` of length ``D`` and classifies with one linear layer,
``logits = V phi(x) + c``; the network's own output layer is not used. Each logit is then an
exact sum of one term per unit, ``V[c, k] q_k(x)``, which is :meth:`NeuroViewClassifier.contributions`.

- :func:`unit_codes`: the codes of every unit (hard bits, soft sigmoid codes, hard codes with
  the sigmoid's gradient, or the raw activations), ordered by layer in forward order and, in a
  layer, by the flattened index of the pre-activation (channel, then position);
  ``pool="channel"`` averages a convolution's codes over positions.
- :func:`unit_layout`: which slice of the code vector belongs to which layer.
- :class:`NeuroViewClassifier`: the wrapped network plus the global head ``.head``, trained end
  to end or fitted post hoc on frozen hard codes (:meth:`~NeuroViewClassifier.fit_posthoc`), with
  the exact decomposition (:meth:`~NeuroViewClassifier.contributions`) and an in-network
  switch-off (:meth:`~NeuroViewClassifier.switch_off`) whose downstream codes are recomputed.

The forward pass is traced with ``torch.fx`` (the tracing of :mod:`helpers.jvp`), so
functional calls (``F.relu``, ``torch.relu``, ``x.relu()``) count as units too, and an in-place
ReLU works. A model with no ReLU/leaky-ReLU unit, or with any other nonlinearity (sigmoid,
tanh, GELU, softmax, ...), raises :class:`~helpers.jvp.UnsupportedLayerError` naming the layer.
Max-pooling also raises: its code is a one-hot argmax per window, not one bit per unit, and
this module reads bits only (use a strided convolution or average pooling).

NeuroView-RNN (Barberan, Alemohammad, Liu, Balestriero and Baraniuk, FAccT 2022,
arXiv:2202.11811) does the same for a recurrent network's hidden states over time:
:class:`NeuroViewRNN` concatenates ``h_1..h_T`` into one linear head, so each logit is an exact
sum over time steps (:meth:`NeuroViewRNN.contributions`); :class:`RNNBaseline` gives the
last-state and mean-pool heads it is compared with, :func:`train_rnn` the shared training
recipe, :func:`load_time_series`, :func:`make_mnist1d` and :func:`planted_events` offline data,
and :func:`step_curves` with :func:`captum_step_scores` the deletion/insertion test of
input-time rankings.

Conventions: the code is strict, ``z > 0`` gives 1 and ``z = 0`` gives 0. A switched-off unit
has code 0 and output 0 (for a leaky ReLU too, whose off piece is otherwise ``a z``).
"""

from __future__ import annotations

import contextlib
import math
import weakref
from typing import NamedTuple

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from helpers._checks import ParameterError, check_int, check_option, check_real
from helpers.jvp import UnsupportedLayerError, _check_inputs, _is_inplace, _model_tensors, _trace, _where

__all__ = ["unit_codes", "unit_layout", "UnitLayer", "NeuroViewClassifier", "train", "UnsupportedLayerError",
           "MODES", "POOLS",
           # NeuroView-RNN
           "NeuroViewRNN", "RNNBaseline", "train_rnn", "SeriesData", "load_time_series", "make_mnist1d",
           "planted_events", "StepCurves", "step_curves", "captum_step_scores", "CELLS", "READOUTS", "NORMS",
           "AEON_SETS"]

#: The code modes of :func:`unit_codes`.
MODES = ("hard", "soft", "ste", "act")
#: The pooling options of :func:`unit_codes` (None: one code per unit and position).
POOLS = (None, "channel")


class UnitLayer(NamedTuple):
    """One layer of units: its place in the code vector and the shape of its pre-activation.

    ``start:stop`` is its slice of the code vector; ``shape`` the pre-activation's shape without
    the batch axis (``(C, H, W)`` for a convolution); ``pooled`` whether the codes were averaged
    over positions (then ``stop - start == shape[0]``).
    """

    name: str
    start: int
    stop: int
    shape: tuple
    pooled: bool


# --------------------------------------------------------------------------------------------
# Which graph nodes are units
# --------------------------------------------------------------------------------------------

_RELU_FUNCS = {F.relu, torch.relu, torch.relu_, F.relu_}
_LEAKY_FUNCS = {F.leaky_relu, F.leaky_relu_}
_RELU_METHODS = {"relu", "relu_"}
_MAXPOOL_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
                    nn.AdaptiveMaxPool3d, nn.MaxUnpool1d, nn.MaxUnpool2d, nn.MaxUnpool3d)
_MAXPOOL_FUNCS = {F.max_pool1d, F.max_pool2d, F.max_pool3d, F.adaptive_max_pool1d, F.adaptive_max_pool2d,
                  F.adaptive_max_pool3d, F.max_pool1d_with_indices, F.max_pool2d_with_indices,
                  F.max_pool3d_with_indices}
# Nonlinearities with no one-bit code: smooth ones, and CPA ones with more than two pieces.
_OTHER_FUNC_NAMES = {"sigmoid", "tanh", "gelu", "silu", "mish", "elu", "selu", "celu", "softplus", "softmax",
                     "log_softmax", "softmin", "exp", "log", "hardtanh", "relu6", "hardswish", "hardsigmoid",
                     "abs", "prelu", "rrelu", "glu", "logsigmoid", "tanhshrink", "softsign", "threshold",
                     "max", "maximum", "amax", "clamp", "clip", "sin", "cos", "erf", "pow", "sqrt", "rsqrt",
                     "normalize", "layer_norm", "group_norm", "sigmoid_", "tanh_", "hardtanh_", "elu_",
                     "clamp_", "abs_", "exp_"}


class _Unit(NamedTuple):
    slope: float          # the off piece's slope: 0 for ReLU
    inplace: bool


_KINDS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _fname(target) -> str:
    return target if isinstance(target, str) else getattr(target, "__name__", str(target))


def _classify(node: fx.Node, gm: fx.GraphModule):
    """A :class:`_Unit` for a ReLU/leaky-ReLU node, None for a node that is not a nonlinearity;
    raises for max-pooling and for every other nonlinearity."""
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        if type(mod) is nn.ReLU:
            return _Unit(0.0, bool(mod.inplace))
        if type(mod) is nn.LeakyReLU:
            return _Unit(float(mod.negative_slope), bool(mod.inplace))
        if isinstance(mod, _MAXPOOL_MODULES):
            raise _maxpool(node, type(mod).__name__)
        if type(mod).__module__ == "torch.nn.modules.activation" or not _is_affine_module(mod):
            raise _no_code(node, type(mod).__name__)
        return None
    if node.op == "call_function":
        if node.target in _RELU_FUNCS:
            return _Unit(0.0, _is_inplace(node, gm))
        if node.target in _LEAKY_FUNCS:
            slope = node.kwargs.get("negative_slope", node.args[1] if len(node.args) > 1 else 0.01)
            return _Unit(float(slope), _is_inplace(node, gm))
        if node.target in _MAXPOOL_FUNCS:
            raise _maxpool(node, _fname(node.target))
        if _fname(node.target) in _OTHER_FUNC_NAMES:
            raise _no_code(node, _fname(node.target))
        return None
    if node.op == "call_method":
        if node.target in _RELU_METHODS:
            return _Unit(0.0, node.target.endswith("_"))
        if node.target in _OTHER_FUNC_NAMES:
            raise _no_code(node, f".{node.target}()")
    return None


def _is_affine_module(mod: nn.Module) -> bool:
    affine = (nn.Linear, nn.Bilinear, nn.Identity, nn.Flatten, nn.Unflatten, nn.modules.conv._ConvNd,
              nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd, nn.AvgPool1d, nn.AvgPool2d,
              nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
              nn.modules.padding._ConstantPadNd, nn.ZeroPad2d, nn.Upsample, nn.PixelShuffle, nn.Embedding)
    return isinstance(mod, affine) or len(list(mod.children())) > 0


def _maxpool(node, what) -> UnsupportedLayerError:
    return UnsupportedLayerError(
        f"{what} at {_where(node)}: a max-pool's code is a one-hot argmax per window, not one bit per unit, "
        "and unit_codes reads one-bit units only (ReLU, leaky ReLU); use a strided convolution or average pooling")


def _no_code(node, what) -> UnsupportedLayerError:
    return UnsupportedLayerError(
        f"{what} at {_where(node)} has no one-bit code: NeuroView's units here are ReLU and leaky-ReLU units "
        "(a two-piece CPA nonlinearity); replace it, or cut the model before it")


def _units(model: nn.Module):
    """The traced model and its unit nodes in forward order (cached with the trace)."""
    modules, tensors = _model_tensors(model)
    trace = _trace(model, modules, tensors)
    kinds = _KINDS.get(trace)
    if kinds is None:
        kinds = {n: k for n in trace.nodes if (k := _classify(n, trace.gm)) is not None}
        if not kinds:
            raise UnsupportedLayerError(
                f"{type(model).__name__} has no ReLU or leaky-ReLU unit: NeuroView needs units with a one-bit code")
        _KINDS[trace] = kinds
    return trace, kinds, tensors


def _unit_name(node: fx.Node) -> str:
    return str(node.target) if node.op == "call_module" else node.name


# --------------------------------------------------------------------------------------------
# The pass that reads (and may force) the codes
# --------------------------------------------------------------------------------------------


class _Reader(fx.Interpreter):
    """Runs the traced model; at each unit records its code and applies a switch-off mask."""

    def __init__(self, gm, kinds, mode, pool, tau, off=None, layout=None):
        super().__init__(gm)
        self.kinds, self.mode, self.pool, self.tau = kinds, mode, pool, tau
        self.off, self.layout = off, layout
        self.feats, self.layers, self.offset = [], [], 0

    def run_node(self, n):
        unit = self.kinds.get(n)
        if unit is None:
            return super().run_node(n)
        with self._set_current_node(n):
            args, kwargs = self.fetch_args_kwargs_from_env(n)
        z = args[0]
        if not isinstance(z, torch.Tensor) or z.dim() < 2:
            raise UnsupportedLayerError(f"the unit at {_where(n)} needs a batched tensor input (B, ...)")
        pooled = self.pool == "channel" and z.dim() > 2
        width = z.shape[1] if pooled else math.prod(z.shape[1:])
        keep = None
        if self.off is not None:
            lo = self.offset
            m = self.off[:, lo:lo + width]                                     # (B or 1, width) bool
            if m.any():
                shape = (m.shape[0], z.shape[1]) + (1,) * (z.dim() - 2) if pooled else (m.shape[0], *z.shape[1:])
                keep = (~m).reshape(shape).to(z.dtype)
        code = self._code(z, unit.slope)
        if keep is not None:
            code = code * keep
            if unit.inplace:
                z.mul_(keep)                        # off units: pre-activation 0, so output 0
            else:
                z = z * keep
                args = (z, *args[1:])
        out = getattr(self, n.op)(n.target, args, kwargs)
        if self.mode == "act":
            code = out.clone() if unit.inplace else out
        feat = code.flatten(2).mean(-1) if pooled else code.flatten(1)
        self.feats.append(feat)
        self.layers.append(UnitLayer(_unit_name(n), self.offset, self.offset + width, tuple(z.shape[1:]), pooled))
        self.offset += width
        return out

    def _code(self, z, slope):
        if self.mode == "act":
            return None
        hard = (z > 0).to(z.dtype)
        if self.mode == "hard":
            return hard
        soft = torch.sigmoid(z / self.tau)
        if self.mode == "soft":
            return soft
        return hard + (soft - soft.detach())        # ste: hard forward, soft gradient


def _check_model_input(model, x, tensors):
    if not isinstance(model, nn.Module):
        raise ParameterError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_inputs(model, x, tensors)  # a floating tensor on the model's device and dtype
    if x.dim() < 2:
        raise ParameterError(f"x must be a batch (B, ...) with at least 2 dimensions, got shape {tuple(x.shape)}")


def _check_mode(mode, pool, tau):
    check_option(mode, "mode", MODES)
    if pool is not None:
        check_option(pool, "pool", ("channel",))
    return check_real(tau, "tau", low=0, low_open=True)


def _read(model, x, mode="hard", pool=None, tau=1.0, off=None):
    if not isinstance(model, nn.Module):
        raise ParameterError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    tau = _check_mode(mode, pool, tau)
    trace, kinds, tensors = _units(model)
    _check_model_input(model, x, tensors)
    reader = _Reader(trace.gm, kinds, mode, pool, tau, off)
    out = reader.run(x)
    return torch.cat(reader.feats, dim=1), reader.layers, out


def unit_codes(model: nn.Module, x: torch.Tensor, *, mode: str = "hard", pool: str | None = None,
               tau: float = 1.0) -> torch.Tensor:
    """The code of every ReLU/leaky-ReLU unit of ``model`` for each input of the batch ``x``.

    Parameters
    ----------
    model
        A network whose nonlinearities are ReLU or leaky ReLU (modules, ``F.relu``,
        ``torch.relu``, ``x.relu()``, in place or not), traceable by ``torch.fx``. Its output
        is computed and discarded. Use ``model.eval()`` when it has batch-norm or dropout.
    x
        A batch, shape ``(B, ...)``, on the model's device and in its dtype.
    mode
        ``"hard"``: the bits ``1[z > 0]``; ``"soft"``: ``sigmoid(z / tau)``; ``"ste"``: the hard
        bits in the forward pass with the gradient of the soft code (straight-through);
        ``"act"``: the units' outputs (the activations).
    pool
        None: one code per unit, i.e. per (channel, position) of a convolution; ``"channel"``:
        a convolution's codes averaged over positions, one per channel (the fraction of
        positions where the channel fires). Dense layers are unaffected.
    tau
        Temperature of the soft and straight-through codes, > 0.

    Returns
    -------
    torch.Tensor
        Shape ``(B, D)``, in ``x``'s dtype, on its device. Units are ordered by layer in forward
        order and, within a layer, by the flattened index of the pre-activation (channel, then
        position). :func:`unit_layout` gives each layer's slice.

    Raises
    ------
    UnsupportedLayerError
        If the model has no ReLU/leaky-ReLU unit, has another nonlinearity (the message names
        the layer), uses max-pooling (one-hot codes are not read here), or cannot be traced.
    ValueError
        (a ``ParameterError``, also a TypeError) If ``mode``, ``pool`` or ``tau`` is invalid, or ``x`` is not a floating batch on the
        model's device and dtype.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1))
    >>> with torch.no_grad():
    ...     _ = net[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
    ...     _ = net[0].bias.zero_()
    >>> unit_codes(net, torch.tensor([[1.0, -2.0]]))[:, :3]
    tensor([[1., 0., 1.]])
    >>> unit_codes(net, torch.zeros(4, 2)).shape
    torch.Size([4, 5])
    """
    return _read(model, x, mode, pool, tau)[0]


def unit_layout(model: nn.Module, x: torch.Tensor, *, pool: str | None = None) -> list[UnitLayer]:
    """Each layer of units of ``model`` with its slice of the code vector of :func:`unit_codes`.

    Parameters
    ----------
    model, x, pool
        As in :func:`unit_codes`; one input (``x[:1]``) is enough.

    Returns
    -------
    list of UnitLayer
        In forward order: ``name`` (the module path or graph node), ``start``, ``stop``,
        ``shape`` (the pre-activation's shape without the batch axis) and ``pooled``.

    Examples
    --------
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 5), nn.ReLU())
    >>> [(l.name, l.start, l.stop, l.shape) for l in unit_layout(net, torch.zeros(1, 1, 8, 8))]
    [('1', 0, 144, (4, 6, 6)), ('4', 144, 149, (5,))]
    >>> [(l.start, l.stop) for l in unit_layout(net, torch.zeros(1, 1, 8, 8), pool="channel")]
    [(0, 4), (4, 9)]
    """
    with torch.no_grad():
        return _read(model, x[:1] if isinstance(x, torch.Tensor) else x, "hard", pool)[1]


# --------------------------------------------------------------------------------------------
# The classifier
# --------------------------------------------------------------------------------------------


class NeuroViewClassifier(nn.Module):
    """A network's unit codes fed to one global linear classifier: ``logits = V phi(x) + c``.

    The wrapped network's own output is discarded; ``.head`` is an ``nn.Linear(D, n_classes)``
    over the codes of all its ``D`` units (weight ``V``, bias ``c``). It trains end to end with
    soft codes, straight-through codes or activations, or post hoc on frozen hard codes with
    :meth:`fit_posthoc`. Hard and straight-through codes make each logit the exact sum
    ``c_c + sum_k V[c, k] q_k(x)`` of :meth:`contributions`.

    Parameters
    ----------
    model
        The network (see :func:`unit_codes`); its parameters are this module's ``.model``.
    n_classes
        Number of classes, >= 2.
    mode
        The codes used in :meth:`forward` while training (``"ste"``, ``"soft"``, ``"act"`` or
        ``"hard"``); in eval mode (``.eval()``) ``"soft"`` and ``"ste"`` use the hard codes, so
        a model is evaluated as the paper's classifier of binary codes.
    pool
        None or ``"channel"`` (see :func:`unit_codes`).
    tau
        Temperature of the soft and straight-through codes; may be changed between epochs
        (annealing) through the attribute ``.tau``.
    example
        One input batch (``X[:1]``) to size the head now; without it the head is created at
        the first forward pass (an ``nn.LazyLinear`` until then).

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> net = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU())
    >>> clf = NeuroViewClassifier(net, 3, example=torch.zeros(1, 2)).double()
    >>> x = torch.randn(5, 2, generator=g, dtype=torch.float64)
    >>> r = clf.eval().contributions(x)
    >>> r.shape, torch.allclose(r.sum(-1) + clf.head.bias, clf(x), atol=1e-12)
    (torch.Size([5, 3, 16]), True)
    """

    def __init__(self, model: nn.Module, n_classes: int, *, mode: str = "ste", pool: str | None = None,
                 tau: float = 1.0, example: torch.Tensor | None = None):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise ParameterError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.n_classes = check_int(n_classes, "n_classes", low=2)
        self.tau = _check_mode(mode, pool, tau)
        self.mode, self.pool = mode, pool
        self.model = model
        self._off = None
        if example is not None:
            D = self.layout(example)[-1].stop
            p = next(model.parameters(), None)
            self.head = nn.Linear(D, self.n_classes, dtype=p.dtype if p is not None else None,
                                  device=p.device if p is not None else None)
        else:
            self.head = nn.LazyLinear(self.n_classes)

    # -- codes -------------------------------------------------------------------------------
    def _mode(self, mode):
        mode = self.mode if mode is None else mode
        if not self.training and mode in ("soft", "ste"):
            return "hard"
        return mode

    def codes(self, x: torch.Tensor, mode: str | None = None) -> torch.Tensor:
        """The codes ``phi(x)`` the head reads, shape ``(B, D)``, with any switch-off applied.

        ``mode`` defaults to the classifier's (hard in eval mode for ``"soft"``/``"ste"``).
        """
        mode = self._mode(mode)
        off = self._off
        if off is not None and off.shape[0] not in (1, x.shape[0]):
            raise ParameterError(f"switch_off was given a mask for {off.shape[0]} inputs, got a batch of {x.shape[0]}")
        return _read(self.model, x, mode, self.pool, self.tau, off)[0]

    def layout(self, x: torch.Tensor) -> list[UnitLayer]:
        """:func:`unit_layout` of the wrapped network with this classifier's pooling."""
        return unit_layout(self.model, x, pool=self.pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The logits ``V phi(x) + c``, shape ``(B, n_classes)``."""
        return self.head(self.codes(x))

    # -- reading the decision -------------------------------------------------------------------
    def contributions(self, x: torch.Tensor) -> torch.Tensor:
        """Each unit's term of each logit, ``r[b, c, k] = V[c, k] phi_k(x_b)``, shape ``(B, C, D)``.

        ``r.sum(-1) + head.bias`` equals :meth:`forward`'s logits (up to rounding).
        """
        q = self.codes(x)
        return q[:, None, :] * self.head.weight[None]

    @contextlib.contextmanager
    def switch_off(self, units):
        """Inside the ``with`` block, the listed units are off in the network itself.

        A switched-off unit's output and code are 0, so every later layer, and the codes of its
        units, are recomputed: logits inside the block give the unit's *total* effect, while its
        weight ``V[:, k]`` is only its direct term.

        Parameters
        ----------
        units
            Indices into the code vector (a sequence or 1-D integer tensor), the same for every
            input; or a boolean mask of shape ``(D,)``, or ``(B, D)`` for one set per input.
            With ``pool="channel"`` an index names a whole channel.
        """
        D = self.head.in_features if not isinstance(self.head, nn.LazyLinear) else None
        mask = self._mask(units, D)
        previous, self._off = self._off, mask
        try:
            yield self
        finally:
            self._off = previous

    def _mask(self, units, D):
        p = next(self.model.parameters(), None)
        device = p.device if p is not None else None
        if isinstance(units, torch.Tensor) and units.dtype == torch.bool:
            m = units.to(device)
            if m.dim() == 1:
                m = m[None]
            if m.dim() != 2 or (D is not None and m.shape[1] != D):
                raise ParameterError(f"a boolean switch-off mask has shape (D,) or (B, D) with D = {D}, "
                                     f"got {tuple(units.shape)}")
            return m
        idx = torch.as_tensor(units if not isinstance(units, torch.Tensor) else units.cpu())
        if idx.dim() == 0:
            idx = idx[None]
        if idx.dim() != 1 or (idx.numel() and (idx.is_floating_point() or idx.dtype == torch.bool)):
            raise ParameterError(f"units must be integer indices (1-D) or a boolean mask, got {units!r}")
        if D is None:
            raise ParameterError("size the head first (pass example= or run one forward pass) before switch_off")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= D):
            raise ParameterError(f"unit indices must lie in [0, {D - 1}], got {units!r}")
        m = torch.zeros(1, D, dtype=torch.bool)
        m[0, idx.long()] = True
        return m.to(device)

    # -- post hoc fit ---------------------------------------------------------------------------
    def fit_posthoc(self, X: torch.Tensor, y, *, C: float = 1.0, l1: bool = False, max_iter: int = 3000,
                    tol: float = 1e-4, batch_size: int = 1024):
        """Fit the head on the frozen network's hard codes by multinomial logistic regression.

        Parameters
        ----------
        X
            Training inputs, shape ``(N, ...)``.
        y
            Integer labels in ``0..n_classes-1`` (numpy or torch), each class present.
        C
            Inverse regularization strength of scikit-learn's ``LogisticRegression``.
        l1
            L1 penalty (sparse unit/class maps, solver ``saga``) instead of L2 (``lbfgs``).
        max_iter, tol
            Solver iterations (thousands of binary features need a few thousand) and
            stopping tolerance, as in scikit-learn.
        batch_size
            Inputs per forward pass when the codes are read.

        Returns
        -------
        NeuroViewClassifier
            ``self``, with ``.head`` holding the fitted weights.

        Raises
        ------
        ValueError
            (a ``ParameterError``, also a TypeError) If the labels are not integers in range, a class is missing, or ``C`` is not
            positive.
        """
        from sklearn.linear_model import LogisticRegression

        C = check_real(C, "C", low=0, low_open=True)
        max_iter = check_int(max_iter, "max_iter", low=1)
        tol = check_real(tol, "tol", low=0, low_open=True)
        y_np = np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else y)
        if y_np.ndim != 1 or not np.issubdtype(y_np.dtype, np.integer):
            raise ParameterError(f"y must be 1-D integer labels, got dtype {y_np.dtype} and shape {y_np.shape}")
        if not isinstance(X, torch.Tensor) or len(X) != len(y_np):
            raise ParameterError("X must be a torch.Tensor with one row per label")
        present = np.unique(y_np)
        if present.min() < 0 or present.max() >= self.n_classes or len(present) != self.n_classes:
            raise ParameterError(f"y must hold every class 0..{self.n_classes - 1}, got classes {present.tolist()}")
        was = self.training
        self.eval()
        with torch.no_grad():
            Q = torch.cat([_read(self.model, X[i:i + batch_size], "hard", self.pool)[0]
                           for i in range(0, len(X), batch_size)])
        self.train(was)
        lr = LogisticRegression(C=C, l1_ratio=1.0 if l1 else 0.0, solver="saga" if l1 else "lbfgs",
                                max_iter=max_iter, tol=tol)
        lr.fit(Q.cpu().double().numpy(), y_np)
        W, b = lr.coef_, lr.intercept_
        if W.shape[0] == 1:                             # two classes: sklearn keeps one row
            W, b = np.vstack([-W / 2, W / 2]), np.r_[-b / 2, b / 2]
        if isinstance(self.head, nn.LazyLinear):
            self.head = nn.Linear(Q.shape[1], self.n_classes, dtype=Q.dtype, device=Q.device)
        with torch.no_grad():
            self.head.weight.copy_(torch.as_tensor(W, dtype=self.head.weight.dtype))
            self.head.bias.copy_(torch.as_tensor(b, dtype=self.head.bias.dtype))
        return self


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def train(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, epochs: int = 40, lr: float = 3e-3,
          batch_size: int = 64, weight_decay: float = 0.0, anneal: tuple[float, float] | None = None,
          seed: int | None = None, threads: int | None = 1) -> nn.Module:
    """Train a classifier (a :class:`NeuroViewClassifier` or any network) with Adam and cross-entropy.

    Parameters
    ----------
    model
        Maps ``X`` to logits ``(N, n_classes)``; trained in place and returned in eval mode.
    X, y
        Inputs ``(N, ...)`` and integer labels ``(N,)``, on the model's device.
    epochs, lr, batch_size, weight_decay
        Passes over the data, Adam's step size and weight decay, mini-batch size.
    anneal
        ``(tau_start, tau_end)``: for a :class:`NeuroViewClassifier`, the temperature of its
        soft or straight-through codes goes geometrically from ``tau_start`` to ``tau_end``
        over the epochs; None keeps ``model.tau``.
    seed
        Seed of the mini-batch order (drawn on the CPU); None: the next draw of numpy's
        global generator (``helpers._checks.resolve_seed``). Weights are initialised by
        whoever built the model.
    threads
        torch intra-op threads while training on the CPU (restored afterwards); tiny models
        train fastest on one.

    Returns
    -------
    torch.nn.Module
        ``model``, in eval mode.

    Examples
    --------
    >>> torch.manual_seed(0) is not None
    True
    >>> X = torch.rand(200, 2) * 2 - 1
    >>> y = (X[:, 0] * X[:, 1] > 0).long()
    >>> body = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU())
    >>> clf = train(NeuroViewClassifier(body, 2, example=X[:1]), X, y, epochs=60, lr=1e-2, seed=0)
    >>> bool((clf(X).argmax(1) == y).float().mean() > 0.9)
    True
    """
    if anneal is not None:
        t0, t1 = (check_real(t, "anneal", low=0, low_open=True) for t in anneal)
    _check_training(model, X, y)
    if isinstance(getattr(model, "head", None), nn.LazyLinear):
        with torch.no_grad():
            model(X[:1])

    def before_epoch(epoch):
        if anneal is not None and isinstance(model, NeuroViewClassifier):
            model.tau = t0 * (t1 / t0) ** (epoch / max(epochs - 1, 1))

    return _fit(model, lambda idx: model(X[idx]), y, epochs=epochs, lr=lr,
                batch_size=batch_size, weight_decay=weight_decay, seed=seed, threads=threads,
                before_epoch=before_epoch)


def _check_training(model, X, y) -> None:
    if not isinstance(model, nn.Module):
        raise ParameterError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(X, torch.Tensor) or not isinstance(y, torch.Tensor) or len(X) != len(y) or y.dim() != 1:
        raise ParameterError("X and y must be torch tensors with one label per row of X")


def _fit(model, logits_of, y, *, epochs, lr, batch_size, weight_decay, seed, threads, clip=None,
         before_epoch=None) -> nn.Module:
    """The one training loop of :func:`train` and :func:`train_rnn`: Adam on cross-entropy over
    shuffled mini-batches (``logits_of(idx)`` gives a batch's logits), optional gradient-norm
    clipping, on ``threads`` CPU threads."""
    from helpers._checks import resolve_seed

    epochs = check_int(epochs, "epochs", low=1)
    batch_size = check_int(batch_size, "batch_size", low=1)
    lr = check_real(lr, "lr", low=0, low_open=True)
    weight_decay = check_real(weight_decay, "weight_decay", low=0)
    clip = check_real(clip, "clip", low=0, low_open=True, none_ok=True)
    check_int(threads, "threads", low=1, none_ok=True)
    gen = torch.Generator().manual_seed(resolve_seed(seed))
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    saved = torch.get_num_threads()
    if threads is not None and y.device.type == "cpu":
        torch.set_num_threads(threads)
    try:
        model.train()
        for epoch in range(epochs):
            if before_epoch is not None:
                before_epoch(epoch)
            order = torch.randperm(len(y), generator=gen).to(y.device)
            for i in range(0, len(y), batch_size):
                idx = order[i:i + batch_size]
                opt.zero_grad()
                F.cross_entropy(logits_of(idx), y[idx]).backward()
                if clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), clip)
                opt.step()
    finally:
        torch.set_num_threads(saved)
    return model.eval()


# --------------------------------------------------------------------------------------------
# NeuroView-RNN: every hidden state of a recurrent network feeds one global linear classifier
# --------------------------------------------------------------------------------------------

#: The recurrent cells of :class:`NeuroViewRNN` and :class:`RNNBaseline`.
CELLS = ("rnn", "gru", "lstm")
#: The read-outs of :class:`RNNBaseline`.
READOUTS = ("last", "mean")
#: The norms of :meth:`NeuroViewRNN.time_importance`.
NORMS = ("l2", "l1")
#: The data sets of :func:`load_time_series` (aeon's bundled copies; nothing is downloaded).
AEON_SETS = ("gunpoint", "japanese_vowels", "basic_motions")


def _make_cell(cell, input_size, hidden_size, num_layers):
    check_option(cell, "cell", CELLS)
    input_size = check_int(input_size, "input_size", low=1)
    hidden_size = check_int(hidden_size, "hidden_size", low=1)
    num_layers = check_int(num_layers, "num_layers", low=1)
    kind = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell]
    return kind(input_size, hidden_size, num_layers=num_layers, batch_first=True)


def _check_sequences(x, lengths, seq_len, input_size, device):
    """Validate a padded batch ``(B, T, input_size)`` and its lengths; return int64 lengths."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 3:
        raise ParameterError("x must be a floating torch tensor of shape (B, T, input_size), got "
                             f"{type(x).__name__} {tuple(x.shape) if isinstance(x, torch.Tensor) else ''}")
    B, T, d = x.shape
    if d != input_size:
        raise ParameterError(f"x has {d} channels (last axis), the model was built for input_size={input_size}")
    if seq_len is not None and T > seq_len:
        raise ParameterError(f"x has T = {T} time steps, more than the model's seq_len = {seq_len}: "
                             "the head has no block for them; crop, resample, or build a longer model")
    if T < 1:
        raise ParameterError("x must hold at least one time step")
    if x.device != device:
        raise ParameterError(f"x is on {x.device}, the model on {device}")
    if lengths is None:
        return torch.full((B,), T, dtype=torch.long, device=x.device)
    if not isinstance(lengths, torch.Tensor):
        lengths = torch.as_tensor(np.asarray(lengths))
    if lengths.dim() != 1 or len(lengths) != B or lengths.is_floating_point() or lengths.dtype == torch.bool:
        raise ParameterError(f"lengths must be B = {B} integers, got {tuple(lengths.shape)} of {lengths.dtype}")
    lengths = lengths.to(device=x.device, dtype=torch.long)
    if B and (int(lengths.min()) < 1 or int(lengths.max()) > T):
        raise ParameterError(f"lengths must lie in [1, T] = [1, {T}], got min {int(lengths.min())} "
                             f"and max {int(lengths.max())}")
    return lengths


class NeuroViewRNN(nn.Module):
    """NeuroView-RNN: the hidden states of all time steps feed one global linear classifier.

    A recurrent cell maps ``x_1..x_T`` to hidden states ``h_1..h_T`` (the top layer's; for an
    LSTM ``h_t``, not the cell state). The states are concatenated, ``z = [h_1; ...; h_T]``,
    and ``.head``, an ``nn.Linear(seq_len * hidden_size, n_classes)`` with weight
    ``W = [W_1 ... W_T]`` (one block ``W_t`` of shape ``(n_classes, hidden_size)`` per step),
    gives ``logits = W z + b = b + sum_t W_t h_t``. Each logit is the exact sum over time of
    the contributions ``a[c, t] = <W_{c,t}, h_t>`` (:meth:`contributions`).

    Variable lengths: sequences are padded at the end; steps at or after a sequence's length
    are masked to 0, so they contribute exactly 0, and (the cell being causal) the states
    before the length do not see the padding. The head is initialised to zero, so the blocks
    of steps that no training sequence reaches get zero gradient and stay exactly 0.

    Parameters
    ----------
    cell
        ``"rnn"`` (tanh), ``"gru"`` or ``"lstm"``.
    input_size, hidden_size
        Channels of the input and size of the hidden state.
    seq_len
        The longest sequence the head has blocks for (``T_max``).
    n_classes
        Number of classes, >= 2.
    num_layers
        Stacked layers of the cell; the head reads the top layer.

    Examples
    --------
    >>> torch.manual_seed(0) is not None
    True
    >>> m = NeuroViewRNN("gru", 2, 4, seq_len=6, n_classes=3).double()
    >>> with torch.no_grad():
    ...     _ = m.head.weight.normal_()
    >>> x = torch.randn(5, 6, 2, dtype=torch.float64)
    >>> a = m.contributions(x, lengths=torch.tensor([6, 6, 3, 1, 4]))
    >>> a.shape, bool(torch.allclose(a.sum(-1) + m.head.bias, m(x, torch.tensor([6, 6, 3, 1, 4]))))
    (torch.Size([5, 3, 6]), True)
    >>> float(a[3, :, 1:].abs().max().detach())     # steps after a length contribute 0
    0.0
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, seq_len: int, n_classes: int, *,
                 num_layers: int = 1):
        super().__init__()
        self.rnn = _make_cell(cell, input_size, hidden_size, num_layers)
        self.cell, self.input_size, self.hidden_size = cell, int(input_size), int(hidden_size)
        self.seq_len = check_int(seq_len, "seq_len", low=1)
        self.n_classes = check_int(n_classes, "n_classes", low=2)
        self.head = nn.Linear(self.seq_len * self.hidden_size, self.n_classes)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def _device(self):
        return self.head.weight.device

    def states(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """The masked hidden states, shape ``(B, seq_len, hidden_size)``: ``h_t`` for ``t <
        length``, exactly 0 at or after a sequence's length and beyond ``x``'s ``T``."""
        lengths = _check_sequences(x, lengths, self.seq_len, self.input_size, self._device())
        h, _ = self.rnn(x)                                              # (B, T, H)
        T = x.shape[1]
        valid = torch.arange(T, device=x.device)[None, :] < lengths[:, None]
        h = h * valid[..., None].to(h.dtype)
        if T < self.seq_len:
            h = F.pad(h, (0, 0, 0, self.seq_len - T))
        return h

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """The logits ``b + sum_t W_t h_t``, shape ``(B, n_classes)``; ``x`` is ``(B, T,
        input_size)`` with ``T <= seq_len``, ``lengths`` (optional) in ``[1, T]``."""
        return self.head(self.states(x, lengths).flatten(1))

    def blocks(self) -> torch.Tensor:
        """The head's weight as blocks, ``W[c, t, :] = W_{c,t}``, shape ``(n_classes, seq_len,
        hidden_size)`` (a view)."""
        return self.head.weight.view(self.n_classes, self.seq_len, self.hidden_size)

    def time_importance(self, norm: str = "l2") -> torch.Tensor:
        """The input-independent importance of each time step for each class, ``||W_{c,t}||``,
        shape ``(n_classes, seq_len)``; ``norm`` is ``"l2"`` or ``"l1"`` over the hidden units."""
        check_option(norm, "norm", NORMS)
        return self.blocks().detach().norm(p=2 if norm == "l2" else 1, dim=-1)

    def contributions(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Each time step's term of each logit, ``a[b, c, t] = <W_{c,t}, h_t(x_b)>``, shape
        ``(B, n_classes, seq_len)``; ``a.sum(-1) + head.bias`` equals :meth:`forward`."""
        h = self.states(x, lengths)
        return torch.einsum("bth,cth->bct", h, self.blocks())


class RNNBaseline(nn.Module):
    """The standard heads NeuroView-RNN is compared with: a linear layer on the last valid
    hidden state (``readout="last"``) or on the mean of the valid states (``"mean"``).

    Parameters are those of :class:`NeuroViewRNN` (no ``seq_len``: the head does not depend
    on the length), plus ``readout``. ``forward(x, lengths=None)`` gives ``(B, n_classes)``.

    Examples
    --------
    >>> torch.manual_seed(0) is not None
    True
    >>> m = RNNBaseline("lstm", 3, 8, 4, readout="last")
    >>> x = torch.randn(2, 7, 3)
    >>> torch.allclose(m(x, torch.tensor([7, 4])), m(x[:, :4], torch.tensor([7, 4]).clamp(max=4)))
    False
    >>> torch.allclose(m(x, torch.tensor([4, 4])), m(x[:, :4]), atol=1e-6)
    True
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, n_classes: int, *,
                 readout: str = "last", num_layers: int = 1):
        super().__init__()
        self.rnn = _make_cell(cell, input_size, hidden_size, num_layers)
        self.readout = check_option(readout, "readout", READOUTS)
        self.cell, self.input_size, self.hidden_size = cell, int(input_size), int(hidden_size)
        self.n_classes = check_int(n_classes, "n_classes", low=2)
        self.head = nn.Linear(self.hidden_size, self.n_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        lengths = _check_sequences(x, lengths, None, self.input_size, self.head.weight.device)
        h, _ = self.rnn(x)
        if self.readout == "last":
            feat = h[torch.arange(len(x), device=x.device), lengths - 1]
        else:
            valid = (torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]).to(h.dtype)
            feat = (h * valid[..., None]).sum(1) / lengths[:, None].to(h.dtype)
        return self.head(feat)


def train_rnn(model: nn.Module, X: torch.Tensor, y: torch.Tensor, lengths: torch.Tensor | None = None, *,
              epochs: int = 60, lr: float = 3e-3, batch_size: int = 64, weight_decay: float = 1e-4,
              clip: float | None = 5.0, seed: int | None = None, threads: int | None = 1) -> nn.Module:
    """Train a sequence classifier ``model(x, lengths) -> logits`` with Adam and cross-entropy.

    The one recipe of the chapter, shared by every head: Adam (``lr``, ``weight_decay``),
    gradient-norm clipping at ``clip`` (None: none), shuffled mini-batches.

    Parameters
    ----------
    model
        :class:`NeuroViewRNN`, :class:`RNNBaseline` or any module called as ``model(x, lengths)``.
    X, y, lengths
        Padded inputs ``(N, T, d)``, integer labels ``(N,)``, lengths ``(N,)`` or None (all
        ``T``), on the model's device.
    epochs, lr, batch_size, weight_decay, clip
        The optimiser's settings.
    seed
        Seed of the mini-batch order (drawn on the CPU); None: the next draw of numpy's global
        generator. The weights are initialised by whoever built the model.
    threads
        torch intra-op threads while training on the CPU (restored afterwards).

    Returns
    -------
    torch.nn.Module
        ``model``, trained in place, in eval mode.

    Examples
    --------
    >>> torch.manual_seed(0) is not None
    True
    >>> X = torch.randn(64, 5, 1)
    >>> y = (X[:, 2, 0] > 0).long()
    >>> m = train_rnn(NeuroViewRNN("gru", 1, 8, 5, 2), X, y, epochs=40, lr=1e-2, seed=0)
    >>> bool((m(X).argmax(1) == y).float().mean() > 0.9)
    True
    """
    _check_training(model, X, y)
    if lengths is None:
        lengths = torch.full((len(X),), X.shape[1], dtype=torch.long, device=X.device)
    return _fit(model, lambda idx: model(X[idx], lengths[idx]), y, epochs=epochs, lr=lr,
                batch_size=batch_size, weight_decay=weight_decay, seed=seed, threads=threads,
                clip=clip)


# --------------------------------------------------------------------------------------------
# Time-series data, offline
# --------------------------------------------------------------------------------------------


class SeriesData(NamedTuple):
    """A time-series classification set, padded at the end with zeros.

    ``X_*`` are float32 ``(N, T, channels)`` (standardised per channel with the training set's
    mean and standard deviation over valid steps), ``y_*`` int64 labels ``0..C-1``, ``len_*``
    int64 lengths; ``classes`` names the labels.
    """

    name: str
    X_train: torch.Tensor
    y_train: torch.Tensor
    len_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    len_test: torch.Tensor
    classes: tuple

    @property
    def seq_len(self) -> int:
        return max(self.X_train.shape[1], self.X_test.shape[1])

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return self.X_train.shape[2]


def _pad(seqs, T):
    """A list of (T_i, d) arrays as one zero-padded (N, T, d) array and the lengths."""
    out = np.zeros((len(seqs), T, seqs[0].shape[1]))
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out, np.array([len(s) for s in seqs])


def _series_data(name, tr, te, classes, standardize=True):
    (Xtr, ltr, ytr), (Xte, lte, yte) = tr, te
    if standardize:
        valid = np.arange(Xtr.shape[1])[None, :] < ltr[:, None]
        mu, sd = Xtr[valid].mean(0), Xtr[valid].std(0) + 1e-8
        Xtr = np.where(valid[..., None], (Xtr - mu) / sd, 0.0)
        vte = np.arange(Xte.shape[1])[None, :] < lte[:, None]
        Xte = np.where(vte[..., None], (Xte - mu) / sd, 0.0)
    T = max(Xtr.shape[1], Xte.shape[1])
    Xtr, Xte = (np.pad(a, ((0, 0), (0, T - a.shape[1]), (0, 0))) for a in (Xtr, Xte))
    f, i = torch.float32, torch.long
    return SeriesData(name, torch.as_tensor(Xtr, dtype=f), torch.as_tensor(ytr, dtype=i), torch.as_tensor(ltr, dtype=i),
                      torch.as_tensor(Xte, dtype=f), torch.as_tensor(yte, dtype=i), torch.as_tensor(lte, dtype=i),
                      tuple(classes))


def load_time_series(name: str, *, downsample: int = 1, standardize: bool = True) -> SeriesData:
    """One of aeon's bundled classification sets, as padded torch tensors; no download.

    Parameters
    ----------
    name
        ``"gunpoint"`` (1 channel, length 150, 2 classes, 50 train / 150 test),
        ``"japanese_vowels"`` (12 channels, variable length 7-29, 9 classes, 270 / 370) or
        ``"basic_motions"`` (6 channels, length 100, 4 classes, 40 / 40).
    downsample
        Average non-overlapping windows of this many steps (the lengths are divided and
        rounded up); 1 keeps the series.
    standardize
        Standardise each channel with the training set's statistics over valid steps.

    Returns
    -------
    SeriesData

    Examples
    --------
    >>> d = load_time_series("gunpoint", downsample=3)
    >>> tuple(d.X_train.shape), tuple(d.X_test.shape), d.n_classes
    ((50, 50, 1), (150, 50, 1), 2)
    """
    check_option(name, "name", AEON_SETS)
    k = check_int(downsample, "downsample", low=1)
    from aeon.datasets import load_basic_motions, load_gunpoint, load_japanese_vowels

    loader = {"gunpoint": load_gunpoint, "japanese_vowels": load_japanese_vowels,
              "basic_motions": load_basic_motions}[name]
    parts, labels = [], []
    for split in ("train", "test"):
        X, y = loader(split=split)
        seqs = [np.asarray(s, dtype=float).T for s in X]                   # (T_i, channels)
        if k > 1:
            seqs = [np.stack([s[j:j + k].mean(0) for j in range(0, len(s), k)]) for s in seqs]
        parts.append(seqs)
        labels.append(np.asarray(y))
    classes = sorted(set(labels[0].tolist()) | set(labels[1].tolist()))
    T = max(len(s) for p in parts for s in p)
    out = []
    for seqs, y in zip(parts, labels):
        Xp, lens = _pad(seqs, T)
        out.append((Xp, lens, np.array([classes.index(v) for v in y])))
    return _series_data(name, out[0], out[1], classes, standardize)


def _mnist1d_templates():
    # the ten templates of mnist1d (greydanus/mnist1d, mnist1d/data.py, get_templates)
    d = np.asarray([[5, 6, 6.5, 6.75, 7, 7, 7, 7, 6.75, 6.5, 6, 5],
                    [5, 3, 3, 3.4, 3.8, 4.2, 4.6, 5, 5.4, 5.8, 5, 5],
                    [5, 6, 6.5, 6.5, 6, 5.25, 4.75, 4, 3.5, 3.5, 4, 5],
                    [5, 6, 6.5, 6.5, 6, 5, 5, 6, 6.5, 6.5, 6, 5],
                    [5, 4.4, 3.8, 3.2, 2.6, 2.6, 5, 5, 5, 5, 5, 5],
                    [5, 3, 3, 3, 3, 5, 6, 6.5, 6.5, 6, 4.5, 5],
                    [5, 4, 3.5, 3.25, 3, 3, 3, 3, 3.25, 3.5, 4, 5],
                    [5, 7, 7, 6.6, 6.2, 5.8, 5.4, 5, 4.6, 4.2, 5, 5],
                    [5, 4, 3.5, 3.5, 4, 5, 5, 4, 3.5, 3.5, 4, 5],
                    [5, 4, 3.5, 3.5, 4, 5, 5, 5, 5, 4.7, 4.3, 5]], dtype=float)
    d -= d.mean(1, keepdims=True)
    d /= d.std(1, keepdims=True)
    d -= d[:, :1]
    return d / 6.0


def make_mnist1d(n_train: int = 4000, n_test: int = 1000, *, seed: int | None = None) -> SeriesData:
    """MNIST-1D generated in process, from the published recipe (no ``mnist1d`` package needed).

    The recipe of Greydanus's ``mnist1d`` (``mnist1d/data.py``, ``get_templates`` and
    ``make_dataset``; ``mnist1d/transform.py``, ``transform``) with its default arguments:
    each of ten 12-point templates is padded with 36-60 zeros, stretched to 72 points, scaled
    by a factor in [0.8, 1.2], rotated by up to 47 steps, given smooth noise (scale 0.25,
    Gaussian filter of width 2) where it is zero and white noise (scale 0.02) everywhere,
    sheared (scale 0.75), and resampled to 40 points; the set is standardised by its global
    mean and standard deviation. The draws come from a numpy Generator seeded with ``seed``,
    not from the package's global ``np.random.seed(42)``, so the series differ from the
    package's pickled copy while following the same distribution.

    Parameters
    ----------
    n_train, n_test
        Sizes of the two splits (classes balanced up to rounding, order shuffled).
    seed
        Seed of the generator; None: the next draw of numpy's global generator.

    Returns
    -------
    SeriesData
        One channel, length 40, 10 classes, all lengths 40 (global standardisation only).

    Examples
    --------
    >>> d = make_mnist1d(100, 50, seed=0)
    >>> tuple(d.X_train.shape), tuple(d.X_test.shape), int(d.y_train.max())
    ((100, 40, 1), (50, 40, 1), 9)
    """
    from scipy.ndimage import gaussian_filter

    from helpers._checks import rng as make_rng

    n_train = check_int(n_train, "n_train", low=1)
    n_test = check_int(n_test, "n_test", low=1)
    g = make_rng(seed)
    tmpl = _mnist1d_templates()
    n = n_train + n_test
    ys = np.arange(n) % 10

    def interp(x, N):
        return np.interp(np.linspace(0, 1, N), np.linspace(0, 1, len(x)), x)

    xs = []
    for y in ys:
        x = tmpl[y] + 1e-8
        p = 36 + int(g.random() * 25)                                    # pad
        x = interp(np.concatenate([x, np.zeros(p)]), 72)                 # dilate
        x = x * (1 + 0.4 * (g.random() - 0.5))                           # scale
        k = int(g.integers(48))                                          # translate
        x = np.concatenate([x[-k:], x[:-k]]) if k else x
        mask = x != 0
        x = mask * x + (1 - mask) * gaussian_filter(0.25 * g.standard_normal(72), 2)
        x = x + 0.02 * g.standard_normal(72)
        x = x - 0.75 * (g.random() - 0.5) * np.linspace(-0.5, 0.5, 72)   # shear
        xs.append(interp(x, 40))
    perm = g.permutation(n)
    X, Y = np.stack(xs)[perm], ys[perm]
    X = (X - X.mean()) / X.std()
    X = X[..., None]
    lens = np.full(n, 40)
    tr = (X[:n_train], lens[:n_train], Y[:n_train])
    te = (X[n_train:], lens[n_train:], Y[n_train:])
    return _series_data("mnist1d", tr, te, list(range(10)), standardize=False)


def planted_events(n_train: int = 600, n_test: int = 300, *, seq_len: int = 30, event_step: int = 20,
                   n_classes: int = 3, noise: float = 0.5, seed: int | None = None) -> SeriesData:
    """A planted-event set: the class is written into the series at one known step only.

    Every series is white noise (standard deviation ``noise``) in one channel; at step
    ``event_step`` the class ``c`` adds a pulse of height ``2 c - (n_classes - 1)`` (for two
    classes, -1 and +1), and nothing else depends on the class. Before ``event_step`` a causal
    network's hidden states carry no information about the class.

    Parameters
    ----------
    n_train, n_test
        Sizes of the two splits (classes drawn uniformly).
    seq_len, event_step
        Length of every series, and the step (0-based, ``< seq_len``) of the event.
    n_classes
        Number of classes, >= 2.
    noise
        Standard deviation of the background noise (> 0).
    seed
        Seed; None: the next draw of numpy's global generator.

    Returns
    -------
    SeriesData
        Not standardised (the pulse heights are the class's signature).

    Examples
    --------
    >>> d = planted_events(20, 10, seq_len=8, event_step=5, seed=0)
    >>> tuple(d.X_train.shape), d.n_classes
    ((20, 8, 1), 3)
    """
    from helpers._checks import rng as make_rng

    n_train = check_int(n_train, "n_train", low=1)
    n_test = check_int(n_test, "n_test", low=1)
    seq_len = check_int(seq_len, "seq_len", low=1)
    event_step = check_int(event_step, "event_step", low=0, high=seq_len - 1)
    n_classes = check_int(n_classes, "n_classes", low=2)
    noise = check_real(noise, "noise", low=0, low_open=True)
    g = make_rng(seed)
    splits = []
    for n in (n_train, n_test):
        y = g.integers(n_classes, size=n)
        X = noise * g.standard_normal((n, seq_len, 1))
        X[:, event_step, 0] += 2.0 * y - (n_classes - 1)
        splits.append((X, np.full(n, seq_len), y))
    return _series_data("planted", splits[0], splits[1], list(range(n_classes)), standardize=False)


# --------------------------------------------------------------------------------------------
# Faithfulness: deletion and insertion of input time steps, and Captum's baselines
# --------------------------------------------------------------------------------------------


class StepCurves(NamedTuple):
    """Deletion and insertion curves of :func:`step_curves`.

    ``ks`` the numbers of steps removed or restored; ``deletion`` and ``insertion`` of shape
    ``(len(ks), B)``; ``deletion_area`` and ``insertion_area`` of shape ``(B,)``, each the
    mean of its curve over ``ks`` (the area under the curve, divided by its width, on an
    even grid).
    """

    ks: tuple
    deletion: torch.Tensor
    insertion: torch.Tensor
    deletion_area: torch.Tensor
    insertion_area: torch.Tensor


def step_curves(model, x: torch.Tensor, scores: torch.Tensor, ks, *, target: torch.Tensor,
                lengths: torch.Tensor | None = None, baseline: float = 0.0,
                output: str = "prob") -> StepCurves:
    """Delete (and insert) each sequence's top-scored time steps and follow the target's output.

    Deletion sets the ``k`` steps with the largest ``scores`` (all channels) to ``baseline``;
    insertion starts from a series that is ``baseline`` at every valid step and restores those
    ``k`` steps. Steps at or after a sequence's length are never chosen; a ``k`` beyond the
    length removes (restores) every valid step.

    Parameters
    ----------
    model
        Called as ``model(x, lengths)``, returns logits ``(B, C)``.
    x
        Padded inputs ``(B, T, d)``.
    scores
        ``(B, T)``: larger means "more important"; ties are broken by the earlier step.
    ks
        Increasing step counts, e.g. ``range(0, T + 1, 4)``.
    target
        ``(B,)`` class whose output is followed (usually the intact model's prediction).
    lengths
        ``(B,)`` or None (all ``T``).
    baseline
        The value a deleted step takes (0 is the training mean of standardised data).
    output
        ``"prob"``: the softmax probability of ``target``; ``"logit"``: its logit.

    Returns
    -------
    StepCurves

    Examples
    --------
    A linear model ``logit_1 = sum_t w_t x_t`` with the true scores ``w_t x_t``:

    >>> w = torch.tensor([3.0, 1.0, 2.0])
    >>> lin = lambda x, lengths: torch.stack([0 * x[..., 0].sum(1), (x[..., 0] * w).sum(1)], 1)
    >>> x = torch.ones(1, 3, 1)
    >>> c = step_curves(lin, x, w[None], [0, 1, 2, 3], target=torch.tensor([1]), output="logit")
    >>> c.deletion[:, 0].tolist(), c.insertion[:, 0].tolist()
    ([6.0, 3.0, 1.0, 0.0], [0.0, 3.0, 5.0, 6.0])
    """
    check_option(output, "output", ("prob", "logit"))
    baseline = check_real(baseline, "baseline")
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ParameterError(f"x must be a torch tensor (B, T, d), got {getattr(x, 'shape', type(x))}")
    B, T, _ = x.shape
    if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != (B, T):
        raise ParameterError(f"scores must be a torch tensor of shape (B, T) = {(B, T)}, "
                             f"got {tuple(getattr(scores, 'shape', ()))}")
    ks = tuple(check_int(k, "ks", low=0) for k in ks)
    if not ks or any(b < a for a, b in zip(ks, ks[1:])):
        raise ParameterError(f"ks must be a non-empty increasing sequence of step counts, got {ks}")
    target = torch.as_tensor(target, device=x.device).long()
    if lengths is None:
        lengths = torch.full((B,), T, dtype=torch.long, device=x.device)
    lengths = torch.as_tensor(lengths, device=x.device).long()
    if lengths.shape != (B,) or int(lengths.min()) < 1 or int(lengths.max()) > T:
        raise ParameterError(f"lengths must be B = {B} integers in [1, {T}]")
    steps = torch.arange(T, device=x.device)
    valid = steps[None, :] < lengths[:, None]
    s = scores.detach().to(torch.float64).masked_fill(~valid, -math.inf)
    order = torch.sort(s, dim=1, descending=True, stable=True).indices            # (B, T)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, steps.expand(B, T).contiguous())                     # rank of each step
    rows = torch.arange(B, device=x.device)
    out = torch.zeros(2, len(ks), B, dtype=torch.float64)
    with torch.no_grad():
        for j, k in enumerate(ks):
            top = ((rank < k) & valid)[..., None]
            base = torch.full_like(x, baseline)
            for i, xx in enumerate((torch.where(top, base, x),
                                    torch.where(top | ~valid[..., None], x, base))):
                logits = model(xx, lengths)
                val = logits.softmax(1)[rows, target] if output == "prob" else logits[rows, target]
                out[i, j] = val.detach().to("cpu", torch.float64)
    out = out.to(x.device) if x.device.type != "mps" else out
    return StepCurves(ks, out[0], out[1], out[0].mean(0), out[1].mean(0))


def captum_step_scores(model, x: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor | None = None, *,
                       method: str = "ig", n_steps: int = 32, window: int = 1, baseline: float = 0.0) -> torch.Tensor:
    """Input-time attributions from Captum, summed over channels: shape ``(B, T)``.

    ``method="ig"``: Integrated Gradients from a constant ``baseline`` series (``n_steps``
    points); ``"occlusion"``: Occlusion with a window of ``window`` steps (all channels)
    replaced by ``baseline``, stride 1. The lengths are passed to the model through Captum's
    ``additional_forward_args`` (IG repeats the batch ``n_steps`` times, so a closure holding
    the lengths would not fit). Steps at or after a length get score 0 from IG (their
    gradient is 0) and from occlusion (the output does not change).

    Examples
    --------
    >>> torch.manual_seed(0) is not None
    True
    >>> m = NeuroViewRNN("rnn", 2, 4, 6, 2)
    >>> with torch.no_grad():
    ...     _ = m.head.weight.normal_()
    >>> x, c = torch.randn(3, 6, 2), torch.tensor([0, 1, 1])
    >>> captum_step_scores(m, x, c, torch.tensor([6, 4, 2]), method="occlusion")[2, 2:].abs().max().item()
    0.0
    """
    from captum.attr import IntegratedGradients, Occlusion

    check_option(method, "method", ("ig", "occlusion"))
    n_steps = check_int(n_steps, "n_steps", low=2)
    window = check_int(window, "window", low=1)
    baseline = check_real(baseline, "baseline")
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ParameterError(f"x must be a torch tensor (B, T, d), got {getattr(x, 'shape', type(x))}")
    if lengths is None:
        lengths = torch.full((len(x),), x.shape[1], dtype=torch.long, device=x.device)
    target = torch.as_tensor(target, device=x.device).long()
    base = torch.full_like(x, baseline)
    if method == "ig":
        att = IntegratedGradients(model).attribute(x, baselines=base, target=target, n_steps=n_steps,
                                                   additional_forward_args=(lengths,))
    else:
        att = Occlusion(model).attribute(x, sliding_window_shapes=(window, x.shape[2]), strides=(1, x.shape[2]),
                                         baselines=baseline, target=target, additional_forward_args=(lengths,))
    return att.detach().sum(-1)
