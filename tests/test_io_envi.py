"""ENVI reading and writing: every data type, interleave and byte order; header fields; map info; bad files."""

from __future__ import annotations

import gzip
import hashlib
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import spectral
from affine import Affine
from rasterio.enums import WktVersion

from hsiuu_cli.cube import Cube
from hsiuu_cli.errors import CubeFormatError, CubeReadError, CubeWriteError, OutputExistsError
from hsiuu_cli.grid import coarsened_transform, scaled_transform
from hsiuu_cli.io import check_output, read_cube, write_cube
from hsiuu_cli.io import envi
from hsiuu_cli.io.bands import select_bands
from hsiuu_cli.io.envi import same_crs

ENVI_TYPES = {1: "u1", 2: "i2", 3: "i4", 4: "f4", 5: "f8", 6: "c8", 9: "c16", 12: "u2", 13: "u4", 14: "i8", 15: "u8"}
LAYOUT_AXES = {"bsq": (2, 0, 1), "bil": (0, 2, 1), "bip": (0, 1, 2)}


def sample_values(dtype: np.dtype, shape=(3, 4, 5), seed: int = 0) -> np.ndarray:
    """Values spanning most of the type's range, so byte-order mistakes cannot go unnoticed."""
    rng = np.random.default_rng(seed)
    if dtype.kind == "f":
        return (rng.standard_normal(shape) * 1e3).astype(dtype)
    if dtype.kind == "c":
        return (rng.standard_normal(shape) * 1e3 + 1j * rng.standard_normal(shape) * 1e3).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)


def write_raw_envi(directory: Path, array: np.ndarray, *, code: int, interleave: str = "bsq",
                   byte_order: int = 0, offset: int = 0, extra: str = "", data_name: str = "cube.img") -> Path:
    """An ENVI file written by hand (not by the code under test)."""
    rows, cols, bands = array.shape
    stored = np.ascontiguousarray(array.transpose(LAYOUT_AXES[interleave]))
    stored = stored.astype(stored.dtype.newbyteorder("<" if byte_order == 0 else ">"))
    (directory / data_name).write_bytes(b"\x07" * offset + stored.tobytes())
    header = directory / (Path(data_name).stem + ".hdr")
    header.write_text(
        f"ENVI\nsamples = {cols}\nlines = {rows}\nbands = {bands}\nheader offset = {offset}\n"
        f"file type = ENVI Standard\ndata type = {code}\ninterleave = {interleave}\nbyte order = {byte_order}\n{extra}"
    )
    return header


