"""ENVI raster files: our own ``.hdr`` reader and writer, memory-mapped data.

GDAL's ENVI driver is not used: its ``.aux.xml`` side-cars override a header on read and its
writer drops wavelengths unless they go to the ENVI metadata domain. Reading and writing the
header ourselves keeps every field exact, and ``numpy.memmap`` gives windowed access to cubes
larger than RAM.
"""

from __future__ import annotations

import math
import os
import re
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
}
DTYPE_CODES = {np.dtype(v): k for k, v in ENVI_DTYPES.items()}
_COMPLEX_CODES = {6: "complex64", 9: "complex128"}

STRUCTURAL_KEYS = ("samples", "lines", "bands", "header offset", "file type", "data type", "interleave", "byte order")
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

# map info datum names → EPSG codes of UTM zone 1 (north, south) and of the geographic CRS
_UTM_BASE = {
    "wgs-84": (32600, 32700),
    "wgs84": (32600, 32700),
    "north america 1983": (26900, None),
    "nad-83": (26900, None),
    "nad83": (26900, None),
    "north america 1927": (26700, None),
    "nad-27": (26700, None),
    "nad27": (26700, None),
    "etrs-89": (25800, None),
    "etrs89": (25800, None),
}
_GEOGRAPHIC = {"wgs-84": 4326, "wgs84": 4326, "north america 1983": 4269, "nad-83": 4269, "nad83": 4269,
               "north america 1927": 4267, "nad-27": 4267, "nad27": 4267}

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

    @property
    def file_shape(self) -> tuple[int, int, int]:
        return {
            "bsq": (self.bands, self.rows, self.cols),
            "bil": (self.rows, self.bands, self.cols),
            "bip": (self.rows, self.cols, self.bands),
        }[self.interleave]


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
    if code in _COMPLEX_CODES:
        raise CubeFormatError(f"complex data type {code} ({_COMPLEX_CODES[code]}) is not supported", header)
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
    """A read-only rows × cols × bands view of the data file, checked against the header."""
    expected = layout.rows * layout.cols * layout.bands * layout.dtype.itemsize
    try:
        size = layout.data.stat().st_size
    except OSError as exc:
        raise CubeReadError(f"cannot read data file ({exc.strerror})", layout.data) from None
    dims = f"{layout.cols} samples × {layout.rows} lines × {layout.bands} bands of {layout.dtype.name}"
    if size < layout.offset + expected:
        if size == 0:
            raise CubeReadError("data file is empty", layout.data)
        problem = "is truncated" if size > layout.offset else "is smaller than the header offset"
        raise CubeReadError(
            f"data file {problem}: the header ({dims}, offset {layout.offset}) needs "
            f"{layout.offset + expected} bytes, the file has {size}",
            layout.data,
        )
    if size > layout.offset + expected:
        raise CubeFormatError(
            f"header disagrees with the data file size: {dims} at offset {layout.offset} is "
            f"{layout.offset + expected} bytes, the file has {size} (check samples, lines, bands and data type in {layout.header.name})",
            layout.data,
        )
    try:
        raw = np.memmap(layout.data, dtype=layout.dtype, mode="r", offset=layout.offset, shape=layout.file_shape)
    except (OSError, ValueError) as exc:
        raise CubeReadError(f"cannot map data file ({exc})", layout.data) from None
    order = {"bsq": (1, 2, 0), "bil": (0, 2, 1), "bip": (0, 1, 2)}[layout.interleave]
    return raw.transpose(order)


# ---------------------------------------------------------------------------------------------
# Map info ↔ CRS and affine transform
# ---------------------------------------------------------------------------------------------


def _crs_string(crs) -> str:
    epsg = crs.to_epsg(confidence_threshold=100)
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def crs_from_wkt(wkt: str) -> str | None:
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    try:
        return _crs_string(CRS.from_wkt(wkt))
    except CRSError:
        return None


