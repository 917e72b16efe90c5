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
           "MODES", "POOLS"]

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
    from helpers._checks import resolve_seed

    if not isinstance(model, nn.Module):
        raise ParameterError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    epochs = check_int(epochs, "epochs", low=1)
    batch_size = check_int(batch_size, "batch_size", low=1)
    lr = check_real(lr, "lr", low=0, low_open=True)
    weight_decay = check_real(weight_decay, "weight_decay", low=0)
    check_int(threads, "threads", low=1, none_ok=True)
    if not isinstance(X, torch.Tensor) or not isinstance(y, torch.Tensor) or len(X) != len(y) or y.dim() != 1:
        raise ParameterError("X and y must be torch tensors with one label per row of X")
    if anneal is not None:
        t0, t1 = (check_real(t, "anneal", low=0, low_open=True) for t in anneal)
    gen = torch.Generator().manual_seed(resolve_seed(seed))
    if isinstance(getattr(model, "head", None), nn.LazyLinear):
        with torch.no_grad():
            model(X[:1])
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    saved = torch.get_num_threads()
    if threads is not None and X.device.type == "cpu":
        torch.set_num_threads(threads)
    try:
        model.train()
        for epoch in range(epochs):
            if anneal is not None and isinstance(model, NeuroViewClassifier):
                model.tau = t0 * (t1 / t0) ** (epoch / max(epochs - 1, 1))
            order = torch.randperm(len(X), generator=gen).to(X.device)
            for i in range(0, len(X), batch_size):
                idx = order[i:i + batch_size]
                opt.zero_grad()
                F.cross_entropy(model(X[idx]), y[idx]).backward()
                opt.step()
    finally:
        torch.set_num_threads(saved)
    return model.eval()
