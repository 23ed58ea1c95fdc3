"""The one implementation of the quality metrics (docs/evaluate.md has the exact definitions).

Image metrics compare a result with a reference, both rows × cols × bands (2-D arrays count as one
band). ``mask`` (rows × cols, True = use the pixel) leaves no-data pixels out of every metric;
non-finite values in the pixels that are used raise :class:`InvalidDataError` rather than turning
into a silent NaN. Per-band metrics are averaged over bands with equal weight.

Unmixing metrics: spectral angles, Hungarian matching of endmembers on spectral angle, the mean
spectral angle distance (SAD) and the abundance RMSE.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from .errors import InvalidDataError, ParameterError, ShapeMismatchError

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # 11 × 11 window, as Wang et al. (2004)
SSIM_K1, SSIM_K2 = 0.01, 0.03
UIQI_WINDOW = 32


# ---------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------


def _pair(result, reference, mask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float64 rows × cols × bands copies of both images and the boolean pixel mask, all checked."""
    x = _as_cube(result, "result")
    y = _as_cube(reference, "reference")
    if x.shape != y.shape:
        raise ShapeMismatchError(f"the result has shape {_shape(x)} but the reference has {_shape(y)}")
    if mask is None:
        valid = np.ones(x.shape[:2], dtype=bool)
    else:
        valid = np.asarray(mask, dtype=bool)
        if valid.shape != x.shape[:2]:
            raise ShapeMismatchError(f"mask of shape {valid.shape} does not fit images of {x.shape[0]}×{x.shape[1]}")
    if not valid.any():
        raise InvalidDataError("no valid pixel to compare: every pixel is masked as no-data")
    for name, values in (("result", x), ("reference", y)):
        bad = ~np.isfinite(values[valid])
        if bad.any():
            raise InvalidDataError(
                f"the {name} holds {int(bad.sum())} NaN/Inf values in pixels that are not masked as no-data"
            )
    return x, y, valid


def _as_cube(array, name: str) -> np.ndarray:
    data = np.asarray(array, dtype=np.float64)
    if data.ndim == 2:
        data = data[:, :, np.newaxis]
    if data.ndim != 3:
        raise ShapeMismatchError(f"the {name} must be rows × cols × bands, got shape {data.shape}")
    return data


def _shape(array: np.ndarray) -> str:
    return "×".join(str(n) for n in array.shape)


def _peak(y: np.ndarray, valid: np.ndarray, data_range: float | None) -> float:
    if data_range is not None:
        if not (np.isfinite(data_range) and data_range > 0):
            raise ParameterError(f"data range must be a positive number, got {data_range}")
        return float(data_range)
    peak = float(y[valid].max())
    if peak <= 0:
        raise InvalidDataError("the reference's maximum is not positive, so the peak is undefined; give a data range")
    return peak


# ---------------------------------------------------------------------------------------------
# Per-band image metrics
# ---------------------------------------------------------------------------------------------


def _psnr_bands(x, y, valid, peak) -> np.ndarray:
    mse = np.mean((x[valid] - y[valid]) ** 2, axis=0)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(peak**2 / mse)


def _rmse_bands(x, y, valid) -> np.ndarray:
    return np.sqrt(np.mean((x[valid] - y[valid]) ** 2, axis=0))


def _cc_bands(x, y, valid) -> np.ndarray:
    """Pearson correlation per band; NaN where either band is constant over the valid pixels."""
    xs = x[valid] - x[valid].mean(axis=0)
    ys = y[valid] - y[valid].mean(axis=0)
    sx = np.sqrt((xs**2).sum(axis=0))
    sy = np.sqrt((ys**2).sum(axis=0))
    scale = np.maximum(np.abs(x[valid]).max(axis=0), np.abs(y[valid]).max(axis=0))
    tiny = 1e-12 * np.maximum(scale, np.finfo(float).tiny) * np.sqrt(xs.shape[0])
    out = np.full(x.shape[2], np.nan)
    defined = (sx > tiny) & (sy > tiny)
    out[defined] = (xs * ys).sum(axis=0)[defined] / (sx[defined] * sy[defined])
    return out


