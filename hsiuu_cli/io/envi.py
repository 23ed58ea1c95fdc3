"""ENVI raster files: our own ``.hdr`` reader and writer, memory-mapped data.

GDAL's ENVI driver does not read or write the pixels and spectral fields: its ``.aux.xml``
side-cars override a header on read and its writer drops wavelengths unless they go to the ENVI
metadata domain. Reading and writing the header ourselves keeps every field exact, and
``numpy.memmap`` gives windowed access to cubes larger than RAM. What a header's georeferencing
fields mean (``map info`` without a datum, ``projection info``, State Plane zones…) is GDAL's
reading of them (:func:`gdal_crs`), so a cube has the CRS every GDAL-based tool sees.
"""

from __future__ import annotations

import functools
import gzip
import logging
import math
import os
import re
import uuid
import warnings
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from affine import Affine

from ..cube import CALIBRATION_KEYS, Cube
from ..errors import CubeFormatError, CubeReadError, CubeWriteError
from .atomic import atomic_files
from .blocks import cast_block, check_nodata, output_dtype, row_blocks
from .gdal import gdal_warnings

DATA_SUFFIXES = (".img", ".dat", ".bsq", ".bil", ".bip", ".raw")
"""Data-file extensions looked for beside a header (then the header's name without extension)."""

ENVI_DTYPES = {
    1: np.uint8,
    2: np.int16,
    3: np.int32,
    4: np.float32,
    5: np.float64,
    12: np.uint16,
    13: np.uint32,
    14: np.int64,
    15: np.uint64,
    6: np.complex64,
    9: np.complex128,
}
DTYPE_CODES = {np.dtype(v): k for k, v in ENVI_DTYPES.items()}

MIN_DATA_BYTES = 2
"""GDAL does not open a data file shorter than this (a 1 × 1 × 1 byte image); its writer pads it."""

logger = logging.getLogger(__name__)

STRUCTURAL_KEYS = ("samples", "lines", "bands", "header offset", "file type", "data type", "interleave", "byte order",
                   "file compression")
"""Fields that describe the file layout; a writer sets them from the data, never from metadata."""

CUBE_KEYS = (
    "description",
    "wavelength",
    "wavelength units",
    "fwhm",
    "bbl",
    "band names",
    "data ignore value",
    "reflectance scale factor",
)
"""Fields that become Cube attributes (map info and coordinate system string also stay in metadata)."""

PER_BAND_KEYS = ("wavelength", "fwhm", "solar irradiance") + CALIBRATION_KEYS
"""Metadata lists with one value per band (``wavelength`` and ``fwhm`` are metadata when their units
are not a length); cut with the bands, dropped on write when the band count no longer matches."""

_UNIT_TO_NM = {
    "nanometers": 1.0,
    "nanometer": 1.0,
    "nm": 1.0,
    "micrometers": 1000.0,
    "micrometer": 1000.0,
    "microns": 1000.0,
    "micron": 1000.0,
    "um": 1000.0,
    "µm": 1000.0,
    "μm": 1000.0,
    "millimeters": 1.0e6,
    "mm": 1.0e6,
    "meters": 1.0e9,
}

_KEY_RE = re.compile(r"\s+")


# ---------------------------------------------------------------------------------------------
# Header text
# ---------------------------------------------------------------------------------------------


def parse_header_text(text: str, path: Path) -> dict[str, str]:
    """ENVI header text → {normalised key: raw value text}, keeping the file's order.

    Values in braces may span lines; the braces are kept so a value can be written back as read.
    """
    text = text.lstrip("\ufeff")
    lines = text.splitlines()
    if not lines or lines[0].strip() != "ENVI":
        raise CubeFormatError("not an ENVI header (the first line is not 'ENVI')", path)
    fields: dict[str, str] = {}
    index = 1
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise CubeFormatError(f"unparsable header line {index}: {line.strip()[:60]!r}", path)
        value = value.strip()
        if value.startswith("{"):
            while value.count("{") > value.count("}"):
                if index >= len(lines):
                    raise CubeFormatError(f"unclosed '{{' in header field '{key.strip()}'", path)
                value += "\n" + lines[index]
                index += 1
        fields[_KEY_RE.sub(" ", key.strip().lower())] = value
    return fields


def read_header(path: Path) -> dict[str, str]:
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise CubeReadError("file not found", path) from None
    except OSError as exc:
        raise CubeReadError(f"cannot read header ({exc.strerror})", path) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    if "\x00" in text[:4096]:
        raise CubeFormatError("not an ENVI header (binary content)", path)
    return parse_header_text(text, Path(path))


def unbrace(value: str) -> str:
    value = value.strip()
    if value.startswith("{") and value.endswith("}"):
        value = value[1:-1]
    return value.strip()


def split_list(value: str) -> list[str]:
    """``{ a , b , c }`` → ``['a', 'b', 'c']``."""
    inner = unbrace(value)
    if not inner:
        return []
    return [item.strip() for item in inner.split(",")]


def parse_float(text: str) -> float:
    text = text.strip()
    if text.lower() in ("nan", "-nan", "+nan"):
        return math.nan
    return float(text)


