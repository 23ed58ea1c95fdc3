"""What hsiuu writes, read by GDAL (rasterio) and Spectral Python: the same values, wavelengths,
bad bands, no-data and georeferencing (the EPSG code where there is one), for every data type and
interleave either format stores; and what GDAL and SPy write, read by hsiuu."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.rpc import RPC
from spectral.io import envi as spy_envi

from hsiuu_cli.cube import Cube
from hsiuu_cli.io import read_cube, write_cube
from hsiuu_cli.io import envi

TYPES = ["uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "complex64", "complex128"]
WAVELENGTHS = np.array([412.5, 550.25, 660.0, 1000.0 / 3 + 500])
TRANSFORM = Affine(30.0, 0.0, 500000.0, 0.0, -30.0, 4000020.0)


def values(dtype: str, shape=(5, 7, 4), seed: int = 0) -> np.ndarray:
    """Values over most of the type's range, so byte-order or type mistakes show."""
    rng = np.random.default_rng(seed)
    kind = np.dtype(dtype)
    if kind.kind == "c":
        return (rng.standard_normal(shape) * 1e3 + 1j * rng.standard_normal(shape) * 1e3).astype(kind)
    if kind.kind == "f":
        return (rng.standard_normal(shape) * 1e3).astype(kind)
    info = np.iinfo(kind)
    return rng.integers(max(info.min, -(2**40)), min(info.max, 2**40), shape, endpoint=True).astype(kind)


def spectral_cube(dtype: str, **fields) -> Cube:
    data = values(dtype)
    nodata = None if np.dtype(dtype).kind == "c" else float(data[0, 0, 0].real)
    return Cube(data, wavelengths=WAVELENGTHS, fwhm=np.full(4, 9.5), bad_bands=np.array([False, True, False, False]),
                nodata=nodata, crs="EPSG:32611", transform=TRANSFORM, **fields)


class Seen:
    """What GDAL reads from a file: band-last values and the dataset's georeferencing and labels."""

    def __init__(self, src) -> None:
        self.data = np.moveaxis(src.read(), 0, -1)
        self.crs, self.transform, self.nodata = src.crs, src.transform, src.nodata
        self.gcps, self.rpcs, self.descriptions = src.gcps, src.rpcs, src.descriptions
        self.tags = [src.tags(b) for b in range(1, src.count + 1)]


def gdal(path: Path) -> Seen:
    """``path`` as GDAL reads it, side-cars off as in hsiuu."""
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            return Seen(src)


def assert_gdal_sees(path: Path, cube: Cube) -> None:
    seen = gdal(path)
    np.testing.assert_array_equal(seen.data, cube.data)
    assert seen.data.dtype == cube.data.dtype.newbyteorder("=")
    assert seen.crs.to_epsg() == int(cube.crs.split(":")[1])
    assert seen.transform.almost_equals(cube.transform, precision=1e-9)
    assert seen.nodata == cube.nodata
    np.testing.assert_array_equal([float(tags["wavelength"]) for tags in seen.tags], cube.wavelengths)
    assert {tags["wavelength_units"] for tags in seen.tags} == {"Nanometers"}


@pytest.mark.parametrize("byte_order", [0, 1])
@pytest.mark.parametrize("interleave", ["bsq", "bil", "bip"])
@pytest.mark.parametrize("dtype", TYPES)
def test_envi_written_by_hsiuu_reads_the_same_in_gdal_and_spy(tmp_path, dtype, interleave, byte_order):
    cube = spectral_cube(dtype)
    header = write_cube(cube, tmp_path / "cube.hdr", interleave=interleave, creation_options={"BYTE_ORDER": str(byte_order)})
    assert_gdal_sees(tmp_path / "cube.img", cube)
    image = spy_envi.open(str(header))
    np.testing.assert_array_equal(np.asarray(image.open_memmap()), cube.data)
    assert image.bands.centers == cube.wavelengths.tolist() and image.bands.band_unit == "Nanometers"
    assert image.bands.bandwidths == cube.fwhm.tolist()
    assert [int(v) for v in image.metadata["bbl"]] == [1, 0, 1, 1]
    if cube.nodata is not None:
        assert float(image.metadata["data ignore value"]) == cube.nodata


@pytest.mark.parametrize("interleave", ["bsq", "bip"])
@pytest.mark.parametrize("dtype", TYPES)
def test_geotiff_written_by_hsiuu_reads_the_same_in_gdal(tmp_path, dtype, interleave):
    cube = spectral_cube(dtype)
    write_cube(cube, tmp_path / "cube.tif", interleave=interleave)
    assert_gdal_sees(tmp_path / "cube.tif", cube)
    seen = gdal(tmp_path / "cube.tif")
    assert seen.descriptions[1] == "band 2 (550.25 Nanometers)"
    assert [tags["bbl"] for tags in seen.tags] == ["1", "0", "1", "1"]


