"""What happens to a cube between the file and the network, shared by training and inference.

* Statistics are computed once per scene from the LR cube (never per tile, so tiles agree).
  The SR trunk sees each band standardised ((x − mean) / std), so units, offsets and
  band-to-band gains do not matter; the unmixing branch sees each band divided by its mean
  (non-negative, as the linear mixing model needs), resampled to the branch's channels.
* The spectral adapter resamples a scene's B bands onto C channels (band-index box
  integration): any band count feeds the unmixing branch.
* Band groups cut any band count into runs of neighbouring bands for the trunk, each with the
  scene-mean band as spectral context.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NORMALISATION = (
    "per band over the LR scene: trunk (x - mean_b) / std_b; unmixing branch x / mean_b resampled to the "
    "branch's channels"
)
_STATISTICS_SAMPLES = 200_000


@dataclass
class SceneStatistics:
    """Per-band statistics of an LR scene (B,), all strictly positive except ``mean``."""

    mean: np.ndarray
    std: np.ndarray
    level: np.ndarray
    """|mean| with a floor: the divisor of the unmixing branch's input."""

    def normalise(self, values: np.ndarray) -> np.ndarray:
        """Standardised bands for the trunk."""
        return ((values - self.mean) / self.std).astype(np.float32, copy=False)

    def relative(self, values: np.ndarray) -> np.ndarray:
        """Bands divided by their mean level, for the unmixing branch."""
        return (values / self.level).astype(np.float32, copy=False)

    def residual_to_physical(self, residual: np.ndarray) -> np.ndarray:
        """Residuals carry no offset: only the scale comes back (bands on the last axis)."""
        return residual * self.std.astype(np.float32)


def scene_statistics(values: np.ndarray, valid: np.ndarray | None = None) -> SceneStatistics:
    """Statistics of an LR scene (rows × cols × bands, physical units), from a pixel subsample."""
    bands = values.shape[-1]
    pixels = (values if valid is None else values[valid]).reshape(-1, bands)
    step = max(1, pixels.shape[0] // _STATISTICS_SAMPLES)
    sample = np.asarray(pixels[::step], dtype=np.float64)
    if sample.size == 0:
        return SceneStatistics(np.zeros(bands), np.ones(bands), np.ones(bands))
    mean = sample.mean(axis=0)
    std = sample.std(axis=0)
    # A flat band has nothing to sharpen; floors (relative to the band's own level, so bands of
    # very different magnitude are each standardised) keep it from being blown up into noise.
    overall = max(float(np.abs(mean).max()), float(std.max()), 1e-30)
    std = np.maximum(std, np.maximum(1e-3 * np.abs(mean), 1e-6 * overall))
    level = np.maximum(np.abs(mean), np.maximum(std, 1e-6 * overall))
    return SceneStatistics(mean, std, level)


def adapter_matrix(bands: int, channels: int) -> np.ndarray:
    """C × B weights resampling B bands onto C channels (identity when B == C).

    Each channel averages the bands whose index interval overlaps its own, weighted by the
    overlap: no band is skipped when B > C, and bands are repeated when B < C.
    """
    edges_bands = np.arange(bands + 1) / bands
    edges_channels = np.arange(channels + 1) / channels
    overlap = np.clip(
        np.minimum(edges_channels[1:, None], edges_bands[None, 1:])
        - np.maximum(edges_channels[:-1, None], edges_bands[None, :-1]),
        0.0,
        None,
    )
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


def to_channels_first(values: np.ndarray, matrix: np.ndarray | None = None) -> np.ndarray:
    """rows × cols × B (optionally times a C×B matrix) → C × rows × cols, float32, contiguous."""
    if matrix is not None:
        from threadpoolctl import threadpool_limits

        # One BLAS thread: a float32 product split over threads rounds differently with their number,
        # and a scene must give the same bytes on any machine and on any cluster worker (the split
        # also cost more than it saved on these small products: 2.4 s against 0.04 s on 2 busy cores).
        with threadpool_limits(limits=1, user_api="blas"):
            values = values @ matrix.T
    return np.ascontiguousarray(np.moveaxis(values, -1, 0), dtype=np.float32)


def band_groups(bands: int, group: int) -> list[np.ndarray]:
    """Indices of consecutive band groups covering 0..bands-1.

    The last group is slid back to end on the last band (overlapping its neighbour) rather
    than padded; a scene with fewer bands than a group repeats its last band.
    """
    if bands <= group:
        return [np.minimum(np.arange(group), bands - 1)]
    starts = list(range(0, bands - group + 1, group))
    if starts[-1] + group < bands:
        starts.append(bands - group)
    return [np.arange(start, start + group) for start in starts]


def group_context(normalised: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """C × rows × cols normalised bands → (groups, group + 1, rows, cols): each group's bands and the mean band."""
    mean = normalised.mean(axis=0, keepdims=True)
    stacks = [np.concatenate([normalised[index], mean], axis=0) for index in groups]
    return np.ascontiguousarray(np.stack(stacks), dtype=np.float32)


def add_groups(total: np.ndarray, residuals: np.ndarray, groups: list[np.ndarray]) -> None:
    """Add (groups, group, R, C) predictions onto ``total`` (bands × R × C), slot by slot."""
    index = np.stack(groups)
    # Within one slot the groups hold distinct bands, so plain fancy-index addition is exact.
    for slot in range(index.shape[1]):
        total[index[:, slot]] += residuals[:, slot]


def slots_per_band(groups: list[np.ndarray], bands: int) -> np.ndarray:
    """How many group slots predict each band (≥ 1)."""
    return np.bincount(np.concatenate(groups), minlength=bands).astype(np.float32)
