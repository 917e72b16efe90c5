r"""Exact moments of a random data augmentation, and sampling-free training of a linear model.

An augmentation draws a random parameter :math:`\theta` and maps an image :math:`x` of shape
(H, W) to :math:`\tilde x = T_\theta(x)`. For every augmentation here, :math:`T_\theta` is linear
in :math:`x` up to a constant offset, so the mean :math:`\mu = E[\tilde x]` and the covariance
:math:`\Sigma = \mathrm{Cov}[\tilde x]` over the row-major flattened pixels (length
:math:`D = HW`) have closed forms (Balestriero, Misra and LeCun, arXiv:2202.08325):

:class:`Shift`
    integer translation by ``(dy, dx)`` drawn from a probability mass function, with a
    ``"circular"`` or ``"zero"`` border; ``y[i, j] = x[i - dy, j - dx]``.
    :meth:`Shift.uniform` (the (2r+1)² square) and :meth:`Shift.torchvision` (the rounded
    translate pmf of torchvision's ``RandomAffine``, zero fill) build common ones.
:class:`GaussianShift`
    a circular, sub-pixel translation ``t ~ N(0, sigma² I)`` with band-limited (trigonometric)
    interpolation; odd sizes only.
:class:`Flip`, :class:`Brightness`, :class:`Maybe`, :class:`Compose`
    a mirror with probability p; ``a x + b`` with random ``a`` and ``b``; "apply with
    probability p"; independent draws applied left to right.

Three ways to the moments, chosen by :func:`moments`:

- **enumeration**: a finite support (integer shifts, flips, their mixtures and compositions)
  lists every copy ``A_k x + o_k`` with its probability; the moments are weighted sums, and
  :func:`support` returns the copies themselves;
- **the Fourier form**: a circular shift multiplies the DFT by a phase, so
  :math:`\hat\mu = \varphi \odot \hat x` and
  :math:`\hat M_{kl} = \Phi_{kl} \hat M^{\mathrm{in}}_{kl}` with
  :math:`\Phi_{kl} = E[e^{-i(\omega_k - \omega_l)\cdot t}]`, for any pmf and for Gaussian shifts;
- **stage by stage**: (mean, covariance) pass through each stage, mixtures by the law of
  total covariance, brightness by :math:`\mathrm{Cov}[a x + b] = E[a^2]\Sigma +
  \mathrm{Var}(a)\mu\mu^\top + \mathrm{Var}(b) \mathbf 1 \mathbf 1^\top`.

From the moments: a linear model's output moments (:func:`output_moments`), the expected
squared error (:func:`expected_mse`, :func:`loss_moments`), ridge regression trained on
infinitely many augmented copies (:func:`augmented_ridge`), and the number of Monte-Carlo
samples a relative error needs (:func:`samples_needed`). :func:`sample` and
:func:`sample_moments` draw from the same distributions, for Monte-Carlo.

Types: numpy in, numpy out; torch in, torch out (float64) on the input's device. Bad
arguments raise ``helpers._checks.ParameterError`` (a ``ValueError`` and a ``TypeError``)
with a message that says what to change.
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from helpers._checks import ParameterError, check_int, check_option, check_real, is_torch, like, rng, to_numpy

__all__ = ["Augmentation", "Shift", "GaussianShift", "Flip", "Brightness", "Maybe", "Compose",
           "moments", "support", "sample", "sample_moments", "samples_needed", "output_moments",
           "loss_moments", "expected_mse", "augmented_ridge", "MODES", "METHODS", "QUANTITIES"]

MODES = ("circular", "zero")
METHODS = ("auto", "enumerate", "fourier")
QUANTITIES = ("mean", "cov", "loss")
_ENUM_LIMIT = 4096          # joint supports up to this size are enumerated by method="auto"
_FOURIER_FROM = 64          # circular shifts with more support points use the Fourier form (auto)


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------


def _image(x, name: str = "x") -> np.ndarray:
    arr = to_numpy(x, name)
    if arr.ndim != 2:
        raise ParameterError(f"{name} must be one 2-D image of shape (H, W), got shape {arr.shape}; "
                             "for a batch, call once per image (or pass X of shape (N, H, W) where a "
                             "function takes a data set)")
    if arr.shape[0] < 1 or arr.shape[1] < 1 or not np.isfinite(arr).all():
        raise ParameterError(f"{name} must be a non-empty image of finite values, got shape {arr.shape}")
    return arr


def _images(X, name: str = "X") -> np.ndarray:
    arr = to_numpy(X, name)
    if arr.ndim != 3 or 0 in arr.shape or not np.isfinite(arr).all():
        raise ParameterError(f"{name} must be a stack of images of shape (N, H, W) with finite values, "
                             f"got shape {arr.shape}")
    return arr


def _prob(p, name: str) -> float:
    return check_real(p, name, low=0.0, high=1.0, hint=" (a probability)")


def _check_aug(aug) -> "Augmentation":
    if not isinstance(aug, Augmentation):
        raise ParameterError(f"aug must be an augmentation of helpers.augment (Shift, GaussianShift, Flip, "
                             f"Brightness, Maybe, Compose), got {type(aug).__name__}")
    return aug


# --------------------------------------------------------------------------------------------
# finite supports: copies y = scale * x[idx] + offset (idx -1: a zero pixel)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Element:
    p: float
    idx: np.ndarray            # (D,) int, -1 for a pixel filled with zero
    scale: float = 1.0
    offset: float | np.ndarray = 0.0


def _gather(flat: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """flat[..., idx] with zeros where idx == -1 (flat: (..., D))."""
    out = flat[..., np.maximum(idx, 0)]
    if (idx < 0).any():
        out = np.where(idx >= 0, out, 0.0)
    return out


def _apply(e: _Element, flat: np.ndarray) -> np.ndarray:
    return e.scale * _gather(flat, e.idx) + e.offset


def _then(first: _Element, second: _Element) -> _Element:
    """The element 'first, then second'."""
    idx = np.where(second.idx >= 0, first.idx[np.maximum(second.idx, 0)], -1)
    off1 = np.broadcast_to(np.asarray(first.offset, dtype=float), first.idx.shape)
    offset = second.scale * _gather(off1, second.idx) + second.offset
    return _Element(first.p * second.p, idx, first.scale * second.scale, offset)


def _identity(D: int) -> np.ndarray:
    return np.arange(D)


# --------------------------------------------------------------------------------------------
# the augmentations
# --------------------------------------------------------------------------------------------


class Augmentation:
    """Base class: a random map of one (H, W) image; see the module's docstring for the kinds."""

    #: every draw preserves the Euclidean norm of the image (circular shifts, flips)
    norm_preserving = False

    def _support(self, shape) -> list[_Element] | None:
        """The finite support as elements, or None when the distribution is continuous."""
        return None

    def _propagate(self, mu: np.ndarray, S: np.ndarray | None, shape, method: str):
        """(mean, cov) of the output for an input with mean mu (D,) and cov S (D, D) or None (zero)."""
        elements = self._support(shape)
        if elements is None:  # pragma: no cover - every continuous stage overrides this
            raise NotImplementedError
        return _propagate_elements(elements, mu, S)

    def _sample(self, batch: np.ndarray, gen: np.random.Generator) -> np.ndarray:  # (n, H, W)
        raise NotImplementedError  # pragma: no cover

    def _check_shape(self, shape) -> None:
        pass

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return type(self).__name__


