"""Files nobody here wrote, read by hsiuu and by GDAL (rasterio) and SPy: do they see the same cube?

    python bench/interop.py corpus DIR           # write GDAL-written ENVI/GeoTIFF/PNG and SPy-written ENVI files
    python bench/interop.py synthesize DIR       # data files for GDAL autotest ENVI headers kept in DIR (see below)
    python bench/interop.py compare DIR [DIR...] [--json]
    python bench/interop.py broken               # broken ENVI files through SPy and hsiuu; header parse times

``corpus`` writes, with GDAL's own drivers (through rasterio) and with SPy's ``envi.save_image``,
the variants a user meets: every data type GDAL and SPy write (complex included), every
interleave, both byte orders (SPy), compressed/tiled/big-endian/BigTIFF GeoTIFFs, no-data, band
scales and offsets, colour tables, internal masks, GCPs, RPCs, rotated grids, a 1×1×1 file, CRSs
ENVI spells in different ways (UTM north/south and datums, geographic, Albers, LAEA, Lambert
conformal in US feet, Mercator) and 8-bit PNG/JPEG images.

``synthesize`` completes ENVI headers copied from GDAL's test suite (``autotest/gdrivers/data``,
``autotest/gdrivers/data/envi``, ``autotest/gcore/data``; their data files are binary and were not
copied): it writes, beside each header, a data file of the size the header needs filled with
seeded random bytes under the file name GDAL's test uses, one byte longer where GDAL's own file is
(``envirpc.img``, ``rotation.img``, ``testenviclasses``, ``envistat``), gzip-compressed where the
header says ``file compression = 1``, and a GeoTIFF for an ENVI header of ``file type = TIFF``.

``compare`` opens every raster in the folders (ENVI through its header) with rasterio and with
``hsiuu_cli.io.read_cube`` and compares pixel values (bit for bit, NaN equal to NaN), CRS,
geotransform and no-data; ENVI files are also opened with SPy (values, wavelengths). Each file is
one of: the same in every respect compared, different (listed), refused by hsiuu with a one-line
reason, an internal error in hsiuu (a traceback that a user would see), or not readable by GDAL.
GDAL reads with PAM off (``GDAL_PAM_ENABLED=NO``), as hsiuu does: a side-car ``.aux.xml`` counts for neither.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
import traceback
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hsiuu_cli.errors import HsiuuError  # noqa: E402
from hsiuu_cli.io import read_cube  # noqa: E402

GDAL_ENV = {"GDAL_PAM_ENABLED": "NO"}
ENVI_DATA_SUFFIXES = ("", ".img", ".dat", ".bsq", ".bil", ".bip", ".raw")
RASTER_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".vrt")
ONE_BYTE_LONGER = {"envirpc", "rotation", "testenviclasses", "envistat"}
ORIGINAL_DATA_NAMES = {
    "aea": "aea.dat",
    "aea_compressed": "aea_compressed.dat",
    "uint16_envi_bigendian": "uint16_envi_bigendian.dat",
    "envirpc": "envirpc.img",
    "rotation": "rotation.img",
    "envistat": "envistat",
    "testenviclasses": "testenviclasses",
}
ENVI_TYPES = {1: "uint8", 2: "int16", 3: "int32", 4: "float32", 5: "float64", 6: "complex64", 9: "complex128",
              12: "uint16", 13: "uint32", 14: "int64", 15: "uint64"}


# ---------------------------------------------------------------------------------------------
# Corpus: files written by GDAL and SPy
# ---------------------------------------------------------------------------------------------


def _values(dtype: str, bands: int, rows: int, cols: int, seed: int) -> np.ndarray:
    """Band-first test values spanning the type's range (complex: both parts)."""
    rng = np.random.default_rng(seed)
    kind = np.dtype(dtype.replace("complex_int16", "int16"))
    if kind.kind == "c":
        return (rng.standard_normal((bands, rows, cols)) + 1j * rng.standard_normal((bands, rows, cols))).astype(kind)
    if kind.kind == "f":
        return (rng.standard_normal((bands, rows, cols)) * 1000).astype(kind)
    info = np.iinfo(kind)
    low, high = max(info.min, -(2**40)), min(info.max, 2**40)
    return rng.integers(low, high, (bands, rows, cols), endpoint=True).astype(kind)


