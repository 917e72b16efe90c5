"""Small CPA architectures with random weights, for the JVP chapter's benchmarks and explorers.

The factories return freshly initialised modules (in training mode, as PyTorch does);
:func:`build` seeds the weights, gives batch-norm layers non-trivial running statistics and
affine parameters (so that the eval-mode network is a genuine CPA map, not an identity in
disguise) and returns the model in eval mode. ``ZOO`` maps a name to ``(factory, input shape without the batch)``.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from helpers._checks import ParameterError, resolve_seed


def _randomize_batchnorm(model: nn.Module, generator: torch.Generator) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
    return model.eval()


def mlp(width: int = 256, depth: int = 4, d_in: int = 64, d_out: int = 10) -> nn.Module:
    """A ReLU MLP with ``depth`` hidden layers of ``width`` units."""
    layers, d = [], d_in
    for _ in range(depth):
        layers += [nn.Linear(d, width), nn.ReLU()]
        d = width
    return nn.Sequential(*layers, nn.Linear(d, d_out))


def leaky_mlp(width: int = 256, depth: int = 4, d_in: int = 64, d_out: int = 10, slope: float = 0.1) -> nn.Module:
    """An MLP with leaky-ReLU units (slope ``slope`` on the negative side)."""
    layers, d = [], d_in
    for _ in range(depth):
        layers += [nn.Linear(d, width), nn.LeakyReLU(slope)]
        d = width
    return nn.Sequential(*layers, nn.Linear(d, d_out))


def lenet() -> nn.Module:
    """LeNet-like: two conv + ReLU + max-pool stages on 1x28x28, then two dense layers."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 10))


def vgg_block(channels: int = 32) -> nn.Module:
    """VGG-like: (conv-BN-ReLU) x2 + max-pool, twice, on 3x32x32, then global average pooling."""
    def stage(c_in, c_out):
        return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*stage(3, channels), *stage(channels, 2 * channels),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * channels, 10))


class BasicBlock(nn.Module):
    """A ResNet basic block whose forward calls ``F.relu`` and adds the residual itself."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + x)


class ResNet(nn.Module):
    """A small residual net on 3x32x32 with eval-mode batch-norm."""

    def __init__(self, channels: int = 16, blocks: int = 2):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU())
        self.blocks = nn.Sequential(*[BasicBlock(channels) for _ in range(blocks)])
        self.head = nn.Linear(channels, 10)

    def forward(self, x):
        h = self.blocks(self.stem(x))
        return self.head(F.adaptive_avg_pool2d(h, 1).flatten(1))


def generator(latent: int = 16, channels: int = 32) -> nn.Module:
    """A DCGAN-like generator: latent -> 1x16x16 image by transposed convolutions."""
    return nn.Sequential(
        nn.Linear(latent, channels * 4 * 4), nn.ReLU(), nn.Unflatten(1, (channels, 4, 4)),
        nn.ConvTranspose2d(channels, channels // 2, 4, 2, 1), nn.BatchNorm2d(channels // 2), nn.ReLU(),
        nn.ConvTranspose2d(channels // 2, 1, 4, 2, 1))


def conv1d_net(channels: int = 16) -> nn.Module:
    """A 1-D conv net on 2x128 signals, with max-pooling."""
    return nn.Sequential(
        nn.Conv1d(2, channels, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(channels, channels, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
        nn.Flatten(), nn.Linear(channels * 32, 10))


#: Name -> (factory, input shape without the batch axis) of every architecture of the zoo.
ZOO: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "MLP": (mlp, (64,)),
    "deep MLP": (lambda: mlp(width=128, depth=12), (64,)),
    "leaky MLP": (leaky_mlp, (64,)),
    "LeNet (max-pool)": (lenet, (1, 28, 28)),
    "VGG block": (vgg_block, (3, 32, 32)),
    "ResNet (eval BN)": (ResNet, (3, 32, 32)),
    "generator (conv-T)": (generator, (16,)),
    "1-D conv net": (conv1d_net, (2, 128)),
}


def build(name: str, *, seed: int | None = None, dtype: torch.dtype = torch.float32,
          device: torch.device | str = "cpu") -> tuple[nn.Module, tuple[int, ...]]:
    """The zoo model ``name`` with seeded random weights, in eval mode.

    Parameters
    ----------
    name
        A key of :data:`ZOO`, e.g. ``"MLP"``.
    seed
        Keyword-only. Seeds the weights and the batch-norm statistics (inside
        ``torch.random.fork_rng``, so torch's global generator is left as it was). ``None``
        (the default) takes the next draw from numpy's global generator, which
        :func:`helpers.runtime.setup` seeds with the notebook's base seed.
    dtype, device
        Keyword-only: where the model's parameters live.

    Returns
    -------
    model : torch.nn.Module
        On ``device`` in ``dtype``.
    input_shape : tuple of int
        The shape of one input sample (without the batch axis).

    Raises
    ------
    ValueError
        (a ``ParameterError``, also a TypeError) If ``name`` is not in ``ZOO`` (the message lists
        the names) or ``seed`` is not None or a non-negative int.
    """
    if not isinstance(name, str) or name not in ZOO:
        raise ParameterError(f"unknown zoo model {name!r}; choose one of {sorted(ZOO)}")
    seed = resolve_seed(seed)
    factory, shape = ZOO[name]
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = factory()
    return _randomize_batchnorm(model, gen).to(device=device, dtype=dtype), shape