def digest(*paths: Path) -> list[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


@pytest.mark.parametrize("byte_order", [0, 1])
@pytest.mark.parametrize("interleave", ["bsq", "bil", "bip"])
@pytest.mark.parametrize("code", sorted(ENVI_TYPES))
def test_every_type_interleave_and_byte_order_reads_and_writes_exactly(tmp_path, code, interleave, byte_order):
    array = sample_values(np.dtype(ENVI_TYPES[code]))
    header = write_raw_envi(tmp_path, array, code=code, interleave=interleave, byte_order=byte_order, offset=16)
    cube = read_cube(header, complex_values=code in (6, 9))
    assert cube.shape == array.shape
    assert cube.data.dtype.newbyteorder("=") == array.dtype
    np.testing.assert_array_equal(cube.data, array)

    out = tmp_path / "out" / "copy.hdr"
    out.parent.mkdir()
    write_cube(cube, out, interleave=interleave, creation_options={"BYTE_ORDER": str(byte_order)})
    written = (tmp_path / "out" / "copy.img").read_bytes()
    assert written == (tmp_path / "cube.img").read_bytes()[16:]  # same layout, no offset
    fields = envi.read_header(out)
    assert fields["data type"] == str(code) and fields["interleave"] == interleave
    assert fields["byte order"] == str(byte_order)
    np.testing.assert_array_equal(read_cube(out, complex_values=code in (6, 9)).data, array)


@pytest.mark.parametrize("code", [6, 9])
def test_complex_cubes_are_refused_by_the_methods_with_one_line(tmp_path, code):
    header = write_raw_envi(tmp_path, sample_values(np.dtype(ENVI_TYPES[code])), code=code)
    with pytest.raises(CubeFormatError, match=r"cube.hdr: holds complex values \(complex(64|128)\), which hsiuu's methods"):
        read_cube(header)


def test_data_file_path_and_other_extensions_find_each_other(tmp_path):
    array = sample_values(np.dtype("f4"))
    for name in ("a.img", "b.dat", "c.bil", "d"):
        write_raw_envi(tmp_path, array, code=4, data_name=name)
        header = tmp_path / (Path(name).stem + ".hdr")
        np.testing.assert_array_equal(read_cube(header).data, array)
        np.testing.assert_array_equal(read_cube(tmp_path / name).data, array)
    # scene.img.hdr naming
    (tmp_path / "e.img").write_bytes(array.transpose(2, 0, 1).astype("<f4").tobytes())
    (tmp_path / "e.img.hdr").write_text((tmp_path / "a.hdr").read_text())
    np.testing.assert_array_equal(read_cube(tmp_path / "e.img").data, array)


def test_reads_are_memory_mapped_read_only_windows(tmp_path):
    array = sample_values(np.dtype("i2"), shape=(40, 30, 6))
    header = write_raw_envi(tmp_path, array, code=2, interleave="bil", byte_order=1)
    cube = read_cube(header)
    base = cube.data
    while not isinstance(base, np.memmap) and base.base is not None:
        base = base.base
    assert isinstance(base, np.memmap)
    assert not cube.data.flags.writeable
    np.testing.assert_array_equal(cube.data[10:20, 5:9], array[10:20, 5:9])


HEADER_FIELDS = """description = {
  A test scene,
  over two lines}
wavelength units = Micrometers
wavelength = { 0.45 , 0.55,
   0.65 , 0.75 }
fwhm = { 0.01 , 0.01 , 0.012 , 0.0125 }
bbl = { 1 , 0 , 1 , 1 }
band names = { blue , green , red , nir }
data ignore value = -9999
reflectance scale factor = 10000
; a comment line
sensor type = AVIRIS
default bands = { 4 , 3 , 2 }
data gain values = { 1 , 2 , 3 , 4 }
map info = { UTM , 1 , 1 , 500000.5 , 4100000.25 , 30 , 30 , 33 , South , WGS-84 , units=Meters }
"""


def test_header_fields_become_cube_attributes_and_the_rest_is_kept(tmp_path):
    array = sample_values(np.dtype("i2"), shape=(3, 4, 4))
    header = write_raw_envi(tmp_path, array, code=2, extra=HEADER_FIELDS)
    cube = read_cube(header)
    np.testing.assert_allclose(cube.wavelengths, [450, 550, 650, 750])
    np.testing.assert_allclose(cube.fwhm, [10, 10, 12, 12.5])
    assert cube.bad_bands.tolist() == [False, True, False, False]
    assert cube.band_names == ["blue", "green", "red", "nir"]
    assert cube.nodata == -9999 and cube.scale_factor == 10000
    assert cube.description == "A test scene,\n  over two lines"
    assert cube.crs == "EPSG:32733"
    assert cube.transform == Affine(30, 0, 500000.5, 0, -30, 4100000.25)
    assert cube.metadata["sensor type"] == "AVIRIS"
    assert cube.metadata["default bands"] == "{ 4 , 3 , 2 }"

    write_cube(cube, tmp_path / "copy.hdr")
    copy = read_cube(tmp_path / "copy.hdr")
    for name in ("wavelengths", "fwhm", "bad_bands"):
        np.testing.assert_array_equal(getattr(copy, name), getattr(cube, name))
    assert (copy.band_names, copy.nodata, copy.scale_factor, copy.description) == (
        cube.band_names, cube.nodata, cube.scale_factor, cube.description)
    assert copy.metadata == cube.metadata
    text = (tmp_path / "copy.hdr").read_text()
    assert "wavelength units = Nanometers" in text
    assert "map info = { UTM , 1 , 1 , 500000.5 , 4100000.25 , 30 , 30 , 33 , South , WGS-84 , units=Meters }" in text


def test_wavelengths_are_written_with_every_digit(tmp_path):
    wavelengths = np.array([400.123456789012, 1e3 / 3, 2500.000000001])
    cube = Cube(np.zeros((2, 2, 3), np.float32), wavelengths=wavelengths, fwhm=wavelengths / 100)
    write_cube(cube, tmp_path / "w.hdr")
    back = read_cube(tmp_path / "w.hdr")
    np.testing.assert_array_equal(back.wavelengths, wavelengths)
    np.testing.assert_array_equal(back.fwhm, wavelengths / 100)


def test_per_band_metadata_that_no_longer_fits_is_dropped(tmp_path):
    array = sample_values(np.dtype("i2"), shape=(3, 4, 4))
    cube = read_cube(write_raw_envi(tmp_path, array, code=2, extra=HEADER_FIELDS))
    fewer = cube.with_bands(np.zeros((3, 4, 2), np.float32))
    write_cube(fewer, tmp_path / "two.hdr")
    fields = envi.read_header(tmp_path / "two.hdr")
    assert "data gain values" not in fields and "default bands" not in fields
    assert fields["sensor type"] == "AVIRIS"


def test_unitless_wavelengths_carry_through_untouched(tmp_path):
    extra = "wavelength units = Index\nwavelength = { 1 , 2 }\n"
    cube = read_cube(write_raw_envi(tmp_path, sample_values(np.dtype("u1"), (2, 2, 2)), code=1, extra=extra))
    assert cube.wavelengths is None
    write_cube(cube, tmp_path / "x.hdr")
    fields = envi.read_header(tmp_path / "x.hdr")
    assert fields["wavelength units"] == "Index" and fields["wavelength"] == "{ 1 , 2 }"


def test_unitless_wavelengths_follow_the_bands_or_are_dropped(tmp_path):
    extra = ("wavelength units = Wavenumber\nwavelength = { 10 , 20 , 30 , 40 }\nfwhm = { 1 , 2 , 3 , 4 }\n"
             "solar irradiance = { 5 , 6 , 7 , 8 }\n")
    cube = read_cube(write_raw_envi(tmp_path, sample_values(np.dtype("u1"), (2, 2, 4)), code=1, extra=extra))
    write_cube(select_bands(cube, [3, 1]), tmp_path / "two.hdr")
    fields = envi.read_header(tmp_path / "two.hdr")
    assert (fields["wavelength"], fields["fwhm"], fields["solar irradiance"]) == ("{ 40 , 20 }", "{ 4 , 2 }", "{ 8 , 6 }")
    assert read_cube(tmp_path / "two.hdr").shape == (2, 2, 2)

    write_cube(cube.with_bands(np.zeros((2, 2, 3), np.uint8)), tmp_path / "three.hdr")
    fields = envi.read_header(tmp_path / "three.hdr")
    assert not {"wavelength", "fwhm", "solar irradiance"} & set(fields)
    assert read_cube(tmp_path / "three.hdr").bands == 3


def test_band_names_and_description_with_braces_read_back(tmp_path):
    names = ["Red, 650nm {a}", "{NIR", "SWIR}"]
    cube = Cube(np.zeros((2, 2, 3), np.float32), band_names=names, description="scene {v2}, } and {")
    write_cube(cube, tmp_path / "b.hdr")
    back = read_cube(tmp_path / "b.hdr")
    assert back.band_names == ["Red; 650nm (a)", "(NIR", "SWIR)"]
    assert back.description == "scene (v2), ) and ("


def test_calibration_is_kept_with_stored_values_and_dropped_with_physical_values(tmp_path):
    # The reader leaves data gain/offset values unapplied: they map the stored numbers to radiance.
    array = sample_values(np.dtype("i2"), shape=(4, 4, 4))
    extra = HEADER_FIELDS + "data offset values = { 0 , 0 , 1 , 1 }\ndata reflectance gain values = { 1 , 1 , 1 , 1 }\n"
    cube = read_cube(write_raw_envi(tmp_path, array, code=2, extra=extra))
    calibration = {key: cube.metadata[key] for key in ("data gain values", "data offset values", "data reflectance gain values")}

    def written(cube: Cube, name: str, **options) -> dict[str, str]:
        write_cube(cube, tmp_path / name, **options)
        return {key: value for key, value in envi.read_header(tmp_path / name).items() if key in calibration}

    assert written(cube, "copy.hdr") == calibration
    assert written(cube, "as_float.hdr", dtype="float32") == calibration  # same numbers, scale factor kept
    doubled = cube.replace(transform=scaled_transform(cube.transform, 2), data=np.repeat(np.repeat(array, 2, 0), 2, 1))
    assert written(doubled, "doubled.hdr") == calibration  # integers on a finer grid, same scale factor
    physical = cube.replace(data=cube.physical(), scale_factor=None, metadata=cube.physical_metadata())
    assert written(physical, "physical.hdr") == {}
    coarse = physical.regridded(physical.data[::2, ::2], coarsened_transform(cube.transform, 2))
    assert written(coarse, "coarse.hdr") == {}
    # values that never had a scale factor are the stored numbers, float or not: a copy keeps the gains
    plain = cube.replace(data=cube.physical(), scale_factor=None)
    assert written(plain, "plain.hdr") == calibration
    assert plain.physical_metadata() == plain.metadata


# ---------------------------------------------------------------------------------------------
# map info
# ---------------------------------------------------------------------------------------------


def gdal_transform(header_dir: Path, map_info: str) -> Affine:
    np.zeros((4, 5), np.uint8).tofile(header_dir / "g.img")
    (header_dir / "g.hdr").write_text(
        "ENVI\nsamples = 5\nlines = 4\nbands = 1\ndata type = 1\ninterleave = bsq\nbyte order = 0\n"
        f"map info = {map_info}\n"
    )
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(header_dir / "g.img") as src:
        return src.transform


@pytest.mark.parametrize("rotation", [None, 34.0, -20.0, 135.0])
def test_map_info_matches_gdal(tmp_path, rotation):
    suffix = f" , rotation={rotation}" if rotation is not None else ""
    map_info = f"{{ UTM , 1 , 1 , 579717.18 , 3714550.7 , 16.9 , 16.9 , 11 , North , WGS-84 , units=Meters{suffix} }}"
    crs, transform = envi.parse_map_info(map_info, None, tmp_path / "g.hdr")
    assert crs == "EPSG:32611"
    assert transform.almost_equals(gdal_transform(tmp_path, map_info), precision=1e-9)


def test_rotated_reference_pixel_is_where_map_info_says(tmp_path):
    # GDAL ignores the rotation when the reference pixel is not (1, 1); the definition does not.
    map_info = "{ UTM , 2.5 , 3.5 , 500000 , 4000000 , 10 , 10 , 11 , North , WGS-84 , units=Meters , rotation=30 }"
    _, transform = envi.parse_map_info(map_info, None, tmp_path / "g.hdr")
    x, y = transform @ (1.5, 2.5)
    assert (x, y) == pytest.approx((500000, 4000000), abs=1e-6)
    assert math.degrees(math.atan2(transform.d, transform.a)) == pytest.approx(30)


def test_map_info_regenerated_for_a_new_grid_reads_back_the_same(tmp_path):
    transform = Affine.translation(579717.18, 3714550.7) @ Affine.rotation(-34) @ Affine.scale(4.2, -4.2)
    cube = Cube(np.zeros((4, 4, 1), np.float32), crs="EPSG:32611", transform=transform,
                metadata={"map info": "{ UTM , 1 , 1 , 1 , 1 , 30 , 30 , 11 , North , WGS-84 , units=Meters }"})
    write_cube(cube, tmp_path / "r.hdr")
    back = read_cube(tmp_path / "r.hdr")
    assert back.crs == "EPSG:32611"
    assert back.transform.almost_equals(transform, precision=1e-9)
    assert "rotation=-34" in envi.read_header(tmp_path / "r.hdr")["map info"]
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(tmp_path / "r.img") as src:
        assert src.transform.almost_equals(transform, precision=1e-6)


@pytest.mark.parametrize("rotation", [0, 45, 90, 180, -180, -90.5, 270])
def test_map_info_written_for_any_rotation_reads_back(tmp_path, rotation):
    transform = Affine.translation(5e5, 4e6) @ Affine.rotation(rotation) @ Affine.scale(10, -10)
    map_info, _ = envi.format_map_info("EPSG:32611", transform, tmp_path / "x.hdr")
    crs, back = envi.parse_map_info(map_info, None, tmp_path / "x.hdr")
    assert crs == "EPSG:32611" and back.almost_equals(transform, precision=1e-9)


def test_coordinate_system_string_is_preferred_and_kept(tmp_path):
    wkt = rasterio.crs.CRS.from_epsg(3035).to_wkt(version=WktVersion.WKT1_ESRI)
    extra = (f"map info = {{ Lambert Azimuthal Equal Area , 1 , 1 , 4321000 , 3210000 , 20 , 20 , units=Meters }}\n"
             f"coordinate system string = {{{wkt}}}\n")
    header = write_raw_envi(tmp_path, sample_values(np.dtype("u1"), (2, 2, 1)), code=1, extra=extra)
    cube = read_cube(header)
    assert rasterio.crs.CRS.from_user_input(cube.crs) == rasterio.crs.CRS.from_epsg(3035)
    write_cube(cube, tmp_path / "copy.hdr")
    fields = envi.read_header(tmp_path / "copy.hdr")
    assert fields["coordinate system string"] == f"{{{wkt}}}"


def test_geographic_map_info(tmp_path):
    crs, transform = envi.parse_map_info(
        "{ Geographic Lat/Lon , 1 , 1 , -117.5 , 33.25 , 0.001 , 0.001 , WGS-84 , units=Degrees }", None, tmp_path)
    assert crs == "EPSG:4326" and transform == Affine(0.001, 0, -117.5, 0, -0.001, 33.25)


# Headers from GDAL's test suite (autotest/gcore/data/byte.hdr, autotest/gdrivers/data/aea.hdr,
# envi/uint16_envi_bigendian.hdr): what GDAL reads from them is what hsiuu must read.
GDAL_HEADERS = {
    "utm_without_datum": ("map info = {UTM, 1, 1, 440720.000000, 3751320.000000, 60.000000, 60.000000, 11, North}\n",
                          "EPSG:26711"),
    "albers_projection_info": (
        "map info = {Albers Equal Area Example, 1, 1, -936408.178, 2423902.344, 28.500000, 28.500000}\n"
        "projection info = {9, 6378206.4, 6356583.8, 23.000000, -96.000000, 0., 0., 29.500000, 45.500000, "
        "Albers Equal Area Example}\n", None),
    "utm_nad27_named": ("map info = {UTM, 1, 1, 440720, 3751320, 60, 60, 11, North,North America 1927}\n", "EPSG:26711"),
    "geographic_without_datum": ("map info = {Geographic Lat/Lon, 1, 1, -44.8, -22.9, 0.003432, 0.003432, units=Degrees}\n",
                                 "EPSG:4326"),
    "arbitrary": ("map info = {Arbitrary, 1, 1, 10, 20, 1, 1}\n", None),
}


@pytest.mark.parametrize("case", sorted(GDAL_HEADERS))
def test_georeferencing_fields_mean_what_gdal_reads(tmp_path, case):
    fields, epsg = GDAL_HEADERS[case]
    header = write_raw_envi(tmp_path, sample_values(np.dtype("u1"), (3, 4, 1)), code=1, extra=fields)
    cube = read_cube(header)
    theirs = gdal_crs_of(tmp_path / "cube.img")
    if case == "arbitrary":
        assert cube.crs is None and theirs.to_wkt().startswith("LOCAL_CS")  # GDAL's name for "no CRS known"
        return
    assert rasterio.crs.CRS.from_user_input(cube.crs) == theirs
    if epsg:
        assert cube.crs == epsg
    else:
        assert "Albers" in cube.crs and "6378206.4" in cube.crs  # the ellipsoid of projection info
    # written back, GDAL still reads the same CRS
    write_cube(cube, tmp_path / "copy.hdr")
    assert gdal_crs_of(tmp_path / "copy.img") == theirs


def test_a_datum_gdal_does_not_know_is_reported(tmp_path, caplog):
    extra = "map info = {UTM, 1, 1, 440720, 3751320, 60, 60, 11, North, Mars 2000}\n"
    header = write_raw_envi(tmp_path, sample_values(np.dtype("u1"), (3, 4, 1)), code=1, extra=extra)
    with caplog.at_level(logging.WARNING, logger="hsiuu_cli"):
        cube = read_cube(header)
    assert "Mars 2000" in caplog.text and "WGS84" in caplog.text  # GDAL's own words: defaulting to WGS84
    assert cube.crs == "EPSG:32611"


def test_gzip_data_file_is_read(tmp_path):
    # autotest/gdrivers/data/envi/aea_compressed.hdr: "file compression = 1"
    array = sample_values(np.dtype("u2"), (3, 4, 2))
    header = write_raw_envi(tmp_path, array, code=12, byte_order=1, extra="file compression = 1\n")
    data = tmp_path / "cube.img"
    data.write_bytes(gzip.compress(data.read_bytes()))
    cube = read_cube(header)
    np.testing.assert_array_equal(cube.data, array)
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(data) as src:
        np.testing.assert_array_equal(np.moveaxis(src.read(), 0, -1), cube.data)
    write_cube(cube, tmp_path / "plain.hdr")  # written uncompressed, and says so
    assert "file compression" not in envi.read_header(tmp_path / "plain.hdr")
    np.testing.assert_array_equal(read_cube(tmp_path / "plain.hdr").data, array)
    data.write_bytes(b"not gzip at all")
    with pytest.raises(CubeReadError, match="file compression = 1 but the data file is not valid gzip"):
        read_cube(header)


def gdal_crs_of(data_file: Path):
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(data_file) as src:
        return src.crs


def test_state_plane_is_read_as_gdal_reads_it_and_its_map_info_kept_verbatim(tmp_path):
    map_info = "{ State Plane (NAD 83) , 1 , 1 , 1000 , 2000 , 2 , 2 , 405 , units=Feet }"
    header = write_raw_envi(tmp_path, sample_values(np.dtype("u1"), (2, 2, 1)), code=1, extra=f"map info = {map_info}\n")
    cube = read_cube(header)
    assert rasterio.crs.CRS.from_user_input(cube.crs) == gdal_crs_of(tmp_path / "cube.img")
    assert cube.crs.startswith('PROJCS["NAD83 / California zone 5"') and 'UNIT["Foot (International)"' in cube.crs
    assert cube.transform == Affine(2, 0, 1000, 0, -2, 2000)
    write_cube(cube, tmp_path / "copy.hdr")
    fields = envi.read_header(tmp_path / "copy.hdr")
    assert fields["map info"] == map_info and "coordinate system string" not in fields


def test_state_plane_keeps_its_fields_on_a_new_grid(tmp_path):
    map_info = "{ State Plane (NAD 83) , 1.5 , 1.5 , 2000001.5 , 499998.5 , 3.0 , 3.0 , 0405 , units=Feet , rotation=30 }"
    header = write_raw_envi(tmp_path, sample_values(np.dtype("f4"), (4, 4, 2)), code=4, extra=f"map info = {map_info}\n")
    cube = read_cube(header)
    assert rasterio.crs.CRS.from_user_input(cube.crs) == gdal_crs_of(tmp_path / "cube.img")
    corner = cube.transform @ (0, 0)
    for name, transform in (("fine.hdr", scaled_transform(cube.transform, 2)),
                            ("coarse.hdr", coarsened_transform(cube.transform, 2))):
        write_cube(cube.replace(transform=transform), tmp_path / name)
        written = envi.read_header(tmp_path / name)["map info"]
        size = "1.5" if name == "fine.hdr" else "6"
        assert written == (f"{{ State Plane (NAD 83) , 1 , 1 , {envi.format_number(corner[0])} , "
                           f"{envi.format_number(corner[1])} , {size} , {size} , 0405 , units=Feet , rotation=30 }}")
        back = read_cube(tmp_path / name)
        assert same_crs(back.crs, cube.crs) and back.transform.almost_equals(transform, precision=1e-6)
        with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(header.with_suffix(".img")) as src, \
                rasterio.open((tmp_path / name).with_suffix(".img")) as out:
            assert src.crs.to_wkt().startswith('PROJCS["NAD83 / California zone 5"') and out.crs == src.crs
            assert out.transform.almost_equals(transform, precision=1e-6)


def test_utm_map_info_on_a_new_grid_is_written_afresh(tmp_path):
    header = write_raw_envi(tmp_path, sample_values(np.dtype("f4"), (4, 4, 2)), code=4,
                            extra="map info = {UTM, 1, 1, 500000.5, 4100000.25, 30.0, 30.0, 33, South, WGS-84, units=Meters}\n")
    cube = read_cube(header)
    write_cube(cube.replace(transform=scaled_transform(cube.transform, 2)), tmp_path / "fine.hdr")
    fields = envi.read_header(tmp_path / "fine.hdr")
    assert fields["map info"] == "{ UTM , 1 , 1 , 500000.5 , 4100000.25 , 15 , 15 , 33 , South , WGS-84 , units=Meters }"
    esri_wkt = rasterio.crs.CRS.from_epsg(32733).to_wkt(version=WktVersion.WKT1_ESRI)
    assert fields["coordinate system string"] == "{" + esri_wkt + "}"
    assert read_cube(tmp_path / "fine.hdr").crs == "EPSG:32733"



# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------


def good_file(tmp_path: Path) -> Path:
    return write_raw_envi(tmp_path, sample_values(np.dtype("f4"), (3, 4, 5)), code=4)


def test_missing_file(tmp_path):
    with pytest.raises(CubeReadError, match="file not found") as err:
        read_cube(tmp_path / "nothing.hdr")
    assert "nothing.hdr" in str(err.value)


def test_header_without_data_file(tmp_path):
    header = good_file(tmp_path)
    (tmp_path / "cube.img").unlink()
    with pytest.raises(CubeReadError, match="no data file") as err:
        read_cube(header)
    assert "cube.hdr" in str(err.value)


def test_data_file_without_header(tmp_path):
    good_file(tmp_path)
    (tmp_path / "cube.hdr").unlink()
    with pytest.raises(CubeReadError, match="no ENVI header") as err:
        read_cube(tmp_path / "cube.img")
    assert "cube.img" in str(err.value)


def test_truncated_data_file(tmp_path):
    header = good_file(tmp_path)
    data = tmp_path / "cube.img"
    data.write_bytes(data.read_bytes()[:-7])
    with pytest.raises(CubeReadError, match="truncated") as err:
        read_cube(header)
    assert "cube.img" in str(err.value) and "233" in str(err.value)


@pytest.mark.parametrize("field, value", [("bands", "6"), ("samples", "5"), ("data type", "5")])
def test_header_needing_more_than_the_data_file_holds(tmp_path, field, value):
    header = good_file(tmp_path)
    text = header.read_text()
    header.write_text("\n".join(f"{field} = {value}" if line.startswith(f"{field} =") else line
                                for line in text.splitlines()))
    with pytest.raises(CubeReadError, match="truncated") as err:
        read_cube(header)
    assert "cube.img" in str(err.value) and "the file has 240" in str(err.value)


def test_data_file_longer_than_the_header_needs_is_read_as_gdal_and_spy_read_it(tmp_path, caplog):
    # GDAL's test files envirpc.img, rotation.img, envistat and testenviclasses are one byte longer
    # than their headers say (GDAL pads a one-byte image); GDAL and SPy read them
    array = sample_values(np.dtype("u1"), (3, 4, 5))
    header = write_raw_envi(tmp_path, array, code=1)
    with open(tmp_path / "cube.img", "ab") as data:
        data.write(b"\x00")
    with caplog.at_level(logging.INFO, logger="hsiuu_cli"):
        cube = read_cube(header)
    np.testing.assert_array_equal(cube.data, array)
    assert "has 1 byte more than the header" in caplog.text and "cube.img" in caplog.text
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(tmp_path / "cube.img") as src:
        np.testing.assert_array_equal(np.moveaxis(src.read(), 0, -1), cube.data)
    np.testing.assert_array_equal(np.asarray(spectral.envi.open(str(header)).load()), cube.data)


@pytest.mark.parametrize("code, message", [("7", "unknown ENVI data type 7"), ("x", "not an integer")])
def test_unsupported_data_type(tmp_path, code, message):
    header = good_file(tmp_path)
    header.write_text(header.read_text().replace("data type = 4", f"data type = {code}"))
    with pytest.raises(CubeFormatError, match=message) as err:
        read_cube(header)
    assert "cube.hdr" in str(err.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("not a header at all\nsamples = 3\n", "first line is not 'ENVI'"),
        ("ENVI\nsamples = 4\nthis line is garbage\n", "unparsable header line 3"),
        ("ENVI\nsamples = 4\nwavelength = { 1, 2,\n3\n", "unclosed"),
        ("ENVI\nlines = 3\nbands = 5\ndata type = 4\n", "lacks the required field 'samples'"),
        ("ENVI\nsamples = 4\nlines = 3\nbands = 5\ndata type = 4\nwavelength = { 1 , 2 }\n", "2 values in 'wavelength' for 5"),
        ("ENVI\nsamples = 4\nlines = 3\nbands = 5\ndata type = 4\ninterleave = bxq\n", "unknown interleave"),
    ],
)
def test_garbage_header(tmp_path, text, message):
    header = good_file(tmp_path)
    header.write_text(text)
    with pytest.raises(CubeFormatError, match=message) as err:
        read_cube(header)
    assert "cube.hdr" in str(err.value)


