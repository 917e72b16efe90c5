"""Jacobian-vector products of CPA networks with one forward pass of the tangent, no autodiff.

A network built from affine layers and continuous piecewise-affine (CPA) nonlinearities is
affine on the region of input space that contains ``x``. Freeze the *codes* that the primal
pass selects (ReLU signs, leaky slopes, max-pool argmax indices) and the network becomes an
affine map ``f_q(u) = A u + b``; its Jacobian at ``x`` is ``A``. So ``J(x) v`` is the forward
pass of ``v`` through the network with every bias dropped (affine -> linear), every
nonlinearity replaced by its frozen slope, and every max replaced by a gather at the primal
argmax. Eval-mode batch-norm becomes its per-channel scale.

The model's ``forward`` is traced with ``torch.fx``, so functional calls (``F.relu``,
``torch.max``, residual ``+``) are seen, not only submodules. Each graph node is mapped to a
rule that computes the primal value with the model's own operation (so ``y`` equals
``model(x)`` bit for bit) and returns the tangent operation with the codes frozen in.
Anything without a rule, or that is not CPA (GELU, softmax, attention, layer norm, train-mode
batch-norm or dropout, products of two activations), raises :class:`UnsupportedLayerError`
naming the operation and where it sits.

Kink conventions follow PyTorch's autograd: ReLU'(0) = 0, leaky-ReLU takes the negative slope
at 0, hard-tanh is flat at its bounds, max-pool takes the index that PyTorch returns.

1-D and 2-D max-pooling without padding run, on the CPU, the compiled loops of
:mod:`helpers.native_pool` (built with the machine's C compiler on first use); without a
compiler the same results come from PyTorch operations, more slowly.
"""

from __future__ import annotations

import functools
import math
import operator
import threading
import weakref
from typing import Callable

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules import module as _nn_module
from torch.nn.modules.utils import _pair, _single

from helpers import native_pool
from helpers._checks import ParameterError

__all__ = ["jvp", "linearize", "UnsupportedLayerError"]


class UnsupportedLayerError(ValueError):
    """An operation in the model is not CPA, or has no JVP rule; the message says where."""


# --------------------------------------------------------------------------------------------
# Tracing
# --------------------------------------------------------------------------------------------

_TRACES: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


class _Trace:
    """A traced model and what can be decided about it once: each node's rule, in-place ops."""

    def __init__(self, gm: fx.GraphModule):
        self.gm = gm
        self.nodes = list(gm.graph.nodes)
        self.placeholders = [n for n in self.nodes if n.op == "placeholder"]
        self.inplace = {n for n in self.nodes if n.op.startswith("call") and _is_inplace(n, gm)}
        self.modules = {n: gm.get_submodule(n.target) for n in self.nodes if n.op == "call_module"}
        self.rules: dict = {}  # filled lazily: a node that never carries a tangent needs no rule
        self.output = next(n for n in self.nodes if n.op == "output")
        self.plan = None  # jvp's steps, made on its first call (see _plan)
        # With in-place ops a value lives on under other names: keep every value to the end.
        self.dead_after = {} if self.inplace else _last_uses(self.nodes)


def _last_uses(nodes: list) -> dict:
    """Node -> the nodes it is the last reader of (the output node is never one: outputs stay)."""
    seen, dead_after = set(), {}
    for node in reversed(nodes):
        if node.op == "output":
            seen.update(node.all_input_nodes)
            continue
        for arg in node.all_input_nodes:
            if arg not in seen:
                seen.add(arg)
                dead_after.setdefault(node, []).append(arg)
    return dead_after


def _model_tensors(model: nn.Module) -> tuple[list, list]:
    """The model's submodules and its parameter and buffer tensors, in one cheap traversal."""
    modules, seen, i = [model], {id(model)}, 0
    while i < len(modules):  # model.modules() without its generators: a third of the time
        for m in modules[i]._modules.values():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                modules.append(m)
        i += 1
    tensors = [t for m in modules for d in (m._parameters, m._buffers) for t in d.values() if t is not None]
    return modules, tensors


def _trace(model: nn.Module, modules: list, tensors: list) -> _Trace:
    """The fx graph of ``model``, cached while its submodules, tensors and train/eval flags stay the same."""
    # fx bakes `self.training` into the graph, and the graph module holds the submodules, parameters
    # and buffers it was built with: retrace when one of them is replaced, not only when a flag flips.
    flags = (tuple(map(id, modules)), tuple([m.training for m in modules]), tuple(map(id, tensors)))
    cached = _TRACES.get(model)
    if cached is not None and cached[0] == flags:
        return cached[1]
    tracer = fx.Tracer()
    tracer.record_stack_traces = True
    try:
        graph = tracer.trace(model)
    except Exception as err:  # data-dependent control flow and the like
        raise UnsupportedLayerError(
            f"torch.fx could not trace {type(model).__name__}.forward ({type(err).__name__}: {err}). "
            "The CPA JVP needs a forward pass without data-dependent Python control flow.") from err
    trace = _Trace(fx.GraphModule(model, graph))
    # The submodules without the root (the root is the cache's weak key: a strong reference to it
    # in the value would keep it alive), the tensors, and the fingerprint of _prepare's fast path.
    _TRACES[model] = (flags, trace, modules[1:], tensors, _fingerprint(model, modules[1:]))
    return trace


def _fingerprint(model: nn.Module, subs: list) -> tuple:
    """The identity of every entry of the submodules', parameters' and buffers' dicts of ``model``
    and ``subs``, and their train/eval flags. While it stays the same, so do the submodules
    reachable from ``model`` (the same children, level by level), its tensors and the flags: what
    _trace's cache key records, read in one pass without the traversal of _model_tensors."""
    mods = [model, *subs]
    return (tuple([id(v) for m in mods for d in (m._modules, m._parameters, m._buffers) for v in d.values()]),
            tuple([m.training for m in mods]))


def _where(node: fx.Node) -> str:
    """Where a graph node sits: its module path, and the source line of ``forward`` if known."""
    if node.op == "call_module":
        return f"module '{node.target}'"
    stack = node.meta.get("nn_module_stack") or {}
    owner = next(reversed(stack.values()), None) if stack else None
    place = f"graph node '{node.name}'"
    if owner:
        place += f" inside module '{owner[0] if isinstance(owner, tuple) else owner}'"
    # The innermost `forward` frame outside torch's own files is the line the user wrote.
    frames = [line.strip() for line in (node.stack_trace or "").splitlines()
              if line.strip().endswith("in forward") and "site-packages/torch/" not in line]
    if frames:
        place += f" ({frames[-1]})"
    return place


def _unsupported(node: fx.Node, what: str, why: str) -> UnsupportedLayerError:
    return UnsupportedLayerError(
        f"{what} at {_where(node)} is not supported by the CPA JVP: {why}. "
        "Supported: affine layers (Linear, Conv, ConvTranspose, pooling, eval BatchNorm, reshapes, "
        "residual sums) and CPA nonlinearities (ReLU, LeakyReLU, PReLU, Hardtanh/ReLU6, abs, clamp, max/amax, where with a comparison mask)."
    )


# --------------------------------------------------------------------------------------------
# Tangent helpers. A tangent holds B*K rows: K tangents per primal sample, sample-major.
# Codes (masks, indices) have B rows and are broadcast over the K tangents of their sample.
# --------------------------------------------------------------------------------------------


def _per_sample(t: torch.Tensor, code: "_Code", K: int, op: Callable, inplace: bool = False) -> torch.Tensor:
    """``op(t, code, out)`` where ``code`` has one row per sample and ``t`` has K rows per sample.

    ``op`` is elementwise; with ``inplace`` it writes the result into ``t`` (``out=t``).
    """
    code = code.like(t)
    if K == 1 or code.dim() < t.dim() or code.shape[0] == 1:
        return op(t, code, t if inplace else None)
    B = code.shape[0]
    tk = t.view(B, K, *t.shape[1:])
    out = op(tk, code.unsqueeze(1), tk if inplace else None)
    return out.reshape(B * K, *out.shape[2:])


def _mul(t, c, out=None):
    return torch.mul(t, c) if out is None else torch.mul(t, c, out=out)


def _backward_kernel(aten_op, *consts):
    """Autograd's fused backward kernel of a unit, ``(t, code, out) -> t * slope(code)``."""
    def op(t, c, out=None):
        return aten_op.default(t, c, *consts) if out is None else aten_op.grad_input(t, c, *consts, grad_input=out)
    return op


def _fresh(fn: Callable, inplace: dict | None = None) -> Callable:
    """Mark a tangent function whose result shares memory with no other tangent.

    ``inplace`` maps an argument position to a variant that writes the same result into that
    argument's tangent. ``linearize`` uses it when nothing else reads that tangent: on CPU each
    new multi-megabyte tensor can cost page faults worth more than a pass over it (when the C
    allocator has returned such blocks to the system), so writing a ReLU mask, a batch-norm
    scale or a residual sum into its input's buffer saves much of a K-tangent pass.
    """
    fn.fresh = True
    fn.inplace = inplace or {}
    return fn


def _unit(code, op) -> Callable:
    """The tangent of an elementwise CPA unit: ``t * slope``, with ``op(t, code, out)`` giving it."""
    return _fresh(lambda K, ta: _per_sample(ta[0], code, K, op),
                  {0: lambda K, ta: _per_sample(ta[0], code, K, op, inplace=True)})


def _mask(t, code, K):
    return _per_sample(t, code, K, _mul)


class _Code:
    """A primal tensor kept as a code, with its channels-last copy made on first need.

    K-tangent image batches run channels-last; a mask in the other layout would make every
    elementwise pass strided, and converting it on each call would cost 1/K of a tangent pass.
    """

    __slots__ = ("plain", "_channels_last")

    def __init__(self, plain: torch.Tensor):
        self.plain = plain
        self._channels_last = None

    def like(self, t: torch.Tensor) -> torch.Tensor:
        if self.plain.dim() != 4 or t.dim() != 4 or t.is_contiguous() \
                or not t.is_contiguous(memory_format=torch.channels_last):
            return self.plain
        if self._channels_last is None:
            self._channels_last = self.plain.contiguous(memory_format=torch.channels_last)
        return self._channels_last