def _apply_all(elements, flat: np.ndarray) -> np.ndarray:
    """Every copy of the flat image (D,) at once: (K, D)."""
    idx = np.stack([e.idx for e in elements])
    out = flat[np.maximum(idx, 0)]
    if (idx < 0).any():
        out[idx < 0] = 0.0
    scale = np.array([e.scale for e in elements])
    if (scale != 1).any():
        out *= scale[:, None]
    for k, e in enumerate(elements):
        if np.any(e.offset != 0):
            out[k] += e.offset
    return out


def _propagate_elements(elements, mu, S):
    """Law of total covariance over a finite support, for a random input (mu, S)."""
    means = _apply_all(elements, mu)                                     # (K, D)
    p = np.array([e.p for e in elements])
    m = p @ means
    dev = (means - m) * np.sqrt(p)[:, None]
    cov = dev.T @ dev
    if S is not None:
        for e in elements:
            block = e.scale ** 2 * S[np.ix_(np.maximum(e.idx, 0), np.maximum(e.idx, 0))]
            if (e.idx < 0).any():
                keep = (e.idx >= 0).astype(float)
                block = block * keep[:, None] * keep[None, :]
            cov += e.p * block
    return m, cov


@functools.lru_cache(maxsize=4096)
def _shift_index(H: int, W: int, dy: int, dx: int, mode: str) -> np.ndarray:
    si = (np.arange(H) - dy)[:, None]
    sj = (np.arange(W) - dx)[None, :]
    if mode == "circular":
        out = ((si % H) * W + (sj % W)).ravel()
    else:
        inside = (si >= 0) & (si < H) & (sj >= 0) & (sj < W)
        out = np.where(inside, si * W + sj, -1).ravel()
    out.flags.writeable = False                     # cached: shared by every caller
    return out


def _freqs(n: int) -> np.ndarray:
    """Angular DFT frequencies in numpy's fft order, centred in (-pi, pi]."""
    return 2 * np.pi * np.fft.fftfreq(n)


def _to_fourier(S4: np.ndarray) -> np.ndarray:
    """F S F^H for S of shape (H, W, H, W) (unnormalised 2-D DFT on both sides)."""
    T = np.fft.fft2(S4, axes=(0, 1))
    return np.conj(np.fft.fft2(np.conj(T), axes=(2, 3)))


def _from_fourier(C4: np.ndarray) -> np.ndarray:
    """F^-1 C F^-H, real part (the inverse of :func:`_to_fourier`)."""
    T = np.fft.ifft2(C4, axes=(0, 1))
    return np.conj(np.fft.ifft2(np.conj(T), axes=(2, 3))).real


def _fourier_propagate(phi_diag, Phi, mu, S, shape):
    """Mean and covariance after a circular shift with characteristic function phi.

    phi_diag: (H, W), E e^{-i w_k t}; Phi: (H, W, H, W), E e^{-i (w_k - w_l) t}.
    """
    H, W = shape
    D = H * W
    mu_hat = np.fft.fft2(mu.reshape(H, W))
    out_hat = phi_diag * mu_hat
    M_hat = mu_hat[:, :, None, None] * np.conj(mu_hat)[None, None, :, :]
    if S is not None:
        M_hat = M_hat + _to_fourier(S.reshape(H, W, H, W))
    C_hat = Phi * M_hat - out_hat[:, :, None, None] * np.conj(out_hat)[None, None, :, :]
    cov = _from_fourier(C_hat).reshape(D, D)
    return np.fft.ifft2(out_hat).real.ravel(), (cov + cov.T) / 2


