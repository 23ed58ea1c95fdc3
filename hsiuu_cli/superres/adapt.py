"""Scene adaptation: fine-tune a model on the scene it is about to sharpen.

The scene is its own teacher (as in zero-shot super-resolution): a crop of the LR scene is the
target, the same crop degraded once more by the scale — with the point-spread function
estimated from the scene — is the input. The model is fine-tuned on most of these pairs for a
bounded number of steps and seconds; the rest are held back, to stop early and to let
:mod:`hsiuu_cli.superres.guard` decide whether the adapted, the shipped or the bicubic result is
written.

PSF estimate. How sharp an image is on its own pixel grid depends on the blur that made it: the
ratio of Laplacian to gradient energy (bands standardised) falls as the PSF widens. The table
:data:`SHARPNESS_TABLE` gives that ratio for Gaussian PSFs of σ = f · scale, averaged over the
training scenes of the shipped models degraded by each (``python bench/superres.py psf-table``);
a scene's ratio read off it gives its f. Antialiased bicubic down-sampling reads as f ≈ 0.4.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import InvalidDataError, ModelError

SHARPNESS_FRACTIONS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9, 1.0)
"""PSF σ as a fraction of the scale, for the rows of :data:`SHARPNESS_TABLE`."""
SHARPNESS_TABLE: dict[int, tuple[float, ...]] = {
    2: (1.001, 0.905, 0.812, 0.718, 0.624, 0.530, 0.437, 0.256, 0.084, -0.079, -0.236),
    3: (1.072, 0.990, 0.902, 0.809, 0.715, 0.620, 0.523, 0.331, 0.144, -0.036, -0.205),
    4: (1.108, 1.028, 0.941, 0.847, 0.749, 0.648, 0.546, 0.346, 0.154, -0.027, -0.199),
    8: (1.084, 0.994, 0.896, 0.795, 0.690, 0.582, 0.476, 0.265, 0.060, -0.133, -0.315),
}
"""Scale → mean log sharpness of LR scenes made with each σ of :data:`SHARPNESS_FRACTIONS`."""
SHARPNESS_CROP = 256
SHARPNESS_BANDS = 32


def sharpness(values: np.ndarray) -> float:
    """log(Laplacian energy / gradient energy) of a rows × cols × bands image, bands standardised.

    A central crop of at most 256 × 256 pixels and 32 evenly spaced bands is enough for a
    stable figure.
    """
    rows, cols, bands = values.shape
    if min(rows, cols) < 3:
        raise InvalidDataError(f"a {rows}×{cols} image is too small to measure its sharpness")
    r0, c0 = max(0, (rows - SHARPNESS_CROP) // 2), max(0, (cols - SHARPNESS_CROP) // 2)
    picked = np.unique(np.linspace(0, bands - 1, min(bands, SHARPNESS_BANDS)).round().astype(int))
    x = np.asarray(values[r0 : r0 + SHARPNESS_CROP, c0 : c0 + SHARPNESS_CROP][:, :, picked], dtype=np.float64)
    x = (x - x.mean(axis=(0, 1))) / np.maximum(x.std(axis=(0, 1)), 1e-12)
    gradient = (np.diff(x, axis=0) ** 2).mean() + (np.diff(x, axis=1) ** 2).mean()
    laplacian = 4 * x[1:-1, 1:-1] - x[:-2, 1:-1] - x[2:, 1:-1] - x[1:-1, :-2] - x[1:-1, 2:]
    return float(np.log(max((laplacian**2).mean(), 1e-30) / max(gradient, 1e-30)))


@dataclass
class PsfEstimate:
    """A Gaussian PSF σ = ``fraction`` · scale (HR pixels of the LR-making step), and the sharpness read."""

    fraction: float
    scale: int
    log_sharpness: float

    @property
    def sigma(self) -> float:
        return self.fraction * self.scale


def estimate_psf(values: np.ndarray, scale: int) -> PsfEstimate:
    """The Gaussian PSF (σ as a fraction of ``scale``) whose degradation gives images as sharp as ``values``."""
    table = SHARPNESS_TABLE.get(scale) or SHARPNESS_TABLE[min(SHARPNESS_TABLE, key=lambda s: abs(s - scale))]
    measured = sharpness(values)
    # Sharpness falls as σ grows: interpolate on the reversed (increasing) table, clipped to its ends.
    fraction = float(np.interp(measured, table[::-1], SHARPNESS_FRACTIONS[::-1]))
    return PsfEstimate(fraction, scale, measured)


# ---------------------------------------------------------------------------------------------
# Self-supervised pairs and fine-tuning
# ---------------------------------------------------------------------------------------------

ADAPT_CROP = 512
"""Largest side (LR pixels) of the central crop the pairs come from: memory and set-up time stay
bounded on any scene, and a few hundred steps never see more pixels than that anyway."""
MIN_COARSE_SIDE = 24
"""Smallest side (pixels of the scene degraded once more) to adapt on: 24·scale LR pixels."""


@dataclass
class AdaptSettings:
    """How a model is fine-tuned on a scene (``hsiuu superres --adapt``)."""

    steps: int = 120
    """Most optimiser steps."""
    time_limit_s: float | None = None
    """Most seconds of fine-tuning; None: :func:`default_time_limit` of the scene."""
    learning_rate: float = 2e-4
    patch: int = 16
    """Side of a training patch in coarse pixels (×scale in target pixels)."""
    groups_per_step: int = 8
    """Band groups trained per step, drawn at random: the trunk's weights are shared by every
    group, so a few per step teach it as well as all, at a fraction of the cost."""
    hold_back: float = 0.25
    """Share of the pairs (the bottom rows of the crop) held back to stop early and to judge."""
    check_every: int = 20
    """Steps between checks on the held-back pairs (the best weights so far are kept)."""
    patience: int = 2
    """Checks without improvement before stopping early."""
    alpha: float = 0.1
    """Weight of the spectral-angle term (as in training)."""
    trainable: str = "tail"
    """'tail': only the up-sampling stages, the material-aware module and the tail conv (how detail
    is drawn, not what the trunk sees); 'all': every SR weight. Tail-only lost less spectral
    fidelity and ran faster in the measurements (docs/benchmarks.md § Scene adaptation)."""
    seed: int = 0


def default_time_limit(lr_pixels: int) -> float:
    """60 s per million LR pixels (the issue's budget), but never less than 20 s: below that a
    scene gets too few steps to learn anything, and such scenes are small enough to wait for."""
    return max(20.0, 60.0 * lr_pixels / 1e6)


def too_small(rows: int, cols: int, scale: int) -> str | None:
    """Why a scene cannot be adapted on at this scale (None when it can)."""
    need = MIN_COARSE_SIDE * scale
    if min(rows, cols) < need:
        return f"a {rows}×{cols} scene is too small to adapt on at ×{scale} (it needs at least {need}×{need} pixels)"
    return None


@dataclass
class SelfPairs:
    """Training and held-back pairs: ``target`` (a part of the LR scene) and ``coarse`` (it degraded once more)."""

    train_target: np.ndarray
    train_coarse: np.ndarray
    held_target: np.ndarray
    held_coarse: np.ndarray
    psf: PsfEstimate


def self_pairs(values: np.ndarray, scale: int, psf: PsfEstimate, hold_back: float, seed: int = 0) -> SelfPairs:
    """Split ``values`` (LR crop, good bands, physical) into training rows and held-back bottom rows,
    each degraded on its own (no blur crosses the split) with the estimated PSF. A scene of fewer than
    :data:`hsiuu_cli.superres.denoise.MIN_BANDS` bands, which is not denoised, gets its noise put back into the
    coarse inputs, as the model will see it (:func:`hsiuu_cli.superres.denoise.with_noise_put_back`, drawn with
    ``seed``)."""
    from ..degrade import spatial_degrade
    from .denoise import few_band_noise_variance, with_noise_put_back

    rows, cols = values.shape[0] // scale * scale, values.shape[1] // scale * scale
    values = np.ascontiguousarray(values[:rows, :cols], dtype=np.float32)
    held = max(2 * scale, int(round(rows * hold_back / scale)) * scale)
    parts = values[: rows - held], values[rows - held :]

    def degrade(part: np.ndarray) -> np.ndarray:
        return spatial_degrade(part, scale, method="gaussian", sigma=psf.sigma).astype(np.float32)

    coarse = [degrade(part) for part in parts]
    variance = few_band_noise_variance(values)
    if variance is not None:
        coarse = [with_noise_put_back(c, variance, degrade, part.shape[:2], seed + index)
                  for index, (part, c) in enumerate(zip(parts, coarse))]
    return SelfPairs(parts[0], coarse[0], parts[1], coarse[1], psf)


@dataclass
class Adapted:
    """The fine-tuned network and what happened."""

    network: object
    steps: int
    seconds: float
    stopped_by: str
    """'steps', 'time limit' or 'no improvement on held-back pairs'."""
    history: list[dict] = field(default_factory=list)
    best_step: int = 0


def fine_tune(
    weights: bytes,
    config,
    pairs: SelfPairs,
    settings: AdaptSettings,
    time_limit_s: float,
    progress: Callable[[int], None] | None = None,
    device: str = "cpu",
) -> Adapted:
    """Fine-tune a network (its safetensors ``weights``) on self-supervised pairs.

    Each step: one random patch (with a random flip/rotation) and ``groups_per_step`` random band
    groups; loss L1 on standardised bands + α·spectral angle over those bands. The unmixing
    branch stays frozen (it only describes materials). Every ``check_every`` steps the held-back
    pairs are super-resolved whole; the best weights are kept, and a run of ``patience`` checks
    without improvement, the step count or the time limit ends it.
    """
    import torch
    import torch.nn.functional as F
    from safetensors.torch import load

    from .network import build_network
    from .training import PatchSampler, Scene, group_inputs, prepare, spectral_angle_loss, super_resolve_patches

    advance = progress or (lambda _n=1: None)
    rng = np.random.default_rng(settings.seed)
    torch.manual_seed(settings.seed)
    network = build_network(config)
    network.load_state_dict(load(weights))
    network = network.to(device)
    train = prepare(Scene("train", pairs.train_target, pairs.train_coarse), config)
    held = prepare(Scene("held back", pairs.held_target, pairs.held_coarse), config)
    sampler = PatchSampler([train], config.scale, settings.patch * config.scale, rng)
    tail = ("stages.", "material.", "tail.")
    parameters = [
        p for name, p in network.named_parameters()
        if not name.startswith("unmixing.") and (settings.trainable == "all" or name.startswith(tail))
    ]
    if network.unmixing is not None:
        network.unmixing.requires_grad_(False)
    optimizer = torch.optim.Adam(parameters, lr=settings.learning_rate, betas=(0.9, 0.99))
    group_count = train.index.shape[0]
    # The bound is on the fine-tuning itself: PyTorch's one-off imports above (seconds on a busy
    # machine) are not steps (they count in SceneAdaptation.total_seconds).
    started = time.perf_counter()

    def held_gain() -> float:
        network.eval()
        with torch.inference_mode():
            spectrum = None if held.spectrum is None else held.spectrum[None].to(device)
            sr = super_resolve_patches(
                network, held, held.lr[None].to(device), held.mean_band[None].to(device), held.up[None].to(device),
                spectrum, device, chunk=16,
            )[0].cpu()
        error = float(((sr - held.hr) ** 2).mean())
        baseline = float(((held.up - held.hr) ** 2).mean())
        return 10 * math.log10(max(baseline, 1e-20) / max(error, 1e-20))

    def snapshot() -> dict:
        return {k: v.detach().to("cpu", copy=True) for k, v in network.state_dict().items()}

    best_gain, best_state, best_step = held_gain(), snapshot(), 0
    history = [{"step": 0, "held_back_gain_db": round(best_gain, 4)}]
    stale, step, stopped_by = 0, 0, "steps"
    network.train()
    while step < settings.steps:
        if time.perf_counter() - started > time_limit_s:
            stopped_by = "time limit"
            break
        if network.unmixing is not None:
            network.unmixing.eval()
        for group in optimizer.param_groups:  # cosine decay over the step budget
            group["lr"] = settings.learning_rate * 0.5 * (1 + math.cos(math.pi * step / settings.steps))
        _, crops = sampler.batch(1)
        crops = {key: value.to(device) for key, value in crops.items()}
        chosen = torch.from_numpy(np.sort(rng.choice(group_count, min(group_count, settings.groups_per_step), replace=False)))
        index = train.index[chosen].to(device)
        inputs = group_inputs(crops["lr"], crops["mean_band"], index)
        residual = network(inputs, crops.get("spectrum"))  # (groups, group, H, W) for the one patch
        bands = index.reshape(-1)
        result = crops["up"][0, bands] + residual.reshape(-1, *residual.shape[-2:])
        target = crops["hr"][0, bands]
        loss = F.l1_loss(result, target)
        if settings.alpha > 0:
            gain, bias = train.gain.to(device)[bands], train.bias.to(device)[bands]
            loss = loss + settings.alpha * spectral_angle_loss((result * gain + bias)[None], (target * gain + bias)[None])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        advance(1)
        if step % settings.check_every == 0 or step == settings.steps:
            gain_db = held_gain()
            network.train()
            history.append({"step": step, "held_back_gain_db": round(gain_db, 4), "loss": round(float(loss.item()), 5)})
            if gain_db > best_gain:
                best_gain, best_state, best_step, stale = gain_db, snapshot(), step, 0
            else:
                stale += 1
                if stale >= settings.patience:
                    stopped_by = "no improvement on held-back pairs"
                    break
    network = network.to("cpu")
    network.load_state_dict(best_state)
    network.eval()
    return Adapted(network, step, time.perf_counter() - started, stopped_by, history, best_step)


# ---------------------------------------------------------------------------------------------
# Adapt, then judge
# ---------------------------------------------------------------------------------------------

BICUBIC_READS_AS = 0.4
"""The PSF estimate (σ / scale) of antialiased bicubic down-sampling (``bench/superres.py psf``:
0.30–0.48 on the held-out scenes, mostly 0.4–0.45)."""
EXTRA_BLUR = 0.1
"""How much wider (σ / scale) than its model's training PSF a scene's PSF must read for the adapted
model to be used: on scenes about as sharp as the training pairs, fine-tuning on the scene's
coarser copy lost to the unadapted model in every measured case, and the held-back pairs did not
show it (docs/benchmarks.md § Scene adaptation)."""
ADAPTED_MARGIN_DB = 0.1
"""PSNR (dB) on the held-back pairs by which the adapted model must beat the one it came from:
the held-back pairs are one scale coarser than the real run, and a gain there below this has
not been seen to carry over (docs/benchmarks.md § Super-resolution, scene adaptation)."""


@dataclass
class SceneAdaptation:
    """What ``hsiuu superres --adapt`` decided for one scene."""

    result: str
    """'adapted', or 'model': the model as it came, run as without adaptation."""
    model: object
    """The LoadedModel to run."""
    gain: float | None
    """Detail gain for the adapted model (from the held-back pairs); None: the model's own self-check decides."""
    adapted_model: object
    checks: dict[str, dict]
    """'model' and 'adapted' → GainCheck.as_dict() on the held-back pairs."""
    psf: PsfEstimate
    adapted: Adapted | None
    """None when fine-tuning was skipped (the scene is no blurrier than the model's training pairs)."""
    time_limit_s: float
    crop: tuple[int, int]
    total_seconds: float = 0.0
    """Everything: reading the crop, the PSF, fine-tuning, export and the held-back checks."""

    training_blur: float = BICUBIC_READS_AS
    """The model's training PSF (σ / scale) the scene's is compared with."""

    @property
    def fine_tuned(self) -> bool:
        return self.adapted is not None

    def summary(self) -> dict:
        summary = {
            "result": self.result,
            "fine_tuned": self.fine_tuned,
            "psf": {
                "kind": "gaussian", "sigma_hr_pixels": round(self.psf.sigma, 3), "sigma_over_scale": round(self.psf.fraction, 3),
                "model_training_sigma_over_scale": round(self.training_blur, 3),
            },
            "total_seconds": round(self.total_seconds, 2),
            "time_limit_s": round(self.time_limit_s, 1),
            "pairs_from": f"{self.crop[0]}×{self.crop[1]} LR pixels",
            "held_back": {name: check for name, check in self.checks.items()},
        }
        if self.adapted is None:
            summary["skipped"] = (
                f"the scene is no blurrier than the model's training pairs (PSF σ {self.psf.fraction:.2f} × scale; "
                f"adaptation needs {self.training_blur + EXTRA_BLUR:.2f} or more)"
            )
        else:
            summary.update(
                steps=self.adapted.steps, best_step=self.adapted.best_step, seconds=round(self.adapted.seconds, 2),
                stopped_by=self.adapted.stopped_by, history=self.adapted.history,
            )
        return summary


def training_blur(info) -> float:
    """The PSF (σ / scale) a model's training pairs were made with, as :func:`estimate_psf` reads it."""
    if info.degradation == "gaussian":
        return (info.psf_sigma if info.psf_sigma is not None else info.scale / 2) / info.scale
    return BICUBIC_READS_AS


def blurrier_than_training(psf: PsfEstimate, info) -> bool:
    """True when the scene's PSF is wider than the model's training PSF by :data:`EXTRA_BLUR` or more."""
    return psf.fraction >= training_blur(info) + EXTRA_BLUR - 1e-9


def adapted_info(model, psf: PsfEstimate, scene: str):
    """The adapted model's description: it fits what its source fits and was made with the estimated PSF."""
    from dataclasses import replace

    text = f"{model.name} fine-tuned on {scene} (self-supervised, Gaussian PSF σ = {psf.sigma:.2f} px estimated from the scene)"
    return replace(model.info, degradation="gaussian", psf_sigma=psf.sigma, description=text)


def adapt_to_scene(
    cube,
    scale: int,
    model,
    settings: AdaptSettings | None = None,
    *,
    scene: str = "the scene",
    device: str = "auto",
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
    force: bool = False,
    denoise: bool | None = None,
) -> SceneAdaptation:
    """Fine-tune ``model`` on ``cube`` and decide, on held-back self-supervised pairs, what to write.

    The adapted model wins if the scene's PSF is wider than the model's training PSF
    (:func:`blurrier_than_training`), its guarded detail gain on the held-back pairs is above 0
    (no worse than bicubic on PSNR and SAM, :func:`hsiuu_cli.superres.guard.guarded_gain`) and it
    beats the model it came from there by :data:`ADAPTED_MARGIN_DB` PSNR while no worse on SAM.
    Otherwise the model runs as it would without adaptation (its self-check, its guard, perhaps
    bicubic). Fine-tuning is skipped on scenes no blurrier than the training pairs unless
    ``force`` (the adapted model could not win there). Raises InvalidDataError when the scene is
    too small. ``denoise``: as :func:`hsiuu_cli.superres.inference.super_resolve_cube` (the pairs come from
    the scene as the model will see it).
    """
    from ..device import resolve_device
    from .export import onnx_bytes, safetensors_bytes
    from .inference import SuperResolver
    from .registry import LoadedModel

    started = time.perf_counter()
    settings = settings or AdaptSettings()
    reason = too_small(cube.rows, cube.cols, scale)
    if reason:
        raise InvalidDataError(reason)
    try:
        weights = model.weights()
    except ModelError as exc:
        raise ModelError(f"cannot adapt {model.name}: {exc.message}", exc.path) from None
    limit = settings.time_limit_s if settings.time_limit_s is not None else default_time_limit(cube.rows * cube.cols)
    original = SuperResolver(cube, scale, model, device=device, threads=threads, calibrate=False, denoise=denoise)
    side_rows, side_cols = min(cube.rows, ADAPT_CROP), min(cube.cols, ADAPT_CROP)
    r0, c0 = (cube.rows - side_rows) // 2, (cube.cols - side_cols) // 2
    values, _ = original._read(slice(r0, r0 + side_rows), slice(c0, c0 + side_cols))
    values = values[:, :, original.good]
    psf = estimate_psf(values, scale)
    pairs = self_pairs(values, scale, psf, settings.hold_back, settings.seed)
    checks = {"model": original.self_check(pairs.held_target, pairs.held_coarse)}
    blurrier = blurrier_than_training(psf, model.info)
    adapted = adapted_model = None
    if blurrier or force:
        adapted = fine_tune(weights, model.info.config, pairs, settings, limit, progress, device=resolve_device(device))
        info = adapted_info(model, psf, scene)
        adapted_model = LoadedModel(
            f"{model.name}_adapted", model.path, info, onnx_bytes(adapted.network, info), None, None,
            weights_data=safetensors_bytes(adapted.network, info),
        )
        tuned = SuperResolver(cube, scale, adapted_model, device=device, threads=threads, calibrate=False, state=original.state())
        checks["adapted"] = tuned.self_check(pairs.held_target, pairs.held_coarse)
    before, after = checks["model"], checks.get("adapted")
    wins = after is not None and blurrier and after.gain > 0 and (
        before.gain == 0 or (after.psnr >= before.psnr + ADAPTED_MARGIN_DB and after.sam <= before.sam)
    )
    # Otherwise the model runs exactly as without adaptation: its own self-check and guard decide
    # between its detail and bicubic.
    result, chosen, gain = ("adapted", adapted_model, after.gain) if wins else ("model", model, None)
    return SceneAdaptation(
        result, chosen, gain, adapted_model, {k: v.as_dict() for k, v in checks.items()}, psf, adapted, limit,
        (side_rows, side_cols), time.perf_counter() - started, training_blur(model.info),
    )
