"""The observation model shared by the fusion methods, its estimation from the data, and the exact
consistency solve.

The low-resolution HSI is modelled as the high-resolution cube blurred by a separable Gaussian PSF
and sampled every ``ratio`` pixels: ``Y_b = Gr X_b Gcᵀ`` with sparse (h × H) and (w × W) matrices.
This is the same Gaussian blur + decimation as :func:`hsiuu_cli.degrade.spatial_degrade` (reflect
borders, kernel over ±ceil(3σ)) written as explicit matrices, because fusion needs what simulation
does not: the adjoint, a sub-pixel sampling phase (real LR pixels are centred between HR pixels at
even ratios) and a least-squares solve. ``tests/test_fusion_observation.py`` checks the two agree.

The MSI is modelled as ``M = gain · (X R) + offset`` per band, with R the B × b spectral-response
matrix: real MSIs (8-bit RGB, radiance vs reflectance) are in other units than the HSI, so gain and
offset are estimated together with the PSF by regressing the MSI, taken to the LR grid, on the
LR-HSI seen through the SRF.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, sparse

from ..degrade import default_sigma
from ..errors import InvalidDataError
from ..noise import band_noise_variances

TRUNCATE = 3.0
"""The PSF is cut at ±ceil(3σ) pixels, as :func:`hsiuu_cli.degrade.kernel_size_for_sigma`."""
MIN_SIGMA = 0.05
MAX_SIGMA_PER_RATIO = 2.0
"""The PSF fit tries σ up to this many times the ratio (HR pixels). At σ = 2 × ratio the PSF passes
exp(-2π²) ≈ 3e-9 of the LR Nyquist frequency, so a wider one hardly changes the LR image it predicts;
the fit window's margin is sized for this σ."""
SAMPLE_PIXELS = 20000
"""Statistics of the LR pixels (B × B moments, noise regressions, NMF endmembers) use at most this
many: enough for B × B statistics, at a bounded cost."""
FIT_WINDOW = 96
"""The PSF and radiometry are fitted on at most this many LR rows and columns (from the middle)."""


BORDERS = ("reflect", "zero")
"""How a sensor's PSF treats the image edge: mirrored (scipy's 'reflect', as hsiuu_cli.degrade), or
zero padding (the blur of scipy.signal.convolve2d(boundary='fill'), as HyperBench does), which
darkens the outer LR pixels."""