class Shift(Augmentation):
    """Integer translation by ``(dy, dx)`` drawn from ``pmf``: ``y[i, j] = x[i - dy, j - dx]``.

    Parameters
    ----------
    pmf
        ``{(dy, dx): probability}``; probabilities in [0, 1] that sum to 1.
    mode
        ``"circular"`` (the image wraps around) or ``"zero"`` (pixels shifted in are 0, as
        torchvision's ``RandomAffine`` with ``fill=0``).

    Raises
    ------
    ValueError
        If a key is not a pair of ints, a probability is outside [0, 1], they do not sum to
        1, or ``mode`` is unknown.

    Examples
    --------
    >>> s = Shift({(0, 0): 0.5, (0, 1): 0.5})
    >>> mean, cov = moments(s, np.array([[1.0, 0.0, 0.0]]))
    >>> mean.tolist(), float(cov.sum())          # a circular shift keeps the pixel sum
    ([[0.5, 0.5, 0.0]], 0.0)
    """

    def __init__(self, pmf: dict, mode: str = "circular"):
        self.mode = check_option(mode, "mode", MODES)
        if not isinstance(pmf, dict) or not pmf:
            raise ParameterError(f"pmf must be a non-empty dict {{(dy, dx): probability}}, got {pmf!r}")
        clean = {}
        for key, p in pmf.items():
            if (not isinstance(key, tuple) or len(key) != 2
                    or not all(isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, bool)
                               for v in key)):
                raise ParameterError(f"pmf keys are integer shifts (dy, dx), got {key!r}")
            p = _prob(p, f"pmf[{key}]")
            if p > 0:
                k = (int(key[0]), int(key[1]))
                clean[k] = clean.get(k, 0.0) + p
        total = sum(pmf.values())
        if abs(total - 1.0) > 1e-9:
            raise ParameterError(f"the probabilities of pmf must sum to 1, got {total!r}; divide them by their sum")
        self.pmf = clean

    norm_preserving = property(lambda self: self.mode == "circular")

    @classmethod
    def uniform(cls, r: int, mode: str = "circular") -> "Shift":
        """Every shift with ``|dy|, |dx| <= r``, each with probability 1 / (2r + 1)².

        Examples
        --------
        >>> len(Shift.uniform(2).pmf)
        25
        """
        r = check_int(r, "r", low=0)
        n = (2 * r + 1) ** 2
        return cls({(dy, dx): 1.0 / n for dy in range(-r, r + 1) for dx in range(-r, r + 1)}, mode)

    @staticmethod
    def rounded_uniform_pmf(m: float) -> dict:
        """The pmf of ``round(U(-m, m))``: ``{k: probability}`` (``m = 0``: always 0).

        Integer ``k`` receives the length of ``[k - 1/2, k + 1/2]`` inside ``[-m, m]``, over ``2m``;
        the two end values get less mass unless ``m + 1/2`` is an integer.

        Examples
        --------
        >>> Shift.rounded_uniform_pmf(1.0)
        {-1: 0.25, 0: 0.5, 1: 0.25}
        """
        m = check_real(m, "m", low=0.0)
        if m == 0:
            return {0: 1.0}
        top = math.ceil(m + 0.5)
        out = {}
        for k in range(-top, top + 1):
            length = min(k + 0.5, m) - max(k - 0.5, -m)
            if length > 0:
                out[k] = length / (2 * m)
        return out

    @classmethod
    def torchvision(cls, a, size, mode: str = "zero") -> "Shift":
        """The translate pmf of torchvision's ``RandomAffine(degrees=0, translate=(a, b))``.

        torchvision draws ``int(round(U(-a W, a W)))`` pixels horizontally and
        ``int(round(U(-b H, b H)))`` vertically, independently, and fills with zeros.

        Parameters
        ----------
        a
            The translate fraction, one float (both axes) or a pair ``(a, b)`` (horizontal,
            vertical), each in [0, 1].
        size
            The image size: an int (square) or ``(H, W)``.
        mode
            ``"zero"`` (torchvision's default fill) or ``"circular"``.

        Examples
        --------
        >>> s = Shift.torchvision(0.1, 28)            # 2.8 px: shifts -3..3 per axis
        >>> sorted({dx for _, dx in s.pmf}), round(s.pmf[(0, 3)], 4)
        ([-3, -2, -1, 0, 1, 2, 3], 0.0096)
        """
        ax, ay = (a, a) if not isinstance(a, (tuple, list)) else tuple(a)
        ax, ay = _prob(ax, "a (horizontal translate fraction)"), _prob(ay, "b (vertical translate fraction)")
        if isinstance(size, (tuple, list)):
            if len(size) != 2:
                raise ParameterError(f"size must be an int or (H, W), got {size!r}")
            H, W = (check_int(s, "size", low=1) for s in size)
        else:
            H = W = check_int(size, "size", low=1)
        px, py = cls.rounded_uniform_pmf(ax * W), cls.rounded_uniform_pmf(ay * H)
        return cls({(dy, dx): qy * qx for dy, qy in py.items() for dx, qx in px.items()}, mode)

    def _support(self, shape):
        H, W = shape
        return [_Element(p, _shift_index(H, W, dy, dx, self.mode)) for (dy, dx), p in self.pmf.items()]

    def _phi(self, shape):
        H, W = shape
        P = np.zeros((H, W))
        for (dy, dx), p in self.pmf.items():
            P[dy % H, dx % W] += p
        phi = np.fft.fft2(P)                                             # E e^{-i w_k t}
        ky, kx = np.arange(H), np.arange(W)
        Phi = phi[(ky[:, None, None, None] - ky[None, None, :, None]) % H,
                  (kx[None, :, None, None] - kx[None, None, None, :]) % W]
        return phi, Phi

    def _propagate(self, mu, S, shape, method):
        if self.mode == "circular" and (method == "fourier" or (method == "auto" and len(self.pmf) > _FOURIER_FROM)):
            return _fourier_propagate(*self._phi(shape), mu, S, shape)
        return _propagate_elements(self._support(shape), mu, S)

    def _sample(self, batch, gen):
        n, H, W = batch.shape
        keys = list(self.pmf)
        draws = gen.choice(len(keys), size=n, p=np.array([self.pmf[k] for k in keys]) / sum(self.pmf.values()))
        flat = batch.reshape(n, H * W)
        out = np.empty_like(flat)
        for k in np.unique(draws):
            sel = draws == k
            out[sel] = _gather(flat[sel], _shift_index(H, W, *keys[k], self.mode))
        return out.reshape(n, H, W)

    def __repr__(self) -> str:  # pragma: no cover
        return f"Shift({len(self.pmf)} shifts, mode={self.mode!r})"


