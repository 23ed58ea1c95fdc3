"""`hsiuu simulate` and `hsiuu evaluate` through the app: outputs, geo, figures, and every bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from hsiuu_cli import degrade, metrics
from hsiuu_cli.cli.app import app
from hsiuu_cli.cube import Cube
from hsiuu_cli.io import SpectralLibrary, read_cube, write_cube, write_library
from hsiuu_cli.srf import load_srf, srf_matrix

TRANSFORM = Affine.translation(579717.18, 3714550.7) @ Affine.rotation(34) @ Affine.scale(16.9, -16.9)


@pytest.fixture
def scene(tmp_path, mixture) -> Path:
    """A georeferenced 32×32×40 cube, 400–2400 nm, FWHM 50 nm."""
    data, _, _, wavelengths = mixture
    cube = Cube(
        data,
        wavelengths=wavelengths,
        fwhm=np.full(data.shape[2], 50.0),
        crs="EPSG:32611",
        transform=TRANSFORM,
        band_names=[f"b{i}" for i in range(data.shape[2])],
    )
    folder = tmp_path / "in"
    folder.mkdir()
    return write_cube(cube, folder / "scene.hdr")


def one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return lines[0]


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------------------------
# simulate
# ---------------------------------------------------------------------------------------------


def test_simulate_writes_lr_and_msi_with_correct_metadata(runner, scene, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    result = runner.invoke(app, ["simulate", str(scene), "--ratio", "4", "--srf", "sentinel2a:B2,B3,B4,B8,B11,B12", "-o", str(out / "case")])
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(out / "case_lr.hdr"), str(out / "case_msi.hdr")]

    source = read_cube(scene)
    lr = read_cube(out / "case_lr.hdr")
    assert lr.shape == (8, 8, 40)
    assert np.allclose(lr.wavelengths, source.wavelengths) and np.allclose(lr.fwhm, source.fwhm)
    assert lr.band_names == source.band_names and lr.crs is not None
    assert lr.transform.almost_equals(TRANSFORM @ Affine.scale(4))  # same corner, pixel ×4, same rotation
    expected_lr = degrade.spatial_degrade(source.physical(), 4)
    assert np.allclose(lr.data, expected_lr, atol=1e-6)

    msi = read_cube(out / "case_msi.hdr")
    assert msi.shape == (32, 32, 6)
    assert msi.band_names == ["B2", "B3", "B4", "B8", "B11", "B12"]
    assert msi.transform.almost_equals(TRANSFORM)
    matrix = srf_matrix(load_srf("sentinel2a:B2,B3,B4,B8,B11,B12"), source.wavelengths, source.fwhm)
    assert np.allclose(msi.data, degrade.spectral_degrade(source.physical(), matrix), atol=1e-5)
    assert 480 < msi.wavelengths[0] < 500 and 2150 < msi.wavelengths[-1] < 2250  # band centroids


def test_simulate_into_a_directory_as_geotiff_with_bicubic(runner, scene, tmp_path):
    out = tmp_path / "cases"
    out.mkdir()
    result = runner.invoke(app, ["simulate", str(scene), "--ratio", "2", "--psf", "bicubic", "-f", "GTiff", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert files(out) == ["scene_lr.tif"]
    lr = read_cube(out / "scene_lr.tif")
    assert lr.shape == (16, 16, 40)
    assert np.allclose(lr.data, degrade.spatial_degrade(read_cube(scene).physical(), 2, method="bicubic"), atol=1e-6)


def test_simulate_noise_follows_the_seed(runner, scene, tmp_path):
    def run(seed: int, prefix: str) -> np.ndarray:
        result = runner.invoke(
            app, ["simulate", str(scene), "--ratio", "4", "--snr", "20", "--seed", str(seed), "-o", str(tmp_path / prefix)]
        )
        assert result.exit_code == 0, result.output
        return np.array(read_cube(tmp_path / f"{prefix}_lr.hdr").data)

    first, again, other = run(1, "a"), run(1, "b"), run(2, "c")
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    clean = degrade.spatial_degrade(read_cube(scene).physical(), 4)
    snr = 10 * np.log10((clean**2).mean() / ((first - clean) ** 2).mean())
    assert 18.5 < snr < 21.5


def test_simulate_crops_to_whole_blocks_and_writes_the_cut_reference(runner, tmp_path, mixture):
    data, _, _, wavelengths = mixture
    path = write_cube(Cube(data[:30, :31], wavelengths=wavelengths), tmp_path / "odd.hdr")
    result = runner.invoke(app, ["simulate", str(path), "--ratio", "4", "--srf", "ikonos:blue,green,red,nir"])
    assert result.exit_code == 0, result.output
    assert read_cube(tmp_path / "odd_lr.hdr").shape == (7, 7, 40)
    assert read_cube(tmp_path / "odd_msi.hdr").shape == (28, 28, 4)
    assert np.array_equal(read_cube(tmp_path / "odd_hr.hdr").data, data[:28, :28])


def test_simulate_keeps_no_data_out(runner, tmp_path, mixture):
    data, _, _, wavelengths = mixture
    holes = data.copy()
    holes[:4, :4] = -9999
    path = write_cube(Cube(holes, wavelengths=wavelengths, nodata=-9999.0), tmp_path / "holes.hdr")
    result = runner.invoke(app, ["simulate", str(path), "--ratio", "4", "-o", str(tmp_path / "h")])
    assert result.exit_code == 0, result.output
    lr = read_cube(tmp_path / "h_lr.hdr")
    assert np.isnan(lr.nodata) and np.isnan(lr.data[0, 0]).all()
    assert np.isfinite(lr.data[1:, 1:]).all() and float(np.nanmax(lr.data)) < 10  # -9999 never blurred in


def test_simulate_treats_nan_as_no_data_and_refuses_inf(runner, tmp_path, mixture):
    data, _, _, wavelengths = mixture
    with_nan = data.copy()
    with_nan[10, 10, 3] = np.nan
    path = write_cube(Cube(with_nan, wavelengths=wavelengths), tmp_path / "nan.hdr")
    result = runner.invoke(app, ["simulate", str(path), "--srf", "ikonos:blue,green,red,nir", "-o", str(tmp_path / "n")])
    assert result.exit_code == 0, result.output
    assert "1 no-data pixels" in " ".join(result.stderr.split())
    msi = read_cube(tmp_path / "n_msi.hdr")
    assert np.isnan(msi.nodata) and np.isnan(msi.data[10, 10]).all() and np.isfinite(msi.data).sum() == (32 * 32 - 1) * 4

    with_inf = data.copy()
    with_inf[1, 2, 3] = np.inf
    path = write_cube(Cube(with_inf, wavelengths=wavelengths), tmp_path / "inf.hdr")
    result = runner.invoke(app, ["simulate", str(path), "--ratio", "2", "-o", str(tmp_path / "i")])
    assert result.exit_code == 1
    line = one_error_line(result)
    assert str(path) in line and "1 pixels hold infinite values" in line
    assert not list(tmp_path.glob("i_*"))


def test_simulate_srf_without_overlap_fails_cleanly(runner, tmp_path, mixture):
    data, _, _, _ = mixture
    path = write_cube(Cube(data, wavelengths=np.linspace(2000, 2400, 40)), tmp_path / "swir.hdr")
    before = files(tmp_path)
    result = runner.invoke(app, ["simulate", str(path), "--ratio", "4", "--srf", "nikon_d700", "-o", str(tmp_path / "x")])
    assert result.exit_code == 1
    line = one_error_line(result)
    assert str(path) in line and "nikon_d700" in line and "does not overlap" in line
    assert files(tmp_path) == before


def test_simulate_bad_inputs(runner, scene, tmp_path):
    missing = runner.invoke(app, ["simulate", str(tmp_path / "nope.hdr"), "--ratio", "4"])
    assert missing.exit_code == 1 and "not found" in one_error_line(missing)

    unknown = runner.invoke(app, ["simulate", str(scene), "--srf", "worldview9", "-o", str(tmp_path / "w")])
    assert unknown.exit_code == 1 and "unknown SRF 'worldview9'" in one_error_line(unknown)

    usage = runner.invoke(app, ["simulate", str(scene)])
    assert usage.exit_code == 2
    assert runner.invoke(app, ["simulate", str(scene), "--ratio", "4", "--kernel-size", "4"]).exit_code == 2
    assert runner.invoke(app, ["simulate", str(scene), "--ratio", "4", "--psf", "bicubic", "--sigma", "1"]).exit_code == 2
    assert not list(tmp_path.glob("w_*")) and not list(tmp_path.glob("nope*"))


def test_simulate_refuses_existing_outputs(runner, scene, tmp_path):
    prefix = str(tmp_path / "case")
    assert runner.invoke(app, ["simulate", str(scene), "--ratio", "4", "-o", prefix]).exit_code == 0
    stamp = (tmp_path / "case_lr.img").read_bytes()
    again = runner.invoke(app, ["simulate", str(scene), "--ratio", "4", "--srf", "ikonos", "-o", prefix])
    assert again.exit_code == 1 and "--overwrite" in one_error_line(again)
    assert not (tmp_path / "case_msi.hdr").exists()  # nothing of the set was written
    forced = runner.invoke(app, ["simulate", str(scene), "--ratio", "4", "--sigma", "1", "-o", prefix, "--overwrite"])
    assert forced.exit_code == 0
    assert (tmp_path / "case_lr.img").read_bytes() != stamp


def test_simulate_makes_the_missing_folder_of_its_prefix(runner, scene, tmp_path):
    """`-o sim/x` with no sim/ yet: made, as --out-dir and every other command's -o folder are."""
    result = runner.invoke(app, ["simulate", str(scene), "--ratio", "4", "-o", str(tmp_path / "absent" / "deeper" / "case")])
    assert result.exit_code == 0, result.output
    assert files(tmp_path / "absent" / "deeper") == ["case_lr.hdr", "case_lr.img"]
    # a run that fails takes the folders it made away again
    failed = runner.invoke(app, ["simulate", str(scene), "--srf", "nosuch", "-o", str(tmp_path / "other" / "case")])
    assert failed.exit_code == 1 and not (tmp_path / "other").exists()
    (tmp_path / "plain").write_text("a file")
    blocked = runner.invoke(app, ["simulate", str(scene), "--ratio", "4", "-o", str(tmp_path / "plain" / "case")])
    assert blocked.exit_code == 1 and "plain: is a file, not a directory" in one_error_line(blocked)


