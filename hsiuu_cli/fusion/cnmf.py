"""Coupled non-negative matrix factorisation (CNMF) fusion.

N. Yokoya, T. Yairi and A. Iwasaki, "Coupled nonnegative matrix factorization unmixing for
hyperspectral and multispectral data fusion", IEEE TGRS 50(2), 2012.

Both images are unmixed alternately by Lee–Seung multiplicative updates with a sum-to-one row
appended to data and endmembers:

1. HSI: endmembers W_h by VCA, abundances H_h updated with W_h fixed.
2. MSI: endmembers W_m = Rᵀ W_h (through the SRF), abundances H_m updated with W_m fixed, then
   W_m and H_m alternately (W_m only with more than 3 MSI bands, as the authors' code).
3. HSI: abundances H_h = H_m blurred and sampled by the PSF, W_h updated with H_h fixed, then both.
4. Steps 2–3 repeat ``outer`` times; the fused cube is W_h H_m.

Defaults follow the authors' code: 200 inner iterations, one outer round, K = min(30, bands),
sum-to-one weight 2·sqrt(mean(MSI)/0.7455)/b³, stop when the cost improves by less than 1e-8 relative.
The PSF and the MSI's gain/offset are the ones estimated for every method
(:func:`hsiuu_cli.fusion.observation.fit_sensor`); the SRF is the one given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..unmixing.vca import vca
from .observation import SensorFit, apply_spatial

INNER_ITERATIONS = 200
OUTER_ITERATIONS = 1
TOLERANCE = 1e-8
MIN_MS_BANDS_FOR_ENDMEMBER_UPDATE = 3
TINY = 1e-12


def default_endmembers(bands: int) -> int:
    return min(30, bands)


@dataclass
class CNMFOutput:
    endmembers: np.ndarray
    abundances: np.ndarray | None
    iterations: int
    loss: float


def _update_abundances(data: np.ndarray, endmembers: np.ndarray, abundances: np.ndarray) -> np.ndarray:
    numerator = endmembers.T @ data
    denominator = (endmembers.T @ endmembers) @ abundances
    return abundances * numerator / np.maximum(denominator, TINY)


def _update_endmembers(data: np.ndarray, endmembers: np.ndarray, abundances: np.ndarray) -> np.ndarray:
    """Multiplicative update of the spectral rows only (the appended sum-to-one row stays fixed)."""
    spectral = endmembers[:-1]
    numerator = data[:-1] @ abundances.T
    denominator = spectral @ (abundances @ abundances.T)
    updated = endmembers.copy()
    updated[:-1] = spectral * numerator / np.maximum(denominator, TINY)
    return updated


def _cost(data: np.ndarray, endmembers: np.ndarray, abundances: np.ndarray) -> float:
    return float(np.sum((data[:-1] - endmembers[:-1] @ abundances) ** 2))


def _unmix(
    data: np.ndarray,
    endmembers: np.ndarray,
    abundances: np.ndarray,
    *,
    first: str,
    update_both: bool,
    iterations: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Update ``first`` ('abundances' or 'endmembers') alone until it converges, then both alternately."""
    step_first = _update_abundances if first == "abundances" else _update_endmembers
    count = 0
    previous = np.inf
    for _ in range(iterations):
        candidate = step_first(data, endmembers, abundances)
        trial = (endmembers, candidate) if first == "abundances" else (candidate, abundances)
        cost = _cost(data, *trial)
        count += 1
        if np.isfinite(previous) and (previous - cost) / max(cost, TINY) < TOLERANCE:
            break
        endmembers, abundances = trial
        previous = cost
    if update_both:
        previous = _cost(data, endmembers, abundances)
        for _ in range(iterations - 1):
            if first == "abundances":
                new_endmembers = _update_endmembers(data, endmembers, abundances)
                new_abundances = _update_abundances(data, new_endmembers, abundances)
            else:
                new_abundances = _update_abundances(data, endmembers, abundances)
                new_endmembers = _update_endmembers(data, endmembers, new_abundances)
            cost = _cost(data, new_endmembers, new_abundances)
            count += 1
            if (previous - cost) / max(cost, TINY) < TOLERANCE:
                break
            endmembers, abundances, previous = new_endmembers, new_abundances, cost
    return endmembers, abundances, count


