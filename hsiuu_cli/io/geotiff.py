"""GeoTIFF (and other GDAL rasters on read) through rasterio, keeping spectral metadata in tags.

Where each Cube field goes:

* CRS, transform, no-data, GCPs, RPCs: GDAL's own places (GCPs and RPCs are the ENVI ``geo points``
  and ``rpc info`` fields of ``Cube.metadata``, in GDAL's ENVI spelling).
* Band descriptions: the band names, else ``band 12 (540.3 Nanometers)`` as an EnMAP product labels
  its bands (QGIS and the EnMAP-Box show them); such a label is not read back as a band name.
* Per band, default domain: ``wavelength``, ``fwhm`` (nm, full float precision), ``wavelength_units``
  (``Nanometers``) and ``bbl`` (1 good, 0 bad) — the names GDAL's ENVI driver and the EnMAP-Box use,
  so ``gdal_translate`` output and EnMAP products read too.
* Per band, ``IMAGERY`` domain: ``CENTRAL_WAVELENGTH_UM`` and ``FWHM_UM`` (GDAL ≥ 3.10 convention).
* Dataset: ``scale_factor`` (ENVI reflectance scale factor) and ``description`` tags; GDAL band
  scale = 1 / scale factor so other tools see physical values. On read, GDAL band offsets, or
  scales that differ between bands, cannot be one scale factor: such data come as float32
  physical values instead.
* Other ENVI header fields (including the original ``map info`` text): the ``ENVI`` domain.

GDAL's PAM side-cars are disabled so nothing is ever written beside an input. What a cube cannot
hold — a colour table, a mask or alpha band — is reported on read (logger ``hsiuu_cli.io``).
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
from .gdal import gdal_warnings
from .envi import crs_string, format_list, format_number, split_list, wavelength_scale

# a bounded block cache (MB): GDAL's default, 5 % of RAM, would hold written blocks of a large cube resident
GDAL_ENV = {"GDAL_PAM_ENABLED": "NO", "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_CACHEMAX": 256}
ENVI_DOMAIN = "ENVI"
_INTERLEAVE_NAMES = {"BAND": "bsq", "PIXEL": "bip", "LINE": "bil"}
_GTIFF_DTYPES = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64",
                 "complex64", "complex128"}
PHOTO_DRIVERS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")
"""Image formats without georeference or a no-data value, where a black patch often marks missing data."""
_READ_DTYPES = {"complex_int16": "complex64", "complex_int32": "complex128"}
"""GDAL types numpy lacks, as rasterio reads them."""
_BAND_LABEL = re.compile(r"^band (\d+) \(.*\)$", re.IGNORECASE)
RPC_FIELDS = ("line_off", "samp_off", "lat_off", "long_off", "height_off",
              "line_scale", "samp_scale", "lat_scale", "long_scale", "height_scale")
"""The order of the first ten numbers of ENVI's ``rpc info``; then the four 20-term polynomials
(line numerator, line denominator, sample numerator, sample denominator) and three ENVI values."""

logger = logging.getLogger(__name__)


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


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
    dtype = np.dtype(np.float32) if physical else np.dtype(_READ_DTYPES.get(src.dtypes[0], src.dtypes[0]))
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
    band_names = descriptions if all(descriptions) and not _band_labels(descriptions) else None

    scale_factor = None
    if not physical:
        scale_factor = _parse_float(dataset_tags.get("scale_factor"))
        if scale_factor is None and src.scales[0] not in (0.0, 1.0):
            scale_factor = 1.0 / src.scales[0]

    transform = src.transform
    georeferenced = src.crs is not None or not transform.is_identity
    crs = crs_string(src.crs)
    metadata = dict(src.tags(ns=ENVI_DOMAIN))
    gcps, gcp_crs = src.gcps
    if gcps:
        metadata["geo points"] = geo_points(gcps)
        crs = crs or crs_string(gcp_crs)
    if src.rpcs is not None:
        metadata["rpc info"] = rpc_info(src.rpcs)
    _report_what_is_not_kept(src, path, data)
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
        metadata=metadata,
    )


def _band_labels(descriptions: list[str]) -> bool:
    """True when the descriptions only number the bands (``band 12 (540.3 Nanometers)``, as EnMAP
    products and hsiuu write them): labels derived from the wavelengths, not names."""
    matches = [_BAND_LABEL.match(text.strip()) for text in descriptions]
    return all(m is not None and int(m.group(1)) == i + 1 for i, m in enumerate(matches))


def geo_points(gcps) -> str:
    """GCPs as ENVI ``geo points``, the way GDAL's ENVI driver writes them: per point the 1-based
    pixel x and y, then the map y and x."""
    values = []
    for gcp in gcps:
        values += [format_number(gcp.col + 1), format_number(gcp.row + 1), format_number(gcp.y), format_number(gcp.x)]
    return format_list(values)


def gcps_from_geo_points(text: str):
    """ENVI ``geo points`` → rasterio GCPs (None when the list is not groups of four numbers)."""
    from rasterio.control import GroundControlPoint

    try:
        values = [float(v) for v in split_list(text)]
    except ValueError:
        return None
    if not values or len(values) % 4:
        return None
    return [GroundControlPoint(row=values[i + 1] - 1, col=values[i] - 1, x=values[i + 3], y=values[i + 2])
            for i in range(0, len(values), 4)]


def rpc_info(rpcs) -> str:
    """RPCs as ENVI ``rpc info``: the ten offsets and scales, the four polynomials, and ENVI's tile row
    and column offsets and emulation flag (0, 0, 0) — the 93 numbers GDAL's ENVI driver reads."""
    values = [getattr(rpcs, name) for name in RPC_FIELDS]
    for name in ("line_num_coeff", "line_den_coeff", "samp_num_coeff", "samp_den_coeff"):
        values += list(getattr(rpcs, name))
    return format_list([format_number(v) for v in values] + ["0", "0", "0"])


