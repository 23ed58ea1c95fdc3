"""Metrics against independent, deliberately plain implementations of the definitions in docs/evaluate.md.

Done-criterion of the foundation issue: agreement to 1 % (SSIM to 0.02). Plus known values
(identical inputs, constant offsets, scaled spectra), masks, bad values and the unmixing scores.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from hsiuu_cli import metrics
from hsiuu_cli.errors import InvalidDataError, ShapeMismatchError

# ---------------------------------------------------------------------------------------------
# Independent implementations: loops and textbook formulas, no shared code with hsiuu_cli.metrics
# ---------------------------------------------------------------------------------------------


def pixels(cube, mask):
    return [(r, c) for r in range(cube.shape[0]) for c in range(cube.shape[1]) if mask is None or mask[r, c]]


def ref_psnr(x, y, peak=None, mask=None):
    values = []
    if peak is None:
        peak = max(y[r, c, b] for r, c in pixels(y, mask) for b in range(y.shape[2]))
    for b in range(y.shape[2]):
        errors = [(x[r, c, b] - y[r, c, b]) ** 2 for r, c in pixels(y, mask)]
        values.append(10 * math.log10(peak**2 / (sum(errors) / len(errors))))
    return sum(values) / len(values)


def ref_rmse(x, y, mask=None):
    errors = [(x[r, c, b] - y[r, c, b]) ** 2 for r, c in pixels(y, mask) for b in range(y.shape[2])]
    return math.sqrt(sum(errors) / len(errors))


def ref_sam(x, y, mask=None):
    angles = []
    for r, c in pixels(y, mask):
        a, b = x[r, c], y[r, c]
        cosine = sum(a * b) / math.sqrt(sum(a * a) * sum(b * b))
        angles.append(math.degrees(math.acos(min(1.0, max(-1.0, cosine)))))
    return sum(angles) / len(angles)


def ref_ergas(x, y, scale, mask=None):
    terms = []
    for b in range(y.shape[2]):
        used = pixels(y, mask)
        mse = sum((x[r, c, b] - y[r, c, b]) ** 2 for r, c in used) / len(used)
        mean = sum(y[r, c, b] for r, c in used) / len(used)
        terms.append(mse / mean**2)
    return 100 / scale * math.sqrt(sum(terms) / len(terms))


def ref_cc(x, y, mask=None):
    used = pixels(y, mask)
    values = []
    for b in range(y.shape[2]):
        a = np.array([x[r, c, b] for r, c in used])
        d = np.array([y[r, c, b] for r, c in used])
        values.append(np.corrcoef(a, d)[0, 1])
    return float(np.mean(values))


def ref_ssim(x, y, peak):
    """Wang et al. (2004): 11 × 11 Gaussian window (σ = 1.5) at every pixel whose window fits the image."""
    offsets = np.arange(-5, 6)
    window = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * 1.5**2))
    window /= window.sum()
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    per_band = []
    for b in range(y.shape[2]):
        scores = []
        for r in range(5, y.shape[0] - 5):
            for c in range(5, y.shape[1] - 5):
                a = x[r - 5 : r + 6, c - 5 : c + 6, b]
                d = y[r - 5 : r + 6, c - 5 : c + 6, b]
                mu_a, mu_d = (window * a).sum(), (window * d).sum()
                var_a = (window * (a - mu_a) ** 2).sum()
                var_d = (window * (d - mu_d) ** 2).sum()
                cov = (window * (a - mu_a) * (d - mu_d)).sum()
                scores.append(
                    ((2 * mu_a * mu_d + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_d**2 + c1) * (var_a + var_d + c2))
                )
        per_band.append(np.mean(scores))
    return float(np.mean(per_band))


def ref_uiqi(x, y, size=32):
    """Wang & Bovik (2002): Q on every size × size window (stride 1), averaged; bands averaged."""
    per_band = []
    for b in range(y.shape[2]):
        scores = []
        for r in range(y.shape[0] - size + 1):
            for c in range(y.shape[1] - size + 1):
                a = x[r : r + size, c : c + size, b].ravel()
                d = y[r : r + size, c : c + size, b].ravel()
                mu_a, mu_d = a.mean(), d.mean()
                cov = ((a - mu_a) * (d - mu_d)).mean()
                scores.append(4 * cov * mu_a * mu_d / ((a.var() + d.var()) * (mu_a**2 + mu_d**2)))
        per_band.append(np.mean(scores))
    return float(np.mean(per_band))


# ---------------------------------------------------------------------------------------------


@pytest.fixture
def pair():
    """A smooth reference and a noisy, slightly biased and blurred result."""
    rng = np.random.default_rng(5)
    rows, cols = np.mgrid[0:40, 0:36] / 10.0
    reference = np.stack([0.5 + 0.3 * np.sin(rows * (b + 1) / 2) * np.cos(cols + b) for b in range(4)], axis=2)
    result = 0.97 * reference + 0.01 + 0.03 * rng.standard_normal(reference.shape)
    return result, reference


def test_psnr_rmse_sam_ergas_cc_agree_with_plain_formulas(pair):
    result, reference = pair
    assert metrics.psnr(result, reference) == pytest.approx(ref_psnr(result, reference), rel=0.01)
    assert metrics.psnr(result, reference, data_range=2.0) == pytest.approx(ref_psnr(result, reference, 2.0), rel=0.01)
    assert metrics.rmse(result, reference) == pytest.approx(ref_rmse(result, reference), rel=0.01)
    assert metrics.sam(result, reference) == pytest.approx(ref_sam(result, reference), rel=0.01)
    assert metrics.ergas(result, reference, 4) == pytest.approx(ref_ergas(result, reference, 4), rel=0.01)
    assert metrics.cc(result, reference) == pytest.approx(ref_cc(result, reference), rel=0.01)


def test_ssim_agrees_with_a_direct_windowed_computation(pair):
    result, reference = pair
    peak = reference.max()
    assert metrics.ssim(result, reference) == pytest.approx(ref_ssim(result, reference, peak), abs=0.02)
    assert metrics.ssim(result, reference, data_range=1.0) == pytest.approx(ref_ssim(result, reference, 1.0), abs=0.02)


def test_uiqi_agrees_with_a_direct_windowed_computation(pair):
    result, reference = pair
    assert metrics.uiqi(result, reference) == pytest.approx(ref_uiqi(result, reference), rel=0.01)
    # images smaller than the window use the whole image as one window
    small_result, small_reference = result[:20, :20], reference[:20, :20]
    assert metrics.uiqi(small_result, small_reference) == pytest.approx(ref_uiqi(small_result, small_reference, 20), rel=0.01)


def test_quality_report_matches_the_single_metrics(pair):
    result, reference = pair
    report = metrics.quality_report(result, reference, scale=4)
    assert report["psnr"] == pytest.approx(metrics.psnr(result, reference))
    assert report["ssim"] == pytest.approx(metrics.ssim(result, reference))
    assert report["sam"] == pytest.approx(metrics.sam(result, reference))
    assert report["ergas"] == pytest.approx(metrics.ergas(result, reference, 4))
    assert report["rmse"] == pytest.approx(metrics.rmse(result, reference))
    assert report["cc"] == pytest.approx(metrics.cc(result, reference))
    assert report["uiqi"] == pytest.approx(metrics.uiqi(result, reference))
    assert metrics.quality_report(result, reference)["ergas"] is None
    assessment = metrics.assess_quality(result, reference)
    assert np.mean(assessment.per_band["psnr"]) == pytest.approx(report["psnr"])
    assert assessment.per_band["ssim"].shape == (4,)


def test_identical_inputs():
    reference = np.random.default_rng(0).random((24, 24, 3)) + 0.1
    report = metrics.quality_report(reference.copy(), reference, scale=2)
    assert report["psnr"] == math.inf
    assert report["ssim"] == pytest.approx(1.0)
    assert report["sam"] == pytest.approx(0.0, abs=1e-6)
    assert report["ergas"] == 0.0 and report["rmse"] == 0.0
    assert report["cc"] == pytest.approx(1.0)
    assert report["uiqi"] == pytest.approx(1.0)


def test_constant_offset_and_scaling():
    reference = np.random.default_rng(1).random((16, 16, 3)) + 0.5
    peak = reference.max()
    shifted = reference + 0.1
    assert metrics.rmse(shifted, reference) == pytest.approx(0.1)
    assert metrics.psnr(shifted, reference) == pytest.approx(10 * math.log10(peak**2 / 0.01))
    assert metrics.cc(shifted, reference) == pytest.approx(1.0)
    means = reference.mean(axis=(0, 1))
    assert metrics.ergas(shifted, reference, 4) == pytest.approx(25 * math.sqrt(np.mean((0.1 / means) ** 2)))
    assert metrics.sam(shifted, reference) > 0.1
    scaled = 2 * reference  # same spectral shape, different brightness
    assert metrics.sam(scaled, reference) == pytest.approx(0.0, abs=1e-6)
    assert metrics.cc(scaled, reference) == pytest.approx(1.0)
    # Q multiplies correlation, luminance (2·2μ²/(μ² + 4μ²) = 0.8) and contrast (2·2σ²/(σ² + 4σ²) = 0.8)
    assert metrics.uiqi(scaled, reference) == pytest.approx(0.64, abs=1e-6)


def test_orthogonal_and_zero_spectra_in_sam():
    reference = np.zeros((1, 2, 2))
    reference[0, 0] = [1, 0]
    reference[0, 1] = [0, 0]  # no direction: left out
    result = np.zeros((1, 2, 2))
    result[0, 0] = [0, 3]
    assert metrics.sam(result, reference) == pytest.approx(90.0)


def test_mask_leaves_no_data_out(pair):
    result, reference = pair
    mask = np.ones(reference.shape[:2], dtype=bool)
    mask[:, 30:] = False
    mask[3, 4] = False
    holes = result.copy()
    holes[~mask] = np.nan  # masked pixels may hold anything
    assert metrics.psnr(holes, reference, mask=mask) == pytest.approx(ref_psnr(result, reference, mask=mask), rel=0.01)
    assert metrics.rmse(holes, reference, mask=mask) == pytest.approx(ref_rmse(result, reference, mask), rel=0.01)
    assert metrics.sam(holes, reference, mask=mask) == pytest.approx(ref_sam(result, reference, mask), rel=0.01)
    assert metrics.ergas(holes, reference, 2, mask=mask) == pytest.approx(ref_ergas(result, reference, 2, mask), rel=0.01)
    assert metrics.cc(holes, reference, mask=mask) == pytest.approx(ref_cc(result, reference, mask), rel=0.01)
    report = metrics.quality_report(holes, reference, mask=mask)
    assert all(value is not None and math.isfinite(value) for value in report.values() if value is not None)
    # the masked SSIM is close to the SSIM of the region that has data
    assert report["ssim"] == pytest.approx(metrics.ssim(result[:, :30], reference[:, :30], data_range=reference.max()), abs=0.02)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_raise(pair, bad):
    result, reference = pair
    broken = result.copy()
    broken[2, 3, 1] = bad
    for function in (metrics.psnr, metrics.ssim, metrics.sam, metrics.rmse, metrics.cc, metrics.uiqi, metrics.quality_report):
        with pytest.raises(InvalidDataError, match="result holds 1 NaN/Inf"):
            function(broken, reference)
    with pytest.raises(InvalidDataError, match="reference holds 1 NaN/Inf"):
        metrics.ergas(reference, broken, 4)


def test_shape_mismatch_and_empty_mask(pair):
    result, reference = pair
    with pytest.raises(ShapeMismatchError, match="40×36×4.*40×35×4"):
        metrics.psnr(result, reference[:, :35])
    with pytest.raises(InvalidDataError, match="every pixel is masked"):
        metrics.rmse(result, reference, mask=np.zeros(reference.shape[:2], bool))


def test_undefined_figures_are_none_not_nan():
    flat = np.full((12, 12, 2), 0.5)
    report = metrics.quality_report(flat + 0.1, flat, scale=2)
    assert report["cc"] is None
    assert report["uiqi"] == pytest.approx(2 * 0.6 * 0.5 / (0.6**2 + 0.5**2))  # flat windows: luminance term only
    with pytest.raises(InvalidDataError, match="CC is undefined"):
        metrics.cc(flat + 0.1, flat)
    with pytest.raises(InvalidDataError, match="ERGAS is undefined"):
        metrics.ergas(flat, np.zeros_like(flat), 2)


def test_metrics_on_a_real_crop(shared_data):
    from hsiuu_cli.degrade import resize_bicubic, spatial_degrade
    from hsiuu_cli.io import read_cube

    cube = read_cube(shared_data / "unmixing" / "jasper_ridge" / "jasper_ridge.hdr")
    reference = cube.physical()[:40, :40, ::20].astype(np.float64)
    result = resize_bicubic(spatial_degrade(reference, 4), 40, 40)
    assert metrics.psnr(result, reference) == pytest.approx(ref_psnr(result, reference), rel=0.01)
    assert metrics.sam(result, reference) == pytest.approx(ref_sam(result, reference), rel=0.01)
    assert metrics.ergas(result, reference, 4) == pytest.approx(ref_ergas(result, reference, 4), rel=0.01)
    assert metrics.ssim(result, reference) == pytest.approx(ref_ssim(result, reference, reference.max()), abs=0.02)
    assert metrics.uiqi(result, reference) == pytest.approx(ref_uiqi(result, reference), rel=0.01)


# ---------------------------------------------------------------------------------------------
# Unmixing
# ---------------------------------------------------------------------------------------------


def test_spectral_angles_against_arccos():
    rng = np.random.default_rng(3)
    a, b = rng.random((3, 10)), rng.random((4, 10))
    angles = metrics.spectral_angles(a, b)
    for i in range(3):
        for j in range(4):
            expected = math.degrees(math.acos(a[i] @ b[j] / (np.linalg.norm(a[i]) * np.linalg.norm(b[j]))))
            assert angles[i, j] == pytest.approx(expected, rel=1e-6)
    with pytest.raises(InvalidDataError, match="all zero"):
        metrics.spectral_angles(np.zeros((1, 10)), b)
    with pytest.raises(ShapeMismatchError):
        metrics.spectral_angles(a, b[:, :9])


def test_match_endmembers_finds_the_permutation(mixture):
    _, endmembers, _, _ = mixture
    rng = np.random.default_rng(4)
    permutation = np.array([2, 0, 1])
    estimated = endmembers[permutation] * 1.7 + 0.002 * rng.standard_normal(endmembers.shape)
    order, sad = metrics.match_endmembers(estimated, endmembers)
    assert np.array_equal(permutation[order], [0, 1, 2])
    assert (sad < 1.0).all()
    assert metrics.mean_sad(estimated, endmembers) == pytest.approx(sad.mean())
    # a spare estimate is left unmatched; too few estimates cannot cover the reference
    extra = np.vstack([estimated, rng.random(endmembers.shape[1])])
    assert np.array_equal(metrics.match_endmembers(extra, endmembers)[0], order)
    with pytest.raises(ShapeMismatchError, match="2 estimated endmembers"):
        metrics.match_endmembers(estimated[:2], endmembers)


def test_hungarian_beats_greedy_matching():
    # greedy would pair reference 0 with estimate 0 (the single smallest angle) and pay dearly for reference 1
    reference = np.array([[1.0, 0.0, 0.0], [1.0, 0.3, 0.0]])
    estimated = np.array([[1.0, 0.12, 0.0], [1.0, -0.1, 0.0]])
    order, sad = metrics.match_endmembers(estimated, reference)
    angles = metrics.spectral_angles(reference, estimated)
    best = min(angles[0, 0] + angles[1, 1], angles[0, 1] + angles[1, 0])
    assert sad.sum() == pytest.approx(best)


def test_abundance_rmse_plain_formula(mixture):
    _, _, abundances, _ = mixture
    rng = np.random.default_rng(6)
    estimated = abundances + 0.05 * rng.standard_normal(abundances.shape)
    squares = [
        (estimated[r, c, k] - abundances[r, c, k]) ** 2
        for r in range(abundances.shape[0])
        for c in range(abundances.shape[1])
        for k in range(abundances.shape[2])
    ]
    assert metrics.abundance_rmse(estimated, abundances) == pytest.approx(math.sqrt(sum(squares) / len(squares)), rel=1e-9)
    mask = np.ones(abundances.shape[:2], bool)
    mask[:5] = False
    assert metrics.abundance_rmse(estimated, abundances, mask=mask) == pytest.approx(
        metrics.abundance_rmse(estimated[5:], abundances[5:])
    )
    with pytest.raises(ShapeMismatchError):
        metrics.abundance_rmse(estimated[:, :, :2], abundances)


def test_fcls_with_true_endmembers_on_jasper_ridge_scores_the_published_floor(shared_data):
    """The issue quotes aRMSE 0.085 for FCLS with the true endmembers; our definition must give that figure."""
    from scipy.optimize import nnls

    from hsiuu_cli.io import read_cube, read_library

    folder = shared_data / "unmixing" / "jasper_ridge"
    scene = read_cube(folder / "jasper_ridge.hdr").physical().astype(np.float64)
    truth = read_cube(folder / "abundances_gt.hdr").physical().astype(np.float64)
    endmembers = read_library(folder / "endmembers_gt.csv").spectra.astype(np.float64)
    # FCLS by the classic augmented non-negative least squares (sum-to-one row weighted heavily)
    weight = 1e3
    system = np.vstack([endmembers.T, weight * np.ones((1, endmembers.shape[0]))])
    pixels_ = scene.reshape(-1, scene.shape[2])
    estimated = np.array([nnls(system, np.r_[p, weight])[0] for p in pixels_]).reshape(truth.shape)
    assert metrics.abundance_rmse(estimated, truth) == pytest.approx(0.085, abs=0.002)
