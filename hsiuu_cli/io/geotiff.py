"""GeoTIFF (and other GDAL rasters on read) through rasterio, keeping spectral metadata in tags.

Where each Cube field goes:

* CRS, transform, no-data, band descriptions (band names): GDAL's own places.
* Per band, default domain: ``wavelength``, ``fwhm`` (nm, full float precision), ``wavelength_units``
  and ``bbl`` (1 good, 0 bad) — the names GDAL's ENVI driver uses, so ``gdal_translate`` output reads too.
* Per band, ``IMAGERY`` domain: ``CENTRAL_WAVELENGTH_UM`` and ``FWHM_UM`` (GDAL ≥ 3.10 convention).
* Dataset: ``scale_factor`` (ENVI reflectance scale factor) and ``description`` tags; GDAL band
  scale = 1 / scale factor so other tools see physical values. On read, GDAL band offsets, or
  scales that differ between bands, cannot be one scale factor: such data come as float32
  physical values instead.
* Other ENVI header fields (including the original ``map info`` text): the ``ENVI`` domain.

GDAL's PAM side-cars are disabled so nothing is ever written beside an input.
"""

from __future__ import annotations

import logging
import re
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from ..cube import Cube
from ..errors import CubeReadError, CubeWriteError
from .atomic import atomic_files
from .blocks import cast_block, check_nodata, output_dtype, row_blocks
from .envi import format_number, wavelength_scale

# a bounded block cache (MB): GDAL's default, 5 % of RAM, would hold written blocks of a large cube resident
GDAL_ENV = {"GDAL_PAM_ENABLED": "NO", "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_CACHEMAX": 256}
ENVI_DOMAIN = "ENVI"
_INTERLEAVE_NAMES = {"BAND": "bsq", "PIXEL": "bip", "LINE": "bil"}
_GTIFF_DTYPES = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64"}


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class _GdalWarnings(logging.Handler):
    """Collects the warnings GDAL reports through rasterio's logger."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(re.sub(r"^CPLE_\w+ in ", "", record.getMessage()))


@contextmanager
def _gdal_warnings() -> Iterator[list[str]]:
    handler = _GdalWarnings()
    logger = logging.getLogger("rasterio._env")
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def _check_creation_options(messages: list[str], path: Path) -> None:
    """GDAL only warns about unknown or invalid creation options; a typo in --co must not pass silently."""
    for message in messages:
        if "creation option" in message or "not recognised" in message or "not recognized" in message:
            raise CubeWriteError(f"creation option rejected: {message.strip()}", path)


def _name_output(message: str, temporary: Path, path: Path) -> str:
    """GDAL and libtiff name the hidden temporary (by path or by file name); users know only the output."""
    for hidden, shown in ((str(temporary), str(path)), (temporary.name, path.name)):
        message = message.replace(f"{hidden}: ", "").replace(hidden, shown)
    return message


def _parse_float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None


@contextmanager
def _open_for_reading(path: Path) -> Iterator:
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    # A cube without georeference (a lab scan, an ENVI file without map info) is ordinary here.
    with rasterio.Env(**GDAL_ENV), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "r") as src:
            yield src


def read_geotiff(path: str | Path) -> Cube:
    """A GeoTIFF (or any single-image GDAL raster) as a Cube, metadata from tags."""
    from rasterio.errors import RasterioError

    path = Path(path)
    if not path.exists():
        raise CubeReadError("file not found", path)
    if path.is_file() and path.stat().st_size == 0:
        raise CubeReadError("file is empty", path)
    try:
        with _open_for_reading(path) as src:
            return _cube_from_dataset(src, path)
    except RasterioError as exc:
        raise CubeReadError(f"not a readable raster ({_one_line(exc)})", path) from None


def _band_values(tags: list[dict[str, str]], key: str) -> np.ndarray | None:
    values = [_parse_float(t.get(key)) for t in tags]
    return np.array(values) if all(v is not None for v in values) else None


def _spectral(
    band_tags: list[dict[str, str]], imagery: list[dict[str, str]], dataset_units: str
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Wavelengths and FWHM in nm: the ``wavelength`` / ``fwhm`` tags, else the IMAGERY domain (µm)."""
    wavelengths = _band_values(band_tags, "wavelength")
    fwhm = _band_values(band_tags, "fwhm")
    # Units as in an ENVI header: a band's own, else the dataset's (tools other than GDAL's ENVI
    # driver may label only the dataset), else values below 30 are micrometres. FWHM shares them.
    factors = [
        wavelength_scale({"wavelength units": t.get("wavelength_units", dataset_units)}, wavelengths)
        for t in band_tags
    ]
    if None in factors:
        # Band indices, wavenumbers and the like are not nanometres.
        wavelengths = fwhm = None
    else:
        wavelengths = None if wavelengths is None else wavelengths * np.array(factors)
        fwhm = None if fwhm is None else fwhm * np.array(factors)
    if wavelengths is None and (values := _band_values(imagery, "CENTRAL_WAVELENGTH_UM")) is not None:
        wavelengths = values * 1000.0
    if fwhm is None and (values := _band_values(imagery, "FWHM_UM")) is not None:
        fwhm = values * 1000.0
    return wavelengths, fwhm


