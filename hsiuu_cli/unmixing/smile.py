"""SMILE: unmixing guided by super-resolution in one multi-task network, trained on the scene.

One network, two tasks that share features:

* a **shared encoder** (a per-pixel spectral layer on a PCA projection of the spectra, then a
  depthwise-separable 3×3 spatial layer) reads the scene;
* the **unmixing head** turns shared features into abundances through a softmax (non-negative,
  summing to one); the **decoder** multiplies them by non-negative endmembers (the linear
  mixing model);
* the **super-resolution head** turns shared features of a copy of the scene degraded by the
  factor s (:func:`hsiuu_cli.degrade.spatial_degrade`) into features on the s× finer grid,
  which go through the same unmixing head and decoder and must restore the scene. The SR task
  is self-supervised on the scene itself. Applied to the scene, the SR head gives abundances
  on the s× finer grid (``scale``).

Convergence safeguards, each chosen by measurement (numbers in docs/unmix.md):

1. The decoder starts from VCA, polished to the maximum-volume simplex by N-FINDR sweeps started
   from the VCA pixels; the polished simplex no longer depends on VCA's random directions. Both run
   on the pixels projected onto their signal subspace (HySime's dimension, at least K + 1): on
   noisy pixels a dark endmember such as clear water has no clean vertex, and the simplex took a
   noise outlier for it (water 18–27° from the truth on the synthetic AVIRIS scenes, 0.7–1.5° after).
2. Endmember regularisation: the endmembers are moved to the centroids of the pixels they
   dominate (:mod:`.purity`), which is how reference endmembers of real scenes are made.
3. Staged training: the decoder is fixed at those endmembers while the encoder and both heads
   learn. Releasing it (even at a learning rate of 3e-5 with a strong pull towards the purity
   centroids) made the simplex grow to fit mixed pixels (development runs, docs/unmix.md): Samson's water went from
   1.1° to 3–5° from the reference, and no scene improved.
4. Early stopping on the training loss, and the best parameters are kept if the loss ever
   becomes non-finite.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..degrade import spatial_degrade
from ..device import resolve_device
from ..errors import InvalidDataError, ParameterError
from ..torch_losses import spectral_angles
from .hysime import signal_subspace_projection
from .nfindr import nfindr
from .purity import refine_pure_centroids
from .vca import vca


SR_MIN_LOW_SIDE = 4
"""The SR task trains only when the degraded copy of the scene is at least this many pixels on each side."""

_GENERATOR = threading.Lock()
"""Held while a network's initial weights are drawn (see _smile)."""


@dataclass
class SmileConfig:
    features: int = 32
    """Channels of the shared and task-specific features."""
    pca_components: int = 16
    """Spectral dimensions the encoder reads (at least K + 1, but no more than the bands or the valid
    pixels − 1 provide; the decoder outputs every band)."""
    guide_scale: int = 2
    """Factor of the self-supervised SR task when no ``scale`` is asked for."""
    max_steps: int = 250
    patience: int = 50
    """Stop when the loss has not improved by ``min_improvement`` (relative) for this many steps."""
    min_improvement: float = 1e-3
    learning_rate: float = 1e-2
    sr_weight: float = 1.0
    sad_weight: float = 1.0
    """Weight of the spectral-angle term next to the normalised squared error."""
    purity_threshold: float = 0.9
    single_thread_pixels: int = 256 * 256
    """Scenes up to this many pixels train on one CPU thread: their small convolutions gain little
    from threads, and lost a factor 5–10 to thread contention when the cores were shared."""


@dataclass
class SmileResult:
    endmembers: np.ndarray  # (K, B)
    abundances: np.ndarray  # (H, W, K), NaN outside the mask
    abundances_hr: np.ndarray | None  # (H·s, W·s, K) with a scale, NaN outside the mask
    info: dict = field(default_factory=dict)


def initial_endmembers(pixels: np.ndarray, k: int, *, seed: int, threshold: float = 0.9):
    """The decoder's starting point: VCA → maximum-volume polish, both on the pixels projected onto
    their signal subspace (at least K + 1 dimensions) → purity centroids of the pixels themselves."""
    signal = signal_subspace_projection(pixels, k + 1)
    _, vca_indices = vca(signal, k, rng=seed)
    simplex, _ = nfindr(signal, k, initial=vca_indices)
    return refine_pure_centroids(pixels, simplex, threshold=threshold)


