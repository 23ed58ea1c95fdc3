"""Spectral libraries (endmember sets): ENVI ``.sli`` + ``.hdr`` and CSV ``wavelength_nm,<name>,...``.

An ENVI spectral library stores one spectrum per line: ``samples`` = number of bands,
``lines`` = number of spectra, ``bands`` = 1, names in ``spectra names``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CubeFormatError, CubeReadError, CubeWriteError, ShapeMismatchError
from . import envi
from .atomic import atomic_files

LIBRARY_FILE_TYPE = "ENVI Spectral Library"


@dataclass
class SpectralLibrary:
    """``n`` spectra over ``B`` bands with their names and (optionally) wavelengths in nm."""

    spectra: np.ndarray
    names: list[str]
    wavelengths: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.spectra = np.atleast_2d(np.asarray(self.spectra))
        if self.spectra.ndim != 2:
            raise ShapeMismatchError(f"spectra must be n × bands, got shape {self.spectra.shape}")
        if len(self.names) != self.spectra.shape[0]:
            raise ShapeMismatchError(f"{len(self.names)} names for {self.spectra.shape[0]} spectra")
        self.names = [str(n) for n in self.names]
        if self.wavelengths is not None:
            self.wavelengths = np.asarray(self.wavelengths, dtype=np.float64).reshape(-1)
            if self.wavelengths.size != self.spectra.shape[1]:
                raise ShapeMismatchError(f"{self.wavelengths.size} wavelengths for {self.spectra.shape[1]} bands")


def is_spectral_library(path: str | Path) -> bool:
    """Whether ``path`` (a CSV, or an ENVI data file or header) holds a spectral library rather than a cube."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return True
    header = path if (path.suffix.lower() == ".hdr" or envi.is_header(path)) else envi.header_for(path)
    if header is None:
        return False
    try:
        file_type = envi.unbrace(envi.read_header(header).get("file type", ""))
    except CubeReadError:
        return False
    return file_type.strip().lower() == LIBRARY_FILE_TYPE.lower()


def read_library(path: str | Path) -> SpectralLibrary:
    """An ENVI spectral library (``.sli`` or its ``.hdr``) or a CSV ``wavelength_nm,<name>,...``."""
    path = Path(path)
    if not path.exists():
        raise CubeReadError("file not found", path)
    if path.suffix.lower() == ".csv":
        return _read_csv(path)
    return _read_sli(path)


def _read_sli(path: Path) -> SpectralLibrary:
    if path.suffix.lower() == ".hdr" or envi.is_header(path):
        header = path
        fields = envi.read_header(header)
        layout = envi.layout_from_header(header, fields, envi.data_file_for(header, (".sli",) + envi.DATA_SUFFIXES))
    else:
        header = envi.header_for(path)
        if header is None:
            raise CubeReadError("no ENVI header found beside the spectral library (looked for .hdr)", path)
        layout = envi.layout_from_header(header, envi.read_header(header), data=path)
    if layout.bands != 1:
        raise CubeFormatError(
            f"not a spectral library: {layout.bands} bands (a library has bands = 1, one spectrum per line)", header
        )
    spectra = np.array(envi.memmap_data(layout)[:, :, 0], dtype=layout.dtype.newbyteorder("="))
    fields = layout.fields
    if "spectra names" in fields:
        names = envi.split_list(fields["spectra names"])
        if len(names) != layout.rows:
            raise CubeFormatError(f"header lists {len(names)} spectra names for {layout.rows} spectra", header)
    else:
        names = [f"spectrum {i + 1}" for i in range(layout.rows)]
    wavelengths = None
    if "wavelength" in fields:
        values = envi.float_list(fields["wavelength"], "wavelength", header)
        if values.size != layout.cols:
            raise CubeFormatError(f"header lists {values.size} wavelengths for {layout.cols} bands", header)
        scale = envi.wavelength_scale(fields, values)
        wavelengths = None if scale is None else values * scale
    return SpectralLibrary(spectra=spectra, names=names, wavelengths=wavelengths)


def _read_csv(path: Path) -> SpectralLibrary:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CubeReadError(f"cannot read ({exc.strerror})", path) from None
    except UnicodeDecodeError:
        raise CubeFormatError("not a text CSV file", path) from None
    rows = [row for row in csv.reader(io.StringIO(text)) if row and any(cell.strip() for cell in row)]
    if len(rows) < 2 or len(rows[0]) < 2:
        raise CubeFormatError("expected a header 'wavelength_nm,<name>,...' and one row per band", path)
    first, names = rows[0][0].strip().lower(), [name.strip() for name in rows[0][1:]]
    try:
        table = np.array([[float(cell) for cell in row] for row in rows[1:]], dtype=np.float64)
    except ValueError:
        raise CubeFormatError("a value in the table is not a number", path) from None
    if table.ndim != 2 or table.shape[1] != len(names) + 1:
        raise CubeFormatError(f"every row needs {len(names) + 1} values (band column + {len(names)} spectra)", path)
    if first in ("wavelength_nm", "wavelength", "nm"):
        wavelengths = table[:, 0]
    elif first in ("wavelength_um", "um", "µm"):
        wavelengths = table[:, 0] * 1000.0
    elif first in ("band", "index"):
        wavelengths = None
    else:
        raise CubeFormatError(f"first column must be 'wavelength_nm' (or 'band'), got '{rows[0][0]}'", path)
    return SpectralLibrary(spectra=table[:, 1:].T.copy(), names=names, wavelengths=wavelengths)


def write_library(lib: SpectralLibrary, path: str | Path, *, overwrite: bool = False) -> list[Path]:
    """``.sli`` → ``.sli`` + ``.hdr``; ``.csv`` → CSV. Atomic; returns the files written."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with atomic_files([path], overwrite) as (temporary,):
            temporary.write_text(_csv_text(lib), encoding="utf-8")
        return [path]
    if suffix in (".sli", ".hdr"):
        data_path, header_path = path.with_suffix(".sli"), path.with_suffix(".hdr")
        dtype = lib.spectra.dtype if lib.spectra.dtype in (np.float32, np.float64) else np.dtype(np.float32)
        fields = {
            "samples": str(lib.spectra.shape[1]),
            "lines": str(lib.spectra.shape[0]),
            "bands": "1",
            "header offset": "0",
            "file type": LIBRARY_FILE_TYPE,
            "data type": str(envi.DTYPE_CODES[np.dtype(dtype)]),
            "interleave": "bsq",
            "byte order": "0",
            "spectra names": envi.format_list(envi.brace_safe(n).replace(",", ";") for n in lib.names),
        }
        if lib.wavelengths is not None:
            fields["wavelength units"] = "Nanometers"
            fields["wavelength"] = envi.format_list(envi.format_number(v) for v in lib.wavelengths)
        with atomic_files([data_path, header_path], overwrite) as (data_tmp, header_tmp):
            np.ascontiguousarray(lib.spectra, dtype=np.dtype(dtype).newbyteorder("<")).tofile(data_tmp)
            header_tmp.write_text(envi.header_text(fields), encoding="utf-8")
        return [data_path, header_path]
    raise CubeWriteError(f"spectral libraries are written as .sli or .csv, not '{path.suffix}'", path)


def _csv_text(lib: SpectralLibrary) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["wavelength_nm" if lib.wavelengths is not None else "band", *lib.names])
    for band in range(lib.spectra.shape[1]):
        first = envi.format_number(lib.wavelengths[band]) if lib.wavelengths is not None else str(band + 1)
        writer.writerow([first, *(repr(float(v)) for v in lib.spectra[:, band])])
    return out.getvalue()
