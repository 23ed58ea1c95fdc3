"""A band's white noise, read from its own flattest patches.

Regressing a band on the others (HySime, :mod:`hsiuu_cli.unmixing.hysime`) needs many bands: in an RGB
photograph or a 3–4-band MSI the detail a band does not share with the other two or three reads as noise
(an RGB image's clean detail as 24 dB). Here each band is judged alone. Liu, Tanaka & Okutomi (2013,
"Single-image noise level estimation for blind denoising") keep the patches whose gradient energy is no more
than white noise of the current estimate would give; Chen, Zhu & Heng (2015, "An efficient statistical method
for image noise level estimation") read the variance off those patches' covariance: the mean of its trailing
eigenvalues, from the first index where that mean no longer exceeds their median (signal directions pull the
mean above the median, noise alone does not). Starting from all patches, the two steps alternate until the
estimate settles.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

PATCH = 5
"""Pixels a side of a patch. 7 read 29–32 dB of "noise" in a clean 125 × 85 RGB image of a city (Pavia University
×4), 5 reads 32–39 dB; 5 reads white noise added at 20–40 dB to a 128 × 128 or larger photograph to within 1.6 dB
(docs/benchmarks.md, § Noisy colour photographs)."""
NOISE_QUANTILE = 0.99
"""A patch counts as flat when its gradient energy is below this quantile of what white noise alone gives."""
MAX_PATCHES = 40_000
"""Patches (on a regular grid over the band) the estimate uses at most."""
MAX_ROUNDS = 10


def flat_patch_noise_variance(band: np.ndarray, valid: np.ndarray | None = None) -> float | None:
    """The white-noise variance of one band (rows × cols; ``valid`` marks pixels with data), or None where
    fewer than 2 × :data:`PATCH`² whole patches of valid pixels exist."""
    values = np.asarray(band, dtype=np.float64)
    usable = np.isfinite(values) if valid is None else (np.asarray(valid, dtype=bool) & np.isfinite(values))
    if min(values.shape) < PATCH:
        return None
    count = (values.shape[0] - PATCH + 1) * (values.shape[1] - PATCH + 1)
    step = max(1, int(np.ceil(np.sqrt(count / MAX_PATCHES))))
    windows = sliding_window_view(np.where(usable, values, 0.0), (PATCH, PATCH))[::step, ::step]
    whole = sliding_window_view(usable, (PATCH, PATCH))[::step, ::step].all(axis=(2, 3))
    patches = windows[whole].reshape(-1, PATCH * PATCH)
    if patches.shape[0] < 2 * PATCH * PATCH:
        return None
    energy = gradient_energy(patches)
    # a patch of one value is a fill or a saturated area, not a measurement: no sensor's noise is zero
    patches, energy = patches[energy > 0], energy[energy > 0]
    if patches.shape[0] < 2 * PATCH * PATCH:
        return None
    limit = flat_limit()
    variance = trailing_eigenvalue_mean(patches)
    for _ in range(MAX_ROUNDS):
        flat = patches[energy <= variance * limit]
        if flat.shape[0] < 2 * PATCH * PATCH:
            break
        settled, variance = variance, trailing_eigenvalue_mean(flat)
        if abs(variance - settled) <= 1e-3 * settled:
            break
    return variance


def band_noise_variances(values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray | None:
    """Per band of ``values`` (rows × cols × bands; ``valid`` rows × cols): :func:`flat_patch_noise_variance`,
    0 for a band too small to read; None where no band can be read."""
    estimates = [flat_patch_noise_variance(values[:, :, band], valid) for band in range(values.shape[2])]
    if all(v is None for v in estimates):
        return None
    return np.array([0.0 if v is None else v for v in estimates])


def gradient_energy(patches: np.ndarray) -> np.ndarray:
    """Per patch (rows of :data:`PATCH`² values): the sum of its squared horizontal and vertical differences."""
    square = patches.reshape(-1, PATCH, PATCH)
    return (np.diff(square, axis=1) ** 2).sum(axis=(1, 2)) + (np.diff(square, axis=2) ** 2).sum(axis=(1, 2))


@cache
def flat_limit() -> float:
    """:data:`NOISE_QUANTILE` of a patch's gradient energy under unit white noise. The energy is a quadratic form
    xᵀQx of the patch; it is taken as the gamma distribution of the same mean tr Q and variance 2 tr Q² (as Liu et
    al. do)."""
    from scipy.stats import gamma

    differences = np.eye(PATCH * PATCH).reshape(-1, PATCH, PATCH)
    rows = np.diff(differences, axis=1).reshape(PATCH * PATCH, -1)
    cols = np.diff(differences, axis=2).reshape(PATCH * PATCH, -1)
    quadratic = rows @ rows.T + cols @ cols.T
    mean, spread = float(np.trace(quadratic)), 2.0 * float((quadratic**2).sum())
    return float(gamma.ppf(NOISE_QUANTILE, mean**2 / spread, scale=spread / mean))


def trailing_eigenvalue_mean(patches: np.ndarray) -> float:
    """Chen et al.'s estimate: the mean of the covariance's smallest eigenvalues, taken from the first index
    where it is no more than their median."""
    centred = patches - patches.mean(axis=0)
    eigenvalues = np.linalg.eigvalsh(centred.T @ centred / centred.shape[0])[::-1]
    for start in range(eigenvalues.size - 1):
        tail = eigenvalues[start:]
        if tail.mean() <= np.median(tail):
            return float(max(tail.mean(), 0.0))
    return float(max(eigenvalues[-1], 0.0))
