"""HySime: the dimension of the signal subspace (Bioucas-Dias & Nascimento, IEEE TGRS 46(8), 2008).

Noise is estimated per band by regressing it on all the other bands; the signal subspace is
spanned by the eigenvectors of the signal correlation matrix whose projected signal power
exceeds twice their projected noise power (the mean-squared-error criterion of the paper).
Without mean removal, K endmembers span a K-dimensional subspace, so the dimension is the
number of endmembers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .vca import top_eigenvectors


@dataclass
class HySimeResult:
    n_endmembers: int
    cost: np.ndarray
    """Per eigen-direction: −signal power + 2 × noise power (negative ones are kept)."""


def estimate_noise(pixels: np.ndarray) -> np.ndarray:
    """Per-pixel noise (N, B): the residual of each band regressed on all the others.

    The residual of band i is column i of Y R⁻¹ divided by (R⁻¹)ᵢᵢ, with R = YᵀY, so all bands
    come from one inverse.
    """
    y = np.asarray(pixels, dtype=np.float64)
    correlation = y.T @ y
    ridge = 1e-6 * np.trace(correlation) / correlation.shape[0]
    inverse = np.linalg.inv(correlation + ridge * np.eye(correlation.shape[0]))
    return (y @ inverse) / np.diag(inverse)


def estimate_noise_nearby(pixels: np.ndarray, neighbours: int) -> np.ndarray:
    """Per-pixel noise (N, B) as :func:`estimate_noise`, each band regressed on its ``neighbours`` nearest
    bands only (and a constant): for scenes with too few pixels to regress on all the others."""
    y = np.asarray(pixels, dtype=np.float64)
    bands = y.shape[1]
    half = max(1, neighbours // 2)
    noise = np.empty_like(y)
    for band in range(bands):
        start = max(0, min(band - half, bands - 2 * half - 1))
        others = [b for b in range(start, min(bands, start + 2 * half + 1)) if b != band]
        design = np.column_stack([y[:, others], np.ones(y.shape[0])])
        coefficients = np.linalg.lstsq(design, y[:, band], rcond=None)[0]
        noise[:, band] = y[:, band] - design @ coefficients
    return noise


def residual_variance(residual: np.ndarray, fitted: int) -> np.ndarray:
    """Per band, the noise variance that regression residuals (N × B, from :func:`estimate_noise` or
    :func:`estimate_noise_nearby`) stand for: a least-squares fit of ``fitted`` coefficients keeps only
    (N − fitted)/N of the noise in its residual, which matters where N is a few hundred pixels."""
    return (residual**2).sum(axis=0) / (residual.shape[0] - fitted)


@dataclass
class SignalSubspace:
    basis: np.ndarray
    """Orthonormal B × p: the directions whose power exceeds the threshold of :func:`signal_subspace`."""
    gains: np.ndarray
    """Per basis direction: the share of its power that is signal (Wiener gain), in (0, 1]."""

    def shrinkage(self) -> np.ndarray:
        """B × B: pixels (rows) times this keep each direction's signal share; the rest is removed."""
        return (self.basis * self.gains) @ self.basis.T


def signal_subspace(pixels: np.ndarray, noise_variance: float, power_factor: float = 2.0) -> SignalSubspace:
    """The pixels' (N × B, a sample is enough) signal subspace for white noise of the given per-band variance.

    A direction is signal when its power exceeds ``power_factor`` times the noise's largest sample
    eigenvalue σ²(1 + √(B/N))² (Marchenko–Pastur, since N pixels may be few): 2 is HySime's criterion
    for a projection, 1 the Wiener shrinkage's own (a direction helps it as soon as its power exceeds
    the noise's). Each kept direction's gain 1 − that threshold / its power shrinks the weak ones instead
    of keeping them whole (+0.1 to +0.3 dB over the plain projection on noisy fusion pairs, docs/benchmarks.md).
    """
    y = np.asarray(pixels, dtype=np.float64)
    values, vectors = np.linalg.eigh(y.T @ y / y.shape[0])
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    threshold = power_factor * noise_variance * (1.0 + np.sqrt(y.shape[1] / y.shape[0])) ** 2
    keep = max(1, int(np.sum(values > threshold)))
    gains = np.clip(1.0 - threshold / np.maximum(values[:keep], 1e-300), 0.0, 1.0)
    gains[0] = max(gains[0], 1e-6)  # the strongest direction always stays
    return SignalSubspace(vectors[:, :keep], gains)


def hysime(pixels: np.ndarray) -> HySimeResult:
    """Estimated number of endmembers of pixels (N, B)."""
    y = np.asarray(pixels, dtype=np.float64)
    n = y.shape[0]
    noise = estimate_noise(y)
    signal = y - noise
    signal_correlation = signal.T @ signal / n
    # As in the authors' implementation: a noise floor of 1e-5 of the mean signal power per band,
    # so that nearly noise-free (e.g. smoothed) data do not count every direction as signal.
    noise_correlation = noise.T @ noise / n + 1e-5 * np.trace(signal_correlation) / y.shape[1] * np.eye(y.shape[1])
    values, vectors = np.linalg.eigh(signal_correlation)
    vectors = vectors[:, np.argsort(values)[::-1]]
    data_power = np.einsum("bi,bc,ci->i", vectors, y.T @ y / n, vectors)
    noise_power = np.einsum("bi,bc,ci->i", vectors, noise_correlation, vectors)
    cost = -data_power + 2 * noise_power
    return HySimeResult(n_endmembers=int(np.sum(cost < 0)), cost=cost)


def signal_subspace_projection(pixels: np.ndarray, min_dimension: int) -> np.ndarray:
    """Pixels (N, B) projected onto their signal subspace: the top eigenvectors of the correlation
    matrix, as many as HySime finds (at least ``min_dimension``, at most the bands).

    Per-pixel noise is spread over all B bands, the signal over a few directions, so the projection
    keeps the signal and removes most of the noise; it is what lets a dark endmember (water) be found
    by extreme-pixel methods, whose pure pixels are otherwise lost in noise.
    """
    y = np.asarray(pixels, dtype=np.float64)
    dimension = min(max(hysime(y).n_endmembers, min_dimension), y.shape[1])
    basis = top_eigenvectors(y.T @ y / y.shape[0], dimension)
    return (y @ basis) @ basis.T


def estimate_endmember_count(pixels: np.ndarray, max_count: int | None = None) -> int:
    """HySime's signal-subspace dimension of pixels (N, B), at least 2 and at most ``max_count``,
    the bands and the pixels."""
    pixels = np.asarray(pixels, dtype=np.float64)
    high = min(pixels.shape) if max_count is None else min(max_count, *pixels.shape)
    return int(np.clip(hysime(pixels).n_endmembers, min(2, high), high))
