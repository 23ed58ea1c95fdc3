"""Adaptive Gram–Schmidt (GSA) fusion, extended to hyperspectral cubes.

B. Aiazzi, S. Baronti and M. Selva, "Improving component substitution pansharpening through
multivariate regression of MS+Pan data", IEEE TGRS 45(10), 2007; extended to HS–MS fusion as in
N. Yokoya, C. Grohnfeldt and J. Chanussot, "Hyperspectral and multispectral data fusion: a
comparative review of the recent literature", IEEE GRSM 5(2), 2017: every HSI band joins the group
of the MSI band it correlates with best (at low resolution), and each group is pansharpened with
its MSI band as the pan image.

Per group with pan P and HSI bands H_k (enlarged to the HR grid, H̃_k):
- intensity weights α by least squares of P taken to the LR grid on the LR bands (with intercept);
- I = Σ α_k H̃_k + α₀; injection gains g_k = cov(H̃_k, I) / var(I);
- P is matched to I's mean and deviation; fused_k = H̃_k + g_k (P − I).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .bicubic import BicubicStrips
from .observation import SensorFit, msi_on_lr_grid


def fuse_gsa(
    lr: np.ndarray,
    lr_valid: np.ndarray,
    msi_strip: Callable[[int, int], tuple[np.ndarray, np.ndarray]],
    hr_shape: tuple[int, int],
    sensor: SensorFit,
    out: np.ndarray,
    *,
    strip_rows: int,
) -> None:
    rows_hr, cols_hr = hr_shape
    rows_lr, cols_lr, bands = lr.shape
    ratio = rows_hr // rows_lr
    gr, gc = sensor.spatial.matrices(rows_lr, cols_lr, rows_hr, cols_hr)
    strips = [(start, min(start + strip_rows, rows_hr)) for start in range(0, rows_hr, strip_rows)]
    valid_hr_lr = np.repeat(np.repeat(lr_valid, ratio, axis=0), ratio, axis=1)

    msi_lr, complete = msi_on_lr_grid(msi_strip, gr, gc, ratio)
    usable = lr_valid & complete if (lr_valid & complete).sum() > 2 else lr_valid
    msi_bands = msi_lr.shape[2]

    hsi_pixels = lr[usable].astype(np.float64)
    msi_pixels = msi_lr[usable].astype(np.float64)
    group = np.argmax(_correlations(hsi_pixels, msi_pixels), axis=1)  # MSI band of every HSI band
    weights = np.zeros((bands, msi_bands))
    intercepts = np.zeros(msi_bands)
    for j in range(msi_bands):
        members = np.flatnonzero(group == j)
        if members.size == 0:
            continue
        design = np.hstack([hsi_pixels[:, members], np.ones((hsi_pixels.shape[0], 1))])
        ridge = 1e-8 * np.trace(design.T @ design) / design.shape[1]
        solution = np.linalg.solve(design.T @ design + ridge * np.eye(design.shape[1]), design.T @ msi_pixels[:, j])
        weights[members, j] = solution[:-1]
        intercepts[j] = solution[-1]

    enlarged = BicubicStrips(lr, ratio)
    count = 0
    sum_i, sum_ii = np.zeros(msi_bands), np.zeros(msi_bands)
    sum_p, sum_pp = np.zeros(msi_bands), np.zeros(msi_bands)
    sum_h, sum_hi = np.zeros(bands), np.zeros(bands)
    for start, stop in strips:
        up = enlarged.strip(start // ratio, stop // ratio)
        msi, valid = msi_strip(start, stop)
        use = valid & valid_hr_lr[start:stop]
        h = up[use].astype(np.float64)
        intensity = h @ weights + intercepts
        pan = msi[use].astype(np.float64)
        count += h.shape[0]
        sum_i += intensity.sum(0)
        sum_ii += (intensity**2).sum(0)
        sum_p += pan.sum(0)
        sum_pp += (pan**2).sum(0)
        sum_h += h.sum(0)
        sum_hi += (h * intensity[:, group]).sum(0)
    mean_i, mean_p, mean_h = sum_i / count, sum_p / count, sum_h / count
    var_i = np.maximum(sum_ii / count - mean_i**2, 1e-30)
    std_p = np.sqrt(np.maximum(sum_pp / count - mean_p**2, 1e-30))
    gains = (sum_hi / count - mean_h * mean_i[group]) / var_i[group]
    for start, stop in strips:
        up = enlarged.strip(start // ratio, stop // ratio)
        msi, _ = msi_strip(start, stop)
        intensity = up @ weights.astype(np.float32) + intercepts.astype(np.float32)
        pan = (msi - mean_p) * (np.sqrt(var_i) / std_p) + mean_i
        out[start:stop] = up + (pan - intensity)[:, :, group] * gains.astype(np.float32)


def _correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of every column of ``a`` with every column of ``b``."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    norms = np.outer(np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0))
    return (a.T @ b) / np.maximum(norms, 1e-30)