def float_list(value: str, key: str, path: Path) -> np.ndarray:
    try:
        return np.array([parse_float(v) for v in split_list(value)], dtype=np.float64)
    except ValueError:
        raise CubeFormatError(f"header field '{key}' holds a value that is not a number", path) from None


def format_number(value: float) -> str:
    """Shortest text that reads back as the same float64 (no trailing '.0' noise for integers)."""
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def format_list(values) -> str:
    return "{ " + " , ".join(values) + " }"


def brace_safe(text: str) -> str:
    """Free text that cannot end or open a braced value early: braces become parentheses."""
    return text.replace("{", "(").replace("}", ")")


def header_text(fields: dict[str, str]) -> str:
    return "ENVI\n" + "".join(f"{key} = {value}\n" for key, value in fields.items())


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def is_header(path: Path) -> bool:
    """True when ``path`` starts with the ENVI magic word."""
    try:
        with open(path, "rb") as handle:
            return handle.read(8).lstrip(b"\xef\xbb\xbf").startswith(b"ENVI")
    except OSError:
        return False


def header_for(path: Path) -> Path | None:
    """The header of a data file: ``scene.hdr`` or ``scene.img.hdr``."""
    for candidate in (path.with_suffix(".hdr"), path.with_name(path.name + ".hdr")):
        if candidate != path and candidate.is_file():
            return candidate
    return None


def data_file_for(header: Path, suffixes=DATA_SUFFIXES) -> Path:
    """The data file beside a header: same stem with a known extension, or none."""
    stem = header.with_suffix("")
    candidates = []
    for suffix in suffixes:
        candidates += [stem.with_name(stem.name + suffix), stem.with_name(stem.name + suffix.upper())]
    candidates.append(stem)
    for candidate in candidates:
        if candidate != header and candidate.is_file():
            return candidate
    tried = ", ".join([stem.name + suffix for suffix in suffixes] + [stem.name])
    raise CubeReadError(f"no data file found beside the header (looked for {tried})", header)


def output_paths(path: Path) -> tuple[Path, Path]:
    """(data file, header) for an ENVI output given as ``x.hdr``, ``x.img`` (etc.) or ``x``."""
    path = Path(path)
    if path.suffix.lower() == ".hdr":
        return path.with_suffix(".img"), path
    if path.suffix.lower() in DATA_SUFFIXES:
        return path, path.with_suffix(".hdr")
    return path, path.with_name(path.name + ".hdr") if path.suffix else path.with_suffix(".hdr")


@dataclass
class EnviLayout:
    """Where and how the pixels of an ENVI file are stored."""

    header: Path
    data: Path
    rows: int
    cols: int
    bands: int
    dtype: np.dtype
    interleave: str
    byte_order: int
    offset: int
    fields: dict[str, str]
    compressed: bool = False
    """``file compression = 1``: the data file is gzip-compressed (header offset counted after decompression)."""

    @property
    def file_shape(self) -> tuple[int, int, int]:
        return self.stored_shape(self.rows, self.cols, self.bands, self.interleave)

    @staticmethod
    def stored_shape(rows: int, cols: int, bands: int, interleave: str) -> tuple[int, int, int]:
        """The array a data file of this interleave stores (:data:`_ROWS_COLS_BANDS` turns it back)."""
        return {"bsq": (bands, rows, cols), "bil": (rows, bands, cols), "bip": (rows, cols, bands)}[interleave]


def _int_field(fields: dict[str, str], key: str, path: Path, default: int | None = None) -> int:
    if key not in fields:
        if default is not None:
            return default
        raise CubeFormatError(f"header lacks the required field '{key}'", path)
    try:
        value = int(unbrace(fields[key]))
    except ValueError:
        raise CubeFormatError(f"header field '{key}' is not an integer: {fields[key]!r}", path) from None
    return value


def layout_from_header(header: Path, fields: dict[str, str], data: Path | None = None) -> EnviLayout:
    rows = _int_field(fields, "lines", header)
    cols = _int_field(fields, "samples", header)
    bands = _int_field(fields, "bands", header)
    for name, value in (("lines", rows), ("samples", cols), ("bands", bands)):
        if value <= 0:
            raise CubeFormatError(f"header field '{name}' must be positive, got {value}", header)
    code = _int_field(fields, "data type", header)
    if code not in ENVI_DTYPES:
        raise CubeFormatError(f"unknown ENVI data type {code}", header)
    byte_order = _int_field(fields, "byte order", header, default=0)
    if byte_order not in (0, 1):
        raise CubeFormatError(f"byte order must be 0 or 1, got {byte_order}", header)
    interleave = unbrace(fields.get("interleave", "bsq")).lower()
    if interleave not in ("bsq", "bil", "bip"):
        raise CubeFormatError(f"unknown interleave '{interleave}' (expected bsq, bil or bip)", header)
    offset = _int_field(fields, "header offset", header, default=0)
    if offset < 0:
        raise CubeFormatError(f"header offset must not be negative, got {offset}", header)
    compression = _int_field(fields, "file compression", header, default=0)
    if compression not in (0, 1):
        raise CubeFormatError(f"file compression must be 0 or 1 (gzip), got {compression}", header)
    dtype = np.dtype(ENVI_DTYPES[code]).newbyteorder("<" if byte_order == 0 else ">")
    return EnviLayout(
        header=header,
        data=data if data is not None else data_file_for(header),
        rows=rows,
        cols=cols,
        bands=bands,
        dtype=dtype,
        interleave=interleave,
        byte_order=byte_order,
        offset=offset,
        fields=fields,
        compressed=compression == 1,
    )


