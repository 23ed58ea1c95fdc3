"""`hsiuu evaluate`: score a result against a reference (image metrics) or estimated endmembers and
abundances against ground truth (unmixing metrics). Exact definitions: docs/evaluate.md.

A table goes to stderr; ``--json`` prints the figures on stdout; ``--per-band`` writes a CSV.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from .options import Json, Overwrite

METRIC_LABELS = {
    "psnr": ("PSNR (dB)", "higher"),
    "ssim": ("SSIM", "higher"),
    "sam": ("SAM (deg)", "lower"),
    "ergas": ("ERGAS", "lower"),
    "rmse": ("RMSE", "lower"),
    "cc": ("CC", "higher"),
    "uiqi": ("UIQI / Q", "higher"),
}
WAVELENGTH_TOLERANCE_NM = 1.0


def evaluate_command(
    result: Annotated[
        Optional[Path],
        typer.Argument(metavar="RESULT", help="Result cube to score (image mode).", show_default=False),
    ] = None,
    reference: Annotated[
        Optional[Path], typer.Option("--reference", "-r", help="Reference (ground-truth) cube on the same grid.")
    ] = None,
    scale: Annotated[
        Optional[float],
        typer.Option("--scale", help="Resolution ratio of the problem (e.g. 4); needed for ERGAS."),
    ] = None,
    data_range: Annotated[
        Optional[float],
        typer.Option(
            "--data-range", help="Peak value L for PSNR and SSIM.", show_default="the reference's maximum"
        ),
    ] = None,
    endmembers: Annotated[
        Optional[Path], typer.Option("--endmembers", help="Estimated endmembers, .sli or .csv (unmixing mode).")
    ] = None,
    reference_endmembers: Annotated[
        Optional[Path], typer.Option("--reference-endmembers", help="Ground-truth endmembers, .sli or .csv.")
    ] = None,
    abundances: Annotated[
        Optional[Path], typer.Option("--abundances", help="Estimated abundance cube (one band per endmember).")
    ] = None,
    reference_abundances: Annotated[
        Optional[Path], typer.Option("--reference-abundances", help="Ground-truth abundance cube.")
    ] = None,
    as_json: Json = False,
    per_band: Annotated[
        Optional[Path],
        typer.Option("--per-band", help="Write per-band figures (unmixing mode: per endmember) to this CSV."),
    ] = None,
    overwrite: Overwrite = False,
) -> None:
    """Score a result against a reference: PSNR, SSIM, SAM, ERGAS (with --scale), RMSE, CC, UIQI.

    No-data pixels of either cube are left out; bands flagged bad are left out. Unmixing mode
    (--endmembers/--abundances with their --reference-…): Hungarian matching on spectral angle,
    SAD per endmember and mean, abundance RMSE after the same matching.
    """
    from ..io import atomic_write
    from ..io.atomic import check_outputs
    from .common import emit_json

    unmixing = any(p is not None for p in (endmembers, reference_endmembers, abundances, reference_abundances))
    if unmixing and (result is not None or reference is not None):
        raise typer.BadParameter("give RESULT --reference, or the unmixing options, not both")
    if not unmixing:
        if result is None:
            raise typer.BadParameter("give RESULT --reference REF, or --endmembers/--abundances for unmixing")
        if reference is None:
            raise typer.BadParameter("needs --reference REF", param_hint="--reference")
    else:
        if (endmembers is None) != (reference_endmembers is None):
            raise typer.BadParameter("--endmembers and --reference-endmembers go together")
        if (abundances is None) != (reference_abundances is None):
            raise typer.BadParameter("--abundances and --reference-abundances go together")
        if scale is not None or data_range is not None:
            raise typer.BadParameter("--scale and --data-range apply to image mode")
    for value, hint in ((scale, "--scale"), (data_range, "--data-range")):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise typer.BadParameter(f"must be a positive number, got {value}", param_hint=hint)
    if per_band is not None:
        check_outputs([per_band], overwrite)

    if unmixing:
        report, rows = evaluate_unmixing(endmembers, reference_endmembers, abundances, reference_abundances)
        _unmixing_table(report)
    else:
        report, rows = evaluate_images(result, reference, scale=scale, data_range=data_range)
        _image_table(report)
    if per_band is not None:
        with atomic_write(per_band, overwrite) as temporary:
            temporary.write_text(_csv_text(rows), encoding="utf-8")
    if as_json:
        emit_json(report)


# ---------------------------------------------------------------------------------------------
# Image mode
# ---------------------------------------------------------------------------------------------


def evaluate_images(
    result_path: Path, reference_path: Path, *, scale: float | None = None, data_range: float | None = None
) -> tuple[dict, list[dict]]:
    """The JSON report and per-band CSV rows for a result cube against a reference cube."""
    from ..errors import HsiuuError, InvalidDataError, ShapeMismatchError
    from ..io import read_cube
    from ..metrics import assess_quality
    from .common import info

    result = read_cube(result_path)
    reference = read_cube(reference_path)
    if result.shape != reference.shape:
        raise ShapeMismatchError(
            f"the result is {_dims(result.shape)} but the reference {reference_path} is {_dims(reference.shape)}",
            result_path,
        )
    bad = np.zeros(reference.bands, dtype=bool)
    for cube in (result, reference):
        if cube.bad_bands is not None:
            bad |= cube.bad_bands
    bands = np.flatnonzero(~bad)
    if bands.size == 0:
        raise InvalidDataError("every band is flagged bad", reference_path)
    if (
        result.wavelengths is not None
        and reference.wavelengths is not None
        and np.abs(result.wavelengths - reference.wavelengths).max() > WAVELENGTH_TOLERANCE_NM
    ):
        info(f"[yellow]warning:[/yellow] {result_path} and {reference_path} have different wavelengths; bands are compared by position")

    result_values, result_nodata = _values(result, bands, result_path)
    reference_values, reference_nodata = _values(reference, bands, reference_path)
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
    return report, rows


def _values(cube, bands: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Physical values of ``bands`` and the no-data pixels; NaN/Inf that are not declared no-data raise."""
    from ..errors import InvalidDataError

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


