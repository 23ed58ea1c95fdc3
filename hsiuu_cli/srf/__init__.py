"""Spectral response functions (SRFs): the built-in sensor library, custom CSVs, and resampling
an SRF onto a hyperspectral cube's bands.

A name may select bands with ``name:band1,band2`` (``ikonos:blue,green,red,nir``); band names
match case-insensitively. A path to a CSV in the same format (``wavelength_nm,<band>,...``) works
wherever a name does, also with a ``:band,...`` selection.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import SpectralResponseError

logger = logging.getLogger(__name__)

# canonical name -> (file in srf/data, source)
_BUILTIN = {
    "sentinel2a": ("sentinel2a.csv", "ESA Sentinel-2A MSI spectral responses (COPE-GSEG-EOPG-TN-15-0007 v3.0)"),
    "landsat8": ("landsat8.csv", "NASA/USGS Landsat-8 OLI relative spectral responses"),
    "pleiades1a": ("pleiades1a.csv", "Airbus Defence and Space / CNES Pléiades 1A spectral responses"),
    "ikonos": ("ikonos.csv", "IKONOS (Space Imaging / DigitalGlobe) relative spectral responses"),
    "nikon_d700": ("nikon_d700.csv", "Nikon D700 camera spectral sensitivity (red, green, blue)"),
}
_ALIASES = {
    "sentinel2a_msi": "sentinel2a",
    "s2a": "sentinel2a",
    "landsat8_oli": "landsat8",
    "l8": "landsat8",
    "pleiades": "pleiades1a",
    "d700": "nikon_d700",
}

MIN_IN_RANGE = 0.5
"""Default share of each band's response area that must lie within the cube's wavelength range
(first band's lower edge to last band's upper edge): a band mostly outside it cannot be simulated."""
WARN_COVERAGE = 0.95
"""Below this share of a band's response on the cube's bands (gaps and the outside of the range
excluded, see :func:`srf_coverage`) the band is simulated with a warning: the rest of its response
is interpolated across gaps (removed water-vapour bands) or left out beyond the range."""

_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


@dataclass
class SpectralResponse:
    """Responses of ``b`` sensor bands sampled at ``n`` wavelengths (nm), one column per band."""

    wavelengths: np.ndarray
    responses: np.ndarray
    band_names: list[str]
    source: str
    name: str = "custom"

    def __post_init__(self) -> None:
        self.wavelengths = np.asarray(self.wavelengths, dtype=np.float64).reshape(-1)
        self.responses = np.asarray(self.responses, dtype=np.float64)
        if self.responses.ndim == 1:
            self.responses = self.responses[:, np.newaxis]
        n, b = self.responses.shape
        if n != self.wavelengths.size:
            raise SpectralResponseError(
                f"SRF '{self.name}' has {self.wavelengths.size} wavelengths but {n} response rows"
            )
        if len(self.band_names) != b:
            raise SpectralResponseError(f"SRF '{self.name}' has {len(self.band_names)} band names for {b} bands")

    @property
    def bands(self) -> int:
        return self.responses.shape[1]

    def select(self, band_names: list[str] | tuple[str, ...]) -> "SpectralResponse":
        """The named bands (case-insensitive), in the order given."""
        lookup = {name.lower(): i for i, name in enumerate(self.band_names)}
        indices = []
        for wanted in band_names:
            key = wanted.strip().lower()
            if key not in lookup:
                raise SpectralResponseError(
                    f"SRF '{self.name}' has no band '{wanted.strip()}' (bands: {', '.join(self.band_names)})"
                )
            indices.append(lookup[key])
        if not indices:
            raise SpectralResponseError(f"no bands selected from SRF '{self.name}'")
        if len(set(indices)) != len(indices):
            raise SpectralResponseError(f"band selection from SRF '{self.name}' repeats a band")
        return SpectralResponse(
            wavelengths=self.wavelengths,
            responses=self.responses[:, indices],
            band_names=[self.band_names[i] for i in indices],
            source=self.source,
            name=f"{self.base_name}:{','.join(self.band_names[i] for i in indices)}",
        )

    @property
    def base_name(self) -> str:
        """The table's name without a band selection (``ikonos`` for ``ikonos:red,nir``)."""
        return self.name.split(":")[0]

    def support(self) -> tuple[float, float]:
        """Wavelength range (nm) where any band responds."""
        active = np.nonzero((self.responses > 0).any(axis=1))[0]
        return float(self.wavelengths[active[0]]), float(self.wavelengths[active[-1]])