def test_a_misspelt_srf_name_gets_a_suggestion(runner, scene, tmp_path):
    result = runner.invoke(app, ["simulate", str(scene), "--srf", "sentinal2a", "-o", str(tmp_path / "case")])
    assert result.exit_code == 1
    assert "unknown SRF 'sentinal2a'; did you mean sentinel2a?" in one_error_line(result)
    result = runner.invoke(app, ["simulate", str(scene), "--srf", "worldview9", "-o", str(tmp_path / "case")])
    assert "did you mean" not in result.output


def test_simulate_trailing_slash_is_a_directory_even_when_missing(runner, scene, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["simulate", str(scene), "--ratio", "2", "-o", "cases/"])
    assert result.exit_code == 0, result.output
    assert not list(tmp_path.glob("cases_*"))  # not a prefix: no cases_lr.hdr beside it
    assert files(tmp_path / "cases") == ["scene_lr.hdr", "scene_lr.img"]


# ---------------------------------------------------------------------------------------------
# evaluate: images
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def estimate(tmp_path, scene) -> Path:
    """A bicubic up-sampling of the scene's ×4 degradation: a plausible imperfect result."""
    source = read_cube(scene)
    upsampled = degrade.resize_bicubic(degrade.spatial_degrade(source.physical(), 4), 32, 32)
    return write_cube(source.replace(data=upsampled), tmp_path / "estimate.hdr")


