r"""Small self-supervised and supervised encoders on digits, and the metrics of RCDM.

What the RCDM chapter conditions on and how it scores the samples:

:func:`digits_images`
    scikit-learn's digits as images ``(N, 1, S, S)`` in ``[-1, 1]`` (background -1), the fixed
    train/test split of :func:`helpers.generative.load_digits_tensor`, upsampled to ``S``.
:func:`augment`, :func:`transform`
    SimCLR's random augmentations at digits scale (rotation, scale, shift, contrast, noise)
    and the same transforms with fixed amounts, for the augmentation test.
:class:`Encoder`, :func:`train_simclr`, :func:`train_supervised`
    a four-convolution backbone with global average pooling (64-d) and a projector
    (64 -> 128 -> 32), trained with SimCLR's NT-Xent loss; the same backbone trained with
    cross-entropy. Both come back frozen (eval mode, no gradients). With ``cache_dir`` the
    trained weights are cached as in :func:`helpers.diffusion.train_denoiser`.
:func:`train_decoder`
    the deterministic baseline: an MLP from a representation to the image, trained with the
    squared error, so it estimates :math:`E[x \mid h]`.
:func:`retrieval_rank`, :func:`class_agreement`, :func:`diversity`, :func:`follow_rate`
    the faithfulness and invariance metrics; the Fréchet distance is
    :func:`helpers.metrics.frechet_distance`.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from helpers._checks import ParameterError, check_int, check_option, check_real, resolve_seed
from helpers.diffusion import _cpu_threads, cache_key, load_cached, save_cached

__all__ = ["digits_images", "augment", "transform", "TRANSFORMS", "Encoder", "nt_xent", "train_simclr",
           "train_supervised", "represent", "train_decoder", "retrieval_rank", "class_agreement",
           "diversity", "follow_rate"]

#: The fixed transforms of :func:`transform`.
TRANSFORMS = ("zoom", "contrast", "rotate", "shift", "hflip")


def _check_images(X, name: str = "X") -> torch.Tensor:
    if not isinstance(X, torch.Tensor) or not X.is_floating_point():
        raise ParameterError(f"{name} must be a floating-point torch tensor (N, C, H, W)")
    if X.dim() != 4:
        raise ParameterError(f"{name} must have shape (N, C, H, W), got {tuple(X.shape)}")
    if not torch.isfinite(X).all():
        raise ParameterError(f"{name} holds NaN or infinite values")
    return X


def digits_images(split: str = "train", size: int = 8, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Digits images ``(N, 1, size, size)`` in ``[-1, 1]`` and their labels ``(N,)``.

    ``split`` is ``"train"``, ``"test"`` (the fixed stratified 70/30 split of
    :func:`helpers.generative.load_digits_tensor`) or ``"all"``; ``size`` a multiple of 8
    (bilinear upsampling of the 8x8 originals).

    Examples
    --------
    >>> X, y = digits_images("test")
    >>> tuple(X.shape), float(X.min()), float(X.max())
    ((539, 1, 8, 8), -1.0, 1.0)
    """
    from helpers.generative import load_digits_tensor

    split = check_option(split, "split", ("train", "test", "all"))
    size = check_int(size, "size", low=8)
    if size % 8:
        raise ParameterError(f"size must be a multiple of 8, got {size}")
    X, y = load_digits_tensor(split=split)
    X = X.view(-1, 1, 8, 8) * 2 - 1
    if size != 8:
        X = F.interpolate(X, size=(size, size), mode="bilinear", align_corners=False).clamp(-1, 1)
    dev = torch.device(device) if device is not None else X.device
    return X.to(dev), y.to(dev)