def _image_table(report: dict) -> None:
    from rich.table import Table

    from .common import console, settings

    if settings.quiet:
        return
    console.print(f"{report['result']} vs {report['reference']}", soft_wrap=True, markup=False)
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("better")
    for key, value in report["metrics"].items():
        label, better = METRIC_LABELS[key]
        if value is None:
            text = "inf" if any(n.startswith(f"{key}: infinite") for n in report["notes"]) else "—"
        else:
            text = f"{value:.4f}"
        table.add_row(label, text, better)
    console.print(table)
    console.print(
        f"{report['valid_pixels']} pixels compared ({report['excluded_pixels']} no-data left out), "
        f"{report['bands_used']} of {report['bands']} bands, peak {report['peak']:.6g}"
    )
    for note in report["notes"]:
        console.print(f"[dim]{note}[/dim]")


# ---------------------------------------------------------------------------------------------
# Unmixing mode
# ---------------------------------------------------------------------------------------------


def evaluate_unmixing(
    endmembers: Path | None,
    reference_endmembers: Path | None,
    abundances: Path | None,
    reference_abundances: Path | None,
) -> tuple[dict, list[dict]]:
    """The JSON report and per-endmember CSV rows of an unmixing result against ground truth."""
    from ..errors import HsiuuError, ShapeMismatchError
    from ..io import read_library
    from ..metrics import abundance_rmse, match_endmembers

    report: dict = {"mode": "unmixing"}
    order = sad = None
    names: list[str] | None = None
    estimated_names: list[str] | None = None
    if endmembers is not None:
        estimated = read_library(endmembers)
        truth = read_library(reference_endmembers)
        est_spectra, ref_spectra = _common_bands(estimated, truth, endmembers, reference_endmembers)
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
            order = _match_abundances(est_ab, ref_ab, mask, abundances, reference_abundances)
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
    return report, matches