def list_srfs() -> list[str]:
    """Names of the built-in SRFs."""
    return sorted(_BUILTIN)


def load_srf(spec: str | Path) -> SpectralResponse:
    """A built-in SRF by name (``sentinel2a``) or a CSV path, optionally with ``:band,...`` selecting bands."""
    text = str(spec).strip()
    base, selection = text, None
    if not Path(text).is_file() and ":" in text:
        head, _, tail = text.rpartition(":")
        # a lone drive letter (C:\...) is a path, not a selection
        if len(head) > 1:
            base, selection = head, tail
    key = _ALIASES.get(base.lower(), base.lower())
    if key in _BUILTIN:
        filename, source = _BUILTIN[key]
        with resources.as_file(resources.files(__package__) / "data" / filename) as table:
            srf = _read_csv(table, name=key, source=source)
    else:
        path = Path(base)
        if not path.is_file():
            if path.suffix.lower() == ".csv" or path.parent != Path("."):
                raise SpectralResponseError("SRF file not found", path=path)
            import difflib

            close = difflib.get_close_matches(base.lower(), list(_BUILTIN) + list(_ALIASES), n=1, cutoff=0.75)
            hint = f"did you mean {_ALIASES.get(close[0], close[0])}? " if close else ""
            raise SpectralResponseError(
                f"unknown SRF '{base}'; {hint}built-in: {', '.join(list_srfs())}, or give a CSV path "
                "(wavelength_nm,<band>,...)"
            )
        srf = _read_csv(path, name=str(path), source=f"custom CSV {path}")
    if selection is not None:
        srf = srf.select([band for band in selection.split(",") if band.strip()] or [""])
    return srf


