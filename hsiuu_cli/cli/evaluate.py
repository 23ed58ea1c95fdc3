"""`hsiuu evaluate`: score a result against a reference (image metrics) or estimated endmembers and
abundances against ground truth (unmixing metrics). Exact definitions: docs/evaluate.md.

The scoring is :mod:`hsiuu_cli.evaluation`; this module parses the options and prints the scores
on stdout: a table, or with ``--json`` the figures as JSON (and no table); a CSV with ``--per-band``.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from .options import Json, Overwrite, Scheduler

METRIC_LABELS = {
    "psnr": ("PSNR (dB)", "higher"),
    "ssim": ("SSIM", "higher"),
    "sam": ("SAM (deg)", "lower"),
    "ergas": ("ERGAS", "lower"),
    "rmse": ("RMSE", "lower"),
    "cc": ("CC", "higher"),
    "uiqi": ("UIQI / Q", "higher"),
}


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
    scheduler: Scheduler = None,
) -> None:
    """Score a result against a reference: PSNR, SSIM, SAM, ERGAS (with --scale), RMSE, CC, UIQI.

    No-data pixels of either cube are left out; bands flagged bad are left out. Unmixing mode
    (--endmembers and/or --abundances, each with its --reference- twin): Hungarian matching on spectral angle,
    SAD per endmember and mean, abundance RMSE after the same matching.

    The scores go to stdout: a table, or with --json a JSON document instead.

    Examples:
      hsiuu evaluate scene_x4.hdr --reference truth.hdr --scale 4
      hsiuu evaluate --endmembers out/endmembers.sli \\
          --reference-endmembers truth.sli --json
    """
    if scheduler is not None:  # the whole evaluation as one task on a worker (docs/scale.md)
        from .cluster import run_command_on_cluster

        return run_command_on_cluster(scheduler, evaluate_command)
    from ..evaluation import evaluate_images, evaluate_unmixing
    from ..io import atomic_write, check_not_input, input_files
    from ..io.atomic import check_outputs
    from .common import emit_json, warn

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
        given = (result, reference, endmembers, reference_endmembers, abundances, reference_abundances)
        check_not_input(tuple(f for p in given if p is not None for f in input_files(p)), per_band)

    if unmixing:
        evaluation = evaluate_unmixing(
            endmembers, reference_endmembers, abundances, reference_abundances,
            warn=warn,
        )
    else:
        evaluation = evaluate_images(
            result,
            reference,
            scale=scale,
            data_range=data_range,
            warn=warn,
        )
    if per_band is not None:
        with atomic_write(per_band, overwrite) as temporary:
            temporary.write_text(_csv_text(evaluation.rows), encoding="utf-8")
    if as_json:
        emit_json(evaluation.report)
    elif unmixing:
        _unmixing_table(evaluation.report)
    else:
        _image_table(evaluation.report)


def _image_table(report: dict) -> None:
    from rich.table import Table

    from rich.console import Group
    from rich.text import Text

    from .common import emit_table

    lines = [Text(f"{report['result']} vs {report['reference']}")]
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
    lines.append(table)
    lines.append(Text(
        f"{report['valid_pixels']} pixels compared ({report['excluded_pixels']} no-data left out), "
        f"{report['bands_used']} of {report['bands']} bands, peak {report['peak']:.6g}"
    ))
    lines += [Text(note, style="dim") for note in report["notes"]]
    emit_table(Group(*lines))


def _unmixing_table(report: dict) -> None:
    from rich.table import Table

    from .common import emit_table

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
    emit_table(table)


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