def _interior(valid: np.ndarray, radius: int) -> np.ndarray:
    """Valid pixels whose full window lies inside the image (all valid pixels if the image is too small)."""
    rows, cols = valid.shape
    if rows <= 2 * radius or cols <= 2 * radius:
        return valid
    inner = np.zeros_like(valid)
    inner[radius : rows - radius, radius : cols - radius] = True
    inner &= valid
    return inner if inner.any() else valid


_BAND_CHUNK = 16  # bands filtered together: fewer Python round trips, bounded memory


def _band_chunks(bands: int):
    for start in range(0, bands, _BAND_CHUNK):
        yield slice(start, min(start + _BAND_CHUNK, bands))


def _centred(x, y, valid, chunk) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both images' bands minus the reference band means (keeps E[x²] − E[x]² accurate), zero where masked."""
    offset = y[:, :, chunk][valid].mean(axis=0)
    xb = x[:, :, chunk] - offset
    yb = y[:, :, chunk] - offset
    if not valid.all():
        xb[~valid] = 0.0
        yb[~valid] = 0.0
    return xb, yb, offset


def _ssim_bands(x, y, valid, peak) -> np.ndarray:
    """Mean SSIM per band: Gaussian-weighted local statistics over the valid pixels of each window."""
    c1, c2 = (SSIM_K1 * peak) ** 2, (SSIM_K2 * peak) ** 2
    radius = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)

    def smooth(image: np.ndarray) -> np.ndarray:
        sigma = (SSIM_SIGMA, SSIM_SIGMA, 0.0)[: image.ndim]
        return ndimage.gaussian_filter(image, sigma, truncate=SSIM_TRUNCATE, mode="reflect")

    total = smooth(valid.astype(np.float64))
    total[~valid] = 1.0  # those pixels are not averaged; avoids dividing by zero
    total = total[:, :, np.newaxis]
    use = _interior(valid, radius)
    out = np.empty(x.shape[2])
    for chunk in _band_chunks(x.shape[2]):
        xb, yb, offset = _centred(x, y, valid, chunk)
        mx, my = smooth(xb) / total, smooth(yb) / total
        vx = smooth(xb * xb) / total - mx * mx
        vy = smooth(yb * yb) / total - my * my
        cxy = smooth(xb * yb) / total - mx * my
        mx, my = mx + offset, my + offset
        ssim_map = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        out[chunk] = ssim_map[use].mean(axis=0)
    return out


def _window_sums(image: np.ndarray, size: int) -> np.ndarray:
    """Sum over every size × size window that lies inside the image (stride 1), per band."""
    table = np.zeros((image.shape[0] + 1, image.shape[1] + 1) + image.shape[2:])
    table[1:, 1:] = image.cumsum(axis=0).cumsum(axis=1)
    return table[size:, size:] - table[:-size, size:] - table[size:, :-size] + table[:-size, :-size]


def _uiqi_bands(x, y, valid) -> np.ndarray:
    """Universal image quality index per band, averaged over sliding windows (Wang & Bovik 2002)."""
    size = min(UIQI_WINDOW, valid.shape[0], valid.shape[1])
    count = _window_sums(valid.astype(np.float64), size)
    used = count > 0
    count = count[used][:, np.newaxis]
    out = np.empty(x.shape[2])
    for chunk in _band_chunks(x.shape[2]):
        scale = np.maximum(np.abs(x[:, :, chunk][valid]).max(axis=0), np.abs(y[:, :, chunk][valid]).max(axis=0))
        xb, yb, offset = _centred(x, y, valid, chunk)
        mx = _window_sums(xb, size)[used] / count
        my = _window_sums(yb, size)[used] / count
        vx = np.maximum(_window_sums(xb * xb, size)[used] / count - mx * mx, 0.0)
        vy = np.maximum(_window_sums(yb * yb, size)[used] / count - my * my, 0.0)
        cxy = _window_sums(xb * yb, size)[used] / count - mx * my
        mx, my = mx + offset, my + offset
        out[chunk] = _uiqi_windows(mx, my, vx, vy, cxy, tolerance=1e-12 * scale**2).mean(axis=0)
    return out