def write_gdal_corpus(folder: Path) -> int:
    """ENVI, GeoTIFF, PNG and JPEG files written by GDAL's own drivers (rasterio); returns the count."""
    import rasterio
    from rasterio.control import GroundControlPoint
    from rasterio.rpc import RPC
    from rasterio.transform import from_origin

    folder.mkdir(parents=True, exist_ok=True)
    north_up = from_origin(500000.0, 4000020.0, 30.0, 30.0)
    written = []

    def write(name: str, data: np.ndarray, *, driver: str = "GTiff", then=None, **profile) -> None:
        bands, rows, cols = data.shape
        profile = {"driver": driver, "width": cols, "height": rows, "count": bands,
                   "dtype": profile.pop("dtype", data.dtype.name), **profile}
        with rasterio.Env(**GDAL_ENV), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with rasterio.open(folder / name, "w", **profile) as dst:
                dst.write(data)
                if then is not None:
                    then(dst)
        written.append(name)

    # ENVI, every type GDAL's ENVI driver writes, three interleaves
    for dtype in ("uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64",
                  "complex64", "complex128"):
        for interleave in ("BSQ", "BIL", "BIP"):
            write(f"gdal_envi_{dtype}_{interleave.lower()}.img", _values(dtype, 3, 5, 7, len(written)), driver="ENVI",
                  INTERLEAVE=interleave, crs="EPSG:32611", transform=north_up)
    write("gdal_envi_1x1x1.img", np.array([[[7]]], dtype=np.uint8), driver="ENVI")
    write("gdal_envi_nodata.img", _values("float32", 2, 4, 4, 1), driver="ENVI", nodata=-9999.0)
    for epsg in (4326, 4269, 26711, 32733, 3035, 5070, 2229, 3857):
        transform = from_origin(10.0, 50.0, 0.01, 0.01) if epsg in (4326, 4269) else north_up
        write(f"gdal_envi_epsg{epsg}.img", _values("int16", 1, 3, 4, epsg), driver="ENVI", crs=f"EPSG:{epsg}", transform=transform)
    rotated = north_up * rasterio.Affine.rotation(-30)
    write("gdal_envi_rotated.img", _values("uint16", 2, 4, 5, 2), driver="ENVI", crs="EPSG:32611", transform=rotated)
    gcps = [GroundControlPoint(row, col, 500000.0 + 30 * col, 4000000.0 - 30 * row) for row, col in ((0, 0), (0, 6), (4, 0), (4, 6))]
    write("gdal_envi_gcps.img", _values("uint8", 1, 5, 7, 3), driver="ENVI", gcps=gcps, crs="EPSG:32611")

    # GeoTIFF
    for dtype in ("uint8", "int8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64",
                  "complex_int16", "complex64", "complex128"):
        data = _values(dtype, 3, 6, 5, len(written))
        write(f"gdal_gtiff_{dtype}.tif", data, dtype=dtype, crs="EPSG:32611", transform=north_up)
    base = _values("uint16", 4, 64, 48, 11)
    for name, options in {
        "pixel": {"INTERLEAVE": "PIXEL"},
        "deflate_tiled": {"COMPRESS": "DEFLATE", "TILED": "YES", "BLOCKXSIZE": 16, "BLOCKYSIZE": 16, "PREDICTOR": 2},
        "lzw": {"COMPRESS": "LZW"},
        "zstd": {"COMPRESS": "ZSTD"},
        "bigendian": {"ENDIANNESS": "BIG"},
        "bigtiff": {"BIGTIFF": "YES"},
        "nbits12": {"NBITS": 12},
        "pixelispoint": {"AREA_OR_POINT": "Point"},
    }.items():
        data = base & 0x0FFF if name == "nbits12" else base
        write(f"gdal_gtiff_{name}.tif", data, crs="EPSG:32611", transform=north_up, **options)
    write("gdal_gtiff_nodata_int.tif", base, nodata=0, crs="EPSG:32611", transform=north_up)
    holes = _values("float32", 2, 8, 8, 12)
    holes[:, :2, :3] = np.nan
    write("gdal_gtiff_nodata_nan.tif", holes, nodata=float("nan"), crs="EPSG:4326", transform=from_origin(10, 50, 0.01, 0.01))
    write("gdal_gtiff_scale.tif", base, crs="EPSG:32611", transform=north_up,
          then=lambda dst: setattr(dst, "scales", [1e-4] * 4))
    write("gdal_gtiff_scale_offset.tif", base, crs="EPSG:32611", transform=north_up,
          then=lambda dst: (setattr(dst, "scales", [2.75e-5] * 4), setattr(dst, "offsets", [-0.2] * 4)))
    write("gdal_gtiff_rotated.tif", base, crs="EPSG:32611", transform=rotated)
    write("gdal_gtiff_nogeoref.tif", base)
    write("gdal_gtiff_gcps.tif", base[:1], gcps=gcps, crs="EPSG:32611")
    rpc = RPC(height_off=3355.0, height_scale=3455.0, lat_off=40.0, lat_scale=0.03, long_off=-62.4, long_scale=0.04,
              line_off=842.9, line_scale=842.9, samp_off=843.0, samp_scale=843.0,
              line_num_coeff=[0.0127, 7.861, -1.083, 0.31] + [0.0] * 16, line_den_coeff=[1.0] + [0.0] * 19,
              samp_num_coeff=[-0.00185, 1.105, 7.739, -0.048] + [0.0] * 16, samp_den_coeff=[1.0] + [0.0] * 19)
    write("gdal_gtiff_rpcs.tif", base[:1], rpcs=rpc)
    palette = {i: (i, 255 - i, (7 * i) % 256, 255) for i in range(256)}
    write("gdal_gtiff_palette.tif", (base[:1] % 256).astype(np.uint8), photometric="palette",
          then=lambda dst: dst.write_colormap(1, palette))
    mask = np.full((64, 48), 255, dtype=np.uint8)
    mask[:10, :10] = 0

    def write_mask(dst) -> None:
        dst.write_mask(mask)

    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        write("gdal_gtiff_internal_mask.tif", (base[:3] % 256).astype(np.uint8), crs="EPSG:32611", transform=north_up,
              then=write_mask)
    rgba = np.concatenate([(base[:3] % 256).astype(np.uint8), mask[np.newaxis]])
    write("gdal_gtiff_alpha.tif", rgba, photometric="RGB", ALPHA="YES")

    # 8-bit images without georeference, a black patch among them (no no-data metadata)
    photo = (base[:3] % 256).astype(np.uint8)
    photo[:, 20:30, 10:20] = 0
    write("gdal_rgb.png", photo, driver="PNG")
    write("gdal_rgb.jpg", photo, driver="JPEG")
    write("gdal_rgb_nodata.png", photo, driver="PNG", nodata=0)
    return len(written)


