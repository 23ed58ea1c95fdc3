"""The fusion observation model: its operator agrees with hsiuu_cli.degrade, the PSF/radiometry fit
recovers known values, and the consistency solve reproduces both observations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from hsiuu_cli import degrade
from hsiuu_cli.fusion.observation import (
    ConsistencySolver,
    SensorFit,
    SpatialModel,
    apply_spatial,
    fit_sensor,
    msi_noise_power,
    msi_trust,
    sampling_matrix,
)
from hsiuu_cli.unmixing.hysime import signal_subspace

from conftest import gaussian_srf


@pytest.mark.parametrize("ratio,sigma", [(2, 1.0), (3, 1.5), (4, 2.0), (4, 0.8), (5, 2.5)])
def test_operator_matches_degrade_spatial_degrade(ratio, sigma):
    rng = np.random.default_rng(ratio)
    cube = rng.random((ratio * 7, ratio * 6, 3)).astype(np.float32)
    expected = degrade.spatial_degrade(cube, ratio, sigma=sigma)
    offset = degrade.default_offset(ratio)
    gr, gc = SpatialModel(ratio, sigma, offset, offset).matrices(7, 6, ratio * 7, ratio * 6)
    np.testing.assert_allclose(apply_spatial(cube, gr, gc), expected, atol=1e-6)


def test_adjoint_is_the_transpose():
    rng = np.random.default_rng(1)
    gr = sampling_matrix(5, 20, 4, 1.7, 1.5)
    gc = sampling_matrix(6, 24, 4, 1.7, 1.5)
    x = rng.random((20, 24, 2)).astype(np.float32)
    y = rng.random((5, 6, 2)).astype(np.float32)
    left = float((apply_spatial(x, gr, gc).astype(np.float64) * y).sum())
    right = float((x.astype(np.float64) * apply_spatial(y, sparse.csr_array(gr.T), sparse.csr_array(gc.T))).sum())
    assert left == pytest.approx(right, rel=1e-5)


def test_rows_sum_to_one_and_fractional_phase_centres_the_kernel():
    matrix = sampling_matrix(6, 24, 4, 1.0, 1.5).toarray()
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
    positions = np.arange(24)
    centres = matrix[1:-1] @ positions  # rows away from the borders
    np.testing.assert_allclose(centres, 4 * np.arange(1, 5) + 1.5, atol=1e-9)


def test_fit_sensor_recovers_psf_phase_gain_and_offset(mixture):
    cube = np.asarray(mixture[0], dtype=np.float32)
    rng = np.random.default_rng(0)
    srf = rng.random((cube.shape[2], 3))
    srf /= srf.sum(axis=0)
    lr = degrade.spatial_degrade(cube, 4, sigma=1.6)
    msi = degrade.spectral_degrade(cube, srf)
    gain, offset = np.array([50.0, 80.0, 30.0]), np.array([3.0, -2.0, 10.0])
    recorded = (msi - offset) / gain  # what a sensor in other units would record
    fit = fit_sensor(recorded, np.ones(cube.shape[:2], bool), (lr @ srf).astype(np.float32), np.ones(lr.shape[:2], bool), 4)
    assert fit.spatial.sigma == pytest.approx(1.6, abs=0.1)
    assert fit.spatial.phase_rows == pytest.approx(1.0, abs=0.1)
    assert fit.spatial.phase_cols == pytest.approx(1.0, abs=0.1)
    np.testing.assert_allclose(fit.gain, gain, rtol=0.02)
    np.testing.assert_allclose(fit.offset, offset, atol=0.05 * np.abs(offset).max())
    assert fit.residual < 1e-3


def test_consistency_solve_reproduces_both_observations_in_strips(mixture):
    cube = np.asarray(mixture[0], dtype=np.float32)
    rows, cols, bands = cube.shape
    rng = np.random.default_rng(2)
    srf = rng.random((bands, 4))
    srf /= srf.sum(axis=0)
    model = SpatialModel(4, 2.0, 1.0, 1.0)
    gr, gc = model.matrices(rows // 4, cols // 4, rows, cols)
    lr = apply_spatial(cube, gr, gc)
    msi = cube @ srf
    prior = degrade.resize_bicubic(lr, rows, cols)  # a poor first guess
    solver = ConsistencySolver(gr, gc, lr, np.ones(lr.shape[:2], bool), srf, np.eye(bands), np.ones(4), 1e-4)
    unit = msi
    strips = [(0, 12), (12, 20), (20, rows)]
    for start, stop in strips:
        solver.add(solver.strip_sums(prior[start:stop], unit[start:stop], start, stop))
    solver.finish()
    fused = np.concatenate([solver.correct(prior[a:b], unit[a:b], a, b) for a, b in strips])
    lr_error = np.abs(apply_spatial(fused, gr, gc) - lr).max()
    msi_error = np.abs(fused @ srf - msi).max()
    assert lr_error < 0.01 * np.abs(lr).max()
    assert msi_error < 0.01 * np.abs(msi).max()
    # and it is closer to the truth than the prior it started from
    assert np.abs(fused - cube).mean() < 0.5 * np.abs(prior - cube).mean()


def test_sparse_matrices_are_banded():
    matrix = sampling_matrix(50, 200, 4, 2.0, 1.5)
    assert isinstance(matrix, sparse.csr_array)
    assert matrix.nnz <= 50 * (2 * 6 + 3)


def _exact_sensor(bands: int) -> SensorFit:
    return SensorFit(SpatialModel(4, 2.0, 1.0, 1.0), np.ones(bands), np.zeros(bands), 0.0, np.zeros(bands))


def test_msi_noise_power_measures_full_resolution_noise(mixture):
    cube, _, _, wavelengths = mixture
    centres = np.linspace(450, 2300, 6)
    msi = degrade.spectral_degrade(cube, gaussian_srf(wavelengths, centres, 120.0)).astype(np.float64)
    sigma = 0.02 * msi.mean(axis=(0, 1))
    noisy = msi + np.random.default_rng(3).standard_normal(msi.shape) * sigma
    valid = np.ones(msi.shape[:2], bool)
    estimate = msi_noise_power(noisy, valid, _exact_sensor(6))
    np.testing.assert_allclose(estimate / sigma**2, 1.0, atol=0.5)
    clean = msi_noise_power(msi, valid, _exact_sensor(6))
    assert (clean < 0.1 * sigma**2).all()
    # each band is read on its own: one band is enough, and pixels without data are left out
    single = msi_noise_power(noisy[:, :, :1], valid, _exact_sensor(1))
    np.testing.assert_allclose(single / sigma[:1] ** 2, 1.0, atol=0.5)
    holed = valid.copy()
    holed[8:20, 8:20] = False
    spoilt = np.where(holed[:, :, None], noisy, 10.0)
    np.testing.assert_allclose(msi_noise_power(spoilt, holed, _exact_sensor(6)) / sigma**2, 1.0, atol=0.5)
    assert msi_noise_power(msi[:3, :3], valid[:3, :3], _exact_sensor(6)) is None  # too small to read


@pytest.mark.parametrize("model", [SpatialModel(4, 2.0, 1.5, 1.5), SpatialModel(4, 1.0, 1.5, 1.5, box=True), SpatialModel(3, 0.8, 1.0, 1.0)])
def test_noise_gain_is_the_share_of_white_noise_variance_that_reaches_the_lr_grid(model):
    r = model.ratio
    noise = np.random.default_rng(5).standard_normal((60 * r, 60 * r, 4))
    gr, gc = model.matrices(60, 60, 60 * r, 60 * r)
    lr = apply_spatial(noise, gr, gc)[5:-5, 5:-5]  # interior pixels
    assert lr.var() == pytest.approx(model.noise_gain, rel=0.1)


def test_the_lr_fit_bounds_the_msi_noise_from_above(mixture):
    """The fit's LR residual over the PSF's noise gain: at least the MSI's real noise, and small
    for a noise-free MSI however large the cross-band estimate is."""
    cube, _, _, wavelengths = mixture
    cube = np.asarray(cube, dtype=np.float32)
    srf = gaussian_srf(wavelengths, [500, 900, 1600], 150.0)
    lr = degrade.spatial_degrade(cube, 4, sigma=2.0)
    msi = degrade.spectral_degrade(cube, srf).astype(np.float64)
    sigma = 0.02 * msi.mean(axis=(0, 1))
    noisy = msi + np.random.default_rng(6).standard_normal(msi.shape) * sigma
    lr_valid, msi_valid = np.ones(lr.shape[:2], bool), np.ones(msi.shape[:2], bool)
    bounds = []
    for recorded in (noisy, msi):
        fit = fit_sensor(recorded.astype(np.float32), msi_valid, (lr @ srf).astype(np.float32), lr_valid, 4)
        trust = msi_trust(fit, lr.reshape(-1, lr.shape[2]), srf, msi_noise=np.ones(3))
        bounds.append(trust.msi_noise_bound)
    assert (bounds[0] > 0.5 * sigma**2).all()
    assert (bounds[1] < 0.05 * sigma**2).all()


def test_the_guard_floor_is_the_lr_noise_on_a_scene_of_few_pixels():
    """Each band regressed on the others over 168 pixels keeps only part of the noise; the guard's floor must
    not sit below it, or a result exact up to the noise fails the LR check."""
    rng = np.random.default_rng(7)
    bands, sigma = 60, 0.01
    pixels = rng.random((14 * 12, 4)) @ rng.random((4, bands)) + rng.standard_normal((14 * 12, bands)) * sigma
    srf = np.zeros((bands, 3))
    srf[:20, 0] = srf[20:40, 1] = srf[40:, 2] = 1 / 20
    fit = SensorFit(SpatialModel(4, 2.0, 1.5, 1.5), np.ones(3), np.zeros(3), 0.0, np.full(3, 1e-4))
    trust = msi_trust(fit, pixels, srf)
    assert trust.hsi_noise_variance < 0.8 * sigma**2  # the regression's residual alone
    assert trust.hsi_noise_floor == pytest.approx(sigma**2, rel=0.15)


def test_signal_subspace_keeps_the_signal_and_shrinks_the_noise():
    rng = np.random.default_rng(4)
    clean = rng.random((400, 3)) @ rng.random((3, 40))
    noisy = clean + rng.standard_normal(clean.shape) * 0.02
    subspace = signal_subspace(noisy, 0.02**2)
    assert subspace.basis.shape == (40, 3)
    assert ((subspace.gains > 0) & (subspace.gains <= 1)).all() and subspace.gains[0] > 0.99
    error = lambda x: float(((x - clean) ** 2).mean())  # noqa: E731
    projected = noisy @ subspace.basis @ subspace.basis.T
    assert error(noisy @ subspace.shrinkage()) <= error(projected) < 0.2 * error(noisy)
