"""`hsiuu info CUBE [--json]`: what a cube holds and how it is stored."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from .options import Json


def describe_cube(path: Path) -> dict:
    """The facts ``info`` reports, as a JSON-ready dict."""
    from ..grid import pixel_size
    from ..io import describe_file, read_cube

    storage = describe_file(path)
    cube = read_cube(path, complex_values=True)
    bad = [] if cube.bad_bands is None else [int(i) for i in cube.bad_bands.nonzero()[0]]
    summary: dict = {
        "path": str(path),
        **storage,
        "rows": cube.rows,
        "cols": cube.cols,
        "bands": cube.bands,
        "dtype": cube.data.dtype.newbyteorder("=").name,
        "wavelength_min_nm": None if cube.wavelengths is None else float(cube.wavelengths.min()),
        "wavelength_max_nm": None if cube.wavelengths is None else float(cube.wavelengths.max()),
        "fwhm": cube.fwhm is not None,
        "bbl": cube.bad_bands is not None,
        "good_bands": cube.bands - len(bad),
        "bad_bands": bad,
        "band_names": cube.band_names,
        "nodata": None if cube.nodata is None else ("NaN" if math.isnan(cube.nodata) else cube.nodata),
        "scale_factor": cube.scale_factor,
        "crs": cube.crs,
        "pixel_size": None,
        "rotation_deg": None,
        "transform": None,
        "gcps": _gcp_count(cube.metadata.get("geo points")),
        "rpcs": "rpc info" in cube.metadata,
        "description": cube.description,
        "other_fields": sorted(set(cube.metadata) - {"map info", "coordinate system string", "projection info",
                                                     "geo points", "rpc info"}),
    }
    if cube.transform is not None:
        summary["pixel_size"] = list(pixel_size(cube.transform))
        summary["rotation_deg"] = math.degrees(math.atan2(cube.transform.d, cube.transform.a))
        summary["transform"] = list(cube.transform[:6])
    return summary


def _gcp_count(geo_points: str | None) -> int:
    """Ground control points in an ENVI ``geo points`` list (four numbers each)."""
    from ..io.envi import split_list

    return 0 if geo_points is None else len(split_list(geo_points)) // 4


def describe_library(path: Path) -> dict:
    """What ``info`` reports for a spectral library (one spectrum per row, no pixels)."""
    from ..io import read_library

    library = read_library(path)
    wavelengths = library.wavelengths
    return {
        "path": str(path),
        "format": "CSV spectral library" if path.suffix.lower() == ".csv" else "ENVI Spectral Library",
        "spectra": len(library.names),
        "bands": int(library.spectra.shape[1]),
        "wavelength_min_nm": None if wavelengths is None else float(wavelengths.min()),
        "wavelength_max_nm": None if wavelengths is None else float(wavelengths.max()),
        "names": library.names,
    }


def _library_table(summary: dict):
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(summary["path"]), show_header=False, title_justify="left", box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("format", summary["format"])
    table.add_row("spectra", f"{summary['spectra']} × {summary['bands']} bands")
    if summary["wavelength_min_nm"] is not None:
        table.add_row("wavelengths", f"{summary['wavelength_min_nm']:g}–{summary['wavelength_max_nm']:g} nm")
    names = summary["names"]
    table.add_row("names", Text(", ".join(names[:8]) + (f", … ({len(names)} in all)" if len(names) > 8 else "")))
    return table


def _table(summary: dict):
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(summary["path"]), show_header=False, title_justify="left", box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()

    def row(label: str, value) -> None:
        table.add_row(label, Text("—" if value is None else str(value)))

    row("format", summary["format"] + (f" ({summary['file_type']})" if summary.get("file_type") else ""))
    row("shape", f"{summary['rows']} rows × {summary['cols']} cols × {summary['bands']} bands")
    stored = summary.get("stored_dtype")
    converted = f" (stored {stored}, read as physical values: GDAL band offsets or per-band scales)" if summary.get("read_as_physical") else ""
    row("data type", summary["dtype"] + (" (big-endian)" if summary.get("byte_order") == 1 else "") + converted)
    row("interleave", summary.get("interleave"))
    if summary.get("compression"):
        row("compression", summary["compression"])
    if summary["wavelength_min_nm"] is not None:
        units = summary.get("wavelength_units")
        note = f" (file units: {units})" if units and units.lower() not in ("nanometers", "nm") else ""
        row("wavelengths", f"{summary['wavelength_min_nm']:g}–{summary['wavelength_max_nm']:g} nm{note}")
    else:
        row("wavelengths", None)
    row("FWHM", "yes" if summary["fwhm"] else "no")
    bad = summary["bad_bands"]
    row("good bands", f"{summary['good_bands']} of {summary['bands']}" + (f" (bad: {_ranges(bad)})" if bad else ""))
    row("band names", ", ".join(summary["band_names"][:6]) + (" …" if len(summary["band_names"]) > 6 else "")
        if summary["band_names"] else None)
    row("no-data", summary["nodata"])
    row("scale factor", summary["scale_factor"])
    row("CRS", summary["crs"] if summary["crs"] is None or len(summary["crs"]) < 60 else summary["crs"][:57] + "...")
    if summary["pixel_size"] is not None:
        x, y = summary["pixel_size"]
        rotation = summary["rotation_deg"]
        row("pixel size", f"{x:g} × {y:g}" + (f", rotated {rotation:g}°" if abs(rotation) > 1e-9 else ""))
        row("upper-left corner", f"{summary['transform'][2]:.10g}, {summary['transform'][5]:.10g}")
    elif not (summary["gcps"] or summary["rpcs"]):
        row("georeference", None)
    if summary["gcps"] or summary["rpcs"]:
        by = [f"{summary['gcps']} ground control points"] if summary["gcps"] else []
        row("georeferenced by", ", ".join(by + (["RPCs"] if summary["rpcs"] else [])))
    if summary["description"]:
        row("description", summary["description"].strip())
    if summary["other_fields"]:
        row("other fields", ", ".join(summary["other_fields"]))
    return table


def _ranges(indices: list[int]) -> str:
    """[1, 2, 3, 7] → '1-3, 7'."""
    parts, start = [], None
    for i, value in enumerate(indices):
        if start is None:
            start = value
        if i + 1 == len(indices) or indices[i + 1] != value + 1:
            parts.append(str(start) if start == value else f"{start}-{value}")
            start = None
    return ", ".join(parts)


def info_command(
    cube: Annotated[Path, typer.Argument(help="ENVI (.hdr or data file) or GeoTIFF cube.", show_default=False)],
    json: Json = False,
) -> None:
    """Show a cube's shape, data type, interleave, wavelengths, bad bands, no-data and georeference
    (for a spectral library, .sli or .csv: its spectra, bands and wavelengths).

    The description goes to stdout (so it can be saved or searched); with --json, a
    machine-readable summary instead. Band indices (bad bands) count from 0.

    Examples:
      hsiuu info scene.hdr
      hsiuu info scene.hdr --json > scene.json
    """
    from ..io import is_spectral_library
    from .common import emit_json, emit_table

    library = is_spectral_library(cube)
    summary = describe_library(cube) if library else describe_cube(cube)
    if json:
        emit_json(summary)
    else:
        emit_table(_library_table(summary) if library else _table(summary))