class GaussianShift(Augmentation):
    """Circular sub-pixel translation by ``t ~ N(0, sigma² I)``, band-limited interpolation.

    The shifted image is ``F^-1(exp(-i w . t) F x)`` with the DFT frequencies ``w`` centred in
    (-pi, pi); its characteristic function ``exp(-sigma² |w|² / 2)`` gives the moments in
    closed form. Odd heights and widths only: on an even size the Nyquist frequency makes a
    sub-pixel shift complex.

    Parameters
    ----------
    sigma
        Standard deviation of the shift in pixels, per axis (>= 0).

    Examples
    --------
    >>> x = np.zeros((5, 5)); x[2, 2] = 1.0
    >>> mean, cov = moments(GaussianShift(0.5), x)
    >>> round(float(mean.sum()), 12), abs(float(cov.sum())) < 1e-12   # sum kept, 1^T S 1 = 0
    (1.0, True)
    """

    norm_preserving = True

    def __init__(self, sigma: float):
        self.sigma = check_real(sigma, "sigma", low=0.0, hint=" (pixels)")

    def _check_shape(self, shape):
        if shape[0] % 2 == 0 or shape[1] % 2 == 0:
            raise ParameterError(f"GaussianShift needs an odd height and width, got {tuple(shape)}: on an even size "
                                 "the Nyquist frequency makes a sub-pixel shift complex; pad or crop the image by "
                                 "one row or column (e.g. np.pad(x, ((0, 1), (0, 1))))")

    def _propagate(self, mu, S, shape, method):
        H, W = shape
        wy, wx = _freqs(H), _freqs(W)
        s2 = self.sigma ** 2
        gy = np.exp(-s2 * (wy[:, None] - wy[None, :]) ** 2 / 2)          # unwrapped differences
        gx = np.exp(-s2 * (wx[:, None] - wx[None, :]) ** 2 / 2)
        Phi = gy[:, None, :, None] * gx[None, :, None, :]
        phi = np.exp(-s2 * (wy[:, None] ** 2 + wx[None, :] ** 2) / 2)
        return _fourier_propagate(phi, Phi, mu, S, shape)

    def _sample(self, batch, gen):
        n, H, W = batch.shape
        t = gen.normal(0.0, self.sigma, size=(n, 2))
        wy, wx = _freqs(H), _freqs(W)
        phase = np.exp(-1j * (t[:, 0, None, None] * wy[None, :, None] + t[:, 1, None, None] * wx[None, None, :]))
        return np.fft.ifft2(np.fft.fft2(batch) * phase).real

    def __repr__(self) -> str:  # pragma: no cover
        return f"GaussianShift(sigma={self.sigma})"


class Flip(Augmentation):
    """Mirror the image with probability ``p``: ``axis=1`` left-right (default), ``axis=0`` up-down.

    Examples
    --------
    >>> mean, cov = moments(Flip(0.5), np.array([[1.0, 0.0]]))
    >>> mean.tolist(), np.round(cov, 12).tolist()
    ([[0.5, 0.5]], [[0.25, -0.25], [-0.25, 0.25]])
    """

    norm_preserving = True

    def __init__(self, p: float, axis: int = 1):
        self.p = _prob(p, "p")
        self.axis = check_int(axis, "axis", low=0, high=1)

    def _flip_index(self, shape):
        H, W = shape
        i, j = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
        return ((H - 1 - i) * W + j if self.axis == 0 else i * W + (W - 1 - j)).ravel()

    def _support(self, shape):
        D = shape[0] * shape[1]
        out = []
        if self.p < 1:
            out.append(_Element(1 - self.p, _identity(D)))
        if self.p > 0:
            out.append(_Element(self.p, self._flip_index(shape)))
        return out

    def _sample(self, batch, gen):
        flip = gen.random(len(batch)) < self.p
        out = batch.copy()
        out[flip] = np.flip(batch[flip], axis=self.axis + 1)
        return out

    def __repr__(self) -> str:  # pragma: no cover
        return f"Flip(p={self.p}, axis={self.axis})"