def _uiqi_windows(mx, my, vx, vy, cxy, *, tolerance) -> np.ndarray:
    """Q per window, with Wang & Bovik's conventions where a factor of the denominator vanishes:
    flat windows (σx² + σy² = 0) score 2μxμy / (μx² + μy²), dark ones (μx² + μy² = 0) 2σxy / (σx² + σy²),
    windows that are both score 1."""
    flat = vx + vy <= tolerance
    dark = mx * mx + my * my <= tolerance
    variance_sum = np.where(flat, 1.0, vx + vy)
    mean_square_sum = np.where(dark, 1.0, mx * mx + my * my)
    regular = 4 * cxy * mx * my / (variance_sum * mean_square_sum)
    return np.where(
        flat,
        np.where(dark, 1.0, 2 * mx * my / mean_square_sum),
        np.where(dark, 2 * cxy / variance_sum, regular),
    )


def _angles_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle (degrees) between unit vectors row by row: 2·atan2(|a − b|, |a + b|), accurate near 0°."""
    return np.degrees(2.0 * np.arctan2(np.linalg.norm(a - b, axis=-1), np.linalg.norm(a + b, axis=-1)))


def _sam_pixels(x, y, valid) -> np.ndarray:
    """Spectral angle (degrees) of every valid pixel whose reference spectrum is not all zero.

    A zero result spectrum against a non-zero reference counts as orthogonal (90°).
    """
    xs, ys = x[valid], y[valid]
    y_norm = np.linalg.norm(ys, axis=1)
    keep = y_norm > 0
    if not keep.any():
        raise InvalidDataError("SAM is undefined: every reference spectrum is zero")
    xs, ys, y_norm = xs[keep], ys[keep], y_norm[keep]
    x_norm = np.linalg.norm(xs, axis=1)
    zero = x_norm == 0
    angles = _angles_between(xs / np.where(zero, 1.0, x_norm)[:, None], ys / y_norm[:, None])
    angles[zero] = 90.0
    return angles


# ---------------------------------------------------------------------------------------------
# Public image metrics
# ---------------------------------------------------------------------------------------------


def psnr(result, reference, *, data_range: float | None = None, mask=None) -> float:
    """Mean over bands of 10·log10(peak² / MSE_b); peak = ``data_range`` or the reference's maximum.

    Infinite when some band is reproduced exactly.
    """
    x, y, valid = _pair(result, reference, mask)
    return float(np.mean(_psnr_bands(x, y, valid, _peak(y, valid, data_range))))


def ssim(result, reference, *, data_range: float | None = None, mask=None) -> float:
    """Mean over bands of the mean SSIM (Gaussian window σ = 1.5, K1 = 0.01, K2 = 0.03, L = peak)."""
    x, y, valid = _pair(result, reference, mask)
    return float(np.mean(_ssim_bands(x, y, valid, _peak(y, valid, data_range))))


def sam(result, reference, *, mask=None) -> float:
    """Mean spectral angle in degrees over valid pixels (pixels with an all-zero reference are left out)."""
    x, y, valid = _pair(result, reference, mask)
    return float(np.mean(_sam_pixels(x, y, valid)))


def sam_map(result, reference, *, mask=None) -> np.ndarray:
    """The spectral angle (degrees) of every pixel, rows × cols; NaN where masked or the reference is all zero."""
    x, y, valid = _pair(result, reference, mask)
    defined = valid.copy()
    defined[valid] = np.linalg.norm(y[valid], axis=1) > 0
    angles = np.full(valid.shape, np.nan)
    angles[defined] = _sam_pixels(x, y, defined)
    return angles


def ergas(result, reference, scale: float, *, mask=None) -> float:
    """100 / scale · sqrt(mean_b (RMSE_b / mean_b)²), mean_b = the reference band's mean; scale = HR/LR size ratio."""
    if not (np.isfinite(scale) and scale > 0):
        raise ParameterError(f"ERGAS needs a positive scale (resolution ratio), got {scale}")
    x, y, valid = _pair(result, reference, mask)
    return _ergas(x, y, valid, scale)