def write_spy_corpus(folder: Path) -> int:
    """ENVI files written by SPy's ``envi.save_image``: every type it writes, interleaves, byte orders,
    and the metadata SPy users set (wavelengths in µm, FWHM, bbl, band names, no-data, map info)."""
    from spectral.io import envi

    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for dtype in ("uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64",
                  "complex64", "complex128"):
        for interleave in ("bsq", "bil", "bip"):
            for byteorder in (0, 1):
                if interleave != "bsq" and byteorder == 1 and dtype not in ("int16", "float32", "complex64"):
                    continue
                data = np.moveaxis(_values(dtype, 4, 6, 5, count), 0, -1)
                metadata = {
                    "wavelength": [0.45 + 0.1 * i for i in range(4)],
                    "wavelength units": "micrometers",
                    "fwhm": [0.01] * 4,
                    "bbl": [1, 1, 0, 1],
                    "band names": [f"b{i}" for i in range(4)],
                    "map info": ["UTM", 1, 1, 500000.0, 4000020.0, 30.0, 30.0, 11, "North", "WGS-84", "units=Meters"],
                }
                if np.dtype(dtype).kind == "f":
                    metadata["data ignore value"] = -9999
                name = f"spy_{dtype}_{interleave}_{'be' if byteorder else 'le'}.hdr"
                envi.save_image(str(folder / name), data, dtype=dtype, interleave=interleave, byteorder=byteorder,
                                metadata=metadata, force=True, ext=".img")
                count += 1
    return count


