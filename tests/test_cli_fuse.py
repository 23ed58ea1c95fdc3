"""`hsiuu fuse` through the app: outputs on the MSI grid with the HSI's bands, side outputs, no-data,
grids, and every bad input (one-line error, exit 1, nothing written)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from conftest import gaussian_srf, make_mixture

from hsiuu_cli import degrade, metrics
from hsiuu_cli.cli.app import app
from hsiuu_cli.cube import Cube
from hsiuu_cli.io import read_cube, read_library, write_cube

HR_TRANSFORM = Affine.translation(500000.0, 4000000.0) @ Affine.scale(2.0, -2.0)
FAST = ["--epochs", "60"]


def write_srf_csv(path: Path, centres=(500, 800, 1300, 2000), width=150.0, grid=np.arange(380, 2421)) -> Path:
    responses = gaussian_srf(grid, centres, width, normalise=False)
    names = [f"band{i + 1}" for i in range(len(centres))]
    rows = ["wavelength_nm," + ",".join(names)] + [
        f"{w}," + ",".join(f"{v:.6f}" for v in row) for w, row in zip(grid, responses)
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def truth():
    cube, _, _, wavelengths = make_mixture(32, 32, 40, 3, seed=3)
    return cube, wavelengths


@pytest.fixture
def scene(tmp_path, truth):
    """LR-HSI (8×8×40, georeferenced) and MSI (32×32×4 on a 4× finer grid), plus the SRF CSV."""
    from hsiuu_cli.srf import load_srf, srf_matrix

    cube, wavelengths = truth
    folder = tmp_path / "in"
    folder.mkdir()
    srf_csv = write_srf_csv(folder / "my_msi.csv")
    matrix = srf_matrix(load_srf(srf_csv), wavelengths)
    lr = degrade.spatial_degrade(cube, 4, sigma=2.0)
    msi = degrade.spectral_degrade(cube, matrix)
    lr_path = write_cube(
        Cube(lr, wavelengths=wavelengths, fwhm=np.full(40, 50.0), crs="EPSG:32611", transform=HR_TRANSFORM @ Affine.scale(4)),
        folder / "lr.hdr",
    )
    msi_path = write_cube(Cube(msi, crs="EPSG:32611", transform=HR_TRANSFORM, band_names=["band1", "band2", "band3", "band4"]), folder / "msi.hdr")
    out = tmp_path / "out"
    out.mkdir()
    return {"lr": lr_path, "msi": msi_path, "srf": srf_csv, "matrix": matrix, "out": out, "folder": folder}


def run(runner, *args):
    return runner.invoke(app, ["fuse", *[str(a) for a in args]])


def one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return lines[0]


def test_fuses_onto_the_msi_grid_with_the_hsi_bands(runner, scene, truth):
    output = scene["out"] / "fused.hdr"
    result = run(runner, scene["lr"], scene["msi"], "--srf", scene["srf"], "-o", output, *FAST)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(output)
    fused = read_cube(output)
    cube, wavelengths = truth
    assert fused.shape == (32, 32, 40)
    np.testing.assert_allclose(fused.wavelengths, wavelengths)
    np.testing.assert_allclose(fused.fwhm, 50.0)
    assert fused.transform.almost_equals(HR_TRANSFORM)
    assert fused.crs is not None
    bicubic = degrade.resize_bicubic(read_cube(scene["lr"]).physical(), 32, 32)
    assert metrics.psnr(fused.physical(), cube) > metrics.psnr(bicubic, cube) + 6.0


def test_json_summary_and_side_outputs(runner, scene):
    output = scene["out"] / "fused.tif"
    result = run(
        runner, scene["lr"], scene["msi"], "--srf", scene["srf"], "-o", output, "--json",
        "--save-abundances", "--save-endmembers", "--quicklook", "--endmembers", "5", *FAST,
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["method"] == "spectramorph" and summary["endmembers"] == 5 and summary["epochs"] == 60
    assert np.isfinite(summary["training_loss"]) and summary["seconds"] > 0
    out = scene["out"]
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "fused.tif", "fused_abundances.tif", "fused_endmembers.csv", "fused_endmembers.hdr",
        "fused_endmembers.sli", "fused_quicklook.png",
    ]
    abundances = read_cube(out / "fused_abundances.tif")
    assert abundances.shape == (32, 32, 5)
    library = read_library(out / "fused_endmembers.sli")
    assert library.spectra.shape == (5, 40) and library.wavelengths is not None
    assert read_library(out / "fused_endmembers.csv").spectra.shape == (5, 40)
    from PIL import Image

    from hsiuu_cli.fusion.quicklook import LABEL_ROWS

    with Image.open(out / "fused_quicklook.png") as image:
        assert image.size[1] == LABEL_ROWS + 32 and image.size[0] > 3 * 32
        labels = np.asarray(image.convert("L"))[:LABEL_ROWS]
    # each panel's label strip holds dark text on white
    for panel in range(3):
        strip = labels[:, panel * (32 + 8) : panel * (32 + 8) + 32]
        assert (strip < 100).any() and (strip > 200).mean() > 0.5
    assert {"psf_model", "misregistration", "checks", "guard", "model_warnings"} <= set(summary)


@pytest.mark.parametrize("method", ["cnmf", "gsa", "bicubic"])
def test_baseline_methods(runner, scene, method):
    output = scene["out"] / f"{method}.hdr"
    result = run(runner, scene["lr"], scene["msi"], "--srf", scene["srf"], "-o", output, "--method", method, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["method"] == method
    assert read_cube(output).shape == (32, 32, 40)


def test_cnmf_with_a_panchromatic_image_warns(runner, scene, truth):
    cube, _ = truth
    pan = write_cube(Cube(degrade.spectral_degrade(cube, scene["matrix"][:, :1]), crs="EPSG:32611", transform=HR_TRANSFORM),
                     scene["folder"] / "pan.hdr")
    pan_srf = write_srf_csv(scene["folder"] / "pan.csv", centres=(500,))
    for method, warned in (("cnmf", True), ("gsa", False)):
        result = run(runner, scene["lr"], pan, "--srf", pan_srf, "-o", scene["out"] / f"{method}.hdr", "--method", method)
        assert result.exit_code == 0, result.output
        assert ("CNMF with a one-band MSI" in result.stderr) is warned


def test_same_seed_same_bytes(runner, scene):
    first, second = scene["out"] / "a.hdr", scene["out"] / "b.hdr"
    for output in (first, second):
        assert run(runner, scene["lr"], scene["msi"], "--srf", scene["srf"], "-o", output, "--seed", "7", *FAST).exit_code == 0
    assert first.with_suffix(".img").read_bytes() == second.with_suffix(".img").read_bytes()


def test_existing_output_needs_overwrite(runner, scene):
    output = scene["out"] / "fused.hdr"
    assert run(runner, scene["lr"], scene["msi"], "--srf", scene["srf"], "-o", output, *FAST).exit_code == 0
    result = run(runner, scene["lr"], scene["msi"], "--srf", scene["srf"], "-o", output, *FAST)
    assert result.exit_code == 1 and "--overwrite" in one_error_line(result)
    assert run(runner, scene["lr"], scene["msi"], "--srf", scene["srf"], "-o", output, "--overwrite", *FAST).exit_code == 0


def test_srf_matrix_for_an_hsi_without_wavelengths(runner, scene, tmp_path):
    lr = read_cube(scene["lr"])
    bare = write_cube(lr.replace(wavelengths=None, fwhm=None), scene["folder"] / "bare.hdr")
    matrix_csv = scene["folder"] / "matrix.csv"
    np.savetxt(matrix_csv, scene["matrix"], delimiter=",", header="band1,band2,band3,band4", comments="")
    output = scene["out"] / "fused.hdr"
    result = run(runner, bare, scene["msi"], "--srf-matrix", matrix_csv, "-o", output, *FAST)
    assert result.exit_code == 0, result.output
    assert read_cube(output).shape == (32, 32, 40)


def test_no_data_is_masked_and_written_as_nan(runner, scene):
    msi = read_cube(scene["msi"])
    data = np.array(msi.data)
    data[4:12, 8:20] = 0.0  # a black patch
    patched = write_cube(msi.replace(data=data, nodata=0.0), scene["folder"] / "patched.hdr")
    output = scene["out"] / "fused.hdr"
    result = run(runner, scene["lr"], patched, "--srf", scene["srf"], "-o", output, *FAST)
    assert result.exit_code == 0, result.output
    fused = read_cube(output)
    values = fused.physical()
    assert np.isnan(values[4:12, 8:20]).all()
    assert np.isfinite(values[20:]).all()
    assert fused.nodata is not None and np.isnan(fused.nodata)


def test_extents_are_cut_to_the_overlap(runner, scene):
    """An MSI reaching 4 HR rows above and 8 columns right of the HSI is cut to the HSI's extent."""
    msi = read_cube(scene["msi"])
    data = np.pad(np.array(msi.data), ((4, 0), (0, 8), (0, 0)), mode="edge")
    wider = write_cube(
        msi.replace(data=data, transform=HR_TRANSFORM @ Affine.translation(0, -4)), scene["folder"] / "wider.hdr"
    )
    output = scene["out"] / "fused.hdr"
    result = run(runner, scene["lr"], wider, "--srf", scene["srf"], "-o", output, *FAST)
    assert result.exit_code == 0, result.output
    fused = read_cube(output)
    assert fused.shape == (32, 32, 40)
    assert fused.transform.almost_equals(HR_TRANSFORM)


