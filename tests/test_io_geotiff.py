"""GeoTIFF reading and writing, and the Salton Sea ENVI → GeoTIFF → ENVI round trip."""

from __future__ import annotations

import hashlib
import logging
import math

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from hsiuu_cli.cube import Cube
from hsiuu_cli.errors import CubeFormatError, CubeReadError, CubeWriteError, OutputExistsError
from hsiuu_cli.io import describe_file, envi, read_cube, write_cube


def full_cube(dtype=np.float32, nodata=-1.0) -> Cube:
    rng = np.random.default_rng(3)
    data = (rng.uniform(0, 100, (6, 7, 4))).astype(dtype)
    transform = Affine.translation(350000.25, 4200000.5) @ Affine.rotation(-12.5) @ Affine.scale(2.5, -2.5)
    return Cube(
        data,
        wavelengths=np.array([450.123456789, 550.5, 650.0, 1000.0 / 3]),
        fwhm=np.array([10.1, 10.2, 10.3, 1.0 / 7]),
        bad_bands=np.array([False, True, False, False]),
        nodata=nodata,
        scale_factor=10000.0,
        band_names=["blue", "green", "red", "nir edge"],
        crs="EPSG:32633",
        transform=Affine(*transform[:6]),
        description="synthetic cube",
        metadata={"sensor type": "test", "map info": "{ UTM , 1 , 1 , 1 , 2 , 3 , 3 , 33 , North , WGS-84 }"},
    )


def assert_same_cube(actual: Cube, expected: Cube) -> None:
    np.testing.assert_array_equal(actual.data, expected.data)
    assert actual.data.dtype == expected.data.dtype
    for name in ("wavelengths", "fwhm", "bad_bands"):
        np.testing.assert_array_equal(getattr(actual, name), getattr(expected, name))
    assert actual.band_names == expected.band_names
    assert actual.nodata == expected.nodata
    assert actual.scale_factor == expected.scale_factor
    assert actual.description == expected.description
    assert CRS.from_user_input(actual.crs) == CRS.from_user_input(expected.crs)
    assert actual.transform.almost_equals(expected.transform, precision=1e-9)


def test_every_field_survives_a_geotiff(tmp_path):
    cube = full_cube()
    write_cube(cube, tmp_path / "c.tif")
    back = read_cube(tmp_path / "c.tif")
    assert_same_cube(back, cube)
    assert back.metadata == cube.metadata
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.tif"]  # no .aux.xml


def test_tags_are_where_other_tools_look(tmp_path):
    cube = full_cube()
    write_cube(cube, tmp_path / "c.tif")
    with rasterio.open(tmp_path / "c.tif") as src:
        assert src.descriptions == ("blue", "green", "red", "nir edge")
        assert src.nodata == -1.0
        assert src.tags(4)["wavelength"] == repr(1000.0 / 3)
        assert src.tags(4)["wavelength_units"] == "Nanometers"
        assert float(src.tags(4, ns="IMAGERY")["CENTRAL_WAVELENGTH_UM"]) == (1000.0 / 3) / 1000.0
        assert float(src.tags(4, ns="IMAGERY")["FWHM_UM"]) == (1.0 / 7) / 1000.0
        assert src.tags(2)["bbl"] == "0" and src.tags(1)["bbl"] == "1"
        assert src.tags()["scale_factor"] == "10000"
        assert src.scales[0] == pytest.approx(1e-4)
        assert src.tags(ns="ENVI")["sensor type"] == "test"


def test_bands_without_names_are_labelled_as_an_enmap_product_labels_them(tmp_path):
    cube = full_cube().replace(band_names=None)
    write_cube(cube, tmp_path / "c.tif")
    with rasterio.open(tmp_path / "c.tif") as src:
        assert src.descriptions[1] == "band 2 (550.5 Nanometers)" and src.descriptions[3] == "band 4 (333.333 Nanometers)"
        assert src.tags(2) == {"wavelength": "550.5", "wavelength_units": "Nanometers", "fwhm": "10.2", "bbl": "0"}
    back = read_cube(tmp_path / "c.tif")
    assert back.band_names is None  # a label is not a name
    np.testing.assert_array_equal(back.wavelengths, cube.wavelengths)