def _common_bands(estimated, truth, est_path: Path, ref_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Both sets of spectra over the bands they share (matched by wavelength when the counts differ)."""
    from ..errors import ShapeMismatchError

    est_bands, ref_bands = estimated.spectra.shape[1], truth.spectra.shape[1]
    if est_bands == ref_bands:
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


def _abundance_pair(est_path: Path, ref_path: Path):
    from ..errors import ShapeMismatchError
    from ..io import read_cube

    estimated = read_cube(est_path)
    reference = read_cube(ref_path)
    if estimated.rows != reference.rows or estimated.cols != reference.cols:
        raise ShapeMismatchError(
            f"the abundances are {estimated.rows}×{estimated.cols} pixels but the reference {ref_path} is "
            f"{reference.rows}×{reference.cols}",
            est_path,
        )
    everything_est = np.arange(estimated.bands)
    everything_ref = np.arange(reference.bands)
    est_values, est_nodata = _values(estimated, everything_est, est_path)
    ref_values, ref_nodata = _values(reference, everything_ref, ref_path)
    mask = ~est_nodata & ~ref_nodata
    est_names = estimated.band_names or [f"endmember {k + 1}" for k in range(estimated.bands)]
    ref_names = reference.band_names or [f"endmember {k + 1}" for k in range(reference.bands)]
    return est_values, ref_values, mask, est_names, ref_names


def _match_abundances(est_ab, ref_ab, mask, est_path: Path, ref_path: Path) -> np.ndarray:
    """Without endmembers, pair abundance maps by the Hungarian algorithm on their RMSE."""
    from scipy.optimize import linear_sum_assignment

    from ..errors import InvalidDataError, ShapeMismatchError

    if est_ab.shape[2] < ref_ab.shape[2]:
        raise ShapeMismatchError(
            f"{est_ab.shape[2]} abundance maps cannot be matched with the {ref_ab.shape[2]} of the reference {ref_path}",
            est_path,
        )
    if not mask.any():
        raise InvalidDataError(f"no pixel has data in both abundance cubes (reference: {ref_path})", est_path)
    est, ref = est_ab[mask], ref_ab[mask]
    cost = np.sqrt(((ref[:, :, None] - est[:, None, :]) ** 2).mean(axis=0))
    _, order = linear_sum_assignment(cost)
    return order


def _unmixing_table(report: dict) -> None:
    from rich.table import Table

    from .common import console, settings

    if settings.quiet:
        return
    table = Table(title="unmixing scores (Hungarian matching)", title_justify="left")
    table.add_column("reference")
    table.add_column("matched estimate")
    has_sad = "mean_sad_deg" in report
    has_rmse = "abundance_rmse" in report
    if has_sad:
        table.add_column("SAD (deg)", justify="right")
    if has_rmse:
        table.add_column("abundance RMSE", justify="right")
    for match in report["matches"]:
        cells = [match["reference"], f"{match['estimated']} (#{match['estimated_index']})"]
        if has_sad:
            cells.append(f"{match['sad_deg']:.3f}")
        if has_rmse:
            cells.append(f"{match['abundance_rmse']:.4f}")
        table.add_row(*cells)
    footer = ["mean / overall", ""]
    if has_sad:
        footer.append(f"{report['mean_sad_deg']:.3f}")
    if has_rmse:
        footer.append(f"{report['abundance_rmse']:.4f}")
    table.add_row(*footer, style="bold")
    console.print(table)


def _csv_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _csv_cell(value) for key, value in row.items()})
    return buffer.getvalue()


def _csv_cell(value) -> str:
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return ""
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{float(value):.6g}"
    return str(value)