def smile(
    cube: np.ndarray,
    mask: np.ndarray,
    n_endmembers: int,
    *,
    scale: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    config: SmileConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_endmembers: Callable[[], None] | None = None,
) -> SmileResult:
    """Unmix ``cube`` (H, W, B; pixels outside ``mask`` ignored) into ``n_endmembers`` on ``device``
    (auto, cpu or cuda). ``on_endmembers()`` is called once the decoder's endmembers are chosen,
    ``progress(step, max_steps)`` after each training step."""
    import torch

    config = config or SmileConfig()
    device = resolve_device(device)
    threads = torch.get_num_threads()
    if device == "cpu" and cube.shape[0] * cube.shape[1] <= config.single_thread_pixels:
        torch.set_num_threads(1)
    try:
        return _smile(
            cube, mask, n_endmembers, scale=scale, seed=seed, device=device, config=config, progress=progress,
            on_endmembers=on_endmembers,
        )
    finally:
        torch.set_num_threads(threads)


def _smile(cube, mask, n_endmembers, *, scale, seed, device, config, progress, on_endmembers) -> SmileResult:
    import torch

    started = time.perf_counter()
    rows, cols, bands = cube.shape
    k = n_endmembers
    # Without the SR task the SR head stays untrained and its finer-grid abundances would be noise.
    if scale and min(rows, cols) < SR_MIN_LOW_SIDE * scale:
        side = SR_MIN_LOW_SIDE * scale
        raise ParameterError(
            f"abundances on a {scale}× finer grid need a scene of at least {side}×{side} pixels to train "
            f"SMILE's super-resolution task, this one is {rows}×{cols}; unmix without --scale"
        )
    pixels = np.asarray(cube[mask], dtype=np.float64)
    unit = float(np.percentile(np.abs(pixels), 99.9)) or 1.0

    purity = initial_endmembers(pixels, k, seed=seed, threshold=config.purity_threshold)
    endmembers = np.maximum(purity.endmembers / unit, 0.0)
    if on_endmembers is not None:
        on_endmembers()

    # Invalid pixels get the mean spectrum so the convolutions see something neutral; losses skip them.
    filled = np.where(mask[..., None], cube, pixels.mean(0)).astype(np.float64) / unit
    mean = filled[mask].mean(0)
    # Centred, N pixels span at most N − 1 directions; the SVD's other rows would be arbitrary, and
    # the network must be built for the number of scores the projection really gives.
    components = min(bands, len(pixels) - 1, max(config.pca_components, k + 1))
    _, _, vt = np.linalg.svd(filled[mask] - mean, full_matrices=False)
    projection = vt[:components].T
    score_scale = float(np.std((filled[mask] - mean) @ projection[:, 0])) or 1.0

    def encoded(image: np.ndarray):
        scores = ((image - mean) @ projection) / score_scale
        return torch.tensor(scores.transpose(2, 0, 1)[None], dtype=torch.float32, device=device)

    sr_factor = scale or config.guide_scale
    use_sr = config.sr_weight > 0 and min(rows, cols) >= SR_MIN_LOW_SIDE * sr_factor
    # Reflection needs a neighbour on each side; a one-pixel side repeats its edge instead.
    padding_mode = "reflect" if min(rows, cols) > 1 else "replicate"
    # The weights are drawn from PyTorch's one generator per process: jobs on threads (--jobs) seeding
    # and drawing at the same time would interleave their draws and make the result vary run to run.
    with _GENERATOR:
        torch.manual_seed(seed)
        net = _network(components, k, config.features, sr_factor, endmembers, padding_mode)
    net = net.to(device)
    target = torch.tensor(filled.transpose(2, 0, 1)[None], dtype=torch.float32, device=device)
    weight = torch.tensor(mask[None, None], dtype=torch.float32, device=device)
    inputs = encoded(filled)
    if use_sr:
        low = spatial_degrade(filled, sr_factor)
        low_inputs = encoded(low)
        # Decimation keeps one pixel per s × s block, so the SR output covers the whole blocks.
        sr_rows, sr_cols = low.shape[0] * sr_factor, low.shape[1] * sr_factor
        sr_target, sr_weight_map = target[..., :sr_rows, :sr_cols], weight[..., :sr_rows, :sr_cols]

    optimiser = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    best_loss, best_state, stale, steps = np.inf, None, 0, 0
    for steps in range(1, config.max_steps + 1):
        optimiser.zero_grad(set_to_none=True)
        loss = _reconstruction_loss(net.decode(net.unmix(inputs)), target, weight, config.sad_weight)
        if use_sr:
            restored = net.decode(net.unmix_super_resolved(low_inputs))
            loss = loss + config.sr_weight * _reconstruction_loss(restored, sr_target, sr_weight_map, config.sad_weight)
        value = float(loss.detach())
        if not np.isfinite(value):
            break
        if value < best_loss * (1 - config.min_improvement):
            best_loss, stale = value, 0
            best_state = {name: tensor.detach().clone() for name, tensor in net.state_dict().items()}
        else:
            stale += 1
            if stale >= config.patience:
                break
        loss.backward()
        optimiser.step()
        if progress is not None:
            progress(steps, config.max_steps)
    if best_state is None:
        raise InvalidDataError("SMILE training diverged (non-finite loss); try --method vca-fcls")
    net.load_state_dict(best_state)

    with torch.no_grad():
        abundances = net.unmix(inputs)[0].permute(1, 2, 0).cpu().numpy().astype(np.float64)
        abundances[~mask] = np.nan
        abundances_hr = None
        if scale:
            abundances_hr = net.unmix_super_resolved(inputs)[0].permute(1, 2, 0).cpu().numpy().astype(np.float64)
            fine_mask = np.repeat(np.repeat(mask, scale, axis=0), scale, axis=1)
            abundances_hr[~fine_mask] = np.nan
    info = {
        "training_steps": steps,
        "final_loss": best_loss,
        "sr_task": bool(use_sr),
        "sr_factor": sr_factor if use_sr else None,
        "pure_pixels_per_endmember": purity.pure_pixels.tolist(),
        "seconds": time.perf_counter() - started,
    }
    return SmileResult(endmembers * unit, abundances, abundances_hr, info)


