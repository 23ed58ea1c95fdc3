"""Endmember extraction (VCA, N-FINDR, ATGP, purity centroids), endmember counts (HySime, signal
variance), NMF, SUnSAL, library fitting."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_mixture

from hsiuu_cli.errors import InvalidDataError, ShapeMismatchError
from hsiuu_cli.metrics import match_endmembers
from hsiuu_cli.unmixing import atgp, count_endmembers, estimate_endmember_count, fit_library, hysime, nfindr, vca
from hsiuu_cli.unmixing.hysime import signal_subspace_projection
from hsiuu_cli.unmixing.smile import initial_endmembers
from hsiuu_cli.unmixing.fcls import fcls
from hsiuu_cli.unmixing.nmf import nmf_sum_to_one
from hsiuu_cli.unmixing.purity import refine_pure_centroids
from hsiuu_cli.unmixing.sparse import sunsal
from hsiuu_cli.unmixing.vca import estimate_snr


def scene_with_pure_pixels(k: int = 4, seed: int = 2, rows: int = 32, bands: int = 40):
    """make_mixture with sharpened abundances, so that every endmember has (near-)pure pixels."""
    _, endmembers, abundances, wavelengths = make_mixture(rows=rows, cols=rows, bands=bands, endmembers=k, seed=seed)
    sharp = abundances**6
    sharp /= sharp.sum(2, keepdims=True)
    assert sharp.reshape(-1, k).max(0).min() > 0.99
    return (sharp @ endmembers).reshape(-1, bands), endmembers, sharp.reshape(-1, k), wavelengths


def add_noise(pixels: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sigma = np.sqrt(np.mean(pixels**2) / 10 ** (snr_db / 10))
    return pixels + rng.normal(0, sigma, pixels.shape)


@pytest.mark.parametrize("k", [3, 4, 5])
def test_vca_recovers_endmembers(k):
    pixels, truth, _, _ = scene_with_pure_pixels(k)
    for seed in (0, 1):
        estimated, indices = vca(pixels, k, rng=seed)
        _, sad = match_endmembers(estimated, truth)
        assert sad.max() < 2.0, sad
        np.testing.assert_array_equal(estimated, pixels[indices])


def test_vca_low_snr_branch_still_finds_the_endmembers():
    pixels, truth, _, _ = scene_with_pure_pixels(3)
    noisy = add_noise(pixels, 18)
    y = noisy.T
    mean = y.mean(1, keepdims=True)
    assert estimate_snr(y, y - mean, mean, 3) < 15 + 10 * np.log10(3)  # the projective branch is skipped
    estimated, _ = vca(noisy, 3, rng=0)
    assert match_endmembers(estimated, truth)[1].mean() < 8.0


@pytest.mark.parametrize("k", [3, 4])
def test_nfindr_recovers_endmembers_deterministically(k):
    pixels, truth, _, _ = scene_with_pure_pixels(k)
    first, indices = nfindr(pixels, k)
    second, _ = nfindr(pixels, k)
    np.testing.assert_array_equal(first, second)
    assert match_endmembers(first, truth)[1].max() < 2.0
    assert len(set(indices.tolist())) == k


def test_atgp_returns_distinct_extreme_pixels():
    pixels, truth, _, _ = scene_with_pure_pixels(4)
    indices = atgp(pixels, 4)
    assert len(set(indices.tolist())) == 4
    assert int(indices[0]) == int(np.argmax(np.linalg.norm(pixels, axis=1)))


def test_purity_centroids_beat_extreme_pixels_on_noisy_data():
    pixels, truth, _, _ = scene_with_pure_pixels(4)
    noisy = add_noise(pixels, 25)
    extreme, _ = vca(noisy, 4, rng=0)
    refined = refine_pure_centroids(noisy, extreme)
    before = match_endmembers(extreme, truth)[1].mean()
    after = match_endmembers(refined.endmembers, truth)[1].mean()
    assert after < 0.6 * before, (before, after)
    assert (refined.pure_pixels >= 5).sum() >= 3  # the smallest region may hold no pixel pure enough


def test_purity_keeps_an_endmember_without_pure_pixels():
    cube, truth, abundances, _ = make_mixture(rows=32, cols=32, bands=40, endmembers=3, seed=0)
    assert abundances[..., 1].max() < 0.5  # endmember 2 is never dominant in this scene
    refined = refine_pure_centroids(cube.reshape(-1, 40), truth)
    assert refined.pure_pixels[1] == 0
    np.testing.assert_allclose(refined.endmembers[1], truth[1], rtol=1e-9)


@pytest.mark.parametrize("k", [3, 4, 5])
def test_hysime_finds_the_number_of_endmembers_in_noise(k):
    cube, _, _, _ = make_mixture(rows=32, cols=32, bands=40, endmembers=k, seed=2)
    noisy = add_noise(cube.reshape(-1, 40).astype(np.float64), 30, seed=k)
    result = hysime(noisy)
    assert result.n_endmembers == k
    assert estimate_endmember_count(noisy) == k
    assert estimate_endmember_count(noisy, max_count=k - 1) == k - 1


def test_nmf_keeps_constraints_and_never_increases_the_error():
    pixels, truth, _, _ = scene_with_pure_pixels(3)
    noisy = add_noise(pixels, 30)
    start = truth + np.random.default_rng(0).normal(0, 0.05, truth.shape)
    result = nmf_sum_to_one(noisy, start)
    assert np.all(np.diff(result.objective) <= 1e-9 * result.objective[0])
    assert result.objective[-1] < result.objective[0]
    assert result.endmembers.min() >= 0
    np.testing.assert_allclose(result.abundances.sum(1), 1, atol=1e-9)


def test_sunsal_finds_the_true_spectra_in_a_library():
    pixels, truth, abundances, _ = scene_with_pure_pixels(3, rows=16)
    rng = np.random.default_rng(4)
    distractors = np.abs(truth[rng.integers(0, 3, 12)] + rng.normal(0, 0.08, (12, truth.shape[1])))
    library = np.vstack([distractors[:6], truth, distractors[6:]])  # true spectra at 6, 7, 8
    result = sunsal(pixels, library, regularisation=1e-4)
    assert result.abundances.min() >= 0
    mean_use = result.abundances.mean(0)
    assert set(np.argsort(mean_use)[-3:].tolist()) == {6, 7, 8}
    assert mean_use[[6, 7, 8]].sum() > 0.9 * mean_use.sum()
    np.testing.assert_allclose(result.abundances[:, [6, 7, 8]], abundances, atol=0.1)


def test_fit_library_resamples_to_scene_wavelengths():
    library_wavelengths = np.linspace(400, 2500, 50)
    spectra = np.vstack([np.linspace(0, 1, 50), np.full(50, 0.3)])
    scene_wavelengths = np.array([300.0, 450.0, 1000.0, 2400.0, 2600.0])
    fitted, bands = fit_library(spectra, library_wavelengths, scene_wavelengths, 5)
    np.testing.assert_array_equal(bands, [1, 2, 3])
    np.testing.assert_allclose(fitted[0], (scene_wavelengths[1:4] - 400) / 2100, atol=1e-12)
    np.testing.assert_allclose(fitted[1], 0.3)


def test_fit_library_rejects_what_it_cannot_use():
    spectra = np.ones((2, 10))
    with pytest.raises(ShapeMismatchError, match="do not overlap"):
        fit_library(spectra, np.linspace(400, 900, 10), np.linspace(1000, 2000, 8), 8, path="lib.csv")
    with pytest.raises(ShapeMismatchError, match="no wavelengths"):
        fit_library(spectra, None, np.linspace(1000, 2000, 8), 8)
    with pytest.raises(InvalidDataError, match="NaN"):
        fit_library(np.full((2, 8), np.nan), None, None, 8)
    same, bands = fit_library(spectra, None, None, 10)
    assert same.shape == (2, 10) and bands.size == 10


def test_fcls_with_recovered_endmembers_recovers_abundances():
    pixels, truth, abundances, _ = scene_with_pure_pixels(4)
    estimated, _ = nfindr(pixels, 4)
    order, _ = match_endmembers(estimated, truth)
    recovered = fcls(pixels, estimated[order])
    assert np.sqrt(np.mean((recovered - abundances) ** 2)) < 0.02


@pytest.mark.parametrize("k", [3, 4, 5])
def test_signal_variance_count_finds_the_number_of_endmembers_in_noise(k):
    cube, _, _, _ = make_mixture(rows=40, cols=40, bands=60, endmembers=k, seed=k)
    noisy = add_noise(cube.reshape(-1, 60), 30, seed=0)
    result = count_endmembers(noisy)
    assert result.n_endmembers == k
    # k − 1 centred directions hold 99 % of the signal variance, k − 2 do not
    assert result.cumulative_share[k - 2] >= 0.99 > result.cumulative_share[k - 3]
    assert count_endmembers(noisy, max_count=k - 1).n_endmembers == k - 1


def test_signal_variance_count_is_not_fooled_by_variability_above_the_noise():
    """Three materials with illumination and within-class variability far above a low noise: HySime
    counts the variability as endmembers, the signal-variance share does not."""
    rng = np.random.default_rng(5)
    _, endmembers, abundances, _ = make_mixture(rows=40, cols=40, bands=60, endmembers=3, seed=3)
    pixels = abundances.reshape(-1, 3) @ endmembers
    pixels *= rng.uniform(0.95, 1.05, (pixels.shape[0], 1))  # illumination
    pixels += 0.0005 * rng.standard_normal((pixels.shape[0], 6)) @ rng.standard_normal((6, 60))  # variability
    pixels += rng.normal(0, 1e-4, pixels.shape)
    assert hysime(pixels).n_endmembers > 5
    assert abs(count_endmembers(pixels).n_endmembers - 3) <= 1


@pytest.mark.realdata
@pytest.mark.parametrize("scene, truth", [("samson", 3), ("jasper_ridge", 4), ("cuprite", 3)])
def test_signal_variance_count_on_real_scenes(shared_data, scene, truth):
    """Labelled counts (the Cuprite crop is unmixed with 3 in its source, NMF-QMV); HySime says 46, 19, 14."""
    from hsiuu_cli.io import read_cube

    cube = read_cube(shared_data / "unmixing" / scene / f"{scene}.hdr").physical()
    count = count_endmembers(cube.reshape(-1, cube.shape[2])).n_endmembers
    assert abs(count - truth) <= 2, count
    assert count == truth  # measured: docs/unmix.md


def dark_endmember_scene(seed=5):
    """Two bright materials and clear water (1–2 % reflectance) with sensor noise: the water's pure
    pixels are as noisy as they are dark."""
    _, bright, abundances, wavelengths = make_mixture(rows=40, cols=40, bands=80, endmembers=3, seed=seed)
    water = 0.004 + 0.015 * np.exp(-0.5 * ((wavelengths - 550) / 80) ** 2)
    endmembers = np.vstack([bright[:2], water])
    sharp = abundances**4
    sharp /= sharp.sum(2, keepdims=True)
    pixels = sharp.reshape(-1, 3) @ endmembers
    pixels += np.random.default_rng(seed).normal(0, 0.002, pixels.shape)
    return pixels, endmembers


def test_the_signal_subspace_removes_noise_but_keeps_the_signal():
    pixels, endmembers = dark_endmember_scene()
    projected = signal_subspace_projection(pixels, 4)
    clean = pixels - np.random.default_rng(5).normal(0, 0.002, pixels.shape)
    assert np.sqrt(np.mean((projected - clean) ** 2)) < 0.25 * 0.002


def test_initial_endmembers_find_a_dark_endmember_in_noise():
    pixels, endmembers = dark_endmember_scene()
    _, sad = match_endmembers(initial_endmembers(pixels, 3, seed=0).endmembers, endmembers)
    assert sad[2] < 3.0, sad  # 2.1° measured
    # the same chain on the noisy pixels themselves takes a noise outlier for the water (17°)
    _, indices = vca(pixels, 3, rng=0)
    simplex, _ = nfindr(pixels, 3, initial=indices)
    _, sad_raw = match_endmembers(refine_pure_centroids(pixels, simplex).endmembers, endmembers)
    assert sad_raw[2] > 3 * sad[2], (sad_raw, sad)
