"""How much of a model's detail a scene gets: judged on pairs the scene makes of itself.

A self-check pair is a part of the LR scene (the *target*) and the same part degraded once more
by the scale (the *coarse* input). Super-resolving the coarse input and comparing with the
target tells, without any reference, whether a model's detail helps on this scene. The detail
gain g scales the model's residual over bicubic (output = bicubic + g · detail): the
least-squares g (bands weighted alike, as in the band-mean PSNR), then lowered in steps until
the result is no worse than bicubic on PSNR **and** on the spectral angle, down to g = 0
(bicubic). The angle must improve by at least its standard error (over blocks of
:data:`SAM_BLOCK` pixels): a change within the self-check's noise one scale coarser did not carry
over to the scene's own scale (Pavia University's RGB photograph ×4: 0.0003° better on the
self-check, 0.02° worse than bicubic on the scene). Metrics come from :mod:`hsiuu_cli.metrics`.

Before any gain, :func:`shape_detail` keeps the detail that changes a pixel's brightness and
damps the part that turns its spectrum in proportion to how dark the pixel is: the same absolute
error bends a dark spectrum (water, shadow) far more than a bright one, and that is where a
model's detail made the spectral angle worse than bicubic's on sensors it never saw.

:func:`dimmed_lines` recognises a scene blurred with zeros beyond its edges (a zero-padded PSF, as
in HyperBench, the SpectraMorph authors' benchmark): there the outermost LR pixels are darker
than the scene, and a model sharpens that artificial edge, so the dimmed lines keep the bicubic result.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np

DARK_FRACTION = 0.6
"""Pixels darker than this fraction of the scene's median spectrum norm get less of the detail
that turns their spectra (see :func:`shape_detail`)."""
SAM_BLOCK = 8
"""Pixels a side of the blocks whose mean angle changes give the standard error of the self-check's SAM
change (neighbouring pixels' angles are not independent, blocks nearly are)."""
DIMMED_EDGE = 0.95
"""A scene whose outermost line is, on every side, darker than this share of the line inside it counts as
blurred with zero padding. HyperBench's LR cubes give 0.68–0.88; the unpadded scenes of the benchmarks
0.86–1.26 on single sides, but never all four below 0.96 (docs/benchmarks.md)."""
MAX_DIMMED_LINES = 3
"""The most lines a zero-padded PSF is looked for in: its reach, about 3 σ, is under 3 LR pixels for the
PSFs a degradation by the scale uses (HyperBench dims two lines at most)."""
GAIN_STEPS = 10
"""The least-squares gain is tried at 10/10, 9/10, … 1/10 of itself before falling back to 0."""


@dataclass
class GainCheck:
    """A self-check's verdict: the gain, and PSNR (dB) / SAM (°) with it and with bicubic."""

    gain: float
    least_squares_gain: float
    psnr: float
    sam: float
    psnr_bicubic: float
    sam_bicubic: float

    @property
    def limited(self) -> bool:
        """True when the PSNR/SAM guard lowered the least-squares gain."""
        return self.gain < self.least_squares_gain

    def as_dict(self) -> dict:
        return {key: round(float(value), 4) for key, value in asdict(self).items()}


def guarded_gain(base: np.ndarray, residual: np.ndarray, target: np.ndarray, band_scale: np.ndarray) -> GainCheck:
    """The largest gain ≤ the least-squares one whose result is no worse than ``base`` on PSNR and SAM.

    ``base``: the bicubic up-sampling of the coarse input; ``residual``: the model's detail;
    ``target``: what they should restore (rows × cols × bands, physical units). ``band_scale``
    (per band) weights the least-squares fit so every band counts alike.
    """
    from ..metrics import psnr, sam_map

    weights = (1.0 / np.asarray(band_scale, dtype=np.float64)) ** 2
    difference = (target - base).astype(np.float64)
    energy = float(np.einsum("ijk,ijk,k->", residual, residual, weights, dtype=np.float64))
    least_squares = 0.0
    if energy > 0:
        least_squares = float(np.clip(np.einsum("ijk,ijk,k->", residual, difference, weights, dtype=np.float64) / energy, 0, 1))
    angles_bicubic = sam_map(base, target)
    psnr_bicubic, sam_bicubic = psnr(base, target), float(np.nanmean(angles_bicubic))
    for step in range(GAIN_STEPS, 0, -1):
        gain = least_squares * step / GAIN_STEPS
        if gain <= 0:
            break
        result = base + np.float32(gain) * residual
        angles = sam_map(result, target)
        quality = psnr(result, target), float(np.nanmean(angles))
        if quality[0] >= psnr_bicubic and quality[1] + block_standard_error(angles - angles_bicubic) <= sam_bicubic:
            return GainCheck(gain, least_squares, quality[0], quality[1], psnr_bicubic, sam_bicubic)
    return GainCheck(0.0, least_squares, psnr_bicubic, sam_bicubic, psnr_bicubic, sam_bicubic)


def block_standard_error(changes: np.ndarray) -> float:
    """The standard error of the mean of a rows × cols map of per-pixel changes (NaN: no pixel), from the
    means of its :data:`SAM_BLOCK` × :data:`SAM_BLOCK` blocks; 0 with fewer than two blocks."""
    rows, cols = changes.shape[0] // SAM_BLOCK * SAM_BLOCK, changes.shape[1] // SAM_BLOCK * SAM_BLOCK
    blocks = changes[:rows, :cols].reshape(rows // SAM_BLOCK, SAM_BLOCK, cols // SAM_BLOCK, SAM_BLOCK)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a block without pixels has no mean
        means = np.nanmean(blocks, axis=(1, 3)).ravel()
    means = means[np.isfinite(means)]
    return float(means.std(ddof=1) / np.sqrt(means.size)) if means.size >= 2 else 0.0


def shape_detail(base: np.ndarray, detail: np.ndarray, level: float) -> np.ndarray:
    """``detail`` with its spectrum-turning part damped on dark pixels (bands on the last axis).

    Per pixel, the detail splits into the part along the base spectrum (brightness: leaves the
    spectral angle as it is) and the rest (turns the spectrum by about |rest| / |base|). The rest
    is weighted by |base|² / (|base|² + level²): whole on pixels much brighter than ``level``,
    damped on darker ones, so no pixel's spectrum turns by much more than |rest| / (2·level).
    """
    if level <= 0:
        return detail
    norm2 = np.einsum("...k,...k->...", base, base, dtype=np.float32)[..., np.newaxis]
    along = np.einsum("...k,...k->...", detail, base, dtype=np.float32)[..., np.newaxis] / np.maximum(norm2, np.float32(1e-30))
    rest = detail - along * base
    return detail - (np.float32(level) ** 2 / (norm2 + np.float32(level) ** 2)) * rest


def dimmed_lines(sides: list[tuple[np.ndarray, np.ndarray]]) -> int:
    """How many outermost lines are dimmed on every side: line k counts when, on all four sides, it is
    darker than :data:`DIMMED_EDGE` times line k + 1 (and every line before it counted).

    ``sides``: per side of the scene, its outermost lines as (values lines × n × bands, valid lines × n),
    the outermost first (up to :data:`MAX_DIMMED_LINES` + 1 lines). Brightness is the mean over the bands and
    the pixels valid in both lines; fewer than 3 such pixels, or no positive brightness inside, end the count.
    """
    count = min(values.shape[0] for values, _ in sides) - 1 if sides else 0
    for line in range(min(count, MAX_DIMMED_LINES)):
        for values, valid in sides:
            both = valid[line] & valid[line + 1]
            if both.sum() < 3:
                return line
            outer = float(np.mean(values[line][both], dtype=np.float64))
            inner = float(np.mean(values[line + 1][both], dtype=np.float64))
            if not inner > 0 or not outer < DIMMED_EDGE * inner:
                return line
    return min(count, MAX_DIMMED_LINES)
