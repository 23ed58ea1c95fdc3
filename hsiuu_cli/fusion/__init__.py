"""HSI–MSI fusion: a low-resolution hyperspectral cube and a high-resolution multispectral, RGB or
panchromatic image of the same place give a hyperspectral cube on the high-resolution grid.

Methods: ``spectramorph`` (default; :mod:`.spectramorph`), ``cnmf`` (Yokoya et al. 2012),
``gsa`` (Aiazzi et al. 2007, extended to hyperspectral), ``bicubic`` (the HSI enlarged, no MSI).

Python API on numpy arrays (rows × cols × bands):

    result = fuse(lr_hsi, hr_msi, srf_matrix, method="spectramorph", seed=0)
    result.fused        # H × W × B float32, NaN where either input has no data

and :func:`run_pipeline`, the adapter contract of the HyperBench fusion benchmark.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import InvalidDataError, ParameterError, ShapeMismatchError
from .bicubic import BicubicStrips
from .blocks import (
    ArrayOut, BadBands, Calibration, FusionPlan, GuardInputs, Precomputed, Sinks, run_blocks, strip_rows_for,
)
from .guard import Checks, diagnose
from .observation import fit_sensor, msi_noise_power, msi_trust, spread_sample

METHODS = ("spectramorph", "cnmf", "gsa", "bicubic")
DEFAULT_ENDMEMBERS = 8
AUTO_MAX_ENDMEMBERS = 16
"""``endmembers="auto"`` takes HySime's signal-subspace dimension of the LR pixels, up to this many."""


@dataclass
class FusionResult:
    fused: np.ndarray
    """H × W × B float32 in the LR-HSI's units; NaN where either input has no data."""
    valid: np.ndarray
    """H × W, True where the fused pixel carries data."""
    method: str
    endmembers: np.ndarray | None = None
    """K × B spectra in the LR-HSI's units (spectramorph, cnmf)."""
    abundances: np.ndarray | None = None
    """H × W × K coefficient maps (spectramorph, cnmf; when asked for)."""
    info: dict = field(default_factory=dict)
    """Summary: method, endmembers, epochs, training_loss, seconds, ratio, PSF, MSI calibration."""


def _as_cube(array: np.ndarray, name: str) -> np.ndarray:
    data = np.asarray(array)
    if data.ndim == 2:
        data = data[:, :, np.newaxis]
    if data.ndim != 3:
        raise ShapeMismatchError(f"the {name} must be rows × cols × bands, got shape {data.shape}")
    return data


def _valid(data: np.ndarray, given: np.ndarray | None, name: str) -> np.ndarray:
    valid = np.ones(data.shape[:2], dtype=bool) if given is None else np.asarray(given, dtype=bool).copy()
    if valid.shape != data.shape[:2]:
        raise ShapeMismatchError(f"the {name} mask has shape {valid.shape}, the image {data.shape[:2]}")
    if np.issubdtype(data.dtype, np.floating):
        for start in range(0, data.shape[0], 256):
            valid[start : start + 256] &= np.isfinite(data[start : start + 256]).all(axis=2)
    if not valid.any():
        raise InvalidDataError(f"the {name} has no valid pixel (all no-data)")
    return valid


def _ratio(lr: np.ndarray, msi: np.ndarray) -> int:
    (h, w), (rows, cols) = lr.shape[:2], msi.shape[:2]
    if rows < h or cols < w:
        raise ShapeMismatchError(f"the MSI ({rows}×{cols}) is smaller than the HSI ({h}×{w}); give the high-resolution image second")
    if rows % h or cols % w or rows // h != cols // w:
        raise ShapeMismatchError(
            f"the MSI ({rows}×{cols}) is not an integer multiple of the HSI ({h}×{w}): "
            f"ratios {rows / h:g} (rows) and {cols / w:g} (columns)"
        )
    return rows // h


def _fill_gaps(lr: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """LR pixels without data take their nearest valid neighbour (only to keep filters finite)."""
    if valid.all():
        return lr
    from scipy import ndimage

    indices = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)
    return lr[indices[0], indices[1]]


