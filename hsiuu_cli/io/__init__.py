"""Reading and writing cubes and spectral libraries; the one entry point every command uses.

* :func:`read_cube` — ENVI (header or data path; memory-mapped) or GeoTIFF / other GDAL rasters.
* :func:`write_cube` — ENVI or GeoTIFF from the extension or ``format``, atomically.
* :func:`check_output` — refuse an existing output or an unwritable directory before heavy work.
* :func:`atomic_write` — temporary path for any other output (PNG, JSON, CSV), renamed on success.
* :func:`read_library` / :func:`write_library` — ENVI spectral libraries (``.sli``) and CSV.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cube import Cube
from ..errors import CubeFormatError, CubeReadError, CubeWriteError
from . import envi, geotiff
from .atomic import atomic_write, check_outputs, output_set
from .speclib import SpectralLibrary, is_spectral_library, read_library, write_library

GTIFF_SUFFIXES = (".tif", ".tiff")
ENVI_SUFFIXES = (".hdr",) + envi.DATA_SUFFIXES
CUBE_SUFFIXES = ENVI_SUFFIXES + GTIFF_SUFFIXES
FORMAT_EXTENSIONS = {"ENVI": ".hdr", "GTiff": ".tif"}
"""The extension a new output of each format gets."""
_FORMAT_NAMES = {"envi": "ENVI", "gtiff": "GTiff", "geotiff": "GTiff", "tif": "GTiff", "tiff": "GTiff"}
_GTIFF_INTERLEAVE = {"bsq": "BAND", "bip": "PIXEL"}

__all__ = [
    "Cube",
    "SpectralLibrary",
    "atomic_write",
    "check_creation_options",
    "check_not_input",
    "check_output",
    "input_files",
    "describe_file",
    "is_spectral_library",
    "output_files",
    "output_format",
    "output_set",
    "read_cube",
    "read_library",
    "write_cube",
    "write_library",
]


def format_name(format: str) -> str | None:
    """``'ENVI'`` or ``'GTiff'`` for a user's format name (``envi``, ``GeoTIFF``, ``tif``…), None if unknown."""
    return _FORMAT_NAMES.get(format.strip().lower())


def output_format(path: str | Path, format: str | None = None) -> str:
    """``'ENVI'`` or ``'GTiff'`` for an output, from ``format`` or else the extension."""
    path = Path(path)
    if format is not None:
        name = format_name(format)
        if name is None:
            raise CubeWriteError(f"unknown output format '{format}' (use ENVI or GTiff)", path)
        return name
    suffix = path.suffix.lower()
    if suffix in GTIFF_SUFFIXES:
        return "GTiff"
    if suffix in ENVI_SUFFIXES or suffix == "":
        return "ENVI"
    raise CubeWriteError(
        f"cannot tell the output format from the extension '{path.suffix}' "
        "(use .hdr/.img for ENVI, .tif for GeoTIFF, or --format)",
        path,
    )


def output_files(path: str | Path, format: str | None = None) -> list[Path]:
    """Every file an output consists of (ENVI: data file and header), the one named first."""
    path = Path(path)
    if output_format(path, format) == "ENVI":
        return [path] + [p for p in envi.output_paths(path) if p != path]
    return [path]


def check_output(path: str | Path, overwrite: bool, *, format: str | None = None) -> None:
    """Raise OutputExistsError / CubeWriteError now rather than after the work is done."""
    check_outputs(output_files(path, format), overwrite)


def input_files(path: str | Path) -> tuple[Path, ...]:
    """The files (resolved) a cube is read from, without reading its pixels: an ENVI header and its
    data file, else the file itself (what :func:`read_cube` records as ``Cube.source_files``)."""
    path = Path(path)
    pair = _tiff_with_header(path) if path.is_file() else None
    if pair is not None:
        return (pair[0].resolve(), pair[1].resolve())
    if path.is_file() and _is_envi(path):
        layout = envi.open_layout(path)
        return (layout.header.resolve(), layout.data.resolve())
    return (path.resolve(),)


