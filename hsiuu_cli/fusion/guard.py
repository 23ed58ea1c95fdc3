"""What fusion can check without a reference, and the guard built on it.

:func:`diagnose` compares the MSI, taken to the LR grid through the fitted sampling model and
radiometry, with the LR-HSI seen through the SRF over the whole scene: how much of each band it
explains, which pixels disagree grossly (clouds, moving objects, dead pixels: set aside when few),
and which LR pixels the sampling model does not describe (edge pixels whose border handling fits
neither reflection nor zero padding).

:func:`check_against_bicubic` scores the fused cube and the bicubic enlargement of the LR-HSI on
the two consistency checks that need no reference — the LR-HSI reproduced by blurring and sampling
the result with the fitted PSF, and the MSI reproduced through the SRF — and, where the fused cube
is worse than bicubic on either, replaces it by the blend α·fused + (1 − α)·bicubic with the
largest α that is no worse on both (both errors are quadratic in α, so that α is exact).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from ..errors import InvalidDataError
from .bicubic import BicubicStrips
from .observation import (
    CONTENT_WARNING,
    ERROR_FLOOR,
    MAX_SIGMA_PER_RATIO,
    MIN_SIGMA,
    SensorFit,
    apply_spatial,
    edge_lines,
    edge_pixels,
    OUTLIER_FACTOR,
    gross_outliers,
    lr_rows_of,
)

BAND_WARNING = 0.1
"""An MSI band whose LR image leaves more than this share of its variance unexplained is reported."""
UNRELATED = 0.9
"""When every MSI band leaves more than this share unexplained, the MSI does not show the HSI's scene
and no fusion is meaningful."""
NOISE_MARGIN = 1.2
"""A check's noise floor is this many times the estimated noise power (its estimate is rough)."""
CHANCE_FACTOR = 10.0
"""On few LR pixels an unrelated image explains some variance by chance (the fit picks the best of
many PSFs and phases): it must explain this many times the share chance gives before it counts."""


@dataclass
class Diagnosis:
    band_residual: np.ndarray
    """Per MSI band: the share of the LR-HSI's (through the SRF) variance that the MSI leaves unexplained."""
    outliers: np.ndarray
    """LR grid: pixels where the MSI disagrees grossly with the HSI (set aside when few)."""
    lr_reliable: np.ndarray
    """LR grid: pixels the sampling model describes (False: edge pixels it does not explain)."""
    edge_left_out: int = 0
    line_weights: tuple[np.ndarray, np.ndarray] | None = None
    """Per LR row and per LR column: how far the LR-HSI's pixels there are to be believed against the
    interior's (1 inside; below 1 on edge lines whose pixels the border model explains worse); None when every
    line has weight 1."""
    pixel_weights: np.ndarray | None = None
    """LR grid: each pixel's weight in the network's training (:func:`edge_pixel_weights`); None when all are 1."""

    @property
    def edge_lines_down_weighted(self) -> int:
        return 0 if self.line_weights is None else int(sum((weights < 1).sum() for weights in self.line_weights))

    @property
    def edge_pixels_down_weighted(self) -> int:
        return 0 if self.pixel_weights is None else int((self.pixel_weights < 1).sum())

    def warnings(self, sensor: SensorFit, checks: "Checks | None" = None) -> list[dict]:
        """What did not fit, as {"part", "message"} entries (empty when everything did)."""
        found = []
        spatial = sensor.spatial
        shift = (spatial.phase_rows - spatial.nominal_phase, spatial.phase_cols - spatial.nominal_phase)
        if max(abs(shift[0]), abs(shift[1])) > max(1.0, spatial.ratio / 4):
            found.append({"part": "registration", "message": f"the HSI's pixels sit {shift[0]:+.2f}, {shift[1]:+.2f} MSI pixels "
                          "(rows, columns) off their nominal place on the MSI grid; estimated and corrected"})
        sigma = spatial.equivalent_sigma
        if spatial.kernel is None and (spatial.sigma >= 0.95 * MAX_SIGMA_PER_RATIO * spatial.ratio or spatial.sigma <= 2 * MIN_SIGMA):
            found.append({"part": "psf", "message": f"the PSF fit ended at its limit (σ {sigma:.2f} MSI pixels): "
                          "the HSI may not be a blurred version of the MSI's scene"})
        if self.edge_left_out:
            found.append({"part": "borders", "message": f"{self.edge_left_out} edge pixels of the HSI that the MSI does not "
                          "explain (content beyond its edge, or a border handling neither mirrored nor zero-padded) were "
                          "fused from the HSI alone"})
        share = float(self.outliers.mean()) if self.outliers.size else 0.0
        if self.outliers.any():
            found.append({"part": "outliers", "message": f"{int(self.outliers.sum())} LR pixels ({share:.1%}) where the MSI "
                          "disagrees grossly (clouds, moving objects, bad pixels?) were fused from the HSI alone"})
        mean = float(np.mean(self.band_residual))
        if mean > CONTENT_WARNING:
            found.append({"part": "content", "message": f"the MSI explains only {1 - mean:.0%} of the HSI's variance seen through "
                          "the SRF: different dates, clouds, a wrong SRF or misregistration beyond one LR pixel?"})
        else:
            poor = [j for j, value in enumerate(self.band_residual) if value > BAND_WARNING]
            if poor:
                found.append({"part": "srf", "message": "MSI band(s) " + ", ".join(
                    f"{j + 1} ({1 - self.band_residual[j]:.0%} explained)" for j in poor)
                    + ": their spectral response may not be the one given, or they see beyond the HSI's range"})
        if checks is not None and checks.failed:
            outcome = (f"returned {checks.alpha:.0%} fused + {1 - checks.alpha:.0%} bicubic" if checks.alpha < 1.0
                       else "returned as it is (guard off)")
            found.append({"part": "guard", "message": f"the fused cube reproduced the {' and '.join(checks.failed)} "
                          f"worse than bicubic; {outcome}"})
        return found