# ---------------------------------------------------------------------------------------------
# bad input: one line naming the file, exit 1, nothing written
# ---------------------------------------------------------------------------------------------


def _bad_cases(scene):
    lr = read_cube(scene["lr"])
    msi = read_cube(scene["msi"])
    folder = scene["folder"]
    return {
        "no wavelengths": (
            [write_cube(lr.replace(wavelengths=None, fwhm=None), folder / "nowl.hdr"), scene["msi"], "--srf", scene["srf"]],
            "no wavelengths",
            "nowl.hdr",
        ),
        "srf band count": ([scene["lr"], scene["msi"], "--srf", "sentinel2a:B2,B3"], "2 bands", "msi.hdr"),
        "non-integer ratio": (
            [scene["lr"], write_cube(Cube(np.array(msi.data)[:30, :30]), folder / "odd.hdr"), "--srf", scene["srf"], "--no-resample"],
            "integer",
            "odd.hdr",
        ),
        "misaligned": (
            [scene["lr"], write_cube(msi.replace(transform=HR_TRANSFORM @ Affine.translation(0.5, 0)), folder / "shifted.hdr"),
             "--srf", scene["srf"], "--no-resample"],
            "misaligned",
            "shifted.hdr",
        ),
        "different crs": (
            [scene["lr"], write_cube(msi.replace(crs="EPSG:32612"), folder / "utm12.hdr"), "--srf", scene["srf"], "--no-resample"],
            "coordinate reference",
            "utm12.hdr",
        ),
        "no overlap": (
            [scene["lr"], write_cube(msi.replace(transform=HR_TRANSFORM @ Affine.translation(1000, 0)), folder / "far.hdr"),
             "--srf", scene["srf"]],
            "do not overlap",
            "far.hdr",
        ),
        "another scene": (
            [scene["lr"], write_cube(msi.replace(data=np.random.default_rng(1).random(msi.shape).astype(np.float32)), folder / "other.hdr"),
             "--srf", scene["srf"]],
            "not show the same scene",
            "other.hdr",
        ),
        "msi smaller": ([scene["msi"], scene["lr"], "--srf", scene["srf"]], "smaller", "lr.hdr"),
        "all no-data": (
            [write_cube(lr.replace(data=np.full(lr.shape, np.nan, np.float32)), folder / "empty.hdr"), scene["msi"], "--srf", scene["srf"]],
            "no valid pixel",
            "empty.hdr",
        ),
        "K above bands": ([scene["lr"], scene["msi"], "--srf", scene["srf"], "--endmembers", "41"], "40 bands", "lr.hdr"),
        "K above pixels": (
            [
                write_cube(lr.replace(data=np.array(lr.data)[:2, :2]), folder / "tiny.hdr"),
                write_cube(msi.replace(data=np.array(msi.data)[:8, :8]), folder / "tiny_msi.hdr"),
                "--srf", scene["srf"], "--endmembers", "5",
            ],
            "4 valid pixels",
            "tiny.hdr",
        ),
        "srf outside range": (
            [scene["lr"], write_cube(Cube(np.array(msi.data)[:, :, :1]), folder / "pan.hdr"), "--srf", write_srf_csv(folder / "far.csv", centres=(3000,), width=50, grid=np.arange(2800, 3201))],
            "does not overlap",
            "lr.hdr",
        ),
    }


