"""The LR scene's noise estimate and its removal before super-resolution."""

from __future__ import annotations

import numpy as np
import pytest

from hsiuu_cli.cube import Cube
from hsiuu_cli.degrade import add_noise
from hsiuu_cli.errors import InvalidDataError
from hsiuu_cli.superres import super_resolve
from hsiuu_cli.superres.denoise import DENOISE_BELOW_DB, scene_noise
from hsiuu_cli.superres.inference import SuperResolver
from hsiuu_cli.superres.registry import load_model

from conftest import make_mixture
from test_superres_inference import make_model


def pixels(cube: np.ndarray) -> np.ndarray:
    return cube.reshape(-1, cube.shape[2]).astype(np.float64)


@pytest.fixture(scope="module")
def mixture():
    cube, *_ = make_mixture(rows=48, cols=48, bands=40, seed=3)
    return cube


def test_noise_is_estimated_and_removed_where_strong(mixture):
    noisy = add_noise(mixture, 25.0, 0)
    noise = scene_noise(pixels(noisy))
    assert noise.applied and noise.snr_db == pytest.approx(25.0, abs=1.5)
    assert noise.dimensions < 10  # three materials: a few directions, not the 40 bands
    denoised = pixels(noisy) @ noise.matrix
    error = lambda x: float(((x - pixels(mixture)) ** 2).mean())  # noqa: E731
    assert error(denoised) < 0.2 * error(pixels(noisy))


def test_weak_noise_is_reported_and_left(mixture):
    faint = add_noise(mixture, 60.0, 0)
    noise = scene_noise(pixels(faint))
    assert not noise.applied and noise.snr_db > DENOISE_BELOW_DB
    assert scene_noise(pixels(faint), denoise=True).applied  # asked for, it is removed whatever its level
    strong = scene_noise(pixels(add_noise(mixture, 25.0, 0)), denoise=False)
    assert not strong.applied and strong.snr_db < DENOISE_BELOW_DB


def test_too_few_bands_cannot_tell_noise_from_signal(mixture):
    rgb = add_noise(mixture[:, :, :3], 20.0, 0)
    assert scene_noise(pixels(rgb)).snr_db is None
    with pytest.raises(InvalidDataError, match="too few to tell the noise from the signal"):
        scene_noise(pixels(rgb), denoise=True)


def test_the_model_sees_the_denoised_scene_and_the_input_is_untouched(tmp_path, mixture):
    _, paths = make_model(tmp_path, scale=2)
    model = load_model(paths["onnx"])
    noisy = add_noise(mixture, 25.0, 0).astype(np.float32)
    kept = noisy.copy()
    resolver = SuperResolver(Cube(data=noisy), 2, model, calibrate=False)
    assert resolver.plan.noise.applied
    whole = super_resolve(noisy, 2, model, calibrate=False)
    tiled = super_resolve(noisy, 2, model, calibrate=False, tile=8)
    np.testing.assert_array_equal(noisy, kept)
    np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-6)
    as_is = super_resolve(noisy, 2, model, calibrate=False, denoise=False)
    clean = super_resolve(mixture, 2, model, calibrate=False, denoise=False)
    assert np.abs(whole - clean).mean() < 0.5 * np.abs(as_is - clean).mean()


def test_a_scene_with_fewer_pixels_than_bands_is_estimated_from_nearby_bands():
    cube, *_ = make_mixture(rows=12, cols=12, bands=100, seed=5)  # 144 pixels: too few to regress on 99 bands
    noise = scene_noise(pixels(add_noise(cube, 25.0, 0)))
    assert noise.applied and noise.snr_db == pytest.approx(25.0, abs=1.5)
    assert scene_noise(pixels(add_noise(cube, 60.0, 0))).snr_db > DENOISE_BELOW_DB


def test_a_small_scene_reads_the_same_noise_as_a_large_one():
    # regressing a band on the B − 1 others uses up B − 1 degrees of freedom: counting one more reads the noise
    # of a 60-pixel, 25-band scene 0.12 dB high (2.7 %) against the same scene at 20 000 pixels
    rng = np.random.default_rng(0)
    small = np.mean([scene_noise(1.0 + rng.standard_normal((60, 25)), denoise=False).snr_db for _ in range(300)])
    large = scene_noise(1.0 + rng.standard_normal((20_000, 25)), denoise=False).snr_db
    assert small == pytest.approx(large, abs=0.06)