def lr_image_of_msi(msi: np.ndarray, msi_valid: np.ndarray, sensor: SensorFit, rows_lr: int, cols_lr: int,
                    rows_per_block: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """The calibrated MSI blurred and sampled onto the LR grid, and which LR pixels see only MSI data."""
    ratio = sensor.spatial.ratio
    rows_hr, cols_hr = msi.shape[:2]
    gr, gc = sensor.spatial.matrices(rows_lr, cols_lr, rows_hr, cols_hr)
    values = np.zeros((rows_lr, cols_lr, msi.shape[2]))
    gaps = np.zeros((rows_lr, cols_lr))
    step = max(ratio, rows_per_block // ratio * ratio)
    for start in range(0, rows_hr, step):
        stop = min(start + step, rows_hr)
        ok = msi_valid[start:stop]
        block = np.where(ok[:, :, None], np.asarray(msi[start:stop], dtype=np.float32), 0.0).astype(np.float32)
        rows = sparse.csr_array(gr[:, start:stop])
        values += apply_spatial(block, rows, gc)
        gaps += apply_spatial((~ok).astype(np.float32)[:, :, None], rows, gc)[:, :, 0]
    return values * sensor.gain + sensor.offset, gaps <= 1e-6


def diagnose(sensor: SensorFit, msi: np.ndarray, msi_valid: np.ndarray, lr: np.ndarray, lr_valid: np.ndarray,
             srf: np.ndarray) -> Diagnosis:
    """The fitted model checked over the whole scene (see the module docstring); InvalidDataError when
    the MSI explains next to nothing of the HSI in every band."""
    rows_lr, cols_lr = lr.shape[:2]
    predicted, complete = lr_image_of_msi(msi, msi_valid, sensor, rows_lr, cols_lr)
    lr_reliable = np.ones((rows_lr, cols_lr), dtype=bool)
    outliers = np.zeros((rows_lr, cols_lr), dtype=bool)
    use = lr_valid & complete
    if use.sum() < 3:
        return Diagnosis(np.zeros(srf.shape[1]), outliers, lr_reliable, 0)
    target = (lr[use].astype(np.float64) @ srf)
    errors = (target - predicted[use]) ** 2
    power = np.maximum((target**2).mean(axis=0), 1e-30)
    relative = errors / power
    # edge pixels whose PSF reaches past the image and that the border model does not explain (content
    # from beyond the MSI's edge on a misregistered pair, an unknown border): left out, however many
    edge_map = edge_pixels(sensor.spatial, rows_lr, cols_lr, *msi.shape[:2])
    edge = edge_map[use]
    energy = relative.mean(axis=1)
    typical = max(float(np.median(energy[~edge] if (~edge).sum() >= 3 else energy)), ERROR_FLOOR)
    unexplained_edge = edge & (energy > OUTLIER_FACTOR * typical)
    positions = np.flatnonzero(use.ravel())
    lr_reliable.ravel()[positions[unexplained_edge]] = False
    gross = np.zeros_like(unexplained_edge)
    gross[~unexplained_edge] = gross_outliers(relative[~unexplained_edge])
    outliers.ravel()[positions[gross]] = True
    gross |= unexplained_edge
    inliers = ~gross
    centred = target[inliers] - target[inliers].mean(axis=0)
    band_residual = errors[inliers].sum(axis=0) / np.maximum((centred**2).sum(axis=0), 1e-30)
    band_residual = np.clip(band_residual, 0.0, None)
    # what a search over the PSF and two coefficients per band explains by chance, on this many pixels
    chance = CHANCE_FACTOR * (2 + 3 / srf.shape[1]) / max(int(inliers.sum()), 1)
    if (band_residual > min(UNRELATED, 1 - chance)).all():
        raise InvalidDataError(
            f"the MSI explains only {1 - band_residual.max():.0%}–{1 - band_residual.min():.0%} of the HSI's variance "
            "seen through the SRF: they do not show the same scene (or the grids do not overlap as given)"
        )
    energy_map = np.full((rows_lr, cols_lr), np.nan)
    energy_map.ravel()[positions] = energy
    weights = edge_line_weights(energy_map, *edge_lines(sensor.spatial, rows_lr, cols_lr, *msi.shape[:2]), typical)
    if all((line == 1.0).all() for line in weights):
        weights = None  # every line as trusted as the interior: the consistency step's model as it is
    return Diagnosis(band_residual, outliers, lr_reliable, int(unexplained_edge.sum()), weights,
                     edge_pixel_weights(energy_map, edge_map, typical))


def edge_line_weights(energy: np.ndarray, edge_rows: np.ndarray, edge_cols: np.ndarray,
                      typical: float) -> tuple[np.ndarray, np.ndarray]:
    """Inverse-variance weights of the LR rows and columns whose PSF reaches past the image: the
    interior's typical misfit over the line's median misfit (at most 1). An edge line sees what lies
    beyond the MSI's edge through a border model that is only a guess (mirrored content, or the
    content of a misregistered pair's neighbourhood); where that guess misfits, the line tells less
    about the pixels inside. Rows and columns apart, so the weights stay separable."""
    weights = []
    for lines, across, values in ((edge_rows, edge_cols, energy), (edge_cols, edge_rows, energy.T)):
        inner = ~across if (~across).any() else np.ones_like(across)
        line_weight = np.ones(lines.size)
        for index in np.flatnonzero(lines):
            misfit = values[index, inner]
            misfit = misfit[np.isfinite(misfit)]
            if misfit.size:
                line_weight[index] = min(1.0, typical / max(float(np.median(misfit)), 1e-30))
        weights.append(line_weight)
    return weights[0], weights[1]


EDGE_WEIGHT_POWER = 3.0
"""An edge pixel's training weight is (interior's typical misfit / its misfit) to this power. The inverse-variance
weight itself (power 1) left a misregistered pair's corrupted edge pixels enough pull to spoil the network's map
inside: dB lost to 1–2 px of misregistration on Salton Sea (12 × 14 LR pixels, 69 of them edge pixels) 1.12 /
1.46 / 2.27 at power 1, 0.97 / 1.44 / 2.27 at 3 (1.39 / 2.24 / 2.49 unweighted); over 18 shifted synthetic pairs
+1.2 against +2.8 dB summed (docs/benchmarks.md, § Edge pixels weighted in training)."""


def edge_pixel_weights(energy: np.ndarray, edge: np.ndarray, typical: float) -> np.ndarray | None:
    """The LR pixels' weights in the network's training (LR grid): 1 inside; an edge pixel (its PSF reaches past
    the image), whose LR value the border model only guesses at, min(1, typical / its misfit) to the power
    :data:`EDGE_WEIGHT_POWER`, so that one the MSI does not explain (it sees ground beyond the MSI's edge) does not
    teach the network a wrong map. None when every weight is 1 (pixels without a measured misfit keep 1)."""
    weights = np.ones(energy.shape)
    measured = edge & np.isfinite(energy)
    weights[measured] = np.minimum(1.0, typical / np.maximum(energy[measured], 1e-30)) ** EDGE_WEIGHT_POWER
    return None if (weights == 1.0).all() else weights


@dataclass
class Checks:
    """Both consistency checks as quadratics in the blend weight α (error(α) = a α² + 2 b α + c,
    each band's error relative to its power, averaged over bands), and the α chosen."""

    lr: tuple[float, float, float]
    msi: tuple[float, float, float]
    floors: tuple[float, float] = (0.0, 0.0)
    """The squared relative errors that the inputs' own noise gives any exact result (LR-HSI, MSI):
    a denoised result cannot reproduce noisy data more closely, so below them a check passes."""
    alpha: float = 1.0
    """The fused share returned (1: the fused cube as it is)."""
    failed: tuple[str, ...] = ()
    """The checks on which the fused cube was worse than bicubic."""

    def error(self, which: str, alpha: float) -> float:
        a, b, c = getattr(self, which)
        return float(np.sqrt(max(a * alpha**2 + 2 * b * alpha + c, 0.0)))

    def errors(self) -> dict[str, tuple[float, float]]:
        """Relative RMS errors (fused at α = 1, bicubic) of each check, by name."""
        return {"LR-HSI": (self.error("lr", 1.0), self.error("lr", 0.0)),
                "MSI": (self.error("msi", 1.0), self.error("msi", 0.0))}

    def summary(self) -> dict:
        return {
            "lr_consistency": {"fused": round(self.error("lr", 1.0), 6), "bicubic": round(self.error("lr", 0.0), 6),
                               "returned": round(self.error("lr", self.alpha), 6)},
            "msi_consistency": {"fused": round(self.error("msi", 1.0), 6), "bicubic": round(self.error("msi", 0.0), 6),
                                "returned": round(self.error("msi", self.alpha), 6)},
            "noise_floor": {"lr": round(float(np.sqrt(self.floors[0])), 6), "msi": round(float(np.sqrt(self.floors[1])), 6)},
            "fused_share": round(float(self.alpha), 4),
        }

    def verdict(self) -> str:
        if not self.failed:
            return "passed"
        if self.alpha < 1.0:
            return f"blended ({self.alpha:.2f} fused)"
        return "failed: " + ", ".join(self.failed)


def safe_alpha(quadratics: list[tuple[float, float, float]], limits: list[float] | None = None) -> float:
    """The largest α in [0, 1] at which every quadratic error a α² + 2 b α + c is at most its limit
    (by default, and at least, its value c at α = 0)."""
    alpha = 1.0
    for index, (a, b, c) in enumerate(quadratics):
        limit = c if limits is None else max(limits[index], c)
        if a * alpha**2 + 2 * b * alpha + c <= limit:
            continue
        if a <= 0:
            root = (limit - c) / (2 * b) if b > 0 else 1.0
        else:
            root = (-b + np.sqrt(max(b * b - a * (c - limit), 0.0))) / a
        alpha = min(alpha, max(0.0, root))
    return alpha


@dataclass
class StripChecks:
    """One HR row strip's share of both checks: the LR images of the fused and of the bicubic strip
    (on the LR rows the strip reaches) and its MSI sums."""

    lr_rows: slice
    lr_fused: np.ndarray
    lr_bicubic: np.ndarray
    msi_terms: np.ndarray
    """3 × b: Σ d², Σ d·e, Σ e² with d the fused − bicubic difference and e bicubic's error, through the SRF."""
    msi_power: np.ndarray
    msi_count: int


def strip_checks(fused: np.ndarray, bicubic: np.ndarray, msi: np.ndarray, valid: np.ndarray, gr: sparse.csr_array,
                 gc: sparse.csr_array, srf: np.ndarray, start: int, stop: int) -> StripChecks:
    """The checks' sums for HR rows start:stop: ``fused`` and ``bicubic`` (scaled units), the
    calibrated MSI with its validity, and the fitted sampling matrices."""
    lr_rows, rows = lr_rows_of(gr, start, stop)
    difference = (fused[valid] - bicubic[valid]) @ srf
    error = bicubic[valid] @ srf - msi[valid]
    return StripChecks(
        lr_rows, apply_spatial(fused, rows, gc), apply_spatial(bicubic, rows, gc),
        np.array([(difference**2).sum(0), (difference * error).sum(0), (error**2).sum(0)]),
        (msi[valid].astype(np.float64) ** 2).sum(0), int(valid.sum()),
    )


class CheckSums:
    """The checks' sums over the whole output, added strip by strip in row order (so that every run
    adds alike), and the :class:`Checks` they give."""

    def __init__(self, lr_shape: tuple[int, int], bands: int, msi_bands: int):
        self.lr_fused = np.zeros(lr_shape + (bands,))
        self.lr_bicubic = np.zeros_like(self.lr_fused)
        self.msi_terms = np.zeros((3, msi_bands))
        self.msi_power = np.zeros(msi_bands)
        self.msi_count = 0

    def add(self, part: StripChecks) -> None:
        self.lr_fused[part.lr_rows] += part.lr_fused
        self.lr_bicubic[part.lr_rows] += part.lr_bicubic
        self.msi_terms += part.msi_terms
        self.msi_power += part.msi_power
        self.msi_count += part.msi_count

    def checks(self, lr: np.ndarray, lr_valid: np.ndarray, *, blend: bool = True, lr_noise: float = 0.0,
               msi_noise: np.ndarray | None = None, lr_target: np.ndarray | None = None) -> Checks:
        """Both checks, which failed, and (with ``blend``, where one failed) the fused share α that is
        no worse than bicubic on either (see :func:`check_against_bicubic` for the arguments)."""
        use = lr_valid
        target = lr if lr_target is None else lr_target
        difference = (self.lr_fused - self.lr_bicubic)[use]
        error = (self.lr_bicubic - target)[use]
        lr_power = np.maximum((target[use].astype(np.float64) ** 2).mean(0), 1e-30)
        count = max(int(use.sum()), 1)
        lr_terms = np.stack([(difference**2).sum(0), (difference * error).sum(0), (error**2).sum(0)]) / count / lr_power
        msi_power = np.maximum(self.msi_power / max(self.msi_count, 1), 1e-30)
        msi_terms = self.msi_terms / max(self.msi_count, 1) / msi_power
        msi_floor = 0.0 if msi_noise is None else float(np.mean(np.asarray(msi_noise) / msi_power))
        checks = Checks(tuple(lr_terms.mean(axis=1)), tuple(msi_terms.mean(axis=1)),
                        floors=(NOISE_MARGIN * lr_noise, NOISE_MARGIN * msi_floor))
        # a tie within rounding (an exact pair, where both reproduce the LR-HSI to its noise floor) is no failure
        checks.failed = tuple(
            name for name, which, floor in (("LR-HSI", "lr", checks.floors[0]), ("MSI", "msi", checks.floors[1]))
            if checks.error(which, 1.0) > max(checks.error(which, 0.0), np.sqrt(floor)) * (1 + 1e-6) + ERROR_FLOOR * 1e-3
        )
        alpha = safe_alpha([checks.lr, checks.msi], list(checks.floors))
        if blend and checks.failed and alpha < 1.0:
            checks.alpha = alpha
        return checks


def blended(fused: np.ndarray, bicubic: np.ndarray, alpha: float) -> np.ndarray:
    """α · fused + (1 − α) · bicubic, in float32."""
    return (np.float32(alpha) * fused + np.float32(1 - alpha) * bicubic).astype(np.float32)


def check_against_bicubic(out, lr: np.ndarray, lr_valid: np.ndarray, msi_strip, sensor: SensorFit, srf: np.ndarray, *,
                          strip_rows: int, blend: bool = True, lr_noise: float = 0.0,
                          msi_noise: np.ndarray | None = None, lr_target: np.ndarray | None = None) -> Checks:
    """Score ``out`` (the fused cube, scaled units) and the bicubic enlargement of ``lr`` on the two
    reference-free checks; with ``blend``, move ``out`` towards bicubic where it is worse (see the
    module docstring).

    ``lr_noise`` (the LR-HSI's relative noise power) and ``msi_noise`` (per MSI band, its noise
    variance in calibrated units) set each check's noise floor: bicubic keeps the LR-HSI's noise and
    so reproduces it more closely than any denoised result can; a result within the noise is consistent.
    ``lr_target`` (default ``lr``) is what the LR check compares with: the LR-HSI restricted to its
    signal subspace when fusion denoised it (both results are judged against the HSI's signal).
    """
    ratio = sensor.spatial.ratio
    rows_hr, cols_hr, bands = out.shape
    enlarged = BicubicStrips(lr, ratio)
    gr, gc = sensor.spatial.matrices(lr.shape[0], lr.shape[1], rows_hr, cols_hr)
    sums = CheckSums(lr.shape[:2], bands, srf.shape[1])
    strips = [(start, min(start + strip_rows, rows_hr)) for start in range(0, rows_hr, strip_rows)]
    for start, stop in strips:
        msi, valid = msi_strip(start, stop)
        sums.add(strip_checks(np.asarray(out[start:stop], dtype=np.float32), enlarged.strip(start // ratio, stop // ratio),
                              msi, valid, gr, gc, srf, start, stop))
    checks = sums.checks(lr, lr_valid, blend=blend, lr_noise=lr_noise, msi_noise=msi_noise, lr_target=lr_target)
    if checks.alpha == 1.0:
        return checks
    for start, stop in strips:
        out[start:stop] = blended(np.asarray(out[start:stop], dtype=np.float32), enlarged.strip(start // ratio, stop // ratio), checks.alpha)
    return checks
