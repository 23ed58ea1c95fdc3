"""Where a high-resolution image without georeference lies on a low-resolution cube's grid.

When neither georeference nor an integer size ratio relates the two images, fusion needs the
mapping between their pixel grids. :func:`register` estimates a similarity transform (scale,
rotation, translation) from the images themselves: the HSI seen through the SRF and the MSI, both
reduced to one brightness band, are matched by normalised cross-correlation over a grid of scales
and rotations (translation from the correlation peak), and the best match is refined by
Nelder–Mead on the same criterion the sensor fit uses — the share of the HSI's variance that the
MSI, averaged over each LR pixel's footprint, leaves unexplained.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from affine import Affine
from scipy import ndimage, optimize

ANGLES = np.arange(-45.0, 45.1, 3.0)
"""Rotations tried in the coarse search, degrees."""
SCALES = np.geomspace(0.5, 1.25, 11)
"""Scales tried, relative to the one that makes both images cover the same ground (the MSI may cover more)."""
REGISTRATION_LIMIT = 0.6
"""A registration leaving more than this share of the HSI's brightness unexplained is no registration."""


@dataclass
class Registration:
    transform: Affine
    """LR pixel-corner coordinates (col, row) → MSI pixel-corner coordinates (col, row)."""
    scale: float
    """MSI pixels per LR pixel."""
    angle: float
    """Rotation of the MSI's grid against the HSI's, degrees."""
    unexplained: float
    """Share of the HSI's variance (one brightness band) the registered MSI leaves unexplained."""


def _brightness(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    image = np.where(valid, values.mean(axis=2), np.nan)
    fill = np.nanmean(image)
    return np.where(np.isfinite(image), image, fill).astype(np.float64)


def _ncc(template: np.ndarray, image: np.ndarray) -> tuple[float, tuple[int, int]]:
    """Best normalised cross-correlation of ``template`` within ``image`` (both 2-D) and its offset."""
    th, tw = template.shape
    if image.shape[0] < th or image.shape[1] < tw:
        return -1.0, (0, 0)
    t = template - template.mean()
    t_norm = np.sqrt((t**2).sum())
    if t_norm == 0:
        return -1.0, (0, 0)
    shape = (image.shape[0] + th, image.shape[1] + tw)
    spectrum = np.fft.rfft2(image, shape) * np.conj(np.fft.rfft2(t, shape))
    numerator = np.fft.irfft2(spectrum, shape)[: image.shape[0] - th + 1, : image.shape[1] - tw + 1]
    # local sums of the image and its square over each template-sized window
    padded = np.pad(image, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    squares = np.pad(image**2, ((1, 0), (1, 0))).cumsum(0).cumsum(1)

    def window(table: np.ndarray) -> np.ndarray:
        return table[th:, tw:] - table[:-th, tw:] - table[th:, :-tw] + table[:-th, :-tw]

    count = th * tw
    sums, sums2 = window(padded), window(squares)
    variance = np.maximum(sums2 - sums**2 / count, 1e-12)
    score = numerator / (t_norm * np.sqrt(variance))
    index = np.unravel_index(np.argmax(score), score.shape)
    return float(score[index]), (int(index[0]), int(index[1]))


def _transform(scale: float, angle: float, tx: float, ty: float) -> Affine:
    """LR pixel-corner coordinates → MSI pixel-corner coordinates."""
    return Affine.translation(tx, ty) @ Affine.rotation(angle) @ Affine.scale(scale)


def _unexplained(lr: np.ndarray, msi_smooth: np.ndarray, mapping: Affine) -> float:
    rows, cols = lr.shape
    c, r = np.meshgrid(np.arange(cols) + 0.5, np.arange(rows) + 0.5)
    x = mapping.a * c + mapping.b * r + mapping.c
    y = mapping.d * c + mapping.e * r + mapping.f
    inside = (x >= 0) & (y >= 0) & (x <= msi_smooth.shape[1] - 1) & (y <= msi_smooth.shape[0] - 1)
    if inside.sum() < 0.25 * lr.size or inside.sum() < 9:
        return 1.0
    sampled = ndimage.map_coordinates(msi_smooth, [y[inside] - 0.5, x[inside] - 0.5], order=1, mode="nearest")
    target = lr[inside]
    design = np.column_stack([sampled, np.ones_like(sampled)])
    coefficients, *_ = np.linalg.lstsq(design, target, rcond=None)
    residual = target - design @ coefficients
    return float((residual**2).sum() / max(((target - target.mean()) ** 2).sum(), 1e-30))


def _canvas(smooth: np.ndarray, scale: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """The MSI (already averaged over LR footprints) sampled on a grid of LR pixels rotated by
    ``angle``, covering all of it; and the MSI corner coordinates of that grid's origin."""
    theta = np.deg2rad(angle)
    rotation = scale * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])  # (u, v) → (x, y)
    rows_hr, cols_hr = smooth.shape
    corners = np.array([[0, 0], [cols_hr, 0], [0, rows_hr], [cols_hr, rows_hr]], dtype=np.float64)
    uv = np.linalg.solve(rotation, corners.T).T
    low, high = uv.min(axis=0), uv.max(axis=0)
    origin = rotation @ low
    shape = (int(np.ceil(high[1] - low[1])), int(np.ceil(high[0] - low[0])))
    # output index (v, u) → MSI array index (y − ½, x − ½) with (x, y) = rotation (u + ½, v + ½) + origin
    matrix = np.array([[rotation[1, 1], rotation[1, 0]], [rotation[0, 1], rotation[0, 0]]])
    offset = matrix @ np.array([0.5, 0.5]) + np.array([origin[1], origin[0]]) - 0.5
    sampled = ndimage.affine_transform(smooth, matrix, offset=offset, output_shape=shape, order=1, mode="constant", cval=np.nan)
    return np.where(np.isfinite(sampled), sampled, np.nanmean(sampled)), origin


def register(lr_through_srf: np.ndarray, lr_valid: np.ndarray, msi: np.ndarray, msi_valid: np.ndarray) -> Registration:
    """The similarity transform that lays the LR grid on the MSI's (see the module docstring)."""
    lr = _brightness(lr_through_srf, lr_valid)
    hr = _brightness(np.asarray(msi, dtype=np.float32), msi_valid)
    same_ground = float(np.sqrt(hr.size / lr.size))
    best = (-2.0, same_ground, 0.0, np.zeros(2))
    for relative in SCALES:
        scale = same_ground * relative
        smooth = ndimage.uniform_filter(hr, max(1, int(round(scale))))
        for angle in ANGLES:
            canvas, origin = _canvas(smooth, scale, angle)
            score, (row, col) = _ncc(lr, canvas)
            if score > best[0]:
                theta = np.deg2rad(angle)
                rotation = scale * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
                best = (score, scale, angle, rotation @ np.array([col, row], dtype=np.float64) + origin)
    _, scale, angle, shift = best
    smooth = ndimage.uniform_filter(hr, max(1, int(round(scale))))

    def objective(params: np.ndarray) -> float:
        return _unexplained(lr, smooth, _transform(*params))

    start = np.array([scale, angle, shift[0], shift[1]])
    refined = optimize.minimize(objective, start, method="Nelder-Mead",
                                options={"xatol": 1e-3, "fatol": 1e-7, "maxfev": 400,
                                         "initial_simplex": np.vstack([start, start + np.diag([0.02 * scale, 0.5, 0.5 * scale, 0.5 * scale])])})
    params = refined.x if refined.fun <= objective(start) else start
    return Registration(_transform(*params), float(params[0]), float(params[1]), float(min(refined.fun, objective(start))))