@pytest.mark.parametrize("epsg", [32611, 32733, 26711, 4326, 4269, 3035, 5070, 3857])
@pytest.mark.parametrize("suffix", [".hdr", ".tif"])
def test_the_epsg_code_survives_for_gdal(tmp_path, epsg, suffix):
    geographic = CRS.from_epsg(epsg).is_geographic
    transform = Affine(0.001, 0, -117.5, 0, -0.001, 33.25) if geographic else TRANSFORM
    cube = Cube(values("int16", (3, 4, 1)), crs=f"EPSG:{epsg}", transform=transform)
    path = write_cube(cube, tmp_path / f"cube{suffix}")
    seen = gdal(path.with_suffix(".img") if suffix == ".hdr" else path)
    assert seen.crs.to_epsg() == epsg and seen.transform.almost_equals(transform, precision=1e-12)
    assert read_cube(path).crs == f"EPSG:{epsg}"


def test_geographic_map_info_is_spelt_as_gdal_writes_it(tmp_path):
    # "units=Degrees" (which hsiuu once wrote) makes GDAL re-apply degrees to the coordinate system
    # string and lose its EPSG code
    cube = Cube(values("uint8", (3, 4, 1)), crs="EPSG:4326", transform=Affine(0.001, 0, -117.5, 0, -0.001, 33.25))
    write_cube(cube, tmp_path / "geo.hdr")
    assert envi.read_header(tmp_path / "geo.hdr")["map info"] == (
        "{ Geographic Lat/Lon , 1 , 1 , -117.5 , 33.25 , 0.001 , 0.001 , WGS-84 }")


def test_a_rotated_grid_reads_the_same_in_gdal(tmp_path):
    transform = Affine.translation(579717.18, 3714550.7) @ Affine.rotation(34) @ Affine.scale(16.9, -16.9)
    cube = Cube(values("float32", (4, 6, 2)), crs="EPSG:32611", transform=Affine(*transform[:6]))
    for name in ("rot.hdr", "rot.tif"):
        path = write_cube(cube, tmp_path / name)
        seen = gdal(path.with_suffix(".img") if name.endswith(".hdr") else path)
        assert seen.transform.almost_equals(cube.transform, precision=1e-6) and seen.crs.to_epsg() == 32611


def test_a_one_pixel_one_band_byte_image_opens_in_gdal(tmp_path):
    # GDAL does not open a one-byte data file; its own writer pads it to two bytes, and so does hsiuu
    cube = Cube(np.array([[[7]]], dtype=np.uint8))
    write_cube(cube, tmp_path / "one.hdr")
    assert (tmp_path / "one.img").stat().st_size == 2
    assert gdal(tmp_path / "one.img").data.tolist() == [[[7]]]
    assert read_cube(tmp_path / "one.hdr").data.tolist() == [[[7]]]
    assert np.asarray(spy_envi.open(str(tmp_path / "one.hdr")).open_memmap()).tolist() == [[[7]]]


GCPS = [GroundControlPoint(row, col, 500000.0 + 30 * col, 4000000.0 - 30 * row) for row, col in ((0, 0), (0, 6), (4, 0), (4, 6))]
RPCS = RPC(height_off=3355.0, height_scale=3455.0, lat_off=40.0193171, lat_scale=0.0332739565, long_off=-62.3660099,
           long_scale=0.0440030997, line_off=842.94998, line_scale=842.95002, samp_off=843.05058, samp_scale=843.05058,
           line_num_coeff=[0.0127561752, 7.86107907, -1.08337968, 0.309949865] + [0.0] * 16,
           line_den_coeff=[1.0, 0.240935431, -0.0697484777, -5.58459427] + [0.0] * 16,
           samp_num_coeff=[-0.00185332456, 1.1054297, 7.73882024, -0.0481747188] + [0.0] * 16,
           samp_den_coeff=[1.0, 0.240935431, -0.0697484777, -5.58459427] + [0.0] * 16)


def same_rpcs(left: RPC, right: RPC) -> bool:
    return all(np.allclose(getattr(left, name), getattr(right, name), rtol=1e-15)
               for name in ("height_off", "height_scale", "lat_off", "lat_scale", "long_off", "long_scale", "line_off",
                            "line_scale", "samp_off", "samp_scale", "line_num_coeff", "line_den_coeff",
                            "samp_num_coeff", "samp_den_coeff"))