_STATE = threading.local()  # whether the model being linearized mutates tensors in place


def _code(x: torch.Tensor) -> _Code:
    """Keep a primal tensor as a code; copy it when a later in-place op could overwrite it."""
    return _Code(x.clone() if getattr(_STATE, "mutates", False) else x)


def _is_inplace(node: fx.Node, gm: fx.GraphModule) -> bool:
    if node.op == "call_module":
        return bool(getattr(gm.get_submodule(node.target), "inplace", False))
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
    return bool(node.kwargs.get("inplace")) or (name.endswith("_") and not name.startswith("_")) or \
        node.target in (operator.iadd, operator.isub, operator.imul, operator.itruediv)


def _gather(t: torch.Tensor, idx: torch.Tensor, dim: int, K: int) -> torch.Tensor:
    """Gather the tangent at the primal's indices along ``dim`` (>= 1), per sample."""
    if K == 1:
        return t.gather(dim, idx)
    B = idx.shape[0]
    tk = t.view(B, K, *t.shape[1:])
    out = tk.gather(dim + 1, idx.unsqueeze(1).expand(B, K, *idx.shape[1:]))
    return out.reshape(B * K, *idx.shape[1:])


def _pool_gather(t: torch.Tensor, idx: "_Code", K: int) -> torch.Tensor:
    """Max-pool tangent: gather the flattened spatial positions PyTorch's pooling returned."""
    if t.dim() == 4 and t.shape[1] >= 32 and _is_channels_last(t):
        return _pool_gather_channels_last(t, idx.like(t), K)
    N, C = idx.plain.shape[:2]
    out = _gather(t.flatten(2), idx.plain.flatten(2), 2, K)
    return out.view(out.shape[0], C, *idx.plain.shape[2:])


def _is_channels_last(t: torch.Tensor) -> bool:
    return not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


def _pool_gather_channels_last(t: torch.Tensor, idx: torch.Tensor, K: int) -> torch.Tensor:
    """The gather on the (N, H*W, C) view of a channels-last tangent, with the index in the same
    layout (converted once per code): flattening the spatial axes of a channels-last tensor copies
    it. The output is channels-last too. From 32 channels on this is 1.2-1.8x faster than copy and
    gather on the VGG block's K-tangent batches; with fewer channels (LeNet's 6 and 16) the short
    inner axis makes it 1.5x slower."""
    B, C, h, w = idx.shape
    tk = t.permute(0, 2, 3, 1).reshape(B, K, -1, C)
    ik = idx.permute(0, 2, 3, 1).reshape(B, 1, h * w, C).expand(B, K, h * w, C)
    return tk.gather(2, ik).view(B * K, h, w, C).permute(0, 3, 1, 2)


def _batch_preserving(node, out, K):
    """Check that a structural op kept the batch axis in front, which K tangents rely on."""
    def check(t_out, ref):
        if K > 1 and isinstance(t_out, torch.Tensor) and tuple(t_out.shape[1:]) != tuple(ref.shape[1:]):
            raise _unsupported(node, f"'{getattr(node.target, '__name__', node.target)}'",
                               "with K tangents per sample the operation must keep the batch axis "
                               f"first and untouched (primal shape {tuple(ref.shape)})")
        return t_out
    return check


# --------------------------------------------------------------------------------------------
# Rules. Each takes (node, args, kwargs, has_t) and returns (primal output, tangent function);
# the tangent function maps (K, tangent args) -> tangent output, tangent args mirroring args
# with None where an argument carries no tangent.
# --------------------------------------------------------------------------------------------


def _only(has_t, node, what):
    """The index of the single tangent-carrying argument; two mean a product of activations."""
    idx = [i for i, h in enumerate(has_t) if h]
    if len(idx) != 1:
        raise _unsupported(node, what, "both operands depend on the input (a product of activations is not CPA)")
    return idx[0]


def _slope_rule(slope_of: Callable[[torch.Tensor], torch.Tensor], op: Callable):
    """Elementwise CPA unit: the tangent is multiplied by the slope of the active piece."""
    def rule(node, args, kwargs, has_t):
        slope = _Code(slope_of(args[0]))  # from the input, before an in-place op overwrites it
        out = op(*args, **kwargs)
        return out, _unit(slope, _mul)
    return rule


# The three common units use autograd's own fused backward kernels with the primal as code:
# one pass over the tangent and no mask to build (building a float mask cost 5x a ReLU).
def _relu(call, x, *rest, **kw):
    y = call(x, *rest, **kw)
    code = _code(y)  # relu(x) > 0 exactly where x > 0, and y survives an in-place ReLU
    return y, _unit(code, _RELU_KERNEL)


_RELU_KERNEL = _backward_kernel(torch.ops.aten.threshold_backward, 0)


def _leaky_relu(call, x, slope, *rest, **kw):
    if slope <= 0:  # the sign test below needs the input, which an in-place call destroys
        return _slope_rule(_leaky_slope(slope), call)(None, (x, *rest), kw, None)
    y = call(x, *rest, **kw)
    code = _code(y)  # for a positive slope y has x's sign; y = 0 only at x = 0 (negative slope, as autograd)
    return y, _unit(code, _backward_kernel(torch.ops.aten.leaky_relu_backward, slope, True))


def _hardtanh(call, x, lo, hi, *rest, **kw):
    y = call(x, *rest, **kw)
    code = _code(y)  # lo < y < hi exactly where lo < x < hi
    return y, _unit(code, _backward_kernel(torch.ops.aten.hardtanh_backward, lo, hi))


def _leaky_slope(negative_slope):
    def slope(x):  # built in x's dtype: a float32 scalar 0.01 would differ from autograd's in float64
        return torch.full_like(x, negative_slope).masked_fill_(x > 0, 1.0)
    return slope


def _clamp_slope(lo, hi):
    def slope(x):  # torch.clamp's derivative includes the bounds, unlike hardtanh's
        keep = torch.ones_like(x, dtype=torch.bool)
        if lo is not None:
            keep &= x >= lo
        if hi is not None:
            keep &= x <= hi
        return keep.to(x.dtype)
    return slope


def _prelu_slope(weight):
    def slope(x):
        w = weight.reshape(1, -1, *([1] * (x.dim() - 2))) if weight.numel() > 1 else weight
        return torch.where(x > 0, torch.ones_like(x), w.to(x.dtype)).to(x.dtype)
    return slope


def _linear_rule(node, args, kwargs, has_t):
    """An operation linear in its tangent-carrying argument: apply it to the tangent as is."""
    out = node.target(*args, **kwargs) if node.op == "call_function" else getattr(args[0], node.target)(*args[1:], **kwargs)
    i = _only(has_t, node, f"'{getattr(node.target, '__name__', node.target)}'")

    def tangent(K, ta):
        targs = list(args)
        targs[i] = ta[i]
        t_out = (node.target(*targs, **kwargs) if node.op == "call_function"
                 else getattr(targs[0], node.target)(*targs[1:], **kwargs))
        return _batch_preserving(node, out, K)(t_out, out)
    return out, tangent


def _reshape_rule(node, args, kwargs, has_t):
    """view/reshape/expand: the tangent takes the primal's output shape, with its own batch size."""
    out = node.target(*args, **kwargs) if node.op == "call_function" else getattr(args[0], node.target)(*args[1:], **kwargs)
    name = node.target if isinstance(node.target, str) else node.target.__name__
    batch = args[0].shape[0] if args[0].dim() else None

    def tangent(K, ta):
        t = ta[0]
        if K == 1:
            return t.reshape(out.shape) if name != "expand" else t.expand(out.shape)
        if out.dim() == 0 or out.shape[0] != batch:
            raise _unsupported(node, f"'{name}'", "with K tangents per sample the reshape must keep the batch axis first")
        shape = (t.shape[0], *out.shape[1:])
        return t.reshape(shape) if name != "expand" else t.expand(shape)
    return out, tangent


def _add_rule(sign: float):
    def rule(node, args, kwargs, has_t):
        out = node.target(*args, **kwargs) if node.op == "call_function" else getattr(args[0], node.target)(*args[1:], **kwargs)
        alpha = kwargs.get("alpha", 1)
        shape = out.shape[1:]
        if all(has_t[:2]) and len(args) == 2 and args[0].shape == args[1].shape == out.shape:
            return out, _sum_tangent(sign * alpha)

        def tangent(K, ta):
            a, b = (ta[0], ta[1] if len(ta) > 1 else None)
            if b is not None:
                b = b * (sign * alpha) if sign * alpha != 1 else b
            t = a if b is None else b if a is None else a + b
            if tuple(t.shape[1:]) != tuple(shape):  # the constant operand broadcast the tangent
                t = torch.broadcast_to(t, (t.shape[0], *shape) if t.dim() == len(shape) + 1 else out.shape)
            return t
        return out, tangent
    return rule


def _sum_tangent(beta: float) -> Callable:
    """``a + beta * b`` of two tangents of the output's shape (a residual connection)."""
    inplace = {0: lambda K, ta: ta[0].add_(ta[1], alpha=beta)}
    if beta == 1:
        inplace[1] = lambda K, ta: ta[1].add_(ta[0])
    return _fresh(lambda K, ta: torch.add(ta[0], ta[1], alpha=beta), inplace)


def _scale_tangent(scale: torch.Tensor) -> Callable:
    """Eval batch-norm: the tangent times the per-channel scale."""
    return _fresh(lambda K, ta: ta[0] * scale, {0: lambda K, ta: ta[0].mul_(scale)})


def _conv_input(t: torch.Tensor, K: int) -> torch.Tensor:
    """K tangents per sample make a large image batch; oneDNN convolves it markedly faster in
    channels-last layout on CPU (1.4-2.4x for the zoo's 3x3 convolutions on 128 images and 2x
    for the generator's first transposed convolution on a 2-core CPU; the benchmark chapter
    measures it), and the layout then carries through the following elementwise ops. Not for
    2-D convolutions with kernels larger than 3x3 (LeNet's 5x5 ones: 1.0x for its first, and for
    its second, 6 to 16 channels on 14x14, 424 us contiguous against 578 us converted to
    channels-last, 128 images, one thread); transposed convolutions convert (the generator's
    4x4 ones gain)."""
    if K > 1 and t.dim() == 4 and t.device.type == "cpu":
        return t.contiguous(memory_format=torch.channels_last)
    return t