@pytest.mark.realdata
def test_a_real_enmap_product_reads_with_its_band_metadata(shared_data):
    tile = shared_data / "scenes" / "enmap_potsdam" / "enmap_potsdam_tile_128_0.tif"
    if not tile.exists():
        pytest.skip("EnMAP tiles not in ../shared/data")
    cube = read_cube(tile)
    with rasterio.open(tile) as src:
        expected = [float(src.tags(b)["wavelength"]) for b in range(1, src.count + 1)]
        fwhm = [float(src.tags(b)["fwhm"]) for b in range(1, src.count + 1)]
        bad = [src.tags(b)["bbl"] == "0" for b in range(1, src.count + 1)]
        assert src.descriptions[0] == "band 1 (418.24 Nanometers)"
    np.testing.assert_array_equal(cube.wavelengths, expected)
    np.testing.assert_array_equal(cube.fwhm, fwhm)
    assert cube.bad_bands.tolist() == bad and any(bad)
    assert cube.band_names is None and cube.crs == "EPSG:32633"


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_imagery_domain_alone_gives_wavelengths(tmp_path):
    path = tmp_path / "gdal.tif"
    with rasterio.open(path, "w", driver="GTiff", width=2, height=2, count=2, dtype="uint16") as dst:
        dst.write(np.ones((2, 2, 2), np.uint16))
        dst.update_tags(1, ns="IMAGERY", CENTRAL_WAVELENGTH_UM="0.4925", FWHM_UM="0.066")
        dst.update_tags(2, ns="IMAGERY", CENTRAL_WAVELENGTH_UM="0.5598", FWHM_UM="0.036")
    cube = read_cube(path)
    np.testing.assert_allclose(cube.wavelengths, [492.5, 559.8])
    np.testing.assert_allclose(cube.fwhm, [66, 36])
    assert cube.crs is None and cube.transform is None


@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"])
def test_geotiff_dtypes(tmp_path, dtype):
    cube = full_cube(dtype=np.dtype(dtype), nodata=0)
    write_cube(cube, tmp_path / "d.tif")
    assert_same_cube(read_cube(tmp_path / "d.tif"), cube)


def test_creation_options_and_interleave(tmp_path):
    cube = full_cube()
    write_cube(cube, tmp_path / "z.tif", creation_options={"COMPRESS": "DEFLATE", "TILED": "YES"}, interleave="bip")
    with rasterio.open(tmp_path / "z.tif") as src:
        assert src.compression.name.lower() == "deflate"
        assert src.profile["tiled"] and src.interleaving.name.lower() == "pixel"
    assert_same_cube(read_cube(tmp_path / "z.tif"), cube)


@pytest.mark.parametrize(
    "options, message",
    [({"COMPRESS": "NOPE"}, "COMPRESS"), ({"NO_SUCH": "1"}, "NO_SUCH"), ({"PREDICTOR": "3"}, "PREDICTOR=3")],
)
def test_rejected_creation_option_leaves_nothing(tmp_path, options, message):
    with pytest.raises(CubeWriteError, match=message) as err:
        write_cube(full_cube(dtype=np.int16), tmp_path / "z.tif", creation_options=options)
    assert str(err.value).startswith(f"{tmp_path / 'z.tif'}: ")
    assert "hsiuu-tmp" not in str(err.value) and "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_bil_geotiff_is_refused(tmp_path):
    with pytest.raises(CubeWriteError, match="interleave 'bil'"):
        write_cube(full_cube(), tmp_path / "z.tif", interleave="bil")