def _physical_block(raw: np.ndarray, scales: np.ndarray, offsets: np.ndarray, nodata: float | None) -> np.ndarray:
    """raw × scale + offset per band as float32; no-data pixels (no-data in every band, as in Cube) become NaN."""
    values = (raw * scales + offsets).astype(np.float32)
    if nodata is not None and not np.isnan(nodata):
        values[(raw == np.asarray(nodata).astype(raw.dtype)).all(axis=2)] = np.nan
    return values


def _read_as_physical(src) -> bool:
    # One scale factor (physical = stored / factor) cannot express offsets or per-band scales, and
    # passing raw counts on as physical values would be wrong, so those rasters are read as physical.
    return bool(np.unique(np.array(src.scales)).size > 1 or np.array(src.offsets).any())


def _cube_from_dataset(src, path: Path) -> Cube:
    count, rows, cols = src.count, src.height, src.width
    if count == 0:
        raise CubeReadError("raster has no bands", path)
    scales, offsets = np.array(src.scales), np.array(src.offsets)
    physical = _read_as_physical(src)
    dtype = np.dtype(np.float32) if physical else np.dtype(src.dtypes[0])
    data = np.empty((rows, cols, count), dtype=dtype)
    from rasterio.windows import Window

    # Physical blocks pass through float64, so they are sized for that.
    for block in row_blocks(rows, cols, count, 8 if physical else dtype.itemsize):
        window = Window(0, block.start, cols, block.stop - block.start)
        raw = np.moveaxis(src.read(window=window), 0, -1)
        data[block] = _physical_block(raw, scales, offsets, src.nodata) if physical else raw

    dataset_tags = src.tags()
    band_tags = [src.tags(b) for b in range(1, count + 1)]
    imagery = [src.tags(b, ns="IMAGERY") for b in range(1, count + 1)]
    wavelengths, fwhm = _spectral(band_tags, imagery, dataset_tags.get("wavelength_units", ""))
    bbl = [t.get("bbl") for t in band_tags]
    bad_bands = None
    if all(v is not None for v in bbl):
        bad_bands = np.array([_parse_float(v) == 0 for v in bbl])

    descriptions = list(src.descriptions)
    band_names = descriptions if all(descriptions) else None

    scale_factor = None
    if not physical:
        scale_factor = _parse_float(dataset_tags.get("scale_factor"))
        if scale_factor is None and src.scales[0] not in (0.0, 1.0):
            scale_factor = 1.0 / src.scales[0]

    transform = src.transform
    georeferenced = src.crs is not None or not transform.is_identity
    crs = None
    if src.crs is not None:
        epsg = src.crs.to_epsg(confidence_threshold=100)
        crs = f"EPSG:{epsg}" if epsg else src.crs.to_wkt()
    nodata = src.nodata
    if physical and nodata is not None:
        nodata = float("nan")
    return Cube(
        data=data,
        wavelengths=wavelengths,
        fwhm=fwhm,
        bad_bands=bad_bands,
        nodata=nodata,
        scale_factor=scale_factor,
        band_names=band_names,
        crs=crs,
        transform=transform if georeferenced else None,
        description=dataset_tags.get("description"),
        metadata=dict(src.tags(ns=ENVI_DOMAIN)),
    )


def _creation_profile(cube: Cube, dtype: np.dtype, creation_options: dict[str, str] | None, path: Path) -> dict:
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    profile = {
        "driver": "GTiff",
        "width": cube.cols,
        "height": cube.rows,
        "count": cube.bands,
        "dtype": dtype.name,
    }
    if dtype.name not in _GTIFF_DTYPES:
        raise CubeWriteError(f"data type {dtype} cannot be written to GeoTIFF", path)
    if cube.bands > 1:
        # Band-sequential like ENVI's default: one band reads without touching the others.
        profile["INTERLEAVE"] = "BAND"
    if cube.transform is not None:
        profile["transform"] = cube.transform
    if cube.crs is not None:
        try:
            profile["crs"] = CRS.from_user_input(cube.crs)
        except CRSError as exc:
            raise CubeWriteError(f"CRS cannot be written ({_one_line(exc)})", path) from None
    if cube.nodata is not None:
        profile["nodata"] = cube.nodata
    if cube.rows * cube.cols * cube.bands * dtype.itemsize > 3_900_000_000:
        profile["BIGTIFF"] = "IF_SAFER"
    for key, value in (creation_options or {}).items():
        profile[key.upper()] = value
    return profile