def _ergas(x, y, valid, scale) -> float:
    means = y[valid].mean(axis=0)
    if (means == 0).any():
        band = int(np.nonzero(means == 0)[0][0])
        raise InvalidDataError(f"ERGAS is undefined: reference band {band + 1} has mean 0")
    relative = _rmse_bands(x, y, valid) / means
    return float(100.0 / scale * np.sqrt(np.mean(relative**2)))


def rmse(result, reference, *, mask=None) -> float:
    """Root mean squared error over all valid pixels and bands."""
    x, y, valid = _pair(result, reference, mask)
    return float(np.sqrt(np.mean((x[valid] - y[valid]) ** 2)))


def cc(result, reference, *, mask=None) -> float:
    """Mean over bands of the Pearson correlation (bands constant in either image are left out)."""
    x, y, valid = _pair(result, reference, mask)
    return _mean_defined(_cc_bands(x, y, valid), "CC")


def uiqi(result, reference, *, mask=None) -> float:
    """Mean over bands of the universal image quality index Q on sliding 32 × 32 windows."""
    x, y, valid = _pair(result, reference, mask)
    return float(np.mean(_uiqi_bands(x, y, valid)))


def _mean_defined(values: np.ndarray, name: str) -> float:
    defined = np.isfinite(values)
    if not defined.any():
        raise InvalidDataError(f"{name} is undefined: every band is constant in the result or the reference")
    return float(values[defined].mean())


@dataclass
class QualityAssessment:
    """Scores of a result against a reference: summary figures and per-band values."""

    summary: dict[str, float | None]
    """psnr, ssim, sam, ergas (None without a scale), rmse, cc (None when undefined), uiqi."""
    per_band: dict[str, np.ndarray]
    """psnr, ssim, rmse, cc (NaN where undefined), uiqi; one value per band."""
    valid_pixels: int
    peak: float


def assess_quality(
    result, reference, *, scale: float | None = None, data_range: float | None = None, mask=None
) -> QualityAssessment:
    """Every image metric at once (each band's statistics computed once)."""
    if scale is not None and not (np.isfinite(scale) and scale > 0):
        raise ParameterError(f"ERGAS needs a positive scale (resolution ratio), got {scale}")
    x, y, valid = _pair(result, reference, mask)
    peak = _peak(y, valid, data_range)
    per_band = {
        "psnr": _psnr_bands(x, y, valid, peak),
        "ssim": _ssim_bands(x, y, valid, peak),
        "rmse": _rmse_bands(x, y, valid),
        "cc": _cc_bands(x, y, valid),
        "uiqi": _uiqi_bands(x, y, valid),
    }
    cc_values = per_band["cc"]
    summary: dict[str, float | None] = {
        "psnr": float(np.mean(per_band["psnr"])),
        "ssim": float(np.mean(per_band["ssim"])),
        "sam": float(np.mean(_sam_pixels(x, y, valid))),
        "ergas": None if scale is None else _ergas(x, y, valid, scale),
        "rmse": float(np.sqrt(np.mean((x[valid] - y[valid]) ** 2))),
        "cc": float(cc_values[np.isfinite(cc_values)].mean()) if np.isfinite(cc_values).any() else None,
        "uiqi": float(np.mean(per_band["uiqi"])),
    }
    return QualityAssessment(summary, per_band, int(valid.sum()), peak)


def quality_report(
    result, reference, *, scale: float | None = None, data_range: float | None = None, mask=None
) -> dict[str, float | None]:
    """psnr, ssim, sam, ergas (None without ``scale``), rmse, cc (None when undefined), uiqi."""
    return assess_quality(result, reference, scale=scale, data_range=data_range, mask=mask).summary


# ---------------------------------------------------------------------------------------------
# Unmixing
# ---------------------------------------------------------------------------------------------


