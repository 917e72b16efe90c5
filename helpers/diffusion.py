r"""Denoising diffusion at toy scale: noise schedules, a conditional U-Net, training, samplers.

The pieces of a conditional DDPM (Ho et al. 2020) as RCDM uses them (Bordes et al. 2022):

:class:`NoiseSchedule`
    the forward process :math:`q(x_t \mid x_0) = \mathcal N(\sqrt{\bar\alpha_t} x_0,
    (1 - \bar\alpha_t) I)` for a linear (DDPM) or cosine (improved DDPM) schedule of
    :math:`\beta_t`, with :meth:`NoiseSchedule.q_sample`.
:class:`CondUNet`
    a small U-Net that predicts the noise :math:`\epsilon_\theta(x_t, t, h)`. The condition
    :math:`h` (a representation vector) enters as in RCDM's released code: a linear map of
    :math:`h` is added to the time embedding, and every residual block normalises with an
    adaptive group norm :math:`\mathrm{GN}(u)(1 + s) + b`, with :math:`(s, b)` a linear map of
    that embedding. Output convolutions start at zero, so an untrained model outputs 0.
:func:`train_denoiser`
    the :math:`\epsilon`-MSE objective, AdamW with a one-cycle learning rate, gradient
    clipping and an exponential moving average (EMA) of the weights, which it returns. With
    ``cache_dir`` the trained weights are stored on disk, keyed by a hash of the
    configuration, the data and this module's source; a corrupt or stale file is retrained.
:func:`ddpm_sample`, :func:`ddim_sample`
    ancestral and DDIM sampling on the full or a respaced schedule. ``eps_model`` is any
    callable ``(x_t, t, cond) -> eps``, so the samplers are tested against the exact
    :math:`\epsilon`-predictor of a known distribution, :func:`gaussian_eps`.

Images are tensors of shape ``(N, C, H, W)`` with values in ``[-1, 1]``; every output is on
the input's (or the model's) device.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from helpers._checks import ParameterError, check_int, check_option, check_real, resolve_seed
from helpers.generative import _cpu_threads

__all__ = ["NoiseSchedule", "timestep_embedding", "CondUNet", "train_denoiser", "ddpm_sample",
           "ddim_sample", "gaussian_eps", "respaced_timesteps", "cache_key", "load_cached",
           "save_cached"]

KINDS = ("linear", "cosine")


# --------------------------------------------------------------------------------------------
# The forward process
# --------------------------------------------------------------------------------------------


class NoiseSchedule:
    r"""The forward (noising) process of a DDPM with ``T`` steps.

    ``kind="linear"``: :math:`\beta_t` evenly spaced from ``1e-4 * 1000 / T`` to
    ``0.02 * 1000 / T`` (DDPM's schedule, rescaled for ``T`` as in ADM). ``kind="cosine"``:
    :math:`\bar\alpha_t = f(t)/f(0)`, :math:`f(t) = \cos^2\big(\frac{t/T + s}{1 + s}
    \frac{\pi}{2}\big)` with :math:`s = 0.008`, and :math:`\beta_t` clipped at 0.999
    (improved DDPM). Steps are indexed ``t = 0, ..., T - 1`` as in the reference code:
    ``alphas_cumprod[t]`` is :math:`\bar\alpha` after ``t + 1`` noising steps.

    Attributes
    ----------
    betas, alphas, alphas_cumprod : torch.Tensor
        Shape ``(T,)``, float64, on the CPU.

    Examples
    --------
    >>> s = NoiseSchedule(T=1000)
    >>> round(float(s.alphas_cumprod[0]), 6), float(s.alphas_cumprod[-1]) < 1e-4
    (0.9999, True)
    >>> x0 = torch.ones(2, 1, 8, 8)
    >>> s.q_sample(x0, torch.tensor([0, 999]), torch.zeros_like(x0))[:, 0, 0, 0].round(decimals=4)
    tensor([1.0000, 0.0064])
    """

    def __init__(self, T: int = 1000, kind: str = "linear"):
        self.T = check_int(T, "T", low=2)
        self.kind = check_option(kind, "kind", KINDS)
        if kind == "linear":
            scale = 1000 / self.T
            betas = torch.linspace(1e-4 * scale, 0.02 * scale, self.T, dtype=torch.float64)
            if float(betas[-1]) >= 1:
                raise ParameterError(f"T={T} is too small for the linear schedule (beta_T >= 1); use T >= 21")
        else:
            s = 0.008
            steps = torch.arange(self.T + 1, dtype=torch.float64) / self.T
            f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
            betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
        self.betas = betas
        self.alphas = 1 - betas
        self.alphas_cumprod = torch.cumprod(self.alphas, 0)

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return f"NoiseSchedule(T={self.T}, kind={self.kind!r})"

    def _abar(self, t, like: torch.Tensor) -> torch.Tensor:
        t = _check_t(t, self.T, like.shape[0])
        a = self.alphas_cumprod.to(like.device)[t.to(like.device)]
        return a.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, x0: torch.Tensor, t, noise: torch.Tensor) -> torch.Tensor:
        r""":math:`x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon`.

        Parameters
        ----------
        x0
            Clean data, shape ``(N, ...)``.
        t
            An int or an int tensor of shape ``(N,)``, steps in ``[0, T)``.
        noise
            :math:`\epsilon`, the shape of ``x0``.

        Returns
        -------
        torch.Tensor
            The shape, dtype and device of ``x0``.
        """
        x0 = _check_tensor(x0, "x0")
        noise = _check_tensor(noise, "noise")
        if noise.shape != x0.shape:
            raise ParameterError(f"noise must have the shape of x0 {tuple(x0.shape)}, got {tuple(noise.shape)}")
        a = self._abar(t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise.to(x0.device, x0.dtype)


def _check_tensor(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ParameterError(f"{name} must be a torch tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ParameterError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if x.dim() < 1:
        raise ParameterError(f"{name} must have a batch dimension, got a scalar")
    return x


def _check_t(t, T: int, n: int) -> torch.Tensor:
    if isinstance(t, torch.Tensor):
        if t.dtype in (torch.float16, torch.float32, torch.float64, torch.bfloat16, torch.bool):
            raise ParameterError(f"t must hold integer steps, got dtype {t.dtype}")
        t = t.long().reshape(-1)
        if t.numel() == 1 and n != 1:
            t = t.expand(n)
    else:
        t = torch.full((n,), check_int(t, "t", low=0, high=T - 1), dtype=torch.long)
    if t.numel() != n:
        raise ParameterError(f"t must be an int or hold one step per sample ({n}), got {t.numel()}")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= T):
        raise ParameterError(f"steps t must lie in [0, {T}), got [{int(t.min())}, {int(t.max())}]")
    return t


def respaced_timesteps(T: int, steps: int | None) -> torch.Tensor:
    """The ``steps`` kept of ``0, ..., T - 1``, evenly spaced and rounded, always with 0 and T - 1.

    Examples
    --------
    >>> respaced_timesteps(1000, 5)
    tensor([  0, 250, 500, 749, 999])
    """
    T = check_int(T, "T", low=2)
    if steps is None:
        return torch.arange(T)
    steps = check_int(steps, "steps", low=2, high=T, hint=" (respaced steps, at most T)")
    return torch.round(torch.linspace(0, T - 1, steps, dtype=torch.float64)).long()


# --------------------------------------------------------------------------------------------
# The conditional U-Net
# --------------------------------------------------------------------------------------------


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    r"""Sinusoidal embedding of the steps ``t`` (shape ``(N,)``) as in ADM: ``(N, dim)``.

    Examples
    --------
    >>> timestep_embedding(torch.tensor([0, 10]), 4).shape
    torch.Size([2, 4])
    """
    dim = check_int(dim, "dim", low=2)
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class _ResBlock(nn.Module):
    """GN-SiLU-conv, adaptive group norm from the embedding, SiLU-conv (zero-initialised)."""

    def __init__(self, cin: int, cout: int, emb_dim: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.conv2 = _zero(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift  # adaptive group norm (RCDM's conditioning)
        return self.skip(x) + self.conv2(F.silu(h))


class CondUNet(nn.Module):
    r"""A small U-Net :math:`\epsilon_\theta(x_t, t, h)` with adaptive group-norm conditioning.

    The embedding of a block is :math:`e = \mathrm{MLP}(\mathrm{sin}(t)) + W h + b` (RCDM's
    ``emb = emb + self.ssl_emb(feat)``); each residual block applies
    :math:`\mathrm{GN}(u)(1 + s) + b'` with :math:`(s, b') = \mathrm{Linear}(\mathrm{SiLU}(e))`.
    One residual block per level, ``len(ch_mult)`` levels (halving the resolution between
    them), a middle block, and the mirrored decoder with skip connections. The last
    convolution of each block and the output convolution are zero-initialised, so the model's
    output is exactly 0 at initialisation.

    Parameters
    ----------
    image_size
        Height and width, divisible by ``2 ** (len(ch_mult) - 1)``.
    channels
        Image channels (1 for digits).
    width
        Channels at full resolution; level ``i`` has ``width * ch_mult[i]``.
    ch_mult
        Channel multipliers per level.
    cond_dim
        Length of the condition vector ``h``; ``None`` for an unconditional model.
    groups
        Groups of every GroupNorm (must divide every level's channels).

    Examples
    --------
    >>> net = CondUNet(image_size=8, width=16, cond_dim=4)
    >>> x, t, h = torch.randn(3, 1, 8, 8), torch.tensor([0, 5, 999]), torch.randn(3, 4)
    >>> out = net(x, t, h)
    >>> out.shape, bool((out == 0).all())
    (torch.Size([3, 1, 8, 8]), True)
    """

    def __init__(self, image_size: int = 8, channels: int = 1, width: int = 32,
                 ch_mult: Sequence[int] = (1, 2), cond_dim: int | None = None, groups: int = 8):
        super().__init__()
        image_size = check_int(image_size, "image_size", low=1)
        channels = check_int(channels, "channels", low=1)
        width = check_int(width, "width", low=1)
        groups = check_int(groups, "groups", low=1)
        ch_mult = tuple(check_int(m, "ch_mult entries", low=1) for m in ch_mult)
        if not ch_mult:
            raise ParameterError("ch_mult needs at least one level")
        if image_size % 2 ** (len(ch_mult) - 1):
            raise ParameterError(f"image_size={image_size} must be divisible by 2**(len(ch_mult) - 1) = "
                                 f"{2 ** (len(ch_mult) - 1)}")
        chans = [width * m for m in ch_mult]
        if any(c % groups for c in chans):
            raise ParameterError(f"groups={groups} must divide every level's channels {chans}")
        self.cond_dim = check_int(cond_dim, "cond_dim", low=1, none_ok=True)
        self.config = dict(image_size=image_size, channels=channels, width=width, ch_mult=list(ch_mult),
                           cond_dim=self.cond_dim, groups=groups)
        emb = 4 * width
        self.emb_dim = emb
        self.time = nn.Sequential(nn.Linear(width, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.cond = nn.Linear(self.cond_dim, emb) if self.cond_dim else None
        # the condition is standardised with the training set's statistics (set by train_denoiser)
        self.register_buffer("cond_mean", torch.zeros(self.cond_dim or 1))
        self.register_buffer("cond_std", torch.ones(self.cond_dim or 1))
        self.inp = nn.Conv2d(channels, width, 3, padding=1)
        self.down, self.pool = nn.ModuleList(), nn.ModuleList()
        c = width
        for i, ci in enumerate(chans):
            self.down.append(_ResBlock(c, ci, emb, groups))
            c = ci
            self.pool.append(nn.Conv2d(c, c, 3, stride=2, padding=1) if i < len(chans) - 1 else nn.Identity())
        self.mid = _ResBlock(c, c, emb, groups)
        self.up, self.unpool = nn.ModuleList(), nn.ModuleList()
        for i, ci in reversed(list(enumerate(chans))):
            self.up.append(_ResBlock(c + ci, ci, emb, groups))
            c = ci
            self.unpool.append(nn.Conv2d(c, chans[i - 1], 3, padding=1) if i > 0 else nn.Identity())
            c = chans[i - 1] if i > 0 else c
        self.out = nn.Sequential(nn.GroupNorm(groups, c), nn.SiLU(), _zero(nn.Conv2d(c, channels, 3, padding=1)))

    def embed(self, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """The block embedding ``e``: time MLP plus the linear map of the standardised condition."""
        e = self.time(timestep_embedding(t, self.config["width"]).to(self.time[0].weight.dtype))
        if self.cond is not None:
            if cond is None:
                raise ParameterError("this CondUNet is conditional (cond_dim="
                                     f"{self.cond_dim}); pass cond of shape (N, {self.cond_dim})")
            if cond.dim() != 2 or cond.shape[1] != self.cond_dim or cond.shape[0] != t.shape[0]:
                raise ParameterError(f"cond must have shape ({t.shape[0]}, {self.cond_dim}), got {tuple(cond.shape)}")
            e = e + self.cond((cond.to(e.dtype) - self.cond_mean) / self.cond_std)
        return e

    def forward(self, x: torch.Tensor, t, cond: torch.Tensor | None = None) -> torch.Tensor:
        """The predicted noise, the shape of ``x``; ``t`` is an int or one step per sample."""
        x = _check_tensor(x, "x")
        t = _check_t(t, 10**9, x.shape[0]).to(x.device)
        e = self.embed(t, cond)
        h = self.inp(x)
        skips = []
        for block, pool in zip(self.down, self.pool):
            h = block(h, e)
            skips.append(h)
            h = pool(h)
        h = self.mid(h, e)
        for block, unpool in zip(self.up, self.unpool):
            if h.shape[-1] != skips[-1].shape[-1]:
                h = F.interpolate(h, size=skips[-1].shape[-2:], mode="nearest")
            h = block(torch.cat([h, skips.pop()], dim=1), e)
            h = unpool(h)
        return self.out(h)


# --------------------------------------------------------------------------------------------
# Training, with an EMA of the weights and an on-disk cache
# --------------------------------------------------------------------------------------------


def _source_hash() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


def cache_key(name: str, config: dict, *tensors: torch.Tensor, source: str = "") -> str:
    """A hex key for a trained artefact: ``name``, the JSON of ``config``, the bytes of the
    training data ``tensors``, this module's source and any extra ``source`` text.

    Examples
    --------
    >>> cache_key("m", {"a": 1}) == cache_key("m", {"a": 1}) != cache_key("m", {"a": 2})
    True
    """
    h = hashlib.sha256()
    h.update(name.encode())
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    for x in tensors:
        x = x.detach().to("cpu").contiguous()
        h.update(str((tuple(x.shape), str(x.dtype))).encode())
        h.update(x.numpy().tobytes() if x.dtype != torch.bfloat16 else x.float().numpy().tobytes())
    h.update(_source_hash().encode())
    h.update(source.encode())
    return h.hexdigest()[:24]


def save_cached(cache_dir, key: str, payload: dict) -> Path:
    """Write ``payload`` (tensors, numbers, lists, strings) atomically to ``cache_dir/<key>.pt``,
    with a checksum that :func:`load_cached` verifies."""
    path = Path(cache_dir)
    path.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(payload, buf)
    blob = buf.getvalue()
    tmp = path / f".{key}.{os.getpid()}.tmp"
    tmp.write_bytes(hashlib.sha256(blob).hexdigest().encode() + b"\n" + blob)
    os.replace(tmp, path / f"{key}.pt")
    return path / f"{key}.pt"


def load_cached(cache_dir, key: str) -> dict | None:
    """The payload saved under ``key``, or None when the file is missing, corrupt (checksum or
    unpickling fails) or was written for another key: the caller retrains."""
    if cache_dir is None:
        return None
    file = Path(cache_dir) / f"{key}.pt"
    try:
        raw = file.read_bytes()
        digest, blob = raw.split(b"\n", 1)
        if hashlib.sha256(blob).hexdigest().encode() != digest:
            return None
        payload = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception:  # missing, truncated, garbage: retrain, never trust it
        return None
    if not isinstance(payload, dict) or payload.get("key") != key:
        return None
    return payload


def _check_images(X, name: str = "X") -> torch.Tensor:
    X = _check_tensor(X, name)
    if X.dim() != 4:
        raise ParameterError(f"{name} must have shape (N, C, H, W), got {tuple(X.shape)}")
    if not torch.isfinite(X).all():
        raise ParameterError(f"{name} holds NaN or infinite values")
    return X


def train_denoiser(X: torch.Tensor, cond: torch.Tensor | None = None, *, steps: int = 1000,
                   batch_size: int = 64, lr: float = 2e-3, ema: float = 0.995, T: int = 1000,
                   kind: str = "linear", width: int = 32, ch_mult: Sequence[int] = (1, 2),
                   groups: int = 8, seed: int | None = None, device=None, cache_dir=None,
                   progress: bool = False, threads: int | None = 1) -> tuple[CondUNet, dict]:
    r"""Train a :class:`CondUNet` on :math:`\lVert \epsilon - \epsilon_\theta(x_t, t, h)\rVert^2`.

    Each step draws a batch of images (with their conditions), steps ``t`` uniform in
    ``[0, T)`` and noise :math:`\epsilon`, and takes an AdamW step (weight decay 0, one-cycle
    learning rate peaking at ``lr``, gradients clipped at norm 1). The returned model holds
    the EMA of the weights (decay ``min(ema, (1 + k) / (10 + k))`` at step ``k``), in eval
    mode with gradients off. The condition is standardised with its training mean and
    standard deviation, stored in the model.

    Parameters
    ----------
    X
        Images ``(N, C, H, W)`` in ``[-1, 1]``.
    cond
        Conditions ``(N, d)`` (e.g. a frozen encoder's representations), or None.
    steps, batch_size, lr, ema
        Optimiser steps, batch size, peak learning rate, EMA decay.
    T, kind
        The :class:`NoiseSchedule`.
    width, ch_mult, groups
        The :class:`CondUNet`.
    seed
        Initialisation, batches, steps and noise (``None``: the next draw of numpy's
        global generator).
    device
        Where to train (default: ``X``'s device); the model is returned there.
    cache_dir
        A folder for the trained weights, keyed by :func:`cache_key` of the configuration,
        the data, the seed and this module's source; ``None`` trains every time.
    progress
        Show a progress bar (off in the static page).
    threads
        Torch threads for training on a CPU (default 1; None leaves the setting alone).

    Returns
    -------
    (CondUNet, dict)
        The EMA model and ``{"losses": [...], "cached": bool, "key": str}``, the losses per
        step of the raw model.

    Examples
    --------
    >>> X = torch.rand(16, 1, 8, 8) * 2 - 1
    >>> net, info = train_denoiser(X, steps=3, batch_size=8, width=8, seed=0)
    >>> len(info["losses"]), net.training
    (3, False)
    """
    X = _check_images(X)
    with _cpu_threads(threads, device if device is not None else X.device):
        return _train_denoiser(X, cond, steps, batch_size, lr, ema, T, kind, width, ch_mult, groups, seed,
                               device, cache_dir, progress)


def _train_denoiser(X, cond, steps, batch_size, lr, ema, T, kind, width, ch_mult, groups, seed, device,
                    cache_dir, progress):
    steps = check_int(steps, "steps", low=1)
    batch_size = check_int(batch_size, "batch_size", low=1)
    lr = check_real(lr, "lr", low=0, low_open=True)
    ema = check_real(ema, "ema", low=0, high=1, high_open=True)
    if cond is not None:
        cond = _check_tensor(cond, "cond")
        if cond.dim() != 2 or cond.shape[0] != X.shape[0]:
            raise ParameterError(f"cond must have shape ({X.shape[0]}, d), got {tuple(cond.shape)}")
        if not torch.isfinite(cond).all():
            raise ParameterError("cond holds NaN or infinite values")
    seed = resolve_seed(seed)
    device = torch.device(device) if device is not None else X.device
    schedule = NoiseSchedule(T, kind)
    net_cfg = dict(image_size=X.shape[-1], channels=X.shape[1], width=width, ch_mult=list(ch_mult),
                   cond_dim=None if cond is None else cond.shape[1], groups=groups)
    if X.shape[-1] != X.shape[-2]:
        raise ParameterError(f"images must be square, got {tuple(X.shape[-2:])}")
    config = dict(net=net_cfg, steps=steps, batch_size=batch_size, lr=lr, ema=ema, T=T, kind=kind, seed=seed)
    key = cache_key("denoiser", config, X, *(() if cond is None else (cond,)))
    cached = load_cached(cache_dir, key)
    if cached is not None:
        try:
            model = CondUNet(**net_cfg)
            model.load_state_dict(cached["state"])
            model.to(device).eval().requires_grad_(False)
            return model, {"losses": list(cached["losses"]), "cached": True, "key": key}
        except (RuntimeError, KeyError, TypeError):
            pass  # stale layout: retrain
    with torch.random.fork_rng(devices=[]):  # initialisation, without touching the global stream
        torch.manual_seed(seed)
        model = CondUNet(**net_cfg).to(device)
    if cond is not None:
        c = cond.to(device, torch.float32)
        model.cond_mean.copy_(c.mean(0))
        model.cond_std.copy_(c.std(0).clamp_min(1e-6) if c.shape[0] > 1 else torch.ones_like(c[0]))
    shadow = CondUNet(**net_cfg).to(device)
    shadow.load_state_dict(model.state_dict())
    shadow.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed + 1)
    abar = schedule.alphas_cumprod.to(device, torch.float32)
    Xd = X.to(device, torch.float32)
    cd = None if cond is None else cond.to(device, torch.float32)
    losses = []
    from helpers._progress import bar

    model.train()
    for k in bar(range(steps), progress=progress, desc="denoiser", leave=False):
        idx = torch.randint(0, X.shape[0], (batch_size,), generator=gen).to(device)
        t = torch.randint(0, T, (batch_size,), generator=gen).to(device)
        eps = torch.randn((batch_size, *X.shape[1:]), generator=gen).to(device)
        a = abar[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * Xd[idx] + (1 - a).sqrt() * eps
        loss = F.mse_loss(model(xt, t, None if cd is None else cd[idx]), eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        d = min(ema, (1 + k) / (10 + k))
        with torch.no_grad():
            for ps, pm in zip(shadow.parameters(), model.parameters()):
                ps.mul_(d).add_(pm.detach(), alpha=1 - d)
            for bs, bm in zip(shadow.buffers(), model.buffers()):
                bs.copy_(bm)
    shadow.eval()
    if cache_dir is not None:
        state = {k_: v.detach().to("cpu") for k_, v in shadow.state_dict().items()}
        save_cached(cache_dir, key, {"key": key, "state": state, "losses": losses})
    return shadow, {"losses": losses, "cached": False, "key": key}


# --------------------------------------------------------------------------------------------
# Samplers
# --------------------------------------------------------------------------------------------


def gaussian_eps(schedule: NoiseSchedule, mean: torch.Tensor, var: float = 0.0) -> Callable:
    r"""The exact :math:`\epsilon`-predictor :math:`E[\epsilon \mid x_t]` for data
    :math:`x_0 \sim \mathcal N(m, v I)` (``var=0``: the single point ``m``).

    Since :math:`x_t = \sqrt{\bar\alpha_t} x_0 + \sqrt{1 - \bar\alpha_t}\epsilon` is jointly
    Gaussian with :math:`\epsilon`,

    .. math:: E[\epsilon \mid x_t] = \frac{\sqrt{1 - \bar\alpha_t}\,(x_t - \sqrt{\bar\alpha_t} m)}
              {\bar\alpha_t v + 1 - \bar\alpha_t}.

    Returns a callable ``(x_t, t, cond) -> eps`` (``cond`` ignored) for :func:`ddpm_sample`
    and :func:`ddim_sample`, computed in the dtype of ``x_t``.

    Examples
    --------
    >>> s = NoiseSchedule(T=100)
    >>> x0 = torch.full((1, 1, 2, 2), 0.3, dtype=torch.float64)
    >>> eps = torch.randn(1, 1, 2, 2, dtype=torch.float64)
    >>> f = gaussian_eps(s, x0[0])
    >>> torch.allclose(f(s.q_sample(x0, 50, eps), torch.tensor([50]), None), eps)
    True
    """
    mean = _check_tensor(mean.unsqueeze(0) if isinstance(mean, torch.Tensor) and mean.dim() == 0 else mean, "mean")
    var = check_real(var, "var", low=0)

    def eps_model(x, t, cond=None):
        t = _check_t(t, schedule.T, x.shape[0])
        a = schedule.alphas_cumprod.to(x.device)[t.to(x.device)].to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
        m = mean.to(x.device, x.dtype)
        return (1 - a).sqrt() * (x - a.sqrt() * m) / (a * var + 1 - a)

    return eps_model


def _sampler_args(eps_model, schedule, shape, cond, steps, generator, clip, device):
    if not callable(eps_model):
        raise ParameterError(f"eps_model must be a callable (x_t, t, cond) -> eps, got {type(eps_model).__name__}")
    if not isinstance(schedule, NoiseSchedule):
        raise ParameterError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
    shape = tuple(check_int(s, "shape entries", low=1) for s in shape)
    if len(shape) < 2:
        raise ParameterError(f"shape must be (N, ...) with at least two entries, got {shape}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ParameterError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if clip is not None:
        if len(clip) != 2 or not float(clip[0]) < float(clip[1]):
            raise ParameterError(f"clip must be None or (low, high) with low < high, got {clip!r}")
    if device is None:
        if isinstance(eps_model, nn.Module):
            p = next(iter(eps_model.parameters()), None)
            device = p.device if p is not None else torch.device("cpu")
        elif cond is not None:
            device = cond.device
        else:
            device = torch.device("cpu")
    device = torch.device(device)
    if cond is not None:
        cond = _check_tensor(cond, "cond")
        if cond.shape[0] != shape[0]:
            raise ParameterError(f"cond must hold one condition per sample ({shape[0]}), got {cond.shape[0]}")
        cond = cond.to(device)
    taus = respaced_timesteps(schedule.T, steps)
    return shape, cond, taus, device


def _one_thread(fn):
    """Run a sampler with one torch thread on the CPU (see :class:`_cpu_threads`)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _cpu_threads(1):
            return fn(*args, **kwargs)

    return wrapper


def _randn(shape, generator, device, dtype):
    # drawn on the generator's device (CPU by default), so a seed gives the same numbers
    # whatever the model's device
    gdev = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(shape, generator=generator, device=gdev, dtype=dtype).to(device)


def _x0_from_eps(x, eps, a, clip):
    x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
    if clip is not None:
        x0 = x0.clamp(float(clip[0]), float(clip[1]))
    return x0


def _reverse_steps(taus, abar: torch.Tensor, batch: int):
    """The kept steps from the last down: (t as a batch, ᾱ_t, ᾱ of the step before, last?).

    The step before the first kept one has ᾱ = 1 (no noise), which both samplers use.
    """
    one = torch.ones((), dtype=abar.dtype, device=abar.device)
    for i in range(len(taus) - 1, -1, -1):
        t = int(taus[i])
        tt = torch.full((batch,), t, dtype=torch.long, device=abar.device)
        yield tt, abar[t], abar[int(taus[i - 1])] if i > 0 else one, i == 0


@_one_thread
@torch.no_grad()
def ddim_sample(eps_model: Callable, schedule: NoiseSchedule, shape: Sequence[int], *,
                cond: torch.Tensor | None = None, steps: int | None = None, eta: float = 0.0,
                generator: torch.Generator | None = None, clip: tuple[float, float] | None = (-1.0, 1.0),
                dtype: torch.dtype = torch.float32, device=None, x_T: torch.Tensor | None = None) -> torch.Tensor:
    r"""DDIM sampling (Song et al. 2021) on the kept steps :math:`\tau_1 < \dots < \tau_S`.

    From :math:`x_{\tau_i}`: :math:`\hat x_0 = (x - \sqrt{1 - \bar\alpha}\,\hat\epsilon) /
    \sqrt{\bar\alpha}` (clipped to ``clip``), then

    .. math:: x_{\tau_{i-1}} = \sqrt{\bar\alpha'}\hat x_0
              + \sqrt{1 - \bar\alpha' - \sigma^2}\,\hat\epsilon + \sigma z,\quad
              \sigma = \eta \sqrt{\tfrac{1 - \bar\alpha'}{1 - \bar\alpha}
              \big(1 - \tfrac{\bar\alpha}{\bar\alpha'}\big)},

    with :math:`\bar\alpha' = 1` after the last step (which returns :math:`\hat x_0`). When
    clipping changed :math:`\hat x_0`, :math:`\hat\epsilon` is recomputed from it, as in ADM.
    ``eta=0`` is deterministic given the starting noise; ``eta=1`` is DDPM-like. On a CPU it
    runs on one torch thread (small convolutions gain nothing from more).

    Parameters
    ----------
    eps_model
        ``(x_t, t, cond) -> eps``: a :class:`CondUNet` or any callable (e.g.
        :func:`gaussian_eps`).
    schedule
        The :class:`NoiseSchedule` the model was trained on.
    shape
        ``(N, C, H, W)`` (or any ``(N, ...)`` the model accepts).
    cond
        ``(N, d)`` conditions or None.
    steps
        Respaced number of steps (:func:`respaced_timesteps`); None uses all ``T``.
    eta
        Stochasticity, in ``[0, 1]``.
    generator
        A ``torch.Generator`` for the starting noise and the noise of each step (drawn on
        its device, then moved): the same seed gives the same samples.
    clip
        Range of :math:`\hat x_0`, or None for no clipping.
    dtype, device
        Of the samples (default device: the model's, else ``cond``'s, else CPU).
    x_T
        The starting noise, of shape ``shape``; None draws it from ``generator``. A shared
        ``x_T`` with ``eta=0`` makes the samples a deterministic function of ``cond``
        (interpolation).

    Returns
    -------
    torch.Tensor
        Samples of shape ``shape``.

    Examples
    --------
    >>> s = NoiseSchedule(T=200)
    >>> point = torch.full((1, 2, 2), 0.5, dtype=torch.float64)
    >>> x = ddim_sample(gaussian_eps(s, point), s, (4, 1, 2, 2), steps=20, dtype=torch.float64,
    ...                 generator=torch.Generator().manual_seed(0))
    >>> float((x - 0.5).abs().max()) < 1e-6
    True
    """
    shape, cond, taus, device = _sampler_args(eps_model, schedule, shape, cond, steps, generator, clip, device)
    eta = check_real(eta, "eta", low=0, high=1)
    abar = schedule.alphas_cumprod.to(device, dtype)
    if x_T is not None:
        if not isinstance(x_T, torch.Tensor) or tuple(x_T.shape) != shape:
            raise ParameterError(f"x_T must be a tensor of shape {shape}, got {getattr(x_T, 'shape', x_T)!r}")
        x = x_T.to(device, dtype)
    else:
        x = _randn(shape, generator, device, dtype)
    for tt, a, a_prev, last in _reverse_steps(taus, abar, shape[0]):
        eps = eps_model(x, tt, cond).to(dtype)
        x0 = _x0_from_eps(x, eps, a, clip)
        if clip is not None:
            eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        if last:
            return x0
        sigma = eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).clamp_min(0).sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).clamp_min(0).sqrt() * eps
        if eta > 0:
            x = x + sigma * _randn(shape, generator, device, dtype)
    return x


@_one_thread
@torch.no_grad()
def ddpm_sample(eps_model: Callable, schedule: NoiseSchedule, shape: Sequence[int], *,
                cond: torch.Tensor | None = None, steps: int | None = None,
                generator: torch.Generator | None = None, clip: tuple[float, float] | None = (-1.0, 1.0),
                variance: str = "small", dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    r"""Ancestral DDPM sampling (Ho et al. 2020), on all ``T`` steps or a respaced subset.

    On the kept steps :math:`\tau`, the respaced process has :math:`\beta'_i = 1 -
    \bar\alpha_{\tau_i}/\bar\alpha_{\tau_{i-1}}` (ADM's respacing). Each step draws
    :math:`x_{\tau_{i-1}} \sim \mathcal N(\tilde\mu, \sigma^2 I)` with the posterior mean
    :math:`\tilde\mu = \frac{\sqrt{\bar\alpha'}\beta'}{1 - \bar\alpha}\hat x_0 +
    \frac{\sqrt{1 - \beta'}(1 - \bar\alpha')}{1 - \bar\alpha} x` of the (clipped)
    prediction :math:`\hat x_0`, and :math:`\sigma^2 = \tilde\beta = \beta'(1 -
    \bar\alpha')/(1 - \bar\alpha)` (``variance="small"``) or :math:`\beta'`
    (``"large"``). The last step returns :math:`\hat x_0` (the mean, no noise).

    Parameters are those of :func:`ddim_sample` (without ``eta``), plus ``variance``.

    Returns
    -------
    torch.Tensor
        Samples of shape ``shape``.

    Examples
    --------
    >>> s = NoiseSchedule(T=1000)
    >>> f = gaussian_eps(s, torch.zeros(1, 2, 2), var=0.25)
    >>> x = ddpm_sample(f, s, (500, 1, 2, 2), steps=100, variance="large", clip=None,
    ...                 generator=torch.Generator().manual_seed(0))
    >>> abs(float(x.var()) - 0.25) < 0.05
    True
    """
    shape, cond, taus, device = _sampler_args(eps_model, schedule, shape, cond, steps, generator, clip, device)
    variance = check_option(variance, "variance", ("small", "large"))
    abar = schedule.alphas_cumprod.to(device, dtype)
    x = _randn(shape, generator, device, dtype)
    for tt, a, a_prev, last in _reverse_steps(taus, abar, shape[0]):
        eps = eps_model(x, tt, cond).to(dtype)
        x0 = _x0_from_eps(x, eps, a, clip)
        if last:
            return x0
        beta = 1 - a / a_prev
        mean = (a_prev.sqrt() * beta / (1 - a)) * x0 + ((1 - beta).sqrt() * (1 - a_prev) / (1 - a)) * x
        var = beta * (1 - a_prev) / (1 - a) if variance == "small" else beta
        x = mean + var.sqrt() * _randn(shape, generator, device, dtype)
    return x