def test_binary_file_named_hdr(tmp_path):
    header = good_file(tmp_path)
    header.write_bytes(bytes(range(256)))
    with pytest.raises(CubeFormatError, match="not an ENVI header"):
        read_cube(header)


def test_reading_never_changes_or_adds_files(tmp_path):
    header = good_file(tmp_path)
    before = digest(header, tmp_path / "cube.img")
    read_cube(header).data.sum()
    read_cube(tmp_path / "cube.img").data.sum()
    assert digest(header, tmp_path / "cube.img") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cube.hdr", "cube.img"]


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------


def test_existing_output_is_refused_unless_overwrite(tmp_path):
    cube = Cube(np.ones((2, 3, 4), np.float32))
    write_cube(cube, tmp_path / "o.hdr")
    for existing in ("o.hdr", "o.img"):
        with pytest.raises(OutputExistsError, match="exists") as err:
            check_output(tmp_path / existing, overwrite=False)
        assert existing in str(err.value)
    before = digest(tmp_path / "o.img")
    with pytest.raises(OutputExistsError):
        write_cube(Cube(np.zeros((2, 3, 4), np.float32)), tmp_path / "o.hdr")
    assert digest(tmp_path / "o.img") == before
    write_cube(Cube(np.zeros((2, 3, 4), np.float32)), tmp_path / "o.hdr", overwrite=True)
    assert read_cube(tmp_path / "o.hdr").data.max() == 0


