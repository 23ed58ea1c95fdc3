"""Fusion when the data do not follow the default sensor model: a PSF given as a kernel with
block-average decimation and zero-padded borders (HyperBench's protocol), a wrong PSF width, a few
bad MSI pixels, misregistration, a scene that changed between the acquisitions, and the guard
against returning something worse than bicubic."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import gaussian_srf, make_mixture
from scipy import ndimage, signal

from hsiuu_cli import degrade, metrics
from hsiuu_cli.cube import Cube
from hsiuu_cli.fusion import fuse, run_pipeline
from hsiuu_cli.fusion import guard
from hsiuu_cli.fusion.guard import EDGE_WEIGHT_POWER, Checks, check_against_bicubic, edge_line_weights, edge_pixel_weights, safe_alpha
from hsiuu_cli.fusion.observation import SensorFit, SpatialModel
from hsiuu_cli.simulate import simulate_pair

FAST = {"epochs": 40, "seed": 0}


@pytest.fixture(scope="module")
def textured():
    """A 64 × 64 × 40 mixture with fine texture, and a 4-band SRF."""
    cube, _, _, wavelengths = make_mixture(64, 64, 40, 4, seed=7)
    texture = ndimage.gaussian_filter(np.random.default_rng(3).random((64, 64)), 1.5)[:, :, None]
    cube = (cube * (0.7 + 0.6 * texture / texture.max())).astype(np.float32)
    return cube, wavelengths, gaussian_srf(wavelengths, (450, 550, 650, 850), 50.0)


def hyperbench_style_lr(cube: np.ndarray, kernel: np.ndarray, ratio: int) -> np.ndarray:
    """Zero-padded 'same' convolution, then the mean of each ratio × ratio block (OpenCV INTER_AREA)."""
    blurred = np.stack([signal.convolve2d(cube[:, :, b], kernel, mode="same", boundary="fill") for b in range(cube.shape[2])], axis=2)
    rows, cols = cube.shape[0] // ratio, cube.shape[1] // ratio
    return blurred.reshape(rows, ratio, cols, ratio, -1).mean(axis=(1, 3)).astype(np.float32)


def test_kernel_with_block_averaging_and_zero_borders_is_recognised(textured):
    cube, _, srf = textured
    kernel = degrade.gaussian_psf(1.5, 9)
    lr = hyperbench_style_lr(cube, kernel, 4)
    msi = degrade.spectral_degrade(cube, srf).astype(np.float32)
    given = fuse(lr, msi, srf, psf_kernel=kernel, **FAST)
    assert "given 9-pixel PSF averaged over 4×4 blocks" in given.info["psf_model"]
    assert given.info["border"] == "zero"
    assert given.info["misregistration"] == pytest.approx([0.0, 0.0], abs=0.05)
    assert min(given.info["msi_trust"]) > 0.5  # the edges no longer read as MSI error
    bicubic = degrade.resize_bicubic(lr, 64, 64)
    assert metrics.psnr(given.fused, cube) > metrics.psnr(bicubic, cube) + 10
    # without the kernel the estimate still finds block averaging and the zero borders
    estimated = fuse(lr, msi, srf, **FAST)
    assert "averaged over 4×4 blocks" in estimated.info["psf_model"] and estimated.info["border"] == "zero"


def test_a_scene_with_only_edge_pixels_still_finds_its_borders(textured):
    # 6 × 7 LR pixels at ratio 8 under a 15-pixel kernel: too few LR pixels away from the edge to fit the PSF on,
    # so the border handling is fitted with it (HyperBench's Salton Sea ×8)
    cube, _, srf = textured
    cube = cube[:48, :56]
    kernel = degrade.gaussian_psf(3.4, 15)
    lr = hyperbench_style_lr(cube, kernel, 8)
    msi = degrade.spectral_degrade(cube, srf).astype(np.float32)
    result = fuse(lr, msi, srf, psf_kernel=kernel, **FAST)
    assert result.info["border"] == "zero" and "averaged over 8×8 blocks" in result.info["psf_model"]
    assert result.info["misregistration"] == pytest.approx([0.0, 0.0], abs=0.25)
    bicubic = degrade.resize_bicubic(lr, 48, 56)
    assert metrics.psnr(result.fused, cube) > metrics.psnr(bicubic, cube) + 10


def test_a_wrong_psf_width_is_not_taken_on_trust(textured):
    cube, _, srf = textured
    lr = degrade.spatial_degrade(cube, 4, sigma=2.0)
    msi = degrade.spectral_degrade(cube, srf).astype(np.float32)
    matched = fuse(lr, msi, srf, **FAST)
    wrong = fuse(lr, msi, srf, psf_sigma=2.4, **FAST)
    assert "σ=2.00" in wrong.info["psf_model"] and "fitted: Gaussian PSF σ=2.0" in " ".join(wrong.info["psf_candidates"])
    assert metrics.psnr(wrong.fused, cube) > metrics.psnr(matched.fused, cube) - 0.2


def test_a_few_bad_msi_pixels_do_not_collapse_the_trust():
    """A saturated MSI blob (one LR pixel's worth, blurred over ~25 of 1024 LR pixels by the PSF) is
    set aside: the PSF, gains and trust stay those of the clean pair."""
    cube, _, _, wavelengths = make_mixture(128, 128, 40, 4, seed=7)
    texture = ndimage.gaussian_filter(np.random.default_rng(3).random((128, 128)), 1.5)[:, :, None]
    cube = (cube * (0.7 + 0.6 * texture / texture.max())).astype(np.float32)
    srf = gaussian_srf(wavelengths, (450, 550, 650, 850), 50.0)
    lr = degrade.spatial_degrade(cube, 4, sigma=2.0)
    msi = degrade.spectral_degrade(cube, srf).astype(np.float32)
    clean = fuse(lr, msi, srf, **FAST)
    spoiled = msi.copy()
    spoiled[62:66, 62:66] = 3.0 * msi.max()
    result = fuse(lr, spoiled, srf, **FAST)
    assert result.info["msi_outlier_pixels"] > 0
    assert min(result.info["msi_trust"]) > 0.5 * min(clean.info["msi_trust"])
    assert result.info["msi_fit_residual"] < 0.01
    assert "outliers" in {w["part"] for w in result.info["model_warnings"]}
    away = np.ones((128, 128), bool)
    away[52:76, 52:76] = False
    # the clean pair's result is at 56 dB, where 25 training pixels fewer move the PSNR by dB; a collapsed trust
    # would fall towards bicubic, tens of dB below
    assert metrics.psnr(result.fused[away], cube[away]) > metrics.psnr(clean.fused[away], cube[away]) - 3.0


def test_misregistration_is_estimated_and_reported(textured):
    cube, wavelengths, srf = textured
    source = Cube(cube, wavelengths=wavelengths)
    case = simulate_pair(source, ratio=4, shift=(1.5, -1.0))
    msi = degrade.spectral_degrade(cube, srf).astype(np.float32)
    result = fuse(case.lr.data, msi, srf, **FAST)
    # simulate samples pixel 1 of each 4-pixel block (0.5 before its centre), then the shift
    assert result.info["misregistration"] == pytest.approx([-0.5 + 1.5, -0.5 - 1.0], abs=0.15)
    aligned = fuse(simulate_pair(source, ratio=4).lr.data, msi, srf, **FAST)
    assert metrics.psnr(result.fused, cube) > metrics.psnr(aligned.fused, cube) - 2.0


def test_edge_lines_are_weighted_by_their_misfit_against_the_interior():
    energy = np.full((6, 5), 2e-3)
    energy[0, :] = 8e-3  # the top row misfits 4 × the interior: a quarter of the weight
    energy[1:, 0] = 1e-2  # the left column 5 ×, but not in the corner, which the top row's median ignores
    energy[5, 2] = np.nan  # a gap is left out of the median
    edge_rows = np.array([True, False, False, False, False, True])
    edge_cols = np.array([True, False, False, False, True])
    rows, cols = edge_line_weights(energy, edge_rows, edge_cols, typical=2e-3)
    assert rows == pytest.approx([0.25, 1, 1, 1, 1, 1])  # the bottom row fits as well as the interior
    assert cols == pytest.approx([0.2, 1, 1, 1, 1])  # the column's median over the inner rows only


def cut_from_a_larger_scene(shift: tuple[float, float]):
    """A 64 × 64 × 40 reference cut from a 72 × 72 scene, its 4-band MSI, and its LR-HSI ×4 cut from the scene moved
    by ``shift`` HR pixels: a misregistered pair whose LR edge pixels see real ground beyond the MSI's edge."""
    cube, _, _, wavelengths = make_mixture(72, 72, 40, 4, seed=7)
    texture = ndimage.gaussian_filter(np.random.default_rng(3).random((72, 72)), 0.8)[:, :, None]
    cube = (cube * (0.4 + 1.2 * texture / texture.max())).astype(np.float32)
    srf = gaussian_srf(wavelengths, (450, 550, 650, 850), 50.0)
    reference = cube[4:68, 4:68]
    msi = degrade.spectral_degrade(reference, srf).astype(np.float32)
    shifted = degrade.spatial_degrade(degrade.shift(cube, *shift)[4:68, 4:68], 4, sigma=2.0).astype(np.float32)
    return reference, msi, srf, shifted


def test_edge_lines_that_see_past_the_msi_weigh_less_in_the_consistency_step(monkeypatch):
    """A misregistered pair cut from a larger scene: the LR-HSI's outer lines see ground the MSI does
    not show, which no border model explains; weighted down, they steer the pixels inside less."""
    reference, msi, srf, shifted = cut_from_a_larger_scene((2.0, -1.5))
    registered = degrade.spatial_degrade(reference, 4, sigma=2.0).astype(np.float32)
    assert fuse(registered, msi, srf, **FAST).info["edge_lines_down_weighted"] == 0
    weighted = fuse(shifted, msi, srf, **FAST)
    assert weighted.info["edge_lines_down_weighted"] >= 1
    monkeypatch.setattr(guard, "edge_line_weights", lambda energy, rows, cols, typical: (np.ones(rows.size), np.ones(cols.size)))
    unweighted = fuse(shifted, msi, srf, **FAST)
    assert metrics.psnr(weighted.fused, reference) > metrics.psnr(unweighted.fused, reference) + 0.1


def test_edge_pixels_are_weighted_in_training_by_their_own_misfit():
    energy = np.full((4, 5), 2e-3)
    edge = np.zeros((4, 5), dtype=bool)
    edge[0], edge[:, 0] = True, True
    assert edge_pixel_weights(energy, edge, typical=2e-3) is None  # every edge pixel fits as the interior does
    energy[0, 2] = 4e-3  # twice the typical misfit
    energy[2, 0] = 1e-3  # better than typical: still 1, never above
    energy[0, 4] = np.nan  # no measured misfit
    energy[2, 2] = 1.0  # an interior pixel is not an edge pixel, whatever its misfit
    weights = edge_pixel_weights(energy, edge, typical=2e-3)
    expected = np.ones((4, 5))
    expected[0, 2] = 0.5**EDGE_WEIGHT_POWER
    assert weights == pytest.approx(expected)


def test_misfit_edge_pixels_weigh_less_in_training(monkeypatch):
    """A misregistered pair cut from a larger scene: the LR-HSI's edge pixels that see ground the MSI does not
    show would teach the network a wrong map of the MSI, which it then applies everywhere."""
    reference, msi, srf, shifted = cut_from_a_larger_scene((2.0, 2.0))
    weighted = fuse(shifted, msi, srf, **FAST)
    assert weighted.info["edge_pixels_down_weighted"] >= 1
    monkeypatch.setattr(guard, "edge_pixel_weights", lambda energy, edge, typical: None)
    unweighted = fuse(shifted, msi, srf, **FAST)
    assert unweighted.info["edge_pixels_down_weighted"] == 0
    assert metrics.psnr(weighted.fused, reference) > metrics.psnr(unweighted.fused, reference) + 0.15


def test_a_scene_that_changed_is_reported_with_the_measured_mismatch(textured):
    cube, _, srf = textured
    lr = degrade.spatial_degrade(cube, 4, sigma=2.0)
    later = cube.copy()
    later[24:, 24:] = cube[24:, 24:][::-1, ::-1]  # the lower right differs at the MSI's date
    msi = degrade.spectral_degrade(later, srf).astype(np.float32)
    result = fuse(lr, msi, srf, **FAST)
    warnings = {w["part"]: w["message"] for w in result.info["model_warnings"]}
    assert "content" in warnings and "% of the HSI's variance" in warnings["content"]
    assert result.info["refit_iterations"] == 0  # an MSI hardly trusted has nothing to teach the network at HR
    checks = result.info["checks"]
    for name, floor in (("lr_consistency", "lr"), ("msi_consistency", "msi")):
        limit = max(checks[name]["bicubic"], checks["noise_floor"][floor])
        assert checks[name]["returned"] <= limit * (1 + 1e-5) + 1e-7


def test_safe_alpha_keeps_every_quadratic_at_most_its_bicubic_value():
    quadratics = [(4.0, -1.0, 1.0), (1.0, -0.2, 2.0)]  # a α² + 2 b α + c
    alpha = safe_alpha(quadratics)
    assert alpha == pytest.approx(0.4)  # the second: α (α − 0.4) ≤ 0
    for a, b, c in quadratics:
        assert a * alpha**2 + 2 * b * alpha + c <= c + 1e-12
    assert safe_alpha([(1.0, 0.5, 1.0)]) == 0.0  # worse from the first step: bicubic itself
    assert safe_alpha([(1.0, -2.0, 5.0)]) == 1.0
    # with a limit above the value at α = 0 (a noise floor), the root of a α² + 2 b α + c = limit
    alpha = safe_alpha([(1.0, 0.5, 1.0)], [3.0])
    assert alpha == pytest.approx(1.0) or 1.0 * alpha**2 + 2 * 0.5 * alpha + 1.0 == pytest.approx(3.0)
    alpha = safe_alpha([(4.0, 0.5, 1.0)], [2.0])
    assert 4.0 * alpha**2 + 1.0 * alpha + 1.0 == pytest.approx(2.0)


def test_guard_blends_a_result_worse_than_bicubic(textured):
    cube, _, srf = textured
    lr = degrade.spatial_degrade(cube, 4, sigma=2.0)
    msi = degrade.spectral_degrade(cube, srf).astype(np.float32)
    sensor = SensorFit(SpatialModel(4, 2.0, 1.0, 1.0), np.ones(4), np.zeros(4), 0.0, np.zeros(4))
    noisy = degrade.resize_bicubic(lr, 64, 64) + np.random.default_rng(0).normal(0, 0.2, (64, 64, 40)).astype(np.float32)

    def msi_strip(start, stop):
        return msi[start:stop], np.ones((stop - start, 64), bool)

    out = noisy.copy()
    checks = check_against_bicubic(out, lr, np.ones((16, 16), bool), msi_strip, sensor, srf, strip_rows=16)
    assert checks.failed and 0.0 <= checks.alpha < 1.0
    summary = checks.summary()
    for name in ("lr_consistency", "msi_consistency"):
        assert summary[name]["returned"] <= summary[name]["bicubic"] * (1 + 1e-5)
    # a denoised result is not failed for reproducing noisy data less closely than bicubic: the noise floor
    floored = check_against_bicubic(noisy.copy(), lr, np.ones((16, 16), bool), msi_strip, sensor, srf, strip_rows=16,
                                    lr_noise=1.0, msi_noise=np.full(4, 1e3))
    assert not floored.failed and floored.alpha == 1.0
    assert not np.allclose(out, noisy)
    kept = noisy.copy()
    unguarded = check_against_bicubic(kept, lr, np.ones((16, 16), bool), msi_strip, sensor, srf, strip_rows=16, blend=False)
    assert unguarded.verdict().startswith("failed") and np.array_equal(kept, noisy)
    assert isinstance(checks, Checks) and checks.verdict().startswith("blended")


def test_run_pipeline_takes_a_batch_of_one_and_returns_the_summary(textured):
    cube, _, srf = textured
    kernel = degrade.gaussian_psf(1.5, 9)
    lr = hyperbench_style_lr(cube, kernel, 4)
    msi = degrade.spectral_degrade(cube, srf).astype(np.float32)
    fused, info = run_pipeline(msi[None], lr[None], srf.T, psf=kernel, metadata={"epochs": 30, "return_info": True})
    assert fused.shape == (1, 64, 64, 40)
    assert "given 9-pixel PSF" in info["psf_model"] and info["guard"] == "passed"
    plain = run_pipeline(msi, lr, srf, psf=kernel, metadata={"epochs": 30})
    assert plain.shape == (64, 64, 40)


def test_a_wrong_srf_does_not_move_the_result_by_a_noise_offset(shared_data):
    # Jasper Ridge seen by a Nikon D700, fused as if by IKONOS: the sensor model explains under a fifth of the HSI
    # through the SRF, so its best sampling phase is noise (it was 3 MSI pixels off, 6 dB below bicubic)
    from hsiuu_cli.io import read_cube
    from hsiuu_cli.srf import load_srf, srf_matrix

    cube = read_cube(shared_data / "unmixing/jasper_ridge/jasper_ridge.hdr")
    good = cube.good_band_indices()
    reference = cube.physical()[:, :, good]
    reference = (reference / reference.max()).astype(np.float32)
    wavelengths = cube.wavelengths[good]
    lr = degrade.spatial_degrade(reference, 4, sigma=2.0)
    msi = degrade.spectral_degrade(reference, srf_matrix(load_srf("nikon_d700"), wavelengths))
    result = fuse(lr, msi, srf_matrix(load_srf("ikonos:blue,green,red"), wavelengths), **FAST)
    assert result.info["misregistration"] == [0.0, 0.0]  # the registered grid kept
    assert any("explains only" in warning["message"] for warning in result.info["model_warnings"])
    bicubic = degrade.resize_bicubic(lr, reference.shape[0], reference.shape[1])
    assert metrics.psnr(result.fused, reference) > metrics.psnr(bicubic, reference) - 0.5


def test_a_textured_scene_seen_in_three_bands_is_not_drowned_by_the_noise_augmentation(shared_data):
    """Pavia University (urban, 1.3 m) under HyperBench's degradation with a 3-band MSI: the MSI noise
    estimate counts the scene's own detail as noise, many times over; the LR fit's bound must keep
    the training's noisy copies from costing much (before the bound: −3.7 dB against none; −0.5 with it)."""
    from hsiuu_cli.io import read_cube

    source = read_cube(shared_data / "scenes" / "pavia_university" / "pavia_lr_hsi.hdr")
    cube = source.physical()[:80, :48, source.good_band_indices()].astype(np.float32)
    cube /= cube.max()
    kernel = degrade.gaussian_psf(3.4, 15)
    srf = gaussian_srf(source.wavelengths[source.good_band_indices()], (500, 650, 800), 30.0)
    lr = degrade.add_noise(hyperbench_style_lr(cube, kernel, 4), 35, 0)
    msi = degrade.add_noise(degrade.spectral_degrade(cube, srf), 40, 1).astype(np.float32)
    default = fuse(lr, msi, srf, psf_kernel=kernel, seed=0)
    without = fuse(lr, msi, srf, psf_kernel=kernel, seed=0, noise_augmentation=0.0)
    assert metrics.psnr(default.fused, cube) > metrics.psnr(without.fused, cube) - 1.0
