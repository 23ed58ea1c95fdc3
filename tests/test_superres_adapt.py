"""Scene adaptation and the PSNR/SAM guard of `hsiuu superres` (tiny cubes, tiny networks, few steps)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hsiuu_cli.cube import Cube
from hsiuu_cli.degrade import resize_bicubic, spatial_degrade
from hsiuu_cli.errors import InvalidDataError
from hsiuu_cli.metrics import psnr, sam, sam_map
from hsiuu_cli.superres import super_resolve
from hsiuu_cli.superres.adapt import (
    MIN_COARSE_SIDE,
    AdaptSettings,
    PsfEstimate,
    adapt_to_scene,
    blurrier_than_training,
    estimate_psf,
    fine_tune,
    self_pairs,
    too_small,
)
from hsiuu_cli.superres.export import ModelInfo, export_model
from hsiuu_cli.superres.guard import block_standard_error, guarded_gain, shape_detail
from hsiuu_cli.superres.inference import SuperResolver
from hsiuu_cli.superres.config import NetworkConfig
from hsiuu_cli.superres.denoise import MIN_BANDS
from hsiuu_cli.superres.network import build_network
from hsiuu_cli.superres.registry import load_model

from conftest import photo_band, textured


torch.set_num_threads(1)
FEW = dict(steps=6, check_every=2, patch=8, time_limit_s=600.0)


def tiny_model(tmp_path, scale=2, unmixing=False, name="tiny"):
    config = NetworkConfig(unmixing=unmixing, scale=scale, channels=6, width=8, depth=1, endmembers=3, encoder_width=4, group=3)
    torch.manual_seed(3)
    network = build_network(config)
    torch.nn.init.normal_(network.tail.weight, std=0.02)
    paths = export_model(network, ModelInfo(config), tmp_path / name, {"training": {}})
    return load_model(paths["onnx"])


# -- the guard -----------------------------------------------------------------------------------


def test_guard_keeps_a_helpful_detail_whole():
    target = textured(32, 32, 5)
    base = resize_bicubic(spatial_degrade(target, 2, method="bicubic"), 32, 32)
    check = guarded_gain(base, target - base, target, np.ones(5))
    assert check.gain == pytest.approx(1.0) and not check.limited
    assert check.psnr > check.psnr_bicubic and check.sam < check.sam_bicubic


def test_guard_lowers_a_gain_that_would_worsen_sam():
    target = textured(32, 32, 6, seed=1)
    base = resize_bicubic(spatial_degrade(target, 2, method="bicubic"), 32, 32)
    rng = np.random.default_rng(0)
    # The missing detail plus a band-to-band zigzag half its size: least squares still likes it, SAM does not.
    zigzag = np.array([1, -1, 1, -1, 1, -1], np.float32) * np.sign(rng.standard_normal((32, 32, 1)))
    residual = (target - base) * (1 + 0.5 * zigzag)
    assert sam(base + residual, target) > sam(base, target)
    check = guarded_gain(base, residual, target, np.ones(6))
    assert check.least_squares_gain > 0.5
    assert check.gain < check.least_squares_gain and check.limited
    assert check.sam <= check.sam_bicubic and check.psnr >= check.psnr_bicubic
    chosen = base + np.float32(check.gain) * residual
    assert sam(chosen, target) == pytest.approx(check.sam) and psnr(chosen, target) == pytest.approx(check.psnr)


def test_guard_falls_back_to_bicubic_when_detail_only_harms():
    target = textured(24, 24, 4, seed=2)
    base = resize_bicubic(spatial_degrade(target, 2, method="bicubic"), 24, 24)
    check = guarded_gain(base, base - target, target, np.ones(4))
    assert check.gain == 0.0 and check.psnr == check.psnr_bicubic


def test_guard_wants_a_sam_gain_beyond_the_self_checks_noise():
    """The true detail everywhere, plus a random turn of the spectra on a random half of the 8 × 8 blocks, just
    strong enough that SAM still improves on average, by far less than its spread over the blocks: the old
    rule (any improvement) kept the whole detail; the guard lowers the gain until the improvement stands out."""
    target = textured(64, 64, 6, seed=4)
    base = resize_bicubic(spatial_degrade(target, 2, method="bicubic"), 64, 64)
    rng = np.random.default_rng(5)
    turned_blocks = np.kron(rng.random((8, 8)) < 0.5, np.ones((8, 8)))[:, :, None]
    turn = rng.standard_normal((64, 64, 6)).astype(np.float32) * np.linalg.norm(base, axis=2, keepdims=True) * turned_blocks

    def changes(strength: float, gain: float = 1.0) -> np.ndarray:
        residual = (target - base) + np.float32(strength) * turn
        return sam_map(base + np.float32(gain) * residual, target) - sam_map(base, target)

    low, high = 0.0, 0.2  # the strength at which the mean change is a quarter of its standard error below zero
    for _ in range(40):
        middle = (low + high) / 2
        c = changes(middle)
        low, high = (middle, high) if np.nanmean(c) < -0.25 * block_standard_error(c) else (low, middle)
    c = changes(low)
    assert -block_standard_error(c) < np.nanmean(c) < 0
    check = guarded_gain(base, (target - base) + np.float32(low) * turn, target, np.ones(6))
    assert check.gain < check.least_squares_gain
    chosen = changes(low, check.gain)
    assert check.gain == 0.0 or np.nanmean(chosen) + block_standard_error(chosen) <= 1e-9


def test_block_standard_error_follows_the_blocks_not_the_pixels():
    rng = np.random.default_rng(0)
    blocks = np.repeat(np.repeat(rng.standard_normal((4, 4)), 8, axis=0), 8, axis=1)  # 16 blocks of equal pixels
    assert block_standard_error(blocks) == pytest.approx(blocks[::8, ::8].std(ddof=1) / 4)
    with_gaps = blocks.copy()
    with_gaps[:8, :8] = np.nan  # a block without pixels counts for nothing
    assert block_standard_error(with_gaps) == pytest.approx(np.delete(blocks[::8, ::8].ravel(), 0).std(ddof=1) / np.sqrt(15))
    assert block_standard_error(np.ones((8, 5))) == 0.0  # under two blocks: no estimate


def test_sam_map_is_sam_pixel_by_pixel():
    target = textured(16, 12, 5, seed=6)
    result = target * (1 + 0.05 * np.random.default_rng(1).standard_normal(target.shape)).astype(np.float32)
    target[0, 0] = 0.0  # an all-zero reference pixel has no angle
    mask = np.ones((16, 12), bool)
    mask[3, 4] = False
    angles = sam_map(result, target, mask=mask)
    assert np.isnan(angles[0, 0]) and np.isnan(angles[3, 4]) and np.isfinite(angles).sum() == 16 * 12 - 2
    assert np.nanmean(angles) == pytest.approx(sam(result, target, mask=mask))


def test_detail_that_turns_dark_spectra_is_damped_and_brightness_detail_kept():
    base = np.array([[[1.0, 2.0, 3.0], [0.01, 0.02, 0.03]]], np.float32)  # a bright and a dark pixel, same spectrum
    brightness = 0.1 * base
    turn = np.array([[[0.02, -0.01, 0.0], [0.02, -0.01, 0.0]]], np.float32)  # orthogonal to the spectrum
    np.testing.assert_allclose(shape_detail(base, brightness, 0.5), brightness, rtol=1e-5)
    shaped = shape_detail(base, turn, 0.5)
    np.testing.assert_allclose(shaped[0, 0], turn[0, 0], rtol=0.02)  # |base| ≈ 3.7 ≫ 0.5: kept
    assert np.linalg.norm(shaped[0, 1]) < 0.01 * np.linalg.norm(turn[0, 1])  # |base| ≈ 0.037 ≪ 0.5: damped
    np.testing.assert_array_equal(shape_detail(base, turn, 0.0), turn)


def test_no_adapt_reports_its_self_check_and_uses_its_gain(tmp_path):
    model = tiny_model(tmp_path)
    resolver = SuperResolver(Cube(data=textured(40, 40, 6)), 2, model, calibrate=True)
    check = resolver.plan.check
    assert check is not None and resolver.plan.gain == check.gain
    assert check.sam <= check.sam_bicubic and check.psnr >= check.psnr_bicubic


# -- PSF estimate and pairs ----------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 4])
def test_psf_estimate_grows_with_the_blur(scale):
    hr = textured(256, 256, 4, seed=5)
    estimates = [estimate_psf(spatial_degrade(hr, scale, method="gaussian", sigma=f * scale), scale).fraction
                 for f in (0.35, 0.5, 0.8)]
    assert estimates[0] < estimates[1] < estimates[2]
    assert abs(estimates[1] - 0.5) < 0.2


def test_self_pairs_hold_back_the_bottom_rows_degraded_apart():
    values = textured(50, 40, MIN_BANDS)
    psf = PsfEstimate(0.5, 2, 0.0)
    pairs = self_pairs(values, 2, psf, 0.25)
    assert pairs.train_target.shape[0] + pairs.held_target.shape[0] == 50
    assert pairs.held_target.shape[0] == 12  # 25 % of 50 rows, a multiple of the scale
    np.testing.assert_array_equal(pairs.held_target, values[38:])
    np.testing.assert_allclose(pairs.held_coarse, spatial_degrade(values[38:], 2, method="gaussian", sigma=1.0), atol=1e-6)
    assert pairs.train_coarse.shape == (19, 20, MIN_BANDS)


def test_a_few_band_scene_gets_its_own_noise_back_in_the_coarse_inputs():
    clean = np.stack([photo_band(96, 96) * level for level in (1.0, 0.8, 0.6)], axis=2).astype(np.float32)
    noisy = (clean + np.random.default_rng(0).normal(0.0, 0.03, clean.shape)).astype(np.float32)
    psf = PsfEstimate(0.5, 2, 0.0)

    def added(values):
        pairs = self_pairs(values, 2, psf, 0.25)
        return pairs.train_coarse - spatial_degrade(pairs.train_target, 2, method="gaussian", sigma=1.0)

    white = np.random.default_rng(1).standard_normal((96, 96, 1)).astype(np.float32)
    kept = float(np.var(spatial_degrade(white, 2, method="gaussian", sigma=1.0)))
    # the degradation averaged most of the noise away; what it removed is put back, on the clean scene nothing is
    assert float(added(noisy).std()) == pytest.approx(0.03 * np.sqrt(1 - kept), rel=0.15)
    assert float(np.abs(added(clean)).max()) < 1e-3


def test_the_noise_put_back_follows_the_seed_and_differs_between_the_parts():
    photo = np.stack([photo_band(96, 96) * level for level in (1.0, 0.8, 0.6)], axis=2)
    noisy = (photo + np.random.default_rng(0).normal(0.0, 0.03, photo.shape)).astype(np.float32)
    psf = PsfEstimate(0.5, 2, 0.0)

    def added(seed):
        pairs = self_pairs(noisy, 2, psf, 0.5, seed)
        return [coarse - spatial_degrade(target, 2, method="gaussian", sigma=1.0)
                for target, coarse in ((pairs.train_target, pairs.train_coarse), (pairs.held_target, pairs.held_coarse))]

    first, again, other = added(0), added(0), added(1)
    np.testing.assert_array_equal(first[0], again[0])
    assert not np.allclose(first[0], other[0])
    # the two halves are the same shape: their noise must still be drawn apart, not repeated
    assert first[0].shape == first[1].shape
    assert abs(float(np.corrcoef(first[0].ravel(), first[1].ravel())[0, 1])) < 0.1


def test_the_self_check_of_a_few_band_scene_carries_its_noise(tmp_path, monkeypatch):
    seen = []
    check = SuperResolver.self_check
    monkeypatch.setattr(SuperResolver, "self_check", lambda self, target, coarse: seen.append((target, coarse)) or check(self, target, coarse))
    model = tiny_model(tmp_path)
    photo = np.stack([photo_band(96, 96) * level for level in (1.0, 0.8, 0.6)], axis=2)
    noisy = (photo + np.random.default_rng(0).normal(0.0, 0.03, photo.shape)).astype(np.float32)
    plan = SuperResolver(Cube(data=noisy), 2, model).plan
    target, coarse = seen[-1]
    white = np.random.default_rng(1).standard_normal((96, 96, 1)).astype(np.float32)
    kept = float(np.var(model.info.degrade(white)))
    assert float((coarse - model.info.degrade(target)).std()) == pytest.approx(0.03 * np.sqrt(1 - kept), rel=0.15)
    assert "noise (SNR 2" in plan.gain_source  # 0.03 on a band of mean square ≈ 0.1–0.2: 21–24 dB
    # a hyperspectral scene's noise is removed instead (where strong): its self-check input is the plain degradation
    SuperResolver(Cube(data=textured(48, 48, MIN_BANDS)), 2, model)
    target, coarse = seen[-1]
    np.testing.assert_array_equal(coarse, model.info.degrade(target))


def test_too_small_names_the_size_needed():
    need = MIN_COARSE_SIDE * 4
    assert too_small(need, need, 4) is None
    assert f"{need}×{need}" in too_small(need - 1, 500, 4)


# -- fine-tuning and the choice ------------------------------------------------------------------


def test_fine_tuning_keeps_its_best_weights_and_is_reproducible(tmp_path):
    model = tiny_model(tmp_path, unmixing=True)
    values = textured(64, 64, 6, seed=3)
    pairs = self_pairs(values, 2, estimate_psf(values, 2), 0.25)
    runs = [fine_tune(model.weights(), model.info.config, pairs, AdaptSettings(**FEW, patience=10), 600.0) for _ in range(2)]
    first, second = runs
    assert first.steps == 6 and first.stopped_by == "steps"
    gains = [h["held_back_gain_db"] for h in first.history]
    best = max(gains)
    assert [h["step"] for h in first.history if h["held_back_gain_db"] == best][0] == first.best_step
    for a, b in zip(first.network.state_dict().values(), second.network.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_fine_tuning_stops_at_the_time_limit(tmp_path):
    model = tiny_model(tmp_path)
    values = textured(64, 64, 6, seed=3)
    pairs = self_pairs(values, 2, estimate_psf(values, 2), 0.25)
    result = fine_tune(model.weights(), model.info.config, pairs, AdaptSettings(steps=1000, patch=8), 0.0)
    assert result.steps == 0 and result.stopped_by == "time limit"


@pytest.mark.parametrize("bands", [6, 1])
def test_adapt_to_scene_follows_the_guard(tmp_path, bands):
    model = tiny_model(tmp_path)
    hr = textured(128, 128, bands, seed=4)
    lr = Cube(data=spatial_degrade(hr, 2, method="gaussian", sigma=1.0).astype(np.float32))
    choice = adapt_to_scene(lr, 2, model, AdaptSettings(**FEW), force=True)
    before, after = choice.checks["model"], choice.checks["adapted"]
    assert choice.result in ("adapted", "model")
    if choice.result == "adapted":
        assert blurrier_than_training(choice.psf, model.info)
        assert after["psnr"] >= before["psnr"] and after["sam"] <= before["sam"] and choice.gain == after["gain"] > 0
    else:  # run as without adaptation: its own self-check decides the gain
        assert choice.model is model and choice.gain is None
    assert choice.adapted_model.info.degradation == "gaussian"
    assert choice.adapted_model.info.psf_sigma == pytest.approx(choice.psf.sigma)
    summary = choice.summary()
    assert summary["result"] == choice.result and summary["steps"] == 6 and summary["fine_tuned"]


def test_a_scene_as_sharp_as_the_training_pairs_keeps_the_unadapted_model(tmp_path):
    model = tiny_model(tmp_path)  # trained (as it says) on bicubic pairs
    lr = Cube(data=spatial_degrade(textured(128, 128, 4, seed=7), 2, method="bicubic").astype(np.float32))
    skipped = adapt_to_scene(lr, 2, model, AdaptSettings(**FEW))
    assert not blurrier_than_training(skipped.psf, model.info)
    assert not skipped.fine_tuned and skipped.adapted_model is None and set(skipped.checks) == {"model"}
    assert skipped.result == "model" and skipped.gain is None and "no blurrier" in skipped.summary()["skipped"]
    forced = adapt_to_scene(lr, 2, model, AdaptSettings(**FEW), force=True)
    assert forced.fine_tuned and forced.result != "adapted"


def test_adaptation_learns_a_blur_the_model_never_saw(tmp_path):
    """A model that adds nothing, on a scene blurred by a wide PSF: fine-tuning on the scene's own
    pairs must beat it on the real HR, and the guard must pick the adapted result."""
    model = tiny_model(tmp_path)
    hr = textured(192, 192, 3, seed=6)
    lr = spatial_degrade(hr, 2, method="gaussian", sigma=1.4).astype(np.float32)
    settings = AdaptSettings(steps=60, check_every=20, patch=12, learning_rate=2e-3, time_limit_s=600.0, trainable="all")
    choice = adapt_to_scene(Cube(data=lr), 2, model, settings)
    assert choice.result == "adapted"
    sharpened = super_resolve(lr, 2, model, adapt=True, adapt_settings=settings)
    unadapted = super_resolve(lr, 2, model, calibrate=False)
    bicubic = super_resolve(lr, 2, method="bicubic")
    assert psnr(sharpened, hr) > max(psnr(unadapted, hr), psnr(bicubic, hr)) + 0.1


def test_scene_too_small_to_adapt_is_refused(tmp_path):
    model = tiny_model(tmp_path)
    with pytest.raises(InvalidDataError, match="too small to adapt"):
        adapt_to_scene(Cube(data=textured(30, 60, 4)), 2, model, AdaptSettings(**FEW))


def test_all_no_data_scene_is_refused(tmp_path):
    model = tiny_model(tmp_path)
    with pytest.raises(InvalidDataError, match="no valid pixels"):
        adapt_to_scene(Cube(data=np.full((60, 60, 4), np.nan, np.float32)), 2, model, AdaptSettings(**FEW))