class Brightness(Augmentation):
    """``x -> a x + b`` with independent ``a`` (contrast) and ``b`` (brightness offset).

    The moments need only the means and variances of ``a`` and ``b``; :func:`sample` draws
    them from normal distributions with those means and variances.

    Examples
    --------
    >>> mean, cov = moments(Brightness(b_var=0.01), np.zeros((1, 2)))
    >>> cov.tolist()                              # the same offset on every pixel
    [[0.01, 0.01], [0.01, 0.01]]
    """

    def __init__(self, a_mean: float = 1.0, a_var: float = 0.0, b_mean: float = 0.0, b_var: float = 0.0):
        self.a_mean = check_real(a_mean, "a_mean")
        self.a_var = check_real(a_var, "a_var", low=0.0, hint=" (a variance)")
        self.b_mean = check_real(b_mean, "b_mean")
        self.b_var = check_real(b_var, "b_var", low=0.0, hint=" (a variance)")

    def _support(self, shape):
        if self.a_var > 0 or self.b_var > 0:
            return None
        return [_Element(1.0, _identity(shape[0] * shape[1]), self.a_mean, self.b_mean)]

    def _propagate(self, mu, S, shape, method):
        D = mu.size
        a2 = self.a_mean ** 2 + self.a_var
        cov = self.a_var * np.outer(mu, mu) + self.b_var * np.ones((D, D))
        if S is not None:
            cov = cov + a2 * S
        return self.a_mean * mu + self.b_mean, cov

    def _sample(self, batch, gen):
        n = len(batch)
        a = self.a_mean + math.sqrt(self.a_var) * gen.standard_normal(n)
        b = self.b_mean + math.sqrt(self.b_var) * gen.standard_normal(n)
        return a[:, None, None] * batch + b[:, None, None]

    def __repr__(self) -> str:  # pragma: no cover
        return f"Brightness(a_mean={self.a_mean}, a_var={self.a_var}, b_mean={self.b_mean}, b_var={self.b_var})"


class Maybe(Augmentation):
    """Apply ``aug`` with probability ``p``, else leave the image alone (a mixture).

    Examples
    --------
    >>> mean, cov = moments(Maybe(Flip(1.0), 0.5), np.array([[1.0, 0.0]]))
    >>> mean.tolist()                              # the same as Flip(0.5)
    [[0.5, 0.5]]
    """

    def __init__(self, aug: Augmentation, p: float):
        self.aug = _check_aug(aug)
        self.p = _prob(p, "p")

    norm_preserving = property(lambda self: self.aug.norm_preserving)

    def _check_shape(self, shape):
        self.aug._check_shape(shape)

    def _support(self, shape):
        inner = self.aug._support(shape)
        if inner is None:
            return None
        out = [_Element(1 - self.p, _identity(shape[0] * shape[1]))] if self.p < 1 else []
        return out + [_Element(self.p * e.p, e.idx, e.scale, e.offset) for e in inner if self.p > 0]

    def _propagate(self, mu, S, shape, method):
        m_t, S_t = self.aug._propagate(mu, S, shape, method)
        p = self.p
        d = m_t - mu
        cov = p * S_t + p * (1 - p) * np.outer(d, d)
        if S is not None:
            cov = cov + (1 - p) * S
        return (1 - p) * mu + p * m_t, cov

    def _sample(self, batch, gen):
        apply = gen.random(len(batch)) < self.p
        out = batch.copy()
        if apply.any():
            out[apply] = self.aug._sample(batch[apply], gen)
        return out

    def __repr__(self) -> str:  # pragma: no cover
        return f"Maybe({self.aug!r}, p={self.p})"


class Compose(Augmentation):
    """Independent augmentations applied left to right: ``Compose(a, b)`` is ``b(a(x))``.

    Examples
    --------
    >>> aug = Compose(Shift.uniform(1), Flip(0.5))
    >>> mean, cov = moments(aug, np.eye(3))
    >>> mean.shape, cov.shape
    ((3, 3), (9, 9))
    """

    def __init__(self, *augs: Augmentation):
        if not augs:
            raise ParameterError("Compose needs at least one augmentation")
        self.augs = tuple(_check_aug(a) for a in augs)

    norm_preserving = property(lambda self: all(a.norm_preserving for a in self.augs))

    def _check_shape(self, shape):
        for a in self.augs:
            a._check_shape(shape)

    def _support(self, shape):
        out = None
        for a in self.augs:
            s = a._support(shape)
            if s is None:
                return None
            out = s if out is None else [_then(e1, e2) for e1 in out for e2 in s]
            if len(out) > 10 * _ENUM_LIMIT:
                return None
        return out

    def _propagate(self, mu, S, shape, method):
        for a in self.augs:
            mu, S = a._propagate(mu, S, shape, method)
        return mu, S

    def _sample(self, batch, gen):
        for a in self.augs:
            batch = a._sample(batch, gen)
        return batch

    def __repr__(self) -> str:  # pragma: no cover
        return "Compose(" + ", ".join(map(repr, self.augs)) + ")"


# --------------------------------------------------------------------------------------------
# moments, support, sampling
# --------------------------------------------------------------------------------------------


def _moments_np(aug, x, method):
    shape = x.shape
    aug._check_shape(shape)
    if method in ("auto", "enumerate"):
        elements = aug._support(shape)
        if elements is not None and (method == "enumerate" or len(elements) <= _ENUM_LIMIT):
            flat = x.ravel()
            copies = _apply_all(elements, flat)
            p = np.array([e.p for e in elements])
            mu = p @ copies
            dev = (copies - mu) * np.sqrt(p)[:, None]
            return mu, dev.T @ dev
        if method == "enumerate":
            raise ParameterError(f"method='enumerate' needs a finite support; {aug!r} has a continuous stage "
                                 "(GaussianShift, or Brightness with a variance): use method='auto'")
    mu, S = aug._propagate(x.ravel().astype(float), None, shape, method)
    if S is None:  # pragma: no cover - every stage returns a covariance
        S = np.zeros((mu.size, mu.size))
    return mu, S