def test_non_georeferenced_cube(tmp_path):
    cube = Cube(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
    write_cube(cube, tmp_path / "p.tif")
    back = read_cube(tmp_path / "p.tif")
    assert back.transform is None and back.crs is None
    np.testing.assert_array_equal(back.data, cube.data)


def test_non_georeferenced_cube_reads_without_warning(tmp_path, recwarn):
    write_cube(Cube(np.arange(24, dtype=np.uint8).reshape(2, 3, 4)), tmp_path / "p.tif")
    recwarn.clear()
    read_cube(tmp_path / "p.tif")
    describe_file(tmp_path / "p.tif")
    assert [str(w.message) for w in recwarn] == []


def gdal_raster(path, data, *, scales=None, offsets=None, nodata=None, tags=None, band_tags=None):
    """A GeoTIFF written by GDAL alone (no hsiuu tags), data bands × rows × cols."""
    with rasterio.open(
        path, "w", driver="GTiff", height=data.shape[1], width=data.shape[2], count=data.shape[0],
        dtype=data.dtype.name, crs="EPSG:32633", transform=Affine(10, 0, 300000, 0, -10, 5000000), nodata=nodata,
    ) as dst:
        dst.write(data)
        if scales is not None:
            dst.scales = scales
        if offsets is not None:
            dst.offsets = offsets
        dst.update_tags(**(tags or {}))
        for band, values in enumerate(band_tags or [], start=1):
            dst.update_tags(band, **values)
    return path


def test_uniform_gdal_scale_keeps_stored_values(tmp_path):
    data = np.full((3, 4, 5), 3893, np.int16)
    cube = read_cube(gdal_raster(tmp_path / "s.tif", data, scales=[1e-4] * 3))
    assert cube.data.dtype == np.int16
    np.testing.assert_array_equal(cube.data, np.moveaxis(data, 0, -1))
    assert cube.scale_factor == pytest.approx(10000.0)


def test_band_offsets_give_physical_values(tmp_path):
    # Landsat Collection 2 style: physical = stored × scale + offset, 0 = no data
    data = np.full((3, 4, 5), 3893, np.int16)
    data[:, 0, 0] = 0
    data[1, 2, 2] = 0  # one band at the no-data value does not make a pixel no-data
    cube = read_cube(gdal_raster(tmp_path / "l.tif", data, scales=[1e-4] * 3, offsets=[-0.1] * 3, nodata=0))
    assert cube.data.dtype == np.float32
    assert cube.scale_factor is None
    assert np.isnan(cube.nodata)
    np.testing.assert_allclose(cube.data[1, 1], 0.2893, rtol=1e-6)
    assert np.isnan(cube.data[0, 0]).all()
    np.testing.assert_allclose(cube.data[2, 2], [0.2893, -0.1, 0.2893], rtol=1e-6)
    np.testing.assert_array_equal(cube.valid_mask(), np.arange(20).reshape(4, 5) != 0)
    np.testing.assert_allclose(cube.physical()[1, 1], 0.2893, rtol=1e-6)

    write_cube(cube, tmp_path / "out.tif")
    with rasterio.open(tmp_path / "out.tif") as src:
        assert src.offsets == (0.0,) * 3 and src.scales == (1.0,) * 3
    np.testing.assert_array_equal(read_cube(tmp_path / "out.tif").data, cube.data)


def test_differing_band_scales_give_physical_values(tmp_path):
    data = np.full((4, 2, 3), 2000, np.uint16)
    path = gdal_raster(tmp_path / "m.tif", data, scales=[1e-4, 2e-4, 1e-4, 1e-3])
    cube = read_cube(path)
    assert cube.data.dtype == np.float32 and cube.scale_factor is None and cube.nodata is None
    np.testing.assert_allclose(cube.data[0, 0], [0.2, 0.4, 0.2, 2.0], rtol=1e-6)
    storage = describe_file(path)  # what `info` shows: the stored type and the conversion
    assert storage["stored_dtype"] == "uint16" and storage["read_as_physical"] is True


@pytest.mark.parametrize(
    "tags, band_units, expected",
    [
        ({"wavelength_units": "Micrometers"}, None, [500.0, 650.0, 800.0]),
        ({}, None, [500.0, 650.0, 800.0]),
        ({"wavelength_units": "Micrometers"}, "nm", [0.5, 0.65, 0.8]),
        ({}, "Index", None),
    ],
    ids=["dataset-units", "unlabelled-below-30", "band-units-win", "not-a-length"],
)
def test_wavelength_units(tmp_path, tags, band_units, expected):
    band_tags = [{"wavelength": w, "fwhm": "0.01"} for w in ("0.5", "0.65", "0.8")]
    if band_units is not None:
        for values in band_tags:
            values["wavelength_units"] = band_units
    path = gdal_raster(tmp_path / "w.tif", np.ones((3, 2, 2), np.float32), tags=tags, band_tags=band_tags)
    cube = read_cube(path)
    if expected is None:
        assert cube.wavelengths is None and cube.fwhm is None
    else:
        np.testing.assert_allclose(cube.wavelengths, expected)
        # FWHM (0.01) is in the wavelengths' units, whatever they turn out to be
        np.testing.assert_allclose(cube.fwhm, np.full(3, 0.01 * expected[0] / 0.5))


def test_unlabelled_nanometres_stay_nanometres(tmp_path):
    band_tags = [{"wavelength": w} for w in ("450", "550")]
    cube = read_cube(gdal_raster(tmp_path / "n.tif", np.ones((2, 2, 2), np.uint8), band_tags=band_tags))
    np.testing.assert_array_equal(cube.wavelengths, [450.0, 550.0])


@pytest.mark.parametrize("content", [b"", b"this is not a raster\n", b"II*\x00garbage"])
def test_empty_or_non_raster_tiff(tmp_path, content):
    path = tmp_path / "bad.tif"
    path.write_bytes(content)
    with pytest.raises(CubeReadError) as err:
        read_cube(path)
    assert "bad.tif" in str(err.value) and "\n" not in str(err.value)
    assert path.read_bytes() == content
    assert list(tmp_path.iterdir()) == [path]


def test_existing_geotiff_is_refused(tmp_path):
    write_cube(full_cube(), tmp_path / "c.tif")
    with pytest.raises(OutputExistsError, match="c.tif"):
        write_cube(full_cube(), tmp_path / "c.tif")
    write_cube(full_cube(), tmp_path / "c.tif", overwrite=True)


def test_envi_geotiff_envi_keeps_everything(tmp_path):
    cube = full_cube(dtype=np.int16, nodata=-9999)
    cube.metadata.pop("map info")
    write_cube(cube, tmp_path / "a.hdr", interleave="bil")
    write_cube(read_cube(tmp_path / "a.hdr"), tmp_path / "b.tif")
    write_cube(read_cube(tmp_path / "b.tif"), tmp_path / "c.hdr")
    assert_same_cube(read_cube(tmp_path / "c.hdr"), cube)
    assert envi.read_header(tmp_path / "c.hdr")["map info"] == envi.read_header(tmp_path / "a.hdr")["map info"]


@pytest.mark.realdata
def test_salton_sea_envi_to_geotiff_to_envi(shared_data, tmp_path):
    source = shared_data / "scenes" / "salton_sea" / "salton_sea.hdr"
    before = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (source, source.with_suffix(".img"))]
    original = read_cube(source)

    write_cube(original, tmp_path / "salton.tif")
    tiff = read_cube(tmp_path / "salton.tif")
    with rasterio.Env(GDAL_PAM_ENABLED="NO"):
        with rasterio.open(source.with_suffix(".img")) as gdal_envi, rasterio.open(tmp_path / "salton.tif") as gtiff:
            # GDAL sees the same pixels at the same places in the input and in our GeoTIFF.
            assert gtiff.transform.almost_equals(gdal_envi.transform, precision=1e-9)
            assert gtiff.crs == gdal_envi.crs == CRS.from_epsg(32611)

    write_cube(tiff, tmp_path / "salton.hdr")
    final = read_cube(tmp_path / "salton.hdr")
    assert (tmp_path / "salton.img").read_bytes() == source.with_suffix(".img").read_bytes()
    np.testing.assert_array_equal(final.wavelengths, original.wavelengths)
    np.testing.assert_array_equal(final.fwhm, original.fwhm)
    np.testing.assert_array_equal(final.bad_bands, original.bad_bands)
    assert final.crs == original.crs == "EPSG:32611"
    assert final.transform.almost_equals(original.transform, precision=1e-9)
    rotation = math.degrees(math.atan2(final.transform.d, final.transform.a))
    assert rotation == pytest.approx(34.0)
    original_fields, final_fields = envi.read_header(source), envi.read_header(tmp_path / "salton.hdr")
    for key in ("map info", "bbl", "data type", "interleave", "byte order", "samples", "lines", "bands"):
        assert final_fields[key] == original_fields[key], key
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in (source, source.with_suffix(".img"))] == before
    assert sorted(p.name for p in source.parent.iterdir()) == ["salton_sea.hdr", "salton_sea.img"]