def check_not_input(sources: Cube | tuple[Path, ...], path: str | Path, format: str | None = None) -> None:
    """CubeWriteError if writing ``path`` (a cube, or any other file such as a CSV) would replace a
    file of the input (a Cube, or the files of :func:`input_files`), even with --overwrite: the input
    may be memory-mapped, and inputs are never modified."""
    path = Path(path)
    sources = sources.source_files if isinstance(sources, Cube) else sources
    is_cube = format is not None or path.suffix.lower() in CUBE_SUFFIXES + ("",)
    overlap = {p.resolve() for p in (output_files(path, format) if is_cube else [path])} & set(sources)
    if overlap:
        raise CubeWriteError(f"output is the input (or one of its files: {sorted(overlap)[0].name}); write elsewhere", path)


def check_creation_options(
    path: str | Path, format: str | None = None, creation_options: dict[str, str] | None = None, *,
    dtype: str | np.dtype = "float32", bands: int = 1,
) -> dict[str, str]:
    """The creation options upper-cased, or CubeWriteError for one the output's format does not
    take (ENVI: BYTE_ORDER=0|1 only; GeoTIFF: whatever GDAL's GTiff driver accepts for an output
    of this data type and band count)."""
    path = Path(path)
    options = {k.upper(): str(v) for k, v in (creation_options or {}).items()}
    if output_format(path, format) == "ENVI":
        others = [k for k in options if k != "BYTE_ORDER"]
        if others:
            raise CubeWriteError(f"creation option {', '.join(others)} does not apply to ENVI (only BYTE_ORDER=0|1)", path)
        if options.get("BYTE_ORDER", "0") not in ("0", "1"):
            raise CubeWriteError(f"BYTE_ORDER must be 0 or 1, got {options['BYTE_ORDER']}", path)
    elif options:
        geotiff.check_creation_options(options, path, dtype=np.dtype(dtype).name, bands=bands)
    return options


def read_cube(path: str | Path, *, complex_values: bool = False) -> Cube:
    """An ENVI cube (``.hdr`` or data file; memory-mapped, read-only) or a GeoTIFF.

    Complex pixels (SAR, interferograms) are refused with a one-line reason unless
    ``complex_values`` is True (``info`` and ``convert`` read them; the methods work on real values).
    """
    path = _existing_file(path)
    pair = _tiff_with_header(path)
    if pair is not None:
        cube = _tiff_with_its_header(*pair)
    elif _is_envi(path):
        cube = envi.read_envi(path)
    else:
        cube = _as_gdal_raster(path, geotiff.read_geotiff).replace(source_files=(path.resolve(),))
    if cube.data.dtype.kind == "c" and not complex_values:
        raise CubeFormatError(
            f"holds complex values ({cube.data.dtype.name}), which hsiuu's methods do not process "
            "(info and convert read them)", path)
    return cube


def _existing_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise CubeReadError("file not found", path)
    if path.is_dir():
        raise CubeReadError("is a directory, not a cube", path)
    return path


def _as_gdal_raster(path: Path, read):
    """``read(path)`` through GDAL; a data file that is no GDAL raster either is told to lack its ENVI header."""
    try:
        return read(path)
    except CubeReadError:
        if path.suffix.lower() in envi.DATA_SUFFIXES or not path.suffix:
            raise CubeReadError(
                f"no ENVI header found beside the data file (looked for {path.with_suffix('.hdr').name} "
                f"and {path.name}.hdr), and it is no raster GDAL reads either", path) from None
        raise


def _tiff_with_header(path: Path) -> tuple[Path, Path, dict[str, str]] | None:
    """(GeoTIFF, ENVI header, its fields) when ``path`` is either file of a TIFF whose band metadata
    ENVI keeps in a ``file type = TIFF`` header beside it (GDAL's ``gtiff/byte_envi.hdr``)."""
    if path.suffix.lower() in GTIFF_SUFFIXES:
        tiff, header = path, envi.header_for(path)
    elif path.suffix.lower() == ".hdr":
        header = path
        tiff = next((path.with_suffix(s) for s in (".tif", ".tiff", ".TIF", ".TIFF") if path.with_suffix(s).is_file()), None)
    else:
        return None
    if tiff is None or header is None or not envi.is_header(header):
        return None
    fields = envi.read_header(header)
    if envi.unbrace(fields.get("file type", "")).strip().upper() != "TIFF":
        return None
    return tiff, header, fields