def fuse_cnmf(
    lr: np.ndarray,
    lr_valid: np.ndarray,
    msi_strip: Callable[[int, int], tuple[np.ndarray, np.ndarray]],
    hr_shape: tuple[int, int],
    srf: np.ndarray,
    sensor: SensorFit,
    out: np.ndarray,
    k: int,
    *,
    seed: int = 0,
    return_abundances: bool = False,
    inner_iterations: int = INNER_ITERATIONS,
    outer_iterations: int = OUTER_ITERATIONS,
) -> CNMFOutput:
    rows_hr, cols_hr = hr_shape
    rows_lr, cols_lr, bands = lr.shape
    msi, msi_valid = msi_strip(0, rows_hr)
    msi_bands = msi.shape[2]
    gr, gc = sensor.spatial.matrices(rows_lr, cols_lr, rows_hr, cols_hr)
    # MSI gaps: the LR-HSI's SRF image, enlarged; these pixels are masked in the output anyway
    if not msi_valid.all():
        from .bicubic import BicubicStrips

        fill = BicubicStrips((lr @ srf).astype(np.float32), rows_hr // rows_lr).strip(0, rows_lr)
        msi = np.where(msi_valid[:, :, None], msi, fill)
    msi = np.clip(msi, 0.0, None).reshape(-1, msi_bands).T.astype(np.float64)  # b × N
    hsi = np.clip(lr[lr_valid], 0.0, None).T.astype(np.float64)  # B × n
    delta = 2.0 * np.sqrt(max(float(msi.mean()), TINY) / 0.7455) / msi_bands**3
    msi_aug = np.vstack([msi, np.full((1, msi.shape[1]), delta)])
    hsi_aug = np.vstack([hsi, np.full((1, hsi.shape[1]), delta)])
    update_msi_endmembers = msi_bands > MIN_MS_BANDS_FOR_ENDMEMBER_UPDATE

    spectra = vca(hsi.T, k, rng=seed)[0]
    w_h = np.vstack([np.clip(spectra.T, TINY, None), np.full((1, k), delta)])
    h_h = np.full((k, hsi.shape[1]), 1.0 / k)
    w_h, h_h, total = _unmix(hsi_aug, w_h, h_h, first="abundances", update_both=False, iterations=inner_iterations)
    h_m = np.full((k, msi.shape[1]), 1.0 / k)
    for _ in range(outer_iterations):
        w_m = np.vstack([srf.T @ w_h[:-1], np.full((1, k), delta)])
        w_m, h_m, count = _unmix(
            msi_aug, w_m, h_m, first="abundances", update_both=update_msi_endmembers, iterations=inner_iterations
        )
        total += count
        abundance_maps = h_m.T.reshape(rows_hr, cols_hr, k).astype(np.float32)
        h_h = apply_spatial(abundance_maps, gr, gc)[lr_valid].T.astype(np.float64)
        w_h, h_h, count = _unmix(
            hsi_aug, w_h, h_h, first="endmembers", update_both=update_msi_endmembers, iterations=inner_iterations
        )
        total += count
    endmembers = w_h[:-1].T  # K × B
    loss = _cost(hsi_aug, w_h, h_h) / hsi.size
    maps = h_m.T.reshape(rows_hr, cols_hr, k).astype(np.float32)
    for start in range(0, rows_hr, 256):
        out[start : start + 256] = maps[start : start + 256] @ endmembers.astype(np.float32)
    return CNMFOutput(endmembers.astype(np.float32), maps if return_abundances else None, total, loss)