def unwritable_directory(tmp_path: Path) -> Path:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        (locked / "probe").touch()
    except OSError:
        return locked
    (locked / "probe").unlink()
    for candidate in (Path("/sys"), Path("/proc/self")):  # root writes anywhere but here
        try:
            (candidate / "hsiuu-probe").touch()
        except OSError:
            return candidate
    pytest.skip("no unwritable directory available")


def test_unwritable_directory(tmp_path):
    directory = unwritable_directory(tmp_path)
    with pytest.raises(CubeWriteError, match="not writable") as err:
        write_cube(Cube(np.ones((2, 2, 2), np.float32)), directory / "o.hdr")
    assert "o.img" in str(err.value) or "o.hdr" in str(err.value)
    with pytest.raises(CubeWriteError, match="does not exist"):
        check_output(tmp_path / "missing" / "o.tif", overwrite=False)


@pytest.mark.parametrize("failure", [KeyboardInterrupt, OSError])
def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch, failure):
    def explode(*args, **kwargs):
        Path(args[1]).write_bytes(b"partial")
        raise failure("stop")

    monkeypatch.setattr(envi, "_write_pixels", explode)
    with pytest.raises((failure, CubeWriteError)):
        write_cube(Cube(np.ones((2, 2, 2), np.float32)), tmp_path / "o.hdr")
    assert list(tmp_path.iterdir()) == []