def synthesize_autotest(folder: Path) -> int:
    """Data files for the GDAL autotest ENVI headers in ``folder`` (see the module docstring)."""
    from spectral.io.envi import read_envi_header

    count = 0
    for header in sorted(folder.glob("*.hdr")):
        fields = read_envi_header(str(header))
        stem = header.stem
        rows, cols, bands = int(fields["lines"]), int(fields["samples"]), int(fields["bands"])
        dtype = np.dtype(ENVI_TYPES[int(fields["data type"])])
        rng = np.random.default_rng(sum(stem.encode()))
        if fields.get("file type", "").strip().upper() == "TIFF":
            import rasterio

            data = rng.integers(0, 256, (bands, rows, cols), dtype=np.uint8)
            with rasterio.Env(**GDAL_ENV), rasterio.open(folder / f"{stem}.tif", "w", driver="GTiff", width=cols,
                                                         height=rows, count=bands, dtype="uint8") as dst:
                dst.write(data)
            count += 1
            continue
        size = int(fields.get("header offset", 0)) + rows * cols * bands * dtype.itemsize
        payload = rng.integers(0, 256, size + (stem in ONE_BYTE_LONGER), dtype=np.uint8).tobytes()
        if dtype.kind == "f":
            # finite floats: random bytes would hold NaN payloads that only differ in their bits
            values = rng.standard_normal(rows * cols * bands).astype(dtype)
            order = ">" if int(fields.get("byte order", 0)) == 1 else "<"
            payload = values.astype(dtype.newbyteorder(order)).tobytes()
        target = folder / ORIGINAL_DATA_NAMES.get(stem, f"{stem}.img")
        if int(fields.get("file compression", 0)) == 1:
            payload = gzip.compress(payload)
        target.write_bytes(payload)
        count += 1
    return count


# ---------------------------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------------------------


def datasets(folders: list[Path]) -> list[tuple[Path, Path]]:
    """(path given to hsiuu, path given to GDAL) for every raster in the folders."""
    found = []
    claimed: set[Path] = set()
    for folder in folders:
        for header in sorted(folder.glob("*.hdr")):
            if not header.read_bytes()[:4] == b"ENVI":
                continue
            for suffix in ENVI_DATA_SUFFIXES + (".tif",):
                data = header.with_suffix(suffix) if suffix else header.with_suffix("")
                if data.is_file() and data != header:
                    break
            else:
                data = header.with_suffix(".img")
            if data.suffix == ".tif":
                continue  # an ENVI header describing a GeoTIFF: the GeoTIFF is compared on its own
            found.append((header, data))
            claimed |= {header, data}
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in RASTER_SUFFIXES and path not in claimed:
                found.append((path, path))
    return found


def _same_values(ours: np.ndarray, theirs: np.ndarray) -> bool:
    if ours.shape != theirs.shape:
        return False
    if ours.dtype.kind in "fc" or theirs.dtype.kind in "fc":
        return bool(np.array_equal(ours, theirs, equal_nan=True))
    return bool(np.array_equal(ours, theirs))


def _same_crs(ours: str | None, theirs) -> bool:
    from rasterio.crs import CRS

    if theirs is not None and (theirs.to_wkt().startswith(("LOCAL_CS", "ENGCRS")) or not theirs.to_wkt()):
        theirs = None  # GDAL names an unknown ENVI projection as a local CS: no CRS
    if ours is None or theirs is None:
        return ours is None and theirs is None
    mine = CRS.from_user_input(ours)
    if theirs.to_epsg(confidence_threshold=100):
        return mine.to_epsg(confidence_threshold=100) == theirs.to_epsg(confidence_threshold=100)
    return mine == theirs


def _same_transform(ours, theirs, georeferenced: bool) -> bool:
    if ours is None:
        return not georeferenced
    return all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9) for a, b in zip(ours[:6], theirs[:6]))