def moments(aug: Augmentation, x, *, method: str = "auto"):
    """Mean and covariance of the augmented image, exactly.

    Parameters
    ----------
    aug
        An augmentation (:class:`Shift`, :class:`GaussianShift`, :class:`Flip`,
        :class:`Brightness`, :class:`Maybe`, :class:`Compose`).
    x
        One image, shape (H, W), numpy or torch.
    method
        ``"auto"`` (default): enumerate a finite support of at most 4096 copies, else go stage
        by stage (Fourier form for GaussianShift and for circular shifts with more than 64
        support points, the law of total covariance for mixtures). ``"enumerate"``: list every
        copy (finite supports only). ``"fourier"``: stage by stage with every circular shift
        through the Fourier form.

    Returns
    -------
    mean : (H, W)
    cov : (D, D)
        Over the row-major flattened pixels (D = H W); float64, in ``x``'s type and device.

    Raises
    ------
    ValueError
        If ``x`` is not a 2-D image, ``method`` is unknown, ``"enumerate"`` meets a continuous
        stage, or a GaussianShift meets an even size.

    Examples
    --------
    >>> x = np.arange(9.0).reshape(3, 3)
    >>> m1, S1 = moments(Shift.uniform(1), x, method="enumerate")
    >>> m2, S2 = moments(Shift.uniform(1), x, method="fourier")
    >>> bool(np.allclose(m1, m2) and np.allclose(S1, S2)), float(np.round(m1[0, 0], 12))
    (True, 4.0)
    """
    aug = _check_aug(aug)
    method = check_option(method, "method", METHODS)
    xn = _image(x)
    mu, S = _moments_np(aug, xn, method)
    return like(mu.reshape(xn.shape), x), like(S, x)


def support(aug: Augmentation, x):
    """Every augmented copy of ``x`` with its probability (finite supports only).

    Returns
    -------
    p : (K,)
        Probabilities, summing to 1.
    copies : (K, H, W)
        The copies, in ``x``'s type and device.

    Raises
    ------
    ValueError
        If ``aug`` has a continuous stage (GaussianShift, Brightness with a variance).

    Examples
    --------
    >>> p, copies = support(Flip(0.25), np.array([[1.0, 2.0]]))
    >>> p.tolist(), copies[:, 0].tolist()
    ([0.75, 0.25], [[1.0, 2.0], [2.0, 1.0]])
    """
    aug = _check_aug(aug)
    xn = _image(x)
    aug._check_shape(xn.shape)
    elements = aug._support(xn.shape)
    if elements is None:
        raise ParameterError(f"{aug!r} has a continuous stage (GaussianShift, or Brightness with a variance): "
                             "it has no finite support; use moments() or sample()")
    flat = xn.ravel()
    copies = _apply_all(elements, flat).reshape(-1, *xn.shape)
    return like(np.array([e.p for e in elements]), x), like(copies, x)


def sample(aug: Augmentation, x, n: int, *, seed=None):
    """``n`` independent draws of the augmented image, for Monte-Carlo.

    Parameters
    ----------
    aug, x
        As in :func:`moments`.
    n
        Number of draws.
    seed
        None (the next draw of numpy's global generator), an int or a numpy Generator.

    Returns
    -------
    (n, H, W) float64, in ``x``'s type and device.

    Examples
    --------
    >>> out = sample(Shift.uniform(1), np.eye(3), 4, seed=0)
    >>> out.shape, bool((out.sum(axis=(1, 2)) == 3).all())
    ((4, 3, 3), True)
    """
    aug = _check_aug(aug)
    xn = _image(x)
    n = check_int(n, "n", low=1)
    aug._check_shape(xn.shape)
    gen = rng(seed)
    out = aug._sample(np.broadcast_to(xn, (n, *xn.shape)).copy(), gen)
    return like(out, x)


def sample_moments(aug: Augmentation, x, n: int, *, seed=None, batch: int = 4096):
    """Monte-Carlo mean and covariance (divided by n - 1) from ``n`` draws, in chunks of ``batch``.

    Returns
    -------
    mean : (H, W)
    cov : (D, D)

    Examples
    --------
    >>> m, S = sample_moments(Flip(0.5), np.array([[1.0, 0.0]]), 2000, seed=0)
    >>> bool(abs(m[0, 0] - 0.5) < 0.05)
    True
    """
    aug = _check_aug(aug)
    xn = _image(x)
    n = check_int(n, "n", low=2)
    batch = check_int(batch, "batch", low=1)
    aug._check_shape(xn.shape)
    gen = rng(seed)
    D = xn.size
    total, gram, done = np.zeros(D), np.zeros((D, D)), 0
    ref = xn.ravel()                                  # a shift of origin keeps the sums small
    while done < n:
        k = min(batch, n - done)
        Y = aug._sample(np.broadcast_to(xn, (k, *xn.shape)).copy(), gen).reshape(k, D) - ref
        total += Y.sum(0)
        gram += Y.T @ Y
        done += k
    mean = total / n
    cov = (gram - n * np.outer(mean, mean)) / (n - 1)
    return like((mean + ref).reshape(xn.shape), x), like(cov, x)


# --------------------------------------------------------------------------------------------
# how many samples
# --------------------------------------------------------------------------------------------


def _model(W, c, y, D):
    Wn = to_numpy(W, "W")
    if Wn.ndim == 1:
        Wn = Wn[None]
    if Wn.ndim != 2 or Wn.shape[1] != D:
        raise ParameterError(f"W must have shape (m, H*W) = (m, {D}), got {Wn.shape}")
    m = Wn.shape[0]
    cn = np.zeros(m) if c is None else to_numpy(c, "c").reshape(-1)
    yn = None if y is None else to_numpy(y, "y").reshape(-1)
    for name, v in (("c", cn), ("y", yn)):
        if v is not None and v.shape != (m,):
            raise ParameterError(f"{name} must have shape ({m},) to match W, got {v.shape}")
    return Wn, cn, yn