def _warp(x: torch.Tensor, angle: torch.Tensor, scale: torch.Tensor, tx: torch.Tensor,
          ty: torch.Tensor) -> torch.Tensor:
    """Rotate by ``angle`` (radians), scale the content by ``scale`` and shift by (tx, ty) in
    pixels, with the -1 background filled in."""
    n, _, h, w = x.shape
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, -tx * 2 / w], 1), torch.stack([sin, cos, -ty * 2 / h], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    # shift to [0, 2] so that zero padding is the background, then back
    return F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1


def augment(x: torch.Tensor, *, generator: torch.Generator | None = None, rotate: float = 15.0,
            scale: tuple[float, float] = (0.85, 1.15), shift: float = 1.0,
            contrast: tuple[float, float] = (0.7, 1.0), noise: float = 0.1) -> torch.Tensor:
    """SimCLR's random view of each image, at digits scale.

    A random rotation in ``[-rotate, rotate]`` degrees, scale in ``scale``, shift in
    ``[-shift, shift]`` pixels (of an 8x8 image; proportionally more at larger sizes), a
    contrast factor in ``contrast`` (towards the -1 background) and Gaussian noise of
    standard deviation ``noise``; the result is clipped to ``[-1, 1]``. Random numbers come
    from ``generator`` (drawn on the CPU), so a seeded generator gives the same views on any
    device.

    Examples
    --------
    >>> X, _ = digits_images("test")
    >>> g = torch.Generator().manual_seed(0)
    >>> v = augment(X[:4], generator=g)
    >>> v.shape == X[:4].shape and bool((v.abs() <= 1).all())
    True
    """
    x = _check_images(x, "x")
    n = x.shape[0]
    u = lambda: torch.rand(n, generator=generator, dtype=torch.float32)  # noqa: E731
    px = x.shape[-1] / 8
    angle = (u() * 2 - 1) * math.radians(rotate)
    sc = scale[0] + u() * (scale[1] - scale[0])
    tx, ty = (u() * 2 - 1) * shift * px, (u() * 2 - 1) * shift * px
    c = contrast[0] + u() * (contrast[1] - contrast[0])
    z = torch.randn(x.shape, generator=generator, dtype=torch.float32)
    dev = x.device
    out = _warp(x, angle.to(dev), sc.to(dev), tx.to(dev), ty.to(dev))
    out = (out + 1) * c.to(dev).view(-1, 1, 1, 1) - 1 + noise * z.to(dev, x.dtype)
    return out.clamp(-1, 1)


def transform(x: torch.Tensor, kind: str, amount: float) -> torch.Tensor:
    """A fixed transform of every image: ``"zoom"`` (content scaled by ``amount``; 0.8 zooms
    out), ``"contrast"`` (intensity above the background times ``amount``), ``"rotate"``
    (``amount`` degrees), ``"shift"`` (``amount`` pixels to the right, in 8x8 pixels) or
    ``"hflip"`` (``amount`` ignored).

    Examples
    --------
    >>> X, _ = digits_images("test")
    >>> bool(torch.equal(transform(transform(X, "hflip", 0), "hflip", 0), X))
    True
    >>> torch.allclose(transform(X, "rotate", 0.0), X, atol=1e-5)
    True
    """
    x = _check_images(x, "x")
    kind = check_option(kind, "kind", TRANSFORMS)
    amount = check_real(amount, "amount")
    n, dev = x.shape[0], x.device
    one, zero = torch.ones(n, device=dev), torch.zeros(n, device=dev)
    if kind == "hflip":
        return x.flip(-1)
    if kind == "contrast":
        return ((x + 1) * amount - 1).clamp(-1, 1)
    if kind == "zoom":
        if amount <= 0:
            raise ParameterError(f"zoom amount must be positive, got {amount}")
        return _warp(x, zero, one * amount, zero, zero)
    if kind == "rotate":
        return _warp(x, one * math.radians(amount), one, zero, zero)
    return _warp(x, zero, one, one * amount * x.shape[-1] / 8, zero)


# --------------------------------------------------------------------------------------------
# Encoders
# --------------------------------------------------------------------------------------------


class Encoder(nn.Module):
    """Backbone (four 3x3 convolutions with BatchNorm and ReLU, one stride 2, global average
    pooling: ``backbone_dim``-d, non-negative) and projector (``backbone_dim -> hidden ->
    proj_dim``), plus an optional linear ``head`` for the supervised encoder.

    ``forward(x)`` is the backbone representation; :meth:`project` the projector's output.

    Examples
    --------
    >>> enc = Encoder().eval()
    >>> x = torch.zeros(2, 1, 8, 8)
    >>> enc(x).shape, enc.project(x).shape
    (torch.Size([2, 64]), torch.Size([2, 32]))
    """

    def __init__(self, channels: int = 1, width: int = 32, backbone_dim: int = 64, hidden: int = 128,
                 proj_dim: int = 32, n_classes: int | None = None):
        super().__init__()
        w, d = check_int(width, "width", low=1), check_int(backbone_dim, "backbone_dim", low=1)
        self.config = dict(channels=channels, width=w, backbone_dim=d, hidden=hidden, proj_dim=proj_dim,
                           n_classes=n_classes)

        def block(cin, cout, stride=1):
            return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                    nn.ReLU()]

        self.backbone = nn.Sequential(*block(channels, w), *block(w, 2 * w, 2), *block(2 * w, d),
                                      *block(d, d), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.projector = nn.Sequential(nn.Linear(d, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                       nn.Linear(hidden, proj_dim))
        self.head = nn.Linear(d, n_classes) if n_classes else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The projector's embedding of ``x``."""
        return self.projector(self.backbone(x))


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float = 0.2) -> torch.Tensor:
    r"""SimCLR's NT-Xent loss of two views ``(n, d)``: cross-entropy of each embedding's
    positive (the other view of its image) among the other ``2n - 1``, cosine similarities
    divided by ``tau``.

    Examples
    --------
    >>> z = torch.eye(4)
    >>> float(nt_xent(z, z, tau=0.1)) < 1e-3
    True
    """
    tau = check_real(tau, "tau", low=0, low_open=True)
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ParameterError(f"z1 and z2 must both have shape (n, d), got {tuple(z1.shape)}, {tuple(z2.shape)}")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / tau
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, target)