def _read_csv(path: Path, *, name: str, source: str) -> SpectralResponse:
    """Parse ``wavelength_nm,<band>,...`` (``#`` lines ignored; ``wavelength_um`` is converted)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if row and not row[0].lstrip().startswith("#")]
    except (OSError, UnicodeDecodeError) as exc:
        raise SpectralResponseError(f"cannot read SRF CSV: {exc}", path=path) from None
    if len(rows) < 3:
        raise SpectralResponseError("SRF CSV needs a header 'wavelength_nm,<band>,...' and at least 2 rows", path=path)
    header = [cell.strip() for cell in rows[0]]
    if len(header) < 2 or not header[0].lower().startswith("wavelength"):
        raise SpectralResponseError(
            f"SRF CSV header must start with 'wavelength_nm' followed by band names, got '{','.join(header)}'",
            path=path,
        )
    band_names = header[1:]
    if any(not band for band in band_names) or len({b.lower() for b in band_names}) != len(band_names):
        raise SpectralResponseError("SRF CSV band names must be non-empty and distinct", path=path)
    for row in rows[1:]:
        if len(row) != len(header):
            raise SpectralResponseError(
                f"every SRF CSV row must have {len(header)} values; a data row has {len(row)}", path=path
            )
    try:
        table = np.array([[float(cell) for cell in row] for row in rows[1:]], dtype=np.float64)
    except ValueError as exc:
        raise SpectralResponseError(f"SRF CSV holds a non-numeric value ({exc})", path=path) from None
    if not np.isfinite(table).all():
        raise SpectralResponseError("SRF CSV holds NaN or infinite values", path=path)
    wavelengths, responses = table[:, 0], table[:, 1:]
    unit = header[0].lower().removeprefix("wavelength").strip(" _()[]")
    if unit in ("um", "µm", "micrometers", "micrometres", "microns") or (unit == "" and wavelengths.max() < 30):
        wavelengths = wavelengths * 1000.0
    elif unit not in ("nm", "nanometers", "nanometres", ""):
        raise SpectralResponseError(f"unknown wavelength unit '{unit}' in the SRF CSV header (use nm or um)", path=path)
    order = np.argsort(wavelengths, kind="stable")
    wavelengths, responses = wavelengths[order], responses[order]
    if np.any(np.diff(wavelengths) <= 0):
        raise SpectralResponseError("SRF CSV repeats a wavelength", path=path)
    if (responses < 0).any():
        raise SpectralResponseError("SRF CSV holds negative responses", path=path)
    empty = [band for band, column in zip(band_names, responses.T) if not column.any()]
    if empty:
        raise SpectralResponseError(f"SRF band(s) {', '.join(empty)} have no response anywhere", path=path)
    return SpectralResponse(wavelengths, responses, band_names, source, name=name)


def srf_matrix(
    srf: SpectralResponse,
    wavelengths,
    fwhm=None,
    *,
    min_in_range: float = MIN_IN_RANGE,
    warn: Callable[[str], None] | None = None,
) -> np.ndarray:
    """Weights (B × b) that turn a cube with B bands into the SRF's b bands; each column sums to 1.

    With ``fwhm`` known, weight (i, j) is the integral of band j's response against cube band i's
    Gaussian response of that FWHM; without it, band j's response is interpolated at the cube's
    band centres. The cube's spectral coverage is the union of intervals centre ± FWHM/2 (without
    FWHM: ± half the median band spacing), with the stretch between neighbouring bands counted
    unless a band is missing there (gap > 1.5 × the median spacing; see :func:`_covered`). The part
    of a response that falls in such a gap — a removed water-vapour window — is integrated against
    the spectrum interpolated linearly across the gap from the bands at its edges; the part beyond
    the cube's range is left out. A band fails (:class:`SpectralResponseError`) only when less
    than ``min_in_range`` of its response lies within the cube's range; below
    :data:`WARN_COVERAGE` on the cube's bands it is said through ``warn`` (default: the
    ``hsiuu_cli.srf`` logger), with the shares covered, interpolated and left out.
    """
    warn = warn or logger.warning
    centres, widths = _cube_bands(srf, wavelengths, fwhm)
    half_widths = _half_widths(centres, widths)

    srf_low, srf_high = srf.support()
    cube_low, cube_high = float((centres - half_widths).min()), float((centres + half_widths).max())
    if cube_high <= srf_low or cube_low >= srf_high:
        raise SpectralResponseError(
            f"SRF '{srf.name}' ({srf_low:.0f}–{srf_high:.0f} nm) does not overlap the cube's wavelengths "
            f"({centres.min():.0f}–{centres.max():.0f} nm)"
        )

    step = 1.0 if widths is None else min(1.0, float(widths.min()) / 8.0)
    grid, dense, coverage = _dense_coverage(srf, centres, half_widths, step)
    area = dense.sum(axis=0)
    in_range = (grid >= cube_low) & (grid <= cube_high)
    gap = in_range & ~_covered(grid, centres, half_widths)
    in_range_share = (dense * in_range[:, None]).sum(axis=0) / area
    gap_share = (dense * gap[:, None]).sum(axis=0) / area
    for j, band in enumerate(srf.band_names):
        if in_range_share[j] < min_in_range:
            raise SpectralResponseError(
                f"band '{band}' of SRF '{srf.name}' lies mostly outside the cube's wavelength range: "
                f"{100 * in_range_share[j]:.0f}% of its response is within {cube_low:.0f}–{cube_high:.0f} nm "
                f"(at least {100 * min_in_range:.0f}% needed); select other bands with '{srf.base_name}:"
                "band,...' or give a CSV restricted to the cube's range"
            )

    if widths is None:
        weights = np.stack(
            [np.interp(centres, srf.wavelengths, column, left=0.0, right=0.0) for column in srf.responses.T], axis=1
        )
        if gap.any():
            # sampled responses stand for the stretch of one band spacing around each centre
            weights = weights * (2.0 * half_widths[:, None]) + _across_gaps(grid, dense, gap, centres) * step
    else:
        sigmas = widths * _FWHM_TO_SIGMA
        gaussians = np.exp(-0.5 * ((grid[None, :] - centres[:, None]) / sigmas[:, None]) ** 2)
        gaussians /= sigmas[:, None] * np.sqrt(2.0 * np.pi)
        weights = (gaussians @ (dense * ~gap[:, None]) + _across_gaps(grid, dense, gap, centres)) * step

    sums = weights.sum(axis=0)
    for j, band in enumerate(srf.band_names):
        if sums[j] <= 0:
            raise SpectralResponseError(
                f"band '{band}' of SRF '{srf.name}' falls between the cube's bands: no band's response "
                "(centre ± FWHM) reaches it; check the cube's FWHM values, or select other bands with "
                f"'{srf.base_name}:band,...'"
            )
        if coverage[j] < WARN_COVERAGE:
            outside = 1.0 - in_range_share[j]
            rest = ([f"{100 * gap_share[j]:.0f}% in gaps between them (interpolated across)"] if gap_share[j] >= 0.005 else []) + (
                [f"{100 * outside:.0f}% outside {cube_low:.0f}–{cube_high:.0f} nm (left out)"] if outside >= 0.005 else [])
            warn(f"SRF band '{band}' of '{srf.name}': {100 * coverage[j]:.0f}% of its response falls on the cube's "
                 f"bands, {' and '.join(rest)}")
    return weights / sums


def _across_gaps(grid: np.ndarray, dense: np.ndarray, gap: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Weights (B × b, per nm of grid) of the responses on ``gap`` grid points, integrated against
    the spectrum interpolated linearly between the two cube bands around each point."""
    weights = np.zeros((centres.size, dense.shape[1]))
    if not gap.any():
        return weights
    order = np.argsort(centres)
    sorted_centres = centres[order]
    points = grid[gap]
    upper = np.clip(np.searchsorted(sorted_centres, points), 1, sorted_centres.size - 1)
    lower = upper - 1
    span = sorted_centres[upper] - sorted_centres[lower]
    fraction = np.clip((points - sorted_centres[lower]) / np.where(span > 0, span, 1.0), 0.0, 1.0)
    responses = dense[gap]
    np.add.at(weights, order[lower], (1.0 - fraction)[:, None] * responses)
    np.add.at(weights, order[upper], fraction[:, None] * responses)
    return weights


