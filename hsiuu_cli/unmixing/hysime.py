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
