"""The built-in baselines: bicubic, GSA (adaptive Gram–Schmidt) and CNMF (coupled NMF)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import gaussian_srf, make_mixture

import hsiuu_cli.fusion as fusion
from hsiuu_cli import degrade, metrics
from hsiuu_cli.fusion import fuse



@pytest.fixture(scope="module")
def case():
    cube, _, _, wavelengths = make_mixture(48, 48, 40, 3, seed=2)
    srf = gaussian_srf(wavelengths, [500, 800, 1300, 2000], 150)
    return cube, degrade.spatial_degrade(cube, 4, sigma=2.0), degrade.spectral_degrade(cube, srf), srf


def test_bicubic_is_the_project_bicubic(case):
    cube, lr, msi, srf = case
    result = fuse(lr, msi, srf, method="bicubic")
    np.testing.assert_allclose(result.fused, degrade.resize_bicubic(lr, 48, 48), rtol=1e-5, atol=1e-6)
    assert result.endmembers is None and result.info["method"] == "bicubic"


@pytest.mark.parametrize("method", ["gsa", "cnmf"])
def test_baselines_beat_bicubic(case, method):
    cube, lr, msi, srf = case
    bicubic = metrics.psnr(fuse(lr, msi, srf, method="bicubic").fused, cube)
    result = fuse(lr, msi, srf, method=method)
    assert result.fused.shape == cube.shape
    assert metrics.psnr(result.fused, cube) > bicubic + 3.0


def test_gsa_in_strips_equals_one_pass(case, monkeypatch):
    _, lr, msi, srf = case
    whole = fuse(lr, msi, srf, method="gsa").fused
    monkeypatch.setattr(fusion.blocks, "STRIP_BYTES", 1)
    np.testing.assert_allclose(fuse(lr, msi, srf, method="gsa").fused, whole, rtol=1e-4, atol=1e-6)


def test_cnmf_is_deterministic_and_gives_abundances(case):
    cube, lr, msi, srf = case
    first = fuse(lr, msi, srf, method="cnmf", endmembers=4, seed=3, return_abundances=True)
    second = fuse(lr, msi, srf, method="cnmf", endmembers=4, seed=3)
    np.testing.assert_array_equal(first.fused, second.fused)
    assert first.abundances.shape == (48, 48, 4) and (first.abundances >= 0).all()
    assert first.endmembers.shape == (4, cube.shape[2]) and (first.endmembers >= 0).all()
    assert first.info["endmembers"] == 4 and first.info["iterations"] > 0


def test_cnmf_default_k_follows_the_authors(case):
    _, lr, msi, srf = case
    assert fuse(lr, msi, srf, method="cnmf").info["endmembers"] == 30  # min(30, 40 bands)