def _frozen(model: nn.Module) -> nn.Module:
    return model.eval().requires_grad_(False)


def _fit_encoder(name, X, y, steps, batch_size, lr, seed, device, cache_dir, progress, loss_fn, enc_cfg,
                 extra_cfg, threads=1):
    X = _check_images(X)
    with _cpu_threads(threads, device if device is not None else X.device):
        return _fit_encoder_body(name, X, y, steps, batch_size, lr, seed, device, cache_dir, progress, loss_fn,
                                 enc_cfg, extra_cfg)


def _fit_encoder_body(name, X, y, steps, batch_size, lr, seed, device, cache_dir, progress, loss_fn, enc_cfg,
                      extra_cfg):
    steps = check_int(steps, "steps", low=1)
    batch_size = check_int(batch_size, "batch_size", low=2)
    lr = check_real(lr, "lr", low=0, low_open=True)
    seed = resolve_seed(seed)
    device = torch.device(device) if device is not None else X.device
    config = dict(enc=enc_cfg, steps=steps, batch_size=batch_size, lr=lr, seed=seed, **extra_cfg)
    key = cache_key(name, config, X, *(() if y is None else (y,)), source=_SOURCE)
    cached = load_cached(cache_dir, key)
    if cached is not None:
        try:
            enc = Encoder(**enc_cfg)
            enc.load_state_dict(cached["state"])
            return _frozen(enc.to(device)), {"losses": list(cached["losses"]), "cached": True, "key": key}
        except (RuntimeError, KeyError, TypeError):
            pass
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        enc = Encoder(**enc_cfg).to(device)
    gen = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.Adam(enc.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    Xd = X.to(device, torch.float32)
    yd = None if y is None else y.to(device)
    losses = []
    from helpers._progress import bar

    enc.train()
    for _ in bar(range(steps), progress=progress, desc=name, leave=False):
        idx = torch.randint(0, X.shape[0], (min(batch_size, X.shape[0]),), generator=gen).to(device)
        loss = loss_fn(enc, Xd[idx], None if yd is None else yd[idx], gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    enc = _frozen(enc)
    if cache_dir is not None:
        save_cached(cache_dir, key, {"key": key, "losses": losses,
                                     "state": {k: v.detach().cpu() for k, v in enc.state_dict().items()}})
    return enc, {"losses": losses, "cached": False, "key": key}


def train_simclr(X: torch.Tensor, *, steps: int = 400, batch_size: int = 256, lr: float = 2e-3,
                 tau: float = 0.2, seed: int | None = None, device=None, cache_dir=None,
                 progress: bool = False, threads: int | None = 1) -> tuple[Encoder, dict]:
    """Train an :class:`Encoder` with SimCLR: two :func:`augment` views of each image of a
    batch, NT-Xent (:func:`nt_xent`) on the projector's outputs, Adam with a one-cycle rate.

    Returns the frozen encoder (eval mode, no gradients) and ``{"losses", "cached", "key"}``.
    ``threads`` torch threads train it on a CPU (default 1; None leaves the setting alone).

    Examples
    --------
    >>> X, _ = digits_images("test")
    >>> enc, info = train_simclr(X[:64], steps=2, batch_size=16, seed=0)
    >>> enc.training, any(p.requires_grad for p in enc.parameters()), len(info["losses"])
    (False, False, 2)
    """
    tau = check_real(tau, "tau", low=0, low_open=True)

    def loss_fn(enc, xb, _, gen):
        return nt_xent(enc.project(augment(xb, generator=gen)), enc.project(augment(xb, generator=gen)), tau)

    return _fit_encoder("simclr", X, None, steps, batch_size, lr, seed, device, cache_dir, progress, loss_fn,
                        dict(channels=X.shape[1]), dict(tau=tau), threads)


def train_supervised(X: torch.Tensor, y: torch.Tensor, *, steps: int = 300, batch_size: int = 256,
                     lr: float = 2e-3, seed: int | None = None, device=None, cache_dir=None,
                     progress: bool = False, threads: int | None = 1) -> tuple[Encoder, dict]:
    """Train the same backbone with a linear head and cross-entropy on :func:`augment` views.

    Returns the frozen encoder (its ``head`` classifies) and ``{"losses", "cached", "key"}``.

    Examples
    --------
    >>> X, y = digits_images("test")
    >>> enc, info = train_supervised(X[:64], y[:64], steps=2, batch_size=16, seed=0)
    >>> enc.head(enc(X[:3])).shape
    torch.Size([3, 10])
    """
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.shape[0] != X.shape[0]:
        raise ParameterError("y must be a 1-D tensor of labels, one per image")
    n_classes = int(y.max()) + 1

    def loss_fn(enc, xb, yb, gen):
        return F.cross_entropy(enc.head(enc(augment(xb, generator=gen))), yb)

    return _fit_encoder("supervised", X, y, steps, batch_size, lr, seed, device, cache_dir, progress,
                        loss_fn, dict(channels=X.shape[1], n_classes=n_classes), {}, threads)


@torch.no_grad()
def represent(encoder: Encoder, X: torch.Tensor, which: str = "backbone", batch_size: int = 1024) -> torch.Tensor:
    """The frozen ``encoder``'s ``"backbone"`` or ``"projector"`` representation of ``X``,
    in eval mode, on ``X``'s device.

    Examples
    --------
    >>> represent(Encoder(), torch.zeros(3, 1, 8, 8), "projector").shape
    torch.Size([3, 32])
    """
    which = check_option(which, "which", ("backbone", "projector"))
    X = _check_images(X)
    was = encoder.training
    encoder.eval()
    dev = next(encoder.parameters()).device
    f = encoder if which == "backbone" else encoder.project
    out = torch.cat([f(xb.to(dev)) for xb in X.split(batch_size)]) if X.shape[0] else \
        f(torch.zeros(1, *X.shape[1:], device=dev))[:0]
    encoder.train(was)
    return out.to(X.device)


class _Decoder(nn.Module):
    def __init__(self, cond_dim: int, shape: Sequence[int], hidden: int):
        super().__init__()
        self.shape = tuple(shape)
        self.net = nn.Sequential(nn.Linear(cond_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, math.prod(self.shape)), nn.Tanh())
        self.register_buffer("mean", torch.zeros(cond_dim))
        self.register_buffer("std", torch.ones(cond_dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net((h - self.mean) / self.std).view(-1, *self.shape)


def train_decoder(H: torch.Tensor, X: torch.Tensor, *, steps: int = 1500, batch_size: int = 128,
                  hidden: int = 256, lr: float = 2e-3, seed: int | None = None,
                  threads: int | None = 1) -> nn.Module:
    r"""A deterministic decoder :math:`h \mapsto \hat x`: an MLP (two hidden ReLU layers, tanh
    output) trained with the squared error, so it estimates :math:`E[x \mid h]`. The input
    is standardised with the training statistics. Returned in eval mode, on ``H``'s device;
    trained on ``threads`` torch threads on a CPU (default 1).

    Examples
    --------
    >>> X, _ = digits_images("test")
    >>> dec = train_decoder(X.flatten(1), X, steps=5, seed=0)
    >>> dec(X[:2].flatten(1)).shape
    torch.Size([2, 1, 8, 8])
    """
    X = _check_images(X)
    if not isinstance(H, torch.Tensor) or H.dim() != 2 or H.shape[0] != X.shape[0]:
        raise ParameterError(f"H must have shape ({X.shape[0]}, d), got {getattr(H, 'shape', H)!r}")
    steps = check_int(steps, "steps", low=1)
    seed = resolve_seed(seed)
    with _cpu_threads(threads, H.device):
        return _fit_decoder(H.detach().float(), X, steps, batch_size, hidden, lr, seed)


def _fit_decoder(H, X, steps, batch_size, hidden, lr, seed):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        dec = _Decoder(H.shape[1], X.shape[1:], check_int(hidden, "hidden", low=1)).to(H.device)
    dec.mean.copy_(H.mean(0))
    dec.std.copy_(H.std(0).clamp_min(1e-6))
    gen = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.Adam(dec.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    Xd = X.to(H.device, torch.float32)
    for _ in range(steps):
        idx = torch.randint(0, H.shape[0], (batch_size,), generator=gen).to(H.device)
        loss = F.mse_loss(dec(H[idx]), Xd[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return dec.eval().requires_grad_(False)


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def retrieval_rank(queries: torch.Tensor, pool: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """For each query, the rank of its target in the pool by Euclidean distance (1: nearest).

    Query ``i``'s rank is 1 plus the number of pool items strictly closer to it than
    ``pool[target[i]]`` (ties favour the target). RCDM's faithfulness score: the query is a
    sample's representation, the pool the conditioning images' representations.

    Parameters
    ----------
    queries
        ``(n, d)``.
    pool
        ``(m, d)``.
    target
        ``(n,)`` int indices into the pool.

    Returns
    -------
    torch.Tensor
        ``(n,)`` int64 ranks in ``[1, m]``, on the queries' device.

    Examples
    --------
    >>> pool = torch.tensor([[0.0], [1.0], [3.0]])
    >>> retrieval_rank(torch.tensor([[0.9], [2.9]]), pool, torch.tensor([1, 0]))
    tensor([1, 3])
    """
    if not (isinstance(queries, torch.Tensor) and isinstance(pool, torch.Tensor)):
        raise ParameterError("queries and pool must be torch tensors")
    if queries.dim() != 2 or pool.dim() != 2 or queries.shape[1] != pool.shape[1]:
        raise ParameterError(f"queries (n, d) and pool (m, d) must share d, got {tuple(queries.shape)}, "
                             f"{tuple(pool.shape)}")
    target = torch.as_tensor(target, device=queries.device).long()
    if target.shape != (queries.shape[0],) or int(target.min()) < 0 or int(target.max()) >= pool.shape[0]:
        raise ParameterError("target must hold one pool index per query")
    d = torch.cdist(queries.double(), pool.to(queries.device).double())
    own = d.gather(1, target[:, None])
    return (d < own).sum(1) + 1


def class_agreement(predicted: torch.Tensor, labels: torch.Tensor) -> float:
    """The fraction of samples whose judged class equals their condition's class.

    Examples
    --------
    >>> class_agreement(torch.tensor([1, 2, 3, 3]), torch.tensor([1, 2, 3, 4]))
    0.75
    """
    predicted, labels = torch.as_tensor(predicted), torch.as_tensor(labels)
    if predicted.shape != labels.shape or predicted.numel() == 0:
        raise ParameterError("predicted and labels must be non-empty and of the same shape")
    return float((predicted.to(labels.device) == labels).double().mean())


def diversity(samples: torch.Tensor) -> torch.Tensor:
    """Within-condition diversity: for ``samples`` of shape ``(n, k, ...)`` (``k >= 2``
    samples per condition), the mean Euclidean distance between two samples of the same
    condition, over the ``k(k-1)/2`` pairs: shape ``(n,)``.

    Examples
    --------
    >>> diversity(torch.tensor([[[0.0, 0.0], [3.0, 4.0]]]))
    tensor([5.])
    """
    if not isinstance(samples, torch.Tensor) or samples.dim() < 3 or samples.shape[1] < 2:
        raise ParameterError("samples must have shape (n, k, ...) with k >= 2")
    flat = samples.flatten(2).double()
    d = torch.cdist(flat, flat)
    k = flat.shape[1]
    return (d.sum((1, 2)) / (k * (k - 1))).to(samples.dtype if samples.is_floating_point() else torch.float64)


def follow_rate(samples: torch.Tensor, x: torch.Tensor, tx: torch.Tensor) -> torch.Tensor:
    """Per condition, the fraction of samples closer (in pixels) to the transformed image
    ``tx`` than to the original ``x``: 1 means the samples reproduce the transform.

    Parameters
    ----------
    samples
        ``(n, k, C, H, W)``: ``k`` samples conditioned on the representation of ``tx[i]``.
    x, tx
        ``(n, C, H, W)``.

    Returns
    -------
    torch.Tensor
        ``(n,)`` float64, on the samples' device.

    Examples
    --------
    >>> x, tx = torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1)
    >>> follow_rate(torch.tensor([0.9, 0.2, 0.7]).view(1, 3, 1, 1, 1), x, tx)
    tensor([0.6667], dtype=torch.float64)
    """
    if not isinstance(samples, torch.Tensor) or samples.dim() != x.dim() + 1 or samples.shape[0] != x.shape[0] \
            or x.shape != tx.shape or samples.shape[2:] != x.shape[1:]:
        raise ParameterError("samples (n, k, ...) and x, tx (n, ...) must match")
    s = samples.flatten(2).double()
    d_x = (s - x.flatten(1).double()[:, None].to(s.device)).norm(dim=2)
    d_t = (s - tx.flatten(1).double()[:, None].to(s.device)).norm(dim=2)
    return (d_t < d_x).double().mean(1)


_SOURCE = open(__file__, encoding="utf-8").read()  # the training code, part of every cache key