def open_layout(path: Path) -> EnviLayout:
    """Header and data file of an ENVI raster given either path."""
    path = Path(path)
    if not path.exists():
        raise CubeReadError("file not found", path)
    if path.suffix.lower() == ".hdr" or is_header(path):
        return layout_from_header(path, read_header(path))
    header = header_for(path)
    if header is None:
        raise CubeReadError("no ENVI header found beside the data file (looked for .hdr)", path)
    return layout_from_header(header, read_header(header), data=path)


def memmap_data(layout: EnviLayout) -> np.ndarray:
    """A read-only rows × cols × bands view of the data file, checked against the header.

    A data file longer than the header needs is read as GDAL and SPy read it, its extra bytes
    ignored (GDAL's own writer pads a one-byte image to two); a shorter one is refused. A gzip-compressed
    file (``file compression = 1``) is decompressed into memory.
    """
    expected = layout.rows * layout.cols * layout.bands * layout.dtype.itemsize
    if layout.compressed:
        raw_bytes = _decompressed(layout.data)
        size = len(raw_bytes)
    else:
        try:
            size = layout.data.stat().st_size
        except OSError as exc:
            raise CubeReadError(f"cannot read data file ({exc.strerror})", layout.data) from None
    dims = f"{layout.cols} samples × {layout.rows} lines × {layout.bands} bands of {layout.dtype.name}"
    stored = "decompressed data" if layout.compressed else "data file"
    if size < layout.offset + expected:
        if size == 0:
            raise CubeReadError(f"{stored} is empty", layout.data)
        problem = "is truncated" if size > layout.offset else "is smaller than the header offset"
        raise CubeReadError(
            f"{stored} {problem}: the header ({dims}, offset {layout.offset}) needs "
            f"{layout.offset + expected} bytes, the file has {size}",
            layout.data,
        )
    if size > layout.offset + expected:
        extra = size - layout.offset - expected
        # a few bytes of padding are common (GDAL's writer adds one); a whole band's worth more
        # suggests a header that undercounts samples, lines or bands, which the user should see
        whole_band = extra >= layout.rows * layout.cols * layout.dtype.itemsize
        logger.log(
            logging.WARNING if whole_band else logging.INFO,
            "%s: %s has %d byte%s more than the header (%s at offset %d) needs; ignored, as GDAL and SPy do%s",
            layout.data, stored, extra, "" if extra == 1 else "s", dims, layout.offset,
            f" (check samples, lines, bands and data type in {layout.header.name})" if whole_band else "",
        )
    if layout.compressed:
        raw = np.frombuffer(raw_bytes, dtype=layout.dtype, count=expected // layout.dtype.itemsize, offset=layout.offset)
        raw = raw.reshape(layout.file_shape)
        return raw.transpose(_ROWS_COLS_BANDS[layout.interleave])
    return remap(layout)


def remap(layout: EnviLayout) -> np.ndarray:
    """A new read-only rows × cols × bands map of an uncompressed data file that
    :func:`memmap_data` has checked. The pages a map has read count as the process's resident
    memory until the map goes (every view of it dropped): a reader of a large scene a block at a
    time maps it afresh for each block to hold no more than the block."""
    try:
        raw = np.memmap(layout.data, dtype=layout.dtype, mode="r", offset=layout.offset, shape=layout.file_shape)
    except (OSError, ValueError) as exc:
        raise CubeReadError(f"cannot map data file ({exc})", layout.data) from None
    return raw.transpose(_ROWS_COLS_BANDS[layout.interleave])


_ROWS_COLS_BANDS = {"bsq": (1, 2, 0), "bil": (0, 2, 1), "bip": (0, 1, 2)}
"""The axes of a data file's array (as stored) that make it rows × cols × bands."""


def _decompressed(path: Path) -> bytes:
    try:
        with gzip.open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise CubeReadError("file not found", path) from None
    except (OSError, EOFError, zlib.error) as exc:
        raise CubeReadError(f"the header says file compression = 1 but the data file is not valid gzip ({exc})", path) from None


# ---------------------------------------------------------------------------------------------
# Map info ↔ CRS and affine transform
# ---------------------------------------------------------------------------------------------


def crs_string(crs) -> str | None:
    """A rasterio CRS as ``Cube.crs``: ``EPSG:n`` when it is that code (same definition, whatever its
    name: GDAL names a UTM zone read from ENVI ``map info`` "unnamed"), else WKT; None for none or
    a local (engineering) CS, which is how GDAL names a projection it does not know."""
    from rasterio.crs import CRS

    if crs is None:
        return None
    wkt = crs.to_wkt()
    if not wkt or wkt.startswith(("LOCAL_CS", "ENGCRS", "ENGINEERINGCRS")):
        return None
    epsg = crs.to_epsg(confidence_threshold=100) or crs.to_epsg(confidence_threshold=25)
    if epsg and (crs.to_epsg(confidence_threshold=100) == epsg or CRS.from_epsg(epsg) == crs):
        return f"EPSG:{epsg}"
    return wkt


_GDAL_HEADER = (
    "ENVI\nsamples = 1\nlines = 1\nbands = 1\nheader offset = 0\nfile type = ENVI Standard\n"
    "data type = 1\ninterleave = bsq\nbyte order = 0\n"
)


@functools.lru_cache(maxsize=256)
def gdal_crs(map_info: str, css: str | None = None, projection_info: str | None = None) -> str | None:
    """The CRS GDAL's ENVI driver reads from these header fields (None when it finds none).

    GDAL's reading is the reference every GDAL-based tool shares — a ``coordinate system string``
    first, then ``UTM`` zones (NAD27 when no datum is named), ``Geographic Lat/Lon`` (WGS84 when no
    datum), State Plane zones, the ``projection info`` codes, ``units=`` — so rather than re-implement
    it, a one-pixel header with the same fields is opened with GDAL itself, in GDAL's memory file
    system (about 3 ms, once per distinct text). GDAL's warnings (an unknown datum taken as WGS84)
    are passed on.
    """
    import rasterio
    from rasterio.errors import RasterioError
    from rasterio.io import MemoryFile

    text = _GDAL_HEADER + f"map info = {map_info}\n"
    if css:
        text += f"coordinate system string = {css}\n"
    if projection_info:
        text += f"projection info = {projection_info}\n"
    folder = f"hsiuu-crs-{uuid.uuid4().hex}"  # in GDAL's memory file system: nothing touches the disk
    try:
        with rasterio.Env(GDAL_PAM_ENABLED="NO"), warnings.catch_warnings(), gdal_warnings() as messages, \
                MemoryFile(text.encode("utf-8"), dirname=folder, filename="crs.hdr"), \
                MemoryFile(bytes(MIN_DATA_BYTES), dirname=folder, filename="crs.img") as data:
            warnings.simplefilter("ignore")
            with data.open() as src:
                crs = src.crs
    except RasterioError:
        return None
    for message in messages:
        logger.warning("GDAL reading map info %s: %s", unbrace(map_info)[:40], message)
    return crs_string(crs)


def parse_map_info(
    map_info: str, css: str | None, path: Path, projection_info: str | None = None
) -> tuple[str | None, Affine]:
    """ENVI ``map info`` (+ ``coordinate system string``, ``projection info``) → (CRS, pixel-corner Affine).

    The CRS is GDAL's reading (:func:`gdal_crs`). The reference pixel is 1-based with (1, 1) the
    upper-left corner of the first pixel; the rotation is counter-clockwise in degrees, the
    convention GDAL's ENVI driver uses.
    """
    items = split_list(map_info)
    if len(items) < 7:
        raise CubeFormatError(f"map info has {len(items)} fields, at least 7 are needed", path)
    options = {}
    for item in items[7:]:
        key, sep, value = item.partition("=")
        if sep:
            options[key.strip().lower()] = value.strip()
    try:
        ref_x, ref_y, easting, northing, size_x, size_y = (float(v) for v in items[1:7])
        rotation = float(options.get("rotation", 0.0))
    except ValueError:
        raise CubeFormatError(f"map info holds a value that is not a number: {unbrace(map_info)[:80]!r}", path) from None
    theta = math.radians(rotation)
    cos, sin = math.cos(theta), math.sin(theta)
    # Column step = size_x · (cos, sin); row step = size_y · (sin, −cos): north-up when rotation is 0.
    a, d = size_x * cos, size_x * sin
    b, e = size_y * sin, -size_y * cos
    c = easting - (ref_x - 1) * a - (ref_y - 1) * b
    f = northing - (ref_x - 1) * d - (ref_y - 1) * e
    return gdal_crs(map_info.strip(), css.strip() if css else None, projection_info.strip() if projection_info else None), Affine(a, b, c, d, e, f)


def _decompose(transform: Affine, path: Path) -> tuple[float, float, float]:
    """Affine → (size_x, size_y, rotation degrees) or CubeWriteError when map info cannot express it."""
    a, b, _, d, e, _ = transform[:6]
    size_x, size_y = math.hypot(a, d), math.hypot(b, e)
    if size_x == 0 or size_y == 0:
        raise CubeWriteError("the geotransform has a zero pixel size", path)
    theta = math.atan2(d, a)
    if abs(math.remainder(math.atan2(b, -e) - theta, math.tau)) > 1e-9 or not math.isclose(
        a * b + d * e, 0.0, abs_tol=1e-9 * size_x * size_y
    ):
        raise CubeWriteError(
            "the geotransform is sheared or flipped, which ENVI map info cannot express; write a GeoTIFF instead",
            path,
        )
    return size_x, size_y, math.degrees(theta)


def _tidy(value: float) -> str:
    """Pixel sizes and angles recovered through sin/cos/hypot, without last-digit noise."""
    return format_number(float(f"{value:.12g}"))


def _grid_items(transform: Affine, path: Path) -> tuple[list[str], list[str]]:
    """Map info items for a transform: (reference pixel (1, 1), its corner and the pixel sizes;
    the rotation option, or nothing for a north-up grid)."""
    size_x, size_y, rotation = _decompose(transform, path)
    grid = ["1", "1", format_number(transform.c), format_number(transform.f), _tidy(size_x), _tidy(size_y)]
    return grid, [f"rotation={_tidy(rotation)}"] if abs(rotation) > 1e-10 else []


# ENVI datum names GDAL's ENVI writer gives a geographic CRS (by EPSG code), and the UTM series
# (first EPSG code of zone 1 → hemisphere, datum); a CRS outside them gets no datum item.
_ENVI_DATUMS = {
    4326: "WGS-84",
    4322: "WGS-72",
    4269: "North America 1983",
    4267: "North America 1927",
    4230: "European 1950",
    4277: "Ordnance Survey of Great Britain '36",
    4291: "SAD-69/Brazil",
    4283: "Geocentric Datum of Australia 1994",
    4275: "Nouvelle Triangulation Francaise IGN",
}
_UTM_SERIES = {
    32601: ("North", "WGS-84"),
    32701: ("South", "WGS-84"),
    32201: ("North", "WGS-72"),
    32301: ("South", "WGS-72"),
    26901: ("North", "North America 1983"),
    26701: ("North", "North America 1927"),
    25801: ("North", None),
    23001: ("North", "European 1950"),
}


def _utm(epsg: int | None) -> tuple[int, str, str | None] | None:
    """(zone, hemisphere, ENVI datum name or None) for an EPSG UTM code, else None."""
    for first, (hemisphere, datum) in _UTM_SERIES.items():
        if epsg is not None and first <= epsg < first + 60:
            return epsg - first + 1, hemisphere, datum
    return None


def format_map_info(crs: str | None, transform: Affine, path: Path) -> tuple[str, str | None]:
    """(CRS, Affine) → (``map info`` value, ``coordinate system string`` value or None), as GDAL's
    ENVI writer spells them: ``UTM`` with zone, hemisphere and datum, ``Geographic Lat/Lon`` with
    datum, otherwise the CRS's name; no ``units=`` item (GDAL's reader would re-apply it to the
    coordinate system string, which loses the EPSG code of a geographic CRS and turns US survey
    feet into international feet); always a coordinate system string (ESRI WKT), which GDAL and
    ENVI read first."""
    grid, rotation = _grid_items(transform, path)
    if crs is None:
        return format_list(["Arbitrary", *grid, *rotation]), None
    from rasterio.crs import CRS
    from rasterio.enums import WktVersion

    parsed = CRS.from_user_input(crs)
    esri_wkt = parsed.to_wkt(version=WktVersion.WKT1_ESRI)
    epsg = parsed.to_epsg(confidence_threshold=100)
    utm = _utm(epsg)
    if utm is not None:
        zone, hemisphere, datum = utm
        items = ["UTM", *grid, str(zone), hemisphere, *([datum] if datum else [])]
    elif parsed.is_geographic:
        items = ["Geographic Lat/Lon", *grid, *([_ENVI_DATUMS[epsg]] if epsg in _ENVI_DATUMS else [])]
    else:
        match = re.match(r'\s*(?:PROJCS|GEOGCS)\["([^"]+)"', esri_wkt)
        items = [match.group(1).replace(",", " ") if match else "Arbitrary", *grid]
    return format_list([*items, *rotation]), "{" + esri_wkt + "}"


def regridded_map_info(map_info: str, transform: Affine, path: Path) -> str:
    """``map info`` moved to a new grid: its projection name, zone, datum, units and other options
    kept, the reference pixel, corner, pixel sizes and rotation those of ``transform``."""
    items = split_list(map_info)
    grid, rotation = _grid_items(transform, path)
    options = [item for item in items[7:] if item.partition("=")[0].strip().lower() != "rotation"]
    return format_list([items[0], *grid, *options, *rotation])


def same_crs(left: str | None, right: str | None) -> bool:
    if left is None or right is None:
        return left is None and right is None
    if left == right:
        return True
    from rasterio.crs import CRS

    try:
        return CRS.from_user_input(left) == CRS.from_user_input(right)
    except Exception:  # noqa: BLE001 - an unparsable CRS equals nothing
        return False


def same_transform(left: Affine, right: Affine) -> bool:
    scale = max(abs(v) for v in (left.a, left.b, left.d, left.e, 1e-30))
    return all(math.isclose(x, y, rel_tol=0, abs_tol=1e-9 * scale) for x, y in zip(left[:6], right[:6]))


GEOREFERENCE_KEYS = ("map info", "coordinate system string", "projection info")
"""The header fields that say where a cube lies; the writer sets them from the cube's CRS and transform."""


def georeference_fields(cube: Cube, path: Path) -> dict[str, str]:
    """``map info`` / ``coordinate system string`` / ``projection info`` for a cube.

    While the cube keeps the CRS its original fields describe, they are written back (on a new grid
    only the reference pixel, corner, pixel sizes and rotation of ``map info`` change, and a
    coordinate system string is added where there was none), so a header's own way of naming its
    projection — zone, datum, units, a State Plane zone — survives; otherwise they are written
    afresh from the CRS (:func:`format_map_info`).
    """
    if cube.transform is None:
        return {}
    original = cube.metadata.get("map info")
    if original:
        css = cube.metadata.get("coordinate system string")
        projection = cube.metadata.get("projection info")
        try:
            crs, transform = parse_map_info(original, css, path, projection)
        except CubeFormatError:
            crs, transform = None, None
        if transform is not None and same_crs(crs, cube.crs):
            if not same_transform(transform, cube.transform):
                original = regridded_map_info(original, cube.transform, path)
                # a new grid is a new file: its CRS is spelt out for readers other than GDAL too
                css = css or (format_map_info(crs, cube.transform, path)[1] if crs else None)
            kept = {"map info": original, "coordinate system string": css, "projection info": projection}
            return {key: value for key, value in kept.items() if value}
    map_info, css = format_map_info(cube.crs, cube.transform, path)
    return {"map info": map_info} | ({"coordinate system string": css} if css else {})


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def wavelength_scale(fields: dict[str, str], wavelengths: np.ndarray | None) -> float | None:
    """Factor to nanometres from ``wavelength units``; None when the units are not a length."""
    units = unbrace(fields.get("wavelength units", "")).strip().lower()
    if not units:
        # Unlabelled values below 30 can only be micrometres for an imaging spectrometer.
        if wavelengths is not None and wavelengths.size and np.nanmax(wavelengths) < 30:
            return 1000.0
        return 1.0
    return _UNIT_TO_NM.get(units)


def cube_fields(fields: dict[str, str], bands: int, path: Path) -> dict:
    """Header fields → keyword arguments of Cube (everything except the data)."""

    def per_band(key: str) -> np.ndarray | None:
        if key not in fields:
            return None
        values = float_list(fields[key], key, path)
        if values.size != bands:
            raise CubeFormatError(f"header lists {values.size} values in '{key}' for {bands} bands", path)
        return values

    metadata = {k: v for k, v in fields.items() if k not in STRUCTURAL_KEYS and k not in CUBE_KEYS}
    wavelengths = per_band("wavelength")
    fwhm = per_band("fwhm")
    scale = wavelength_scale(fields, wavelengths)
    if scale is None:
        # Band indices, wavenumbers and the like are not nanometres: carry them through untouched.
        for key in ("wavelength", "wavelength units", "fwhm"):
            if key in fields:
                metadata[key] = fields[key]
        wavelengths = fwhm = None
    else:
        wavelengths = None if wavelengths is None else wavelengths * scale
        fwhm = None if fwhm is None else fwhm * scale

    bbl = per_band("bbl")
    names = None
    if "band names" in fields:
        names = split_list(fields["band names"])
        if len(names) != bands:
            raise CubeFormatError(f"header lists {len(names)} band names for {bands} bands", path)

    def scalar(key: str) -> float | None:
        if key not in fields:
            return None
        values = float_list(fields[key], key, path)
        if values.size != 1:
            raise CubeFormatError(f"header field '{key}' must hold one number", path)
        return float(values[0])

    scale_factor = scalar("reflectance scale factor")
    crs = transform = None
    if "map info" in fields:
        crs, transform = parse_map_info(
            fields["map info"], fields.get("coordinate system string"), path, fields.get("projection info")
        )
    description = unbrace(fields["description"]) if "description" in fields else None
    return dict(
        wavelengths=wavelengths,
        fwhm=fwhm,
        bad_bands=None if bbl is None else bbl == 0,
        nodata=scalar("data ignore value"),
        scale_factor=scale_factor if scale_factor not in (None, 0.0) else None,
        band_names=names,
        crs=crs,
        transform=transform,
        description=description,
        metadata=metadata,
    )


def read_envi(path: str | Path) -> Cube:
    """An ENVI cube (header or data path) with its pixels memory-mapped read-only."""
    layout = open_layout(Path(path))
    data = memmap_data(layout)
    sources = (layout.header.resolve(), layout.data.resolve())
    return Cube(data=data, **cube_fields(layout.fields, layout.bands, layout.header), source_files=sources)


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def header_fields(cube: Cube, dtype: np.dtype, interleave: str, byte_order: int, path: Path, file_type: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    if cube.description:
        fields["description"] = "{\n  " + brace_safe(cube.description) + "}"
    fields.update(
        {
            "samples": str(cube.cols),
            "lines": str(cube.rows),
            "bands": str(cube.bands),
            "header offset": "0",
            "file type": file_type,
            "data type": str(DTYPE_CODES[dtype]),
            "interleave": interleave,
            "byte order": str(byte_order),
        }
    )
    fields.update(georeference_fields(cube, path))
    if cube.wavelengths is not None:
        fields["wavelength units"] = "Nanometers"
        fields["wavelength"] = format_list(format_number(v) for v in cube.wavelengths)
    if cube.fwhm is not None:
        fields["fwhm"] = format_list(format_number(v) for v in cube.fwhm)
    if cube.bad_bands is not None:
        fields["bbl"] = format_list("0" if bad else "1" for bad in cube.bad_bands)
    if cube.band_names is not None:
        fields["band names"] = format_list(brace_safe(name).replace(",", ";") for name in cube.band_names)
    if cube.nodata is not None:
        fields["data ignore value"] = format_number(cube.nodata)
    if cube.scale_factor is not None:
        fields["reflectance scale factor"] = format_number(cube.scale_factor)
    for key, value in cube.metadata.items():
        if key in fields or key in STRUCTURAL_KEYS or key in GEOREFERENCE_KEYS:
            continue
        if key in ("wavelength", "wavelength units", "fwhm") and cube.wavelengths is not None:
            continue
        if key in PER_BAND_KEYS and len(split_list(value)) != cube.bands:
            continue
        if key == "default bands" and not _default_bands_fit(value, cube.bands):
            continue
        fields[key] = value
    return fields


def _default_bands_fit(value: str, bands: int) -> bool:
    try:
        return all(1 <= int(float(v)) <= bands for v in split_list(value))
    except ValueError:
        return False


def write_envi(
    cube: Cube,
    path: str | Path,
    *,
    overwrite: bool = False,
    interleave: str = "bsq",
    dtype: str | np.dtype | None = None,
    byte_order: int = 0,
    file_type: str = "ENVI Standard",
) -> Path:
    """Write ``cube`` as an ENVI data file + header, atomically; returns ``path``."""
    path = Path(path)
    data_path, header_path, fields, stored, interleave = _planned_output(cube, path, interleave, dtype, byte_order, file_type)
    # The file the user named is checked (and reported) first.
    targets = sorted([data_path, header_path], key=lambda p: p != path)
    with atomic_files(targets, overwrite) as temporaries:
        data_tmp, header_tmp = (temporaries if targets[0] == data_path else temporaries[::-1])
        try:
            _write_pixels(cube.data, data_tmp, stored, interleave, path)
            header_tmp.write_text(header_text(fields), encoding="utf-8")
        except OSError as exc:
            raise CubeWriteError(f"cannot write output ({exc.strerror or exc})", path) from None
    return path


def _planned_output(
    cube: Cube, path: Path, interleave: str, dtype, byte_order: int, file_type: str
) -> tuple[Path, Path, dict[str, str], np.ndarray, str]:
    """(data path, header path, header fields, stored dtype, interleave) of an ENVI output, checked."""
    interleave = interleave.lower()
    if interleave not in ("bsq", "bil", "bip"):
        raise CubeWriteError(f"unknown interleave '{interleave}' (use bsq, bil or bip)", path)
    if byte_order not in (0, 1):
        raise CubeWriteError(f"byte order must be 0 or 1, got {byte_order}", path)
    target = output_dtype(cube.data.dtype, dtype, path)
    if target not in DTYPE_CODES:
        raise CubeWriteError(f"data type {target} has no ENVI code", path)
    check_nodata(cube.nodata, target, path)
    data_path, header_path = output_paths(path)
    fields = header_fields(cube, target, interleave, byte_order, header_path, file_type)
    return data_path, header_path, fields, target.newbyteorder("<" if byte_order == 0 else ">"), interleave


@dataclass(frozen=True)
class EnviWindows:
    """A pre-allocated ENVI data file that takes its pixels a window at a time, written at computed
    offsets by any process that sees the file (the workers of a cluster on a shared file system).

    It holds only the path and the layout, so it pickles; each :meth:`write` opens the file
    without creating it, so a write after the run gave up (and removed the file) fails instead
    of leaving a stray file behind.
    """

    data: Path
    shape: tuple[int, int, int]
    dtype: np.dtype
    """The stored type, byte order included."""
    interleave: str
    output: Path
    """The output's name as users know it, for error messages."""

    def write(self, row: int, col: int, values: np.ndarray) -> None:
        """Store ``values`` (h × w × bands) with its top-left pixel at (``row``, ``col``)."""
        rows, cols, bands = self.shape
        height, width = values.shape[:2]
        if values.ndim != 3 or values.shape[2] != bands or row < 0 or col < 0 or row + height > rows or col + width > cols:
            raise CubeWriteError(f"window {values.shape} at ({row}, {col}) does not fit the {rows}×{cols}×{bands} output", self.output)
        values = cast_block(np.asarray(values), self.dtype.newbyteorder("="), self.output).astype(self.dtype, copy=False)
        item = self.dtype.itemsize
        try:
            descriptor = os.open(self.data, os.O_WRONLY)
        except OSError as exc:
            raise CubeWriteError(f"cannot write output ({exc.strerror})", self.output) from None
        try:
            whole_rows = width == cols
            if self.interleave == "bip":
                if whole_rows:
                    _write_at(descriptor, values, row * cols * bands * item)
                else:
                    for r in range(height):
                        _write_at(descriptor, values[r], ((row + r) * cols + col) * bands * item)
            elif self.interleave == "bil":
                lines = values.transpose(0, 2, 1)
                if whole_rows:
                    _write_at(descriptor, lines, row * bands * cols * item)
                else:
                    for r in range(height):
                        for b in range(bands):
                            _write_at(descriptor, lines[r, b], (((row + r) * bands + b) * cols + col) * item)
            else:
                planes = np.ascontiguousarray(values.transpose(2, 0, 1))
                for b in range(bands):
                    if whole_rows:
                        _write_at(descriptor, planes[b], (b * rows + row) * cols * item)
                    else:
                        for r in range(height):
                            _write_at(descriptor, planes[b, r], ((b * rows + row + r) * cols + col) * item)
        except OSError as exc:
            raise CubeWriteError(f"cannot write output ({exc.strerror or exc})", self.output) from None
        finally:
            os.close(descriptor)


    def read_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as written so far (every band, native byte order): a process that
        writes a window in several passes reads back its own earlier pass."""
        rows, cols, bands = self.shape
        stored = EnviLayout.stored_shape(rows, cols, bands, self.interleave)
        try:
            raw = np.memmap(self.data, dtype=self.dtype, mode="r", shape=stored)
        except (OSError, ValueError) as exc:
            raise CubeWriteError(f"cannot read output back ({exc})", self.output) from None
        return np.array(raw.transpose(_ROWS_COLS_BANDS[self.interleave])[start:stop], dtype=self.dtype.newbyteorder("="))


@contextmanager
def envi_windows(
    cube: Cube,
    path: str | Path,
    *,
    overwrite: bool = False,
    interleave: str = "bsq",
    dtype: str | np.dtype | None = None,
    byte_order: int = 0,
    file_type: str = "ENVI Standard",
) -> Iterator[EnviWindows]:
    """An ENVI output whose pixels are written window by window (:class:`EnviWindows`), by this
    process or others; the header comes from ``cube`` (only its shape, type and metadata are used).

    The data file is allocated at its full size under a temporary name, and data and header are
    renamed into place when the block ends without error, as :func:`write_envi` does; an error or
    KeyboardInterrupt in the block removes both. The bytes equal what :func:`write_envi` writes
    once every window has been written.
    """
    path = Path(path)
    data_path, header_path, fields, stored, interleave = _planned_output(cube, path, interleave, dtype, byte_order, file_type)
    targets = sorted([data_path, header_path], key=lambda p: p != path)
    with atomic_files(targets, overwrite) as temporaries:
        data_tmp, header_tmp = (temporaries if targets[0] == data_path else temporaries[::-1])
        try:
            with open(data_tmp, "wb") as handle:
                handle.truncate(max(cube.rows * cube.cols * cube.bands * stored.itemsize, MIN_DATA_BYTES))
            header_tmp.write_text(header_text(fields), encoding="utf-8")
        except OSError as exc:
            raise CubeWriteError(f"cannot write output ({exc.strerror or exc})", path) from None
        # an absolute path: the processes that write the windows may work in other directories
        yield EnviWindows(Path(os.path.abspath(data_tmp)), tuple(cube.shape), stored, interleave, path)


def _write_pixels(data: np.ndarray, target: Path, dtype: np.dtype, interleave: str, path: Path) -> None:
    # Plain writes at computed offsets, not a writable memory map: a map's dirty pages count towards
    # the process's resident memory until the kernel writes them back, so a map would make a cube
    # larger than RAM look (and, under memory limits, be) resident.
    rows, cols, bands = data.shape
    itemsize = dtype.itemsize
    with open(target, "wb") as handle:
        # padded to GDAL's minimum as GDAL's own writer does (the readers ignore the extra byte)
        handle.truncate(max(rows * cols * bands * itemsize, MIN_DATA_BYTES))
        descriptor = handle.fileno()
        for block in row_blocks(rows, cols, bands, itemsize):
            values = cast_block(np.asarray(data[block]), dtype.newbyteorder("="), path).astype(dtype, copy=False)
            if interleave == "bsq":
                planes = np.ascontiguousarray(values.transpose(2, 0, 1))
                for band in range(bands):
                    _write_at(descriptor, planes[band], (band * rows + block.start) * cols * itemsize)
            elif interleave == "bil":
                _write_at(descriptor, values.transpose(0, 2, 1), block.start * bands * cols * itemsize)
            else:
                _write_at(descriptor, values, block.start * cols * bands * itemsize)


def _write_at(descriptor: int, values: np.ndarray, offset: int) -> None:
    """All of ``values``' bytes at ``offset``: pwrite may write fewer bytes than it was given."""
    remaining = memoryview(np.ascontiguousarray(values)).cast("B")
    while remaining:
        written = os.pwrite(descriptor, remaining, offset)
        remaining, offset = remaining[written:], offset + written