def _neg_rule(node, args, kwargs, has_t):
    out = -args[0]
    return out, lambda K, ta: -ta[0]


def _mul_rule(node, args, kwargs, has_t):
    out = node.target(*args, **kwargs) if node.op == "call_function" else getattr(args[0], node.target)(*args[1:], **kwargs)
    i = _only(has_t, node, "a product")
    const = args[1 - i]
    if not isinstance(const, torch.Tensor):
        return out, lambda K, ta: ta[i] * const
    code = _Code(const)
    return out, lambda K, ta: _per_sample(ta[i], code, K, _mul)


def _div_rule(node, args, kwargs, has_t):
    if has_t[1]:
        raise _unsupported(node, "a division", "the denominator depends on the input")
    out = node.target(*args, **kwargs) if node.op == "call_function" else getattr(args[0], node.target)(*args[1:], **kwargs)
    const = args[1]
    if not isinstance(const, torch.Tensor):
        return out, lambda K, ta: ta[0] / const
    code = _Code(const)
    return out, lambda K, ta: _per_sample(ta[0], code, K, lambda t, c, out: torch.div(t, c))


def _matmul_rule(node, args, kwargs, has_t):
    out = node.target(*args, **kwargs) if node.op == "call_function" else getattr(args[0], node.target)(*args[1:], **kwargs)
    i = _only(has_t, node, "a matrix product")

    def tangent(K, ta):
        targs = list(args)
        targs[i] = ta[i]
        t = node.target(*targs) if node.op == "call_function" else getattr(targs[0], node.target)(*targs[1:])
        return _batch_preserving(node, out, K)(t, out)
    return out, tangent


def _nondiff_rule(node, args, kwargs, has_t):
    """Comparisons, shapes, argmax, detach: piecewise constant, so their tangent is zero."""
    out = node.target(*args, **kwargs) if node.op == "call_function" else getattr(args[0], node.target)(*args[1:], **kwargs)
    return out, None


def _abs_rule(node, args, kwargs, has_t):
    sign = _Code(torch.sign(args[0]))  # abs'(0) = 0, as in autograd
    out = torch.abs(args[0])
    return out, _unit(sign, _mul)


def _max_rule(node, args, kwargs, has_t):
    """torch.max / torch.min: reductions gather at the argmax, two tensors take the larger."""
    name = node.target if isinstance(node.target, str) else node.target.__name__
    is_max = name in ("max", "amax", "maximum")
    x = args[0]
    other = args[1] if len(args) > 1 else kwargs.get("other")
    if isinstance(other, torch.Tensor):  # elementwise maximum/minimum of two tensors
        out = (torch.maximum if is_max else torch.minimum)(x, other)
        pick_a = (x > other) if is_max else (x < other)
        tie = (x == other)
        w_a = _Code(torch.where(tie, 0.5, pick_a.to(x.dtype)).to(x.dtype))  # autograd splits ties evenly

        def tangent(K, ta):
            a = ta[0] if ta[0] is not None else 0.0
            b = ta[1] if len(ta) > 1 and ta[1] is not None else 0.0
            return _mask(a - b, w_a, K) + b if isinstance(b, torch.Tensor) else _mask(a, w_a, K)
        return out, tangent
    dim = args[1] if len(args) > 1 else kwargs.get("dim")
    keepdim = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
    if dim is None:  # a full reduction over the batch: allowed for one tangent per sample
        flat = x.flatten()
        idx = flat.argmax() if is_max else flat.argmin()
        out = flat[idx]

        def tangent(K, ta):
            if K > 1:
                raise _unsupported(node, f"'{name}' over all elements", "it mixes the batch axis")
            return ta[0].flatten()[idx]
        return out, tangent
    dim = dim % x.dim()
    if dim == 0:
        raise _unsupported(node, f"'{name}' over the batch axis", "it mixes samples")
    values, indices = (torch.max if is_max else torch.min)(x, dim, keepdim=True)
    result = (torch.return_types.max if is_max else torch.return_types.min)(  # the namedtuple torch returns
        (values if keepdim else values.squeeze(dim), indices if keepdim else indices.squeeze(dim)))

    def tangent(K, ta):
        t = _gather(ta[0], indices, dim, K)
        return (t if keepdim else t.squeeze(dim), None)
    return result, tangent


def _amax_rule(node, args, kwargs, has_t):
    """torch.amax / amin: the tangent averaged over the entries that tie for the extreme value,
    as autograd does (unlike torch.max, which picks one index)."""
    name = node.target if isinstance(node.target, str) else node.target.__name__
    x = args[0]
    dim = args[1] if len(args) > 1 else kwargs.get("dim", ())
    keepdim = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
    dims = tuple(range(x.dim())) if dim in ((), []) else tuple(d % x.dim() for d in ((dim,) if isinstance(dim, int) else dim))
    if 0 in dims:
        raise _unsupported(node, f"'{name}' over the batch axis", "it mixes samples")
    out = node.target(*args, **kwargs) if node.op == "call_function" else getattr(x, node.target)(*args[1:], **kwargs)
    ties = (x == out if keepdim else x == out.reshape([1 if d in dims else n for d, n in enumerate(x.shape)])).to(x.dtype)
    weights = _Code(ties / ties.sum(dims, keepdim=True))     # 1/(number of tied entries) on each tie, else 0

    def tangent(K, ta):
        return _per_sample(ta[0], weights, K, _mul).sum(dims, keepdim=keepdim)
    return out, tangent


def _where_rule(node, args, kwargs, has_t):
    """torch.where(cond, a, b): cond is piecewise constant (a comparison), so the tangent picks the
    tangent of the branch chosen in the primal, per sample."""
    if has_t[0]:
        raise _unsupported(node, "torch.where with an input-dependent condition tensor",
                           "the condition must be a boolean mask (a comparison), not a value")
    if len(args) != 3 or kwargs:
        raise _unsupported(node, "torch.where with one argument", "it returns indices, not values")
    cond, a, b = args
    out = torch.where(cond, a, b)
    pick_a = _Code(torch.broadcast_to(cond, out.shape).to(out.dtype))
    pick_b = _Code(1 - pick_a.plain)

    def tangent(K, ta):
        parts = [_per_sample(torch.broadcast_to(t, (t.shape[0], *out.shape[1:])), pick, K, _mul)
                 for t, pick in ((ta[1], pick_a), (ta[2], pick_b)) if t is not None]
        return parts[0] if len(parts) == 1 else parts[0] + parts[1]
    return out, tangent


def _cat_rule(node, args, kwargs, has_t):
    out = node.target(*args, **kwargs)
    members = args[0]
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)

    def tangent(K, ta):
        ts = ta[0]
        ref = next(t for t in ts if t is not None)
        if K > 1 and dim % out.dim() == 0:
            raise _unsupported(node, f"'{node.target.__name__}' along the batch axis", "it mixes samples")
        parts = [t if t is not None else torch.zeros((ref.shape[0], *m.shape[1:]), dtype=ref.dtype, device=ref.device)
                 for t, m in zip(ts, members)]
        return node.target(parts, dim)
    return out, tangent


def _getitem_rule(node, args, kwargs, has_t):
    seq, key = args
    if isinstance(seq, torch.Tensor):
        return _linear_rule(node, args, kwargs, has_t)
    out = seq[key]
    return out, lambda K, ta: ta[0][key] if ta[0] is not None else None


def _getattr_rule(node, args, kwargs, has_t):
    obj, attr = args
    out = getattr(obj, attr)
    if attr in ("values", "indices") and isinstance(obj, tuple):  # torch.max's namedtuple
        pos = 0 if attr == "values" else 1
        return out, lambda K, ta: ta[0][pos] if ta[0] is not None else None
    return out, None  # .shape, .dtype, ...


def _split_rule(node, args, kwargs, has_t):
    """chunk/split/unbind: the same split of the tangent, a tuple of tangents."""
    out = node.target(*args, **kwargs) if node.op == "call_function" else getattr(args[0], node.target)(*args[1:], **kwargs)

    def tangent(K, ta):
        targs = (ta[0], *args[1:])
        ts = node.target(*targs, **kwargs) if node.op == "call_function" else getattr(ta[0], node.target)(*args[1:], **kwargs)
        return tuple(_batch_preserving(node, o, K)(t, o) for t, o in zip(ts, out))
    return out, tangent


def _functional_act(kind):
    """F.relu / F.leaky_relu / F.hardtanh / F.relu6 / torch.clamp / F.prelu as call_function or call_method."""
    def rule(node, args, kwargs, has_t):
        x = args[0]
        call = node.target if node.op == "call_function" else (lambda x, *a, **k: getattr(x, node.target)(*a, **k))
        if kind == "relu":
            return _relu(call, *args, **kwargs)
        elif kind == "leaky_relu":
            return _leaky_relu(call, x, args[1] if len(args) > 1 else kwargs.get("negative_slope", 0.01),
                               *args[1:], **kwargs)
        elif kind == "hardtanh":
            lo = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
            hi = args[2] if len(args) > 2 else kwargs.get("max_val", 1.0)
            return _hardtanh(call, x, lo, hi, *args[1:], **kwargs)
        elif kind == "relu6":
            return _hardtanh(call, x, 0.0, 6.0, *args[1:], **kwargs)
        elif kind == "clamp":
            lo = args[1] if len(args) > 1 else kwargs.get("min")
            hi = args[2] if len(args) > 2 else kwargs.get("max")
            if isinstance(lo, torch.Tensor) or isinstance(hi, torch.Tensor):
                raise _unsupported(node, "clamp with tensor bounds", "use constant bounds")
            slope = _clamp_slope(lo, hi)(x)
        elif kind == "prelu":
            if has_t[1]:
                raise _unsupported(node, "prelu", "its weight depends on the input")
            slope = _prelu_slope(args[1])(x)
        out = call(*args, **kwargs)
        return out, _unit(_Code(slope), _mul)
    return rule


