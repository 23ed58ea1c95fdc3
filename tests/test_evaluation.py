"""The library behind `hsiuu evaluate` (hsiuu_cli.evaluation) and the abundance-map matching in metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import make_mixture
from hsiuu_cli import metrics
from hsiuu_cli.cli.app import app
from hsiuu_cli.cube import Cube
from hsiuu_cli.errors import InvalidDataError, ParameterError, ShapeMismatchError
from hsiuu_cli.evaluation import Evaluation, evaluate_images, evaluate_unmixing
from hsiuu_cli.io import SpectralLibrary, write_cube, write_library

NAMES = ["rock", "tree", "water"]
PERMUTATION = [2, 0, 1]


@pytest.fixture
def pair(tmp_path):
    """A 16×16×12 reference cube and a noisy copy of it: (result path, reference path, result, reference)."""
    data, _, _, wavelengths = make_mixture(16, 16, 12)
    noisy = data + 0.01 * np.random.default_rng(3).standard_normal(data.shape).astype(np.float32)
    reference = write_cube(Cube(data, wavelengths=wavelengths), tmp_path / "reference.hdr")
    result = write_cube(Cube(noisy, wavelengths=wavelengths), tmp_path / "result.hdr")
    return result, reference, noisy, data


def never_warn(message: str) -> None:
    raise AssertionError(f"unexpected warning: {message}")


# ---------------------------------------------------------------------------------------------
# Image mode
# ---------------------------------------------------------------------------------------------


def test_evaluate_images_reports_the_metrics_of_the_library(pair):
    result, reference, noisy, data = pair
    evaluation = evaluate_images(result, reference, scale=4, warn=never_warn)
    assert isinstance(evaluation, Evaluation)
    report = evaluation.report
    expected = metrics.assess_quality(noisy, data, scale=4)
    assert report["metrics"] == pytest.approx(expected.summary, rel=1e-12)
    assert report["mode"] == "image" and report["result"] == str(result) and report["reference"] == str(reference)
    assert (report["rows"], report["cols"], report["bands"], report["bands_used"]) == (16, 16, 12, 12)
    assert report["valid_pixels"] == 256 and report["excluded_pixels"] == 0
    assert report["peak"] == pytest.approx(expected.peak) and report["scale"] == 4 and report["notes"] == []
    assert [row["band"] for row in evaluation.rows] == list(range(1, 13))
    assert evaluation.rows[0]["wavelength_nm"] == "400.0000" and evaluation.rows[0]["name"] == ""
    assert [row["psnr"] for row in evaluation.rows] == pytest.approx(expected.per_band["psnr"])


def test_evaluate_images_is_what_the_command_prints(runner, pair):
    result, reference, _, _ = pair
    printed = runner.invoke(app, ["evaluate", str(result), "-r", str(reference), "--data-range", "1", "--json"])
    assert printed.exit_code == 0, printed.output
    evaluation = evaluate_images(result, reference, data_range=1.0)
    assert json.loads(printed.stdout) == json.loads(json.dumps(evaluation.report))


def test_evaluate_images_identical_cubes_note_what_is_infinite_or_missing(pair):
    _, reference, _, _ = pair
    report = evaluate_images(reference, reference).report
    assert report["metrics"]["psnr"] is None and report["metrics"]["ergas"] is None
    assert report["metrics"]["rmse"] == 0.0 and report["metrics"]["ssim"] == pytest.approx(1.0)
    assert report["notes"] == ["psnr: infinite (some band equals the reference exactly)", "ergas: needs --scale"]


def test_evaluate_images_leaves_out_declared_no_data_and_bad_bands(tmp_path, pair):
    _, reference, noisy, data = pair
    holes = noisy.copy()
    holes[:3, :4] = np.nan
    bad = np.zeros(12, dtype=bool)
    bad[[0, 5]] = True
    result = write_cube(Cube(holes, nodata=float("nan"), bad_bands=bad), tmp_path / "holes.hdr")
    coded = data.copy()
    coded[-2:, -2:] = -1
    coded_reference = write_cube(Cube(coded, nodata=-1.0), tmp_path / "coded.hdr")

    evaluation = evaluate_images(result, coded_reference)
    mask = np.ones((16, 16), dtype=bool)
    mask[:3, :4] = False
    mask[-2:, -2:] = False
    used = [b for b in range(12) if not bad[b]]
    expected = metrics.assess_quality(noisy[:, :, used], data[:, :, used], mask=mask)
    report = evaluation.report
    assert report["valid_pixels"] == 256 - 12 - 4 and report["excluded_pixels"] == 16
    assert report["bands_used"] == 10 and [row["band"] for row in evaluation.rows] == [b + 1 for b in used]
    assert report["metrics"]["sam"] == pytest.approx(expected.summary["sam"], rel=1e-12)
    assert report["metrics"]["ssim"] == pytest.approx(expected.summary["ssim"], rel=1e-12)


def test_evaluate_images_compares_physical_values(tmp_path, pair):
    result, _, _, data = pair
    stored = np.round(data * 10000).astype(np.int16)
    scaled = write_cube(Cube(stored, scale_factor=10000.0), tmp_path / "scaled.hdr")
    physical = write_cube(Cube((stored / 10000.0).astype(np.float32)), tmp_path / "physical.hdr")
    # with --scale every metric is a number (ERGAS would be None without it: approx cannot compare None)
    report = evaluate_images(result, scaled, scale=4).report
    expected = evaluate_images(result, physical, scale=4).report["metrics"]
    assert None not in expected.values() and report["metrics"] == pytest.approx(expected, rel=1e-12)
    assert report["peak"] == pytest.approx(stored.max() / 10000.0)


def test_evaluate_images_warns_when_the_wavelengths_differ(tmp_path, pair):
    _, reference, noisy, _ = pair
    _, _, _, wavelengths = make_mixture(16, 16, 12)
    shifted = write_cube(Cube(noisy, wavelengths=wavelengths + 3), tmp_path / "shifted.hdr")
    messages = []
    report = evaluate_images(shifted, reference, warn=messages.append).report
    assert messages == [f"{shifted} and {reference} have different wavelengths; bands are compared by position"]
    assert report["bands_used"] == 12
    with pytest.warns(UserWarning, match="different wavelengths"):
        evaluate_images(shifted, reference)

    within = write_cube(Cube(noisy, wavelengths=wavelengths + 0.9), tmp_path / "within.hdr")
    evaluate_images(within, reference, warn=never_warn)


def test_evaluate_images_warns_before_refusing_bad_values(tmp_path, pair):
    _, reference, noisy, _ = pair
    _, _, _, wavelengths = make_mixture(16, 16, 12)
    broken = noisy.copy()
    broken[1, 2, 3] = np.nan
    path = write_cube(Cube(broken, wavelengths=wavelengths + 3), tmp_path / "broken.hdr")
    messages = []
    with pytest.raises(InvalidDataError, match="1 pixels hold NaN/Inf values that are not declared no-data") as caught:
        evaluate_images(path, reference, warn=messages.append)
    assert caught.value.path == path and len(messages) == 1


@pytest.mark.parametrize("nodata", [None, float("nan")])
def test_evaluate_images_refuses_infinite_values(tmp_path, pair, nodata):
    _, reference, noisy, _ = pair
    broken = noisy.copy()
    broken[4, 4, 4] = np.inf
    path = write_cube(Cube(broken, nodata=nodata), tmp_path / "inf.hdr")
    with pytest.raises(InvalidDataError, match="NaN/Inf") as caught:
        evaluate_images(path, reference)
    assert caught.value.path == path


def test_evaluate_images_errors_name_the_files(tmp_path, pair):
    result, reference, noisy, _ = pair
    smaller = write_cube(Cube(noisy[:, :10]), tmp_path / "smaller.hdr")
    with pytest.raises(ShapeMismatchError, match="16×10×12 but the reference .*16×16×12") as caught:
        evaluate_images(smaller, reference)
    assert caught.value.path == smaller

    empty = write_cube(Cube(np.full_like(noisy, np.nan), nodata=float("nan")), tmp_path / "empty.hdr")
    with pytest.raises(InvalidDataError, match="no pixel has data in both") as caught:
        evaluate_images(empty, reference)
    assert caught.value.path == empty

    all_bad = write_cube(Cube(noisy, bad_bands=np.ones(12, dtype=bool)), tmp_path / "all_bad.hdr")
    with pytest.raises(InvalidDataError, match="every band is flagged bad"):
        evaluate_images(result, all_bad)


# ---------------------------------------------------------------------------------------------
# Unmixing mode
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def unmixing(tmp_path):
    """Truth and a permuted, scaled, noisy estimate of it, as files: a dict of paths and arrays."""
    _, endmembers, abundances, wavelengths = make_mixture(16, 16, 30)
    rng = np.random.default_rng(5)
    estimated = endmembers[PERMUTATION] * 1.2 + 0.002 * rng.standard_normal(endmembers.shape)
    est_abundances = (abundances[:, :, PERMUTATION] + 0.01 * rng.standard_normal(abundances.shape)).astype(np.float32)
    truth_abundances = abundances.astype(np.float32)
    return {
        "endmembers": write_library(SpectralLibrary(estimated, ["e1", "e2", "e3"], wavelengths), tmp_path / "est.csv")[0],
        "reference_endmembers": write_library(SpectralLibrary(endmembers, NAMES, wavelengths), tmp_path / "truth.csv")[0],
        "abundances": write_cube(Cube(est_abundances), tmp_path / "est_abund.hdr"),
        "reference_abundances": write_cube(Cube(truth_abundances, band_names=NAMES), tmp_path / "truth_abund.hdr"),
        "arrays": (estimated, endmembers, est_abundances, truth_abundances, wavelengths),
    }


def test_evaluate_unmixing_matches_endmembers_and_scores_abundances(unmixing):
    estimated, endmembers, est_abundances, truth_abundances, _ = unmixing["arrays"]
    paths = {key: value for key, value in unmixing.items() if key != "arrays"}
    evaluation = evaluate_unmixing(**paths)
    report = evaluation.report
    order, sad = metrics.match_endmembers(estimated, endmembers)
    assert order.tolist() == [1, 2, 0]
    assert report["mean_sad_deg"] == pytest.approx(sad.mean(), rel=1e-12)
    assert report["abundance_rmse"] == pytest.approx(
        metrics.abundance_rmse(est_abundances[:, :, order], truth_abundances), rel=1e-12
    )
    assert report["valid_pixels"] == 256 and report["endmembers"] == str(paths["endmembers"])
    assert evaluation.rows is report["matches"]
    assert [(m["reference"], m["estimated"], m["estimated_index"]) for m in report["matches"]] == [
        ("rock", "e2", 2),
        ("tree", "e3", 3),
        ("water", "e1", 1),
    ]
    for k, match in enumerate(report["matches"]):
        assert match["sad_deg"] == pytest.approx(sad[k])
        assert match["abundance_rmse"] == pytest.approx(
            metrics.abundance_rmse(est_abundances[:, :, order[k]], truth_abundances[:, :, k])
        )


def test_evaluate_unmixing_pairs_abundances_alone_by_rmse(tmp_path, unmixing):
    _, _, est_abundances, truth_abundances, _ = unmixing["arrays"]
    holes = est_abundances.copy()
    holes[:2] = np.nan
    spare = np.concatenate([holes, np.full(holes.shape[:2] + (1,), 0.3, dtype=np.float32)], axis=2)
    path = write_cube(Cube(spare, nodata=float("nan")), tmp_path / "spare.hdr")
    report = evaluate_unmixing(abundances=path, reference_abundances=unmixing["reference_abundances"]).report
    assert "mean_sad_deg" not in report and report["valid_pixels"] == 256 - 32
    assert [(m["reference"], m["estimated"]) for m in report["matches"]] == [
        ("rock", "endmember 2"),
        ("tree", "endmember 3"),
        ("water", "endmember 1"),
    ]
    assert report["abundance_rmse"] == pytest.approx(
        metrics.abundance_rmse(est_abundances[2:, :, [1, 2, 0]], truth_abundances[2:]), rel=1e-12
    )


def test_evaluate_unmixing_shares_bands_by_wavelength_within_one_nanometre(tmp_path, unmixing):
    estimated, endmembers, _, _, wavelengths = unmixing["arrays"]
    finer = np.sort(np.concatenate([wavelengths + 0.8, [1000.3, 1700.4]]))
    resampled = np.stack([np.interp(finer, wavelengths + 0.8, spectrum) for spectrum in estimated])
    library = write_library(SpectralLibrary(resampled, ["e1", "e2", "e3"], finer), tmp_path / "finer.csv")[0]
    report = evaluate_unmixing(library, unmixing["reference_endmembers"]).report
    _, sad = metrics.match_endmembers(estimated, endmembers)
    assert report["mean_sad_deg"] == pytest.approx(sad.mean(), rel=1e-9)

    far = write_library(SpectralLibrary(resampled, ["e1", "e2", "e3"], finer + 1.5), tmp_path / "far.csv")[0]
    with pytest.raises(ShapeMismatchError, match="only 0 of the 30 bands .* within 1 nm") as caught:
        evaluate_unmixing(far, unmixing["reference_endmembers"])
    assert caught.value.path == far


def test_evaluate_unmixing_warns_when_same_count_libraries_differ_in_wavelength(tmp_path, unmixing):
    estimated, _, _, _, wavelengths = unmixing["arrays"]
    shifted = write_library(SpectralLibrary(estimated, ["e1", "e2", "e3"], wavelengths + 3.0), tmp_path / "shifted.csv")[0]
    messages: list[str] = []
    evaluate_unmixing(shifted, unmixing["reference_endmembers"], warn=messages.append)
    assert len(messages) == 1 and "different wavelengths; bands are compared by position" in messages[0]
    close = write_library(SpectralLibrary(estimated, ["e1", "e2", "e3"], wavelengths + 0.5), tmp_path / "close.csv")[0]
    evaluate_unmixing(close, unmixing["reference_endmembers"], warn=never_warn)


def test_evaluate_unmixing_errors_name_the_files(tmp_path, unmixing):
    _, endmembers, est_abundances, _, wavelengths = unmixing["arrays"]
    truth_library, truth_abundances = unmixing["reference_endmembers"], unmixing["reference_abundances"]
    few = write_library(SpectralLibrary(endmembers[:2], ["a", "b"], wavelengths), tmp_path / "few.csv")[0]
    with pytest.raises(ShapeMismatchError, match=f"2 estimated endmembers .*reference: {truth_library}") as caught:
        evaluate_unmixing(few, truth_library)
    assert caught.value.path == few

    two_maps = write_cube(Cube(est_abundances[:, :, :2]), tmp_path / "two.hdr")
    with pytest.raises(ShapeMismatchError, match="2 abundance maps cannot be matched with the 3") as caught:
        evaluate_unmixing(abundances=two_maps, reference_abundances=truth_abundances)
    assert caught.value.path == two_maps
    with pytest.raises(ShapeMismatchError, match="2 abundance bands for 3 endmembers"):
        evaluate_unmixing(unmixing["endmembers"], truth_library, two_maps, truth_abundances)

    empty = write_cube(Cube(np.full_like(est_abundances, np.nan), nodata=float("nan")), tmp_path / "empty.hdr")
    with pytest.raises(InvalidDataError, match="no pixel has data in both abundance cubes") as caught:
        evaluate_unmixing(abundances=empty, reference_abundances=truth_abundances)
    assert caught.value.path == empty


def test_evaluate_unmixing_needs_each_estimate_with_its_reference(unmixing):
    with pytest.raises(ParameterError, match="need their reference"):
        evaluate_unmixing(endmembers=unmixing["endmembers"])
    with pytest.raises(ParameterError, match="need their reference"):
        evaluate_unmixing(unmixing["endmembers"], unmixing["reference_endmembers"], unmixing["abundances"])
    with pytest.raises(ParameterError, match="nothing to evaluate"):
        evaluate_unmixing()


# ---------------------------------------------------------------------------------------------
# metrics.match_abundances
# ---------------------------------------------------------------------------------------------


def test_match_abundances_pairs_maps_on_their_rmse():
    _, _, abundances, _ = make_mixture(12, 12, 10, endmembers=4, seed=2)
    rng = np.random.default_rng(1)
    estimated = abundances[:, :, [3, 1, 0, 2]] + 0.01 * rng.standard_normal(abundances.shape)
    order, rmse = metrics.match_abundances(estimated, abundances)
    assert order.tolist() == [2, 1, 3, 0]
    for k in range(4):
        assert rmse[k] == pytest.approx(metrics.abundance_rmse(estimated[:, :, order[k]], abundances[:, :, k]))

    mask = np.ones((12, 12), dtype=bool)
    mask[:6] = False
    estimated[:6] = np.nan
    masked_order, masked_rmse = metrics.match_abundances(estimated.reshape(-1, 4), abundances.reshape(-1, 4), mask=mask)
    assert masked_order.tolist() == [2, 1, 3, 0]
    assert masked_rmse[0] == pytest.approx(metrics.abundance_rmse(estimated[6:, :, 2], abundances[6:, :, 0]))


def test_match_abundances_leaves_spare_estimates_and_refuses_too_few():
    _, _, abundances, _ = make_mixture(8, 8, 10, endmembers=3, seed=4)
    spare = np.concatenate([np.zeros((8, 8, 1)), abundances], axis=2)
    order, rmse = metrics.match_abundances(spare, abundances)
    assert order.tolist() == [1, 2, 3] and rmse == pytest.approx(0.0)
    with pytest.raises(ShapeMismatchError, match="2 estimated abundance maps cannot be matched with 3"):
        metrics.match_abundances(abundances[:, :, :2], abundances)
    with pytest.raises(InvalidDataError, match="no valid pixel"):
        metrics.match_abundances(abundances, abundances, mask=np.zeros((8, 8), dtype=bool))
