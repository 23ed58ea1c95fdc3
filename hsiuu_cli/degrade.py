"""The one implementation of the degradations used to make test cases and to model sensors.

Spatial: Gaussian point-spread function (PSF) blur with 'reflect' borders followed by decimation
by an integer ratio, or antialiased bicubic down-sampling; a sub-pixel shift (misregistration). Spectral: a spectral-response matrix
(see :func:`hsiuu_cli.srf.srf_matrix`). Noise: additive Gaussian at a signal-to-noise ratio in dB.
Also the bicubic resize used as the up-sampling baseline.

Arrays are rows × cols × bands. Non-finite values (NaN marks no-data) are left out of the blur and
the resize, band by band, rather than spread over their neighbours; they stay NaN in the output.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from .errors import ParameterError, ShapeMismatchError


def default_sigma(ratio: int) -> float:
    """PSF sigma (HR pixels) for a ratio: ratio / 2.

    That Gaussian's modulation transfer at the low-resolution Nyquist frequency is
    exp(-π²/8) ≈ 0.29, in the 0.2–0.3 range of real imaging sensors, and it is the σ = 2 px at
    ratio 4 used in the fusion literature's test protocols.
    """
    return ratio / 2.0


def sigma_for_kernel_size(size: int) -> float:
    """PSF sigma for a kernel of ``size`` pixels: the kernel spans ±3σ, so σ = (size − 1) / 6."""
    return (size - 1) / 6.0


def kernel_size_for_sigma(sigma: float) -> int:
    """Odd kernel size covering ±3σ (at least 3)."""
    return max(3, 2 * math.ceil(3.0 * sigma) + 1)


def default_offset(ratio: int) -> int:
    """Decimation offset: the centre pixel of each ratio × ratio block, (ratio − 1) // 2.

    Exact for odd ratios; for even ratios the block centre falls between pixels and this picks the
    pixel half a pixel before it (pixel 1 of 0..3 at ratio 4).
    """
    return (ratio - 1) // 2


def gaussian_psf(sigma: float | None = None, size: int | None = None) -> np.ndarray:
    """A (size × size) Gaussian kernel summing to 1.

    Give ``sigma`` (pixels), ``size`` (pixels, odd), or both. With only ``size``, σ = (size − 1)/6;
    with only ``sigma``, size = 2·ceil(3σ) + 1.
    """
    if sigma is None and size is None:
        raise ParameterError("give the PSF sigma or its kernel size")
    if size is not None:
        if int(size) != size or size < 1 or size % 2 == 0:
            raise ParameterError(f"PSF kernel size must be an odd positive integer, got {size}")
        size = int(size)
    if sigma is None:
        sigma = sigma_for_kernel_size(size)
    if not (np.isfinite(sigma) and sigma >= 0):
        raise ParameterError(f"PSF sigma must be a non-negative number, got {sigma}")
    if size is None:
        size = kernel_size_for_sigma(sigma)
    if sigma == 0:
        kernel = np.zeros((size, size))
        kernel[size // 2, size // 2] = 1.0
        return kernel
    offsets = np.arange(size) - (size - 1) / 2.0
    profile = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = np.outer(profile, profile)
    return kernel / kernel.sum()


def blur(array: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve every band with ``kernel`` ('reflect' borders); non-finite values are left out and stay NaN.

    A separable (rank-1) kernel, such as :func:`gaussian_psf`, runs as two 1-D passes.
    """
    data = _as_cube(array)
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 2:
        raise ParameterError(f"PSF kernel must be 2-D, got shape {kernel.shape}")
    dtype = _float_dtype(data)
    finite = np.isfinite(data)
    complete = bool(finite.all())
    values = data.astype(dtype, copy=True)
    if not complete:
        values[~finite] = 0.0
    blurred = _convolve(values, kernel)
    if not complete:
        # normalised convolution: each output is the kernel-weighted mean of its finite neighbours
        weight = _convolve(finite.astype(dtype), kernel)
        with np.errstate(invalid="ignore", divide="ignore"):
            blurred /= weight
        blurred[~finite] = np.nan
    return _like_input(blurred, array)