def test_dtype_conversion_rounds_and_refuses_values_that_do_not_fit(tmp_path):
    cube = Cube(np.array([[[0.4, 1.6, -2.5]]], np.float32))
    write_cube(cube, tmp_path / "i.hdr", dtype="int16")
    assert read_cube(tmp_path / "i.hdr").data.ravel().tolist() == [0, 2, -2]
    with pytest.raises(CubeWriteError, match="do not fit in uint8"):
        write_cube(cube, tmp_path / "u.hdr", dtype="uint8")
    with pytest.raises(CubeWriteError, match="NaN"):
        write_cube(Cube(np.full((1, 1, 1), np.nan, np.float32)), tmp_path / "n.hdr", dtype="int16")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i.hdr", "i.img"]


def test_sheared_transform_cannot_become_map_info(tmp_path):
    cube = Cube(np.ones((2, 2, 1), np.float32), transform=Affine(1, 0.5, 0, 0, -1, 0))
    with pytest.raises(CubeWriteError, match="sheared"):
        write_cube(cube, tmp_path / "s.hdr")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.realdata
def test_real_scene_reads_like_gdal(shared_data):
    header = shared_data / "scenes" / "salton_sea" / "salton_sea.hdr"
    cube = read_cube(header)
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(header.with_suffix(".img")) as src:
        assert cube.transform.almost_equals(src.transform, precision=1e-9)
        assert rasterio.crs.CRS.from_user_input(cube.crs) == src.crs
        np.testing.assert_array_equal(cube.data[:, :, 40], src.read(41))
    assert cube.shape == (51, 56, 224) and cube.bad_bands.sum() == 20