@pytest.mark.parametrize("chain", [(".tif", ".hdr", ".tif"), (".tif", ".tif")])
def test_gcps_and_rpcs_from_gdal_survive_conversion(tmp_path, chain):
    data = values("uint16", (5, 7, 1))
    for name, extra in (("gcps", {"gcps": GCPS, "crs": "EPSG:32611"}), ("rpcs", {"rpcs": RPCS})):
        source = tmp_path / f"{name}_0{chain[0]}"
        with rasterio.open(source, "w", driver="GTiff", width=7, height=5, count=1, dtype="uint16", **extra) as dst:
            dst.write(data[:, :, 0], 1)
        path = source
        for step, suffix in enumerate(chain[1:], start=1):
            path = write_cube(read_cube(path), tmp_path / f"{name}_{step}{suffix}")
        readable = path.with_suffix(".img") if path.suffix == ".hdr" else path
        seen = gdal(readable)
        np.testing.assert_array_equal(seen.data, data)
        if name == "gcps":
            assert [(g.row, g.col, g.x, g.y) for g in seen.gcps[0]] == [(g.row, g.col, g.x, g.y) for g in GCPS]
            # ENVI keeps no CRS for its geo points (GDAL's neither): the chain through ENVI loses it
            assert seen.gcps[1] == (None if ".hdr" in chain else CRS.from_epsg(32611))
        else:
            assert same_rpcs(seen.rpcs, RPCS)


def test_envi_gcps_and_rpcs_written_by_gdal_read_back_through_hsiuu(tmp_path):
    # GDAL's ENVI driver writes GCPs as "geo points" and RPCs as "rpc info"; hsiuu keeps both
    with rasterio.Env(GDAL_PAM_ENABLED="NO"):
        with rasterio.open(tmp_path / "gdal.img", "w", driver="ENVI", width=7, height=5, count=1, dtype="uint8",
                           gcps=GCPS, crs="EPSG:32611") as dst:
            dst.write(values("uint8", (1, 5, 7)))
    cube = read_cube(tmp_path / "gdal.hdr")
    write_cube(cube, tmp_path / "copy.tif")
    seen = gdal(tmp_path / "copy.tif")
    assert [(g.row, g.col, g.x, g.y) for g in seen.gcps[0]] == [(g.row, g.col, g.x, g.y) for g in GCPS]


@pytest.mark.parametrize("interleave", ["BSQ", "BIL", "BIP"])
@pytest.mark.parametrize("dtype", TYPES)
def test_envi_written_by_gdal_reads_the_same_in_hsiuu(tmp_path, dtype, interleave):
    data = np.moveaxis(values(dtype, (3, 6, 5)), -1, 0)
    with rasterio.Env(GDAL_PAM_ENABLED="NO"):
        with rasterio.open(tmp_path / "gdal.img", "w", driver="ENVI", width=6, height=3, count=5, dtype=dtype,
                           INTERLEAVE=interleave, crs="EPSG:32633", transform=TRANSFORM) as dst:
            dst.write(data)
    cube = read_cube(tmp_path / "gdal.hdr", complex_values=True)
    np.testing.assert_array_equal(cube.data, np.moveaxis(data, 0, -1))
    assert cube.crs == "EPSG:32633" and cube.transform == TRANSFORM


@pytest.mark.parametrize("interleave", ["bsq", "bil", "bip"])
@pytest.mark.parametrize("byteorder", [0, 1])
@pytest.mark.parametrize("dtype", TYPES)
def test_envi_written_by_spy_reads_the_same_in_hsiuu(tmp_path, dtype, byteorder, interleave):
    data = values(dtype, (4, 5, 3))
    metadata = {"wavelength": [0.45, 0.55, 0.65], "wavelength units": "micrometers", "fwhm": [0.01] * 3, "bbl": [1, 0, 1],
                "map info": ["UTM", 1, 1, 500000.0, 4000020.0, 30.0, 30.0, 11, "North", "WGS-84", "units=Meters"]}
    spy_envi.save_image(str(tmp_path / "spy.hdr"), data, dtype=dtype, interleave=interleave, byteorder=byteorder,
                        metadata=metadata, ext=".img")
    cube = read_cube(tmp_path / "spy.hdr", complex_values=True)
    np.testing.assert_array_equal(cube.data, data)
    np.testing.assert_allclose(cube.wavelengths, [450.0, 550.0, 650.0], rtol=1e-15)
    assert cube.bad_bands.tolist() == [False, True, False]
    assert cube.crs == "EPSG:32611" and cube.transform == TRANSFORM