@dataclass
class SceneFit:
    """The per-scene fit (:func:`plan_fusion`): the plan every block of HR rows follows, and what only
    the client needs."""

    plan: FusionPlan
    valid: np.ndarray
    """H × W, True where the fused pixel carries data."""
    endmembers: np.ndarray | None
    diagnosis: object
    started: float

    def result(self, fused, abundances: np.ndarray | None, checks: Checks | None) -> FusionResult:
        """The :class:`FusionResult` once every block is written (``fused``: the output, or None)."""
        info = dict(self.plan.info)
        if checks is not None:
            info["checks"] = checks.summary()
            info["guard"] = checks.verdict()
            info["model_warnings"] = self.diagnosis.warnings(self.plan.sensor, checks)
        info["seconds"] = round(time.perf_counter() - self.started, 3)
        return FusionResult(fused, self.valid, self.plan.method, self.endmembers, abundances, info)


def fuse(
    lr_hsi: np.ndarray,
    hr_msi: np.ndarray,
    srf_matrix: np.ndarray,
    *,
    out: np.ndarray | None = None,
    return_abundances: bool = False,
    advance: Callable[[float], None] = lambda n: None,
    **options,
) -> FusionResult:
    """Fuse ``lr_hsi`` (h × w × B) and ``hr_msi`` (H × W × b, H = ratio·h) through ``srf_matrix`` (B × b).

    ``out`` may be a preallocated H × W × B float32 array (e.g. a memory map) to fill; otherwise
    one is allocated. ``advance`` receives progress in HR rows (the plan's ``counted_passes``: two
    for spectramorph with the consistency step, four when it also refits its networks). The other
    options are :func:`plan_fusion`'s. The HR grid is fused a block of rows at a time
    (:mod:`hsiuu_cli.fusion.blocks`), as a cluster would.
    """
    fit = plan_fusion(lr_hsi, hr_msi, srf_matrix, return_abundances=return_abundances, **options)
    plan = fit.plan
    if out is None:
        out = np.empty(plan.shape, dtype=np.float32)
    elif out.shape != plan.shape:
        raise ShapeMismatchError(f"the output array has shape {out.shape}, expected {plan.shape}")
    abundances = None
    if plan.with_abundances:
        abundances = np.empty(plan.shape[:2] + (fit.endmembers.shape[0],), dtype=np.float32)
    plan.sinks = Sinks(ArrayOut(out), None if abundances is None else ArrayOut(abundances))
    checks = run_blocks(plan, advance=advance)
    return fit.result(out, abundances, checks)


