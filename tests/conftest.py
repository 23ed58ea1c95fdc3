"""Shared fixtures: small synthetic cubes made with fixed seeds, the CLI runner, the real-data folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

SHARED_DATA = Path(os.environ.get("HSIUU_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data``; tests using it are skipped where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not available")
    return SHARED_DATA.resolve()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def smooth_field(rng: np.random.Generator, rows: int, cols: int, blobs: int = 6) -> np.ndarray:
    """A smooth positive random field: a sum of Gaussian blobs."""
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float64)
    field = np.zeros((rows, cols))
    for _ in range(blobs):
        cy, cx = rng.uniform(0, rows), rng.uniform(0, cols)
        width = rng.uniform(0.15, 0.4) * max(rows, cols)
        field += rng.uniform(0.5, 1.5) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width**2))
    return field


def textured(rows: int, cols: int, bands: int, seed: int = 0) -> np.ndarray:
    """A positive cube with detail at every scale (a 1/f field), smooth spectra that vary with it."""
    rng = np.random.default_rng(seed)
    fy, fx = np.meshgrid(np.fft.fftfreq(rows), np.fft.fftfreq(cols), indexing="ij")
    amplitude = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / max(rows, cols))
    fields = []
    for _ in range(2):
        phase = np.exp(2j * np.pi * rng.random((rows, cols)))
        field = np.real(np.fft.ifft2(amplitude * phase))
        fields.append((field - field.min()) / np.ptp(field))
    grid = np.linspace(0, 1, bands)
    spectra = np.stack([0.2 + 0.3 * grid, 0.6 - 0.4 * grid ** 2])
    return (0.05 + fields[0][:, :, None] * spectra[0] + fields[1][:, :, None] * spectra[1]).astype(np.float32)


def photo_band(rows: int = 128, cols: int = 128) -> np.ndarray:
    """A photograph-like band: smooth shading, a bright and a dark area with sharp edges, and its first 48
    columns covered by :func:`textured` detail."""
    y, x = np.mgrid[0:rows, 0:cols] / float(max(rows, cols))
    band = 0.3 + 0.2 * x + 0.1 * y
    band[20:60, 70:110] += 0.25
    band[80:120, 10:50] -= 0.15
    band[:, :48] += 0.3 * (textured(rows, 48, 1)[:, :, 0] - 0.4)
    return band


def make_mixture(
    rows: int = 32, cols: int = 32, bands: int = 40, endmembers: int = 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A linear-mixture scene with known truth.

    Returns (cube rows×cols×bands float32, endmembers endmembers×bands, abundances rows×cols×endmembers,
    wavelengths in nm). Endmember spectra are smooth and distinct; abundances are smooth, non-negative
    and sum to one.
    """
    rng = np.random.default_rng(seed)
    wavelengths = np.linspace(400.0, 2400.0, bands)
    grid = np.linspace(0, 1, bands)
    spectra = []
    for k in range(endmembers):
        centres = rng.uniform(0, 1, 3)
        spectrum = 0.15 + 0.1 * k / max(endmembers - 1, 1)
        for c in centres:
            spectrum = spectrum + rng.uniform(0.1, 0.4) * np.exp(-((grid - c) ** 2) / (2 * rng.uniform(0.05, 0.2) ** 2))
        spectra.append(spectrum)
    endmember_matrix = np.array(spectra)
    fields = np.stack([smooth_field(rng, rows, cols) ** 3 for _ in range(endmembers)], axis=2)
    abundances = fields / fields.sum(axis=2, keepdims=True)
    cube = abundances @ endmember_matrix
    return cube.astype(np.float32), endmember_matrix, abundances, wavelengths


def gaussian_srf(wavelengths, centres, width: float, *, normalise: bool = True) -> np.ndarray:
    """B × b responses of Gaussian bands (σ = ``width``) at the cube's wavelengths; columns sum to 1
    unless ``normalise`` is False (then peak 1, as a response table)."""
    matrix = np.exp(-0.5 * ((np.asarray(wavelengths, float)[:, None] - np.asarray(centres, float)[None, :]) / width) ** 2)
    return matrix / matrix.sum(axis=0) if normalise else matrix


@pytest.fixture
def mixture():
    return make_mixture()