def compare_one(ours_path: Path, gdal_path: Path) -> dict:
    import rasterio

    row: dict = {"file": str(ours_path)}
    try:
        with rasterio.Env(**GDAL_ENV), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with rasterio.open(gdal_path) as src:
                raw = src.read()
                scales, offsets = np.array(src.scales), np.array(src.offsets)
                gdal = {
                    "crs": src.crs or src.gcps[1],
                    "transform": src.transform,
                    "georeferenced": src.crs is not None or not src.transform.is_identity,
                    "nodata": src.nodata,
                    "gcps": len(src.gcps[0]),
                    "rpcs": src.rpcs is not None,
                    "colormap": _has_colormap(src),
                    "mask": any(flag.name in ("per_dataset", "alpha") for flag in src.mask_flag_enums[0]),
                }
    except Exception as exc:  # noqa: BLE001 - any failure of GDAL's is reported, not raised
        row["outcome"] = "gdal cannot read"
        row["detail"] = str(exc).splitlines()[0]
        return row
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cube = read_cube(ours_path, complex_values=True)  # as info and convert read it
    except HsiuuError as exc:
        row["outcome"] = "refused"
        row["detail"] = str(exc)
        return row
    except Exception:  # noqa: BLE001 - what a user would see as a traceback
        row["outcome"] = "internal error"
        row["detail"] = traceback.format_exc().strip().splitlines()[-1]
        return row

    theirs = np.moveaxis(raw, 0, -1)
    if cube.data.dtype.kind == "f" and theirs.dtype.kind != "f" and (np.unique(scales).size > 1 or offsets.any()):
        theirs = (theirs * scales + offsets).astype(np.float32)
        if gdal["nodata"] is not None:
            theirs[(np.moveaxis(raw, 0, -1) == gdal["nodata"]).all(axis=2)] = np.nan
        gdal["nodata"] = float("nan") if gdal["nodata"] is not None else None
    differences = []
    if not _same_values(np.asarray(cube.data), theirs):
        differences.append(f"values ({cube.data.dtype} {cube.shape} vs {theirs.dtype} {theirs.shape})")
    if not _same_crs(cube.crs, gdal["crs"]):
        differences.append(f"crs ({cube.crs} vs {gdal['crs'].to_string()[:60] if gdal['crs'] else None})")
    if not _same_transform(cube.transform, gdal["transform"], gdal["georeferenced"]):
        differences.append(f"transform ({None if cube.transform is None else tuple(cube.transform[:6])} vs {tuple(gdal['transform'][:6])})")
    ours_nodata, their_nodata = cube.nodata, gdal["nodata"]
    if not (ours_nodata == their_nodata or (ours_nodata is not None and their_nodata is not None
                                            and math.isnan(ours_nodata) and math.isnan(their_nodata))):
        differences.append(f"nodata ({ours_nodata} vs {their_nodata})")
    if ours_path.suffix.lower() == ".hdr":
        spy = _spy_difference(ours_path, cube)
        if spy:
            differences.append(spy)
    row["features"] = [name for name in ("gcps", "rpcs", "colormap", "mask") if gdal[name]]
    row["outcome"] = "different" if differences else "same"
    row["detail"] = "; ".join(differences)
    return row


def _has_colormap(src) -> bool:
    try:
        src.colormap(1)
    except ValueError:
        return False
    return True


def _spy_difference(header: Path, cube) -> str:
    """'' when SPy reads the same values and wavelengths, else what differs (or why SPy cannot read it)."""
    from spectral.io import envi

    if header.read_text(errors="replace").find("file compression = 1") >= 0:
        return ""  # SPy reads no compressed data files
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = envi.open(str(header))
            values = np.asarray(image.load() if image.metadata.get("file compression") else image.open_memmap())
    except Exception as exc:  # noqa: BLE001
        return f"spy cannot read ({str(exc).splitlines()[0][:80]})"
    if values.ndim == 2:
        values = values[:, :, np.newaxis]
    if not _same_values(np.asarray(cube.data), values.astype(cube.data.dtype) if values.dtype != cube.data.dtype and cube.data.dtype.kind == "f" else values):
        return "spy values"
    centers = image.bands.centers
    if centers and cube.wavelengths is not None:
        units = (image.bands.band_unit or "").lower()
        factor = 1000.0 if units.startswith(("micro", "um", "µm")) or (not units and max(centers) < 30) else 1.0
        if not np.allclose(np.array(centers, dtype=float) * factor, cube.wavelengths, rtol=1e-12):
            return "spy wavelengths"
    return ""


