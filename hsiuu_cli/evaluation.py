"""Scoring results read from files against references, as ``hsiuu evaluate`` does (docs/evaluate.md).

* :func:`evaluate_images` — every image metric of a result cube against a reference cube.
* :func:`evaluate_unmixing` — estimated endmembers and/or abundance maps against ground truth, after
  Hungarian matching.

Both return an :class:`Evaluation`: the JSON-ready report and the per-band (per-endmember) rows.
This module decides which pixels and bands are compared and pairs endmembers; the figures
themselves come from :mod:`hsiuu_cli.metrics`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .cube import Cube
from .errors import HsiuuError, InvalidDataError, ParameterError, ShapeMismatchError
from .io import SpectralLibrary, read_cube, read_library
from .metrics import abundance_rmse, assess_quality, match_abundances, match_endmembers

WAVELENGTH_TOLERANCE_NM = 1.0
"""Band centres at most this far apart are the same band. Looser than the 0.5 nm of
``unmixing.library``, which interpolates a band that misses; here a band that misses is left out
of the score, so the rounding of both files' wavelengths (up to 0.5 nm each) must fit."""


@dataclass
class Evaluation:
    """The figures of one evaluation, as ``hsiuu evaluate`` prints them."""

    report: dict
    """JSON-ready summary; keys as in docs/evaluate.md (``mode`` is ``"image"`` or ``"unmixing"``)."""
    rows: list[dict]
    """Image mode: one per band used; unmixing mode: one per reference endmember (the report's ``matches``)."""


# ---------------------------------------------------------------------------------------------
# Image mode
# ---------------------------------------------------------------------------------------------


def evaluate_images(
    result_path: str | Path,
    reference_path: str | Path,
    *,
    scale: float | None = None,
    data_range: float | None = None,
    warn: Callable[[str], None] = warnings.warn,
) -> Evaluation:
    """PSNR, SSIM, SAM, ERGAS (with ``scale``), RMSE, CC and UIQI of a result cube against a reference cube.

    Both cubes must have the same rows × cols × bands. Values are compared in physical units over
    the pixels that have data in both cubes and the bands flagged bad in neither; undeclared NaN/Inf
    values raise :class:`InvalidDataError`. ``warn`` is called (before any scoring) when both cubes
    have wavelengths that differ: bands are still compared by position. Figures that are infinite
    or undefined are None in ``report["metrics"]``, with a note in ``report["notes"]``. Rows hold
    ``band`` (1-based), ``name``, ``wavelength_nm`` and the per-band psnr, ssim, rmse, cc, uiqi.
    """
    result = read_cube(result_path)
    reference = read_cube(reference_path)
    if result.shape != reference.shape:
        raise ShapeMismatchError(
            f"the result is {_dims(result.shape)} but the reference {reference_path} is {_dims(reference.shape)}",
            result_path,
        )
    bands = np.intersect1d(result.good_band_indices(), reference.good_band_indices())
    if bands.size == 0:
        raise InvalidDataError("every band is flagged bad", reference_path)
    if (
        result.wavelengths is not None
        and reference.wavelengths is not None
        and np.abs(result.wavelengths - reference.wavelengths).max() > WAVELENGTH_TOLERANCE_NM
    ):
        warn(f"{result_path} and {reference_path} have different wavelengths; bands are compared by position")

    result_values, result_nodata = _checked_values(result, bands, result_path)
    reference_values, reference_nodata = _checked_values(reference, bands, reference_path)
    mask = ~result_nodata & ~reference_nodata
    if not mask.any():
        raise InvalidDataError(f"no pixel has data in both the result and the reference {reference_path}", result_path)
    try:
        assessment = assess_quality(result_values, reference_values, scale=scale, data_range=data_range, mask=mask)
    except HsiuuError as exc:
        raise type(exc)(exc.message, result_path) from None

    notes = []
    metrics: dict[str, float | None] = {}
    for key, value in assessment.summary.items():
        if value is not None and not math.isfinite(value):
            notes.append(f"{key}: infinite (some band equals the reference exactly)")
            value = None
        metrics[key] = value
    if scale is None:
        notes.append("ergas: needs --scale")
    if assessment.summary["cc"] is None:
        notes.append("cc: undefined (every band is constant in the result or the reference)")
    report = {
        "mode": "image",
        "result": str(result_path),
        "reference": str(reference_path),
        "rows": result.rows,
        "cols": result.cols,
        "bands": result.bands,
        "bands_used": int(bands.size),
        "valid_pixels": assessment.valid_pixels,
        "excluded_pixels": int(mask.size - assessment.valid_pixels),
        "peak": assessment.peak,
        "scale": scale,
        "metrics": metrics,
        "notes": notes,
    }
    rows = []
    for position, band in enumerate(bands):
        row = {
            "band": int(band) + 1,
            "name": reference.band_names[band] if reference.band_names else "",
            "wavelength_nm": "" if reference.wavelengths is None else f"{reference.wavelengths[band]:.4f}",
        }
        for key, values in assessment.per_band.items():
            row[key] = values[position]
        rows.append(row)
    return Evaluation(report, rows)


