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
from ..errors import CubeReadError, CubeWriteError
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
    "check_output",
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


def read_cube(path: str | Path) -> Cube:
    """An ENVI cube (``.hdr`` or data file; memory-mapped, read-only) or a GeoTIFF."""
    path = Path(path)
    if not path.exists():
        raise CubeReadError("file not found", path)
    if path.is_dir():
        raise CubeReadError("is a directory, not a cube", path)
    if _is_envi(path):
        return envi.read_envi(path)
    try:
        return geotiff.read_geotiff(path).replace(source_files=(path.resolve(),))
    except CubeReadError as exc:
        if path.suffix.lower() in envi.DATA_SUFFIXES or not path.suffix:
            raise CubeReadError(
                f"no ENVI header found beside the data file (looked for {path.with_suffix('.hdr').name}), "
                "and GDAL cannot read it either", path) from None
        raise exc


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
    kind = _checked_output(cube, path, format)
    options = {k.upper(): str(v) for k, v in (creation_options or {}).items()}
    interleave = interleave.lower()
    if kind == "ENVI":
        return envi.write_envi(
            cube, path, overwrite=overwrite, interleave=interleave, dtype=dtype, byte_order=_envi_byte_order(options, path)
        )
    if interleave not in _GTIFF_INTERLEAVE:
        raise CubeWriteError(f"GeoTIFF cannot be written with interleave '{interleave}' (use bsq or bip)", path)
    options.setdefault("INTERLEAVE", _GTIFF_INTERLEAVE[interleave])
    return geotiff.write_geotiff(cube, path, overwrite=overwrite, creation_options=options, dtype=dtype)


def _checked_output(cube: Cube, path: Path, format: str | None) -> str:
    """The output's format, after making sure it is not one of the cube's own input files."""
    kind = output_format(path, format)
    overlap = {p.resolve() for p in output_files(path, kind)} & set(cube.source_files)
    if overlap:
        # the input may be memory-mapped: writing over it would corrupt what is being read
        raise CubeWriteError(f"output is the input (or one of its files: {sorted(overlap)[0].name}); write elsewhere", path)
    return kind


def _envi_byte_order(options: dict[str, str], path: Path) -> int:
    """ENVI's one creation option, ``BYTE_ORDER=0|1`` (others are refused)."""
    options = dict(options)
    byte_order = options.pop("BYTE_ORDER", "0")
    if options:
        raise CubeWriteError(f"creation option {', '.join(options)} does not apply to ENVI (only BYTE_ORDER=0|1)", path)
    if byte_order not in ("0", "1"):
        raise CubeWriteError(f"BYTE_ORDER must be 0 or 1, got {byte_order}", path)
    return int(byte_order)


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
    _checked_output(cube, path, "ENVI")
    options = {k.upper(): str(v) for k, v in (creation_options or {}).items()}
    return envi.envi_windows(
        cube, path, overwrite=overwrite, interleave=interleave.lower(), dtype=dtype, byte_order=_envi_byte_order(options, path)
    )


def describe_file(path: str | Path) -> dict:
    """How a cube is stored (format, files, interleave, byte order…) — what ``info`` shows besides the Cube."""
    path = Path(path)
    if not path.exists():
        raise CubeReadError("file not found", path)
    if path.is_dir():
        raise CubeReadError("is a directory, not a cube", path)
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
        }
    return geotiff.describe_geotiff(path)