def _loss_enum(aug, xn, Wn, cn, yn):
    elements = aug._support(xn.shape)
    if elements is None or len(elements) > 10 * _ENUM_LIMIT:
        return None
    flat = xn.ravel()
    copies = _apply_all(elements, flat)
    p = np.array([e.p for e in elements])
    loss = ((yn - copies @ Wn.T - cn) ** 2).sum(1)
    mean = float(p @ loss)
    return mean, float(p @ (loss - mean) ** 2)


def loss_moments(aug: Augmentation, x, y, W, c=None, *, n_mc: int = 20000, seed=None):
    """Mean and variance of the squared error ``||y - W x~ - c||²`` over the augmentation.

    The mean is exact, ``||y - W mu - c||² + tr(W S W^T)``. The variance needs
    third and fourth moments: exact by enumeration for finite supports; otherwise a
    Monte-Carlo estimate from ``n_mc`` draws (``seed`` as in :func:`sample`).

    Returns
    -------
    (mean, var) : floats

    Examples
    --------
    >>> E, V = loss_moments(Flip(0.5), np.array([[1.0, 0.0]]), [0.0], [[1.0, 0.0]])
    >>> E, V                                        # the loss is 1 or 0, each half the time
    (0.5, 0.25)
    """
    aug = _check_aug(aug)
    xn = _image(x)
    Wn, cn, yn = _model(W, c, y, xn.size)
    if yn is None:
        raise ParameterError("y (the target, shape (m,)) is required")
    aug._check_shape(xn.shape)
    exact = _loss_enum(aug, xn, Wn, cn, yn)
    if exact is not None:
        return exact
    mu, S = _moments_np(aug, xn, "auto")
    mean = float(((yn - Wn @ mu - cn) ** 2).sum() + np.trace(Wn @ S @ Wn.T))
    draws = aug._sample(np.broadcast_to(xn, (check_int(n_mc, "n_mc", low=2), *xn.shape)).copy(), rng(seed))
    loss = ((yn - draws.reshape(len(draws), -1) @ Wn.T - cn) ** 2).sum(1)
    return mean, float(loss.var(ddof=1))


def samples_needed(aug: Augmentation, x, eps: float, quantity: str = "mean", *, W=None, c=None, y=None,
                   n_mc: int = 20000, seed=None) -> float:
    """Monte-Carlo samples K for a relative error ``eps``, predicted from the exact moments.

    - ``"mean"``: the relative RMS error of the sample mean, ``sqrt(tr S / K) / ||mu||``, so
      ``K = tr S / (eps² ||mu||²)``.
    - ``"cov"``: the relative RMS Frobenius error of the sample covariance,
      ``K = (E||x~ - mu||⁴ - ||S||_F²) / (eps² ||S||_F²)`` (exact for a known mean; to leading
      order in 1/K otherwise). The fourth moment is exact for finite supports and for
      norm-preserving augmentations (circular and Gaussian shifts, flips), where
      ``E||x~ - mu||⁴ = (tr S)² + 4 mu^T S mu``; otherwise it is estimated from ``n_mc`` draws.
    - ``"loss"``: the relative standard error of the mean of K squared errors
      ``||y - W x~ - c||²``: ``K = Var(l) / (eps² E(l)²)`` (needs ``W`` and ``y``; see
      :func:`loss_moments`).

    Returns
    -------
    float
        K, not rounded (``math.ceil`` it for a count).

    Raises
    ------
    ValueError
        If ``eps`` is not positive, ``quantity`` is unknown, the image's variance is zero, or
        ``"loss"`` lacks ``W`` or ``y``.

    Examples
    --------
    >>> x = np.zeros((5, 5)); x[2, 2] = 1.0
    >>> round(samples_needed(Shift.uniform(1), x, 0.01))   # tr S / ||mu||² = 8, over 1e-4
    80000
    """
    aug = _check_aug(aug)
    xn = _image(x)
    eps = check_real(eps, "eps", low=0.0, low_open=True, hint=" (a relative error, e.g. 0.01)")
    quantity = check_option(quantity, "quantity", QUANTITIES)
    aug._check_shape(xn.shape)
    if quantity == "loss":
        if W is None or y is None:
            raise ParameterError("quantity='loss' needs the model W (and c) and the target y")
        mean, var = loss_moments(aug, xn, y, W, c, n_mc=n_mc, seed=seed)
        if mean <= 0:
            raise ParameterError("the expected loss is 0: no relative error is defined")
        return var / (eps ** 2 * mean ** 2)
    mu, S = _moments_np(aug, xn, "auto")
    if quantity == "mean":
        norm2 = float(mu @ mu)
        if norm2 == 0:
            raise ParameterError("the mean image is 0: no relative error is defined")
        return float(np.trace(S)) / (eps ** 2 * norm2)
    frob2 = float((S * S).sum())
    if frob2 == 0:
        raise ParameterError("the augmentation does not change this image (its covariance is 0): K is 0 for any eps")
    elements = aug._support(xn.shape)
    if elements is not None and len(elements) <= 10 * _ENUM_LIMIT:
        flat = xn.ravel()
        z = _apply_all(elements, flat) - mu
        fourth = float(np.array([e.p for e in elements]) @ ((z * z).sum(1) ** 2))
    elif aug.norm_preserving:
        fourth = float(np.trace(S)) ** 2 + 4 * float(mu @ S @ mu)
    else:
        draws = aug._sample(np.broadcast_to(xn, (check_int(n_mc, "n_mc", low=2), *xn.shape)).copy(), rng(seed))
        z = draws.reshape(len(draws), -1) - mu
        fourth = float(((z * z).sum(1) ** 2).mean())
    return (fourth - frob2) / (eps ** 2 * frob2)


