"""The Python API: fuse() errors on bad input and run_pipeline(), the HyperBench adapter contract."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import gaussian_srf, make_mixture

from hsiuu_cli import degrade
from hsiuu_cli.errors import HsiuuError, InvalidDataError, ParameterError, ShapeMismatchError
from hsiuu_cli.fusion import fuse, run_pipeline


@pytest.fixture(scope="module")
def case():
    cube, _, _, wavelengths = make_mixture(32, 32, 24, 3, seed=4)
    srf = gaussian_srf(wavelengths, [600.0, 1200.0, 1900.0], 200.0)
    return cube, degrade.spatial_degrade(cube, 4, sigma=2.0), degrade.spectral_degrade(cube, srf), srf


def test_run_pipeline_returns_the_fused_cube(case):
    cube, lr, msi, srf = case
    fused = run_pipeline(msi, lr, srf, metadata={"seed": 0, "epochs": 80})
    assert isinstance(fused, np.ndarray)
    assert fused.shape == cube.shape
    assert np.isfinite(fused).all()
    # same call through fuse(): run_pipeline is only an adapter
    np.testing.assert_array_equal(fused, fuse(lr, msi, srf, seed=0, epochs=80).fused)


def test_run_pipeline_accepts_b_by_B_srf_kernel_psf_and_method(case):
    cube, lr, msi, srf = case
    kernel = degrade.gaussian_psf(2.0)
    fused = run_pipeline(msi, lr, srf.T, psf=kernel, metadata={"method": "gsa", "ignored": 1})
    assert fused.shape == cube.shape
    np.testing.assert_allclose(fused, fuse(lr, msi, srf, method="gsa", psf_sigma=2.0).fused, rtol=1e-3, atol=1e-4)
    # a σ works as well as a kernel
    assert run_pipeline(msi, lr, srf, psf=2.0, metadata={"method": "bicubic"}).shape == cube.shape


@pytest.mark.parametrize(
    "change,error,words",
    [
        (lambda lr, msi, srf: (lr, msi, srf[:, :2]), ShapeMismatchError, "3 MSI bands"),
        (lambda lr, msi, srf: (lr, msi[:30, :30], srf), ShapeMismatchError, "integer multiple"),
        (lambda lr, msi, srf: (lr, msi[:30], srf), ShapeMismatchError, "integer multiple"),
        (lambda lr, msi, srf: (lr, msi[:4, :4], srf), ShapeMismatchError, "smaller"),
        (lambda lr, msi, srf: (np.full_like(lr, np.nan), msi, srf), InvalidDataError, "no valid pixel"),
        (lambda lr, msi, srf: (lr, np.full_like(msi, np.nan), srf), InvalidDataError, "no valid pixel"),
    ],
)
def test_bad_input_raises_typed_errors(case, change, error, words):
    _, lr, msi, srf = case
    with pytest.raises(error, match=words):
        fuse(*change(lr, msi, srf), epochs=5)


@pytest.mark.parametrize("k,words", [(25, "24 bands"), (0, "at least 1"), ("many", "positive integer")])
def test_bad_endmember_counts(case, k, words):
    _, lr, msi, srf = case
    with pytest.raises(ParameterError, match=words):
        fuse(lr, msi, srf, endmembers=k)


def test_more_endmembers_than_pixels(case):
    _, lr, msi, srf = case
    with pytest.raises(ParameterError, match="valid pixels"):
        fuse(lr[:2, :2], msi[:8, :8], srf, endmembers=5)


def test_unknown_method_and_disjoint_valid_pixels(case):
    _, lr, msi, srf = case
    with pytest.raises(ParameterError, match="unknown fusion method"):
        fuse(lr, msi, srf, method="magic")
    lr_valid = np.zeros(lr.shape[:2], bool)
    lr_valid[:4] = True
    msi_valid = np.zeros(msi.shape[:2], bool)
    msi_valid[16:] = True
    with pytest.raises(HsiuuError, match="in common"):
        fuse(lr, msi, srf, lr_valid=lr_valid, msi_valid=msi_valid)