def plan_fusion(
    lr_hsi: np.ndarray,
    hr_msi,
    srf_matrix: np.ndarray,
    *,
    method: str = "spectramorph",
    endmembers: int | str | None = None,
    psf_sigma: float | None = None,
    psf_kernel: np.ndarray | None = None,
    epochs: int | None = None,
    seed: int = 0,
    device: str = "auto",
    guard: bool = True,
    lr_valid: np.ndarray | None = None,
    msi_valid: np.ndarray | None = None,
    msi_rows=None,
    bad_bands: BadBands | None = None,
    return_abundances: bool = False,
    workspace: Callable[[tuple[int, int, int]], np.ndarray] | None = None,
    **method_options,
) -> SceneFit:
    """The per-scene fit of :func:`fuse` (its arguments), and the plan its blocks follow.

    ``lr_valid``/``msi_valid`` mark pixels with data (non-finite values are always treated as
    no-data); ``msi_rows`` (instead of ``msi_valid``) reads the MSI's rows and their validity
    (:class:`hsiuu_cli.fusion.blocks.MsiRows`: what cluster workers read). ``bad_bands``: HSI bands
    not fused, written enlarged; the output then has every band. ``workspace(shape)`` allocates the
    HR result of the methods that compute it whole during the fit (CNMF, GSA; default in memory).
    Extra keyword arguments tune the method (see
    :class:`hsiuu_cli.fusion.spectramorph.SpectraMorphSettings`).

    ``psf_kernel`` (a 2-D PSF, or its 1-D profile) is compared with the PSF estimated from the data,
    with and without block-average decimation, and used when it explains the data as well
    (:func:`hsiuu_cli.fusion.observation.fit_sensor`). ``guard``: the result is checked against the
    bicubic enlargement on the two reference-free checks (the LR-HSI reproduced through the fitted
    PSF, the MSI through the SRF) and, where it is worse on either, blended towards it
    (:mod:`hsiuu_cli.fusion.guard`); the summary says what was checked and what failed.
    """
    started = time.perf_counter()
    if method not in METHODS:
        raise ParameterError(f"unknown fusion method '{method}' (use {', '.join(METHODS)})")
    lr = _as_cube(lr_hsi, "HSI")
    msi = _as_cube(hr_msi, "MSI")
    srf = np.asarray(srf_matrix, dtype=np.float64)
    bands, msi_bands = lr.shape[2], msi.shape[2]
    if srf.ndim != 2 or srf.shape != (bands, msi_bands):
        raise ShapeMismatchError(
            f"the spectral-response matrix has shape {srf.shape}; expected {bands} HSI bands × {msi_bands} MSI bands"
        )
    if not np.isfinite(srf).all() or (srf.sum(axis=0) <= 0).any():
        raise ShapeMismatchError("every MSI band needs a positive, finite spectral response over the HSI's bands")
    srf = srf / srf.sum(axis=0, keepdims=True)
    ratio = _ratio(lr, msi)
    lr_ok = _valid(lr, lr_valid, "HSI")
    if msi_rows is None:
        from ..unmixing.blocks import ArrayRows

        if msi_valid is not None and np.shape(msi_valid) != msi.shape[:2]:
            raise ShapeMismatchError(f"the MSI mask has shape {np.shape(msi_valid)}, the image {msi.shape[:2]}")
        msi_rows = ArrayRows(msi, msi_valid)
    msi_ok = np.concatenate([msi_rows.read(start, start + 256)[1] for start in range(0, msi.shape[0], 256)])
    if not msi_ok.any():
        raise InvalidDataError("the MSI has no valid pixel (all no-data)")
    rows_hr, cols_hr = msi.shape[:2]
    valid_hr = msi_ok & np.repeat(np.repeat(lr_ok, ratio, axis=0), ratio, axis=1)
    if not valid_hr.any():
        raise InvalidDataError("the HSI and the MSI have no valid pixel in common")

    lr_values = _fill_gaps(np.where(lr_ok[:, :, None], lr, 0).astype(np.float32), lr_ok)
    scale = float(np.abs(lr_values[lr_ok]).max())
    if not np.isfinite(scale) or scale == 0:
        raise InvalidDataError("the HSI is zero everywhere it has data")
    lr_values = lr_values / np.float32(scale)

    k = _resolve_endmembers(endmembers, lr_values[lr_ok], bands, method)
    if psf_sigma is not None and not (np.isfinite(psf_sigma) and psf_sigma >= 0):
        raise ParameterError(f"PSF sigma must be a non-negative number of HR pixels, got {psf_sigma}")
    if epochs is not None and epochs < 1:
        raise ParameterError(f"epochs must be at least 1, got {epochs}")
    out_bands = bands if bad_bands is None else bad_bands.good.size + bad_bands.bad.size
    strip_rows = strip_rows_for(ratio, cols_hr, bands, k, msi_bands)

    info: dict = {"method": method, "ratio": ratio}
    plan = FusionPlan(method, (rows_hr, cols_hr, out_bands), ratio, strip_rows, scale, msi_rows, lr_ok, None, None, srf, None,
                      bad=bad_bands, info=info)
    lr_scaled = lr_values  # the scaled, gap-filled LR-HSI before denoising: what the checks compare with
    lr_use = lr_ok  # LR pixels the sampling model describes
    diagnosis = None
    if method != "bicubic":
        kernel = None if psf_kernel is None else np.asarray(psf_kernel, dtype=np.float64)
        if kernel is not None and (kernel.ndim not in (1, 2) or not np.isfinite(kernel).all() or kernel.sum() <= 0):
            raise ParameterError(f"the PSF kernel must be a finite 1-D or 2-D array with a positive sum, got shape {kernel.shape}")
        sensor = plan.sensor = fit_sensor(msi, msi_ok, (lr_values @ srf).astype(np.float32), lr_ok, ratio, sigma=psf_sigma,
                                          kernel=kernel)
        plan.calibration = Calibration(sensor.gain, sensor.offset)
        diagnosis = diagnose(sensor, msi, msi_ok, lr_values, lr_ok, srf)
        if diagnosis.outliers.any():
            plan.msi_outliers = diagnosis.outliers  # gross outliers become gaps for the fusion, not the output
        lr_use = lr_ok & diagnosis.lr_reliable
        if lr_use.sum() < max(2 * k, 16):
            lr_use = lr_ok  # too few pixels without the edges: keep them, whatever their border
        info.update(
            psf_model=sensor.spatial.describe(),
            psf_sigma=round(sensor.spatial.equivalent_sigma, 4),
            psf_phase=[round(sensor.spatial.phase_rows, 4), round(sensor.spatial.phase_cols, 4)],
            misregistration=[round(sensor.spatial.phase_rows - sensor.spatial.nominal_phase, 3),
                             round(sensor.spatial.phase_cols - sensor.spatial.nominal_phase, 3)],
            psf_candidates=sensor.candidates,
            msi_gain=(sensor.gain * scale).tolist(),
            msi_offset=(sensor.offset * scale).tolist(),
            msi_fit_residual=round(sensor.residual, 6),
            msi_band_residual=[round(float(v), 6) for v in diagnosis.band_residual],
            msi_outlier_pixels=round(float(diagnosis.outliers.sum() / max(lr_ok.sum(), 1)), 6),
            border=sensor.spatial.border,
            edge_pixels_left_out=diagnosis.edge_left_out,
            edge_lines_down_weighted=diagnosis.edge_lines_down_weighted,
            edge_pixels_down_weighted=diagnosis.edge_pixels_down_weighted,
        )
        msi_noise = msi_noise_power(msi, msi_ok, sensor)
        trust = msi_trust(sensor, lr_values[lr_ok], srf, msi_noise=msi_noise)
        if msi_noise is not None:
            info["msi_noise_sigma"] = [float(f"{v:.3g}") for v in np.sqrt(msi_noise) * scale]
        info["msi_trust"] = [round(float(t), 4) for t in trust.relative]
        info["hsi_noise"] = round(trust.hsi_error, 6)

    def msi_strip(start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        values, _, usable = plan.read_msi(start, stop)
        return plan.calibration(values, usable), usable

    endmember_spectra = None
    if method == "spectramorph":
        from .spectramorph import SpectraMorphSettings, fit_spectramorph

        settings = SpectraMorphSettings(endmembers=k, seed=seed, device=device, **method_options)
        if settings.denoise != "none":
            from ..unmixing.hysime import signal_subspace

            # the LR-HSI restricted to its signal subspace: noise outside it is not fused into the result
            subspace = signal_subspace(spread_sample(lr_values[lr_ok]), trust.hsi_noise_variance)
            denoiser = subspace.shrinkage() if settings.denoise == "shrink" else subspace.basis @ subspace.basis.T
            lr_values = (lr_values @ denoiser).astype(np.float32)
            info["signal_subspace"] = subspace.basis.shape[1]
            if settings.msi_projection and subspace.basis.shape[1] < msi_bands:
                # the MSI can only show what the HSI's signal subspace shows through the SRF: the rest is noise
                q = np.linalg.qr(srf.T @ subspace.basis)[0]
                plan.calibration.projection = (q @ q.T).astype(np.float32)
        if epochs is not None:
            settings.epochs, settings.validation_folds = epochs, 0
        model = plan.model = fit_spectramorph(lr_values, lr_use, msi_strip, (rows_hr, cols_hr), srf, plan.sensor, settings, trust,
                                             line_weights=None if diagnosis is None else diagnosis.line_weights,
                                             pixel_weights=None if diagnosis is None else diagnosis.pixel_weights)
        endmember_spectra = model.endmembers * scale
        plan.with_abundances = return_abundances
        info.update(endmembers=k, epochs=model.epochs, epochs_chosen_by=model.epochs_chosen_by,
                    networks=len(model.networks), training_loss=model.training_loss,
                    coefficients=settings.coefficients, prior=model.prior, consistency=settings.consistency,
                    refit_iterations=model.refit_iterations)
    elif method == "bicubic":
        plan.model = BicubicStrips(lr_values, ratio)
    else:
        # CNMF iterates over the whole HR grid and GSA takes statistics of it: their HR result is part of the fit
        result = plan.model = Precomputed((workspace or (lambda shape: np.empty(shape, dtype=np.float32)))((rows_hr, cols_hr, bands)))
        if method == "cnmf":
            from .cnmf import fuse_cnmf

            output = fuse_cnmf(lr_values, lr_ok, msi_strip, (rows_hr, cols_hr), srf, plan.sensor, result.fused, k,
                               seed=seed, return_abundances=return_abundances, **method_options)
            endmember_spectra, result.abundances = output.endmembers * scale, output.abundances
            plan.with_abundances = return_abundances
            info.update(endmembers=k, iterations=output.iterations, training_loss=output.loss)
        else:
            from .gsa import fuse_gsa

            fuse_gsa(lr_values, lr_ok, msi_strip, (rows_hr, cols_hr), plan.sensor, result.fused, strip_rows=strip_rows)
    if plan.sensor is not None:
        plan.guard = GuardInputs(lr_scaled, lr_use, trust.hsi_noise_floor / max(float((lr_scaled[lr_ok] ** 2).mean()), 1e-30),
                                 trust.msi_noise_variance, lr_values, guard, BicubicStrips(lr_scaled, ratio))
    return SceneFit(plan, valid_hr, endmember_spectra, diagnosis, started)


def _resolve_endmembers(endmembers: int | str | None, pixels: np.ndarray, bands: int, method: str) -> int:
    if endmembers is None:
        if method == "cnmf":
            from .cnmf import default_endmembers

            return min(default_endmembers(bands), pixels.shape[0])
        k = min(DEFAULT_ENDMEMBERS, bands, pixels.shape[0])
    elif endmembers == "auto":
        from ..unmixing.hysime import estimate_endmember_count

        k = estimate_endmember_count(pixels, max_count=AUTO_MAX_ENDMEMBERS)
    else:
        try:
            k = int(endmembers)
        except (TypeError, ValueError):
            raise ParameterError(f"endmembers must be a positive integer or 'auto', got '{endmembers}'") from None
        if k < 1:
            raise ParameterError(f"endmembers must be at least 1, got {k}")
    if method in ("spectramorph", "cnmf"):
        if k > bands:
            raise ParameterError(f"{k} endmembers is more than the HSI's {bands} bands")
        if k > pixels.shape[0]:
            raise ParameterError(f"{k} endmembers is more than the HSI's {pixels.shape[0]} valid pixels")
    return k


def run_pipeline(HR_MSI, LR_HSI, srf, psf=None, metadata=None):  # noqa: N803 - the benchmark's names
    """The HyperBench fusion adapter: the fused H × W × B array from an HR-MSI (H × W × b) and an
    LR-HSI (h × w × B).

    A leading batch axis of one (HyperBench's default, 1 × H × W × b) is accepted and kept on the
    result. ``srf``: the B × b spectral-response matrix (b × B is accepted and transposed). ``psf``:
    None (estimated from the data), a Gaussian σ in HR pixels, or a 2-D kernel (a candidate the PSF
    fit compares with its own estimates, not a model taken on trust). ``metadata``: optional dict;
    keys ``method``, ``seed``, ``endmembers``, ``epochs`` and ``device`` are passed on to
    :func:`fuse`; with ``return_info`` true the result is ``(fused, summary)``, which HyperBench
    records as per-case statistics. NaN marks pixels without data.
    """
    batched = np.ndim(HR_MSI) == 4
    if batched != (np.ndim(LR_HSI) == 4) or (batched and (np.shape(HR_MSI)[0] != 1 or np.shape(LR_HSI)[0] != 1)):
        raise ShapeMismatchError(f"HR_MSI {np.shape(HR_MSI)} and LR_HSI {np.shape(LR_HSI)}: give both with a batch of one, or neither")
    hsi = _as_cube(np.asarray(LR_HSI, dtype=np.float32)[0] if batched else np.asarray(LR_HSI, dtype=np.float32), "LR_HSI")
    msi = _as_cube(np.asarray(HR_MSI, dtype=np.float32)[0] if batched else np.asarray(HR_MSI, dtype=np.float32), "HR_MSI")
    matrix = np.asarray(srf, dtype=np.float64)
    if matrix.ndim == 2 and matrix.shape == (msi.shape[2], hsi.shape[2]) and matrix.shape[0] != matrix.shape[1]:
        matrix = matrix.T
    options = dict(metadata or {})
    known = {"method", "seed", "endmembers", "epochs", "device"}
    kwargs = {key: options[key] for key in known if key in options}
    sigma, kernel = _psf(psf)
    result = fuse(hsi, msi, matrix, psf_sigma=sigma, psf_kernel=kernel, **kwargs)
    fused = result.fused[np.newaxis] if batched else result.fused
    return (fused, result.info) if options.get("return_info") else fused


def _psf(psf) -> tuple[float | None, np.ndarray | None]:
    """(σ, kernel) from run_pipeline's ``psf``: None, a Gaussian σ, or a 2-D kernel."""
    if psf is None:
        return None, None
    kernel = np.asarray(psf, dtype=np.float64)
    if kernel.ndim == 3 and kernel.shape[0] == 1:
        kernel = kernel[0]  # a batch of one, as HyperBench's adapter may pass it
    if kernel.ndim == 0:
        return float(kernel), None
    if kernel.ndim != 2 or kernel.sum() <= 0:
        raise ParameterError(f"psf must be a Gaussian sigma or a 2-D kernel, got shape {kernel.shape}")
    return None, kernel / kernel.sum()