def spectral_angles(a, b) -> np.ndarray:
    """Angles in degrees between every spectrum of ``a`` (n × B) and every spectrum of ``b`` (m × B)."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    if a.shape[1] != b.shape[1]:
        raise ShapeMismatchError(f"spectra with {a.shape[1]} and {b.shape[1]} bands cannot be compared")
    for name, spectra in (("first", a), ("second", b)):
        if not np.isfinite(spectra).all():
            raise InvalidDataError(f"the {name} set of spectra holds NaN/Inf values")
        norms = np.linalg.norm(spectra, axis=1)
        if (norms == 0).any():
            raise InvalidDataError(f"spectrum {int(np.nonzero(norms == 0)[0][0]) + 1} of the {name} set is all zero")
    a_unit = a / np.linalg.norm(a, axis=1, keepdims=True)
    b_unit = b / np.linalg.norm(b, axis=1, keepdims=True)
    return _angles_between(a_unit[:, np.newaxis, :], b_unit[np.newaxis, :, :])


def match_endmembers(estimated, reference) -> tuple[np.ndarray, np.ndarray]:
    """Pair estimated endmembers (K' × B) with reference ones (K × B, K ≤ K') minimising the total spectral angle.

    Returns ``(order, sad)``: ``estimated[order]`` lines up with ``reference`` and ``sad[k]`` is the
    angle (degrees) between reference endmember k and its match (Hungarian algorithm).
    """
    angles = spectral_angles(reference, estimated)
    if angles.shape[1] < angles.shape[0]:
        raise ShapeMismatchError(
            f"{angles.shape[1]} estimated endmembers cannot be matched with {angles.shape[0]} reference endmembers"
        )
    rows, order = linear_sum_assignment(angles)
    return order, angles[rows, order]


def mean_sad(estimated, reference) -> float:
    """Mean spectral angle distance (degrees) after Hungarian matching."""
    return float(match_endmembers(estimated, reference)[1].mean())


def abundance_rmse(estimated, reference, *, mask=None) -> float:
    """aRMSE: sqrt of the mean over valid pixels and endmembers of the squared abundance error.

    Both are rows × cols × K (or pixels × K) with endmembers in the same order (apply the order from
    :func:`match_endmembers` first).
    """
    est = np.asarray(estimated, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if est.shape != ref.shape:
        raise ShapeMismatchError(f"estimated abundances have shape {_shape(est)} but the reference has {_shape(ref)}")
    est = est.reshape(-1, est.shape[-1])
    ref = ref.reshape(-1, ref.shape[-1])
    valid = np.ones(est.shape[0], dtype=bool) if mask is None else np.asarray(mask, dtype=bool).reshape(-1)
    if valid.size != est.shape[0]:
        raise ShapeMismatchError(f"mask of {valid.size} pixels does not fit {est.shape[0]} abundance pixels")
    if not valid.any():
        raise InvalidDataError("no valid pixel to compare: every pixel is masked as no-data")
    for name, values in (("estimated", est), ("reference", ref)):
        if not np.isfinite(values[valid]).all():
            raise InvalidDataError(f"the {name} abundances hold NaN/Inf values in pixels that are not masked")
    return float(np.sqrt(np.mean((est[valid] - ref[valid]) ** 2)))


def match_abundances(estimated, reference, *, mask=None) -> tuple[np.ndarray, np.ndarray]:
    """Pair estimated abundance maps (K' of them) with reference ones (K ≤ K') minimising the total aRMSE.

    For abundances scored without endmembers to match on. Both are rows × cols × K (or pixels × K).
    Returns ``(order, rmse)``: ``estimated[..., order]`` lines up with ``reference`` and ``rmse[k]`` is
    :func:`abundance_rmse` of reference map k and its match (Hungarian algorithm).
    """
    est = np.asarray(estimated)
    ref = np.asarray(reference)
    if est.shape[-1] < ref.shape[-1]:
        raise ShapeMismatchError(
            f"{est.shape[-1]} estimated abundance maps cannot be matched with {ref.shape[-1]} reference maps"
        )
    cost = np.array(
        [[abundance_rmse(est[..., [j]], ref[..., [k]], mask=mask) for j in range(est.shape[-1])] for k in range(ref.shape[-1])]
    )
    rows, order = linear_sum_assignment(cost)
    return order, cost[rows, order]