def write_geotiff(
    cube: Cube,
    path: str | Path,
    *,
    overwrite: bool = False,
    creation_options: dict[str, str] | None = None,
    dtype: str | np.dtype | None = None,
) -> Path:
    """Write ``cube`` as a GeoTIFF, atomically; returns ``path``."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    path = Path(path)
    target = output_dtype(cube.data.dtype, dtype, path)
    check_nodata(cube.nodata, target, path)
    profile = _creation_profile(cube, target, creation_options, path)
    with atomic_files([path], overwrite) as (temporary,):
        try:
            with rasterio.Env(**GDAL_ENV), warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with _gdal_warnings() as messages:
                    dst = rasterio.open(temporary, "w", **profile)
                with dst:
                    _check_creation_options([_name_output(m, temporary, path) for m in messages], path)
                    _write_metadata(dst, cube)
                    from rasterio.windows import Window

                    for block in row_blocks(cube.rows, cube.cols, cube.bands, target.itemsize):
                        values = cast_block(np.asarray(cube.data[block]), target, path)
                        window = Window(0, block.start, cube.cols, block.stop - block.start)
                        dst.write(np.moveaxis(values, -1, 0), window=window)
        except RasterioError as exc:
            problem = _name_output(_one_line(exc), temporary, path)
            raise CubeWriteError(f"GeoTIFF not written ({problem})", path) from None
        except CubeWriteError:
            raise
        except OSError as exc:
            raise CubeWriteError(f"cannot write output ({exc.strerror or exc})", path) from None
    return path


def _write_metadata(dst, cube: Cube) -> None:
    tags = {}
    if cube.scale_factor is not None:
        tags["scale_factor"] = format_number(cube.scale_factor)
    if cube.description:
        tags["description"] = cube.description
    if tags:
        dst.update_tags(**tags)
    if cube.metadata:
        dst.update_tags(ns=ENVI_DOMAIN, **cube.metadata)
    if cube.scale_factor not in (None, 0.0):
        dst.scales = [1.0 / cube.scale_factor] * cube.bands
    for band in range(cube.bands):
        index = band + 1
        band_tags: dict[str, str] = {}
        imagery: dict[str, str] = {}
        if cube.wavelengths is not None:
            band_tags["wavelength"] = format_number(cube.wavelengths[band])
            band_tags["wavelength_units"] = "nm"
            imagery["CENTRAL_WAVELENGTH_UM"] = repr(float(cube.wavelengths[band]) / 1000.0)
        if cube.fwhm is not None:
            band_tags["fwhm"] = format_number(cube.fwhm[band])
            imagery["FWHM_UM"] = repr(float(cube.fwhm[band]) / 1000.0)
        if cube.bad_bands is not None:
            band_tags["bbl"] = "0" if cube.bad_bands[band] else "1"
        if band_tags:
            dst.update_tags(index, **band_tags)
        if imagery:
            dst.update_tags(index, ns="IMAGERY", **imagery)
        if cube.band_names is not None:
            dst.set_band_description(index, cube.band_names[band])


def describe_geotiff(path: Path) -> dict:
    """Storage details for ``info``: driver, interleave, compression, block size, the stored data type
    and whether GDAL band offsets or per-band scales make the cube read as float32 physical values."""
    from rasterio.errors import RasterioError

    try:
        with _open_for_reading(path) as src:
            return {
                "format": src.driver,
                "interleave": _INTERLEAVE_NAMES.get(src.interleaving.name.upper() if src.interleaving else "BAND"),
                "compression": src.compression.name if src.compression else None,
                "block_shape": list(src.block_shapes[0]),
                "stored_dtype": src.dtypes[0],
                "read_as_physical": _read_as_physical(src),
            }
    except RasterioError as exc:
        raise CubeReadError(f"not a readable raster ({_one_line(exc)})", path) from None



def check_creation_options(options: dict[str, str], path: Path, *, dtype: str = "float32", bands: int = 1) -> None:
    """Refuse GTiff creation options before any work, by opening a one-pixel GeoTIFF in memory of
    the output's type and band count with them (GDAL only warns about a bad one, and only when a
    dataset is created)."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    profile = {"driver": "GTiff", "width": 1, "height": 1, "count": bands, "dtype": dtype, **options}
    memory = f"/vsimem/hsiuu-check-{id(profile)}.tif"
    try:
        with rasterio.Env(**GDAL_ENV), warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with _gdal_warnings() as messages:
                with rasterio.open(memory, "w", **profile):
                    pass
    except RasterioError as exc:
        raise CubeWriteError(f"creation option rejected: {_name_output(_one_line(exc), Path(memory), path)}", path) from None
    _check_creation_options([_name_output(m, Path(memory), path) for m in messages], path)
