"""Test cases made from a high-resolution cube the way papers make them, as ``hsiuu simulate`` does
(docs/simulate.md).

:func:`simulate_pair` returns the low-resolution cube (on the coarsened grid), the multispectral
image (a sensor's SRF applied on the high-resolution grid) and the high-resolution reference cut to
whole ratio × ratio blocks, each a :class:`Cube` ready to write. This module decides the crop, the
bands and the no-data pixels and builds the outputs' metadata; the degradations themselves come
from :mod:`hsiuu_cli.degrade`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import degrade
from .cube import Cube
from .errors import InvalidDataError, ParameterError
from .grid import coarsened_transform
from .srf import SpectralResponse, load_srf, srf_matrix


@dataclass
class Simulation:
    """The outputs of :func:`simulate_pair`, float32 in physical units, no-data pixels as NaN."""

    hr: Cube
    """The input on the whole-block grid: the reference the other two line up with."""
    lr: Cube | None
    """The low-resolution cube (with a ratio), on the input's grid coarsened by the ratio."""
    msi: Cube | None
    """The multispectral image (with an SRF); wavelengths are the bands' response-weighted means."""
    response: SpectralResponse | None
    """The SRF the MSI was made with."""
    cropped: bool
    """Whether ``hr`` is smaller than the input (its size is not a multiple of the ratio)."""


def whole_blocks(rows: int, cols: int, ratio: int | None) -> tuple[int, int]:
    """The size cut to whole ratio × ratio blocks (the size itself without a ratio)."""
    if ratio is None:
        return rows, cols
    cut = (rows // ratio) * ratio, (cols // ratio) * ratio
    if 0 in cut:
        raise ParameterError(f"a {rows}×{cols} cube is smaller than the ratio {ratio}")
    return cut


def simulate_pair(
    cube: Cube,
    *,
    ratio: int | None = None,
    psf: str = "gaussian",
    sigma: float | None = None,
    kernel_size: int | None = None,
    offset: int | None = None,
    shift: tuple[float, float] | None = None,
    srf: str | Path | SpectralResponse | None = None,
    snr: float | None = None,
    msi_snr: float | None = None,
    seed: int = 0,
    notice: Callable[[str, str], None] | None = None,
) -> Simulation:
    """The low-resolution cube (``ratio``) and/or the multispectral image (``srf``) of a cube.

    ``psf``, ``sigma``, ``kernel_size`` and ``offset`` are those of
    :func:`hsiuu_cli.degrade.spatial_degrade`; ``shift`` (rows, columns of HR pixels) misregisters
    the pair: the LR cube's pixels are centred that far down/right of where its grid puts them on
    the MSI's (and the reference's) grid, so the MSI and the reference stay aligned and a fusion
    result is scored against the reference as usual; ``srf`` is a loaded response or a name for
    :func:`hsiuu_cli.srf.load_srf`, applied to the bands not flagged bad. Noise at ``snr`` dB goes
    on the LR cube and at ``msi_snr`` dB on the MSI, from ``numpy.random.default_rng(seed)``, LR
    first. Errors carry no path unless an SRF file is at fault.

    ``notice(kind, message)`` hears, in this order and before any degradation: ``"coverage"``, an
    SRF band partly outside the cube's range (by default a :func:`warnings.warn`); ``"nodata"``,
    how many pixels are left out; ``"crop"``, the cut to whole blocks.
    """
    if ratio is None and srf is None:
        raise ParameterError("give a ratio (low-resolution cube) and/or an SRF (multispectral image)")
    if ratio is None and (sigma is not None or kernel_size is not None or offset is not None or shift is not None):
        raise ParameterError("sigma, kernel size, offset and shift need a ratio")
    tell = notice or _warn_coverage
    rows, cols = whole_blocks(cube.rows, cube.cols, ratio)
    cropped = (rows, cols) != (cube.rows, cube.cols)

    good = cube.good_band_indices()
    response = matrix = None
    if srf is not None:
        response = srf if isinstance(srf, SpectralResponse) else load_srf(srf)
        wavelengths = None if cube.wavelengths is None else cube.wavelengths[good]
        fwhm = None if cube.fwhm is None else cube.fwhm[good]
        matrix = srf_matrix(response, wavelengths, fwhm, warn=lambda message: tell("coverage", message))

    hr = cube.physical()[:rows, :cols]
    infinite = int(np.isinf(hr[:, :, good]).any(axis=2).sum())
    if infinite:
        raise InvalidDataError(f"{infinite} pixels hold infinite values")
    valid = cube.valid_mask(good)[:rows, :cols]
    if not valid.any():
        raise InvalidDataError("every pixel is no-data")
    has_nodata = not valid.all()
    if has_nodata:
        hr = hr.copy()
        hr[~valid] = np.nan
        tell("nodata", f"{int((~valid).sum())} no-data pixels are left out and written as NaN")
    if cropped:
        tell("crop", f"{cube.rows}×{cube.cols} is not a multiple of {ratio}; using the first {rows}×{cols} pixels")

    rng = np.random.default_rng(seed)
    nodata = float("nan") if has_nodata else None
    lr_cube = msi_cube = None
    if ratio is not None:
        source = hr if shift is None or tuple(shift) == (0, 0) else degrade.shift(hr, -shift[0], -shift[1])
        lr = degrade.spatial_degrade(source, ratio, method=psf, sigma=sigma, kernel_size=kernel_size, offset=offset)
        if snr is not None:
            lr = degrade.add_noise(lr, snr, rng)
        lr_cube = cube.regridded(
            lr.astype(np.float32, copy=False),
            None if cube.transform is None else coarsened_transform(cube.transform, ratio),
            nodata=nodata,
            scale_factor=None,
            metadata=cube.physical_metadata(),
        )
    if matrix is not None:
        msi = degrade.spectral_degrade(hr[:, :, good], matrix.astype(np.float32))
        if msi_snr is not None:
            msi = degrade.add_noise(msi, msi_snr, rng)
        centroids = np.round((response.wavelengths @ response.responses) / response.responses.sum(axis=0), 2)
        msi_cube = cube.with_bands(msi.astype(np.float32, copy=False), band_names=list(response.band_names)).replace(
            wavelengths=centroids, nodata=nodata, scale_factor=None
        )
        if cube.description:
            msi_cube.description = f"{cube.description} — simulated {response.name}"
    hr_cube = cube.replace(data=hr, nodata=nodata, scale_factor=None, metadata=cube.physical_metadata())
    return Simulation(hr=hr_cube, lr=lr_cube, msi=msi_cube, response=response, cropped=cropped)


def _warn_coverage(kind: str, message: str) -> None:
    if kind == "coverage":
        warnings.warn(message, stacklevel=3)