def rpcs_from_info(text: str):
    """ENVI ``rpc info`` → rasterio RPC (None when it does not hold at least the 90 RPC numbers)."""
    from rasterio.rpc import RPC

    try:
        values = [float(v) for v in split_list(text)]
    except ValueError:
        return None
    if len(values) < 90:
        return None
    polynomials = [values[10 + 20 * i : 30 + 20 * i] for i in range(4)]
    return RPC(**dict(zip(RPC_FIELDS, values[:10])), line_num_coeff=polynomials[0], line_den_coeff=polynomials[1],
               samp_num_coeff=polynomials[2], samp_den_coeff=polynomials[3])


def _report_what_is_not_kept(src, path: Path, data: np.ndarray) -> None:
    """A colour table, a mask or an alpha band has no place in a cube: say so rather than drop it unseen."""
    try:
        src.colormap(1)
        logger.warning("%s: its colour table is not kept (hsiuu reads the band values, not colours)", path)
    except ValueError:
        pass
    flags = [{flag.name for flag in band_flags} for band_flags in src.mask_flag_enums]
    alpha = [i + 1 for i, interpretation in enumerate(src.colorinterp) if interpretation.name == "alpha"]
    if any(band_flags & {"per_dataset", "alpha"} and "nodata" not in band_flags for band_flags in flags):
        masked = int((src.dataset_mask() == 0).sum())
        if not masked:
            return
        if alpha:
            keep = f"0-{src.count - 2}" if alpha == [src.count] and src.count > 2 else "INDICES"
            logger.warning(
                "%s: band %d is an alpha band (%d pixels transparent); hsiuu reads it as a band and keeps "
                "no mask (leave it out: hsiuu convert %s OUT.tif --bands %s)", path, alpha[0], masked, path.name, keep)
        else:
            logger.warning(
                "%s: its mask marks %d pixels as no data; hsiuu keeps no mask, so they are read as the "
                "values stored there", path, masked)
    elif src.driver in PHOTO_DRIVERS and src.nodata is None:
        black = int((data == 0).all(axis=2).sum())
        if black:
            logger.warning(
                "%s: %d pixels (%.2g %%) are 0 in every band and a %s file cannot say whether that is "
                "no data; they are read as data (if they are fill: hsiuu convert %s OUT.tif --nodata 0)",
                path, black, 100.0 * black / (src.width * src.height), src.driver, path.name)


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
                with gdal_warnings() as messages:
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
    from rasterio.crs import CRS

    gcps = gcps_from_geo_points(cube.metadata["geo points"]) if "geo points" in cube.metadata else None
    if gcps and cube.transform is None:
        # rasterio needs a CRS object with GCPs; an empty one where the points have none (ENVI's)
        dst.gcps = (gcps, CRS.from_user_input(cube.crs) if cube.crs else CRS())
    rpcs = rpcs_from_info(cube.metadata["rpc info"]) if "rpc info" in cube.metadata else None
    if rpcs is not None:
        dst.rpcs = rpcs
    tags = {}
    if cube.scale_factor is not None:
        tags["scale_factor"] = format_number(cube.scale_factor)
    if cube.description:
        tags["description"] = cube.description
    if tags:
        dst.update_tags(**tags)
    envi_fields = {k: v for k, v in cube.metadata.items() if k not in ("geo points", "rpc info")}
    if envi_fields:
        dst.update_tags(ns=ENVI_DOMAIN, **envi_fields)
    if cube.scale_factor not in (None, 0.0):
        dst.scales = [1.0 / cube.scale_factor] * cube.bands
    for band in range(cube.bands):
        index = band + 1
        band_tags: dict[str, str] = {}
        imagery: dict[str, str] = {}
        if cube.wavelengths is not None:
            band_tags["wavelength"] = format_number(cube.wavelengths[band])
            band_tags["wavelength_units"] = "Nanometers"
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
        elif cube.wavelengths is not None:
            dst.set_band_description(index, f"band {index} ({cube.wavelengths[band]:g} Nanometers)")


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
            with gdal_warnings() as messages:
                with rasterio.open(memory, "w", **profile):
                    pass
    except RasterioError as exc:
        raise CubeWriteError(f"creation option rejected: {_name_output(_one_line(exc), Path(memory), path)}", path) from None
    _check_creation_options([_name_output(m, Path(memory), path) for m in messages], path)
