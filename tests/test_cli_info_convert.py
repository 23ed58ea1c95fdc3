"""`hsiuu info` and `hsiuu convert` through the app: outputs, metadata, and every bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from hsiuu_cli.cli.app import app
from hsiuu_cli.cube import Cube
from hsiuu_cli.io import envi, read_cube, write_cube


@pytest.fixture
def scene(tmp_path, mixture) -> Path:
    """A small BIL ENVI cube with every kind of metadata."""
    data, _, _, wavelengths = mixture
    bad = np.zeros(data.shape[2], bool)
    bad[[5, 6, 30]] = True
    cube = Cube(
        data,
        wavelengths=wavelengths,
        fwhm=np.full(data.shape[2], 12.5),
        bad_bands=bad,
        nodata=-1.0,
        scale_factor=1.0,
        band_names=[f"b{i}" for i in range(data.shape[2])],
        crs="EPSG:32611",
        transform=Affine.translation(579717.18, 3714550.7) @ Affine.rotation(34) @ Affine.scale(16.9, -16.9),
        description="test scene",
        metadata={"sensor type": "synthetic"},
    )
    folder = tmp_path / "in"
    folder.mkdir()
    return write_cube(cube, folder / "scene.hdr", interleave="bil")


def files_in(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_info_description_goes_to_stdout(runner, scene):
    """`hsiuu info x.hdr > info.txt` keeps the description (it is the command's output, as gdalinfo's),
    as plain lines without the table's trailing blanks; -q silences messages, not the output."""
    for quiet in ([], ["-q"]):
        result = runner.invoke(app, [*quiet, "info", str(scene)])
        assert result.exit_code == 0, result.output
        assert result.stderr == ""
        for text in ("32 rows × 32 cols × 40 bands", "bil", "400–2400 nm", "37 of 40", "5-6, 30", "EPSG:32611", "rotated 34°"):
            assert text in result.stdout
        assert all(line == line.rstrip() for line in result.stdout.splitlines())


