"""Endmembers as centroids of the pixels they dominate, in spectral-angle space.

Extreme-pixel methods (VCA, N-FINDR) return single pixels at the corners of the data
simplex: noisy, and on real scenes often outliers. Reference endmembers of real scenes are
made the other way, as the mean spectrum of hand-picked pure regions. This refinement finds
those regions itself: pixels are unmixed (FCLS) on unit-norm spectra, so that dark materials
such as water are weighed like bright ones, and each endmember moves to the mean direction of
the pixels whose abundance of it is at least ``threshold``. It stops at a fixed point. An
endmember that dominates fewer than ``min_pixels`` pixels keeps its previous spectrum, so
scenes without pure pixels fall back to the initial estimate.

Measured on Samson and Jasper Ridge (bench/unmix.py): from the N-FINDR simplex the mean SAD
drops from 4.0° to 1.2° and from 9.2° to 3.7°; a soft weighting (abundance^p) instead of the
threshold drifts away from the pure regions on Jasper Ridge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fcls import fcls


@dataclass
class PurityResult:
    endmembers: np.ndarray
    """(K, B), each scaled to the mean norm of its pure pixels (or its initial norm)."""
    pure_pixels: np.ndarray
    """(K,) number of pixels that defined each endmember (0: kept its initial spectrum)."""
    iterations: int


def refine_pure_centroids(
    pixels: np.ndarray,
    initial: np.ndarray,
    *,
    threshold: float = 0.9,
    min_pixels: int = 5,
    max_iter: int = 50,
) -> PurityResult:
    """Move each endmember of ``initial`` (K, B) to the centroid of the pixels (N, B) it dominates."""
    y = np.asarray(pixels, dtype=np.float64)
    norms = np.linalg.norm(y, axis=1)
    usable = norms > 0
    y, norms = y[usable], norms[usable]
    unit = y / norms[:, None]
    initial = np.asarray(initial, dtype=np.float64)
    initial_norms = np.maximum(np.linalg.norm(initial, axis=1), np.finfo(float).tiny)
    directions = initial / initial_norms[:, None]
    counts = np.zeros(initial.shape[0])
    pure = np.zeros((unit.shape[0], initial.shape[0]), dtype=bool)
    iterations = 0
    for iterations in range(1, max_iter + 1):
        pure = fcls(unit, directions) >= threshold
        counts = pure.sum(0).astype(float)
        centroids = pure.T.astype(np.float64) @ unit
        lengths = np.linalg.norm(centroids, axis=1)
        movable = (counts >= min_pixels) & (lengths > 0)
        updated = directions.copy()
        updated[movable] = centroids[movable] / lengths[movable, None]
        if np.allclose(updated, directions, rtol=0, atol=1e-10):
            break
        directions = updated
    scale = initial_norms.copy()
    movable = counts >= min_pixels
    scale[movable] = (pure.T.astype(np.float64) @ norms)[movable] / counts[movable]
    counts[~movable] = 0
    return PurityResult(directions * scale[:, None], counts.astype(np.int64), iterations)