def test_evaluate_json_matches_the_library(runner, scene, estimate, tmp_path):
    per_band = tmp_path / "bands.csv"
    result = runner.invoke(
        app, ["evaluate", str(estimate), "--reference", str(scene), "--scale", "4", "--json", "--per-band", str(per_band)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    expected = metrics.quality_report(read_cube(estimate).data, read_cube(scene).data, scale=4)
    for key, value in expected.items():
        assert report["metrics"][key] == pytest.approx(value, rel=1e-9)
    assert report["valid_pixels"] == 32 * 32 and report["bands_used"] == 40
    assert "PSNR" not in result.output  # --json replaces the table: nothing else on stdout or stderr
    with open(per_band) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 40 and rows[0]["name"] == "b0" and float(rows[0]["wavelength_nm"]) == pytest.approx(400)
    assert np.mean([float(r["psnr"]) for r in rows]) == pytest.approx(report["metrics"]["psnr"], rel=1e-5)


def test_evaluate_identical_cubes_reports_infinite_psnr_without_nan(runner, scene):
    result = runner.invoke(app, ["evaluate", str(scene), "-r", str(scene), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["metrics"]["psnr"] is None and report["metrics"]["ergas"] is None
    assert report["metrics"]["ssim"] == pytest.approx(1.0)
    assert any("psnr: infinite" in note for note in report["notes"])
    assert "nan" not in result.output.lower()
    table = runner.invoke(app, ["evaluate", str(scene), "-r", str(scene)])
    assert table.exit_code == 0 and table.stderr == ""
    assert "inf" in table.stdout and "PSNR" in table.stdout  # without --json the scores are a table on stdout


def test_evaluate_leaves_declared_no_data_out(runner, scene, estimate, tmp_path):
    source = read_cube(estimate)
    holes = np.array(source.data)
    holes[:5, :5] = np.nan
    masked = write_cube(source.replace(data=holes, nodata=float("nan")), tmp_path / "masked.hdr")
    result = runner.invoke(app, ["evaluate", str(masked), "-r", str(scene), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["excluded_pixels"] == 25
    mask = np.ones((32, 32), bool)
    mask[:5, :5] = False
    assert report["metrics"]["sam"] == pytest.approx(metrics.sam(holes, read_cube(scene).data, mask=mask))

    reference = read_cube(scene)
    coded = np.array(reference.data)
    coded[-3:, -3:] = -1
    coded_path = write_cube(reference.replace(data=coded, nodata=-1.0), tmp_path / "coded.hdr")
    result = runner.invoke(app, ["evaluate", str(estimate), "-r", str(coded_path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["excluded_pixels"] == 9


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_evaluate_undeclared_nan_or_inf_is_an_error(runner, scene, estimate, tmp_path, bad):
    source = read_cube(estimate)
    broken = np.array(source.data)
    broken[3, 4, 5] = bad
    path = write_cube(source.replace(data=broken), tmp_path / "broken.hdr")
    per_band = tmp_path / "bands.csv"
    result = runner.invoke(app, ["evaluate", str(path), "-r", str(scene), "--json", "--per-band", str(per_band)])
    assert result.exit_code == 1
    line = one_error_line(result)
    assert str(path) in line and "NaN/Inf" in line
    assert result.stdout == "" and not per_band.exists()


def test_evaluate_inf_is_an_error_even_with_nan_no_data(runner, scene, estimate, tmp_path):
    source = read_cube(estimate)
    broken = np.array(source.data)
    broken[3, 4, 5] = np.inf
    path = write_cube(source.replace(data=broken, nodata=float("nan")), tmp_path / "inf.hdr")
    result = runner.invoke(app, ["evaluate", str(path), "-r", str(scene)])
    assert result.exit_code == 1 and "NaN/Inf" in one_error_line(result)


def test_evaluate_mismatched_shapes(runner, scene, tmp_path):
    source = read_cube(scene)
    smaller = write_cube(source.replace(data=np.array(source.data)[:, :30]), tmp_path / "smaller.hdr")
    result = runner.invoke(app, ["evaluate", str(smaller), "-r", str(scene), "--json"])
    assert result.exit_code == 1
    line = one_error_line(result)
    assert str(smaller) in line and str(scene) in line and "32×30×40" in line and "32×32×40" in line


def test_evaluate_usage_errors(runner, scene, tmp_path):
    assert runner.invoke(app, ["evaluate", str(scene)]).exit_code == 2
    assert runner.invoke(app, ["evaluate"]).exit_code == 2
    assert runner.invoke(app, ["evaluate", str(scene), "-r", str(scene), "--scale", "0"]).exit_code == 2
    missing = runner.invoke(app, ["evaluate", str(tmp_path / "nope.hdr"), "-r", str(scene)])
    assert missing.exit_code == 1 and "not found" in one_error_line(missing)


def test_evaluate_refuses_to_overwrite_the_csv(runner, scene, tmp_path):
    per_band = tmp_path / "bands.csv"
    per_band.write_text("keep me")
    result = runner.invoke(app, ["evaluate", str(scene), "-r", str(scene), "--per-band", str(per_band)])
    assert result.exit_code == 1 and "--overwrite" in one_error_line(result)
    assert per_band.read_text() == "keep me"


# ---------------------------------------------------------------------------------------------
# evaluate: unmixing
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def unmixing_truth(tmp_path, mixture):
    _, endmembers, abundances, wavelengths = mixture
    names = ["rock", "tree", "water"]
    library = write_library(SpectralLibrary(endmembers, names, wavelengths), tmp_path / "truth.csv")[0]
    cube = write_cube(Cube(abundances.astype(np.float32), band_names=names), tmp_path / "truth_abund.hdr")
    return library, cube


def test_evaluate_unmixing_matches_and_scores(runner, tmp_path, mixture, unmixing_truth):
    _, endmembers, abundances, wavelengths = mixture
    truth_library, truth_abundances = unmixing_truth
    rng = np.random.default_rng(9)
    permutation = [2, 0, 1]
    estimated = endmembers[permutation] * 1.1 + 0.003 * rng.standard_normal(endmembers.shape)
    est_library = write_library(SpectralLibrary(estimated, ["e1", "e2", "e3"], wavelengths), tmp_path / "est.sli")[0]
    est_abundances = abundances[:, :, permutation] + 0.02 * rng.standard_normal(abundances.shape)
    est_cube = write_cube(Cube(est_abundances.astype(np.float32)), tmp_path / "est_abund.hdr")
    per_endmember = tmp_path / "per_endmember.csv"
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--endmembers", str(est_library),
            "--reference-endmembers", str(truth_library),
            "--abundances", str(est_cube),
            "--reference-abundances", str(truth_abundances),
            "--json",
            "--per-band", str(per_endmember),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [m["estimated"] for m in report["matches"]] == ["e2", "e3", "e1"]  # rock=e2, tree=e3, water=e1
    _, sad = metrics.match_endmembers(estimated, endmembers)
    assert report["mean_sad_deg"] == pytest.approx(sad.mean(), rel=1e-6)
    expected = metrics.abundance_rmse(est_abundances[:, :, [1, 2, 0]].astype(np.float32), abundances.astype(np.float32))
    assert report["abundance_rmse"] == pytest.approx(expected, rel=1e-5)
    assert 0.015 < report["abundance_rmse"] < 0.025
    assert len(per_endmember.read_text().splitlines()) == 4
    assert result.stderr == ""
    table = runner.invoke(app, ["evaluate", "--endmembers", str(est_library), "--reference-endmembers", str(truth_library)])
    assert table.exit_code == 0 and "rock" in table.stdout and table.stderr == ""


def test_evaluate_unmixing_abundances_alone_are_matched_by_rmse(runner, tmp_path, mixture, unmixing_truth):
    _, _, abundances, _ = mixture
    _, truth_abundances = unmixing_truth
    est_cube = write_cube(Cube(abundances[:, :, [1, 2, 0]].astype(np.float32)), tmp_path / "est.hdr")
    result = runner.invoke(
        app, ["evaluate", "--abundances", str(est_cube), "--reference-abundances", str(truth_abundances), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["abundance_rmse"] == pytest.approx(0.0, abs=1e-7)
    assert [m["estimated_index"] for m in report["matches"]] == [3, 1, 2]


def test_evaluate_unmixing_bad_inputs(runner, tmp_path, mixture, unmixing_truth):
    _, endmembers, abundances, wavelengths = mixture
    truth_library, truth_abundances = unmixing_truth
    too_few = write_library(SpectralLibrary(endmembers[:2], ["a", "b"], wavelengths), tmp_path / "few.csv")[0]
    result = runner.invoke(app, ["evaluate", "--endmembers", str(too_few), "--reference-endmembers", str(truth_library)])
    assert result.exit_code == 1 and "2 estimated endmembers" in one_error_line(result)

    fewer_bands = write_library(SpectralLibrary(endmembers[:, :30], ["a", "b", "c"]), tmp_path / "short.csv")[0]
    result = runner.invoke(app, ["evaluate", "--endmembers", str(fewer_bands), "--reference-endmembers", str(truth_library)])
    assert result.exit_code == 1 and "30 bands" in one_error_line(result)

    small = write_cube(Cube(abundances[:20].astype(np.float32)), tmp_path / "small.hdr")
    result = runner.invoke(app, ["evaluate", "--abundances", str(small), "--reference-abundances", str(truth_abundances)])
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "20×32" in line and "32×32" in line and str(small) in line

    assert runner.invoke(app, ["evaluate", "--endmembers", str(truth_library)]).exit_code == 2
    assert runner.invoke(app, ["evaluate", str(truth_abundances), "--endmembers", str(truth_library)]).exit_code == 2