CASES = ["no wavelengths", "srf band count", "non-integer ratio", "misaligned", "different crs", "msi smaller",
         "all no-data", "K above bands", "K above pixels", "srf outside range", "no overlap", "another scene"]


@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_one_line_exit_1_and_nothing_written(runner, scene, name):
    args, words, path_part = _bad_cases(scene)[name]
    output = scene["out"] / "fused.hdr"
    result = run(runner, *args, "-o", output, *FAST)
    assert result.exit_code == 1, result.output
    line = one_error_line(result)
    assert words in line and path_part in line
    assert line.count(path_part) == 1  # the path once, not repeated in the message
    if "--no-resample" in args:
        assert "without --no-resample" in line
    assert list(scene["out"].iterdir()) == []


@pytest.mark.parametrize("change", ["misaligned", "different crs", "finer pixels"])
def test_grids_that_do_not_nest_are_resampled(runner, scene, truth, change):
    """The MSI is resampled onto the HSI's grid refined by the nearest integer ratio (GDAL), named in
    the summary, the remaining shift estimated, and the fusion still beats bicubic."""
    msi = read_cube(scene["msi"])
    if change == "misaligned":  # half an MSI pixel off: the resampling moves the content, the fit finds the rest
        moved = msi.replace(transform=HR_TRANSFORM @ Affine.translation(0.5, 0))
    elif change == "different crs":  # the MSI delivered in the neighbouring UTM zone (warped there, rotated grid)
        from rasterio.warp import calculate_default_transform

        from hsiuu_cli.grid import resample

        bounds = (HR_TRANSFORM.c, HR_TRANSFORM.f - 64, HR_TRANSFORM.c + 64, HR_TRANSFORM.f)
        target, cols, rows = calculate_default_transform("EPSG:32611", "EPSG:32612", 32, 32, *bounds, resolution=2.0)
        values = resample(np.asarray(msi.data, np.float32), HR_TRANSFORM, "EPSG:32611", target, "EPSG:32612", (rows, cols), "cubic")
        moved = msi.replace(data=values, crs="EPSG:32612", transform=target, nodata=float("nan"))
    else:  # pixels of 1.4 m over the same ground: 5.71 per HSI pixel, resampled onto a 6× grid
        from hsiuu_cli.grid import resample

        values = resample(np.asarray(msi.data, np.float32), HR_TRANSFORM, "EPSG:32611", HR_TRANSFORM @ Affine.scale(0.7),
                          "EPSG:32611", (45, 45), "cubic")
        moved = msi.replace(data=values, transform=HR_TRANSFORM @ Affine.scale(0.7))
    path = write_cube(moved, scene["folder"] / "moved.hdr")
    output = scene["out"] / "fused.hdr"
    result = run(runner, scene["lr"], path, "--srf", scene["srf"], "-o", output, "--json", *FAST)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert "GDAL" in summary["resampled"] and "resampling" in summary["resampled"]
    assert "resampled" in result.stderr
    assert len(summary["misregistration"]) == 2
    fused = read_cube(output)
    assert fused.crs is not None and fused.transform is not None
    cube, _ = truth
    ratio = round(2 * 4 / abs(fused.transform.e)) if change == "finer pixels" else 4
    rows, cols = fused.shape[:2]
    reference = degrade.resize_bicubic(cube, 32 * ratio // 4, 32 * ratio // 4)[:rows, :cols] if ratio != 4 else cube[:rows, :cols]
    bicubic = degrade.resize_bicubic(read_cube(scene["lr"]).physical()[: rows // ratio, : cols // ratio], rows, cols)
    valid = np.isfinite(fused.physical()).all(axis=2)
    assert metrics.psnr(fused.physical()[valid], reference[valid]) > metrics.psnr(bicubic[valid], reference[valid])


def test_pair_without_georeference_is_registered(runner, tmp_path):
    """No georeference, a 4.5× size ratio and a rotation: the MSI is registered on the HSI from the
    images, resampled onto a 4× grid and fused."""
    from scipy import ndimage

    cube, _, _, wavelengths = make_mixture(96, 96, 30, 4, seed=5)
    rng = np.random.default_rng(0)
    texture = ndimage.gaussian_filter(rng.random((96, 96)), 2.0)[:, :, None]
    cube = (cube * (0.6 + 0.8 * texture / texture.max())).astype(np.float32)
    matrix = gaussian_srf(wavelengths, (480, 560, 660), 60.0)
    lr = degrade.spatial_degrade(cube[16:80, 16:80], 4, sigma=2.0)  # 16 × 16 LR pixels over the middle
    msi = degrade.spectral_degrade(cube, matrix)
    rotated = ndimage.rotate(msi, 4.0, axes=(0, 1), reshape=False, order=1, mode="reflect")
    larger = ndimage.zoom(rotated, (1.125, 1.125, 1), order=1)  # 108 × 108: 4.5 MSI pixels per LR pixel
    lr_path = write_cube(Cube(lr, wavelengths=wavelengths), tmp_path / "lr.hdr")
    msi_path = write_cube(Cube(larger.astype(np.float32)), tmp_path / "msi.hdr")
    matrix_csv = tmp_path / "srf.csv"
    np.savetxt(matrix_csv, matrix, delimiter=",")
    output = tmp_path / "fused.hdr"
    result = run(runner, lr_path, msi_path, "--srf-matrix", matrix_csv, "-o", output, "--json", *FAST)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert "registered on the images" in summary["resampled"]
    assert "4.5 MSI pixels per HSI pixel" in summary["resampled"] or "4.49" in summary["resampled"] or "4.51" in summary["resampled"]
    assert read_cube(output).shape[2] == 30


def test_no_resample_keeps_the_refusal(runner, scene):
    msi = read_cube(scene["msi"])
    path = write_cube(msi.replace(transform=HR_TRANSFORM @ Affine.translation(0.5, 0)), scene["folder"] / "shifted.hdr")
    output = scene["out"] / "fused.hdr"
    assert run(runner, scene["lr"], path, "--srf", scene["srf"], "-o", output, *FAST).exit_code == 0
    refused = run(runner, scene["lr"], path, "--srf", scene["srf"], "-o", scene["out"] / "other.hdr", "--no-resample", *FAST)
    assert refused.exit_code == 1 and "misaligned" in refused.stderr


def test_partial_spectral_overlap_is_reported(runner, scene):
    """An MSI band partly beyond the HSI's range is a warning with the measured share; HSI bands that no
    MSI band sees are named."""
    srf = write_srf_csv(scene["folder"] / "edge.csv", centres=(520, 700, 900, 2420), width=150.0, grid=np.arange(380, 2601))
    output = scene["out"] / "fused.hdr"
    result = run(runner, scene["lr"], scene["msi"], "--srf", srf, "-o", output, *FAST)
    assert result.exit_code == 0, result.output
    warning = next(line for line in result.stderr.splitlines() if "SRF band 'band4'" in line)
    assert "of its response falls on the cube's bands" in warning and "outside" in warning and "(left out)" in warning
    far = write_srf_csv(scene["folder"] / "far.csv", centres=(2450,), width=150.0, grid=np.arange(2200, 2701))
    pan = write_cube(Cube(np.array(read_cube(scene["msi"]).data)[:, :, :1], crs="EPSG:32611", transform=HR_TRANSFORM),
                     scene["folder"] / "pan.hdr")
    refused = run(runner, scene["lr"], pan, "--srf", far, "-o", scene["out"] / "far.hdr", *FAST)
    assert refused.exit_code == 1 and "at least 50% needed" in refused.stderr
    assert not (scene["out"] / "far.hdr").exists()


def test_usage_errors_exit_2(runner, scene):
    output = scene["out"] / "fused.hdr"
    assert run(runner, scene["lr"], scene["msi"], "-o", output).exit_code == 2
    both = run(runner, scene["lr"], scene["msi"], "--srf", scene["srf"], "--srf-matrix", scene["srf"], "-o", output)
    assert both.exit_code == 2
    assert run(runner, scene["lr"], scene["msi"], "--srf", scene["srf"], "-o", output, "--endmembers", "x").exit_code == 2
    assert list(scene["out"].iterdir()) == []