def _convolve(values: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    u, s, vt = np.linalg.svd(kernel)
    if s.size == 1 or s[1] <= 1e-12 * s[0]:
        column = u[:, 0] * np.sqrt(s[0])
        row = vt[0] * np.sqrt(s[0])
        if column.sum() < 0:
            column, row = -column, -row
        # convolution flips the kernel; correlate1d does not
        out = ndimage.correlate1d(values, column[::-1], axis=0, mode="reflect")
        return ndimage.correlate1d(out, row[::-1], axis=1, mode="reflect")
    return ndimage.convolve(values, kernel[:, :, np.newaxis], mode="reflect")


def decimate(array: np.ndarray, ratio: int, offset: int = 0) -> np.ndarray:
    """Every ``ratio``-th pixel from ``offset`` in both directions: ``array[offset::ratio, offset::ratio]``.

    The result has rows // ratio × cols // ratio pixels: a partial block at the bottom or right
    edge is dropped so the low-resolution grid covers whole blocks only.
    """
    ratio = _check_ratio(ratio)
    if not 0 <= offset < ratio:
        raise ParameterError(f"decimation offset must be in 0..{ratio - 1}, got {offset}")
    data = _as_cube(array)
    rows, cols = data.shape[0] // ratio, data.shape[1] // ratio
    if rows == 0 or cols == 0:
        raise ParameterError(f"a {data.shape[0]}×{data.shape[1]} image is smaller than the ratio {ratio}")
    return _like_input(data[offset::ratio, offset::ratio][:rows, :cols], array)


def spatial_degrade(
    array: np.ndarray,
    ratio: int,
    *,
    method: str = "gaussian",
    sigma: float | None = None,
    kernel_size: int | None = None,
    offset: int | None = None,
) -> np.ndarray:
    """A low-resolution version: Gaussian PSF blur then decimation, or antialiased bicubic.

    ``gaussian``: σ from ``sigma``, else from ``kernel_size`` ((size − 1)/6), else ratio / 2;
    decimation at ``offset`` (default: the centre of each block, :func:`default_offset`).
    ``bicubic``: antialiased bicubic down-sampling to rows // ratio × cols // ratio of the whole blocks.
    """
    ratio = _check_ratio(ratio)
    data = _as_cube(array)
    if method == "gaussian":
        if sigma is None and kernel_size is None:
            sigma = default_sigma(ratio)
        kernel = gaussian_psf(sigma, kernel_size)
        return decimate(blur(data, kernel), ratio, default_offset(ratio) if offset is None else offset)
    if method == "bicubic":
        if sigma is not None or kernel_size is not None or offset is not None:
            raise ParameterError("sigma, kernel size and offset apply to the Gaussian PSF, not to bicubic")
        rows, cols = data.shape[0] // ratio, data.shape[1] // ratio
        if rows == 0 or cols == 0:
            raise ParameterError(f"a {data.shape[0]}×{data.shape[1]} image is smaller than the ratio {ratio}")
        return resize_bicubic(data[: rows * ratio, : cols * ratio], rows, cols)
    raise ParameterError(f"unknown PSF method '{method}' (use gaussian or bicubic)")


def shift(array: np.ndarray, rows: float, cols: float) -> np.ndarray:
    """The image moved by (``rows``, ``cols``) pixels (down/right for positive values), sub-pixel by
    cubic-spline interpolation (scipy.ndimage.shift, mirrored borders): ``out[i, j] = in[i − rows, j − cols]``.

    Non-finite values are left out of the interpolation and pixels that mostly come from them are NaN.
    """
    if not (np.isfinite(rows) and np.isfinite(cols)):
        raise ParameterError(f"a shift must be finite, got {rows}, {cols}")
    data = _as_cube(array)
    dtype = _float_dtype(data)
    finite = np.isfinite(data)
    complete = bool(finite.all())
    values = np.where(finite, data, 0.0).astype(np.float64) if not complete else data.astype(np.float64)
    moved = _shift_bands(values, rows, cols, order=3)
    if not complete:
        weight = _shift_bands(finite.astype(np.float64), rows, cols, order=1)
        moved[weight < 0.5] = np.nan
    return _like_input(moved.astype(dtype), array)


def _shift_bands(values: np.ndarray, rows: float, cols: float, order: int) -> np.ndarray:
    """Each band shifted on its own: the same values as one 3-D spline shift with no shift across
    bands (a spline reproduces its samples), without its filtering and taps along the band axis
    (4× fewer for cubic splines; the strips of `fuse` spent most of their time there)."""
    bands_first = np.ascontiguousarray(np.moveaxis(values, 2, 0))
    for band in bands_first:
        band[...] = ndimage.shift(band, (rows, cols), order=order, mode="reflect")
    return np.moveaxis(bands_first, 0, 2)


def spectral_degrade(array: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a B × B' spectral-response matrix to every pixel (rows × cols × B → rows × cols × B')."""
    data = _as_cube(array)
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != data.shape[2]:
        raise ShapeMismatchError(
            f"spectral-response matrix of shape {matrix.shape} does not fit a cube with {data.shape[2]} bands"
        )
    dtype = _float_dtype(data)
    from threadpoolctl import threadpool_limits

    # One BLAS thread: split over threads the product rounds differently with their number, and a
    # simulated image must be the same bytes on any machine and on any cluster worker.
    with threadpool_limits(limits=1, user_api="blas"):
        return np.tensordot(data.astype(dtype, copy=False), matrix.astype(dtype, copy=False), axes=([2], [0]))


def noise_sigma(array: np.ndarray, snr_db: float) -> np.ndarray:
    """Per-band noise standard deviation for an SNR in dB: sqrt(mean(signal²) / 10^(snr/10)).

    The mean runs over the band's finite values; a band without any gets no noise.
    """
    return sigma_for_power(*band_power(array), snr_db)


def band_power(array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per band, the sum of the squared finite values (float64) and their count: the signal power
    of :func:`noise_sigma` in parts that add up, so an image made a block at a time can be given
    the noise level of the whole (:func:`sigma_for_power` on the sums)."""
    data = _as_cube(array)
    finite = np.isfinite(data)
    squares = np.where(finite, data.astype(np.float64) ** 2, 0.0).sum(axis=(0, 1))
    return squares, finite.sum(axis=(0, 1))


def sigma_for_power(squares: np.ndarray, counts: np.ndarray, snr_db: float) -> np.ndarray:
    """:func:`noise_sigma` from the sums of :func:`band_power`."""
    if not np.any(counts):
        raise ParameterError("no finite values to measure the signal power for the SNR")
    power = squares / np.maximum(counts, 1)
    return np.sqrt(power / 10.0 ** (snr_db / 10.0))


def check_snr(snr_db: float) -> None:
    if not np.isfinite(snr_db):
        raise ParameterError(f"SNR must be a finite number of dB, got {snr_db}")


def add_noise(
    array: np.ndarray, snr_db: float, rng: np.random.Generator | int | None = None, sigma: np.ndarray | None = None
) -> np.ndarray:
    """Add white Gaussian noise at ``snr_db`` per band (see :func:`noise_sigma`); NaN pixels stay NaN.

    ``sigma``: the per-band noise level when the signal power was measured on a larger image than
    ``array`` (one block of it).
    """
    check_snr(snr_db)
    rng = np.random.default_rng(rng)
    data = _as_cube(array)
    dtype = _float_dtype(data)
    if sigma is None:
        sigma = noise_sigma(data, snr_db)
    noise = rng.standard_normal(data.shape) * sigma
    return _like_input((data + noise).astype(dtype), array)


def resize_bicubic(array: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Bicubic resize of every band to rows × cols (pixel-area aligned, antialiased when shrinking).

    Non-finite values are left out (normalised interpolation, band by band); outputs whose support
    is mostly non-finite are NaN.
    """
    import torch

    data = _as_cube(array)
    if rows < 1 or cols < 1:
        raise ParameterError(f"cannot resize to {rows}×{cols}")
    dtype = _float_dtype(data)
    # a writable C-ordered copy: torch cannot wrap read-only memory maps
    values = np.array(np.moveaxis(data.astype(dtype, copy=False), 2, 0), order="C")
    finite = np.isfinite(values)
    complete = bool(finite.all())
    if not complete:
        values = np.where(finite, values, 0.0).astype(dtype)
    shrinking = rows < data.shape[0] or cols < data.shape[1]

    def interpolate(planes: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(planes)[np.newaxis]
        out = torch.nn.functional.interpolate(
            tensor, size=(rows, cols), mode="bicubic", align_corners=False, antialias=shrinking
        )
        return out[0].numpy()

    resized = interpolate(values)
    if not complete:
        weight = interpolate(finite.astype(dtype))
        with np.errstate(invalid="ignore", divide="ignore"):
            resized = resized / weight
        resized[weight < 0.5] = np.nan
    return _like_input(np.moveaxis(resized, 0, 2).astype(dtype, copy=False), array)


def _like_input(result: np.ndarray, array: np.ndarray) -> np.ndarray:
    """2-D in, 2-D out."""
    return result[:, :, 0] if np.ndim(array) == 2 else result


def _as_cube(array: np.ndarray) -> np.ndarray:
    data = np.asarray(array)
    if data.ndim == 2:
        return data[:, :, np.newaxis]
    if data.ndim != 3:
        raise ShapeMismatchError(f"expected a rows × cols × bands array, got shape {data.shape}")
    return data


def _float_dtype(data: np.ndarray) -> type:
    return np.float64 if data.dtype == np.float64 else np.float32


def _check_ratio(ratio: int) -> int:
    if int(ratio) != ratio or ratio < 1:
        raise ParameterError(f"ratio must be a positive integer, got {ratio}")
    return int(ratio)