def _half_widths(centres: np.ndarray, widths: np.ndarray | None) -> np.ndarray:
    """Half of each band's width: FWHM/2 when known, else half the median band spacing."""
    if widths is not None:
        return widths / 2.0
    gaps = np.diff(np.sort(centres))
    gaps = gaps[gaps > 0]
    return np.full(centres.shape, float(np.median(gaps)) / 2.0 if gaps.size else 0.0)


def _covered(grid: np.ndarray, centres: np.ndarray, half_widths: np.ndarray) -> np.ndarray:
    """Grid points within the cube's spectral coverage.

    Each band covers centre ± half width. Bands next to each other in wavelength are joined when
    their gap is at most 1.5 × the median band spacing, so FWHM under the spacing or overlapping
    spectrometers leave no false holes, while a missing band (a removed water-vapour window) does.
    """
    order = np.argsort(centres)
    sorted_centres = centres[order]
    low = sorted_centres - half_widths[order]
    high = sorted_centres + half_widths[order]
    gaps = np.diff(sorted_centres)
    positive = gaps[gaps > 0]
    if positive.size:
        joined = gaps <= 1.5 * np.median(positive)
        high[:-1] = np.where(joined, np.maximum(high[:-1], sorted_centres[1:]), high[:-1])
    covered = np.zeros(grid.size, dtype=bool)
    for start, stop in zip(low, high):
        covered |= (grid >= start) & (grid <= stop)
    return covered


def srf_coverage(srf: SpectralResponse, wavelengths, fwhm=None) -> dict[str, float]:
    """Share of each band's response area on the cube's bands (its spectral coverage without gaps and
    beyond its range), as :func:`srf_matrix` judges it."""
    centres, widths = _cube_bands(srf, wavelengths, fwhm)
    half_widths = _half_widths(centres, widths)
    _, _, coverage = _dense_coverage(srf, centres, half_widths, 1.0)
    return {band: float(share) for band, share in zip(srf.band_names, coverage)}


def _cube_bands(srf: SpectralResponse, wavelengths, fwhm) -> tuple[np.ndarray, np.ndarray | None]:
    """Validated band centres and FWHM (None when absent or unusable), nm."""
    if wavelengths is None:
        raise SpectralResponseError(f"cannot apply SRF '{srf.name}': the cube has no wavelengths")
    centres = np.asarray(wavelengths, dtype=np.float64).reshape(-1)
    if centres.size == 0 or not np.isfinite(centres).all():
        raise SpectralResponseError(f"cannot apply SRF '{srf.name}': the cube's wavelengths are missing or not finite")
    if fwhm is None:
        return centres, None
    widths = np.asarray(fwhm, dtype=np.float64).reshape(-1)
    if widths.size != centres.size:
        raise SpectralResponseError(f"{widths.size} FWHM values for {centres.size} cube bands")
    if not (np.isfinite(widths).all() and (widths > 0).all()):
        return centres, None  # an unusable FWHM list is no better than none
    return centres, widths


def _dense_coverage(
    srf: SpectralResponse, centres: np.ndarray, half_widths: np.ndarray, step: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The responses on a regular grid of ``step`` nm, and each band's share of area inside the cube's coverage."""
    grid = np.arange(srf.wavelengths[0], srf.wavelengths[-1] + step / 2, step)
    dense = np.stack(
        [np.interp(grid, srf.wavelengths, column, left=0.0, right=0.0) for column in srf.responses.T], axis=1
    )
    covered = _covered(grid, centres, half_widths)
    coverage = (dense * covered[:, None]).sum(axis=0) / dense.sum(axis=0)
    return grid, dense, coverage
