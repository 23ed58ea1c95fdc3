"""`hsiuu convert IN OUT`: ENVI ↔ GeoTIFF, interleave and data-type changes, band subsets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .options import OUTPUT_DTYPES, CreationOptions, Format, Overwrite

INTERLEAVES = ("bsq", "bil", "bip")


def convert_command(
    source: Annotated[Path, typer.Argument(metavar="IN", help="Input cube (ENVI .hdr/data file or GeoTIFF).", show_default=False)],
    target: Annotated[Path, typer.Argument(metavar="OUT", help="Output cube; format from the extension unless --format.", show_default=False)],
    format: Format = None,
    co: CreationOptions = None,
    bands: Annotated[
        Optional[str],
        typer.Option(
            "--bands",
            help="Keep only these bands: indices from 0 with inclusive ranges (0-9,20), "
            "wavelength ranges (400:700nm, 1.0:1.3um, open ends :700nm) or nearest band (550nm).",
        ),
    ] = None,
    drop_bad_bands: Annotated[bool, typer.Option("--drop-bad-bands", help="Leave out bands flagged bad (ENVI bbl = 0).")] = False,
    interleave: Annotated[
        Optional[str],
        typer.Option("--interleave", metavar="bsq|bil|bip", help="bsq, bil or bip (GeoTIFF: bsq or bip). Default: the input's, else bsq."),
    ] = None,
    dtype: Annotated[
        Optional[str],
        typer.Option("--dtype", metavar="TYPE", help=f"Output data type: {', '.join(OUTPUT_DTYPES)}. Float → integer rounds; values must fit."),
    ] = None,
    nodata: Annotated[
        Optional[str],
        typer.Option("--nodata", metavar="X", help="Mark pixels holding X in every band as no data "
                     "(a number or nan), or 'none' to drop the input's no-data value."),
    ] = None,
    overwrite: Overwrite = False,
) -> None:
    """Convert a cube between ENVI and GeoTIFF keeping wavelengths, FWHM, bad bands, no-data,
    scale factor, band names and georeference; optionally subset bands or change interleave/type.

    Prints the output path on stdout.

    Examples:
      hsiuu convert scene.hdr scene.tif --co COMPRESS=DEFLATE
      hsiuu convert scene.hdr vnir.hdr --bands 400:1000nm --drop-bad-bands
    """
    from ..errors import ParameterError
    from ..io import check_output, describe_file, output_format, read_cube, write_cube
    from ..io.bands import parse_band_selection, select_bands
    from .common import detail, emit, info, output_folder, parse_creation_options

    if interleave is not None and interleave.lower() not in INTERLEAVES:
        raise typer.BadParameter(f"'{interleave}' is not one of {', '.join(INTERLEAVES)}", param_hint="--interleave")
    if dtype is not None and dtype.lower() not in OUTPUT_DTYPES:
        raise typer.BadParameter(f"'{dtype}' is not one of {', '.join(OUTPUT_DTYPES)}", param_hint="--dtype")
    options = parse_creation_options(co)
    new_nodata = _parse_nodata(nodata)

    cube = read_cube(source, complex_values=True)
    kind = output_format(target, format)
    output_folder(target.parent)
    check_output(target, overwrite, format=kind)

    if interleave is None:
        stored = describe_file(source).get("interleave")
        interleave = stored if stored in INTERLEAVES and (kind == "ENVI" or stored != "bil") else "bsq"

    indices = list(range(cube.bands))
    if bands is not None:
        try:
            indices = parse_band_selection(bands, cube)
        except ParameterError as exc:
            raise ParameterError(exc.message, source) from None
        _refuse_repeats(bands, cube)
    if drop_bad_bands:
        keep = set(cube.good_band_indices().tolist())
        indices = [i for i in indices if i in keep]
        if not indices:
            raise ParameterError("every selected band is flagged bad", source)
    if len(indices) != cube.bands or indices != sorted(indices):
        detail(f"keeping {len(indices)} of {cube.bands} bands")
        cube = select_bands(cube, indices)

    if nodata is not None:
        cube = cube.replace(nodata=new_nodata)
    written = write_cube(
        cube,
        target,
        format=kind,
        overwrite=overwrite,
        creation_options=options,
        interleave=interleave.lower(),
        dtype=dtype.lower() if dtype else None,
    )
    info(f"wrote {written} ({kind}, {cube.rows}×{cube.cols}×{cube.bands}, {interleave.lower()})")
    emit(str(written))


def _refuse_repeats(selection: str, cube) -> None:
    """A usage error naming the first band two items of ``--bands`` both select: the cube would
    otherwise get that band once, quietly fewer bands than asked for."""
    from ..io.bands import parse_band_selection

    selected_by: dict[int, str] = {}
    for item in (part.strip() for part in selection.split(",")):
        if not item:
            continue
        for index in parse_band_selection(item, cube):
            if index in selected_by:
                raise typer.BadParameter(
                    f"band {index} is selected twice (by '{selected_by[index]}' and by '{item}'); list each band once",
                    param_hint="--bands",
                )
            selected_by[index] = item


def _parse_nodata(text: str | None) -> float | None:
    """--nodata: a number, nan, or none (no no-data value)."""
    if text is None or text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise typer.BadParameter(f"'{text}' is not a number, nan or none", param_hint="--nodata") from None