def test_info_json(runner, scene):
    result = runner.invoke(app, ["info", str(scene), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["rows"], summary["cols"], summary["bands"]) == (32, 32, 40)
    assert summary["dtype"] == "float32" and summary["interleave"] == "bil" and summary["format"] == "ENVI"
    assert summary["wavelength_min_nm"] == 400 and summary["wavelength_max_nm"] == 2400
    assert summary["fwhm"] is True and summary["good_bands"] == 37 and summary["bad_bands"] == [5, 6, 30]
    assert summary["nodata"] == -1 and summary["crs"] == "EPSG:32611"
    assert summary["pixel_size"] == pytest.approx([16.9, 16.9]) and summary["rotation_deg"] == pytest.approx(34)


@pytest.mark.parametrize("name", ["lib.sli", "lib.csv"])
def test_info_describes_a_spectral_library(runner, tmp_path, name):
    from hsiuu_cli.io import SpectralLibrary, write_library

    spectra = np.random.default_rng(0).random((3, 7)).astype(np.float32)
    written = write_library(SpectralLibrary(spectra, ["soil", "tree", "water"], np.linspace(400, 1000, 7)), tmp_path / name)
    result = runner.invoke(app, ["info", str(written[0]), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["spectra"], summary["bands"], summary["names"]) == (3, 7, ["soil", "tree", "water"])
    assert (summary["wavelength_min_nm"], summary["wavelength_max_nm"]) == (400.0, 1000.0)


@pytest.mark.realdata
def test_info_on_salton_sea(runner, shared_data):
    result = runner.invoke(app, ["info", str(shared_data / "scenes/salton_sea/salton_sea.hdr"), "--json"])
    summary = json.loads(result.stdout)
    assert summary["good_bands"] == 204 and summary["crs"] == "EPSG:32611"
    assert summary["rotation_deg"] == pytest.approx(34) and summary["pixel_size"] == pytest.approx([16.9, 16.9])


def test_convert_envi_to_geotiff_and_back(runner, scene, tmp_path):
    tif, back = tmp_path / "scene.tif", tmp_path / "back.hdr"
    result = runner.invoke(app, ["convert", str(scene), str(tif), "--co", "COMPRESS=DEFLATE"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(tif)
    with rasterio.open(tif) as src:
        assert src.compression.name.lower() == "deflate"
    assert runner.invoke(app, ["convert", str(tif), str(back), "--interleave", "bip"]).exit_code == 0
    original, final = read_cube(scene), read_cube(back)
    np.testing.assert_array_equal(final.data, original.data)
    for name in ("wavelengths", "fwhm", "bad_bands"):
        np.testing.assert_array_equal(getattr(final, name), getattr(original, name))
    assert (final.band_names, final.nodata, final.crs, final.description) == (
        original.band_names, original.nodata, original.crs, original.description)
    assert final.transform.almost_equals(original.transform, precision=1e-9)
    assert final.metadata["sensor type"] == "synthetic"
    assert envi.read_header(back)["interleave"] == "bip"


def test_convert_keeps_the_input_interleave_by_default(runner, scene, tmp_path):
    assert runner.invoke(app, ["convert", str(scene), str(tmp_path / "same.img")]).exit_code == 0
    assert envi.read_header(tmp_path / "same.hdr")["interleave"] == "bil"


@pytest.mark.parametrize(
    "options, kept",
    [
        (["--bands", "0-3,10"], [0, 1, 2, 3, 10]),
        (["--bands", "1000:1300nm"], [12, 13, 14, 15, 16, 17]),
        (["--bands", "0.4:0.5um,2400nm"], [0, 1, 39]),
        (["--drop-bad-bands"], [i for i in range(40) if i not in (5, 6, 30)]),
        (["--bands", "3-7", "--drop-bad-bands"], [3, 4, 7]),
    ],
)
def test_convert_band_subsets(runner, scene, tmp_path, options, kept):
    out = tmp_path / "subset.tif"
    result = runner.invoke(app, ["convert", str(scene), str(out), *options])
    assert result.exit_code == 0, result.output
    original, subset = read_cube(scene), read_cube(out)
    np.testing.assert_array_equal(subset.data, original.data[:, :, kept])
    np.testing.assert_array_equal(subset.wavelengths, original.wavelengths[kept])
    np.testing.assert_array_equal(subset.bad_bands, original.bad_bands[kept])
    assert subset.band_names == [f"b{i}" for i in kept]


def test_convert_dtype(runner, tmp_path):
    source = write_cube(Cube(np.array([[[0.4, 1.6], [250.2, -3.0]]], np.float32)), tmp_path / "f.hdr")
    result = runner.invoke(app, ["convert", str(source), str(tmp_path / "i.tif"), "--dtype", "int16"])
    assert result.exit_code == 0, result.output
    converted = read_cube(tmp_path / "i.tif")
    assert converted.data.dtype == np.int16 and converted.data.ravel().tolist() == [0, 2, 250, -3]


@pytest.mark.parametrize("options", [["--dtype", "float16x"], ["--interleave", "bxx"], ["--co", "NOEQUALS"]])
def test_convert_usage_errors(runner, scene, tmp_path, options):
    result = runner.invoke(app, ["convert", str(scene), str(tmp_path / "o.tif"), *options])
    assert result.exit_code == 2
    assert not (tmp_path / "o.tif").exists()


# ---------------------------------------------------------------------------------------------
# bad input: exit 1, one line naming the file, nothing written, input untouched
# ---------------------------------------------------------------------------------------------


def assert_clean_failure(result, name: str, problem: str, out_dir: Path, inputs: Path, before: dict) -> None:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert name in lines[0] and problem in lines[0], lines[0]
    assert result.stdout == ""
    assert [p for p in out_dir.iterdir() if p.name != inputs.name] == []
    assert files_in(inputs) == before


def _truncate(folder: Path) -> str:
    data = folder / "scene.img"
    data.write_bytes(data.read_bytes()[:-100])
    return "truncated"


def _more_bands(folder: Path) -> str:
    header = folder / "scene.hdr"
    header.write_text(header.read_text().replace("bands = 40", "bands = 41"))
    return "needs"


def _unknown_type(folder: Path) -> str:
    header = folder / "scene.hdr"
    header.write_text(header.read_text().replace("data type = 4", "data type = 8"))
    return "unknown ENVI data type 8"


def _garbage_header(folder: Path) -> str:
    (folder / "scene.hdr").write_text("<html>not a header</html>\n")
    return "not an ENVI header"


def _missing_data(folder: Path) -> str:
    (folder / "scene.img").unlink()
    return "no data file"


BROKEN = {
    "truncated": (_truncate, "scene.img"),
    "size": (_more_bands, "scene.img"),
    "dtype": (_unknown_type, "scene.hdr"),
    "garbage": (_garbage_header, "scene.hdr"),
    "missing data": (_missing_data, "scene.hdr"),
}


@pytest.mark.parametrize("command", ["info", "convert"])
@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_envi_input(runner, scene, tmp_path, command, case):
    breaker, named = BROKEN[case]
    problem = breaker(scene.parent)
    before = files_in(scene.parent)
    args = ["info", str(scene)] if command == "info" else ["convert", str(scene), str(tmp_path / "out.tif")]
    assert_clean_failure(runner.invoke(app, args), named, problem, tmp_path, scene.parent, before)


@pytest.mark.parametrize("command", ["info", "convert"])
@pytest.mark.parametrize("content", [b"", b"plain text, not a raster\n"])
def test_empty_or_non_raster_geotiff(runner, tmp_path, command, content):
    folder = tmp_path / "in"
    folder.mkdir()
    bad = folder / "bad.tif"
    bad.write_bytes(content)
    before = files_in(folder)
    args = ["info", str(bad)] if command == "info" else ["convert", str(bad), str(tmp_path / "out.hdr")]
    assert_clean_failure(runner.invoke(app, args), "bad.tif", "", tmp_path, folder, before)


@pytest.mark.parametrize("command", ["info", "convert"])
def test_missing_input(runner, tmp_path, command):
    (tmp_path / "in").mkdir()
    missing = tmp_path / "in" / "nope.hdr"
    args = ["info", str(missing)] if command == "info" else ["convert", str(missing), str(tmp_path / "out.tif")]
    assert_clean_failure(runner.invoke(app, args), "nope.hdr", "file not found", tmp_path, tmp_path / "in", {})


def test_existing_output_needs_overwrite(runner, scene, tmp_path):
    out = tmp_path / "out.tif"
    out.write_bytes(b"keep me")
    before = files_in(scene.parent)
    result = runner.invoke(app, ["convert", str(scene), str(out)])
    assert result.exit_code == 1 and "out.tif" in result.stderr and "--overwrite" in result.stderr
    assert out.read_bytes() == b"keep me" and files_in(scene.parent) == before
    assert runner.invoke(app, ["convert", str(scene), str(out), "--overwrite"]).exit_code == 0
    assert read_cube(out).shape == (32, 32, 40)


def test_unwritable_output_directory(runner, scene, tmp_path):
    from test_io_envi import unwritable_directory

    directory = unwritable_directory(tmp_path)
    before = files_in(scene.parent)
    result = runner.invoke(app, ["convert", str(scene), str(directory / "out.tif")])
    assert result.exit_code == 1 and "out.tif" in result.stderr and "not writable" in result.stderr
    assert not (directory / "out.tif").exists() and files_in(scene.parent) == before


def test_band_selection_outside_the_cube(runner, scene, tmp_path):
    for selection, problem in (("0-99", "out of range"), ("3000:4000nm", "no band in")):
        result = runner.invoke(app, ["convert", str(scene), str(tmp_path / "o.tif"), "--bands", selection])
        assert result.exit_code == 1 and problem in result.stderr and "scene.hdr" in result.stderr
        assert not (tmp_path / "o.tif").exists()


@pytest.mark.parametrize("options", [["--bands", "0,2"], ["--drop-bad-bands"]])
def test_convert_band_subset_cuts_unitless_wavelengths(runner, tmp_path, options):
    rng = np.random.default_rng(0)
    rng.random((3, 20, 20), dtype=np.float32).tofile(tmp_path / "idx.img")
    (tmp_path / "idx.hdr").write_text(
        "ENVI\nsamples = 20\nlines = 20\nbands = 3\ndata type = 4\ninterleave = bsq\nbyte order = 0\n"
        "wavelength units = Index\nwavelength = {1, 2, 3}\nfwhm = {0.5, 0.6, 0.7}\nbbl = {1, 0, 1}\n"
    )
    out = tmp_path / "sub.hdr"
    result = runner.invoke(app, ["convert", str(tmp_path / "idx.hdr"), str(out), *options])
    assert result.exit_code == 0, result.output
    fields = envi.read_header(out)
    assert (fields["wavelength"], fields["fwhm"]) == ("{ 1 , 3 }", "{ 0.5 , 0.7 }")
    assert runner.invoke(app, ["info", str(out)]).exit_code == 0


@pytest.mark.parametrize("selection, band, items", [("5,5", 5, "'5' and by '5'"), ("0-3,2", 2, "'0-3' and by '2'"),
                                                    ("400nm,410nm", 0, "'400nm' and by '410nm'")])
def test_convert_refuses_a_band_selected_twice(runner, scene, tmp_path, selection, band, items):
    result = runner.invoke(app, ["convert", str(scene), str(tmp_path / "o.hdr"), "--bands", selection])
    assert result.exit_code == 2
    message = " ".join(result.stderr.replace("│", " ").split())
    assert f"band {band} is selected twice (by {items})" in message
    assert list(tmp_path.glob("o.*")) == []


def test_convert_keeps_calibration_gains(runner, tmp_path):
    np.arange(2 * 3 * 4, dtype="<i2").tofile(tmp_path / "dn.img")
    (tmp_path / "dn.hdr").write_text(
        "ENVI\nsamples = 4\nlines = 3\nbands = 2\ndata type = 2\ninterleave = bsq\nbyte order = 0\n"
        "data gain values = {0.01, 0.02}\ndata offset values = {1, 2}\n"
    )
    for name, options in (("copy.hdr", []), ("copy.tif", []), ("one.hdr", ["--bands", "1"])):
        result = runner.invoke(app, ["convert", str(tmp_path / "dn.hdr"), str(tmp_path / name), *options])
        assert result.exit_code == 0, result.output
    assert read_cube(tmp_path / "copy.tif").metadata["data gain values"] == "{0.01, 0.02}"
    assert runner.invoke(app, ["convert", str(tmp_path / "copy.tif"), str(tmp_path / "back.hdr")]).exit_code == 0
    for name, gains, offsets in (("back.hdr", "{0.01, 0.02}", "{1, 2}"), ("one.hdr", "{ 0.02 }", "{ 2 }")):
        fields = envi.read_header(tmp_path / name)
        assert (fields["data gain values"], fields["data offset values"]) == (gains, offsets)


def test_info_on_a_data_file_without_its_header(runner, tmp_path):
    # superres says "no ENVI header found"; info used to pass GDAL's "not recognized" on
    (tmp_path / "only.img").write_bytes(bytes(range(64)))
    result = runner.invoke(app, ["info", str(tmp_path / "only.img")])
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "only.img: no ENVI header found beside the data file" in lines[0]
    assert "only.hdr" in lines[0] and "not recognized" not in lines[0]


def test_convert_marks_no_data_and_drops_it(runner, tmp_path):
    data = np.full((6, 6, 3), 90, np.uint8)
    data[:2, :2] = 0
    source = write_cube(Cube(data), tmp_path / "rgb.tif")
    result = runner.invoke(app, ["convert", str(source), str(tmp_path / "marked.hdr"), "--nodata", "0"])
    assert result.exit_code == 0, result.output
    marked = read_cube(tmp_path / "marked.hdr")
    assert marked.nodata == 0 and int((~marked.valid_mask()).sum()) == 4
    result = runner.invoke(app, ["convert", str(tmp_path / "marked.hdr"), str(tmp_path / "plain.tif"), "--nodata", "none"])
    assert result.exit_code == 0 and read_cube(tmp_path / "plain.tif").nodata is None
    result = runner.invoke(app, ["convert", str(source), str(tmp_path / "bad.tif"), "--nodata", "-1"])
    assert result.exit_code == 1 and "no-data value -1.0 cannot be stored as uint8" in result.stderr
    assert runner.invoke(app, ["convert", str(source), str(tmp_path / "x.tif"), "--nodata", "zero"]).exit_code == 2


def test_info_says_a_file_is_georeferenced_by_gcps_or_rpcs(runner, tmp_path):
    from rasterio.control import GroundControlPoint

    gcps = [GroundControlPoint(0, 0, 500000.0, 4000000.0), GroundControlPoint(3, 3, 500090.0, 3999910.0)]
    with rasterio.open(tmp_path / "gcps.tif", "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8",
                       gcps=gcps, crs="EPSG:32611") as dst:
        dst.write(np.zeros((1, 4, 4), np.uint8))
    result = runner.invoke(app, ["info", str(tmp_path / "gcps.tif"), "--json"])
    summary = json.loads(result.stdout)
    assert summary["gcps"] == 2 and summary["rpcs"] is False and summary["transform"] is None
    table = runner.invoke(app, ["info", str(tmp_path / "gcps.tif")])
    assert "georeferenced by  2 ground control points" in table.output


def test_convert_reports_a_longer_data_file_with_verbose(runner, scene, tmp_path):
    with open(scene.with_suffix(".img"), "ab") as data:
        data.write(b"\0\0\0")
    quiet = runner.invoke(app, ["convert", str(scene), str(tmp_path / "a.tif")])
    assert quiet.exit_code == 0 and "more than the header" not in quiet.output
    verbose = runner.invoke(app, ["-v", "convert", str(scene), str(tmp_path / "b.tif")])
    assert verbose.exit_code == 0 and "scene.img: data file has 3 bytes more than the header" in verbose.stderr
