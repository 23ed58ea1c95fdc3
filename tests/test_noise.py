"""A band's white noise read from its own flattest patches."""

from __future__ import annotations

import numpy as np
import pytest

from hsiuu_cli.noise import PATCH, flat_limit, flat_patch_noise_variance, gradient_energy

from conftest import photo_band


@pytest.mark.parametrize("sigma", [0.003, 0.01, 0.03, 0.1])
def test_white_noise_is_read_off_a_band_with_edges_and_texture(sigma):
    clean = photo_band()
    for seed in range(3):
        noisy = clean + np.random.default_rng(seed).normal(0.0, sigma, clean.shape)
        assert flat_patch_noise_variance(noisy) == pytest.approx(sigma**2, rel=0.15)


def test_a_clean_band_reads_no_noise_although_its_texture_has_fine_detail():
    clean = photo_band()
    power = float((clean**2).mean())
    assert flat_patch_noise_variance(clean) < power * 1e-6  # over 60 dB
    # yet the texture has fine diagonal detail (what a Haar estimator reads as noise) within 40 dB of the signal
    texture = clean[:, :48]
    hh = (texture[0::2, 0::2] - texture[0::2, 1::2] - texture[1::2, 0::2] + texture[1::2, 1::2]) / 2
    assert float((hh**2).mean()) > power * 1e-4


def test_pixels_without_data_and_fills_are_left_out():
    noisy = photo_band() + np.random.default_rng(0).normal(0.0, 0.03, (128, 128))
    valid = np.ones(noisy.shape, dtype=bool)
    valid[40:80, 30:90] = False
    filled = np.where(valid, noisy, 50.0)
    expected = flat_patch_noise_variance(noisy)
    assert flat_patch_noise_variance(filled, valid) == pytest.approx(expected, rel=0.1)
    assert flat_patch_noise_variance(np.where(valid, noisy, np.nan)) == pytest.approx(expected, rel=0.1)
    # a constant fill is not flat ground with zero noise
    assert flat_patch_noise_variance(filled) == pytest.approx(expected, rel=0.1)


def test_too_little_to_read_gives_none():
    assert flat_patch_noise_variance(np.random.default_rng(0).random((6, 6))) is None
    assert flat_patch_noise_variance(np.full((40, 40), np.nan)) is None
    assert flat_patch_noise_variance(np.full((40, 40), 0.5)) is None


def test_the_flat_limit_is_the_quantile_of_white_noise_gradient_energy():
    noise = np.random.default_rng(0).standard_normal((200_000, PATCH * PATCH))
    share_below = float((gradient_energy(noise) <= flat_limit()).mean())
    assert share_below == pytest.approx(0.99, abs=0.003)
