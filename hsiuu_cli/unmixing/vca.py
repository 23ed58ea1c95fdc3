"""Vertex Component Analysis (Nascimento & Bioucas-Dias, IEEE TGRS 43(4), 2005).

Pixels are projected onto the signal subspace; endmembers are the pixels at the extremes of
successive random directions orthogonal to the endmembers found so far.
"""

from __future__ import annotations

import numpy as np


def vca(
    pixels: np.ndarray,
    n_endmembers: int,
    *,
    rng: np.random.Generator | int | None = 0,
    snr_db: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Endmembers (K, B) and the indices of the pixels (N, B) they were taken from."""
    rng = np.random.default_rng(rng)
    y = np.asarray(pixels, dtype=np.float64).T  # B × N, as in the paper
    n = y.shape[1]
    k = n_endmembers
    mean = y.mean(axis=1, keepdims=True)
    centred = y - mean
    if snr_db is None:
        snr_db = estimate_snr(y, centred, mean, k)
    if snr_db < 15 + 10 * np.log10(k):
        # Low SNR: project onto the (K−1)-dimensional principal subspace and lift with a constant.
        basis = top_eigenvectors(centred @ centred.T / n, k - 1)
        reduced = basis.T @ centred
        lift = np.sqrt(np.max(np.sum(reduced**2, axis=0)))
        projected = np.vstack([reduced, np.full((1, n), lift)])
    else:
        # High SNR: project onto the K-dimensional subspace and rescale onto the hyperplane uᵀx = 1.
        basis = top_eigenvectors(y @ y.T / n, k)
        reduced = basis.T @ y
        direction = reduced.mean(axis=1, keepdims=True)
        denominator = direction.T @ reduced
        denominator[np.abs(denominator) < np.finfo(float).tiny] = np.finfo(float).tiny
        projected = reduced / denominator

    vertices = np.zeros((k, k))
    vertices[-1, 0] = 1.0
    indices = np.zeros(k, dtype=np.int64)
    for i in range(k):
        w = rng.standard_normal(k)
        f = w - vertices @ (np.linalg.pinv(vertices) @ w)
        f /= max(np.linalg.norm(f), np.finfo(float).tiny)
        indices[i] = int(np.argmax(np.abs(f @ projected)))
        vertices[:, i] = projected[:, indices[i]]
    return np.asarray(pixels, dtype=np.float64)[indices], indices


def estimate_snr(y: np.ndarray, centred: np.ndarray, mean: np.ndarray, k: int) -> float:
    """SNR (dB) of B × N data from the power in its (K−1)-dimensional principal subspace."""
    bands, n = y.shape
    basis = top_eigenvectors(centred @ centred.T / n, k - 1)
    power_signal = np.sum((basis.T @ centred) ** 2) / n + float(np.sum(mean**2))
    power_total = np.sum(y**2) / n
    noise = power_total - power_signal
    signal = power_signal - k / bands * power_total
    if noise <= 0:
        return np.inf
    return float(10 * np.log10(max(signal, np.finfo(float).tiny) / noise))


def top_eigenvectors(matrix: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` eigenvectors (columns) of a symmetric matrix with the largest eigenvalues, largest first."""
    values, vectors = np.linalg.eigh(matrix)
    return vectors[:, np.argsort(values)[::-1][:count]]