def _tiff_with_its_header(tiff: Path, header: Path, fields: dict[str, str]) -> Cube:
    """The GeoTIFF's pixels and georeferencing, with the header's spectral fields where it has them."""
    cube = geotiff.read_geotiff(tiff)
    described = envi.cube_fields(fields, cube.bands, header)
    changes = {key: described[key] for key in ("wavelengths", "fwhm", "bad_bands", "band_names", "nodata",
                                               "scale_factor", "description") if described[key] is not None}
    if cube.transform is None and described["transform"] is not None:
        changes.update(crs=described["crs"], transform=described["transform"])
    return cube.replace(**changes, metadata=cube.metadata | described["metadata"],
                        source_files=(tiff.resolve(), header.resolve()))


def _is_envi(path: Path) -> bool:
    suffix = path.suffix.lower()
    if suffix == ".hdr" or envi.is_header(path):
        return True
    if suffix in GTIFF_SUFFIXES:
        return False
    return envi.header_for(path) is not None


def write_cube(
    cube: Cube,
    path: str | Path,
    *,
    format: str | None = None,
    overwrite: bool = False,
    creation_options: dict[str, str] | None = None,
    interleave: str = "bsq",
    dtype: str | np.dtype | None = None,
) -> Path:
    """Write ``cube`` atomically as ENVI or GeoTIFF (from ``format`` or the extension); returns ``path``.

    ``interleave`` is bsq/bil/bip for ENVI, bsq (band) or bip (pixel) for GeoTIFF. ``dtype`` casts
    on the way out (float → integer rounds; values that do not fit are refused). ENVI takes one
    creation option, ``BYTE_ORDER=0|1``; GeoTIFF takes any GDAL GTiff creation option.
    """
    path = Path(path)
    kind = output_format(path, format)
    check_not_input(cube, path, kind)
    interleave = interleave.lower()
    if kind == "ENVI":
        byte_order = check_creation_options(path, kind, creation_options).get("BYTE_ORDER", "0")
        return envi.write_envi(
            cube, path, overwrite=overwrite, interleave=interleave, dtype=dtype, byte_order=int(byte_order)
        )
    if interleave not in _GTIFF_INTERLEAVE:
        raise CubeWriteError(f"GeoTIFF cannot be written with interleave '{interleave}' (use bsq or bip)", path)
    options = {k.upper(): str(v) for k, v in (creation_options or {}).items()}
    options.setdefault("INTERLEAVE", _GTIFF_INTERLEAVE[interleave])
    return geotiff.write_geotiff(cube, path, overwrite=overwrite, creation_options=options, dtype=dtype)


def open_envi_windows(
    cube: Cube,
    path: str | Path,
    *,
    overwrite: bool = False,
    creation_options: dict[str, str] | None = None,
    interleave: str = "bsq",
    dtype: str | np.dtype | None = None,
):
    """:func:`hsiuu_cli.io.envi.envi_windows` with the checks of :func:`write_cube`: an ENVI output
    allocated whole, whose pixels other processes write window by window (a cluster's workers)."""
    path = Path(path)
    check_not_input(cube, path, "ENVI")
    byte_order = check_creation_options(path, "ENVI", creation_options).get("BYTE_ORDER", "0")
    return envi.envi_windows(
        cube, path, overwrite=overwrite, interleave=interleave.lower(), dtype=dtype, byte_order=int(byte_order)
    )


def describe_file(path: str | Path) -> dict:
    """How a cube is stored (format, files, interleave, byte order…) — what ``info`` shows besides the Cube."""
    path = _existing_file(path)
    pair = _tiff_with_header(path)
    if pair is not None:
        return geotiff.describe_geotiff(pair[0]) | {"header": str(pair[1])}
    if _is_envi(path):
        layout = envi.open_layout(path)
        return {
            "format": "ENVI",
            "header": str(layout.header),
            "data_file": str(layout.data),
            "interleave": layout.interleave,
            "byte_order": layout.byte_order,
            "header_offset": layout.offset,
            "file_type": envi.unbrace(layout.fields.get("file type", "ENVI Standard")),
            "wavelength_units": envi.unbrace(layout.fields["wavelength units"]) if "wavelength units" in layout.fields else None,
            "compression": "gzip" if layout.compressed else None,
        }
    return _as_gdal_raster(path, geotiff.describe_geotiff)
