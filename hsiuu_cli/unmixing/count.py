"""How many endmembers: the number of materials an analyst would name, estimated from the scene.

Noise-based subspace estimators (HySime, :mod:`.hysime`) count every direction that rises above the
noise, and on real scenes spectral variability (illumination, moisture, species) rises far above
it: HySime says 46 on Samson (3 labelled materials), 19 on Jasper Ridge (4) and 14 on the Cuprite
crop (3). What separates materials from variability is not significance but size. So the data are
noise-whitened (each band divided by its noise level, estimated by regressing it on the other
bands as HySime does), centred, and their eigenvalues minus the unit noise level give the signal
variance per direction; K endmembers span K − 1 centred directions, and the estimate is the
smallest K whose K − 1 largest directions hold ``1 − unexplained`` of the signal variance.

With ``unexplained = 0.01`` (the default) it gives 3 on Samson, 4 on Jasper Ridge and 3 on the
Cuprite crop, the labelled counts, and 3, 4, 5 on noisy synthetic mixtures of 3, 4, 5 spectra
(docs/unmix.md has the table of the estimators measured, HySime, eigen-gap and other shares included).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .hysime import estimate_noise

DEFAULT_UNEXPLAINED = 0.01
"""Share of the noise-whitened signal variance left outside the K − 1 directions."""


@dataclass
class CountResult:
    n_endmembers: int
    cumulative_share: np.ndarray
    """Share of the signal variance held by the first 1, 2, … centred directions."""


def count_endmembers(
    pixels: np.ndarray, max_count: int | None = None, *, unexplained: float = DEFAULT_UNEXPLAINED
) -> CountResult:
    """Estimated number of endmembers of pixels (N, B): at least 2, at most ``max_count``, the bands and the pixels."""
    y = np.asarray(pixels, dtype=np.float64)
    n, bands = y.shape
    high = min(n, bands) if max_count is None else min(max_count, n, bands)
    noise_level = np.sqrt(np.mean(estimate_noise(y) ** 2, axis=0))
    noise_level = np.maximum(noise_level, 1e-12 * max(float(noise_level.max()), 1e-30))
    whitened = (y - y.mean(axis=0)) / noise_level
    eigenvalues = np.sort(np.linalg.eigvalsh(whitened.T @ whitened / n))[::-1]
    signal = np.clip(eigenvalues - 1.0, 0.0, None)
    total = signal.sum()
    if total <= 0:
        return CountResult(min(2, high), np.ones(1))
    share = np.cumsum(signal) / total
    directions = int(np.argmax(share >= 1.0 - unexplained)) + 1
    return CountResult(int(np.clip(directions + 1, min(2, high), high)), share)