def _checked_values(cube: Cube, bands: np.ndarray, path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Physical values of ``bands`` and the no-data pixels; NaN/Inf that are not declared no-data raise.

    Not :meth:`Cube.valid_mask`, which counts every NaN/Inf as no-data: a score must not quietly
    leave out pixels that the header does not declare missing.
    """
    values = cube.physical()[:, :, bands]
    nodata = np.zeros(cube.data.shape[:2], dtype=bool)
    if cube.nodata is not None:
        if math.isnan(cube.nodata):
            nodata |= np.isnan(values).any(axis=2)
        else:
            raw = np.asarray(cube.data)
            nodata |= (raw == np.asarray(cube.nodata).astype(raw.dtype)).all(axis=2)
    broken = ~np.isfinite(values).all(axis=2) & ~nodata
    if broken.any():
        raise InvalidDataError(
            f"{int(broken.sum())} pixels hold NaN/Inf values that are not declared no-data "
            "(set 'data ignore value = nan' if NaN marks missing pixels)",
            path,
        )
    return values, nodata


def _dims(shape) -> str:
    return "×".join(str(n) for n in shape)


# ---------------------------------------------------------------------------------------------
# Unmixing mode
# ---------------------------------------------------------------------------------------------


def evaluate_unmixing(
    endmembers: str | Path | None = None,
    reference_endmembers: str | Path | None = None,
    abundances: str | Path | None = None,
    reference_abundances: str | Path | None = None,
    *,
    warn: Callable[[str], None] = warnings.warn,
) -> Evaluation:
    """Unmixing scores of estimated endmembers (``.sli``/``.csv``) and/or abundance cubes against ground truth.

    Endmembers are paired by the Hungarian algorithm on spectral angle (over the bands both share,
    matched by wavelength when the counts differ), giving SAD per reference endmember and its mean.
    Abundance maps are reordered by that pairing or, without endmembers, paired on their RMSE;
    aRMSE overall and per endmember over the pixels with data in both cubes. An estimate without
    its reference is a :class:`ParameterError`. ``warn`` is called when the two libraries have as
    many bands but different wavelengths (they are then compared by position). ``report["matches"]`` (also the rows) lists, in
    reference order, ``reference``, ``estimated``, ``estimated_index`` (1-based), ``sad_deg``,
    ``abundance_rmse``.
    """
    if (endmembers is None) != (reference_endmembers is None) or (abundances is None) != (reference_abundances is None):
        raise ParameterError("endmembers and abundances each need their reference")
    if endmembers is None and abundances is None:
        raise ParameterError("nothing to evaluate: give endmembers, abundances or both")

    report: dict = {"mode": "unmixing"}
    order = sad = None
    names: list[str] | None = None
    estimated_names: list[str] | None = None
    if endmembers is not None:
        estimated = read_library(endmembers)
        truth = read_library(reference_endmembers)
        est_spectra, ref_spectra = _common_bands(estimated, truth, endmembers, reference_endmembers, warn)
        try:
            order, sad = match_endmembers(est_spectra, ref_spectra)
        except HsiuuError as exc:
            raise type(exc)(f"{exc.message} (reference: {reference_endmembers})", endmembers) from None
        names, estimated_names = truth.names, estimated.names
        report.update(
            endmembers=str(endmembers),
            reference_endmembers=str(reference_endmembers),
            mean_sad_deg=float(sad.mean()),
        )

    per_endmember_rmse = None
    if abundances is not None:
        est_ab, ref_ab, mask, est_ab_names, ref_ab_names = _abundance_pair(abundances, reference_abundances)
        if order is not None:
            if est_ab.shape[2] != len(estimated_names):
                raise ShapeMismatchError(
                    f"{est_ab.shape[2]} abundance bands for {len(estimated_names)} endmembers in {endmembers}",
                    abundances,
                )
            if ref_ab.shape[2] != len(names):
                raise ShapeMismatchError(
                    f"{ref_ab.shape[2]} abundance bands for {len(names)} endmembers in {reference_endmembers}",
                    reference_abundances,
                )
        else:
            if est_ab.shape[2] < ref_ab.shape[2]:
                raise ShapeMismatchError(
                    f"{est_ab.shape[2]} abundance maps cannot be matched with the {ref_ab.shape[2]} of the "
                    f"reference {reference_abundances}",
                    abundances,
                )
            if not mask.any():
                raise InvalidDataError(
                    f"no pixel has data in both abundance cubes (reference: {reference_abundances})", abundances
                )
            order, _ = match_abundances(est_ab, ref_ab, mask=mask)
            names = ref_ab_names
            estimated_names = est_ab_names
        matched = est_ab[:, :, order]
        try:
            report["abundance_rmse"] = abundance_rmse(matched, ref_ab, mask=mask)
        except HsiuuError as exc:
            raise type(exc)(exc.message, abundances) from None
        per_endmember_rmse = [abundance_rmse(matched[:, :, [k]], ref_ab[:, :, [k]], mask=mask) for k in range(len(order))]
        report.update(
            abundances=str(abundances),
            reference_abundances=str(reference_abundances),
            valid_pixels=int(mask.sum()),
        )

    matches = []
    for k, reference_name in enumerate(names):
        entry = {"reference": reference_name, "estimated": estimated_names[order[k]], "estimated_index": int(order[k]) + 1}
        if sad is not None:
            entry["sad_deg"] = float(sad[k])
        if per_endmember_rmse is not None:
            entry["abundance_rmse"] = per_endmember_rmse[k]
        matches.append(entry)
    report["matches"] = matches
    return Evaluation(report, matches)


def _common_bands(
    estimated: SpectralLibrary, truth: SpectralLibrary, est_path: str | Path, ref_path: str | Path, warn
) -> tuple[np.ndarray, np.ndarray]:
    """Both sets of spectra over the bands they share (matched by wavelength when the counts differ)."""
    est_bands, ref_bands = estimated.spectra.shape[1], truth.spectra.shape[1]
    if est_bands == ref_bands:
        if (
            estimated.wavelengths is not None
            and truth.wavelengths is not None
            and np.abs(estimated.wavelengths - truth.wavelengths).max() > WAVELENGTH_TOLERANCE_NM
        ):
            warn(f"{est_path} and {ref_path} have different wavelengths; bands are compared by position")
        return estimated.spectra, truth.spectra
    if estimated.wavelengths is None or truth.wavelengths is None:
        raise ShapeMismatchError(
            f"{est_bands} bands but the reference {ref_path} has {ref_bands}, and without wavelengths in both "
            "they cannot be matched",
            est_path,
        )
    distance = np.abs(truth.wavelengths[:, None] - estimated.wavelengths[None, :])
    nearest = distance.argmin(axis=1)
    shared = distance[np.arange(ref_bands), nearest] <= WAVELENGTH_TOLERANCE_NM
    if shared.sum() < max(2, ref_bands // 2):
        raise ShapeMismatchError(
            f"only {int(shared.sum())} of the {ref_bands} bands of the reference {ref_path} have a band within "
            f"{WAVELENGTH_TOLERANCE_NM:g} nm here",
            est_path,
        )
    return estimated.spectra[:, nearest[shared]], truth.spectra[:, shared]


def _abundance_pair(est_path: str | Path, ref_path: str | Path):
    """Both abundance cubes' values, the pixels with data in both, and both cubes' map names."""
    estimated = read_cube(est_path)
    reference = read_cube(ref_path)
    if estimated.rows != reference.rows or estimated.cols != reference.cols:
        raise ShapeMismatchError(
            f"the abundances are {estimated.rows}×{estimated.cols} pixels but the reference {ref_path} is "
            f"{reference.rows}×{reference.cols}",
            est_path,
        )
    est_values, est_nodata = _checked_values(estimated, np.arange(estimated.bands), est_path)
    ref_values, ref_nodata = _checked_values(reference, np.arange(reference.bands), ref_path)
    mask = ~est_nodata & ~ref_nodata
    est_names = estimated.band_names or [f"endmember {k + 1}" for k in range(estimated.bands)]
    ref_names = reference.band_names or [f"endmember {k + 1}" for k in range(reference.bands)]
    return est_values, ref_values, mask, est_names, ref_names