def _reconstruction_loss(estimate, target, weight, sad_weight):
    """Squared error normalised by the scene's power, plus ``sad_weight`` × mean spectral angle (radians)."""
    count = weight.sum().clamp_min(1)
    squared = (((estimate - target) ** 2).mean(1, keepdim=True) * weight).sum() / count
    loss = squared / target.pow(2).mean().clamp_min(1e-12)
    if sad_weight:
        loss = loss + sad_weight * (spectral_angles(estimate, target) * weight).sum() / count
    return loss


def _network(components: int, k: int, features: int, sr_factor: int, endmembers: np.ndarray, padding_mode: str):
    """The SMILE network (built here so that torch is imported only when SMILE runs).

    ``padding_mode`` pads the shared encoder, which reads the scene itself; the SR head reads grids
    at least ``sr_factor`` ≥ 2 pixels on each side, where reflection always works.
    """
    import torch
    from torch import nn

    def spatial(channels: int, padding_mode: str = "reflect") -> list:
        # Depthwise 3×3 then pointwise: spatial context at a ninth of a full 3×3 layer's cost.
        return [
            nn.Conv2d(channels, channels, 3, padding=1, padding_mode=padding_mode, groups=channels),
            nn.Conv2d(channels, channels, 1),
        ]

    class SmileNetwork(nn.Module):
        def __init__(self):
            super().__init__()
            self.shared = nn.Sequential(
                nn.Conv2d(components, features, 1),
                nn.LeakyReLU(0.1),
                *spatial(features, padding_mode),
                nn.LeakyReLU(0.1),
            )
            self.unmixing_head = nn.Sequential(
                nn.Conv2d(features, features, 1), nn.LeakyReLU(0.1), nn.Conv2d(features, k, 1)
            )
            self.sr_head = nn.Sequential(
                nn.Conv2d(features, features * sr_factor**2, 1),
                nn.PixelShuffle(sr_factor),
                nn.LeakyReLU(0.1),
                *spatial(features),
                nn.LeakyReLU(0.1),
            )
            # Fixed during training (safeguard 3): a buffer, not a parameter.
            self.register_buffer("endmembers", torch.tensor(endmembers, dtype=torch.float32))

        def unmix(self, inputs):
            return torch.softmax(self.unmixing_head(self.shared(inputs)), dim=1)

        def unmix_super_resolved(self, inputs):
            return torch.softmax(self.unmixing_head(self.sr_head(self.shared(inputs))), dim=1)

        def decode(self, abundances):
            return torch.einsum("nkhw,kb->nbhw", abundances, self.endmembers)

    return SmileNetwork()