def broken_files() -> None:
    """Broken ENVI files read by SPy and by hsiuu, and both header parsers timed on a 224-band header
    (the measurements behind the decision in docs/architecture.md)."""
    import tempfile
    import timeit

    from spectral.io import envi

    from hsiuu_cli.io.envi import read_header

    data = np.arange(60, dtype="<f4").reshape(3, 4, 5)
    css = 'coordinate system string = {PROJCS["WGS_1984_UTM_Zone_11N",GEOGCS["GCS_WGS_1984"]]}\n'
    breakers = {
        "truncated data file": lambda folder: open(folder / "c.img", "r+b").truncate(100),
        "unknown data type 8": lambda folder: _edit(folder / "c.hdr", "data type = 4", "data type = 8"),
        "line without '='": lambda folder: _edit(folder / "c.hdr", "lines = 3", "lines 3"),
        "unclosed brace": lambda folder: _edit(folder / "c.hdr", "ENVI\n", "ENVI\ndescription = {never closed\n"),
        "gzip data file": lambda folder: (_edit(folder / "c.hdr", "ENVI\n", "ENVI\nfile compression = 1\n"),
                                          (folder / "c.img").write_bytes(gzip.compress((folder / "c.img").read_bytes()))),
        "WKT coordinate system string": lambda folder: _edit(folder / "c.hdr", "ENVI\n", "ENVI\n" + css),
    }
    for name, breaker in breakers.items():
        with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            folder = Path(folder)
            envi.save_image(str(folder / "c.hdr"), data, ext=".img", force=True)
            breaker(folder)
            outcomes = []
            for reader in (lambda: np.asarray(envi.open(str(folder / "c.hdr")).open_memmap()),
                           lambda: np.asarray(read_cube(folder / "c.hdr").data)):
                try:
                    values = reader()
                    same = values.shape == data.shape and np.array_equal(values, data)
                    outcomes.append(f"read {values.shape}{'' if same else ' WRONG VALUES'}")
                except Exception as exc:  # noqa: BLE001 - the message is the measurement
                    outcomes.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:90]}")
            if name.startswith("WKT"):
                outcomes[0] += f"; its css field: {envi.read_envi_header(str(folder / 'c.hdr'))['coordinate system string']}"
            print(f"{name}\n  SPy:   {outcomes[0]}\n  hsiuu: {outcomes[1]}")
    header = Path(__file__).resolve().parents[1] / "examples" / "salton_sea" / "salton_sea.hdr"
    ours = min(timeit.repeat(lambda: read_header(header), number=500, repeat=3)) / 500
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = min(timeit.repeat(lambda: envi.read_envi_header(str(header)), number=500, repeat=3)) / 500
    print(f"header parse ({header.name}): hsiuu {ours * 1e3:.2f} ms, SPy {theirs * 1e3:.2f} ms")


def _edit(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    corpus = sub.add_parser("corpus")
    corpus.add_argument("folder", type=Path)
    synth = sub.add_parser("synthesize")
    synth.add_argument("folder", type=Path)
    sub.add_parser("broken")
    comp = sub.add_parser("compare")
    comp.add_argument("folders", type=Path, nargs="+")
    comp.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.command == "corpus":
        print(f"GDAL-written: {write_gdal_corpus(args.folder / 'gdal')} files in {args.folder / 'gdal'}")
        print(f"SPy-written: {write_spy_corpus(args.folder / 'spy')} files in {args.folder / 'spy'}")
        return
    if args.command == "broken":
        broken_files()
        return
    if args.command == "synthesize":
        print(f"{synthesize_autotest(args.folder)} data files written in {args.folder}")
        return
    rows = [compare_one(ours, theirs) for ours, theirs in datasets(args.folders)]
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for row in rows:
            extra = f" [{', '.join(row['features'])}]" if row.get("features") else ""
            print(f"{row['outcome']:15} {row['file']}{extra}  {row.get('detail', '')}")
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["outcome"]] = counts.get(row["outcome"], 0) + 1
    print(f"{len(rows)} files: " + ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())), file=sys.stderr)


if __name__ == "__main__":
    main()