def test_atomic_write_for_other_outputs(tmp_path):
    from hsiuu_cli.io import atomic_write

    target = tmp_path / "preview.png"
    with atomic_write(target, overwrite=False) as temporary:
        assert temporary.parent == tmp_path and temporary.suffix == ".png" and temporary != target
        temporary.write_bytes(b"first")
    assert target.read_bytes() == b"first"
    with pytest.raises(OutputExistsError, match="preview.png"):
        with atomic_write(target, overwrite=False):
            pass
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(target, overwrite=True) as temporary:
            temporary.write_bytes(b"half")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["preview.png"]


@pytest.mark.parametrize("source, target", [("a.hdr", "a.hdr"), ("a.hdr", "a.dat"), ("a.img", "a.hdr"), ("g.tif", "g.tif")])
def test_an_output_never_overwrites_its_input(tmp_path, source, target):
    """Not even with overwrite: the input may be memory-mapped, and a shared header would corrupt it."""
    write_cube(Cube(data=np.arange(32, dtype=np.float32).reshape(4, 4, 2)), tmp_path / "a.hdr")
    write_cube(Cube(data=np.arange(32, dtype=np.float32).reshape(4, 4, 2)), tmp_path / "g.tif")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    cube = read_cube(tmp_path / source)
    derived = cube.replace(data=np.asarray(cube.data) * 2)  # a result computed from the input keeps its sources
    with pytest.raises(CubeWriteError, match="output is the input"):
        write_cube(derived, tmp_path / target, overwrite=True, interleave="bip" if target.endswith(".dat") else "bsq")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_output_set_takes_back_its_files_when_a_later_one_fails(tmp_path):
    from hsiuu_cli.io import output_set

    cube = Cube(data=np.zeros((2, 2, 1), np.float32))
    with pytest.raises(KeyboardInterrupt):
        with output_set() as files:
            write_cube(cube, tmp_path / "a.hdr")
            files += [tmp_path / "a.hdr", tmp_path / "a.img"]
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with output_set() as files:
        write_cube(cube, tmp_path / "b.hdr")
        files.append(tmp_path / "b.hdr")
    assert (tmp_path / "b.hdr").exists()


def test_a_band_or_more_of_surplus_is_a_warning(tmp_path, caplog):
    array = sample_values(np.dtype("f4"), (3, 4, 5))
    header = write_raw_envi(tmp_path, array, code=4)
    header.write_text(header.read_text().replace("bands = 5", "bands = 4"))
    with caplog.at_level(logging.INFO, logger="hsiuu_cli"):
        cube = read_cube(header)
    np.testing.assert_array_equal(cube.data, array[:, :, :4])  # BSQ: the first four bands, as GDAL reads them
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and "48 bytes more" in record.getMessage()
    assert "check samples, lines, bands and data type in cube.hdr" in record.getMessage()