# --------------------------------------------------------------------------------------------
# linear models
# --------------------------------------------------------------------------------------------


def output_moments(aug: Augmentation, x, W, c=None):
    """Mean and covariance of a linear model's output ``W x~ + c``: ``(W mu + c, W S W^T)``.

    Parameters
    ----------
    W
        (m, D) weights acting on the row-major flattened image (D = H W); ``c`` (m,) or None.

    Examples
    --------
    >>> m, C = output_moments(Flip(0.5), np.array([[1.0, 0.0]]), [[1.0, 0.0]])
    >>> m.tolist(), np.round(C, 12).tolist()
    ([0.5], [[0.25]])
    """
    aug = _check_aug(aug)
    xn = _image(x)
    Wn, cn, _ = _model(W, c, None, xn.size)
    mu, S = _moments_np(aug, xn, "auto")
    return like(Wn @ mu + cn, x), like(Wn @ S @ Wn.T, x)


def _data_moments(aug, Xn):
    """Means (N, D) and the summed covariance R (D, D) of every image of the stack."""
    N = len(Xn)
    shape = Xn.shape[1:]
    aug._check_shape(shape)
    flat = Xn.reshape(N, -1)
    elements = aug._support(shape)
    if elements is not None and len(elements) <= _ENUM_LIMIT:
        p = np.array([e.p for e in elements])
        means = sum(e.p * _apply(e, flat) for e in elements)
        R = np.zeros((flat.shape[1],) * 2)
        for e in elements:
            dev = _apply(e, flat) - means
            R += e.p * (dev.T @ dev)
        del p
        return means, R
    means, R = np.empty_like(flat), np.zeros((flat.shape[1],) * 2)
    for n in range(N):
        means[n], S = _moments_np(aug, Xn[n], "auto")
        R += S
    return means, R


def expected_mse(aug: Augmentation, X, Y, W, c=None) -> float:
    """The squared error of a linear model, averaged over the images and the augmentation.

    ``mean_n E||y_n - W x~_n - c||² = mean_n ||y_n - W mu_n - c||² + tr(W R W^T) / N`` with
    ``R = sum_n S_n``.

    Parameters
    ----------
    X : (N, H, W) images; Y : (N, m) targets; W : (m, D) with D = H W; c : (m,) or None.

    Examples
    --------
    >>> float(expected_mse(Flip(0.5), np.array([[[1.0, 0.0]]]), [[0.0]], [[1.0, 0.0]]))
    0.5
    """
    aug = _check_aug(aug)
    Xn = _images(X)
    Yn = to_numpy(Y, "Y")
    if Yn.ndim == 1:
        Yn = Yn[:, None]
    Wn, cn, _ = _model(W, c, None, Xn.shape[1] * Xn.shape[2])
    if Yn.shape != (len(Xn), Wn.shape[0]):
        raise ParameterError(f"Y must have shape (N, m) = ({len(Xn)}, {Wn.shape[0]}), got {Yn.shape}")
    means, R = _data_moments(aug, Xn)
    fit = ((Yn - means @ Wn.T - cn) ** 2).sum()
    return float((fit + np.trace(Wn @ R @ Wn.T)) / len(Xn))


def augmented_ridge(aug: Augmentation, X, Y, lam: float, *, fit_intercept: bool = True):
    """Ridge regression trained on infinitely many augmented copies: sampling-free training.

    Minimises ``sum_n E||y_n - W x~_n - c||² + lam ||W||_F²`` in closed form. By
    :func:`expected_mse`, this is ridge on the mean images with the extra Tikhonov matrix
    ``R = sum_n S_n``: with ``M = [mu_n^T, 1]`` (N, D+1),

    ``[W^T; c^T] = (M^T M + blockdiag(R + lam I, 0))^-1 M^T Y``,

    the same as ridge on every enumerated copy weighted by its probability. The intercept is
    not penalised.

    Parameters
    ----------
    X : (N, H, W) images; Y : (N, m) or (N,) targets; lam >= 0.

    Returns
    -------
    W : (m, D)
    c : (m,)
        In ``X``'s type and device.

    Examples
    --------
    >>> X = np.array([[[1.0, 0.0]], [[0.0, 1.0]]]); Y = np.array([[1.0], [-1.0]])
    >>> W, c = augmented_ridge(Flip(0.5), X, Y, 0.0)
    >>> np.round(W, 6).tolist(), np.round(c, 6).tolist()   # flips erase left-right information
    ([[0.0, 0.0]], [0.0])
    """
    aug = _check_aug(aug)
    Xn = _images(X)
    Yn = to_numpy(Y, "Y")
    if Yn.ndim == 1:
        Yn = Yn[:, None]
    if Yn.ndim != 2 or len(Yn) != len(Xn):
        raise ParameterError(f"Y must have shape (N, m) or (N,) with N = {len(Xn)}, got {Yn.shape}")
    lam = check_real(lam, "lam", low=0.0)
    if not isinstance(fit_intercept, (bool, np.bool_)):
        raise ParameterError(f"fit_intercept must be True or False, got {fit_intercept!r}")
    means, R = _data_moments(aug, Xn)
    N, D = means.shape
    M = np.c_[means, np.ones(N)] if fit_intercept else means
    A = M.T @ M
    A[:D, :D] += R + lam * np.eye(D)
    theta = np.linalg.lstsq(A, M.T @ Yn, rcond=None)[0] if lam == 0 else np.linalg.solve(A, M.T @ Yn)
    W = theta[:D].T
    c = theta[D] if fit_intercept else np.zeros(Yn.shape[1])
    return like(W, X), like(c, X)