@dataclass
class SpatialModel:
    """The LR sampling: a PSF (a Gaussian of σ HR pixels, or a given 1-D ``kernel`` profile applied
    along rows and columns), optionally averaged over each ratio × ratio block (``box``: area
    decimation, as OpenCV's INTER_AREA), the HR coordinate of LR pixel 0's centre along rows and
    columns, and the ``border`` handling."""

    ratio: int
    sigma: float
    phase_rows: float
    phase_cols: float
    kernel: np.ndarray | None = None
    box: bool = False
    border: str = "reflect"

    def matrices(self, rows_lr: int, cols_lr: int, rows_hr: int, cols_hr: int) -> tuple[sparse.csr_array, sparse.csr_array]:
        return (
            sampling_matrix(rows_lr, rows_hr, self.ratio, self.sigma, self.phase_rows, kernel=self.kernel, box=self.box, border=self.border),
            sampling_matrix(cols_lr, cols_hr, self.ratio, self.sigma, self.phase_cols, kernel=self.kernel, box=self.box, border=self.border),
        )

    def replace(self, **changes) -> "SpatialModel":
        values = {name: getattr(self, name) for name in ("ratio", "sigma", "phase_rows", "phase_cols", "kernel", "box", "border")}
        values.update(changes)
        return SpatialModel(**values)

    @property
    def nominal_phase(self) -> float:
        """Where an LR pixel's centre falls when the grids are registered: the middle of its block."""
        return (self.ratio - 1) / 2.0

    @property
    def equivalent_sigma(self) -> float:
        """The standard deviation (HR pixels) of the whole 1-D sampling profile, kernel and block average."""
        offsets = np.arange(-6 * self.ratio - 20, 6 * self.ratio + 21, dtype=np.float64)
        weights = _profile(offsets, self.sigma, self.kernel, self.box, self.ratio)
        weights = weights / weights.sum()
        mean = (weights * offsets).sum()
        return float(np.sqrt((weights * (offsets - mean) ** 2).sum()))

    @property
    def noise_gain(self) -> float:
        """Σ w² over an interior LR pixel's sampling weights: the share of white HR noise's variance
        that reaches the LR grid."""
        count = 2 * (_support(self.sigma, self.kernel, self.box, self.ratio) // self.ratio) + 3
        gr, gc = self.replace(border="reflect").matrices(count, count, count * self.ratio, count * self.ratio)
        middle = count // 2
        return float((gr.toarray()[middle] ** 2).sum() * (gc.toarray()[middle] ** 2).sum())

    def describe(self) -> str:
        kernel = f"Gaussian PSF σ={self.sigma:.2f} px" if self.kernel is None else f"the given {self.kernel.size}-pixel PSF"
        decimation = f" averaged over {self.ratio}×{self.ratio} blocks" if self.box else ""
        return f"{kernel}{decimation}, {self.border} borders"


def kernel_profile(kernel: np.ndarray) -> np.ndarray:
    """The 1-D profile of a 2-D PSF kernel (its column sums, normalised): exact for a separable kernel
    such as a Gaussian, the marginal of any other."""
    values = np.asarray(kernel, dtype=np.float64)
    if values.ndim == 1:
        profile = values
    else:
        profile = 0.5 * (values.sum(axis=0) + values.sum(axis=1))
    return profile / profile.sum()


def _base_profile(distance: np.ndarray, sigma: float, kernel: np.ndarray | None) -> np.ndarray:
    if kernel is None:
        sigma = max(float(sigma), MIN_SIGMA)
        radius = int(np.ceil(TRUNCATE * sigma))
        weights = np.exp(-0.5 * (distance / sigma) ** 2)
        # ±radius for integer centres, as degrade's kernel, and a support symmetric about half-integer centres
        weights[np.abs(distance) > radius + 0.5 + 1e-9] = 0.0
        return weights
    taps = np.arange(kernel.size, dtype=np.float64) - (kernel.size - 1) / 2.0
    return np.interp(distance, taps, kernel, left=0.0, right=0.0)


def _profile(distance: np.ndarray, sigma: float, kernel: np.ndarray | None, box: bool, ratio: int) -> np.ndarray:
    if not box:
        return _base_profile(distance, sigma, kernel)
    shifts = np.arange(ratio, dtype=np.float64) - (ratio - 1) / 2.0
    return sum(_base_profile(distance - shift, sigma, kernel) for shift in shifts) / ratio


def _support(sigma: float, kernel: np.ndarray | None, box: bool, ratio: int) -> int:
    radius = int(np.ceil(TRUNCATE * max(float(sigma), MIN_SIGMA))) if kernel is None else (kernel.size + 1) // 2
    return radius + (ratio // 2 + 1 if box else 0)


def sampling_matrix(
    n_lr: int,
    n_hr: int,
    ratio: int,
    sigma: float,
    phase: float,
    *,
    kernel: np.ndarray | None = None,
    box: bool = False,
    border: str = "reflect",
) -> sparse.csr_array:
    """(n_lr × n_hr): row i holds the PSF weights of LR sample i, centred at HR ``ratio·i + phase``.

    ``reflect`` borders fold the PSF back as scipy's 'reflect' mode (…2 1 0 | 0 1 2…) and each row
    sums to 1; ``zero`` borders drop what falls outside, so rows at the edge sum to less than 1.
    """
    if border not in BORDERS:
        raise ValueError(f"border must be one of {BORDERS}, got {border!r}")
    radius = _support(sigma, kernel, box, ratio)
    centres = ratio * np.arange(n_lr, dtype=np.float64) + phase
    nearest = np.floor(centres + 0.5).astype(np.int64)
    offsets = np.arange(-radius - 1, radius + 2)
    positions = nearest[:, None] + offsets[None, :]
    weights = _profile(positions - centres[:, None], sigma, kernel, box, ratio)
    totals = weights.sum(axis=1)
    if border == "reflect":
        columns = _reflect(positions, n_hr)
    else:
        weights = np.where((positions >= 0) & (positions < n_hr), weights, 0.0)
        columns = np.clip(positions, 0, n_hr - 1)
    rows = np.repeat(np.arange(n_lr), offsets.size)
    matrix = sparse.coo_array((weights.ravel(), (rows, columns.ravel())), shape=(n_lr, n_hr)).tocsr()
    matrix.sum_duplicates()
    if border == "reflect":
        totals = np.asarray(matrix.sum(axis=1)).ravel()
    return sparse.csr_array(sparse.diags_array(1.0 / np.maximum(totals, 1e-30)) @ matrix)


def _reflect(positions: np.ndarray, n: int) -> np.ndarray:
    period = 2 * n
    wrapped = np.mod(positions, period)
    return np.where(wrapped >= n, period - 1 - wrapped, wrapped)


def apply_spatial(cube: np.ndarray, gr: sparse.csr_array, gc: sparse.csr_array) -> np.ndarray:
    """Gr · X_b · Gcᵀ for every band of a rows × cols × bands array (float32 out)."""
    rows, cols, bands = cube.shape
    half = gr @ cube.reshape(rows, cols * bands)  # (h, W·bands)
    half = half.reshape(gr.shape[0], cols, bands).transpose(1, 0, 2).reshape(cols, -1)
    out = (gc @ half).reshape(gc.shape[0], gr.shape[0], bands).transpose(1, 0, 2)
    return np.ascontiguousarray(out, dtype=np.float32)


def spread_sample(pixels: np.ndarray, count: int = SAMPLE_PIXELS) -> np.ndarray:
    """At most ``count`` of the pixels (rows), evenly spread over them."""
    if pixels.shape[0] <= count:
        return pixels
    return pixels[np.linspace(0, pixels.shape[0] - 1, count).astype(int)]


LR_ROWS_PER_BLOCK = 64
"""MSI rows are taken to the LR grid in blocks of this many LR rows: a fixed partition, so that the
sums (and the training they feed) do not depend on the memory budget."""


def lr_rows_of(gr: sparse.csr_array, start: int, stop: int) -> tuple[slice, sparse.csr_array]:
    """The LR rows whose samples reach HR rows start:stop, and their block of ``gr``.

    A strip's image on the LR grid is nonzero only on these rows: computing just them gives exactly
    the values of those rows in the whole-grid product (each row of a sparse product is its own sum)."""
    block = sparse.csr_array(gr[:, start:stop])
    reached = np.flatnonzero(np.diff(block.indptr))
    rows = slice(int(reached[0]), int(reached[-1]) + 1) if reached.size else slice(0, 0)
    return rows, sparse.csr_array(block[rows])


@dataclass
class SolverSums:
    """One HR row strip's share of :class:`ConsistencySolver`'s LR-scale sums."""

    lr_rows: slice
    projected_terms: np.ndarray
    projected_prior: np.ndarray | None


def msi_on_lr_grid(msi_strip, gr: sparse.csr_array, gc: sparse.csr_array, ratio: int) -> tuple[np.ndarray, np.ndarray]:
    """The MSI blurred and sampled onto the LR grid (read in blocks of rows), and which LR pixels
    see only MSI pixels with data."""
    rows_hr = gr.shape[1]
    block = LR_ROWS_PER_BLOCK * ratio
    values = np.zeros((gr.shape[0], gc.shape[0], 0))
    gaps = np.zeros((gr.shape[0], gc.shape[0]))
    for start in range(0, rows_hr, block):
        stop = min(start + block, rows_hr)
        msi, valid = msi_strip(start, stop)
        rows = sparse.csr_array(gr[:, start:stop])
        part = apply_spatial(np.where(valid[:, :, None], msi, 0.0).astype(np.float32), rows, gc).astype(np.float64)
        values = part if values.shape[2] == 0 else values + part
        gaps += apply_spatial((~valid).astype(np.float32)[:, :, None], rows, gc)[:, :, 0]
    return values.astype(np.float32), gaps <= 1e-6


# ---------------------------------------------------------------------------------------------
# Estimation of the PSF and of the MSI's radiometry
# ---------------------------------------------------------------------------------------------


@dataclass
class SensorFit:
    spatial: SpatialModel
    gain: np.ndarray
    """Per MSI band: the MSI in the HSI's units is gain · MSI + offset."""
    offset: np.ndarray
    residual: float
    """Share of the LR MSI variance the model leaves unexplained (0 = perfect), mean over bands."""
    error_power: np.ndarray
    """Per MSI band: the model's mean squared error relative to the band's mean square (pixels the
    MSI disagrees with grossly left out: see :func:`mismatched_pixels`)."""
    candidates: dict = field(default_factory=dict)
    """The sampling models compared (description → unexplained share on the fit pixels; edge pixels
    for the border handling)."""
    border_residual: float | None = None
    """Unexplained share on the LR pixels whose PSF reaches past the image edge (None: none in the fit)."""
    borders_trusted: bool = True
    """False when even the best border model leaves the edge pixels far worse explained than the
    interior: their PSF is not what the model says, so they are left out of training and consistency."""
    interior_residual: float = 0.0


CONTENT_WARNING = 0.3
"""Above this mean unexplained share the images disagree beyond any sensor model: different dates,
clouds, a wrong SRF or another scene."""
FAMILY_TOLERANCE = 1.02
"""A given PSF is kept when it explains the data within 2 % of the best estimated model: a kernel the
user measured is not replaced by a fit that is only better by noise."""
EDGE_FACTOR = 4.0
"""Edge pixels count as misrepresented when their unexplained share is this many times the interior's."""


def edge_lines(model: SpatialModel, rows_lr: int, cols_lr: int, rows_hr: int, cols_hr: int) -> tuple[np.ndarray, np.ndarray]:
    """LR rows and LR columns whose PSF (as modelled) reaches past the HR image's edge."""
    radius = _support(model.sigma, model.kernel, model.box, model.ratio)
    lines = []
    for count, size, phase in ((rows_lr, rows_hr, model.phase_rows), (cols_lr, cols_hr, model.phase_cols)):
        centres = model.ratio * np.arange(count) + phase
        lines.append((centres - radius < 0) | (centres + radius > size - 1))
    return lines[0], lines[1]


def edge_pixels(model: SpatialModel, rows_lr: int, cols_lr: int, rows_hr: int, cols_hr: int) -> np.ndarray:
    """LR pixels whose PSF (as modelled) reaches past the HR image's edge."""
    rows, cols = edge_lines(model, rows_lr, cols_lr, rows_hr, cols_hr)
    return rows[:, None] | cols[None, :]


def fit_sensor(
    msi: np.ndarray,
    msi_valid: np.ndarray,
    lr_through_srf: np.ndarray,
    lr_valid: np.ndarray,
    ratio: int,
    *,
    sigma: float | None = None,
    kernel: np.ndarray | None = None,
) -> SensorFit:
    """Estimate the LR sampling (PSF shape, sampling phase per axis, border handling) and the MSI
    gain/offset per band.

    Minimises the unexplained variance of the LR-HSI seen through the SRF (``lr_through_srf``,
    h × w × b) when regressed, band by band, on the MSI blurred and sampled by a candidate model;
    each regression is refitted once without its gross outliers (:func:`gross_outliers`), so that a
    few bad pixels steer neither the PSF nor the gains.
    Candidates: a Gaussian PSF (σ fitted, or ``sigma`` when given) with point or block-average
    (area) decimation, and, when ``kernel`` (a 1-D profile or 2-D PSF) is given, that kernel with
    point or area decimation — compared on the data, never taken on trust. The phase search spans
    ±ratio HR pixels around the block centre, so a misregistration of up to one LR pixel is found.
    The PSF is fitted on interior LR pixels; the border handling (reflect or zero padding) on the
    edge pixels afterwards — except on a scene too small to have enough interior pixels, where the
    PSF is fitted on all of them with each border handling in turn.
    """
    # a window of at most FIT_WINDOW² LR pixels in the middle keeps the fit's cost bounded
    rows_lr_all, cols_lr_all, _ = lr_through_srf.shape
    window = []
    for count in (rows_lr_all, cols_lr_all):
        size = min(count, FIT_WINDOW)
        start = (count - size) // 2
        window.append(slice(start, start + size))
    lr_rows, lr_cols = window
    lr_through_srf, lr_valid = lr_through_srf[lr_rows, lr_cols], lr_valid[lr_rows, lr_cols]
    hr_rows = slice(ratio * lr_rows.start, ratio * lr_rows.stop)
    hr_cols = slice(ratio * lr_cols.start, ratio * lr_cols.stop)
    msi, msi_valid = msi[hr_rows, hr_cols], msi_valid[hr_rows, hr_cols]
    rows_lr, cols_lr, _ = lr_through_srf.shape
    rows_hr, cols_hr, _ = msi.shape
    # LR pixels whose PSF reaches past a cut (not an image border) see the wrong border handling
    margin = int(np.ceil((TRUNCATE * MAX_SIGMA_PER_RATIO * ratio + ratio) / ratio))
    interior_of_cut = np.ones((rows_lr, cols_lr), dtype=bool)
    if lr_rows.start > 0:
        interior_of_cut[:margin] = False
    if lr_rows.stop < rows_lr_all:
        interior_of_cut[rows_lr - margin :] = False
    if lr_cols.start > 0:
        interior_of_cut[:, :margin] = False
    if lr_cols.stop < cols_lr_all:
        interior_of_cut[:, cols_lr - margin :] = False
    lr_valid = lr_valid & interior_of_cut
    filled = np.where(msi_valid[:, :, None], msi, 0.0).astype(np.float32)
    invalid = (~msi_valid).astype(np.float32)[:, :, None]
    has_gaps = not msi_valid.all()
    profile = None if kernel is None else kernel_profile(kernel)

    def regress(model: SpatialModel, pixels: np.ndarray, robust: bool = True, strict: bool = False):
        gr, gc = model.matrices(rows_lr, cols_lr, rows_hr, cols_hr)
        projected = apply_spatial(filled, gr, gc)
        use = pixels
        if has_gaps:
            use = use & ~(apply_spatial(invalid, gr, gc)[:, :, 0] > 1e-6)
        if use.sum() < 3:
            if strict:
                raise InvalidDataError("too few pixels where both inputs carry data to relate the MSI to the HSI")
            return np.inf, None, None, None  # a candidate whose PSF reaches a gap from every pixel
        x = projected[use].astype(np.float64)
        y = lr_through_srf[use].astype(np.float64)
        keep = np.ones(x.shape[0], dtype=bool)
        power = np.maximum((y**2).mean(0), 1e-30)
        for _ in range(4 if robust else 1):
            xm, ym = x[keep].mean(0), y[keep].mean(0)
            xc, yc = x - xm, y - ym
            sxx = (xc[keep] ** 2).sum(0)
            gain = np.where(sxx > 0, (xc[keep] * yc[keep]).sum(0) / np.maximum(sxx, 1e-30), 0.0)
            offset = ym - gain * xm
            errors = (yc - gain * xc) ** 2
            if not robust:
                break
            energy = (errors / power).mean(axis=1)
            if _ == 0:
                # a first fit on all pixels is pulled by the outliers themselves: refit without the worst 5 %
                keep = energy <= np.quantile(energy, 1 - OUTLIER_SHARE)
                continue
            outliers = gross_outliers(errors / power)
            if np.array_equal(~outliers, keep):
                break
            keep = ~outliers
        unexplained = errors[keep].sum(0) / np.maximum((yc[keep] ** 2).sum(0), 1e-30)
        error_power = errors[keep].sum(0) / np.maximum((y[keep] ** 2).sum(0), 1e-30)
        if not keep.all():
            # contaminated: the typical error (median of squares; 0.455 of the mean for Gaussian errors), which
            # the bad pixels' neighbours, blurred into by the PSF, do not inflate
            error_power = np.minimum(error_power, np.median(errors, axis=0) / 0.4549 / power)
        return float(unexplained.mean()), gain, offset, error_power

    centre = (ratio - 1) / 2.0
    typical_sigma = sigma if sigma is not None else default_sigma(ratio)
    typical = SpatialModel(ratio, typical_sigma, centre, centre)
    # the PSF is fitted where it does not reach the image edge (whose handling is not known yet)
    usable = lr_valid
    if has_gaps:
        gr, gc = typical.matrices(rows_lr, cols_lr, rows_hr, cols_hr)
        usable = lr_valid & ~(apply_spatial(invalid, gr, gc)[:, :, 0] > 1e-6)
    enough = max(16, int(usable.sum()) // 4)
    interior = usable & ~edge_pixels(typical.replace(sigma=MAX_SIGMA_PER_RATIO * ratio / 2), rows_lr, cols_lr, rows_hr, cols_hr)
    if interior.sum() < enough:
        interior = usable & ~edge_pixels(typical, rows_lr, cols_lr, rows_hr, cols_hr)
    if interior.sum() < enough:
        interior = usable if usable.sum() >= 3 else lr_valid  # a tiny scene: every pixel is near an edge or a gap

    tiny = bool((interior & edge_pixels(typical, rows_lr, cols_lr, rows_hr, cols_hr)).any())
    # on a tiny scene the PSF is fitted on edge pixels too, whose border handling is then part of the model
    fitted = []
    for border in BORDERS if tiny else ("reflect",):
        fitted += fit_families(regress, typical.replace(border=border), interior, sigma, profile)
    best_residual, best, _ = min(fitted, key=lambda item: item[0])
    given = [item for item in fitted if item[2]]
    if given:
        given_residual, given_model, _ = min(given, key=lambda item: item[0])
        if given_residual <= FAMILY_TOLERANCE * best_residual:
            best_residual, best = given_residual, given_model
    # on a pair the model barely explains (a wrong SRF, another date) the best phase can be noise, and moving the
    # result by it does harm: there a misregistration is corrected only where it explains the data significantly
    # better than the registered grid (F-test of the two phase parameters, 1 %). A pair the model explains keeps its
    # phase: there half a pixel of error costs more than a test on a small, noisy scene can resolve.
    count = int(interior.sum())
    if best_residual > CONTENT_WARNING and count > 8:
        from scipy.stats import f as f_distribution

        registered = best.replace(phase_rows=typical.phase_rows, phase_cols=typical.phase_cols)
        registered_residual = regress(registered, interior)[0]
        if registered_residual <= (1.0 + 2.0 * f_distribution.ppf(0.99, 2, count - 6) / (count - 6)) * best_residual:
            best_residual, best = registered_residual, registered
    described = (lambda model: model.describe()) if tiny else (lambda model: model.describe().rsplit(",", 1)[0])
    candidates = {("given: " if given_flag else "fitted: ") + described(model): round(residual, 6)
                  for residual, model, given_flag in fitted}

    # the border handling, judged on the pixels whose PSF reaches past the edge
    edge = lr_valid & ~interior
    border_residual, trusted = None, True
    if edge.sum() >= 3 and usable[edge].sum() >= 3:
        scored = [(regress(best.replace(border=mode), edge & usable)[0], mode) for mode in BORDERS]
        border_residual, mode = min(scored)
        best = best.replace(border=mode)
        candidates.update({f"{m} borders (edge pixels)": round(r, 6) for r, m in scored})
        trusted = border_residual <= EDGE_FACTOR * max(best_residual, ERROR_FLOOR)
    residual, gain, offset, error_power = regress(best, lr_valid if trusted else interior, strict=True)
    return SensorFit(best, gain, offset, residual, error_power, candidates, border_residual, trusted, best_residual)


def fit_families(regress, typical: SpatialModel, interior: np.ndarray, sigma: float | None,
                 profile: np.ndarray | None) -> list[tuple[float, SpatialModel, bool]]:
    """(unexplained share, model, given by the user) of each PSF family, its phase (and σ) fitted on
    ``interior`` with ``typical``'s border handling (see :func:`fit_sensor`)."""
    ratio = typical.ratio
    centre = typical.nominal_phase
    # coarse search of the sampling phase (common to both axes) at a typical PSF
    phases = centre + np.arange(-ratio, ratio + 0.25, 0.5)
    _, p0 = min((regress(typical.replace(phase_rows=p, phase_cols=p), interior)[0], p) for p in sorted(phases, key=lambda p: abs(p - centre)))

    # (kernel, box, fixed σ, given by the user)
    families = [(None, False, None, False), (None, True, None, False)]
    if sigma is not None:
        families += [(None, False, sigma, True), (None, True, sigma, True)]
    if profile is not None:
        families += [(profile, False, None, True), (profile, True, None, True)]
    fitted = []
    for family_kernel, box, fixed_sigma, given in families:
        free_sigma = family_kernel is None and fixed_sigma is None
        base = typical.replace(sigma=fixed_sigma or typical.sigma, phase_rows=p0, phase_cols=p0, kernel=family_kernel, box=box)
        if free_sigma:
            grid = ratio * np.array([0.1, 0.25, 0.4, 0.55, 0.7, 0.9, 1.15])
            _, s0 = min((regress(base.replace(sigma=float(s)), interior)[0], float(s)) for s in grid)
            base = base.replace(sigma=s0)

        def objective(params: np.ndarray, base=base, free_sigma=free_sigma) -> float:
            if free_sigma and not MIN_SIGMA <= params[0] <= MAX_SIGMA_PER_RATIO * ratio:
                return np.inf
            if max(abs(params[-2] - centre), abs(params[-1] - centre)) > ratio + 0.5:
                return np.inf  # beyond one LR pixel of misregistration the pair is not this model's
            changes = {"phase_rows": float(params[-2]), "phase_cols": float(params[-1])}
            if free_sigma:
                changes["sigma"] = float(params[0])
            return regress(base.replace(**changes), interior)[0]

        start = np.array([base.sigma, p0, p0] if free_sigma else [p0, p0])
        steps = np.full(start.size, 0.5)
        if free_sigma:
            steps[0] = 0.1 * ratio
        refined = optimize.minimize(
            objective, start, method="Nelder-Mead",
            options={"xatol": 0.02, "fatol": 1e-7, "maxfev": 60 if free_sigma else 40,
                     "initial_simplex": np.vstack([start, start + np.diag(steps)])},
        )
        params = refined.x if refined.fun <= objective(start) else start
        model = base.replace(phase_rows=float(params[-2]), phase_cols=float(params[-1]))
        if free_sigma:
            model = model.replace(sigma=float(params[0]))
        fitted.append((regress(model, interior)[0], model, given))
    return fitted


OUTLIER_FACTOR = 25.0
"""A pixel whose squared model error is this many times the median's (5 standard deviations for
Gaussian errors) is a gross outlier: a cloud, a moving car, a saturated or dead MSI pixel."""
OUTLIER_SHARE = 0.05
"""Gross outliers are set aside only while they are this share of the pixels or fewer ("a few bad
pixels"); beyond it the mismatch is the scene's, and the trust says so."""


def gross_outliers(relative_errors: np.ndarray) -> np.ndarray:
    """Pixels (rows of N × b relative squared errors) that disagree grossly with the model, when they
    are few (see :data:`OUTLIER_FACTOR`, :data:`OUTLIER_SHARE`); all False otherwise."""
    energy = relative_errors.mean(axis=1)
    # an error under 40 dB of the signal is never gross, however exact the rest of the scene is
    typical = max(float(np.median(energy)), ERROR_FLOOR)
    outliers = energy > OUTLIER_FACTOR * typical
    if outliers.mean() > OUTLIER_SHARE:
        return np.zeros_like(outliers)
    return outliers


ERROR_FLOOR = 1e-4
"""Relative error power below which an observation counts as exact (an SNR of 40 dB)."""

NOISE_WINDOW = 512
"""The MSI's noise is estimated on at most this many HR rows and columns (from the middle)."""


def msi_noise_power(msi: np.ndarray, msi_valid: np.ndarray, fit: SensorFit) -> np.ndarray | None:
    """Per MSI band: the noise variance at full resolution (calibrated units), or None where no band
    can be read.

    The LR fit cannot see it: the PSF averages white noise down before the comparison. Each band's
    noise is read from its own flattest patches (:func:`hsiuu_cli.noise.band_noise_variances`):
    regressing a band's finest detail on the other bands', as before, counted the detail a textured
    scene does not share across 3–4 bands as noise, 2–80 × over (docs/benchmarks.md).
    """
    window = []
    for count in msi.shape[:2]:
        size = min(count, NOISE_WINDOW)
        start = (count - size) // 2
        window.append(slice(start, start + size))
    values = np.asarray(msi[window[0], window[1]], dtype=np.float64) * fit.gain + fit.offset
    return band_noise_variances(values, msi_valid[window[0], window[1]])


@dataclass
class Trust:
    relative: np.ndarray
    """Per MSI band: the LR-HSI's relative error power over the MSI's, at most 1 (1: the MSI is as
    good as the HSI; a noise-free simulated pair gives 1)."""
    weights: np.ndarray
    """Per MSI band: the MSI term's weight against the LR-HSI term for the consistency solve, in
    the solver's units (each band's residual divided by its response's norm)."""
    hsi_error: float
    """The LR-HSI's relative noise power (at least :data:`ERROR_FLOOR`)."""
    hsi_noise_variance: float
    """The LR-HSI's estimated noise variance per band (not floored)."""
    hsi_noise_floor: float
    """The same estimate with the regression's lost degrees of freedom restored (× N / (N − p) for N pixels
    regressed on p other bands, :func:`hsiuu_cli.unmixing.hysime.residual_variance`, as ``superres`` estimates
    its scene's noise): what no result can reproduce the LR-HSI closer than, the guard's floor. The
    estimate above, which the fit's settings were tuned with, keeps only (N − p)/N of the noise on small scenes
    (0.55–0.58 of it on Salton Sea's 12 × 14 LR pixels, 0.72–0.76 on Jasper Ridge's 25 × 25; docs/benchmarks.md)."""
    msi_noise_variance: np.ndarray | None = None
    """Per MSI band: its estimated noise variance at full resolution (:func:`msi_noise_power`)."""
    msi_noise_bound: np.ndarray | None = None
    """Per MSI band: the most full-resolution white noise variance the LR fit's residual allows (that
    residual over the PSF's :attr:`SpatialModel.noise_gain`)."""


def msi_trust(fit: SensorFit, lr_pixels: np.ndarray, srf: np.ndarray, msi_noise: np.ndarray | None = None) -> Trust:
    """How far the MSI can be trusted against the LR-HSI: maximum a posteriori weights, i.e. inverse
    error variances.

    The MSI's error is what the sensor model leaves unexplained at LR (SRF mismatch,
    misregistration, non-linear radiometry, noise); the LR-HSI's is its noise, estimated per band
    by regression on the other bands (HySime). Both are relative error powers floored at
    :data:`ERROR_FLOOR`, so a noise-free simulated pair counts both as exact. ``msi_noise``
    (:func:`msi_noise_power`) is carried along for the network's training.
    """
    from ..unmixing.hysime import estimate_noise, residual_variance

    pixels = spread_sample(np.asarray(lr_pixels, dtype=np.float64))
    hsi_power = max(float((pixels**2).mean()), 1e-30)
    # regression on the other bands needs more pixels than bands: with few pixels, use a spread subset of bands
    count = min(pixels.shape[1], pixels.shape[0] // 2)
    noise_relative = floor_relative = 0.0
    if count >= 3:
        subset = pixels[:, np.unique(np.linspace(0, pixels.shape[1] - 1, count).round().astype(int))]
        residual, subset_power = estimate_noise(subset), max(float((subset**2).mean()), 1e-30)
        noise_relative = float((residual**2).mean() / subset_power)
        floor_relative = float(residual_variance(residual, subset.shape[1] - 1).mean() / subset_power)
    hsi_error = max(ERROR_FLOOR, noise_relative)
    msi_error = np.maximum(fit.error_power, ERROR_FLOOR)
    msi_power = np.maximum(((pixels @ srf) ** 2).mean(axis=0), 1e-30)
    # white MSI noise reaches the LR grid scaled by the PSF's noise gain, and the fit leaves only so much unexplained there
    noise_bound = fit.error_power * msi_power / fit.spatial.noise_gain
    # absolute error variances: HSI band residual e_Y·P_Y, MSI band residual e_M·P_Z (÷‖R‖² in solver units)
    weights = (hsi_error * hsi_power) / (msi_error * msi_power) * (srf**2).sum(axis=0)
    return Trust(np.minimum(1.0, hsi_error / msi_error), weights, hsi_error, noise_relative * hsi_power,
                 floor_relative * hsi_power, msi_noise, noise_bound)


# ---------------------------------------------------------------------------------------------
# Consistency: the cube closest to a prior that agrees with both observations
# ---------------------------------------------------------------------------------------------


@dataclass
class ConsistencySolver:
    """argmin_X ‖Gr X Gcᵀ − Y‖² + Σ_j w_j ‖(X R_j − M_j) / ‖R_j‖‖² + μ‖X − X₀‖², solved exactly.

    Dividing each MSI band by its response's norm weighs the bands alike whatever their
    bandwidth; ``msi_weights`` (w_j) then says how far each is trusted. The correction is restricted
    to the spectral basis ``basis`` (B × p orthonormal), rotated so that the weighted R Rᵀ is
    diagonal in it: every basis direction k is then an independent spatial problem
    (AᵀA + c_k I) z = rhs with A = Gc ⊗ Gr, whose inverse follows from the Woodbury identity with
    the small LR matrices GrGrᵀ and GcGcᵀ — no iteration, a few sparse passes over the HR grid.

    Gaps are neutral: LR pixels outside ``lr_valid`` take the prior's own LR image, and the caller
    gives the prior's SRF image where the MSI has none.

    Strip by strip so that memory stays bounded: :meth:`strip_sums` of every HR row strip (prior and
    calibrated MSI, in any process) :meth:`add`-ed in row order, :meth:`finish`, then :meth:`correct`
    every strip.
    """

    gr: sparse.csr_array
    gc: sparse.csr_array
    lr_hsi: np.ndarray
    lr_valid: np.ndarray
    srf: np.ndarray
    basis: np.ndarray
    msi_weights: np.ndarray
    prior_weight: float

    def __post_init__(self) -> None:
        band_scale = np.sqrt(np.asarray(self.msi_weights, dtype=np.float64)) / np.linalg.norm(self.srf, axis=0)
        projected_srf = self.basis.T @ (self.srf * band_scale)  # p × b
        values, rotation = np.linalg.eigh(projected_srf @ projected_srf.T)
        self.basis = (self.basis @ rotation).astype(np.float32)
        # calibrated MSI ↦ its weighted, unit-response values times R̂ᵀV
        self.msi_to_basis = (band_scale[:, None] * (rotation.T @ projected_srf).T).astype(np.float32)
        self.weights = np.clip(values, 0.0, None) + self.prior_weight
        self.eig_rows, self.vec_rows = np.linalg.eigh((self.gr @ self.gr.T).toarray())
        self.eig_cols, self.vec_cols = np.linalg.eigh((self.gc @ self.gc.T).toarray())
        self.gr_t = sparse.csr_array(self.gr.T)
        self.gc_t = sparse.csr_array(self.gc.T)
        # the sums live on the client alone (made at the first add): tasks that only compute a strip's share need none
        self.projected_terms = self.projected_prior = None

    def _terms(self, prior: np.ndarray, msi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        prior_in_basis = prior @ self.basis
        return prior_in_basis, msi @ self.msi_to_basis + self.prior_weight * prior_in_basis

    def strip_sums(self, prior: np.ndarray, msi: np.ndarray, start: int, stop: int) -> "SolverSums":
        """HR rows start:stop's share of the LR-scale sums (prior and calibrated MSI), on the LR rows they reach."""
        prior_in_basis, terms = self._terms(prior, msi)
        lr_rows, rows = lr_rows_of(self.gr, start, stop)
        projected_prior = None if self.lr_valid.all() else apply_spatial(prior_in_basis, rows, self.gc)
        return SolverSums(lr_rows, apply_spatial(terms, rows, self.gc), projected_prior)

    def add(self, sums: "SolverSums") -> None:
        """Add one strip's sums; every strip is added once, in the order of the rows (floating-point
        sums depend on the order)."""
        if self.projected_terms is None:
            self.projected_terms = np.zeros(self.lr_hsi.shape[:2] + (self.basis.shape[1],))
            self.projected_prior = np.zeros_like(self.projected_terms)
        self.projected_terms[sums.lr_rows] += sums.projected_terms
        if sums.projected_prior is not None:
            self.projected_prior[sums.lr_rows] += sums.projected_prior

    def finish(self) -> None:
        """Solve at LR scale once every strip was added; :meth:`correct` then needs only the result
        (the sums are dropped, so that the solver is small to send to other processes)."""
        lr_in_basis = (self.lr_hsi @ self.basis).astype(np.float64)
        lr_in_basis[~self.lr_valid] = self.projected_prior[~self.lr_valid]
        gram_rows, gram_cols = self.vec_rows * self.eig_rows @ self.vec_rows.T, self.vec_cols * self.eig_cols @ self.vec_cols.T
        projected_rhs = np.einsum("hi,ijp,jw->hwp", gram_rows, lr_in_basis, gram_cols, optimize=True)
        projected_rhs += self.projected_terms
        inner = np.einsum("ih,ijp,jw->hwp", self.vec_rows, projected_rhs, self.vec_cols, optimize=True)
        inner /= self.weights[None, None, :] + self.eig_rows[:, None, None] * self.eig_cols[None, :, None]
        self.lr_residual = lr_in_basis - np.einsum("hi,ijp,wj->hwp", self.vec_rows, inner, self.vec_cols, optimize=True)
        self.projected_terms = self.projected_prior = None

    def correct(self, prior: np.ndarray, msi: np.ndarray, start: int, stop: int) -> np.ndarray:
        prior_in_basis, terms = self._terms(prior, msi)
        rows_t = sparse.csr_array(self.gr_t[start:stop])
        rhs = apply_spatial(self.lr_residual, rows_t, self.gc_t) + terms
        solution = rhs / self.weights[None, None, :].astype(np.float32)
        return (prior + (solution - prior_in_basis) @ self.basis.T).astype(np.float32)
