"""Degradations: PSF, blur, decimation, bicubic, spectral response, noise, checked against direct formulas."""

from __future__ import annotations

import numpy as np
import pytest

from hsiuu_cli import degrade
from hsiuu_cli.errors import ParameterError, ShapeMismatchError


def direct_convolution(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Plain loops over a half-sample-symmetric padded image."""
    radius = kernel.shape[0] // 2
    padded = np.pad(image, radius, mode="symmetric")
    out = np.zeros(image.shape)
    for row in range(image.shape[0]):
        for col in range(image.shape[1]):
            window = padded[row : row + kernel.shape[0], col : col + kernel.shape[1]]
            out[row, col] = (window * kernel[::-1, ::-1]).sum()
    return out


@pytest.fixture
def cube_array():
    return np.random.default_rng(3).random((20, 24, 3)).astype(np.float32)


def test_gaussian_psf_shape_and_values():
    kernel = degrade.gaussian_psf(2.0)
    assert kernel.shape == (13, 13)  # 2·ceil(3σ) + 1
    assert kernel.sum() == pytest.approx(1.0)
    offsets = np.arange(13) - 6
    expected = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * 2.0**2))
    assert np.allclose(kernel, expected / expected.sum())
    assert np.allclose(kernel, kernel.T) and np.allclose(kernel, kernel[::-1, ::-1])


def test_psf_sigma_from_kernel_size():
    kernel = degrade.gaussian_psf(size=7)
    assert kernel.shape == (7, 7)
    assert np.allclose(kernel, degrade.gaussian_psf(1.0, 7))  # σ = (7 − 1) / 6
    assert degrade.gaussian_psf(0.0, 3)[1, 1] == 1.0
    with pytest.raises(ParameterError, match="odd"):
        degrade.gaussian_psf(size=4)
    with pytest.raises(ParameterError):
        degrade.gaussian_psf()


def test_blur_matches_direct_convolution(cube_array):
    kernel = degrade.gaussian_psf(1.3)
    blurred = degrade.blur(cube_array, kernel)
    assert blurred.dtype == np.float32 and blurred.shape == cube_array.shape
    for band in range(3):
        assert np.allclose(blurred[:, :, band], direct_convolution(cube_array[:, :, band].astype(float), kernel), atol=1e-6)


def test_blur_with_a_non_separable_kernel(cube_array):
    kernel = np.array([[0.0, 0.2, 0.0], [0.1, 0.3, 0.05], [0.0, 0.25, 0.1]])
    blurred = degrade.blur(cube_array[:, :, 0], kernel)
    assert blurred.ndim == 2
    assert np.allclose(blurred, direct_convolution(cube_array[:, :, 0].astype(float), kernel), atol=1e-6)


def test_blur_keeps_constants_and_leaves_nan_out(cube_array):
    assert np.allclose(degrade.blur(np.full((9, 9, 2), 0.4), degrade.gaussian_psf(2.0)), 0.4)
    data = np.full((15, 15, 2), 0.5, dtype=np.float32)
    data[7, 7, :] = np.nan
    data[:, :, 1] = np.nan  # a band without any data, as AVIRIS water-vapour bands
    blurred = degrade.blur(data, degrade.gaussian_psf(1.5))
    assert np.isnan(blurred[7, 7, 0]) and np.isnan(blurred[:, :, 1]).all()
    finite = np.isfinite(blurred[:, :, 0])
    assert finite.sum() == 15 * 15 - 1
    assert np.allclose(blurred[:, :, 0][finite], 0.5)  # NaN did not leak into the neighbours


def test_decimate_offsets_and_partial_blocks(cube_array):
    lr = degrade.decimate(cube_array, 4, 1)
    assert lr.shape == (5, 6, 3)
    assert np.array_equal(lr, cube_array[1::4, 1::4])
    odd = degrade.decimate(cube_array[:19, :23], 4, 3)
    assert odd.shape == (4, 5, 3)  # only whole 4×4 blocks
    assert np.array_equal(odd, cube_array[3:16:4, 3:20:4])
    with pytest.raises(ParameterError, match="offset"):
        degrade.decimate(cube_array, 4, 4)
    with pytest.raises(ParameterError, match="smaller than the ratio"):
        degrade.decimate(cube_array[:3], 4)


def test_gaussian_spatial_degrade_is_blur_then_block_centre_sample(cube_array):
    lr = degrade.spatial_degrade(cube_array, 4)
    kernel = degrade.gaussian_psf(2.0)  # default σ = ratio / 2
    for band in range(3):
        direct = direct_convolution(cube_array[:, :, band].astype(float), kernel)
        assert np.allclose(lr[:, :, band], direct[1::4, 1::4], atol=1e-6)  # pixel 1 of each block
    ratio3 = degrade.spatial_degrade(cube_array[:18], 3, sigma=1.0, kernel_size=5)
    direct = direct_convolution(cube_array[:18, :, 0].astype(float), degrade.gaussian_psf(1.0, 5))
    assert np.allclose(ratio3[:, :, 0], direct[1::3, 1::3], atol=1e-6)
    assert np.array_equal(
        degrade.spatial_degrade(cube_array, 4, kernel_size=7), degrade.spatial_degrade(cube_array, 4, sigma=1.0, kernel_size=7)
    )


def test_bicubic_spatial_degrade():
    rows, cols = np.mgrid[0:32, 0:24].astype(np.float32)
    ramp = np.stack([rows, 2 * cols + 1], axis=2)
    lr = degrade.spatial_degrade(ramp, 4, method="bicubic")
    assert lr.shape == (8, 6, 2)
    # a symmetric antialiasing filter keeps a linear ramp: each LR pixel is its block's mean (away from borders)
    block_means = ramp.reshape(8, 4, 6, 4, 2).mean(axis=(1, 3))
    assert np.allclose(lr[2:-2, 2:-2], block_means[2:-2, 2:-2], atol=1e-3)
    assert np.allclose(degrade.spatial_degrade(np.full((16, 16, 1), 0.3, np.float32), 4, method="bicubic"), 0.3, atol=1e-6)
    with pytest.raises(ParameterError, match="Gaussian PSF"):
        degrade.spatial_degrade(ramp, 4, method="bicubic", sigma=1.0)
    with pytest.raises(ParameterError, match="unknown PSF"):
        degrade.spatial_degrade(ramp, 4, method="box")


def test_resize_bicubic_up_and_nan():
    rng = np.random.default_rng(1)
    small = rng.random((6, 5, 2)).astype(np.float32)
    up = degrade.resize_bicubic(small, 24, 20)
    assert up.shape == (24, 20, 2) and up.dtype == np.float32
    assert np.allclose(degrade.resize_bicubic(np.full((6, 5, 1), 2.0), 12, 10), 2.0)
    holes = small.copy()
    holes[2, 2, 0] = np.nan
    resized = degrade.resize_bicubic(holes, 24, 20)
    assert np.isnan(resized[8:12, 8:12, 0]).all()  # the missing pixel's own area
    assert np.isfinite(resized[:, :, 1]).all()  # other bands untouched
    assert np.isfinite(resized[:4, :4, 0]).all()


def test_spectral_degrade_is_a_per_pixel_matrix_product():
    rng = np.random.default_rng(2)
    data = rng.random((4, 5, 6))
    matrix = rng.random((6, 3))
    out = degrade.spectral_degrade(data, matrix)
    assert out.shape == (4, 5, 3)
    for row in range(4):
        for col in range(5):
            assert np.allclose(out[row, col], matrix.T @ data[row, col])
    with pytest.raises(ShapeMismatchError, match="6 bands"):
        degrade.spectral_degrade(data, matrix[:5])


def test_noise_reaches_the_requested_snr_and_follows_the_seed():
    rng = np.random.default_rng(0)
    clean = (rng.random((64, 64, 3)) + 0.5) * np.array([1.0, 0.1, 10.0])
    noisy = degrade.add_noise(clean, 25.0, 7)
    noise = noisy - clean
    snr = 10 * np.log10((clean**2).mean(axis=(0, 1)) / (noise**2).mean(axis=(0, 1)))
    assert np.allclose(snr, 25.0, atol=0.2)
    assert abs(noise.mean()) < 0.05 * noise.std()
    assert np.array_equal(noisy, degrade.add_noise(clean, 25.0, 7))
    assert not np.array_equal(noisy, degrade.add_noise(clean, 25.0, 8))
    with_nan = clean.copy()
    with_nan[0, 0, :] = np.nan
    assert np.isnan(degrade.add_noise(with_nan, 25.0, 7)[0, 0]).all()