def test_interrupted_geotiff_write_leaves_nothing(tmp_path, monkeypatch):
    from hsiuu_cli.io import geotiff

    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(geotiff, "_write_metadata", interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_cube(full_cube(), tmp_path / "c.tif")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# What GDAL rasters hold besides pixels: complex values, colour tables, masks, GCPs, RPCs
# ---------------------------------------------------------------------------------------------


def write_gdal(path, data: np.ndarray, then=None, **profile):
    """A raster written by GDAL itself (through rasterio), band-first ``data``."""
    bands, rows, cols = data.shape
    profile = {"driver": "GTiff", "width": cols, "height": rows, "count": bands, "dtype": data.dtype.name, **profile}
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if then is not None:
            then(dst)
    return path


def test_complex_int16_reads_as_gdal_reads_it(tmp_path):
    # gcore/data/cint16.tif made "TypeError: data type 'complex_int16' not understood"
    parts = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    path = write_gdal(tmp_path / "cint16.tif", parts, dtype="complex_int16")
    with pytest.raises(CubeFormatError, match="cint16.tif: holds complex values"):
        read_cube(path)
    cube = read_cube(path, complex_values=True)
    assert cube.data.dtype == np.complex64
    np.testing.assert_array_equal(cube.data, np.moveaxis(parts, 0, -1).astype(np.complex64))
    write_cube(cube, tmp_path / "copy.tif")  # complex64 in, complex64 out
    assert read_cube(tmp_path / "copy.tif", complex_values=True).data.dtype == np.complex64
    with pytest.raises(CubeWriteError, match="complex values cannot be stored as float32"):
        write_cube(cube, tmp_path / "real.tif", dtype="float32")


def test_a_colour_table_is_reported_not_dropped_unseen(tmp_path, caplog):
    palette = {i: (i, 255 - i, 0, 255) for i in range(256)}
    path = write_gdal(tmp_path / "classes.tif", np.zeros((1, 4, 4), np.uint8), photometric="palette",
                      then=lambda dst: dst.write_colormap(1, palette))
    with caplog.at_level(logging.WARNING, logger="hsiuu_cli"):
        read_cube(path)
    assert "classes.tif: its colour table is not kept" in caplog.text


def test_a_mask_and_an_alpha_band_are_reported(tmp_path, caplog):
    data = np.full((3, 8, 8), 50, np.uint8)
    mask = np.full((8, 8), 255, np.uint8)
    mask[:2, :3] = 0
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        masked = write_gdal(tmp_path / "masked.tif", data, then=lambda dst: dst.write_mask(mask))
    alpha = write_gdal(tmp_path / "rgba.tif", np.concatenate([data, mask[np.newaxis]]), photometric="RGB", ALPHA="YES")
    with caplog.at_level(logging.WARNING, logger="hsiuu_cli"):
        read_cube(masked)
        cube = read_cube(alpha)
    assert "masked.tif: its mask marks 6 pixels as no data; hsiuu keeps no mask" in caplog.text
    assert "rgba.tif: band 4 is an alpha band (6 pixels transparent)" in caplog.text
    assert "convert rgba.tif OUT.tif --bands 0-2" in caplog.text and cube.bands == 4


def test_a_mask_that_is_the_no_data_value_is_no_news(tmp_path, caplog):
    data = np.full((3, 8, 8), 50, np.uint8)
    data[:, :2, :2] = 0
    path = write_gdal(tmp_path / "nodata.png", data, driver="PNG", nodata=0)
    with caplog.at_level(logging.WARNING, logger="hsiuu_cli"):
        cube = read_cube(path)
    assert cube.nodata == 0 and not cube.valid_mask()[:2, :2].any() and caplog.text == ""


@pytest.mark.parametrize("driver, suffix", [("PNG", ".png"), ("JPEG", ".jpg")])
def test_a_black_patch_in_a_photo_format_is_pointed_out(tmp_path, caplog, driver, suffix):
    # examples/houston2018's RGB has a black no-data patch, declared there with data ignore value = 0;
    # a PNG or JPEG cannot declare it
    data = np.full((3, 20, 20), 120, np.uint8)
    data[:, 5:15, 5:15] = 0
    path = write_gdal(tmp_path / f"msi{suffix}", data, driver=driver)
    with caplog.at_level(logging.WARNING, logger="hsiuu_cli"):
        cube = read_cube(path)
    black = int((cube.data == 0).all(axis=2).sum())
    assert black >= (64 if driver == "PNG" else 1) and cube.nodata is None  # JPEG blurs the edges
    assert f"msi{suffix}: {black} pixels" in caplog.text and f"hsiuu convert msi{suffix} OUT.tif --nodata 0" in caplog.text


def test_gcps_and_rpcs_are_dropped_with_a_warning_on_a_new_grid(tmp_path, caplog):
    from rasterio.control import GroundControlPoint

    gcps = [GroundControlPoint(0, 0, 500000.0, 4000000.0), GroundControlPoint(7, 7, 500210.0, 3999790.0)]
    path = write_gdal(tmp_path / "gcps.tif", np.ones((1, 8, 8), np.uint16), gcps=gcps, crs="EPSG:32611")
    cube = read_cube(path)
    assert cube.transform is None and cube.crs == "EPSG:32611" and "geo points" in cube.metadata
    assert describe_summary(path)["gcps"] == 2
    with caplog.at_level(logging.WARNING, logger="hsiuu_cli"):
        coarse = cube.regridded(cube.data[::2, ::2], None)
    assert "geo points" not in coarse.metadata
    assert "ground control points describe the input's pixel grid" in caplog.text


def describe_summary(path):
    from hsiuu_cli.cli.info import describe_cube

    return describe_cube(path)


def test_a_tiff_with_an_envi_header_beside_it_gets_the_headers_band_metadata(tmp_path):
    # ENVI keeps a TIFF's wavelengths in a "file type = TIFF" header (GDAL's autotest/gcore/data/gtiff/byte_envi.hdr)
    path = write_gdal(tmp_path / "byte_envi.tif", np.arange(400, dtype=np.uint8).reshape(1, 20, 20))
    (tmp_path / "byte_envi.hdr").write_text(
        "ENVI\ndescription = {\n  GEO-TIFF File Imported into ENVI}\nsamples = 20\nlines   = 20\nbands   = 1\n"
        "header offset = 0\nfile type = TIFF\ndata type = 1\ninterleave = bip\nsensor type = Unknown\nbyte order = 0\n"
        "wavelength units = Nanometers\nwavelength = { 400.1 }\nfwhm = { 5.5 }\nbbl = { 1 }\n")
    for given in (path, tmp_path / "byte_envi.hdr"):
        cube = read_cube(given)
        assert cube.wavelengths.tolist() == [400.1] and cube.fwhm.tolist() == [5.5] and cube.bad_bands.tolist() == [False]
        assert cube.description == "GEO-TIFF File Imported into ENVI" and cube.metadata["sensor type"] == "Unknown"
        np.testing.assert_array_equal(cube.data[:, :, 0], np.arange(400, dtype=np.uint8).reshape(20, 20))
    with pytest.raises(CubeWriteError, match="output is the input"):
        write_cube(cube, path, overwrite=True)