def parse_map_info(map_info: str, css: str | None, path: Path) -> tuple[str | None, Affine]:
    """ENVI ``map info`` (+ ``coordinate system string``) → (CRS, pixel-corner Affine).

    The reference pixel is 1-based with (1, 1) the upper-left corner of the first pixel; the
    rotation is counter-clockwise in degrees, the convention GDAL's ENVI driver uses.
    """
    items = split_list(map_info)
    if len(items) < 7:
        raise CubeFormatError(f"map info has {len(items)} fields, at least 7 are needed", path)
    options = {}
    positional = []
    for item in items[7:]:
        key, sep, value = item.partition("=")
        if sep:
            options[key.strip().lower()] = value.strip()
        else:
            positional.append(item.strip())
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
    transform = Affine(a, b, c, d, e, f)

    crs = crs_from_wkt(unbrace(css)) if css else None
    if crs is None:
        crs = _crs_from_projection(items[0].strip().lower(), positional, options)
    return crs, transform


def _crs_from_projection(name: str, positional: list[str], options: dict[str, str]) -> str | None:
    units = options.get("units", "").lower()
    if name == "utm" and len(positional) >= 3:
        try:
            zone = int(float(positional[0]))
        except ValueError:
            return None
        south = positional[1].strip().lower().startswith("s")
        base = _UTM_BASE.get(positional[2].strip().lower())
        if base is None or not 1 <= zone <= 60 or units not in ("", "meters", "m"):
            return None
        code = base[1] if south else base[0]
        return None if code is None else f"EPSG:{code + zone}"
    if name.startswith("geographic"):
        datum = positional[0].strip().lower() if positional else "wgs-84"
        code = _GEOGRAPHIC.get(datum)
        return None if code is None else f"EPSG:{code}"
    return None


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


def format_map_info(crs: str | None, transform: Affine, path: Path) -> tuple[str, str | None]:
    """(CRS, Affine) → (``map info`` value, ``coordinate system string`` value or None)."""
    grid, rotation = _grid_items(transform, path)
    if crs is None:
        return format_list(["Arbitrary", *grid, *rotation]), None
    from rasterio.crs import CRS

    from rasterio.enums import WktVersion

    parsed = CRS.from_user_input(crs)
    esri_wkt = parsed.to_wkt(version=WktVersion.WKT1_ESRI)
    css = "{" + esri_wkt + "}"
    epsg = parsed.to_epsg(confidence_threshold=100)
    if epsg and (32601 <= epsg <= 32660 or 32701 <= epsg <= 32760):
        hemisphere = "North" if epsg < 32700 else "South"
        text = format_list(["UTM", *grid, str(epsg % 100), hemisphere, "WGS-84", "units=Meters", *rotation])
    elif epsg == 4326:
        text = format_list(["Geographic Lat/Lon", *grid, "WGS-84", "units=Degrees", *rotation])
    else:
        match = re.match(r'\s*(?:PROJCS|GEOGCS)\["([^"]+)"', esri_wkt)
        name = match.group(1).replace(",", " ") if match else "Arbitrary"
        units = "Degrees" if parsed.is_geographic else "Meters"
        text = format_list([name, *grid, f"units={units}", *rotation])
    return text, css


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


def georeference_fields(cube: Cube, path: Path) -> dict[str, str]:
    """``map info`` / ``coordinate system string`` for a cube: its original text when still true, else new."""
    original = cube.metadata.get("map info")
    original_css = cube.metadata.get("coordinate system string")
    if cube.transform is None:
        return {}
    if original:
        try:
            crs, transform = parse_map_info(original, original_css, path)
        except CubeFormatError:
            crs, transform = None, None
        same_projection = transform is not None and (cube.crs is None or same_crs(crs, cube.crs))
        if same_projection and same_transform(transform, cube.transform):
            return _georeference(original, original_css)
        if same_projection and crs is None:
            # A projection hsiuu cannot name (State Plane, …) is known only from the original's own
            # fields; a CRS it can name is written afresh below, with a coordinate system string.
            return _georeference(regridded_map_info(original, cube.transform, path), original_css)
    return _georeference(*format_map_info(cube.crs, cube.transform, path))


def _georeference(map_info: str, css: str | None) -> dict[str, str]:
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
        crs, transform = parse_map_info(fields["map info"], fields.get("coordinate system string"), path)
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
        if key in fields or key in STRUCTURAL_KEYS or key in ("map info", "coordinate system string"):
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
                handle.truncate(cube.rows * cube.cols * cube.bands * stored.itemsize)
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
        handle.truncate(rows * cols * bands * itemsize)
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
