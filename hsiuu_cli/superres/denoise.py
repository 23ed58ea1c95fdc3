"""The LR scene's noise, and its removal before super-resolution.

The models learnt from noise-free LR pairs: given a noisy scene they take the noise for texture and
sharpen it. With white noise added to the benchmark's 28 hyperspectral LR cubes at 40, 35, 30 and
20 dB SNR, the result was worse than bicubic's on SAM in 2, 6, 10 and 26 of them (at 20 dB in 12 on
PSNR too), and the self-check could not see it: degrading the scene once more averages its noise
away (docs/benchmarks.md, § Noisy scenes). Where the scene's noise is that
strong, its spectra are first shrunk onto their signal subspace — HySime's per-band noise estimate,
the bands whitened by it, each direction whose power exceeds the noise's kept in proportion to its
signal share (:func:`hsiuu_cli.unmixing.hysime.signal_subspace` with the Wiener criterion; the
shrinkage ``fuse`` applies to its LR-HSI keeps only directions above twice the noise, HySime's
projection criterion, which on HyperBench's seven LR cubes gave 0.01–0.08° more SAM here).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidDataError

DENOISE_BELOW_DB = 43.0
"""Scenes whose median band SNR is estimated below this are denoised by default: halfway between noise added at
40 dB (read 38.6–39.6 dB), where the model's SAM was already worse than bicubic's on a benchmark scene, and the
benchmark scenes as recorded (real sensors' own noise), which read 46.6 dB and more (docs/benchmarks.md, § Noisy
scenes)."""
MIN_BANDS = 20
"""Fewer good bands cannot tell noise from signal by regression on the other bands: an RGB photograph's
detail reads as 24 dB of noise. Such scenes are not denoised; their self-checks carry their noise instead
(:func:`with_noise_put_back`)."""
MIN_PIXELS = 16
"""Fewer valid pixels leave too little to estimate the noise from."""
SAMPLE_PIXELS = 20_000
"""Pixels (spread over the scene) the estimate uses at most."""


@dataclass
class SceneNoise:
    """What was estimated and decided about the scene's noise."""

    snr_db: float | None
    """Median over the good bands of signal power / estimated noise power (None: not estimable)."""
    matrix: np.ndarray | None
    """Good bands × good bands: pixels (rows) times this are denoised; None: left as they are."""
    dimensions: int | None = None
    """Signal directions kept (where denoised)."""
    reason: str = ""

    @property
    def applied(self) -> bool:
        return self.matrix is not None

    def summary(self) -> dict:
        return {"applied": self.applied, "snr_db": None if self.snr_db is None else round(self.snr_db, 2),
                "dimensions": self.dimensions, "reason": self.reason}


def scene_noise(pixels: np.ndarray, denoise: bool | None = None) -> SceneNoise:
    """The noise of a scene's valid pixels (N × good bands, physical units) and the denoising decision:
    ``denoise`` None decides by :data:`DENOISE_BELOW_DB`, True always denoises (InvalidDataError where the
    noise cannot be estimated), False never does (the estimate is still reported)."""
    # here, not at the top: the unmixing package is imported with it, and only model runs need it
    from ..unmixing.hysime import estimate_noise, estimate_noise_nearby, residual_variance, signal_subspace

    count, bands = pixels.shape
    if bands < MIN_BANDS or count < MIN_PIXELS:
        reason = (f"{bands} good bands are too few to tell the noise from the signal across bands (at least {MIN_BANDS})"
                  if bands < MIN_BANDS else f"{count} pixels are too few to estimate the noise (at least {MIN_PIXELS})")
        if denoise:
            raise InvalidDataError(f"cannot denoise: {reason}")
        if bands < MIN_BANDS:
            reason += "; the self-check carries the scene's own noise instead"
        return SceneNoise(None, None, reason=reason)
    sample = np.asarray(pixels, dtype=np.float64)
    if count > SAMPLE_PIXELS:
        sample = sample[np.linspace(0, count - 1, SAMPLE_PIXELS).astype(int)]
    # each band regressed on the others (on its nearest ones where pixels are few)
    if sample.shape[0] >= 2 * bands:
        residual, fitted = estimate_noise(sample), bands - 1
    else:
        neighbours = max(2, min(bands - 1, sample.shape[0] // 4))
        residual, fitted = estimate_noise_nearby(sample, neighbours), 2 * max(1, neighbours // 2) + 1
    variance = residual_variance(residual, fitted)
    power = (sample**2).mean(axis=0)
    usable = (variance > 0) & (power > 0)
    if not usable.any():
        return SceneNoise(None, None, reason="the scene has no measurable noise")
    snr_db = float(np.median(10 * np.log10(power[usable] / variance[usable])))
    if denoise is False:
        return SceneNoise(snr_db, None, reason="turned off")
    if denoise is None and snr_db >= DENOISE_BELOW_DB:
        return SceneNoise(snr_db, None, reason=f"SNR at or above {DENOISE_BELOW_DB:g} dB")
    scale = np.sqrt(np.maximum(variance, variance[usable].min()))
    subspace = signal_subspace(sample / scale, 1.0, power_factor=1.0)
    matrix = (subspace.shrinkage() / scale[:, None]) * scale[None, :]
    reason = "asked for" if denoise else f"SNR below {DENOISE_BELOW_DB:g} dB"
    return SceneNoise(snr_db, matrix.astype(np.float32), subspace.basis.shape[1], reason)


def few_band_noise_variance(values: np.ndarray) -> np.ndarray | None:
    """For a scene of fewer than :data:`MIN_BANDS` bands (rows × cols × bands), which is never denoised: per band,
    its white-noise variance read from its own flattest patches (:func:`hsiuu_cli.noise.band_noise_variances`;
    0 for a band too small to read). None where no band could be read, and for scenes of more bands, whose strong
    noise is removed instead (:func:`scene_noise`)."""
    from ..noise import band_noise_variances

    return None if values.shape[2] >= MIN_BANDS else band_noise_variances(values)


def median_snr_db(values: np.ndarray, variance: np.ndarray) -> float:
    """The median over the bands of signal power / noise variance, in dB (inf where no band has noise)."""
    power = (np.asarray(values, dtype=np.float64) ** 2).mean(axis=(0, 1))
    usable = (variance > 0) & (power > 0)
    return float(np.median(10 * np.log10(power[usable] / variance[usable]))) if usable.any() else float("inf")


def with_noise_put_back(coarse: np.ndarray, variance: np.ndarray, degrade: Callable[[np.ndarray], np.ndarray],
                        shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """``coarse`` (a ``shape``-sized scene crop degraded by ``degrade``, bands on the last axis) with the white noise
    of per-band ``variance`` that the degradation averaged away put back.

    A self-check pair made by degrading a noisy scene once more has a clean input: the model's detail looks
    harmless there and then sharpens the scene's own noise (a 3-band photograph with noise at 30 dB came out worse
    than bicubic; docs/benchmarks.md). The share of white noise ``degrade`` keeps is measured on a white field
    of ``shape``. Seeded: the same crop and ``seed`` give the same pair.
    """
    rng = np.random.default_rng(seed)
    kept = float(np.var(degrade(rng.standard_normal(tuple(shape) + (1,)).astype(np.float32))))
    missing = np.sqrt(np.asarray(variance, dtype=np.float64) * max(0.0, 1.0 - kept)).astype(np.float32)
    return coarse + rng.standard_normal(coarse.shape).astype(np.float32) * missing