def _biasless_rule(bias_pos: int):
    """F.linear / F.conv*d / F.conv_transpose*d: the tangent goes through without the bias."""
    def rule(node, args, kwargs, has_t):
        if any(has_t[1:]):
            raise _unsupported(node, f"'{node.target.__name__}'", "its weight or bias depends on the input")
        out = node.target(*args, **kwargs)
        rest = list(args[1:])
        if len(rest) >= bias_pos:
            rest[bias_pos - 1] = None
        kw = {k: (None if k == "bias" else v) for k, v in kwargs.items()}
        if node.target in (F.conv2d, F.conv_transpose2d):
            return out, _fresh(lambda K, ta: node.target(_conv_input(ta[0], K), *rest, **kw))
        return out, _fresh(lambda K, ta: node.target(ta[0], *rest, **kw))
    return rule


def _f_max_pool(fn_with_indices, nd, adaptive=False):
    """F.max_pool*d / F.adaptive_max_pool*d: the primal with indices, the tangent gathered at them."""
    names = ("output_size", "return_indices") if adaptive else (
        "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")

    def rule(node, args, kwargs, has_t):
        kw = dict(zip(names, args[1:]))
        kw.update(kwargs)
        want_indices = kw.pop("return_indices", False)
        if not adaptive and not want_indices:
            return _max_pool_rule(node, args[0], nd, **kw)
        call = (lambda: fn_with_indices(args[0], **kw, return_indices=True)) if adaptive else \
            (lambda: fn_with_indices(args[0], **kw))
        return _pool_module(node, args[0], nd, want_indices, call)
    return rule


def _f_dropout(node, args, kwargs, has_t):
    p = args[1] if len(args) > 1 else kwargs.get("p", 0.5)
    training = args[2] if len(args) > 2 else kwargs.get("training", True)
    if training and p > 0:
        raise _unsupported(node, "dropout in training mode", "its random mask differs between calls; pass training=False or call model.eval()")
    return args[0], lambda K, ta: ta[0]


def _f_batch_norm(node, args, kwargs, has_t):
    names = ("running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
    kw = dict(zip(names, args[1:]))
    kw.update(kwargs)
    if kw.get("training", False) or kw.get("running_var") is None:
        raise _unsupported(node, "batch_norm with batch statistics", "normalizing by the batch's statistics is not affine and mixes samples; call model.eval()")
    out = node.target(*args, **kwargs)
    scale = _bn_scale(kw["running_var"], kw.get("weight"), kw.get("eps", 1e-5), args[0].dim())
    return out, _scale_tangent(scale)


def _bn_scale(running_var, weight, eps, ndim):
    scale = torch.rsqrt(running_var + eps)
    if weight is not None:
        scale = scale * weight
    return scale.reshape(1, -1, *([1] * (ndim - 2)))


def _f_pad(node, args, kwargs, has_t):
    out = F.pad(*args, **kwargs)
    pad = args[1] if len(args) > 1 else kwargs["pad"]
    mode = args[2] if len(args) > 2 else kwargs.get("mode", "constant")
    return out, lambda K, ta: F.pad(ta[0], pad, mode=mode, value=0.0) if mode == "constant" else F.pad(ta[0], pad, mode=mode)


# Module rules --------------------------------------------------------------------------------


def _module_rule(node, mod):
    """The rule for calls of the submodule ``mod``, chosen once per trace: the primal is
    ``mod(x)``, the tangent drops the biases."""
    what = f"{type(mod).__name__}"
    if not isinstance(mod, _SUPPORTED_MODULES):
        raise _unsupported(node, what, "it is not an affine layer or a CPA nonlinearity")
    call = _module_call(node, mod, what)

    def rule(node, args, kwargs, has_t):
        if any(has_t[1:]) or kwargs:
            raise _unsupported(node, what, "it is called with extra arguments")
        return call(args[0])
    return rule


def _module_call(node, mod, what):
    """``x -> (mod(x), tangent function)`` for the module's type."""
    if isinstance(mod, nn.Linear):
        forward = _direct(mod, nn.Linear, lambda x: F.linear(x, mod._parameters["weight"], mod._parameters["bias"]))
        return lambda x: (forward(x), _fresh(lambda K, ta: F.linear(ta[0], mod.weight)))
    if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return lambda x: (mod(x), _fresh(lambda K, ta: _conv_tangent(mod, ta[0], K, x, False)))
    if isinstance(mod, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[len(mod.kernel_size)]
        tangent = _conv_t_tangent(fn)
        return lambda x: (mod(x), _fresh(lambda K, ta: tangent(mod, ta[0], K, x, False)))
    if isinstance(mod, nn.ReLU):
        forward = _direct(mod, nn.ReLU, torch.relu_ if mod.inplace else torch.relu)
        return lambda x: _relu(forward, x)
    if isinstance(mod, nn.LeakyReLU):
        leaky = torch._C._nn.leaky_relu_ if mod.inplace else torch._C._nn.leaky_relu
        forward = _direct(mod, nn.LeakyReLU, lambda x: leaky(x, mod.negative_slope))
        return lambda x: _leaky_relu(forward, x, mod.negative_slope)
    if isinstance(mod, nn.Hardtanh):  # includes ReLU6
        return lambda x: _hardtanh(mod, x, mod.min_val, mod.max_val)
    if isinstance(mod, nn.PReLU):
        return lambda x: _slope_rule(_prelu_slope(mod.weight), mod)(node, (x,), {}, None)
    if isinstance(mod, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)) and not mod.return_indices:
        nd = _MAX_POOL_ND[type(mod)]
        return lambda x: _max_pool_rule(node, x, nd, mod.kernel_size, mod.stride, mod.padding, mod.dilation,
                                        mod.ceil_mode)
    if isinstance(mod, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
        nd = _MAX_POOL_ND[type(mod)]
        fn = {1: _max_pool1d_with_indices, 2: F.max_pool2d_with_indices, 3: F.max_pool3d_with_indices}[nd]
        return lambda x: _pool_module(node, x, nd, mod.return_indices, lambda: fn(
            x, mod.kernel_size, mod.stride, mod.padding, mod.dilation, mod.ceil_mode))
    if isinstance(mod, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)):
        nd = {nn.AdaptiveMaxPool1d: 1, nn.AdaptiveMaxPool2d: 2, nn.AdaptiveMaxPool3d: 3}[type(mod)]
        fn = {1: F.adaptive_max_pool1d, 2: F.adaptive_max_pool2d, 3: F.adaptive_max_pool3d}[nd]
        return lambda x: _pool_module(node, x, nd, mod.return_indices, lambda: fn(x, mod.output_size, return_indices=True))
    if isinstance(mod, nn.modules.batchnorm._BatchNorm):
        if mod.training or mod.running_var is None:
            raise _unsupported(node, f"{what} in training mode" if mod.training else f"{what} without running statistics",
                               "normalizing by the batch's statistics is not affine and mixes samples; call model.eval()")
        return lambda x: (mod(x), _scale_tangent(_bn_scale(mod.running_var, mod.weight, mod.eps, x.dim())))
    if isinstance(mod, nn.modules.dropout._DropoutNd):
        if mod.training and mod.p > 0:
            raise _unsupported(node, f"{what} in training mode", "its random mask differs between calls; call model.eval()")
        return lambda x: (mod(x), lambda K, ta: ta[0])
    if isinstance(mod, (nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d)):
        return lambda x: (mod(x), lambda K, ta: F.pad(ta[0], mod.padding, value=0.0))  # the constant is an offset
    if isinstance(mod, _LINEAR_MODULES):
        def linear(x):
            out = mod(x)
            return out, lambda K, ta: _batch_preserving(node, out, K)(mod(ta[0]), out)
        return linear
    raise _unsupported(node, what, "it is not an affine layer or a CPA nonlinearity")


_MAX_POOL_ND = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3}  # pooled axes per module type


