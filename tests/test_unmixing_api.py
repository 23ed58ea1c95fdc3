"""The Python API: unmix(), unmix_with_library(), bad input, no-data handling, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_mixture

from hsiuu_cli.cube import Cube
from hsiuu_cli.errors import InvalidDataError, ParameterError
from hsiuu_cli.metrics import abundance_rmse, match_endmembers
from hsiuu_cli.unmixing import METHODS, unmix, unmix_with_library, usable_bands


@pytest.fixture
def scene():
    cube, endmembers, abundances, wavelengths = make_mixture(rows=20, cols=20, bands=30, endmembers=3, seed=2)
    return cube, endmembers, abundances


@pytest.mark.parametrize("method", [m for m in METHODS if m != "smile"])
def test_classical_methods_give_consistent_results(scene, method):
    cube, truth, _ = scene
    result = unmix(cube, 3, method=method, seed=0)
    assert result.endmembers.shape == (3, 30)
    assert result.abundances.shape == (20, 20, 3) and result.abundances.dtype == np.float32
    assert result.names == ["endmember_1", "endmember_2", "endmember_3"]
    assert result.abundances.min() >= 0
    np.testing.assert_allclose(result.abundances.sum(2), 1, atol=1e-5)
    reconstruction = result.abundances.reshape(-1, 3) @ result.endmembers
    rmse = np.sqrt(np.mean((cube.reshape(-1, 30) - reconstruction) ** 2, axis=1))
    np.testing.assert_allclose(result.residual.reshape(-1), rmse, rtol=1e-4, atol=1e-7)
    assert match_endmembers(result.endmembers, truth)[1].mean() < 10


def test_nan_and_masked_pixels_are_skipped_and_reported(scene):
    cube, _, _ = scene
    cube = cube.copy()
    cube[0, 0, 5] = np.nan
    cube[3, 4, :] = np.inf
    mask = np.ones(cube.shape[:2], dtype=bool)
    mask[10, 10] = False
    result = unmix(cube, 3, method="vca-fcls", mask=mask)
    assert result.skipped_pixels == 3
    for row, col in ((0, 0), (3, 4), (10, 10)):
        assert np.isnan(result.abundances[row, col]).all()
        assert np.isnan(result.residual[row, col])
    assert np.isfinite(result.abundances[1, 1]).all()


def test_same_seed_same_result(scene):
    cube, _, _ = scene
    first = unmix(cube, 3, method="vca-fcls", seed=7)
    second = unmix(cube, 3, method="vca-fcls", seed=7)
    np.testing.assert_array_equal(first.endmembers, second.endmembers)
    np.testing.assert_array_equal(first.abundances, second.abundances)


def test_auto_estimates_the_number_of_endmembers():
    cube, _, _, _ = make_mixture(rows=32, cols=32, bands=40, endmembers=3, seed=2)
    sigma = np.sqrt(np.mean(cube**2) / 1e3)  # 30 dB
    noisy = cube + np.random.default_rng(0).normal(0, sigma, cube.shape).astype(np.float32)
    result = unmix(noisy, "auto", method="vca-fcls")
    assert len(result.names) == 3
    assert result.info["endmembers_estimated_by"] == "noise-whitened signal variance (99 %)"


@pytest.mark.parametrize(
    "k, message",
    [(1, "at least 2 endmembers"), (31, "need at least 31 bands"), ("five", "integer or 'auto'")],
)
def test_bad_endmember_counts(scene, k, message):
    cube, _, _ = scene
    with pytest.raises(ParameterError, match=message):
        unmix(cube, k, method="vca-fcls")


def test_more_endmembers_than_pixels():
    cube, _, _, _ = make_mixture(rows=2, cols=2, bands=30, endmembers=3, seed=0)
    with pytest.raises(ParameterError, match="need at least 5 valid pixels"):
        unmix(cube, 5, method="vca-fcls")


def test_all_nodata_and_constant_scenes_are_refused(scene):
    cube, _, _ = scene
    with pytest.raises(InvalidDataError, match="every pixel is no-data"):
        unmix(np.full_like(cube, np.nan), 3, method="vca-fcls")
    with pytest.raises(InvalidDataError, match="constant"):
        unmix(np.full_like(cube, 0.25), 3, method="vca-fcls")


def test_unknown_method_and_misplaced_scale(scene):
    cube, _, _ = scene
    with pytest.raises(ParameterError, match="unknown unmixing method"):
        unmix(cube, 3, method="kmeans")
    with pytest.raises(ParameterError, match="use method 'smile'"):
        unmix(cube, 3, method="vca-fcls", scale=2)


def test_library_unmixing_with_true_endmembers_is_exact(scene):
    cube, truth, abundances = scene
    result = unmix_with_library(cube, truth, ["a", "b", "c"])
    assert result.names == ["a", "b", "c"] and result.method == "fcls"
    assert abundance_rmse(result.abundances, abundances) < 1e-5
    assert np.nanmax(result.residual) < 1e-5


def test_sparse_library_unmixing_keeps_the_spectra_in_use(scene):
    cube, truth, _ = scene
    rng = np.random.default_rng(1)
    decoys = np.abs(rng.normal(0.4, 0.2, (20, 30)))
    library = np.vstack([decoys[:10], truth, decoys[10:]])
    names = [f"s{i}" for i in range(library.shape[0])]
    result = unmix_with_library(cube, library, names, sparse=True, regularisation=1e-4)
    assert result.method == "sunsal"
    assert {"s10", "s11", "s12"} <= set(result.names)
    assert len(result.names) < library.shape[0]
    assert result.info["kept_spectra"] == len(result.names)


def test_library_with_more_spectra_than_bands_needs_sparse(scene):
    cube, _, _ = scene
    library = np.abs(np.random.default_rng(0).normal(0.4, 0.1, (40, 30)))
    with pytest.raises(ParameterError, match="use --sparse"):
        unmix_with_library(cube, library, [str(i) for i in range(40)])


def test_usable_bands_drop_bad_and_empty_bands(scene):
    cube, _, _ = scene
    data = cube.copy()
    data[:, :, 4] = np.nan
    bad = np.zeros(30, dtype=bool)
    bad[[0, 1]] = True
    bands = usable_bands(Cube(data, bad_bands=bad))
    assert bands.tolist() == [b for b in range(30) if b not in (0, 1, 4)]


@pytest.mark.parametrize("method", ["smile", "vca-fcls"])
def test_progress_counts_up_to_a_known_total(scene, method):
    from hsiuu_cli.unmixing import SmileConfig, progress_total

    cube, _, _ = scene
    config = SmileConfig(max_steps=40, features=8)
    calls = []
    unmix(cube, 3, method=method, smile_config=config, progress=lambda done, total: calls.append((done, total)))
    total = progress_total(method, config)
    assert total == (41 if method == "smile" else 2)
    assert {t for _, t in calls} == {total}
    done = [d for d, _ in calls]
    assert done[0] == 1 and done[-1] == total and done == sorted(done)
    if method == "smile":
        assert len(done) > 3  # one call per training step, not one at the end