def _max_pool_rule(node, x, nd, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Max-pool without indices asked. 1-D and 2-D pooling without padding or ceil mode run the
    compiled kernels of :mod:`helpers.native_pool` where they apply (one pass for the values and
    the code of each window's winner, one for the tangent); elsewhere, or where a tangent does not
    suit them, PyTorch ops give the same numbers."""
    native = _native_pool(x, nd, kernel_size, stride, padding, dilation, ceil_mode)
    if native is not None:
        return native
    if nd == 1:
        return _max_pool1d_rule(node, x, kernel_size, stride, padding, dilation, ceil_mode)
    fn = {2: F.max_pool2d_with_indices, 3: F.max_pool3d_with_indices}[nd]
    return _pool_module(node, x, nd, False, lambda: fn(x, kernel_size, stride, padding, dilation, ceil_mode))


def _native_pool(x, nd, kernel_size, stride, padding, dilation, ceil_mode):
    """``(values, tangent function)`` from the compiled kernels, or None where they do not apply."""
    if nd not in (1, 2) or ceil_mode:
        return None
    tup = _single if nd == 1 else _pair
    k, p, d = tup(kernel_size), tup(padding), tup(dilation)
    s = tup(stride) if stride not in (None, ()) else k
    if any(p):
        return None
    pooled = native_pool.window_max(x, k, s, d)
    if pooled is None:
        return None
    values, code = pooled
    index = []  # for the gather: made once, on first need

    def tangent(K, ta):
        # K tangents of a 2-D pooling take PyTorch's gather at indices made once: over the short
        # rows of LeNet's planes (14 and 5 outputs) the loop's indexed loads took 1.7-1.9x the
        # gather's time (K = 16, batch 8, one thread). 1-D poolings take the loop for any K: the
        # 1-D conv net's K = 16 replay is 1.10x faster for it on one thread, 1.02x on two.
        out = native_pool.window_select(ta[0], code, K, k, s, d) if K == 1 or nd == 1 else None
        if out is not None:
            return out
        if not index:
            index.append(_Code(_window_indices(code, x.shape, k, s, d)))
        return _pool_gather(ta[0], index[0], K)
    return values, _fresh(tangent)


def _window_indices(code, shape, k, s, d):
    """The flat spatial index of each window's winner, as PyTorch's pooling returns it, from the
    code (the winner's position in its window, row-major)."""
    code = code.long()
    if len(k) == 1:
        return (code * d[0]).add_(torch.arange(0, s[0] * code.shape[-1], s[0]))
    oh, ow = code.shape[-2:]
    row = torch.arange(0, s[0] * oh, s[0]).unsqueeze(1) + torch.div(code, k[1], rounding_mode="floor") * d[0]
    return (row * shape[-1]).add_(torch.arange(0, s[1] * ow, s[1])).add_(code.remainder(k[1]) * d[1])


def _max_pool1d_rule(node, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """1-D max-pool without indices asked, with PyTorch ops: for windows of two without padding
    or ceil mode (the common pooling) the code is which entry of each pair won, a boolean. One
    tangent per sample is a select between the pair's strided views for small outputs and is
    read at flat positions (_pair_positions + the code) with ``index_select`` for large ones (see
    _SELECT_MAX); K tangents per sample are gathered at indices made once from the code. Other
    windows: indices from comparisons and a gather."""
    (k,), (p,), (d,) = _single(kernel_size), _single(padding), _single(dilation)
    s = _single(stride)[0] if stride not in (None, ()) else k
    if k != 2 or p != 0 or ceil_mode or x.dim() != 3 or x.shape[-1] < d + 1:
        return _pool_module(node, x, 1, False, lambda: _max_pool1d_with_indices(
            x, kernel_size, stride, padding, dilation, ceil_mode))
    values = F.max_pool1d(x, 2, s, 0, d)
    span = s * (values.shape[-1] - 1) + 1
    second = x[..., d: d + span: s]
    # PyTorch's kernels keep the first entry on ties and take a later one if larger or NaN. A NaN
    # second entry makes its window's value NaN, so where the values' sum is not NaN there is
    # none and the comparison alone is the rule (on CPU, where reading the sum costs no sync; the
    # sum is also NaN for +inf with -inf, which takes the full rule, as it may).
    take = torch.gt(second, x[..., :span:s])
    if x.device.type != "cpu" or math.isnan(values.sum().item()):  # 1 us faster than torch.isnan
        take.logical_or_(torch.isnan(second))

    index = []  # the gather's index, made once, on first need

    def tangent(K, ta):
        t = ta[0]
        if K == 1 and take.numel() < _SELECT_MAX:
            return torch.where(take, t[..., d: d + span: s], t[..., :span:s])
        if K == 1 and t.is_contiguous():
            at = torch.add(_pair_positions(t.shape, values.shape[-1], s, t.device), take, alpha=d)
            return t.view(-1).index_select(0, at.view(-1)).view(values.shape)
        if not index:
            index.append(torch.add(torch.arange(0, span, s, device=x.device), take, alpha=d))
        return _gather(t, index[0], 2, K)
    return values, _fresh(tangent)


# Up to this many outputs the select on strided views (a branch per entry) is the faster tangent
# of a pair max-pool; above it the index_select at _pair_positions. Whole JVP of the 1-D conv net,
# one thread: at batch 8 (8192 and 4096 outputs per pooling) the select is 1.01-1.02x faster
# with new inputs at every call, 1.07x with the same input every call (the branch predictor
# learns its pattern); at batch 64 the index_select is 1.04-1.05x faster either way.
_SELECT_MAX = 16384


@functools.lru_cache(maxsize=16)
def _pair_positions(shape: torch.Size, length: int, s: int, device: torch.device) -> torch.Tensor:
    """Flat position of each window's first entry in a contiguous tensor of ``shape``, shaped
    like the pooled output (``shape[:-1] + (length,)``), int32 where it fits. Cached per shape:
    made per call it would add a quarter to the pool's tangent.

    Why not the select: ``torch.where`` between the pair's strided views is a branch per entry
    on CPU, and in the model's pass, where the branch predictor has not learned the pattern, it
    ran 3x slower than this index_select (65536 outputs, one thread: 200 against 62 us; the
    gather along the last axis at int64 indices, 96 us)."""
    rows, L = math.prod(shape[:-1]), shape[-1]
    dtype = torch.int32 if rows * L < 2 ** 31 else torch.int64
    starts = torch.arange(0, rows * L, L, dtype=dtype, device=device).unsqueeze(1)
    return (starts + torch.arange(0, s * length, s, dtype=dtype, device=device)).view(*shape[:-1], length)


def _max_pool1d_with_indices(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """``F.max_pool1d_with_indices``, several times faster on CPU without padding or ceil mode:
    the values come from the pooling kernel without indices (a fast path the one with indices
    lacks), the indices from comparisons of the windows' strided views."""
    (k,), (p,), (d,) = _single(kernel_size), _single(padding), _single(dilation)
    s = _single(stride)[0] if stride not in (None, ()) else k
    if p != 0 or ceil_mode or x.dim() != 3 or x.shape[-1] < d * (k - 1) + 1:
        return F.max_pool1d_with_indices(x, kernel_size, stride, padding, dilation, ceil_mode)
    values = F.max_pool1d(x, k, s, 0, d)
    return values, _first_max_indices(x, k, s, d, values.shape[-1])


def _first_max_indices(x, k, s, d, length):
    """Per window, the index of the maximum that PyTorch's max-pool kernels pick: a later entry
    replaces the best so far only if it is larger or NaN (so ties keep the first, NaN the last)."""
    span = s * (length - 1) + 1
    best, offset = x[..., :span:s], None
    for j in range(1, k):
        xj = x[..., j * d: j * d + span: s]
        take = (xj > best) | torch.isnan(xj)
        offset = take * (j * d) if offset is None else torch.where(take, j * d, offset)  # masked_fill_ is slower
        if j + 1 < k:
            best = torch.where(take, xj, best)
    start = torch.arange(0, span, s, device=x.device)
    return start.expand(best.shape).clone() if offset is None else offset.add_(start)


def _direct(mod: nn.Module, cls: type, kernel: Callable) -> Callable:
    """``mod(x)``, as ``kernel(x)`` (what ``cls.forward`` runs) where nothing else can happen in the
    module call: on a small dense layer the call's own overhead is a third of its time, which the
    model's forward pays and the primal pass need not. Subclasses, hooks, compiled modules and
    tensor subclasses take the module call."""
    if type(mod) is not cls:
        return mod

    def forward(x):
        if type(x) is torch.Tensor and not _hooked(mod):
            return kernel(x)
        return mod(x)
    return forward


def _hooked(mod: nn.Module) -> bool:
    """Whether ``mod(x)`` would run more than ``mod.forward(x)`` (the test of ``Module.__call__``)."""
    g = _nn_module
    return bool(mod._forward_hooks or mod._forward_pre_hooks or mod._backward_hooks or mod._backward_pre_hooks
                or g._global_forward_hooks or g._global_forward_pre_hooks or g._global_backward_hooks
                or g._global_backward_pre_hooks or mod._compiled_call_impl is not None)


def _pool_module(node, x, nd, return_indices, call):
    if x.dim() != nd + 2:
        raise _unsupported(node, f"{nd}-D max pooling", f"it needs a batched {nd + 2}-D input, got {x.dim()}-D")
    values, idx = call()
    code = _Code(idx)

    def tangent(K, ta):
        t = _pool_gather(ta[0], code, K)
        return (t, None) if return_indices else t
    return ((values, idx) if return_indices else values), (tangent if return_indices else _fresh(tangent))


_LINEAR_MODULES = (
    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.Flatten, nn.Unflatten, nn.Identity, nn.Upsample, nn.PixelShuffle, nn.PixelUnshuffle,
    nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReflectionPad3d,
    nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d, nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d,
    nn.CircularPad1d, nn.CircularPad2d, nn.CircularPad3d,
)
_SUPPORTED_MODULES = _LINEAR_MODULES + (
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.ReLU, nn.LeakyReLU, nn.Hardtanh, nn.PReLU, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.modules.batchnorm._BatchNorm,
    nn.modules.dropout._DropoutNd, nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d,
)

# Function and method rules, by target ---------------------------------------------------------

_LINEAR_FUNCS = [torch.flatten, torch.squeeze, torch.unsqueeze, torch.transpose, torch.permute, torch.movedim,
                 torch.sum, torch.mean, torch.narrow, torch.roll, torch.flip, torch.clone,
                 F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
                 F.adaptive_avg_pool3d, F.interpolate, F.pixel_shuffle, F.pixel_unshuffle, torch.diagonal]
_LINEAR_METHODS = ["flatten", "squeeze", "unsqueeze", "transpose", "permute", "movedim", "sum", "mean", "narrow",
                   "contiguous", "clone", "float", "double", "half", "to", "type_as", "roll", "flip", "t", "diagonal"]
_NONDIFF = [operator.gt, operator.ge, operator.lt, operator.le, operator.eq, operator.ne, torch.gt, torch.ge,
            torch.lt, torch.le, torch.eq, torch.ne, torch.argmax, torch.argmin, torch.sign, torch.numel,
            torch.zeros_like, torch.ones_like, torch.empty_like]
_NONDIFF_METHODS = ["size", "dim", "numel", "gt", "ge", "lt", "le", "eq", "ne", "argmax", "argmin", "sign",
                    "detach", "new_zeros", "new_ones", "zero_", "type", "nelement", "stride", "data_ptr"]

FUNCTION_RULES: dict = {
    operator.add: _add_rule(1.0), torch.add: _add_rule(1.0), operator.iadd: _add_rule(1.0),
    operator.sub: _add_rule(-1.0), torch.sub: _add_rule(-1.0), operator.isub: _add_rule(-1.0),
    operator.neg: _neg_rule, torch.neg: _neg_rule,
    operator.mul: _mul_rule, torch.mul: _mul_rule, operator.imul: _mul_rule,
    operator.truediv: _div_rule, torch.div: _div_rule, torch.true_divide: _div_rule,
    operator.matmul: _matmul_rule, torch.matmul: _matmul_rule, torch.mm: _matmul_rule, torch.bmm: _matmul_rule,
    torch.relu: _functional_act("relu"), F.relu: _functional_act("relu"), torch.relu_: _functional_act("relu"),
    F.leaky_relu: _functional_act("leaky_relu"), F.hardtanh: _functional_act("hardtanh"),
    F.relu6: _functional_act("relu6"), torch.clamp: _functional_act("clamp"), torch.clip: _functional_act("clamp"),
    F.prelu: _functional_act("prelu"), torch.prelu: _functional_act("prelu"),
    torch.abs: _abs_rule, operator.abs: _abs_rule,
    torch.max: _max_rule, torch.min: _max_rule, torch.maximum: _max_rule, torch.minimum: _max_rule,
    torch.amax: _amax_rule, torch.amin: _amax_rule, torch.where: _where_rule,
    torch.cat: _cat_rule, torch.concat: _cat_rule, torch.stack: _cat_rule,
    torch.reshape: _reshape_rule,
    torch.chunk: _split_rule, torch.split: _split_rule, torch.unbind: _split_rule,
    operator.getitem: _getitem_rule, getattr: _getattr_rule,
    F.linear: _biasless_rule(2), F.conv1d: _biasless_rule(2), F.conv2d: _biasless_rule(2), F.conv3d: _biasless_rule(2),
    F.conv_transpose1d: _biasless_rule(2), F.conv_transpose2d: _biasless_rule(2), F.conv_transpose3d: _biasless_rule(2),
    F.max_pool1d: _f_max_pool(_max_pool1d_with_indices, 1), F.max_pool2d: _f_max_pool(F.max_pool2d_with_indices, 2),
    F.max_pool3d: _f_max_pool(F.max_pool3d_with_indices, 3),
    F.adaptive_max_pool1d: _f_max_pool(F.adaptive_max_pool1d, 1, adaptive=True),
    F.adaptive_max_pool2d: _f_max_pool(F.adaptive_max_pool2d, 2, adaptive=True),
    F.adaptive_max_pool3d: _f_max_pool(F.adaptive_max_pool3d, 3, adaptive=True),
    F.dropout: _f_dropout, F.dropout1d: _f_dropout, F.dropout2d: _f_dropout, F.dropout3d: _f_dropout,
    F.batch_norm: _f_batch_norm, F.pad: _f_pad,
    **{f: _linear_rule for f in _LINEAR_FUNCS}, **{f: _nondiff_rule for f in _NONDIFF},
}

METHOD_RULES: dict = {
    "add": _add_rule(1.0), "add_": _add_rule(1.0), "sub": _add_rule(-1.0), "sub_": _add_rule(-1.0),
    "neg": _neg_rule, "mul": _mul_rule, "mul_": _mul_rule, "div": _div_rule, "div_": _div_rule,
    "matmul": _matmul_rule, "mm": _matmul_rule, "bmm": _matmul_rule,
    "relu": _functional_act("relu"), "relu_": _functional_act("relu"), "clamp": _functional_act("clamp"),
    "clip": _functional_act("clamp"), "clamp_": _functional_act("clamp"), "clip_": _functional_act("clamp"),
    "abs": _abs_rule, "max": _max_rule, "min": _max_rule, "maximum": _max_rule, "minimum": _max_rule,
    "amax": _amax_rule, "amin": _amax_rule,
    "view": _reshape_rule, "reshape": _reshape_rule, "expand": _reshape_rule,
    "chunk": _split_rule, "split": _split_rule, "unbind": _split_rule,
    **{m: _linear_rule for m in _LINEAR_METHODS}, **{m: _nondiff_rule for m in _NONDIFF_METHODS},
}


# --------------------------------------------------------------------------------------------
# The two passes
# --------------------------------------------------------------------------------------------


def _check_inputs(model: nn.Module, x: torch.Tensor, tensors: list) -> None:
    if not isinstance(x, torch.Tensor):
        raise ParameterError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ParameterError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() == 0:
        raise ParameterError("x must have a leading batch axis, got a 0-d tensor")
    dtype, device = x.dtype, x.device
    if all((t.dtype == dtype or not t.is_floating_point()) and t.device == device for t in tensors):
        return
    for name, p in list(model.named_parameters()) + list(model.named_buffers()):  # name the culprit
        if p.is_floating_point() and p.dtype != x.dtype:
            raise ParameterError(f"x is {x.dtype} but the model's '{name}' is {p.dtype}: "
                            f"call model.to({x.dtype}) or pass x.to({p.dtype})")
        if p.device != x.device:
            raise ParameterError(f"x is on {x.device} but the model's '{name}' is on {p.device}: "
                             f"move one of them, e.g. x.to('{p.device}')")


def _tangent_count(x: torch.Tensor, v: torch.Tensor) -> int:
    """1 when ``v`` has x's shape, K when it has shape (B, K, *x.shape[1:])."""
    if not isinstance(v, torch.Tensor):
        raise ParameterError(f"v must be a torch.Tensor, got {type(v).__name__}")
    if v.dtype != x.dtype or v.device != x.device:
        raise ParameterError(f"v must match x's dtype and device ({x.dtype}, {x.device}), got ({v.dtype}, {v.device})")
    if v.shape == x.shape:
        return 1
    if v.dim() == x.dim() + 1 and v.shape[0] == x.shape[0] and v.shape[2:] == x.shape[1:] and v.shape[1] >= 1:
        return v.shape[1]
    raise ParameterError(f"v must have x's shape {tuple(x.shape)} or (B, K, *x.shape[1:]) = "
                     f"({x.shape[0]}, K, {', '.join(map(str, x.shape[1:]))}) for K tangents per sample; "
                     f"got {tuple(v.shape)}")


def _rule_for(node: fx.Node, trace: _Trace):
    rule = trace.rules.get(node)
    if rule is None:
        rule = trace.rules[node] = _find_rule(node, trace)
    return rule


def _find_rule(node: fx.Node, trace: _Trace):
    if node.op == "call_module":
        return _module_rule(node, trace.modules[node])
    if node.op == "call_function":
        rule = FUNCTION_RULES.get(node.target)
        name = getattr(node.target, "__name__", str(node.target))
    else:
        rule = METHOD_RULES.get(node.target)
        name = f".{node.target}()"
    if rule is None:
        raise _unsupported(node, f"'{name}'", "it is not affine or piecewise-affine (no CPA rule)")
    return rule


def _primal_steps(trace: _Trace, x: torch.Tensor, env: dict):
    """Run the model node by node into ``env``, yielding ``(node, tangent, args, alias, release)``
    for each node whose value depends on the input, as soon as its rule has run.

    A value leaves ``env`` after its last reader, as in the model's own forward, so that the
    allocator hands its memory to the next step (the codes live on in the tangent functions);
    ``release`` names the tangents that are dead once this step's tangent is computed.
    """
    gm, placeholders = trace.gm, trace.placeholders
    carries: set = set()  # nodes whose value depends on the input
    if len(placeholders) != 1 and any(not n.args for n in placeholders[1:]):
        raise UnsupportedLayerError(f"{type(gm).__name__}.forward takes {len(placeholders)} inputs; "
                                    "the CPA JVP supports models with one tensor input")
    _STATE.mutates = bool(trace.inplace)
    release: list = []
    for node in trace.nodes:
        if node.op == "output":
            break
        step = _primal_step(node, trace, x, env, carries)
        release += trace.dead_after.get(node, ())
        if step is not None:
            yield (*step, release)
            release = []
        for dead in trace.dead_after.get(node, ()):
            del env[dead]


def _primal_step(node: fx.Node, trace: _Trace, x: torch.Tensor, env: dict, carries: set):
    """Compute ``env[node]``; for a node that carries a tangent, return ``(node, tangent, args, alias)``."""
    if node.op == "placeholder":
        first = node is trace.placeholders[0]
        env[node] = x if first else (node.args[0] if node.args else None)
        if first:
            carries.add(node)
        return None
    if node.op == "get_attr":
        env[node] = _fetch_attr(trace.gm, node.target)
        return None
    args = fx.node.map_arg(node.args, env.__getitem__)
    kwargs = fx.node.map_arg(node.kwargs, env.__getitem__) if node.kwargs else {}
    has_t = [isinstance(a, fx.Node) and a in carries or _nested_carries(a, carries) for a in node.args]
    t_kwargs = node.kwargs and any(_nested_carries(v, carries) or isinstance(v, fx.Node) and v in carries
                                   for v in node.kwargs.values())
    if not any(has_t) and not t_kwargs:
        env[node] = _run(node, trace, args, kwargs)  # a constant computation: no tangent
        return None
    if t_kwargs:
        raise _unsupported(node, f"'{node.target}'", "an input-dependent tensor is passed as a keyword argument")
    out, tangent = _rule_for(node, trace)(node, args, kwargs, has_t)
    env[node] = out
    if tangent is None:
        return None
    carries.add(node)
    # An in-place op also changes its input: later uses of the input see the new tangent.
    alias = _aliases(node, env, carries) if node in trace.inplace and isinstance(node.args[0], fx.Node) else ()
    return node, tangent, node.args, alias


def _reuse_buffers(program: list) -> list:
    """``program`` with :func:`_reuse_step` applied to every step."""
    shared = _shared_tangents(program)
    fresh: set = set()
    return [(node, _reuse_step(node, tangent, args, fresh, shared), args, *rest)
            for node, tangent, args, *rest in program]


def _shared_tangents(program: list) -> set:
    """Nodes that take part in the model's own in-place ops: they share tangents under several names."""
    return {a for _, _, _, alias, _ in program for a in alias} | {node for node, _, _, alias, _ in program if alias}


def _reuse_step(node: fx.Node, tangent: Callable, args, fresh: set, shared: set = frozenset()) -> Callable:
    """The in-place variant of a tangent operation where the tangent it overwrites is a fresh
    tensor (made by its producer, shared with no other tangent) that nothing reads later; else
    ``tangent`` itself. Records in ``fresh`` whether the node's own tangent is fresh.

    The graph's ``users`` tell who reads a node; the output node counts as a reader, so returned
    tangents are never overwritten.
    """
    for pos, variant in getattr(tangent, "inplace", {}).items():
        source = args[pos] if pos < len(args) else None
        if source in fresh and source not in shared and len(source.users) == 1 and _reads_once(args, source):
            tangent = _fresh(variant)
            break
    if getattr(tangent, "fresh", False):
        fresh.add(node)
    return tangent


def _reads_once(args, source: fx.Node) -> bool:
    readers = []
    fx.node.map_arg(args, readers.append)
    return readers.count(source) == 1


def _tangent_step(tenv: dict, K: int, node, tangent, args, alias, release) -> None:
    """Compute one node's tangent into ``tenv`` and drop the tangents nothing reads any more."""
    if len(args) == 1 and type(args[0]) is fx.Node:  # the common case, without map_aggregate's calls
        ta = (tenv.get(args[0]),)
    else:
        ta = fx.node.map_aggregate(args, lambda a: tenv.get(a) if isinstance(a, fx.Node) else None)
    t = tenv[node] = tangent(K, ta)
    for a in alias:
        tenv[a] = t
    for dead in release:
        tenv.pop(dead, None)


def _aliases(node: fx.Node, env: dict, carries: set) -> tuple:
    """The nodes whose tangent an in-place op replaces: its input and every node holding that same
    tensor (e.g. the input of an eval dropout or nn.Identity). A *different* view of the same memory
    that is used afterwards would need its tangent re-derived through the view: refuse it."""
    target, alias = env[node.args[0]], [node.args[0]]
    if not isinstance(target, torch.Tensor) or target.numel() == 0:
        return tuple(alias)
    ptr = target.untyped_storage().data_ptr()
    for m in carries:
        val = env.get(m)
        if m is node or m is node.args[0] or not isinstance(val, torch.Tensor) or val.numel() == 0 \
                or val.untyped_storage().data_ptr() != ptr:
            continue
        if val is target:
            alias.append(m)
        elif any(u is not node and not _precedes(u, node) for u in m.users):
            name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", node.target)
            raise _unsupported(node, f"in-place '{name}'", f"it writes to memory shared with the view '{m.name}', "
                               "which is used afterwards; use the out-of-place operation")
    return tuple(alias)


def _precedes(a: fx.Node, b: fx.Node) -> bool:
    """Whether node ``a`` comes before node ``b`` in the graph."""
    n = a.next
    while n.op != "root":
        if n is b:
            return True
        n = n.next
    return False


def _nested_carries(a, carries) -> bool:
    if isinstance(a, (list, tuple)):
        return any(isinstance(b, fx.Node) and b in carries or _nested_carries(b, carries) for b in a)
    return False


def _fetch_attr(gm, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _run(node, trace, args, kwargs):
    if node.op == "call_module":
        return trace.modules[node](*args, **kwargs)
    if node.op == "call_function":
        return node.target(*args, **kwargs)
    return getattr(args[0], node.target)(*args[1:], **kwargs)


def linearize(model: nn.Module, x: torch.Tensor, *, reuse_buffers: bool = True):
    """Run ``model`` on ``x`` once and return ``y`` and a function computing ``J(x) v``.

    The codes (activation masks, argmax indices, batch-norm scales) are computed once; each call
    of the returned function costs one forward pass of the tangent through the network with
    biases dropped, in plain torch operations (device-agnostic, and differentiable in the
    weights when autograd is on). Under ``torch.no_grad()`` the pass overwrites intermediate
    tangents that nothing reads afterwards instead of allocating new ones; the caller's ``v``
    and the returned tangents are never overwritten. With K tangents per sample, image batches
    run channels-last into 2-D convolutions on CPU (oneDNN's fast layout).

    Parameters
    ----------
    model
        A CPA network: affine layers and CPA nonlinearities, batch-norm and dropout in eval mode.
    x
        Input of shape (B, ...), floating point, on the model's device and dtype.
    reuse_buffers
        Overwrite dead intermediate tangents in place when autograd is off (the default). False
        allocates a new tensor at every step, as out-of-place code does; the result is the same
        up to rounding (for comparisons and debugging).

    Returns
    -------
    y : torch.Tensor
        ``model(x)``, bit for bit.
    jvp_fn : callable
        ``jvp_fn(v)`` with ``v`` of shape (B, ...) returns ``J(x) v`` of ``y``'s shape; with
        ``v`` of shape (B, K, ...) (K tangents per sample) it returns shape ``(B, K, *y.shape[1:])``.

    Raises
    ------
    UnsupportedLayerError
        If an operation is not CPA or has no rule; the message names it and where it sits.
    ValueError
        (a ``ParameterError``, also a TypeError) On wrong types, shapes, dtypes or devices (a tensor
        on another device than the model's included), with the fix in the message.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
    >>> with torch.no_grad():
    ...     _ = net[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
    ...     _ = net[0].bias.zero_()
    >>> y, jvp_fn = linearize(net, torch.tensor([[1.0, 1.0]]))
    >>> jvp_fn(torch.tensor([[3.0, 5.0]])).tolist()  # the second unit is off at x: its slope is 0
    [[3.0, 0.0]]
    >>> jvp_fn(torch.eye(2)[None]).shape  # K = 2 tangents per sample: the Jacobian's columns
    torch.Size([1, 2, 2])
    """
    trace, weights_need_grad = _prepare(model, x)
    env: dict = {}
    program = list(_primal_steps(trace, x, env))
    reusing = _reuse_buffers(program) if reuse_buffers else program
    y = fx.node.map_arg(trace.output.args[0], env.__getitem__)
    outputs = {n: env[n] for n in trace.output.all_input_nodes}  # keep only what the tangent pass needs
    del env

    def jvp_fn(v: torch.Tensor):
        K, tenv, stacked = _tangent_input(trace, x, v)
        # In-place steps would break autograd through the tangent pass: keep them for no-grad use.
        builds_graph = torch.is_grad_enabled() and (weights_need_grad or x.requires_grad or v.requires_grad)
        for step in (program if builds_graph else reusing):
            _tangent_step(tenv, K, *step)
        return _tangent_output(trace, outputs, tenv, K, x.shape[0], stacked)

    return y, jvp_fn


def _prepare(model: nn.Module, x: torch.Tensor) -> tuple[_Trace, bool]:
    """Check the call, and return the model's trace and whether any of its weights requires grad."""
    if not isinstance(model, nn.Module):
        raise ParameterError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    cached = _TRACES.get(model)
    if cached is not None and _fingerprint(model, cached[2]) == cached[4]:
        trace, tensors = cached[1], cached[3]  # the cached objects are alive: their ids are not reused
        _check_inputs(model, x, tensors)
    else:
        modules, tensors = _model_tensors(model)
        _check_inputs(model, x, tensors)
        trace = _trace(model, modules, tensors)
    return trace, any(t.requires_grad for t in tensors)


def _tangent_input(trace: _Trace, x: torch.Tensor, v: torch.Tensor) -> tuple[int, dict, bool]:
    """K, the tangent environment holding ``v`` as B*K rows, and whether ``v`` came as (B, K, ...)."""
    K = _tangent_count(x, v)
    stacked = v.shape != x.shape  # the (B, K, ...) form, K = 1 included: flatten it and restore it
    t0 = v.reshape(x.shape[0] * K, *x.shape[1:]) if stacked else v
    return K, {trace.placeholders[0]: t0}, stacked


def _tangent_output(trace: _Trace, outputs: dict, tenv: dict, K: int, B: int, stacked: bool):
    return fx.node.map_arg(trace.output.args[0], lambda n: _finish(outputs[n], tenv.get(n), K, B, stacked))


def _finish(primal, t, K, B, stacked):
    """Shape a tangent output; outputs that do not depend on the input get a zero tangent."""
    if not isinstance(primal, torch.Tensor):
        return t
    if t is None:
        t = torch.zeros((B * K, *primal.shape[1:]) if stacked else primal.shape, dtype=primal.dtype, device=primal.device)
    return t.view(B, K, *primal.shape[1:]) if stacked else t


def jvp(model: nn.Module, x: torch.Tensor, v: torch.Tensor):
    """``y = model(x)`` and ``J_model(x) v`` by the CPA method, with no autodiff.

    The same operations as ``linearize(model, x)[1](v)``, in one walk over the graph: each node's
    tangent step runs right after its primal step, and every value is dropped after its last
    reader, so a code is used while it is still in cache and the memory held at once is about
    that of two forward passes, not of a whole primal pass plus a tangent pass.

    Parameters
    ----------
    model
        A CPA network (see :func:`linearize`).
    x
        Input of shape (B, ...).
    v
        Tangent of x's shape, or (B, K, ...) for K tangents per sample.

    Returns
    -------
    y : torch.Tensor
        ``model(x)``.
    jv : torch.Tensor
        ``J(x) v``, of ``y``'s shape, or ``(B, K, *y.shape[1:])``.

    Raises
    ------
    UnsupportedLayerError
        If the model contains a non-CPA operation; the message names it and where it sits.
    ValueError
        (a ``ParameterError``, also a TypeError) On wrong types, shapes, dtypes or devices.

    Examples
    --------
    At ``x = (1, -1)`` the leaky ReLU keeps the first coordinate and scales the second by its
    negative slope 0.1, and so does its Jacobian with the tangent:

    >>> import torch
    >>> net = torch.nn.LeakyReLU(0.1)
    >>> y, jv = jvp(net, torch.tensor([[1.0, -1.0]]), torch.tensor([[3.0, 5.0]]))
    >>> y.tolist(), jv.tolist()
    ([[1.0, -0.10000000149011612]], [[3.0, 0.5]])
    """
    trace, weights_need_grad = _prepare(model, x)
    if trace.inplace:  # its tangents are renamed along the way: plan the buffer reuse on the whole program
        y, jvp_fn = linearize(model, x)
        return y, jvp_fn(v)
    K, tenv, stacked = _tangent_input(trace, x, v)
    builds_graph = torch.is_grad_enabled() and (weights_need_grad or x.requires_grad or v.requires_grad)
    # One walk: each tangent step runs right after its primal step, while the code it reads is still
    # in cache, and both values are dropped after their last reader, as in the model's forward.
    plan = trace.plan or _plan(trace)
    _STATE.mutates = False  # no in-place ops (those models went to linearize above)
    env: dict = {}
    carries: set = set()
    fresh: set = set()
    reuse = not builds_graph
    for step, dead in plan:
        step(x, env, tenv, K, carries, fresh, reuse)
        for d in dead:  # the values whose last reader this node was
            del env[d]
            tenv.pop(d, None)
    y = fx.node.map_arg(trace.output.args[0], env.__getitem__)
    return y, _tangent_output(trace, env, tenv, K, x.shape[0], stacked)


# jvp's plan: one step function per node -------------------------------------------------------
#
# The walk of _primal_steps decides per node, at every call, what the graph already says: which
# arguments carry tangents, which rule applies, whether a tangent may be overwritten, what dies
# after the node. On small dense networks that Python cost is a third of a JVP. The plan decides
# what is static once per trace, and fuses the primal and tangent of the common modules (plain
# Linear, ReLU, LeakyReLU, convolutions and eval batch-norm) into one function with the same
# kernels in the same order, so the results are those of the walk bit for bit. Everything else,
# and any call where a fused step's conditions fail (hooks, tensor subclasses, an input that does
# not carry a tangent), runs the walk's own code for that node.


def _plan(trace: _Trace) -> list:
    placeholders = trace.placeholders
    if len(placeholders) != 1 and any(not n.args for n in placeholders[1:]):
        raise UnsupportedLayerError(f"{type(trace.gm).__name__}.forward takes {len(placeholders)} inputs; "
                                    "the CPA JVP supports models with one tensor input")
    plan = []
    for node in trace.nodes:
        if node.op == "output":
            break
        generic = _generic_step(node, trace)
        fused = None
        if node.op == "call_module" and not node.kwargs and len(node.args) == 1 and type(node.args[0]) is fx.Node:
            make = _FUSED.get(type(trace.modules[node]))
            fused = make and make(node, trace.modules[node], generic)
        plan.append((fused or generic, tuple(trace.dead_after.get(node, ()))))
    trace.plan = plan
    return plan


def _generic_step(node, trace):
    """The walk's own code for one node: _primal_step, the buffer reuse and _tangent_step."""
    def step(x, env, tenv, K, carries, fresh, reuse):
        out = _primal_step(node, trace, x, env, carries)
        if out is not None:
            _, tangent, args, alias = out
            if reuse:
                tangent = _reuse_step(node, tangent, args, fresh)
            _tangent_step(tenv, K, node, tangent, args, alias, ())
    return step


def _fused_linear(node, mod, generic):
    src = node.args[0]
    params = mod._parameters

    def step(x, env, tenv, K, carries, fresh, reuse):
        a = env[src]
        if src not in carries or type(a) is not torch.Tensor or _hooked(mod):
            return generic(x, env, tenv, K, carries, fresh, reuse)
        w = params["weight"]
        env[node] = F.linear(a, w, params["bias"])
        tenv[node] = F.linear(tenv[src], w)
        carries.add(node)
        fresh.add(node)
    return step


def _fused_unit(kernel_of):
    """ReLU and LeakyReLU (positive slope, not in place): the primal's output is the code, the
    tangent autograd's backward kernel, written into the input tangent where _reuse_step would."""
    def make(node, mod, generic):
        made = kernel_of(mod)
        if made is None:
            return None
        forward, op, same = made
        src = node.args[0]
        sole = len(src.users) == 1  # and node.args == (src,): it reads src once

        def step(x, env, tenv, K, carries, fresh, reuse):
            a = env[src]
            if src not in carries or type(a) is not torch.Tensor or _hooked(mod) or not same():
                return generic(x, env, tenv, K, carries, fresh, reuse)
            y = env[node] = forward(a)
            tenv[node] = _per_sample(tenv[src], _Code(y), K, op, reuse and sole and src in fresh)
            carries.add(node)
            fresh.add(node)
        return step
    return make


def _relu_kernels(mod):
    return None if mod.inplace else (torch.relu, _RELU_KERNEL, lambda: True)


def _leaky_kernels(mod):
    slope = mod.negative_slope
    if mod.inplace or not slope > 0:
        return None
    return (lambda a: torch._C._nn.leaky_relu(a, slope),
            _backward_kernel(torch.ops.aten.leaky_relu_backward, slope, True),
            lambda: mod.negative_slope == slope)  # a slope changed since: the walk's code


def _fused_module(tangent_of):
    """Modules whose primal is the module call (convolutions, batch-norm): the tangent from
    ``tangent_of(mod, t, K, a, inplace)``."""
    def make(node, mod, generic):
        if isinstance(mod, nn.modules.batchnorm._BatchNorm) and (mod.training or mod.running_var is None):
            return None  # the walk raises the error that names it
        src = node.args[0]
        sole = len(src.users) == 1

        def step(x, env, tenv, K, carries, fresh, reuse):
            if src not in carries:
                return generic(x, env, tenv, K, carries, fresh, reuse)
            a = env[src]
            env[node] = mod(a)
            tenv[node] = tangent_of(mod, tenv[src], K, a, reuse and sole and src in fresh)
            carries.add(node)
            fresh.add(node)
        return step
    return make


def _conv_tangent(mod, t, K, a, inplace):
    """A convolution's tangent: the convolution without its bias. Small 1-D tangents take
    PyTorch's im2col kernel instead of oneDNN's, whose fixed cost per call dominates there (on a
    2-core CPU, one thread: 14 against 46 us for the 1-D conv net's first convolution at batch 8,
    33 against 64 us for its second; at batch 64, 16384 input entries, 1.06x faster on one thread
    but not on two, where oneDNN uses both).
    The primal keeps the module's own call, so y is model(x) bit for bit; the tangent differs
    by rounding only."""
    if type(mod) is nn.Conv1d and t.numel() <= _IM2COL_MAX and t.device.type == "cpu" \
            and not isinstance(mod.padding, str) and mod.padding_mode == "zeros" and mod.groups == 1 \
            and mod.dilation == (1,) and t.dim() == 3 and t.dtype in (torch.float32, torch.float64) \
            and type(t) is torch.Tensor:
        w = mod.weight
        return torch._C._nn.thnn_conv2d(t.unsqueeze(2), w.unsqueeze(2), (1, w.shape[-1]), None,
                                        (1, mod.stride[0]), (0, mod.padding[0])).squeeze(2)
    w = mod.weight
    if w.dim() == 4 and w.shape[-2] * w.shape[-1] > 9:  # see _conv_input: larger kernels keep the layout
        return mod._conv_forward(t, w, None)
    return mod._conv_forward(_conv_input(t, K), w, None)


_IM2COL_MAX = 8192  # input entries up to which a 1-D tangent convolution takes the im2col kernel


def _conv_t_tangent(fn):
    """A transposed convolution's tangent, without the bias. Into at most 3 channels (an image)
    the 2-D one takes PyTorch's im2col kernel on a contiguous tangent: oneDNN's is slow there
    (16 to 1 channel, 8x8 to 16x16, one thread: 0.03 against 0.15 ms on 8 images, 3.3 against
    12 ms on 1024 from channels-last; 16 to 3 channels: 0.05 against 0.14 ms, 8.6 against 13 ms).
    The primal keeps the module call; the tangent differs by rounding only."""
    def tangent(mod, t, K, a, inplace):
        w = mod.weight
        if fn is F.conv_transpose2d and w.shape[1] <= 3 and mod.groups == 1 and t.dim() == 4 \
                and t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) \
                and type(t) is torch.Tensor and mod.dilation == (1, 1):
            return torch._C._nn.slow_conv_transpose2d(t.contiguous(), w, w.shape[2:], None, mod.stride,
                                                       mod.padding, mod.output_padding)
        return fn(_conv_input(t, K), w, None, mod.stride, mod.padding, mod.output_padding,
                  mod.groups, mod.dilation)
    return tangent


def _bn_tangent(mod, t, K, a, inplace):
    scale = _bn_scale(mod.running_var, mod.weight, mod.eps, a.dim())
    return t.mul_(scale) if inplace else t * scale


def _fused_pool(node, mod, generic):
    """Max-pool without indices returned: the walk's rule (_max_pool_rule) called directly, its
    tangent applied at once."""
    if mod.return_indices:
        return None
    src = node.args[0]
    nd = _MAX_POOL_ND[type(mod)]

    def step(x, env, tenv, K, carries, fresh, reuse):
        if src not in carries:
            return generic(x, env, tenv, K, carries, fresh, reuse)
        out, tangent = _max_pool_rule(node, env[src], nd, mod.kernel_size, mod.stride, mod.padding,
                                      mod.dilation, mod.ceil_mode)
        env[node] = out
        tenv[node] = tangent(K, (tenv[src],))
        carries.add(node)
        fresh.add(node)
    return step


def _fused_reshaping(node, mod, generic):
    """Flatten and Unflatten: the module on the primal and on the tangent (a view, not fresh)."""
    src = node.args[0]

    def step(x, env, tenv, K, carries, fresh, reuse):
        if src not in carries:
            return generic(x, env, tenv, K, carries, fresh, reuse)
        out = env[node] = mod(env[src])
        tenv[node] = _batch_preserving(node, out, K)(mod(tenv[src]), out)
        carries.add(node)
    return step


_FUSED = {
    nn.MaxPool1d: _fused_pool, nn.MaxPool2d: _fused_pool, nn.MaxPool3d: _fused_pool,
    nn.Flatten: _fused_reshaping, nn.Unflatten: _fused_reshaping,
    nn.Linear: _fused_linear,
    nn.ReLU: _fused_unit(_relu_kernels),
    nn.LeakyReLU: _fused_unit(_leaky_kernels),
    nn.Conv1d: _fused_module(_conv_tangent), nn.Conv2d: _fused_module(_conv_tangent),
    nn.Conv3d: _fused_module(_conv_tangent),
    nn.ConvTranspose1d: _fused_module(_conv_t_tangent(F.conv_transpose1d)),
    nn.ConvTranspose2d: _fused_module(_conv_t_tangent(F.conv_transpose2d)),
    nn.ConvTranspose3d: _fused_module(_conv_t_tangent(F.conv_transpose3d)),
    nn.BatchNorm1d: _fused_module(_bn_tangent), nn.BatchNorm2d: _fused_module(_bn_tangent),
    nn.BatchNorm3d: _fused_module(_bn_tangent),
}
